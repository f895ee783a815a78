"""Checkpoints carry every random generator a search may draw from: Python, NumPy, torch CPU and every CUDA device."""

import random

import numpy as np
import pytorch_lightning as pl
import torch

import dnas
from dnas.cells.darts import DartsSupernet
from dnas.data import DigitsDataModule
from dnas.io import load_checkpoint, rng_states, set_rng_states


def _draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_a_checkpoint_restores_python_numpy_and_torch_generators(tmp_path):
    model = dnas.DARTS(DartsSupernet(init_channels=2, num_classes=10, layers=2, in_channels=1))
    trainer = pl.Trainer(
        max_steps=1, limit_val_batches=0, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(model, DigitsDataModule(batch_size=8))
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    trainer.save_checkpoint(tmp_path / "a.ckpt")
    expected = _draws()
    assert _draws() != expected  # the generators moved on
    checkpoint = load_checkpoint(tmp_path / "a.ckpt")  # weights_only=True: the states are plain data
    model.on_load_checkpoint(checkpoint)
    assert _draws() == expected


def test_cuda_generators_are_saved_and_restored_per_device(monkeypatch):
    saved = [torch.tensor([1], dtype=torch.uint8), torch.tensor([2], dtype=torch.uint8)]
    restored = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: saved)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.__setitem__(device, state))
    states = rng_states()
    assert states["torch.cuda"] == saved
    set_rng_states(states)
    assert restored == {0: saved[0], 1: saved[1]}
    # a machine with fewer GPUs restores the ones it has
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    restored.clear()
    set_rng_states(states)
    assert restored == {0: saved[0]}
