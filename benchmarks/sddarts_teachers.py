"""What SD-DARTS' teachers cost: snapshot memory and weight-step time against DARTS (λ = 0), side by side.

Memory is exact (bytes of the snapshot bank) and compared with the weights and with the optimizer state a snapshot
does *not* copy. Time is the median process CPU time (``time.process_time``: robust on a shared machine; use
``--threads 1``) of one weight step as ``SDDARTS.weight_step`` does it (teacher target on the
batch, snapshot push, CE + KD forward, backward, SGD step) for K = 0 (λ = 0: DARTS), 1, 2, 4 teachers, all in one run.

Usage: ``python benchmarks/sddarts_teachers.py [--batch 32] [--channels 16] [--layers 8] [--steps 3]``.
Results are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import dnas
from dnas.cells.darts import DartsSupernet


def build(k: int, dtype: str, channels: int, layers: int, size_classes: int = 10) -> dnas.SDDARTS:
    torch.manual_seed(0)
    net = DartsSupernet(init_channels=channels, num_classes=size_classes, layers=layers)
    return dnas.SDDARTS(net, distill_weight=1.0 if k else 0.0, num_teachers=max(k, 1), teacher_dtype=dtype)


def step_time(model: dnas.SDDARTS, x, y, steps: int) -> tuple[float, float, float]:
    """Median CPU ms of a full weight step and of the snapshot push alone, and the median wall ms of the step."""
    opt = torch.optim.SGD(model.supernet.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    full, push, wall = [], [], []
    for i in range(steps + 1):
        t0, w0 = time.process_time(), time.perf_counter()
        t_push = 0.0
        if model.distilling:
            target = model.teacher_target(x)
            tp = time.process_time()
            model.push_snapshot()
            t_push = time.process_time() - tp
            model._target_cache = (x, target, model._bank_version, model._target_cache[3])
        opt.zero_grad()
        loss, _, _ = model.weight_loss(x, y)
        loss.backward()
        opt.step()
        model._target_cache = None
        if i:  # the first step is the warm-up
            full.append(time.process_time() - t0)
            wall.append(time.perf_counter() - w0)
            push.append(t_push)
    return statistics.median(full) * 1e3, statistics.median(push) * 1e3, statistics.median(wall) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = build(1, "float32", args.channels, args.layers)
    model.push_snapshot()
    weights = sum(p.numel() * p.element_size() for p in model.supernet.weight_parameters())
    arch = sum(p.numel() * p.element_size() for p in model.supernet.arch_parameters())
    row = model.teacher_memory_bytes()
    mib = 2**20
    print(f"CIFAR supernet C={args.channels}, {args.layers} cells: weights {weights / mib:.2f} MiB, α {arch:,} bytes")
    print(f"optimizer state (not copied): SGD momentum {weights / mib:.2f} MiB + Adam 2×α {2 * arch / 1024:.1f} KiB")
    print(f"one float32 snapshot (parameters + BN statistics): {row / mib:.2f} MiB; bfloat16: {row / 2 / mib:.2f} MiB")
    print("| K | float32 bank MiB | bfloat16 bank MiB | × weights (fp32) |")
    print("|---|---|---|---|")
    for k in (1, 2, 4, 8):
        print(f"| {k} | {k * row / mib:.2f} | {k * row / 2 / mib:.2f} | {k * row / weights:.2f} |")

    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, 10, (args.batch,))
    print(
        f"\nweight step, batch {args.batch} at {args.size}x{args.size}, {args.threads} threads, median of {args.steps}"
    )
    print("| teachers K | storage | step CPU ms | × DARTS (λ=0) | snapshot push CPU ms | step wall ms |")
    print("|---|---|---|---|---|---|")
    base = None
    for k, dtype in ((0, "float32"), (1, "float32"), (2, "float32"), (4, "float32"), (4, "bfloat16")):
        model = build(k, dtype, args.channels, args.layers)
        for _ in range(k):  # fill the bank so every timed step runs K teachers
            model.push_snapshot()
        ms, push_ms, wall_ms = step_time(model, x, y, args.steps)
        base = base or ms
        print(f"| {k} | {dtype if k else '-'} | {ms:.0f} | {ms / base:.2f} | {push_ms:.1f} | {wall_ms:.0f} |")


if __name__ == "__main__":
    main()
