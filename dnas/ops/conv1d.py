"""1-D convolutional candidate ops for sequence / signal spaces (``(B, C, L)`` tensors), e.g. MNIST-1D.

Names carry the domain: ``conv1d_k<k>`` (ReLU -> Conv1d -> BN), ``conv1d_k<k>_d<d>`` (dilated), ``max_pool1d_3``,
``avg_pool1d_3``. ``none`` and ``skip_connect`` are the generic ops (any rank). Every op keeps the length at stride 1
("same" padding ``d·(k-1)/2``) and halves it (ceil) at stride 2.
"""

from __future__ import annotations

from torch import nn

from dnas.ops.darts import pool_factory
from dnas.ops.registry import SequentialOp, register_op

CONV1D_PRIMITIVES: tuple[str, ...] = (
    "none",
    "skip_connect",
    "max_pool1d_3",
    "avg_pool1d_3",
    "conv1d_k3",
    "conv1d_k5",
    "conv1d_k3_d2",
    "conv1d_k5_d2",
)
"""Candidates of the shipped 1-D space: zero, identity, two poolings, two kernel sizes, each plain and dilated."""


class ReLUConv1dBN(SequentialOp):
    """ReLU -> Conv1d(kernel, dilation, "same" padding, no bias) -> BatchNorm1d."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, dilation: int = 1, affine: bool = True):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd for 'same' padding, got {kernel_size}")
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv1d(C_in, C_out, kernel_size, stride, dilation * (kernel_size - 1) // 2, dilation, bias=False),
            nn.BatchNorm1d(C_out, affine=affine),
        )


def _conv(k: int, d: int = 1):
    return lambda C_in, C_out, stride, affine: ReLUConv1dBN(C_in, C_out, k, stride, d, affine)


for _k in (3, 5):
    register_op(f"conv1d_k{_k}", _conv(_k))
    register_op(f"conv1d_k{_k}_d2", _conv(_k, 2))
for _name in ("max_pool1d_3", "avg_pool1d_3"):
    register_op(_name, pool_factory(_name, 3, dims=1))
