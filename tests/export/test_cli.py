"""``dnas export`` from the command line: names and paths, checkpoints, and one clear error per bad input."""

import json
import re

import pytest
import torch

from dnas.cli import main
from dnas.export import build_model
from dnas.genotypes import load

SMALL = ["--init-channels", "4", "--layers", "3", "--in-channels", "1", "--input-size", "8", "8"]


def export(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["export", *argv])
    return exc.value.code, capsys.readouterr().err


def test_export_by_name_and_by_path(tmp_path, capsys):
    main(["export", "--genotype", "DARTS_V2", "--out", str(tmp_path / "a"), "--no-flops", *SMALL])
    assert "wrote" in capsys.readouterr().out
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["options"]["init_channels"] == 4 and summary["genotype"] == "DARTS_V2"
    main(["export", "--genotype", str(tmp_path / "a" / "genotype.json"), "--out", str(tmp_path / "b"), *SMALL])
    assert (tmp_path / "b" / "model.py").is_file()
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["flops"] > 0


def test_export_with_checkpoint_weights(tmp_path, capsys):
    g = load("PDARTS")
    model = build_model(g, init_channels=4, layers=3, in_channels=1)
    ckpt = {
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "hyper_parameters": {"genotype": "PDARTS", "init_channels": 4, "layers": 3, "in_channels": 1},
        "dnas_genotype": g.to_dict(),
    }
    torch.save(ckpt, tmp_path / "r.ckpt")
    # genotype and options come from the checkpoint
    main(["export", "--ckpt", str(tmp_path / "r.ckpt"), "--out", str(tmp_path / "o"), "--input-size", "8", "8"])
    weights = torch.load(tmp_path / "o" / "weights.pt", weights_only=True)
    for k, v in model.state_dict().items():
        assert torch.equal(weights[k], v)
    code, err = export(
        ["--ckpt", str(tmp_path / "r.ckpt"), "--out", str(tmp_path / "p"), "--init-channels", "6"], capsys
    )
    assert code == 2 and "does not fit the network" in err and "shape mismatch" in err
    assert not (tmp_path / "p").exists()


def test_each_bad_input_gives_one_clear_error_and_no_files(tmp_path, capsys):
    good = load("DARTS_V2").to_dict()
    bad_op = json.loads(json.dumps(good))
    bad_op["cells"]["reduce"]["edges"][1][0] = "conv_13x13"
    (tmp_path / "bad_op.json").write_text(json.dumps(bad_op))
    missing = json.loads(json.dumps(good))
    missing["cells"]["normal"]["edges"] = [e for e in missing["cells"]["normal"]["edges"] if e[2] != 4]
    (tmp_path / "missing.json").write_text(json.dumps(missing))
    out = tmp_path / "out"
    cases = [
        (["--genotype", str(tmp_path / "bad_op.json")], "conv_13x13"),
        # the darts space's own rules or the builder's report it, depending on what is imported
        (["--genotype", str(tmp_path / "missing.json")], re.compile(r"node\(s\) \[4\] have no incoming|node 4 has 0")),
        (["--genotype", "NOT_A_GENOTYPE"], "no published genotype named 'NOT_A_GENOTYPE'"),
        (["--genotype", "DARTS_V2", "--ckpt", str(tmp_path / "none.ckpt")], "does not exist"),
        ([], "no genotype"),
    ]
    for argv, message in cases:
        code, err = export([*argv, "--out", str(out), *SMALL], capsys)
        found = message.search(err) if isinstance(message, re.Pattern) else message in err
        assert code == 2 and found, (argv, err)
        assert err.count("error:") == 1 and "Traceback" not in err
        assert not out.exists()
    out.mkdir()
    code, err = export(["--genotype", "DARTS_V2", "--out", str(out), *SMALL], capsys)
    assert code == 2 and "already exists" in err and "--overwrite" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad_op.json", "missing.json", "out"]
