"""configs/quickstart_pt.yaml through the ``dnas`` CLI: it parses, runs (shrunk), and resumes from its checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs" / "quickstart_pt.yaml")
# shrink the supernet for CI: 2 nodes (5 edges, 1 topology step), 3 ops -> 6 decisions; search epochs stay 4
SHRINK = [
    "--model.init_args.supernet.init_args.steps=2",
    "--model.init_args.supernet.init_args.init_channels=4",
    "--model.init_args.supernet.init_args.primitives=[max_pool_3x3, skip_connect, sep_conv_3x3]",
    "--trainer.limit_train_batches=1",
    "--trainer.limit_val_batches=1",
    "--trainer.enable_progress_bar=false",
]


def test_quickstart_pt_config_parses_with_both_selection_callbacks(run_cli):
    code, text, err = run_cli(["fit", "--config", CONFIG, "--print_config"])
    assert code == 0, err
    callbacks = {c["class_path"]: c["init_args"] for c in yaml.safe_load(text)["trainer"]["callbacks"]}
    assert callbacks["dnas.callbacks.PerturbationSelection"]["val_subset"] == 128
    assert callbacks["dnas.callbacks.MagnitudeSelection"]["at_epoch"] == 3


def without_pictures(config: str) -> str:
    """``--trainer.callbacks`` of ``config`` without AlphaPlots and SearchExport (drawing took most of the time)."""
    callbacks = yaml.safe_load(Path(config).read_text())["trainer"]["callbacks"]
    kept = [c for c in callbacks if c["class_path"] not in ("dnas.callbacks.AlphaPlots", "dnas.callbacks.SearchExport")]
    assert len(kept) == len(callbacks) - 2
    return "--trainer.callbacks=" + json.dumps(kept)


@pytest.mark.slow  # two CLI fits: ~20 s of CPU including imports
def test_selection_as_a_separate_stage_on_a_checkpoint_of_the_plain_quickstart(tmp_path, run_cli):
    where = [f"--trainer.default_root_dir={tmp_path}", f"--trainer.logger.init_args.save_dir={tmp_path}"]
    # stage 1: the plain DARTS quickstart (no selection callback), 2 epochs, same (shrunk) supernet
    plain = str(ROOT / "configs" / "quickstart.yaml")
    code, _, err = run_cli(
        ["fit", "--config", plain, *SHRINK, *where, "--trainer.max_epochs=2", without_pictures(plain)]
    )
    assert code == 0, err
    ckpt = tmp_path / "quickstart" / "version_0" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    # stage 2: dnas fit --config quickstart_pt.yaml --ckpt_path <stage 1> with max_epochs = 2 + 6
    code, _, err = run_cli(
        [
            "fit",
            "--config",
            CONFIG,
            *SHRINK,
            *where,
            "--trainer.max_epochs=8",
            f"--ckpt_path={ckpt}",
            without_pictures(CONFIG),
        ]
    )
    assert code == 0, err
    run = tmp_path / "quickstart_pt" / "version_0"
    decisions = [json.loads(s) for s in (run / "selection_decisions.jsonl").read_text().splitlines()]
    assert [d["epoch"] for d in decisions] == [2, 3, 4, 5, 6, 7]
    final = json.loads((run / "genotype_perturbation.json").read_text())
    assert final["meta"]["selection"] == "perturbation"
    assert all(len(c["edges"]) == 4 for c in final["cells"].values())  # 2 inputs for each of the 2 nodes
    # the callbacks' state is not in the stage-1 checkpoint (they were not there): the selection started fresh
    assert decisions[0]["step"] == 0
