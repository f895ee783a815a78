"""Loss and accuracy curves from a per-epoch metrics history (whatever the logger)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from dnas.viz.style import new_figure


def curve_keys(history: Sequence[Mapping[str, float]], kind: str) -> list[str]:
    """Epoch-level metric names containing ``kind`` (``"loss"``/``"acc"``); per-step duplicates left out."""
    keys = dict.fromkeys(k for row in history for k in row if kind in k.split("/")[-1] and not k.endswith("_step"))
    # Lightning reports an on_step+on_epoch metric as both "x" and "x_epoch": keep the explicit epoch value
    return [k for k in keys if k != "epoch" and f"{k}_epoch" not in keys]


def plot_curves(history: Sequence[Mapping[str, float]], dpi: int = 100) -> Figure:
    """Two panels, losses and accuracies, against the epoch; ``history`` is one ``{metric: value}`` per epoch.

    Each row must hold ``"epoch"``; metrics missing in a row are skipped there (e.g. validation every n epochs).
    """
    if not history:
        raise ValueError("no metrics recorded; nothing to plot")
    fig = new_figure(10, 3.6, dpi)
    axes = fig.subplots(1, 2)
    for ax, kind, label in ((axes[0], "loss", "loss"), (axes[1], "acc", "accuracy")):
        keys = curve_keys(history, kind)
        for key in keys:
            pts = [(row["epoch"], row[key]) for row in history if key in row]
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                marker="o" if len(pts) <= 15 else None,
                ms=3,
                label=key.removesuffix("_epoch"),
            )
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if keys:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, f"no {label} metric logged", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    return fig
