"""A user's own images in class folders (torchvision ``ImageFolder`` layout)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch.utils.data import Subset

from dnas.data.augment import rand_augment as _rand_augment
from dnas.data.base import SearchDataModule, split_indices


class ImageFolderDataModule(SearchDataModule):
    """``root/train/<class>/*.png`` (required) and ``root/test/<class>/*`` (optional; else a seeded 10 % of train).

    Args:
        root: dataset directory.
        image_size: images are resized to ``image_size``×``image_size``.
        channels: 1 (grayscale) or 3 (RGB).
        mean: per-channel normalisation mean (default 0.5 each).
        std: per-channel normalisation std (default 0.5 each).
        augment: random crop (pad 1/8 of the size) and horizontal flip for training images.
        rand_augment: timm's RandAugment on training images after crop and flip, e.g. ``"rand-m9-mstd0.5"``; None
            (default) is off. See :func:`dnas.data.augment.rand_augment`.
        **kwargs: see :class:`~dnas.data.base.SearchDataModule`.
    """

    def __init__(
        self,
        root: str,
        image_size: int = 32,
        channels: int = 3,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        augment: bool = True,
        rand_augment: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.root = Path(root)
        self.image_size = image_size
        self.in_channels = channels
        self.input_size = (channels, image_size, image_size)
        self.mean = tuple(mean) if mean is not None else (0.5,) * channels
        self.std = tuple(std) if std is not None else (0.5,) * channels
        self.augment = augment
        self.rand_augment = rand_augment
        self._rand_augment = _rand_augment(rand_augment, image_size, self.mean) if rand_augment is not None else None
        train_dir = self.root / "train"
        if not train_dir.is_dir():
            raise FileNotFoundError(f"image folder {train_dir} not found: expected {self.root}/train/<class>/<images>")
        classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
        if not classes:
            raise FileNotFoundError(f"{train_dir} has no class sub-folders")
        self.classes = classes
        self.num_classes = len(classes)

    def transforms(self):
        """``(training transform, plain transform)`` of a PIL image; the plain one serves α-validation and test."""
        from torchvision import transforms as T

        base = [T.Grayscale(1)] if self.in_channels == 1 else [T.Lambda(lambda im: im.convert("RGB"))]
        base += [T.Resize((self.image_size, self.image_size))]
        norm = [T.ToTensor(), T.Normalize(self.mean, self.std)]
        aug = list(base)
        if self.augment:
            aug += [T.RandomCrop(self.image_size, padding=max(1, self.image_size // 8)), T.RandomHorizontalFlip()]
        aug += [self._rand_augment] if self._rand_augment is not None else []
        return T.Compose(aug + norm), T.Compose(base + norm)

    def build_datasets(self):
        from torchvision.datasets import ImageFolder

        aug, plain = self.transforms()
        train_aug = ImageFolder(str(self.root / "train"), transform=aug)
        train_plain = ImageFolder(str(self.root / "train"), transform=plain)
        test_dir = self.root / "test"
        if test_dir.is_dir():
            return train_aug, train_plain, ImageFolder(str(test_dir), transform=plain)
        keep, held = split_indices(len(train_plain), 0.9, seed=12345)
        return Subset(train_aug, keep), Subset(train_plain, keep), Subset(train_plain, held)
