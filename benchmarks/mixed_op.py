"""Naive vs fused mixed op, side by side: saved activations, peak RSS of a training step, step time.

Targets (DARTS CIFAR search space, fp32, 32×32 inputs):
  edge     one MixedOp, C=16, stride 1
  cell     the first normal cell of the search network (C_prev_prev = C_prev = 48, C = 16)
  network  DartsSupernet(C=16, layers=8, 10 classes), cross-entropy loss

Per target and implementation (``naive``, ``fused`` = policy recompute, ``fused_save`` = policy save, and for
``network`` also ``naive+ckpt`` = naive edges with ``torch.utils.checkpoint`` around every cell, a memory figure only):
  saved    bytes of the tensors autograd saves for backward during one forward
           (``torch.autograd.graph.saved_tensors_hooks``; each storage counted once, parameters excluded)
  rss      peak RSS of the first training step (forward + backward) in a fresh subprocess (the high-water mark is
           reset through /proc/self/clear_refs after the model is built, so the import peak does not hide it), and
           the step's increase over the RSS just before it (the process holds ~0.9 GB of libraries before any tensor)
  time     median step time (forward + backward) over interleaved repeats (naive, fused, fused_save, naive, …)

RSS depends on the allocator: with glibc's defaults, freed temporaries of the fused op (which are many and short-lived)
stay in heap holes between live tensors and count as RSS; ``MALLOC_MMAP_THRESHOLD_=65536 python benchmarks/...``
returns them to the system and shows the memory actually in use. The header says which one ran.

Usage: ``python benchmarks/mixed_op.py [--targets edge cell network] [--batch 64] [--net-batch 64] [--repeats 3]
[--heap-trim 256|off]``.
Ratios are printed against naive: ``saved ×`` and ``rss ×`` = naive / impl (higher is better), ``time ×`` =
impl / naive (lower is better).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from dnas.cells.darts import DartsSupernet
from dnas.cells.edges import EdgeOptions
from dnas.ops import DARTS_PRIMITIVES, MixedOp, heap

IMPLS = ("naive", "fused", "fused_save")
C, SIZE = 16, 32


class _Edge(nn.Module):
    def __init__(self, impl: str):
        super().__init__()
        self.op = MixedOp(C, 1, impl=impl)
        self.alpha = nn.Parameter(1e-3 * torch.randn(len(DARTS_PRIMITIVES)))

    def forward(self, x):
        return self.op(x, self.alpha.softmax(-1)).sum()


class _Cell(nn.Module):
    def __init__(self, impl: str):
        super().__init__()
        # the search network's first cell (normal, 48 -> 16 channels per node); the rest of the network is dropped
        self.cell = DartsSupernet(C, 10, 8, edge_options=EdgeOptions(mixed_op_impl=impl)).cells[0]
        self.alpha = nn.Parameter(1e-3 * torch.randn(14, len(DARTS_PRIMITIVES)))

    def forward(self, s0, s1):
        return self.cell((s0, s1), {"normal": (self.alpha.softmax(-1), None)}).sum()


class _Net(nn.Module):
    def __init__(self, impl: str):
        super().__init__()
        ckpt = impl.endswith("+ckpt")
        self.net = DartsSupernet(C, 10, 8, edge_options=EdgeOptions(mixed_op_impl=impl.removesuffix("+ckpt")))
        if ckpt:
            for cell in self.net.cells:
                cell.forward = _checkpointed(cell.forward)

    def forward(self, x, y):
        return F.cross_entropy(self.net(x), y)


def _checkpointed(fn):
    def run(*args):
        return checkpoint(fn, *args, use_reentrant=False)

    return run


def build(target: str, impl: str, batch: int, seed: int = 0):
    """``(model, inputs)``; every implementation gets the same parameters and inputs for a given seed."""
    torch.manual_seed(seed)
    model = {"edge": _Edge, "cell": _Cell, "network": _Net}[target](impl)
    g = torch.Generator().manual_seed(seed + 1)
    if target == "edge":
        inputs = (torch.randn(batch, C, SIZE, SIZE, generator=g).requires_grad_(),)
    elif target == "cell":
        inputs = tuple(torch.randn(batch, 3 * C, SIZE, SIZE, generator=g).requires_grad_() for _ in range(2))
    else:
        inputs = (torch.randn(batch, 3, SIZE, SIZE, generator=g), torch.randint(0, 10, (batch,), generator=g))
    return model, inputs


def step(model, inputs) -> None:
    model.zero_grad(set_to_none=True)
    for t in inputs:
        t.grad = None
    model(*inputs).backward()


def saved_bytes(model, inputs) -> int:
    """Bytes autograd saves for backward in one forward (each storage once, parameters excluded)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        if isinstance(t, torch.Tensor) and t.device.type != "meta":
            s = t.untyped_storage()
            if s.data_ptr() not in params:
                seen[s.data_ptr()] = max(seen.get(s.data_ptr(), 0), s.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(*inputs)
    total = sum(seen.values())
    loss.backward()
    return total


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark (Linux >= 4.0), so the import-time peak does not hide the step's."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def child_rss(target: str, impl: str, batch: int) -> dict:
    model, inputs = build(target, impl, batch)
    if not _reset_peak_rss():
        raise RuntimeError("cannot reset the peak RSS (/proc/self/clear_refs); the step's peak would be hidden")
    before = _rss_bytes()
    step(model, inputs)
    peak = _peak_rss_bytes()
    return {"before": before, "peak": peak, "increase": peak - before}


def rss_in_subprocess(target: str, impl: str, batch: int, threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, __file__, "--child", target, impl, str(batch), "--threads", str(threads)]
    trim = heap.get_heap_trim()
    cmd += ["--heap-trim", "off" if trim is None else str(trim)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def step_times(target: str, impls, batch: int, repeats: int) -> dict[str, float]:
    built = {impl: build(target, impl, batch) for impl in impls}
    for impl in impls:  # warm-up (allocator, thread pools)
        step(*built[impl])
    times = {impl: [] for impl in impls}
    for _ in range(repeats):
        for impl in impls:  # interleaved: machine noise hits every implementation alike
            t0 = time.perf_counter()
            step(*built[impl])
            times[impl].append(time.perf_counter() - t0)
    return {impl: statistics.median(ts) for impl, ts in times.items()}


def _mb(n: float) -> str:
    return f"{n / 2**20:9.1f}"


def run(targets, batch: int, net_batch: int, repeats: int, threads: int) -> None:
    mmap = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    allocator = f"MALLOC_MMAP_THRESHOLD_={mmap}" if mmap else "glibc malloc defaults (dynamic mmap threshold)"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), fp32, {SIZE}x{SIZE}, repeats={repeats}")
    trim = heap.get_heap_trim()
    print(f"allocator: {allocator}; fused heap trim: {'off' if trim is None else f'{trim} MiB'}")
    for target in targets:
        b = net_batch if target == "network" else batch
        impls = IMPLS + (("naive+ckpt",) if target == "network" else ())
        saved = {impl: saved_bytes(*build(target, impl, b)) for impl in impls}
        rss = {impl: rss_in_subprocess(target, impl, b, threads) for impl in impls}
        times = step_times(target, IMPLS, b, repeats)
        print(f"\n== {target} (batch {b})")
        print(
            f"{'impl':<12}{'saved MB':>10}{'saved x':>9}{'peak RSS MB':>13}{'rss x':>7}"
            f"{'step +RSS MB':>14}{'+rss x':>8}{'step s':>9}{'time x':>8}"
        )
        for impl in impls:
            t = times.get(impl)
            print(
                f"{impl:<12}{_mb(saved[impl]):>10}{saved['naive'] / max(saved[impl], 1):>9.1f}"
                f"{_mb(rss[impl]['peak']):>13}{rss['naive']['peak'] / rss[impl]['peak']:>7.2f}"
                f"{_mb(rss[impl]['increase']):>14}{rss['naive']['increase'] / max(rss[impl]['increase'], 1):>8.2f}"
                + (f"{t:>9.3f}{t / times['naive']:>8.2f}" if t is not None else f"{'-':>9}{'-':>8}")
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    targets = ["edge", "cell", "network"]
    parser.add_argument("--targets", nargs="+", default=targets, choices=targets)
    parser.add_argument("--batch", type=int, default=64, help="batch of the edge and cell targets")
    parser.add_argument("--net-batch", type=int, default=64, help="batch of the network target")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--heap-trim", default="256", help="fused op's glibc heap-trim threshold in MiB, or 'off' (dnas.ops.heap)"
    )
    parser.add_argument("--child", nargs=3, metavar=("TARGET", "IMPL", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    heap.set_heap_trim(None if args.heap_trim == "off" else int(args.heap_trim))
    if args.child:
        target, impl, batch = args.child
        print(json.dumps(child_rss(target, impl, int(batch))))
        return
    run(args.targets, args.batch, args.net_batch, args.repeats, args.threads)


if __name__ == "__main__":
    main()
