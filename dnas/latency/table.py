"""Cost lookup tables: the cost of every candidate op of every mixed-op instance of a supernet, as JSON.

A table is measured once per (space, input shape, device) and read by the latency loss. It stores one entry per
mixed-op instance (:class:`~dnas.latency.shapes.Site`) with the op costs, plus how it was measured::

    {"schema_version": 1, "kind": "dnas.cost_table", "metric": "latency", "unit": "ms",
     "meta": {"device": "cpu", "dtype": "float32", "batch_size": 1, "threads": 1, "torch": "2.14.1", ...},
     "entries": [{"module": "layers.edges.0", "group": "layers", "edge": 0, "input_shape": [1, 16, 112, 112],
                  "ops": {"k3_e1": 0.41, ...}}, ...]}

:meth:`CostTable.matrix` folds the instances into one ``(E, K)`` tensor per group (a shared α row costs the sum of
its instances), the form the expected-cost term needs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from dnas.genotypes import Genotype
from dnas.io import atomic_write_text
from dnas.latency.calibration import Prediction, check_record
from dnas.latency.shapes import Site
from dnas.safe_read import is_finite_number, parse_json, read_user_file, short, shown_path

SCHEMA_VERSION = 1
KIND = "dnas.cost_table"
METRICS = {"latency": "ms", "flops": "FLOPs", "params": "parameters"}
MAX_TABLE_BYTES = 16 * 1024 * 1024
"""Largest cost table file read (a measured DARTS table is about 100 KB)."""
MAX_META_DEPTH = 64
"""Deepest nesting of a table's ``meta`` (each merge nests its sources' meta two levels down)."""


class CostTableError(ValueError):
    """A table that cannot be read, or that does not cover a supernet; the message names the entry and op."""


@dataclass
class Entry:
    module: str
    group: str
    edge: int
    input_shape: tuple[int, ...]
    ops: dict[str, float]
    stats: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {**asdict(self), "input_shape": list(self.input_shape)}
        if not self.stats:
            del out["stats"]
        return out


@dataclass
class CostTable:
    """Per-instance op costs plus measurement metadata.

    Args:
        metric: ``"latency"`` (unit ms), ``"flops"`` or ``"params"``.
        entries: one per mixed-op instance.
        meta: device, dtype, batch size, threads, library versions, settings.
    """

    metric: str
    entries: list[Entry]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def unit(self) -> str:
        return METRICS[self.metric]

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": KIND,
            "metric": self.metric,
            "unit": self.unit,
            "meta": self.meta,
            "entries": [e.to_dict() for e in self.entries],
        }

    def save(self, path: str | Path) -> Path:
        """Write the table atomically (a crash never leaves half a file)."""
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n")

    @classmethod
    def from_dict(cls, data: Any, source: str = "cost table") -> CostTable:
        if not isinstance(data, dict) or data.get("kind") != KIND:
            raise CostTableError(f"{source}: not a dnas cost table (expected a JSON object with kind={KIND!r})")
        if data.get("schema_version") != SCHEMA_VERSION:
            got = data.get("schema_version")
            raise CostTableError(f"{source}: schema_version must be {SCHEMA_VERSION}, got {got!r}")
        metric = data.get("metric")
        if metric not in METRICS:
            raise CostTableError(f"{source}: field 'metric' must be one of {sorted(METRICS)}, got {metric!r}")
        raw = data.get("entries")
        if not isinstance(raw, list) or not raw:
            raise CostTableError(f"{source}: field 'entries' must be a non-empty list")
        entries = []
        for i, e in enumerate(raw):
            where = f"{source}: entries[{i}]"
            if not isinstance(e, dict):
                raise CostTableError(f"{where} must be an object")
            for key, typ in (("module", str), ("group", str), ("edge", int), ("input_shape", list), ("ops", dict)):
                if not isinstance(e.get(key), typ) or isinstance(e.get(key), bool):
                    raise CostTableError(f"{where}: field {key!r} must be a {typ.__name__}, got {short(e.get(key))}")
            if e["edge"] < 0:
                raise CostTableError(f"{where}: field 'edge' must be >= 0, got {e['edge']}")
            if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in e["input_shape"]):
                raise CostTableError(
                    f"{where}: field 'input_shape' must be a list of ints >= 0, got {short(e['input_shape'])}"
                )
            for op, v in e["ops"].items():
                if not is_finite_number(v) or v < 0:
                    raise CostTableError(
                        f"{where} ({short(e['module'])}): op {short(op)} has cost {short(v)}; need a finite value >= 0"
                    )
            stats = e.get("stats", {})
            if not isinstance(stats, dict) or not all(
                isinstance(st, dict) and all(is_finite_number(x) for x in st.values()) for st in stats.values()
            ):
                raise CostTableError(
                    f"{where}: field 'stats' must be an object of op -> {{name: finite number}}, got {short(stats)}"
                )
            shape = tuple(e["input_shape"])
            entries.append(Entry(e["module"], e["group"], e["edge"], shape, dict(e["ops"]), stats))
        meta = data.get("meta", {})
        if not isinstance(meta, dict):
            raise CostTableError(f"{source}: field 'meta' must be an object")
        if _nesting(meta) > MAX_META_DEPTH:
            raise CostTableError(f"{source}: field 'meta' is nested deeper than {MAX_META_DEPTH} levels (the limit)")
        if "calibration" in meta:
            check_record(meta["calibration"], source, CostTableError)
        layout = meta.get("arch_edges", {})
        if not isinstance(layout, dict) or not all(
            isinstance(edges, list)
            and all(isinstance(e, list) and len(e) == 2 and all(type(v) is int and v >= 0 for v in e) for e in edges)
            for edges in layout.values()
        ):
            raise CostTableError(
                f"{source}: field 'meta.arch_edges' must be an object of group -> [[src, dst], ...] (ints >= 0)"
            )
        return cls(metric, entries, meta)

    @classmethod
    def load(cls, path: str | Path) -> CostTable:
        """Read a table: a regular UTF-8 JSON file of at most :data:`MAX_TABLE_BYTES` (checked before reading).

        Raises:
            CostTableError: one line naming the file and the problem (missing, not a regular file, too large,
                unreadable, not UTF-8, invalid or too deeply nested JSON, not a cost table).
        """
        raw = read_user_file(
            path,
            limit=MAX_TABLE_BYTES,
            what="cost table",
            error=CostTableError,
            missing_hint="; measure one with `dnas lut --config ...`",
        )
        data = parse_json(raw, f"cost table {shown_path(path)}", "cost table", CostTableError)
        return cls.from_dict(data, source=str(path))

    # ------------------------------------------------------------------ checks and use
    def validate(self, sites: Sequence[Site], check_shapes: bool = True) -> None:
        """Check that every op of every site has an entry (and, with ``check_shapes``, at the same input shape).

        Raises:
            CostTableError: naming the first missing layer/op or the mismatching shape.
        """
        by_module = {e.module: e for e in self.entries}
        for site in sites:
            where = f"layer {site.module!r} (group {site.group!r}, edge {site.edge})"
            entry = by_module.get(site.module)
            if entry is None:
                raise CostTableError(f"cost table has no entry for {where}; re-measure it for this supernet")
            if (entry.group, entry.edge) != (site.group, site.edge):
                raise CostTableError(
                    f"cost table entry for {where} is recorded as group {entry.group!r}, edge {entry.edge}"
                )
            if check_shapes and tuple(entry.input_shape[1:]) != tuple(site.input_shape[1:]):
                raise CostTableError(
                    f"cost table entry for {where} was measured at input shape {list(entry.input_shape)}, "
                    f"but the supernet feeds it {list(site.input_shape)}; re-measure for this input size"
                )
            for op in site.ops:
                if op not in entry.ops:
                    raise CostTableError(f"cost table has no entry for op {op!r} of {where}; have {sorted(entry.ops)}")

    def matrix(
        self, group: str, candidates: Sequence[str], num_edges: int, required: Iterable[int] | None = None
    ) -> torch.Tensor:
        """``(E, K)`` float64 costs of ``group``: for each α row and candidate, the sum over its instances.

        ``required`` lists the edges that must have an entry (default: all); rows no instance runs cost 0.
        """
        out = torch.zeros(num_edges, len(candidates), dtype=torch.float64)
        found = torch.zeros(num_edges, dtype=torch.bool)
        for e in self.entries:
            if e.group != group:
                continue
            if not 0 <= e.edge < num_edges:
                raise CostTableError(
                    f"cost table entry {e.module!r} names edge {e.edge} of group {group!r}, which has {num_edges} edges"
                )
            for k, op in enumerate(candidates):
                if op not in e.ops:
                    raise CostTableError(
                        f"cost table has no entry for op {op!r} of layer {e.module!r} (group {group!r}, edge {e.edge})"
                    )
                out[e.edge, k] += float(e.ops[op])
            found[e.edge] = True
        missing = [i for i in (range(num_edges) if required is None else required) if not found[i]]
        if missing:
            raise CostTableError(f"cost table has no entry for group {group!r}, edge(s) {missing}")
        return out

    def total(self, choice: Mapping[str, Sequence[str | None]]) -> float:
        """Cost of a discrete choice ``group -> op name per α row`` (sums the instances; a None row is not kept)."""
        out = 0.0
        for e in self.entries:
            op = choice[e.group][e.edge] if e.group in choice else None
            if op is None:
                continue
            if op not in e.ops:
                raise CostTableError(f"cost table has no entry for op {op!r} of {e.module!r}; have {sorted(e.ops)}")
            out += e.ops[op]
        return float(out)

    def choice(
        self, genotype: Genotype, arch_edges: Mapping[str, Sequence[Sequence[int]]] | None = None
    ) -> dict[str, list[str | None]]:
        """``group -> op per α row`` of ``genotype`` (None on rows the genotype does not keep), for :meth:`total`.

        ``arch_edges`` (``group -> (src, dst)`` per α row, a supernet's ``arch_groups[g].edges``) default to the ones
        ``dnas lut`` recorded in ``meta["arch_edges"]``.

        Raises:
            CostTableError: no layout (a table measured before it was recorded: re-measure it, or pass
                ``arch_edges``), or a genotype edge the layout does not have.
        """
        layout = self.meta.get("arch_edges") if arch_edges is None else arch_edges
        if not layout:
            raise CostTableError("cost table records no α edge layout (meta.arch_edges); re-measure it with dnas lut")
        out: dict[str, list[str | None]] = {}
        for g, cell in genotype.cells.items():
            if g not in layout:
                raise CostTableError(f"genotype cell {g!r} is not a group of the cost table; groups: {sorted(layout)}")
            rows = {(int(s), int(d)): i for i, (s, d) in enumerate(layout[g])}
            out[g] = [None] * len(rows)
            for e in cell.edges:
                if (e.src, e.dst) not in rows:
                    raise CostTableError(f"genotype edge {e.src}->{e.dst} of cell {g!r} is not an edge of the table")
                out[g][rows[(e.src, e.dst)]] = e.op
        return out

    def predict(self, choice: Mapping[str, Sequence[str | None]]) -> Prediction:
        """The table sum of ``choice``, and the whole network's latency with its error band.

        The band comes from the calibration ``dnas lut --calibrate`` measured
        (:class:`~dnas.latency.calibration.Prediction`); without one the prediction is the raw sum, band unknown.
        """
        calibration = self.meta.get("calibration") if self.metric == "latency" else None
        return Prediction.of(self.total(choice), calibration, self.unit)


def merge(tables: Iterable[CostTable], overwrite: bool = False) -> CostTable:
    """Merge tables of the same metric: entries union, per-op costs combined (later tables add missing ops).

    Raises:
        CostTableError: metrics differ, an entry's group/edge/shape differs, or (without ``overwrite``) two tables
            give the same op of the same entry different costs.
    """
    tables = list(tables)
    if not tables:
        raise CostTableError("nothing to merge")
    metric = tables[0].metric
    merged: dict[str, Entry] = {}
    metas = []
    for t in tables:
        if t.metric != metric:
            raise CostTableError(f"cannot merge a {t.metric!r} table into a {metric!r} table")
        metas.append(t.meta)
        for e in t.entries:
            have = merged.get(e.module)
            if have is None:
                merged[e.module] = Entry(e.module, e.group, e.edge, e.input_shape, dict(e.ops), dict(e.stats))
                continue
            if (have.group, have.edge, have.input_shape[1:]) != (e.group, e.edge, e.input_shape[1:]):
                raise CostTableError(f"cannot merge entries for {e.module!r}: group/edge/input shape differ")
            for op, v in e.ops.items():
                if op in have.ops and have.ops[op] != v and not overwrite:
                    raise CostTableError(
                        f"tables disagree on op {op!r} of {e.module!r} ({have.ops[op]} vs {v}); pass overwrite=True"
                    )
                have.ops[op] = v
                if op in e.stats:
                    have.stats[op] = e.stats[op]
    meta = {k: v for k, v in tables[0].meta.items() if k != "calibration"}  # measured for the first table's costs
    meta["merged_from"] = metas
    return CostTable(metric, list(merged.values()), meta)


def _nesting(value: Any) -> int:
    """How deeply lists and objects nest in ``value`` (iterative: a hostile file cannot exhaust the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, depth)
            if deepest > MAX_META_DEPTH:
                break
            stack.extend((c, depth + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest
