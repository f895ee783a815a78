"""Hard latency budgets on the FBNet quickstart: every searched network's table latency against its budget.

Steps (all through the ``dnas`` CLI in-process, ``configs/quickstart_fbnet.yaml`` unchanged except the loss):

1. measure the quickstart's latency table (``dnas lut``) unless ``--lut`` names one;
2. the unconstrained search (the quickstart's FBNet latency loss); ``L0`` is its expected latency (``arch/latency``,
   last-epoch mean of the architecture steps' edge weights);
3. for each fraction f (default 0.4, 0.6, 0.8) the same search with ``dnas.latency.BudgetLoss(budget=f·L0)``
   (Lagrange multiplier by dual ascent; the final genotype projected within budget).

Printed side by side per run: the budget, the table latency of the argmax genotype before the projection and of the
final (exported) genotype, whether it is within budget, the projection's swaps, the final multiplier and the last
validation accuracy of the supernet; then per run the table's calibrated whole-network prediction with its band
(``dnas lut --calibrate``, :meth:`dnas.latency.CostTable.predict`) and the exported network timed here with the
table's settings (:func:`dnas.latency.measure.time_network`), within the band or not.

``--retrain_epochs N`` then trains every found network from scratch with ``dnas.Retrain``
(``configs/quickstart_retrain.yaml``: SGD, cosine, shift augmentation on the digits training split; accuracy on the
held-out test split) and ``--plot PATH`` draws the accuracy/latency trade-off (retrained test accuracy against the
table latency, budgets marked).

``--single-path`` searches with FBNet's hard single-path sampling (``hard: true, single_path: true``: one op per layer
and step, the mechanism of ``dnas.GDAS``) instead of the quickstart's soft all-path sampling, several times faster.

Usage: ``python benchmarks/gdas_budget.py [--out logs/gdas_budget] [--fractions 0.4 0.6 0.8] [--lut LUT.json]
[--max_epochs N] [--single-path] [--retrain_epochs N --retrain_seeds S ... --plot PATH]``.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from dnas.cli import main as dnas_main
from dnas.export import build_model
from dnas.genotypes import Genotype
from dnas.latency.cli import main as lut_main
from dnas.latency.measure import time_network
from dnas.latency.table import CostTable

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "quickstart_fbnet.yaml"
RETRAIN = CONFIG.with_name("quickstart_retrain.yaml")


def fit(save: Path, extra: list[str]) -> Path:
    """One quickstart search writing under ``save``; returns its run directory."""
    args = ["fit", "--config", str(CONFIG), *extra, "--trainer.enable_progress_bar", "false"]
    dnas_main([*args, "--trainer.logger.init_args.save_dir", str(save), "--trainer.default_root_dir", str(save)])
    return max((save / "quickstart_fbnet").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))


def retrain(save: Path, genotype: Path, epochs: int, seed: int) -> float:
    """Train the found network from scratch with ``dnas.Retrain``; returns the last held-out accuracy."""
    args = ["fit", "--config", str(RETRAIN), "--model.init_args.genotype", str(genotype)]
    args += ["--seed_everything", str(seed), "--model.init_args.options", "null", "--trainer.max_epochs", str(epochs)]
    args += ["--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.name", "retrain"]
    dnas_main([*args, "--trainer.logger.init_args.save_dir", str(save), "--trainer.default_root_dir", str(save)])
    run = max((save / "retrain").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    return last_logged(run, "val/acc")


def plot(path: Path, points: list[tuple[str, float, float, list[float]]]) -> None:
    """Retrained accuracy (mean, bar from min to max over seeds) against table latency; budgets as dotted lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=120)
    for i, (name, budget, cost, accs) in enumerate(points):
        color, mean = f"C{i}", sum(accs) / len(accs)
        low, high = (mean - min(accs)) * 100, (max(accs) - mean) * 100
        label = f"{name}: {cost:.2f} ms, {mean:.1%} (n={len(accs)})"
        ax.errorbar([cost], [mean * 100], yerr=[[low], [high]], fmt="o", color=color, capsize=3, zorder=3, label=label)
        if budget == budget:  # not NaN: a budgeted search
            ax.axvline(budget, color=color, linestyle=":", linewidth=1)
    ax.set_xlabel("table latency of the found network (ms, batch 1)")
    ax.set_ylabel("retrained test accuracy (%)")
    ax.set_title("FBNet quickstart: hard budgets (dotted) vs accuracy")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    print(f"plot: {path}")


def last_logged(run: Path, key: str) -> float:
    rows = [r for r in csv.DictReader((run / "metrics.csv").open()) if r.get(key)]
    return float(rows[-1][key]) if rows else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("logs/gdas_budget"))
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.4, 0.6, 0.8])
    parser.add_argument("--lut", type=Path, default=None)
    parser.add_argument("--max_epochs", type=int, default=None)
    parser.add_argument("--single-path", action="store_true", help="FBNet hard single-path sampling")
    parser.add_argument("--retrain_epochs", type=int, default=0, help="retrain every found network (0: do not)")
    parser.add_argument("--retrain_seeds", type=int, nargs="+", default=[2], help="one retrain per seed")
    parser.add_argument("--plot", type=Path, default=None, help="accuracy/latency picture (needs --retrain_epochs)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    lut = args.lut or args.out / "lut.json"
    if args.lut is None:
        lut_main(["--config", str(CONFIG), "--out", str(lut)])
    table = CostTable.load(lut)
    epochs = [] if args.max_epochs is None else ["--trainer.max_epochs", str(args.max_epochs)]
    if args.single_path:
        epochs += ["--model.init_args.hard", "true", "--model.init_args.single_path", "true"]

    run = fit(args.out / "unconstrained", [*epochs, "--model.init_args.latency_loss.init_args.table", str(lut)])
    g0 = Genotype.from_file(run / "genotype.json")
    l0 = last_logged(run, "arch/latency_epoch")
    final0 = table.total({"layers": g0.cells["layers"].ops()})
    rows = [("none", float("nan"), final0, final0, True, 0, float("nan"), last_logged(run, "val/acc"))]
    found = [g0]
    files = [run / "genotype.json"]
    for f in args.fractions:
        override = args.out / f"budget_{f:g}.yaml"
        override.write_text(
            "model:\n  init_args:\n    latency_loss:\n      class_path: dnas.latency.BudgetLoss\n"
            f"      init_args:\n        table: {lut}\n        budget: {f * l0!r}\n        dual_lr: 0.1\n"
        )
        run = fit(args.out / f"budget_{f:g}", [*epochs, "--config", str(override)])
        g = Genotype.from_file(run / "genotype.json")
        found.append(g)
        files.append(run / "genotype.json")
        record = g.meta["budget"]
        cost = table.total({"layers": g.cells["layers"].ops()})
        rows.append(
            (f"{f:.0%}", f * l0, record["cost_before"], cost, cost <= f * l0, len(record["swaps"]),
             record["multiplier"], last_logged(run, "val/acc"))
        )  # fmt: skip
    print(f"latency table: {lut} ({table.unit}); unconstrained search: expected latency L0 = {l0:.4f} {table.unit}")
    print(f"{'budget':<8}{'B ms':>9}{'argmax ms':>11}{'final ms':>10}{'within':>8}{'swaps':>7}{'λ':>8}{'val acc':>9}")
    for name, b, before, cost, ok, swaps, lam, acc in rows:
        print(f"{name:<8}{b:9.4f}{before:11.4f}{cost:10.4f}{str(ok):>8}{swaps:7d}{lam:8.3f}{acc:9.3f}")
    print(f"\n{'budget':<8}{'table ms':>10}{'predicted ms [band]':>32}{'measured ms':>13}  in band")
    for (name, *_), g in zip(rows, found):
        pred = table.predict(table.choice(g))
        measured = time_network(build_model(g), table.meta["input_shape"], table.meta)
        band = f"[{pred.band[0]:.3f}, {pred.band[1]:.3f}]" if pred.band else "[no calibration]"
        inside = pred.contains(measured)
        print(f"{name:<8}{pred.table_sum:10.4f}{pred.value:12.4f} {band:>19}{measured:13.4f}  {inside}")
    if args.retrain_epochs:
        accs = [
            [retrain(args.out / f"retrain_{name}_s{seed}", f, args.retrain_epochs, seed) for seed in args.retrain_seeds]
            for (name, *_), f in zip(rows, files)
        ]
        seeds = f"per seed {args.retrain_seeds} ({args.retrain_epochs} epochs)"
        print(f"\n{'budget':<8}{'table ms':>10}  retrained acc {seeds}")
        for (name, _b, _before, cost, *_), acc in zip(rows, accs):
            print(f"{name:<8}{cost:10.4f}  " + "  ".join(f"{a:.4f}" for a in acc) + f"  mean {sum(acc) / len(acc):.4f}")
        if args.plot:
            plot(args.plot, [(r[0], r[1], r[3], a) for r, a in zip(rows, accs)])


if __name__ == "__main__":
    main()
