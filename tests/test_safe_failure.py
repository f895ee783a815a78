"""Safe failure: non-finite values stop the run with a clear error (or skip the batch), writes are atomic."""

import os

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from dnas import DARTS
from dnas.cells.darts import DartsSupernet
from dnas.data import DigitsDataModule
from dnas.io import AtomicCheckpointIO, atomic_torch_save, atomic_write_text


class PoisonedDARTS(DARTS):
    """DARTS whose training images turn to NaN from epoch ``poison_epoch`` on (a diverging run)."""

    poison_epoch = 1

    def weight_loss(self, x, y):
        if self.current_epoch >= self.poison_epoch:
            x = torch.full_like(x, float("nan"))
        return super().weight_loss(x, y)


def _trainer(tmp_path, **kw):
    return pl.Trainer(
        max_epochs=3,
        limit_train_batches=2,
        limit_val_batches=1,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
        plugins=[AtomicCheckpointIO()],
        callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)],
        **kw,
    )


def _model(**kw):
    torch.manual_seed(0)
    return PoisonedDARTS(DartsSupernet(init_channels=4, num_classes=10, layers=3, in_channels=1), **kw)


def test_nonfinite_loss_stops_with_named_term_and_keeps_last_checkpoint(tmp_path):
    model = _model()
    trainer = _trainer(tmp_path)
    with pytest.raises(FloatingPointError, match=r"non-finite weight loss .*epoch 1, batch 0") as err:
        trainer.fit(model, datamodule=DigitsDataModule(batch_size=16))
    assert "on_nonfinite='skip'" in str(err.value)
    last = tmp_path / "ckpt" / "last.ckpt"
    assert "epoch 1, batch 0, in the weight step;" in str(err.value)
    assert f"the last checkpoint ({last}) is kept" in str(err.value)
    assert "architecture" not in str(err.value)
    state = torch.load(last, map_location="cpu", weights_only=False)  # our own file, written by this test
    assert state["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point())
    assert not [p for p in (tmp_path / "ckpt").iterdir() if p.name.endswith(".tmp")]


def test_nonfinite_before_any_checkpoint_does_not_claim_one_is_kept(tmp_path):
    model = _model()
    model.poison_epoch = 0
    with pytest.raises(FloatingPointError, match=r"non-finite weight loss .*epoch 0, batch 0, in the weight step") as e:
        _trainer(tmp_path).fit(model, datamodule=DigitsDataModule(batch_size=16))
    assert "no checkpoint has been written yet" in str(e.value)
    assert "is kept" not in str(e.value)
    assert not (tmp_path / "ckpt").exists()


class _NanGrad(torch.autograd.Function):
    """Identity forward, NaN gradient backward: a backward that overflows while the loss stays finite."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, float("nan"))


class NanGradDARTS(DARTS):
    """DARTS whose weight-step gradient is NaN from epoch 1 on (the loss is finite)."""

    def weight_loss(self, x, y):
        loss, logits, extra = super().weight_loss(x, y)
        if self.current_epoch >= 1:
            loss = _NanGrad.apply(loss)
        return loss, logits, extra


def test_nonfinite_weight_gradient_is_blamed_on_the_weight_step(tmp_path):
    torch.manual_seed(0)
    model = NanGradDARTS(DartsSupernet(init_channels=4, num_classes=10, layers=3, in_channels=1))
    with pytest.raises(FloatingPointError) as err:
        _trainer(tmp_path).fit(model, datamodule=DigitsDataModule(batch_size=16))
    msg = str(err.value)
    # before: the weights silently became NaN, and the next batch failed with "non-finite architecture loss"
    assert msg.startswith("non-finite weight gradient (norm) (nan) at epoch 1, batch 0, in the weight step;"), msg
    assert f"the last checkpoint ({tmp_path / 'ckpt' / 'last.ckpt'}) is kept" in msg
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the update was not applied


class _BreakWeight(pl.Callback):
    """Make one weight NaN before batch 1 of epoch 1, as an earlier diverged update would."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx == 1:
            with torch.no_grad():
                pl_module.supernet.classifier.weight.fill_(float("nan"))


def test_nonfinite_architecture_loss_names_the_nonfinite_weight_behind_it(tmp_path):
    torch.manual_seed(0)
    model = DARTS(DartsSupernet(init_channels=4, num_classes=10, layers=3, in_channels=1))
    trainer = _trainer(tmp_path)
    trainer.callbacks.append(_BreakWeight())
    with pytest.raises(FloatingPointError) as err:
        trainer.fit(model, datamodule=DigitsDataModule(batch_size=16))
    msg = str(err.value)
    assert msg.startswith("non-finite architecture loss (nan) at epoch 1, batch 1, in the architecture step"), msg
    assert "weight supernet.classifier.weight was already non-finite" in msg


def test_nonfinite_skip_option_drops_batches_and_keeps_weights_finite(tmp_path):
    model = _model(on_nonfinite="skip")
    trainer = _trainer(tmp_path)
    trainer.fit(model, datamodule=DigitsDataModule(batch_size=16))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert trainer.callback_metrics["nonfinite_skipped"] > 0


def test_atomic_write_leaves_previous_file_on_crash(tmp_path, monkeypatch):
    path = tmp_path / "genotype.json"
    atomic_write_text(path, "old")

    def exploding_write(f):
        f.write(b"half of the new cont")
        raise OSError("disk full")

    from dnas import io as dio

    with pytest.raises(OSError, match="disk full"):
        dio._atomic(path, exploding_write)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["genotype.json"]

    ckpt = tmp_path / "model.ckpt"
    atomic_torch_save({"a": torch.ones(2)}, ckpt)
    monkeypatch.setattr(torch, "save", lambda obj, f: (f.write(b"garbage"), (_ for _ in ()).throw(RuntimeError("x"))))
    with pytest.raises(RuntimeError):
        atomic_torch_save({"a": torch.zeros(2)}, ckpt)
    monkeypatch.undo()
    assert torch.equal(torch.load(ckpt, weights_only=True)["a"], torch.ones(2))
