"""Perturbation-based selection (DARTS-PT) against constructed supernets whose right answer is known by design."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from dnas.callbacks.evaluation import SupernetEvaluator, load_supernet_state
from dnas.callbacks.magnitude import magnitude_genotype
from dnas.callbacks.projection import num_decisions, project_op, project_topology, topology_nodes
from dnas.cells.base import Supernet, argmax_cell, topk_cell
from dnas.cells.edges import DagCell
from dnas.genotypes import CellSpec, Genotype, SpaceSpec

D = 4  # features = classes; the label is the argmax of the features
OPS = ("dead", "signal", "noise")


class _Dead(nn.Module):
    def forward(self, x):  # contributes nothing to the output, whatever its weight
        return torch.zeros_like(x)


class _Noise(nn.Module):
    def __init__(self, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("m", 3.0 * torch.randn(D, D, generator=g))

    def forward(self, x):  # a fixed random mixing: destroys the label information
        return x @ self.m


class _Edge(nn.Module):
    def __init__(self, seed: int):
        super().__init__()
        self.ops = nn.ModuleList([_Dead(), nn.Identity(), _Noise(seed)])

    def forward(self, x, w):
        return sum(wk * op(x) for wk, op in zip(w, self.ops))


class ToyNet(Supernet):
    """A 1-input DAG cell over ``edges``; logits = the last node. ``k``: the genotype rule's inputs per node."""

    def __init__(self, edges, num_nodes: int, k: int | None):
        super().__init__()
        self.k = k
        self.dag = DagCell(1, num_nodes, edges, lambda s, d: _Edge(seed=10 * s + d), output="last")
        self.add_arch_group("cell", edges, OPS)
        cell = CellSpec(ops=OPS, num_inputs=1, num_nodes=num_nodes, edges_per_node=k)
        self.space_spec = SpaceSpec("toy", {"cell": cell})
        self.bn = nn.BatchNorm1d(D, affine=False)  # running stats must survive measurements untouched

    def forward(self, x, weights=None):
        weights = self.edge_weights() if weights is None else weights
        return self.dag([x], weights["cell"]) + 0.0 * self.bn(x)

    def genotype(self, weights=None):
        weights = self.selection_weights() if weights is None else weights
        group = self.arch_groups["cell"]
        if self.k is None:
            return Genotype("toy", {"cell": argmax_cell(weights["cell"], group)})
        return Genotype("toy", {"cell": topk_cell(weights["cell"], group, k=self.k, exclude=())})


def _data(n: int = 256, seed: int = 0):
    x = torch.randn(n, D, generator=torch.Generator().manual_seed(seed))
    return x, x.argmax(-1)


def _loader(n: int = 256, bs: int = 64):
    x, y = _data(n)
    return [(x[i : i + bs], y[i : i + bs]) for i in range(0, n, bs)]


def _set_alpha(net: ToyNet, rows):
    with torch.no_grad():
        net.alpha("cell").copy_(torch.tensor(rows, dtype=torch.float32))


# ---------------------------------------------------------------------------------------------------------- evidence
def test_magnitude_picks_large_useless_op_perturbation_picks_the_signal():
    net = ToyNet([(0, 1)], num_nodes=1, k=None)
    _set_alpha(net, [[3.0, 0.0, -1.0]])  # "dead" dominates α; "signal" gets 5 % of the weight
    evaluate = SupernetEvaluator(net, _loader())
    assert magnitude_genotype(net).cells["cell"].edges[0].op == "dead"
    record = project_op(net, "cell", 0, evaluate)
    assert record["choice"] == "signal"
    # the scores that justify it: removing the signal is the only removal that hurts
    s = record["scores"]
    assert s["signal"]["acc"] < s["dead"]["acc"] - 0.3
    assert s["dead"]["acc"] == pytest.approx(record["base"]["acc"])
    assert net.genotype().cells["cell"].edges[0].op == "signal"  # the edge is now one-hot on the choice
    assert net.undecided_edges("cell") == []
    w = net.edge_weights()["cell"][0]
    assert torch.equal(w, torch.tensor([0.0, 1.0, 0.0]))


def test_loss_criterion_agrees_on_the_constructed_net():
    net = ToyNet([(0, 1)], num_nodes=1, k=None)
    _set_alpha(net, [[3.0, 0.0, -1.0]])
    record = project_op(net, "cell", 0, SupernetEvaluator(net, _loader()), crit="loss")
    assert record["choice"] == "signal"
    assert record["scores"]["signal"]["loss"] == max(v["loss"] for v in record["scores"].values())


def test_topology_keeps_the_edge_that_carries_the_signal():
    # node 2 reads node 0 (edge 1) and node 1 (edge 2); the rule keeps 1 input per node
    net = ToyNet([(0, 1), (0, 2), (1, 2)], num_nodes=2, k=1)
    _set_alpha(net, [[0.0, 1.0, 0.0], [0.0, 0.0, 5.0], [0.0, 0.1, 0.0]])
    assert topology_nodes(net, "cell") == [2]
    # magnitude: the strong "noise" α on 0->2 wins node 2
    mag = magnitude_genotype(net).cells["cell"]
    assert [(e.op, e.src) for e in mag.inputs_of(2)] == [("noise", 0)]
    evaluate = SupernetEvaluator(net, _loader())
    for edge, op in ((0, 1), (1, 2), (2, 1)):  # discretise: 0->1 signal, 0->2 noise, 1->2 signal
        net.fix_edge("cell", edge, op)
    record = project_topology(net, "cell", 2, 1, evaluate)
    assert [r["removed"] for r in record["rounds"]] == [1]
    assert record["kept"] == [{"edge": 2, "src": 1, "dst": 2}]
    assert net.removed_edges("cell") == [1]
    cell = net.genotype().cells["cell"]
    assert [(e.op, e.src) for e in cell.inputs_of(2)] == [("signal", 1)]
    assert evaluate()[0] == 1.0  # the derived network is the identity: perfect on argmax labels


def test_ties_follow_the_reference():
    net = ToyNet([(0, 1), (0, 2), (1, 2)], num_nodes=2, k=1)

    def constant():
        return 0.5, 1.0

    # op ties -> lowest op index among candidates (strict <); excluded ops are never chosen
    assert project_op(net, "cell", 0, constant)["choice"] == "dead"
    assert project_op(net, "cell", 1, constant, exclude=["dead"])["choice"] == "signal"
    # topology ties -> the later edge is removed
    record = project_topology(net, "cell", 2, 1, constant)
    assert record["rounds"][0]["removed"] == 2 and record["kept"][0]["edge"] == 1


def test_op_with_no_candidate_left_is_a_clear_error():
    net = ToyNet([(0, 1)], num_nodes=1, k=None)
    with pytest.raises(ValueError, match="no candidate left"):
        project_op(net, "cell", 0, lambda: (0.0, 0.0), exclude=list(OPS))


def test_evaluator_matches_a_direct_computation_and_restores_bn():
    net = ToyNet([(0, 1)], num_nodes=1, k=None)
    _set_alpha(net, [[0.0, 1.0, 0.5]])
    before = {n: b.clone() for n, b in net.named_buffers()}
    acc, loss = SupernetEvaluator(net, _loader(256, 64), subset=100)()
    for n, b in net.named_buffers():
        assert torch.equal(b, before[n]), n  # BN stats (train-mode forwards) restored
    x, y = _data(256)
    with torch.no_grad():
        logits = net(x[:100])
    assert acc == pytest.approx(float((logits.argmax(-1) == y[:100]).float().mean()))
    assert loss == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y[:100])), rel=1e-5)
    # DDP layout: ranks take disjoint batches covering the subset exactly once
    parts = [SupernetEvaluator(net, _loader(256, 64), subset=150, world_size=2, rank=r) for r in (0, 1)]
    accs = [p() for p in parts]
    # 150 samples = batches of 64, 64, 22: rank 0 measures batches 0 and 2 (86 samples), rank 1 batch 1 (64)
    full = SupernetEvaluator(net, _loader(256, 64), subset=150)()
    assert (accs[0][0] * 86 + accs[1][0] * 64) / 150 == pytest.approx(full[0])


def test_num_decisions_darts_and_nb201_shapes():
    # DARTS: 14 edges, nodes 3..5 have > 2 inputs -> 14 + 3 decisions (ruocwang/darts-pt: 16 tuning intervals + 1)
    from dnas.cells.darts import DartsSupernet

    darts = DartsSupernet(init_channels=2, layers=1, in_channels=1)
    assert num_decisions(darts) == 17
    assert topology_nodes(darts, "normal") == [3, 4, 5]
    # a space without a topology rule (edges_per_node None): only op steps
    assert num_decisions(ToyNet([(0, 1), (0, 2), (1, 2)], num_nodes=2, k=None)) == 3


def test_load_supernet_state_formats(tmp_path):
    from dnas.cells.darts import DartsSupernet

    src = DartsSupernet(init_channels=2, layers=1, in_channels=1)
    ours = tmp_path / "ours.pt"
    torch.save(src.state_dict(), ours)
    ref = {}
    for k, v in src.state_dict().items():
        if k in src.selection_buffer_names():
            continue
        if k.startswith("arch."):  # arch.<group>.alpha -> the reference's alphas_<group>
            ref["alphas_" + k.split(".")[1]] = v
        else:
            ref[k.replace(".dag.edges.", "._ops.")] = v
    reference = tmp_path / "ref.pt"
    torch.save(ref, reference)
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"supernet." + k: v for k, v in src.state_dict().items()}, "epoch": 3}, ckpt)
    for path in (ours, reference, ckpt):
        dst = DartsSupernet(init_channels=2, layers=1, in_channels=1)
        load_supernet_state(dst, path)
        got = dst.state_dict()
        for k, v in src.state_dict().items():
            assert torch.equal(got[k], v), (path.name, k)
    bad = tmp_path / "bad.pt"
    torch.save({"nope": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="does not fit"):
        load_supernet_state(DartsSupernet(init_channels=2, layers=1, in_channels=1), bad)


def test_decisions_are_json():
    net = ToyNet([(0, 1), (0, 2), (1, 2)], num_nodes=2, k=1)
    ev = SupernetEvaluator(net, _loader(64))
    recs = [project_op(net, "cell", e, ev) for e in range(3)] + [project_topology(net, "cell", 2, 1, ev)]
    assert json.loads(json.dumps(recs)) == recs
