"""Export builder of the ``"fbnet"`` space: a chain genotype -> :class:`FBNetModel`, a plain ``torch.nn`` network.

Macro options come from the genotype's recorded build options (``meta["build"]``, written by
:class:`~dnas.cells.fbnet.FBNetSupernet`) and are overridden by keyword options, so a genotype found on digits rebuilds
for 224 px ImageNet with ``build_model(g, num_classes=1000, input_size=224, in_channels=3)``. Blocks are
:mod:`dnas.ops.fbnet` modules (only ``nn.Conv2d``, ``nn.BatchNorm2d``, ``nn.ReLU``, a view/transpose shuffle), in
one ``nn.Sequential``.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from dnas.cells.fbnet import FBNET_SPACE, layer_plan
from dnas.export.builders import register_builder
from dnas.genotypes import Genotype, GenotypeError
from dnas.genotypes.core import build_options
from dnas.ops.fbnet import conv_bn
from dnas.ops.registry import build_op


class FBNetModel(nn.Module):
    """A discrete FBNet: stem conv3×3-BN-ReLU, the chosen blocks, conv1×1-BN-ReLU head, pool, dropout, linear."""

    def __init__(
        self,
        ops: list[str],
        num_classes: int = 1000,
        in_channels: int = 3,
        input_size: int = 224,
        width_mult: float = 1.0,
        head_channels: int = 1984,
        stem_channels: int = 16,
        stem_stride: int | None = None,
        stage_strides: list[int] | None = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        C_stem, s_stem, plan = layer_plan(input_size, width_mult, stem_channels, stem_stride, stage_strides)
        if len(ops) != len(plan):
            raise GenotypeError(f"an FBNet genotype needs {len(plan)} layer choices, got {len(ops)}")
        self.ops = list(ops)
        self.stem = conv_bn(in_channels, C_stem, 3, s_stem)
        self.layers = nn.Sequential(*(build_op(op, c_in, c_out, s, True) for op, (c_in, c_out, s) in zip(ops, plan)))
        self.head = conv_bn(plan[-1][1], head_channels, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(head_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.layers(self.stem(x)))  # (B, head, h, w)
        return self.classifier(self.dropout(self.pool(x).flatten(1)))


def fbnet_options(genotype: Genotype, **options: Any) -> dict[str, Any]:
    """The :class:`FBNetModel` keyword arguments of ``genotype``: its recorded build options, then ``options``."""
    allowed = list(build_fbnet.signature.parameters)
    unknown = set(options) - set(allowed)
    if unknown:
        raise TypeError(f"unknown FBNet export option(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    return build_options(genotype, options, allowed)


@register_builder("fbnet")
def build_fbnet(genotype: Genotype, **options: Any) -> FBNetModel:
    """Build the discrete network of an ``"fbnet"`` genotype (options: :class:`FBNetModel` arguments)."""
    genotype.validate(FBNET_SPACE)
    ops = [e.op for e in genotype.cells["layers"].edges]
    return FBNetModel(ops, **fbnet_options(genotype, **options))


_SIGNATURE = inspect.signature(FBNetModel)
build_fbnet.signature = _SIGNATURE.replace(parameters=list(_SIGNATURE.parameters.values())[1:])  # without ops
