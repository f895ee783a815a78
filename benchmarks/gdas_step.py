"""The single-path training steps (GDAS, ProxylessNAS) against the all-path steps, side by side: step time, peak RSS.

Target: ``DartsSupernet(C=16, layers=8, 10 classes)``, batch 64, 32×32 inputs, fp32, CPU (or one CUDA device with
``--device cuda``), cross-entropy loss, forward + backward (α included) of one step. Variants:

  naive      softmax(α) weights, every candidate of every edge runs (``mixed_op_impl="naive"``, the DARTS reference)
  fused      softmax(α) weights, the exact fused mixed op (``"fused"``, the DartsSupernet default)
  hard-all   hard Gumbel straight-through weights, every candidate still runs (FBNet ``hard=True`` without sampled
             execution): the one-hot alone saves nothing
  gdas       hard Gumbel straight-through weights with sampled execution (:class:`dnas.GDAS`): one op per edge
  pxl-w      ProxylessNAS weight step (:class:`dnas.ProxylessNAS`): one path per edge drawn from softmax(α), constant
             binary gates, backward into the weights only (α gets no gradient in this step)
  pxl-a      ProxylessNAS architecture step: two paths per edge (binary-gate sampled execution; the closed one runs
             without autograd), backward into α only (``backward(inputs=α)``, as the module's ``autograd.grad``)

Per variant: ``time`` = median step time over interleaved repeats (each GDAS repeat draws a new sample, so the median
is over architectures too), ``rss`` = peak RSS of the first step in a fresh subprocess (high-water mark reset after
the model is built; same method as ``benchmarks/mixed_op.py``) and its increase over the RSS before the step.
Ratios are against ``naive``: ``time ×`` = variant / naive (lower is better), ``rss ×`` = naive / variant increase
(higher is better).

With ``--device cuda`` the step times are taken between ``torch.cuda.synchronize()`` calls and the memory is the
CUDA caching allocator's (RSS does not see device memory): ``peak`` = ``torch.cuda.max_memory_allocated`` during one
step after a warm-up step (peak statistics reset per variant, in this process), ``step +`` its increase over the
memory allocated before the step, ``mem ×`` = naive / variant increase.

Usage: ``python benchmarks/gdas_step.py [--batch 64] [--repeats 5] [--threads 1] [--variants naive,gdas,...]
[--device cpu|cuda]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mixed_op import _peak_rss_bytes, _reset_peak_rss, _rss_bytes  # noqa: E402  (same RSS method, one copy)

from dnas.cells.darts import DartsSupernet  # noqa: E402
from dnas.cells.edges import EdgeOptions
from dnas.ops import GumbelSampler, set_sampled_execution  # noqa: E402
from dnas.ops.binary_gates import sample_single_paths, sample_two_paths  # noqa: E402

VARIANTS = ("naive", "fused", "hard-all", "gdas", "pxl-w", "pxl-a")
C, LAYERS, SIZE = 16, 8, 32


def build(variant: str, batch: int, seed: int = 0, device: str = "cpu"):
    """``(supernet, weights_fn, x, y, backward inputs)``; every variant gets the same parameters and inputs (built on
    the CPU, then moved to ``device``; the samplers' generators stay on the CPU)."""
    torch.manual_seed(seed)
    net = DartsSupernet(
        C, 10, LAYERS, edge_options=EdgeOptions(mixed_op_impl="naive" if variant == "naive" else "fused")
    ).train()
    g = torch.Generator().manual_seed(seed + 1)
    x, y = torch.randn(batch, 3, SIZE, SIZE, generator=g), torch.randint(0, 10, (batch,), generator=g)
    net, x, y = net.to(device), x.to(device), y.to(device)
    if variant in ("naive", "fused"):
        return net, net.edge_weights, x, y, None
    gen = torch.Generator().manual_seed(seed + 2)
    if variant == "pxl-w":
        set_sampled_execution(net, "binary_gate")
        return net, lambda: {k: sample_single_paths(g.weights(), gen) for k, g in net.arch.items()}, x, y, None
    if variant == "pxl-a":
        set_sampled_execution(net, "binary_gate")
        weights_fn = lambda: {k: sample_two_paths(g.alpha, g.weights(), gen)[0] for k, g in net.arch.items()}  # noqa: E731
        return net, weights_fn, x, y, net.arch_parameters()
    if variant == "gdas":
        set_sampled_execution(net, True)
    sampler = GumbelSampler(10.0, hard=True, generator=gen)
    return net, lambda: net.edge_weights(sampler=sampler), x, y, None


def step(net, weights_fn, x, y, inputs=None) -> None:
    net.zero_grad(set_to_none=True)
    F.cross_entropy(net(x, weights_fn()), y).backward(inputs=inputs)


def child_rss(variant: str, batch: int) -> dict:
    built = build(variant, batch)
    if not _reset_peak_rss():
        raise RuntimeError("cannot reset the peak RSS (/proc/self/clear_refs); the step's peak would be hidden")
    before = _rss_bytes()
    step(*built)
    peak = _peak_rss_bytes()
    return {"before": before, "peak": peak, "increase": peak - before}


def rss_in_subprocess(variant: str, batch: int, threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, __file__, "--child", variant, str(batch), "--threads", str(threads)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def cuda_memory(variant: str, batch: int) -> dict:
    """Peak CUDA memory of one step after a warm-up step (same keys as :func:`child_rss`)."""
    built = build(variant, batch, device="cuda")
    step(*built)  # warm-up: Triton compilation, cuDNN workspaces
    built[0].zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    step(*built)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    del built
    torch.cuda.empty_cache()
    return {"before": before, "peak": peak, "increase": peak - before}


def step_times(batch: int, repeats: int, variants=VARIANTS, device: str = "cpu") -> dict[str, float]:
    built = {v: build(v, batch, device=device) for v in variants}
    sync = torch.cuda.synchronize if device == "cuda" else lambda: None
    for v in variants:  # warm-up
        step(*built[v])
    times: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(repeats):
        for v in variants:  # interleaved: machine noise hits every variant alike
            sync()
            t0 = time.perf_counter()
            step(*built[v])
            sync()
            times[v].append(time.perf_counter() - t0)
    return {v: statistics.median(ts) for v, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset; naive is the baseline")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(child_rss(args.child[0], int(args.child[1]))))
        return
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda: torch.cuda.is_available() is False")
    # cuDNN convolutions take TF32 by default on Ampere and later (PyTorch's default, kept: the speed users get)
    tf32 = f" (cuDNN TF32 {torch.backends.cudnn.allow_tf32})" if cuda else ""
    where = f"{torch.cuda.get_device_name()}{tf32}" if cuda else f"CPU, {torch.get_num_threads()} thread(s)"
    print(
        f"torch {torch.__version__}, {where}, fp32, DartsSupernet C={C} layers={LAYERS}, "
        f"batch {args.batch}, {SIZE}x{SIZE}, repeats={args.repeats}"
    )
    variants = tuple(args.variants.split(","))
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or "naive" not in variants:
        parser.error(f"--variants must include naive and name only {VARIANTS}; got unknown {unknown}")
    if cuda:
        rss = {v: cuda_memory(v, args.batch) for v in variants}
    else:
        rss = {v: rss_in_subprocess(v, args.batch, args.threads) for v in variants}
    times = step_times(args.batch, args.repeats, variants, args.device)
    memory, digits = ("mem ×", 4) if cuda else ("rss ×", 3)  # a CUDA step takes milliseconds
    print(f"{'variant':<10}{'time s':>9}{'time ×':>9}{'peak MiB':>10}{'step +MiB':>11}{memory:>8}")
    for v in variants:
        t, r = times[v], rss[v]
        print(
            f"{v:<10}{t:9.{digits}f}{t / times['naive']:9.2f}{r['peak'] / 2**20:10.1f}{r['increase'] / 2**20:11.1f}"
            f"{rss['naive']['increase'] / max(r['increase'], 1):8.1f}"
        )


if __name__ == "__main__":
    main()
