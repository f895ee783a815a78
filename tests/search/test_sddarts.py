import copy
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

import dnas
from dnas.cells.base import Supernet
from dnas.cells.darts import DartsSupernet
from dnas.cli import DnasCLI
from dnas.data import DigitsDataModule
from dnas.search.sddarts import aggregate_teachers, distillation_loss

ROOT = Path(__file__).resolve().parents[2]


class TinyLinear(Supernet):
    """logits = Σ_k softmax(α)_k · x W_kᵀ: small enough to differentiate by hand."""

    def __init__(self, d=4, c=3, k=2):
        super().__init__()
        self.lins = nn.ModuleList(nn.Linear(d, c, bias=False) for _ in range(k))
        self.add_arch_group("g", [(0, 1)], [f"lin{i}" for i in range(k)])

    def forward(self, x, weights=None):
        w = (self.edge_weights() if weights is None else weights)["g"][0]
        return sum(wk * lin(x) for wk, lin in zip(w, self.lins))


def _set(model, Ws, alpha):
    with torch.no_grad():
        for lin, W in zip(model.supernet.lins, Ws):
            lin.weight.copy_(W)
        model.supernet.alpha("g").copy_(alpha)


def _mix(Ws, alpha, x):
    a = torch.softmax(alpha, -1)[0]
    return sum(ak * x @ W.T for ak, W in zip(a, Ws))


def test_vote_aggregation_hand_example():
    probs = torch.tensor(
        [
            [[0.6, 0.3, 0.1], [0.1, 0.6, 0.3]],  # teacher 1 votes 0, 1
            [[0.2, 0.5, 0.3], [0.45, 0.1, 0.45]],  # teacher 2 votes 1, 0 (first of the tied maxima)
            [[0.5, 0.1, 0.4], [0.1, 0.6, 0.3]],  # teacher 3 votes 0, 1
        ]
    )
    mean = aggregate_teachers(probs, "mean")
    torch.testing.assert_close(mean[0], torch.tensor([1.3, 0.9, 0.8]) / 3)
    # sample 0: class 0 wins 2:1, target = mean of teachers 1 and 3; sample 1: class 1 wins 2:1 (teachers 1, 3)
    vote = aggregate_teachers(probs, "vote")
    torch.testing.assert_close(vote, torch.tensor([[0.55, 0.2, 0.25], [0.1, 0.6, 0.3]]))
    assert aggregate_teachers(probs, "vote_onehot").tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    # a 1:1 tie goes to the class with the higher mean probability: class 1 (0.35) over class 0 (0.275)
    tie = probs[:2, 1:]
    torch.testing.assert_close(aggregate_teachers(tie, "vote"), torch.tensor([[0.1, 0.6, 0.3]]))
    assert aggregate_teachers(tie, "vote_onehot").tolist() == [[0.0, 1.0, 0.0]]
    with pytest.raises(ValueError, match="aggregation must be one of"):
        aggregate_teachers(probs, "median")


def test_distillation_loss_value():
    logits, target, T = torch.tensor([[1.0, 2.0, 0.0]]), torch.tensor([[0.2, 0.8, 0.0]]), 2.0
    q = torch.softmax(logits / T, -1)
    expected = T**2 * (0.2 * torch.log(0.2 / q[0, 0]) + 0.8 * torch.log(0.8 / q[0, 1]))
    torch.testing.assert_close(distillation_loss(logits, target, T), expected)


def test_kd_gradient_matches_hand_computation():
    torch.manual_seed(0)
    lam, T, B = 0.7, 2.0, 5
    model = dnas.SDDARTS(
        TinyLinear(), distill_weight=lam, temperature=T, num_teachers=2, aggregation="mean", num_classes=3
    )
    states = [([torch.randn(3, 4) for _ in range(2)], torch.randn(1, 2)) for _ in range(4)]
    for Ws, alpha in states[:3]:  # the first snapshot is pushed out by the later two (K = 2)
        _set(model, Ws, alpha)
        model.push_snapshot()
    Ws, alpha = states[3]
    _set(model, Ws, alpha)
    x, y = torch.randn(B, 4), torch.tensor([0, 1, 2, 1, 0])

    loss, logits, extra = model.weight_loss(x, y)
    loss.backward()

    p = (torch.softmax(_mix(*states[2], x) / T, -1) + torch.softmax(_mix(*states[1], x) / T, -1)) / 2
    z = _mix(Ws, alpha, x)
    a = torch.softmax(alpha, -1)[0]
    dz = (torch.softmax(z, -1) - F.one_hot(y, 3)) / B + lam * T * (torch.softmax(z / T, -1) - p) / B
    for k, lin in enumerate(model.supernet.lins):
        torch.testing.assert_close(lin.weight.grad, a[k] * dz.T @ x)
    g = torch.stack([(dz * (x @ W.T)).sum() for W in Ws])
    torch.testing.assert_close(model.supernet.alpha("g").grad[0], a * (g - (a * g).sum()))
    assert extra["teachers"] == 2.0
    kl = (p * (p.log() - F.log_softmax(z / T, -1))).sum(-1).mean()
    torch.testing.assert_close(loss, F.cross_entropy(z, y) + lam * T**2 * kl)


def test_no_teacher_no_term_and_distill_arch_switch():
    torch.manual_seed(0)
    x, y = torch.randn(4, 4), torch.tensor([0, 1, 2, 0])
    model = dnas.SDDARTS(TinyLinear(), num_classes=3)
    loss, logits, _ = model.weight_loss(x, y)
    torch.testing.assert_close(loss, F.cross_entropy(logits, y))  # no snapshot yet: plain CE
    model.push_snapshot()
    with torch.no_grad():
        model.supernet.lins[0].weight.add_(1.0)
    assert "kd" in model.weight_loss(x, y)[2]
    assert "kd" not in model.arch_loss(x, y)[2]
    on = dnas.SDDARTS(TinyLinear(), num_classes=3, distill_arch=True)
    on.push_snapshot()
    assert "kd" in on.arch_loss(x, y)[2]


def _darts_supernet(seed=0, layers=2):
    torch.manual_seed(seed)
    return DartsSupernet(init_channels=4, num_classes=10, layers=layers, in_channels=1)


def _trainer(tmp_path, batches, epochs=1, **kw):
    return pl.Trainer(
        max_epochs=epochs,
        limit_train_batches=batches,
        limit_val_batches=0,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        deterministic=True,
        **kw,
    )


def test_lambda_zero_is_darts(tmp_path):
    darts = dnas.DARTS(_darts_supernet())
    sd = dnas.SDDARTS(_darts_supernet(), distill_weight=0.0)
    for model in (darts, sd):
        pl.seed_everything(0)
        _trainer(tmp_path, 2).fit(model, DigitsDataModule(batch_size=8))
    for (name, a), b in zip(darts.state_dict().items(), sd.state_dict().values()):
        assert torch.equal(a, b), name
    assert sd.teacher_memory_bytes() == 0


def test_teacher_is_the_snapshot_and_leaves_the_student_untouched():
    model = dnas.SDDARTS(_darts_supernet(), num_teachers=2)
    x = torch.randn(4, 1, 8, 8)
    frozen = copy.deepcopy(model.supernet)
    model.push_snapshot()
    with torch.no_grad():  # the student moves on: new weights and α, BN statistics from another batch
        for p in model.supernet.parameters():
            p.add_(0.1 * torch.randn_like(p))
        model.supernet(torch.randn(4, 1, 8, 8))
    student = {k: v.clone() for k, v in model.supernet.state_dict().items()}
    rng = torch.get_rng_state()
    (teacher,) = model.teacher_logits(x)
    with torch.no_grad():
        expected = frozen(x)  # training mode: batch statistics, as teacher_bn="batch"
    torch.testing.assert_close(teacher, expected, rtol=0, atol=0)
    for k, v in model.supernet.state_dict().items():
        assert torch.equal(v, student[k]), k
    assert torch.equal(torch.get_rng_state(), rng)
    (again,) = model.teacher_logits(x)  # the snapshot's running stats were not modified either
    assert torch.equal(again, teacher)
    n = sum(p.numel() for p in model.supernet.parameters())
    n += sum(b.numel() for b in model.supernet.buffers() if b.is_floating_point())
    n -= sum(getattr(model.supernet.arch[g], k).numel() for g in ("normal", "reduce") for k in ("mask", "override"))
    assert model.teacher_memory_bytes() == 2 * 4 * n  # K float32 rows of parameters and BN statistics


def test_running_bn_and_bfloat16_teachers():
    model = dnas.SDDARTS(_darts_supernet(), teacher_bn="running", teacher_dtype="bfloat16", num_teachers=1)
    frozen = copy.deepcopy(model.supernet).eval()
    model.push_snapshot()
    x = torch.randn(4, 1, 8, 8)
    (teacher,) = model.teacher_logits(x)
    assert model.supernet.training
    with torch.no_grad():
        expected = frozen(x)
    torch.testing.assert_close(teacher, expected, rtol=0.05, atol=0.05)  # bf16-rounded weights
    assert model.teacher_memory_bytes() == model._bank.numel() * 2


class _Capture(pl.Callback):
    def on_train_start(self, trainer, pl_module):
        self.steps = list(pl_module._bank_steps)
        self.bank = None if pl_module._bank is None else pl_module._bank.clone()


def test_teachers_survive_checkpoint_and_resume(tmp_path):
    model = dnas.SDDARTS(_darts_supernet(), num_teachers=2)
    pl.seed_everything(0)
    trainer = _trainer(tmp_path, 3)
    trainer.fit(model, DigitsDataModule(batch_size=8))
    assert sorted(model._bank_steps) == [1, 2] and model._weight_steps == 3
    path = tmp_path / "sd.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)  # tensors, ints and strings only
    x = torch.randn(4, 1, 8, 8)
    before = model.teacher_logits(x)

    other = dnas.SDDARTS(_darts_supernet(seed=1), num_teachers=2)
    other.load_state_dict(ckpt["state_dict"])
    other.on_load_checkpoint(ckpt)
    after = other.teacher_logits(x)
    assert len(after) == 2 and all(torch.equal(a, b) for a, b in zip(before, after))
    assert other._weight_steps == 3

    capture = _Capture()  # a resumed fit starts with the same teachers
    resumed = dnas.SDDARTS(_darts_supernet(seed=1), num_teachers=2)
    _trainer(tmp_path, 1, epochs=2, callbacks=[capture]).fit(resumed, DigitsDataModule(batch_size=8), ckpt_path=path)
    assert sorted(capture.steps) == [1, 2]
    order = torch.tensor(capture.steps).argsort(descending=True)
    assert torch.equal(capture.bank[order], ckpt["dnas_sddarts_teachers"]["bank"])

    wrong = dnas.SDDARTS(_darts_supernet(layers=3), num_teachers=2)
    with pytest.raises(ValueError, match="dnas_sddarts_teachers"):
        wrong.on_load_checkpoint(ckpt)


def test_quickstart_sddarts_config_fits(tmp_path, run_cli):
    code, _, err = run_cli(
        [
            "fit",
            "--config",
            str(ROOT / "configs" / "quickstart_sddarts.yaml"),
            "--trainer.fast_dev_run",
            "2",
            "--data.init_args.batch_size",
            "16",
            "--model.init_args.arch_warmup_epochs",
            "0",  # the config warms up for 2 epochs: without this, 2 steps would never take an α step
            "--trainer.default_root_dir",
            str(tmp_path),
            "--trainer.logger.init_args.save_dir",
            str(tmp_path),
        ]
    )
    assert code == 0, err


def test_bad_settings_are_named():
    for kw, match in [
        ({"distill_weight": -1.0}, "distill_weight"),
        ({"temperature": 0.0}, "temperature"),
        ({"num_teachers": 0}, "num_teachers"),
        ({"aggregation": "median"}, "aggregation"),
        ({"teacher_dtype": "float16"}, "teacher_dtype"),
    ]:
        with pytest.raises(ValueError, match=match):
            dnas.SDDARTS(TinyLinear(), num_classes=3, **kw)


def test_sddarts_paper_config_instantiates():
    cli = DnasCLI(args=["--config", str(ROOT / "configs" / "sddarts_cifar10.yaml")], run=False)
    model = cli.model
    assert isinstance(model, dnas.SDDARTS)
    assert (model.hparams.distill_weight, model.hparams.temperature, model.hparams.num_teachers) == (1.0, 3.0, 3)
    assert model.hparams.aggregation == "vote" and cli.datamodule.batch_size == 64
    (w_opt, a_opt), _ = model.configure_optimizers()
    assert isinstance(w_opt, torch.optim.SGD) and w_opt.defaults["lr"] == 0.025 and a_opt.defaults["lr"] == 3e-4
