"""DARTS vs PC-DARTS supernet: peak memory and step time at the same batch, side by side.

Each configuration runs in a fresh Python subprocess (so peak RSS is not polluted by the other), builds the CIFAR-10
search supernet (C=16, 8 cells unless told otherwise), and measures

* ``saved MiB``: bytes of the activations autograd saves for backward in one forward (``saved_tensors_hooks``,
  distinct storages counted once, parameters excluded) — the memory that decides the batch a GPU fits; it grows
  linearly with the batch, so ``--batch`` can stay small on a shared CPU machine;
* ``peak RSS MiB``: the process' peak resident memory (``ru_maxrss``) after warm-up and the timed steps, and its
  growth over the RSS right after building the model and optimizer;
* ``step ms``: median process CPU time (``time.process_time``; robust on a shared machine, equal to the compute
  time with ``--threads 1``) of one weight step (forward, backward, SGD) and of one first-order α step; the median
  wall time is reported too.

Usage: ``python benchmarks/pcdarts_memory.py [--batch 64] [--steps 5] [--threads 2]``.
Results are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CONFIGS = {
    "DARTS": {"partial_channels": 1, "edge_normalization": False},
    "PC-DARTS K=2": {"partial_channels": 2, "edge_normalization": True},
    "PC-DARTS K=4": {"partial_channels": 4, "edge_normalization": True},
}


def measure(name: str, batch: int, steps: int, channels: int, layers: int, size: int, threads: int) -> dict:
    """Run in the child process: build, warm up, time, and report one configuration."""
    import resource
    import statistics
    import time

    import torch
    import torch.nn.functional as F

    from dnas.cells.darts import DartsSupernet
    from dnas.cells.edges import EdgeOptions

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = DartsSupernet(
        init_channels=channels, num_classes=10, layers=layers, edge_options=EdgeOptions(**CONFIGS[name])
    )
    w_opt = torch.optim.SGD(net.weight_parameters(), lr=0.025, momentum=0.9)
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))
    rss_built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    seen: dict[int, int] = {}
    params = {p.untyped_storage().data_ptr() for p in net.parameters()}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(net(x), y)
    saved = sum(seen.values())
    del loss

    def weight_step():
        w_opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        w_opt.step()

    def arch_step():
        loss = F.cross_entropy(net(x), y)
        torch.autograd.grad(loss, net.arch_parameters())

    times = {}
    for label, fn in (("w", weight_step), ("a", arch_step)):
        fn()  # warm-up
        cpu, wall = [], []
        for _ in range(steps):
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - t0)
        times[label] = statistics.median(cpu) * 1e3
        times[label + "_wall"] = statistics.median(wall) * 1e3
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "name": name,
        "weights": sum(p.numel() for p in net.weight_parameters()),
        "saved_mib": saved / 2**20,
        "peak_rss_mib": peak,
        "rss_growth_mib": peak - rss_built,
        "w_step_ms": times["w"],
        "a_step_ms": times["a"],
        "w_step_wall_ms": times["w_wall"],
        "a_step_wall_ms": times["a_wall"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    opts = (args.batch, args.steps, args.channels, args.layers, args.size, args.threads)
    if args.child:
        print(json.dumps(measure(args.child, *opts)))
        return
    rows = []
    for name in CONFIGS:
        cmd = [sys.executable, __file__, "--child", name] + [
            f"--{k}={v}" for k, v in zip(("batch", "steps", "channels", "layers", "size", "threads"), opts)
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(f"measured {name}", file=sys.stderr)
    base = rows[0]
    print(
        f"CIFAR supernet C={args.channels}, {args.layers} cells, batch {args.batch}, {args.size}x{args.size}, "
        f"{args.threads} threads, median of {args.steps} steps"
    )
    header = f"| {'supernet':<13} | weights | saved MiB (×DARTS) | peak RSS MiB | RSS growth MiB (×DARTS) | "
    header += "w step CPU ms (×DARTS) | α step CPU ms (×DARTS) | w / α step wall ms |"
    print(header)
    print("|" + "|".join("---" for _ in range(8)) + "|")
    for r in rows:
        ratio = {k: r[k] / base[k] for k in ("saved_mib", "rss_growth_mib", "w_step_ms", "a_step_ms")}
        print(
            f"| {r['name']:<13} | {r['weights'] / 1e6:.2f}M | {r['saved_mib']:.0f} ({ratio['saved_mib']:.2f}) "
            f"| {r['peak_rss_mib']:.0f} | {r['rss_growth_mib']:.0f} ({ratio['rss_growth_mib']:.2f}) "
            f"| {r['w_step_ms']:.0f} ({ratio['w_step_ms']:.2f}) | {r['a_step_ms']:.0f} ({ratio['a_step_ms']:.2f}) "
            f"| {r['w_step_wall_ms']:.0f} / {r['a_step_wall_ms']:.0f} |"
        )
    print("\nsaved activations scaled linearly to the papers' batches (DARTS 64, PC-DARTS 256):")
    for r in rows:
        per = r["saved_mib"] / args.batch
        print(
            f"  {r['name']:<13} {per:.1f} MiB/sample -> batch 64: {64 * per / 1024:.2f} GiB, "
            f"256: {256 * per / 1024:.2f} GiB"
        )


if __name__ == "__main__":
    main()
