"""User-defined cell search spaces: subclass :class:`CellSupernet`, declare the cell, get search and export for free.

A new domain (signals, tables, graphs, ...) is one subclass that declares its space name, candidate ops, cell DAG
and genotype rule as class attributes (:class:`CellSupernet`) and builds its stem, cells and head in ``__init__`` with
:meth:`CellSupernet.make_cell`::

    class SignalSpace(CellSupernet):
        space_name = "signal"
        candidates = ("none", "skip_connect", "conv1d_k3", "conv1d_k5")
        num_nodes = 3

        def __init__(self, channels: int = 16, num_classes: int = 10):
            super().__init__()
            self.stem = nn.Conv1d(1, channels, 3, padding=1)
            self.cells = nn.ModuleList(self.make_cell(channels) for _ in range(2))
            self.head = nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(channels, num_classes))

        def forward(self, x, weights=None):
            w = self.cell_weights(weights)          # None in an exported (discrete) network
            h = self.stem(x)
            for cell in self.cells:
                h = cell(h, w)
            return self.head(h)

Everything else comes from the base class: one :class:`~dnas.cells.base.ArchGroup` per cell type (so every search
module and selection callback works), search edges from ``edge_options``, a registered
:class:`~dnas.genotypes.SpaceSpec`, and the discrete network: ``dnas.export.build_model(genotype)`` (or
``SignalSpace.from_genotype(genotype)``) builds the *same* class, each cell reduced to the chosen op per edge
(``affine=True`` norms), at the sizes recorded in the genotype's ``meta["build"]`` (the JSON-able constructor
arguments) unless options say otherwise. Declarations are checked by :mod:`dnas.cells.declarations`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from dnas.cells.base import ArchGroup, Supernet, argmax_cell, topk_cell
from dnas.cells.cell import CellWeights, DiscreteCell, SearchCell
from dnas.cells.declarations import (
    candidate_names,
    check_declarations,
    declared_edges,
    dense_edges,
    excluded_candidates,
    recording_init,
    register_candidates,
    register_space_class,
    space_class,
    space_classes,
    space_spec_of,
)
from dnas.cells.edges import DagCell, EdgeOptions
from dnas.genotypes import CellGenotype, Edge, Genotype, GenotypeError, SpaceSpec, load, register_space
from dnas.genotypes.build import CANDIDATES_KEY, build_options
from dnas.ops.registry import OpFactory, build_op

__all__ = ["CellSupernet", "DiscreteCell", "SearchCell", "dense_edges", "space_class", "space_classes"]


@dataclass(frozen=True)
class _DiscreteBuild:
    genotype: Genotype
    affine: bool


def _no_cell_weights(self, weights=None):
    """A discrete network's cells take no edge weights (the exported form of :meth:`CellSupernet.cell_weights`)."""
    return None


class CellSupernet(Supernet):
    """Base class of user-declared cell search spaces (see the module docstring for a complete example).

    The attributes are class attributes; a subclass may also set them on ``self`` before its first :meth:`make_cell`.

    Attributes:
        space_name: the space's name (genotype ``space`` field, registered spec and export builder). Required.
        candidates: candidate op names in α column order; an entry may be ``(name, factory)`` with
            ``factory(C_in, C_out, stride, affine) -> nn.Module``, registered under ``name`` at class definition.
        num_inputs: input nodes of a cell (numbered ``0..num_inputs-1``).
        num_nodes: intermediate nodes (numbered after the inputs).
        edges: ``(src, dst)`` per edge in α row order; None means :func:`dense_edges`.
        cell_output: ``"last"`` (the last node), ``"sum"`` or ``"concat"`` (channel axis 1) of the intermediate nodes.
        cell_types: α groups this space may use (``make_cell(group=...)``); the first is the default.
        genotype_rule: ``"argmax"`` (per-edge argmax, :func:`~dnas.cells.base.argmax_cell`) or ``"topk"`` (DARTS
            rule, :func:`~dnas.cells.base.topk_cell`).
        topk_edges: k of the ``"topk"`` rule.
        genotype_exclude: candidates the rule never picks (``"topk"`` excludes ``"none"`` when this is None).
        search_affine: affine flag of the candidates' norms during search (False as DARTS / NAS-Bench-201).
        pool_bn: append ``BatchNorm2d(affine=False)`` to 2-D pooling candidates, as the DARTS search MixedOp does.

    Args:
        edge_options: the search edges (:class:`~dnas.cells.edges.EdgeOptions`: mixed-op implementation, PC-DARTS
            partial channels and edge normalisation); a space passes its ``edge_options`` argument on.
        candidates: this instance's candidates, a subset of the class's (DARTS-PT's "s5" space drops ``none``, Wang
            et al. 2021); ``genotype_exclude`` keeps those of its entries that are among them.
    """

    space_name: ClassVar[str]
    candidates: Sequence[str | tuple[str, OpFactory]] = ()
    num_inputs: int = 1
    num_nodes: int = 3
    edges: Sequence[tuple[int, int]] | None = None
    cell_output: str = "last"
    cell_types: Sequence[str] = ("cell",)
    genotype_rule: str = "argmax"
    topk_edges: int = 2
    genotype_exclude: Sequence[str] | None = None
    search_affine: bool = False
    pool_bn: bool = False
    genotype_spec: ClassVar[SpaceSpec | None] = None
    """The spec genotype files of this space are read with, when it is not the one derived from the declarations
    (DARTS: any registered op, registered by its module); None: the derived spec is registered."""

    # ------------------------------------------------------------------ class-level registration
    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "space_name" not in cls.__dict__ and isinstance(getattr(cls, "space_name", None), str):
            raise TypeError(
                f"{cls.__name__} subclasses the space {cls.space_name!r} without its own space_name; a changed "
                f"network is another space (its genotypes must export to {cls.__name__}): set space_name"
            )
        cls.candidates = tuple(register_candidates(cls.__name__, cls.candidates))
        if "__init__" in cls.__dict__:
            cls.__init__ = recording_init(cls.__dict__["__init__"])
        if "space_name" in cls.__dict__:
            register_space_class(cls)  # dnas.export.build_model finds the space's network here
            if cls.genotype_spec is not None:
                register_space(cls.genotype_spec)
            elif cls.candidates:  # else declared per instance: the spec is registered at the first make_cell
                register_space(space_spec_of(cls))

    def __init__(self, edge_options: EdgeOptions | None = None, candidates: Sequence[str] | None = None) -> None:
        super().__init__(edge_options)
        if candidates is not None:
            self.candidates = tuple(candidates)
            if self.genotype_exclude is not None:
                self.genotype_exclude = tuple(n for n in self.genotype_exclude if n in self.candidates)
        if not isinstance(getattr(type(self), "space_name", None), str) or not type(self).space_name:
            raise TypeError(f"{type(self).__name__} must set the class attribute space_name (a non-empty string)")
        if "_discrete" not in self.__dict__:  # from_genotype sets it on the instance before __init__ runs
            self._discrete: _DiscreteBuild | None = None
        self._declared = False
        self._constructed = False
        self._used_groups: set[str] = set()
        if not hasattr(self, "_space_options"):
            self._space_options: dict[str, Any] = {}

    # ------------------------------------------------------------------ declarations
    @property
    def candidate_names(self) -> tuple[str, ...]:
        return candidate_names(self)

    @property
    def cell_edges(self) -> tuple[tuple[int, int], ...]:
        return declared_edges(self)

    @property
    def space_spec(self) -> SpaceSpec:  # type: ignore[override]
        return space_spec_of(self)

    @property
    def is_discrete(self) -> bool:
        """True for a network built by :meth:`from_genotype` (no α, fixed ops)."""
        return self._discrete is not None

    def _finalize_declarations(self) -> None:
        """Check the declarations once (first :meth:`make_cell`) and register the space's spec."""
        if self._declared:
            return
        self.candidates = tuple(register_candidates(type(self).__name__, self.candidates))
        check_declarations(self)
        names = self.candidate_names
        spec = self.space_spec
        declared = candidate_names(type(self))
        if type(self).genotype_spec is not None:
            pass  # the space registered its own genotype rules
        elif not declared:  # a space that declares its candidates per instance registers them at its first cell
            register_space(spec)
        elif not set(names) <= set(declared):  # the registered spec (class candidates) would reject its genotypes
            raise ValueError(
                f"{type(self).__name__}: candidates {sorted(set(names) - set(declared))} are not among the space's "
                f"declared candidates {list(declared)}; declare them on the class (space {self.space_name!r})"
            )
        if self._discrete is not None:
            allowed = set(self.cell_edges)
            for group, cell in self._discrete.genotype.cells.items():
                for i, e in enumerate(cell.edges):
                    if (e.src, e.dst) not in allowed:
                        raise GenotypeError(
                            f"genotype cells.{group}.edges[{i}] connects {e.src}->{e.dst}, which is not an edge of "
                            f"space {self.space_name!r}; edges: {sorted(allowed)}"
                        )
            self._discrete.genotype.validate(spec, source=f"genotype for {type(self).__name__}")
        self._declared = True

    # ------------------------------------------------------------------ building cells
    def make_cell(
        self, channels: int, group: str | None = None, stride: int = 1, preprocess: Sequence[nn.Module] = ()
    ) -> nn.Module:
        """A cell of ``channels`` channels weighted by α group ``group`` (default: the first of ``cell_types``).

        ``stride`` applies to edges leaving the input nodes (DARTS reduction cells); ``preprocess``: one module per
        input node (DARTS cells). The cells of one group share its α (:meth:`add_arch_groups`). A network built by
        :meth:`from_genotype` gets the genotype's discrete cell instead.
        """
        self._finalize_declarations()
        group = self.cell_types[0] if group is None else group
        if group not in self.cell_types:
            raise ValueError(f"unknown cell type {group!r}; {type(self).__name__}.cell_types = {list(self.cell_types)}")
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self._used_groups.add(group)

        def edge_stride(src: int) -> int:  # the stride applies to edges leaving the input nodes
            return stride if src < self.num_inputs else 1

        if self._discrete is None:
            if self._constructed:  # a cell added after construction
                self.add_arch_groups()

            def edge(src: int, dst: int) -> nn.Module:
                return self.make_edge(group, src, dst, channels, edge_stride(src))

            dag = DagCell(self.num_inputs, self.num_nodes, self.cell_edges, edge, self.cell_output)
            return SearchCell(group, dag, preprocess)
        cell = self._discrete.genotype.cells[group]
        empty = sorted(set(range(self.num_inputs, self.num_inputs + self.num_nodes)) - {e.dst for e in cell.edges})
        if empty:
            raise GenotypeError(f"genotype cell {group!r} leaves node(s) {empty} without an input edge")
        ops = iter(cell.ops())

        def discrete_edge(src: int, dst: int) -> nn.Module:
            return self.make_discrete_edge(group, src, dst, next(ops), channels, edge_stride(src))

        edges = [(e.src, e.dst) for e in cell.edges]
        dag = DagCell(self.num_inputs, self.num_nodes, edges, discrete_edge, self.cell_output)
        return DiscreteCell(group, dag, cell.ops(), preprocess)

    def add_arch_groups(self) -> None:
        """Create α of every cell type the cells use (``cell_types`` order), then β of each with edge normalisation.

        Runs once the outermost constructor returns: the reference search networks draw their architecture
        parameters after every module (quark0/darts ``Network._initialize_alphas``, PC-DARTS adds β after both α,
        D-X-Y/AutoDL-Projects ``search_model_darts.py``), so a seeded supernet has the reference's weights and α.
        """
        new = [
            self.add_arch_group(g, self.cell_edges, self.candidate_names, edge_normalization=False)
            for g in self.cell_types
            if g in self._used_groups and g not in self.arch_groups
        ]
        if self.edge_options.edge_normalization:
            for group in new:
                group.add_beta()
        self._constructed = True

    def make_edge(self, group: str, src: int, dst: int, channels: int, stride: int) -> nn.Module:
        """One search edge, ``edge(x, weights_row)``; override to build edges differently (e.g. other channels)."""
        return self.edge_options.make_edge(
            channels, stride, self.candidate_names, affine=self.search_affine, pool_bn=self.pool_bn
        )

    def make_discrete_edge(self, group: str, src: int, dst: int, op: str, channels: int, stride: int) -> nn.Module:
        """The module of the chosen ``op`` on edge ``src -> dst`` of a discrete network (as :meth:`make_edge`)."""
        return build_op(op, channels, channels, stride, self._discrete.affine)

    # ------------------------------------------------------------------ forward plumbing
    export_methods: ClassVar[dict[str, Callable[..., Any]]] = {"cell_weights": _no_cell_weights}
    """What the python export copies instead of a search-side method (see :mod:`dnas.export.source`)."""

    def cell_weights(self, weights: Mapping[str, torch.Tensor] | None = None) -> CellWeights | None:
        """Per group, ``weights`` (default :meth:`edge_weights`) and the edge scales; None in a discrete network."""
        if self._discrete is not None:
            return None
        weights = self.edge_weights() if weights is None else weights
        missing = set(self.arch_groups) - set(weights)
        if missing:
            raise KeyError(f"edge weights lack group(s) {sorted(missing)}; groups: {sorted(self.arch_groups)}")
        return {g: (weights[g], self.edge_scales(g)) for g in self.arch_groups}

    # ------------------------------------------------------------------ genotype
    def cell_genotype(self, weights: torch.Tensor, group: ArchGroup) -> CellGenotype:
        """The rule turning one group's ``(E, K)`` weights into a cell genotype (override for a custom rule)."""
        last = self.num_inputs + self.num_nodes - 1
        concat = (last,) if self.cell_output == "last" else tuple(range(self.num_inputs, last + 1))
        exclude = excluded_candidates(self)
        if self.genotype_rule == "topk":
            return topk_cell(weights, group, k=self.topk_edges, exclude=exclude, concat=concat)
        edges = list(argmax_cell(weights, group, exclude=exclude).edges)
        # an edge a selection callback fixed keeps its op, even one the rule would exclude
        for i, op in group.fixed_ops().items():
            edges[i] = Edge(group.candidates[op], edges[i].src, edges[i].dst)
        if "none" in group.candidates and "none" not in exclude:
            # an edge removed by selection (all-zero row) is "none", not whatever argmax of zeros picks first
            for i, row in enumerate(weights):
                if not bool(row.abs().sum() > 0):
                    edges[i] = Edge("none", edges[i].src, edges[i].dst)
        return CellGenotype(tuple(edges), concat)

    def genotype(self, weights: Mapping[str, torch.Tensor] | None = None) -> Genotype:
        """The discrete architecture by this space's rule; a discrete network returns the genotype it was built from.

        ``meta`` records the build options (:meth:`build_meta`) and each group's candidate ops
        (:data:`~dnas.genotypes.build.CANDIDATES_KEY`).
        """
        if self._discrete is not None:
            return self._discrete.genotype
        if not self.arch_groups:
            raise RuntimeError(f"{type(self).__name__} built no cell; call make_cell in __init__")
        weights = self.selection_weights() if weights is None else weights
        cells = {g: self.cell_genotype(weights[g].detach().float().cpu(), grp) for g, grp in self.arch_groups.items()}
        candidates = {g: list(grp.candidates) for g, grp in self.arch_groups.items()}
        return Genotype(self.space_name, cells, {**self.build_meta(), CANDIDATES_KEY: candidates})

    def build_options(self) -> dict[str, Any]:
        """The constructor arguments this supernet was built with (JSON-able ones): :meth:`from_genotype` options."""
        return dict(self._space_options)

    # ------------------------------------------------------------------ export
    @classmethod
    def from_genotype(cls, genotype: Genotype | str, *, affine: bool = True, **options: Any) -> CellSupernet:
        """The discrete network of ``genotype``: this class built with the chosen op per edge, no α.

        Args:
            genotype: a :class:`~dnas.Genotype` (or a published name / JSON path) of this space.
            affine: affine norms in the chosen ops (True for training the found network, as DARTS evaluation).
            **options: constructor arguments; default to the genotype's ``meta["build"]`` options (the searched
                skeleton), then to the constructor's defaults.

        Raises:
            GenotypeError: the genotype belongs to another space, or names ops/edges/cells this space lacks.
        """
        if isinstance(genotype, str):
            genotype = load(genotype)
        if genotype.space != cls.space_name:
            raise GenotypeError(
                f"genotype is for space {genotype.space!r}, but {cls.__name__} is space {cls.space_name!r}"
            )
        params = inspect.signature(cls.__init__).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        allowed = [n for n, p in params.items() if n != "self" and p.kind is not inspect.Parameter.VAR_POSITIONAL]
        unknown = sorted(set(options) - set(allowed))
        if unknown and not takes_any:
            raise TypeError(f"unknown {cls.__name__} export option(s) {unknown}; allowed: {sorted(allowed)}")
        kwargs = build_options(genotype, options, None if takes_any else allowed)
        # The instance is marked discrete before its constructor runs, so make_cell builds the chosen ops; the mark
        # is on this instance only (modules built inside it are not affected).
        model = cls.__new__(cls)
        object.__setattr__(model, "_discrete", _DiscreteBuild(genotype, bool(affine)))
        model.__init__(**kwargs)
        unused = set(genotype.cells) - model._used_groups
        if unused:
            raise GenotypeError(f"genotype cell(s) {sorted(unused)} are not used by {cls.__name__}'s network")
        return model
