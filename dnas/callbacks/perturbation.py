"""Perturbation-based architecture selection: the DARTS-PT callback.

Wang et al., "Rethinking Architecture Selection in Differentiable NAS", ICLR 2021 (reference code
``ruocwang/darts-pt``). Instead of reading the architecture off the largest α, DARTS-PT keeps the op whose removal
hurts the trained supernet most, one edge per architecture group at a time (op projection, then topology projection
where the space keeps ``edges_per_node`` inputs per node: :mod:`dnas.callbacks.projection`), with ``interval`` epochs
of ordinary training between decisions: the weight optimizer reset to the paper's learning rate (0.0025, cosine to
0.001) and α trained (default) or frozen (the "fix-α" variant).

**Scheduling inside Lightning (design choice).** Selection is a callback inside the same ``fit`` as the supernet
training: the tuning epochs are ordinary training epochs that come after the search epochs. Set
``trainer.max_epochs = search_epochs + tune_epochs`` (:meth:`PerturbationSelection.tune_epochs` gives the number; the
error message at start-up names it too). From ``start_epoch`` on (default ``max_epochs - tune_epochs``) the callback
acts at epoch starts: decision ``k`` happens at the start of epoch ``start_epoch + k·interval``, before that epoch's
training; the first decision also resets the weight optimizer (state cleared once; the learning rate is then set per
epoch by the closed-form cosine). Everything else (data, α steps, logging, checkpoints, DDP) is the search module's
own loop, so no second trainer, no second optimizer configuration, and the callback works with every search module
that exposes ``.supernet``. As a **separate stage** on an already trained supernet, run ``dnas fit`` with
``--ckpt_path <our checkpoint>`` and a larger ``max_epochs``, or start a fresh fit with ``init_from`` and
``max_epochs = tune_epochs``.

**Resuming.** Decisions live in the supernet's selection buffers (in every checkpoint) plus this callback's
:meth:`state_dict` (decisions so far with their scores, the drawn edge/node order, the resolved schedule), so
``--ckpt_path last.ckpt`` continues at the next undecided step. The measurements are
:class:`~dnas.callbacks.evaluation.SupernetEvaluator`'s (BN statistics, DDP).
"""

from __future__ import annotations

import json
import math
import time
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn

from dnas.callbacks.evaluation import SupernetEvaluator, load_supernet_state
from dnas.callbacks.plots import find_optimizer, find_supernet
from dnas.callbacks.projection import num_decisions, project_op, project_topology, topology_k, topology_nodes
from dnas.cells.base import Supernet
from dnas.errors import ConfigError
from dnas.genotypes import Genotype
from dnas.io import append_line, atomic_write_text, check_checkpoint, log_dir
from dnas.storage import join


# ---------------------------------------------------------------------------------------------------------- callback
class PerturbationSelection(Callback):
    """Progressive perturbation-based selection with fine-tuning between decisions (see module docstring).

    The defaults are the paper's schedule for the DARTS space and NAS-Bench-201 (``ruocwang/darts-pt``): 5 tuning
    epochs between decisions, weight lr 0.0025 cosine to 0.001 over the tuning epochs with a fresh optimizer state,
    α trained, random edge order, accuracy criterion, the whole validation split. For DARTS that is
    ``num_decisions = 14 + 3`` (op steps, topology steps) and ``tune_epochs = 5·16 + 1 = 81``; NAS-Bench-201:
    6 op steps, ``tune_epochs = 26`` (the reference runs 25 with its last decision at epoch 24, one epoch early).

    Args:
        start_epoch: first tuning epoch (decision 0 happens at its start). None = ``max_epochs - tune_epochs``.
        interval: training epochs between decisions (paper: 5).
        edge_order: ``"random"`` (seeded; the paper) or ``"fixed"`` (edge/node index order).
        crit: ``"acc"`` (choose the op whose removal gives the lowest accuracy) or ``"loss"`` (highest loss).
        val_subset: measure on the first N validation samples (None = all, as the paper). Run time of a decision
            scales linearly with it (docs/benchmarks.md: "Selection: magnitude vs perturbation").
        train_alpha: keep training α during tuning (paper default); False = "fix-α" (needs a search module with
            ``arch_updates_enabled``, as :class:`dnas.DARTS`).
        tune_lr: weight learning rate at the first tuning epoch (paper: 0.025/10 = 0.0025); None leaves the search
            module's schedule alone.
        tune_lr_min: end of the cosine over the tuning epochs (paper: 0.001).
        reset_optimizer: clear the weight optimizer's state (momentum) once when tuning starts (paper: new optimizer).
        exclude_ops: ops never chosen. None = ``["none"]`` in spaces with a topology rule (the DARTS rule never emits
            ``none``; DARTS-PT's space drops it) and nothing otherwise (in NAS-Bench-201 ``none`` is legal).
        bn_mode: BN during measurements: ``"train"`` (batch statistics, the reference) or ``"eval"``.
        seed: seed of the random edge/node order (the same on every rank).
        init_from: a file (local path or fsspec URL) loaded into the supernet before the first tuning epoch (formats:
            :func:`~dnas.callbacks.evaluation.load_supernet_state`). Checked when ``fit`` sets up
            (:func:`dnas.io.check_checkpoint`), so a missing, corrupt or unsafe file stops the run before training
            with a :class:`dnas.io.CheckpointError`. Applied once; a resumed selection never reloads it.
        genotype_file: final genotype, written atomically to the log directory.
        decisions_file: one JSON line per decision (edge or node, candidate scores, choice) in the log directory.
    """

    def __init__(
        self,
        start_epoch: int | None = None,
        interval: int = 5,
        edge_order: Literal["random", "fixed"] = "random",
        crit: Literal["acc", "loss"] = "acc",
        val_subset: int | None = None,
        train_alpha: bool = True,
        tune_lr: float | None = 0.0025,
        tune_lr_min: float = 0.001,
        reset_optimizer: bool = True,
        exclude_ops: list[str] | None = None,
        bn_mode: Literal["train", "eval"] = "train",
        seed: int = 0,
        init_from: str | None = None,
        genotype_file: str = "genotype_perturbation.json",
        decisions_file: str = "selection_decisions.jsonl",
    ):
        super().__init__()
        if interval < 1:
            raise ValueError(f"interval must be >= 1 epoch, got {interval}")
        if edge_order not in ("random", "fixed"):
            raise ValueError(f"edge_order must be 'random' or 'fixed', got {edge_order!r}")
        if crit not in ("acc", "loss"):
            raise ValueError(f"crit must be 'acc' or 'loss', got {crit!r}")
        if bn_mode not in ("train", "eval"):
            raise ValueError(f"bn_mode must be 'train' or 'eval', got {bn_mode!r}")
        if val_subset is not None and val_subset < 1:
            raise ValueError(f"val_subset must be >= 1 sample or None (all), got {val_subset}")
        if start_epoch is not None and start_epoch < 0:
            raise ValueError(f"start_epoch must be >= 0, got {start_epoch}")
        self.start_epoch, self.interval, self.edge_order, self.crit = start_epoch, interval, edge_order, crit
        self.val_subset, self.train_alpha, self.bn_mode, self.seed = val_subset, train_alpha, bn_mode, seed
        self.tune_lr, self.tune_lr_min, self.reset_optimizer = tune_lr, tune_lr_min, reset_optimizer
        self.exclude_ops = None if exclude_ops is None else list(exclude_ops)
        self.init_from, self.genotype_file, self.decisions_file = init_from, genotype_file, decisions_file
        # resumable state (see state_dict)
        self.decisions: list[dict[str, Any]] = []
        self.order: dict[str, dict[str, list[int]]] | None = None
        self.resolved_start: int | None = None
        self.optimizer_reset = False
        self.init_applied = False
        self.finished = False
        self._evaluator: SupernetEvaluator | None = None

    # ------------------------------------------------------------------ public helpers
    def tune_epochs(self, supernet: Supernet) -> int:
        """Tuning epochs a full selection needs: ``interval·(num_decisions − 1) + 1``."""
        return self.interval * (num_decisions(supernet) - 1) + 1

    @property
    def state_key(self) -> str:
        return f"{type(self).__name__}[{self.genotype_file}]"

    def state_dict(self) -> dict[str, Any]:
        return {
            "decisions": self.decisions,
            "order": self.order,
            "resolved_start": self.resolved_start,
            "optimizer_reset": self.optimizer_reset,
            "init_applied": self.init_applied,
            "finished": self.finished,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.decisions = list(state_dict.get("decisions", []))
        self.order = state_dict.get("order")
        self.resolved_start = state_dict.get("resolved_start")
        self.optimizer_reset = bool(state_dict.get("optimizer_reset", False))
        self.init_applied = bool(state_dict.get("init_applied", False))
        self.finished = bool(state_dict.get("finished", False))

    # ------------------------------------------------------------------ Lightning hooks
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # not in __init__: jsonargparse turns an error raised while building a callback into a generic union error
        if stage == "fit" and self.init_from is not None and not self.init_applied:
            check_checkpoint(self.init_from, what="init_from checkpoint", read_remote=False)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        supernet = find_supernet(pl_module, "PerturbationSelection")
        if self.init_from is not None and not self.init_applied:
            load_supernet_state(supernet, self.init_from)
            self.init_applied = True
            rank_zero_info(f"PerturbationSelection: loaded the supernet from {self.init_from}")
        needed = self.tune_epochs(supernet)
        max_epochs = trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs >= 0 else None
        if self.resolved_start is None:
            if self.start_epoch is not None:
                start = self.start_epoch
            elif max_epochs is not None:
                start = max_epochs - needed
            else:
                raise ConfigError("PerturbationSelection needs trainer.max_epochs (or start_epoch) to schedule tuning")
            if start < 0 or (max_epochs is not None and start + needed > max_epochs):
                raise ConfigError(
                    f"PerturbationSelection needs {needed} tuning epochs ({num_decisions(supernet)} decisions, "
                    f"interval {self.interval}) from start_epoch {start}, but trainer.max_epochs is {max_epochs}: "
                    f"set trainer.max_epochs to search_epochs + {needed}"
                    + ("" if self.start_epoch is None else f" (here >= {self.start_epoch + needed})")
                )
            self.resolved_start = start
        if trainer.current_epoch < self.resolved_start:
            rank_zero_info(
                f"PerturbationSelection: supernet training until epoch {self.resolved_start}, then "
                f"{num_decisions(supernet)} decisions every {self.interval} epoch(s) ({needed} tuning epochs)"
            )

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.resolved_start is None or trainer.current_epoch < self.resolved_start:
            return
        supernet = find_supernet(pl_module, "PerturbationSelection")
        t = trainer.current_epoch - self.resolved_start
        self._tune_settings(trainer, pl_module, supernet, t)
        total = num_decisions(supernet)
        k = len(self.decisions)
        if k < total and t >= k * self.interval:
            self._decide(trainer, pl_module, supernet, k)
        pl_module.log("selection/decisions", float(len(self.decisions)), on_step=False, on_epoch=True)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.resolved_start is None or trainer.current_epoch < self.resolved_start:
            return
        supernet = find_supernet(pl_module, "PerturbationSelection")
        if len(self.decisions) < num_decisions(supernet):
            rank_zero_warn(
                f"PerturbationSelection stopped after {len(self.decisions)}/{num_decisions(supernet)} decisions; "
                "resume with --ckpt_path to finish (no final genotype written)"
            )
            return
        self.finished = True
        genotype = supernet.genotype()
        meta = {
            **genotype.meta,
            "selection": "perturbation",
            "crit": self.crit,
            "val_subset": self.val_subset,
            "train_alpha": self.train_alpha,
            "decisions": len(self.decisions),
            "epoch": int(trainer.current_epoch),
        }
        genotype = Genotype(genotype.space, genotype.cells, meta)
        if trainer.is_global_zero:
            path = atomic_write_text(join(log_dir(trainer), self.genotype_file), genotype.to_json())
            rank_zero_info(f"PerturbationSelection: final genotype written to {path}: {genotype}")

    # ------------------------------------------------------------------ internals
    def _tune_settings(self, trainer: pl.Trainer, pl_module: pl.LightningModule, supernet: Supernet, t: int) -> None:
        w_opt = find_optimizer(trainer, supernet.weight_parameters())
        if w_opt is not None and self.reset_optimizer and not self.optimizer_reset:
            w_opt.state.clear()
            self.optimizer_reset = True
        if w_opt is not None and self.tune_lr is not None:
            T = self.tune_epochs(supernet)
            lr = self.tune_lr_min + (self.tune_lr - self.tune_lr_min) * (1 + math.cos(math.pi * t / T)) / 2
            for group in w_opt.param_groups:
                group["lr"] = lr
        if not self.train_alpha:
            if hasattr(pl_module, "arch_updates_enabled"):
                pl_module.arch_updates_enabled = False
            else:
                a_opt = find_optimizer(trainer, supernet.arch_parameters())
                if a_opt is None:
                    raise TypeError(f"cannot freeze α: {type(pl_module).__name__} has no arch_updates_enabled")
                for group in a_opt.param_groups:  # lr 0: Adam/SGD then leave α unchanged (the step still runs)
                    group["lr"] = 0.0

    def _plan(self, supernet: Supernet) -> dict[str, dict[str, list[int]]]:
        gen = torch.Generator().manual_seed(self.seed)
        plan = {}
        for g in supernet.arch_groups:
            edges = supernet.undecided_edges(g)
            nodes = topology_nodes(supernet, g)
            if self.edge_order == "random":
                edges = [edges[i] for i in torch.randperm(len(edges), generator=gen).tolist()]
                nodes = [nodes[i] for i in torch.randperm(len(nodes), generator=gen).tolist()]
            plan[g] = {"edges": edges, "nodes": nodes}
        return plan

    def _evaluate_fn(self, trainer: pl.Trainer, supernet: Supernet) -> SupernetEvaluator:
        if self._evaluator is None:
            dm = trainer.datamodule
            if dm is None or not hasattr(dm, "val_dataloader"):
                raise ValueError("PerturbationSelection measures on the datamodule's val_dataloader(); none is set")
            self._evaluator = SupernetEvaluator(
                supernet,
                dm.val_dataloader(),
                self.val_subset,
                self.bn_mode,
                world_size=trainer.world_size,
                rank=trainer.global_rank,
            )
        return self._evaluator

    def _exclude(self, supernet: Supernet, group: str) -> list[str]:
        if self.exclude_ops is not None:
            return self.exclude_ops
        return ["none"] if topology_k(supernet, group) is not None else []

    def _decide(self, trainer: pl.Trainer, pl_module: pl.LightningModule, supernet: Supernet, k: int) -> None:
        if self.order is None:
            self.order = self._plan(supernet)
        evaluate = self._evaluate_fn(trainer, supernet)
        start = time.perf_counter()
        calls0 = evaluate.calls
        n_ops = max(len(p["edges"]) for p in self.order.values())
        records = []
        for g, plan in self.order.items():
            if k < n_ops:
                if k < len(plan["edges"]):
                    records.append(
                        project_op(supernet, g, plan["edges"][k], evaluate, self.crit, self._exclude(supernet, g))
                    )
            elif k - n_ops < len(plan["nodes"]):
                node = plan["nodes"][k - n_ops]
                records.append(project_topology(supernet, g, node, topology_k(supernet, g), evaluate, self.crit))
        seconds = time.perf_counter() - start
        step = {
            "step": k,
            "epoch": int(trainer.current_epoch),
            "seconds": round(seconds, 4),
            "measurements": evaluate.calls - calls0,
            "records": records,
        }
        self.decisions.append(step)
        for r in records:
            if r["kind"] == "op":
                s = ", ".join(f"{op}={v[self.crit]:.4f}" for op, v in r["scores"].items())
                msg = (
                    f"{r['group']} edge {r['edge']} ({r['src']}->{r['dst']}): {r['choice']}  [{self.crit} w/o op: {s}]"
                )
            else:
                msg = f"{r['group']} node {r['node']}: keep {[e['src'] for e in r['kept']]}"
            rank_zero_info(f"PerturbationSelection step {k} (epoch {trainer.current_epoch}): {msg}")
        pl_module.log("selection/decision_s", seconds, on_step=False, on_epoch=True)
        if trainer.is_global_zero:
            append_line(join(log_dir(trainer), self.decisions_file), json.dumps(step, separators=(",", ":")))
