"""The random baseline of a search: retrain the found genotype and random genotypes of its space with one recipe."""

from dnas.baseline.runs import draw_random, run_baseline, summarize

__all__ = ["draw_random", "run_baseline", "summarize"]
