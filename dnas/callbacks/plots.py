"""See the search: α heatmaps and their evolution, collapse scalars, and a report at the end of ``fit``.

Works for any :class:`~dnas.cells.Supernet` (read through ``arch_groups``, ``selection_weights()`` and
``genotype()`` only) inside any LightningModule that holds one. Pictures are written on global rank zero with
matplotlib's Agg canvas (never pyplot), to ``<log dir>/plots/`` and, when a TensorBoard logger is present, as images.
"""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn

from dnas.cells.base import Supernet
from dnas.genotypes import Genotype
from dnas.io import atomic_write_bytes, log_dir
from dnas.storage import Location, join
from dnas.viz.alpha import GroupInfo, edge_entropy, plot_alpha_evolution, plot_alpha_heatmaps
from dnas.viz.noise import noise_test, optimizer_factory
from dnas.viz.style import figure_bytes
from dnas.viz.verdict import DECIDED_FACTOR, Verdict, verdict

INIT = -1
"""The epoch of the record taken before training (the evolution plots draw it at −1, labelled ``init``)."""

EXTRA_PARAMETER_FREE_OPS = ("skip", "identity")
"""Counted as parameter-free besides :data:`dnas.ops.PARAMETER_FREE_OPS` (FBNet's identity-like ``skip``)."""


def find_supernet(pl_module: torch.nn.Module, who: str) -> Supernet:
    """The module's ``supernet`` attribute, else the first :class:`Supernet` among its submodules.

    Raises:
        TypeError: there is none; the message names the callback ``who`` needs it.
    """
    net = getattr(pl_module, "supernet", None)
    if not isinstance(net, Supernet) and isinstance(pl_module, torch.nn.Module):
        net = next((m for m in pl_module.modules() if isinstance(m, Supernet)), net)
    if not isinstance(net, Supernet):
        raise TypeError(
            f"{who} needs a search module with a .supernet (dnas.cells.Supernet); "
            f"{type(pl_module).__name__} has {type(net).__name__}"
        )
    return net


def find_optimizer(trainer: pl.Trainer, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer | None:
    """The trainer's (torch) optimizer that steps any of ``params``; None when none does (yet)."""
    ids = {id(p) for p in params}
    for opt in trainer.optimizers:
        opt = getattr(opt, "optimizer", opt)
        if any(id(p) in ids for group in opt.param_groups for p in group["params"]):
            return opt
    return None


class AlphaPlots(pl.Callback):
    """α pictures per epoch, collapse scalars with a warning, and ``report.md``/``report.html`` at the end of fit.

    Each ``every_n_epochs`` epochs (and at the last) it writes ``plots/alpha_heatmap[_epochNNN].png`` (edges × ops
    per group, the current genotype's ops outlined) and ``plots/alpha_evolution_<group>.png`` (each edge's op
    weights over epochs). Every epoch it logs ``alpha/weight_entropy_<group>`` (mean entropy in nats of the
    normalised selection weights, which include PC-DARTS' β and removed ops) and ``alpha/param_free_<group>`` (the
    number of parameter-free ops, skip and pooling, in the current genotype's cell of that group), and warns once
    when a watched group's count reaches ``collapse_threshold`` (the DARTS collapse to skip connections); no warning
    while that group's weights are still near uniform (mean entropy within 0.5% of ``log K``), when the genotype is
    only a tie-break of the initial noise.

    Epochs are numbered as Lightning numbers them, from 0, everywhere (console, file names, titles, curves, the
    report): ``epochNNN`` and "after epoch N" show the weights at the end of epoch N; ``init`` (−1 on the evolution
    axis) shows them before training.

    Args:
        every_n_epochs: draw pictures every n epochs (scalars and history are kept every epoch).
        collapse_threshold: warn when a watched cell has at least this many parameter-free ops (DARTS normal cell:
            8 edges; DARTS V1, a healthy result, has 3 skips, collapsed searches 4 or more).
        collapse_groups: groups watched for collapse; None = every group except ``reduce`` (reduction cells
            legitimately favour pooling: DARTS V2's has 6 parameter-free ops of 8).
        parameter_free_ops: op names counted; None = :data:`dnas.ops.PARAMETER_FREE_OPS` plus ``skip``/``identity``.
        keep_epoch_files: also keep one heatmap per drawn epoch (``alpha_heatmap_epochNNN.png``).
        tensorboard: add the pictures to every TensorBoard logger of the trainer.
        report: write ``report.md`` and ``report.html`` into the log directory at the end of ``fit`` (rank zero).
        measure_latency: in the report, time the exported model when the module used a latency table.
        dpi: resolution of the PNGs.
        noise_draws: random walks of the verdict's noise test (:mod:`dnas.viz.noise`); 0 turns the test off.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        collapse_threshold: int = 4,
        collapse_groups: list[str] | None = None,
        parameter_free_ops: list[str] | None = None,
        keep_epoch_files: bool = True,
        tensorboard: bool = True,
        report: bool = True,
        measure_latency: bool = True,
        dpi: int = 90,
        noise_draws: int = 200,
    ):
        super().__init__()
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        if collapse_threshold < 1:
            raise ValueError(f"collapse_threshold must be >= 1, got {collapse_threshold}")
        if noise_draws < 0:
            raise ValueError(f"noise_draws must be >= 0 (0 turns the noise test off), got {noise_draws}")
        self.every_n_epochs = every_n_epochs
        self.collapse_threshold = collapse_threshold
        self.collapse_groups = None if collapse_groups is None else list(collapse_groups)
        self.parameter_free_ops = None if parameter_free_ops is None else list(parameter_free_ops)
        self.keep_epoch_files = keep_epoch_files
        self.tensorboard = tensorboard
        self.report = report
        self.measure_latency = measure_latency
        self.dpi = dpi
        self.noise_draws = noise_draws
        self._reset_state()
        self._fit_start: float | None = None
        self._drawn: tuple[int, dict[str, Location]] | None = None  # (epoch, files) of the latest draw
        self._grad_hook: Any = None

    def _reset_state(self) -> None:
        # everything in here is in state_dict, so a resumed run keeps its curves
        self.groups: dict[str, GroupInfo] = {}
        self.epochs: list[int] = []  # the epoch (0-based) whose end each record shows; INIT = before training
        self.weights: dict[str, list[list[list[float]]]] = {}
        self.metrics: list[dict[str, float]] = []
        self.collapse_warned: dict[str, bool] = {}
        self.warnings: list[str] = []
        self.run_time_s = 0.0
        self.input_shape: list[int] | None = None
        self.grad_rms: dict[str, list[float]] = {}  # per group, the RMS of α's gradient at each α step

    # ------------------------------------------------------------------ helpers
    def free_ops(self) -> frozenset[str]:
        if self.parameter_free_ops is not None:
            return frozenset(self.parameter_free_ops)
        from dnas.ops import PARAMETER_FREE_OPS

        return frozenset(PARAMETER_FREE_OPS) | frozenset(EXTRA_PARAMETER_FREE_OPS)

    def watched(self, group: str) -> bool:
        return group != "reduce" if self.collapse_groups is None else group in self.collapse_groups

    def param_free_counts(self, genotype: Genotype) -> dict[str, int]:
        """Parameter-free ops per genotype cell (``none`` edges are not counted: they are no op at all)."""
        free = self.free_ops() - {"none"}
        return {name: sum(op in free for op in cell.ops()) for name, cell in genotype.cells.items()}

    @staticmethod
    def near_uniform(weights: np.ndarray, tolerance: float = 0.005) -> bool:
        """Mean edge entropy within ``tolerance`` (relative) of the maximum ``log K``: nothing decided yet."""
        k = weights.shape[-1]
        return k > 1 and float(edge_entropy(weights).mean()) >= (1 - tolerance) * float(np.log(k))

    def _watch_gradients(self, trainer: pl.Trainer, supernet: Supernet) -> None:
        """Record the RMS of each group's α gradient before every α optimizer step, for the verdict's null model.

        An optimizer step pre-hook, because the search modules step α with the torch optimizer itself (Lightning's
        ``on_before_optimizer_step`` never sees that step); it sees the gradient the step uses (unscaled, clipped).
        Rows without gradient (edges removed or fixed by selection) are left out of the RMS.
        """
        opt = find_optimizer(trainer, [g.alpha for g in supernet.arch_groups.values()])
        if opt is None or self._grad_hook is not None:
            return
        groups = dict(supernet.arch_groups.items())

        def record(optimizer, args, kwargs) -> None:
            for g, group in groups.items():
                if group.alpha.grad is not None:
                    grad = group.alpha.grad.detach().float()
                    rows = grad[grad.ne(0).any(dim=1)]
                    if rows.numel():
                        self.grad_rms.setdefault(g, []).append(float(rows.pow(2).mean().sqrt()))

        self._grad_hook = opt.register_step_pre_hook(record)

    def _unwatch_gradients(self) -> None:
        if self._grad_hook is not None:
            self._grad_hook.remove()
            self._grad_hook = None

    def _record(self, supernet: Supernet, epoch: int) -> dict[str, np.ndarray]:
        weights = {g: w.float().cpu().numpy() for g, w in supernet.selection_weights().items()}
        for g, group in supernet.arch_groups.items():
            self.groups.setdefault(g, GroupInfo.of(group))
        if self.epochs and self.epochs[-1] == epoch:  # re-recording the same epoch (resume): replace
            self.epochs.pop()
            for g in self.weights:
                self.weights[g].pop()
        self.epochs.append(epoch)
        for g, w in weights.items():
            self.weights.setdefault(g, []).append(w.tolist())
        return weights

    def _snapshot_metrics(self, trainer: pl.Trainer, epoch: int, only_validation: bool = False) -> None:
        values = {}
        for k, v in trainer.callback_metrics.items():
            if only_validation and not k.startswith("val"):
                continue  # at an epoch's end the other epoch-level values are still the previous epoch's
            if isinstance(v, torch.Tensor) and v.numel() == 1 and torch.isfinite(v):
                values[k] = float(v)
        if not values:
            return
        row = next((r for r in self.metrics if r["epoch"] == epoch), None)
        if row is None:
            self.metrics.append({"epoch": epoch, **values})
        else:  # complete an earlier, partial snapshot
            row.update(values)

    # ------------------------------------------------------------------ hooks
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        find_supernet(pl_module, "AlphaPlots")  # fail early with a clear message
        self._fit_start = time.perf_counter()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        supernet = find_supernet(pl_module, "AlphaPlots")
        if not self.epochs:
            self._record(supernet, trainer.current_epoch - 1)  # INIT on a fresh run
        self._watch_gradients(trainer, supernet)

    def on_train_batch_start(self, trainer, pl_module, batch: Any, batch_idx: int) -> None:
        if self.input_shape is None:
            x = batch.get("train", batch) if isinstance(batch, dict) else batch
            x = x[0] if isinstance(x, (list, tuple)) else x
            if isinstance(x, torch.Tensor):
                self.input_shape = [int(s) for s in x.shape[1:]]

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # the epoch-level metrics of the previous epoch are complete only after its on_train_epoch_end hooks
        if trainer.current_epoch > 0 and trainer.callback_metrics:
            self._snapshot_metrics(trainer, trainer.current_epoch - 1)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        supernet = find_supernet(pl_module, "AlphaPlots")
        epoch = trainer.current_epoch
        # validation metrics now (the epoch's train aggregates are not final yet), so a checkpoint saved at this
        # epoch's end carries them; the next epoch's start (or the end of fit) completes the row
        self._snapshot_metrics(trainer, epoch, only_validation=True)
        weights = self._record(supernet, epoch)
        genotype = supernet.genotype()
        counts = self.param_free_counts(genotype)
        for g, w in weights.items():
            pl_module.log(f"alpha/weight_entropy_{g}", float(edge_entropy(w).mean()), on_epoch=True)
        for g, n in counts.items():
            pl_module.log(f"alpha/param_free_{g}", float(n), on_epoch=True)
            if not self.watched(g):
                continue
            if g in weights and self.near_uniform(weights[g]):
                continue  # the genotype of a near-uniform α is a tie-break of initial noise, not a collapse
            if n >= self.collapse_threshold and not self.collapse_warned.get(g):
                msg = (
                    f"epoch {trainer.current_epoch}: cell {g!r} of the current genotype has {n} parameter-free ops "
                    f"(threshold {self.collapse_threshold}); the search may be collapsing to skip connections/pooling"
                )
                self.warnings.append(msg)
                rank_zero_warn("dnas.AlphaPlots: " + msg)
            self.collapse_warned[g] = n >= self.collapse_threshold
        last = trainer.max_epochs is not None and epoch + 1 >= trainer.max_epochs
        if trainer.is_global_zero and ((epoch + 1) % self.every_n_epochs == 0 or last):
            self.draw(trainer, genotype, epoch)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._unwatch_gradients()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._unwatch_gradients()
        if self.epochs:
            self._snapshot_metrics(trainer, self.epochs[-1])
        if self._fit_start is not None:
            self.run_time_s += time.perf_counter() - self._fit_start
            self._fit_start = None
        if not (trainer.is_global_zero and len(self.epochs) > 1):
            return
        result = self.verdict(trainer, pl_module)  # once: the log and the report show the same verdict
        self.log_verdict(*result)
        if self.report:
            from dnas.callbacks.search_export import SearchExport
            from dnas.viz.search_report import write_search_report

            # the model section describes the network the run's SearchExport writes, with its builder options
            options = next((cb.options for cb in trainer.callbacks if isinstance(cb, SearchExport)), None)
            supernet = find_supernet(pl_module, "AlphaPlots")
            md, _ = write_search_report(self, trainer, pl_module, supernet, result, options)
            rank_zero_info(f"dnas: search report written to {md} (and report.html)")

    # ------------------------------------------------------------------ verdict
    def verdict(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple[Verdict, str | None]:
        """How decided α is (:func:`dnas.viz.verdict.verdict` on the recorded weights) and the warning line, if any.

        The first record (before training) is the initial α, so a run whose architecture steps never ran is told so,
        with the reason when it is the warm-up. With the α gradients recorded and the α optimizer at hand, each cell
        is also tested against a random walk of that optimizer (:func:`dnas.viz.noise.noise_test`).
        """
        supernet = find_supernet(pl_module, "AlphaPlots")
        final = {g: np.asarray(v[-1]) for g, v in self.weights.items()}
        first = {g: np.asarray(v[0]) for g, v in self.weights.items()}
        groups = supernet.arch_groups
        opt = find_optimizer(trainer, [g.alpha for g in groups.values()])
        stepped = {id(p) for grp in opt.param_groups for p in grp["params"]} if opt is not None else set()
        noise = {
            g: noise_test(
                first[g], final[g], rms, optimizer_factory(opt, groups[g].alpha), DECIDED_FACTOR, self.noise_draws
            )
            for g, rms in self.grad_rms.items()
            if self.noise_draws and g in final and g in groups and id(groups[g].alpha) in stepped
        }
        result = verdict(supernet.genotype(), final, self.groups, initial=first, noise=noise)
        warmup = int(getattr(pl_module, "hparams", {}).get("arch_warmup_epochs", 0) or 0)
        done = self.epochs[-1] + 1  # epochs are 0-based (INIT = -1 is the state before training)
        reason = ""
        if warmup >= done:
            reason = f"all {done} epoch(s) of this run were the architecture warm-up, arch_warmup_epochs={warmup}"
        return result, result.warning(reason)

    @staticmethod
    def log_verdict(result: Verdict, warning: str | None) -> None:
        """Log the verdict (one line per cell and per ``none``-dominated kept edge) and warn when it is not decided."""
        for line in result.lines():
            rank_zero_info(f"dnas: α verdict: {line}")
        if warning:
            rank_zero_warn(f"dnas: {warning}")

    # ------------------------------------------------------------------ pictures
    def history(self, group: str) -> np.ndarray:
        return np.asarray(self.weights[group], dtype=np.float64)

    def draw(self, trainer: pl.Trainer, genotype: Genotype | None, epoch: int) -> dict[str, Location]:
        """Write the heatmap and evolution PNGs for the latest record; returns name -> path (or URL)."""
        if self._drawn is not None and self._drawn[0] == epoch:  # already drawn (the report asks again at fit end)
            return dict(self._drawn[1])
        plots = join(log_dir(trainer), "plots")
        latest = {g: np.asarray(v[-1]) for g, v in self.weights.items()}
        title = "edge weights before training" if epoch == INIT else f"edge weights after epoch {epoch}"
        figures = {"alpha_heatmap": plot_alpha_heatmaps(latest, self.groups, title, genotype=genotype, dpi=self.dpi)}
        if len(self.epochs) > 1:
            for g, info in self.groups.items():
                figures[f"alpha_evolution_{g}"] = plot_alpha_evolution(self.epochs, self.history(g), info, dpi=self.dpi)
        written = {}
        for name, fig in figures.items():
            png = figure_bytes(fig, "png", self.dpi, tight=False)
            written[name] = atomic_write_bytes(join(plots, f"{name}.png"), png)
            if name == "alpha_heatmap" and self.keep_epoch_files:
                atomic_write_bytes(join(plots, f"{name}_epoch{epoch:03d}.png"), png)
            if self.tensorboard:
                self._to_tensorboard(trainer, f"alpha/{name}", png, epoch)
        self._drawn = (epoch, written)
        return written

    @staticmethod
    def _to_tensorboard(trainer: pl.Trainer, tag: str, png: bytes, step: int) -> None:
        from pytorch_lightning.loggers import TensorBoardLogger

        loggers = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if not loggers:
            return
        from PIL import Image

        image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        for lg in loggers:
            lg.experiment.add_image(tag, image, global_step=step, dataformats="HWC")

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "groups": {
                g: {"edges": [list(e) for e in i.edges], "candidates": list(i.candidates)}
                for g, i in self.groups.items()
            },
            "epochs": list(self.epochs),
            "weights": self.weights,
            "metrics": self.metrics,
            "collapse_warned": dict(self.collapse_warned),
            "warnings": list(self.warnings),
            "run_time_s": self.run_time_s,
            "input_shape": self.input_shape,
            "grad_rms": {g: list(v) for g, v in self.grad_rms.items()},
            "epoch_base": 0,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._reset_state()
        self.groups = {
            g: GroupInfo(g, tuple(tuple(e) for e in v["edges"]), tuple(v["candidates"]))
            for g, v in state_dict.get("groups", {}).items()
        }
        # states saved before epochs were 0-based counted epochs completed (0 = before training): shift them
        shift = 0 if state_dict.get("epoch_base") == 0 else -1
        self.epochs = [int(e) + shift for e in state_dict.get("epochs", [])]
        self.weights = {g: list(v) for g, v in state_dict.get("weights", {}).items()}
        self.metrics = [{**m, "epoch": int(m["epoch"]) + shift} for m in state_dict.get("metrics", [])]
        self.collapse_warned = dict(state_dict.get("collapse_warned", {}))
        self.warnings = list(state_dict.get("warnings", []))
        self.run_time_s = float(state_dict.get("run_time_s", 0.0))
        self.input_shape = state_dict.get("input_shape")
        self.grad_rms = {g: [float(x) for x in v] for g, v in state_dict.get("grad_rms", {}).items()}
