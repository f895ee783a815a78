"""CIFAR-10 through torchvision, with the DARTS augmentation and normalisation (ALGORITHMS.md §2)."""

from __future__ import annotations

from pathlib import Path

from dnas.data.base import SearchDataModule

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class Cutout:
    """Zero one random ``length``×``length`` square (DeVries & Taylor 2017), as DARTS' evaluation training."""

    def __init__(self, length: int = 16):
        self.length = length

    def __call__(self, img):
        import torch

        h, w = img.shape[-2:]
        y, x = torch.randint(0, h, (1,)).item(), torch.randint(0, w, (1,)).item()
        y1, y2 = max(0, y - self.length // 2), min(h, y + self.length // 2)
        x1, x2 = max(0, x - self.length // 2), min(w, x + self.length // 2)
        img = img.clone()
        img[..., y1:y2, x1:x2] = 0.0
        return img


class CIFAR10DataModule(SearchDataModule):
    """CIFAR-10 (50k train / 10k test). Search splits the 50k; augmentation = RandomCrop(32, 4) + HFlip.

    Args:
        data_dir: directory holding (or to receive) ``cifar-10-batches-py``.
        download: allow torchvision to download when the data is absent (never in tests).
        cutout: Cutout length for training images (0 = off; DARTS evaluation uses 16, search uses none).
        **kwargs: see :class:`~dnas.data.base.SearchDataModule`.
    """

    num_classes = 10
    in_channels = 3
    input_size = (3, 32, 32)

    def __init__(
        self,
        data_dir: str = "data",
        download: bool = False,
        batch_size: int = 64,
        train_portion: float = 0.5,
        split_seed: int = 2,
        num_workers: int = 2,
        search: bool = True,
        arch_batch_size: int | None = None,
        eval_batch_size: int | None = None,
        cutout: int = 0,
    ):
        super().__init__(batch_size, train_portion, split_seed, num_workers, search, arch_batch_size, eval_batch_size)
        self.data_dir = data_dir
        self.download = download
        self.cutout = cutout

    def _present(self) -> bool:
        return (Path(self.data_dir) / "cifar-10-batches-py" / "data_batch_1").is_file()

    def prepare_data(self) -> None:
        if self._present():
            return
        where = Path(self.data_dir).resolve() / "cifar-10-batches-py"
        if not self.download:
            raise FileNotFoundError(
                f"CIFAR-10 not found at {where}. Put the extracted 'cifar-10-batches-py' folder there, point "
                f"data.init_args.data_dir at it, or set data.init_args.download: true to let torchvision fetch it."
            )
        from torchvision.datasets import CIFAR10

        try:
            CIFAR10(self.data_dir, train=True, download=True)
            CIFAR10(self.data_dir, train=False, download=True)
        except Exception as err:  # network errors come in many types
            raise RuntimeError(
                f"downloading CIFAR-10 into {where.parent} failed ({type(err).__name__}: {err}). Without internet, "
                f"copy 'cifar-10-batches-py' there by hand and set download: false."
            ) from err

    def build_datasets(self):
        from torchvision import transforms as T
        from torchvision.datasets import CIFAR10

        if not self._present():
            self.prepare_data()
        norm = [T.ToTensor(), T.Normalize(CIFAR10_MEAN, CIFAR10_STD)]
        aug = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), *norm]
        if self.cutout:
            aug.append(Cutout(self.cutout))
        train_aug = CIFAR10(self.data_dir, train=True, transform=T.Compose(aug))
        train_plain = CIFAR10(self.data_dir, train=True, transform=T.Compose(norm))
        test = CIFAR10(self.data_dir, train=False, transform=T.Compose(norm))
        return train_aug, train_plain, test
