"""A search datamodule for your own table: one CSV file, numeric feature columns and an integer label column.

The whole subclass of :class:`dnas.data.SearchDataModule`: read the file, hold out a seeded test share, standardise
with the training rows' statistics, and return ``(train, train, test)`` (no augmentation for rows, so the same set
twice). The base class then splits the training rows into the weight and architecture halves and yields the
``{"train": (x, y), "arch": (x, y)}`` batches every search module takes.
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from torch.utils.data import Subset

from dnas.data import SearchDataModule, split_indices
from dnas.data.base import TensorPairs


class CSVDataModule(SearchDataModule):
    """Rows of ``path`` as ``(B, F)`` float features and class indices from the ``label`` column.

    Args:
        path: CSV file with a header row.
        label: name of the label column (integers 0..C-1); every other column is a feature.
        test_fraction: share of rows held out for testing (seeded by ``test_seed``, fixed across runs).
        test_seed: seed of the test hold-out.
        **kwargs: batch sizes, ``train_portion``, ``split_seed``, ... of :class:`dnas.data.SearchDataModule`.
    """

    def __init__(
        self,
        path: str,
        label: str = "label",
        test_fraction: float = 0.2,
        test_seed: int = 12345,
        batch_size: int = 64,
        train_portion: float = 0.5,
        split_seed: int = 2,
        num_workers: int = 0,
        search: bool = True,
    ):
        super().__init__(batch_size, train_portion, split_seed, num_workers, search)
        self.path, self.label = Path(path), label
        self.test_fraction, self.test_seed = test_fraction, test_seed
        with self.path.open(newline="") as f:
            reader = csv.DictReader(f)
            if label not in (reader.fieldnames or []):
                raise ValueError(f"{path}: no column {label!r}; columns: {reader.fieldnames}")
            labels = {int(row[label]) for row in reader}
        # what dnas checks against the model before the data is loaded: classes, features, one sample's shape
        self.num_classes = max(labels) + 1
        self.features = [c for c in reader.fieldnames if c != label]
        self.in_channels = len(self.features)
        self.input_size = (len(self.features),)

    def build_datasets(self):
        with self.path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        x = torch.tensor([[float(r[c]) for c in self.features] for r in rows])
        y = torch.tensor([int(r[self.label]) for r in rows])
        train_idx, test_idx = split_indices(len(y), 1.0 - self.test_fraction, seed=self.test_seed)
        mean, std = x[train_idx].mean(0), x[train_idx].std(0).clamp_min(1e-6)
        table = TensorPairs((x - mean) / std, y)
        return Subset(table, train_idx), Subset(table, train_idx), Subset(table, test_idx)
