"""Pictures of a search: α heatmaps and evolution, genotype drawings, curves, and the search report.

Pure matplotlib on the Agg canvas (no pyplot, no display), so everything works on a headless machine; graphviz is
used for genotype drawings only when asked and its ``dot`` binary is present.
"""

from dnas.viz.alpha import GroupInfo, edge_entropy, plot_alpha_evolution, plot_alpha_heatmaps
from dnas.viz.cells import draw_genotype, is_chain, render_genotype, to_dot
from dnas.viz.curves import plot_curves
from dnas.viz.report import Section, write_report

__all__ = [
    "GroupInfo",
    "Section",
    "draw_genotype",
    "edge_entropy",
    "is_chain",
    "plot_alpha_evolution",
    "plot_alpha_heatmaps",
    "plot_curves",
    "render_genotype",
    "to_dot",
    "write_report",
]
