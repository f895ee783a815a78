"""SD-DARTS: DARTS with self-distillation from voting teachers (Zhu et al. 2023, arXiv 2302.05629).

What the paper's abstract states: the supernet's own *previous steps* are teachers; several previous supernets are
selected and their output probabilities are aggregated "through voting" into the teacher prediction; the aim is a
flatter loss and a smaller discretisation gap. The paper body was not available to us, so **everything below the
abstract is our choice** and a setting:

* the term: ``L_w = CE(f(x; w_t, α_t), y) + λ·T²·KL(p_teacher ‖ softmax(f(x; w_t, α_t) / T))`` (Hinton KD with the
  usual T² gradient scale), KL averaged over the batch (``λ = distill_weight``, ``T = temperature``);
* the teachers: the supernets (weights, α, β and BN statistics) used by the weight steps of the ``K`` most recent
  snapshot steps, one snapshot every ``teacher_every`` weight steps (``K = num_teachers``). Teacher ``k`` is run on the
  *current* batch under ``no_grad`` through ``torch.func.functional_call``; the current selection masks apply to it;
* the aggregation (``aggregation``), with ``p_k = softmax(f_k(x) / T)`` and ``v_k = argmax p_k``:

  - ``"mean"``: ``p = (1/K) Σ_k p_k``;
  - ``"vote"``: majority vote. Per sample the winner ``m`` is the class with the most votes ``v_k``; ties go to the
    class with the higher mean probability, then to the lower index. ``p`` is the mean of the ``p_k`` of the teachers
    that voted for ``m`` (a soft distribution whose argmax is ``m``; outvoted teachers are ignored);
  - ``"vote_onehot"``: the one-hot distribution on the same winner ``m`` (hard pseudo-labels; T then only softens
    the student);

* the α step: DARTS' (CE on the architecture batch) unless ``distill_arch``, which adds the same term there;
* BatchNorm in the teachers (``teacher_bn``): ``"batch"`` = batch statistics, like the student in training mode
  (their running statistics are updated on scratch copies and thrown away); ``"running"`` = the snapshot's running
  statistics (eval mode);
* warm-up: until the first snapshot exists there is no teacher and no term; with fewer than K snapshots, all of them
  are teachers.

Cost: a snapshot is the supernet's parameters and floating-point buffers (no optimizer state), stored in one flat
``(K, N)`` ring buffer on the model's device (``teacher_dtype="bfloat16"`` halves it); each weight step adds K
no-grad forwards. ``benchmarks/sddarts_teachers.py`` measures both (docs/benchmarks.md).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_info
from torch.func import functional_call

from dnas.cells.base import Supernet
from dnas.search.darts import DARTS

AGGREGATIONS = ("mean", "vote", "vote_onehot")
_CKPT_KEY = "dnas_sddarts_teachers"


def aggregate_teachers(probs: torch.Tensor, aggregation: str = "mean") -> torch.Tensor:
    """Combine teacher distributions ``probs`` ``(K, B, C)`` into one target ``(B, C)`` (see module docstring)."""
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    if probs.dim() != 3:
        raise ValueError(f"expected teacher probabilities (K, B, C), got shape {tuple(probs.shape)}")
    mean = probs.mean(0)
    if aggregation == "mean":
        return mean
    num_classes = probs.shape[-1]
    votes = F.one_hot(probs.argmax(-1), num_classes).to(probs.dtype)  # (K, B, C)
    # more votes always win (mean <= 1 < 2 per extra vote); equal votes go to the higher mean, then the lower index
    winner = (2.0 * votes.sum(0) + mean).argmax(-1)  # (B,)
    if aggregation == "vote_onehot":
        return F.one_hot(winner, num_classes).to(probs.dtype)
    voted = votes.gather(-1, winner[None, :, None].expand(probs.shape[0], -1, 1))  # (K, B, 1): 1 if k voted m
    return (voted * probs).sum(0) / voted.sum(0)


def distillation_loss(logits: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T²·KL(target ‖ softmax(logits / T))``, averaged over the batch (zero-probability targets contribute 0)."""
    log_q = F.log_softmax(logits.float() / temperature, dim=-1)
    return F.kl_div(log_q, target.float(), reduction="batchmean") * temperature**2


class SDDARTS(DARTS):
    """DARTS whose weight loss adds self-distillation from the K previous supernets (see module docstring).

    Every argument of :class:`~dnas.search.darts.DARTS` is accepted (same defaults: the DARTS paper's).

    Args:
        supernet: the search space (any :class:`~dnas.cells.Supernet`).
        distill_weight: λ (ours: 1.0). 0 turns the term off, and with it every snapshot and teacher forward.
        temperature: T of the softened distributions (ours: 3.0).
        num_teachers: K, the previous supernets kept as teachers (ours: 3).
        aggregation: ``"mean"``, ``"vote"`` or ``"vote_onehot"`` (module docstring).
        distill_arch: add the term to the α step's loss too (ours: False; the DARTS α step is unchanged).
        teacher_every: take a snapshot every this many weight steps (1 = teachers are the K previous steps).
        teacher_dtype: storage of the snapshots: ``"float32"`` (exact) or ``"bfloat16"`` (half the memory; the
            teacher forward runs on float32 copies of the rounded values).
        teacher_bn: ``"batch"`` (batch statistics, like the training student) or ``"running"`` (snapshot statistics).
        **kwargs: the other :class:`~dnas.search.darts.DARTS` arguments.
    """

    def __init__(
        self,
        supernet: Supernet,
        distill_weight: float = 1.0,
        temperature: float = 3.0,
        num_teachers: int = 3,
        aggregation: Literal["mean", "vote", "vote_onehot"] = "mean",
        distill_arch: bool = False,
        teacher_every: int = 1,
        teacher_dtype: Literal["float32", "bfloat16"] = "float32",
        teacher_bn: Literal["batch", "running"] = "batch",
        **kwargs: Any,
    ):
        if distill_weight < 0:
            raise ValueError(f"distill_weight (λ) must be >= 0, got {distill_weight}")
        if temperature <= 0:
            raise ValueError(f"temperature (T) must be > 0, got {temperature}")
        if num_teachers < 1:
            raise ValueError(f"num_teachers (K) must be >= 1, got {num_teachers}")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        if teacher_every < 1:
            raise ValueError(f"teacher_every must be >= 1, got {teacher_every}")
        if teacher_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"teacher_dtype must be 'float32' or 'bfloat16', got {teacher_dtype!r}")
        if teacher_bn not in ("batch", "running"):
            raise ValueError(f"teacher_bn must be 'batch' or 'running', got {teacher_bn!r}")
        super().__init__(supernet, **kwargs)
        self._bank: torch.Tensor | None = None  # (K, N): one flat snapshot per row
        self._bank_steps: list[int] = []  # weight step of each row's snapshot; -1 = empty
        self._layout: list[tuple[str, tuple[int, ...], int, int]] | None = None  # (name, shape, offset, numel)
        self._is_buffer: list[bool] = []  # per layout entry
        self._row_views: dict[int, list[torch.Tensor]] = {}  # bank row -> views as the supernet's tensors
        self._weight_steps = 0  # weight steps taken so far (checkpointed: decides when to snapshot)
        self._bank_version = 0  # bumped by every snapshot: invalidates cached teacher targets
        # (x, teacher target, bank version, number of teachers) of the last batch seen
        self._target_cache: tuple[torch.Tensor, torch.Tensor | None, int, int] | None = None

    # ------------------------------------------------------------------ loss hooks
    @property
    def distilling(self) -> bool:
        return self.hparams.distill_weight > 0

    def weight_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """CE plus ``λ·T²·KL(p_teacher ‖ p_student)`` once a teacher exists."""
        loss, logits, extra = super().weight_loss(x, y)
        return self._add_distillation(loss, logits, extra, x)

    def arch_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """DARTS' α loss, plus the distillation term when ``distill_arch``."""
        loss, logits, extra = super().arch_loss(x, y)
        if not self.hparams.distill_arch:
            return loss, logits, extra
        return self._add_distillation(loss, logits, extra, x)

    def _add_distillation(self, loss, logits, extra, x):
        if not self.distilling:
            return loss, logits, extra
        target = self.teacher_target(x)
        if target is None:
            return loss, logits, {**extra, "teachers": 0.0}
        kd = distillation_loss(logits, target, self.hparams.temperature)
        extra = {**extra, "ce": loss.detach(), "kd": kd.detach(), "teachers": float(self._target_cache[3])}
        return loss + self.hparams.distill_weight * kd, logits, extra

    def weight_step(self, w_opt, x: torch.Tensor, y: torch.Tensor) -> None:
        """Compute the teacher target, snapshot the current supernet, then DARTS' weight step on the same batch.

        The snapshot is the state this weight step uses (after this batch's α step, before the weight update), so
        from the next step on it is the most recent teacher. It may overwrite the oldest snapshot only after that
        one has produced its predictions for this batch, hence the order.
        """
        if not self.distilling:
            super().weight_step(w_opt, x, y)
            return
        target = self.teacher_target(x)
        used = self._target_cache[3]
        if self._weight_steps % self.hparams.teacher_every == 0:
            self.push_snapshot()
        self._target_cache = (x, target, self._bank_version, used)  # the pre-snapshot teachers' target
        try:
            super().weight_step(w_opt, x, y)
        finally:
            self._target_cache = None
            self._weight_steps += 1

    # ------------------------------------------------------------------ teachers
    def _snapshot_tensors(self) -> dict[str, torch.Tensor]:
        """Supernet tensors a snapshot holds: parameters and floating buffers, not the selection buffers."""
        selection = self.supernet.selection_buffer_names()
        out = dict(self.supernet.named_parameters())
        for name, b in self.supernet.named_buffers():
            if b.is_floating_point() and name not in selection:
                out[name] = b
        return out

    def _ensure_bank(self) -> None:
        tensors = self._snapshot_tensors()
        if self._layout is None:
            layout, offset = [], 0
            for name, t in tensors.items():
                layout.append((name, tuple(t.shape), offset, t.numel()))
                offset += t.numel()
            self._layout = layout
            params = dict(self.supernet.named_parameters())
            self._is_buffer = [name not in params for name, *_ in layout]
        device = next(iter(tensors.values())).device
        dtype = getattr(torch, self.hparams.teacher_dtype)
        n = self._layout[-1][2] + self._layout[-1][3] if self._layout else 0
        K = self.hparams.num_teachers
        if self._bank is None:
            self._bank = torch.zeros(K, n, dtype=dtype, device=device)
            self._bank_steps = [-1] * K
            self._row_views = {}
        elif self._bank.device != device:
            self._bank = self._bank.to(device)
            self._row_views = {}

    def _split(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Views of a flat snapshot as the supernet's tensors, in layout order."""
        return [flat[offset : offset + numel].view(shape) for _, shape, offset, numel in self._layout]

    def _row(self, slot: int) -> list[torch.Tensor]:
        if slot not in self._row_views:
            self._row_views[slot] = self._split(self._bank[slot])
        return self._row_views[slot]

    @torch.no_grad()
    def push_snapshot(self) -> None:
        """Store the supernet's current parameters and buffers as the newest teacher (replacing the oldest)."""
        self._ensure_bank()
        slot = min(range(len(self._bank_steps)), key=lambda i: self._bank_steps[i])  # empty (-1) or oldest
        tensors = self._snapshot_tensors()
        torch._foreach_copy_(self._row(slot), [tensors[name].detach() for name, *_ in self._layout])  # casts too
        self._bank_steps[slot] = self._weight_steps
        self._bank_version += 1

    def _teacher_slots(self) -> list[int]:
        """Filled rows, most recent first."""
        filled = [i for i, s in enumerate(self._bank_steps) if s >= 0]
        return sorted(filled, key=lambda i: -self._bank_steps[i])

    @torch.no_grad()
    def teacher_logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each teacher's logits on ``x``, most recent first (the student is left untouched)."""
        if self._bank is None:
            return []
        self._ensure_bank()
        student = self._snapshot_tensors()
        running = self.hparams.teacher_bn == "running"
        # integer buffers (BN's num_batches_tracked) are counted in place by a training-mode forward: use copies
        selection = self.supernet.selection_buffer_names()
        scratch = {
            f"supernet.{n}": b.clone()
            for n, b in self.supernet.named_buffers()
            if not b.is_floating_point() and n not in selection
        }
        names = [f"supernet.{name}" for name, *_ in self._layout]
        dtypes = [student[name].dtype for name, *_ in self._layout]
        uniform = all(d == self._bank.dtype for d in dtypes)
        was_training = self.supernet.training
        out = []
        try:
            if running:
                self.supernet.eval()
            for slot in self._teacher_slots():
                if uniform:
                    views = self._row(slot)
                elif len(set(dtypes)) == 1:  # e.g. bfloat16 storage: one float32 copy of the row
                    views = self._split(self._bank[slot].to(dtypes[0]))
                else:
                    views = [v.to(d) for v, d in zip(self._row(slot), dtypes)]
                tensors = dict(scratch)
                for name, view, is_buffer in zip(names, views, self._is_buffer):
                    # BN running statistics are updated in place by a training-mode forward: keep the snapshot intact
                    tensors[name] = view.clone() if is_buffer and not running else view
                out.append(functional_call(self, tensors, (x,), strict=False).float())
        finally:
            self.supernet.train(was_training)
        return out

    def teacher_target(self, x: torch.Tensor) -> torch.Tensor | None:
        """The aggregated teacher distribution on ``x`` at temperature T, or None before the first snapshot."""
        cache = self._target_cache
        if cache is not None and cache[0] is x and cache[2] == self._bank_version:
            return cache[1]
        logits = self.teacher_logits(x)
        target = None
        if logits:
            probs = torch.softmax(torch.stack(logits) / self.hparams.temperature, dim=-1)
            target = aggregate_teachers(probs, self.hparams.aggregation)
        self._target_cache = (x, target, self._bank_version, len(logits))
        return target

    def teacher_memory_bytes(self) -> int:
        """Bytes held by the snapshot bank (0 before the first snapshot or with λ = 0)."""
        return 0 if self._bank is None else self._bank.numel() * self._bank.element_size()

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the teachers (most recent first) so a resumed run continues with the same ones."""
        super().on_save_checkpoint(checkpoint)
        slots = self._teacher_slots() if self._bank is not None else []
        checkpoint[_CKPT_KEY] = {
            "names": [entry[0] for entry in self._layout or []],
            "shapes": [list(entry[1]) for entry in self._layout or []],
            "bank": self._bank[slots].cpu() if slots else torch.zeros(0),
            "steps": [self._bank_steps[i] for i in slots],
            "weight_steps": self._weight_steps,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the teachers; a checkpoint without them (e.g. from DARTS) starts with none."""
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get(_CKPT_KEY)
        self._bank, self._bank_steps, self._layout, self._target_cache = None, [], None, None
        self._row_views = {}
        self._bank_version += 1
        if state is None:
            rank_zero_info("dnas: the checkpoint has no SD-DARTS teachers; distillation restarts without teachers")
            return
        self._weight_steps = int(state["weight_steps"])
        if not state["steps"]:
            return
        self._ensure_bank()
        ours = [(entry[0], list(entry[1])) for entry in self._layout]
        saved = [(n, list(s)) for n, s in zip(state["names"], state["shapes"])]
        if saved != ours:
            first = next((i for i, (a, b) in enumerate(zip(saved, ours)) if a != b), min(len(saved), len(ours)))
            have = saved[first] if first < len(saved) else "nothing"
            want = ours[first] if first < len(ours) else "nothing"
            raise ValueError(
                f"checkpoint entry {_CKPT_KEY!r} does not fit this supernet: tensor {first} is {have} in the "
                f"checkpoint but {want} here; resume with the supernet settings the run was started with"
            )
        keep = min(len(state["steps"]), self.hparams.num_teachers)
        self._bank[:keep] = state["bank"][:keep].to(self._bank.device, self._bank.dtype)
        for i in range(keep):
            self._bank_steps[i] = int(state["steps"][i])
