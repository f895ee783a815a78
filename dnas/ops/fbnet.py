"""The FBNet candidate blocks (Wu et al. 2019, Fig. 3), registered as ops ``k3_e1`` ... ``skip``.

A block is an inverted residual: 1×1 (grouped) conv -> BN -> ReLU -> channel shuffle (groups > 1) -> k×k depthwise
conv (stride s) -> BN -> ReLU -> 1×1 (grouped) conv -> BN, plus the identity when the shape is unchanged. ``skip`` is
the identity, or a 1×1 conv -> BN -> ReLU when stride or width change.

Everything is plain ``torch.nn`` (no timm, no einops): exported networks are made of these modules and the generic
code generator can emit them. timm's ``InvertedResidual`` would fit the ungrouped blocks, but its arch-def strings
have no token for the grouped 1×1 convs (plus channel shuffle) of the ``_g2`` blocks: timm's group size applies to the
depthwise conv only (mobile-vision's ``mobile_cv/arch/fbnet_v2/blocks_factory.py`` builds them with
``pw_groups=2``). So one class serves all nine.
"""

from __future__ import annotations

import torch
from torch import nn

from dnas.ops.partial import channel_shuffle
from dnas.ops.registry import register_op

FBNET_BLOCK_ARGS: dict[str, tuple[int, int, int]] = {
    "k3_e1": (3, 1, 1),
    "k3_e1_g2": (3, 1, 2),
    "k3_e3": (3, 3, 1),
    "k3_e6": (3, 6, 1),
    "k5_e1": (5, 1, 1),
    "k5_e1_g2": (5, 1, 2),
    "k5_e3": (5, 3, 1),
    "k5_e6": (5, 6, 1),
}
"""``name -> (kernel, expansion, groups)`` of the blocks."""

FBNET_PRIMITIVES: tuple[str, ...] = (*FBNET_BLOCK_ARGS, "skip")
"""The 9 candidate blocks of the FBNet space in α column order (paper Table 2)."""


def conv_bn(C_in: int, C_out: int, kernel: int, stride: int = 1, groups: int = 1, relu: bool = True, affine=True):
    """Conv (no bias, pad k//2) -> BN (-> ReLU)."""
    layers: list[nn.Module] = [
        nn.Conv2d(C_in, C_out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(C_out, affine=affine),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=False))
    return nn.Sequential(*layers)


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle: ``(B, g·c, H, W) -> (B, c·g, H, W)`` (interleave the groups)."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(x, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class FBNetBlock(nn.Module):
    """The FBNet TBS block (maskrcnn-benchmark's ``IRFBlock``, as in the paper).

    Args:
        C_in: input channels.
        C_out: output channels.
        kernel: depthwise kernel (3 or 5).
        expansion: hidden width ``expansion · C_in``.
        groups: groups of both 1×1 convs; a channel shuffle follows the first when > 1.
        stride: stride of the depthwise conv.
        affine: BN affine flag.

    The first 1×1 conv is kept for ``expansion == 1`` (the original builder; mobile-vision's v2 builder drops it
    when ``C_in`` equals the hidden width). With it, FBNet-A and -C reproduce the paper's 4.3M and 5.5M parameters.
    """

    def __init__(
        self, C_in: int, C_out: int, kernel: int, expansion: int, groups: int = 1, stride: int = 1, affine: bool = True
    ):
        super().__init__()
        mid = C_in * expansion
        for what, c in (("input", C_in), ("hidden", mid), ("output", C_out)):
            if c % groups:
                raise ValueError(f"FBNet block with {groups} groups needs {what} channels divisible by it, got {c}")
        self.pw = conv_bn(C_in, mid, 1, groups=groups, affine=affine)
        self.shuffle = ChannelShuffle(groups) if groups > 1 else nn.Identity()
        self.dw = conv_bn(mid, mid, kernel, stride, groups=mid, affine=affine)
        self.pwl = conv_bn(mid, C_out, 1, groups=groups, relu=False, affine=affine)
        self.residual = stride == 1 and C_in == C_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pwl(self.dw(self.shuffle(self.pw(x))))
        return y + x if self.residual else y


class FBNetSkip(nn.Module):
    """``skip``: the identity, or 1×1 conv -> BN -> ReLU (stride s) when the shape changes."""

    def __init__(self, C_in: int, C_out: int, stride: int = 1, affine: bool = True):
        super().__init__()
        self.proj = None if stride == 1 and C_in == C_out else conv_bn(C_in, C_out, 1, stride, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.proj is None else self.proj(x)


def _block_factory(kernel: int, expansion: int, groups: int):
    def factory(C_in: int, C_out: int, stride: int, affine: bool) -> nn.Module:
        return FBNetBlock(C_in, C_out, kernel, expansion, groups, stride, affine)

    return factory


for _name, (_k, _e, _g) in FBNET_BLOCK_ARGS.items():
    register_op(_name, _block_factory(_k, _e, _g))
register_op("skip", lambda C_in, C_out, stride, affine: FBNetSkip(C_in, C_out, stride, affine))
