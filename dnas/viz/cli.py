"""``dnas plot GENOTYPE``: draw a genotype (published name or JSON path) to PNG and SVG.

Every problem (an invalid genotype, a space that is not registered, a bad option, an output path that cannot be
written) is one ``dnas plot: error: ...`` line on stderr and exit status 2.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from jsonargparse import ArgumentParser

from dnas.errors import one_line
from dnas.genotypes import GenotypeError, load, require_space_spec
from dnas.safe_read import shown_path
from dnas.viz.cells import ENGINES, render_genotype
from dnas.viz.style import IMAGE_FORMATS

MAX_DPI = 600
"""Largest ``--dpi``: a 20-inch DARTS drawing at 600 dpi is already a 12000-pixel-wide image."""


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="dnas plot",
        description="Draw a genotype: DAG cells as graphs with op-labelled edges, chains as layer strips.",
        epilog="Flags are spelled with underscores, as in dnas fit (--per_row); dashes work too (--per-row).",
    )
    p.add_argument("genotype", help="a published genotype name (e.g. DARTS_V2) or a genotype JSON file")
    p.add_argument("--out", "-o", default=None, help="output path without suffix, in an existing directory")
    p.add_argument("--formats", nargs="+", default=["png", "svg"], choices=list(IMAGE_FORMATS))
    p.add_argument("--cells", nargs="+", default=None, help="cell names to draw (default: all)")
    p.add_argument("--engine", default="auto", choices=list(ENGINES), help="graphviz needs the 'dot' binary")
    p.add_argument("--dpi", type=int, default=120, help=f"PNG resolution, 1..{MAX_DPI}")
    p.add_argument("--per_row", "--per-row", type=int, default=11, help="layers per row of a chain strip (>= 1)")
    return p


class PlotError(SystemExit):
    """Exit status 2 after one ``dnas plot: error:`` line on stderr; ``str()`` is that line (for callers and tests)."""

    def __init__(self, message: str):
        super().__init__(2)
        self.message = f"dnas plot: error: {one_line(message)}"

    def __str__(self) -> str:
        return self.message


def _fail(message: str) -> PlotError:
    err = PlotError(message)
    print(err.message, file=sys.stderr)
    return err


def _check_output(out: Path) -> None:
    """Refuse an output path whose directory is missing, is a file or cannot be written, before drawing."""
    parent = out.parent
    if os.path.lexists(parent) and not os.path.isdir(parent):
        raise _fail(f"--out {shown_path(out)}: {shown_path(parent)} is not a directory; pass --out in a directory")
    if not os.path.isdir(parent):
        raise _fail(f"--out {shown_path(out)}: directory {shown_path(parent)} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise _fail(f"output directory {shown_path(parent)} is not writable; pass --out in a writable directory")


def main(argv: list[str] | None = None) -> list[Path]:
    """Run ``dnas plot``; returns the files written."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if not 1 <= args.dpi <= MAX_DPI:
        raise _fail(f"--dpi must be in 1..{MAX_DPI}, got {args.dpi}")
    if args.per_row < 1:
        raise _fail(f"--per_row must be >= 1, got {args.per_row}")
    try:
        genotype = load(args.genotype)
        require_space_spec(genotype.space, source=str(args.genotype))
    except GenotypeError as err:
        raise _fail(str(err)) from None
    out = Path(args.out) if args.out else Path(Path(args.genotype).stem if "/" in args.genotype else args.genotype)
    if args.cells:
        unknown = [c for c in args.cells if c not in genotype.cells]
        if unknown:
            raise _fail(f"--cells: genotype has cells {list(genotype.cells)}; unknown {unknown}")
    _check_output(out)
    try:
        files = render_genotype(genotype, out, args.formats, args.engine, args.cells, args.dpi, args.per_row)
    except RuntimeError as err:
        raise _fail(str(err)) from None
    except OSError as err:
        where = shown_path(err.filename) if err.filename else shown_path(out)
        raise _fail(f"cannot write {where}: {err.strerror or err}") from None
    for f in files:
        print(f)
    return files
