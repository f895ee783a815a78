"""Reading a file a user names (genotype, cost table): a regular file of bounded size, checked before it is read.

:func:`read_user_file` is the one place that opens such files. It refuses anything but a regular file before opening
it (a FIFO would block forever, ``/dev/zero`` never ends), re-checks the opened descriptor (the path may be swapped
between the two), reads at most ``limit + 1`` bytes, and turns every ``OSError`` (permission denied, a symlink loop,
a name too long, ...) into one line of the caller's error type. An fsspec URL (``s3://``, ``memory://``, ...) gets
the same checks through its filesystem's ``info`` (type and size) before a bounded read. It imports nothing heavy, so
genotype loading stays free of PyTorch Lightning.
"""

from __future__ import annotations

import json
import math
import os
import stat
from typing import Any

from dnas.storage import location

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def shown_path(path: str | os.PathLike[str], limit: int = 200) -> str:
    """``repr`` of ``path`` shortened to ``limit`` characters (error messages stay one short line)."""
    text = repr(os.fspath(path))
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def read_user_file(
    path: str | os.PathLike[str],
    *,
    limit: int,
    what: str = "file",
    error: type[Exception] = ValueError,
    missing_hint: str = "",
) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them; anything else raises ``error`` (one line).

    Args:
        path: the file a user named.
        limit: the largest accepted size in bytes.
        what: what the file is, for messages (``"genotype file"``, ``"cost table"``).
        error: the exception type to raise (the caller's own, e.g. ``GenotypeError``).
        missing_hint: appended to the "does not exist" message (how to make one).

    Raises:
        error: the path does not exist, is a directory, a FIFO, a device or a socket, cannot be opened or read
            (permissions, a symlink loop, a name too long), or holds more than ``limit`` bytes.
    """
    shown = shown_path(path)
    path = location(path)
    if isinstance(path, str):
        return _read_url(path, limit, what, error, missing_hint, shown)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error(f"{what} {shown} does not exist{missing_hint}") from None
    except (OSError, ValueError) as err:
        raise error(f"cannot read {what} {shown}: {reason(err)}") from None
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{what} {shown} is {_kind(info.st_mode)}, not a regular file; pass a JSON file")
    _check_size(info.st_size, limit, what, shown, error)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except (OSError, ValueError) as err:
        raise error(f"cannot read {what} {shown}: {reason(err)}") from None
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):  # replaced between the check and the open
            raise error(f"{what} {shown} is {_kind(opened.st_mode)}, not a regular file; pass a JSON file")
        _check_size(opened.st_size, limit, what, shown, error)
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as err:
        raise error(f"cannot read {what} {shown}: {reason(err)}") from None
    finally:
        os.close(fd)
    _check_size(size, limit, what, shown, error)  # grew while being read
    return b"".join(chunks)


def _read_url(url: str, limit: int, what: str, error: type[Exception], missing_hint: str, shown: str) -> bytes:
    """:func:`read_user_file` for an fsspec URL: type and size from ``fs.info``, then at most ``limit + 1`` bytes."""
    name = f"{what} {shown}"
    fs, fs_path, info = file_info(url, name, error, missing_hint=missing_hint, hint="; pass a JSON file")
    if info.get("size") is not None:  # an HTTP server may not say; the bounded read below still holds
        _check_size(int(info["size"]), limit, what, shown, error)
    try:
        with fs.open(fs_path, "rb") as f:
            data = f.read(limit + 1)
    except Exception as err:  # network errors come in many types
        raise error(f"cannot read {name}: {reason(err)}") from None
    _check_size(len(data), limit, what, shown, error)
    return data


def file_info(
    path: str, name: str, error: type[Exception], *, missing_hint: str = "", hint: str = ""
) -> tuple[Any, str, dict[str, Any]]:
    """``(fsspec filesystem, path in it, fs.info)`` of the regular file ``path`` (a local path or any fsspec URL).

    Anything else raises ``error`` naming ``name``: a missing file (``missing_hint`` appended), one that is no regular
    file (``hint`` appended), an unknown protocol, a missing fsspec backend, a refused connection, HTTP errors.
    """
    from fsspec.core import url_to_fs  # what lightning_fabric's get_filesystem uses

    try:
        fs, fs_path = url_to_fs(path)
        info = fs.info(fs_path)
    except FileNotFoundError as err:
        cause = err.__cause__  # fsspec's HTTP filesystem reports a refused connection as "not found" too
        if cause is not None and not isinstance(cause, FileNotFoundError) and getattr(cause, "status", 0) != 404:
            raise error(f"cannot read {name}: {reason(cause)}") from None
        raise error(f"{name} does not exist{missing_hint}") from None
    except Exception as err:
        raise error(f"cannot read {name}: {reason(err)}") from None
    if info.get("type") != "file":
        kind = "a directory" if info.get("type") == "directory" else _kind(info.get("mode") or 0)
        raise error(f"{name} is {kind}, not a regular file{hint}")
    return fs, fs_path, info


def _check_size(size: int, limit: int, what: str, shown: str, error: type[Exception]) -> None:
    if size > limit:
        raise error(f"{what} {shown} is larger than the {limit}-byte limit")


def reason(err: BaseException) -> str:
    """The first line of ``err``'s message (an ``OSError``'s ``strerror``), lower-cased: ``cannot read X: <reason>``."""
    text = (err.strerror if isinstance(err, OSError) else None) or str(err).strip() or type(err).__name__
    text = text.splitlines()[0]  # one line, whatever a remote filesystem's error holds
    return text[:1].lower() + text[1:]


def short(value: object, limit: int = 60) -> str:
    """``repr`` of a value from a user's file, cut to ``limit`` characters for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def reject_constant(name: str) -> object:
    """``json.loads(parse_constant=...)``: NaN and infinities are not numbers a user's file may hold."""
    raise ValueError(f"non-finite number {name} is not allowed")


def parse_json(text: str | bytes, source: str, what: str, error: type[Exception]) -> Any:
    """The JSON value of a user's file or text: UTF-8, no NaN or infinities; any problem is one ``error`` line.

    Args:
        text: the file's bytes (decoded as UTF-8) or text.
        source: where it came from, first in every message (a path or a label).
        what: what it should be (``"genotype"``, ``"cost table"``), for the nesting message.
        error: the exception type to raise (the caller's own).
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise error(f"{source} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    try:
        return json.loads(text, parse_constant=reject_constant)
    except json.JSONDecodeError as err:
        raise error(f"{source}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}") from None
    except RecursionError:
        raise error(f"{source}: JSON nested too deeply; not a {what}") from None
    except ValueError as err:  # NaN/Infinity (reject_constant), integers longer than Python reads
        raise error(f"{source}: {err}") from None


def is_finite_number(x: object) -> bool:
    """A JSON number (int or float, not bool) that is finite."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
