"""Callbacks: architecture selection, temperature schedules, genotype tracking and plots."""

from dnas.callbacks.ddp_check import ArchSyncCheck
from dnas.callbacks.magnitude import MagnitudeSelection
from dnas.callbacks.perturbation import PerturbationSelection
from dnas.callbacks.plots import AlphaPlots
from dnas.callbacks.temperature import TemperatureSchedule

__all__: list[str] = [
    "AlphaPlots",
    "ArchSyncCheck",
    "MagnitudeSelection",
    "PerturbationSelection",
    "TemperatureSchedule",
]
