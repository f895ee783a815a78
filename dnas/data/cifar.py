"""CIFAR-10 through torchvision, with the DARTS augmentation and normalisation (quark0/darts ``cnn/utils.py``)."""

from __future__ import annotations

from pathlib import Path

from dnas.data.augment import rand_augment as _rand_augment
from dnas.data.base import SearchDataModule
from dnas.errors import DataError, DataNotFoundError

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
        rand_augment: timm's RandAugment on training images after crop and flip, e.g. ``"rand-m9-mstd0.5"``; None
            (default, the DARTS recipe) is off. See :func:`dnas.data.augment.rand_augment`.
        num_workers: DataLoader workers (2 by default here: decoding and augmenting images is CPU work).
        **kwargs: see :class:`~dnas.data.base.SearchDataModule`.
    """

    num_classes = 10
    in_channels = 3
    input_size = (3, 32, 32)

    def __init__(
        self,
        data_dir: str = "data",
        download: bool = False,
        cutout: int = 0,
        rand_augment: str | None = None,
        num_workers: int = 2,
        **kwargs,
    ):
        super().__init__(num_workers=num_workers, **kwargs)
        self.data_dir = data_dir
        self.download = download
        self.cutout = cutout
        self.rand_augment = rand_augment
        self._rand_augment = _rand_augment(rand_augment, 32, CIFAR10_MEAN) if rand_augment is not None else None
        self._checked = False

    def _folder(self) -> Path:
        return Path(self.data_dir).resolve() / "cifar-10-batches-py"

    def check_files(self) -> None:
        """Check every file of ``cifar-10-batches-py`` against the published archive's MD5 (once per datamodule).

        torchvision reads the batches with :func:`pickle.load`, which runs any code a hostile file carries; it checks
        the same checksums first, so such a file never reaches the unpickler. Checking here as well names the bad
        file (torchvision only says "Dataset not found or corrupted"). One pass reads the 178 MB once.

        Raises:
            DataNotFoundError: no ``cifar-10-batches-py`` there, or a file of it missing.
            DataError: a file whose content is not the published one (truncated, damaged or replaced).
        """
        if self._checked:
            return
        from torchvision.datasets import CIFAR10
        from torchvision.datasets.utils import check_md5

        folder = self._folder()
        if not folder.is_dir():
            raise DataNotFoundError(
                f"CIFAR-10 not found at {folder}. Put the extracted 'cifar-10-batches-py' folder there, point "
                f"data.init_args.data_dir at it, or set data.init_args.download: true to let torchvision fetch it."
            )
        refetch = (
            f"run again with --data.init_args.download true to fetch the archive again (or delete {folder} and copy "
            f"a good 'cifar-10-batches-py' there)"
        )
        for name, md5 in [*CIFAR10.train_list, *CIFAR10.test_list, [CIFAR10.meta["filename"], CIFAR10.meta["md5"]]]:
            path = folder / name
            if not path.is_file():
                raise DataNotFoundError(f"CIFAR-10 file {path} is missing (incomplete copy); {refetch}")
            if not check_md5(path, md5):
                size = path.stat().st_size
                raise DataError(
                    f"CIFAR-10 file {path} is corrupt ({size} bytes whose MD5 is not the published one); {refetch}"
                )
        self._checked = True

    def prepare_data(self) -> None:
        try:
            self.check_files()
            return
        except DataError:
            if not self.download:
                raise
        from torchvision.datasets import CIFAR10

        try:  # torchvision checks every file and downloads and extracts the archive again if one is missing or bad
            CIFAR10(self.data_dir, train=True, download=True)
            CIFAR10(self.data_dir, train=False, download=True)
        except Exception as err:  # network errors come in many types
            raise RuntimeError(
                f"downloading CIFAR-10 into {self._folder().parent} failed ({type(err).__name__}: {err}). Without "
                f"internet, copy 'cifar-10-batches-py' there by hand and set download: false."
            ) from err
        self.check_files()

    def build_datasets(self):
        from torchvision.datasets import CIFAR10

        if not (self._folder() / "data_batch_1").is_file():
            self.prepare_data()
        self.check_files()  # on every rank (prepare_data runs on one per node), before torchvision unpickles a file
        aug, plain = self.transforms()
        train_aug = CIFAR10(self.data_dir, train=True, transform=aug)
        train_plain = CIFAR10(self.data_dir, train=True, transform=plain)
        test = CIFAR10(self.data_dir, train=False, transform=plain)
        return train_aug, train_plain, test

    def transforms(self):
        """``(training transform, plain transform)`` of a PIL image; the plain one serves α-validation and test."""
        from torchvision import transforms as T

        norm = [T.ToTensor(), T.Normalize(CIFAR10_MEAN, CIFAR10_STD)]
        aug = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()]
        aug += [self._rand_augment] if self._rand_augment is not None else []
        aug += [*norm, Cutout(self.cutout)] if self.cutout else norm
        return T.Compose(aug), T.Compose(norm)
