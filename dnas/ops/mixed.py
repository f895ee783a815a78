"""Mixed ops: one supernet edge computing ``Σ_k w_k · op_k(x)``.

The supernet passes the weights in (softmax, Gumbel, a one-hot projection). ``impl`` picks the implementation:
``"naive"``, the plain sum every reference uses and the test oracle, or the exact custom-autograd ``"fused"`` /
``"fused_save"`` of :mod:`dnas.ops.fused` (policies ``recompute`` / ``save``).

**Sampled execution** (``sampled=True``, or :func:`set_sampled_execution` on a whole supernet) is the single-path
mode of GDAS (Dong & Yang, CVPR 2019) and of hard Gumbel sampling: ops whose weight is exactly 0 are neither run nor
allocated, so a one-hot row costs one candidate, forward and backward. Each skipped op still adds its weight (0 in
value) to the output, as the GDAS reference does (D-X-Y/AutoDL-Projects, ``forward_gdas``:
``sum(w[i] * op(x) if i == index else w[i])``), so every α entry keeps a straight-through gradient. A row without
zeros (softmax weights) takes the ``impl`` path. Sampled rows never go through :mod:`dnas.ops.fused`: with
straight-through weights (which require grad) it would run every candidate, and plain autograd on the one op is 6.7×
faster on the DARTS supernet step (``benchmarks/gdas_step.py``, ``docs/benchmarks.md``).

The two modes (:data:`SAMPLED_MODES`) read the same weight row:

* ``"straight_through"`` (``sampled=True``; GDAS, FBNet's ``single_path``): as above.
* ``"binary_gate"`` (ProxylessNAS, Cai et al., ICLR 2019, §3.2; :class:`dnas.ProxylessNAS`): a positive entry ``w``
  is an open gate, ``w · op(x)``; a negative entry ``−p`` is the closed gate of a sampled path of gate probability
  ``p``: the op runs without autograd (the reference's ``oi.detach()``), adds 0 to the value and passes
  ``∂L/∂g = ⟨∂L/∂out, op(x)⟩`` to ``p``. Zero entries (paths not sampled) are not run and get no gradient at all,
  "as if they do not exist" (paper, §3.2).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dnas.ops.darts import DARTS_PRIMITIVES
from dnas.ops.registry import build_op

MIXED_OP_IMPLS: tuple[str, ...] = ("naive", "fused", "fused_save")
"""Implementations :class:`MixedOp` accepts: ``naive`` (the oracle), ``fused`` (policy ``recompute``: saves only the
input), ``fused_save`` (policy ``save``: keeps the candidates' intermediates)."""

_FUSED_POLICY = {"fused": "recompute", "fused_save": "save"}

SAMPLED_MODES: tuple[str, ...] = ("straight_through", "binary_gate")
"""Sampled-execution modes (module docstring); ``sampled=True`` means ``"straight_through"``."""

_POOL_OPS = frozenset({"max_pool_3x3", "avg_pool_3x3"})


class MixedOp(nn.Module):
    """A weighted sum over candidate ops.

    Args:
        C: channels (input = output).
        stride: stride of every candidate.
        primitives: registered op names, in α column order.
        impl: ``"naive"`` (sum of every op's output), ``"fused"`` or ``"fused_save"`` (:mod:`dnas.ops.fused`:
            same outputs and gradients, a fraction of the saved activations).
        affine: BN affine flag of the candidates (False in DARTS search).
        pool_bn: append ``BatchNorm(affine=False)`` to pooling candidates, as the DARTS search MixedOp does.
        C_out: output channels when they differ from ``C`` (defaults to ``C``).
        skip_zero_weights: fused only; also skip ops whose weight is exactly 0 while BatchNorm is training (DARTS-PT,
            hard Gumbel): outputs and gradients stay exact, the skipped ops' running statistics are not updated.
            Without it zero-weight ops are skipped only where that is exact in every respect.
        sampled: sampled execution (module docstring): ops with weight exactly 0 are not run, whatever ``impl``.
            Their BatchNorm running statistics are then not updated, which is what single-path methods want.
            False (off), True or ``"straight_through"`` (GDAS), or ``"binary_gate"`` (ProxylessNAS).
    """

    def __init__(
        self,
        C: int,
        stride: int = 1,
        primitives: Sequence[str] = DARTS_PRIMITIVES,
        impl: str = "naive",
        affine: bool = False,
        pool_bn: bool = True,
        C_out: int | None = None,
        skip_zero_weights: bool = False,
        sampled: bool | str = False,
    ):
        super().__init__()
        if impl not in MIXED_OP_IMPLS:
            raise ValueError(f"mixed_op_impl must be one of {MIXED_OP_IMPLS}, got {impl!r}")
        C_out = C if C_out is None else C_out
        self.primitives = tuple(primitives)
        self.impl = impl
        self.skip_zero_weights = skip_zero_weights
        self.sampled = _sampled_mode(sampled)
        ops = []
        for name in self.primitives:
            op = build_op(name, C, C_out, stride, affine)
            if pool_bn and name in _POOL_OPS:
                op = nn.Sequential(op, nn.BatchNorm2d(C_out, affine=False))
            ops.append(op)
        self._ops = nn.ModuleList(ops)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Return ``Σ_k weights[k] · op_k(x)``; ``weights`` has one entry per primitive."""
        if weights.shape[-1] != len(self._ops):
            raise ValueError(f"expected {len(self._ops)} op weights, got shape {tuple(weights.shape)}")
        if self.sampled:
            row = weights.detach().tolist()  # one host sync, as the GDAS reference
            active = [k for k, w in enumerate(row) if w != 0]
            closed = [k for k in active if row[k] < 0] if self.sampled == "binary_gate" else []
            if closed or 0 < len(active) < len(self._ops):
                return self._forward_active(x, weights, active, closed)
        if self.impl != "naive":
            from dnas.ops.fused import fused_mixed_op

            return fused_mixed_op(self, x, weights, _FUSED_POLICY[self.impl], self.skip_zero_weights)
        return sum(w * op(x) for w, op in zip(weights, self._ops))

    def _forward_active(
        self, x: torch.Tensor, weights: torch.Tensor, active: list[int], closed: list[int]
    ) -> torch.Tensor:
        """``Σ_{k active} w_k · op_k(x)`` (+ ``Σ_{k skipped} w_k`` straight-through): only the active ops run.

        Straight-through mode: the skipped ops' weights are 0 in value and carry α's straight-through gradient (the
        sum of the output gradient each). Binary-gate mode: each ``closed`` op adds ``(sg(w_k) − w_k) · sg(op_k(x))``,
        0 in value, whose gradient in ``−w_k`` (the gate probability) is ``⟨∂L/∂out, op_k(x)⟩``.
        """
        out = sum(weights[k] * self._ops[k](x) for k in active if k not in closed)
        for k in closed:
            with torch.no_grad():
                y = self._ops[k](x)
            out = out + (weights[k].detach() - weights[k]) * y
        if self.sampled == "straight_through" and weights.requires_grad:
            skipped = torch.ones_like(weights)
            skipped[active] = 0
            out = out + (weights * skipped).sum()
        return out

    def extra_repr(self) -> str:
        return f"impl={self.impl!r}" + (f", sampled={self.sampled!r}" if self.sampled else "")


def _sampled_mode(sampled: bool | str) -> str | bool:
    """``sampled`` as False or a mode of :data:`SAMPLED_MODES` (True is ``"straight_through"``)."""
    if sampled is True:
        return "straight_through"
    if sampled is False or sampled in SAMPLED_MODES:
        return sampled
    raise ValueError(f"sampled must be a bool or one of {SAMPLED_MODES}, got {sampled!r}")


def set_sampled_execution(module: nn.Module, enabled: bool | str = True) -> int:
    """Switch sampled execution on or off for every :class:`MixedOp` inside ``module``; returns how many.

    ``enabled``: False (off), True (``"straight_through"``) or a mode of :data:`SAMPLED_MODES`.
    """
    mode = _sampled_mode(enabled)
    count = 0
    for m in module.modules():
        if isinstance(m, MixedOp):
            m.sampled = mode
            count += 1
    return count
