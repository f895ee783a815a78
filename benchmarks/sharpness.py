"""Sharpness of the search, DARTS against SD-DARTS from the same seed: dominant Hessian eigenvalue of the validation
loss w.r.t. α per epoch (dnas.callbacks.HessianEigenvalue, RobustDARTS' signal), side by side.

    python benchmarks/sharpness.py --config configs/quickstart_mnist1d.yaml [--algorithms DARTS SDDARTS]
        [--out DIR] [--label TEXT] [--recheck N] [--plot PATH] [-- more dnas fit arguments]
    python benchmarks/sharpness.py --from_json DIR/sharpness.json ... --plot PATH   # no run: table and picture

Each algorithm runs the config with only ``model.class_path`` changed (SD-DARTS with its class defaults: λ 1, T 3,
K 3, ``mean`` aggregation, unless the extra arguments set them) and the callback added; the logs (genotype.json,
metrics.csv, last.ckpt) go to ``DIR/sharpness_<algorithm>/`` and the curves, genotypes and times to
``DIR/sharpness.json``. Prints the eigenvalue after every epoch, the final genotype and the measuring time against
the run time. ``--recheck N`` measures the final α once more with up to N products at a 1e-4 tolerance, from three
fresh random starts, to tell a converged last value from an unconverged one. ``--plot`` draws the curves.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml

from dnas.callbacks import HessianEigenvalue
from dnas.cli import DnasCLI


def run(config: str, algorithm: str, out: Path, extra: list[str], recheck: int) -> dict:
    data = yaml.safe_load(Path(config).read_text())
    data["model"]["class_path"] = f"dnas.{algorithm}"
    data["trainer"]["default_root_dir"] = str(out)
    data["trainer"]["logger"]["init_args"].update(save_dir=str(out), name=f"sharpness_{algorithm}")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(data, f)
    args = ["fit", "--config", f.name, "--trainer.callbacks+=dnas.callbacks.HessianEigenvalue"]
    args += ["--trainer.enable_progress_bar", "false", *extra]
    start = time.perf_counter()
    cli = DnasCLI(args=args)
    seconds = time.perf_counter() - start
    Path(f.name).unlink()
    cb = next(c for c in cli.trainer.callbacks if isinstance(c, HessianEigenvalue))
    result = {
        "history": cb.history,
        "genotype": str(cli.model.supernet.genotype()),
        "log_dir": cli.trainer.log_dir,
        "seconds": seconds,
        "measure_seconds": cb.seconds,
    }
    if recheck:
        checks = []
        for seed in range(3):
            check = HessianEigenvalue(num_samples=cb.num_samples, iterations=recheck, tolerance=1e-4, seed=seed)
            value, used = check.measure(cli.trainer, cli.model)
            checks.append((value, used))
        result["recheck"] = checks
    return result


def plot(path: Path, results: dict[str, dict], title: str) -> None:
    """The eigenvalue curves of every run on one axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=120)
    for name, r in results.items():
        epochs, values = zip(*r["history"])
        style = "--" if "difference" in name else "-"  # runs measured with the old finite-difference products
        ax.plot(epochs, values, style, marker="o", markersize=3, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("dominant eigenvalue of ∇²_α L_valid")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    print(f"plot: {path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/quickstart_mnist1d.yaml")
    p.add_argument("--algorithms", nargs="+", default=["DARTS", "SDDARTS"])
    p.add_argument("--out", type=Path, default=Path("logs"), help="log directory; DIR/sharpness.json")
    p.add_argument("--label", default="", help="appended to each algorithm's name in the table, JSON and plot")
    p.add_argument("--recheck", type=int, default=0, help="remeasure the final α with up to N products (0: no)")
    p.add_argument("--from_json", type=Path, nargs="+", default=None, help="earlier sharpness.json files: no run")
    p.add_argument("--plot", type=Path, default=None, help="picture of the curves")
    p.add_argument("--title", default="", help="title of the picture")
    p.add_argument("extra", nargs="*", help="more dnas fit arguments, after --")
    args = p.parse_args()
    if args.from_json:
        results = {k: v for f in args.from_json for k, v in json.loads(f.read_text()).items()}
    else:
        suffix = f" {args.label}" if args.label else ""
        results = {a + suffix: run(args.config, a, args.out, args.extra, args.recheck) for a in args.algorithms}
        (args.out / "sharpness.json").write_text(json.dumps(results, indent=1))
    names = list(results)
    epochs = sorted({e for r in results.values() for e, _ in r["history"]})
    print("epoch | " + " | ".join(names))
    for e in epochs:
        row = [next((f"{v:.4g}" for ep, v in results[n]["history"] if ep == e), "-") for n in names]
        print(f"{e} | " + " | ".join(row))
    means = [sum(v for _, v in results[n]["history"]) / len(results[n]["history"]) for n in names]
    print("mean | " + " | ".join(f"{m:.4g}" for m in means))
    for n, r in results.items():
        print(f"{n}: {r['genotype']}; run {r['seconds']:.0f} s, of which measuring {r['measure_seconds']:.0f} s")
        if "recheck" in r:
            print(f"{n}: final α remeasured (eigenvalue, products) from 3 fresh starts: {r['recheck']}")
    if args.plot:
        plot(args.plot, results, args.title)


if __name__ == "__main__":
    main()
