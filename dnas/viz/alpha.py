"""Pictures of architecture weights: per-group heatmaps (edges × ops) and per-edge evolution over epochs.

Inputs are plain arrays plus the group's edges and candidate names, so the same code draws a live supernet (through
:meth:`~dnas.cells.Supernet.selection_weights`) or a history saved in a callback's state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, MaxNLocator

from dnas.genotypes import Genotype
from dnas.viz.style import new_figure, op_colors


@dataclass(frozen=True)
class GroupInfo:
    """What a picture needs to know about one architecture group (mirrors :class:`dnas.cells.ArchGroup`)."""

    name: str
    edges: tuple[tuple[int, int], ...]
    candidates: tuple[str, ...]

    @classmethod
    def of(cls, group) -> GroupInfo:
        return cls(str(group.name), tuple((int(s), int(d)) for s, d in group.edges), tuple(group.candidates))

    def edge_labels(self) -> list[str]:
        return [f"{s}→{d}" for s, d in self.edges]


def normalised(weights: np.ndarray) -> np.ndarray:
    """Rows scaled to sum 1 (removed edges, all-zero rows, stay zero)."""
    w = np.clip(np.asarray(weights, dtype=np.float64), 0.0, None)
    total = w.sum(-1, keepdims=True)
    return np.divide(w, total, out=np.zeros_like(w), where=total > 0)


def edge_entropy(weights: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each edge's normalised op weights; removed edges get 0."""
    p = normalised(weights)
    return -(p * np.log(np.where(p > 0, p, 1.0))).sum(-1)


def plot_alpha_heatmaps(
    weights: Mapping[str, np.ndarray],
    groups: Mapping[str, GroupInfo],
    title: str | None = None,
    genotype: Genotype | None = None,
    dpi: int = 100,
) -> Figure:
    """One heatmap per group: rows = edges (``src→dst``), columns = candidate ops, values annotated.

    Args:
        weights: group -> ``(E, K)`` edge weights (softmax α with selection applied).
        groups: group -> :class:`GroupInfo` (edges and candidate names).
        title: figure title (e.g. the epoch).
        genotype: if given, the ops it keeps are outlined (cells named like the groups).
        dpi: resolution.
    """
    names = [g for g in groups if g in weights]
    if not names:
        raise ValueError(f"no weights for any of the groups {list(groups)}")
    # groups stacked vertically, each as wide as its ops need: side by side, a report page (about 1000 px) would
    # shrink the figure until the numbers written in it are unreadable
    shapes = [np.asarray(weights[g]).shape for g in names]
    width = max(max(4.0, 0.75 * k + 2.6) for _, k in shapes)
    heights = [max(2.2, 0.3 * e + 1.4) for e, _ in shapes]
    fig = new_figure(width, sum(heights) + 0.4, dpi)
    axes = fig.subplots(len(names), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, name in zip(axes, names):
        info, w = groups[name], np.asarray(weights[name], dtype=np.float64)
        if w.shape != (len(info.edges), len(info.candidates)):
            raise ValueError(
                f"group {name!r}: weights have shape {w.shape}, expected {(len(info.edges), len(info.candidates))}"
            )
        # colour range = this group's range: early in a search all weights sit near 1/K and a 0..1 scale hides it
        vmin, vmax = float(w.min()), float(w.max())
        vmax = max(vmax, vmin + 1e-6)
        im = ax.imshow(w, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
        ax.set_xticks(range(len(info.candidates)), info.candidates, rotation=30, ha="right", fontsize=9)
        ax.set_yticks(range(len(info.edges)), info.edge_labels(), fontsize=9)
        ax.set_ylabel("edge")
        ax.set_title(name, fontsize=10)
        if w.size <= 400:
            spread = vmax - vmin
            fmt = "{:.4f}" if spread < 0.005 else "{:.3f}" if spread < 0.05 else "{:.2f}"
            for (i, j), v in np.ndenumerate(w):
                light = v < vmin + 0.6 * (vmax - vmin)
                ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=8, color="white" if light else "black")
        if genotype is not None and name in genotype.cells:
            rows = {e: i for i, e in enumerate(info.edges)}
            cols = {op: j for j, op in enumerate(info.candidates)}
            for e in genotype.cells[name].edges:
                i, j = rows.get((e.src, e.dst)), cols.get(e.op)
                if i is not None and j is not None:
                    ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.8))
        fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02)
    if title:
        fig.suptitle(title + ("  (outlined: current genotype)" if genotype is not None else ""), fontsize=10)
    fig.tight_layout()
    return fig


def plot_alpha_evolution(
    epochs: Sequence[float],
    history: Sequence[np.ndarray],
    group: GroupInfo,
    max_cols: int = 5,
    dpi: int = 100,
) -> Figure:
    """Each edge's op weights over epochs: one small panel per edge, one line per op, shared legend.

    Args:
        epochs: x values: the epoch (0-based) whose end each entry shows; −1 is drawn as ``init`` (before training).
        history: one ``(E, K)`` array per entry of ``epochs``.
        group: the group drawn.
        max_cols: panels per row.
        dpi: resolution.
    """
    data = np.asarray(history, dtype=np.float64)
    E, K = len(group.edges), len(group.candidates)
    if data.ndim != 3 or data.shape[1:] != (E, K) or len(data) != len(epochs):
        raise ValueError(f"group {group.name!r}: history has shape {data.shape}, expected ({len(epochs)}, {E}, {K})")
    cols = min(E, max_cols)
    rows = math.ceil(E / cols)
    fig = new_figure(2.6 * cols, 1.9 * rows + 0.9, dpi)
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    colors = op_colors(group.candidates)
    x = np.asarray(epochs, dtype=np.float64)
    lo, hi = float(data.min()), float(data.max())
    pad = max(0.05 * (hi - lo), 1e-4)
    for e in range(rows * cols):
        ax = axes[e // cols][e % cols]
        if e >= E:
            ax.axis("off")
            continue
        for k, op in enumerate(group.candidates):
            ax.plot(x, data[:, e, k], color=colors[op], lw=1.4, marker="o" if len(x) <= 12 else None, ms=2.5)
        ax.set_title(group.edge_labels()[e], fontsize=8)
        ax.set_ylim(max(0.0, lo - pad), hi + pad)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: "init" if round(v) == -1 else f"{v:g}"))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if e // cols == rows - 1 or e + cols >= E:
            ax.set_xlabel("epoch", fontsize=7)
    handles = [axes[0][0].lines[k] for k in range(K)]
    fig.legend(handles, group.candidates, loc="lower center", ncol=min(K, 8), fontsize=7, frameon=False)
    fig.suptitle(f"{group.name}: op weight per edge over epochs", fontsize=10)
    # fixed margins (inches): tight_layout over many panels costs several seconds per figure
    height = fig.get_figheight()
    legend = 0.35 + 0.18 * ((K - 1) // 8)
    fig.subplots_adjust(
        left=0.75 / fig.get_figwidth(),
        right=0.99,
        top=1 - 0.55 / height,
        bottom=(legend + 0.45) / height,
        wspace=0.12,
        hspace=0.45,
    )
    return fig
