"""DARTS as a LightningModule (Liu et al. 2019), the bilevel machinery every search module shares.

Per training batch (reference `train_search.py`): the architecture step on the ``arch`` batch (first order, or the
unrolled second-order gradient), then the weight step on the ``train`` batch (CE, clip 5, SGD). The weight learning
rate follows a cosine schedule stepped once per epoch. Subclasses specialise small hooks:

* :meth:`sample_weights` — how α becomes edge weights (softmax; Gumbel in FBNet);
* :meth:`weight_loss` / :meth:`arch_loss` — extra terms (SD-DARTS distillation, latency);
* :meth:`arch_gradient` — first order / unrolled.

Step counting: ``trainer.global_step`` advances once per training batch (the weight step; the architecture step
calls the torch optimizer directly), so ``max_steps``, ``val_check_interval``, ``log_every_n_steps`` and
``ModelCheckpoint(every_n_train_steps=...)`` count batches, during the architecture warm-up and after it. A batch whose
weight update is dropped (``on_nonfinite="skip"``) is not counted.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from pytorch_lightning.core.optimizer import LightningOptimizer
from pytorch_lightning.utilities import rank_zero_info
from torchmetrics.classification import MulticlassAccuracy

from dnas.cells.base import Supernet
from dnas.errors import ConfigError
from dnas.genotypes import Genotype
from dnas.genotypes.build import with_build
from dnas.io import gather_rng_states, restore_rng_states
from dnas.io import log_dir as run_log_dir
from dnas.latency.loss import LatencyLoss
from dnas.search.architect import unrolled_grad


def log_step_and_epoch(
    module: pl.LightningModule, name: str, value: Any, batch_size: int | None = None, prog_bar: bool = False
) -> None:
    """Log ``<name>_step`` (this rank's value) and ``<name>_epoch`` (the epoch mean over all ranks).

    ``module.log(..., on_step=True, sync_dist=True)`` would add a collective to every step under DDP; only the
    epoch aggregate is reduced across ranks, once at the epoch's end. The keys are the ones Lightning's own
    ``on_step=True, on_epoch=True`` logging writes. Used by the search modules and :class:`dnas.Retrain`.
    """
    module.log(f"{name}_step", value, prog_bar=prog_bar, on_step=True, on_epoch=False, batch_size=batch_size)
    module.log(f"{name}_epoch", value, on_step=False, on_epoch=True, sync_dist=True, batch_size=batch_size)


class DARTS(pl.LightningModule):
    """Differentiable architecture search, first or second order.

    The module writes no files: :class:`dnas.callbacks.GenotypeWriter` writes ``genotype.json`` and
    ``genotype_history.jsonl`` each epoch and :class:`dnas.callbacks.SearchExport` the end-of-fit export (the
    example configs list both); they read :meth:`current_genotype` and :meth:`input_shape`.

    Args:
        supernet: the search space (any :class:`~dnas.cells.Supernet`), e.g. ``dnas.cells.darts.DartsSupernet``.
        unrolled: second-order DARTS (virtual step + finite-difference Hessian-vector product).
        w_optimizer: weight optimizer; None = SGD(lr 0.025, momentum 0.9, weight decay 3e-4) as the paper.
        a_optimizer: architecture optimizer; None = Adam(lr 3e-4, betas (0.5, 0.999), weight decay 1e-3).
        w_scheduler: weight lr schedule, stepped once per epoch; None = cosine over ``max_epochs`` to ``w_lr_min``.
        w_lr_min: ``eta_min`` of the default cosine schedule (reference code: 0.001; the paper says 0).
        grad_clip: max norm of the weight gradients (paper: 5); 0 disables.
        arch_grad_clip: max norm of the architecture gradients (PC-DARTS ImageNet: 5); 0 disables.
        arch_warmup_epochs: epochs of weight-only training before architecture updates start (PC-DARTS: 15).
        unrolled_r: numerator of the finite-difference ε = r / ‖∇w' L_val‖ (paper: 0.01).
        on_nonfinite: ``"raise"`` stops with an error naming the step and the term; ``"skip"`` drops that update.
        num_classes: if set, checked against the supernet's classes (the ``dnas`` CLI sets the datamodule's).
        latency_loss: a cost term (``dnas.latency.LatencyLoss``: expected latency/FLOPs/params from a table)
            combined with the task loss of the architecture step; its value is logged every step.
    """

    def __init__(
        self,
        supernet: Supernet,
        unrolled: bool = False,
        w_optimizer: OptimizerCallable | None = None,
        a_optimizer: OptimizerCallable | None = None,
        w_scheduler: LRSchedulerCallable | None = None,
        w_lr_min: float = 0.001,
        grad_clip: float = 5.0,
        arch_grad_clip: float = 0.0,
        arch_warmup_epochs: int = 0,
        unrolled_r: float = 0.01,
        on_nonfinite: Literal["raise", "skip"] = "raise",
        num_classes: int | None = None,
        latency_loss: LatencyLoss | None = None,
    ):
        super().__init__()
        if not isinstance(supernet, Supernet):
            raise TypeError(f"supernet must be a dnas.cells.Supernet, got {type(supernet).__name__}")
        if arch_warmup_epochs < 0:
            raise ValueError(f"arch_warmup_epochs must be >= 0, got {arch_warmup_epochs}")
        if on_nonfinite not in ("raise", "skip"):
            raise ValueError(f"on_nonfinite must be 'raise' or 'skip', got {on_nonfinite!r}")
        self.save_hyperparameters(ignore=["supernet", "latency_loss"])
        self.latency_loss = latency_loss
        self.automatic_optimization = False
        self.supernet = supernet
        self.unrolled = unrolled
        self.w_optimizer, self.a_optimizer, self.w_scheduler = w_optimizer, a_optimizer, w_scheduler
        n_cls = self._infer_num_classes()
        self.train_acc = MulticlassAccuracy(n_cls, average="micro")
        self.arch_acc = MulticlassAccuracy(n_cls, average="micro")
        self.val_acc = MulticlassAccuracy(n_cls, average="micro")
        self.test_acc = MulticlassAccuracy(n_cls, average="micro")
        self._epoch_start = 0.0
        self._scaler_needs_update = False  # the α step used the loss scaler and the weight step has not updated it
        # selection callbacks (DARTS-PT "fix-α") switch α updates off without touching the optimizer
        self.arch_updates_enabled = True

    def _infer_num_classes(self) -> int:
        """The supernet's number of classes; ``num_classes`` (the data's, linked by the CLI) must agree with it."""
        out = (
            getattr(self.supernet, "num_classes", None)
            or self.supernet.build_options().get("num_classes")
            or getattr(getattr(self.supernet, "classifier", None), "out_features", None)
        )
        given = self.hparams.num_classes
        if out is not None and given and int(given) != int(out):
            raise ConfigError(
                f"the supernet {type(self.supernet).__name__} outputs {out} classes but num_classes is {given} (the "
                f"datamodule's, in the CLI); make the supernet output {given}"
            )
        if out is None and not given:
            raise ValueError("cannot infer the number of classes from the supernet; pass num_classes")
        return int(out if out is not None else given)

    # ------------------------------------------------------------------ hooks for subclasses
    def sample_weights(self) -> dict[str, torch.Tensor]:
        """Edge weights for one forward (softmax of α with selection masks applied)."""
        return self.supernet.edge_weights()

    def forward(self, x: torch.Tensor, weights: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        return self.supernet(x, self.sample_weights() if weights is None else weights)

    def weight_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Loss of the weight step: ``(loss, logits, extra logs)``."""
        logits = self(x)
        return F.cross_entropy(logits, y), logits, {}

    def arch_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Loss of the architecture step (validation split): ``(loss, logits, extra logs)``.

        With ``latency_loss`` the cross-entropy is combined with the expected cost of the *same* edge weights the
        forward used (softmax here, the Gumbel mask in FBNet), so the cost is differentiable in α.
        """
        weights = self.sample_weights()
        logits = self(x, weights)
        loss = F.cross_entropy(logits, y)
        if self.latency_loss is None:
            return loss, logits, {}
        loss, extra = self.latency_loss(loss, self.supernet, weights)
        return loss, logits, extra

    def arch_active(self) -> bool:
        """Run the α step this batch: after the warm-up, unless a callback froze α (``arch_updates_enabled``)."""
        return self.arch_updates_enabled and self.current_epoch >= self.hparams.arch_warmup_epochs

    # ------------------------------------------------------------------ optimizers
    def configure_optimizers(self):
        w_params = self.supernet.weight_parameters() + self.extra_weight_parameters()
        a_params = self.supernet.arch_parameters()
        if self.w_optimizer is not None:
            w_opt = self.w_optimizer(w_params)
        else:
            w_opt = torch.optim.SGD(w_params, lr=0.025, momentum=0.9, weight_decay=3e-4)
        if self.a_optimizer is not None:
            a_opt = self.a_optimizer(a_params)
        else:
            a_opt = torch.optim.Adam(a_params, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
        if self.w_scheduler is not None:
            sched = self.w_scheduler(w_opt)
        else:
            t_max = max(1, int(self.trainer.max_epochs or 1)) if self._trainer is not None else 1
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, T_max=t_max, eta_min=self.hparams.w_lr_min)
        return [w_opt, a_opt], [sched]

    def extra_weight_parameters(self) -> list[torch.nn.Parameter]:
        """Weights outside the supernet trained with the weight optimizer (none by default)."""
        return []

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        if not isinstance(batch, dict) or "train" not in batch or "arch" not in batch:
            raise TypeError(
                "search modules need batches {'train': (x, y), 'arch': (x, y)}; use a dnas.data search datamodule"
            )
        x_w, y_w = batch["train"]
        x_a, y_a = batch["arch"]
        w_opt, a_opt = self.optimizers()
        if self.arch_active():
            self.arch_step(a_opt, w_opt, (x_w, y_w), (x_a, y_a))
        self.weight_step(w_opt, x_w, y_w)

    def arch_step(self, a_opt, w_opt, train_batch, arch_batch) -> None:
        """One architecture update, correct in fp32, ``bf16-mixed`` and ``16-mixed``.

        Under ``16-mixed`` the gradient is taken of the loss times the precision plugin's loss scale (small α
        gradients would underflow in float16 otherwise) and the step goes through that ``GradScaler`` as a second
        optimizer (PyTorch's "multiple optimizers" AMP recipe): ``unscale_`` (the clip sees true gradients), then
        ``step`` (skipped on inf/NaN, which the scaler handles like any overflow), and one ``update`` per batch,
        made by the weight step.
        """
        a_params = self.supernet.arch_parameters()
        opt = _torch_optimizer(a_opt)
        opt.zero_grad()
        scaler = self.grad_scaler()
        # scaler.scale() also creates the scaler's scale tensor on first use (unscale_ needs it)
        scale = float(scaler.scale(torch.ones((), device=self.device))) if scaler is not None else 1.0
        # the unrolled gradient also takes a virtual weight step on the training batch
        batches = {"architecture batch": arch_batch[0], **({"training batch": train_batch[0]} if self.unrolled else {})}
        if self.unrolled:
            grads, loss, logits = self.arch_gradient_unrolled(w_opt, train_batch, arch_batch, a_params, scale)
            extra: dict[str, Any] = self._unrolled_extra
        else:
            loss, logits, extra = self.arch_loss(*arch_batch)
            if not torch.isfinite(loss).all():
                self._nonfinite("architecture", "architecture loss", loss, batches)
                return
            grads = torch.autograd.grad(loss * scale if scaler is not None else loss, a_params, allow_unused=True)
            grads = [torch.zeros_like(p) if g is None else g for p, g in zip(a_params, grads)]
        if scaler is None and not all(torch.isfinite(g).all() for g in grads):
            norm = torch.nn.utils.get_total_norm([g.detach() for g in grads])
            self._nonfinite("architecture", "architecture gradient (norm)", norm, batches)
            return
        for p, g in zip(a_params, grads):
            p.grad = g.detach().clone()
        self._sync_arch_grads(a_params)
        if scaler is not None:
            scaler.unscale_(opt)  # divides by the scale and records inf/NaN (all ranks see the same reduced grads)
        if self.hparams.arch_grad_clip:
            torch.nn.utils.clip_grad_norm_(a_params, self.hparams.arch_grad_clip)
        # The torch optimizer itself, not Lightning's wrapper: a step through the wrapper would count as a training
        # step (trainer.global_step would advance twice per batch, halving max_steps, val_check_interval,
        # log_every_n_steps and every_n_train_steps) and would make the precision plugin unscale and update the loss
        # scaler a second time per batch. global_step counts weight steps: one per batch.
        if scaler is not None:
            scaler.step(opt)
            self._scaler_needs_update = True
        else:
            opt.step()
        torch.clear_autocast_cache()  # no cached low-precision copy of the old α outlives its update (see architect)
        self._check_alpha_finite()
        self.arch_acc(logits.detach(), arch_batch[1])
        # the batch is {"train", "arch"}, whose halves may differ in size: name the size averaged over
        n = int(arch_batch[1].shape[0])
        log_step_and_epoch(self, "arch/loss", loss.detach(), n, prog_bar=True)
        self.log("arch/acc", self.arch_acc, on_step=False, on_epoch=True, batch_size=n)
        for k, v in extra.items():
            log_step_and_epoch(self, f"arch/{k}", v, n)

    def _sync_arch_grads(self, a_params) -> None:
        """Average architecture gradients across ranks (autograd.grad bypasses DDP's reducer)."""
        if self.trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            for p in a_params:
                torch.distributed.all_reduce(p.grad, op=torch.distributed.ReduceOp.SUM)
                p.grad.div_(self.trainer.world_size)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """The precision plugin's loss scaler (``16-mixed``), None without one (fp32, ``bf16-mixed``)."""
        return getattr(self.trainer.precision_plugin, "scaler", None)

    def arch_gradient_unrolled(self, w_opt, train_batch, arch_batch, a_params, loss_scale: float = 1.0):
        """Second-order α gradient of ``loss_scale`` times the validation loss (see :func:`unrolled_grad`)."""
        opt = _torch_optimizer(w_opt)
        group = opt.param_groups[0]
        weights = [p for p in self.supernet.weight_parameters() + self.extra_weight_parameters()]
        buffers = [
            m
            for m in self.supernet.buffers()
            if m.dtype.is_floating_point or m.dtype in (torch.int64,)  # BN stats incl. num_batches_tracked
        ]
        sel = {id(b) for b in self.supernet.selection_buffers()}
        buffers = [b for b in buffers if id(b) not in sel]
        momentum_buffers = [opt.state.get(p, {}).get("momentum_buffer") for p in weights]
        logits_box: dict[str, torch.Tensor] = {}

        def train_loss() -> torch.Tensor:
            return self.weight_loss(*train_batch)[0]

        def val_loss() -> torch.Tensor:
            loss, logits, logits_box["extra"] = self.arch_loss(*arch_batch)
            logits_box["logits"] = logits.detach()
            return loss

        grads, loss = unrolled_grad(
            train_loss,
            val_loss,
            weights,
            a_params,
            lr=float(group["lr"]),
            momentum=float(group.get("momentum", 0.0)),
            weight_decay=float(group.get("weight_decay", 0.0)),
            momentum_buffers=momentum_buffers,
            r=self.hparams.unrolled_r,
            buffers=buffers,
            loss_scale=loss_scale,
        )
        self._unrolled_extra = logits_box.get("extra") or {}
        return grads, loss, logits_box["logits"]

    def weight_step(self, w_opt, x: torch.Tensor, y: torch.Tensor) -> None:
        w_opt.zero_grad()
        loss, logits, extra = self.weight_loss(x, y)
        self.manual_backward(loss)  # also on a non-finite loss: under DDP every rank must join the gradient reduction
        for p in self.supernet.arch_parameters():  # the weight backward also reaches α: never leave it there
            p.grad = None
        # The loss and the gradient norm are checked together (one device sync): a finite loss can still give a
        # non-finite gradient (an overflow in the backward), and stepping on it would make the weights non-finite, so
        # the next architecture step would seem to fail. A GradScaler (16-mixed) handles non-finite gradients itself.
        opt = _torch_optimizer(w_opt)
        grads = [p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None]
        check = [loss.detach().float().reshape(())]
        if grads and getattr(self.trainer.precision_plugin, "scaler", None) is None:
            check.append(torch.nn.utils.get_total_norm(grads).float().to(check[0].device))
        finite = torch.isfinite(torch.stack(check)).tolist()
        if not all(finite):
            term, value = ("weight loss", check[0]) if not finite[0] else ("weight gradient (norm)", check[1])
            w_opt.zero_grad()
            self._finish_scaler_iteration()
            self._nonfinite("weight", term, value, {"training batch": x})
            return
        w_opt.step()  # the precision plugin: unscale (16-mixed), on_before_optimizer_step (clipping), step, update
        self._scaler_needs_update = False
        self.train_acc(logits.detach(), y)
        n = int(y.shape[0])
        log_step_and_epoch(self, "train/loss", loss.detach(), n, prog_bar=True)
        self.log("train/acc", self.train_acc, prog_bar=True, on_step=False, on_epoch=True, batch_size=n)
        for k, v in extra.items():
            log_step_and_epoch(self, f"train/{k}", v, n)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Clip the weight gradients (``grad_clip``) where the precision plugin has already unscaled them (16-mixed).

        Only the weight optimizer steps through Lightning (see :meth:`arch_step`), so this sees only weights.
        """
        if self.hparams.grad_clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")

    def _finish_scaler_iteration(self) -> None:
        """The loss scaler's once-per-batch ``update`` when the weight step that makes it is dropped."""
        scaler = self.grad_scaler()
        if scaler is not None and self._scaler_needs_update:
            scaler.update()
        self._scaler_needs_update = False

    def _nonfinite(self, step: str, term: str, value: torch.Tensor, batches: dict[str, torch.Tensor]) -> None:
        """A non-finite ``term`` in the ``step`` ("weight" or "architecture") step: skip the update or raise.

        The message names the term, the step, epoch and batch, the first non-finite input (a batch, a weight, α)
        that explains it, and the checkpoint that is kept, if one was written.

        Raises:
            FloatingPointError: unless ``on_nonfinite="skip"`` (then the update is dropped and counted).
        """
        msg = f"non-finite {term} ({float(value.detach().float().flatten()[0])}) at epoch {self.current_epoch}, "
        msg += f"batch {self.trainer.fit_loop.epoch_loop.batch_progress.current.ready - 1}, in the {step} step"
        msg += self._nonfinite_cause(batches)
        if self.hparams.on_nonfinite == "skip":
            rank_zero_info(f"dnas: skipping update: {msg}")
            self.log("nonfinite_skipped", 1.0, reduce_fx="sum", on_step=False, on_epoch=True, batch_size=1)
            return
        raise FloatingPointError(f"{msg}; {self._kept_checkpoint()}. Set on_nonfinite='skip' to drop such updates.")

    def _nonfinite_cause(self, batches: dict[str, torch.Tensor]) -> str:
        """Where a non-finite value comes from, as a message suffix ("" if inputs, weights and α are all finite)."""
        for name, x in batches.items():
            if torch.is_tensor(x) and x.is_floating_point() and not torch.isfinite(x).all():
                return f": the {name} has non-finite values"
        arch = {id(p) for p in self.supernet.arch_parameters()}
        for name, p in self.named_parameters():
            if not torch.isfinite(p).all():
                kind = "architecture parameter" if id(p) in arch else "weight"
                return f": {kind} {name} was already non-finite (an earlier update diverged)"
        return ""

    def _kept_checkpoint(self) -> str:
        """Which checkpoint a stopped run leaves to resume from, for the non-finite error."""
        from lightning_fabric.utilities.cloud_io import get_filesystem

        for callback in self.trainer.checkpoint_callbacks:
            for attr, label in (("last_model_path", "the last checkpoint"), ("best_model_path", "checkpoint")):
                path = getattr(callback, attr, None)
                if path and get_filesystem(path).exists(path):
                    return f"{label} ({path}) is kept"
        if self.trainer.ckpt_path:
            return f"the checkpoint this run resumed from ({self.trainer.ckpt_path}) is untouched"
        return "no checkpoint has been written yet"

    def _check_alpha_finite(self) -> None:
        for name, p in self.supernet.named_arch_parameters():
            if not torch.isfinite(p).all():
                batch = self.trainer.fit_loop.epoch_loop.batch_progress.current.ready - 1
                raise FloatingPointError(
                    f"architecture parameter {name} became non-finite at epoch {self.current_epoch}, batch {batch}, "
                    f"in the architecture step (its optimizer update; the loss and gradient were finite); "
                    f"{self._kept_checkpoint()}. Lower the architecture learning rate (on_nonfinite='skip' cannot "
                    "undo an update)."
                )

    # ------------------------------------------------------------------ epochs
    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self) -> None:
        sched = self.lr_schedulers()
        if sched is not None:
            self.log("lr/w", sched.optimizer.param_groups[0]["lr"], on_epoch=True, sync_dist=True)
            sched.step()
        self.log_alpha_stats()
        self.log("time/epoch_s", time.perf_counter() - self._epoch_start, on_epoch=True, sync_dist=True)

    def log_alpha_stats(self) -> None:
        with torch.no_grad():
            for group in self.supernet.arch_groups:
                p = torch.softmax(self.supernet.alpha(group).detach().float(), dim=-1)
                entropy = -(p * p.clamp_min(1e-12).log()).sum(-1).mean()
                self.log(f"alpha/entropy_{group}", entropy, on_epoch=True, sync_dist=True)

    def current_genotype(self) -> Genotype:
        """The supernet's genotype with the run's facts in ``meta``: epoch, algorithm, α softmax, input shape."""
        genotype = self.project_genotype(self.supernet.genotype())
        shape = self.input_shape()
        if shape is not None:
            genotype = with_build(genotype, input_shape=shape)
        probs = {
            g: torch.softmax(self.supernet.alpha(g).detach().float(), -1).tolist() for g in self.supernet.arch_groups
        }
        meta = {"epoch": int(self.current_epoch), "algorithm": type(self).__name__, "alpha_softmax": probs}
        return Genotype(genotype.space, genotype.cells, {**genotype.meta, **meta})

    def project_genotype(self, genotype: Genotype) -> Genotype:
        """The genotype within the cost budget of ``latency_loss`` (:class:`dnas.latency.BudgetLoss`), else as is."""
        project = getattr(self.latency_loss, "project", None)
        return genotype if project is None else project(genotype, self.supernet)

    def input_shape(self) -> tuple[int, ...] | None:
        """One input sample's shape, from the datamodule's ``input_size`` (None without one)."""
        dm = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        size = getattr(dm, "input_size", None)
        return tuple(int(d) for d in size) if size else None

    def log_dir(self) -> Path | str:
        """The run's log directory (the URL string where it is an fsspec URL).

        Uses :func:`dnas.io.log_dir`: ``trainer.log_dir`` is a collective (a broadcast) under DDP, so calling it
        from rank-zero-only code would hang.
        """
        return run_log_dir(self.trainer)

    # ------------------------------------------------------------------ evaluation
    def _eval_step(self, batch, metric: MulticlassAccuracy, prefix: str) -> torch.Tensor:
        x, y = batch["arch"] if isinstance(batch, dict) else batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        metric(logits, y)
        n = int(y.shape[0])
        self.log(f"{prefix}/loss", loss, prog_bar=prefix == "val", on_epoch=True, sync_dist=True, batch_size=n)
        self.log(f"{prefix}/acc", metric, prog_bar=prefix == "val", on_epoch=True, batch_size=n)
        return loss

    def validation_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, self.val_acc, "val")

    def test_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, self.test_acc, "test")

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        return torch.softmax(self(x), dim=-1)

    # ------------------------------------------------------------------ setup checks
    needs_unused_parameters: bool = False
    """Whether some parameters get no gradient in a step (sampled single-path methods). Under DDP the module
    turns on ``find_unused_parameters`` itself when this is true; users never set it."""

    def setup(self, stage: str) -> None:
        strategy = self.trainer.strategy
        if self.needs_unused_parameters and hasattr(strategy, "_ddp_kwargs"):
            strategy._ddp_kwargs["find_unused_parameters"] = True  # read when the model is wrapped, after setup()
        self.check_datamodule(getattr(self.trainer, "datamodule", None))

    def check_datamodule(self, dm: Any) -> None:
        """Check the data against the supernet: classes, and input channels (features) where both declare them.

        Raises:
            ConfigError: a mismatch, naming both numbers and the option to change.
        """
        want = getattr(dm, "num_classes", None)
        have = self.train_acc.num_classes
        if want is not None and int(want) != int(have):
            raise ConfigError(
                f"the datamodule has {want} classes but the model outputs {have}; "
                f"set model.init_args.supernet.init_args.num_classes: {want}"
            )
        want = getattr(dm, "in_channels", None)
        # spaces name their input width in_channels (images, sequences) or in_features (table rows)
        key = next((k for k in ("in_channels", "in_features") if isinstance(getattr(self.supernet, k, None), int)), "")
        have = getattr(self.supernet, key, None) if key else None
        if want is not None and have is not None and int(want) != have:
            what = "features per row" if key == "in_features" else "channels"
            raise ConfigError(
                f"supernet {key}={have} but the data module {type(dm).__name__} yields {want} {what}; "
                f"set --model.init_args.supernet.init_args.{key} {want}"
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["dnas_genotype"] = self.project_genotype(self.supernet.genotype()).to_dict()
        # Every RNG a search may draw from (Gumbel noise, augmentation, drop-path, a user's module), per rank: restoring
        # them makes a resumed search continue exactly (docs/distributed.md states the promise).
        checkpoint["dnas_rng"] = {"ranks": gather_rng_states(self.trainer)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        rng = checkpoint.get("dnas_rng")
        if rng is None:
            return
        if "ranks" not in rng:  # checkpoints before every RNG was saved: the torch CPU generator only
            torch.set_rng_state(rng["torch"])
            return
        world_size = self._trainer.world_size if self._trainer is not None else 1  # load_from_checkpoint: no trainer
        restore_rng_states(rng["ranks"], self.global_rank, world_size)


def _torch_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """The ``torch.optim.Optimizer`` behind Lightning's ``LightningOptimizer`` wrapper (or ``optimizer`` itself)."""
    return optimizer.optimizer if isinstance(optimizer, LightningOptimizer) else optimizer
