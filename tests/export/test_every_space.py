"""Every shipped space, and a user's space with an op of its own, takes the same path.

search (one short epoch, each space with another search module) -> ``genotype.json`` and the report's model section
-> the end-of-search export at the supernet's sizes -> ``dnas export --format python`` -> ``model.py`` loaded in a
process where only torch is installed gives the logits of ``build_model(genotype)`` with the exported weights ->
``dnas.Retrain`` trains it for a few batches on the space's data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

import dnas
from dnas.callbacks import GenotypeWriter, SearchExport
from dnas.cells import CellSupernet
from dnas.cells.conv1d import Conv1dSupernet
from dnas.cells.darts import DartsSupernet
from dnas.cells.edges import EdgeOptions
from dnas.cells.fbnet import FBNetSupernet
from dnas.cells.nb201 import NB201Supernet
from dnas.cells.tabular import TabularSupernet
from dnas.cli import main
from dnas.data import DigitsDataModule
from dnas.data.mnist1d import MNIST1DDataModule
from dnas.data.tabular import TabularDataModule
from dnas.export import build_model
from dnas.genotypes import Genotype
from dnas.ops import register_op
from dnas.viz.search_report import model_section


class Gate(nn.Module):
    """A user's op: a learned per-channel gate on a depthwise 1-D conv (nothing of dnas in its forward)."""

    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 3, stride, 1, groups=channels, bias=False)
        self.gate = nn.Parameter(torch.zeros(channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * torch.sigmoid(self.gate)


register_op("test_user_gate", lambda C_in, C_out, stride, affine: Gate(C_in, stride), overwrite=True)


class UserSignalSpace(CellSupernet):
    """A user's space, declared in this test file: 1-D cells over a built-in op and the user's op."""

    space_name = "test_user_signal"
    candidates = ("skip_connect", "conv1d_k3", "test_user_gate")
    num_nodes = 2

    def __init__(self, channels: int = 4, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Conv1d(1, channels, 3, padding=1)
        self.cells = nn.ModuleList(self.make_cell(channels) for _ in range(2))
        self.head = nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(channels, num_classes))

    def forward(self, x: torch.Tensor, weights=None) -> torch.Tensor:
        w = self.cell_weights(weights)
        h = self.stem(x)
        for cell in self.cells:
            h = cell(h, w)
        return self.head(h)


def _digits():
    return DigitsDataModule(batch_size=16)


SPACES = {
    "darts": (lambda: DartsSupernet(init_channels=4, layers=3, in_channels=1, edge_options=EdgeOptions()), _digits),
    "nb201": (lambda: NB201Supernet(init_channels=4, cells_per_stage=1, in_channels=1), _digits),
    "fbnet": (
        lambda: FBNetSupernet(num_classes=10, in_channels=1, input_size=8, width_mult=0.25, head_channels=16),
        _digits,
    ),
    "conv1d": (lambda: Conv1dSupernet(channels=4, stages=1), lambda: MNIST1DDataModule(num_samples=100, batch_size=16)),
    "tabular": (
        lambda: TabularSupernet(in_features=13, num_classes=3, hidden=8, num_cells=1),
        lambda: TabularDataModule(dataset="wine", batch_size=16),
    ),
    "user": (lambda: UserSignalSpace(), lambda: MNIST1DDataModule(num_samples=100, batch_size=16)),
}

SEARCH = {  # each space searched by a different module: any module's genotype takes the same path
    "darts": dnas.DARTS,
    "nb201": dnas.GDAS,
    "fbnet": dnas.FBNet,
    "conv1d": dnas.ProxylessNAS,
    "tabular": dnas.SDDARTS,
    "user": dnas.GDAS,
}

LOADER = textwrap.dedent(
    """
    import importlib.util, sys
    sys.path.append(sys.argv[4])  # python -S: no site-packages; this folder holds torch and what torch requires
    import torch
    for name in ("dnas", "pytorch_lightning", "numpy"):
        try:
            __import__(name)
        except ImportError:
            pass
        else:
            raise SystemExit(f"{name} must not be importable here")
    spec = importlib.util.spec_from_file_location("model", sys.argv[1] + "/model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with torch.no_grad():
        torch.save(mod.load_model()(torch.load(sys.argv[2])), sys.argv[3])
    """
)


@pytest.fixture(scope="module")
def torch_only(tmp_path_factory) -> Path:
    """A folder that holds only torch and the distributions torch requires (links into this environment): with
    ``python -S`` (no site-packages) it is an environment where only torch is installed."""
    import importlib.metadata as md
    import re

    from packaging.markers import Marker

    dists: dict[str, md.Distribution] = {}

    def add(name: str) -> None:
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in dists:
            return
        try:
            dists[key] = md.distribution(name)
        except md.PackageNotFoundError:
            return  # an optional requirement absent here
        for req in dists[key].requires or []:
            if ";" not in req or Marker(req.split(";", 1)[1]).evaluate():
                add(re.split(r"[ <>=!~;\[(]", req, maxsplit=1)[0])

    add("torch")
    site = tmp_path_factory.mktemp("torch_only")
    for dist in dists.values():
        for top in {f.parts[0] for f in dist.files or [] if f.parts[0] != ".."}:
            if not (site / top).exists() and Path(dist.locate_file(top)).exists():
                (site / top).symlink_to(dist.locate_file(top))
    return site


def _trainer(tmp_path: Path, name: str, **kw) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        logger=pl.loggers.CSVLogger(tmp_path, name=name),
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        **kw,
    )


@pytest.mark.parametrize("space", sorted(SPACES))
def test_search_export_load_without_dnas_and_retrain(space, tmp_path, capsys, torch_only):
    make, make_dm = SPACES[space]
    pl.seed_everything(0)
    supernet = make()
    module = SEARCH[space](supernet)
    _trainer(tmp_path, "search", callbacks=[GenotypeWriter(), SearchExport()]).fit(module, make_dm())
    run = tmp_path / "search" / "version_0"
    genotype = Genotype.from_file(run / "genotype.json")
    shape = tuple(genotype.meta["build"]["input_shape"])
    assert genotype.meta["build"]["options"] == supernet.build_options()

    # the search report's model section: the found network's parameters and FLOPs, for every space
    section = model_section(module, supernet, genotype, list(shape), measure_latency=False)
    rows = {row[0]: row[1] for part in section.parts if part[0] == "table" for row in part[2]}
    assert int(rows["parameters"].replace(",", "")) == sum(p.numel() for p in build_model(genotype).parameters())
    assert int(rows[f"FLOPs at input {(1, *shape)}"].replace(",", "")) > 0

    # the end-of-search export: the found network at the supernet's sizes
    assert (run / "export" / "model.py").is_file()
    summary = json.loads((run / "export" / "summary.json").read_text())
    assert summary["input_shape"] == [1, *shape] and summary["parameters"] > 0

    # dnas export: every option from the genotype, nothing else needed
    out = tmp_path / "exported"
    main(["export", "--genotype", str(run / "genotype.json"), "--out", str(out)])
    assert "wrote" in capsys.readouterr().out
    reference = build_model(genotype).eval()
    state = torch.load(out / "weights.pt", weights_only=True)
    reference.load_state_dict(state)
    x = torch.randn(3, *shape)
    torch.save(x, tmp_path / "x.pt")
    # same thread count as this process: a different one may change reduction order (last-bit differences)
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    env.pop("PYTHONPATH", None)
    args = [sys.executable, "-S", "-c", LOADER, str(out), str(tmp_path / "x.pt"), str(tmp_path / "y.pt")]
    args.append(str(torch_only))
    proc = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with torch.no_grad():
        # bitwise equality is checked in-process when model.py is written; across processes allow float rounding
        torch.testing.assert_close(torch.load(tmp_path / "y.pt"), reference(x), rtol=1e-6, atol=1e-7)
    if space == "user":
        assert "class Gate(nn.Module):" in (out / "model.py").read_text()  # the user's op, copied from this file

    # dnas.Retrain on the same genotype file, with the space's own data and recorded options
    retrain = dnas.Retrain(str(run / "genotype.json"), auxiliary=False)  # 8×8 inputs: too small for the DARTS aux head
    before = {k: v.clone() for k, v in retrain.model.state_dict().items()}
    trainer = _trainer(tmp_path, "retrain")
    trainer.fit(retrain, _as_plain(make_dm()))
    after = retrain.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())
    assert json.loads((tmp_path / "retrain" / "version_0" / "summary.json").read_text())["input_shape"] == [1, *shape]


def _as_plain(dm):
    """The datamodule in retrain mode (whole training split, (x, y) batches)."""
    dm.search = False
    return dm
