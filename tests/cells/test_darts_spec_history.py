"""Whether a ``darts`` genotype file validates never depends on what ran before in the process.

The registered ``darts`` spec takes the DARTS/NASNet ops and any op registered with ``dnas.ops.register_op`` (the
evaluation network builds every registered op); building a ``DartsSupernet`` over a user's op changes no registry.
The same files are read in a fresh interpreter (which only imports the module that registers the user's op) and here
after building such a supernet, and must give the same verdicts.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from dnas.cells.darts import DartsSupernet
from dnas.genotypes import Genotype, GenotypeError, get_space_spec

USER_OPS = textwrap.dedent(
    """
    from torch import nn

    from dnas.ops import register_op


    def _conv(C_in, C_out, stride, affine):
        return nn.Sequential(nn.Conv2d(C_in, C_out, 3, stride, 1, bias=False), nn.BatchNorm2d(C_out, affine=affine))


    register_op("test_history_conv", _conv, overwrite=True)
    """
)

VERDICTS = textwrap.dedent(
    """
    import json, sys

    import dnas  # noqa: F401
    from dnas.genotypes import Genotype, GenotypeError, get_space_spec

    if sys.argv[1] == "user":
        import test_history_user_ops  # noqa: F401  (registers test_history_conv)
    out = {"spec_ops": list(get_space_spec("darts").cells["normal"].ops)}
    for path in sys.argv[2:]:
        try:
            Genotype.from_file(path)
            out[path] = "ok"
        except GenotypeError as err:
            out[path] = str(err)
    print(json.dumps(out))
    """
)


def _verdicts(paths: list[Path]) -> dict[str, str]:
    out = {"spec_ops": list(get_space_spec("darts").cells["normal"].ops)}
    for path in paths:
        try:
            Genotype.from_file(path)
            out[str(path)] = "ok"
        except GenotypeError as err:
            out[str(path)] = str(err)
    return out


def _fresh(tmp_path: Path, mode: str, paths: list[Path]) -> dict[str, str]:
    env_path = [str(tmp_path), *sys.path]
    proc = subprocess.run(
        [sys.executable, "-c", VERDICTS, mode, *map(str, paths)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": ":".join(p for p in env_path if p), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_darts_genotype_validation_is_the_same_fresh_and_after_a_custom_primitive_supernet(tmp_path, monkeypatch):
    (tmp_path / "test_history_user_ops.py").write_text(USER_OPS)
    monkeypatch.syspath_prepend(str(tmp_path))
    user = Genotype.darts([("test_history_conv", 0), ("skip_connect", 1)] * 4, [("max_pool_3x3", 0)] * 8)
    unknown = Genotype.darts([("test_history_unregistered", 0), ("skip_connect", 1)] * 4, [("max_pool_3x3", 0)] * 8)
    files = []
    for name, g in (("user", user), ("unknown", unknown)):
        files.append(tmp_path / f"{name}.json")
        files[-1].write_text(g.to_json())

    fresh_plain = _fresh(tmp_path, "plain", files)  # the user's op is not registered there
    fresh_user = _fresh(tmp_path, "user", files)
    assert fresh_user[str(files[0])] == "ok"
    assert "test_history_unregistered" in fresh_user[str(files[1])] and "allowed ops" in fresh_user[str(files[1])]
    assert "test_history_conv" in fresh_plain[str(files[0])]  # unregistered op: rejected, naming it

    import test_history_user_ops  # noqa: F401  (as the fresh interpreter: registers the op)

    spec_before = get_space_spec("darts")
    ops = ("none", "skip_connect", "test_history_conv")
    net = DartsSupernet(init_channels=4, num_classes=3, layers=3, primitives=ops)
    with torch.no_grad():
        net.alpha("normal")[:, 2] = 5.0
    assert net.genotype().space == "darts" and set(net.genotype().cells["normal"].ops()) == {"test_history_conv"}
    assert get_space_spec("darts") is spec_before  # building the supernet registered nothing
    assert net.space_spec.cells["normal"].ops == ops  # its own rules
    assert _verdicts(files) == fresh_user
