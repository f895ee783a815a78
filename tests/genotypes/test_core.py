import json

import pytest
import torch

from dnas.cells.base import ArchGroup, argmax_cell, topk_cell
from dnas.cells.darts import DartsSupernet, darts_edges
from dnas.genotypes import CellSpec, Genotype, GenotypeError, SpaceSpec, register_space
from dnas.ops import DARTS_PRIMITIVES

V2_NORMAL = [
    ("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
    ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2),
]  # fmt: skip
V2_REDUCE = [
    ("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
    ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1),
]  # fmt: skip


def _darts_v2():
    return Genotype.darts(V2_NORMAL, V2_REDUCE)


def test_json_round_trip_and_equality():
    g = _darts_v2()
    text = g.to_json()
    back = Genotype.from_json(text, source="x.json")
    assert back == g
    assert back.cells["normal"].edges[7].op == "dil_conv_3x3"
    assert back.cells["normal"].edges[7].src == 2 and back.cells["normal"].edges[7].dst == 5
    assert json.loads(text)["schema_version"] == 1


def test_from_file_round_trip(tmp_path):
    path = tmp_path / "g.json"
    path.write_text(_darts_v2().to_json())
    assert Genotype.from_file(path) == _darts_v2()
    with pytest.raises(GenotypeError, match="does not exist"):
        Genotype.from_file(tmp_path / "missing.json")


def _mutate(fn):
    data = _darts_v2().to_dict()
    fn(data)
    return json.dumps(data)


@pytest.mark.parametrize(
    ("mutation", "message"),
    [
        (lambda d: d["cells"]["normal"]["edges"][0].__setitem__(0, "conv_9x9"), r"op 'conv_9x9'.*allowed ops"),
        (lambda d: d["cells"]["normal"]["edges"][0].__setitem__(1, 7), r"comes from node 7.*allowed sources: 0..1"),
        (lambda d: d["cells"]["normal"]["edges"][0].__setitem__(2, 9), r"goes to node 9.*intermediate nodes are 2..5"),
        (lambda d: d["cells"]["normal"]["edges"][0].__setitem__(1, "0"), r"'src' must be a node index"),
        (lambda d: d["cells"]["normal"]["edges"][0].__setitem__(1, True), r"'src' must be a node index"),
        (lambda d: d["cells"]["normal"]["edges"][0].__setitem__(0, 3), r"\(op\) must be a string"),
        (
            lambda d: d["cells"]["normal"]["edges"].__setitem__(0, ["a", 1]),
            r"edges\[0\] must be a list \[op, src, dst\]",
        ),
        (lambda d: d["cells"]["normal"]["edges"].pop(), r"node 5 has 1 input edges, expected 2"),
        (lambda d: d["cells"].pop("reduce"), r"missing \['reduce'\]"),
        (lambda d: d.__setitem__("space", 3), r"'space' must be a non-empty string"),
        (lambda d: d.__setitem__("schema_version", 2), r"'schema_version' must be 1"),
        (lambda d: d.__setitem__("extra", 1), r"unknown field\(s\) \['extra'\]"),
        (lambda d: d["cells"]["normal"].__setitem__("concat", [2, 99]), r"concat names node 99"),
        (lambda d: d["cells"]["normal"].__setitem__("concat", "2345"), r"concat must be a list"),
        (lambda d: d.__setitem__("cells", []), r"'cells' must be a non-empty object"),
        (lambda d: d.__setitem__("meta", [1]), r"'meta' must be an object"),
    ],
)
def test_validation_errors_name_the_field(mutation, message):
    with pytest.raises(GenotypeError, match=message) as err:
        Genotype.from_json(_mutate(mutation), source="my.json")
    assert "my.json" in str(err.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "invalid JSON at line 1"),
        ("[]", "expected a JSON object"),
        ('{"space": "darts", "cells": {"normal": {"edges": [["none", 0, NaN]]}}}', "non-finite"),
        (b"\xff\xfe\x00", "not UTF-8"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply|invalid JSON"),
    ],
)
def test_malformed_json_gives_clear_errors(text, message):
    with pytest.raises(GenotypeError, match=message):
        Genotype.from_json(text)


def test_unknown_space_still_checks_registered_ops():
    g = Genotype("some_user_space", {"c": Genotype.chain(["skip_connect"], "x").cells["layers"]})
    assert Genotype.from_json(g.to_json()) == g
    bad = g.to_json().replace("skip_connect", "frobnicate")
    with pytest.raises(GenotypeError, match="unknown op 'frobnicate'"):
        Genotype.from_json(bad)


def test_registered_chain_space_requires_every_layer():
    register_space(
        SpaceSpec("test_chain", {"layers": CellSpec(("none", "skip_connect"), 1, 3, chain=True, all_edges=True)})
    )
    g = Genotype.chain(["none", "skip_connect", "none"], "test_chain")
    assert Genotype.from_json(g.to_json()) == g
    short = Genotype.chain(["none", "skip_connect"], "test_chain")
    with pytest.raises(GenotypeError, match="exactly one edge"):
        Genotype.from_json(short.to_json())


def _alpha_for(genes, strength=5.0):
    """α rows for which the DARTS rule must return ``genes`` (two per node, in score order)."""
    alpha = torch.zeros(14, len(DARTS_PRIMITIVES))
    edges = darts_edges()
    for i, (op, src) in enumerate(genes):
        node = 2 + i // 2
        row = edges.index((src, node))
        alpha[row, DARTS_PRIMITIVES.index(op)] = strength - (i % 2)  # first gene of a node scores higher
    return alpha


def test_darts_rule_recovers_genotype_in_score_order():
    net = DartsSupernet(init_channels=4, num_classes=3, layers=3)
    with torch.no_grad():
        net.alpha("normal").copy_(_alpha_for(V2_NORMAL))
        net.alpha("reduce").copy_(_alpha_for(V2_REDUCE))
    assert net.genotype() == _darts_v2()


def test_darts_rule_ignores_none_and_breaks_ties_like_the_reference():
    group = ArchGroup("g", darts_edges()[:2], DARTS_PRIMITIVES)
    w = torch.zeros(2, 8)
    w[0, 0] = 10.0  # `none` is strongest on edge 0 but never counts
    w[0, 4] = 0.2
    w[1, 4] = 0.2  # tie between edges: the lower input wins first place
    w[1, 5] = 0.2  # tie between ops: the lower op index wins
    cell = topk_cell(w, group, k=2)
    assert [(e.op, e.src) for e in cell.edges] == [("sep_conv_3x3", 0), ("sep_conv_3x3", 1)]


def test_argmax_rule_keeps_none():
    group = ArchGroup("g", ((0, 1), (0, 2), (1, 2)), ("none", "skip_connect"))
    w = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    cell = argmax_cell(w, group)
    assert [e.op for e in cell.edges] == ["none", "skip_connect", "none"]


def test_darts_supernet_over_user_ops_yields_loadable_darts_genotypes():
    from torch import nn

    from dnas.ops import register_op

    register_op(
        "test_user_conv",
        lambda ci, co, s, a: nn.Sequential(nn.Conv2d(ci, co, 3, s, 1, bias=False), nn.BatchNorm2d(co, affine=a)),
        overwrite=True,
    )
    net = DartsSupernet(init_channels=4, num_classes=3, layers=3, primitives=("none", "skip_connect", "test_user_conv"))
    with torch.no_grad():
        net.alpha("normal")[:, 2] = 5.0
    g = net.genotype()
    assert g.space == "darts" and set(g.cells["normal"].ops()) == {"test_user_conv"}
    assert Genotype.from_json(g.to_json()) == g
    with pytest.raises(GenotypeError, match="allowed ops"):
        Genotype.from_json(g.to_json().replace("test_user_conv", "unregistered_conv"))
