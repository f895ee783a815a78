"""FBNet as a LightningModule (Wu et al., CVPR 2019, §3–4): Gumbel-softmax weights and a latency loss.

Each training step draws Gumbel-softmax edge weights ``softmax((α + g) / τ)`` (soft, as the paper, or hard
straight-through) for the weight step and again for the architecture step; the architecture step's loss is
combined with the expected latency of the sampled weights (``latency_loss``, FBNet form ``CE · 0.2 · log(LAT)^0.6``).
τ is a registered buffer (checkpoints carry it) driven by :class:`dnas.callbacks.temperature.TemperatureSchedule`
(FBNet: 5.0 · exp(−0.045 · epoch)). Validation and test use the plain softmax of α (no noise).

The final architecture is the per-layer argmax (``current_genotype()``; ``genotype.json`` every epoch with
:class:`dnas.callbacks.GenotypeWriter`) or, with ``final="sample"``, ``num_samples`` architectures drawn from
``softmax(α)`` at the end of training (:meth:`FBNet.sample_genotypes`; the writer saves them as
``genotype_sample_<i>.json``), as the paper samples several and trains them from scratch.

Distributed training: every candidate runs in every forward, hard mode included (the one-hot weights multiply
every candidate's output), so all weights receive gradients and plain ``ddp`` works: no ``find_unused_parameters``.
With ``single_path=True`` (hard mode only) the mixed ops run only the sampled op (sampled execution,
:func:`dnas.ops.mixed.set_sampled_execution`, as :class:`dnas.GDAS`); the module then turns on
``find_unused_parameters`` itself.
"""

from __future__ import annotations

from functools import partial
from typing import Literal

import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from pytorch_lightning.utilities import rank_zero_warn

from dnas.cells.base import Supernet
from dnas.genotypes import Genotype
from dnas.latency.loss import LatencyLoss
from dnas.ops.gumbel import GumbelSampler
from dnas.ops.mixed import set_sampled_execution
from dnas.search.darts import DARTS


class FBNet(DARTS):
    """Differentiable NAS with Gumbel-softmax sampling and a latency-aware loss.

    Args:
        supernet: the search space, e.g. ``dnas.cells.fbnet.FBNetSupernet`` (any :class:`~dnas.cells.Supernet`).
        temperature: initial Gumbel temperature τ (paper: 5.0); a schedule callback changes it per epoch.
        hard: straight-through one-hot samples instead of the paper's soft samples.
        latency_loss: the cost term (``dnas.latency.LatencyLoss``); None searches on cross-entropy alone.
        final: ``"argmax"`` (per-layer argmax) or ``"sample"`` (also ``num_samples`` sampled genotypes, written by
            :class:`dnas.callbacks.GenotypeWriter` at the end of fit).
        num_samples: architectures sampled at the end of training when ``final="sample"``.
        sample_seed: seed of those samples.
        w_optimizer: weight optimizer; None = SGD(lr 0.1, momentum 0.9, weight decay 1e-4) (FBNet reimplementations).
        a_optimizer: architecture optimizer; None = Adam(lr 0.01, weight decay 5e-4).
        w_scheduler: weight lr schedule per epoch; None = cosine to ``w_lr_min``.
        w_lr_min: ``eta_min`` of the default cosine.
        grad_clip: max norm of the weight gradients; 0 disables.
        arch_grad_clip: max norm of the architecture gradients; 0 disables.
        arch_warmup_epochs: epochs of weight-only training before θ is trained (reimplementations: 10).
        on_nonfinite: ``"raise"`` or ``"skip"`` a non-finite update.
        num_classes: if set, checked against the supernet's classes (the ``dnas`` CLI sets the datamodule's).
        single_path: with ``hard``, run only the sampled op of each edge (forward and backward); α still gets the
            straight-through gradient (through the sampled op's output and the other ops' zero weights).
    """

    default_w_optimizer = partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=1e-4)
    default_a_optimizer = partial(torch.optim.Adam, lr=0.01, weight_decay=5e-4)
    generator: torch.Generator | None = None
    """The Gumbel noise's generator (None: the global one; :class:`~dnas.search.sampled.SampledSearch` sets its own)."""

    def __init__(
        self,
        supernet: Supernet,
        temperature: float = 5.0,
        hard: bool = False,
        latency_loss: LatencyLoss | None = None,
        final: Literal["argmax", "sample"] = "argmax",
        num_samples: int = 1,
        sample_seed: int = 0,
        w_optimizer: OptimizerCallable | None = None,
        a_optimizer: OptimizerCallable | None = None,
        w_scheduler: LRSchedulerCallable | None = None,
        w_lr_min: float = 0.0,
        grad_clip: float = 5.0,
        arch_grad_clip: float = 0.0,
        arch_warmup_epochs: int = 0,
        on_nonfinite: Literal["raise", "skip"] = "raise",
        num_classes: int | None = None,
        single_path: bool = False,
    ):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if final not in ("argmax", "sample"):
            raise ValueError(f"final must be 'argmax' or 'sample', got {final!r}")
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if single_path and not hard:
            raise ValueError("single_path needs hard=True: a soft Gumbel sample has no zero weights to skip")
        super().__init__(
            supernet,
            unrolled=False,
            w_optimizer=w_optimizer,
            a_optimizer=a_optimizer,
            w_scheduler=w_scheduler,
            w_lr_min=w_lr_min,
            grad_clip=grad_clip,
            arch_grad_clip=arch_grad_clip,
            arch_warmup_epochs=arch_warmup_epochs,
            on_nonfinite=on_nonfinite,
            num_classes=num_classes,
            latency_loss=latency_loss,
        )
        # the optimizer callables stay out of FBNet's hyperparameters
        self.save_hyperparameters(ignore=["supernet", "latency_loss", "w_optimizer", "a_optimizer", "w_scheduler"])
        self.hard, self.final, self.num_samples, self.sample_seed = hard, final, num_samples, sample_seed
        self.register_buffer("temperature", torch.tensor(float(temperature)))
        self.single_path = single_path
        if single_path:
            self.needs_unused_parameters = True
            if set_sampled_execution(self.supernet, True) == 0:
                rank_zero_warn(
                    f"{type(self).__name__}: {type(supernet).__name__} has no dnas.ops.MixedOp edge, so every "
                    "candidate still runs (the samples are exact, the cost is the all-path cost)"
                )

    def sample_weights(self) -> dict[str, torch.Tensor]:
        """Gumbel-softmax weights at temperature τ while training; the softmax of α in evaluation.

        With ``single_path`` evaluation runs the argmax path instead (:meth:`argmax_weights`).
        """
        if not self.training:
            return self.argmax_weights() if self.single_path else self.supernet.edge_weights()
        sampler = GumbelSampler(self.temperature, hard=self.hard, generator=self.generator)
        return self.supernet.edge_weights(sampler=sampler)

    def argmax_weights(self) -> dict[str, torch.Tensor]:
        """Per group, the one-hot of each row's largest selection weight (rows removed by selection stay 0).

        The evaluation weights of a single-path search: a supernet trained one path at a time is not a meaningful
        softmax mixture, and a perturbation callback that masks an edge's best op then sees the next-best op.
        """
        out = {}
        for g, w in self.supernet.selection_weights().items():
            one_hot = torch.zeros_like(w).scatter_(-1, w.argmax(-1, keepdim=True), 1.0)
            out[g] = one_hot * (w.abs().sum(-1, keepdim=True) > 0)
        return out

    def sample_genotypes(self, n: int | None = None, seed: int | None = None) -> list[Genotype]:
        """Draw ``n`` architectures from ``softmax(α)`` (masks and fixed edges applied) and derive their genotypes."""
        n = self.num_samples if n is None else n
        gen = torch.Generator().manual_seed(self.sample_seed if seed is None else seed)
        probs = self.supernet.selection_weights()
        out = []
        for i in range(n):
            one_hot = {}
            for g, p in probs.items():
                p = p.float().cpu().clamp_min(0)
                p = torch.where(p.sum(-1, keepdim=True) > 0, p, torch.ones_like(p))  # removed rows: any op
                idx = torch.multinomial(p, 1, generator=gen).squeeze(-1)
                one_hot[g] = torch.nn.functional.one_hot(idx, p.shape[-1]).float()
            geno = self.project_genotype(self.supernet.genotype(one_hot))
            meta = {**geno.meta, "algorithm": type(self).__name__, "sample": i, "sample_seed": gen.initial_seed()}
            out.append(Genotype(geno.space, geno.cells, meta))
        return out
