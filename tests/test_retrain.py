"""dnas.Retrain: a few steps on digits, the recipe (aux loss, drop-path ramp, schedules), export of the result."""

import functools
import inspect
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


def test_optimizer_and_schedule_defaults_are_the_darts_recipe_and_configurable():
    m = Retrain("DARTS_V2", options=SMALL)
    assert (m.hparams.auxiliary_weight, m.hparams.drop_path_prob, m.hparams.auxiliary) == (0.4, 0.2, True)
    conf = m.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert isinstance(opt, torch.optim.SGD) and conf["lr_scheduler"]["interval"] == "epoch"
    assert (opt.defaults["lr"], opt.defaults["momentum"], opt.defaults["weight_decay"]) == (0.025, 0.9, 3e-4)
    assert isinstance(sched, torch.optim.lr_scheduler.CosineAnnealingLR) and sched.eta_min == 0.0
    # the ImageNet recipe: SGD 0.1 / 3e-5, StepLR γ 0.97 every epoch; any torch optimizer and schedule plug in
    step = Retrain(
        "DARTS_V2",
        options=SMALL,
        optimizer=functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=3e-5),
        lr_scheduler=functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.97),
    )
    conf = step.configure_optimizers()
    sched = conf["lr_scheduler"]["scheduler"]
    assert isinstance(sched, torch.optim.lr_scheduler.StepLR) and sched.gamma == 0.97
    for _ in range(2):
        conf["optimizer"].step()
        sched.step()
    assert conf["optimizer"].param_groups[0]["lr"] == pytest.approx(0.1 * 0.97**2)
    adam = Retrain("DARTS_V2", options=SMALL, optimizer=torch.optim.Adam).configure_optimizers()["optimizer"]
    assert isinstance(adam, torch.optim.Adam)


def test_datamodule_mismatch_is_named(tmp_path):
    model = Retrain("DARTS_V2", options=SMALL, in_channels=3, auxiliary=False)
    with pytest.raises(ValueError, match="in_channels=1.*in_channels: 1"):
        trainer(tmp_path, max_epochs=1).fit(model, DigitsDataModule(batch_size=32, search=False))


def test_gradient_clipping_is_the_trainers_one_setting(tmp_path):
    """The Trainer's gradient_clip_val clips (no second setting in the module overrides it)."""
    norms = []

    class Watch(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            def record(optimizer, args, kwargs):  # the gradients the update uses, after Lightning's clipping
                grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
                norms.append(float(torch.nn.utils.get_total_norm(grads)))

            for optimizer in trainer.optimizers:
                optimizer.register_step_pre_hook(record)

    assert "grad_clip" not in inspect.signature(Retrain).parameters
    pl.seed_everything(0)
    model = Retrain("DARTS_V2", options=dict(init_channels=4, layers=3), in_channels=1, auxiliary=False)
    t = trainer(tmp_path, max_epochs=1, gradient_clip_val=1e-3, callbacks=[Watch()])
    t.fit(model, DigitsDataModule(batch_size=32, search=False))
    assert norms and all(n <= 1e-3 * (1 + 1e-4) for n in norms)


def test_timm_extras_are_off_by_default_so_the_recipe_stays_exact():
    m = Retrain("DARTS_V2", options=SMALL)
    assert m.mixup is None and m.ema is None
    assert (m.hparams.ema_decay, m.hparams.mixup_alpha, m.hparams.cutmix_alpha) == (0.0, 0.0, 0.0)


def test_model_ema_is_timms_moving_average_and_is_checkpointed_apart_from_the_weights():
    m = Retrain("DARTS_V2", options=SMALL, ema_decay=0.75)
    old = {k: v.clone() for k, v in m.ema.module.state_dict().items()}
    with torch.no_grad():
        for p in m.model.parameters():
            p.add_(1.0)
    m.on_train_batch_end(None, None, 0)
    new = m.model.state_dict()
    for k, v in m.ema.module.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, 0.75 * old[k] + 0.25 * new[k])
    assert all(k.startswith("model.") or "acc" in k or "top5" in k for k in m.state_dict())  # exports read model.*
    ckpt = {}
    m.on_save_checkpoint(ckpt)
    other = Retrain("DARTS_V2", options=SMALL, ema_decay=0.75)
    other.on_load_checkpoint(ckpt)
    assert all(torch.equal(v, ckpt["dnas_ema"][k]) for k, v in other.ema.module.state_dict().items())


def test_mixup_cutmix_train_on_timms_mixed_soft_targets():
    import numpy as np
    from timm.data import Mixup
    from timm.loss import SoftTargetCrossEntropy

    m = Retrain("DARTS_V2", options=SMALL, auxiliary=False, mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1)
    m.log = lambda *a, **k: None
    m.train()
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    np.random.seed(0), torch.manual_seed(0)
    loss = m.training_step((x.clone(), y.clone()), 0)  # timm's Mixup mixes the batch in place
    np.random.seed(0), torch.manual_seed(0)
    xm, ym = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=10)(x.clone(), y.clone())
    torch.testing.assert_close(loss, SoftTargetCrossEntropy()(m.model(xm), ym))
    assert not torch.allclose(loss, F.cross_entropy(m.model(x), y, label_smoothing=0.1))


def test_ema_and_mixup_run_through_the_trainer(tmp_path):
    pl.seed_everything(0)
    model = Retrain(
        "DARTS_V2", options=dict(init_channels=4, layers=3), in_channels=1, auxiliary=False, ema_decay=0.9,
        mixup_alpha=0.2,
    )  # fmt: skip
    t = trainer(tmp_path, max_epochs=1)
    t.fit(model, DigitsDataModule(batch_size=32, search=False))
    assert "val/acc_ema" in t.callback_metrics
    assert any(not torch.equal(a, b) for a, b in zip(model.ema.module.parameters(), model.model.parameters()))


@pytest.mark.parametrize("config", ["quickstart_retrain.yaml", "retrain_mnist1d.yaml"])
def test_shipped_retrain_configs_train_from_yaml(config, tmp_path, run_cli):
    """``dnas fit --config`` on a shipped retrain config trains the genotype's network on its space's own data:
    digits with the published DARTS_V2 (darts space), MNIST-1D with a 1-D search's genotype.json (conv1d space)."""
    from pathlib import Path

    from dnas.cells.conv1d import Conv1dSupernet

    root = Path(__file__).resolve().parents[1]
    args = ["fit", "--config", str(root / "configs" / config), "--trainer.max_epochs", "1"]
    args += ["--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1"]
    args += ["--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path)]
    args += ["--trainer.logger.init_args.save_dir", str(tmp_path)]
    if config == "retrain_mnist1d.yaml":
        genotype = tmp_path / "genotype.json"
        genotype.write_text(Conv1dSupernet(channels=4, stages=1).genotype().to_json())
        args += ["--model.init_args.genotype", str(genotype), "--data.init_args.num_samples", "400"]
    code, out, err = run_cli(args)
    assert code == 0, err[-2000:]
    (run,) = [p for p in tmp_path.glob("*/version_0") if (p / "metrics.csv").is_file()]
    header, *rows = (run / "metrics.csv").read_text().splitlines()
    assert "train/loss_epoch" in header.split(",") and rows
    summary = json.loads((run / "summary.json").read_text())
    assert summary["parameters"] > 0
    assert summary["input_shape"][1:] == ([1, 8, 8] if config == "quickstart_retrain.yaml" else [1, 40])
    (ckpt, *_) = sorted((run / "checkpoints").glob("*.ckpt"))
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    assert state and all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
