"""Callbacks: architecture selection, temperature schedules, genotype files, export, plots, sharpness."""

from dnas.callbacks.ddp_check import ArchSyncCheck
from dnas.callbacks.genotype_writer import GenotypeWriter
from dnas.callbacks.magnitude import MagnitudeSelection
from dnas.callbacks.perturbation import PerturbationSelection
from dnas.callbacks.plots import AlphaPlots
from dnas.callbacks.search_export import SearchExport
from dnas.callbacks.sharpness import HessianEigenvalue
from dnas.callbacks.temperature import TemperatureSchedule

__all__: list[str] = [
    "AlphaPlots",
    "ArchSyncCheck",
    "GenotypeWriter",
    "HessianEigenvalue",
    "MagnitudeSelection",
    "PerturbationSelection",
    "SearchExport",
    "TemperatureSchedule",
]
