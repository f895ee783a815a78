"""An export to an fsspec URL (``s3://``, ``gs://``, ``memory://``, ...): built locally, then uploaded file by file.

:func:`dnas.export.artifacts.export_model` writes the artifact into a local temporary folder exactly as for a local
``out_dir`` (the same checks, the same files), then :func:`upload_export` stores each file with
:func:`dnas.storage.put_url` (one whole-object upload on an object store). An object store has no folder to rename,
so the folder as a whole is not replaced atomically; instead ``summary.json``, the file that marks a finished export,
is removed first and uploaded last: a folder holding ``summary.json`` holds a complete export. A folder left without
it by an interrupted upload is not replaced by a later export (it is no longer marked as one); delete it.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

from dnas.export.artifacts import _MAX_SUMMARY_BYTES, EXPORT_FILES, ExportError, is_export_marker, verdict
from dnas.storage import join, put_url


def _fs(url: str) -> tuple[Any, str]:
    from fsspec.core import url_to_fs

    try:
        return url_to_fs(url)
    except (ImportError, ValueError) as err:  # no backend for the protocol, or an unknown protocol
        raise ExportError(f"cannot write output {url!r}: {err}") from None


def url_replaceable(fs: Any, path: str) -> str | None:
    """As :func:`dnas.export.artifacts.replaceable`, for the existing folder ``path`` of ``fs``."""
    names = sorted(posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False))
    summary = posixpath.join(path, "summary.json")

    def marked() -> bool:
        info = fs.info(summary) if "summary.json" in names else {}
        size_ok = (info.get("size") or 0) <= _MAX_SUMMARY_BYTES
        return info.get("type") == "file" and size_ok and is_export_marker(fs.cat_file(summary))

    return verdict(names, marked, EXPORT_FILES.__contains__)


def url_output(url: str) -> tuple[bool, str | None]:
    """``(url exists, why it may not be replaced or None)``: the rules of a local ``out_dir``."""
    fs, path = _fs(url)
    if not fs.exists(path):
        return False, None
    return True, "is not a directory" if fs.isfile(path) else url_replaceable(fs, path)


def upload_export(local: Path, url: str) -> None:
    """Store the finished export folder ``local`` at ``url``; ``summary.json`` last, a previous export's first removed.

    Files of a previous export that the new one does not have (another format's artifact) are deleted.
    """
    fs, path = _fs(url)
    files = sorted(p.name for p in local.iterdir() if p.is_file())
    try:
        old = set()
        if fs.exists(path):
            why = url_replaceable(fs, path)  # again: files may have appeared since the check before the build
            if why is not None:
                raise ExportError(f"output {url!r} changed during the export and {why}; nothing was replaced")
            old = {posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False)}
        if "summary.json" in old:
            fs.rm_file(posixpath.join(path, "summary.json"))
        for name in [f for f in files if f != "summary.json"]:
            put_url(str(join(url, name)), (local / name).read_bytes())
        for name in sorted(old - set(files)):
            fs.rm_file(posixpath.join(path, name))
        put_url(str(join(url, "summary.json")), (local / "summary.json").read_bytes())
    except OSError as err:
        raise ExportError(f"cannot upload the export to {url!r}: {err}") from None
