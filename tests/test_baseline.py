"""dnas baseline end to end on a tiny tabular space: runs, restart without rerunning, report and picture."""

import json

import numpy as np
import pytest
from PIL import Image

from dnas.baseline import draw_random, summarize
from dnas.baseline.cli import main
from dnas.cells.tabular import TabularSupernet
from dnas.genotypes import Genotype

RETRAIN = """
seed_everything: 0
trainer:
  max_epochs: 1
  accelerator: cpu
  devices: 1
  limit_train_batches: 2
model:
  class_path: dnas.Retrain
  init_args:
    genotype: unused
    auxiliary: false
    optimizer:
      class_path: torch.optim.SGD
      init_args:
        lr: 0.05
        momentum: 0.9
data:
  class_path: dnas.data.tabular.TabularDataModule
  init_args:
    dataset: wine
    batch_size: 32
    search: false
"""


@pytest.fixture
def found(tmp_path):
    net = TabularSupernet(in_features=13, num_classes=3, hidden=8, num_cells=1)
    path = tmp_path / "found.json"
    path.write_text(net.genotype().to_json())
    return path


def test_baseline_end_to_end_and_restart(tmp_path, found, capsys, monkeypatch):
    config = tmp_path / "retrain.yaml"
    config.write_text(RETRAIN)
    out = tmp_path / "baseline"
    argv = ["--genotype", str(found), "--config", str(config), "--out", str(out), "--num_random", "3"]
    argv += ["--seeds", "0", "1", "--sample_seed", "5", "--", "--trainer.limit_val_batches", "2"]
    main(argv)
    printed = capsys.readouterr().out
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert runs == ["found_seed0.json", "found_seed1.json"] + [f"random{i:02d}_seed0.json" for i in range(3)]
    results = [json.loads((out / "runs" / r).read_text()) for r in runs]
    assert all(0.0 <= r["accuracy"] <= 1.0 and r["parameters"] > 0 and r["epochs"] == 1 for r in results)
    # the random genotypes are valid genotypes of the space, distinct, none equal to the found one
    gens = [Genotype.from_file(out / "genotypes" / f"random{i:02d}.json") for i in range(3)]
    found_g = Genotype.from_file(found)
    assert len(set(gens)) == 3 and found_g not in gens and all(g.space == "tabular" for g in gens)
    assert "none" not in {op for g in gens for op in g.cells["cell"].ops()}  # the space's rule excludes it
    s = json.loads((out / "summary.json").read_text())
    assert s == pytest.approx(summarize(results)) and s["found_runs"] == 2 and s["random_count"] == 3
    assert f"{s['found_mean']:.4f}" in printed and "random cells below the found mean" in printed
    md = (out / "report.md").read_text()
    assert "## Found vs random" in md and md.count("| random0") == 3 and "plots/baseline.png" in md
    img = np.asarray(Image.open(out / "plots" / "baseline.png").convert("L"), dtype=float)
    assert img.shape[0] > 200 and img.var() > 50
    assert "data:image/png;base64," in (out / "report.html").read_text()
    assert not (out / "work").exists()
    # restart: one result lost (as if killed during that run); only that run is redone
    (out / "runs" / "random01_seed0.json").unlink()
    before = {r: (out / "runs" / r).stat().st_mtime_ns for r in runs if r != "random01_seed0.json"}
    calls = []
    import dnas.baseline.runs as runs_module

    real = runs_module.retrain
    monkeypatch.setattr(runs_module, "retrain", lambda *a, **k: calls.append(a[0].name) or real(*a, **k))
    main(argv)
    assert calls == ["random01.json"]
    assert all((out / "runs" / r).stat().st_mtime_ns == t for r, t in before.items())
    # another draw into the same directory is refused, not mixed in
    with pytest.raises(SystemExit):
        main([*argv[: argv.index("--sample_seed")], "--sample_seed", "6"])
    assert "holds a run of another genotype" in capsys.readouterr().err
    assert Genotype.from_file(out / "genotypes" / "random00.json") == gens[0]  # nothing overwritten


def test_draw_random_is_seeded_and_errors_name_the_problem(found, capsys):
    g = Genotype.from_file(found)
    assert draw_random(g, 4, 0, ("none",)) == draw_random(g, 4, 0, ("none",)) != draw_random(g, 4, 1, ("none",))
    with pytest.raises(SystemExit):
        main(["--genotype", "NO_SUCH", "--config", "x.yaml", "--out", "o"])
    assert "dnas baseline: error:" in capsys.readouterr().err
    from dnas.baseline.cli import build_parser

    assert "Arguments after -- go to every retrain run" in " ".join(build_parser().format_help().split())


def test_random_cells_use_only_the_ops_the_search_had():
    # the darts space also accepts NASNet's sep_conv_7x7/conv_7x1_1x7, which a DARTS search never has as candidates
    import dnas
    from dnas.cells.darts import DARTS_PRIMITIVES, DartsSupernet

    net = DartsSupernet(init_channels=4, num_classes=10, layers=2, in_channels=1, primitives=DARTS_PRIMITIVES[1:])
    searched = dnas.DARTS(net).current_genotype()  # the search records its candidates (here without `none`)
    assert net.genotype().meta["candidates"] == searched.meta["candidates"]  # so does every selection (PT, magnitude)
    assert searched.meta["candidates"] == {"normal": list(DARTS_PRIMITIVES[1:]), "reduce": list(DARTS_PRIMITIVES[1:])}
    drawn = {op for g in draw_random(searched, 20, 0, None) for c in g.cells.values() for op in c.ops()}
    assert drawn == set(DARTS_PRIMITIVES) - {"none"}
    # a genotype without the record (an older file) draws from the whole space, as before
    bare = Genotype(searched.space, searched.cells, {})
    drawn_bare = {op for g in draw_random(bare, 20, 0, None) for c in g.cells.values() for op in c.ops()}
    assert {"sep_conv_7x7", "conv_7x1_1x7"} <= drawn_bare and "none" not in drawn_bare
    # an explicit exclude is kept, and the unsearched ops are still left out
    drawn_ex = {op for g in draw_random(searched, 20, 0, ("skip_connect",)) for c in g.cells.values() for op in c.ops()}
    assert drawn_ex == set(DARTS_PRIMITIVES) - {"none", "skip_connect"}
