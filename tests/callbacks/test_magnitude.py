"""MagnitudeSelection: the space's own rule, written atomically when training ends (or after ``at_epoch``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from dnas.callbacks import MagnitudeSelection
from dnas.cells.darts import DartsSupernet
from dnas.genotypes import Genotype


def _trainer(tmp_path, epoch: int):
    # no logger: the run directory is default_root_dir (dnas.io.log_dir, as Trainer.log_dir resolves it)
    return SimpleNamespace(loggers=[], default_root_dir=str(tmp_path), current_epoch=epoch, is_global_zero=True)


def test_writes_the_darts_rule_genotype_at_train_end(tmp_path):
    torch.manual_seed(0)
    net = DartsSupernet(init_channels=2, layers=1, in_channels=1)
    with torch.no_grad():  # make the rule's answer known: node 2 <- sep_conv_3x3 from both inputs, others skip
        for g in ("normal", "reduce"):
            a = net.alpha(g)
            a.zero_()
            a[:, net.candidate_names.index("none")] = 9.0  # `none` is never chosen by the DARTS rule, however large
            a[:2, net.candidate_names.index("sep_conv_3x3")] = 5.0
            a[2:, net.candidate_names.index("skip_connect")] = 1.0
    cb = MagnitudeSelection()
    module = SimpleNamespace(supernet=net)
    cb.on_train_epoch_end(_trainer(tmp_path, 0), module)
    assert not (tmp_path / "genotype_magnitude.json").exists()  # at_epoch=None: only at the end
    cb.on_train_end(_trainer(tmp_path, 7), module)
    genotype = Genotype.from_json((tmp_path / "genotype_magnitude.json").read_text())
    assert genotype.meta["selection"] == "magnitude" and genotype.meta["epoch"] == 7
    normal = genotype.cells["normal"]
    assert [(e.op, e.src) for e in normal.inputs_of(2)] == [("sep_conv_3x3", 0), ("sep_conv_3x3", 1)]
    assert all(e.op == "skip_connect" for e in normal.edges if e.dst > 2)
    assert all(len(normal.inputs_of(n)) == 2 for n in (2, 3, 4, 5))


def test_at_epoch_and_clear_errors(tmp_path):
    cb = MagnitudeSelection(filename="mag.json", at_epoch=2)
    module = SimpleNamespace(supernet=DartsSupernet(init_channels=2, layers=1, in_channels=1))
    cb.on_train_epoch_end(_trainer(tmp_path, 1), module)
    assert not (tmp_path / "mag.json").exists()
    cb.on_train_epoch_end(_trainer(tmp_path, 2), module)
    assert Genotype.from_json((tmp_path / "mag.json").read_text()).meta["epoch"] == 2
    cb.on_train_end(_trainer(tmp_path, 9), module)  # already written at epoch 2: not overwritten at the end
    assert Genotype.from_json((tmp_path / "mag.json").read_text()).meta["epoch"] == 2
    with pytest.raises(TypeError, match="needs a search module with a .supernet"):
        MagnitudeSelection().on_train_end(_trainer(tmp_path, 0), SimpleNamespace(supernet=None))
    with pytest.raises(ValueError, match="at_epoch"):
        MagnitudeSelection(at_epoch=-1)
