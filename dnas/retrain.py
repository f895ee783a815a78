"""Retrain (evaluate) a found architecture from scratch: the DARTS evaluation recipe as a LightningModule.

Defaults are the DARTS CIFAR-10 recipe (reference quark0/darts ``cnn/train.py``; each argument names its value).
Gradient clipping at norm 5 is the Trainer's own setting (``gradient_clip_val: 5``, set in the retrain configs; the
module has no second one). Cutout 16 is a datamodule option: ``CIFAR10DataModule(search=False, cutout=16)``. The
ImageNet recipe (``train_imagenet.py``) is a configuration of the same module: ``configs/retrain_imagenet.yaml``.

The network is :func:`dnas.export.build_model` of the genotype, so a retrained checkpoint exports with
``dnas export --ckpt <checkpoint>`` (options and genotype are read from the checkpoint).
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from pytorch_lightning.utilities import rank_zero_info
from torchmetrics.classification import MulticlassAccuracy

from dnas.errors import ConfigError
from dnas.export import build_model, builder_options, resolved_options
from dnas.export.builders import default_input_shape
from dnas.genotypes import Genotype, load
from dnas.io import atomic_write_text, log_dir
from dnas.search.darts import log_step_and_epoch
from dnas.storage import join


class Retrain(pl.LightningModule):
    """Train ``build_model(genotype, **options)`` from scratch, for a genotype of any space.

    Args:
        genotype: a published name (``"DARTS_V2"``) or a genotype JSON path (e.g. a search's ``genotype.json``); from
            Python a :class:`~dnas.Genotype` is accepted too.
        options: options of the space's builder (:func:`dnas.export.builder_options`), over the ones the genotype
            recorded (a search records its supernet's sizes). DARTS evaluation network: ``init_channels`` (CIFAR-10:
            36, ImageNet: 48), ``layers`` (20 / 14), ``stem`` (``"cifar"`` / ``"imagenet"``); a cell space: its
            constructor arguments (e.g. ``channels``).
        num_classes: classifier outputs, checked against the datamodule's ``num_classes``; None = recorded.
        in_channels: input channels, checked against the datamodule's ``in_channels``; None = recorded.
        auxiliary: train with the network's auxiliary head, where its builder has one (DARTS: after cell
            ``2*layers//3``, needs ≥ 5×5 maps there).
        auxiliary_weight: weight of the auxiliary loss (DARTS: 0.4).
        drop_path_prob: final drop-path probability, where the network has drop-path (DARTS); epoch ``e`` uses
            ``drop_path_prob · e / max_epochs``.
        optimizer: the optimizer (``class_path`` + ``init_args`` in a config); None = the DARTS recipe's
            SGD(lr 0.025, momentum 0.9, weight decay 3e-4). ImageNet recipe: lr 0.1, weight decay 3e-5.
        lr_scheduler: the learning-rate schedule, stepped once per epoch; None = cosine to 0 over ``max_epochs``
            (DARTS evaluation). ImageNet recipe: ``StepLR(step_size=1, gamma=0.97)``.
        label_smoothing: cross-entropy label smoothing (ImageNet recipe: 0.1).
        ema_decay: keep an exponential moving average of the weights (timm's ``ModelEmaV3``) with this decay, e.g.
            0.9998; 0 (default, the DARTS recipe) keeps none. The average is validated as ``val/acc_ema`` and saved in
            checkpoints (``dnas_ema``); the trained weights stay the model's own.
        mixup_alpha: Mixup's β(α, α) parameter (timm's ``Mixup``); 0 (default) is off.
        cutmix_alpha: CutMix's parameter (timm's ``Mixup``; with both on, each batch uses one of the two); 0 is off.
            With Mixup or CutMix the loss is timm's ``SoftTargetCrossEntropy`` on the mixed, label-smoothed targets
            and ``train/acc`` counts the original labels. The batch size must be even.
        input_shape: one input sample's shape for the FLOPs of the model summary; default: recorded in the genotype,
            else the datamodule's ``input_size``.
        write_summary: write ``summary.json`` (parameters, FLOPs) to the log directory at the end of fit.
    """

    def __init__(
        self,
        genotype: str = "DARTS_V2",
        options: dict[str, Any] | None = None,
        num_classes: int | None = None,
        in_channels: int | None = None,
        auxiliary: bool = True,
        auxiliary_weight: float = 0.4,
        drop_path_prob: float = 0.2,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        label_smoothing: float = 0.0,
        ema_decay: float = 0.0,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        input_shape: list[int] | None = None,
        write_summary: bool = True,
    ):
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if auxiliary_weight < 0:
            raise ValueError(f"auxiliary_weight must be >= 0, got {auxiliary_weight}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError(f"mixup_alpha and cutmix_alpha must be >= 0, got {mixup_alpha}, {cutmix_alpha}")
        self.genotype = genotype if isinstance(genotype, Genotype) else load(genotype)
        name = genotype if isinstance(genotype, str) else str(genotype.meta.get("name", "custom"))
        self.save_hyperparameters(ignore=["genotype", "optimizer", "lr_scheduler"])
        self.optimizer, self.lr_scheduler = optimizer, lr_scheduler
        self.hparams["genotype"] = name  # a name or path: checkpoints stay plain data (weights_only loading)
        accepted = builder_options(self.genotype.space)
        explicit = {"num_classes": num_classes, "in_channels": in_channels, "auxiliary": auxiliary}
        given = {k: v for k, v in explicit.items() if v is not None and k in accepted}
        if "drop_path_prob" in accepted:
            given["drop_path_prob"] = 0.0  # ramped per epoch (on_train_epoch_start)
        self.build = resolved_options(self.genotype, {**given, **dict(options or {})})
        """The builder options this network was built with (recorded in checkpoints; ``dnas export --ckpt``)."""
        self.hparams["build"] = self.build
        self.model = build_model(self.genotype, **self.build)
        classes = self.build.get("num_classes", num_classes)
        if not isinstance(classes, int) or classes < 1:
            raise ConfigError(
                f"cannot tell the number of classes of this {self.genotype.space!r} network: set "
                f"model.init_args.num_classes (or options.num_classes)"
            )
        self.train_acc = MulticlassAccuracy(classes, average="micro")
        self.val_acc = MulticlassAccuracy(classes, average="micro")
        self.test_acc = MulticlassAccuracy(classes, average="micro")
        self.val_top5 = MulticlassAccuracy(classes, top_k=5, average="micro") if classes > 5 else None
        self.mixup = None
        if mixup_alpha > 0 or cutmix_alpha > 0:
            from timm.data import Mixup

            self.mixup = Mixup(
                mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, label_smoothing=label_smoothing, num_classes=classes
            )
        # Held outside the module tree (a tuple): its weights are no parameters of the network, stay out of
        # state_dict (whose model.* keys `dnas export --ckpt` reads) and are checkpointed under their own key.
        self._ema: tuple[Any, ...] = ()
        if ema_decay > 0:
            from timm.utils import ModelEmaV3

            self._ema = (ModelEmaV3(self.model, decay=ema_decay),)
            self.val_acc_ema = MulticlassAccuracy(classes, average="micro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    # ------------------------------------------------------------------ training
    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if y.is_floating_point():  # Mixup/CutMix targets: already smoothed class probabilities
            return torch.sum(-y * F.log_softmax(logits, dim=-1), dim=-1).mean()  # timm's SoftTargetCrossEntropy
        return F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing)

    @property
    def ema(self) -> torch.nn.Module | None:
        """The moving average of the weights (``ema_decay > 0``): timm's ``ModelEmaV3``, whose ``module`` is a copy."""
        return self._ema[0] if self._ema else None

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if isinstance(batch, dict):
            raise TypeError(
                "Retrain expects (x, y) batches but the datamodule yields search batches; "
                "set data.init_args.search: false"
            )
        x, y = batch
        labels = y
        if self.mixup is not None:
            x, y = self.mixup(x, y)
        if hasattr(self.model, "forward_with_aux"):
            logits, logits_aux = self.model.forward_with_aux(x)
        else:
            logits, logits_aux = self.model(x), None
        loss = self._loss(logits, y)
        if logits_aux is not None and self.hparams.auxiliary_weight > 0:
            loss_aux = self._loss(logits_aux, y)
            self.log("train/loss_aux", loss_aux.detach(), on_step=False, on_epoch=True, sync_dist=True)
            loss = loss + self.hparams.auxiliary_weight * loss_aux
        self.train_acc(logits.detach(), labels)
        log_step_and_epoch(self, "train/loss", loss.detach(), prog_bar=True)
        self.log("train/acc", self.train_acc, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update(self.model)

    def on_fit_start(self) -> None:
        if self.ema is not None:
            self.ema.to(self.device)

    def on_train_epoch_start(self) -> None:
        # reference train.py: model.drop_path_prob = args.drop_path_prob * epoch / args.epochs
        if not hasattr(self.model, "drop_path_prob"):
            return
        epochs = max(1, int(self.trainer.max_epochs or 1))
        self.model.drop_path_prob = self.hparams.drop_path_prob * self.current_epoch / epochs
        self.log("drop_path_prob", self.model.drop_path_prob, on_step=False, on_epoch=True)

    def configure_optimizers(self):
        darts_sgd = partial(torch.optim.SGD, lr=0.025, momentum=0.9, weight_decay=3e-4)
        opt = (self.optimizer or darts_sgd)(self.model.parameters())
        if self.lr_scheduler is not None:
            sched = self.lr_scheduler(opt)
        else:
            t_max = max(1, int(self.trainer.max_epochs or 1)) if self._trainer is not None else 1
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t_max, eta_min=0.0)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    # ------------------------------------------------------------------ evaluation
    def _eval_step(self, batch: Any, prefix: str, metric: MulticlassAccuracy) -> torch.Tensor:
        x, y = batch["arch"] if isinstance(batch, dict) else batch
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        metric(logits, y)
        self.log(f"{prefix}/loss", loss, prog_bar=prefix == "val", on_epoch=True, sync_dist=True)
        self.log(f"{prefix}/acc", metric, prog_bar=prefix == "val", on_epoch=True)
        if prefix == "val" and self.val_top5 is not None:
            self.val_top5(logits, y)
            self.log("val/acc_top5", self.val_top5, on_epoch=True)
        if prefix == "val" and self.ema is not None:
            self.val_acc_ema(self.ema.module(x), y)
            self.log("val/acc_ema", self.val_acc_ema, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, "val", self.val_acc)

    def test_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, "test", self.test_acc)

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        return torch.softmax(self.model(x), dim=-1)

    # ------------------------------------------------------------------ setup, checkpoints, summary
    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        for key in ("num_classes", "in_channels"):
            want, have = getattr(dm, key, None), self.build.get(key)
            if want is not None and have is not None and int(want) != int(have):
                raise ConfigError(
                    f"the datamodule has {key}={want} but the model was built with {key}={have}; "
                    f"set model.init_args.{key}: {want}"
                )
        if self.trainer.is_global_zero:
            from dnas.export.summary import count_parameters

            n = count_parameters(self.model)
            rank_zero_info(f"dnas.Retrain: {self.hparams.genotype}, {n / 1e6:.6f}M parameters (without aux head)")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["dnas_genotype"] = self.genotype.to_dict()
        if self.ema is not None:
            checkpoint["dnas_ema"] = self.ema.module.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.ema is not None and "dnas_ema" in checkpoint:
            self.ema.module.load_state_dict(checkpoint["dnas_ema"])

    def input_shape(self) -> tuple[int, ...]:
        """One input sample's shape: ``input_shape``, else the datamodule's, else the genotype's recorded one."""
        if self.hparams.input_shape:
            return tuple(self.hparams.input_shape)
        dm_size = getattr(getattr(self._trainer, "datamodule", None), "input_size", None)
        shape = dm_size or default_input_shape(self.genotype, self.build)
        return tuple(int(d) for d in shape)

    def summary(self) -> dict[str, Any]:
        """Parameters (with and without the auxiliary head) and FLOPs at :meth:`input_shape`."""
        from dnas.export.summary import model_summary

        extra = {"genotype": self.hparams.genotype, "space": self.genotype.space}
        return model_summary(self.model, (1, *self.input_shape()), extra=extra)

    def on_fit_end(self) -> None:
        if not self.hparams.write_summary or not self.trainer.is_global_zero:
            return
        from dnas.export.summary import format_summary

        summary = self.summary()
        out = log_dir(self.trainer)  # no DDP broadcast: this runs on rank zero only
        atomic_write_text(join(out, "summary.json"), json.dumps(summary, indent=2) + "\n")
        rank_zero_info(f"dnas.Retrain: {format_summary(summary)}; wrote {out / 'summary.json'}")
