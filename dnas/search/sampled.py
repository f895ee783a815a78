"""The base of the single-path searches (:class:`dnas.GDAS`, :class:`dnas.ProxylessNAS`).

What they share: their own sampling generator (seeded per rank, saved in checkpoints) and the
weight-then-architecture step order of their references.

The samples come from the module's own CPU generator (``seed``), saved in checkpoints, so a resumed search draws the
same architectures as an uninterrupted one. Under DDP rank ``r`` starts from ``seed + r`` (ranks sample
independently, as data-parallel single-path searches do); a resumed DDP run continues rank 0's stream exactly and
derives the other ranks' streams from it and their rank.

Distributed training: each rank runs different ops, so some weights get no gradient in a step; the module turns on
DDP's ``find_unused_parameters`` itself (FBNet's ``single_path``, :attr:`~dnas.DARTS.needs_unused_parameters`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from dnas.cells.base import Supernet
from dnas.search.fbnet import FBNet


class SampledSearch(FBNet):
    """A single-path search: FBNet's hard, single-path mode plus a checkpointed sampling generator.

    FBNet's ``temperature``, ``hard`` and ``single_path`` are the subclass's to set, not the user's: they are refused
    with :attr:`refusal` (not typed parameters here, so the LightningCLI schema does not offer them).

    Args:
        supernet: the search space.
        seed: seed of the sampling generator (rank ``r`` uses ``seed + r``).
        _temperature: FBNet's initial Gumbel temperature, the subclass's (private: not a config option).
        **kwargs: the other :class:`~dnas.search.fbnet.FBNet` arguments.
    """

    arch_first = False  # the weight step, then the architecture step (the references' order)
    rng_key: ClassVar[str] = "dnas_sampler_rng"
    """Checkpoint key of the generator's state."""
    refusal: ClassVar[str] = "{cls} sets {name} itself; remove it"
    """The error for a refused FBNet argument, formatted with ``cls`` and ``name`` (quoted)."""

    def __init__(self, supernet: Supernet, seed: int = 0, _temperature: float = 1.0, **kwargs: Any):
        for name in ("temperature", "hard", "single_path"):
            if name in kwargs:
                raise ValueError(self.refusal.format(cls=type(self).__name__, name=repr(name)))
        super().__init__(supernet, temperature=_temperature, hard=True, single_path=True, **kwargs)
        ignore = ["supernet", "latency_loss", "w_optimizer", "a_optimizer", "w_scheduler", "_temperature"]
        self.save_hyperparameters(ignore=ignore)
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        self.generator.manual_seed(self.seed + self.global_rank)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[self.rng_key] = {"generator": self.generator.get_state(), "rank": int(self.global_rank)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get(self.rng_key)
        if state is None:
            return
        self.generator.set_state(state["generator"])
        if self.global_rank != state["rank"]:  # only rank 0's stream is saved: derive this rank's from it
            offset = int(torch.randint(2**62, (1,), generator=self.generator))
            self.generator.manual_seed(offset + self.global_rank)
