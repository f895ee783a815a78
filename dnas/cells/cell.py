"""The cell modules a :class:`~dnas.cells.custom.CellSupernet` builds: per-input preprocessing, then a DAG.

:class:`SearchCell` runs its :class:`~dnas.cells.edges.DagCell` of search edges on the edge weights of its α group;
:class:`DiscreteCell` runs the chosen op of each genotype edge. Both take the same call ``cell(inputs, weights)``, so
a space's forward is one loop for the supernet and its discrete network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from dnas.cells.edges import DagCell

CellWeights = Mapping[str, tuple[torch.Tensor, Sequence[torch.Tensor] | None]]
"""What :meth:`CellSupernet.cell_weights <dnas.cells.custom.CellSupernet.cell_weights>` returns: group -> (edge
weights ``(E, K)``, per-node edge scales)."""


class _Cell(nn.Module):
    """Optional per-input ``preprocess<i>`` modules, then the cell's :class:`~dnas.cells.edges.DagCell`."""

    def __init__(self, group: str, dag: DagCell, preprocess: Sequence[nn.Module] = ()):
        super().__init__()
        self.group = group
        if preprocess and len(preprocess) != dag.num_inputs:
            raise ValueError(f"preprocess needs one module per cell input ({dag.num_inputs}), got {len(preprocess)}")
        self.num_preprocess = len(preprocess)
        for i, module in enumerate(preprocess):  # before the edges: the DARTS module (state-dict) order
            self.add_module(f"preprocess{i}", module)
        self.dag = dag

    def inputs(self, inputs: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The DAG's input states: ``inputs`` as a list, each through its ``preprocess<i>`` module if any."""
        states = [inputs] if isinstance(inputs, torch.Tensor) else list(inputs)
        if self.num_preprocess:
            states = [getattr(self, f"preprocess{i}")(x) for i, x in enumerate(states)]
        return states


class SearchCell(_Cell):
    """A supernet cell: a :class:`~dnas.cells.edges.DagCell` of search edges weighted by α group ``group``."""

    def forward(self, inputs: torch.Tensor | Sequence[torch.Tensor], weights: CellWeights | None) -> torch.Tensor:
        """``inputs``: the cell's input tensor(s); ``weights``: :meth:`~dnas.cells.custom.CellSupernet.cell_weights`."""
        if weights is None:
            raise ValueError("a search cell needs edge weights: pass supernet.cell_weights(weights) to it")
        w, scale = weights[self.group]
        return self.dag(self.inputs(inputs), w, scale)


class DiscreteCell(_Cell):
    """A found cell: a :class:`~dnas.cells.edges.DagCell` over the genotype's edges (its order), ``op_names`` each."""

    def __init__(self, group: str, dag: DagCell, op_names: Sequence[str], preprocess: Sequence[nn.Module] = ()):
        super().__init__(group, dag, preprocess)
        self.op_names = tuple(op_names)

    def forward(self, inputs: torch.Tensor | Sequence[torch.Tensor], weights: Any = None) -> torch.Tensor:
        """As :class:`SearchCell`'s; ``weights`` is ignored."""
        return self.dag(self.inputs(inputs))

    def extra_repr(self) -> str:
        return ", ".join(f"{op}({s}->{d})" for op, (s, d) in zip(self.op_names, self.dag.edge_index))
