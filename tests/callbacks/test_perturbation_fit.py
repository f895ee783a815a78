"""PerturbationSelection inside Lightning: schedule, optimizer reset, fix-α, files, resume, separate stage."""

from __future__ import annotations

import json
import math

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from dnas import DARTS
from dnas.callbacks import MagnitudeSelection, PerturbationSelection
from dnas.cells.darts import DartsSupernet
from dnas.data import DigitsDataModule

INTERVAL = 1
# A DARTS supernet cut down for CPU tests: 2 nodes per cell (5 edges; node 3 has 3 inputs -> 1 topology step),
# 3 candidate ops. 5 op steps + 1 topology step = 6 decisions -> 6 tuning epochs of 1 batch each.
OPS = ("max_pool_3x3", "skip_connect", "sep_conv_3x3")
N_DEC = 6


def _module(seed: int = 0) -> DARTS:
    torch.manual_seed(seed)
    return DARTS(DartsSupernet(init_channels=4, num_classes=10, layers=3, in_channels=1, steps=2, primitives=OPS))


def _trainer(tmp_path, max_epochs: int, callbacks, name: str = "run") -> pl.Trainer:
    return pl.Trainer(
        max_epochs=max_epochs,
        limit_train_batches=1,
        limit_val_batches=0,
        accelerator="cpu",
        devices=1,
        logger=pl.loggers.CSVLogger(tmp_path, name=name, version=0),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )


def _dm() -> DigitsDataModule:
    return DigitsDataModule(batch_size=16, eval_batch_size=32)


class Spy(Callback):
    """Records, per epoch, the weight lr, the α values and the momentum state after the selection callback acted."""

    def __init__(self):
        self.lr, self.alpha, self.momentum = {}, {}, {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        w_opt = trainer.optimizers[0]
        e = trainer.current_epoch
        self.lr[e] = w_opt.param_groups[0]["lr"]
        self.momentum[e] = len(w_opt.state)
        self.alpha[e] = pl_module.supernet.alpha("normal").detach().clone()


def _stopper(at_epoch: int) -> Callback:
    class Stop(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == at_epoch:
                trainer.should_stop = True

    return Stop()


def _cells(path) -> dict:
    """Genotype file -> {group: [(op, src, dst), ...]} (plain JSON: the 2-node test space is not the registered one)."""
    data = json.loads(path.read_text())
    return {g: [tuple(e) for e in c["edges"]] for g, c in data["cells"].items()}, data["meta"]


def test_full_selection_in_one_fit(tmp_path):
    search = 2
    sel = PerturbationSelection(interval=INTERVAL, val_subset=32, seed=3)
    mag = MagnitudeSelection(at_epoch=search - 1)
    spy = Spy()
    module = _module()
    needed = sel.tune_epochs(module.supernet)
    assert needed == N_DEC
    trainer = _trainer(tmp_path, search + needed, [sel, mag, spy])
    trainer.fit(module, datamodule=_dm())
    net = module.supernet
    log = tmp_path / "run" / "version_0"

    # every decision made once, at the scheduled epoch, and written as one JSON line each
    lines = [json.loads(s) for s in (log / "selection_decisions.jsonl").read_text().splitlines()]
    assert [d["step"] for d in lines] == list(range(N_DEC))
    assert [d["epoch"] for d in lines] == [search + k * INTERVAL for k in range(N_DEC)]
    assert lines == json.loads(json.dumps(sel.decisions))
    cells, meta = _cells(log / "genotype_perturbation.json")
    assert meta["selection"] == "perturbation" and meta["decisions"] == N_DEC
    for group in ("normal", "reduce"):
        # op steps: each edge once, all 3 ops scored, choice = the first op with the lowest accuracy without it
        ops = [r for d in lines for r in d["records"] if r["kind"] == "op" and r["group"] == group]
        assert sorted(r["edge"] for r in ops) == list(range(5))
        for r in ops:
            assert list(r["scores"]) == list(OPS)
            worst = min(v["acc"] for v in r["scores"].values())
            assert r["choice"] == next(op for op, v in r["scores"].items() if v["acc"] == worst)
        # topology step: node 3 (3 inputs) keeps 2; the removed edge had the highest accuracy when masked
        (topo,) = [r for d in lines for r in d["records"] if r["kind"] == "topology" and r["group"] == group]
        assert topo["node"] == 3 and len(topo["rounds"]) == 1
        rnd = topo["rounds"][0]
        assert rnd["live"] == [2, 3, 4]
        best = max(v["acc"] for v in rnd["scores"].values())
        assert rnd["removed"] == max(int(e) for e, v in rnd["scores"].items() if v["acc"] == best)  # ties: later
        assert net.undecided_edges(group) == [] and net.removed_edges(group) == [rnd["removed"]]
        # the final genotype = the decisions: kept edges with the op chosen for each
        chosen = {(r["src"], r["dst"]): r["choice"] for r in ops}
        kept = {(k["src"], k["dst"]) for k in topo["kept"]}
        want = {(chosen[e], *e) for e in chosen if e[1] == 2 or e in kept}
        assert set(cells[group]) == want and len(cells[group]) == 4
    # the magnitude genotype of the same supernet was written before tuning started
    _, mag_meta = _cells(log / "genotype_magnitude.json")
    assert mag_meta["selection"] == "magnitude" and mag_meta["epoch"] == search - 1

    # weight optimizer: momentum cleared once when tuning starts, lr = closed-form cosine 0.0025 -> 0.001
    assert spy.momentum[search - 1] > 0 and spy.momentum[search] == 0
    for t in range(needed):
        want = 0.001 + (0.0025 - 0.001) * (1 + math.cos(math.pi * t / needed)) / 2
        assert spy.lr[search + t] == pytest.approx(want)
    # α keeps training during tuning (paper default)
    assert not torch.equal(spy.alpha[search], spy.alpha[search + 3])


def test_too_few_epochs_is_a_clear_error(tmp_path):
    sel = PerturbationSelection(interval=5)
    trainer = _trainer(tmp_path, 10, [sel])
    with pytest.raises(ValueError, match=r"needs 26 tuning epochs .*max_epochs to search_epochs \+ 26"):
        trainer.fit(_module(), datamodule=_dm())


def test_interrupted_selection_resumes_where_it_stopped(tmp_path):
    total = 1 + N_DEC
    sel = PerturbationSelection(interval=INTERVAL, val_subset=16, seed=1)
    module = _module()
    trainer = _trainer(tmp_path, total, [sel, _stopper(3)], name="a")
    with pytest.warns(UserWarning, match="stopped after 3/6 decisions"):
        trainer.fit(module, datamodule=_dm())
    assert len(sel.decisions) == 3
    ckpt = tmp_path / "interrupted.ckpt"
    trainer.save_checkpoint(ckpt)
    before = [json.loads(json.dumps(d)) for d in sel.decisions]
    fixed = {g: module.supernet.arch["normal"].override.clone() if g == "normal" else None for g in ("normal",)}

    sel2 = PerturbationSelection(interval=INTERVAL, val_subset=16, seed=1)
    module2 = _module(seed=5)  # different init: everything must come from the checkpoint
    spy = Spy()
    trainer2 = _trainer(tmp_path, total, [sel2, spy], name="b")
    trainer2.fit(module2, datamodule=_dm(), ckpt_path=ckpt)
    assert [d["step"] for d in sel2.decisions] == list(range(N_DEC))
    assert sel2.decisions[:3] == before  # earlier decisions restored, not redone
    assert [d["epoch"] for d in sel2.decisions[3:]] == list(range(4, 1 + N_DEC))
    assert sel2.order == sel.order
    assert spy.momentum[4] > 0  # the optimizer is not reset a second time
    decided = [r["edge"] for d in before for r in d["records"] if r["group"] == "normal"]
    for e in decided:  # decisions taken before the interruption stay in the supernet's buffers
        assert torch.equal(module2.supernet.arch["normal"].override[e], fixed["normal"][e])
    assert (tmp_path / "b" / "version_0" / "genotype_perturbation.json").is_file()


def test_separate_stage_from_a_trained_supernet(tmp_path):
    # stage 1: plain search, no selection callback
    module = _module()
    _trainer(tmp_path, 1, [], name="search").fit(module, datamodule=_dm())
    state_file = tmp_path / "supernet.pt"
    torch.save(module.supernet.state_dict(), state_file)
    # stage 2: a fresh fit that only tunes and selects, initialised from the file
    # ... with the fix-α variant and the fixed edge order
    sel = PerturbationSelection(
        interval=INTERVAL, val_subset=32, init_from=str(state_file), edge_order="fixed", train_alpha=False
    )
    spy = Spy()
    fresh = _module(seed=9)
    expected_base = None

    class Probe(Callback):
        def on_train_start(self, trainer, pl_module):
            nonlocal expected_base
            from dnas.callbacks.evaluation import SupernetEvaluator

            got = pl_module.supernet.state_dict()
            for k, v in module.supernet.state_dict().items():
                assert torch.equal(got[k], v), k
            expected_base = SupernetEvaluator(pl_module.supernet, _dm_val(), 32)()

    trainer = _trainer(tmp_path, N_DEC, [sel, Probe(), spy], name="select")
    trainer.fit(fresh, datamodule=_dm())
    # fix-α: α never moves during tuning; fixed order: edges, then nodes, in index order
    assert not fresh.arch_updates_enabled
    assert torch.equal(spy.alpha[0], module.supernet.alpha("normal").detach())
    assert torch.equal(fresh.supernet.alpha("normal").detach(), module.supernet.alpha("normal").detach())
    ops = [r["edge"] for d in sel.decisions for r in d["records"] if r["kind"] == "op" and r["group"] == "normal"]
    assert ops == list(range(5))
    assert sel.resolved_start == 0 and len(sel.decisions) == N_DEC
    first = sel.decisions[0]["records"][0]["base"]
    assert (first["acc"], first["loss"]) == pytest.approx(expected_base)


def _dm_val():
    dm = _dm()
    dm.setup()
    return dm.val_dataloader()
