"""Genotype: the discrete architecture a search finds, as a small immutable value with JSON I/O.

One shape serves every space:

* a **cell** is a list of edges ``(op, src, dst)`` between numbered nodes plus the nodes its output concatenates.
  Nodes ``0..num_inputs-1`` are the cell inputs; intermediate nodes follow.
* DARTS: cells ``normal`` and ``reduce``, inputs 0 and 1, nodes 2..5, two edges per node, ``concat = [2, 3, 4, 5]``.
* NAS-Bench-201: one cell, input node 0, nodes 1..3, six edges, output node 3.
* A chain (FBNet): one "cell" whose edges are ``(op, l, l+1)``, one per layer.

JSON (never ``eval``, never pickle)::

    {"schema_version": 1, "space": "darts",
     "cells": {"normal": {"edges": [["sep_conv_3x3", 0, 2], ...], "concat": [2, 3, 4, 5]}, ...},
     "meta": {...}}

A genotype is checked against the :class:`~dnas.genotypes.spec.SpaceSpec` its space registered
(:mod:`dnas.genotypes.spec`). A genotype naming an unregistered space (a user's, whose module is not imported) is
checked for registered ops and the limits below only. The build options a supernet records in ``meta`` are
:mod:`dnas.genotypes.build`'s.

Limits (a genotype file is untrusted input): a regular file of at most 4 MB, and the ``MAX_*`` constants and
:data:`NAME_PATTERN` below; ``meta`` is plain JSON.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dnas.genotypes.spec import GenotypeError, SpaceSpec, dense_edges, get_space_spec
from dnas.safe_read import parse_json, read_user_file, short

SCHEMA_VERSION = 1
_MAX_JSON_BYTES = 4 * 1024 * 1024
MAX_CELLS = 64
"""Cell types per genotype (DARTS has 2)."""
MAX_EDGES = 4096
"""Edges per cell (FBNet's chain has 22, a DARTS cell 8)."""
MAX_NODE = 4096
"""Largest node index (a chain of :data:`MAX_EDGES` layers ends at node 4096)."""
NAME_PATTERN = r"[A-Za-z0-9_.-]{1,64}"
"""What a space, cell or op name may be: 1 to 64 letters, digits, ``_``, ``.`` or ``-``."""
MAX_META_DEPTH = 16
"""Deepest nesting of lists and objects in ``meta`` (the α probabilities a search records are 3 deep)."""
MAX_META_ITEMS = 1_000_000
"""Most values (list items and object entries, at every depth) in ``meta``."""
_NAME = re.compile(NAME_PATTERN)


@dataclass(frozen=True)
class Edge:
    """One chosen edge: ``op`` applied to node ``src``, summed into node ``dst``."""

    op: str
    src: int
    dst: int


@dataclass(frozen=True)
class CellGenotype:
    """The chosen edges of one cell type and the nodes concatenated into its output."""

    edges: tuple[Edge, ...]
    concat: tuple[int, ...] = ()

    def ops(self) -> list[str]:
        return [e.op for e in self.edges]

    def inputs_of(self, node: int) -> list[Edge]:
        return [e for e in self.edges if e.dst == node]


@dataclass(frozen=True)
class Genotype:
    """A discovered architecture.

    Args:
        space: name of the search space it belongs to (``"darts"``, ``"nb201"``, ``"fbnet"``, a user's).
        cells: cell type -> :class:`CellGenotype`.
        meta: free JSON-able extras (source, epoch, α probabilities, macro options such as FBNet's head width).
    """

    space: str
    cells: Mapping[str, CellGenotype]
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        # freeze the mapping's order and content
        object.__setattr__(self, "cells", dict(self.cells))
        object.__setattr__(self, "meta", dict(self.meta))

    def __hash__(self) -> int:
        return hash((self.space, tuple(sorted(self.cells.items()))))

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def darts(
        cls,
        normal: Sequence[tuple[str, int]],
        reduce: Sequence[tuple[str, int]],
        normal_concat: Sequence[int] = (2, 3, 4, 5),
        reduce_concat: Sequence[int] = (2, 3, 4, 5),
        space: str = "darts",
        meta: Mapping[str, Any] | None = None,
    ) -> Genotype:
        """Build a DARTS-style genotype from the reference's ``[(op, input), ...]`` lists (two entries per node)."""

        def cell(pairs: Sequence[tuple[str, int]], concat: Sequence[int]) -> CellGenotype:
            edges = tuple(Edge(op, int(src), 2 + i // 2) for i, (op, src) in enumerate(pairs))
            return CellGenotype(edges, tuple(concat))

        return cls(space, {"normal": cell(normal, normal_concat), "reduce": cell(reduce, reduce_concat)}, meta or {})

    @classmethod
    def chain(cls, ops: Sequence[str], space: str, meta: Mapping[str, Any] | None = None) -> Genotype:
        """A chain genotype (one op per layer)."""
        edges = tuple(Edge(op, i, i + 1) for i, op in enumerate(ops))
        return cls(space, {"layers": CellGenotype(edges, (len(ops),))}, meta or {})

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "space": self.space,
            "cells": {
                name: {"edges": [[e.op, e.src, e.dst] for e in cell.edges], "concat": list(cell.concat)}
                for name, cell in self.cells.items()
            },
            "meta": dict(self.meta),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Any, source: str = "genotype") -> Genotype:
        """Parse and validate a decoded JSON object; ``source`` names the file in errors."""
        if not isinstance(data, dict):
            raise GenotypeError(f"{source}: expected a JSON object at top level, got {type(data).__name__}")
        unknown = set(data) - {"schema_version", "space", "cells", "meta"}
        if unknown:
            raise GenotypeError(
                f"{source}: unknown field(s) {sorted(unknown)}; allowed: schema_version, space, cells, meta"
            )
        version = data.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION or isinstance(version, bool):
            raise GenotypeError(f"{source}: field 'schema_version' must be {SCHEMA_VERSION}, got {version!r}")
        space = data.get("space")
        if not isinstance(space, str) or not space:
            raise GenotypeError(f"{source}: field 'space' must be a non-empty string, got {short(space)}")
        _check_name(space, f"{source}: field 'space'")
        cells_in = data.get("cells")
        if not isinstance(cells_in, dict) or not cells_in:
            raise GenotypeError(f"{source}: field 'cells' must be a non-empty object of cell name -> cell")
        if len(cells_in) > MAX_CELLS:
            raise GenotypeError(f"{source}: field 'cells' has {len(cells_in)} cells; the limit is {MAX_CELLS}")
        meta = data.get("meta", {})
        if not isinstance(meta, dict):
            raise GenotypeError(f"{source}: field 'meta' must be an object, got {type(meta).__name__}")
        _check_meta(meta, source)
        cells = {}
        for name, cell in cells_in.items():
            _check_name(name, f"{source}: cell name")
            where = f"{source}: cells.{name}"
            if not isinstance(cell, dict):
                raise GenotypeError(f"{where} must be an object with 'edges' and 'concat'")
            extra = set(cell) - {"edges", "concat"}
            if extra:
                raise GenotypeError(f"{where}: unknown field(s) {sorted(extra)}; allowed: edges, concat")
            edges_in = cell.get("edges")
            if not isinstance(edges_in, list) or not edges_in:
                raise GenotypeError(f"{where}.edges must be a non-empty list of [op, src, dst]")
            if len(edges_in) > MAX_EDGES:
                raise GenotypeError(f"{where}.edges has {len(edges_in)} edges; the limit is {MAX_EDGES} per cell")
            edges = []
            for i, e in enumerate(edges_in):
                if not (isinstance(e, list) and len(e) == 3):
                    raise GenotypeError(f"{where}.edges[{i}] must be a list [op, src, dst], got {short(e)}")
                op, src, dst = e
                if not isinstance(op, str):
                    raise GenotypeError(f"{where}.edges[{i}][0] (op) must be a string, got {short(op)}")
                _check_name(op, f"{where}.edges[{i}][0] (op)")
                for label, v in (("src", src), ("dst", dst)):
                    if not is_node_index(v):
                        raise GenotypeError(
                            f"{where}.edges[{i}] field '{label}' must be a node index (int 0..{MAX_NODE}), "
                            f"got {short(v)}"
                        )
                edges.append(Edge(op, src, dst))
            concat = cell.get("concat", [])
            if not isinstance(concat, list) or len(concat) > MAX_NODE + 1 or not all(is_node_index(c) for c in concat):
                raise GenotypeError(
                    f"{where}.concat must be a list of at most {MAX_NODE + 1} node indices (int 0..{MAX_NODE}), "
                    f"got {short(concat)}"
                )
            cells[str(name)] = CellGenotype(tuple(edges), tuple(concat))
        genotype = cls(space, cells, meta)
        spec = get_space_spec(space)
        if spec is not None:
            return genotype.validate(spec, source=source)
        from dnas.ops.registry import is_registered, registered_ops

        for name, cell in cells.items():
            for i, e in enumerate(cell.edges):
                if not is_registered(e.op):
                    raise GenotypeError(
                        f"{source}: cells.{name}.edges[{i}] names unknown op {e.op!r}; "
                        f"registered ops: {list(registered_ops())}"
                    )
        return genotype

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "genotype") -> Genotype:
        """Parse JSON text; every problem is a :class:`GenotypeError` naming ``source`` and the field."""
        if len(text) > _MAX_JSON_BYTES:
            kind = "bytes" if isinstance(text, bytes) else "characters"
            raise GenotypeError(f"{source}: text is larger than {_MAX_JSON_BYTES} {kind}; not a genotype")
        data = parse_json(text, source, "genotype", GenotypeError)
        return cls.from_dict(data, source=source)

    @classmethod
    def from_file(cls, path: str | Path) -> Genotype:
        """Read and validate a genotype JSON file (path or fsspec URL): a regular file of at most 4 MB.

        The size and type are checked before anything is read.
        """
        raw = read_user_file(path, limit=_MAX_JSON_BYTES, what="genotype file", error=GenotypeError)
        return cls.from_json(raw, source=str(path))

    # ------------------------------------------------------------------ validation
    def validate(self, spec: SpaceSpec, source: str = "genotype") -> Genotype:
        """Check this genotype against ``spec``; raise :class:`GenotypeError` naming the first problem."""
        from dnas.ops.registry import is_registered

        if self.space != spec.name:
            raise GenotypeError(f"{source}: genotype is for space {self.space!r}, expected {spec.name!r}")
        missing = set(spec.cells) - set(self.cells)
        extra = set(self.cells) - set(spec.cells)
        if missing or extra:
            raise GenotypeError(
                f"{source}: space {spec.name!r} has cells {sorted(spec.cells)}; "
                f"missing {sorted(missing)}, unexpected {sorted(extra)}"
            )
        for name, cs in spec.cells.items():
            cell = self.cells[name]
            where = f"{source}: cells.{name}"
            last = cs.num_inputs + cs.num_nodes - 1
            for i, e in enumerate(cell.edges):
                if e.op not in cs.ops and not (cs.any_registered_op and is_registered(e.op)):
                    also = " or any registered op (dnas.ops.register_op)" if cs.any_registered_op else ""
                    raise GenotypeError(
                        f"{where}.edges[{i}] names op {e.op!r}, which space {spec.name!r} does not have; "
                        f"allowed ops: {list(cs.ops)}{also}"
                    )
                if not cs.num_inputs <= e.dst <= last:
                    raise GenotypeError(
                        f"{where}.edges[{i}] goes to node {e.dst}, which does not exist; "
                        f"intermediate nodes are {cs.num_inputs}..{last}"
                    )
                if not 0 <= e.src < e.dst:
                    raise GenotypeError(
                        f"{where}.edges[{i}] comes from node {e.src}, which does not exist before node {e.dst}; "
                        f"allowed sources: 0..{e.dst - 1}"
                    )
                if cs.chain and e.src != e.dst - 1:
                    raise GenotypeError(f"{where}.edges[{i}]: a chain edge must go from node l to l+1, got {e}")
            if cs.all_edges:
                want = sorted(dense_edges(cs.num_inputs, cs.num_nodes, cs.chain))
                got = sorted((e.src, e.dst) for e in cell.edges)
                if got != want:
                    raise GenotypeError(f"{where}: expected exactly one edge for each of {want}, got {got}")
            elif cs.edges_per_node is not None:
                for node in cs.nodes:
                    n = len(cell.inputs_of(node))
                    if n != cs.edges_per_node:
                        raise GenotypeError(f"{where}: node {node} has {n} input edges, expected {cs.edges_per_node}")
            for c in cell.concat:
                if not 0 <= c <= last:
                    raise GenotypeError(f"{where}.concat names node {c}, which does not exist; nodes are 0..{last}")
        return self

    # ------------------------------------------------------------------ display
    def __str__(self) -> str:
        parts = []
        for name, cell in self.cells.items():
            edges = ", ".join(f"{e.op}({e.src}->{e.dst})" for e in cell.edges)
            parts.append(f"{name}=[{edges}]")
        return f"Genotype[{self.space}](" + "; ".join(parts) + ")"


def is_node_index(v: Any) -> bool:
    """An int node index ``0..MAX_NODE`` (not a bool)."""
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_NODE


def _check_name(name: Any, where: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise GenotypeError(
            f"{where} {short(name)} is not a valid name; names are 1 to 64 of A-Z a-z 0-9 _ . - ({NAME_PATTERN})"
        )


def _check_meta(meta: Mapping[str, Any], source: str) -> None:
    """``meta`` is plain JSON (string keys, finite numbers), at most MAX_META_DEPTH deep and MAX_META_ITEMS values."""
    stack: list[tuple[Any, int, tuple[Any, ...]]] = [(meta, 1, ())]
    items = 1

    def where(path: tuple[Any, ...]) -> str:
        return "meta" + "".join(f"[{short(k, 40)}]" for k in path)

    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, (dict, list, tuple)):
            if depth > MAX_META_DEPTH:
                raise GenotypeError(
                    f"{source}: {where(path)} is nested deeper than {MAX_META_DEPTH} levels (the limit)"
                )
            items += len(value)
            if items > MAX_META_ITEMS:
                raise GenotypeError(f"{source}: field 'meta' holds more than {MAX_META_ITEMS} values (the limit)")
            if isinstance(value, dict):
                for k, v in value.items():
                    if not isinstance(k, str):
                        raise GenotypeError(f"{source}: {where(path)} has the key {short(k)}; keys must be strings")
                    stack.append((v, depth + 1, (*path, k)))
            else:
                stack.extend((v, depth + 1, (*path, i)) for i, v in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            raise GenotypeError(f"{source}: {where(path)} is {value}; meta numbers must be finite")
        elif value is not None and not isinstance(value, (str, int, float)):
            raise GenotypeError(
                f"{source}: {where(path)} holds a Python {type(value).__name__}; meta must be plain JSON"
            )
