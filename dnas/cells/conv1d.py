"""A 1-D convolutional cell space for sequences and signals (MNIST-1D's example); a :class:`CellSupernet` subclass.

Each cell is NAS-Bench-201-shaped (input node 0, nodes 1..3, all six edges, output = node 3) over
:data:`~dnas.ops.conv1d.CONV1D_PRIMITIVES`: zero, identity, max/avg pooling, 1-D convolutions of kernel 3 and 5,
plain and dilated. Stages of cells are separated by a stride-2 convolution that doubles the channels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from dnas.cells.custom import CellSupernet
from dnas.cells.edges import EdgeOptions
from dnas.ops.conv1d import CONV1D_PRIMITIVES


class Conv1dSupernet(CellSupernet):
    """Stem conv -> ``stages`` × (``cells_per_stage`` searched cells) with stride-2 reductions -> BN, ReLU, GAP, linear.

    Args:
        channels: channels of the first stage (doubled at each reduction).
        cells_per_stage: searched cells per stage.
        stages: number of stages (``stages - 1`` reductions).
        num_classes: classifier outputs.
        in_channels: input channels of the sequence ``(B, in_channels, L)``.
        primitives: candidate ops in α column order, a subset of the space's (:class:`CellSupernet`).
        edge_options: the search edges (:class:`~dnas.cells.edges.EdgeOptions`).
    """

    space_name = "conv1d"
    candidates = CONV1D_PRIMITIVES
    genotype_exclude = ("none",)  # per-edge argmax over the real ops (a "none" edge can orphan a node)

    def __init__(
        self,
        channels: int = 16,
        cells_per_stage: int = 1,
        stages: int = 2,
        num_classes: int = 10,
        in_channels: int = 1,
        primitives: Sequence[str] = CONV1D_PRIMITIVES,
        edge_options: EdgeOptions | None = None,
    ):
        super().__init__(edge_options, primitives)
        if stages < 1 or cells_per_stage < 1:
            raise ValueError(f"stages and cells_per_stage must be >= 1, got {stages}, {cells_per_stage}")
        self.num_classes = num_classes
        self.in_channels = in_channels
        C = channels
        self.stem = nn.Sequential(nn.Conv1d(in_channels, C, 5, padding=2, bias=False), nn.BatchNorm1d(C))
        self.reductions = nn.ModuleList()
        self.stages = nn.ModuleList()
        for s in range(stages):
            if s > 0:  # (B, C, L) -> (B, 2C, ceil(L/2))
                self.reductions.append(
                    nn.Sequential(nn.ReLU(), nn.Conv1d(C, 2 * C, 3, 2, 1, bias=False), nn.BatchNorm1d(2 * C))
                )
                C *= 2
            self.stages.append(nn.ModuleList(self.make_cell(C) for _ in range(cells_per_stage)))
        self.head = nn.Sequential(
            nn.BatchNorm1d(C), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(C, num_classes)
        )

    def forward(self, x: torch.Tensor, weights: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Logits for sequences ``x`` (B, in_channels, L)."""
        w = self.cell_weights(weights)
        h = self.stem(x)  # (B, C, L)
        for s, cells in enumerate(self.stages):
            if s > 0:
                h = self.reductions[s - 1](h)
            for cell in cells:
                h = cell(h, w)
        return self.head(h)
