"""ProxylessNAS as a LightningModule: binary gates, one path per weight step, two paths per architecture step.

Cai, Zhu & Han, "ProxylessNAS: Direct Neural Architecture Search on Target Task and Hardware", ICLR 2019, §3.2 (the
gradient-based search); reference mit-han-lab/proxylessnas, ``search/modules/mix_op.py`` (``MixedEdge``, mode
``two``) and ``search/nas_manager.py`` (``gradient_step``).

Per batch, as the reference: the **weight step** on the ``train`` batch runs one path per edge drawn from
``p = softmax(α)``; then the **architecture step** on the ``arch`` batch opens one of two sampled paths per edge, takes
the binary-gate gradient over the two and rescales their α so that the unsampled paths' probabilities are unchanged
(the mechanism, with the paper's and the reference's formulas: :mod:`dnas.ops.binary_gates`).

With ``latency_loss`` (``dnas.latency.LatencyLoss`` or ``BudgetLoss``) the architecture loss adds the expected cost of
``p̃`` over the two sampled paths of each edge (the reference's ``expected_latency`` reads
``current_prob_over_ops``, the same re-normalised probabilities); its gradient reaches the two sampled α only.

Validation and test run the argmax path (FBNet's single-path evaluation,
:meth:`~dnas.search.fbnet.FBNet.argmax_weights`).
Resume and DDP as :class:`~dnas.search.sampled.SampledSearch` (generator in the checkpoint, ``find_unused_parameters``
turned on by the module).

Departures from the reference, and why:

* the architecture step runs on every batch (the reference: every 5th weight step, ``grad_update_arch_param_every``):
  the search datamodules pair a ``train`` and an ``arch`` batch; slow α down with the architecture learning rate;
* the reference drops an edge's α gradient when the open path is its zero op (``is_zero_layer``; in its MobileNet
  space a zero op means "skip the block"); here the formula's gradient is kept for every op, ``none`` included;
* under DDP each rank draws its own two paths; the averaged gradient moves the α sampled on any rank, so the rescaling
  runs over the union of the ranks' sampled paths (the reference is single-process ``DataParallel``, one sample);
* the default optimizers are the reference's (SGD with Nesterov momentum, weight decay 4e-5; Adam lr 1e-3,
  ``betas=(0, 0.999)``, no weight decay). With β1 = 0 and no weight decay a zero gradient moves nothing, so unsampled α
  keep their values; an architecture optimizer with momentum or weight decay also moves them (the rescaling then
  keeps only the sum of the sampled paths' probabilities).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch

from dnas.cells.base import Supernet
from dnas.ops.binary_gates import rescale_sampled, sample_single_paths, sample_two_paths
from dnas.ops.mixed import set_sampled_execution
from dnas.search.sampled import SampledSearch


class ProxylessNAS(SampledSearch):
    """Gradient-based ProxylessNAS: binary gates with one path per weight step and two per architecture step.

    Every :class:`~dnas.search.fbnet.FBNet` argument but the Gumbel ones is accepted (``latency_loss``, ``final``,
    ``arch_warmup_epochs`` (the reference warms the weights up for 40 epochs), ...). Default optimizers as the
    reference's ``imagenet_arch_search.py``: SGD(lr 0.025, momentum 0.9, Nesterov, weight decay 4e-5) on the weights,
    Adam(lr 1e-3, betas (0, 0.999), eps 1e-8, no weight decay) on α.

    Args:
        supernet: the search space (any :class:`~dnas.cells.Supernet` whose edges are :class:`~dnas.ops.MixedOp`).
        seed: seed of the path sampler (rank ``r`` uses ``seed + r``).
        w_lr_min: ``eta_min`` of the default cosine schedule (reference: 0).
        **kwargs: the other :class:`~dnas.search.fbnet.FBNet` arguments.
    """

    rng_key = "dnas_proxyless_rng"
    refusal = "{cls} samples binary gates itself (no Gumbel {name}); remove it"
    default_w_optimizer = partial(torch.optim.SGD, lr=0.025, momentum=0.9, nesterov=True, weight_decay=4e-5)
    default_a_optimizer = partial(torch.optim.Adam, lr=1e-3, betas=(0.0, 0.999), eps=1e-8)

    def __init__(self, supernet: Supernet, seed: int = 0, w_lr_min: float = 0.0, **kwargs: Any):
        super().__init__(supernet, seed=seed, w_lr_min=w_lr_min, **kwargs)
        set_sampled_execution(self.supernet, "binary_gate")
        self._sampled_paths: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ sampling
    def sample_weights(self) -> dict[str, torch.Tensor]:
        """One path per edge drawn from ``softmax(α)`` while training (constant gates); the argmax path in eval."""
        if not self.training:
            return self.argmax_weights()
        return {g: sample_single_paths(group.weights(), self.generator) for g, group in self.supernet.arch.items()}

    def binary_gates(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Per group, the architecture step's ``(gates, p̃, sampled mask)`` (:func:`.sample_two_paths`)."""
        out: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]] = ({}, {}, {})
        for g, group in self.supernet.arch.items():
            for d, value in zip(out, sample_two_paths(group.alpha, group.weights(), self.generator)):
                d[g] = value
        return out

    # ------------------------------------------------------------------ architecture step
    def arch_weights(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The two-path binary gates for the forward; ``p̃`` over the two sampled paths for the cost."""
        gates, gate_probs, self._sampled_paths = self.binary_gates()
        return gates, gate_probs

    def arch_step(self, a_opt, w_opt, train_batch, arch_batch) -> None:
        """The shared architecture step (:meth:`dnas.DARTS.arch_step`), then the rescaling of the sampled α."""
        before = {g: group.alpha.detach().clone() for g, group in self.supernet.arch.items()}
        self._sampled_paths = {}
        super().arch_step(a_opt, w_opt, train_batch, arch_batch)
        for g, sampled in self._sampled_paths.items():
            if self.trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
                union = sampled.to(torch.uint8)
                torch.distributed.all_reduce(union, op=torch.distributed.ReduceOp.MAX)
                sampled = union.bool()
            rescale_sampled(self.supernet.alpha(g).data, before[g], sampled)
        self._sampled_paths = {}
