"""Predicted (lookup table) vs measured latency of exported FBNet architectures, side by side on this machine.

1. Measure the LUT of an FBNet supernet (every candidate block of every layer at its real input shape) and its
   calibration (``measure_table(calibrate=N)``, as ``dnas lut --calibrate N``: N random whole networks timed,
   measured ≈ intercept + slope · table sum, leave-one-out error band).
2. Held-out architectures, drawn differently from the calibration's (per-architecture Dirichlet block preferences,
   so light and heavy nets mix), exported (``dnas.export.build_model``) and timed whole.
3. Budget networks: for each fraction f of the space's mean table sum, a random α's argmax projected under the budget
   (``dnas.latency.project_to_budget``, as ``BudgetLoss`` does at the end of a search), exported and timed whole.

Per network: the raw table sum, the sum + the fixed stem/head (timed once), the calibrated prediction and its band,
the measurement and whether it lies within the band. Then Spearman's rank correlation and the mean relative errors.

    python benchmarks/latency_lut.py --quickstart --archs 12 --calibrate 8
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
from dnas.latency import measure_table, project_to_budget, time_module
from dnas.latency.measure import time_network
from dnas.ops.fbnet import FBNET_PRIMITIVES


class _Fixed(nn.Module):
    """Stem + head + classifier of an exported net, on the stem input / last-layer output."""

    def __init__(self, model, last_shape):
        super().__init__()
        self.model, self.last_shape = model, last_shape

    def forward(self, x):
        b = self.model.body  # dnas.cells.fbnet.FBNetStemHead
        b.stem(x)
        return b.classifier(b.dropout(b.pool(b.head(torch.zeros(self.last_shape))).flatten(1)))


def _head_input_shape(model: nn.Module, x: torch.Tensor) -> torch.Size:
    seen = []
    hook = model.body.head.register_forward_pre_hook(lambda _, args: seen.append(args[0].shape))
    with torch.no_grad():
        model(x)
    hook.remove()
    return seen[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quickstart", action="store_true", help="the supernet of configs/quickstart_fbnet.yaml")
    p.add_argument("--input_size", type=int, default=32)
    p.add_argument("--in_channels", type=int, default=3)
    p.add_argument("--width_mult", type=float, default=0.5)
    p.add_argument("--head_channels", type=int, default=512)
    p.add_argument("--archs", type=int, default=24, help="held-out random architectures")
    p.add_argument("--calibrate", type=int, default=8, help="calibration architectures (dnas lut --calibrate)")
    p.add_argument("--fractions", type=float, nargs="*", default=[0.4, 0.6, 0.8], help="budget networks")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--min_run_time", type=float, default=0.05, help="seconds per LUT entry")
    p.add_argument("--net_run_time", type=float, default=0.3, help="seconds per whole-network measurement")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    if args.quickstart:
        kw = dict(in_channels=1, input_size=8, width_mult=0.25, head_channels=64, stem_stride=1)
        net = FBNetSupernet(num_classes=10, stage_strides=[1, 2, 1, 2, 1, 1, 1], **kw)
    else:
        kw = dict(
            in_channels=args.in_channels,
            input_size=args.input_size,
            width_mult=args.width_mult,
            head_channels=args.head_channels,
        )
        net = FBNetSupernet(num_classes=10, **kw)
    x = torch.zeros(1, kw["in_channels"], kw["input_size"], kw["input_size"])
    t0 = time.perf_counter()
    table = measure_table(
        net,
        x,
        threads=args.threads,
        min_run_time=args.min_run_time,
        warmup=5,
        calibrate=args.calibrate,
        calibrate_run_time=args.net_run_time,
        seed=args.seed,
    )
    lut_s = time.perf_counter() - t0
    cal = table.meta["calibration"]
    print(
        f"LUT: {len(table.entries)} layers x {len(FBNET_PRIMITIVES)} blocks + {cal['archs']} calibration networks "
        f"in {lut_s:.0f}s on {table.meta['device']}: measured ≈ {cal['intercept_ms']:.3f} ms + {cal['slope']:.3f} × "
        f"table sum, leave-one-out error max {100 * cal['max_rel_error']:.1f} %, RMS {100 * cal['rms_rel_error']:.1f} %"
    )
    gen = torch.Generator().manual_seed(args.seed + 1)
    networks = []
    for i in range(args.archs):
        prefs = torch.distributions.Dirichlet(torch.full((9,), 0.5)).sample()  # this architecture's block taste
        idx = torch.multinomial(prefs.expand(22, 9), 1, replacement=True, generator=gen).squeeze(-1)
        networks.append((f"arch {i:2d}", [FBNET_PRIMITIVES[int(k)] for k in idx]))
    costs = table.matrix("layers", FBNET_PRIMITIVES, 22)
    mean_sum = float(costs.mean(1).sum())
    for f in args.fractions:
        probs = torch.softmax(2 * torch.randn(22, 9, generator=gen), -1)
        choice = [("layers", r, int(probs[r].argmax())) for r in range(22)]
        new, _ = project_to_budget(choice, {"layers": probs}, {"layers": costs}, f * mean_sum)
        networks.append((f"budget {f:.0%} ({f * mean_sum:.2f} ms)", [FBNET_PRIMITIVES[k] for _, _, k in new]))
    rows, fixed = [], None
    for name, ops in networks:
        model = build_model(Genotype.chain(ops, "fbnet", meta=net.build_meta())).eval()
        if fixed is None:
            last = _head_input_shape(model, x)
            fixed = time_module(_Fixed(model, last).eval(), x, 5, args.net_run_time, args.threads)["median"]
        pred = table.predict({"layers": ops})
        meas = time_network(model, x.shape[1:], table.meta)
        rows.append((name, pred, meas))
        low, high = pred.band
        print(
            f"{name:<24} table {pred.table_sum:7.3f}  +stem/head {pred.table_sum + fixed:7.3f}  predicted "
            f"{pred.value:7.3f} [{low:7.3f}, {high:7.3f}]  measured {meas:7.3f} ms  "
            f"{'within' if pred.contains(meas) else 'OUTSIDE'}"
        )
    sums = torch.tensor([r[1].table_sum for r in rows])
    preds = torch.tensor([r[1].value for r in rows])
    meas_t = torch.tensor([r[2] for r in rows])

    def mre(p):
        return 100 * ((p - meas_t).abs() / meas_t).mean().item()

    inside = sum(bool(r[1].contains(r[2])) for r in rows)
    print(
        f"\n{len(rows)} networks ({args.archs} random, {len(args.fractions)} at budgets), input {tuple(x.shape[1:])}, "
        f"batch 1, {args.threads} thread(s), torch {torch.__version__}"
    )
    print(f"Spearman rank correlation (table vs measured): {spearmanr(sums, meas_t).statistic:.3f}")
    print(f"mean relative error, table sum only:        {mre(sums):.1f} %")
    print(f"mean relative error, table + stem/head:     {mre(sums + fixed):.1f} %  (stem/head {fixed:.3f} ms)")
    print(f"mean relative error, calibrated prediction: {mre(preds):.1f} %")
    print(f"measured within the calibration's band:     {inside} of {len(rows)}")
    print(f"measured range {meas_t.min():.3f} .. {meas_t.max():.3f} ms")


if __name__ == "__main__":
    main()
