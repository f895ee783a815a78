"""Triton kernels of the fused mixed op (GPU path; exact on CPU tensors under ``TRITON_INTERPRET=1``).

Two kernels, both deterministic (fixed-order reductions, no atomics):

* ``weighted_sum``: ``out = Σ_k w_k · o_k`` over stacked op outputs ``(K, N)``, accumulated in op order ``k = 0..K-1``,
  one rounding per multiply and per add, as the naive Python sum does.
* ``weighted_inner``: ``d_k = ⟨g, o_k⟩`` (the α gradient of an edge): per-block partial sums written to a ``(K, P)``
  buffer, then summed in a fixed order by ``torch.sum``.

The kernels are chosen when this module is imported: with ``TRITON_INTERPRET=1`` set, ``triton.jit`` returns
interpreted kernels that run on CPU tensors (that is how CI tests them, see ``tests/ops/test_kernels.py``).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

BLOCK = 1024
"""Elements per program."""

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def _weighted_sum_kernel(stacked_ptr, w_ptr, out_ptr, K, N, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    acc = tl.load(w_ptr) * tl.load(stacked_ptr + offs, mask=mask, other=0.0)
    for k in range(1, K):
        w = tl.load(w_ptr + k)
        v = tl.load(stacked_ptr + k * N + offs, mask=mask, other=0.0)
        acc = acc + w * v
    tl.store(out_ptr + offs, acc, mask=mask)


@triton.jit
def _weighted_inner_kernel(grad_ptr, stacked_ptr, partial_ptr, N, P, BLOCK: tl.constexpr):
    k = tl.program_id(0).to(tl.int64)
    p = tl.program_id(1)
    offs = p.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    g = tl.load(grad_ptr + offs, mask=mask, other=0.0)
    v = tl.load(stacked_ptr + k * N + offs, mask=mask, other=0.0)
    tl.store(partial_ptr + k * P + p, tl.sum(g * v, axis=0))


def _launch(kernel):
    # wrap_triton makes the launch visible to torch.compile; interpreted kernels are launched directly.
    return kernel if INTERPRET else torch.library.wrap_triton(kernel)


def weighted_sum(outs: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """``Σ_k weights[k] · outs[k]`` with one Triton kernel over the stacked outputs."""
    stacked = torch.stack(outs).contiguous()
    w = weights.to(stacked.dtype).contiguous()
    out = torch.empty(outs[0].shape, dtype=stacked.dtype, device=stacked.device)
    n = out.numel()
    if n:
        # no fused multiply-add: one rounding per multiply and per add, bitwise the naive sum (PyTorch does not fuse)
        grid = (triton.cdiv(n, BLOCK),)
        _launch(_weighted_sum_kernel)[grid](stacked, w, out, len(outs), n, BLOCK=BLOCK, enable_fp_fusion=False)
    return out


def weighted_inner(grad: torch.Tensor, outs: list[torch.Tensor]) -> torch.Tensor:
    """``[⟨grad, outs[k]⟩ for k]`` as a ``(K,)`` tensor, from fixed-order per-block partial sums."""
    stacked = torch.stack(outs).contiguous()
    g = grad.to(stacked.dtype).contiguous()
    n = g.numel()
    parts = max(1, triton.cdiv(n, BLOCK))
    partial = torch.zeros((len(outs), parts), dtype=stacked.dtype, device=stacked.device)
    if n:
        _launch(_weighted_inner_kernel)[(len(outs), parts)](g, stacked, partial, n, parts, BLOCK=BLOCK)
    return partial.sum(dim=1)
