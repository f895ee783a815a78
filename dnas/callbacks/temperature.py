"""Temperature schedule of Gumbel-softmax search (FBNet, Wu et al. 2019, §4.1: τ_e = 5.0 · exp(−0.045 · e)).

Works with any LightningModule that has a ``temperature`` attribute: a registered buffer (``dnas.FBNet``; filled in
place, so checkpoints carry it) or a plain float. The value is a function of the epoch, so a resumed run continues
the schedule exactly; the callback's ``state_dict`` records its settings and the last value for inspection.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_info


class TemperatureSchedule(Callback):
    """Set ``pl_module.<attribute>`` at the start of every training epoch and log it as ``arch/temperature``.

    Args:
        initial: τ at epoch 0 (FBNet: 5.0).
        decay: ``"exponential"``: τ_e = initial · exp(−rate · e) (FBNet: rate 0.045, i.e. ×0.956 per epoch);
            ``"linear"``: τ_e = initial − rate · e.
        rate: decay rate per epoch.
        minimum: lower bound of τ.
        attribute: name of the module attribute to set.

    Example::

        trainer = pl.Trainer(callbacks=[TemperatureSchedule(initial=5.0, rate=0.045)])
    """

    def __init__(
        self,
        initial: float = 5.0,
        decay: Literal["exponential", "linear"] = "exponential",
        rate: float = 0.045,
        minimum: float = 1e-3,
        attribute: str = "temperature",
    ):
        super().__init__()
        if initial <= 0 or minimum <= 0:
            raise ValueError(f"temperatures must be > 0, got initial={initial}, minimum={minimum}")
        if decay not in ("exponential", "linear"):
            raise ValueError(f"decay must be 'exponential' or 'linear', got {decay!r}")
        if rate < 0:
            raise ValueError(f"rate must be >= 0, got {rate}")
        self.initial, self.decay, self.rate, self.minimum, self.attribute = initial, decay, rate, minimum, attribute
        self.last: float | None = None

    def value(self, epoch: int) -> float:
        """τ at the start of ``epoch``."""
        if self.decay == "exponential":
            tau = self.initial * math.exp(-self.rate * epoch)
        else:
            tau = self.initial - self.rate * epoch
        return max(self.minimum, tau)

    def apply(self, pl_module: pl.LightningModule, epoch: int) -> float:
        if not hasattr(pl_module, self.attribute):
            raise AttributeError(
                f"TemperatureSchedule: {type(pl_module).__name__} has no attribute {self.attribute!r}; "
                "use a search module with a temperature (e.g. dnas.FBNet) or set `attribute`"
            )
        tau = self.value(epoch)
        current = getattr(pl_module, self.attribute)
        if isinstance(current, torch.Tensor):
            current.fill_(tau)
        else:
            setattr(pl_module, self.attribute, tau)
        self.last = tau
        return tau

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        tau = self.apply(pl_module, trainer.current_epoch)
        pl_module.log("arch/temperature", tau, on_step=False, on_epoch=True)
        if trainer.current_epoch == 0:
            rank_zero_info(f"Gumbel temperature {tau:.4g} ({self.decay}, rate {self.rate}/epoch)")

    def state_dict(self) -> dict[str, Any]:
        return {
            "initial": self.initial,
            "decay": self.decay,
            "rate": self.rate,
            "minimum": self.minimum,
            "last": self.last,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last = state_dict.get("last")
