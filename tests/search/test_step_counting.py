"""``trainer.global_step`` counts training batches for the search modules (two optimizers, one step per batch)."""

import pytest
import pytorch_lightning as pl
import torch

import dnas
from dnas.cells.darts import DartsSupernet
from dnas.cells.edges import EdgeOptions
from dnas.data import DigitsDataModule


class CountBatches(pl.Callback):
    def __init__(self):
        self.batches = 0
        self.steps: list[int] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.batches += 1
        self.steps.append(trainer.global_step)


def _module(kind: str, **kw) -> dnas.DARTS:
    torch.manual_seed(0)
    net = DartsSupernet(
        init_channels=2, num_classes=10, layers=2, in_channels=1, edge_options=EdgeOptions(mixed_op_impl="naive")
    )
    return {"darts": dnas.DARTS, "unrolled": dnas.DARTS, "sddarts": dnas.SDDARTS}[kind](
        net, unrolled=kind == "unrolled", **kw
    )


def _trainer(tmp_path, *callbacks, **limits) -> pl.Trainer:
    """A quiet CPU Trainer stopped by ``limits``; no validation, logger or checkpoints unless ``limits`` set them."""
    quiet = dict(limit_val_batches=0, accelerator="cpu", logger=False, enable_checkpointing=False)
    return pl.Trainer(
        **(quiet | limits),
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
        default_root_dir=tmp_path,
    )


@pytest.mark.parametrize("kind", ["darts", "unrolled", "sddarts"])
def test_max_steps_means_batches(tmp_path, kind):
    count = CountBatches()
    model = _module(kind)
    alpha0 = [p.detach().clone() for p in model.supernet.arch_parameters()]
    trainer = _trainer(tmp_path, count, max_steps=5)
    trainer.fit(model, DigitsDataModule(batch_size=8))
    assert count.batches == 5 and trainer.global_step == 5
    assert count.steps == [1, 2, 3, 4, 5]  # one per batch, the architecture step included
    assert any(not torch.equal(a, p) for a, p in zip(alpha0, model.supernet.arch_parameters()))  # α did move


def test_step_count_is_the_same_during_and_after_the_architecture_warm_up(tmp_path):
    count = CountBatches()
    trainer = _trainer(tmp_path, count, max_epochs=2, limit_train_batches=3)
    trainer.fit(_module("darts", arch_warmup_epochs=1), DigitsDataModule(batch_size=8))
    assert count.steps == [1, 2, 3, 4, 5, 6]


def test_every_n_train_steps_checkpoints_count_batches(tmp_path):
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=2, save_top_k=-1, filename="{step}")
    trainer = _trainer(tmp_path, ckpt, max_epochs=1, limit_train_batches=4, enable_checkpointing=True)
    trainer.fit(_module("darts"), DigitsDataModule(batch_size=8))
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == ["step=2.ckpt", "step=4.ckpt"]
