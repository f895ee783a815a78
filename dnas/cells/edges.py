"""Cell edges and the DAG that sums them: the engine under every space's cells.

* :class:`EdgeOptions` says how a supernet's search edges compute; every space takes it as ``edge_options``, and
  :meth:`EdgeOptions.make_edge` is the only place a search edge is built.
* :class:`DagCell` is every cell's forward, search or discrete. Its node loop, :func:`run_nodes`, is also the loop
  of the DARTS evaluation cell (:mod:`dnas.export.darts`), which keeps the reference's module names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from dnas.ops.mixed import MIXED_OP_IMPLS, MixedOp
from dnas.ops.partial import PartialChannelEdge


@dataclass(frozen=True)
class EdgeOptions:
    """How the search edges of a supernet compute; every space takes this object as ``edge_options``.

    In a config: ``edge_options: {mixed_op_impl: fused, partial_channels: 4, edge_normalization: true}``.

    Args:
        mixed_op_impl: mixed-op implementation (:data:`dnas.ops.MIXED_OP_IMPLS`); None: the space's default
            (:attr:`Supernet.default_mixed_op_impl <dnas.cells.base.Supernet.default_mixed_op_impl>`: ``"fused"`` on
            DARTS, ``"naive"`` elsewhere). ``"fused"`` gives the same outputs and gradients as ``"naive"`` with a
            fraction of the saved activations (README); ``"naive"`` is needed only for double backward (exact
            second-order gradients through autograd).
        partial_channels: PC-DARTS' K (Xu et al., ICLR 2020): each edge's ops see the first ``C/K`` channels on
            axis 1, the rest bypass (:class:`~dnas.ops.partial.PartialChannelEdge`); 1 = off.
        edge_normalization: PC-DARTS edge normalisation: every architecture group gets β (one per edge); per node,
            the softmax of β over the incoming edges scales each edge's output, and the genotype rule reads α·β.
    """

    mixed_op_impl: str | None = None
    partial_channels: int = 1
    edge_normalization: bool = False

    def __post_init__(self) -> None:
        if self.mixed_op_impl is not None and self.mixed_op_impl not in MIXED_OP_IMPLS:
            raise ValueError(f"mixed_op_impl must be one of {MIXED_OP_IMPLS}, got {self.mixed_op_impl!r}")
        if isinstance(self.partial_channels, bool) or not isinstance(self.partial_channels, int):
            raise ValueError(f"partial_channels must be an int >= 1, got {self.partial_channels!r}")
        if self.partial_channels < 1:
            raise ValueError(f"partial_channels must be >= 1, got {self.partial_channels}")

    def make_edge(
        self,
        channels: int,
        stride: int,
        primitives: Sequence[str],
        affine: bool = False,
        pool_bn: bool = False,
        C_out: int | None = None,
    ) -> nn.Module:
        """One search edge, called as ``edge(x, weights_row)``: a mixed op, partial-channel wrapped when K > 1.

        ``channels`` are the input channels (axis 1); the other arguments are :class:`~dnas.ops.mixed.MixedOp`'s.
        """
        if self.mixed_op_impl is None:
            raise ValueError("EdgeOptions.mixed_op_impl is None; the supernet resolves it (Supernet.edge_options)")
        k = self.partial_channels
        if k == 1:
            return MixedOp(channels, stride, primitives, self.mixed_op_impl, affine, pool_bn=pool_bn, C_out=C_out)
        if C_out is not None and C_out != channels:
            raise ValueError(
                f"partial_channels={k} needs edges with as many output as input channels; got {channels} -> {C_out}"
            )
        if channels % k:
            raise ValueError(f"partial_channels={k} must divide the edge's channels ({channels})")
        op = MixedOp(channels // k, stride, primitives, self.mixed_op_impl, affine, pool_bn=pool_bn)
        return PartialChannelEdge(op, channels, k, stride)


class DagCell(nn.Module):
    """A cell as a DAG: node ``dst`` = Σ over its incoming edges of the edge's output on ``state[src]``.

    Search edges (mixed ops) are called as ``edge(x, weights_row)``, discrete edges (chosen ops) as ``edge(x)``.

    Args:
        num_inputs: input states (DARTS: 2, NAS-Bench-201: 1).
        num_nodes: intermediate nodes, numbered after the inputs.
        edges: ``(src, dst)`` per edge, in α row order (a discrete cell: the genotype's order).
        make_edge: ``(src, dst) -> module``.
        output: ``"concat"`` (of the intermediate nodes on the channel axis 1), ``"last"`` (the last node) or ``"sum"``.
    """

    def __init__(
        self,
        num_inputs: int,
        num_nodes: int,
        edges: Sequence[tuple[int, int]],
        make_edge: Callable[[int, int], nn.Module],
        output: str = "concat",
    ):
        super().__init__()
        if output not in ("concat", "last", "sum"):
            raise ValueError(f"output must be 'concat', 'last' or 'sum', got {output!r}")
        check_edges(edges, num_inputs, num_nodes)
        self.num_inputs, self.num_nodes = num_inputs, num_nodes
        self.edge_index = tuple(tuple(e) for e in edges)
        self.output = output
        self.edges = nn.ModuleList(make_edge(src, dst) for src, dst in self.edge_index)
        self._incoming = incoming_edges(self.edge_index, num_inputs, num_nodes)

    def forward(
        self,
        inputs: Sequence[torch.Tensor],
        weights: torch.Tensor | None = None,
        edge_scale: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The ``output`` combination of the nodes; ``weights``, ``edge_scale``: as :func:`run_nodes`."""
        if len(inputs) != self.num_inputs:
            raise ValueError(f"this cell takes {self.num_inputs} input(s), got {len(inputs)}")
        states = run_nodes(list(inputs), self.edges, self.edge_index, self._incoming, weights, edge_scale)
        if self.output == "concat":
            return torch.cat(states[self.num_inputs :], dim=1)
        if self.output == "last":
            return states[-1]
        return sum(states[self.num_inputs :])


def incoming_edges(edge_index: Sequence[tuple[int, int]], num_inputs: int, num_nodes: int) -> list[list[int]]:
    """Per intermediate node (in order), the indices of the edges that go into it, in edge order."""
    nodes = range(num_inputs, num_inputs + num_nodes)
    return [[i for i, (_, d) in enumerate(edge_index) if d == node] for node in nodes]


def run_nodes(
    states: list[torch.Tensor],
    edges: Sequence[nn.Module],
    edge_index: Sequence[tuple[int, int]],
    incoming: Sequence[Sequence[int]],
    weights: torch.Tensor | None = None,
    edge_scale: Sequence[torch.Tensor] | None = None,
    drop_prob: float = 0.0,
    droppable: Sequence[bool] = (),
) -> list[torch.Tensor]:
    """The node loop of every cell: append each intermediate node, Σ of its incoming edges' outputs, to ``states``.

    Args:
        states: the cell's input states (after any preprocessing); returned with the nodes appended.
        edges: one module per edge, called as ``edge(x)`` or, with ``weights``, ``edge(x, weights[i])``.
        edge_index: ``(src, dst)`` per edge.
        incoming: per node, its edges' indices (:func:`incoming_edges`), in summation order.
        weights: ``(E, K)`` edge weights of search edges; None for discrete edges.
        edge_scale: per node, a weight per incoming edge (edge normalisation).
        drop_prob: drop-path probability (:func:`drop_path`, 0 outside training) of the edges marked ``droppable``
            (the DARTS evaluation network: every op but identities).
        droppable: per edge, whether drop-path applies.
    """
    for n, rows in enumerate(incoming):
        scale = edge_scale[n] if edge_scale is not None else None
        total = 0
        for pos, i in enumerate(rows):
            x = states[edge_index[i][0]]
            out = edges[i](x) if weights is None else edges[i](x, weights[i])
            if drop_prob > 0.0 and droppable[i]:
                out = drop_path(out, drop_prob)
            total = total + (out if scale is None else scale[pos] * out)
        states.append(total)
    return states


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples with probability ``drop_prob``, rescale the rest by ``1/(1-drop_prob)``.

    As quark0/darts ``utils.drop_path`` (after FractalNet's drop-path, Larsson et al. 2017): one Bernoulli draw per
    sample, shared by all channels and positions.
    """
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], *([1] * (x.dim() - 1)), dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x / keep * mask


def check_edges(edges: Sequence[tuple[int, int]], num_inputs: int, num_nodes: int) -> None:
    """Raise a clear error for an edge to a later/missing node, a self loop, or a node without inputs."""
    last = num_inputs + num_nodes - 1
    for i, (src, dst) in enumerate(edges):
        if not num_inputs <= dst <= last:
            raise ValueError(f"edge {i} ({src}->{dst}) ends at node {dst}; intermediate nodes are {num_inputs}..{last}")
        if not 0 <= src < dst:
            raise ValueError(f"edge {i} ({src}->{dst}) must come from an earlier node (0..{dst - 1}); cells are DAGs")
    for node in range(num_inputs, last + 1):
        if not any(d == node for _, d in edges):
            raise ValueError(f"node {node} has no incoming edge")
