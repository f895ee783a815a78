"""Checks that a search module's supernet, its ``num_classes`` and the datamodule agree.

Each mismatch is one :class:`~dnas.errors.ConfigError` naming both numbers and the option to change.
"""

from __future__ import annotations

from typing import Any

from dnas.cells.base import Supernet
from dnas.errors import ConfigError


def supernet_num_classes(supernet: Supernet, given: int | None) -> int:
    """The supernet's number of classes; ``given`` (the data's, linked by the CLI) must agree with it."""
    out = (
        getattr(supernet, "num_classes", None)
        or supernet.build_options().get("num_classes")
        or getattr(getattr(supernet, "classifier", None), "out_features", None)
    )
    if out is not None and given and int(given) != int(out):
        raise ConfigError(
            f"the supernet {type(supernet).__name__} outputs {out} classes but num_classes is {given} (the "
            f"datamodule's, in the CLI); make the supernet output {given}"
        )
    if out is None and not given:
        raise ValueError("cannot infer the number of classes from the supernet; pass num_classes")
    return int(out if out is not None else given)


def check_data(supernet: Supernet, num_classes: int, dm: Any) -> None:
    """Check the datamodule ``dm`` against the supernet: classes, and input channels (features) where both declare them.

    Raises:
        ConfigError: a mismatch, naming both numbers and the option to change.
    """
    want = getattr(dm, "num_classes", None)
    if want is not None and int(want) != int(num_classes):
        raise ConfigError(
            f"the datamodule has {want} classes but the model outputs {num_classes}; "
            f"set model.init_args.supernet.init_args.num_classes: {want}"
        )
    want = getattr(dm, "in_channels", None)
    # spaces name their input width in_channels (images, sequences) or in_features (table rows)
    key = next((k for k in ("in_channels", "in_features") if isinstance(getattr(supernet, k, None), int)), "")
    have = getattr(supernet, key, None) if key else None
    if want is not None and have is not None and int(want) != have:
        what = "features per row" if key == "in_features" else "channels"
        raise ConfigError(
            f"supernet {key}={have} but the data module {type(dm).__name__} yields {want} {what}; "
            f"set --model.init_args.supernet.init_args.{key} {want}"
        )
