"""The ``dnas`` command: a LightningCLI (``fit``, ``validate``, ``test``, ``predict``) plus dnas' own tools.

Model and datamodule are chosen by ``class_path`` (subclass mode), so a user's LightningModule or datamodule plugs in
without changes here. Tool subcommands (``export``, ``plot``, ``lut``, ...) are listed in :data:`TOOLS` and imported
only when used; nothing imports this module.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
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

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list) -> pl.Trainer:
        from pytorch_lightning.plugins import CheckpointIO

        from dnas.io import AtomicCheckpointIO

        plugins = config.get("plugins")
        plugins = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())  # checkpoints are written to a temp file, then renamed
        config = {**config, "plugins": plugins}
        return super()._instantiate_trainer(config, callbacks)


def _tool(name: str) -> Callable[[list[str]], object]:
    module, func = TOOLS[name].split(":")
    return getattr(importlib.import_module(module), func)


def main(args: ArgsType = None) -> None:
    """Entry point of ``dnas`` and ``python -m dnas``; ``args`` allows running from Python (tests, notebooks)."""
    argv = list(sys.argv[1:] if args is None else args) if not isinstance(args, dict) else args
    if isinstance(argv, list) and argv and argv[0] in TOOLS:
        _tool(argv[0])(argv[1:])
        return
    if isinstance(argv, list) and argv and argv[0] in ("-h", "--help"):
        print(f"dnas tools (besides fit/validate/test/predict): {', '.join(sorted(TOOLS)) or 'none'}\n")
    DnasCLI(args=argv)


if __name__ == "__main__":  # pragma: no cover
    main()
