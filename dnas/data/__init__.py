"""Data modules usable from YAML: digits (embedded), CIFAR-10 (torchvision), image folders."""

from dnas.data.base import SearchDataModule, split_indices
from dnas.data.cifar import CIFAR10DataModule
from dnas.data.digits import DigitsDataModule
from dnas.data.folder import ImageFolderDataModule

__all__ = ["CIFAR10DataModule", "DigitsDataModule", "ImageFolderDataModule", "SearchDataModule", "split_indices"]
