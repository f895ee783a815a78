"""The export a search writes at the end of ``fit``: ``<log dir>/export/`` with model.py, weights.pt and summary.

The weights are a **fresh initialisation**: a found architecture is retrained from scratch (``dnas.Retrain``,
``configs/quickstart_retrain.yaml``), never fine-tuned from the supernet, whose ops have other shapes. The export
is there so a search leaves a ready, inspectable network; ``dnas export --ckpt`` writes trained weights later.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from torch import nn

from dnas.genotypes import Genotype


def supernet_options(supernet: nn.Module) -> dict[str, int]:
    """``in_channels``, ``num_classes``, ``init_channels`` and ``layers`` read from a DARTS-style supernet.

    Reads the first conv's input channels, the classifier's outputs, the number of cells and the first cell's
    channel count; entries that cannot be read are left out.
    """
    out: dict[str, int] = {}
    first_conv = next((m for m in supernet.modules() if isinstance(m, nn.Conv2d)), None)
    if first_conv is not None:
        out["in_channels"] = int(first_conv.in_channels)
    classifier = getattr(supernet, "classifier", None)
    if isinstance(classifier, nn.Linear):
        out["num_classes"] = int(classifier.out_features)
    cells = getattr(supernet, "cells", None)
    if isinstance(cells, nn.ModuleList) and len(cells):
        out["layers"] = len(cells)
        pre = getattr(cells[0], "preprocess1", None)
        conv = next((m for m in pre.modules() if isinstance(m, nn.Conv2d)), None) if pre is not None else None
        if conv is not None:
            c = int(conv.out_channels) // (2 if getattr(cells[0], "reduction", False) else 1)
            if c >= 2 and c % 2 == 0:
                out["init_channels"] = c
    return out


def export_search_result(
    genotype: Genotype,
    supernet: nn.Module,
    out_dir: str | Path,
    input_size: tuple[int, int] | None = None,
    init_channels: int | None = None,
    layers: int | None = None,
) -> tuple[Path | None, str]:
    """Build the discrete network of ``genotype`` and write it (python format) to ``out_dir``.

    Returns ``(out_dir or None, message)``; None when the space has no builder or ``out_dir`` cannot be written (an
    existing ``out_dir`` is replaced only if it is a previous export): the message says why.
    """
    from dnas.export.builders import registered_builders
    from dnas.export.codegen import PYTHON_EXPORT_SPACES

    if genotype.space not in registered_builders():
        return None, f"no exporter for space {genotype.space!r}; skipping the end-of-search export"
    if genotype.space not in PYTHON_EXPORT_SPACES:
        return None, (
            f"the end-of-search export writes model.py for spaces {list(PYTHON_EXPORT_SPACES)} only; export this "
            f"{genotype.space!r} genotype with: dnas export --genotype <log dir>/genotype.json --format pt2 --out DIR"
        )
    from dnas.export import build_model
    from dnas.export.artifacts import ExportError, export_model

    start = time.perf_counter()
    found = supernet_options(supernet)
    options: dict[str, Any] = {
        "init_channels": init_channels or found.get("init_channels", 16),
        "layers": layers or found.get("layers", 8),
        "num_classes": found.get("num_classes", 10),
        "in_channels": found.get("in_channels", 3),
        "stem": "cifar",
        "auxiliary": False,
    }
    model = build_model(genotype, **options)
    try:
        out = export_model(
            model,
            genotype,
            options,
            out_dir,
            fmt="python",
            overwrite=True,
            input_size=input_size or (32, 32),
            name="search result",
            extra_summary={"weights": "untrained (fresh initialisation); retrain with dnas.Retrain"},
        )
    except ExportError as err:  # e.g. out_dir holds files export did not write: skip, the search itself is done
        return None, (
            f"skipping the end-of-search export ({err}); export later with: dnas export --genotype "
            f"<log dir>/genotype.json --out DIR"
        )
    return (
        out,
        f"wrote {out}/model.py (untrained weights, retrain with dnas.Retrain) in {time.perf_counter() - start:.1f}s",
    )
