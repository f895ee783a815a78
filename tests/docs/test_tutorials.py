"""The tutorials run as written (a tutorial that does not run is a bug).

``docs/tutorial_mnist1d.md`` is a walk-through: its shell and Python blocks are executed verbatim, in order, in a
fresh directory holding a copy of the repository's ``configs/``, through a ``dnas`` script made the way pip makes
console scripts (so the current directory is importable only if dnas makes it so). Blocks marked
``<!-- not run by the tests ... -->`` (package installs) are skipped; a block whose info string names
``file=PATH`` is written to that path. The environment only adds ``limit_*_batches`` (``DNAS_FIT__TRAINER__...``),
which the tutorial's configs do not set, so each run keeps its epochs, callbacks and outputs but takes seconds.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"(<!-- not run by the tests[^>]*-->\n)?```(\w+)([^\n]*)\n(.*?)```", flags=re.S)


def blocks(name):
    """``(language, file or None, code, skipped)`` of every fenced block of ``docs/<name>``, in order."""
    text = (ROOT / "docs" / name).read_text()
    out = []
    for skip, lang, info, code in BLOCK.findall(text):
        target = re.search(r"file=(\S+)", info)
        out.append((lang, target.group(1) if target else None, code, bool(skip)))
    return out


def python_blocks(name):
    return [code for lang, target, code, _ in blocks(name) if lang == "python" and target is None]


@pytest.mark.parametrize("name,skip", [("tutorial_tabular.md", 1)])
def test_tutorial_code_runs(name, skip):
    code = python_blocks(name)[skip:]  # the first block loads a file produced by a real run
    assert len(code) >= 2
    torch.manual_seed(0)
    namespace = {}
    exec(compile("\n".join(code), name, "exec"), namespace)


def console_script(bin_dir: Path) -> None:
    """``bin_dir/dnas`` as pip writes it: ``sys.path[0]`` is the script's folder, not the current directory."""
    bin_dir.mkdir()
    script = bin_dir / "dnas"
    script.write_text(f"#!{sys.executable}\nimport sys\nfrom dnas.cli import main\nsys.exit(main())\n")
    script.chmod(0o755)


@pytest.mark.slow  # two searches (3 + 4 epochs of 2 batches), an export and 4 Python sessions
def test_mnist1d_tutorial_walkthrough(tmp_path):
    pytest.importorskip("mnist1d")
    work = tmp_path / "work"
    shutil.copytree(ROOT / "configs", work / "configs")
    console_script(tmp_path / "bin")
    env = {
        **os.environ,
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "DNAS_FIT__TRAINER__LIMIT_TRAIN_BATCHES": "2",
        "DNAS_FIT__TRAINER__LIMIT_VAL_BATCHES": "1",
    }
    env.pop("PYTHONSTARTUP", None)
    steps = blocks("tutorial_mnist1d.md")
    assert [lang for lang, _, _, skipped in steps if skipped] == ["bash"]  # only the install is skipped
    transcript = []
    for lang, target, code, skipped in steps:
        if skipped:
            continue
        if target is not None:
            path = work / target
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(code)
            continue
        if lang == "bash":
            cmd = ["bash", "-euo", "pipefail", "-c", code]
        elif lang == "python":  # as typed into `python` started in that directory
            cmd = [sys.executable, "-c", code]
        else:
            continue
        run = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, f"{lang} block failed:\n{code}\nstdout:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
        transcript.append(run.stdout)
    out = "\n".join(transcript)
    assert out.count("torch.Size([8, 10])") == 3  # §1 build_model, §4 build_model and model.py
    assert "--supernet.channels CHANNELS" in out and "--supernet.num_classes" in out  # the help lists its arguments
    run_dir = work / "logs" / "signal" / "version_0"
    for name in ("genotype.json", "report.html", "export/model.py", "checkpoints/last.ckpt"):
        assert (run_dir / name).is_file(), name
    assert (work / "exported" / "mnist1d" / "model.py").is_file()
    assert "SEGate" in (run_dir / "export" / "model.py").read_text()
