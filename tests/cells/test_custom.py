"""The user-facing cell API (dnas.cells.custom): a toy subclass declared here, the way a user would."""

import json

import pytest
import torch
from torch import nn

from dnas.cells.custom import CellSupernet, DiscreteCell, SearchCell, dense_edges
from dnas.export import build_model
from dnas.genotypes import CellGenotype, Edge, Genotype, GenotypeError, get_space_spec
from dnas.ops import UnknownOpError


class Double(nn.Module):
    def forward(self, x):
        return 2.0 * x


class ToySpace(CellSupernet):
    """Parameter-free candidates (so search and export are comparable exactly) plus one user factory."""

    space_name = "test_toy"
    candidates = ("none", "skip_connect", ("test_double", lambda C_in, C_out, stride, affine: Double()))
    num_inputs = 1
    num_nodes = 3
    cell_output = "last"

    def __init__(self, channels: int = 4, num_cells: int = 2, num_classes: int = 3):
        super().__init__()
        self.stem = nn.Linear(5, channels)
        self.cells = nn.ModuleList(self.make_cell(channels) for _ in range(num_cells))
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x, weights=None):
        w = self.cell_weights(weights)
        h = self.stem(x)
        for cell in self.cells:
            h = cell(h, w)
        return self.head(h)


class TopkSpace(CellSupernet):
    space_name = "test_topk"
    candidates = ("none", "skip_connect", "test_double")
    num_inputs = 2
    num_nodes = 3
    cell_output = "concat"
    cell_types = ("normal", "other")
    genotype_rule = "topk"

    def __init__(self, channels: int = 2):
        super().__init__()
        self.a = self.make_cell(channels, "normal")
        self.b = self.make_cell(channels, "other")

    def forward(self, x, weights=None):
        w = self.cell_weights(weights)
        h = self.a([x, x], w)  # (B, 3C)
        return self.b([h, h], w)


def one_hot(ops, candidates):
    return torch.stack([torch.eye(len(candidates))[candidates.index(o)] for o in ops])


def test_declaration_builds_alpha_groups_and_registers_spec_and_builder():
    m = ToySpace()
    assert [n for n, _ in m.named_arch_parameters()] == ["arch.cell.alpha"]
    assert m.alpha("cell").shape == (6, 3)
    assert m.arch_groups["cell"].edges == dense_edges(1, 3) == ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
    for buf in ("arch.cell.mask", "arch.cell.fixed", "arch.cell.override"):
        assert buf in m.state_dict()
    spec = get_space_spec("test_toy")
    assert spec.cells["cell"].ops == ("none", "skip_connect", "test_double") and spec.cells["cell"].all_edges
    assert all(isinstance(c, SearchCell) for c in m.cells)
    assert id(m.alpha("cell")) not in {id(p) for p in m.weight_parameters()}


def test_cell_computes_the_dag_sum_of_weighted_ops():
    m = ToySpace()
    cell = m.cells[0]
    x = torch.randn(3, 4)
    # node1 = 2x; node2 = skip(x) + 2·node1 = 5x; node3 = 0·x + skip(node1) + 2·node2 = 12x
    w = one_hot(
        ["test_double", "skip_connect", "test_double", "none", "skip_connect", "test_double"], m.candidate_names
    )
    out = cell(x, {"cell": (w, None)})
    torch.testing.assert_close(out, 12 * x)
    # soft weights: each edge computes Σ_k w_k op_k(x) = (w_skip + 2 w_double) x
    soft = torch.tensor([[0.2, 0.3, 0.5]]).repeat(6, 1)
    c = 0.3 + 2 * 0.5
    n1 = c
    n2 = c + c * n1
    n3 = c + c * n1 + c * n2
    torch.testing.assert_close(cell(x, {"cell": (soft, None)}), n3 * x)


def test_forward_backward_reaches_alpha():
    m = ToySpace()
    loss = m(torch.randn(4, 5)).pow(2).mean()
    loss.backward()
    assert m.alpha("cell").grad is not None and m.alpha("cell").grad.abs().sum() > 0


def test_genotype_json_round_trip_and_export_equals_one_hot_supernet():
    torch.manual_seed(0)
    m = ToySpace(channels=4, num_cells=2, num_classes=3).eval()
    chosen = ["test_double", "skip_connect", "none", "skip_connect", "test_double", "test_double"]
    with torch.no_grad():
        m.alpha("cell").copy_(10 * one_hot(chosen, m.candidate_names))
    g = m.genotype()
    assert [e.op for e in g.cells["cell"].edges] == chosen
    assert g.cells["cell"].concat == (3,)
    assert g.meta["build"]["options"] == {"channels": 4, "num_cells": 2, "num_classes": 3}
    back = Genotype.from_json(g.to_json())
    assert back == g and back.meta == json.loads(g.to_json())["meta"]

    net = build_model(back)  # generic builder: same class, same stem/head, chosen op per edge
    assert type(net) is ToySpace and net.is_discrete
    assert list(net.arch_parameters()) == [] and all(isinstance(c, DiscreteCell) for c in net.cells)
    assert net.genotype() is back
    missing, unexpected = net.load_state_dict(m.state_dict(), strict=False)
    assert not missing  # stem and head have the supernet's names
    x = torch.randn(6, 5)
    w = {"cell": one_hot(chosen, m.candidate_names)}
    torch.testing.assert_close(net(x), m(x, w))


def test_export_options_override_the_recorded_skeleton():
    g = ToySpace(channels=4, num_cells=2).genotype()
    net = ToySpace.from_genotype(g, num_cells=3)
    assert len(net.cells) == 3 and net.stem.out_features == 4


def test_topk_rule_keeps_k_edges_per_node_never_none_and_concat_output():
    torch.manual_seed(0)
    m = TopkSpace()
    assert [n for n, _ in m.named_arch_parameters()] == ["arch.normal.alpha", "arch.other.alpha"]
    with torch.no_grad():
        m.alpha("normal")[:, 0] = 5.0  # "none" strongest everywhere: the rule must ignore it
    g = m.genotype()
    for cell in g.cells.values():
        assert all(e.op != "none" for e in cell.edges)
        assert [len(cell.inputs_of(n)) for n in (2, 3, 4)] == [2, 2, 2]
        assert cell.concat == (2, 3, 4)
    assert get_space_spec("test_topk").cells["normal"].edges_per_node == 2
    x = torch.randn(2, 2)
    assert m(x).shape == (2, 18)  # concat of 3 nodes twice: 2 -> 6 -> 18 channels
    net = build_model(Genotype.from_json(g.to_json()))
    assert net(x).shape == (2, 18)


def test_removed_edge_is_none_under_argmax():
    m = ToySpace()
    m.remove_edge("cell", 3)
    assert m.genotype().cells["cell"].edges[3] == Edge("none", 0, 3)


def test_edge_to_a_later_node_is_rejected_at_construction():
    class Bad(ToySpace):
        space_name = "test_bad_edges"
        edges = ((0, 1), (2, 1), (1, 2), (0, 3))

    with pytest.raises(ValueError, match=r"edge 1 \(2->1\) must come from an earlier node"):
        Bad()


def test_unregistered_op_is_rejected_at_construction():
    class Bad(ToySpace):
        space_name = "test_bad_op"
        candidates = ("skip_connect", "no_such_op_xyz")

    with pytest.raises(UnknownOpError, match="no_such_op_xyz"):
        Bad()


def test_genotype_from_another_space_is_rejected():
    g = ToySpace().genotype()
    other = Genotype("test_topk", g.cells)
    with pytest.raises(GenotypeError, match="'test_topk'.*'test_toy'"):
        ToySpace.from_genotype(other)
    wrong_op = Genotype("test_toy", {"cell": CellGenotype((Edge("sep_conv_3x3", 0, 1),) + g.cells["cell"].edges[1:])})
    with pytest.raises(GenotypeError, match="sep_conv_3x3"):
        ToySpace.from_genotype(wrong_op)


def test_sparse_edges_genotype_with_an_undeclared_edge_is_rejected():
    class Sparse(ToySpace):
        space_name = "test_sparse"
        edges = ((0, 1), (1, 2), (2, 3))

    m = Sparse()
    assert m.alpha("cell").shape == (3, 3)
    g = m.genotype()
    assert build_model(g)(torch.randn(2, 5)).shape == (2, 3)
    bad = Genotype(
        "test_sparse",
        {
            "cell": CellGenotype(
                (Edge("skip_connect", 0, 1), Edge("skip_connect", 0, 2), Edge("skip_connect", 2, 3)), (3,)
            )
        },
    )
    with pytest.raises(GenotypeError, match="0->2, which is not an edge"):
        Sparse.from_genotype(bad)


def test_missing_space_name_and_op_name_clash_are_clear():
    class NoName(CellSupernet):
        candidates = ("skip_connect",)

    with pytest.raises(TypeError, match="space_name"):
        NoName()
    with pytest.raises(ValueError, match="already registered"):

        class Clash(ToySpace):
            space_name = "test_clash"
            candidates = (("skip_connect", lambda C_in, C_out, stride, affine: nn.Identity()),)


def test_redefining_a_class_reregisters_its_own_factory_but_not_a_foreign_one():
    def define():
        class Again(CellSupernet):
            space_name = "test_again"
            candidates = ("skip_connect", ("test_again_double", lambda C_in, C_out, stride, affine: Double()))

        return Again

    define()
    define()  # a notebook cell run twice: same source, no error
    with pytest.raises(ValueError, match="already registered"):

        class Other(CellSupernet):
            space_name = "test_other"
            candidates = (("test_again_double", lambda C_in, C_out, stride, affine: nn.Identity()),)


def test_subclass_of_a_space_must_name_its_own_space():
    with pytest.raises(TypeError, match="without its own space_name"):

        class Wider(ToySpace):
            pass


def test_rule_that_excludes_every_candidate_is_rejected():
    class Nothing(ToySpace):
        space_name = "test_nothing"
        genotype_exclude = ("none", "skip_connect", "test_double")

    with pytest.raises(ValueError, match="leaves no candidate"):
        Nothing()
