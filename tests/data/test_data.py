import pytest
import torch

from dnas.data import CIFAR10DataModule, DigitsDataModule, ImageFolderDataModule, split_indices


def test_split_is_deterministic_disjoint_and_complete():
    a = split_indices(100, 0.5, seed=3)
    b = split_indices(100, 0.5, seed=3)
    assert a == b
    assert len(a[0]) == 50 and not set(a[0]) & set(a[1]) and sorted(a[0] + a[1]) == list(range(100))
    assert split_indices(100, 0.5, seed=4) != a
    with pytest.raises(ValueError, match="train_portion"):
        split_indices(100, 1.5, seed=0)


def test_digits_search_batches_have_both_halves():
    dm = DigitsDataModule(batch_size=16)
    dm.setup("fit")
    assert len(dm.train_idx) + len(dm.arch_idx) == len(dm._train_aug)
    batch, _, _ = next(iter(dm.train_dataloader()))
    xt, yt = batch["train"]
    xa, ya = batch["arch"]
    assert xt.shape == (16, 1, 8, 8) and xa.shape == (16, 1, 8, 8)
    assert yt.dtype == torch.long and int(yt.max()) < 10
    # the two halves and the test set never share a sample
    train_ids = {dm._train_aug.indices[i] for i in dm.train_idx}
    arch_ids = {dm._train_aug.indices[i] for i in dm.arch_idx}
    test_ids = set(dm._test.indices)
    assert not train_ids & arch_ids and not (train_ids | arch_ids) & test_ids


def test_digits_retrain_mode_is_one_loader():
    dm = DigitsDataModule(batch_size=32, search=False)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 1, 8, 8)
    assert len(dm.val_dataloader().dataset) == len(dm.test_dataloader().dataset)


def test_cifar_missing_without_download_says_where_and_what_to_do(tmp_path):
    dm = CIFAR10DataModule(data_dir=str(tmp_path / "nowhere"), download=False)
    with pytest.raises(FileNotFoundError) as err:
        dm.prepare_data()
    message = str(err.value)
    assert str(tmp_path / "nowhere") in message and "download: true" in message


def test_image_folder(tmp_path):
    from PIL import Image

    for cls in ("cat", "dog"):
        d = tmp_path / "train" / cls
        d.mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (10, 12), (i * 40, 0, 0) if cls == "cat" else (0, i * 40, 0)).save(d / f"{i}.png")
    dm = ImageFolderDataModule(str(tmp_path), image_size=8, channels=1, batch_size=4)
    assert dm.num_classes == 2 and dm.input_size == (1, 8, 8)
    batch, _, _ = next(iter(dm.train_dataloader()))
    assert batch["train"][0].shape[1:] == (1, 8, 8)
    with pytest.raises(FileNotFoundError, match="train"):
        ImageFolderDataModule(str(tmp_path / "nothing"))
