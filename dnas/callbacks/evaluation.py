"""Measuring a supernet for perturbation-based selection, and loading the trained supernet that selection starts from.

Part of DARTS-PT (Wang et al., "Rethinking Architecture Selection in Differentiable NAS", ICLR 2021; reference code
``ruocwang/darts-pt``): :class:`SupernetEvaluator` is the measurement the projection steps of
:mod:`dnas.callbacks.projection` call, :func:`load_supernet_state` the ``init_from`` loader of
:class:`dnas.callbacks.perturbation.PerturbationSelection` (our supernet state dict, a Lightning checkpoint of ours, or
a reference DARTS supernet state).

**Measurements** run under ``no_grad`` on the supernet's own ``edge_weights()`` (softmax α with the selection
applied), in train mode (BN batch statistics) as the reference, on the first ``val_subset`` samples of the
datamodule's ``val_dataloader()`` (the architecture half in search mode; the reference uses the whole half). BN running
statistics are restored afterwards, so measuring has no side effect. Under DDP, batches are dealt round-robin to the
ranks and the counts are all-reduced, so every rank sees the same scores and takes the same decision.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from dnas.cells.base import Supernet
from dnas.io import load_checkpoint


# ---------------------------------------------------------------------------------------------------------- measuring
class SupernetEvaluator:
    """``() -> (accuracy, mean loss)`` of ``supernet`` on the first ``subset`` samples of ``loader``.

    Args:
        supernet: the supernet; evaluated with its own ``edge_weights()`` (``supernet(x)``).
        loader: a non-shuffled loader of ``(x, y)`` batches (the same samples every call).
        subset: number of samples (None = the whole loader).
        bn_mode: ``"train"`` (BN batch statistics, as the reference) or ``"eval"`` (running statistics).
        device: where batches go (default: the supernet's device).
        world_size, rank: DDP layout; batches are dealt round-robin and the sums all-reduced.
    """

    def __init__(
        self,
        supernet: Supernet,
        loader: Iterable,
        subset: int | None = None,
        bn_mode: Literal["train", "eval"] = "train",
        device: torch.device | None = None,
        world_size: int = 1,
        rank: int = 0,
    ):
        self.supernet, self.loader, self.subset, self.bn_mode = supernet, loader, subset, bn_mode
        self.device = device
        self.world_size, self.rank = world_size, rank
        self.calls = 0
        self.seconds = 0.0

    @torch.no_grad()
    def __call__(self) -> tuple[float, float]:
        start = time.perf_counter()
        net = self.supernet
        device = self.device or next(net.parameters()).device
        totals = torch.zeros(3, dtype=torch.float64, device=device)  # correct, loss sum, count
        mine, n_batches, last = 0, 0, None
        with measuring(net, train=self.bn_mode == "train"):
            for i, (x, y) in enumerate(first_samples(self.loader, self.subset)):
                n_batches += 1
                if i % self.world_size != self.rank:
                    continue
                x, y = x.to(device), y.to(device)
                logits = net(x)
                totals[0] += (logits.argmax(-1) == y).sum()
                totals[1] += F.cross_entropy(logits.float(), y, reduction="sum")
                totals[2] += len(y)
                mine, last = mine + 1, x
            # every rank runs the same number of forwards (collective layers such as SyncBN stay in step)
            for _ in range(math.ceil(n_batches / self.world_size) - mine):
                if last is not None:
                    net(last)
            if self.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.all_reduce(totals)
        if totals[2] == 0:
            raise ValueError("the validation loader for perturbation selection yielded no samples")
        self.calls += 1
        self.seconds += time.perf_counter() - start
        return float(totals[0] / totals[2]), float(totals[1] / totals[2])


def first_samples(loader: Iterable, n: int | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The ``(x, y)`` batches of ``loader`` (the ``arch`` half of search batches) up to ``n`` samples (None: all)."""
    seen = 0
    for batch in loader:
        x, y = batch["arch"] if isinstance(batch, dict) else batch
        if n is not None:
            x, y = x[: n - seen], y[: n - seen]
        seen += len(y)
        yield x, y
        if n is not None and seen >= n:
            return


@contextmanager
def measuring(net: Supernet, train: bool) -> Iterator[None]:
    """Put ``net`` in train (BN batch statistics) or eval mode; afterwards restore its mode and buffers.

    The selection buffers are not restored: they are the state a measurement may be asked to change.
    """
    was_training = net.training
    selection = net.selection_buffer_names()
    saved = {n: b.clone() for n, b in net.named_buffers() if n not in selection}
    net.train(train)
    try:
        yield
    finally:
        buffers = dict(net.named_buffers())
        with torch.no_grad():
            for n, b in saved.items():
                buffers[n].copy_(b)
        net.train(was_training)


def load_supernet_state(supernet: Supernet, path: str | Path) -> None:
    """Load ``path`` (:func:`dnas.io.load_checkpoint`: ``torch.load(weights_only=True)``) into ``supernet``.

    ``path`` holds a supernet ``state_dict()``, a Lightning checkpoint of a search module (keys ``supernet.*``), or a
    reference DARTS search-network state with ``alphas_normal``/``alphas_reduce`` (imported with
    :func:`dnas.cells.darts.import_reference_state`).

    Raises:
        dnas.io.CheckpointError: the file is missing, empty, truncated, corrupt or holds pickled code.
        ValueError: the file is not a state dict, or its keys do not fit the supernet (naming the file and keys).
    """
    state = load_checkpoint(path, map_location="cpu", what="init_from checkpoint")
    path = str(path)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict (a mapping of tensors), got {type(state).__name__}")
    if "state_dict" in state and isinstance(state["state_dict"], dict):  # a Lightning checkpoint of a search module
        prefix = "supernet."
        state = {k[len(prefix) :]: v for k, v in state["state_dict"].items() if k.startswith(prefix)}
        if not state:
            raise ValueError(f"{path}: a Lightning checkpoint without 'supernet.*' weights")
    if "alphas_normal" in state:  # the reference DARTS search network (quark0/darts)
        from dnas.cells.darts import import_reference_state

        import_reference_state(supernet, state)
        return
    ours = supernet.state_dict()
    selection = supernet.selection_buffer_names()
    missing = [k for k in ours if k not in state and k not in selection]
    unexpected = [k for k in state if k not in ours]
    if missing or unexpected:
        raise ValueError(
            f"{path} does not fit this {type(supernet).__name__}: {len(missing)} missing key(s) {missing[:3]}, "
            f"{len(unexpected)} unexpected key(s) {unexpected[:3]}"
        )
    for k, v in state.items():
        if tuple(v.shape) != tuple(ours[k].shape):
            raise ValueError(f"{path}: shape of {k!r} is {tuple(v.shape)}, the supernet has {tuple(ours[k].shape)}")
    supernet.load_state_dict(state, strict=False)
