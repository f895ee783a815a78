"""PC-DARTS (Xu et al., ICLR 2020; reference yuhuixu1993/PC-DARTS ``train_search.py``).

PC-DARTS is DARTS on a supernet with partial-channel edges and edge normalisation
(``DartsSupernet(edge_options=EdgeOptions(partial_channels=4, edge_normalization=True))``); the bilevel loop is the
same. This module only changes the defaults to the paper's: SGD lr 0.1 (momentum 0.9, weight decay 3e-4) cosine to
0, Adam lr 6e-4 (betas (0.5, 0.999), weight decay 1e-3) on α and β together, and 15 epochs of weight-only warm-up.
The paper's batch size (256) belongs to the datamodule (``configs/pcdarts_cifar10.yaml``).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from pytorch_lightning.utilities import rank_zero_warn

from dnas.cells.base import Supernet
from dnas.genotypes import Genotype
from dnas.search.darts import DARTS


class PCDARTS(DARTS):
    """Partially-connected DARTS: :class:`~dnas.search.darts.DARTS` with PC-DARTS' defaults.

    With a supernet without partial channels and edge normalisation and the same optimizers, it computes exactly
    what DARTS computes. Every argument of :class:`~dnas.search.darts.DARTS` is accepted; those listed here only have
    other defaults.

    Default optimizers as the paper: SGD(lr 0.1, momentum 0.9, weight decay 3e-4) on the weights, Adam(lr 6e-4,
    betas (0.5, 0.999), weight decay 1e-3) on α and β.

    Args:
        supernet: the search space, normally a ``DartsSupernet`` with
            ``edge_options=EdgeOptions(partial_channels=4, edge_normalization=True)``.
        w_lr_min: ``eta_min`` of the default cosine schedule (reference main branch: 0; its V100 branch: 0.001).
        arch_warmup_epochs: epochs of weight-only training before α/β updates start (paper: 15 of 50).
        **kwargs: the other :class:`~dnas.search.darts.DARTS` arguments.
    """

    default_w_optimizer = functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=3e-4)
    default_a_optimizer = functools.partial(torch.optim.Adam, lr=6e-4, betas=(0.5, 0.999), weight_decay=1e-3)

    def __init__(self, supernet: Supernet, w_lr_min: float = 0.0, arch_warmup_epochs: int = 15, **kwargs: Any):
        super().__init__(supernet, w_lr_min=w_lr_min, arch_warmup_epochs=arch_warmup_epochs, **kwargs)
        edges = supernet.edge_options
        if edges.partial_channels == 1 and not edges.edge_normalization:
            rank_zero_warn(
                "PCDARTS got a supernet without partial channels and edge normalisation: this is DARTS with PC-DARTS "
                "hyperparameters. Set edge_options: {partial_channels: 4, edge_normalization: true} on the supernet."
            )

    def current_genotype(self) -> Genotype:
        """The genotype, with the per-node softmax of β (when the supernet has it) in ``meta["beta_softmax"]``."""
        genotype = super().current_genotype()
        scales_of = getattr(self.supernet, "edge_scales", None)
        if scales_of is None:
            return genotype
        betas = {}
        for group in self.supernet.arch_groups:
            scales = scales_of(group)
            if scales is not None:
                betas[group] = [s.detach().float().cpu().tolist() for s in scales]
        if not betas:
            return genotype
        return Genotype(genotype.space, genotype.cells, {**genotype.meta, "beta_softmax": betas})
