"""The supernet contract every tool relies on, and the architecture groups it owns.

A :class:`Supernet` owns its architecture groups (:class:`ArchGroup`: α, β, the selection buffers and the operations
on them) in ``self.arch``; its ``forward(x, weights=None)`` takes group -> ``(E, K)`` edge weights (default
:meth:`~Supernet.edge_weights`: softmax α, selection applied; search modules pass their own, e.g. Gumbel samples); a
selection rule :meth:`~Supernet.genotype` and a :class:`~dnas.genotypes.SpaceSpec`. Search modules, selection
callbacks, plots and latency tables talk to a space only through these.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from dnas.cells.edges import EdgeOptions
from dnas.genotypes import CellGenotype, Edge, Genotype, SpaceSpec
from dnas.genotypes.build import BUILD_KEY


class ArchGroup(nn.Module):
    """One architecture group: α over ``candidates`` for each of ``edges``, optional β, and the selection state.

    State (under ``arch.<name>.``): ``alpha`` ``(E, K)``, init ``init_std·N(0,1)`` as the DARTS code; ``beta``
    ``(E,)`` with PC-DARTS edge normalisation, else None; buffers ``mask`` (multiplies the weights; 0 removes an op or
    an edge), ``fixed`` (discretised edges) and ``override`` (their one-hot weights), so checkpoints carry selection
    progress. Everything that reads or changes this state goes through the methods below.

    Args:
        name: the group's name (a cell type such as ``normal``; the genotype's cell name).
        edges: ``(src, dst)`` per α row.
        candidates: op names per α column.
        init_std: standard deviation of the initial α (and β).
        edge_normalization: add β (PC-DARTS).
    """

    def __init__(
        self,
        name: str,
        edges: Sequence[tuple[int, int]],
        candidates: Sequence[str],
        init_std: float = 1e-3,
        edge_normalization: bool = False,
    ):
        super().__init__()
        self.name = name
        self.edges = tuple((int(s), int(d)) for s, d in edges)
        self.candidates = tuple(candidates)
        E, K = len(self.edges), len(self.candidates)
        self.alpha = nn.Parameter(init_std * torch.randn(E, K))
        self.beta: nn.Parameter | None = None
        if edge_normalization:
            self.add_beta(init_std)
        self.register_buffer("mask", torch.ones(E, K))
        self.register_buffer("fixed", torch.zeros(E, dtype=torch.bool))
        self.register_buffer("override", torch.zeros(E, K))
        nodes = sorted({d for _, d in self.edges})
        self.node_rows = [[r for r, (_, d) in enumerate(self.edges) if d == node] for node in nodes]
        """α rows of each destination node's incoming edges, nodes in increasing order."""

    def add_beta(self, init_std: float = 1e-3) -> nn.Parameter:
        """Turn on PC-DARTS edge normalisation: β (one per edge, init ``init_std·N(0,1)``)."""
        if self.beta is not None:
            raise ValueError(f"architecture group {self.name!r} already has β")
        self.beta = nn.Parameter(init_std * torch.randn(self.num_edges))
        return self.beta

    @property
    def num_edges(self) -> int:
        return len(self.edges)

    # ------------------------------------------------------------------ weights
    def weights(self, sampler: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """``sampler(α)`` (softmax by default), then discretised edges and masks applied."""
        return self.apply_selection(torch.softmax(self.alpha, dim=-1) if sampler is None else sampler(self.alpha))

    def apply_selection(self, weights: torch.Tensor) -> torch.Tensor:
        if self.fixed.any():
            weights = torch.where(self.fixed[:, None], self.override.to(weights.dtype), weights)
        return weights * self.mask.to(weights.dtype)

    def edge_scales(self) -> list[torch.Tensor] | None:
        """Per node, the softmax of β over its incoming edges (row order); None without edge normalisation."""
        if self.beta is None:
            return None
        return [torch.softmax(self.beta[rows], dim=-1) for rows in self.node_rows]

    @torch.no_grad()
    def selection_weights(self) -> torch.Tensor:
        """What a selection rule reads: softmax α with selection applied, each row times its node's β scale."""
        weights = self.weights().detach()
        scales = self.edge_scales()
        if scales is None:
            return weights
        scale = torch.empty(weights.shape[0], dtype=weights.dtype, device=weights.device)
        for rows, s in zip(self.node_rows, scales):
            scale[rows] = s.to(weights.dtype)
        return weights * scale[:, None]

    # ------------------------------------------------------------------ selection
    def fix_edge(self, edge: int, op: int) -> None:
        """Discretise ``edge`` to candidate ``op`` (one-hot weights from now on)."""
        self.override[edge].zero_()
        self.override[edge, op] = 1.0
        self.fixed[edge] = True

    def remove_edge(self, edge: int) -> None:
        """Zero every weight of ``edge`` from now on (topology selection)."""
        self.mask[edge].zero_()

    @contextlib.contextmanager
    def masked(self, edge: int, op: int | None = None) -> Iterator[None]:
        """Temporarily zero one op of an edge (or the whole edge when ``op`` is None); weights are not renormalised."""
        saved = self.mask[edge].clone()
        if op is None:
            self.mask[edge].zero_()
        else:
            self.mask[edge, op] = 0.0
        try:
            yield
        finally:
            self.mask[edge].copy_(saved)

    def is_available(self, edge: int, op: int) -> bool:
        """Whether candidate ``op`` of ``edge`` is still in play (not masked out)."""
        return bool(self.mask[edge, op] != 0)

    def undecided_edges(self) -> list[int]:
        return [i for i in range(self.num_edges) if not bool(self.fixed[i])]

    def removed_edges(self) -> list[int]:
        """Edges zeroed by :meth:`remove_edge` (every op masked): topology selection's decisions so far."""
        return [i for i in range(self.num_edges) if not bool(self.mask[i].any())]

    def fixed_ops(self) -> dict[int, int]:
        """Discretised edges -> their chosen candidate index."""
        return {int(i): int(self.override[i].argmax()) for i in torch.nonzero(self.fixed).flatten().tolist()}

    def extra_repr(self) -> str:
        return f"name={self.name!r}, edges={self.num_edges}, candidates={list(self.candidates)}"


SELECTION_BUFFERS = ("mask", "fixed", "override")
"""The :class:`ArchGroup` buffers that hold selection decisions (not statistics: never reset, never averaged)."""

_LEGACY_ARCH_KEY = re.compile(r"^(alpha|beta|mask|fixed|override)_(.+)$")


class Supernet(nn.Module):
    """Base class of all search spaces (see module docstring).

    Subclasses call :meth:`add_arch_group` in ``__init__``, implement :meth:`forward` and :meth:`genotype`, and set
    :attr:`space_spec`.
    """

    space_spec: SpaceSpec
    edge_options: EdgeOptions = EdgeOptions()
    default_mixed_op_impl: str = "naive"
    """The mixed-op implementation of edge options that leave it None."""

    def __init__(self, edge_options: EdgeOptions | None = None) -> None:
        super().__init__()
        edge_options = self.edge_options if edge_options is None else edge_options
        if not isinstance(edge_options, EdgeOptions):
            raise TypeError(f"edge_options must be a dnas.cells.EdgeOptions, got {type(edge_options).__name__}")
        if edge_options.mixed_op_impl is None:  # the space's default
            edge_options = dataclasses.replace(edge_options, mixed_op_impl=self.default_mixed_op_impl)
        self.edge_options = edge_options
        self.arch = nn.ModuleDict()
        self.register_load_state_dict_pre_hook(_rename_legacy_arch_keys)

    # ------------------------------------------------------------------ architecture parameters
    def add_arch_group(
        self,
        name: str,
        edges: Sequence[tuple[int, int]],
        candidates: Sequence[str],
        init_std: float = 1e-3,
        edge_normalization: bool | None = None,
    ) -> ArchGroup:
        """Register the architecture group ``name`` (see :class:`ArchGroup`).

        ``edge_normalization`` (β) defaults to :attr:`edge_options`'s.
        """
        if name in self.arch:
            raise ValueError(f"architecture group {name!r} already exists")
        if edge_normalization is None:
            edge_normalization = self.edge_options.edge_normalization
        group = ArchGroup(name, edges, candidates, init_std, edge_normalization)
        self.arch[name] = group
        return group

    @property
    def arch_groups(self) -> nn.ModuleDict:
        """Group name -> :class:`ArchGroup` (edges, candidates, α/β, selection state)."""
        return self.arch

    def alpha(self, group: str) -> nn.Parameter:
        return self.arch[group].alpha

    def named_arch_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """Architecture parameters (every group's α, and β with edge normalisation) with their state-dict names."""
        for name, group in self.arch.items():
            yield f"arch.{name}.alpha", group.alpha
            if group.beta is not None:
                yield f"arch.{name}.beta", group.beta

    def arch_parameters(self) -> list[nn.Parameter]:
        return [p for _, p in self.named_arch_parameters()]

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def selection_buffers(self) -> list[torch.Tensor]:
        """Every group's selection-state buffers (mask, fixed, override)."""
        return [getattr(g, b) for g in self.arch.values() for b in SELECTION_BUFFERS]

    def selection_buffer_names(self) -> set[str]:
        """State-dict names of :meth:`selection_buffers`."""
        return {f"arch.{name}.{b}" for name in self.arch for b in SELECTION_BUFFERS}

    # ------------------------------------------------------------------ edge weights
    def edge_weights(self, sampler: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Per-group edge weights: ``sampler(α)`` (softmax by default), then discretised edges and masks applied."""
        return {name: group.weights(sampler) for name, group in self.arch.items()}

    def edge_scales(self, group: str) -> list[torch.Tensor] | None:
        """Per-node weights of incoming edges (PC-DARTS edge normalisation); None when the group has no β."""
        return self.arch[group].edge_scales()

    def fix_edge(self, group: str, edge: int, op: int) -> None:
        """Discretise ``edge`` of ``group`` to candidate ``op``."""
        self.arch[group].fix_edge(edge, op)

    def remove_edge(self, group: str, edge: int) -> None:
        self.arch[group].remove_edge(edge)

    def masked(self, group: str, edge: int, op: int | None = None) -> contextlib.AbstractContextManager[None]:
        """Temporarily zero one op of an edge (or the whole edge when ``op`` is None)."""
        return self.arch[group].masked(edge, op)

    def undecided_edges(self, group: str) -> list[int]:
        return self.arch[group].undecided_edges()

    def removed_edges(self, group: str) -> list[int]:
        return self.arch[group].removed_edges()

    # ------------------------------------------------------------------ selection rule
    def selection_weights(self) -> dict[str, torch.Tensor]:
        """The weights the selection rule reads (softmax α with selection applied; times β's scales with β)."""
        return {name: group.selection_weights() for name, group in self.arch.items()}

    def build_options(self) -> dict[str, Any]:
        """Keyword arguments of the space's builder that rebuild this supernet's skeleton as a discrete network.

        Recorded in every genotype's ``meta["build"]`` (:data:`dnas.genotypes.build.BUILD_KEY`), so the discrete
        network of a search result has the searched sizes unless export or retrain options say otherwise.
        """
        return {}

    def build_meta(self) -> dict[str, Any]:
        """The genotype ``meta`` entry that records :meth:`build_options`."""
        return {BUILD_KEY: {"options": self.build_options()}}

    def genotype(self, weights: dict[str, torch.Tensor] | None = None) -> Genotype:  # pragma: no cover - abstract
        """Derive the discrete architecture with this space's rule."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, weights: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover


def _rename_legacy_arch_keys(module: nn.Module, state_dict: dict, prefix: str, *args: object) -> None:
    """State dicts written before :class:`ArchGroup` (``alpha_<group>``, ``mask_<group>``, ...) still load."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        match = _LEGACY_ARCH_KEY.match(key[len(prefix) :])
        if match and match.group(2) in module.arch:
            state_dict[f"{prefix}arch.{match.group(2)}.{match.group(1)}"] = state_dict.pop(key)


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
    for node, rows in zip(nodes, group.node_rows):
        live = [i for i in rows if float(weights[i].abs().sum()) > 0]  # removed edges (all-zero rows) never win
        scored = [(i, max(float(weights[i, j]) for j in keep)) for i in (live or rows)]
        for i, _ in sorted(scored, key=lambda t: -t[1])[:k]:
            best = max(keep, key=lambda j: float(weights[i, j]))  # the first maximum, as the reference's strict >
            edges.append(Edge(group.candidates[best], group.edges[i][0], node))
    return CellGenotype(tuple(edges), tuple(concat if concat is not None else nodes))
