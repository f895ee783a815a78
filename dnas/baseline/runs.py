"""Retrain a found genotype and random genotypes of its space with one recipe, and compare.

Random cells of a space are often as good as searched ones (Li & Talwalkar 2019; Yang et al. 2020), so a search result
means something only against that baseline. This tool draws ``--num_random`` genotypes from the found genotype's space
(:func:`dnas.genotypes.sampling.random_genotype`, seeded, valid under the space's rules, built at the searched sizes,
over the ops the search had: those in the found genotype's ``meta["candidates"]`` when it records them),
retrains the found one with each of ``--seeds`` and every random one with each of ``--random_seeds`` through the same
retrain config (``dnas fit --config RETRAIN.yaml``, a :class:`dnas.Retrain` run; arguments after ``--`` are passed
on, e.g. ``-- --trainer.max_epochs 5``), and writes into ``--out``:

* ``genotypes/<name>.json`` — every genotype retrained;
* ``runs/<name>_seed<s>.json`` — one result per run, written atomically when the run ends, so a restarted command
  skips finished runs and loses nothing;
* ``report.md`` / ``report.html`` — the table and one picture (accuracy against parameters, found vs random).

The accuracy is the retrain run's final ``val/acc``: with ``search: false`` datamodules, the held-out test split.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from dnas.genotypes import Genotype, GenotypeError, require_space_spec
from dnas.genotypes.build import CANDIDATES_KEY
from dnas.genotypes.sampling import random_genotype, rule_exclude
from dnas.io import atomic_write_text

FOUND = "found"


def space_exclude(genotype: Genotype) -> tuple[str, ...] | None:
    """Ops the genotype rule of a :class:`~dnas.cells.CellSupernet` space never picks; None for other spaces."""
    from dnas.cells.declarations import space_class

    cls = space_class(genotype.space)
    if cls is None:
        return None
    if cls.genotype_exclude is not None:
        return tuple(cls.genotype_exclude)
    return ("none",) if cls.genotype_rule == "topk" else ()


def unsearched_ops(found: Genotype) -> tuple[str, ...]:
    """Ops of ``found``'s space that its search never had as candidates (:data:`CANDIDATES_KEY`); () without a record.

    A space may accept more ops than one search chose from (the ``darts`` space also takes NASNet's
    ``sep_conv_7x7``/``conv_7x1_1x7``; a search may drop ``none``): a random cell with them is not a cell the search
    could have returned.
    """
    recorded = found.meta.get(CANDIDATES_KEY)
    if not recorded:
        return ()
    searched = {op for ops in recorded.values() for op in ops}
    spec = require_space_spec(found.space)
    return tuple(dict.fromkeys(op for cs in spec.cells.values() for op in cs.ops if op not in searched))


def draw_random(found: Genotype, n: int, seed: int, exclude: tuple[str, ...] | None) -> list[Genotype]:
    """``n`` distinct random genotypes of ``found``'s space, none equal to ``found`` (seeded).

    ``exclude``: ops never drawn (None: each cell's rule); the :func:`unsearched_ops` of ``found`` are never drawn.
    """
    import random

    spec = require_space_spec(found.space)
    unsearched = unsearched_ops(found)
    if unsearched:
        if exclude is None:  # None means each cell's rule; spelled out here to add the unsearched ops to it
            exclude = tuple(op for cs in spec.cells.values() for op in rule_exclude(cs))
        exclude = tuple(dict.fromkeys((*exclude, *unsearched)))
    rng = random.Random(seed)
    out: list[Genotype] = []
    for _ in range(100 * n + 100):
        if len(out) == n:
            return out
        g = random_genotype(spec, rng, template=found, exclude=exclude)
        if g != found and g not in out:
            out.append(g)
    raise GenotypeError(f"space {found.space!r} has fewer than {n} genotypes other than the found one to draw")


def retrain(genotype_path: Path, seed: int, configs: list[str], extra: list[str], work: Path) -> dict[str, Any]:
    """One ``dnas fit`` retrain run in this process; returns accuracy, loss, model size and wall time."""
    from dnas.cli import DnasCLI

    if work.exists():
        shutil.rmtree(work)  # a run cut off before: start it again
    args = ["fit"] + [a for c in configs for a in ("--config", c)]
    args += ["--model.init_args.genotype", str(genotype_path), "--seed_everything", str(seed)]
    args += ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false"]
    args += ["--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(work), *extra]
    start = time.perf_counter()
    cli = DnasCLI(args=args)
    seconds = time.perf_counter() - start
    metrics = cli.trainer.callback_metrics
    if "val/acc" not in metrics:
        raise RuntimeError(f"the retrain run of {genotype_path} logged no val/acc; does the config validate?")
    summary_file = work / "summary.json"  # Retrain's, unless its write_summary is off
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else cli.model.summary()
    result = {
        "accuracy": float(metrics["val/acc"]),
        "loss": float(metrics["val/loss"]) if "val/loss" in metrics else None,
        "parameters": summary.get("parameters"),
        "flops": summary.get("flops"),
        "epochs": int(cli.trainer.current_epoch),
        "seconds": round(seconds, 2),
    }
    shutil.rmtree(work, ignore_errors=True)
    return result


def run_baseline(
    found: Genotype,
    configs: list[str],
    out: Path,
    num_random: int = 10,
    seeds: list[int] | tuple[int, ...] = (0, 1, 2),
    random_seeds: list[int] | tuple[int, ...] = (0,),
    sample_seed: int = 0,
    exclude: tuple[str, ...] | None = None,
    extra: list[str] | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Retrain ``found`` and ``num_random`` random genotypes (see the module docstring); returns every run's result.

    Finished runs (``runs/*.json``) are read back, not rerun; the report is rewritten at the end.
    """
    from tqdm.auto import tqdm

    out = Path(out)
    exclude = space_exclude(found) if exclude is None else exclude
    genotypes = {FOUND: found} | {
        f"random{i:02d}": g for i, g in enumerate(draw_random(found, num_random, sample_seed, exclude))
    }
    jobs = [(FOUND, s) for s in seeds] + [(n, s) for n in genotypes if n != FOUND for s in random_seeds]
    finished = {}
    for name, seed in jobs:  # check what the directory holds before writing anything into it
        file = out / "runs" / f"{name}_seed{seed}.json"
        if file.is_file():
            done = json.loads(file.read_text())
            if done.get("genotype") != str(genotypes[name]):
                raise ValueError(
                    f"{file} holds a run of another genotype ({done.get('genotype')}); this command draws "
                    f"{genotypes[name]}: use a new --out, or the --genotype/--sample_seed/--exclude of that run"
                )
            finished[name, seed] = done
    paths = {name: out / "genotypes" / f"{name}.json" for name in genotypes}
    for name, g in genotypes.items():
        atomic_write_text(paths[name], g.to_json() + "\n")
    results = []
    bar = tqdm(total=len(jobs), desc="dnas baseline", unit="run", disable=not progress)
    for name, seed in jobs:
        if (name, seed) in finished:
            results.append(finished[name, seed])
        else:
            bar.set_postfix_str(f"{name} seed {seed}")
            work = out / "work" / f"{name}_seed{seed}"
            result = {"name": name, "seed": seed, "genotype": str(genotypes[name])}
            result |= retrain(paths[name], seed, list(configs), list(extra or []), work)
            atomic_write_text(out / "runs" / f"{name}_seed{seed}.json", json.dumps(result, indent=1) + "\n")
            results.append(result)
        bar.update(1)
    bar.close()
    shutil.rmtree(out / "work", ignore_errors=True)
    from dnas.baseline.report import write_baseline_report

    write_baseline_report(out, found, results, configs, extra or [])
    return results


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Found mean/std over seeds, random mean/std over genotypes (each the mean of its seeds), and the found rank."""
    found = [r["accuracy"] for r in results if r["name"] == FOUND]
    per_random: dict[str, list[float]] = {}
    for r in results:
        if r["name"] != FOUND:
            per_random.setdefault(r["name"], []).append(r["accuracy"])
    rand = [statistics.mean(v) for v in per_random.values()]
    mean = statistics.mean(found) if found else float("nan")
    return {
        "found_mean": mean,
        "found_std": statistics.stdev(found) if len(found) > 1 else 0.0,
        "found_runs": len(found),
        "random_mean": statistics.mean(rand) if rand else float("nan"),
        "random_std": statistics.stdev(rand) if len(rand) > 1 else 0.0,
        "random_best": max(rand) if rand else float("nan"),
        "random_count": len(rand),
        "random_below_found": sum(a < mean for a in rand),
    }
