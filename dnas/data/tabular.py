"""scikit-learn's bundled tabular data sets (no download): breast_cancer, wine, iris as standardised feature rows."""

from __future__ import annotations

from typing import Literal

import torch

from dnas.data.base import SearchDataModule, held_out

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
        **kwargs: see :class:`~dnas.data.base.SearchDataModule`.
    """

    def __init__(
        self,
        dataset: Literal["breast_cancer", "wine", "iris"] = "breast_cancer",
        test_fraction: float = 0.2,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if dataset not in TABULAR_DATASETS:
            raise ValueError(f"unknown tabular dataset {dataset!r}; choose one of {sorted(TABULAR_DATASETS)}")
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
        return held_out(x, y, self.test_fraction, dim=0)
