"""Memory stays flat over a long search: resident set size (RSS) sampled every N batches of a DARTS search.

Usage: python benchmarks/memory_flat.py [--epochs 20] [--unrolled]

Prints RSS per epoch and the growth between the end of the first epoch (allocator and caches warmed up) and the
end of the run. A leak (e.g. holding graphs or logged tensors) shows as steady growth per epoch.
"""

from __future__ import annotations

import argparse
import resource

import psutil
import pytorch_lightning as pl
import torch

from dnas import DARTS
from dnas.cells.darts import DartsSupernet
from dnas.data import DigitsDataModule


class RSSProbe(pl.Callback):
    def __init__(self):
        self.samples: list[tuple[int, float]] = []

    def on_train_epoch_end(self, trainer, pl_module):
        self.samples.append((trainer.current_epoch, psutil.Process().memory_info().rss / 2**20))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--unrolled", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    probe = RSSProbe()
    model = DARTS(DartsSupernet(init_channels=8, num_classes=10, layers=3, in_channels=1), unrolled=args.unrolled)
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        accelerator="cpu",
        logger=pl.loggers.CSVLogger("/tmp/dnas_memory_flat"),
        enable_progress_bar=False,
        enable_checkpointing=False,
        limit_val_batches=2,
        callbacks=[probe],
    )
    trainer.fit(model, datamodule=DigitsDataModule(batch_size=64))
    steps = trainer.fit_loop.epoch_loop.batch_progress.total.completed
    for epoch, rss in probe.samples:
        print(f"epoch {epoch:3d}  RSS {rss:8.1f} MiB")
    first, last = probe.samples[0][1], probe.samples[-1][1]
    per_epoch = (last - first) / max(1, len(probe.samples) - 1)
    print(f"{steps} search steps; RSS after epoch 0: {first:.1f} MiB, at the end: {last:.1f} MiB")
    print(f"growth: {last - first:+.1f} MiB total, {per_epoch:+.2f} MiB/epoch; ratio end/first = {last / first:.3f}")
    print(f"peak RSS (ru_maxrss): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
