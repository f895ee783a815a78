"""``dnas plot GENOTYPE``: draw a genotype (published name or JSON path) to PNG and SVG."""

from __future__ import annotations

import sys
from pathlib import Path

from jsonargparse import ArgumentParser

from dnas.genotypes import GenotypeError, load
from dnas.viz.cells import ENGINES, render_genotype
from dnas.viz.style import IMAGE_FORMATS


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="dnas plot",
        description="Draw a genotype: DAG cells as graphs with op-labelled edges, chains as layer strips.",
    )
    p.add_argument("genotype", help="a published genotype name (e.g. DARTS_V2) or a genotype JSON file")
    p.add_argument("--out", "-o", default=None, help="output path without suffix (default: ./<name>)")
    p.add_argument("--formats", nargs="+", default=["png", "svg"], choices=list(IMAGE_FORMATS))
    p.add_argument("--cells", nargs="+", default=None, help="cell names to draw (default: all)")
    p.add_argument("--engine", default="auto", choices=list(ENGINES), help="graphviz needs the 'dot' binary")
    p.add_argument("--dpi", type=int, default=120)
    p.add_argument("--per_row", type=int, default=11, help="layers per row of a chain strip")
    return p


def main(argv: list[str] | None = None) -> list[Path]:
    """Run ``dnas plot``; returns the files written."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        genotype = load(args.genotype)
    except GenotypeError as err:
        raise SystemExit(f"dnas plot: {err}") from None
    out = Path(args.out) if args.out else Path(Path(args.genotype).stem if "/" in args.genotype else args.genotype)
    if args.cells:
        unknown = [c for c in args.cells if c not in genotype.cells]
        if unknown:
            raise SystemExit(f"dnas plot: genotype has cells {list(genotype.cells)}; unknown {unknown}")
    try:
        files = render_genotype(genotype, out, args.formats, args.engine, args.cells, args.dpi, args.per_row)
    except RuntimeError as err:
        raise SystemExit(f"dnas plot: {err}") from None
    for f in files:
        print(f)
    return files
