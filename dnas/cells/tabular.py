"""A tabular cell space (feature vectors ``(B, F)``); a :class:`CellSupernet` subclass.

Each cell is NAS-Bench-201-shaped (input node 0, nodes 1..3, all six edges, output = node 3) over
:data:`~dnas.ops.tabular.TABULAR_PRIMITIVES`: zero, identity, linear, two-layer MLP, layer norm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from dnas.cells.custom import CellSupernet
from dnas.cells.edges import EdgeOptions
from dnas.ops.tabular import TABULAR_PRIMITIVES


class TabularSupernet(CellSupernet):
    """Linear stem ``F -> hidden`` (+ BN) -> ``num_cells`` searched cells -> BN, ReLU, linear classifier.

    Args:
        in_features: F, features per row (scikit-learn breast_cancer: 30, wine: 13, iris: 4).
        num_classes: classifier outputs.
        hidden: width of the cells.
        num_cells: searched cells (all share one α).
        dropout: dropout before the classifier.
        primitives: candidate ops in α column order, a subset of the space's (:class:`CellSupernet`).
        edge_options: the search edges (:class:`~dnas.cells.edges.EdgeOptions`).
    """

    space_name = "tabular"
    candidates = TABULAR_PRIMITIVES
    genotype_exclude = ("none",)  # per-edge argmax over the real ops (a "none" edge can orphan a node)

    def __init__(
        self,
        in_features: int = 30,
        num_classes: int = 2,
        hidden: int = 32,
        num_cells: int = 2,
        dropout: float = 0.0,
        primitives: Sequence[str] = TABULAR_PRIMITIVES,
        edge_options: EdgeOptions | None = None,
    ):
        super().__init__(edge_options, primitives)
        if in_features < 1 or hidden < 1 or num_cells < 1:
            raise ValueError(f"in_features, hidden, num_cells must be >= 1, got {in_features}, {hidden}, {num_cells}")
        self.num_classes, self.in_features = num_classes, in_features
        self.stem = nn.Sequential(nn.Linear(in_features, hidden, bias=False), nn.BatchNorm1d(hidden))
        self.cells = nn.ModuleList(self.make_cell(hidden) for _ in range(num_cells))
        self.head = nn.Sequential(
            nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor, weights: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Logits for rows ``x`` (B, in_features)."""
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"expected rows of shape (B, {self.in_features}), got {tuple(x.shape)}")
        w = self.cell_weights(weights)
        h = self.stem(x)  # (B, hidden)
        for cell in self.cells:
            h = cell(h, w)
        return self.head(h)
