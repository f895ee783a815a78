"""scikit-learn's bundled 8×8 digits (1,797 images, 10 classes): the embedded default, never downloads."""

from __future__ import annotations

import torch

from dnas.data.base import SearchDataModule, held_out


class RandomShift:
    """Pad by ``pad`` pixels (zeros) and crop back at a random offset: the 8×8 analogue of CIFAR's RandomCrop."""

    def __init__(self, pad: int = 1):
        self.pad = pad

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad == 0:
            return x
        h, w = x.shape[-2:]
        padded = torch.nn.functional.pad(x, (self.pad,) * 4)
        i, j = torch.randint(0, 2 * self.pad + 1, (2,)).tolist()
        return padded[..., i : i + h, j : j + w]


class DigitsDataModule(SearchDataModule):
    """Digits as 1×8×8 float images, standardised; a seeded 20 % is held out as the test set.

    Args:
        test_fraction: share of the 1,797 images held out for testing.
        augment_shift: random-shift padding of training images (0 disables).
        **kwargs: see :class:`~dnas.data.base.SearchDataModule`.
    """

    num_classes = 10
    in_channels = 1
    input_size = (1, 8, 8)

    def __init__(self, test_fraction: float = 0.2, augment_shift: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.test_fraction = test_fraction
        self.augment_shift = augment_shift

    def build_datasets(self):
        from sklearn.datasets import load_digits

        data = load_digits()
        x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
        y = torch.tensor(data.target, dtype=torch.long)
        return held_out(
            x, y, self.test_fraction, transform=RandomShift(self.augment_shift) if self.augment_shift else None
        )
