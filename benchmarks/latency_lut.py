"""Predicted (lookup table) vs measured latency of exported FBNet architectures, side by side on this machine.

1. Measure the LUT of an FBNet supernet (every candidate block of every layer at its real input shape).
2. Sample N architectures from the space (per-architecture random block preferences, so light and heavy nets mix),
   export each (``dnas.export.build_model``) and time the whole network.
3. Predicted = Σ table entries of the chosen blocks (+ the fixed stem/head, timed once, for the absolute error).
   Report Spearman's rank correlation and the mean relative error.

    python benchmarks/latency_lut.py --input_size 32 --width_mult 0.5 --archs 24
"""

from __future__ import annotations

import argparse
import time

import torch
from scipy.stats import spearmanr
from torch import nn

from dnas.cells.fbnet import FBNetSupernet
from dnas.export import build_model
from dnas.genotypes import Genotype
from dnas.latency import measure_table, time_module
from dnas.ops.fbnet import FBNET_PRIMITIVES


class _Fixed(nn.Module):
    """Stem + head + classifier of an exported net, on the stem input / last-layer output."""

    def __init__(self, model, last_shape):
        super().__init__()
        self.model, self.last_shape = model, last_shape

    def forward(self, x):
        m = self.model
        m.stem(x)
        return m.classifier(m.dropout(m.pool(m.head(torch.zeros(self.last_shape))).flatten(1)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input_size", type=int, default=32)
    p.add_argument("--in_channels", type=int, default=3)
    p.add_argument("--width_mult", type=float, default=0.5)
    p.add_argument("--head_channels", type=int, default=512)
    p.add_argument("--archs", type=int, default=24)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--min_run_time", type=float, default=0.05, help="seconds per LUT entry")
    p.add_argument("--net_run_time", type=float, default=0.3, help="seconds per whole-network measurement")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    net = FBNetSupernet(
        num_classes=10,
        in_channels=args.in_channels,
        input_size=args.input_size,
        width_mult=args.width_mult,
        head_channels=args.head_channels,
    )
    x = torch.zeros(1, args.in_channels, args.input_size, args.input_size)
    t0 = time.perf_counter()
    table = measure_table(net, x, threads=args.threads, min_run_time=args.min_run_time, warmup=5)
    lut_s = time.perf_counter() - t0
    print(
        f"LUT: {len(table.entries)} layers x {len(FBNET_PRIMITIVES)} blocks in {lut_s:.0f}s on {table.meta['device']}"
    )
    gen = torch.Generator().manual_seed(args.seed)
    predicted, measured = [], []
    fixed = None
    for i in range(args.archs):
        prefs = torch.distributions.Dirichlet(torch.full((9,), 0.5)).sample()  # this architecture's block taste
        idx = torch.multinomial(prefs.expand(22, 9), 1, replacement=True, generator=gen).squeeze(-1)
        ops = [FBNET_PRIMITIVES[int(k)] for k in idx]
        model = build_model(Genotype.chain(ops, "fbnet", meta=net.build_meta())).eval()
        if fixed is None:
            with torch.no_grad():
                last = model.layers(model.stem(x)).shape
            fixed = time_module(_Fixed(model, last).eval(), x, 5, args.net_run_time, args.threads)["median"]
        pred = table.total({"layers": ops})
        meas = time_module(model, x, 5, args.net_run_time, args.threads)["median"]
        predicted.append(pred)
        measured.append(meas)
        print(f"arch {i:2d}: predicted {pred:7.3f} ms (+ fixed {fixed:.3f}) measured {meas:7.3f} ms  {' '.join(ops)}")
    rho = spearmanr(predicted, measured).statistic
    pred_t = torch.tensor(predicted)
    meas_t = torch.tensor(measured)
    mre_raw = ((pred_t - meas_t).abs() / meas_t).mean().item()
    mre_fixed = ((pred_t + fixed - meas_t).abs() / meas_t).mean().item()
    print(
        f"\n{args.archs} architectures, input {args.in_channels}x{args.input_size}x{args.input_size}, "
        f"width {args.width_mult}, batch 1, {args.threads} thread(s), torch {torch.__version__}"
    )
    print(f"Spearman rank correlation (table vs measured): {rho:.3f}")
    print(f"mean relative error, table only:         {100 * mre_raw:.1f} %")
    print(f"mean relative error, table + stem/head:  {100 * mre_fixed:.1f} %  (stem/head {fixed:.3f} ms)")
    print(f"measured range {min(measured):.3f} .. {max(measured):.3f} ms")


if __name__ == "__main__":
    main()
