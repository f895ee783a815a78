"""The ``dnas`` command: a LightningCLI (``fit``, ``validate``, ``test``, ``predict``) plus dnas' own tools.

Model and datamodule are chosen by ``class_path`` (subclass mode), so a user's LightningModule or datamodule plugs in
without changes here. Tool subcommands (``export``, ``plot``, ``lut``, ...) are listed in :data:`TOOLS` and imported
only when used; nothing imports this module.
"""

from __future__ import annotations

import functools
import importlib
import operator
import os
import stat
import sys
import types
import typing
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from jsonargparse import ArgumentError, Namespace
from pytorch_lightning.cli import ArgsType, LightningCLI

TOOLS: dict[str, tuple[str, str]] = {
    "baseline": (
        "dnas.baseline.cli:main",
        "Retrain a found genotype against seeded random genotypes of its space (table + picture).",
    ),
    "export": (
        "dnas.export.cli:main",
        "Write a genotype's network as model.py + weights, a torch.export program or ONNX.",
    ),
    "lut": (
        "dnas.latency.cli:main",
        "Measure a latency (or FLOPs/params) table of a config's supernet on this device.",
    ),
    "plot": ("dnas.viz.cli:main", "Draw a genotype (a published name or a genotype.json) as PNG/SVG/PDF."),
}
"""Extra subcommands: name -> (``"module:function"``, one-line help); the function takes the remaining argv list."""

MAX_CONFIG_BYTES = 16 * 1024 * 1024
"""Largest ``--config`` file read (configs are a few KB; this bounds what a wrong path can make the CLI read)."""

_CKPT_KEYWORDS = ("last", "best", "hpc")
"""``ckpt_path`` values Lightning resolves itself (plus ``registry``/``registry:...``)."""


def _fail(message: str) -> typing.NoReturn:
    from dnas.errors import one_line

    print(f"dnas: error: {one_line(message)}", file=sys.stderr)
    sys.exit(2)


class DnasCLI(LightningCLI):
    """LightningCLI with dnas defaults: subclass mode, ``DNAS_*`` environment variables, overwritable saved config."""

    def __init__(self, args: ArgsType = None, **kwargs):
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        # exit_on_error=False: a bad argument raises ArgumentError, which main() prints as one line
        about = "dnas: differentiable architecture search on PyTorch Lightning (a LightningCLI plus dnas' tools)."
        kwargs.setdefault(
            "parser_kwargs",
            {"default_env": True, "env_prefix": "DNAS", "exit_on_error": False, "prog": "dnas", "description": about},
        )
        kwargs.setdefault("auto_configure_optimizers", False)
        super().__init__(pl.LightningModule, pl.LightningDataModule, args=args, **kwargs)

    def add_arguments_to_parser(self, parser: Any) -> None:
        """Link the data's ``num_classes``/``in_channels`` into the model (:mod:`dnas.cli_links`)."""
        from dnas.cli_links import LINKS

        for attr, target in LINKS:
            parser.link_arguments(f"data.{attr}", target, apply_on="instantiate")

    def parse_arguments(self, parser: Any, args: ArgsType) -> None:
        """Parse as LightningCLI does, then once more without defaults: what the user wrote (for the linked values)."""
        super().parse_arguments(parser, args)
        if isinstance(args, (dict, Namespace)):
            self._given = parser.parse_object(args, defaults=False)
        else:
            self._given = parser.parse_args(args, defaults=False)

    def _add_instantiators(self) -> None:
        """LightningCLI's instantiators, given only the links that applied (:class:`dnas.cli_links.Instantiator`)."""
        from pytorch_lightning.cli import _get_module_type

        from dnas.cli_links import Instantiator

        for key, base, subclasses in (
            ("model", self._model_class, self.subclass_mode_model),
            ("data", self._datamodule_class, self.subclass_mode_data),
        ):
            self.parser.add_instantiator(Instantiator(cli=self, key=key), _get_module_type(base), subclasses=subclasses)

    def _add_subcommands(self, parser: Any, **kwargs: Any) -> None:
        """Lightning's subcommands, then dnas' tools, so ``dnas --help`` lists every command.

        The tools parse their own arguments: :func:`main` hands them the command line before LightningCLI sees it.
        """
        from jsonargparse import ArgumentParser

        super()._add_subcommands(parser, **kwargs)
        for name, (_, help_text) in TOOLS.items():
            tool = ArgumentParser(prog=f"dnas {name}", description=help_text, add_help=False)
            parser._subcommands_action.add_subcommand(name, tool, help=f"{help_text} (dnas {name} --help)")

    def add_core_arguments_to_parser(self, parser: Any) -> None:
        """Lightning's arguments, with ``int`` tried before ``float`` where a Trainer argument takes both.

        ``limit_*_batches``, ``overfit_batches`` and ``val_check_interval`` mean a number of batches when given an
        int and a fraction when given a float. Their annotation ``Optional[Union[int, float]]`` reaches jsonargparse
        as ``Union[float, int, None]`` (``typing`` caches unions whatever their order, and an earlier import makes
        the float-first one), so ``--trainer.limit_val_batches 1`` parsed as ``1.0``: all batches instead of one.
        """
        super().add_core_arguments_to_parser(parser)
        for action in parser._actions:
            hint = getattr(action, "_typehint", None)
            if not action.dest.startswith("trainer.") or typing.get_origin(hint) not in (typing.Union, types.UnionType):
                continue
            args = typing.get_args(hint)
            if int in args and float in args and args.index(float) < args.index(int):
                # a PEP 604 union keeps its order (typing.Union[...] would come back from the cache float-first)
                action._typehint = functools.reduce(
                    operator.or_, (int, float, *(a for a in args if a not in (int, float)))
                )

    def before_instantiate_classes(self) -> None:
        """Refuse a URL whose fsspec filesystem is not installed (``s3://`` without s3fs) with one line.

        Checked before the loggers and callbacks that would fail on it with a traceback are built.
        """
        from dnas.storage import unavailable_url

        subcommand = self.config.get("subcommand")
        problem = unavailable_url(self.config[subcommand] if subcommand else self.config)
        if problem is not None:
            _fail(f"invalid configuration: {problem}")

    def instantiate_classes(self) -> None:
        """Instantiate model, data and trainer; a bad value gets one clear line, not a traceback from deep inside."""
        from lightning_fabric.utilities.exceptions import MisconfigurationException

        from dnas.errors import ConfigError, constructor_error, is_validation_error
        from dnas.genotypes import GenotypeError

        try:
            super().instantiate_classes()
        except (ValueError, TypeError, KeyError, FileNotFoundError, MisconfigurationException) as err:
            cause = constructor_error(err)
            if not is_validation_error(cause, (ConfigError, GenotypeError, MisconfigurationException)):
                # a bug in a user's (or a library's) constructor: its own error and traceback, not jsonargparse's
                # "does not validate against any of the Union subtypes" wrapper around it
                raise cause from None
            message = str(cause).strip() or type(cause).__name__
            kind = cause.kind if isinstance(cause, ConfigError) else "invalid configuration"
            _fail(f"{kind} ({type(cause).__name__}): {message}")
        from dnas.cli_links import contradiction

        subcommand = self.config.get("subcommand")
        problem = contradiction(
            self._given.get(subcommand) or Namespace() if subcommand else self._given, self.datamodule
        )
        if problem:
            _fail(problem)

    def _ckpt_path(self, config: Any) -> str | None:
        """The subcommand's ``--ckpt_path`` when it names a file or URL (not Lightning's ``last``/``best``/...)."""
        path = config.get("ckpt_path")
        if path is None or str(path) in _CKPT_KEYWORDS or str(path).lower().startswith("registry"):
            return None
        return str(path)

    def _parse_ckpt_path(self) -> None:
        """Check ``--ckpt_path`` and ``--weights_only`` before anything is built or read, then Lightning's step.

        Checkpoints are read only with ``torch.load(weights_only=True)`` (:class:`dnas.io.AtomicCheckpointIO`), so
        ``--weights_only false`` is refused. A local ``--ckpt_path`` is checked in full here (missing, not a file,
        empty, truncated, corrupt, pickled code), a URL for existence and size (its content when it is loaded).
        LightningCLI then reads the local file's hyperparameters.
        """
        from dnas.io import CheckpointError, check_checkpoint

        subcommand = self.config.get("subcommand")
        if subcommand:
            config = self.config[subcommand]
            if config.get("weights_only") is False:
                raise CheckpointError(
                    "--weights_only false: dnas reads checkpoints only with torch.load(weights_only=True) and never "
                    "runs pickled code; drop the option"
                )
            path = self._ckpt_path(config)
            if path is not None:
                check_checkpoint(path, read_remote=False)
        super()._parse_ckpt_path()

    def _run_subcommand(self, subcommand: str) -> None:
        """Run ``fit``/``validate``/...; dnas' own checks in ``prepare_data``/``setup`` end with one line, too.

        Only :class:`dnas.errors.ConfigError` (a value or input file the user fixes) becomes a message; every other
        exception keeps its traceback. A URL ``--ckpt_path`` that a user's CheckpointIO plugin (not dnas'
        :class:`dnas.io.AtomicCheckpointIO`) will read is downloaded and checked here first; the plugin downloads it
        again (a server may then send other bytes), so such a plugin should load with ``weights_only=True`` itself.
        """
        from dnas.errors import ConfigError
        from dnas.io import AtomicCheckpointIO, check_checkpoint

        path = self._ckpt_path(self.config_init[subcommand])
        if path is not None and not isinstance(self.trainer.strategy.checkpoint_io, AtomicCheckpointIO):
            check_checkpoint(path)
        self._check_cost_table(subcommand)
        try:
            _check_output_dirs(self.trainer)
            try:
                super()._run_subcommand(subcommand)
            except BaseException:
                _remove_unstarted_run_dir(self.trainer)
                raise
        except ConfigError as err:
            message = str(err).strip() or type(err).__name__
            _fail(f"{err.kind} ({type(err).__name__}): {message}")

    def _check_cost_table(self, subcommand: str) -> None:
        """Read the model's cost table (``latency_loss.table``) now, not when the loss first needs it.

        The table is read lazily (``dnas lut`` builds the same model before the table exists), and with
        ``arch_warmup_epochs`` its first use comes after whole epochs; a missing or bad table is one line before the
        first batch instead, naming the command that measures it.
        """
        from dnas.latency.table import CostTableError

        latency = getattr(self.model, "latency_loss", None)
        path = getattr(latency, "path", None)
        if path is None:
            return
        try:
            latency.table  # noqa: B018 (loads and validates the file)
        except CostTableError as err:
            configs = " ".join(f"--config {c}" for c in self.config[subcommand].get("config") or ())
            hint = f"; measure it first: dnas lut {configs or '--config <this config>'} --out {path}"
            _fail(f"{str(err).split('; measure one with')[0]}{hint if not os.path.exists(path) else ''}")

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list) -> pl.Trainer:
        from pytorch_lightning.plugins import CheckpointIO

        from dnas.io import AtomicCheckpointIO

        plugins = config.get("plugins")
        plugins = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())  # checkpoints are written to a temp file, then renamed
        config = {**config, "plugins": plugins}
        return super()._instantiate_trainer(config, callbacks)


PRE_RUN_FILES = frozenset({"config.yaml", "hparams.yaml"})
"""What a run writes into its version directory before the first batch (LightningCLI's config, the logger's hparams)."""


def _remove_unstarted_run_dir(trainer: pl.Trainer) -> None:
    """Remove the logger's ``version_N`` directory of a run that failed before it produced anything.

    LightningCLI saves ``config.yaml`` (and the logger ``hparams.yaml``) at setup, before dnas' and the callbacks'
    start-up checks can refuse the run; a refused run would otherwise leave a ``version_N`` holding only those, and
    the next run would become ``version_N+1``. A directory holding anything else (metrics, checkpoints, plots) stays.
    """
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    if not trainer.is_global_zero or not trainer.loggers:
        return
    logger = trainer.loggers[0]
    if not isinstance(logger, (CSVLogger, TensorBoardLogger)) or "://" in str(logger.save_dir):
        return
    run = Path(logger.log_dir)
    entries = list(run.iterdir()) if run.is_dir() else []
    if entries and all(p.is_file() and p.name in PRE_RUN_FILES for p in entries):
        for p in entries:
            p.unlink()
        run.rmdir()
        if run.parent != Path(logger.save_dir) and not any(run.parent.iterdir()):
            run.parent.rmdir()  # the logger's name folder, created for this run only


def _check_output_dirs(trainer: pl.Trainer) -> None:
    """Create the run's output roots before the run: the trainer's ``default_root_dir`` and each logger's ``save_dir``.

    A directory that cannot be created or written is one :class:`~dnas.errors.ConfigError` now, not a traceback after
    the first epoch. Remote (``scheme://``) locations are left to the logger.
    """
    from dnas.errors import ConfigError

    roots = [("--trainer.default_root_dir", trainer.default_root_dir)]
    roots += [("--trainer.logger.init_args.save_dir", getattr(lg, "save_dir", None)) for lg in trainer.loggers]
    for flag, root in roots:
        if not root or "://" in str(root):
            continue
        try:
            os.makedirs(root, exist_ok=True)
            writable = os.access(root, os.W_OK | os.X_OK)
        except OSError as err:
            raise ConfigError(
                f"cannot create the output directory {str(root)!r} ({err.strerror or err}); set {flag} to a directory "
                f"you can write"
            ) from None
        if not writable:
            raise ConfigError(f"the output directory {str(root)!r} is not writable; set {flag} to one you can write")


def _close_process_group() -> None:
    """Destroy the DDP process group a finished run leaves behind (Lightning keeps it open after ``fit``).

    Exiting with it open leaves the gloo backend's threads running while the interpreter shuts down, which can abort
    the process ("terminate called without an active exception") after the run itself succeeded.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _check_config_files(argv: list[str]) -> None:
    """Refuse a bad ``--config``/``-c`` file with one clear line before jsonargparse reads it.

    Refused: not a regular file (a directory, FIFO or device such as ``/dev/zero`` would block or never end),
    larger than :data:`MAX_CONFIG_BYTES`, unreadable, not UTF-8, or empty (nothing but blank lines and comments).
    A value that is no existing path is left to jsonargparse (``--config`` also takes inline YAML).
    """
    for i, arg in enumerate(argv):
        path = argv[i + 1] if arg in ("--config", "-c") and i + 1 < len(argv) else None
        if arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        if path is None:
            continue
        try:
            mode = os.stat(path).st_mode
        except (OSError, ValueError):  # no such path (inline YAML, or jsonargparse reports it)
            continue
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
            _fail(f"config file {path!r} is {kind}; --config takes a YAML file")
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_CONFIG_BYTES + 1)
        except OSError as err:
            _fail(f"cannot read config file {path!r}: {err.strerror}")
        if len(data) > MAX_CONFIG_BYTES:
            _fail(f"config file {path!r} is larger than {MAX_CONFIG_BYTES // 2**20} MiB; --config takes a YAML config")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            _fail(f"config file {path!r} is not UTF-8 text ({err.reason} at byte {err.start})")
        lines = (line.strip() for line in text.lstrip("\ufeff").splitlines())
        if all(not line or line.startswith("#") or line in ("---", "...") for line in lines):
            _fail(f"config file {path!r} is empty (no settings, only blank lines or comments); give a YAML mapping")


def _import_from_cwd() -> None:
    """Make the current directory importable, as ``python -m dnas`` does, so ``class_path: my_project.X`` works.

    A console script's ``sys.path[0]`` is the folder of the script (the venv's ``bin/``), not the directory the user
    runs it from; LightningCLI users expect their own modules there to import.
    """
    cwd = os.getcwd()
    if not any(entry in ("", cwd) for entry in sys.path):
        sys.path.insert(0, cwd)


def main(args: ArgsType = None) -> None:
    """Entry point of ``dnas`` and ``python -m dnas``; ``args`` allows running from Python (tests, notebooks)."""
    argv = list(sys.argv[1:] if args is None else args) if not isinstance(args, dict) else args
    _import_from_cwd()
    from dnas.console import console

    if isinstance(argv, list) and argv and argv[0] in TOOLS:
        module, func = TOOLS[argv[0]][0].split(":")
        with console():  # `dnas lut` builds a DnasCLI too
            getattr(importlib.import_module(module), func)(argv[1:])
        return
    if isinstance(argv, list):
        _check_config_files(argv)
    from dnas.io import CheckpointError

    try:
        with console():
            DnasCLI(args=argv)
        _close_process_group()
    except CheckpointError as err:  # --ckpt_path (checked before the run, or read by dnas.io.AtomicCheckpointIO)
        _fail(str(err))
    except ArgumentError as err:  # the parser's own errors (exit_on_error=False): one line, not usage + message
        command = argv[0] if isinstance(argv, list) and argv and not argv[0].startswith("-") else ""
        _fail(f"{err} (dnas {command} --help lists the options)".replace("  ", " "))


if __name__ == "__main__":  # pragma: no cover
    main()
