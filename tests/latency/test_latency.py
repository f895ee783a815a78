import json
import math

import pytest
import torch

from dnas.cells.darts import DartsSupernet
from dnas.cells.fbnet import FBNetSupernet
from dnas.latency import CostTable, CostTableError, LatencyLoss, candidate_shapes, candidate_sites, measure_table, merge
from dnas.latency.cli import main as lut_main

OPS = ("k3_e1", "k3_e1_g2", "k5_e6", "skip")


def tiny_fbnet(**kw):
    torch.manual_seed(0)
    args = dict(num_classes=3, in_channels=1, input_size=8, width_mult=0.25, head_channels=8, primitives=OPS)
    return FBNetSupernet(**{**args, **kw})


def fake_table(net, x, seed=0):
    """A params table (exact, instant) with distinct random costs so gradients are not degenerate."""
    table = measure_table(net, x, metric="params", progress=False)
    g = torch.Generator().manual_seed(seed)
    for e in table.entries:
        e.ops = {k: float(torch.rand((), generator=g)) * 10 + 1 for k in e.ops}
    return table


def test_shapes_follow_the_plan_and_darts_has_one_instance_per_cell():
    net = tiny_fbnet(stem_stride=1, stage_strides=[1, 2, 1, 2, 1, 1, 1])
    shapes = candidate_shapes(net, torch.zeros(1, 1, 8, 8))
    assert sorted(shapes) == [("layers", i) for i in range(22)]
    sizes = [shapes[("layers", i)][0][-1] for i in range(22)]
    assert sizes == [8] * 2 + [4] * 8 + [2] * 12  # strides at layers 1 and 9 (stage 2 and 4)
    assert [shapes[("layers", i)][0][1] for i in range(22)] == [c_in for c_in, _, _ in net.plan]
    darts = DartsSupernet(init_channels=4, num_classes=3, layers=3, in_channels=1)
    shapes = candidate_shapes(darts, torch.zeros(1, 1, 8, 8))
    assert len(shapes) == 28 and len(shapes[("normal", 0)]) == 1 and len(shapes[("reduce", 0)]) == 2
    assert shapes[("reduce", 0)][0] != shapes[("reduce", 0)][1]  # each reduction cell at its own resolution


def test_expected_latency_gradient_matches_finite_differences():
    net = tiny_fbnet().double()
    x = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    loss = LatencyLoss(fake_table(net, x), form="add", target=1.0)
    alpha = net.alpha("layers")
    with torch.no_grad():
        alpha.normal_()

    def lat():
        return loss.expected(net, net.edge_weights())

    (grad,) = torch.autograd.grad(lat(), alpha)
    eps = 1e-6
    num = torch.zeros_like(alpha)
    with torch.no_grad():
        for i in range(alpha.shape[0]):
            for k in range(alpha.shape[1]):
                alpha[i, k] += eps
                up = lat()
                alpha[i, k] -= 2 * eps
                down = lat()
                alpha[i, k] += eps
                num[i, k] = (up - down) / (2 * eps)
    torch.testing.assert_close(grad, num, atol=1e-7, rtol=1e-6)
    assert grad.abs().sum() > 0


def test_one_hot_expected_latency_is_the_table_sum_and_forms():
    net = tiny_fbnet()
    x = torch.zeros(1, 1, 8, 8)
    table = fake_table(net, x)
    idx = torch.arange(22) % len(OPS)
    w = {"layers": torch.nn.functional.one_hot(idx, len(OPS)).float()}
    want = table.total({"layers": [OPS[int(i)] for i in idx]})
    ll = LatencyLoss(table, form="fbnet", alpha=0.2, beta=0.6)
    lat = ll.expected(net, w)
    assert math.isclose(float(lat), want, rel_tol=1e-6)
    ce = torch.tensor(2.0)
    assert math.isclose(float(ll.combine(ce, lat)), 2.0 * 0.2 * math.log(want) ** 0.6, rel_tol=1e-6)
    mul = LatencyLoss(table, form="mul_log", alpha=0.2, beta=0.3, reference=80.0)
    assert math.isclose(float(mul.combine(ce, lat)), 0.2 * 2.0 * (math.log(want) / math.log(80.0)) ** 0.3, rel_tol=1e-6)
    add = LatencyLoss(table, form="add", lam=0.5, target=40.0)
    assert math.isclose(float(add.combine(ce, lat)), 2.0 + 0.5 * want / 40.0, rel_tol=1e-6)
    with pytest.raises(ValueError, match="scale"):
        LatencyLoss(table, form="fbnet").combine(ce, torch.tensor(0.5))
    with pytest.raises(ValueError, match="reference"):
        LatencyLoss(table, form="mul_log")


def test_table_round_trip_validation_and_merge(tmp_path):
    net = tiny_fbnet()
    x = torch.zeros(1, 1, 8, 8)
    table = fake_table(net, x)
    path = table.save(tmp_path / "t.json")
    again = CostTable.load(path)
    assert again.to_dict() == table.to_dict()
    sites = candidate_sites(net, x)
    again.validate(sites)
    # a missing op: the error names the layer and the op
    data = json.loads(path.read_text())
    del data["entries"][5]["ops"]["k5_e6"]
    (tmp_path / "bad.json").write_text(json.dumps(data))
    bad = CostTable.load(tmp_path / "bad.json")
    with pytest.raises(CostTableError, match=r"op 'k5_e6' of layer 'layers.edges.5'"):
        bad.validate(sites)
    with pytest.raises(CostTableError, match=r"k5_e6.*layers.edges.5"):
        LatencyLoss(bad).expected(net, net.edge_weights())
    # measured for another resolution
    with pytest.raises(CostTableError, match="input shape"):
        again.validate(candidate_sites(tiny_fbnet(input_size=16), torch.zeros(1, 1, 16, 16)))
    with pytest.raises(CostTableError, match="does not exist"):
        CostTable.load(tmp_path / "missing.json")
    data["entries"][0]["ops"]["k3_e1"] = -1
    (tmp_path / "neg.json").write_text(json.dumps(data))
    with pytest.raises(CostTableError, match="finite value >= 0"):
        CostTable.load(tmp_path / "neg.json")
    # merge: the op-less table and a table holding only that op complete each other; conflicts are errors
    only = CostTable(table.metric, [e for e in fake_table(net, x).entries if e.module == "layers.edges.5"], {})
    only.entries[0].ops = {"k5_e6": table.entries[5].ops["k5_e6"]}
    merged = merge([bad, only])
    merged.validate(sites)
    assert merged.entries[5].ops == table.entries[5].ops
    with pytest.raises(CostTableError, match="disagree"):
        merge([table, fake_table(net, x, seed=1)])


def test_tiny_real_measurement_and_flops():
    net = tiny_fbnet()
    x = torch.zeros(1, 1, 8, 8)
    sites = candidate_sites(net, x)[:2]
    table = measure_table(net, x, warmup=1, min_run_time=0.001, progress=False, sites=sites)
    for key in ("device", "dtype", "batch_size", "threads", "torch", "pytorch_lightning", "warmup"):
        assert key in table.meta
    assert all(0 < v < 1000 for e in table.entries for v in e.ops.values())
    assert set(table.entries[0].stats["k3_e1"]) == {"median", "iqr", "calls"}
    flops = measure_table(net, x, metric="flops", progress=False, sites=sites)
    c = net.plan[0][0]  # k3_e1 at 8×8, C -> C: pw 1×1 C·C, dw 3×3 C, pwl C·C MACs per pixel, 2 FLOPs per MAC
    assert flops.entries[0].ops["k3_e1"] == 2 * 64 * (c * c + 9 * c + c * c)
    assert flops.entries[0].ops["skip"] == 0


def test_latency_term_in_darts_arch_step_is_differentiable():
    from dnas import DARTS

    darts = DartsSupernet(init_channels=4, num_classes=3, layers=3, in_channels=1)
    x = torch.zeros(1, 1, 8, 8)
    table = measure_table(darts, x, metric="params", progress=False)
    module = DARTS(darts, latency_loss=LatencyLoss(table, form="mul_log", reference=100.0))
    loss, logits, extra = module.arch_loss(torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0]))
    assert set(extra) == {"params", "ce"} and float(extra["params"]) > 0
    grads = torch.autograd.grad(loss, module.supernet.arch_parameters())
    assert all(g.abs().sum() > 0 for g in grads)


def test_lut_cli_writes_and_merges(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "model:\n  class_path: dnas.FBNet\n  init_args:\n    supernet:\n"
        "      class_path: dnas.cells.fbnet.FBNetSupernet\n"
        "      init_args: {num_classes: 10, in_channels: 1, input_size: 8, width_mult: 0.25, head_channels: 8,"
        " primitives: [k3_e1, skip]}\n"
        "data:\n  class_path: dnas.data.DigitsDataModule\n"
    )
    out = tmp_path / "lut.json"
    lut_main(["--config", str(cfg), "--out", str(out), "--metric", "params", "--no_progress"])
    table = CostTable.load(out)
    assert table.meta["input_shape"] == [1, 8, 8] and len(table.entries) == 22
    lut_main(["merge", str(out), str(out), "--out", str(tmp_path / "m.json")])
    assert CostTable.load(tmp_path / "m.json").to_dict()["entries"] == table.to_dict()["entries"]
