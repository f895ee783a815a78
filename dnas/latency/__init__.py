"""Cost lookup tables measured on the user's device, and the expected-latency loss term (FBNet, ProxylessNAS)."""

from dnas.latency.budget import BudgetLoss, project_to_budget
from dnas.latency.loss import FORMS, LatencyLoss
from dnas.latency.measure import measure_table, time_module
from dnas.latency.shapes import Site, candidate_shapes, candidate_sites
from dnas.latency.table import CostTable, CostTableError, Entry, merge

__all__ = [
    "FORMS",
    "BudgetLoss",
    "CostTable",
    "CostTableError",
    "Entry",
    "LatencyLoss",
    "Site",
    "candidate_shapes",
    "candidate_sites",
    "measure_table",
    "merge",
    "project_to_budget",
    "time_module",
]
