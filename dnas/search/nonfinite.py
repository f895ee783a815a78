"""A non-finite loss, gradient or α in a search step: the error that explains it, or the update skipped.

The error names the term, the step, epoch and batch, the first non-finite input (a batch, a weight, α) behind it, and
the checkpoint a stopped run leaves to resume from, so a diverged search says where to look and where to restart.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.cloud_io import get_filesystem
from pytorch_lightning.utilities import rank_zero_info


def nonfinite_update(
    module: pl.LightningModule, step: str, term: str, value: torch.Tensor, batches: dict[str, torch.Tensor]
) -> None:
    """A non-finite ``term`` in the ``step`` ("weight" or "architecture") step: skip the update or raise.

    Raises:
        FloatingPointError: unless ``module.hparams.on_nonfinite == "skip"`` (then the update is dropped and counted).
    """
    msg = f"non-finite {term} ({float(value.detach().float().flatten()[0])}) at epoch {module.current_epoch}, "
    msg += f"batch {_batch(module)}, in the {step} step{_cause(module, batches)}"
    if module.hparams.on_nonfinite == "skip":
        rank_zero_info(f"dnas: skipping update: {msg}")
        module.log("nonfinite_skipped", 1.0, reduce_fx="sum", on_step=False, on_epoch=True, batch_size=1)
        return
    raise FloatingPointError(
        f"{msg}; {_kept_checkpoint(module.trainer)}. Set on_nonfinite='skip' to drop such updates."
    )


def check_alpha_finite(module: pl.LightningModule) -> None:
    """Raise if an architecture parameter became non-finite in its optimizer update (which no skip can undo)."""
    for name, p in module.supernet.named_arch_parameters():
        if not torch.isfinite(p).all():
            raise FloatingPointError(
                f"architecture parameter {name} became non-finite at epoch {module.current_epoch}, batch "
                f"{_batch(module)}, in the architecture step (its optimizer update; the loss and gradient were "
                f"finite); {_kept_checkpoint(module.trainer)}. Lower the architecture learning rate "
                "(on_nonfinite='skip' cannot undo an update)."
            )


def _batch(module: pl.LightningModule) -> int:
    return module.trainer.fit_loop.epoch_loop.batch_progress.current.ready - 1


def _cause(module: pl.LightningModule, batches: dict[str, torch.Tensor]) -> str:
    """Where a non-finite value comes from, as a message suffix ("" if inputs, weights and α are all finite)."""
    for name, x in batches.items():
        if torch.is_tensor(x) and x.is_floating_point() and not torch.isfinite(x).all():
            return f": the {name} has non-finite values"
    arch = {id(p) for p in module.supernet.arch_parameters()}
    for name, p in module.named_parameters():
        if not torch.isfinite(p).all():
            kind = "architecture parameter" if id(p) in arch else "weight"
            return f": {kind} {name} was already non-finite (an earlier update diverged)"
    return ""


def _kept_checkpoint(trainer: pl.Trainer) -> str:
    """Which checkpoint a stopped run leaves to resume from."""
    for callback in trainer.checkpoint_callbacks:
        for attr, label in (("last_model_path", "the last checkpoint"), ("best_model_path", "checkpoint")):
            path = getattr(callback, attr, None)
            if path and get_filesystem(path).exists(path):
                return f"{label} ({path}) is kept"
    if trainer.ckpt_path:
        return f"the checkpoint this run resumed from ({trainer.ckpt_path}) is untouched"
    return "no checkpoint has been written yet"
