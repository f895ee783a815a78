"""Measure a cost table on the current device: every candidate op of every mixed op, at its real input shape.

Latency: each op runs alone in eval mode (BN folded into inference statistics, no autograd) on a random input of
the recorded shape with ``batch_size`` samples; ``warmup`` untimed calls, then :class:`torch.utils.benchmark.Timer`
``blocked_autorange`` (which synchronises CUDA) collects at least ``min_run_time`` seconds of blocks; the entry is
the median per call in milliseconds (IQR and run count kept in ``stats``). FLOPs come from
:class:`torch.utils.flop_counter.FlopCounterMode` (2 per multiply-add), parameters from ``numel``.
"""

from __future__ import annotations

import copy
import platform
import sys
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dnas.cells.base import Supernet
from dnas.latency.shapes import Site, candidate_sites, mixed_op_modules
from dnas.latency.table import METRICS, CostTable, Entry

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

    with torch.no_grad():
        for _ in range(warmup):
            module(x)
        timer = benchmark.Timer(stmt="module(x)", globals={"module": module, "x": x}, num_threads=threads)
        m = timer.blocked_autorange(min_run_time=min_run_time)
    return {"median": m.median * 1e3, "iqr": m.iqr * 1e3, "calls": float(len(m.times) * m.number_per_run)}


def count_flops(module: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(x)
    return float(counter.get_total_flops())


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
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if batch_size < 1 or threads < 1:
        raise ValueError(f"batch_size and threads must be >= 1, got {batch_size}, {threads}")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available here; measure on the target device")
    tdtype = DTYPES[dtype]
    sites = list(sites) if sites is not None else candidate_sites(supernet, example_input[:1])
    modules = mixed_op_modules(supernet)
    total = sum(len(s.ops) for s in sites)
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=f"dnas lut ({metric})", unit="op", disable=not progress)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    entries = []
    try:
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
                        costs[name] = count_flops(probe, x)
                    else:
                        stats[name] = time_module(probe, x, warmup, min_run_time, threads)
                        costs[name] = stats[name]["median"]
                bar.update(1)
            entries.append(Entry(site.module, site.group, site.edge, (batch_size, *site.input_shape[1:]), costs, stats))
    finally:
        torch.set_num_threads(old_threads)
        bar.close()
    meta = environment(device, tdtype, threads, batch_size)
    meta.update(
        {
            "supernet": f"{type(supernet).__module__}.{type(supernet).__qualname__}",
            "input_shape": list(example_input.shape[1:]),
            "warmup": warmup,
            "min_run_time_s": min_run_time,
            "statistic": "median" if metric == "latency" else "exact",
        }
    )
    return CostTable(metric, entries, meta)
