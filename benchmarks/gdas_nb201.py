"""GDAS on the NAS-Bench-201 space (``configs/quickstart_gdas.yaml``, 8×8 digits): one search per seed, the found
cells' NAS-Bench-201 strings and final validation accuracy of the supernet printed side by side.

Usage: ``python benchmarks/gdas_nb201.py [--seeds 0 1 2] [--out logs/gdas_nb201]`` (about a minute per seed on 2 CPU
cores). Runs through the ``dnas fit`` CLI in-process, so it is the quickstart exactly, only the seeds differ.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from dnas.cells.nb201 import genotype_to_nb201_str
from dnas.cli import main as dnas_main
from dnas.genotypes import Genotype

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "quickstart_gdas.yaml"


def search(seed: int, out: Path) -> tuple[str, float]:
    """Run the quickstart with ``seed_everything`` and the Gumbel seed set to ``seed``; ``(cell string, val acc)``."""
    save = out / f"seed{seed}"
    args = ["fit", "--config", str(CONFIG), "--seed_everything", str(seed), "--model.init_args.seed", str(seed)]
    args += ["--trainer.logger.init_args.save_dir", str(save), "--trainer.default_root_dir", str(save)]
    dnas_main([*args, "--trainer.enable_progress_bar", "false"])
    run = max((save / "quickstart_gdas").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    rows = [r for r in csv.DictReader((run / "metrics.csv").open()) if r.get("val/acc")]
    return genotype_to_nb201_str(Genotype.from_file(run / "genotype.json")), float(rows[-1]["val/acc"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("logs/gdas_nb201"))
    args = parser.parse_args()
    results = {seed: search(seed, args.out) for seed in args.seeds}
    print(f"{'seed':<6}{'val acc':>9}  cell")
    for seed, (cell, acc) in results.items():
        print(f"{seed:<6}{acc:9.3f}  {cell}")


if __name__ == "__main__":
    main()
