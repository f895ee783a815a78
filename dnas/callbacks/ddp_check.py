"""Guard against the classic multi-GPU NAS bug: ranks that silently end with different architectures."""

from __future__ import annotations

import json

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from typing_extensions import override

from dnas.io import atomic_write_text
from dnas.storage import join


class ArchSyncCheck(Callback):
    """Check that the architecture parameters are bitwise identical on every rank.

    Every ``every_n_batches`` training batches (and at the end of fit) each rank's α/β are gathered and compared
    with rank 0's; a difference raises an error naming the parameter and the ranks. Costs one all-gather of the
    (small) architecture parameters.

    Args:
        every_n_batches: check interval in training batches (0: only at the end of fit).
        dump_dir: if set, every rank writes ``arch_rank<r>.json`` (the raw α values and the genotype) there at the end
            of fit, for inspection.
    """

    def __init__(self, every_n_batches: int = 50, dump_dir: str | None = None):
        self.every_n_batches = every_n_batches
        self.dump_dir = dump_dir

    def _check(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.world_size < 2:
            return
        supernet = pl_module.supernet
        for name, p in supernet.named_arch_parameters():
            local = p.detach().contiguous()
            gathered = [torch.empty_like(local) for _ in range(trainer.world_size)]
            torch.distributed.all_gather(gathered, local)
            for rank, other in enumerate(gathered[1:], start=1):
                if not torch.equal(gathered[0], other):
                    diff = float((gathered[0] - other).abs().max())
                    raise RuntimeError(
                        f"architecture parameter {name} differs between rank 0 and rank {rank} (max |Δ| = {diff}) "
                        f"at global step {trainer.global_step}: the ranks would derive different architectures"
                    )

    @override
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_n_batches and (batch_idx + 1) % self.every_n_batches == 0:
            self._check(trainer, pl_module)

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check(trainer, pl_module)
        if self.dump_dir:
            supernet = pl_module.supernet
            data = {
                "rank": trainer.global_rank,
                "alphas": {n: p.detach().cpu().double().tolist() for n, p in supernet.named_arch_parameters()},
                "genotype": supernet.genotype().to_dict(),
            }
            atomic_write_text(join(self.dump_dir, f"arch_rank{trainer.global_rank}.json"), json.dumps(data))
