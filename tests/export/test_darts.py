"""The DARTS evaluation network: exact parameter counts of every shipped genotype, structure, drop-path, bad input.

Parameter-count derivation (reference quark0/darts ``cnn/operations.py`` and ``cnn/model.py``; every conv has no bias,
every BN is affine and contributes 2·channels; ReLU, pooling, identity and ``none`` have no parameters)::

    ReLUConvBN(a -> b, 1×1)      a·b + 2b
    FactorizedReduce(a -> b)     2·a·(b/2) + 2b  =  a·b + 2b
    sep_conv_k(C)                2·(k²·C + C² + 2C)        (dw k×k, pw 1×1, BN, applied twice)
    dil_conv_k(C)                k²·C + C² + 2C
    conv_7x1_1x7(C)              7C² + 7C² + 2C
    skip_connect(C, stride 2)    FactorizedReduce(C -> C) = C² + 2C   (stride 1: identity, 0)
    cell(C_pp, C_p, C)           preprocess0 (FactorizedReduce if the previous cell reduced, else ReLUConvBN)
                                 + ReLUConvBN(C_p -> C) + Σ ops; output channels = len(concat)·C
    CIFAR stem                   9·in·3C + 2·3C
    ImageNet stem                9·in·C/2 + C + 9·(C/2)·C + 2C  +  9·C² + 2C;  cell 0 has reduction_prev = True
    classifier                   C_last·classes + classes
    auxiliary head (excluded from the published counts, as ``utils.count_parameters_in_MB``)
                                 C_aux·128 + 256 + 128·768·4 [+ 1536 BN, CIFAR only] + 768·classes + classes

The integers in ``EXPECTED`` come from this formula; they round to the published figures (DARTS_V2 3.3M / 4.7M,
PC-DARTS 3.6M, P-DARTS 3.4M, PC-DARTS ImageNet 5.3M, the DARTS-PT file comments 2.85/3.05/2.66/3.33M). We also checked
them once against the reference ``NetworkCIFAR``/``NetworkImageNet`` run on the same genotypes (identical counts and
state-dict keys); the reference code itself is not part of this repository.
"""

import pytest
import torch

from dnas.export import build_model
from dnas.export.darts import DartsEvalNetwork, drop_path
from dnas.export.summary import count_parameters
from dnas.genotypes import Genotype, GenotypeError, load, published

CIFAR = {"init_channels": 36, "layers": 20, "stem": "cifar", "num_classes": 10}
IMAGENET = {"init_channels": 48, "layers": 14, "stem": "imagenet", "num_classes": 1000}

# (CIFAR-10 C=36 L=20, ImageNet C=48 L=14), auxiliary head excluded
EXPECTED = {
    "DARTS_V1": (3_169_414, 4_510_432),
    "DARTS_V2": (3_349_342, 4_718_752),
    "DARTS": (3_349_342, 4_718_752),
    "PC_DARTS": (3_634_678, 5_270_560),
    "PC_DARTS_IMAGENET": (3_721_510, 5_342_464),
    "PDARTS": (3_433_798, 4_944_352),
    "DARTS_PT_S5_0": (2_851_246, 4_228_576),
    "DARTS_PT_S5_1": (3_053_206, 4_510_816),
    "DARTS_PT_S5_2": (2_658_142, 4_035_712),
    "DARTS_PT_S5_3": (3_328_174, 4_779_712),
    "NASNet": (3_830_950, 5_564_320),
    "AmoebaNet": (3_145_078, 4_627_360),
}

# published rounded figures (millions): (name, stem index, value, decimals)
PUBLISHED = [
    ("DARTS_V2", 0, 3.3, 1),
    ("DARTS_V2", 1, 4.7, 1),
    ("PC_DARTS", 0, 3.6, 1),
    ("PC_DARTS_IMAGENET", 1, 5.3, 1),
    ("PDARTS", 0, 3.4, 1),
    ("DARTS_PT_S5_0", 0, 2.85, 2),
    ("DARTS_PT_S5_1", 0, 3.05, 2),
    ("DARTS_PT_S5_2", 0, 2.66, 2),
    ("DARTS_PT_S5_3", 0, 3.33, 2),
]


def op_params(op: str, C: int, stride: int) -> int:
    if op in ("none", "max_pool_3x3", "avg_pool_3x3"):
        return 0
    if op == "skip_connect":
        return 0 if stride == 1 else C * C + 2 * C
    if op.startswith("sep_conv_"):
        k = int(op[-1])
        return 2 * (k * k * C + C * C + 2 * C)
    if op.startswith("dil_conv_"):
        k = int(op[-1])
        return k * k * C + C * C + 2 * C
    if op == "conv_7x1_1x7":
        return 14 * C * C + 2 * C
    raise AssertionError(op)


def analytic_params(g: Genotype, init_channels, layers, stem, num_classes, in_channels=3, auxiliary=False) -> int:
    C = init_channels
    if stem == "cifar":
        total = 9 * in_channels * 3 * C + 2 * 3 * C
        c_pp = c_p = 3 * C
        red_prev = False
    else:
        total = (9 * in_channels * C // 2 + C) + (9 * (C // 2) * C + 2 * C) + (9 * C * C + 2 * C)
        c_pp = c_p = C
        red_prev = True
    c = C
    c_aux = None
    for i in range(layers):
        red = i in (layers // 3, 2 * layers // 3)
        c = 2 * c if red else c
        cell = g.cells["reduce" if red else "normal"]
        total += c_pp * c + 2 * c  # preprocess0: ReLUConvBN and FactorizedReduce have the same count
        total += c_p * c + 2 * c
        total += sum(op_params(e.op, c, 2 if red and e.src < 2 else 1) for e in cell.edges)
        c_pp, c_p = c_p, len(cell.concat) * c
        red_prev = red
        if i == 2 * layers // 3:
            c_aux = c_p
    assert red_prev in (True, False)
    total += c_p * num_classes + num_classes
    if auxiliary:
        total += c_aux * 128 + 256 + 128 * 768 * 4 + (1536 if stem == "cifar" else 0) + 768 * num_classes + num_classes
    return total


def test_every_shipped_genotype_has_a_count():
    assert set(published()) >= set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_exact_parameter_counts(name):
    g = load(name)
    for i, opts in enumerate((CIFAR, IMAGENET)):
        with torch.device("meta"):  # no allocation or init: counting is instant
            model = build_model(g, auxiliary=True, **opts)
        assert analytic_params(g, **opts) == EXPECTED[name][i]
        assert count_parameters(model) == EXPECTED[name][i]
        assert count_parameters(model, auxiliary=True) == analytic_params(g, auxiliary=True, **opts)


@pytest.mark.parametrize("name,stem,value,decimals", PUBLISHED)
def test_counts_round_to_published_figures(name, stem, value, decimals):
    assert round(EXPECTED[name][stem] / 1e6, decimals) == value


def test_structure_matches_reference_layout():
    model = build_model("DARTS_V2", init_channels=8, layers=5, auxiliary=True)
    keys = list(model.state_dict())
    assert keys[0] == "stem.0.weight"
    assert "cells.0._ops.0.op.1.weight" in keys  # sep_conv_3x3: ReLU, dw conv, ...
    assert "cells.2.preprocess0.conv_1.weight" in keys  # cell 2 follows the reduction cell 1 = 5//3
    assert any(k.startswith("auxiliary_head.features.") for k in keys)
    # reductions at 5//3 = 1 and 2*5//3 = 3; a reduction cell's input ops have stride 2
    assert [c.reduction for c in model.cells] == [False, True, False, True, False]
    # DARTS_V2 reduce: max_pool(0 -> 2) has stride 2 and no BN after it; skip_connect(2 -> 3) is an identity
    assert isinstance(model.cells[1]._ops[0], torch.nn.MaxPool2d) and model.cells[1]._ops[0].stride == 2
    assert isinstance(model.cells[1]._ops[2], torch.nn.Identity)


def test_forward_shapes_and_aux():
    torch.manual_seed(0)
    model = build_model("DARTS_V2", init_channels=8, layers=5, auxiliary=True, num_classes=7)
    x = torch.randn(2, 3, 32, 32)
    model.train()
    logits, aux = model.forward_with_aux(x)
    assert logits.shape == (2, 7) and aux.shape == (2, 7)
    model.eval()
    logits, aux = model.forward_with_aux(x)
    assert aux is None and model(x).shape == (2, 7)
    imnet = build_model("DARTS_V2", init_channels=8, layers=3, stem="imagenet", num_classes=5, auxiliary=True)
    assert imnet.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 5)


def test_drop_path_only_on_non_identity_ops():
    # DARTS_V2 normal: skip_connect(0 -> 4) is an identity, sep_conv is not
    model = build_model("DARTS_V2", init_channels=4, layers=3)
    cell = model.cells[0]
    ops = [e.op for e in load("DARTS_V2").cells["normal"].edges]
    assert list(cell.droppable) == [op != "skip_connect" for op in ops]


def test_drop_path_statistics():
    torch.manual_seed(0)
    x = torch.ones(4000, 3, 2, 2)
    y = drop_path(x, 0.25)
    per_sample = y.flatten(1)
    # whole samples are zeroed or scaled by 1/(1-p)
    assert torch.all((per_sample == 0).all(1) | torch.isclose(per_sample, torch.tensor(1 / 0.75)).all(1))
    assert abs((per_sample[:, 0] == 0).float().mean().item() - 0.25) < 0.03
    assert drop_path(x, 0.0) is x


def test_bad_genotypes_give_clear_errors():
    good = load("DARTS_V2").to_dict()
    bad_op = load("DARTS_V2").to_dict()
    bad_op["cells"]["normal"]["edges"][0][0] = "conv_9x9_magic"
    with pytest.raises(GenotypeError, match="conv_9x9_magic"):
        build_model(Genotype.from_dict(bad_op, source="x.json"), init_channels=4, layers=3)
    missing = dict(good)
    missing["cells"] = {k: dict(v) for k, v in good["cells"].items()}
    missing["cells"]["normal"]["edges"] = [e for e in good["cells"]["normal"]["edges"] if e[2] != 3]
    with pytest.raises(GenotypeError, match=r"node\(s\) \[3\]"):
        build_model(Genotype("darts", Genotype.from_dict(good).cells | {"normal": _cell(missing)}), layers=3)
    no_reduce = Genotype("darts", {"normal": Genotype.from_dict(good).cells["normal"]})
    with pytest.raises(GenotypeError, match="reduce"):
        DartsEvalNetwork(no_reduce, init_channels=4, layers=3)
    with pytest.raises(ValueError, match="stem"):
        build_model("DARTS_V2", stem="mnist")
    with pytest.raises(ValueError, match="init_channels"):
        build_model("DARTS_V2", init_channels=7)


def _cell(d):
    from dnas.genotypes import CellGenotype, Edge

    c = d["cells"]["normal"]
    return CellGenotype(tuple(Edge(*e) for e in c["edges"]), tuple(c["concat"]))


def test_aux_head_on_too_small_maps_names_the_problem():
    model = build_model("DARTS_V2", init_channels=4, layers=3, auxiliary=True, in_channels=1).train()
    with pytest.raises(ValueError, match="auxiliary head needs a feature map of at least 5"):
        model.forward_with_aux(torch.randn(2, 1, 8, 8))


def test_published_genotypes_validate_against_their_space():
    import dnas.cells.darts  # noqa: F401  (registers the darts space)
    from dnas.genotypes import get_space_spec

    for name in published():
        g = load(name)
        if g.space in ("darts", "nasnet"):
            g.validate(get_space_spec(g.space))


def test_eval_cell_equals_reference_forward_with_drop_path():
    """EvalCell (the shared node loop) against quark0/darts ``cnn/model.py`` ``Cell._compile``/``forward``, written
    out here: ops in genotype order, two per node, drop-path on every non-identity op in training, concat."""
    model = build_model("DARTS_V2", init_channels=8, layers=3)
    for index in (0, 1):  # a normal cell and the reduction cell
        cell = model.cells[index]
        genotype = load("DARTS_V2").cells["reduce" if cell.reduction else "normal"]
        s0, s1 = torch.randn(4, 24, 8, 8), torch.randn(4, 24 if index == 0 else 32, 8, 8)  # stem 3C; cell 0: 4C
        cell.train()
        torch.manual_seed(3)
        ours = cell(s0, s1, 0.3)
        torch.manual_seed(3)
        states = [cell.preprocess0(s0), cell.preprocess1(s1)]
        indices = [e.src for e in genotype.edges]
        for i in range(len(genotype.edges) // 2):
            op1, op2 = cell._ops[2 * i], cell._ops[2 * i + 1]
            h1, h2 = op1(states[indices[2 * i]]), op2(states[indices[2 * i + 1]])
            if not isinstance(op1, torch.nn.Identity):
                h1 = drop_path(h1, 0.3)
            if not isinstance(op2, torch.nn.Identity):
                h2 = drop_path(h2, 0.3)
            states.append(h1 + h2)
        reference = torch.cat([states[i] for i in genotype.concat], dim=1)
        assert torch.equal(ours, reference)
        assert not torch.equal(ours, cell(s0, s1, 0.0))  # drop-path acted
