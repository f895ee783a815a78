"""The FBNet search space (Wu et al. 2019, Table 1): 22 searchable layers, 9 candidate blocks each.

The macro-architecture is a stem conv, seven stages of TBS (to-be-searched) layers, a 1×1 head conv, global pooling
and a linear classifier. The layers form a chain: a :class:`~dnas.cells.CellSupernet` cell whose edges go
``l -> l+1``, so one α group ``layers`` of shape ``(22, 9)`` holds every choice, the genotype is a chain
(:meth:`dnas.Genotype.chain`), the selection rule is the per-layer argmax, and the discrete network is the same
skeleton with the chosen block per layer (:meth:`~dnas.cells.CellSupernet.from_genotype`).

Input resolution, width, classes and head width are settings. Strides adapt to the resolution: the 224 px layout
downsamples 5 times (stem and the first layer of stages 2, 3, 4 and 6), ending at 7×7; a smaller input keeps only the
*last* ``d = clamp(floor(log2(input_size / 4)), 0, 5)`` of those reductions (CIFAR 32 px: 3, ending at 4×4; digits
8 px: 1), as CIFAR adaptations of ImageNet nets drop the early ones. ``stem_stride`` / ``stage_strides`` override it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from dnas.cells.custom import CellSupernet
from dnas.cells.edges import EdgeOptions
from dnas.genotypes import get_space_spec
from dnas.ops.fbnet import FBNET_PRIMITIVES, conv_bn
from dnas.ops.registry import build_op

STAGE_CHANNELS: tuple[int, ...] = (16, 24, 32, 64, 112, 184, 352)
"""Output channels of the 7 TBS stages (paper Table 1)."""
STAGE_REPEATS: tuple[int, ...] = (1, 4, 4, 4, 4, 4, 1)
"""Layers per stage: 22 in all."""
IMAGENET_STRIDES: tuple[int, ...] = (2, 1, 2, 2, 2, 1, 2, 1)
"""Stride of the stem, then of the first layer of each stage, at 224 px."""
NUM_LAYERS = sum(STAGE_REPEATS)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a width to a multiple of ``divisor`` (at least ``divisor``), never more than 10 % below ``value``."""
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * value else out


def adapted_strides(input_size: int) -> tuple[int, ...]:
    """Stem + stage strides for ``input_size`` px (module docstring): keep the last ``d`` of the 5 reductions."""
    if input_size < 1:
        raise ValueError(f"input_size must be >= 1, got {input_size}")
    d = min(5, max(0, int(math.floor(math.log2(input_size / 4))))) if input_size >= 4 else 0
    positions = [i for i, s in enumerate(IMAGENET_STRIDES) if s == 2]
    keep = set(positions[len(positions) - d :])
    return tuple(2 if i in keep else 1 for i in range(len(IMAGENET_STRIDES)))


def layer_plan(
    input_size: int = 224,
    width_mult: float = 1.0,
    stem_channels: int = 16,
    stem_stride: int | None = None,
    stage_strides: Sequence[int] | None = None,
) -> tuple[int, int, list[tuple[int, int, int]]]:
    """``(stem channels, stem stride, [(C_in, C_out, stride) per layer])`` of the macro-architecture."""
    strides = list(adapted_strides(input_size))
    if stem_stride is not None:
        strides[0] = int(stem_stride)
    if stage_strides is not None:
        if len(stage_strides) != len(STAGE_CHANNELS):
            raise ValueError(f"stage_strides needs {len(STAGE_CHANNELS)} entries (one per stage), got {stage_strides}")
        strides[1:] = [int(s) for s in stage_strides]
    for s in strides:
        if s not in (1, 2):
            raise ValueError(f"strides must be 1 or 2, got {strides}")
    C_stem = make_divisible(stem_channels * width_mult)
    layers, C_in = [], C_stem
    for stage, (c, n) in enumerate(zip(STAGE_CHANNELS, STAGE_REPEATS)):
        C_out = make_divisible(c * width_mult)
        for i in range(n):
            layers.append((C_in, C_out, strides[stage + 1] if i == 0 else 1))
            C_in = C_out
    return C_stem, strides[0], layers


class FBNetStemHead(nn.Module):
    """The fixed parts: ``stem`` (conv3×3-BN-ReLU); the forward is the head (conv1×1-BN-ReLU, pool, dropout, linear)."""

    def __init__(
        self,
        in_channels: int,
        C_stem: int,
        stem_stride: int,
        C_last: int,
        head_channels: int,
        num_classes: int,
        dropout: float,
    ):
        super().__init__()
        self.stem = conv_bn(in_channels, C_stem, 3, stem_stride)
        self.head = conv_bn(C_last, head_channels, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(head_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits from the last layer's output ``x`` (B, C_last, h, w)."""
        return self.classifier(self.dropout(self.pool(self.head(x)).flatten(1)))


class FBNetSupernet(CellSupernet):
    """The FBNet network: the stochastic supernet, or with :meth:`from_genotype` the discrete network of a genotype.

    Args:
        num_classes: classifier outputs (ImageNet: 1000; the FBNet search used ImageNet-100).
        in_channels: image channels.
        input_size: input height = width in pixels; sets the strides (module docstring).
        width_mult: multiplies every width (rounded to multiples of 8).
        head_channels: width of the 1×1 head conv (FBNet-A: 1504; B, C: 1984).
        stem_channels: width of the stem conv before ``width_mult`` (16).
        stem_stride: override the adapted stem stride.
        stage_strides: override the adapted strides of the 7 stages' first layers.
        primitives: candidate blocks, a subset of the 9 FBNet blocks, in α column order.
        affine: BN affine flag inside the candidate blocks while searching.
        dropout: dropout before the classifier.
        edge_options: the search edges (:class:`~dnas.cells.edges.EdgeOptions`); partial channels need layers with
            as many output as input channels, which the FBNet plan does not have.
    """

    space_name = "fbnet"
    candidates = FBNET_PRIMITIVES
    num_nodes = NUM_LAYERS
    edges = tuple((i, i + 1) for i in range(NUM_LAYERS))
    cell_types = ("layers",)

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        input_size: int = 224,
        width_mult: float = 1.0,
        head_channels: int = 1984,
        stem_channels: int = 16,
        stem_stride: int | None = None,
        stage_strides: Sequence[int] | None = None,
        primitives: Sequence[str] = FBNET_PRIMITIVES,
        affine: bool = True,
        dropout: float = 0.0,
        edge_options: EdgeOptions | None = None,
    ):
        super().__init__(edge_options, primitives)
        unknown = [p for p in primitives if p not in FBNET_PRIMITIVES]
        if unknown or not primitives:
            raise ValueError(f"primitives {unknown or list(primitives)}: not FBNet blocks; allowed {FBNET_PRIMITIVES}")
        self.search_affine = affine
        self.num_classes, self.in_channels = num_classes, in_channels
        C_stem, s_stem, self.plan = layer_plan(input_size, width_mult, stem_channels, stem_stride, stage_strides)
        self.body = FBNetStemHead(in_channels, C_stem, s_stem, self.plan[-1][1], head_channels, num_classes, dropout)
        # the chain itself, so layers are named ``layers.edges.<l>`` (the module paths cost tables are keyed by)
        self.layers = self.make_cell(C_stem).dag

    def make_edge(self, group: str, src: int, dst: int, channels: int, stride: int) -> nn.Module:
        C_in, C_out, stride = self.plan[src]
        return self.edge_options.make_edge(
            C_in, stride, self.candidate_names, affine=self.search_affine, pool_bn=False, C_out=C_out
        )

    def make_discrete_edge(self, group: str, src: int, dst: int, op: str, channels: int, stride: int) -> nn.Module:
        C_in, C_out, stride = self.plan[src]
        return build_op(op, C_in, C_out, stride, True)

    def forward(self, x: torch.Tensor, weights: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Logits for images ``x`` (B, C_in, H, W); ``weights["layers"]`` is (22, K)."""
        w = self.cell_weights(weights)  # None in the discrete network
        x = self.body.stem(x)
        return self.body(self.layers([x]) if w is None else self.layers([x], *w["layers"]))


FBNET_SPACE = get_space_spec(FBNetSupernet.space_name)
"""The genotype rules of the ``fbnet`` space: a chain of 22 layers, one FBNet block each."""
