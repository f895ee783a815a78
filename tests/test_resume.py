"""Exact resume: a search killed mid-epoch (SIGKILL, really) and resumed from last.ckpt ends where an
uninterrupted run of the same seed ends: bitwise-equal α and the same genotype."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

KILLER = """
import os, signal
from pytorch_lightning.callbacks import Callback

class KillAt(Callback):
    def __init__(self, epoch: int = 1, batch: int = 1):
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)
"""


def _fit(tmp_path: Path, name: str, *extra: str) -> subprocess.CompletedProcess:
    out = tmp_path / name
    args = [
        sys.executable, "-m", "dnas", "fit", "--config", str(ROOT / "configs" / "quickstart.yaml"),
        "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir", str(out),
        "--trainer.default_root_dir", str(out),
        "--model.init_args.supernet.init_args.init_channels", "4",
        "--model.init_args.supernet.init_args.layers", "3",
        "--model.init_args.a_optimizer", "torch.optim.Adam", "--model.init_args.a_optimizer.lr", "0.05",
        "--trainer.callbacks+=dnas.callbacks.ArchSyncCheck", "--trainer.callbacks.dump_dir", str(out / "final"),
        *extra,
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", PYTHONPATH=str(tmp_path))
    return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # three CLI fits (2 epochs of 3 batches, one killed in its last epoch)
def test_killed_search_resumes_to_the_same_alpha_and_genotype(tmp_path):
    (tmp_path / "killer.py").write_text(KILLER)
    straight = _fit(tmp_path, "straight")
    assert straight.returncode == 0, straight.stderr[-3000:]

    killed = _fit(tmp_path, "resumed", "--trainer.callbacks+=killer.KillAt")
    assert killed.returncode == -signal.SIGKILL  # really killed, mid-epoch 1 (the last): resuming redoes it
    last = tmp_path / "resumed" / "quickstart" / "version_0" / "checkpoints" / "last.ckpt"
    assert last.is_file()
    assert not (tmp_path / "resumed" / "final").exists()

    resumed = _fit(tmp_path, "resumed", "--ckpt_path", str(last))
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    a = json.loads((tmp_path / "straight" / "final" / "arch_rank0.json").read_text())
    b = json.loads((tmp_path / "resumed" / "final" / "arch_rank0.json").read_text())
    assert a["alphas"] == b["alphas"]  # bitwise: JSON floats round-trip exactly
    assert a["genotype"] == b["genotype"]
    # and the comparison is not vacuous: α moved away from its initial scale (1e-3)
    assert max(abs(v) for row in a["alphas"]["arch.normal.alpha"] for v in row) > 1e-2
