"""The search-space base classes: a DAG cell engine and the supernet contract every tool relies on.

A :class:`Supernet` owns

* one or more **architecture groups** (e.g. DARTS' ``normal`` and ``reduce``): an α table of shape
  ``(num_edges, num_candidates)`` registered as ``alpha_<group>`` (an ``nn.Parameter``), plus two buffers used by
  selection: ``mask_<group>`` (multiplies the weights; 0 removes an op or an edge) and ``fixed_<group>`` (edges whose
  weights are replaced by ``override_<group>``, i.e. discretised). Buffers travel in checkpoints, so selection
  progress resumes.
* a forward ``forward(x, weights=None)``: ``weights`` maps group -> ``(E, K)`` edge weights. When omitted the supernet
  uses :meth:`edge_weights` (softmax of α, masks applied). Search modules pass their own (Gumbel samples, ...).
* a selection rule :meth:`genotype` and a :class:`~dnas.genotypes.SpaceSpec`.

Everything else (search modules, selection callbacks, plots, latency tables) talks to a space only through these.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from dnas.genotypes import CellGenotype, Edge, Genotype, SpaceSpec


@dataclass(frozen=True)
class ArchGroup:
    """One α table: which edges (``(src, dst)`` per row) and which candidate ops (columns) it weighs."""

    name: str
    edges: tuple[tuple[int, int], ...]
    candidates: tuple[str, ...]

    @property
    def num_edges(self) -> int:
        return len(self.edges)


class Supernet(nn.Module):
    """Base class of all search spaces (see module docstring).

    Subclasses call :meth:`add_arch_group` in ``__init__``, implement :meth:`forward` and :meth:`genotype`, and set
    :attr:`space_spec`.
    """

    space_spec: SpaceSpec

    def __init__(self) -> None:
        super().__init__()
        self.arch_groups: dict[str, ArchGroup] = {}

    # ------------------------------------------------------------------ architecture parameters
    def add_arch_group(
        self, name: str, edges: Sequence[tuple[int, int]], candidates: Sequence[str], init_std: float = 1e-3
    ) -> nn.Parameter:
        """Register ``alpha_<name>`` (init ``init_std·N(0,1)``, as the DARTS code) and its selection buffers."""
        group = ArchGroup(name, tuple(tuple(e) for e in edges), tuple(candidates))
        E, K = group.num_edges, len(group.candidates)
        alpha = nn.Parameter(init_std * torch.randn(E, K))
        self.register_parameter(f"alpha_{name}", alpha)
        self.register_buffer(f"mask_{name}", torch.ones(E, K))
        self.register_buffer(f"fixed_{name}", torch.zeros(E, dtype=torch.bool))
        self.register_buffer(f"override_{name}", torch.zeros(E, K))
        self.arch_groups[name] = group
        return alpha

    def alpha(self, group: str) -> nn.Parameter:
        return getattr(self, f"alpha_{group}")

    def named_arch_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """Architecture parameters: every parameter named ``alpha_*`` or ``beta_*`` (top level of the supernet)."""
        for name, p in self.named_parameters(recurse=False):
            if name.startswith(("alpha_", "beta_")):
                yield name, p

    def arch_parameters(self) -> list[nn.Parameter]:
        return [p for _, p in self.named_arch_parameters()]

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    # ------------------------------------------------------------------ edge weights
    def edge_weights(self, sampler: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Per-group edge weights: ``sampler(α)`` (softmax by default), then discretised edges and masks applied."""
        sampler = sampler or (lambda a: torch.softmax(a, dim=-1))
        return {name: self.apply_selection(name, sampler(self.alpha(name))) for name in self.arch_groups}

    def apply_selection(self, group: str, weights: torch.Tensor) -> torch.Tensor:
        fixed = getattr(self, f"fixed_{group}")
        if fixed.any():
            weights = torch.where(fixed[:, None], getattr(self, f"override_{group}").to(weights.dtype), weights)
        return weights * getattr(self, f"mask_{group}").to(weights.dtype)

    def fix_edge(self, group: str, edge: int, op: int) -> None:
        """Discretise ``edge`` to candidate ``op`` (one-hot weights from now on)."""
        override = getattr(self, f"override_{group}")
        override[edge].zero_()
        override[edge, op] = 1.0
        getattr(self, f"fixed_{group}")[edge] = True

    def remove_edge(self, group: str, edge: int) -> None:
        """Zero every weight of ``edge`` from now on (topology selection)."""
        getattr(self, f"mask_{group}")[edge].zero_()

    @contextlib.contextmanager
    def masked(self, group: str, edge: int, op: int | None = None) -> Iterator[None]:
        """Temporarily zero one op of an edge (or the whole edge when ``op`` is None); weights are not renormalised."""
        mask = getattr(self, f"mask_{group}")
        saved = mask[edge].clone()
        if op is None:
            mask[edge].zero_()
        else:
            mask[edge, op] = 0.0
        try:
            yield
        finally:
            mask[edge].copy_(saved)

    def undecided_edges(self, group: str) -> list[int]:
        fixed = getattr(self, f"fixed_{group}")
        return [i for i in range(self.arch_groups[group].num_edges) if not bool(fixed[i])]

    def removed_edges(self, group: str) -> list[int]:
        """Edges zeroed by :meth:`remove_edge` (every op masked): topology selection's decisions so far."""
        mask = getattr(self, f"mask_{group}")
        return [i for i in range(self.arch_groups[group].num_edges) if not bool(mask[i].any())]

    # ------------------------------------------------------------------ selection rule
    def selection_weights(self) -> dict[str, torch.Tensor]:
        """The weights the selection rule reads (softmax α with selection applied; PC-DARTS multiplies in β)."""
        with torch.no_grad():
            return {k: v.detach() for k, v in self.edge_weights().items()}

    def genotype(self, weights: dict[str, torch.Tensor] | None = None) -> Genotype:  # pragma: no cover - abstract
        """Derive the discrete architecture with this space's rule."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, weights: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover


def argmax_cell(weights: torch.Tensor, group: ArchGroup, exclude: Sequence[str] = ()) -> CellGenotype:
    """Per-edge argmax rule (NAS-Bench-201, chains, default for user cells); ``exclude`` drops candidates."""
    keep = [k for k, name in enumerate(group.candidates) if name not in exclude]
    edges = []
    for row, (src, dst) in zip(weights, group.edges):
        k = keep[int(torch.argmax(row[keep]))]
        edges.append(Edge(group.candidates[k], src, dst))
    last = max(dst for _, dst in group.edges)
    return CellGenotype(tuple(edges), (last,))


def topk_cell(
    weights: torch.Tensor, group: ArchGroup, k: int = 2, exclude: Sequence[str] = ("none",), concat=None
) -> CellGenotype:
    """The DARTS rule: per node keep the ``k`` incoming edges with the strongest non-excluded op.

    Ties keep the lower input first (stable sort) and the lower op index (strict ``>``), as the reference does.
    Genes are emitted in score order, not input order.
    """
    keep = [j for j, name in enumerate(group.candidates) if name not in exclude]
    if not keep:
        raise ValueError(f"every candidate of group {group.name!r} is excluded")
    nodes = sorted({dst for _, dst in group.edges})
    edges = []
    for node in nodes:
        rows = [i for i, (_, dst) in enumerate(group.edges) if dst == node]
        live = [i for i in rows if float(weights[i].abs().sum()) > 0]  # removed edges (all-zero rows) never win
        scored = [(i, max(float(weights[i, j]) for j in keep)) for i in (live or rows)]
        chosen = sorted(scored, key=lambda t: -t[1])[:k]
        for i, _ in chosen:
            best = keep[0]
            for j in keep:
                if float(weights[i, j]) > float(weights[i, best]):
                    best = j
            edges.append(Edge(group.candidates[best], group.edges[i][0], node))
    return CellGenotype(tuple(edges), tuple(concat if concat is not None else nodes))


class DagCell(nn.Module):
    """A cell as a DAG of mixed-op edges: node ``dst`` = Σ over its incoming edges of ``edge(state[src], w_row)``.

    Args:
        num_inputs: input states (DARTS: 2, NAS-Bench-201: 1).
        num_nodes: intermediate nodes, numbered after the inputs.
        edges: ``(src, dst)`` per edge, in α row order.
        make_edge: ``(src, dst) -> module`` called as ``module(x, weights_row)``.
        output: ``"concat"`` (channel concat of the intermediate nodes), ``"last"`` (the last node), or ``"sum"``.
        concat_dim: the channel axis for ``"concat"``.
    """

    def __init__(
        self,
        num_inputs: int,
        num_nodes: int,
        edges: Sequence[tuple[int, int]],
        make_edge: Callable[[int, int], nn.Module],
        output: str = "concat",
        concat_dim: int = 1,
    ):
        super().__init__()
        if output not in ("concat", "last", "sum"):
            raise ValueError(f"output must be 'concat', 'last' or 'sum', got {output!r}")
        check_edges(edges, num_inputs, num_nodes)
        self.num_inputs, self.num_nodes = num_inputs, num_nodes
        self.edge_index = tuple(tuple(e) for e in edges)
        self.output, self.concat_dim = output, concat_dim
        self.edges = nn.ModuleList(make_edge(src, dst) for src, dst in self.edge_index)
        self._incoming = [
            [i for i, (_, d) in enumerate(self.edge_index) if d == node]
            for node in range(num_inputs, num_inputs + num_nodes)
        ]

    def forward(
        self, inputs: Sequence[torch.Tensor], weights: torch.Tensor, edge_scale: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """``weights``: ``(E, K)``; ``edge_scale``: optional per-node weights of incoming edges (edge normalisation)."""
        states = list(inputs)
        for n, rows in enumerate(self._incoming):
            scale = edge_scale[n] if edge_scale is not None else None
            total = 0
            for pos, i in enumerate(rows):
                out = self.edges[i](states[self.edge_index[i][0]], weights[i])
                total = total + (out if scale is None else scale[pos] * out)
            states.append(total)
        if self.output == "concat":
            return torch.cat(states[self.num_inputs :], dim=self.concat_dim)
        if self.output == "last":
            return states[-1]
        return sum(states[self.num_inputs :])


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
