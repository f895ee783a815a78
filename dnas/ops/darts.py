"""The DARTS CNN operations (Liu et al. 2019, `cnn/operations.py` of the reference), plus the NASNet/AmoebaNet extras.

Every conv has ``bias=False``; blocks are ReLU -> conv -> BN. ``affine`` is False in search and True in evaluation.
A block whose ``forward`` is exactly ``self.op(x)`` says so with ``sequential_forward = "op"``, so the fused mixed op
may split ``self.op`` into stages (:func:`dnas.ops.stages.compile_chain`).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from dnas.ops.registry import SequentialOp, register_op

DARTS_PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
"""The α column order of the DARTS space (quark0/darts ``cnn/genotypes.py`` ``PRIMITIVES``)."""

PARAMETER_FREE_OPS: frozenset[str] = frozenset(
    {"none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "max_pool_3", "avg_pool_3", "max_pool_5"}
)


class ReLUConvBN(SequentialOp):
    """ReLU -> conv k×k -> BN (module names mirror the reference so its state dicts map key for key)."""

    sequential_forward: ClassVar[str] = "op"

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class DilConv(SequentialOp):
    """ReLU -> depthwise dilated conv -> 1×1 conv -> BN."""

    sequential_forward: ClassVar[str] = "op"

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, dilation: int, affine=True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, stride, padding, dilation=dilation, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class SepConv(SequentialOp):
    """The separable block applied twice; only the first depthwise conv has the stride."""

    sequential_forward: ClassVar[str] = "op"

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, stride, padding, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_in, 1, bias=False),
            nn.BatchNorm2d(C_in, affine=affine),
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, 1, padding, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class Zero(nn.Module):
    """The ``none`` op: zeros of the output shape (strided on every spatial axis)."""

    is_zero: ClassVar[bool] = True
    """Its output is an exact zero: the fused mixed op skips it (its α gradient stays a true zero)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        index = (slice(None), slice(None)) + (slice(None, None, self.stride),) * (x.dim() - 2)
        return x[index].mul(0.0)


class FactorizedReduce(nn.Module):
    """ReLU, two offset 1×1 stride-2 convs (each C_out/2 channels) concatenated, BN."""

    def __init__(self, C_in: int, C_out: int, affine: bool = True):
        super().__init__()
        if C_out % 2:
            raise ValueError(f"FactorizedReduce needs an even C_out, got {C_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(n % 2 for n in x.shape[2:]):
            raise ValueError(
                f"FactorizedReduce needs even spatial sizes, got {tuple(x.shape[2:])}; a DARTS network halves the "
                f"input at each reduction, so use inputs divisible by 2**(number of reductions)"
            )
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))

    def fused_stages(self) -> list:
        """The stages the fused mixed op runs for this op (ReLU, the two offset convolutions, BN)."""
        from dnas.ops.stages import BatchNormStage, FactorizedReduceStage, ReLUStage

        return [ReLUStage(), FactorizedReduceStage(self), BatchNormStage(self.bn)]


_POOLS = {1: (nn.MaxPool1d, nn.AvgPool1d), 2: (nn.MaxPool2d, nn.AvgPool2d)}


def pool_factory(name: str, k: int, dims: int = 2):
    """Op ``name``'s factory: a ``k``-wide "same" max pool (``name`` starts with ``max``) or avg pool, ``dims``-D."""

    def factory(C_in: int, C_out: int, stride: int, affine: bool) -> nn.Module:
        if C_in != C_out:
            raise ValueError(f"op {name!r} keeps the channel count; got C_in={C_in}, C_out={C_out}")
        max_pool, avg_pool = _POOLS[dims]
        if name.startswith("max"):
            return max_pool(k, stride=stride, padding=k // 2)
        return avg_pool(k, stride=stride, padding=k // 2, count_include_pad=False)

    return factory


register_op("none", lambda C_in, C_out, stride, affine: Zero(stride))
register_op("max_pool_3x3", pool_factory("max_pool_3x3", 3))
register_op("avg_pool_3x3", pool_factory("avg_pool_3x3", 3))


@register_op("skip_connect")
def _skip(C_in: int, C_out: int, stride: int, affine: bool) -> nn.Module:
    if stride == 1 and C_in == C_out:
        return nn.Identity()
    return FactorizedReduce(C_in, C_out, affine=affine)


def _sep(k: int):
    return lambda C_in, C_out, stride, affine: SepConv(C_in, C_out, k, stride, k // 2, affine=affine)


def _dil(k: int):
    return lambda C_in, C_out, stride, affine: DilConv(C_in, C_out, k, stride, 2 * (k // 2), 2, affine=affine)


register_op("sep_conv_3x3", _sep(3))
register_op("sep_conv_5x5", _sep(5))
register_op("sep_conv_7x7", _sep(7))
register_op("dil_conv_3x3", _dil(3))
register_op("dil_conv_5x5", _dil(5))


@register_op("conv_7x1_1x7")
def _conv_7x1_1x7(C_in: int, C_out: int, stride: int, affine: bool) -> nn.Module:
    # NASNet/AmoebaNet op as in the DARTS reference: ReLU, (1×7, stride (1,s)), (7×1, stride (s,1)), BN.
    return nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(C_in, C_in, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
        nn.Conv2d(C_in, C_out, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
        nn.BatchNorm2d(C_out, affine=affine),
    )
