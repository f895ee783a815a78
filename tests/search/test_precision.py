"""Mixed precision: the architecture step under ``16-mixed`` (a CPU ``GradScaler``) and ``bf16-mixed`` moves α as fp32.

An SGD architecture optimizer makes the α update proportional to its gradient, so a gradient left divided by the loss
scale (taken without scaling, then unscaled by the precision plugin) shows as an update 256× too small; Adam would
hide it.
"""

import contextlib
import functools

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.precision import MixedPrecision

import dnas
from dnas.cells.darts import DartsSupernet
from dnas.cells.edges import EdgeOptions
from dnas.cells.fbnet import FBNetSupernet
from dnas.data import DigitsDataModule

BATCHES = 3
KINDS = ["darts", "darts-2nd", "pcdarts", "sddarts", "fbnet", "gdas", "proxyless"]


class CountingScaler(torch.amp.GradScaler):
    """A GradScaler (CPU unless ``device`` says otherwise) that counts its once-per-iteration ``update`` calls."""

    def __init__(self, device: str = "cpu", init_scale: float = 2.0**8):
        super().__init__(device, init_scale=init_scale)  # 2^8: no overflow-skipped step, the runs stay comparable
        self.updates = 0

    def update(self, new_scale=None):
        self.updates += 1
        super().update(new_scale)


def _module(kind: str) -> dnas.DARTS:
    torch.manual_seed(0)
    sgd = functools.partial(torch.optim.SGD, lr=0.1)
    if kind == "fbnet":
        net = FBNetSupernet(
            num_classes=10, in_channels=1, input_size=8, width_mult=0.25, head_channels=8, stem_stride=1,
            stage_strides=[2, 2, 1, 1, 1, 1, 1], primitives=("k3_e1", "k3_e1_g2", "skip"),
        )  # fmt: skip
        return dnas.FBNet(net, a_optimizer=sgd, temperature=1.0)
    edges = EdgeOptions(mixed_op_impl="naive", partial_channels=2 if kind == "pcdarts" else 1)
    net = DartsSupernet(init_channels=4, num_classes=10, layers=2, in_channels=1, edge_options=edges)
    if kind == "pcdarts":
        return dnas.PCDARTS(net, a_optimizer=sgd, arch_warmup_epochs=0)
    if kind == "sddarts":
        return dnas.SDDARTS(net, a_optimizer=sgd)
    if kind in ("gdas", "proxyless"):  # single path: the same seeded samples in every precision
        return (dnas.GDAS if kind == "gdas" else dnas.ProxylessNAS)(net, a_optimizer=sgd)
    return dnas.DARTS(net, a_optimizer=sgd, unrolled=kind == "darts-2nd")


class ScalerOnly(MixedPrecision):
    """Lightning's 16-mixed plugin with its loss scaler but without float16 autocast: the scaler plumbing alone."""

    def autocast_context_manager(self):
        return contextlib.nullcontext()


def _alpha_delta(
    kind: str, precision: str, tmp_path, batches: int = BATCHES, accelerator: str = "cpu", init_scale: float = 2.0**8
) -> tuple[torch.Tensor, pl.Trainer, CountingScaler | None]:
    """Δα after ``batches`` batches (``accelerator="gpu"``: one CUDA device, as ``tests/cuda`` runs it)."""
    pl.seed_everything(0)
    model = _module(kind)
    alpha0 = [p.detach().clone() for p in model.supernet.arch_parameters()]
    device = "cuda" if accelerator == "gpu" else "cpu"
    scaler = CountingScaler(device, init_scale) if precision in ("16-mixed", "scaler-only") else None
    # Lightning refuses "16-mixed" on a CPU accelerator; the plugin itself runs there (float16 autocast + GradScaler)
    plugin = ScalerOnly if precision == "scaler-only" else MixedPrecision
    extra = {"plugins": [plugin("16-mixed", device, scaler)]} if scaler else {"precision": precision}
    trainer = pl.Trainer(
        max_steps=batches, max_epochs=1, limit_val_batches=0, accelerator=accelerator, devices=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        **extra,
    )  # fmt: skip
    trainer.fit(model, DigitsDataModule(batch_size=16))
    delta = torch.cat([(p.detach().cpu() - a).flatten() for p, a in zip(model.supernet.arch_parameters(), alpha0)])
    return delta, trainer, scaler


@pytest.fixture(scope="module")
def fp32_delta(tmp_path_factory):
    """Δα of the fp32 run of ``(kind, batches)``, fitted once per module: both tests below compare against it."""
    deltas = {}

    def get(kind: str, batches: int = BATCHES) -> torch.Tensor:
        if (kind, batches) not in deltas:
            deltas[kind, batches] = _alpha_delta(kind, "32-true", tmp_path_factory.mktemp("fp32"), batches)[0]
        return deltas[kind, batches]

    return get


@pytest.mark.parametrize("kind", KINDS)
def test_loss_scaler_path_gives_the_fp32_alpha_and_one_scaler_update_per_batch(tmp_path, kind, fp32_delta):
    reference = fp32_delta(kind)
    assert reference.norm() > 1e-4  # α moved
    delta, trainer, scaler = _alpha_delta(kind, "scaler-only", tmp_path)
    # the scale is a power of two: scaling and unscaling are exact, so only summation order may differ
    torch.testing.assert_close(delta, reference, rtol=1e-4, atol=1e-6)
    assert trainer.global_step == BATCHES
    assert scaler.updates == BATCHES  # once per batch, not once per optimizer


def test_an_overflowing_scale_skips_both_steps_of_every_batch_and_backs_off_once_per_batch(tmp_path):
    """An inf in the scaled gradients (here an infinite loss scale: every batch overflows) skips the α step like the
    weight step, as GradScaler skips any overflowing step; the scale backs off once per batch, nothing turns NaN."""
    delta, trainer, scaler = _alpha_delta("darts", "scaler-only", tmp_path, init_scale=float("inf"))
    assert torch.equal(delta, torch.zeros_like(delta))  # α untouched
    assert trainer.global_step == BATCHES and scaler.updates == BATCHES
    weights = trainer.lightning_module.supernet.weight_parameters()
    assert all(torch.isfinite(p).all() for p in weights)


TOLERANCE = {
    # (kind, batches): largest ‖Δα − Δα_fp32‖ / ‖Δα_fp32‖ for bf16-mixed, 16-mixed. Measured on this 4-channel
    # network: 0.12–0.14 (bf16, 8 significant bits) and 0.04–0.06 (fp16, 11 bits) after 3 first-order batches, 0.19
    # and 0.31 after one second-order batch (its finite difference runs in fp32, the rest in low precision). The α
    # gradient is a difference of nearly equal per-op terms (the softmax Jacobian), so it keeps fewer bits than the
    # activations. A gradient divided by the loss scale would give an error of about 1.
    ("darts", 3): (0.25, 0.1),
    ("pcdarts", 1): (0.15, 0.05),  # measured 0.05, 0.006; after 3 batches 0.18, 0.22 (trajectories part)
    ("sddarts", 3): (0.25, 0.1),
    ("darts-2nd", 1): (0.3, 0.45),
}


@pytest.mark.parametrize(("kind", "batches"), list(TOLERANCE))
def test_mixed_precision_autocast_tracks_fp32(tmp_path, kind, batches, fp32_delta):
    reference = fp32_delta(kind, batches)
    for precision, tolerance in zip(("bf16-mixed", "16-mixed"), TOLERANCE[kind, batches]):
        delta, trainer, _ = _alpha_delta(kind, precision, tmp_path, batches)
        error = float((delta - reference).norm() / reference.norm())
        assert error < tolerance, (precision, error)
        assert trainer.global_step == batches
