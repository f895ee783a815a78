"""Where run files live: a local path or an fsspec URL (``s3://``, ``gs://``, ``memory://``, ...).

Lightning accepts any fsspec URL as ``default_root_dir``, a logger's ``save_dir`` or a checkpoint ``dirpath``; so
does dnas for everything it writes into a run (checkpoints, genotypes, plots, reports, exports) and reads from one
(checkpoints, genotype files). A *location* is a :class:`pathlib.Path` for a local file and the URL string for
anything else: ``Path("s3://b/x")`` would be the local folder ``s3:/b/x``. Local files keep the operating-system
operations of :mod:`dnas.io` (temporary file, ``fsync``, ``os.replace``); a URL goes through its fsspec filesystem
(``fsspec.core.url_to_fs``, what ``lightning_fabric.utilities.cloud_io.get_filesystem`` uses).

This module imports fsspec only when a URL is used (genotype loading stays light).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import secrets
from pathlib import Path
from typing import Any

Location = Path | str
"""A local path or an fsspec URL string."""


def is_url(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a file through an fsspec protocol other than the local one (``file://``)."""
    text = os.fspath(path)
    return "://" in text and not text.startswith("file://")


def location(path: str | os.PathLike[str]) -> Location:
    """``path`` as a location: the URL string for :func:`is_url`, else a Path (a ``file://`` URL becomes its path)."""
    text = os.fspath(path)
    if text.startswith("file://"):
        from fsspec.implementations.local import LocalFileSystem

        return Path(LocalFileSystem._strip_protocol(text))
    return text if is_url(text) else Path(text)


def join(base: str | os.PathLike[str], *names: str) -> Location:
    """``base / name / ...`` for a Path or a URL (a URL is joined with ``/``, whatever the operating system)."""
    base = location(base)
    if isinstance(base, Path):
        return base.joinpath(*names)
    return "/".join([base.rstrip("/"), *(n.strip("/") for n in names)])


def parent(path: Location) -> Location:
    """The folder holding ``path`` (for a URL, everything before its last ``/``)."""
    path = location(path)
    return path.parent if isinstance(path, Path) else path.rstrip("/").rsplit("/", 1)[0]


def with_suffix(path: Location, suffix: str) -> Location:
    """``path`` with its suffix replaced by ``suffix`` (``".png"``), as :meth:`pathlib.PurePath.with_suffix`."""
    path = location(path)
    if isinstance(path, Path):
        return path.with_suffix(suffix)
    head, name = path.rsplit("/", 1)
    stem = name[: name.rfind(".")] if "." in name.lstrip(".") else name
    return f"{head}/{stem}{suffix}"


def _remote(url: str, method: str) -> Any:
    """``fs.<method>(path)`` on ``url``'s fsspec filesystem."""
    from fsspec.core import url_to_fs

    fs, fs_path = url_to_fs(url)
    return getattr(fs, method)(fs_path)


def is_file(path: Location) -> bool:
    path = location(path)
    return path.is_file() if isinstance(path, Path) else _remote(path, "isfile")


def read_bytes(path: Location) -> bytes:
    """The content of a file of a run (one the run wrote itself; user-named files go through :mod:`dnas.safe_read`)."""
    path = location(path)
    return path.read_bytes() if isinstance(path, Path) else _remote(path, "cat_file")


def whole_object_puts(fs: Any) -> bool:
    """Whether one ``pipe_file`` makes a file appear whole or not at all on ``fs``.

    True for object stores (S3, GCS, Azure: Lightning's ``_is_object_storage``; an upload, multipart included,
    becomes visible only once complete) and fsspec's in-memory filesystem (one dictionary assignment).
    """
    from fsspec.implementations.memory import MemoryFileSystem
    from lightning_fabric.utilities.cloud_io import _is_object_storage

    return isinstance(fs, MemoryFileSystem) or _is_object_storage(fs)


def put_url(url: str, data: bytes) -> None:
    """Store ``data`` at ``url`` so that readers see the previous file or the new one, never a part.

    On an object store (:func:`whole_object_puts`) that is one upload. On any other filesystem (SFTP, HDFS, SMB, ...)
    the data goes to a temporary file beside the target (``.<name>.dnas-tmp-<random>.tmp``), which ``fs.mv`` then
    renames over it: atomic where the filesystem renames atomically (SFTP ``posix-rename``, HDFS); a failed write
    removes its temporary.
    """
    from fsspec.core import url_to_fs

    fs, fs_path = url_to_fs(url)
    parent = fs._parent(fs_path)
    fs.makedirs(parent, exist_ok=True)
    if whole_object_puts(fs):
        fs.pipe_file(fs_path, data)
        return
    tmp = posixpath.join(parent, f".{posixpath.basename(fs_path)}.dnas-tmp-{secrets.token_hex(4)}.tmp")
    try:
        fs.pipe_file(tmp, data)
        fs.mv(tmp, fs_path)
    except BaseException:
        with contextlib.suppress(Exception):  # gone already, or the connection is: keep the error that matters
            fs.rm_file(tmp)
        raise


STORAGE_KEYS = frozenset({"default_root_dir", "save_dir", "dirpath", "ckpt_path", "init_from", "genotype", "dump_dir"})
"""Configuration keys that name a file or folder dnas or Lightning opens through fsspec (other URLs, such as an
experiment tracker's ``tracking_uri``, are no files)."""


def unavailable_url(value: Any, key: str = "") -> str | None:
    """A line naming the first storage URL in a configuration that fsspec cannot open; None if there is none.

    ``value`` is searched through nested dicts, lists and namespaces for strings under :data:`STORAGE_KEYS`.
    ``s3://`` needs ``s3fs``, ``gs://`` ``gcsfs``, ...; a run whose ``default_root_dir``, logger ``save_dir`` or
    checkpoint ``dirpath`` names a protocol without its package would otherwise fail with a traceback while its
    logger is built (or at its first checkpoint).
    """
    if isinstance(value, str):
        if key.rsplit(".", 1)[-1].split("[")[0] not in STORAGE_KEYS or not is_url(value):
            return None
        import fsspec
        from fsspec.utils import get_protocol

        for part in value.split("::"):  # chained URLs: simplecache::s3://...
            protocol = get_protocol(part)
            try:
                fsspec.get_filesystem_class(protocol)
            except (ImportError, ValueError) as err:
                where = f"{key} " if key else ""
                return f"cannot use {where}{value!r}: fsspec has no usable filesystem for {protocol!r} ({err})"
        return None
    if hasattr(value, "items"):
        items: Any = value.items()
    elif isinstance(value, (list, tuple)):
        items = ((f"{key}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for k, v in items:
        name = k if isinstance(value, (list, tuple)) or not key else f"{key}.{k}"
        problem = unavailable_url(v, name)
        if problem is not None:
            return problem
    return None
