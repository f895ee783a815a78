"""GDAS as a LightningModule: one sampled op per edge and step, α trained through the straight-through sample.

Dong & Yang, "Searching for a Robust Neural Architecture in Four GPU Hours", CVPR 2019; reference
D-X-Y/AutoDL-Projects, ``exps/NAS-Bench-201-algos/GDAS.py`` and ``configs/nas-benchmark/algos/GDAS.config``.

Every forward of a training step draws, per edge, a hard Gumbel-max sample: ``h = one_hot(argmax y) − sg(y) + y`` with
``y = softmax((α + g) / τ)``, ``g ~ Gumbel(0, 1)`` (:func:`dnas.ops.gumbel.gumbel_softmax` with ``hard=True``). The
supernet's mixed ops run in *sampled execution* (FBNet's ``single_path``, :func:`dnas.ops.mixed.set_sampled_execution`):
only the sampled op of each edge is computed, forward and backward; α gets its gradient through the straight-through
weight. τ decays linearly per epoch from ``tau_max`` to ``tau_min`` over ``max_epochs`` (reference: 10 → 0.1,
``τ_e = τ_max − (τ_max − τ_min) · e / (E − 1)``).

Per batch, as the reference: the weight step on the ``train`` batch (SGD, gradient norm clipped at 5), then the
architecture step on the ``arch`` batch (Adam, no clipping); each forward draws its own sample. Validation and test
run the argmax path without noise (:meth:`~dnas.search.fbnet.FBNet.argmax_weights`, which says why; on the
NAS-Bench-201 quickstart the softmax mixture scores near chance while the path learns).

Departures from the reference, and why:

* the weight learning rate follows the cosine schedule per epoch (the reference updates it per iteration);
* on the DARTS space both cell types are searched (the CVPR paper fixes a hand-designed reduction cell; its
  NAS-Bench-201 code searches the one cell type, as here);
* the Gumbel noise comes from the module's own generator (``seed``), saved in checkpoints, so a resumed search draws
  the same architectures as an uninterrupted one.

Resume and DDP as :class:`~dnas.search.sampled.SampledSearch` (generator in the checkpoint, ``find_unused_parameters``
turned on by the module).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch

from dnas.callbacks.temperature import TemperatureSchedule
from dnas.cells.base import Supernet
from dnas.errors import ConfigError
from dnas.search.sampled import SampledSearch


class GDAS(SampledSearch):
    """Gradient-based search with a differentiable architecture sampler: one sampled op per edge and step.

    Every :class:`~dnas.search.fbnet.FBNet` argument but the Gumbel ones is accepted (``latency_loss`` included: the
    expected cost of the sampled one-hot weights, differentiable through the straight-through path). Default
    optimizers as the reference's NAS-Bench-201 config: SGD(lr 0.025, momentum 0.9, Nesterov, weight decay 5e-4) on
    the weights, Adam(lr 3e-4, betas (0.5, 0.999), weight decay 1e-3) on α.

    Args:
        supernet: the search space (any :class:`~dnas.cells.Supernet` whose edges are :class:`~dnas.ops.MixedOp`).
        tau_max: τ at the first epoch (reference: 10).
        tau_min: τ at the last epoch (reference: 0.1).
        seed: seed of the Gumbel generator (rank ``r`` uses ``seed + r``).
        w_lr_min: ``eta_min`` of the default cosine schedule (reference: 0.001).
        **kwargs: the other :class:`~dnas.search.fbnet.FBNet` arguments (``latency_loss``, ``final``, ...).
    """

    rng_key = "dnas_gdas_rng"
    refusal = "{cls} sets {name} itself (hard single-path samples, τ tau_max → tau_min); remove it"
    default_w_optimizer = partial(torch.optim.SGD, lr=0.025, momentum=0.9, nesterov=True, weight_decay=5e-4)
    default_a_optimizer = partial(torch.optim.Adam, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)

    def __init__(
        self,
        supernet: Supernet,
        tau_max: float = 10.0,
        tau_min: float = 0.1,
        seed: int = 0,
        w_lr_min: float = 0.001,
        **kwargs: Any,
    ):
        if not 0 < tau_min <= tau_max:
            raise ValueError(f"GDAS needs 0 < tau_min <= tau_max, got tau_min={tau_min}, tau_max={tau_max}")
        super().__init__(supernet, seed=seed, _temperature=tau_max, w_lr_min=w_lr_min, **kwargs)
        self.tau_max, self.tau_min = float(tau_max), float(tau_min)

    # ------------------------------------------------------------------ temperature
    def tau(self, epoch: int) -> float:
        """τ at the start of ``epoch``: linear from ``tau_max`` (epoch 0) to ``tau_min`` (the last epoch)."""
        total = self.trainer.max_epochs if self._trainer is not None else None
        if total is None or total < 1:
            raise ConfigError(
                "GDAS decays τ linearly over the search and needs trainer.max_epochs >= 1 "
                f"(got {total}); set --trainer.max_epochs"
            )
        if total == 1:
            return self.tau_max
        return self.tau_max - (self.tau_max - self.tau_min) * min(epoch, total - 1) / (total - 1)

    # ------------------------------------------------------------------ training
    def setup(self, stage: str) -> None:
        super().setup(stage)
        for callback in self.trainer.callbacks:
            if isinstance(callback, TemperatureSchedule) and callback.attribute == "temperature":
                raise ConfigError(
                    "GDAS schedules its temperature itself (linear from tau_max to tau_min); remove the "
                    "TemperatureSchedule callback or set model.init_args.tau_max / tau_min"
                )

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        tau = self.tau(self.current_epoch)
        self.temperature.fill_(tau)
        self.log("arch/temperature", tau, on_step=False, on_epoch=True)
