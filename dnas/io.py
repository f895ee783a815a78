"""Atomic file writes: a crash mid-write leaves the previous file intact (write a temporary file, then rename)."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import secrets
import socket
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch
from pytorch_lightning.plugins import TorchCheckpointIO


def _atomic(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` through a temporary file in the same folder, then rename it over ``path``.

    The file gets the mode a plain ``open(path, "w")`` would give a new file (``0o666`` less the umask; ``tempfile``
    would make it 0600). The temporary is named ``.<name>.dnas-tmp-<host>-<pid>-<random>.tmp``; the first write of
    this process into a folder deletes such temporaries that a killed process left there (:func:`_sweep_temporaries`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_temporaries(path.parent)
    fd, tmp = _create_temporary(path)
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


_TMP_TAG = "dnas-tmp"
_TMP_NAME = re.compile(rf"^\..+\.{_TMP_TAG}-(?P<host>[0-9a-f]{{8}})-(?P<pid>[0-9]+)-[0-9a-f]{{8}}\.tmp$")
"""Names of :func:`_atomic`'s temporaries; nothing else is ever deleted by :func:`_sweep_temporaries`."""

STALE_TEMPORARY_S = 24 * 3600.0
"""A temporary of ours untouched this long is deleted whoever wrote it (another machine's, or a pid we cannot test)."""

_swept: set[str] = set()


@functools.lru_cache(maxsize=1)
def _host_tag() -> str:
    """8 hex digits naming this machine's boot and pid namespace: only there does a pid name the writing process.

    Two containers share a host name and a kernel but not their pids; the pid namespace tells them apart.
    """
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):  # Linux only; elsewhere the host name alone
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
        parts.append(os.readlink("/proc/self/ns/pid"))
    return f"{zlib.crc32(chr(0).join(parts).encode('utf-8', 'replace')):08x}"


def _create_temporary(path: Path) -> tuple[int, str]:
    """Create ``path``'s temporary exclusively; the kernel applies the umask to mode ``0o666`` as for any new file."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{_TMP_TAG}-{_host_tag()}-{os.getpid()}-{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), str(tmp)
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file next to {path}")  # pragma: no cover


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` (of this pid namespace) exists; True where that cannot be told."""
    if pid == os.getpid() or os.name == "nt":  # on Windows os.kill(pid, 0) would terminate the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):
        return True  # another user's process (EPERM), or a pid out of range: keep its file
    return True


def _sweep_temporaries(folder: Path) -> None:
    """Delete temporaries of ours that a killed writer left in ``folder``; once per folder and process, never raises.

    Deleted: files named like :data:`_TMP_NAME` written on this machine (same :func:`_host_tag`) by a process that no
    longer exists, and any of them untouched for :data:`STALE_TEMPORARY_S`. Files of any other name (a user's
    ``.foo.tmp``, temporaries of older dnas versions) are never touched.
    """
    key = os.path.abspath(folder)
    if key in _swept:
        return
    _swept.add(key)
    host, now = _host_tag(), time.time()
    try:
        with os.scandir(folder) as entries:
            ours = [(e, m) for e in entries if (m := _TMP_NAME.match(e.name)) is not None]
    except OSError:
        return  # an unreadable folder: the write itself reports what is wrong
    for entry, match in ours:
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to delete
            if not entry.is_file(follow_symlinks=False):
                continue
            dead = match["host"] == host and not _pid_alive(int(match["pid"]))
            if dead or now - entry.stat(follow_symlinks=False).st_mtime >= STALE_TEMPORARY_S:
                os.unlink(entry.path)


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
