"""Magnitude vs perturbation (DARTS-PT) selection on the same trained supernet, MNIST-1D, several seeds.

Per search seed, one ``fit``: a first-order DARTS search of the 1-D conv cell space
(``dnas.cells.conv1d.Conv1dSupernet``) for ``--search_epochs``; :class:`~dnas.callbacks.MagnitudeSelection` writes
the magnitude genotype at the last search epoch, then :class:`~dnas.callbacks.PerturbationSelection` tunes and
discretises the same supernet (``--interval`` epochs between its 6 decisions). Both genotypes are exported with
``dnas.export.build_model`` and retrained from scratch (several retrain seeds) with the same short recipe
(``benchmarks/retrain_mnist1d.py``'s: SGD 0.025/0.9/3e-4, cosine, batch 64) on all 4,000 training sequences; the
table gives test accuracy (1,000 sequences), side by side.

Then the run time of one perturbation measurement versus ``val_subset`` (the knob for users with less time), timed
on a fresh supernet (the cost of a forward does not depend on training).

    python benchmarks/selection.py --seeds 0 --retrain_seeds 0 1 2            # search, select, retrain, time
    python benchmarks/selection.py --from_run LOGDIR --timing_subsets        # retrain the genotypes of a run
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from retrain_mnist1d import eval_accuracy, train_epoch  # this directory is on sys.path when run as a script

from dnas import DARTS
from dnas.callbacks import MagnitudeSelection, PerturbationSelection
from dnas.callbacks.evaluation import SupernetEvaluator
from dnas.cells.conv1d import Conv1dSupernet
from dnas.data.mnist1d import MNIST1DDataModule, generate_mnist1d
from dnas.export import build_model
from dnas.genotypes import Genotype


def search(seed: int, args, out: Path) -> tuple[Genotype, Genotype, DARTS, MNIST1DDataModule, list[dict]]:
    pl.seed_everything(seed, verbose=False)
    module = DARTS(Conv1dSupernet(channels=args.channels, num_classes=10))
    dm = MNIST1DDataModule(batch_size=64)
    pt = PerturbationSelection(
        interval=args.interval, val_subset=args.val_subset, exclude_ops=["none"], seed=seed, edge_order="random"
    )
    mag = MagnitudeSelection(at_epoch=args.search_epochs - 1)
    trainer = pl.Trainer(
        max_epochs=args.search_epochs + pt.tune_epochs(module.supernet),
        accelerator="cpu",
        devices=1,
        logger=pl.loggers.CSVLogger(out, name=f"seed{seed}", version=0),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[pt, mag],
    )
    trainer.fit(module, datamodule=dm)
    log = out / f"seed{seed}" / "version_0"
    g_pt = Genotype.from_json((log / "genotype_perturbation.json").read_text())
    return mag.genotype, g_pt, module, dm, pt.decisions


def retrain(genotype: Genotype, seed: int, epochs: int, data: dict[str, torch.Tensor]) -> float:
    torch.manual_seed(seed)
    net = build_model(genotype)
    opt = torch.optim.SGD(net.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for _ in range(epochs):
        train_epoch(net, opt, data)
        sched.step()
    return eval_accuracy(net, data)


def ops(genotype: Genotype) -> str:
    return " ".join(f"{e.op}({e.src}->{e.dst})" for cell in genotype.cells.values() for e in cell.edges)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="search seeds (one trained supernet each)")
    p.add_argument("--retrain_seeds", type=int, nargs="+", default=[0, 1, 2], help="retrain seeds per genotype")
    p.add_argument("--search_epochs", type=int, default=6)
    p.add_argument("--interval", type=int, default=1)
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--val_subset", type=int, default=500)
    p.add_argument("--retrain_epochs", type=int, default=8)
    p.add_argument("--timing_subsets", type=int, nargs="*", default=[125, 250, 500, 1000, 2000])
    p.add_argument("--from_run", default=None, help="skip the search: a log dir holding both genotype files")
    p.add_argument("--out", default=None, help="log directory (default: a temporary one)")
    args = p.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out or tempfile.mkdtemp(prefix="dnas_selection_"))
    data = generate_mnist1d()
    runs = []
    if args.from_run:
        log = Path(args.from_run)
        runs.append(("from_run", *(Genotype.from_json((log / f).read_text()) for f in _FILES), _decisions(log), None))
    else:
        for seed in args.seeds:
            start = time.perf_counter()
            g_mag, g_pt, _, _, decisions = search(seed, args, out)
            runs.append((seed, g_mag, g_pt, decisions, time.perf_counter() - start))
    rows = []
    for seed, g_mag, g_pt, decisions, search_s in runs:
        dec_s = sum(d["seconds"] for d in decisions)
        print(f"search {seed}: decisions {dec_s:.1f} s" + (f", search+select {search_s:.0f} s" if search_s else ""))
        print(f"  magnitude:    {ops(g_mag)}\n  perturbation: {ops(g_pt)}", flush=True)
        for r in args.retrain_seeds:
            acc_mag = retrain(g_mag, r, args.retrain_epochs, data)
            acc_pt = retrain(g_pt, r, args.retrain_epochs, data)
            rows.append({"search": seed, "retrain_seed": r, "mag": acc_mag, "pt": acc_pt})
            print(f"  retrain seed {r}: magnitude {acc_mag:.4f} | perturbation {acc_pt:.4f}", flush=True)
    mags, pts = [r["mag"] for r in rows], [r["pt"] for r in rows]
    sd = statistics.stdev if len(rows) > 1 else (lambda v: 0.0)
    print(f"\nretrained test accuracy, {len(rows)} (search, retrain seed) pairs, {args.retrain_epochs} epochs each:")
    print(f"  magnitude     {statistics.mean(mags):.4f} ± {sd(mags):.4f}")
    print(f"  perturbation  {statistics.mean(pts):.4f} ± {sd(pts):.4f}")
    print(f"  difference (pt - mag) per pair: {[round(b - a, 4) for a, b in zip(mags, pts)]}")

    # run time of one measurement vs val_subset (a fresh undiscretised supernet; time does not depend on training)
    if args.timing_subsets:
        torch.manual_seed(0)
        net = Conv1dSupernet(channels=args.channels, num_classes=10)
        dm = MNIST1DDataModule(batch_size=64)
        dm.setup()
        loader = dm.val_dataloader()
        k = len(net.arch_groups[next(iter(net.arch_groups))].candidates)
        print(f"\nmeasurement time vs val_subset (validation half: {len(loader.dataset)} sequences):")
        base = None
        for n in args.timing_subsets:
            ev = SupernetEvaluator(net, loader, n)
            ev()  # warm-up
            t = min(_timed(ev) for _ in range(3))
            base = base or t / n
            print(
                f"  val_subset {n:5d}: {t * 1e3:8.1f} ms per measurement ({t / n / base:.2f}x the per-sample time "
                f"of the smallest); one op decision = {k} measurements = {k * t:.2f} s",
                flush=True,
            )
    print(json.dumps({"rows": rows, "args": vars(args)}))


_FILES = ("genotype_magnitude.json", "genotype_perturbation.json")


def _decisions(log: Path) -> list[dict]:
    return [json.loads(s) for s in (log / "selection_decisions.jsonl").read_text().splitlines()]


def _timed(ev) -> float:
    start = time.perf_counter()
    ev()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
