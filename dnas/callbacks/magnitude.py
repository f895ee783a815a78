"""Magnitude-based architecture selection: the classic "read the architecture off the largest α".

The rule is the space's own :meth:`dnas.cells.Supernet.genotype` (DARTS: per node the top-2 incoming edges by their
strongest non-``none`` op, op = that argmax; NAS-Bench-201 and chains: per-edge / per-layer argmax), applied to the
supernet's selection weights. The callback only decides *when* and *where* it is written, so it works with every
search module that exposes ``.supernet`` and every cell space.
"""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_info

from dnas.callbacks.plots import find_supernet
from dnas.cells.base import Supernet
from dnas.genotypes import Genotype
from dnas.io import atomic_write_text, log_dir
from dnas.storage import join


def magnitude_genotype(supernet: Supernet, **meta) -> Genotype:
    """The space's magnitude rule applied to ``supernet`` now, with ``meta`` (plus ``selection: magnitude``) added."""
    genotype = supernet.genotype()
    return Genotype(genotype.space, genotype.cells, {**genotype.meta, "selection": "magnitude", **meta})


class MagnitudeSelection(Callback):
    """Write the magnitude-rule genotype at the end of the search (or after a given epoch).

    Args:
        filename: file in the log directory, written atomically (a crash keeps the previous file).
        at_epoch: write after this training epoch instead of at the end of training: e.g. the last search epoch
            when a :class:`~dnas.callbacks.PerturbationSelection` tunes afterwards in the same ``fit``, so both
            selections of the same trained supernet are on disk. None = at the end of training.

    Example::

        trainer:
          callbacks:
            - class_path: dnas.callbacks.MagnitudeSelection
    """

    def __init__(self, filename: str = "genotype_magnitude.json", at_epoch: int | None = None):
        super().__init__()
        if at_epoch is not None and at_epoch < 0:
            raise ValueError(f"at_epoch must be >= 0 or None, got {at_epoch}")
        self.filename, self.at_epoch = filename, at_epoch
        self.genotype: Genotype | None = None

    @property
    def state_key(self) -> str:
        return f"{type(self).__name__}[{self.filename}]"

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.at_epoch is not None and trainer.current_epoch == self.at_epoch:
            self._write(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.at_epoch is None:
            self._write(trainer, pl_module)

    def _write(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        supernet = find_supernet(pl_module, "MagnitudeSelection")
        self.genotype = magnitude_genotype(supernet, epoch=int(trainer.current_epoch))
        if trainer.is_global_zero:
            path = atomic_write_text(join(log_dir(trainer), self.filename), self.genotype.to_json())
            rank_zero_info(f"MagnitudeSelection: genotype written to {path}: {self.genotype}")
