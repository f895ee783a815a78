"""Fixtures of the search tests: small instances of every space, an op-call counter, a quiet Trainer."""

import pytest
import pytorch_lightning as pl

from dnas.cells.conv1d import Conv1dSupernet
from dnas.cells.darts import DartsSupernet
from dnas.cells.fbnet import FBNetSupernet
from dnas.cells.nb201 import NB201Supernet
from dnas.cells.tabular import TabularSupernet
from dnas.ops import MixedOp

SPACES = {
    "darts": (lambda: DartsSupernet(init_channels=4, layers=3, in_channels=1), (1, 8, 8)),
    "nb201": (lambda: NB201Supernet(init_channels=4, cells_per_stage=1, in_channels=1), (1, 8, 8)),
    "conv1d": (lambda: Conv1dSupernet(channels=4, stages=1), (1, 40)),
    "tabular": (lambda: TabularSupernet(in_features=13, num_classes=3, hidden=8, num_cells=1), (13,)),
    "fbnet": (
        lambda: FBNetSupernet(
            num_classes=10,
            in_channels=1,
            input_size=8,
            width_mult=0.25,
            head_channels=8,
            stem_stride=1,
            stage_strides=[2, 2, 1, 1, 1, 1, 1],
            primitives=("k3_e1", "k3_e1_g2", "skip"),
        ),
        (1, 8, 8),
    ),
}


def _count_calls(supernet):
    """Per mixed op, a list of the candidate indices that ran, in call order."""
    calls = {}
    for name, m in supernet.named_modules():
        if isinstance(m, MixedOp):
            calls[name] = []
            for k, op in enumerate(m._ops):
                op.register_forward_hook(lambda mod, inp, out, n=name, k=k: calls[n].append(k))
    return calls


def _trainer(tmp_path, epochs, **kw):
    quiet = dict(limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=0, accelerator="cpu", logger=False)
    return pl.Trainer(
        max_epochs=epochs,
        **(quiet | kw),
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )


@pytest.fixture
def small_spaces():
    """Space name -> (factory of a small supernet, one input sample's shape)."""
    return SPACES


@pytest.fixture(params=sorted(SPACES))
def small_space(request):
    """Each small space in turn: (factory, input shape)."""
    return SPACES[request.param]


@pytest.fixture
def count_calls():
    """``count_calls(supernet)``: hooks every candidate of every mixed op; returns {mixed op name: [indices run]}."""
    return _count_calls


@pytest.fixture
def quiet_trainer():
    """``quiet_trainer(tmp_path, epochs, **kw)``: a CPU Trainer, 2 train / 1 val batches, no logger or progress bar
    (``kw`` overrides any of these but the progress bar and summary)."""
    return _trainer
