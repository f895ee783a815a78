"""Custom operators of the fused mixed op, registered through ``torch.library``.

* ``dnas::weighted_sum(Tensor[] outs, Tensor weights) -> Tensor``: ``Σ_k weights[k] · outs[k]`` in op order.
* ``dnas::weighted_inner(Tensor grad, Tensor[] outs) -> Tensor``: ``(K,)`` inner products ``⟨grad, outs[k]⟩``.

On CUDA they run the Triton kernels of :mod:`dnas.ops.kernels.triton_mixed` (``torch.library.triton_op``, so
``torch.compile`` sees the kernels); on CPU (and wherever Triton is missing) they run the pure-PyTorch reference
kernels below, which are the definition the Triton kernels are tested against.
"""

from __future__ import annotations

import importlib.util

import torch

__all__ = ["TRITON_AVAILABLE", "weighted_inner", "weighted_inner_reference", "weighted_sum", "weighted_sum_reference"]


def weighted_sum_reference(outs: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """Reference: ``((w_0·o_0 + w_1·o_1) + w_2·o_2) + …``, the rounding sequence of the naive mixed op's sum."""
    if len(outs) != weights.shape[0]:
        raise ValueError(f"weighted_sum: {len(outs)} outputs but {weights.shape[0]} weights")
    out = weights[0] * outs[0]
    for k in range(1, len(outs)):
        out = out + weights[k] * outs[k]
    return out


def weighted_inner_reference(grad: torch.Tensor, outs: list[torch.Tensor]) -> torch.Tensor:
    """Reference: ``torch.stack([(grad * o).sum() for o in outs])``."""
    return torch.stack([(grad * o).sum() for o in outs])


TRITON_AVAILABLE = importlib.util.find_spec("triton") is not None
# `torch.library.triton_op` imports Inductor, Dynamo and Triton (≈1.8 s and ≈150 MB of RSS): only worth it where a
# CUDA device can run the kernels. Elsewhere the operators are plain custom ops with the reference kernels.
_REGISTER_TRITON = TRITON_AVAILABLE and torch.cuda.is_available()


def _tk():
    from dnas.ops.kernels import triton_mixed

    return triton_mixed


if _REGISTER_TRITON:

    @torch.library.triton_op("dnas::weighted_sum", mutates_args=())
    def weighted_sum(outs: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        """``Σ_k weights[k] · outs[k]`` (Triton on CUDA, PyTorch reference on CPU)."""
        if weights.device.type != "cuda":  # traced by torch.compile on CPU: the reference decomposition
            return weighted_sum_reference(outs, weights)
        return _tk().weighted_sum(outs, weights)

    @torch.library.triton_op("dnas::weighted_inner", mutates_args=())
    def weighted_inner(grad: torch.Tensor, outs: list[torch.Tensor]) -> torch.Tensor:
        """``(K,)`` inner products ``⟨grad, outs[k]⟩`` (Triton on CUDA, PyTorch reference on CPU)."""
        if grad.device.type != "cuda":
            return weighted_inner_reference(grad, outs)
        return _tk().weighted_inner(grad, outs)

else:

    @torch.library.custom_op("dnas::weighted_sum", mutates_args=())
    def weighted_sum(outs: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        """``Σ_k weights[k] · outs[k]`` (no CUDA device: the PyTorch reference)."""
        return weighted_sum_reference(outs, weights)

    @weighted_sum.register_fake
    def _(outs, weights):
        return torch.empty_like(weights[0] * outs[0])

    @torch.library.custom_op("dnas::weighted_inner", mutates_args=())
    def weighted_inner(grad: torch.Tensor, outs: list[torch.Tensor]) -> torch.Tensor:
        """``(K,)`` inner products ``⟨grad, outs[k]⟩`` (no CUDA device: the PyTorch reference)."""
        return weighted_inner_reference(grad, outs)

    @weighted_inner.register_fake
    def _(grad, outs):
        return outs[0].new_empty((len(outs),))


@weighted_sum.register_kernel("cpu")
def _weighted_sum_cpu(outs: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    return weighted_sum_reference(outs, weights)


@weighted_inner.register_kernel("cpu")
def _weighted_inner_cpu(grad: torch.Tensor, outs: list[torch.Tensor]) -> torch.Tensor:
    return weighted_inner_reference(grad, outs)
