"""Search spaces: the supernet contract, the DAG cell engine, and the shipped spaces."""

from dnas.cells.base import ArchGroup, DagCell, Supernet, argmax_cell, check_edges, topk_cell

__all__ = ["ArchGroup", "DagCell", "Supernet", "argmax_cell", "check_edges", "topk_cell"]
