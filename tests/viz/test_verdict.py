"""The α verdict on hand-built weights: uniform, decided, `none`-dominated, never moved; and at the end of a fit."""

import math

import numpy as np
import pytest
import pytorch_lightning as pl
from pytorch_lightning.loggers import CSVLogger

import dnas
from dnas.callbacks import AlphaPlots
from dnas.cells.fbnet import FBNetSupernet
from dnas.data import DigitsDataModule
from dnas.genotypes import CellGenotype, Edge, Genotype
from dnas.viz.alpha import GroupInfo
from dnas.viz.verdict import verdict, verdict_table

OPS = ("none", "skip", "conv_a", "conv_b")  # K = 4, uniform weight 0.25
EDGES = ((0, 1), (0, 2), (1, 2))
GROUPS = {"cell": GroupInfo("cell", EDGES, OPS)}


def genotype(ops):
    return Genotype("hand", {"cell": CellGenotype(tuple(Edge(op, s, d) for op, (s, d) in zip(ops, EDGES)), (2,))})


def softmax(logits):
    e = np.exp(np.asarray(logits, dtype=np.float64))
    return e / e.sum(-1, keepdims=True)


def test_uniform_alpha_is_noise_level_and_warns():
    w = np.full((3, 4), 0.25)
    w[:, 2] += 1e-3  # the argmax is a tie-break of noise
    v = verdict(genotype(["conv_a"] * 3), {"cell": w}, GROUPS)
    cell = v.cells[0]
    assert cell.status == v.status == "noise-level" and cell.num_decided == 0
    assert cell.mean_entropy == pytest.approx(math.log(4), rel=1e-5)
    e = cell.edges[0]
    assert e.times_uniform == pytest.approx(1.0, abs=0.01) and abs(e.margin) < 2e-3
    assert "noise-level" in v.warning() and "decided edges: 'cell' 0 of 3)" in v.warning()
    header, rows = verdict_table(v)
    assert len(rows) == 3 and rows[0][-1] == "undecided" and header[2] == "chosen op"
    strict = verdict(genotype(["conv_a"] * 3), {"cell": w}, GROUPS, factor=3.0, quorum=0.75)
    assert "fewer than 75% of the kept edges have their chosen op at >= 3x the uniform weight" in strict.warning()


def test_decided_alpha_has_margin_and_no_warning():
    # chosen op at logit 2 over three at 0: weight e^2/(e^2+3) = 0.711 = 2.84x uniform
    w = softmax([[0, 0, 2, 0], [0, 0, 0, 2], [0, 0, 2, 0]])
    v = verdict(genotype(["conv_a", "conv_b", "conv_a"]), {"cell": w}, GROUPS, initial={"cell": np.full((3, 4), 0.25)})
    cell = v.cells[0]
    want = math.exp(2) / (math.exp(2) + 3)
    assert cell.status == "decided" and cell.num_decided == 3 and cell.moved is True
    assert cell.edges[0].weight == pytest.approx(want)
    assert cell.edges[0].margin == pytest.approx(want - 1 / (math.e**2 + 3))
    p = np.array([want] + [1 / (math.exp(2) + 3)] * 3)
    assert cell.edges[1].entropy == pytest.approx(float(-(p * np.log(p)).sum()))
    assert v.warning() is None and not v.none_edges()
    # two decided edges of three is still "most"; one of three is not
    w2 = w.copy()
    w2[1] = 0.25
    assert verdict(genotype(["conv_a", "conv_b", "conv_a"]), {"cell": w2}, GROUPS).status == "decided"
    w2[2] = 0.25
    assert verdict(genotype(["conv_a", "conv_b", "conv_a"]), {"cell": w2}, GROUPS).status == "noise-level"


def test_none_dominated_kept_edge_is_named():
    # the DARTS rule skips `none`; here it holds 0.5 while the kept conv_a has 0.2
    w = softmax([[0, 0, 3, 0], [0, 0, 0, 3], [3, 0, 0, 0]])
    w[2] = [0.5, 0.1, 0.2, 0.2]
    v = verdict(genotype(["conv_a", "conv_b", "conv_a"]), {"cell": w}, GROUPS)
    [(cell, e)] = v.none_edges()
    assert (cell, e.src, e.dst, e.op) == ("cell", 1, 2, "conv_a") and e.none_weight == pytest.approx(0.5)
    assert e.runner_up == "none" and e.margin == pytest.approx(-0.3)
    assert any("'none' (0.500) outweighs every real op" in line and "1->2" in line for line in v.lines())
    assert "outweighs" in verdict_table(v)[1][2][-1]
    assert v.status == "decided" and v.warning() is None  # 2 of 3 edges decided
    w[1] = [0.6, 0.1, 0.1, 0.2]
    v = verdict(genotype(["conv_a", "conv_b", "conv_a"]), {"cell": w}, GROUPS)
    assert v.status == "noise-level" and "on 2 kept edge(s) 'none' outweighs every real op" in v.warning()


def test_never_moved_and_fixed_and_removed_edges():
    w = softmax(np.random.default_rng(0).normal(0, 1e-3, (3, 4)))
    g = genotype(["conv_a", "conv_b", "skip"])
    v = verdict(g, {"cell": w}, GROUPS, initial={"cell": w.copy()})
    assert v.status == "never moved" and v.cells[0].moved is False
    line = v.warning("all 1 epoch(s) of this run were the architecture warm-up")
    assert line.startswith("α never trained (all 1 epoch(s)") and "random draw" in line
    # a one-hot row (fixed by DARTS-PT) is decided whatever its size; an all-zero row (removed) is not a kept edge
    fixed = np.array([[0, 0, 1.0, 0], [0, 0, 0, 0], [0, 0.3, 0, 0]])
    v = verdict(g, {"cell": fixed}, GROUPS)
    assert [e.fixed for e in v.cells[0].edges] == [True, True] and v.status == "decided"


def test_fit_with_only_warmup_says_alpha_never_trained(tmp_path, caplog):
    """FBNet quickstart-style: one epoch, one warm-up epoch: the log and report say α never trained."""
    pl.seed_everything(0)
    net = FBNetSupernet(num_classes=10, in_channels=1, input_size=8, width_mult=0.25, head_channels=16, stem_stride=1)
    model = dnas.FBNet(net, arch_warmup_epochs=1)
    cb = AlphaPlots(dpi=30, tensorboard=False, measure_latency=False)
    trainer = pl.Trainer(
        max_epochs=1, limit_train_batches=1, limit_val_batches=1, logger=CSVLogger(tmp_path), callbacks=[cb],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    with pytest.warns(UserWarning, match=r"α never trained \(all 1 epoch\(s\) .*warm-up, arch_warmup_epochs=1\)"):
        trainer.fit(model, DigitsDataModule(batch_size=16))
    md = (tmp_path / "lightning_logs" / "version_0" / "report.md").read_text()
    assert "## How decided is α" in md and "Warning: α never trained" in md and "Overall: never moved" in md
