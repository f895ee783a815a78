"""NAS-Bench-201 space: cell semantics, the published parameter counts, the benchmark's architecture strings."""

import pytest
import torch
from torch import nn

from dnas.cells.custom import SearchCell
from dnas.cells.nb201 import NB201_EDGES, NB201Supernet, genotype_to_nb201_str, nb201_str_to_genotype
from dnas.export import build_model
from dnas.genotypes import Genotype, GenotypeError
from dnas.ops.nb201 import NB201_PRIMITIVES

ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
ALL_C3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_space_layout_matches_the_benchmark():
    m = NB201Supernet(init_channels=4, cells_per_stage=1)
    assert NB201_PRIMITIVES == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    # edge keys sorted as the benchmark: 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2
    assert NB201_EDGES == ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
    assert m.alpha("cell").shape == (6, 5)
    kinds = [type(c).__name__ for c in m.cells]
    assert kinds == ["SearchCell", "ResNetBasicBlock", "SearchCell", "ResNetBasicBlock", "SearchCell"]
    assert m(torch.randn(2, 3, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize(
    "arch,num_classes,expected",
    [
        # NAS-Bench-201 CIFAR-10 parameter range 0.073306–1.531546 M (all-parameter-free cell / all nor_conv_3x3),
        # CIFAR-100 minimum 0.079156 M; also derivable by hand from the skeleton (Dong & Yang, ICLR 2020).
        (ALL_C3, 10, 1_531_546),
        (ALL_SKIP, 10, 73_306),
        (ALL_SKIP, 100, 79_156),
    ],
)
def test_evaluation_network_has_the_published_parameter_count(arch, num_classes, expected):
    net = build_model(nb201_str_to_genotype(arch), num_classes=num_classes)
    assert n_params(net) == expected


def test_search_convs_have_the_reference_bias_quirk_and_eval_convs_do_not():
    search = NB201Supernet(init_channels=4, cells_per_stage=1)
    edge = search.cells[0].dag.edges[0]
    conv3 = edge._ops[NB201_PRIMITIVES.index("nor_conv_3x3")].op
    assert conv3[1].bias is not None and not conv3[2].affine and conv3[2].track_running_stats
    assert search.cells[1].conv_a.op[1].bias is None and search.cells[1].conv_a.op[2].affine  # reduction block
    net = NB201Supernet.from_genotype(nb201_str_to_genotype(ALL_C3), init_channels=4, cells_per_stage=1)
    conv = net.cells[0].dag.edges[0].op
    assert conv[1].bias is None and conv[2].affine


def test_search_cell_sums_edges_into_nodes():
    m = NB201Supernet(init_channels=4, cells_per_stage=1).eval()
    cell = m.cells[0]
    assert isinstance(cell, SearchCell)
    x = torch.randn(2, 4, 6, 6)
    eye = torch.eye(5)
    skip = eye[1].repeat(6, 1)
    # all skip: n1 = x, n2 = x + n1 = 2x, n3 = x + n1 + n2 = 4x
    torch.testing.assert_close(cell(x, {"cell": (skip, None)}), 4 * x)
    none = eye[0].repeat(6, 1)
    assert cell(x, {"cell": (none, None)}).abs().max() == 0
    pool = eye[4].repeat(6, 1)  # avg pool, count_include_pad=False, no BN after it
    avg = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
    n1 = avg(x)
    n2 = avg(x) + avg(n1)
    torch.testing.assert_close(cell(x, {"cell": (pool, None)}), avg(x) + avg(n1) + avg(n2))


@pytest.mark.parametrize("text", [ALL_SKIP, ALL_C3, RESNET])
def test_string_round_trip(text):
    g = nb201_str_to_genotype(text)
    assert g.space == "nb201" and len(g.cells["cell"].edges) == 6
    assert genotype_to_nb201_str(g) == text
    assert Genotype.from_json(g.to_json()) == g


def test_searched_genotype_string_round_trip():
    torch.manual_seed(1)
    m = NB201Supernet(init_channels=4, cells_per_stage=1)
    g = m.genotype()
    text = genotype_to_nb201_str(g)
    assert nb201_str_to_genotype(text) == g
    net = build_model(Genotype.from_json(g.to_json()))  # skeleton recorded in meta: C=4, N=1
    assert net(torch.randn(1, 3, 8, 8)).shape == (1, 10)


@pytest.mark.parametrize(
    "text,match",
    [
        ("|nor_conv_3x3~0|+|none~0|none~1|", "3"),
        ("|conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|", "conv_9x9"),
        ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "out of range"),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", "needs all of 0..1"),
        ("none~0+|none~0|none~1|+|none~0|none~1|none~2|", "must look like"),
        ("|none-0|+|none~0|none~1|+|none~0|none~1|none~2|", "op~src"),
    ],
)
def test_bad_strings_are_rejected_with_the_part_named(text, match):
    with pytest.raises(GenotypeError, match=match):
        nb201_str_to_genotype(text)


def test_darts_genotype_is_not_a_nb201_genotype():
    darts = Genotype.darts([("sep_conv_3x3", 0)] * 8, [("max_pool_3x3", 0)] * 8)
    with pytest.raises(GenotypeError, match="'darts'.*'nb201'"):
        NB201Supernet.from_genotype(darts)
    with pytest.raises(GenotypeError):
        genotype_to_nb201_str(darts)
