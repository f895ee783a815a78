"""Partial-channel edges (PC-DARTS, Xu et al., ICLR 2020; reference yuhuixu1993/PC-DARTS `model_search.py`).

A :class:`PartialChannelEdge` wraps any mixed op called as ``op(x, weights)`` that was built for ``C // k`` channels:

1. the **first** ``C // k`` channels go through the op (``Σ_o w_o · o(x[:, :C/k])``);
2. the other ``C − C/k`` channels bypass it; on stride-2 edges they are max-pooled 2×2 (2 per spatial axis);
3. the two parts are concatenated, op output first;
4. a channel shuffle with ``k`` groups interleaves them, so the next edge samples different channels.

The wrapper works for any tensor rank with channels on axis 1 (images ``(B, C, H, W)``, sequences ``(B, C, L)``,
volumes, tabular ``(B, C)``); only the stride-2 bypass needs spatial axes. With ``k = 1`` it is the wrapped op.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave ``groups`` channel groups (ShuffleNet's, PC-DARTS' view→transpose→view); any rank, channels on axis 1.

    Plain torch: exported FBNet networks (:class:`~dnas.ops.fbnet.ChannelShuffle`) run it with torch alone.
    """
    return x.unflatten(1, (groups, -1)).transpose(1, 2).flatten(1, 2)


class PartialChannelEdge(nn.Module):
    """A mixed op applied to ``1/k`` of the channels; the rest bypass (see module docstring).

    Args:
        op: the mixed op, built for ``channels // k`` input and output channels, called as ``op(x, weights)``.
        channels: C, the edge's input (= output) channels; must be divisible by ``k``.
        k: the partial-channel ratio K (PC-DARTS: 4 on CIFAR, 2 on ImageNet); 1 means no partial channels.
        stride: the op's stride. 2 max-pools the bypass with a 2-wide window and stride 2 on every spatial axis;
            ``ceil_mode`` is used so odd sizes give the ``ceil(n / 2)`` of a padded strided conv (the reference
            ``MaxPool2d(2, 2)`` floors; both agree on even sizes, the only ones the reference supports).
    """

    def __init__(self, op: nn.Module, channels: int, k: int, stride: int = 1):
        super().__init__()
        if k < 1:
            raise ValueError(f"partial_channels (k) must be >= 1, got {k}")
        if channels % k:
            raise ValueError(f"channels ({channels}) must be divisible by partial_channels k={k}")
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.op = op
        self.channels, self.k, self.stride = channels, k, stride

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, C, *spatial)``; ``weights``: the wrapped op's weights. Returns ``(B, C, *spatial')``."""
        if x.dim() < 2 or x.shape[1] != self.channels:
            raise ValueError(
                f"partial-channel edge expects input (B, {self.channels}, ...) with channels on axis 1, "
                f"got shape {tuple(x.shape)}"
            )
        if self.k == 1:
            return self.op(x, weights)
        c = self.channels // self.k
        active, bypass = x[:, :c], x[:, c:]
        out = self.op(active, weights)
        if self.stride == 2:
            bypass = self._downsample(bypass)
        if out.shape[2:] != bypass.shape[2:]:
            raise ValueError(
                f"partial-channel edge: op output {tuple(out.shape)} and bypass {tuple(bypass.shape)} disagree "
                f"on the spatial size (stride {self.stride}, input {tuple(x.shape)})"
            )
        return channel_shuffle(torch.cat([out, bypass], dim=1), self.k)

    def _downsample(self, x: torch.Tensor) -> torch.Tensor:
        spatial = x.dim() - 2
        if spatial == 0:
            raise ValueError(
                "a stride-2 partial-channel edge needs spatial axes to pool the bypass channels; got a "
                f"non-spatial input of shape {tuple(x.shape)} (tabular spaces must use stride 1)"
            )
        if spatial not in _MAX_POOL:
            raise ValueError(f"stride-2 partial-channel edges support 1-3 spatial axes, got {spatial}")
        return _MAX_POOL[spatial](x, kernel_size=2, stride=2, ceil_mode=True)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, k={self.k}, stride={self.stride}"
