"""Sharpness of the search, DARTS against SD-DARTS from the same seed: dominant Hessian eigenvalue of the validation
loss w.r.t. α per epoch (dnas.callbacks.HessianEigenvalue, RobustDARTS' signal), side by side.

    python benchmarks/sharpness.py --config configs/quickstart_mnist1d.yaml [--algorithms DARTS SDDARTS]

Each algorithm runs the config with only ``model.class_path`` changed (SD-DARTS with its defaults: λ 1, T 3, K 3,
vote) and the callback added; the log directories are ``logs/sharpness_<algorithm>/``. Prints the eigenvalue after
every epoch, the final genotype and the measuring time against the run time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml

from dnas.callbacks import HessianEigenvalue
from dnas.cli import DnasCLI


def run(config: str, algorithm: str, extra: list[str]) -> tuple[HessianEigenvalue, str, float]:
    data = yaml.safe_load(Path(config).read_text())
    data["model"]["class_path"] = f"dnas.{algorithm}"
    data["trainer"]["logger"]["init_args"]["name"] = f"sharpness_{algorithm}"
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(data, f)
    args = ["fit", "--config", f.name, "--trainer.callbacks+=dnas.callbacks.HessianEigenvalue"]
    args += ["--trainer.enable_progress_bar", "false", *extra]
    start = time.perf_counter()
    cli = DnasCLI(args=args)
    seconds = time.perf_counter() - start
    Path(f.name).unlink()
    cb = next(c for c in cli.trainer.callbacks if isinstance(c, HessianEigenvalue))
    return cb, str(cli.model.supernet.genotype()), seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/quickstart_mnist1d.yaml")
    p.add_argument("--algorithms", nargs="+", default=["DARTS", "SDDARTS"])
    p.add_argument("extra", nargs="*", help="more dnas fit arguments, after --")
    args = p.parse_args()
    results = {a: run(args.config, a, args.extra) for a in args.algorithms}
    epochs = sorted({e for cb, _, _ in results.values() for e, _ in cb.history})
    print("epoch | " + " | ".join(args.algorithms))
    for e in epochs:
        row = [next((f"{v:.4g}" for ep, v in results[a][0].history if ep == e), "-") for a in args.algorithms]
        print(f"{e} | " + " | ".join(row))
    for a, (cb, genotype, seconds) in results.items():
        print(f"{a}: {genotype}; run {seconds:.0f} s, of which measuring {cb.seconds:.0f} s")


if __name__ == "__main__":
    main()
