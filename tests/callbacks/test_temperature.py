import math

import pytest
import pytorch_lightning as pl
import torch

from dnas.callbacks import TemperatureSchedule


class _Module(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.register_buffer("temperature", torch.tensor(5.0))
        self.seen = []

    def training_step(self, batch, batch_idx):
        self.seen.append((self.current_epoch, float(self.temperature)))
        return self.layer(batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 2)), batch_size=2)


def test_fbnet_schedule_values():
    sched = TemperatureSchedule()  # FBNet: 5.0 · exp(-0.045 e)
    assert sched.value(0) == 5.0
    assert math.isclose(sched.value(90), 5.0 * 0.9559974818**90, rel_tol=1e-7)  # ×exp(-0.045) per epoch
    assert math.isclose(sched.value(90), 0.0871, rel_tol=1e-3)
    assert math.isclose(TemperatureSchedule(initial=1.0, decay="linear", rate=0.25, minimum=0.1).value(10), 0.1)


def test_schedule_drives_the_buffer_each_epoch_and_resumes(tmp_path):
    module = _Module()
    cb = TemperatureSchedule(initial=5.0, rate=0.045)
    trainer = pl.Trainer(
        max_epochs=3,
        callbacks=[cb],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module)
    for epoch in range(3):
        assert all(math.isclose(t, 5.0 * math.exp(-0.045 * epoch), rel_tol=1e-6) for e, t in module.seen if e == epoch)
    assert math.isclose(float(module.temperature), 5.0 * math.exp(-0.09), rel_tol=1e-6)
    assert "temperature" in module.state_dict()
    fresh = TemperatureSchedule()
    fresh.load_state_dict(cb.state_dict())
    assert fresh.last == cb.last


def test_missing_attribute_is_a_clear_error():
    with pytest.raises(AttributeError, match="no attribute 'tau'"):
        TemperatureSchedule(attribute="tau").apply(_Module(), 0)
    with pytest.raises(ValueError):
        TemperatureSchedule(initial=0)
