"""``dnas export``: write a genotype's network as a standalone artifact (python / pt2 / onnx), optionally trained.

Examples::

    dnas export --genotype DARTS_V2 --out exported/darts_v2                  # model.py + weights.pt (untrained)
    dnas export --ckpt logs/retrain/version_0/checkpoints/last.ckpt --format pt2 --out exported/pt2
    dnas export --genotype logs/quickstart/version_0/genotype.json --out exported/digits     # the searched sizes
    dnas export --genotype logs/quickstart/version_0/genotype.json --init_channels 36 --layers 20 --out exported/big
    dnas export --genotype logs/quickstart_mnist1d/version_0/genotype.json --option channels=32 --out exported/1d

Every space exports the same way. The network's options are, in order of precedence: the command line (the flags
below, or ``--option KEY=VALUE`` for any option of the space's builder), the checkpoint (a :class:`dnas.Retrain`
checkpoint records them), the genotype (a search records its supernet's sizes), the builder's defaults (DARTS: the
CIFAR-10 evaluation network, C=36, 20 cells). The example input (tracing, FLOPs, the check of ``model.py``) is
``--input_shape``, else ``--input_size`` with the network's channels, else the shape the search recorded, else the
space's usual image size.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dnas.errors import one_line
from dnas.export import build_model, builder_options, resolved_options
from dnas.export.artifacts import FORMATS, ExportError, export_model
from dnas.export.builders import default_input_shape
from dnas.export.checkpoints import (
    CheckpointMismatchError,
    load_weights,
    read_checkpoint,
    refuse_search_checkpoint,
    weights_from_checkpoint,
)
from dnas.export.summary import format_summary
from dnas.genotypes import Genotype, GenotypeError, load, require_space_spec
from dnas.genotypes.build import build_options
from dnas.storage import join, read_bytes

OPTION_KEYS = ("init_channels", "layers", "num_classes", "in_channels", "stem", "auxiliary")
"""Options with a flag of their own (the DARTS evaluation network's, and the common num_classes / in_channels)."""


FLAG_SPELLING = "Flags are spelled with underscores, as in dnas fit (--input_shape); dashes work too (--input-shape)."


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dnas export",
        description="Export a genotype's discrete network as a standalone artifact that needs only torch.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog=FLAG_SPELLING,
    )
    p.add_argument("--genotype", help="published name (e.g. DARTS_V2) or genotype JSON path; default: the checkpoint's")
    p.add_argument("--ckpt", help="trained weights: a dnas.Retrain checkpoint or a weights.pt state dict")
    p.add_argument("--format", default="python", choices=FORMATS, dest="fmt")
    p.add_argument("--out", required=True, help="output directory (created; must not exist unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    g = p.add_argument_group("network options (default: from --ckpt, else the genotype's recorded ones)")
    g.add_argument("--init_channels", "--init-channels", type=int)
    g.add_argument("--layers", type=int)
    g.add_argument("--num_classes", "--num-classes", type=int)
    g.add_argument("--in_channels", "--in-channels", type=int)
    g.add_argument("--stem", choices=["cifar", "imagenet"])
    g.add_argument("--auxiliary", action=argparse.BooleanOptionalAction, default=None)
    g.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any option of the space's builder, VALUE as JSON (e.g. channels=32, stage_strides=[1,2,2,2,1,2,1])",
    )
    g.add_argument(
        "--input_size",
        "--input-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="input size for tracing and FLOPs (32 32 / 224 224)",
    )
    g.add_argument(
        "--input_shape",
        "--input-shape",
        type=int,
        nargs="+",
        metavar="D",
        help="input shape without the batch, for non-image spaces (e.g. 1 40 for MNIST-1D); overrides --input_size",
    )
    g.add_argument("--no_flops", "--no-flops", action="store_true", help="skip the FLOP count in summary.json")
    c = p.add_argument_group("cost (a table measured by dnas lut for this space and input)")
    c.add_argument(
        "--table",
        metavar="LUT.json",
        help="print the table's cost of the network, its calibrated whole-network latency ± error and the budget",
    )
    c.add_argument(
        "--measure",
        action="store_true",
        help="also time the exported network here with the table's settings (device, dtype, batch, threads)",
    )
    return p


def run(argv: list[str]) -> Path | str:
    """Parse ``argv`` and export; returns the output directory (a URL stays a string). Errors are raised."""
    args = build_parser().parse_args(argv)
    if args.measure and not args.table:
        build_parser().error("--measure needs --table LUT.json (the measurement uses the table's settings)")

    ckpt: dict[str, Any] = {}
    if args.ckpt:
        ckpt = read_checkpoint(args.ckpt)
        refuse_search_checkpoint(ckpt, args.ckpt)  # before the genotype: the message names the search's genotype
    hparams = ckpt.get("hyper_parameters", {}) if isinstance(ckpt.get("hyper_parameters"), dict) else {}

    if args.genotype:
        genotype = load(args.genotype)
        name = args.genotype if Path(args.genotype).suffix != ".json" else Path(args.genotype).stem
    elif isinstance(ckpt.get("dnas_genotype"), dict):
        genotype = Genotype.from_dict(ckpt["dnas_genotype"], source=f"{args.ckpt} (dnas_genotype)")
        name = str(hparams.get("genotype") or Path(args.ckpt).stem)
    else:
        raise GenotypeError("no genotype: pass --genotype NAME_OR_PATH (or a --ckpt written by dnas.Retrain)")
    require_space_spec(genotype.space, source=str(args.genotype or args.ckpt))

    recorded = hparams.get("build") if isinstance(hparams.get("build"), dict) else {}
    options = {
        **{k: hparams[k] for k in OPTION_KEYS if k in hparams},  # dnas.Retrain checkpoints before "build"
        **recorded,
        **{k: getattr(args, k) for k in OPTION_KEYS if getattr(args, k) is not None},
        **_parse_options(args.option),
    }
    if args.input_size and "input_size" in builder_options(genotype.space):
        # FBNet: strides follow the resolution, so build at the size we trace at
        if args.input_size[0] != args.input_size[1]:
            raise ExportError(f"{genotype.space!r} networks take square inputs; got --input_size {args.input_size}")
        options["input_size"] = args.input_size[0]
    try:
        model = build_model(genotype, **options)
    except TypeError as err:
        raise ExportError(
            f"the {genotype.space!r} builder does not take these options {sorted(options)}: {err}; "
            f"its options: {list(builder_options(genotype.space))}"
        ) from None
    shape = _input_shape(args, genotype, options)
    extra: dict[str, Any] = {"weights": "untrained (fresh initialisation)"}
    if args.ckpt:
        load_weights(model, weights_from_checkpoint(ckpt, source=args.ckpt), source=args.ckpt)
        extra["weights"] = f"from {args.ckpt}"
    out = export_model(
        model,
        genotype,
        resolved_options(genotype, options),
        args.out,
        fmt=args.fmt,
        overwrite=args.overwrite,
        input_shape=shape,
        name=name,
        extra_summary=extra,
        flops=not args.no_flops,
    )
    summary = json.loads(read_bytes(join(out, "summary.json")))
    shown = name if name.isprintable() else repr(name)
    print(f"dnas export: wrote {out}/ ({args.fmt}): {shown}, {format_summary(summary)}")
    if isinstance(genotype.meta.get("budget"), dict):  # searched under a hard budget (dnas.latency.BudgetLoss)
        from dnas.latency.budget import describe

        print(f"dnas export: {describe(genotype.meta['budget'])}")
    if args.table:
        _print_cost(args.table, genotype, model, shape, args.measure)
    return out


def _print_cost(path: str, genotype: Any, model: Any, shape: tuple[int, ...], measure: bool) -> None:
    """Print the table's cost of ``genotype`` as ``dnas export:`` lines.

    With the calibrated whole-network latency ± error, the genotype's budget and, with ``measure``, the measurement.
    """
    from dnas.latency.measure import time_network
    from dnas.latency.table import CostTable

    table = CostTable.load(path)
    prediction = table.predict(table.choice(genotype))
    measured = None
    if measure:
        try:
            measured = time_network(model, shape, table.meta)
        except RuntimeError as err:  # the table's device is not on this machine
            raise ExportError(f"--measure: {err}") from None
    record = genotype.meta.get("budget")
    budget = record.get("budget") if isinstance(record, dict) and record.get("metric") == table.metric else None
    for label, value in prediction.rows(measured, budget):
        print(f"dnas export: {table.metric} {label}: {value}")


def _parse_options(pairs: list[str]) -> dict[str, Any]:
    """``--option KEY=VALUE`` pairs; VALUE is JSON (a bare word is a string)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.isidentifier():
            raise ExportError(f"--option wants KEY=VALUE with KEY a Python name, got {pair!r}")
        try:
            out[key] = json.loads(text)
        except ValueError:
            out[key] = text
    return out


def _input_shape(args: argparse.Namespace, genotype: Any, options: dict[str, Any]) -> tuple[int, ...]:
    """The example input's shape without the batch (see the module docstring for the order)."""
    if args.input_shape:
        return tuple(args.input_shape)
    if args.input_size:
        return (int(build_options(genotype, options).get("in_channels") or 3), *args.input_size)
    return default_input_shape(genotype, options)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``dnas export``: clear one-line errors, exit status 2 on bad input."""
    try:
        run(list(sys.argv[1:] if argv is None else argv))
    except (GenotypeError, ExportError, CheckpointMismatchError, FileNotFoundError, ValueError) as err:
        print(f"dnas export: error: {one_line(err)}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as err:  # an I/O failure not anticipated above: still one line that names the file
        where = f" ({err.filename!r})" if err.filename else ""
        print(f"dnas export: error: {one_line(f'{err.strerror or err}{where}')}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":  # pragma: no cover
    main()
