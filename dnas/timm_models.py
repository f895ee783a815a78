"""dnas networks in timm's model registry: ``timm.create_model("dnas_<name>", num_classes=..., in_chans=...)``.

``import dnas.timm_models`` registers every published genotype (``dnas_darts_v2``, ``dnas_pc_darts``,
``dnas_fbnet_a``, ...; the names are :func:`dnas.genotypes.published` lower-cased). A found genotype or an exported
network is registered by path with :func:`register`::

    import timm
    import dnas.timm_models

    model = timm.create_model("dnas_darts_v2", num_classes=100, in_chans=3)
    name = dnas.timm_models.register("logs/quickstart/version_0/genotype.json")  # -> "dnas_genotype"
    name = dnas.timm_models.register("exported/digits", name="digits")  # a `dnas export` folder -> "dnas_digits"
    model = timm.create_model(name, pretrained=True)  # an export folder's trained weights.pt

The network is :func:`dnas.export.build_model` of the genotype (the options it recorded, e.g. a search's supernet
sizes, or the evaluation network's defaults), so it is the same module ``dnas export`` and :class:`dnas.Retrain`
build. timm's ``in_chans`` is the builder's ``in_channels``; any other keyword is a builder option
(``init_channels=36``, ``layers=20``, ``auxiliary=True``, ...). Registration is timm's own ``register_model``: timm
keeps one global registry, so registering a name twice replaces nothing and raises.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch.nn as nn
from timm.models import register_model

from dnas.errors import ConfigError
from dnas.genotypes import Genotype, load, published

PREFIX = "dnas_"


def _builder(genotype: Genotype, options: dict[str, Any], weights: Path | None) -> Callable[..., nn.Module]:
    """A timm model function building ``genotype`` (``pretrained`` loads ``weights``, a ``dnas export`` weights.pt)."""

    def create(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        from dnas.export import build_model
        from dnas.export.checkpoints import load_weights, weights_from_checkpoint
        from dnas.io import load_checkpoint

        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        for timm_only in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
            kwargs.pop(timm_only, None)
        if "in_chans" in kwargs:
            kwargs["in_channels"] = kwargs.pop("in_chans")
        model = build_model(genotype, **{**options, **kwargs})
        if pretrained:
            if weights is None:
                raise ConfigError(
                    f"no trained weights for {genotype.meta.get('name', 'this genotype')!r}: only a network registered "
                    "from a `dnas export` folder (weights.pt) has them; use pretrained=False"
                )
            source = str(weights)
            load_weights(model, weights_from_checkpoint(load_checkpoint(weights, what="weights"), source), source)
        return model

    return create


def register(source: str | Path | Genotype, name: str | None = None, **options: Any) -> str:
    """Register a genotype with timm; returns its model name (``"dnas_<name>"``) for ``timm.create_model``.

    Args:
        source: a published name, a genotype JSON file, a :class:`~dnas.Genotype`, or a ``dnas export`` folder
            (``genotype.json``, ``summary.json`` with the build options and ``weights.pt``, which
            ``pretrained=True`` loads).
        name: the name after ``dnas_``; default: the published name, the export folder's name or the file's stem.
        options: builder options over the recorded ones (``create_model``'s keywords override both).

    Raises:
        ConfigError: the name is taken in timm's registry, or the source is not a genotype or export folder.
    """
    import timm

    weights = None
    if isinstance(source, Genotype):
        genotype, default = source, str(source.meta.get("name", "genotype"))
    elif Path(source).is_dir():
        folder = Path(source)
        if not (folder / "genotype.json").is_file():
            raise ConfigError(f"{str(folder)!r} is not a `dnas export` folder (no genotype.json in it)")
        genotype, default = Genotype.from_file(folder / "genotype.json"), folder.name
        summary = folder / "summary.json"
        recorded = json.loads(summary.read_text()).get("options", {}) if summary.is_file() else {}
        options = {**recorded, **options}
        weights = folder / "weights.pt" if (folder / "weights.pt").is_file() else None
    else:
        genotype = load(source)
        default = str(source) if str(source).upper() in {n.upper() for n in published()} else Path(source).stem
    model_name = PREFIX + re.sub(r"[^0-9a-z_]+", "_", (name or default).lower()).strip("_")
    if model_name in timm.list_models(model_name):
        raise ConfigError(f"timm already has a model named {model_name!r}; register this one with another name=")
    create = _builder(genotype, dict(options), weights)
    create.__name__ = model_name  # timm registers a model function under its __name__
    create.__module__ = __name__
    register_model(create)
    return model_name


for _published in published():
    register(_published)
