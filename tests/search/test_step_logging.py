"""Logging under DDP: no per-step collective (``sync_dist`` only on epoch aggregates); epoch means are unchanged."""

import pytest
import pytorch_lightning as pl
import torch

import dnas
from dnas.cells.darts import DartsSupernet
from dnas.cells.edges import EdgeOptions
from dnas.data import DigitsDataModule
from dnas.latency import LatencyLoss, measure_table


def _search_module(kind: str) -> pl.LightningModule:
    torch.manual_seed(0)
    net = DartsSupernet(
        init_channels=2, num_classes=10, layers=2, in_channels=1, edge_options=EdgeOptions(mixed_op_impl="naive")
    )
    if kind == "darts":
        table = measure_table(net, torch.zeros(1, 1, 8, 8), metric="params", progress=False)
        return dnas.DARTS(net, latency_loss=LatencyLoss(table))  # extra per-step terms (arch/params, arch/ce)
    if kind == "sddarts":
        return dnas.SDDARTS(net)
    return dnas.Retrain("DARTS_V2", options={"init_channels": 2, "layers": 2}, in_channels=1, auxiliary=False)


@pytest.mark.parametrize("kind", ["darts", "sddarts", "retrain"])
def test_no_per_step_value_is_synced_across_ranks(tmp_path, monkeypatch, quiet_trainer, kind):
    calls = []
    original = pl.LightningModule.log

    def spy(self, name, value, *args, **kwargs):
        calls.append((name, kwargs))
        return original(self, name, value, *args, **kwargs)

    monkeypatch.setattr(pl.LightningModule, "log", spy)
    model = _search_module(kind)
    trainer = quiet_trainer(tmp_path, 1, enable_checkpointing=False, num_sanity_val_steps=2)  # sanity logs spied too
    trainer.fit(model, DigitsDataModule(batch_size=8, search=kind != "retrain"))
    stepped = [name for name, kw in calls if kw.get("on_step") and kw.get("sync_dist")]
    assert not stepped, f"logged per step with sync_dist=True (a collective every step under DDP): {stepped}"
    synced_epoch = {name for name, kw in calls if kw.get("sync_dist") and not kw.get("on_step")}
    assert "train/loss_epoch" in synced_epoch
    # the per-step value and the epoch mean are both there, under Lightning's usual names
    metrics = trainer.callback_metrics
    assert "train/loss_step" in metrics and "train/loss_epoch" in metrics
