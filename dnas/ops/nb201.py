"""NAS-Bench-201 operations (Dong & Yang, ICLR 2020; AutoDL-Projects ``cell_operations.py``).

The benchmark's five candidates are ``none``, ``skip_connect``, ``nor_conv_1x1``, ``nor_conv_3x3`` and
``avg_pool_3x3``. Three are shared with DARTS and already right for NAS-Bench-201 inside a cell (stride 1, C_in =
C_out): ``none`` (zeros), ``skip_connect`` (identity) and ``avg_pool_3x3`` (3×3, padding 1,
``count_include_pad=False``, no extra BN — build mixed ops with ``pool_bn=False``). The two convolutions are added
here.
"""

from __future__ import annotations

import torch
from torch import nn

from dnas.ops.registry import SequentialOp, register_op

NB201_PRIMITIVES: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
"""The α column order of NAS-Bench-201 (the benchmark's ``search_space``)."""


class NorConv(SequentialOp):
    """ReLU -> conv k×k (padding k//2) -> BN, with the reference's ``bias=not affine`` quirk.

    The reference builds the conv with ``bias=not affine``, so search cells (``affine=False``) carry a conv bias and
    the evaluation network (``affine=True``) does not. Module names (``op.1`` conv, ``op.2`` BN) mirror the reference.
    """

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int = 1, affine: bool = True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=kernel_size // 2, bias=not affine),
            nn.BatchNorm2d(C_out, affine=affine, track_running_stats=True),
        )


class ResNetBasicBlock(nn.Module):
    """The skeleton's reduction block: ``conv_b(conv_a(x)) + downsample(x)``.

    ``conv_a`` = ReLU-conv3×3(stride)-BN, ``conv_b`` = ReLU-conv3×3-BN (both affine, no bias, in search too, as the
    reference builds them with the default ``affine=True``); ``downsample`` = AvgPool(2, 2) -> conv1×1 (no BN) for
    stride 2, ReLU-conv1×1-BN when only the width changes, nothing otherwise.
    """

    def __init__(self, C_in: int, C_out: int, stride: int = 2):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.conv_a = NorConv(C_in, C_out, 3, stride, affine=True)
        self.conv_b = NorConv(C_out, C_out, 3, 1, affine=True)
        if stride == 2:
            self.downsample: nn.Module | None = nn.Sequential(
                nn.AvgPool2d(kernel_size=2, stride=2, padding=0), nn.Conv2d(C_in, C_out, 1, bias=False)
            )
        elif C_in != C_out:
            self.downsample = NorConv(C_in, C_out, 1, 1, affine=True)
        else:
            self.downsample = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        return residual + self.conv_b(self.conv_a(x))


register_op("nor_conv_1x1", lambda C_in, C_out, stride, affine: NorConv(C_in, C_out, 1, stride, affine))
register_op("nor_conv_3x3", lambda C_in, C_out, stride, affine: NorConv(C_in, C_out, 3, stride, affine))
