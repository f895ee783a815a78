"""Standalone artifacts of a built network: ``python`` (model.py + weights.pt), ``pt2`` (torch.export), ``onnx``.

Every artifact directory also holds ``genotype.json`` and ``summary.json`` (parameters, FLOPs, options). Writes are
all-or-nothing: everything goes into a hidden temporary directory beside the target, which is renamed into place at
the end; an existing target is refused unless ``overwrite`` (then it is replaced only after the new one is complete).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from dnas.genotypes import Genotype
from dnas.io import atomic_torch_save, atomic_write_text

Format = Literal["python", "pt2", "onnx"]
FORMATS: tuple[str, ...] = ("python", "pt2", "onnx")
ARTIFACT_FILES = {"python": "model.py", "pt2": "model.pt2", "onnx": "model.onnx"}


class ExportError(RuntimeError):
    """An export that cannot be done (missing optional package, existing output, unsupported op)."""


class CheckpointMismatchError(ValueError):
    """A checkpoint whose tensors do not fit the network built from the genotype and options."""


# ---------------------------------------------------------------------------------------------- checkpoints
def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely (``torch.load(weights_only=True)``: tensors and plain containers only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointMismatchError(
            f"cannot read checkpoint {str(path)!r} with torch.load(weights_only=True) (only tensors and plain "
            f"containers are accepted, never arbitrary pickled objects): {first}"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointMismatchError(f"checkpoint {str(path)!r} holds a {type(obj).__name__}, not a dict")
    return obj


def weights_from_checkpoint(ckpt: Mapping[str, Any], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The network's state dict inside a checkpoint.

    Accepts a :class:`dnas.Retrain` Lightning checkpoint (``state_dict`` with keys ``model.*``), or a plain state
    dict (``weights.pt`` of the python format). A search checkpoint (``supernet.*``) is refused: supernet weights do
    not fit the discrete network.
    """
    state = ckpt.get("state_dict", ckpt)
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointMismatchError(f"{source}: no state dict of tensors found")
    keys = list(state)
    if any(k.startswith("supernet.") for k in keys):
        raise CheckpointMismatchError(
            f"{source} is a search checkpoint (keys 'supernet.*'): the supernet's weights do not fit the discrete "
            f"network. Export its genotype without --ckpt, or retrain it (dnas.Retrain) and export that checkpoint"
        )
    if keys and all(k.startswith("model.") for k in keys):
        state = {k[len("model.") :]: v for k, v in state.items()}
    return dict(state)


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Load ``state`` into ``model`` strictly; a mismatch raises :class:`CheckpointMismatchError` naming the keys."""
    ours = model.state_dict()
    missing = [k for k in ours if k not in state]
    unexpected = [k for k in state if k not in ours]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs network {tuple(v.shape)}"
        for k, v in ours.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es), e.g. {shapes[:3]}")
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:3]}")
        raise CheckpointMismatchError(
            f"{source} does not fit the network built from this genotype and these options: "
            + "; ".join(parts)
            + ". Check --genotype, --init-channels, --layers, --num-classes, --in-channels, --stem and --auxiliary"
        )
    model.load_state_dict(state)


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


def _write_python(model, genotype, options, folder: Path, input_size, name) -> None:
    from dnas.export.codegen import generate_python

    atomic_write_text(folder / "model.py", generate_python(genotype, options, input_size, name=name))
    atomic_torch_save({k: v.detach().cpu() for k, v in model.state_dict().items()}, folder / "weights.pt")


def _example(model: nn.Module, input_shape: Sequence[int]) -> torch.Tensor:
    p = next(model.parameters())
    return torch.randn(*input_shape, device=p.device, dtype=p.dtype)


def _dynamic_batch(example: torch.Tensor):
    return {"x": {0: torch.export.Dim("batch", min=1, max=4096)}}


def _write_pt2(model, folder: Path, input_shape) -> None:
    example = _example(model, input_shape)
    program = torch.export.export(_Logits(model), (example,), dynamic_shapes=_dynamic_batch(example))
    torch.export.save(program, str(folder / "model.pt2"))


def _write_onnx(model, folder: Path, input_shape) -> None:
    import warnings

    example = _example(model, input_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Logits(model),
            (example,),
            str(folder / "model.onnx"),
            input_names=["x"],
            output_names=["logits"],
            dynamic_shapes=_dynamic_batch(example),
            dynamo=True,
            external_data=False,
            verbose=False,
        )


class _Logits(nn.Module):
    """Exports trace ``forward(x) -> logits`` of the wrapped network (eval mode)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


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
) -> Path:
    """Write ``model`` (built from ``genotype`` with ``options``) as a standalone artifact directory ``out_dir``.

    Args:
        model: the network (its current weights are exported; eval mode is used and the mode restored).
        genotype: the architecture, written as ``genotype.json``.
        options: the builder options (recorded in the summary and baked into ``model.py``).
        out_dir: the directory to create.
        fmt: ``python`` (model.py + weights.pt), ``pt2`` (torch.export program) or ``onnx``.
        overwrite: replace an existing ``out_dir`` (only once the new one is complete).
        input_size: ``(H, W)`` of the example image (``in_channels`` from ``options``) used for tracing and FLOPs.
        input_shape: the full example input shape without the batch (e.g. ``(40, 1)`` for a 1-D space, ``(64,)``
            for a tabular one); overrides ``input_size``.
        name: the genotype's name for docs and the summary.
        extra_summary: more entries for ``summary.json`` (e.g. the checkpoint exported).
        flops: count FLOPs for the summary.

    Returns:
        ``out_dir`` as a Path.

    Raises:
        ExportError: unknown format, optional package missing, or ``out_dir`` exists without ``overwrite``.
    """
    _check_format(fmt)
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise ExportError(f"output {str(out)!r} already exists; choose another --out or pass --overwrite")
    if out.exists() and not out.is_dir():
        raise ExportError(f"output {str(out)!r} exists and is not a directory; refusing to replace it")
    if fmt == "python":
        from dnas.export.codegen import python_exportable

        python_exportable(genotype)
    if input_shape is not None:
        input_shape = (1, *(int(d) for d in input_shape))
    else:
        input_shape = (1, int(options.get("in_channels", 3)), int(input_size[0]), int(input_size[1]))
    trace_shape = (2,) + input_shape[1:]  # batch 2 so the exported batch dimension stays dynamic
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    was_training = model.training
    model.eval()
    try:
        if fmt == "python":
            _write_python(model, genotype, options, tmp, input_shape[-2:], name)
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
        atomic_write_text(tmp / "summary.json", json.dumps(summary, indent=2) + "\n")
        atomic_write_text(tmp / "genotype.json", genotype.to_json() + "\n")
        _make_readable(tmp)
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
    """Move the finished ``new`` directory to ``target``; an existing target is removed only after the swap."""
    if target.exists():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
        try:
            os.replace(new, target)
        except BaseException:
            os.replace(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)
