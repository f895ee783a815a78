"""Data modules usable from YAML: digits (embedded), CIFAR-10 (torchvision), image folders, MNIST-1D, tables."""

from dnas.data.base import SearchDataModule, split_indices
from dnas.data.cifar import CIFAR10DataModule
from dnas.data.digits import DigitsDataModule
from dnas.data.folder import ImageFolderDataModule
from dnas.data.mnist1d import MNIST1DDataModule
from dnas.data.tabular import TabularDataModule

__all__ = [
    "CIFAR10DataModule",
    "DigitsDataModule",
    "ImageFolderDataModule",
    "MNIST1DDataModule",
    "SearchDataModule",
    "TabularDataModule",
    "split_indices",
]
