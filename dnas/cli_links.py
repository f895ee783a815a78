"""The datamodule's ``num_classes``/``in_channels`` fill the model's arguments, so a config states each once.

:class:`dnas.cli.DnasCLI` links them with LightningCLI's ``link_arguments(..., apply_on="instantiate")``: the
datamodule is built first, and its attribute (``ImageFolderDataModule`` counts its class folders) becomes the
argument. Targets may lie inside the chosen model's subclass arguments (``model.init_args.supernet.init_args...``):
jsonargparse reaches such deep targets (mauvilsa/jsonargparse#75, #275; tested with 4.53) and skips a link whose
target the chosen class lacks (a ``Retrain`` has no ``supernet``, a search module no ``in_channels``) or whose
datamodule lacks the attribute.
"""

from __future__ import annotations

from typing import Any

from jsonargparse import Namespace
from pytorch_lightning.cli import _InstantiatorFn

LINKS: tuple[tuple[str, str], ...] = (
    ("num_classes", "model.init_args.num_classes"),
    ("in_channels", "model.init_args.in_channels"),
    ("num_classes", "model.init_args.supernet.init_args.num_classes"),
    ("in_channels", "model.init_args.supernet.init_args.in_channels"),
    ("in_channels", "model.init_args.supernet.init_args.in_features"),  # a table's features per row
)
"""Datamodule attribute -> the model argument it sets."""


def contradiction(given: Namespace, datamodule: Any) -> str | None:
    """What is wrong when the user wrote a linked argument (``given``: parsed without defaults) the data contradicts.

    The link sets the argument from the data whatever the config says, so a written value is either the data's or a
    mistake; the parsed config alone cannot tell a written value from the class's default.
    """
    for attr, target in LINKS:
        value, want = given.get(target), getattr(datamodule, attr, None)
        if value is not None and want is not None and value != want:
            return (
                f"{target}={value} but the datamodule {type(datamodule).__name__} has {attr}={want}; the data sets it "
                f"(linked from data.{attr}): drop the value or give --{target} {want}"
            )
    return None


class Instantiator(_InstantiatorFn):
    """LightningCLI's instantiator (it records the parsed config as the module's hyperparameters), minus skipped links.

    jsonargparse hands the instantiator every instantiation link as applied, also one it skipped because the chosen
    class has no such argument; LightningCLI would write that value into the hyperparameters (a search module's
    ``in_channels``), and ``load_from_checkpoint`` or ``--ckpt_path`` would then pass it to a class that does not
    take it. Only links whose target the parsed config holds are passed on.
    """

    def __call__(self, class_type: Any, *args: Any, applied_instantiation_links: dict, **kwargs: Any) -> Any:
        config = self.cli.config
        subcommand = config.get("subcommand")
        config = config[subcommand] if subcommand else config
        applied = {k: v for k, v in applied_instantiation_links.items() if k in config}
        return super().__call__(class_type, *args, applied_instantiation_links=applied, **kwargs)
