"""File IO: atomic writes (a crash mid-write leaves the previous file intact) and safe checkpoint reads.

Checkpoints are read only with ``torch.load(weights_only=True)`` (tensors and plain containers; pickled code is
refused), from a local path or any URL fsspec knows (:func:`load_checkpoint`).
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import secrets
import socket
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch
from pytorch_lightning.plugins import TorchCheckpointIO

from dnas.safe_read import file_info, reason
from dnas.storage import Location, location, put_url


def _atomic(path: str | Path, write: Callable[[IO[bytes]], None]) -> Location:
    """Write ``path`` through a temporary file in the same folder, then rename it over ``path``.

    The file gets the mode a plain ``open(path, "w")`` would give a new file (``0o666`` less the umask; ``tempfile``
    would make it 0600). The temporary is named ``.<name>.dnas-tmp-<host>-<pid>-<random>.tmp``; the first write of
    this process into a folder deletes such temporaries that a killed process left there (:func:`_sweep_temporaries`).

    A URL (:func:`dnas.storage.is_url`) is built in memory, then stored whole by :func:`dnas.storage.put_url`; the URL
    comes back as a string.
    """
    path = location(path)
    if isinstance(path, str):
        buffer = io.BytesIO()
        write(buffer)
        put_url(path, buffer.getvalue())
        return path
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


def atomic_write_text(path: str | Path, text: str) -> Location:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return _atomic(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_bytes(path: str | Path, data: bytes) -> Location:
    return _atomic(path, lambda f: f.write(data))


def atomic_torch_save(obj: Any, path: str | Path) -> Location:
    """``torch.save`` to ``path`` atomically."""
    return _atomic(path, lambda f: torch.save(obj, f))


def append_line(path: str | Path, line: str) -> None:
    """Append one line (history files); the line is written with a single ``write`` call.

    On a URL (object stores cannot append) the file is read and rewritten whole with the line added.
    """
    path = location(path)
    if isinstance(path, str):
        from fsspec.core import url_to_fs

        fs, fs_path = url_to_fs(path)
        old = fs.cat_file(fs_path) if fs.exists(fs_path) else b""
        atomic_write_bytes(path, old + (line.rstrip("\n") + "\n").encode("utf-8"))
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line.rstrip("\n") + "\n")


class CheckpointError(ValueError):
    """A checkpoint dnas does not load; the message names the file and the problem (``dnas: error:``, one line)."""


_PICKLED_CODE = r"GLOBAL ([\w.]+)|(reduce for unrecognized function|Unsupported class)"
"""What the weights-only unpickler says when a pickle calls or builds something (names the global)."""


def _load_error(err: Exception, name: str) -> CheckpointError:
    """Turn an exception of ``torch.load(weights_only=True)`` into a one-line :class:`CheckpointError`."""
    text = str(err)
    code = re.search(_PICKLED_CODE, text)
    if code:
        what = f"GLOBAL {code.group(1)}" if code.group(1) else code.group(2)
        return CheckpointError(
            f"{name} contains pickled code ({what}) and cannot be read with torch.load(weights_only=True); dnas "
            "never runs code from a checkpoint: use a checkpoint of tensors and plain containers (dnas writes those)"
        )
    if "WeightsUnpickler error:" in text:  # not a torch zip file, and not a pickle of plain data
        detail = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0]
        return CheckpointError(
            f"{name} is not a torch checkpoint that torch.load(weights_only=True) can read ({detail}): it is corrupt, "
            "or a pickle of objects or code, which dnas never loads"
        )
    detail = reason(err).split(". ")[0]
    return CheckpointError(
        f"{name} is truncated, corrupt or not a torch checkpoint (torch.load: {type(err).__name__}: {detail})"
    )


def _checkpoint_file(path: str | Path, what: str) -> tuple[Any, str, str]:
    """``(filesystem, path in it, name for messages)`` of an existing, non-empty regular file, else CheckpointError."""
    name = f"{what} {str(path)!r}"
    hint = "; a checkpoint is a single file written by torch.save"
    fs, fs_path, info = file_info(str(path), name, CheckpointError, hint=hint)
    if info.get("size") == 0:
        raise CheckpointError(f"{name} is empty (0 bytes); it was not written completely, use another checkpoint")
    return fs, fs_path, name


def _verify_zip(source: str | IO[bytes], name: str) -> bool:
    """Check the CRC of every record of a ``torch.save`` zip file; False when ``source`` is not a zip file."""
    if not zipfile.is_zipfile(source):
        if isinstance(source, io.BytesIO):
            head = source.getvalue()[:4]
        else:
            with open(source, "rb") as f:
                head = f.read(4)
        if head == b"PK\x03\x04":  # a zip file's start without its end (the central directory)
            raise CheckpointError(f"{name} is truncated: a torch.save zip file without its end (an incomplete write)")
        return False
    try:
        with zipfile.ZipFile(source) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise CheckpointError(f"{name} is truncated or corrupt ({reason(err)})") from None
    if bad is not None:
        raise CheckpointError(f"{name} is corrupt: the CRC of its record {bad!r} does not match its content")
    return True


def load_checkpoint(
    path: str | Path, map_location: Any = "cpu", *, what: str = "checkpoint", mmap: bool = False
) -> Any:
    """Read a checkpoint with ``torch.load(weights_only=True)`` from a local path or any URL fsspec knows.

    Tensors and plain containers load; pickled code (a ``GLOBAL`` the weights-only unpickler does not allow) is
    refused before anything runs. Local zip files (``torch.save``'s format) get their CRCs checked first, so a
    truncated or corrupted file is reported as such; a remote file is read whole into memory, then loaded.

    Args:
        path: local path, or a URL (``http(s)://``, ``s3://``, ... with the matching fsspec backend installed).
        map_location: as ``torch.load``'s.
        what: how messages call the file (``"checkpoint"``, ``"init_from checkpoint"``).
        mmap: map a local zip file's tensors instead of reading them (a cheap full check, see
            :func:`check_checkpoint`).

    Raises:
        CheckpointError: the file is not a checkpoint dnas loads; the message names the file and the problem.
    """
    from fsspec.implementations.local import LocalFileSystem

    fs, fs_path, name = _checkpoint_file(path, what)
    try:
        if isinstance(fs, LocalFileSystem):
            is_zip = _verify_zip(fs_path, name)
            return torch.load(fs_path, map_location=map_location, weights_only=True, mmap=mmap and is_zip)
        try:
            data = io.BytesIO(fs.cat_file(fs_path))
        except Exception as err:  # network errors come in many types
            raise CheckpointError(f"cannot read {name}: {reason(err)}") from None
        if not data.getbuffer().nbytes:
            raise CheckpointError(f"{name} is empty (0 bytes); it was not written completely, use another checkpoint")
        _verify_zip(data, name)
        data.seek(0)
        return torch.load(data, map_location=map_location, weights_only=True)
    except CheckpointError:
        raise
    except Exception as err:  # torch.load fails with UnpicklingError, RuntimeError, EOFError, KeyError, ...
        raise _load_error(err, name) from None


def check_checkpoint(path: str | Path, *, what: str = "checkpoint", read_remote: bool = True) -> None:
    """Refuse a bad checkpoint before a run starts: the checks of :func:`load_checkpoint`, tensors not kept.

    A local file is loaded with its tensors memory-mapped (cheap); a remote one is downloaded and loaded when
    ``read_remote``, otherwise only its existence and size are checked.

    Raises:
        CheckpointError: as :func:`load_checkpoint`.
    """
    if read_remote or isinstance(location(path), Path):
        load_checkpoint(path, map_location="cpu", what=what, mmap=True)
    else:
        _checkpoint_file(path, what)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO writing to a temporary file, then renaming it; reading only plain data.

    A crash mid-write (or a full disk) leaves the previous checkpoint valid. Loading goes through
    :func:`load_checkpoint` (``torch.load(weights_only=True)``, local paths and fsspec URLs alike), so a checkpoint
    holding pickled code is refused, whatever ``weights_only`` Lightning passes. The ``dnas`` CLI installs it unless
    another CheckpointIO plugin is configured (that plugin then decides how files are read; the CLI still checks
    ``--ckpt_path`` with :func:`check_checkpoint` before the run).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(
        self, path: str | Path, map_location: Any = "cpu", weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Load ``path`` with ``torch.load(weights_only=True)``; ``weights_only=False`` is refused, not honoured.

        Tensors load on the CPU by default, as with Lightning's ``TorchCheckpointIO``.

        Raises:
            CheckpointError: as :func:`load_checkpoint`, or ``weights_only=False`` was asked for.
        """
        if weights_only is False:
            raise CheckpointError(
                f"checkpoint {str(path)!r}: weights_only=False asked for, but dnas reads checkpoints only with "
                "torch.load(weights_only=True) and never runs pickled code; drop weights_only=False"
            )
        return load_checkpoint(path, map_location=map_location)


def log_dir(trainer: Any) -> Location:
    """The run's log directory, as ``trainer.log_dir`` resolves it, but without its broadcast.

    A Path, or the URL string where the logger (or ``default_root_dir``) is an fsspec URL: join names to it with
    :func:`dnas.storage.join`.

    ``Trainer.log_dir`` is a collective under DDP (it broadcasts rank 0's directory), so calling it from code that
    only rank 0 runs (writing genotypes, plots, reports) hangs the run. Rank 0's local answer is the broadcast value.
    """
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    if trainer.loggers:
        logger = trainer.loggers[0]
        path = logger.log_dir if isinstance(logger, (TensorBoardLogger, CSVLogger)) else logger.save_dir
    else:
        path = trainer.default_root_dir
    return location(path or trainer.default_root_dir)


def rng_states() -> dict[str, Any]:
    """This process's random number generators as plain data (a checkpoint that loads with ``weights_only=True``).

    The states Lightning's own ``pytorch_lightning.utilities.seed._collect_rng_states`` collects — Python's
    ``random``, NumPy's global generator, torch's CPU generator and every CUDA device's — with NumPy's key array as a
    tensor (a NumPy array would need unpickling).
    """
    from lightning_fabric.utilities.seed import _collect_rng_states

    states = _collect_rng_states(include_cuda=True)
    name, keys, pos, has_gauss, cached = states["numpy"]
    states["numpy"] = [str(name), torch.from_numpy(keys.astype("int64")), int(pos), int(has_gauss), float(cached)]
    version, state, gauss = states["python"]
    states["python"] = [int(version), list(state), gauss]
    states["torch.cuda"] = list(states["torch.cuda"])
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what :func:`rng_states` collected.

    CUDA generators are restored for the devices this process sees (a checkpoint written with more GPUs restores the
    first ones; on a machine without CUDA, none).
    """
    import random

    import numpy as np

    torch.set_rng_state(states["torch"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, state, gauss = states["python"]
    random.setstate((version, tuple(state), gauss))
    cuda = states.get("torch.cuda") or []
    if cuda and torch.cuda.is_available():
        for device, state in enumerate(cuda[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state, device)


def gather_rng_states(trainer: Any) -> list[dict[str, Any]]:
    """:func:`rng_states` of every rank, in rank order (a collective under DDP: call it on every rank).

    Lightning calls ``on_save_checkpoint`` on every rank (only rank zero writes), so a checkpoint can carry each
    rank's generators, not rank zero's alone.
    """
    states = rng_states()
    world = int(getattr(trainer, "world_size", 1) or 1)
    if world == 1 or not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [states]
    gathered: list[Any] = [None] * world
    torch.distributed.all_gather_object(gathered, states)
    return gathered


def restore_rng_states(per_rank: list[dict[str, Any]], rank: int, world_size: int = 1) -> None:
    """Restore rank ``rank``'s generators from :func:`gather_rng_states`' list.

    Resuming with another number of processes is not an exact resume: rank ``r`` then takes the streams of saved rank
    ``r mod n`` (said once, as a warning).
    """
    from pytorch_lightning.utilities import rank_zero_warn

    if world_size != len(per_rank):
        rank_zero_warn(
            f"the checkpoint holds the random generators of {len(per_rank)} process(es) but this run has "
            f"{world_size}; rank r continues saved rank r mod {len(per_rank)}'s streams, so the resume is not exact"
        )
    set_rng_states(per_rank[rank % len(per_rank)])
