"""The ``dnas`` command: a LightningCLI (``fit``, ``validate``, ``test``, ``predict``) plus dnas' own tools.

Model and datamodule are chosen by ``class_path`` (subclass mode), so a user's LightningModule or datamodule plugs in
without changes here. Tool subcommands (``export``, ``plot``, ``lut``, ...) are listed in :data:`TOOLS` and imported
only when used; nothing imports this module.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.cli import ArgsType, LightningCLI

TOOLS: dict[str, str] = {
    "export": "dnas.export.cli:main",
    "lut": "dnas.latency.cli:main",
    "plot": "dnas.viz.cli:main",
}
"""Extra subcommands: name -> ``"module:function"``; the function takes the remaining argv list."""


class DnasCLI(LightningCLI):
    """LightningCLI with dnas defaults: subclass mode, ``DNAS_*`` environment variables, overwritable saved config."""

    def __init__(self, args: ArgsType = None, **kwargs):
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("parser_kwargs", {"default_env": True, "env_prefix": "DNAS"})
        kwargs.setdefault("auto_configure_optimizers", False)
        super().__init__(pl.LightningModule, pl.LightningDataModule, args=args, **kwargs)

    def instantiate_classes(self) -> None:
        """Instantiate model, data and trainer; a bad value gets one clear line, not a traceback from deep inside."""
        from lightning_fabric.utilities.exceptions import MisconfigurationException

        from dnas.errors import ConfigError
        from dnas.genotypes import GenotypeError

        try:
            super().instantiate_classes()
        except (ValueError, TypeError, KeyError, FileNotFoundError, MisconfigurationException, GenotypeError) as err:
            err = _raised_by_constructor(err)
            message = str(err).strip() or type(err).__name__
            kind = err.kind if isinstance(err, ConfigError) else "invalid configuration"
            print(f"dnas: error: {kind} ({type(err).__name__}): {message}", file=sys.stderr)
            sys.exit(2)

    def _run_subcommand(self, subcommand: str) -> None:
        """Run ``fit``/``validate``/...; dnas' own checks in ``prepare_data``/``setup`` end with one line, too.

        Only :class:`dnas.errors.ConfigError` (raised by dnas for a value or input file the user fixes) is turned into
        a message; every other exception keeps its traceback.
        """
        from dnas.errors import ConfigError

        try:
            super()._run_subcommand(subcommand)
        except ConfigError as err:
            message = str(err).strip() or type(err).__name__
            print(f"dnas: error: {err.kind} ({type(err).__name__}): {message}", file=sys.stderr)
            sys.exit(2)

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list) -> pl.Trainer:
        from pytorch_lightning.plugins import CheckpointIO

        from dnas.io import AtomicCheckpointIO

        plugins = config.get("plugins")
        plugins = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())  # checkpoints are written to a temp file, then renamed
        config = {**config, "plugins": plugins}
        return super()._instantiate_trainer(config, callbacks)


def _raised_by_constructor(err: BaseException) -> BaseException:
    """The error a constructor raised, not jsonargparse's multi-line wrapper around it.

    jsonargparse re-raises a constructor's ``ValueError("steps must be >= 1, got 0")`` inside "Does not validate
    against any of the Union subtypes ... Given value: Namespace(...)"; the first exception of the chain that was not
    raised in jsonargparse is the one that names the problem. Without one, ``err`` itself.
    """
    seen: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and all(current is not e for e in seen):
        seen.append(current)
        tb = current.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is not None and "jsonargparse" not in Path(tb.tb_frame.f_code.co_filename).parts:
            return current
        current = current.__cause__ or current.__context__
    return err


def _tool(name: str) -> Callable[[list[str]], object]:
    module, func = TOOLS[name].split(":")
    return getattr(importlib.import_module(module), func)


def _check_config_files(argv: list[str]) -> None:
    """Reject unreadable or non-UTF-8 ``--config`` files with one clear line (jsonargparse would show a traceback)."""
    for i, arg in enumerate(argv):
        path = argv[i + 1] if arg == "--config" and i + 1 < len(argv) else None
        if arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        if path is None or not Path(path).is_file():
            continue
        try:
            Path(path).read_bytes().decode("utf-8")
        except UnicodeDecodeError as err:
            print(
                f"dnas: error: config file {path!r} is not UTF-8 text ({err.reason} at byte {err.start})",
                file=sys.stderr,
            )
            sys.exit(2)
        except OSError as err:
            print(f"dnas: error: cannot read config file {path!r}: {err.strerror}", file=sys.stderr)
            sys.exit(2)


def main(args: ArgsType = None) -> None:
    """Entry point of ``dnas`` and ``python -m dnas``; ``args`` allows running from Python (tests, notebooks)."""
    argv = list(sys.argv[1:] if args is None else args) if not isinstance(args, dict) else args
    if isinstance(argv, list) and argv and argv[0] in TOOLS:
        _tool(argv[0])(argv[1:])
        return
    if isinstance(argv, list):
        _check_config_files(argv)
    if isinstance(argv, list) and argv and argv[0] in ("-h", "--help"):
        print(f"dnas tools (besides fit/validate/test/predict): {', '.join(sorted(TOOLS)) or 'none'}\n")
    DnasCLI(args=argv)


if __name__ == "__main__":  # pragma: no cover
    main()
