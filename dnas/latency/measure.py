"""Measure a cost table on the current device: every candidate op of every mixed op, at its real input shape.

Latency: each op runs alone in eval mode (BN folded into inference statistics, no autograd) on a random input of
the recorded shape with ``batch_size`` samples; ``warmup`` untimed calls, then :class:`torch.utils.benchmark.Timer`
``blocked_autorange`` (which synchronises CUDA) collects at least ``min_run_time`` seconds of blocks; the entry is
the median per call in milliseconds (IQR and run count kept in ``stats``). FLOPs come from
:class:`torch.utils.flop_counter.FlopCounterMode` (2 per multiply-add), parameters from ``numel``.

With ``calibrate=N`` (latency only) the table also measures its own error (:mod:`dnas.latency.calibration`); the N
random networks are built by :func:`dnas.export.build_model`, the one place the latency package uses export (imported
on use; export never imports latency outside its CLI).
"""

from __future__ import annotations

import copy
import platform
import random
import sys
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dnas.cells.base import Supernet
from dnas.genotypes import Genotype
from dnas.genotypes.sampling import random_genotype, rule_exclude
from dnas.latency.calibration import make_record
from dnas.latency.shapes import Site, candidate_sites
from dnas.latency.table import METRICS, CostTable, Entry
from dnas.ops.mixed import MixedOp

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


def environment(device: torch.device, dtype: torch.dtype, threads: int, batch_size: int) -> dict:
    """What a measurement depends on: device name, dtype, threads, batch, library versions, machine."""
    import pytorch_lightning

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return {
        "device": str(device),
        "device_name": name,
        "dtype": str(dtype).replace("torch.", ""),
        "batch_size": batch_size,
        "threads": threads,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "pytorch_lightning": pytorch_lightning.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def time_module(
    module: nn.Module, x: torch.Tensor, warmup: int = 10, min_run_time: float = 0.05, threads: int = 1
) -> dict[str, float]:
    """Median latency of ``module(x)`` in ms, plus IQR (ms) and the number of timed calls."""
    from torch.utils import benchmark  # imported here: it pulls in cpp_extension, which warns without CUDA

    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)  # the warm-up too; the Timer sets them for the timed blocks
    try:
        with torch.no_grad():
            for _ in range(warmup):
                module(x)
            timer = benchmark.Timer(stmt="module(x)", globals={"module": module, "x": x}, num_threads=threads)
            m = timer.blocked_autorange(min_run_time=min_run_time)
    finally:
        torch.set_num_threads(old_threads)
    return {"median": m.median * 1e3, "iqr": m.iqr * 1e3, "calls": float(len(m.times) * m.number_per_run)}


def measure_table(
    supernet: Supernet,
    example_input: torch.Tensor,
    metric: str = "latency",
    device: str | torch.device = "cpu",
    dtype: str = "float32",
    batch_size: int = 1,
    threads: int = 1,
    warmup: int = 10,
    min_run_time: float = 0.05,
    progress: bool = True,
    sites: Sequence[Site] | None = None,
    calibrate: int = 0,
    calibrate_run_time: float = 0.3,
    seed: int = 0,
) -> CostTable:
    """Measure ``metric`` for every candidate op of ``supernet``.

    Args:
        supernet: any :class:`~dnas.cells.Supernet` built from mixed ops.
        example_input: one input batch (its sample shape matters; the batch is replaced by ``batch_size``).
        metric: ``"latency"``, ``"flops"`` or ``"params"``.
        device: where to measure (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        dtype: ``float32``, ``float16``, ``bfloat16`` or ``float64``.
        batch_size: samples per timed call (1 = the mobile latency the FBNet paper tables).
        threads: CPU threads during timing (also recorded).
        warmup: untimed calls before timing each op.
        min_run_time: seconds of timed blocks per op.
        progress: show a tqdm bar.
        sites: precomputed :func:`~dnas.latency.shapes.candidate_sites`.
        calibrate: time this many random architectures whole and store the table's error model in
            ``meta["calibration"]`` (0 = none; at least 3; latency only).
        calibrate_run_time: seconds of timed blocks per whole network (its ``warmup`` is the table's).
        seed: seed of the calibration architectures.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if calibrate and (metric != "latency" or calibrate < 3):
        raise ValueError(f"calibrate needs metric 'latency' and at least 3 architectures, got {calibrate} ({metric})")
    if batch_size < 1 or threads < 1:
        raise ValueError(f"batch_size and threads must be >= 1, got {batch_size}, {threads}")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available here; measure on the target device")
    tdtype = DTYPES[dtype]
    sites = list(sites) if sites is not None else candidate_sites(supernet, example_input[:1])
    modules = {n: m for n, m in supernet.named_modules() if isinstance(m, MixedOp)}
    total = sum(len(s.ops) for s in sites)
    from tqdm.auto import tqdm

    entries = []
    with tqdm(total=total, desc=f"dnas lut ({metric})", unit="op", disable=not progress) as bar:
        for site in sites:
            mixed = modules[site.module]
            x = torch.randn((batch_size, *site.input_shape[1:]), device=device, dtype=tdtype)
            costs: dict[str, float] = {}
            stats: dict[str, dict[str, float]] = {}
            for name, op in zip(mixed.primitives, mixed._ops):
                bar.set_postfix_str(f"{site.module} {name}", refresh=False)
                if metric == "params":
                    costs[name] = float(sum(p.numel() for p in op.parameters()))
                else:
                    probe = copy.deepcopy(op).to(device=device, dtype=tdtype).eval()
                    if metric == "flops":
                        with torch.no_grad(), FlopCounterMode(display=False) as counter:
                            probe(x)
                        costs[name] = float(counter.get_total_flops())
                    else:
                        stats[name] = time_module(probe, x, warmup, min_run_time, threads)
                        costs[name] = stats[name]["median"]
                bar.update(1)
            entries.append(Entry(site.module, site.group, site.edge, (batch_size, *site.input_shape[1:]), costs, stats))
    meta = environment(device, tdtype, threads, batch_size)
    meta.update(
        {
            "supernet": f"{type(supernet).__module__}.{type(supernet).__qualname__}",
            "input_shape": list(example_input.shape[1:]),
            "warmup": warmup,
            "min_run_time_s": min_run_time,
            "statistic": "median" if metric == "latency" else "exact",
            "arch_edges": {g: [list(e) for e in group.edges] for g, group in supernet.arch_groups.items()},
        }
    )
    table = CostTable(metric, entries, meta)
    if calibrate:
        table.meta["calibration"] = calibrate_table(
            table, supernet, example_input, calibrate, warmup, calibrate_run_time, seed, progress
        )
    return table


def random_architectures(supernet: Supernet, n: int, seed: int) -> list[Genotype]:
    """``n`` valid random genotypes of ``supernet``'s space, spread from cheap to costly.

    Uniform ops on every edge would put nearly every network near the space's mean cost (a sum of many independent
    choices), which pins the fit's slope badly; so each architecture draws from its own random subset of the
    candidates (1 to all of them), as the per-architecture preferences of ``benchmarks/latency_lut.py``.
    """
    rng = random.Random(seed)
    spec = supernet.space_spec
    template = supernet.genotype()
    ruled = {op for cs in spec.cells.values() for op in rule_exclude(cs)}
    out = []
    for _ in range(n):
        ops = sorted({op for cs in spec.cells.values() for op in cs.ops} - ruled)
        keep = set(rng.sample(ops, rng.randint(1, len(ops))))
        for cs in spec.cells.values():  # every cell keeps at least one of its own ops
            if not keep & (set(cs.ops) - ruled):
                keep.add(rng.choice(sorted(set(cs.ops) - ruled)))
        out.append(random_genotype(spec, rng, template=template, exclude=sorted(set(ops) - keep | ruled)))
    return out


def calibrate_table(
    table: CostTable,
    supernet: Supernet,
    example_input: torch.Tensor,
    n: int,
    warmup: int,
    run_time: float,
    seed: int,
    progress: bool = True,
) -> dict:
    """The ``meta["calibration"]`` record of ``table``: ``n`` random architectures built, timed whole and fitted.

    Raises:
        ValueError: every architecture has the same table sum, or a measurement is <= 0
            (:func:`~dnas.latency.calibration.make_record`).
    """
    from tqdm.auto import tqdm

    from dnas.export import build_model

    arch_edges = {g: group.edges for g, group in supernet.arch_groups.items()}
    sums, measured = [], []
    for genotype in tqdm(random_architectures(supernet, n, seed), desc="dnas lut (calibrate)", disable=not progress):
        model = build_model(genotype)
        sums.append(table.total(table.choice(genotype, arch_edges)))
        measured.append(time_network(model, example_input.shape[1:], table.meta, warmup, run_time))
    return make_record(sums, measured, warmup, run_time, seed)


def time_network(
    model: nn.Module, sample_shape: Sequence[int], meta: dict, warmup: int | None = None, run_time: float | None = None
) -> float:
    """Median latency (ms) of a whole network at a table's device, dtype, batch and threads (from ``meta``).

    ``warmup`` and ``run_time`` default to the table's calibration settings (else 10 calls, 0.3 s), so a network
    measured for a report is timed as the calibration architectures were.

    Raises:
        RuntimeError: the table's device is not available here.
        ValueError: the table's ``meta.dtype`` is not one of :data:`DTYPES`.
    """
    cal = meta.get("calibration") or {}
    warmup = int(cal.get("warmup", 10)) if warmup is None else warmup
    run_time = float(cal.get("min_run_time_s", 0.3)) if run_time is None else run_time
    device = torch.device(meta.get("device", "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"the table was measured on {device}, which is not available here")
    if meta.get("dtype", "float32") not in DTYPES:
        raise ValueError(f"the table's field 'meta.dtype' must be one of {sorted(DTYPES)}, got {meta.get('dtype')!r}")
    dtype = DTYPES[meta.get("dtype", "float32")]
    probe = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
    x = torch.randn((int(meta.get("batch_size", 1)), *sample_shape), device=device, dtype=dtype)
    return time_module(probe, x, warmup, run_time, int(meta.get("threads", 1)))["median"]
