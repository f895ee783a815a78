"""Search spaces: the supernet contract, the DAG cell engine, and the shipped spaces."""

# the shipped example spaces register their SpaceSpec and export builder on import
from dnas.cells import conv1d as conv1d
from dnas.cells import nb201 as nb201
from dnas.cells import tabular as tabular
from dnas.cells.base import ArchGroup, Supernet, argmax_cell, topk_cell
from dnas.cells.custom import CellSupernet
from dnas.cells.declarations import dense_edges
from dnas.cells.edges import DagCell, EdgeOptions, check_edges

__all__ = [
    "ArchGroup",
    "CellSupernet",
    "DagCell",
    "EdgeOptions",
    "Supernet",
    "argmax_cell",
    "check_edges",
    "dense_edges",
    "topk_cell",
]
