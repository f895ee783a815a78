"""The end-of-search report: settings, genotype drawing, α pictures, curves, model size, latency, run time.

Called by :class:`dnas.callbacks.AlphaPlots` at the end of ``fit`` on rank zero; reads the run only through the
trainer, the callback's history and the supernet contract.
"""

from __future__ import annotations

import json
import time
from typing import Any

from dnas.genotypes import Genotype
from dnas.io import atomic_write_text, log_dir
from dnas.storage import Location, is_file, join, read_bytes
from dnas.viz.cells import render_genotype
from dnas.viz.curves import plot_curves
from dnas.viz.noise import plot_noise_tests
from dnas.viz.report import Section, write_report
from dnas.viz.style import save_figure
from dnas.viz.verdict import DECIDED_FACTOR, QUORUM, Verdict, verdict_table

VALIDATION_NOTE = (
    "What the curves measure: train/* and arch/* are the supernet during the weight and architecture steps (train "
    "mode: BatchNorm normalises with each batch's statistics). val/* is the supernet on the architecture half in eval "
    "mode (every op, softmax α): BatchNorm then uses its running statistics, exponential averages (momentum 0.1) of "
    "batch statistics from earlier steps. While the weights still change fast (the first epochs of a short search) "
    "those averages lag behind them, and val/acc can sit near chance while arch/acc is already high; it catches up "
    "as training slows down."
)
"""Shown under the curves: why val/acc can trail arch/acc early in a search."""


MEASURED_NOTE = (
    "Measured here with the table's settings ({}, batch {}, {} thread(s), median). The band is the table's own error, "
    "measured by dnas lut on whole random networks: the table times each op alone and leaves out stems, heads and "
    "framework overhead, which its calibration adds back. A machine whose load changed since the table was measured "
    "can put the measurement outside the band."
)
"""Shown under the latency table when the report timed the exported network."""


def _fmt_time(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"


def _epochs_trained(last_epoch: int) -> str:
    """``"6 (epochs 0–5)"``: epochs are Lightning's, numbered from 0 as on the console."""
    n = last_epoch + 1
    return f"{n} (epoch 0)" if n == 1 else f"{n} (epochs 0–{last_epoch})"


def final_metrics(row: dict[str, float]) -> dict[str, float]:
    """One value per metric, under the name it was logged with.

    Lightning reports a metric logged per step and per epoch as ``x`` (the epoch value), ``x_step`` and
    ``x_epoch``: only ``x`` is kept. ``alpha/entropy_<group>`` (the search module's entropy of softmax α) is left
    out where ``alpha/weight_entropy_<group>`` (AlphaPlots' entropy of the selection weights, the same quantity
    with PC-DARTS' β and selection masks applied) is there.
    """
    out = {}
    for k, v in row.items():
        if k == "epoch" or k.endswith("_step"):
            continue
        if k.endswith("_epoch") and k.removesuffix("_epoch") in row:
            continue
        if k.startswith("alpha/entropy_") and k.replace("alpha/entropy_", "alpha/weight_entropy_", 1) in row:
            continue
        out[k.removesuffix("_epoch")] = v
    return out


def model_section(
    pl_module, supernet, genotype: Genotype, input_shape, measure_latency: bool, export_options=None
) -> Section:
    """The discrete network of ``genotype`` (:func:`dnas.export.build_model`) and, with a cost table, its cost.

    Options: the genotype's recorded build options, then ``export_options`` (those of the run's
    :class:`~dnas.callbacks.SearchExport`, so the report describes the network it exported).
    """
    from dnas.export import build_model
    from dnas.export.summary import FLOPS_DEFINITION, model_summary
    from dnas.genotypes import GenotypeError

    sec = Section("Exported model")
    options = {k: v for k, v in (export_options or {}).items() if v is not None}
    model, summary = None, {}
    try:
        model = build_model(genotype, **options)
    except (GenotypeError, TypeError, ValueError) as err:
        sec.text(f"No discrete network: build_model failed: {err}.")
    if model is not None:
        summary = {"parameters": sum(p.numel() for p in model.parameters())}
        if input_shape:
            try:
                summary = model_summary(model, (1, *input_shape))
            except Exception as err:  # noqa: BLE001 - a summary must not cost the user the report
                summary["flops_error"] = str(err)
        sec.text(
            "The final genotype built with dnas.export.build_model (fresh weights; retrain with dnas.Retrain) from "
            f"the options the search recorded{f' and {json.dumps(options)}' if options else ''}."
        )
    rows = [["parameters", f"{summary['parameters']:,}"]] if summary else []
    if "flops" in summary:
        rows.append([f"FLOPs at input {tuple(summary['input_shape'])}", f"{summary['flops']:,}"])
        rows.append(["MACs (mult-adds)", f"{summary['macs']:,}"])
    if "flops_error" in summary:
        rows.append(["FLOPs", f"not counted: {summary['flops_error']}"])
    sec.table(
        ["quantity", "value"], rows + [["supernet parameters", f"{sum(p.numel() for p in supernet.parameters()):,}"]]
    )
    if "flops" in summary:
        sec.text(FLOPS_DEFINITION)
    latency = getattr(pl_module, "latency_loss", None)
    if latency is not None:
        sec.parts += latency_parts(pl_module, supernet, genotype, latency, model, input_shape, measure_latency)
    return sec


def latency_parts(pl_module, supernet, genotype, latency, model, input_shape, measure: bool) -> list[tuple]:
    """Expected cost (table) of the soft weights and of the final genotype, and the measured latency of the model."""
    from dnas.latency.table import CostTableError

    name, table = latency.name, latency.table
    unit, note, rows = table.unit, "", []
    metrics = pl_module.trainer.callback_metrics
    logged = metrics.get(f"arch/{name}_epoch", metrics.get(f"arch/{name}"))
    if logged is not None:
        rows.append(
            [
                f"expected {name} of the edge weights the arch steps used, last-epoch mean (logged arch/{name})",
                f"{float(logged):.4g} {unit}",
            ]
        )
    prediction = None
    try:
        prediction = table.predict(table.choice(genotype, {g: grp.edges for g, grp in supernet.arch_groups.items()}))
        rows.append([f"expected {name} of the final genotype (table)", f"{prediction.table_sum:.4g} {unit}"])
    except CostTableError as err:
        rows.append([f"expected {name} of the final genotype", f"not computed: {err}"])
    record = genotype.meta.get("budget")
    if name == "latency" and prediction is not None:  # the whole-network prediction and error band (--calibrate)
        from dnas.latency.measure import time_network

        measured, meta = None, table.meta
        if measure and model is not None and input_shape:
            try:
                measured = time_network(model, input_shape, meta)
                settings = (meta.get(k, d) for k, d in (("device", "cpu"), ("batch_size", 1), ("threads", 1)))
                note = MEASURED_NOTE.format(*settings)
            except (RuntimeError, ValueError) as err:  # e.g. the table's GPU is not on this machine: say so
                rows.append(["measured whole network", f"not measured: {err}"])
        budget = record.get("budget") if isinstance(record, dict) and record.get("metric") == name else None
        rows += prediction.rows(measured, budget, table_sum=False)
    if isinstance(record, dict):  # the projection of dnas.latency.BudgetLoss
        from dnas.latency.budget import describe

        rows.append(["hard budget: final genotype", describe(record)])
    parts: list[tuple] = [("text", f"A {name} table was used in the loss ({latency!r}).")]
    budget = getattr(latency, "budget", None)  # dnas.latency.BudgetLoss: a constraint, not a loss form
    if budget is None:
        header = f"{name} ({latency.form} loss form)"
    else:
        header = f"{name} (hard budget {budget:.6g} {unit}, final multiplier λ = {float(latency.multiplier):.4g})"
    parts.append(("table", [header, "value"], rows))
    return parts + ([("text", note)] if note else [])


def verdict_section(result: Verdict, warning: str | None) -> Section:
    """How decided α is, per cell and kept edge (:mod:`dnas.viz.verdict`), with the criterion and the warning."""
    sec = Section("How decided is α")
    if warning:
        sec.text("Warning: " + warning + ".")
    sec.text(
        f"Criterion: an edge is decided when its chosen op holds at least {DECIDED_FACTOR:g}× the uniform weight 1/K "
        f"of its K ops; a cell is decided when at least {QUORUM:.0%} of its kept edges are. Margin = chosen op's "
        "weight minus the runner-up's; entropy / ln K = 1 is uniform. A decided cell is also compared with a random "
        "walk of the run's own α optimizer steps on Gaussian gradients of the run's scale, on every free edge: within "
        "noise when noise ends as far from uniform (mean edge entropy) in more than 5% of draws. Overall: "
        + result.status
        + "."
    )
    for line in result.lines():
        sec.text(line[0].upper() + line[1:] + ".")
    sec.table(*verdict_table(result))
    return sec


def write_search_report(
    callback,
    trainer,
    pl_module,
    supernet,
    verdict: tuple[Verdict, str | None],
    export_options: dict[str, Any] | None = None,
) -> tuple[Location, Location]:
    """Render the final pictures and write ``report.md`` + ``report.html`` into the trainer's log directory.

    ``verdict`` is the callback's verdict and warning line (:meth:`AlphaPlots.verdict`, computed once for the log and
    the report); ``export_options`` are the builder options of the model section (those of the end-of-fit export, if
    any).
    """
    out = log_dir(trainer)
    plots = join(out, "plots")
    genotype = supernet.genotype()
    if callable(getattr(pl_module, "project_genotype", None)):  # within a hard cost budget (dnas.latency.BudgetLoss)
        genotype = pl_module.project_genotype(genotype)
    sections = []

    # overview
    ov = Section("Run")
    last = callback.metrics[-1] if callback.metrics else {}
    rows = [
        ["search module", type(pl_module).__name__],
        ["search space", f"{type(supernet).__name__} (genotype space {genotype.space!r})"],
        ["epochs trained", _epochs_trained(callback.epochs[-1])],
        ["run time (fit, all sessions)", _fmt_time(callback.run_time_s)],
        ["log directory", str(out)],
        ["finished", time.strftime("%Y-%m-%d %H:%M:%S")],
    ]
    rows += [[k, f"{v:.4g}" if isinstance(v, float) else str(v)] for k, v in final_metrics(last).items()]
    ov.table(["", ""], rows)
    sections.append(ov)

    # genotype
    gen = Section("Final genotype")
    render_genotype(genotype, join(plots, "genotype"), ("png", "svg"), dpi=110)
    gen.image("plots/genotype.png", "the cells of the final genotype (SVG: plots/genotype.svg)")
    counts = callback.param_free_counts(genotype)
    gen.table(
        ["cell", "edges", "parameter-free ops", "watched for collapse"],
        [[c, len(genotype.cells[c].edges), counts[c], "yes" if callback.watched(c) else "no"] for c in genotype.cells],
    )
    for w in callback.warnings:
        gen.text("Warning: " + w)
    lines = [f'{{"schema_version": 1, "space": {json.dumps(genotype.space)}, "cells": {{']
    for i, (name, cell) in enumerate(genotype.cells.items()):
        edges = ", ".join(json.dumps([e.op, e.src, e.dst]) for e in cell.edges)
        sep = "," if i < len(genotype.cells) - 1 else ""
        lines.append(f'  {json.dumps(name)}: {{"edges": [{edges}], "concat": {json.dumps(list(cell.concat))}}}{sep}')
    lines.append("}}")
    gen.text("As JSON (genotype.json in the log directory holds it with the α softmax in its meta):")
    gen.code("\n".join(lines), "json")
    sections.append(gen)

    result, warning = verdict
    vs = verdict_section(result, warning)
    tests = {c.cell: c.noise for c in result.cells if c.noise is not None}
    if tests:
        save_figure(plot_noise_tests(tests, callback.dpi), join(plots, "alpha_noise"), dpi=callback.dpi)
        vs.image("plots/alpha_noise.png", "each cell's free-edge entropy against random walks of its α optimizer")
    sections.append(vs)

    # α
    al = Section("Architecture weights")
    callback.draw(trainer, genotype, callback.epochs[-1])
    al.text("Edge weights (softmax α with the selection applied) per edge and op; red boxes: the final genotype.")
    al.image("plots/alpha_heatmap.png", "final edge weights")
    for g in callback.groups:
        al.image(f"plots/alpha_evolution_{g}.png", f"{g}: each edge's op weights over epochs")
    sections.append(al)

    # curves
    cu = Section("Loss and accuracy")
    if callback.metrics:
        save_figure(plot_curves(callback.metrics, callback.dpi), join(plots, "curves"), dpi=callback.dpi)
        cu.image("plots/curves.png", "epoch-level losses and accuracies")
        cu.text(VALIDATION_NOTE)
    else:
        cu.text("No metrics were logged.")
    sections.append(cu)

    sections.append(
        model_section(pl_module, supernet, genotype, callback.input_shape, callback.measure_latency, export_options)
    )

    # settings
    st = Section("Settings")
    config = join(out, "config.yaml")
    if is_file(config):
        st.text("The configuration LightningCLI saved for this run (config.yaml):")
        st.code(read_bytes(config).decode("utf-8"), "yaml")
    else:
        st.text("No config.yaml in the log directory (not run through the dnas CLI); the module's hyperparameters:")
        st.code(json.dumps(dict(pl_module.hparams), indent=2, default=repr), "json")
    sections.append(st)
    atomic_write_text(join(plots, "metrics_history.json"), json.dumps(callback.metrics, indent=1))
    title = f"Search report: {type(pl_module).__name__} on {type(supernet).__name__} ({out})"
    return write_report(out, title, sections)
