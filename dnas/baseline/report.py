"""The baseline report: one table of runs and one picture (accuracy against parameters, found vs random cells)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from dnas.baseline.runs import FOUND, summarize
from dnas.genotypes import Genotype
from dnas.io import atomic_write_text
from dnas.viz.report import Section, write_report
from dnas.viz.style import new_figure, save_figure


def plot_baseline(results: list[dict[str, Any]], dpi: int = 100):
    """Accuracy (y) against parameters (x): each random cell's mean over seeds in grey, the found cell's runs in red."""
    fig = new_figure(6.4, 4.2, dpi)
    ax = fig.add_subplot(1, 1, 1)
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault(r["name"], []).append(r)
    rand = [
        (runs[0]["parameters"], float(np.mean([r["accuracy"] for r in runs])))
        for n, runs in groups.items()
        if n != FOUND
    ]
    if rand:
        xs, ys = zip(*rand)
        ax.scatter(xs, ys, s=36, c="0.55", label=f"random cells ({len(rand)}, mean of seeds)", zorder=2)
        ax.axhline(float(np.mean(ys)), color="0.55", ls="--", lw=1, label="random mean")
    found = groups.get(FOUND, [])
    if found:
        x = found[0]["parameters"]
        ys = [r["accuracy"] for r in found]
        ax.scatter([x] * len(ys), ys, s=28, c="tab:red", marker="x", label=f"found cell, {len(ys)} seed(s)", zorder=3)
        ax.scatter(
            [x], [np.mean(ys)], s=90, facecolors="none", edgecolors="tab:red", lw=2, label="found mean", zorder=3
        )
    ax.set_xlabel("parameters of the retrained network")
    ax.set_ylabel("accuracy (retrain config's validation split)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title("found genotype vs random genotypes of its space, same retrain recipe", fontsize=9)
    fig.tight_layout()
    return fig


def _num(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:,}" if isinstance(v, int) else f"{v:.4f}"


def write_baseline_report(
    out: Path, found: Genotype, results: list[dict[str, Any]], configs: list[str], extra: list[str]
) -> tuple[Path, Path]:
    """Write ``report.md``/``report.html``, ``plots/baseline.png`` and ``summary.json`` into ``out``."""
    s = summarize(results)
    save_figure(plot_baseline(results), out / "plots" / "baseline")
    atomic_write_text(out / "summary.json", json.dumps(s, indent=1) + "\n")
    head = Section("Found vs random")
    head.text(
        f"Found genotype: {found}. Retrain: dnas fit --config {' --config '.join(configs)}"
        + (f" {' '.join(extra)}" if extra else "")
        + ". Accuracy is the run's final val/acc (the held-out test split for search: false datamodules)."
    )
    verdict = (
        "the found cell beats every random cell"
        if s["random_count"] and s["random_below_found"] == s["random_count"]
        else f"{s['random_below_found']} of {s['random_count']} random cells are below the found cell's mean"
    )
    head.table(
        ["", "accuracy", "runs"],
        [
            ["found cell, mean ± std over seeds", f"{s['found_mean']:.4f} ± {s['found_std']:.4f}", s["found_runs"]],
            [
                "random cells, mean ± std over cells",
                f"{s['random_mean']:.4f} ± {s['random_std']:.4f}",
                s["random_count"],
            ],
            ["best random cell", _num(s["random_best"]), ""],
        ],
    )
    head.text(f"Verdict: {verdict}.")
    head.image("plots/baseline.png", "accuracy against parameters: found cell (red) vs random cells (grey)")
    runs = Section("Runs")
    runs.table(
        ["name", "seed", "accuracy", "parameters", "FLOPs", "epochs", "seconds", "genotype"],
        [
            [r["name"], r["seed"], _num(r["accuracy"]), _num(r["parameters"]), _num(r["flops"]), r["epochs"],
             r["seconds"], r["genotype"]]
            for r in sorted(results, key=lambda r: (r["name"] != FOUND, r["name"], r["seed"]))
        ],
    )  # fmt: skip
    return write_report(out, "dnas baseline: found genotype vs random genotypes", [head, runs])
