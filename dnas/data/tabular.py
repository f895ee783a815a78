"""scikit-learn's bundled tabular data sets (no download): breast_cancer, wine, iris as standardised feature rows."""

from __future__ import annotations

from typing import Literal

import torch
from torch.utils.data import Subset

from dnas.data.base import SearchDataModule, TensorPairs, split_indices

TABULAR_DATASETS: dict[str, tuple[str, int, int]] = {
    "breast_cancer": ("load_breast_cancer", 30, 2),  # 569 rows
    "wine": ("load_wine", 13, 3),  # 178 rows
    "iris": ("load_iris", 4, 3),  # 150 rows
}
"""name -> (scikit-learn loader, features, classes)."""


class TabularDataModule(SearchDataModule):
    """A bundled scikit-learn table as ``(B, F)`` float rows, standardised with the training rows' statistics.

    Args:
        dataset: ``"breast_cancer"`` (30 features, 2 classes), ``"wine"`` (13, 3) or ``"iris"`` (4, 3).
        test_fraction: share of rows held out for testing (seeded, fixed).
        batch_size: batch of each split per step.
        train_portion: fraction of the training rows that train the weights; the rest train the architecture.
        split_seed: seed of the weight/architecture split.
        num_workers: DataLoader workers.
        search: True for search (two halves), False to train on all training rows.
        arch_batch_size: batch of the architecture half (default: ``batch_size``).
        eval_batch_size: batch of validation/test loaders (default: ``batch_size``).
    """

    def __init__(
        self,
        dataset: Literal["breast_cancer", "wine", "iris"] = "breast_cancer",
        test_fraction: float = 0.2,
        batch_size: int = 64,
        train_portion: float = 0.5,
        split_seed: int = 2,
        num_workers: int = 0,
        search: bool = True,
        arch_batch_size: int | None = None,
        eval_batch_size: int | None = None,
    ):
        super().__init__(batch_size, train_portion, split_seed, num_workers, search, arch_batch_size, eval_batch_size)
        if dataset not in TABULAR_DATASETS:
            raise ValueError(f"unknown tabular dataset {dataset!r}; choose one of {sorted(TABULAR_DATASETS)}")
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        self.dataset, self.test_fraction = dataset, test_fraction
        _, self.num_features, self.num_classes = TABULAR_DATASETS[dataset]
        self.in_channels = self.num_features
        self.input_size = (self.num_features,)

    def build_datasets(self):
        import sklearn.datasets

        loader, _, _ = TABULAR_DATASETS[self.dataset]
        data = getattr(sklearn.datasets, loader)()
        x = torch.tensor(data.data, dtype=torch.float32)
        y = torch.tensor(data.target, dtype=torch.long)
        train_idx, test_idx = split_indices(len(y), 1.0 - self.test_fraction, seed=12345)
        mean, std = x[train_idx].mean(0), x[train_idx].std(0).clamp_min(1e-6)
        full = TensorPairs((x - mean) / std, y)
        return Subset(full, train_idx), Subset(full, train_idx), Subset(full, test_idx)
