"""MNIST-1D (Greydanus 2020): 10-class sequences of length 40, generated offline by the ``mnist1d`` package.

The data are *generated* with ``mnist1d.data.make_dataset`` and its default arguments (5,000 samples, 4,000 train /
1,000 test, seed 42) — never downloaded (the package's ``get_dataset`` can fetch a pickle; it is not used). Install
with ``pip install dnas[mnist1d]``.
"""

from __future__ import annotations

import numpy as np
import torch

from dnas.data.base import SearchDataModule, TensorPairs


def generate_mnist1d(num_samples: int = 5000, seed: int = 42) -> dict[str, torch.Tensor]:
    """``{"x", "y", "x_test", "y_test"}`` from ``make_dataset`` with default args except ``num_samples`` and ``seed``.

    ``make_dataset`` reseeds NumPy's global generator; its state is restored afterwards, so generating the data does
    not change the caller's randomness.
    """
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("MNIST-1D needs the 'mnist1d' package: pip install 'dnas[mnist1d]'") from err
    if num_samples < 20:
        raise ValueError(f"num_samples must be >= 20 (two per class in each split), got {num_samples}")
    args = get_dataset_args()
    args.num_samples, args.seed = int(num_samples), int(seed)
    state = np.random.get_state()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(state)
    return {
        "x": torch.as_tensor(data["x"], dtype=torch.float32).unsqueeze(1),  # (N, 1, 40)
        "y": torch.as_tensor(data["y"], dtype=torch.long),
        "x_test": torch.as_tensor(data["x_test"], dtype=torch.float32).unsqueeze(1),
        "y_test": torch.as_tensor(data["y_test"], dtype=torch.long),
    }


class MNIST1DDataModule(SearchDataModule):
    """MNIST-1D as ``(B, 1, 40)`` float sequences (already standardised by the generator).

    Args:
        num_samples: samples generated (default 5,000: 4,000 train, 1,000 test, the package's split).
        seed: generator seed (default 42, the package's; it fixes the data set, not the train/arch split).
        **kwargs: see :class:`~dnas.data.base.SearchDataModule`.
    """

    num_classes = 10
    in_channels = 1
    input_size = (1, 40)

    def __init__(self, num_samples: int = 5000, seed: int = 42, **kwargs):
        super().__init__(**kwargs)
        self.num_samples, self.seed = num_samples, seed

    def build_datasets(self):
        data = generate_mnist1d(self.num_samples, self.seed)
        train = TensorPairs(data["x"], data["y"])
        return train, train, TensorPairs(data["x_test"], data["y_test"])
