"""Write the search's genotype to the log directory every epoch: ``genotype.json`` and ``genotype_history.jsonl``.

The search module only *derives* the genotype (``current_genotype()``); this callback puts it on disk, so a search
run without it (a test, a notebook) writes no files. Files are written on global rank zero only, into
:func:`dnas.io.log_dir` (never ``Trainer.log_dir``, a collective under DDP).
"""

from __future__ import annotations

import json

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_info

from dnas.io import append_line, atomic_write_text, log_dir
from dnas.storage import join


def check_search_module(pl_module: pl.LightningModule, who: str) -> None:
    """Raise a ``TypeError`` naming ``who`` if ``pl_module`` cannot give its genotype (``current_genotype()``)."""
    if not callable(getattr(pl_module, "current_genotype", None)):
        raise TypeError(
            f"{who} needs a search module with current_genotype() (dnas.DARTS and its subclasses); "
            f"{type(pl_module).__name__} has none"
        )


class GenotypeWriter(Callback):
    """Write ``pl_module.current_genotype()`` at the end of every training epoch, and FBNet's samples at the end of fit.

    Each epoch (global rank zero): ``genotype.json`` (replaced atomically: a crash keeps the previous file) and one
    compact JSON line appended to ``genotype_history.jsonl``; the genotype is printed as one line. At the end of
    ``fit``, a module with ``final == "sample"`` and ``sample_genotypes()`` (``dnas.FBNet``) also gets its sampled
    architectures written as ``genotype_sample_<i>.json``.

    Lightning calls callbacks' ``on_train_epoch_end`` before the module's; the genotype depends only on α, the
    selection buffers and the epoch, which the search modules' epoch end leaves alone, and it is on disk before
    ``ModelCheckpoint`` saves that epoch.

    Args:
        history: also append each epoch's genotype to ``genotype_history.jsonl``.

    Example::

        trainer:
          callbacks:
            - class_path: dnas.callbacks.GenotypeWriter
    """

    def __init__(self, history: bool = True):
        super().__init__()
        self.history = history

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        check_search_module(pl_module, "GenotypeWriter")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        genotype = pl_module.current_genotype()
        out = log_dir(trainer)
        atomic_write_text(join(out, "genotype.json"), genotype.to_json())
        if self.history:
            append_line(join(out, "genotype_history.jsonl"), json.dumps(genotype.to_dict(), separators=(",", ":")))
        rank_zero_info(f"epoch {trainer.current_epoch}: {genotype}")

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        sample = getattr(pl_module, "sample_genotypes", None)
        if not trainer.is_global_zero or getattr(pl_module, "final", None) != "sample" or not callable(sample):
            return
        out = log_dir(trainer)
        for i, genotype in enumerate(sample()):
            atomic_write_text(join(out, f"genotype_sample_{i}.json"), genotype.to_json())
            rank_zero_info(f"sampled architecture {i}: {genotype}")
