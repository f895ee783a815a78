"""``dnas baseline``: the found genotype against random genotypes of its space, under one retrain recipe.

See :mod:`dnas.baseline.runs`. Every problem with the inputs is one ``dnas baseline: error: ...`` line and exit
status 2. Example (arguments after ``--`` go to every retrain run)::

    dnas baseline --genotype logs/quickstart/version_0/genotype.json --config configs/quickstart_retrain.yaml
        --out baseline/digits --num_random 10 --seeds 0 1 2 -- --trainer.max_epochs 5
"""

from __future__ import annotations

import sys
from pathlib import Path

from jsonargparse import ArgumentParser

from dnas.baseline.runs import run_baseline, summarize
from dnas.errors import one_line
from dnas.genotypes import GenotypeError, load, require_space_spec


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="dnas baseline",
        description="Retrain a found genotype and random genotypes of its space with one recipe; compare them.",
        epilog="Arguments after -- go to every retrain run (dnas fit overrides), e.g. -- --trainer.max_epochs 4. "
        "Finished runs in --out are kept: rerunning the command (or copying runs/*.json of the same random "
        "genotypes into a new --out) skips them.",
    )
    p.add_argument("--genotype", required=True, help="the found genotype: a genotype.json or a published name")
    p.add_argument("--config", required=True, nargs="+", help="retrain config(s) for dnas fit (a dnas.Retrain run)")
    p.add_argument("--out", required=True, help="output directory (results are kept there across restarts)")
    p.add_argument("--num_random", type=int, default=10, help="random genotypes to draw")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="retrain seeds of the found genotype")
    p.add_argument("--random_seeds", type=int, nargs="+", default=[0], help="retrain seeds of each random genotype")
    p.add_argument("--sample_seed", type=int, default=0, help="seed of the random genotype draws")
    p.add_argument(
        "--exclude",
        nargs="*",
        default=None,
        help="ops never drawn (default: those the space's rule skips); ops the search did not have are never drawn",
    )
    return p


def main(argv: list[str] | None = None) -> None:
    """``dnas baseline ...``; arguments after ``--`` go to every retrain run."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    args = build_parser().parse_args(argv)
    try:
        found = load(args.genotype)
        require_space_spec(found.space, source=args.genotype)
        if args.num_random < 1 or not args.seeds or not args.random_seeds:
            raise ValueError("--num_random must be >= 1 and --seeds/--random_seeds non-empty")
        exclude = None if args.exclude is None else tuple(args.exclude)
        results = run_baseline(
            found, args.config, Path(args.out), args.num_random, args.seeds, args.random_seeds, args.sample_seed,
            exclude, extra,
        )  # fmt: skip
    except (GenotypeError, ValueError) as err:
        print(f"dnas baseline: error: {one_line(str(err))}", file=sys.stderr)
        sys.exit(2)
    s = summarize(results)
    print(
        f"found {s['found_mean']:.4f} ± {s['found_std']:.4f} ({s['found_runs']} seeds); random "
        f"{s['random_mean']:.4f} ± {s['random_std']:.4f} (best {s['random_best']:.4f}, {s['random_count']} cells); "
        f"{s['random_below_found']} of {s['random_count']} random cells below the found mean; "
        f"report: {Path(args.out) / 'report.md'}"
    )
