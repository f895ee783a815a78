"""FBNet search on digits with the latency term off vs on: measured speed and accuracy of the found networks.

Both searches share the seed, the supernet (the quickstart's: 22 layers, 9 blocks, width ×0.25, 8×8 input), the
schedule and the data split; one adds ``LatencyLoss`` (FBNet form ``CE·0.2·log(LAT)^0.6``, LAT in µs) read from a
table measured here first. Each argmax architecture is then exported and retrained from scratch on the digits
training set (test accuracy reported); the two networks are timed at batch 1 (the table's setting) and 64 in
alternation for ``--rounds`` rounds (median), so both see the same machine load.

    python benchmarks/latency_search.py --epochs 5 --batches 10 --retrain_epochs 10
"""

from __future__ import annotations

import argparse
import statistics
import time

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

import dnas
from dnas.callbacks import TemperatureSchedule
from dnas.cells.fbnet import FBNetSupernet
from dnas.data import DigitsDataModule
from dnas.export import build_model
from dnas.latency import LatencyLoss, measure_table, time_module


def supernet() -> FBNetSupernet:
    return FBNetSupernet(
        num_classes=10,
        in_channels=1,
        input_size=8,
        width_mult=0.25,
        head_channels=64,
        stem_stride=1,
        stage_strides=[1, 2, 1, 2, 1, 1, 1],
    )


def search(table, args, tmp: str):
    pl.seed_everything(args.seed, verbose=False)
    net = supernet()
    loss = None if table is None else LatencyLoss(table, form="fbnet", alpha=0.2, beta=0.6, scale=1000.0)
    module = dnas.FBNet(net, latency_loss=loss, arch_warmup_epochs=1)
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        limit_train_batches=args.batches,
        limit_val_batches=0,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[TemperatureSchedule(initial=5.0, rate=0.5)],
        default_root_dir=tmp,
    )
    t0 = time.perf_counter()
    trainer.fit(module, DigitsDataModule(batch_size=64, train_portion=0.8))
    return module.supernet.genotype(), time.perf_counter() - t0


def retrain(genotype, args) -> float:
    """Train the exported network from scratch on the digits training set; return test accuracy."""
    torch.manual_seed(args.seed)
    dm = DigitsDataModule(batch_size=64, search=False)
    dm.setup()
    model = build_model(genotype)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.retrain_epochs)
    for _ in range(args.retrain_epochs):
        model.train()
        for x, y in dm.train_dataloader():
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        sched.step()
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in dm.test_dataloader():
            correct += int((model(x).argmax(-1) == y).sum())
            total += len(y)
    return correct / total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batches", type=int, default=10)
    p.add_argument("--retrain_epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (median), against machine load")
    p.add_argument("--tmp", default="/tmp/dnas_latency_search")
    args = p.parse_args()
    torch.set_num_threads(1)
    table = measure_table(supernet(), torch.zeros(1, 1, 8, 8), min_run_time=0.02, warmup=5, progress=False)
    rows = {}
    for name, tab in (("latency off", None), ("latency on", table)):
        genotype, secs = search(tab, args, args.tmp)
        model = build_model(genotype).eval()
        ops = genotype.cells["layers"].ops()
        rows[name] = {
            "ops": ops,
            "model": model,
            "search_s": secs,
            "predicted": table.total({"layers": ops}),
            "params": sum(p.numel() for p in model.parameters()),
            "acc": retrain(genotype, args),
        }
        print(f"{name}: {' '.join(ops)}", flush=True)
    # time the two networks in alternation, so both see the same machine load; report the median round
    for key, batch in (("b1", 1), ("b64", 64)):
        runs: dict[str, list[float]] = {name: [] for name in rows}
        for _ in range(args.rounds):
            for name, row in rows.items():
                runs[name].append(time_module(row["model"], torch.zeros(batch, 1, 8, 8), 3, 0.2)["median"])
        for name, row in rows.items():
            row[key] = statistics.median(runs[name])
    off, on = rows["latency off"], rows["latency on"]
    print(f"\nsearch: {args.epochs} epochs x {args.batches} batches, seed {args.seed}; retrain {args.retrain_epochs}")
    print(f"{'':28s}{'latency off':>14s}{'latency on':>14s}{'on/off':>10s}")
    for key, label, fmt in (
        ("predicted", "table latency (ms, b=1)", "{:14.3f}"),
        ("b1", "measured latency (ms, b=1)", "{:14.3f}"),
        ("b64", "measured latency (ms, b=64)", "{:14.3f}"),
        ("params", "parameters", "{:14.0f}"),
        ("acc", "test accuracy", "{:14.4f}"),
        ("search_s", "search time (s)", "{:14.1f}"),
    ):
        ratio = on[key] / off[key] if off[key] else float("nan")
        print(f"{label:28s}" + fmt.format(off[key]) + fmt.format(on[key]) + f"{ratio:10.3f}")
    print(f"skip layers: off {off['ops'].count('skip')}, on {on['ops'].count('skip')}")


if __name__ == "__main__":
    main()
