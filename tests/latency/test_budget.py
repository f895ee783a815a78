"""Hard cost budgets: dual ascent on the multiplier, the greedy projection, and the multiplier across a resume."""

import itertools
import math

import pytest
import pytorch_lightning as pl
import torch

import dnas
from dnas.cells.darts import DartsSupernet
from dnas.cells.fbnet import FBNetSupernet
from dnas.data import DigitsDataModule
from dnas.errors import ConfigError
from dnas.latency import BudgetLoss, measure_table, project_to_budget

OPS = ("k3_e1", "k3_e1_g2", "k5_e6", "skip")


def tiny_fbnet():
    torch.manual_seed(0)
    return FBNetSupernet(
        num_classes=10, in_channels=1, input_size=8, width_mult=0.25, head_channels=8, primitives=OPS, stem_stride=1
    )


def fake_table(net, seed=0):
    """A params table (exact, instant) with distinct random costs."""
    table = measure_table(net, torch.zeros(1, 1, 8, 8), metric="params", progress=False)
    g = torch.Generator().manual_seed(seed)
    for e in table.entries:
        e.ops = {k: float(torch.rand((), generator=g)) * 10 + 1 for k in e.ops}
    return table


def _total(choice, costs):
    return math.fsum(float(costs[g][r, k]) for g, r, k in choice)


def test_projection_always_lands_within_a_feasible_budget_on_random_tables():
    """Property test (seeded loop): random α, tables, kept edges and budgets; within budget iff feasible."""
    gen = torch.Generator().manual_seed(0)
    for trial in range(300):
        groups = {
            f"g{i}": (int(torch.randint(1, 8, (), generator=gen)), int(torch.randint(2, 6, (), generator=gen)))
            for i in range(1 + trial % 3)
        }
        probs = {g: torch.softmax(3 * torch.randn(E, K, generator=gen), -1) for g, (E, K) in groups.items()}
        # some zero-cost ops and ties, as real tables have (skip, pooling)
        costs = {
            g: torch.randint(0, 5, (E, K), generator=gen).double()
            * torch.rand(E, K, generator=gen).double().round(decimals=1)
            for g, (E, K) in groups.items()
        }
        choice = [
            (g, r, int(probs[g][r].argmax()))
            for g, (E, _) in groups.items()
            for r in range(E)
            if trial % 4 or r % 2 == 0
        ]
        cheapest = math.fsum(float(costs[g][r].min()) for g, r, _ in choice)
        start = _total(choice, costs)
        budget = (
            cheapest + float(torch.rand((), generator=gen)) * (start - cheapest) if trial % 5 else cheapest * 0.9 - 0.1
        )
        if budget < cheapest:
            with pytest.raises(ConfigError, match="below the cheapest"):
                project_to_budget(choice, probs, costs, budget)
            continue
        new, swaps = project_to_budget(choice, probs, costs, budget)
        assert _total(new, costs) <= budget + 1e-9, trial
        assert [(g, r) for g, r, _ in new] == [(g, r) for g, r, _ in choice]  # kept edges never change
        if start <= budget:
            assert new == choice and swaps == []
        assert all(s["cost_saved"] > 0 for s in swaps)


def test_projection_takes_the_swap_losing_least_probability_per_unit_of_cost():
    # two edges; edge 0 saves 10 for 0.4 probability (0.04/unit), edge 1 saves 2 for 0.02 (0.01/unit)
    probs = {"g": torch.tensor([[0.7, 0.3], [0.51, 0.49]])}
    costs = {"g": torch.tensor([[12.0, 2.0], [5.0, 3.0]])}
    new, swaps = project_to_budget([("g", 0, 0), ("g", 1, 0)], probs, costs, budget=15.0)
    assert new == [("g", 0, 0), ("g", 1, 1)] and len(swaps) == 1  # 17 -> 15: the cheap-in-probability swap suffices
    new, swaps = project_to_budget([("g", 0, 0), ("g", 1, 0)], probs, costs, budget=14.0)
    assert new == [("g", 0, 1), ("g", 1, 1)]  # then the other one is needed too
    assert [s["row"] for s in swaps] == [1, 0]
    assert swaps[1]["prob_lost"] == pytest.approx(0.4) and swaps[1]["cost_saved"] == pytest.approx(10.0)


def test_projection_is_optimal_on_small_exhaustive_cases_when_one_swap_suffices():
    """Against brute force: when one swap is enough, greedy's choice loses no more probability than the best one."""
    gen = torch.Generator().manual_seed(1)
    for _ in range(50):
        probs = {"g": torch.softmax(torch.randn(3, 3, generator=gen), -1)}
        costs = {"g": torch.rand(3, 3, generator=gen).double() * 10}
        choice = [("g", r, int(probs["g"][r].argmax())) for r in range(3)]
        start = _total(choice, costs)
        singles = []
        for r, j in itertools.product(range(3), range(3)):
            k = choice[r][2]
            saved = float(costs["g"][r, k] - costs["g"][r, j])
            if saved > 0:
                singles.append((float(probs["g"][r, k] - probs["g"][r, j]) / saved, saved))
        if not singles:
            continue
        ratio, saved = min(singles)
        new, swaps = project_to_budget(choice, probs, costs, start - saved)
        assert len(swaps) == 1 and swaps[0]["prob_lost"] / swaps[0]["cost_saved"] == pytest.approx(ratio)


def test_dual_ascent_raises_the_multiplier_over_budget_and_lowers_it_to_zero_under():
    net = tiny_fbnet()
    table = fake_table(net)
    B = 70.0  # feasible (the cheapest network costs 65.4) and below the soft weights' expected cost
    loss = BudgetLoss(table, budget=B, dual_lr=0.5)
    weights = {"layers": torch.softmax(net.alpha("layers"), -1)}
    cost = float(loss.expected(net, weights))
    v = cost / B - 1
    assert v > 0
    ce = torch.tensor(2.0)
    out, logs = loss(ce, net, weights)
    assert float(out) == pytest.approx(2.0)  # λ = 0 at the first step
    assert float(loss.multiplier) == pytest.approx(0.5 * v)  # λ ← max(0, λ + η (cost/B − 1))
    assert float(logs["violation"]) == pytest.approx(v) and "multiplier" in logs and "params" in logs
    lam = float(loss.multiplier)
    out, _ = loss(ce, net, weights)
    assert float(out) == pytest.approx(2.0 + lam * v)
    assert float(loss.multiplier) == pytest.approx(2 * lam)
    # under budget the multiplier falls, and never below 0
    loss.budget = 10 * cost  # violation 0.1 - 1 = -0.9 per step: λ falls by 0.45 a step
    loss(ce, net, weights)
    assert float(loss.multiplier) == pytest.approx(2 * lam - 0.45)
    for _ in range(int(2 * lam / 0.45) + 2):
        loss(ce, net, weights)
    assert float(loss.multiplier) == 0.0
    # a detached cost (evaluation) takes no dual step
    loss.budget = B
    loss(ce, net, {"layers": weights["layers"].detach()})
    assert float(loss.multiplier) == 0.0


def test_bad_budgets_are_one_clear_error(tmp_path):
    net = tiny_fbnet()
    table = fake_table(net)
    cheapest = float(table.matrix("layers", OPS, 22).min(-1).values.sum())
    with pytest.raises(ConfigError, match="below the cheapest"):  # at the first step, not at the end of the search
        _fit(tmp_path, dnas.GDAS(net, latency_loss=BudgetLoss(table, budget=0.99 * cheapest)))
    with pytest.raises(ConfigError, match="budget"):
        BudgetLoss(fake_table(net), budget=0.0)
    with pytest.raises(ConfigError, match="dual_lr"):
        BudgetLoss(fake_table(net), budget=1.0, dual_lr=-1)


def _fit(tmp_path, module, epochs=2, callbacks=(), ckpt_path=None):
    trainer = pl.Trainer(
        max_epochs=epochs,
        limit_train_batches=3,
        limit_val_batches=1,
        accelerator="cpu",
        logger=pl.loggers.CSVLogger(tmp_path),
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
        callbacks=[pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True), *callbacks],
    )
    trainer.fit(module, DigitsDataModule(batch_size=16), ckpt_path=ckpt_path)
    return trainer


@pytest.mark.parametrize("algorithm", ["GDAS", "FBNet", "ProxylessNAS"])
def test_searched_genotype_is_within_budget_and_says_what_was_swapped(tmp_path, algorithm, run_cli):
    net = tiny_fbnet()
    table = fake_table(net)
    costs = {g: table.matrix(g, grp.candidates, grp.num_edges) for g, grp in net.arch_groups.items()}
    argmax_cost = float(costs["layers"].gather(1, net.alpha("layers").argmax(-1, keepdim=True)).sum())
    budget = 0.5 * argmax_cost
    module = getattr(dnas, algorithm)(net, latency_loss=BudgetLoss(table, budget=budget, dual_lr=1.0))
    _fit(tmp_path, module)
    genotype = module.current_genotype()
    cost = table.total({"layers": genotype.cells["layers"].ops()})
    assert cost <= budget
    record = genotype.meta["budget"]
    assert record["budget"] == budget and record["cost"] == pytest.approx(cost) and record["metric"] == "params"
    plain = net.genotype().cells["layers"].ops()
    changed = [i for i, (a, b) in enumerate(zip(plain, genotype.cells["layers"].ops())) if a != b]
    assert sorted({s["edge"][0] for s in record["swaps"]}) == changed  # each swap lowers its edge's cost: no undo
    header = next(tmp_path.rglob("metrics.csv")).read_text().splitlines()[0]
    assert "arch/multiplier_step" in header and "arch/violation_step" in header
    assert float(module.latency_loss.multiplier) > 0  # the argmax-priced soft cost started over budget
    # the search report states the budget, the multiplier and the projection's swaps (not a loss form)
    from dnas.viz.search_report import latency_parts

    table_part = next(
        p for p in latency_parts(module, net, genotype, module.latency_loss, None, None, False) if p[0] == "table"
    )
    lam = float(module.latency_loss.multiplier)
    assert table_part[1][0] == f"params (hard budget {budget:.6g} {table.unit}, final multiplier λ = {lam:.4g})"
    assert [f"{len(record['swaps'])} swap(s)" in row[1] for row in table_part[2]].count(True) == 1
    # the checkpoint's genotype is the projected one, and `dnas export` prints table cost against the budget
    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert dnas.Genotype.from_dict(ckpt["dnas_genotype"]).cells == genotype.cells
    (tmp_path / "g.json").write_text(genotype.to_json())
    code, out, err = run_cli(["export", "--genotype", str(tmp_path / "g.json"), "--out", str(tmp_path / "export")])
    assert code == 0, err
    assert f"vs budget {budget:.6g}" in out and f"{len(record['swaps'])} swap(s)" in out


def test_the_multiplier_is_in_the_checkpoint_and_survives_a_resume(tmp_path):
    net = tiny_fbnet()
    table = fake_table(net)
    module = dnas.GDAS(net, latency_loss=BudgetLoss(table, budget=100.0, dual_lr=1.0))
    _fit(tmp_path / "a", module, epochs=1)
    saved = float(module.latency_loss.multiplier)
    assert saved > 0
    ckpt = torch.load(tmp_path / "a" / "last.ckpt", weights_only=False)
    assert float(ckpt["state_dict"]["latency_loss.multiplier"]) == saved
    seen = []

    class AtStart(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            seen.append(float(pl_module.latency_loss.multiplier))

    fresh = dnas.GDAS(tiny_fbnet(), latency_loss=BudgetLoss(table, budget=100.0, dual_lr=1.0))
    assert float(fresh.latency_loss.multiplier) == 0.0
    _fit(tmp_path / "b", fresh, epochs=2, callbacks=[AtStart()], ckpt_path=tmp_path / "a" / "last.ckpt")
    assert seen == [saved]


def test_darts_rule_spaces_keep_their_edges_and_exclude_ops():
    torch.manual_seed(0)
    net = DartsSupernet(init_channels=4, num_classes=3, layers=3, in_channels=1)
    table = measure_table(net, torch.zeros(1, 1, 8, 8), metric="params", progress=False)
    genotype = net.genotype()
    loss = BudgetLoss(table, budget=1.0, exclude_ops=["none"])
    projected = loss.project(genotype, net)
    for c in genotype.cells:
        assert [(e.src, e.dst) for e in projected.cells[c].edges] == [(e.src, e.dst) for e in genotype.cells[c].edges]
        assert all(e.op != "none" for e in projected.cells[c].edges)
        # parameter-free ops cost 0 parameters: everything lands on them
        assert all(e.op in ("skip_connect", "max_pool_3x3", "avg_pool_3x3") for e in projected.cells[c].edges)
    assert projected.meta["budget"]["cost"] <= 1.0
