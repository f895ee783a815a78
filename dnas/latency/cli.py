"""``dnas lut``: measure a cost table for the supernet of a search config, or merge tables.

Usage::

    dnas lut --config configs/fbnet_digits.yaml --out lut.json [--metric latency] [--device cuda] [--batch_size 1]
        [--calibrate 8]
    dnas lut merge a.json b.json --out merged.json [--overwrite]

The supernet (``model.init_args.supernet``) and the datamodule are built from the config exactly as ``dnas fit``
builds them (every ``--model.*`` / ``--data.*`` override works); the input shape comes from the datamodule's
``input_size`` unless ``--input_shape C H W`` is given. Nothing is trained and no data is loaded. A latency table
is then calibrated against ``--calibrate N`` (default 8) random whole networks of the space
(:mod:`dnas.latency.calibration`); ``--calibrate 0`` skips it.
"""

from __future__ import annotations

import argparse
import sys

import torch

from dnas.errors import one_line
from dnas.latency.measure import DTYPES, calibrate_table, measure_table
from dnas.latency.table import METRICS, CostTable, CostTableError, merge
from dnas.safe_read import shown_path


def _measure_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dnas lut",
        description="Measure the cost of every candidate op of every searchable edge of a config's supernet.",
        epilog="Other arguments (--config, --model.*, --data.*) are read as by `dnas fit`. "
        "`dnas lut merge A.json B.json --out C.json` merges tables. Flags are spelled with underscores, as in "
        "dnas fit (--batch_size); dashes work too (--batch-size).",
    )
    p.add_argument("--out", default="lut.json", help="output JSON (default: lut.json)")
    p.add_argument("--metric", choices=sorted(METRICS), default="latency")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    p.add_argument("--batch_size", "--batch-size", type=int, default=1, help="samples per timed call (default 1)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads while timing (default 1)")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls per op (default 10)")
    p.add_argument(
        "--min_run_time", "--min-run-time", type=float, default=0.05, help="seconds of timing per op (default 0.05)"
    )
    p.add_argument(
        "--input_shape",
        "--input-shape",
        type=int,
        nargs="+",
        help="sample shape, e.g. 3 32 32 (default: from the data)",
    )
    p.add_argument(
        "--calibrate",
        type=int,
        default=None,
        metavar="N",
        help="time N random architectures whole and store the table's error model (latency default 8; 0 = off)",
    )
    p.add_argument(
        "--calibrate_run_time",
        "--calibrate-run-time",
        type=float,
        default=0.3,
        help="seconds of timing per calibration network (default 0.3)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration architectures (default 0)")
    p.add_argument("--no_progress", "--no-progress", action="store_true", help="hide the progress bar")
    return p


def _merge(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="dnas lut merge", description="Merge cost tables of the same metric.")
    p.add_argument("tables", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true", help="later tables win where they disagree")
    args = p.parse_args(argv)
    try:
        merged = merge((CostTable.load(t) for t in args.tables), overwrite=args.overwrite)
        merged.save(args.out)
    except CostTableError as err:
        p.exit(2, f"dnas lut merge: error: {one_line(err)}\n")
    except OSError as err:
        p.exit(2, f"dnas lut merge: error: cannot write {shown_path(args.out)}: {err.strerror or err}\n")
    print(f"merged {len(args.tables)} tables ({len(merged.entries)} entries) into {args.out}")


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``dnas lut`` (``argv`` without the tool name)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "merge":
        _merge(argv[1:])
        return
    args, rest = _measure_parser().parse_known_args(argv)
    if not any(a == "--config" or a.startswith("--config=") or a.startswith("--model") for a in rest):
        _measure_parser().error("give the search config: --config CONFIG.yaml (the same file `dnas fit` reads)")
    from dnas.cli import DnasCLI

    cli = DnasCLI(args=rest, run=False, save_config_callback=None)  # built as by dnas fit; nothing trained or loaded
    supernet = getattr(cli.model, "supernet", None)
    if supernet is None:
        raise SystemExit(f"dnas lut: the config's model ({type(cli.model).__name__}) has no `supernet` to measure")
    shape = args.input_shape or list(getattr(cli.datamodule, "input_size", None) or [])
    if not shape:
        raise SystemExit("dnas lut: the datamodule has no `input_size`; pass --input_shape C H W")
    example = torch.zeros((1, *shape))
    calibrate = args.calibrate if args.calibrate is not None else (8 if args.metric == "latency" else 0)
    if calibrate and (args.metric != "latency" or calibrate < 3):
        _measure_parser().error(f"--calibrate needs --metric latency and N >= 3 (or 0), got {calibrate}")
    table = measure_table(
        supernet,
        example,
        metric=args.metric,
        device=args.device,
        dtype=args.dtype,
        batch_size=args.batch_size,
        threads=args.threads,
        warmup=args.warmup,
        min_run_time=args.min_run_time,
        progress=not args.no_progress,
    )
    table.save(args.out)
    total = sum(len(e.ops) for e in table.entries)
    print(f"wrote {args.out}: {len(table.entries)} mixed ops, {total} candidate {args.metric} entries ({table.unit})")
    if calibrate:  # after the table is on disk: a failed calibration does not cost the user the table
        try:
            run_time, progress = args.calibrate_run_time, not args.no_progress
            cal = calibrate_table(table, supernet, example, calibrate, args.warmup, run_time, args.seed, progress)
        except ValueError as err:
            raise SystemExit(
                f"dnas lut: error: calibration failed ({err}); {args.out} holds the table without it"
            ) from None
        table.meta["calibration"] = cal
        table.save(args.out)
        print(
            f"calibration on {cal['archs']} whole networks: measured ≈ {cal['intercept_ms']:.4g} ms + "
            f"{cal['slope']:.4g} × table sum; leave-one-out relative error max {100 * cal['max_rel_error']:.1f} %, "
            f"RMS {100 * cal['rms_rel_error']:.1f} %"
        )
        if cal["slope"] <= 0:
            print(
                "dnas lut: warning: the slope is <= 0, so the table does not order whole networks on this machine "
                "(timing noise?); re-measure with a longer --min_run_time / --calibrate_run_time or more --calibrate",
                file=sys.stderr,
            )
