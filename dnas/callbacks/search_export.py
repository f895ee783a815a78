"""Export the search result at the end of ``fit``: ``<log dir>/export/`` with model.py, weights.pt and summary.json.

The search module does not export itself; this callback calls :func:`dnas.export.search_hook.export_search_result`
with the module's final genotype (``current_genotype()``) and input shape (``input_shape()``). The weights are a
fresh initialisation: retrain the network (``dnas.Retrain``); ``dnas export --ckpt`` writes trained weights later.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_info

from dnas.callbacks.genotype_writer import check_search_module
from dnas.io import log_dir
from dnas.storage import join


class SearchExport(Callback):
    """At the end of ``fit`` (global rank zero), write the final genotype's discrete network to ``<log dir>/<dirname>``.

    Works for every space with an export builder; a network that cannot be built or written is skipped with a
    message saying why and how to export later (the search itself has succeeded). The
    :class:`~dnas.callbacks.AlphaPlots` report builds its model section with the same ``options``.

    Args:
        options: builder options of the network over the supernet's recorded sizes (e.g. DARTS
            ``{"init_channels": 36, "layers": 20}``); None = the supernet's skeleton.
        dirname: the export directory inside the log directory (replaced only if it is a previous export).

    Example::

        trainer:
          callbacks:
            - class_path: dnas.callbacks.SearchExport
              init_args:
                options: {init_channels: 36, layers: 20}
    """

    def __init__(self, options: dict[str, Any] | None = None, dirname: str = "export"):
        super().__init__()
        if not dirname or dirname in (".", "..") or "/" in dirname or "\\" in dirname:
            raise ValueError(f"dirname must be one folder name inside the log directory, got {dirname!r}")
        self.options = dict(options or {})
        self.dirname = dirname

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        check_search_module(pl_module, "SearchExport")

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        from dnas.export.search_hook import export_search_result

        shape = pl_module.input_shape() if callable(getattr(pl_module, "input_shape", None)) else None
        genotype = pl_module.current_genotype()
        _, message = export_search_result(genotype, join(log_dir(trainer), self.dirname), shape, self.options)
        rank_zero_info(f"dnas: {message}")
        if isinstance(genotype.meta.get("budget"), dict):  # searched under a hard budget (dnas.latency.BudgetLoss)
            from dnas.latency.budget import describe

            rank_zero_info(f"dnas: {describe(genotype.meta['budget'])}")
