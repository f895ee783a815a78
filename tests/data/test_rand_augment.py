"""RandAugment (timm) as an opt-in training augmentation of the image datamodules (CIFAR-10, image folders)."""

import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from timm.data.auto_augment import RandAugment
from torchvision import transforms as T

from dnas.data import CIFAR10DataModule, ImageFolderDataModule
from dnas.data.cifar import Cutout
from dnas.errors import ConfigError

CONFIG = "rand-m9-mstd0.5"


def _images(tmp_path, n: int = 8, size: int = 16):
    """``n`` noise pictures per class (texture, so that every RandAugment op changes pixels)."""
    gen = torch.Generator().manual_seed(0)
    for cls in ("a", "b"):
        folder = tmp_path / "train" / cls
        folder.mkdir(parents=True)
        for i in range(n):
            pixels = torch.randint(0, 256, (size, size, 3), generator=gen, dtype=torch.uint8).numpy()
            Image.fromarray(pixels, "RGB").save(folder / f"{i}.png")
    return str(tmp_path)


def _steps(transform: T.Compose) -> list[type]:
    return [type(t) for t in transform.transforms]


def test_off_by_default_the_recipes_transforms_stay_exact(tmp_path):
    aug, plain = CIFAR10DataModule(data_dir=str(tmp_path)).transforms()
    assert _steps(aug) == [T.RandomCrop, T.RandomHorizontalFlip, T.ToTensor, T.Normalize]
    assert _steps(plain) == [T.ToTensor, T.Normalize]
    aug, _ = ImageFolderDataModule(_images(tmp_path)).transforms()
    assert RandAugment not in _steps(aug)


def test_cifar_applies_it_in_training_only_after_crop_and_flip(tmp_path):
    dm = CIFAR10DataModule(data_dir=str(tmp_path), rand_augment=CONFIG, cutout=16)
    aug, plain = dm.transforms()
    assert _steps(aug) == [T.RandomCrop, T.RandomHorizontalFlip, RandAugment, T.ToTensor, T.Normalize, Cutout]
    assert RandAugment not in _steps(plain)
    image = Image.fromarray(torch.randint(0, 256, (32, 32, 3), dtype=torch.uint8).numpy(), "RGB")
    assert aug(image).shape == plain(image).shape == (3, 32, 32)


@pytest.mark.parametrize("channels", [3, 1])
def test_image_folder_train_only_seeded_and_shape_kept(tmp_path, channels):
    root = _images(tmp_path)
    on = ImageFolderDataModule(root, image_size=16, channels=channels, augment=False, rand_augment=CONFIG)
    off = ImageFolderDataModule(root, image_size=16, channels=channels, augment=False)
    for dm in (on, off):
        dm.setup()

    def draw(dm, seed):
        pl.seed_everything(seed, verbose=False)
        return torch.stack([dm.weight_dataset()[i][0] for i in range(6)])

    assert draw(on, 3).shape == (6, channels, 16, 16)
    assert torch.equal(draw(on, 3), draw(on, 3))  # the same seed, the same augmented images
    assert not torch.equal(draw(on, 3), draw(on, 4))
    plain = torch.stack([on.arch_dataset(augment=False)[i][0] for i in range(6)])
    # without crop/flip the training images equal the plain ones exactly; RandAugment is what changes them
    assert torch.equal(draw(off, 3), torch.stack([off.weight_dataset()[i][0] for i in range(6)]))
    assert not torch.equal(draw(on, 3), torch.stack([on._train_plain[i][0] for i in on.train_idx[:6]]))
    # the architecture's validation half and the test split never see it
    assert torch.equal(plain, torch.stack([off.arch_dataset(augment=False)[i][0] for i in range(6)]))
    assert torch.equal(on._test[0][0], off._test[0][0])


@pytest.mark.parametrize("config", ["augmix-m5", "rand-foo", "rand-x9", "rand-m9x", ""])
def test_a_string_timm_would_not_read_is_named(tmp_path, config):
    with pytest.raises(ConfigError, match="rand_augment=.*'rand-m9-mstd0.5'"):
        CIFAR10DataModule(data_dir=str(tmp_path), rand_augment=config)
