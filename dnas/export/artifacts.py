"""Standalone artifacts of a built network: ``python`` (model.py + weights.pt), ``pt2`` (torch.export), ``onnx``.

Every artifact directory also holds ``genotype.json`` and ``summary.json`` (parameters, FLOPs, options). Writes are
all-or-nothing: everything goes into a hidden temporary directory beside the target, which is renamed into place at
the end; an existing target is refused unless ``overwrite`` (then it is replaced only after the new one is complete).
An fsspec URL target is built the same way in a local temporary directory, then uploaded (:mod:`dnas.export.remote`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import posixpath
import shutil
import stat
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from dnas.genotypes import Genotype
from dnas.io import atomic_torch_save, atomic_write_text
from dnas.storage import Location, location

Format = Literal["python", "pt2", "onnx"]
ARTIFACT_FILES = {"python": "model.py", "pt2": "model.pt2", "onnx": "model.onnx"}
FORMATS = tuple(ARTIFACT_FILES)


class ExportError(RuntimeError):
    """An export that cannot be done (missing optional package, existing output, unsupported op)."""


# ---------------------------------------------------------------------------------------------- export
def onnx_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript"))


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {list(FORMATS)}")
    if fmt == "onnx" and not onnx_available():
        raise ExportError(
            "the onnx format needs the optional packages 'onnx' and 'onnxscript'; install them with "
            "pip install 'dnas[onnx]' (or pip install onnx onnxscript), or use --format python / pt2"
        )


def _write_python(model, genotype, options, folder: Path, input_shape, name) -> None:
    """``model.py`` (checked: it parses to dnas' own statements plus data, and rebuilds the same outputs) + weights."""
    from dnas import __version__
    from dnas.export.python import render, verify

    text = render(model, genotype, options, input_shape[1:], name or "custom", __version__)
    verify(text, model, _example(model, input_shape))
    atomic_write_text(folder / "model.py", text)
    atomic_torch_save({k: v.detach().cpu() for k, v in model.state_dict().items()}, folder / "weights.pt")


def _example(model: nn.Module, input_shape: Sequence[int]) -> torch.Tensor:
    p = next(model.parameters())
    return torch.randn(*input_shape, device=p.device, dtype=p.dtype)


def _dynamic_batch() -> tuple[dict[int, Any]]:
    """The input's batch dimension stays dynamic (positional, so the network's ``forward`` may name it anything)."""
    return ({0: torch.export.Dim("batch", min=1, max=4096)},)


def _write_pt2(model, folder: Path, input_shape) -> None:
    program = torch.export.export(model, (_example(model, input_shape),), dynamic_shapes=_dynamic_batch())
    torch.export.save(program, str(folder / "model.pt2"))


def _write_onnx(model, folder: Path, input_shape) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (_example(model, input_shape),),
            str(folder / "model.onnx"),
            input_names=["x"],
            output_names=["logits"],
            dynamic_shapes=_dynamic_batch(),
            dynamo=True,
            external_data=False,
            verbose=False,
        )


def export_model(
    model: nn.Module,
    genotype: Genotype,
    options: Mapping[str, Any],
    out_dir: str | Path,
    fmt: Format = "python",
    overwrite: bool = False,
    input_size: Sequence[int] = (32, 32),
    input_shape: Sequence[int] | None = None,
    name: str | None = None,
    extra_summary: Mapping[str, Any] | None = None,
    flops: bool = True,
) -> Location:
    """Write ``model`` (built from ``genotype`` with ``options``) as a standalone artifact directory ``out_dir``.

    Args:
        model: the network (its current weights are exported; eval mode is used and the mode restored).
        genotype: the architecture, written as ``genotype.json``.
        options: the builder options (recorded in the summary and baked into ``model.py``).
        out_dir: the directory to create (a path or an fsspec URL).
        fmt: ``python`` (model.py + weights.pt), ``pt2`` (torch.export program) or ``onnx``.
        overwrite: replace an existing ``out_dir`` (only once the new one is complete) if it is empty or a previous
            export holding only what export writes; any other directory is refused, whatever ``overwrite``.
        input_size: ``(H, W)`` of the example image (``in_channels`` from ``options``) used for tracing and FLOPs.
        input_shape: the full example input shape without the batch (e.g. ``(40, 1)`` for a 1-D space, ``(64,)``
            for a tabular one); overrides ``input_size``.
        name: the genotype's name for docs and the summary.
        extra_summary: more entries for ``summary.json`` (e.g. the checkpoint exported).
        flops: count FLOPs for the summary.

    Returns:
        ``out_dir`` as a Path, or the URL string for an fsspec URL (see :mod:`dnas.export.remote`).

    Raises:
        ExportError: unknown format, optional package missing, ``out_dir`` exists without ``overwrite`` or is not
            a previous export (see :func:`replaceable`), or cannot be created.
    """
    from dnas.export.remote import upload_export

    _check_format(fmt)
    out = location(out_dir)
    remote = isinstance(out, str)
    _check_output(out, overwrite)
    if input_shape is not None:
        input_shape = (1, *(int(d) for d in input_shape))
    else:
        input_shape = (1, int(options.get("in_channels", 3)), int(input_size[0]), int(input_size[1]))
    trace_shape = (2,) + input_shape[1:]  # batch 2 so the exported batch dimension stays dynamic
    # a URL's export is built in the temporary-files folder, a local one beside its target (then renamed)
    where = Path(tempfile.gettempdir()) if remote else out.parent
    folder = posixpath.basename(out.rstrip("/")) if remote else out.name
    try:
        where.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder}.", suffix=".tmp", dir=where))
    except OSError as err:
        raise ExportError(
            f"cannot create output {str(out)!r}: {_os_problem(err, where)}; choose an --out inside a directory "
            f"you can write to"
        ) from None
    was_training = model.training
    model.eval()
    try:
        if fmt == "python":
            _write_python(model, genotype, options, tmp, trace_shape, name)
        elif fmt == "pt2":
            _write_pt2(model, tmp, trace_shape)
        else:
            _write_onnx(model, tmp, trace_shape)
        from dnas.export.summary import model_summary

        info = {
            "genotype": name,
            "space": genotype.space,
            "format": fmt,
            "artifact": ARTIFACT_FILES[fmt],
            "options": dict(options),
            **dict(extra_summary or {}),
        }
        summary = model_summary(model, input_shape, extra=info, flops=flops)
        summary = {EXPORT_MARKER: EXPORT_SCHEMA, **{k: v for k, v in summary.items() if k != EXPORT_MARKER}}
        atomic_write_text(tmp / "summary.json", json.dumps(summary, indent=2) + "\n")
        atomic_write_text(tmp / "genotype.json", genotype.to_json() + "\n")
        _make_readable(tmp)
        if remote:
            upload_export(tmp, out)
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        model.train(was_training)
    return out


def _make_readable(folder: Path) -> None:
    """Temporary files and directories are private (0600/0700); give the finished artifact the usual umask modes."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for f in folder.iterdir():
        os.chmod(f, (0o777 if f.is_dir() else 0o666) & ~umask)


def _replace_dir(new: Path, target: Path) -> None:
    """Move the finished ``new`` directory to ``target``; an existing target is removed only after the swap.

    The existing target is checked again once it is moved aside (files may have appeared since
    :func:`_check_output`); if it is no longer replaceable it is moved back and nothing is removed.
    """
    try:
        if not target.exists():
            os.replace(new, target)
            return
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
        why = replaceable(old)
        if why is not None:
            os.replace(old, target)
            raise ExportError(f"output {str(target)!r} changed during the export and {why}; nothing was replaced")
        try:
            os.replace(new, target)
        except BaseException:
            os.replace(old, target)
            raise
    except OSError as err:
        raise ExportError(
            f"cannot move the export into {str(target)!r}: {_os_problem(err, target)}; choose another --out"
        ) from None
    shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- output directory
EXPORT_MARKER = "dnas_export"
"""Key of ``summary.json`` that marks a directory written by :func:`export_model` (value: :data:`EXPORT_SCHEMA`)."""
EXPORT_SCHEMA = 1
EXPORT_FILES = frozenset({"summary.json", "genotype.json", "weights.pt", *ARTIFACT_FILES.values()})
"""The files :func:`export_model` writes (``__pycache__`` of an imported ``model.py`` is also accepted)."""
_MAX_SUMMARY_BYTES = 1 << 20


def _is_export_summary(path: Path) -> bool:
    """Whether ``path`` is a regular ``summary.json`` (not a link) with ``"dnas_export": <int >= 1>``."""
    try:
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_SUMMARY_BYTES:
            return False
        return is_export_marker(path.read_bytes())
    except OSError:
        return False


def is_export_marker(content: bytes) -> bool:
    """Whether ``content`` (a ``summary.json``) holds ``"dnas_export": <int >= 1>``."""
    try:
        data = json.loads(content)
    except (ValueError, RecursionError):
        return False
    version = data.get(EXPORT_MARKER) if isinstance(data, dict) else None
    return isinstance(version, int) and not isinstance(version, bool) and version >= 1


def _is_our_entry(path: Path) -> bool:
    """A regular file export writes, or the ``__pycache__`` an import of ``model.py`` leaves (``model.*.pyc``)."""
    try:
        mode = path.lstat().st_mode
        if path.name in EXPORT_FILES:
            return stat.S_ISREG(mode)
        if path.name == "__pycache__" and stat.S_ISDIR(mode):
            return all(
                p.name.startswith("model.") and p.suffix == ".pyc" and stat.S_ISREG(p.lstat().st_mode)
                for p in path.iterdir()
            )
    except OSError:
        return False
    return False


def replaceable(folder: str | Path) -> str | None:
    """None if the existing directory ``folder`` may be replaced by an export, else why not (for a message).

    Replaceable: an empty directory, or a previous export (``summary.json`` with ``"dnas_export"``) that holds only
    the files export writes. Anything else may be a user's data, and export never deletes that.
    """
    folder = Path(folder)
    names = sorted(p.name for p in folder.iterdir())
    return verdict(names, lambda: _is_export_summary(folder / "summary.json"), lambda n: _is_our_entry(folder / n))


def verdict(names: list[str], marked: Callable[[], bool], ours: Callable[[str], bool]) -> str | None:
    """:func:`replaceable`'s answer for a folder holding ``names``, marked as an export or not, ``ours`` per name."""
    if not names:
        return None
    if not marked():
        return f'is not a dnas export (no summary.json with "{EXPORT_MARKER}")'
    foreign = [n for n in names if not ours(n)]
    if foreign:
        more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        return f"holds files dnas export did not write: {foreign[:5]}{more}"
    return None


def _check_output(out: Location, overwrite: bool) -> None:
    """Refuse an existing ``out`` unless ``overwrite`` and it is replaceable; name the path and the way out."""
    from dnas.export.remote import url_output

    try:
        exists, why = url_output(out) if isinstance(out, str) else _local_output(out)
    except OSError as err:
        raise ExportError(f"cannot read output {str(out)!r}: {err.strerror or err}; choose another --out") from None
    if why is not None:
        raise ExportError(
            f"output {str(out)!r} already exists and {why}; dnas export replaces only a directory it wrote, even "
            f"with --overwrite: choose a new or empty --out"
        )
    if exists and not overwrite:
        raise ExportError(f"output {str(out)!r} already exists; choose another --out or pass --overwrite")


def _local_output(out: Path) -> tuple[bool, str | None]:
    """``(out exists, why it may not be replaced or None)``."""
    if not out.exists() and not out.is_symlink():
        return False, None
    return True, replaceable(out) if out.is_dir() else "is not a directory"


def _os_problem(err: OSError, path: Path) -> str:
    """Why writing at ``path`` failed, as a short phrase naming the path in the way (the file or the directory)."""
    where = Path(err.filename) if isinstance(err.filename, (str, os.PathLike)) else path
    if isinstance(err, (FileExistsError, NotADirectoryError)):
        blocker = next((p for p in (where, *where.parents) if p.exists() and not p.is_dir()), where)
        return f"{str(blocker)!r} is a file, not a directory"
    if isinstance(err, PermissionError):
        folder = next((p for p in where.parents if p.is_dir()), where.parent)
        return f"no permission to write in {str(folder)!r}"
    return f"{err.strerror or type(err).__name__} ({str(where)!r})"
