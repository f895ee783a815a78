"""MNIST-1D (generated offline) and scikit-learn tabular datamodules."""

import numpy as np
import pytest
import torch

from dnas.data.mnist1d import MNIST1DDataModule, generate_mnist1d
from dnas.data.tabular import TabularDataModule


def test_mnist1d_is_generated_not_downloaded(monkeypatch):
    import mnist1d.data

    def no_network(*args, **kwargs):
        raise AssertionError("MNIST-1D must not be downloaded")

    monkeypatch.setattr(mnist1d.data, "get_dataset", no_network)
    monkeypatch.setattr(mnist1d.data.requests, "get", no_network)
    np.random.seed(123)
    expected_next = np.random.rand()
    np.random.seed(123)
    data = generate_mnist1d(num_samples=200, seed=42)
    assert np.random.rand() == expected_next  # the generator's global reseed is undone
    assert data["x"].shape == (160, 1, 40) and data["x_test"].shape == (40, 1, 40)  # package default 80/20 split
    assert data["x"].dtype == torch.float32 and data["y"].dtype == torch.long
    assert set(data["y"].tolist()) == set(range(10))
    again = generate_mnist1d(num_samples=200, seed=42)
    assert torch.equal(data["x"], again["x"])  # the seed fixes the data set


def test_mnist1d_datamodule_splits():
    dm = MNIST1DDataModule(num_samples=200, batch_size=16)
    dm.setup()
    assert len(dm.train_idx) == 80 and len(dm.arch_idx) == 80 and not set(dm.train_idx) & set(dm.arch_idx)
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (16, 1, 40) and dm.num_classes == 10


@pytest.mark.parametrize("name,features,classes", [("breast_cancer", 30, 2), ("wine", 13, 3), ("iris", 4, 3)])
def test_tabular_datamodule(name, features, classes):
    dm = TabularDataModule(dataset=name, batch_size=8)
    assert dm.num_classes == classes and dm.input_size == (features,)
    dm.setup()
    train = torch.stack([dm._train_plain[i][0] for i in range(len(dm._train_plain))])
    torch.testing.assert_close(train.mean(0), torch.zeros(features), atol=1e-5, rtol=0)  # standardised on train rows
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (8, features) and int(y.max()) < classes


def test_tabular_unknown_dataset_is_named():
    with pytest.raises(ValueError, match="'titanic'.*breast_cancer"):
        TabularDataModule(dataset="titanic")
