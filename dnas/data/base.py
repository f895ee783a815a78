"""The search datamodule contract: a training set split deterministically into a weight half and an architecture half.

``train_dataloader`` yields ``{"train": (x, y), "arch": (x, y)}`` each step (Lightning's ``CombinedLoader``,
``max_size_cycle``). ``val_dataloader`` is the architecture half without augmentation (what the search is measured
on), ``test_dataloader`` the held-out test set. With ``search=False`` (retraining a found network) the whole training
set is one loader and validation uses the test set.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import CombinedLoader
from torch.utils.data import DataLoader, Dataset, RandomSampler, Subset


class EpochSeededSampler(RandomSampler):
    """A random sampler whose order depends only on ``(seed, epoch)``.

    Lightning calls :meth:`set_epoch` before every epoch, so a search resumed from a checkpoint sees exactly the
    batches the uninterrupted run would have seen. Under DDP Lightning swaps it for a ``DistributedSampler``
    (also seeded per epoch), because it is a ``RandomSampler``.
    """

    def __init__(self, data_source: Dataset, seed: int):
        super().__init__(data_source, generator=torch.Generator().manual_seed(seed))
        self.seed = seed

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed + 1_000_003 * epoch)


def split_indices(n: int, train_portion: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded permutation of ``range(n)`` cut at ``floor(train_portion·n)``: identical on every rank and run."""
    if not 0.0 < train_portion < 1.0:
        raise ValueError(f"train_portion must be in (0, 1), got {train_portion}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    cut = int(train_portion * n)
    if cut == 0 or cut == n:
        raise ValueError(f"train_portion={train_portion} leaves an empty split of {n} samples")
    return perm[:cut], perm[cut:]


class SearchDataModule(pl.LightningDataModule):
    """Base class: subclasses implement :meth:`build_datasets` and set ``num_classes``, ``in_channels``, ``input_size``.

    Subclasses take their own arguments and pass ``**kwargs`` on to this constructor; jsonargparse follows
    ``super().__init__(**kwargs)``, so these arguments stay in every subclass's config schema.

    Args:
        batch_size: batch of each split per step (DARTS: 64).
        train_portion: fraction of the training set that trains the weights; the rest trains the architecture.
        split_seed: seed of the split permutation (independent of the global seed, so resumes agree).
        num_workers: DataLoader workers.
        search: True for search (two halves), False to train on the whole training set (retraining).
        arch_batch_size: batch of the architecture half (default: ``batch_size``).
        eval_batch_size: batch of validation/test loaders (default: ``batch_size``).
    """

    num_classes: int
    in_channels: int
    input_size: tuple[int, ...]

    def __init__(
        self,
        batch_size: int = 64,
        train_portion: float = 0.5,
        split_seed: int = 2,
        num_workers: int = 0,
        search: bool = True,
        arch_batch_size: int | None = None,
        eval_batch_size: int | None = None,
    ):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if search:
            split_indices(10, train_portion, 0)  # validates the portion early, with a clear message
        self.batch_size = batch_size
        self.train_portion = train_portion
        self.split_seed = split_seed
        self.num_workers = num_workers
        self.search = search
        self.arch_batch_size = arch_batch_size or batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self._train_aug: Dataset | None = None
        self._train_plain: Dataset | None = None
        self._test: Dataset | None = None

    def build_datasets(self) -> tuple[Dataset, Dataset, Dataset]:
        """Return ``(train set with augmentation, same train set without, test set)``."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self._train_aug is None:
            self._train_aug, self._train_plain, self._test = self.build_datasets()
            n = len(self._train_aug)
            if self.search:
                self.train_idx, self.arch_idx = split_indices(n, self.train_portion, self.split_seed)
            else:
                self.train_idx, self.arch_idx = list(range(n)), []

    def _loader(self, ds: Dataset, batch_size: int, shuffle: bool, seed_offset: int = 0) -> DataLoader:
        # the order follows the global seed (seed_everything) and the epoch, never the RNG's history
        sampler = EpochSeededSampler(ds, torch.initial_seed() + seed_offset) if shuffle else None
        return DataLoader(
            ds,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            drop_last=False,
            persistent_workers=self.num_workers > 0,
        )

    def weight_dataset(self) -> Dataset:
        return Subset(self._train_aug, self.train_idx)

    def arch_dataset(self, augment: bool = True) -> Dataset:
        return Subset(self._train_aug if augment else self._train_plain, self.arch_idx)

    def train_dataloader(self) -> Any:
        self.setup()
        weights = self._loader(self.weight_dataset(), self.batch_size, shuffle=True)
        if not self.search:
            return weights
        arch = self._loader(self.arch_dataset(), self.arch_batch_size, shuffle=True, seed_offset=1)
        return CombinedLoader({"train": weights, "arch": arch}, mode="max_size_cycle")

    def val_dataloader(self) -> DataLoader:
        if not self.search:
            return self.test_dataloader()
        self.setup()
        return self._loader(self.arch_dataset(augment=False), self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self._test, self.eval_batch_size, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()


def held_out(x: torch.Tensor, y: torch.Tensor, test_fraction: float, dim: int | None = None, transform=None):
    """``(train set with transform, train set, test set)`` of a seeded ``test_fraction`` held out from ``(x, y)``.

    ``x`` is standardised with the training samples' mean and std (over ``dim``; None: over every value).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    train_idx, test_idx = split_indices(len(y), 1.0 - test_fraction, seed=12345)
    mean, std = x[train_idx].mean(dim), x[train_idx].std(dim).clamp_min(1e-6)
    x = (x - mean) / std
    full = TensorPairs(x, y)
    return Subset(TensorPairs(x, y, transform), train_idx), Subset(full, train_idx), Subset(full, test_idx)


class TensorPairs(Dataset):
    """``(x[i], y[i])`` with an optional per-sample transform on x (a tensor -> tensor callable)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform=None):
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        x = self.x[i]
        return (self.transform(x) if self.transform else x), self.y[i]
