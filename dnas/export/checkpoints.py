"""Trained weights for an export: a checkpoint read safely, its state dict found, loaded strictly into the network.

A checkpoint is read only with ``torch.load(weights_only=True)`` (tensors and plain containers): a local file after
checks on its open descriptor (a regular, non-empty file; a FIFO or device is refused before any byte is read), a URL
through :func:`dnas.io.load_checkpoint`. A search checkpoint is refused: a supernet's weights fit no discrete network.
"""

from __future__ import annotations

import os
import re
import stat
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from dnas.io import CheckpointError, load_checkpoint
from dnas.storage import join, location, parent


class CheckpointMismatchError(ValueError):
    """A checkpoint whose tensors do not fit the network built from the genotype and options."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely (``torch.load(weights_only=True)``: tensors and plain containers only).

    Only a regular file is opened for reading (a directory, FIFO or device is refused before any byte is read), and
    an empty, truncated or corrupt file gets an error that says so.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointMismatchError: ``path`` is not a regular file, is empty, truncated, corrupt, holds pickled objects
            other than tensors and plain containers, or does not hold a dict.
    """
    path = location(path)
    if isinstance(path, str):  # an fsspec URL: dnas.io's checks (regular file, size, CRCs, weights_only=True)
        try:
            obj = load_checkpoint(path)
        except CheckpointError as err:
            raise CheckpointMismatchError(str(err)) from None
    else:
        with _open_regular_file(path) as f:
            zipped = f.read(4) == b"PK\x03\x04"  # torch.save's format since 1.6; older files are a pickle stream
            f.seek(0)
            if zipped and not zipfile.is_zipfile(f):
                raise CheckpointMismatchError(
                    f"checkpoint {str(path)!r} is truncated (a zip archive without its end: the copy or the save did "
                    f"not finish); copy it again or pass another checkpoint"
                )
            f.seek(0)
            try:
                obj = torch.load(f, map_location="cpu", weights_only=True)
            except Exception as err:  # unpickling errors come in many types
                raise CheckpointMismatchError(_load_problem(path, err)) from None
    if not isinstance(obj, dict):
        raise CheckpointMismatchError(f"checkpoint {str(path)!r} holds a {type(obj).__name__}, not a dict")
    return obj


def _open_regular_file(path: Path) -> BinaryIO:
    """Open ``path`` for reading if it is a non-empty regular file; refuse anything else without reading from it.

    The file is opened without blocking (a FIFO would otherwise wait for a writer) and checked with ``fstat`` on the
    open descriptor, so what is checked is what is read.
    """
    hint = "pass a checkpoint file written by dnas.Retrain (<log dir>/checkpoints/last.ckpt) or an exported weights.pt"
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist; {hint}") from None
    except IsADirectoryError:  # Windows; POSIX opens directories and fstat tells below
        raise CheckpointMismatchError(f"checkpoint {str(path)!r} is a directory, not a file; {hint}") from None
    except OSError as err:
        raise CheckpointMismatchError(f"cannot open checkpoint {str(path)!r}: {err.strerror or err}; {hint}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kinds = {stat.S_ISDIR: "a directory", stat.S_ISFIFO: "a FIFO (named pipe)", stat.S_ISCHR: "a device"}
            kinds[stat.S_ISBLK] = "a device"
            kind = next((k for test, k in kinds.items() if test(st.st_mode)), "not a regular file")
            raise CheckpointMismatchError(f"checkpoint {str(path)!r} is {kind}, not a regular file; {hint}")
        if st.st_size == 0:
            raise CheckpointMismatchError(
                f"checkpoint {str(path)!r} is empty (0 bytes: it was never written completely); {hint}"
            )
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _load_problem(path: Path, err: Exception) -> str:
    """One line saying why ``torch.load(weights_only=True)`` could not read the checkpoint ``path``."""
    text = str(err)
    unsafe = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if unsafe:
        return (
            f"cannot read checkpoint {str(path)!r} with torch.load(weights_only=True): it holds a pickled "
            f"{unsafe.group(1)}, and only tensors and plain containers are accepted, never arbitrary pickled objects "
            f"(they can run code); save the state dict and plain values instead"
        )
    if isinstance(err, EOFError) or "central directory" in text:
        return f"checkpoint {str(path)!r} is truncated (it ends early); copy it again or pass another checkpoint"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "WeightsUnpickler error:" in text:  # the detail after torch's generic advice
        after = text.split("WeightsUnpickler error:", 1)[1]
        lines = [line.strip() for line in after.splitlines() if line.strip()] or lines
    detail = f"{type(err).__name__}: {lines[0]}"[:200] if lines else type(err).__name__
    return (
        f"checkpoint {str(path)!r} is corrupt or not a PyTorch checkpoint (torch.load: {detail}); pass a .ckpt "
        f"written by dnas.Retrain or an exported weights.pt, or copy it again"
    )


def weights_from_checkpoint(ckpt: Mapping[str, Any], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The network's state dict inside a checkpoint.

    Accepts a :class:`dnas.Retrain` Lightning checkpoint (``state_dict`` with keys ``model.*``), or a plain state
    dict (``weights.pt`` of the python format). A search checkpoint is refused (:func:`refuse_search_checkpoint`).
    """
    refuse_search_checkpoint(ckpt, source)
    state = ckpt.get("state_dict", ckpt)
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointMismatchError(f"{source}: no state dict of tensors found")
    keys = list(state)
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
            + ". Check --genotype, --init_channels, --layers, --num_classes, --in_channels, --stem and --auxiliary"
        )
    model.load_state_dict(state)


def is_search_module(class_path: str) -> bool:
    """Whether ``class_path`` names a search module: ``dnas.<name>`` of ``dnas.search.__all__`` or ``dnas.search.*``."""
    from dnas import search  # their one list (imports Lightning: only for a checkpoint that names a module)

    head, _, name = class_path.rpartition(".")
    return class_path.startswith("dnas.search.") or (head == "dnas" and name in search.__all__)


def refuse_search_checkpoint(ckpt: Mapping[str, Any], source: str) -> None:
    """Raise a one-line error if ``ckpt`` is a search checkpoint: its weights are a supernet's, not a network's.

    The message names the way out: export the genotype the search wrote beside its ``checkpoints/`` folder, or
    retrain it.
    """
    state = ckpt.get("state_dict", ckpt)
    supernet = isinstance(state, Mapping) and any(str(k).startswith("supernet.") for k in state)
    hparams = ckpt.get("hyper_parameters")
    module = hparams.get("_class_path") if isinstance(hparams, dict) else None
    search_module = isinstance(module, str) and is_search_module(module)
    if not (supernet or search_module):
        return
    what = "state_dict keys 'supernet.*'" if supernet else ""
    if search_module:
        what += (" and " if what else "") + f"hyper-parameters of {module}"
    folder = parent(source)
    folder_name = folder.name if isinstance(folder, Path) else folder.rsplit("/", 1)[-1]
    log_dir = parent(folder) if folder_name == "checkpoints" else "<log dir>"
    raise CheckpointMismatchError(
        f"{source} is a search checkpoint ({what}): its weights are the supernet's and fit no discrete "
        f"network. Export the architecture it found with --genotype {join(log_dir, 'genotype.json')} (untrained "
        f"weights), or retrain it with dnas.Retrain (configs/quickstart_retrain.yaml) and pass that checkpoint"
    )
