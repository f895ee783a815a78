"""A latency table's error model: the least-squares fit, its record's schema, ``measure_table(calibrate=k)`` end to
end, and the prediction band in ``dnas export`` and the search report."""

import functools
import json
import math
import random
from types import SimpleNamespace

import pytest
import torch

from dnas.cells.fbnet import FBNetSupernet
from dnas.export import build_model
from dnas.latency import CostTable, CostTableError, LatencyLoss, measure_table
from dnas.latency.calibration import Prediction, fit_line, loo_relative_errors, make_record
from dnas.latency.measure import random_architectures
from dnas.viz.search_report import latency_parts

OPS = ("k3_e1", "k3_e1_g2", "k5_e6", "skip")
X = torch.zeros(1, 1, 8, 8)


def tiny_fbnet():
    torch.manual_seed(0)
    return FBNetSupernet(
        num_classes=3, in_channels=1, input_size=8, width_mult=0.25, head_channels=8, primitives=OPS, stem_stride=1
    )


def test_least_squares_recovers_a_known_line_and_matches_the_normal_equations():
    rng = random.Random(0)
    xs = [rng.uniform(1, 50) for _ in range(12)]
    intercept, slope = fit_line(xs, [3.5 + 1.75 * x for x in xs])
    assert intercept == pytest.approx(3.5, abs=1e-9) and slope == pytest.approx(1.75, abs=1e-12)
    assert max(loo_relative_errors(xs, [3.5 + 1.75 * x for x in xs])) == pytest.approx(0, abs=1e-12)
    # noisy points: the closed form slope = cov(x, y) / var(x), intercept = ȳ − slope · x̄
    ys = [3.5 + 1.75 * x + rng.gauss(0, 2) for x in xs]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    a, s = fit_line(xs, ys)
    assert s == pytest.approx(b, rel=1e-10) and a == pytest.approx(my - b * mx, rel=1e-10)
    with pytest.raises(ValueError, match="slope is not determined"):
        fit_line([2.0, 2.0, 2.0], [1.0, 2.0, 3.0])


def test_leave_one_out_error_of_an_outlier_is_the_line_through_the_others():
    xs, ys = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 10.0]  # y = 2x except the last point
    errors = loo_relative_errors(xs, ys)
    assert errors[3] == pytest.approx(abs(10 - 8) / 10)  # the other three lie on y = 2x: predicts 8
    record = make_record(xs, ys, warmup=1, min_run_time=0.01, seed=0)
    assert record["max_rel_error"] == pytest.approx(max(errors))
    assert record["rms_rel_error"] == pytest.approx(math.sqrt(sum(e * e for e in errors) / 4))
    with pytest.raises(ValueError, match="at least 3"):
        make_record(xs[:2], ys[:2], 1, 0.01, 0)


def test_prediction_band_and_rows():
    cal = make_record([1.0, 2.0, 3.0, 4.0], [5.0, 7.0, 9.0, 11.0], 1, 0.01, 0)  # 3 + 2x exactly
    cal["max_rel_error"] = 0.1
    p = Prediction.of(4.0, cal)
    assert p.value == pytest.approx(11.0) and p.band == pytest.approx((10.0, 11.0 / 0.9))
    assert p.contains(12.2) is True and p.contains(12.3) is False  # |m − 11| <= 0.1 m  <=>  m <= 12.22
    assert p.contains(10.0) is True and p.contains(9.9) is False
    text = " ".join(" ".join(r) for r in p.rows(measured=12.3, budget=5.0))
    assert "error ≤ 10.0 %" in text and "OUTSIDE the band" in text and "13 ms whole" in text  # 3 + 2 · 5
    assert Prediction.of(4.0, {**cal, "max_rel_error": 1.5}).band == pytest.approx((11.0 / 2.5, math.inf))
    bare = Prediction.of(4.0, None)
    assert bare.band is None and bare.contains(4.0) is None and bare.value == 4.0
    assert "unknown: the table has no calibration" in " ".join(" ".join(r) for r in bare.rows(measured=9.0))


@functools.cache
def _base_table() -> str:
    entries = measure_table(tiny_fbnet(), X, metric="params", progress=False).entries
    return json.dumps(CostTable("latency", entries).to_dict())


def _table_dict(calibration):
    data = json.loads(_base_table())
    data["meta"]["calibration"] = calibration
    return data


GOOD = make_record([1.0, 2.0, 3.0], [4.0, 6.5, 8.0], 1, 0.01, 0)


@pytest.mark.parametrize(
    "field, value",
    [
        ("slope", "fast"),
        ("intercept_ms", None),
        ("max_rel_error", -0.5),
        ("archs", 2),
        ("archs", 2.5),
        ("table_sums_ms", [1.0, 2.0]),
        ("measured_ms", [1.0, float("nan"), 2.0]),
        ("warmup", True),
    ],
)
def test_a_bad_calibration_field_is_one_error_naming_it(field, value):
    CostTable.from_dict(_table_dict(GOOD))  # the good record loads
    with pytest.raises(CostTableError, match=rf"meta\.calibration\.{field}'"):
        CostTable.from_dict(_table_dict({**GOOD, field: value}))
    with pytest.raises(CostTableError, match=r"field 'meta\.calibration' must be an object"):
        CostTable.from_dict(_table_dict([1, 2]))


def test_measure_table_calibrates_on_k_random_whole_networks(tmp_path):
    net = tiny_fbnet()
    with pytest.raises(ValueError, match="calibrate needs metric 'latency'"):
        measure_table(net, X, metric="flops", progress=False, calibrate=3)
    table = measure_table(net, X, warmup=1, min_run_time=0.002, progress=False, calibrate=3, calibrate_run_time=0.01)
    record = table.meta["calibration"]
    assert record["archs"] == 3 and len(record["table_sums_ms"]) == len(record["measured_ms"]) == 3
    # the sums are the table's own sums of the architectures the seed draws (same seed, same draws)
    archs = random_architectures(net, 3, seed=0)
    assert record["table_sums_ms"] == [table.total({"layers": g.cells["layers"].ops()}) for g in archs]
    assert len({tuple(g.cells["layers"].ops()) for g in archs}) == 3
    assert all(m > 0 for m in record["measured_ms"])
    loaded = CostTable.load(table.save(tmp_path / "lut.json"))
    assert loaded.meta["calibration"] == record
    choice = loaded.choice(net.genotype())  # from the recorded α edge layout
    assert loaded.predict(choice).value == pytest.approx(record["intercept_ms"] + record["slope"] * table.total(choice))


def _calibrated_table(value_ms, rel_error):
    """A latency table (fake costs) whose calibration predicts ``value_ms`` for every network, ± ``rel_error``."""
    table = measure_table(tiny_fbnet(), X, metric="params", progress=False)
    table.metric = "latency"
    cal = {**GOOD, "intercept_ms": value_ms, "slope": 0.0, "max_rel_error": rel_error, "min_run_time_s": 0.01}
    table.meta["calibration"] = cal
    return CostTable.from_dict(json.loads(json.dumps(table.to_dict())))


@pytest.mark.parametrize("value, error, verdict", [(1e-3, 1.5, "within the band"), (1e6, 1e-3, "OUTSIDE")])
def test_the_search_report_shows_the_band_and_the_measurement_against_it(value, error, verdict):
    net = tiny_fbnet()
    genotype = net.genotype()
    loss = LatencyLoss(_calibrated_table(value, error), form="add", target=1.0)
    module = SimpleNamespace(trainer=SimpleNamespace(callback_metrics={}))
    parts = latency_parts(module, net, genotype, loss, build_model(genotype), [1, 8, 8], measure=True)
    rows = {r[0]: r[1] for part in parts if part[0] == "table" for r in part[2]}
    predicted = next(v for k, v in rows.items() if k.startswith("predicted whole network"))
    assert f"error ≤ {100 * error:.1f} %" in predicted and f"{value:.4g} ms, band" in predicted
    assert verdict in rows["measured whole network"]


def test_dnas_export_prints_table_sum_prediction_and_measurement(tmp_path, run_cli):
    net = tiny_fbnet()
    (tmp_path / "g.json").write_text(net.genotype().to_json())
    _calibrated_table(1e-3, 1.5).save(tmp_path / "lut.json")  # band [0.0004 ms, ∞): any measurement is in it
    args = ["export", "--genotype", str(tmp_path / "g.json"), "--table", str(tmp_path / "lut.json")]
    code, out, err = run_cli([*args, "--measure", "--out", str(tmp_path / "e")])
    assert code == 0, err
    assert "latency table sum of the chosen ops" in out and "error ≤ 150.0 %" in out and "(within the band)" in out
    code, out, err = run_cli(["export", "--genotype", str(tmp_path / "g.json"), "--measure", "--out", str(tmp_path)])
    assert code == 2 and "--measure needs --table" in err


def test_dnas_lut_calibrates_by_default_and_refuses_it_for_other_metrics(tmp_path, capsys):
    from dnas.latency.cli import main as lut_main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "model:\n  class_path: dnas.FBNet\n  init_args:\n    supernet:\n"
        "      class_path: dnas.cells.fbnet.FBNetSupernet\n"
        "      init_args: {num_classes: 10, in_channels: 1, input_size: 8, width_mult: 0.25, head_channels: 8,"
        " primitives: [k3_e1, skip]}\n"
        "data:\n  class_path: dnas.data.DigitsDataModule\n"
    )
    out = tmp_path / "lut.json"
    fast = ["--warmup", "1", "--min_run_time", "0.001", "--calibrate_run_time", "0.005", "--no_progress"]
    lut_main(["--config", str(cfg), "--out", str(out), "--calibrate", "3", *fast])
    assert CostTable.load(out).meta["calibration"]["archs"] == 3
    assert "calibration on 3 whole networks" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        lut_main(["--config", str(cfg), "--out", str(out), "--metric", "flops", "--calibrate", "3", *fast])
    assert "--calibrate needs --metric latency" in capsys.readouterr().err


def test_the_alpha_edge_layout_is_checked_and_needed_for_a_genotype_choice():
    data = _table_dict(GOOD)
    del data["meta"]["calibration"]
    table = CostTable.from_dict(data)  # a table measured before the layout was recorded
    with pytest.raises(CostTableError, match=r"no α edge layout \(meta\.arch_edges\)"):
        table.choice(tiny_fbnet().genotype())
    data["meta"]["arch_edges"] = {"layers": [[0, 1], [1, "2"]]}
    with pytest.raises(CostTableError, match=r"field 'meta\.arch_edges' must be"):
        CostTable.from_dict(data)
    data["meta"]["arch_edges"] = {"layers": [[i, i + 1] for i in range(21)]}  # one layer short
    with pytest.raises(CostTableError, match=r"genotype edge 21->22 of cell 'layers' is not an edge of the table"):
        CostTable.from_dict(data).choice(tiny_fbnet().genotype())


def test_merging_tables_drops_the_calibration_it_was_measured_for():
    from dnas.latency import merge

    table = CostTable.from_dict(_table_dict(GOOD))
    merged = merge([table, table])
    assert "calibration" not in merged.meta and merged.meta["merged_from"][0]["calibration"] == GOOD
    assert merged.predict({"layers": ["skip"] * 22}).band is None
