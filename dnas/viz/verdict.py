"""How decided is α? A verdict on the architecture weights at the end of a search, per cell and per kept edge.

Pure functions of the edge weights (softmax α with the selection applied, rows renormalised), the group layout and
the genotype the space's rule derived from them. The measures are the ones the failure of differentiable NAS is read
with: the weight of the chosen op against the uniform ``1/K`` and against the runner-up (Wang et al. 2021, "Rethinking
Architecture Selection in Differentiable NAS", show that α magnitudes often fail to rank ops; a margin near zero means
the argmax is a coin toss), the entropy of each edge's op distribution against its maximum ``ln K``, and whether α
moved at all since initialisation (random cells of a space are close to searched ones when it did not; Li & Talwalkar
2019, Yang et al. 2020).

Criterion (stated in every report): an edge is **decided** when its chosen op holds at least ``factor`` (2) times the
uniform weight ``1/K``; a cell is decided when at least ``quorum`` (half) of its kept edges are; otherwise its
genotype is **noise-level**: the cell the rule drew is little more than a tie-break of the initial α. An edge fixed
by a selection callback (DARTS-PT) is decided by that callback, whatever α says. With the run's α gradients recorded,
a decided cell is also tested against a random walk of the same optimizer steps (:mod:`dnas.viz.noise`): a cell that
noise decides as far is **within noise**.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from dnas.genotypes import Genotype
from dnas.viz.alpha import GroupInfo, edge_entropy, normalised
from dnas.viz.noise import NoiseTest

DECIDED_FACTOR = 2.0
"""An edge is decided when its chosen op's weight is at least this many times the uniform weight 1/K."""
QUORUM = 0.5
"""A cell is decided when at least this fraction of its kept edges is decided."""
MOVED_ATOL = 1e-6
"""Largest change of any edge weight since initialisation below which α counts as never moved."""


@dataclass(frozen=True)
class EdgeVerdict:
    """One kept edge: its chosen op against the uniform weight and the runner-up."""

    src: int
    dst: int
    op: str
    weight: float
    """Chosen op's share of the edge's weights (row normalised)."""
    runner_up: str
    runner_up_weight: float
    num_ops: int
    entropy: float
    """Entropy (nats) of the edge's op distribution; ``ln K`` is uniform."""
    fixed: bool = False
    """Decided by a selection callback (one-hot row), not by α's magnitude."""
    none_weight: float | None = None
    """Weight of ``none`` on this edge when ``none`` outweighs every real op, else None."""

    @property
    def margin(self) -> float:
        return self.weight - self.runner_up_weight

    @property
    def times_uniform(self) -> float:
        return self.weight * self.num_ops

    def decided(self, factor: float = DECIDED_FACTOR) -> bool:
        return self.fixed or self.times_uniform >= factor


@dataclass(frozen=True)
class CellVerdict:
    """One cell (architecture group): its kept edges and whether α moved."""

    cell: str
    edges: tuple[EdgeVerdict, ...]
    num_ops: int
    moved: bool | None = None
    """False when no edge weight changed since initialisation; None when the initial weights are unknown."""
    factor: float = DECIDED_FACTOR
    quorum: float = QUORUM
    noise: NoiseTest | None = None
    """The random-walk null of the cell's free edges (:func:`dnas.viz.noise.noise_test`); None when not run."""

    @property
    def num_decided(self) -> int:
        return sum(e.decided(self.factor) for e in self.edges)

    @property
    def mean_entropy(self) -> float:
        return float(np.mean([e.entropy for e in self.edges])) if self.edges else 0.0

    @property
    def status(self) -> str:
        """``"never moved"``, ``"noise-level"``, ``"within noise"`` (decided, but no further than noise) or decided."""
        if self.moved is False:
            return "never moved"
        if not self.edges or self.num_decided < self.quorum * len(self.edges):
            return "noise-level"
        if self.noise is not None and not self.noise.beyond_noise:
            return "within noise"
        return "decided"

    def summary(self) -> str:
        k = self.num_ops
        null = f"; {self.noise.summary()}" if self.noise is not None else ""
        return (
            f"cell {self.cell!r}: {self.status}; {self.num_decided} of {len(self.edges)} kept edges have their op at "
            f">= {self.factor:g}x the uniform weight 1/{k}; mean edge entropy {self.mean_entropy:.4f} of "
            f"ln {k} = {math.log(k):.4f}{null}"
        )


@dataclass(frozen=True)
class Verdict:
    """The verdict on a whole genotype."""

    cells: tuple[CellVerdict, ...]

    @property
    def status(self) -> str:
        """The worst cell status: ``"never moved"`` > ``"noise-level"`` > ``"within noise"`` > ``"decided"``."""
        order = ("never moved", "noise-level", "within noise", "decided")
        return min((c.status for c in self.cells), key=order.index, default="noise-level")

    def none_edges(self) -> list[tuple[str, EdgeVerdict]]:
        """Kept edges on which ``none`` outweighs every real op (the rule skipped it; the edge may be better absent)."""
        return [(c.cell, e) for c in self.cells for e in c.edges if e.none_weight is not None]

    def warning(self, reason: str = "") -> str | None:
        """One plain line when the genotype is not decided (``reason`` says why α never moved, if known), else None."""
        if self.status == "never moved":
            why = f" ({reason})" if reason else ""
            return (
                f"α never trained{why}: the architecture weights are their initial values, so the genotype is a "
                "random draw from the initialisation, not a search result"
            )
        if self.status == "noise-level":
            weak = [c for c in self.cells if c.status != "decided"]
            counts = ", ".join(f"{c.cell!r} {c.num_decided} of {len(c.edges)}" for c in weak)
            nones = len(self.none_edges())
            also = f"; on {nones} kept edge(s) 'none' outweighs every real op" if nones else ""
            return (
                f"the genotype is noise-level: fewer than {weak[0].quorum:.0%} of the kept edges have their chosen "
                f"op at >= {weak[0].factor:g}x the uniform weight (decided edges: {counts}){also}; such cells are "
                "little more than a tie-break of α's noise: search longer or with a larger architecture learning "
                "rate, and compare with random cells (dnas baseline)"
            )
        if self.status == "within noise":
            weak = [c for c in self.cells if c.status == "within noise" and c.noise is not None]
            odds = ", ".join(
                f"{c.cell!r} entropy {c.noise.entropy:.3f}, noise as far in {c.noise.hits} of {c.noise.draws} draws"
                for c in weak
            )
            return (
                f"the genotype is within noise: its cells pass the {weak[0].factor:g}x-uniform criterion, but a random "
                f"walk of the same α optimizer steps with the run's gradient scale ends as far from uniform too often "
                f"({odds}): α travelled without evidence of a signal; search longer (a signal's travel grows with the "
                "number of α steps, noise's with its square root) and compare with random cells (dnas baseline)"
            )
        return None

    def lines(self) -> list[str]:
        """Human-readable lines: one per cell, one per kept edge dominated by ``none``."""
        out = [c.summary() for c in self.cells]
        for cell, e in self.none_edges():
            out.append(
                f"cell {cell!r} edge {e.src}->{e.dst}: 'none' ({e.none_weight:.3f}) outweighs every real op, yet the "
                f"rule kept the edge with {e.op} ({e.weight:.3f})"
            )
        return out


def edge_verdict(row: np.ndarray, candidates: tuple[str, ...], op: str, src: int, dst: int) -> EdgeVerdict:
    """The verdict on one edge whose weights are ``row`` (any non-negative scale) and whose chosen op is ``op``."""
    raw = np.asarray(row, dtype=np.float64)
    p = normalised(raw)
    k = candidates.index(op)
    others = [j for j in range(len(candidates)) if j != k]
    j = max(others, key=lambda i: p[i]) if others else k
    n = candidates.index("none") if "none" in candidates and op != "none" else None
    return EdgeVerdict(
        src=src,
        dst=dst,
        op=op,
        weight=float(p[k]),
        runner_up=candidates[j],
        runner_up_weight=float(p[j]) if others else 0.0,
        num_ops=len(candidates),
        entropy=float(edge_entropy(raw[None])[0]),
        fixed=bool(np.count_nonzero(raw) == 1 and raw[k] > 0),
        none_weight=float(p[n]) if n is not None and p[n] > np.delete(p, n).max() else None,
    )


def verdict(
    genotype: Genotype,
    weights: Mapping[str, np.ndarray],
    groups: Mapping[str, GroupInfo],
    initial: Mapping[str, np.ndarray] | None = None,
    factor: float = DECIDED_FACTOR,
    quorum: float = QUORUM,
    noise: Mapping[str, NoiseTest | None] | None = None,
) -> Verdict:
    """The verdict on ``genotype``, derived from the edge ``weights`` of ``groups``.

    Args:
        genotype: the genotype the space's rule derived from ``weights``; its cells are matched to groups by name
            and its edges to α rows by ``(src, dst)``.
        weights: group -> ``(E, K)`` edge weights (softmax α with the selection applied; β scales are divided out).
        groups: group -> edges and candidate names.
        initial: group -> the weights before the first architecture step; with them a cell whose weights did not
            change (to :data:`MOVED_ATOL`) is ``"never moved"``.
        factor: an edge is decided when its op holds at least ``factor / K``.
        quorum: a cell is decided when at least this fraction of its kept edges is decided.
        noise: group -> its random-walk null (:func:`dnas.viz.noise.noise_test`); a decided cell that noise decides
            as far is ``"within noise"``.
    """
    cells = []
    for name, info in groups.items():
        cell = genotype.cells.get(name)
        if cell is None or name not in weights:
            continue
        w = np.asarray(weights[name], dtype=np.float64)
        rows = {e: i for i, e in enumerate(info.edges)}
        edges = []
        for e in cell.edges:
            i = rows.get((e.src, e.dst))
            if i is None or e.op not in info.candidates or not w[i].any():
                continue  # an edge outside the group, or removed by selection
            edges.append(edge_verdict(w[i], info.candidates, e.op, e.src, e.dst))
        moved = None
        if initial is not None and name in initial:
            moved = bool(np.abs(w - np.asarray(initial[name], dtype=np.float64)).max(initial=0.0) > MOVED_ATOL)
        null = (noise or {}).get(name)
        cells.append(CellVerdict(name, tuple(edges), len(info.candidates), moved, factor, quorum, null))
    return Verdict(tuple(cells))


def verdict_table(v: Verdict) -> tuple[list[str], list[list[str]]]:
    """``(header, rows)``: one row per kept edge, for a report."""
    header = ["cell", "edge", "chosen op", "weight", "× uniform", "runner-up", "margin", "entropy / ln K", "note"]
    rows = []
    for c in v.cells:
        for e in c.edges:
            note = "fixed by selection" if e.fixed else ("decided" if e.decided(c.factor) else "undecided")
            if e.none_weight is not None:
                note += f"; 'none' outweighs every real op ({e.none_weight:.3f})"
            rows.append(
                [
                    c.cell,
                    f"{e.src}→{e.dst}",
                    e.op,
                    f"{e.weight:.3f}",
                    f"{e.times_uniform:.2f}",
                    f"{e.runner_up} ({e.runner_up_weight:.3f})",
                    f"{e.margin:+.3f}",
                    f"{e.entropy / math.log(e.num_ops):.3f}" if e.num_ops > 1 else "-",
                    note,
                ]
            )
    return header, rows
