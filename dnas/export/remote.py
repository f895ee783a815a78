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

from dnas.storage import filesystem, join, put_url


def _fs(url: str) -> tuple[Any, str]:
    from dnas.export.artifacts import ExportError

    try:
        return filesystem(url)
    except (ImportError, ValueError) as err:  # no backend for the protocol, or an unknown protocol
        raise ExportError(f"cannot write output {url!r}: {err}") from None


def url_replaceable(fs: Any, path: str) -> str | None:
    """As :func:`dnas.export.artifacts.replaceable`, for the existing folder ``path`` of ``fs``."""
    from dnas.export.artifacts import _MAX_SUMMARY_BYTES, EXPORT_FILES, EXPORT_MARKER, is_export_marker

    names = sorted(posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False))
    if not names:
        return None
    summary = posixpath.join(path, "summary.json")
    info = fs.info(summary) if "summary.json" in names else {}
    marked = (
        info.get("type") == "file"
        and (info.get("size") or 0) <= _MAX_SUMMARY_BYTES
        and is_export_marker(fs.cat_file(summary))
    )
    if not marked:
        return f'is not a dnas export (no summary.json with "{EXPORT_MARKER}")'
    foreign = [n for n in names if n not in EXPORT_FILES]
    if foreign:
        more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        return f"holds files dnas export did not write: {foreign[:5]}{more}"
    return None


def check_url_output(url: str, overwrite: bool) -> None:
    """Refuse an existing ``url`` unless ``overwrite`` and it is replaceable (the rules of a local ``out_dir``)."""
    from dnas.export.artifacts import ExportError

    fs, path = _fs(url)
    try:
        if not fs.exists(path):
            return
        if fs.isfile(path):
            raise ExportError(
                f"output {url!r} exists and is not a directory; refusing to replace it: choose another --out"
            )
        why = url_replaceable(fs, path)
    except OSError as err:
        raise ExportError(f"cannot read output {url!r}: {err}; choose another --out") from None
    if why is not None:
        raise ExportError(
            f"output {url!r} already exists and {why}; dnas export replaces only a directory it wrote, even "
            f"with --overwrite: choose a new or empty --out"
        )
    if not overwrite:
        raise ExportError(f"output {url!r} already exists; choose another --out or pass --overwrite")


def upload_export(local: Path, url: str) -> None:
    """Store the finished export folder ``local`` at ``url``; ``summary.json`` last, a previous export's first removed.

    Files of a previous export that the new one does not have (another format's artifact) are deleted.
    """
    from dnas.export.artifacts import ExportError

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
