"""Callbacks: architecture selection, temperature schedules, genotype tracking and plots."""

__all__: list[str] = []
