"""The export a search writes at the end of ``fit``: ``<log dir>/export/`` with model.py, weights.pt and summary.

The weights are a **fresh initialisation**: a found architecture is retrained from scratch (``dnas.Retrain``,
``configs/quickstart_retrain.yaml``), never fine-tuned from the supernet, whose ops have other shapes. The export
is there so a search leaves a ready, inspectable network; ``dnas export --ckpt`` writes trained weights later.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dnas.genotypes import Genotype


def export_search_result(
    genotype: Genotype,
    out_dir: str | Path,
    input_shape: Sequence[int] | None = None,
    options: Mapping[str, Any] | None = None,
) -> tuple[Path | None, str]:
    """Build the discrete network of ``genotype`` and write it (python format) to ``out_dir``.

    Args:
        genotype: the search result; its recorded build options (``meta["build"]``) give the network its sizes.
        out_dir: the export directory (replaced if it is a previous export).
        input_shape: one input sample's shape, for the example input and the FLOPs; default: the recorded one.
        options: builder options over the recorded ones (e.g. ``{"init_channels": 36, "layers": 20}``).

    Returns ``(out_dir or None, message)``; None when the network cannot be built or written (an existing ``out_dir``
    is replaced only if it is a previous export): the message says why, and how to export later.
    """
    from dnas.export import build_model, resolved_options
    from dnas.export.artifacts import ExportError, export_model
    from dnas.genotypes import GenotypeError
    from dnas.genotypes.build import recorded_build

    later = "export later with: dnas export --genotype <log dir>/genotype.json --out DIR"
    start = time.perf_counter()
    options = dict(options or {})
    shape = input_shape or recorded_build(genotype)[1]
    if not shape:
        return None, f"skipping the end-of-search export: the input shape is unknown; {later} --input_shape C ..."
    try:
        model = build_model(genotype, **options)
        out = export_model(
            model,
            genotype,
            resolved_options(genotype, options),
            out_dir,
            fmt="python",
            overwrite=True,
            input_shape=shape,
            name="search result",
            extra_summary={"weights": "untrained (fresh initialisation); retrain with dnas.Retrain"},
        )
    except (ExportError, GenotypeError, TypeError, ValueError) as err:  # the search itself is done: say, not fail
        return None, f"skipping the end-of-search export ({err}); {later}"
    return (
        out,
        f"wrote {out}/model.py (untrained weights, retrain with dnas.Retrain) in {time.perf_counter() - start:.1f}s",
    )
