"""A damaged or hostile ``cifar-10-batches-py`` (fake folders; nothing is downloaded)."""

import pickle

import pytest

from dnas.data import CIFAR10DataModule
from dnas.errors import ConfigError, DataError


def _fake_cifar(root, batch1: bytes):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    (folder / "data_batch_1").write_bytes(batch1)
    return folder


class _Hostile:
    """Unpickling this runs ``open(marker, "w")``: what a hostile ``data_batch_1`` could do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_truncated_batch_file_is_named_with_the_way_to_fetch_it_again(tmp_path):
    folder = _fake_cifar(tmp_path, pickle.dumps({"data": b"\0" * 3072, "labels": [0]})[:100])
    dm = CIFAR10DataModule(data_dir=str(tmp_path), num_workers=0)
    with pytest.raises(DataError) as err:
        dm.prepare_data()
    message = str(err.value)
    assert str(folder / "data_batch_1") in message and "corrupt" in message
    assert "--data.init_args.download true" in message
    assert isinstance(err.value, ConfigError) and isinstance(err.value, ValueError)
    with pytest.raises(DataError, match="data_batch_1"):
        dm.setup("fit")  # every rank checks before loading


def test_hostile_batch_file_is_rejected_before_it_is_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    _fake_cifar(tmp_path, pickle.dumps({"data": _Hostile(marker), "labels": [0]}))
    dm = CIFAR10DataModule(data_dir=str(tmp_path), num_workers=0)
    with pytest.raises(DataError, match="data_batch_1.*corrupt"):
        dm.setup("fit")
    with pytest.raises(DataError, match="data_batch_1.*corrupt"):
        dm.prepare_data()
    assert not marker.exists()


def test_missing_batch_file_is_named(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    dm = CIFAR10DataModule(data_dir=str(tmp_path), num_workers=0)
    with pytest.raises(FileNotFoundError, match="data_batch_1 is missing"):
        dm.prepare_data()


def test_download_true_fetches_a_corrupt_folder_again(tmp_path, monkeypatch):
    import torchvision.datasets

    _fake_cifar(tmp_path, b"garbage")
    calls = []

    class FakeCIFAR10(torchvision.datasets.CIFAR10):
        def __init__(self, root, train=True, transform=None, target_transform=None, download=False):
            calls.append((root, train, download))

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    dm = CIFAR10DataModule(data_dir=str(tmp_path), num_workers=0, download=True)
    with pytest.raises(DataError, match="data_batch_1"):  # the fake download repaired nothing
        dm.prepare_data()
    assert calls == [(str(tmp_path), True, True), (str(tmp_path), False, True)]
