"""The tutorials' Python blocks run as written (a tutorial that does not run is a bug)."""

import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def python_blocks(name):
    text = (ROOT / "docs" / name).read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.parametrize("name,skip", [("tutorial_mnist1d.md", 1), ("tutorial_tabular.md", 1)])
def test_tutorial_code_runs(name, skip):
    blocks = python_blocks(name)[skip:]  # the first block loads a file produced by a real run
    assert len(blocks) >= 2
    torch.manual_seed(0)
    namespace = {}
    exec(compile("\n".join(blocks), name, "exec"), namespace)
