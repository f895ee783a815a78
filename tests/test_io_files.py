"""Atomic writes: file modes follow the umask; temporaries left by a killed writer are cleaned, nothing else."""

import os
import stat
import subprocess
import sys
import time

import pytest
import torch

from dnas import io as dio
from dnas.io import AtomicCheckpointIO, atomic_torch_save, atomic_write_text


@pytest.fixture
def umask():
    """Set the process umask for one test, restoring it afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_the_umask_mode(tmp_path, umask, mask, expected):
    umask(mask)
    assert _mode(atomic_write_text(tmp_path / "genotype.json", "{}")) == expected
    assert _mode(atomic_torch_save({"a": torch.ones(1)}, tmp_path / "last.ckpt")) == expected
    AtomicCheckpointIO().save_checkpoint({"a": torch.ones(1)}, tmp_path / "ckpt" / "epoch=0.ckpt")
    assert _mode(tmp_path / "ckpt" / "epoch=0.ckpt") == expected
    assert _mode(atomic_write_text(tmp_path / "genotype.json", "{}")) == expected  # replacing, too


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _ours(folder, name: str, pid: int, host: str | None = None, age_s: float = 0.0):
    path = folder / f".{name}.dnas-tmp-{host or dio._host_tag()}-{pid}-0123abcd.tmp"
    path.write_bytes(b"half a checkpoint")
    if age_s:
        then = time.time() - age_s
        os.utime(path, (then, then))
    return path


def test_temporaries_of_killed_writers_are_cleaned_and_nothing_else(tmp_path):
    dead = _ours(tmp_path, "last.ckpt", _dead_pid())
    alive = _ours(tmp_path, "epoch=1.ckpt", os.getpid())  # a write in progress in this process
    other_host = _ours(tmp_path, "last.ckpt", _dead_pid(), host="00000000")  # pid of another machine: unknown
    other_host_old = _ours(tmp_path, "genotype.json", 12345, host="00000000", age_s=dio.STALE_TEMPORARY_S + 60)
    user = [tmp_path / ".foo.tmp", tmp_path / ".last.ckpt.k2j4h5g6.tmp", tmp_path / "last.ckpt.dnas-tmp-notes"]
    for path in user:  # a user's files, and temporaries of older dnas versions (mkstemp names)
        path.write_text("keep me")
    folder = tmp_path / f".x.dnas-tmp-{dio._host_tag()}-{_dead_pid()}-0123abcd.tmp"
    folder.mkdir()  # our name, but not a file: kept

    atomic_torch_save({"a": torch.ones(1)}, tmp_path / "last.ckpt")

    assert not dead.exists() and not other_host_old.exists()
    assert alive.exists() and other_host.exists()
    assert all(p.read_text() == "keep me" for p in user)
    assert folder.is_dir()


def test_checkpoint_io_first_save_cleans_its_folder(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    dead = _ours(folder, "last.ckpt", _dead_pid())
    AtomicCheckpointIO().save_checkpoint({"a": torch.ones(1)}, folder / "last.ckpt")
    assert not dead.exists()
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt"]


def test_temporary_has_a_name_of_ours_while_writing(tmp_path):
    seen = []

    def write(f):
        seen.extend(p.name for p in tmp_path.iterdir())
        f.write(b"x")

    dio._atomic(tmp_path / "report.md", write)
    assert len(seen) == 1 and dio._TMP_NAME.match(seen[0]) and seen[0].startswith(".report.md.dnas-tmp-")
    assert str(os.getpid()) in seen[0]
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_fsspec_urls_are_written_through_fsspec_not_as_local_folders(tmp_path, monkeypatch):
    import fsspec

    from dnas.io import append_line, load_checkpoint

    monkeypatch.chdir(tmp_path)
    fs = fsspec.filesystem("memory")
    assert atomic_write_text("memory://dnas-io/run/genotype.json", '{"a": 1}') == "memory://dnas-io/run/genotype.json"
    atomic_torch_save({"w": torch.arange(3)}, "memory://dnas-io/run/weights.pt")
    append_line("memory://dnas-io/run/history.jsonl", "1")
    append_line("memory://dnas-io/run/history.jsonl", "2")
    assert fs.cat_file("/dnas-io/run/genotype.json") == b'{"a": 1}'
    assert fs.cat_file("/dnas-io/run/history.jsonl") == b"1\n2\n"
    assert torch.equal(load_checkpoint("memory://dnas-io/run/weights.pt")["w"], torch.arange(3))
    assert not any(tmp_path.iterdir())  # no local "memory:" folder


def test_search_checkpoints_go_to_an_fsspec_url_and_resume_from_it(tmp_path, monkeypatch):
    import fsspec
    import pytorch_lightning as pl

    import dnas
    from dnas.cells.darts import DartsSupernet
    from dnas.data import DigitsDataModule

    monkeypatch.chdir(tmp_path)

    def fit(steps, ckpt_path=None):
        torch.manual_seed(0)
        model = dnas.DARTS(DartsSupernet(init_channels=2, num_classes=10, layers=2, in_channels=1))
        trainer = pl.Trainer(
            max_steps=steps, limit_val_batches=0, accelerator="cpu", logger=False, enable_progress_bar=False,
            enable_model_summary=False, default_root_dir=tmp_path, plugins=[AtomicCheckpointIO()],
            callbacks=[pl.callbacks.ModelCheckpoint(dirpath="memory://dnas-ckpt", save_last=True)],
        )  # fmt: skip
        trainer.fit(model, DigitsDataModule(batch_size=8), ckpt_path=ckpt_path)
        return trainer

    fit(2)
    assert fsspec.filesystem("memory").exists("/dnas-ckpt/last.ckpt")
    assert not (tmp_path / "memory:").exists()
    resumed = fit(3, ckpt_path="memory://dnas-ckpt/last.ckpt")
    assert resumed.global_step == 3
