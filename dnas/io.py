"""Atomic file writes: a crash mid-write leaves the previous file intact (write a temporary file, then rename)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch
from pytorch_lightning.plugins import TorchCheckpointIO


def _atomic(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return _atomic(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return _atomic(path, lambda f: f.write(data))


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to ``path`` atomically."""
    return _atomic(path, lambda f: torch.save(obj, f))


def append_line(path: str | Path, line: str) -> None:
    """Append one line (history files); the line is written with a single ``write`` call."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line.rstrip("\n") + "\n")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO writing to a temporary file, then renaming it.

    A crash mid-write (or a full disk) leaves the previous checkpoint valid. The ``dnas`` CLI installs it unless
    another CheckpointIO plugin is configured.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        atomic_torch_save(checkpoint, path)


def log_dir(trainer: Any) -> Path:
    """The run's log directory, as ``trainer.log_dir`` resolves it, but without its broadcast.

    ``Trainer.log_dir`` is a collective under DDP (it broadcasts rank 0's directory), so calling it from code that
    only rank 0 runs (writing genotypes, plots, reports) hangs the run. Rank 0's local answer is the broadcast value.
    """
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    if trainer.loggers:
        logger = trainer.loggers[0]
        path = logger.log_dir if isinstance(logger, (TensorBoardLogger, CSVLogger)) else logger.save_dir
    else:
        path = trainer.default_root_dir
    return Path(path or trainer.default_root_dir)
