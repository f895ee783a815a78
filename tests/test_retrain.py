"""dnas.Retrain: a few steps on digits, the recipe (aux loss, drop-path ramp, schedules), export of the result."""

import json

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from dnas import Retrain
from dnas.data import DigitsDataModule

SMALL = {"init_channels": 4, "layers": 3}  # the DARTS evaluation network, shrunk


def trainer(tmp_path, **kw):
    kw.setdefault("max_epochs", 2)
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        limit_train_batches=3,
        limit_val_batches=2,
        logger=pl.loggers.CSVLogger(tmp_path, name="r"),
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **kw,
    )


def test_retrain_on_digits_then_export_checkpoint(tmp_path, capsys):
    pl.seed_everything(0)
    model = Retrain(
        "DARTS_V2", options=dict(init_channels=4, layers=3), in_channels=1, auxiliary=False, drop_path_prob=0.2
    )
    before = {k: v.clone() for k, v in model.model.state_dict().items()}
    t = trainer(tmp_path)
    t.fit(model, DigitsDataModule(batch_size=32, search=False))
    after = model.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    metrics = t.callback_metrics
    assert torch.isfinite(metrics["train/loss_epoch"]) and "val/acc" in metrics
    # drop-path ramp: epoch e uses p·e/epochs (the reference's linear schedule)
    assert model.model.drop_path_prob == pytest.approx(0.2 * 1 / 2)
    summary = json.loads((tmp_path / "r" / "version_0" / "summary.json").read_text())
    assert summary["parameters"] == sum(p.numel() for p in model.model.parameters())
    assert summary["input_shape"] == [1, 1, 8, 8] and summary["flops"] > 0
    # the checkpoint reads with weights_only=True and exports with its own genotype and options
    ckpt_path = tmp_path / "last.ckpt"
    t.save_checkpoint(ckpt_path)
    ckpt = torch.load(ckpt_path, weights_only=True)
    assert ckpt["dnas_genotype"]["space"] == "darts" and ckpt["hyper_parameters"]["genotype"] == "DARTS_V2"
    from dnas.cli import main

    main(["export", "--ckpt", str(ckpt_path), "--out", str(tmp_path / "exp"), "--input-size", "8", "8"])
    weights = torch.load(tmp_path / "exp" / "weights.pt", weights_only=True)
    assert all(torch.equal(weights[k], v) for k, v in model.model.state_dict().items())


def test_training_step_adds_weighted_auxiliary_loss():
    torch.manual_seed(0)
    model = Retrain("DARTS_V2", options=SMALL, auxiliary=True, auxiliary_weight=0.4, label_smoothing=0.1)
    model.log = lambda *a, **k: None
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    model.train()
    torch.manual_seed(1)
    loss = model.training_step((x, y), 0)
    torch.manual_seed(1)
    logits, aux = model.model.forward_with_aux(x)
    expected = F.cross_entropy(logits, y, label_smoothing=0.1) + 0.4 * F.cross_entropy(aux, y, label_smoothing=0.1)
    torch.testing.assert_close(loss, expected)
    with pytest.raises(TypeError, match="search: false"):
        model.training_step({"train": (x, y), "arch": (x, y)}, 0)


def test_schedules_and_recipe_defaults():
    m = Retrain("DARTS_V2", options=SMALL)
    hp = m.hparams
    assert (hp.lr, hp.momentum, hp.weight_decay, hp.auxiliary_weight, hp.drop_path_prob, hp.grad_clip) == (
        0.025,
        0.9,
        3e-4,
        0.4,
        0.2,
        5.0,
    )
    assert hp.lr_schedule == "cosine" and hp.lr_min == 0.0 and hp.auxiliary and m.model.auxiliary
    step = Retrain("DARTS_V2", options=SMALL, lr=0.1, lr_schedule="step", step_gamma=0.97)
    conf = step.configure_optimizers()
    sched = conf["lr_scheduler"]["scheduler"]
    assert isinstance(sched, torch.optim.lr_scheduler.StepLR) and sched.gamma == 0.97
    for _ in range(2):
        conf["optimizer"].step()
        sched.step()
    assert conf["optimizer"].param_groups[0]["lr"] == pytest.approx(0.1 * 0.97**2)
    with pytest.raises(ValueError, match="lr_schedule"):
        Retrain("DARTS_V2", lr_schedule="linear")


def test_datamodule_mismatch_is_named(tmp_path):
    model = Retrain("DARTS_V2", options=SMALL, in_channels=3, auxiliary=False)
    with pytest.raises(ValueError, match="in_channels=1.*in_channels: 1"):
        trainer(tmp_path, max_epochs=1).fit(model, DigitsDataModule(batch_size=32, search=False))


def test_gradient_clipping_uses_the_recipe_norm():
    calls = []
    m = Retrain("DARTS_V2", options=SMALL)
    m.clip_gradients = lambda opt, gradient_clip_val=None, gradient_clip_algorithm=None: calls.append(
        (gradient_clip_val, gradient_clip_algorithm)
    )
    m.configure_gradient_clipping(None, 1.0, "value")
    off = Retrain("DARTS_V2", options=SMALL, grad_clip=0.0)
    off.clip_gradients = m.clip_gradients
    off.configure_gradient_clipping(None, 1.0, "value")  # 0 defers to the Trainer's setting
    assert calls == [(5.0, "norm"), (1.0, "value")]
