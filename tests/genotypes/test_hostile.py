"""Hostile genotype files: the rules never depend on import order, files are checked before they are read, and what a
genotype may hold is bounded. Every rejection is one GenotypeError line (``dnas plot``/``dnas export``: exit 2)."""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dnas.cells.darts import DartsSupernet, darts_space_spec
from dnas.genotypes import (
    Genotype,
    GenotypeError,
    get_space_spec,
    load,
    published,
    register_space,
    registered_spaces,
    require_space_spec,
)
from dnas.genotypes.core import MAX_CELLS, MAX_EDGES, MAX_META_DEPTH, MAX_META_ITEMS, MAX_NODE, NAME_PATTERN
from dnas.ops import registry
from dnas.spaces import BUILTIN_SPACES

ROOT = Path(__file__).resolve().parents[2]
V2 = load("DARTS_V2").to_dict()

BAD = {  # name -> (mutation of DARTS_V2, what every reader must say)
    "node99": (lambda d: d["cells"]["normal"]["edges"][0].__setitem__(2, 99), r"goes to node 99, which does not exist"),
    "missing_cell": (lambda d: d["cells"].pop("reduce"), r"missing \['reduce'\]"),
    "unknown_space": (
        lambda d: d.__setitem__("space", "dartz"),
        r"unknown space 'dartz'; known: \[.*'darts'.*\]; import the module that defines it",
    ),
    "one_input": (lambda d: d["cells"]["normal"]["edges"].pop(), r"node 5 has 1 input edges, expected 2"),
}

# Runs in a fresh interpreter: only what `from dnas.genotypes import load` and the `dnas` CLI import themselves.
HARNESS = r"""
import contextlib, io, json, sys
from dnas.genotypes import GenotypeError, load, registered_spaces
report = {"spaces": registered_spaces(), "lightning": "pytorch_lightning" in sys.modules, "cases": {}}
from dnas.cli import main
cases = json.loads(sys.argv[1])
for name, path, out in cases:
    row = {}
    try:
        load(path)
        row["load"] = "accepted"
    except GenotypeError as err:
        row["load"] = str(err)
    export = ["export", "--genotype", path, "--out", out + "_export", "--no-flops", "--layers", "2"]
    for tool, argv in (("plot", ["plot", path, "--out", out, "--formats", "svg"]), ("export", export)):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                main(argv)
                code = 0
            except SystemExit as exc:
                code = exc.code
        row[tool] = [code, err.getvalue()]
    report["cases"][name] = row
print(json.dumps(report), flush=True)
main(["plot", cases[0][1], "--out", cases[0][2]])  # uncaught: the process's own exit status and stderr
"""


def _write(tmp_path: Path, name: str, data) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


def _mutated(mutation) -> dict:
    data = json.loads(json.dumps(V2))
    mutation(data)
    return data


def test_fresh_process_knows_every_builtin_space_and_rejects_bad_genotypes(tmp_path):
    cases = [(n, str(_write(tmp_path, n, _mutated(m))), str(tmp_path / f"out_{n}")) for n, (m, _) in BAD.items()]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-c", HARNESS, json.dumps(cases)], capture_output=True, text=True, timeout=600, env=env
    )
    report = json.loads(proc.stdout.splitlines()[0])
    assert set(BUILTIN_SPACES) <= set(report["spaces"]) and len(BUILTIN_SPACES) == 6
    assert not report["lightning"]  # `from dnas.genotypes import load` stays free of PyTorch Lightning
    for name, (_, message) in BAD.items():
        row = report["cases"][name]
        for tool in ("plot", "export"):
            code, err = row[tool]
            assert code == 2, (name, tool, code, err)
            assert len(err.splitlines()) == 1 and err.startswith(f"dnas {tool}: error: "), (name, tool, err)
            assert re.search(message, err), (name, tool, err)
        if name == "unknown_space":  # the library reads a user's space whose module is not imported (ops checked)
            assert row["load"] == "accepted"
        else:
            assert re.search(message, row["load"]), (name, row["load"])
    # the uncaught `dnas plot` of the first case: exit status 2, one line on stderr
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "goes to node 99" in proc.stderr


def test_builtin_space_specs_cannot_be_replaced_by_other_rules():
    darts = get_space_spec("darts")
    try:
        with pytest.raises(ValueError, match="'darts' is built in.*own name"):
            register_space(darts_space_spec(steps=3))
        with pytest.raises(ValueError, match="'nb201' is built in"):
            register_space(darts_space_spec(name="nb201"))
    finally:
        register_space(darts)
    assert get_space_spec("darts").cells["normal"].num_nodes == 4
    net = DartsSupernet(init_channels=4, num_classes=3, layers=1, steps=2)
    assert net.space_spec.cells["normal"].num_nodes == 2  # its own spec, kept out of the registry
    assert get_space_spec("darts").cells["normal"].num_nodes == 4


def test_require_space_spec_names_the_known_spaces():
    assert require_space_spec("nb201").name == "nb201"
    with pytest.raises(GenotypeError, match=r"x.json: unknown space 'nope'; known: \[.*'tabular'.*\]; import the"):
        require_space_spec("nope", source="x.json")


# ---------------------------------------------------------------------------------------------- files and their types
@pytest.fixture
def no_hang():
    """Turn a read that blocks (a FIFO with no writer) into a test failure instead of a hung suite."""

    def _raise(signum, frame):
        raise TimeoutError("blocked reading the file")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_fifo_is_refused_without_blocking(tmp_path, no_hang):
    fifo = tmp_path / "g.json"
    os.mkfifo(fifo)
    with pytest.raises(GenotypeError, match=r"'.*g.json' is a FIFO \(named pipe\), not a regular file"):
        load(str(fifo))


def test_device_is_refused_without_reading():
    with pytest.raises(GenotypeError, match=r"genotype file '/dev/zero' is a character device, not a regular file"):
        load("/dev/zero")


def test_symlink_loop_and_long_names_are_one_line_errors(tmp_path):
    (tmp_path / "a.json").symlink_to(tmp_path / "b.json")
    (tmp_path / "b.json").symlink_to(tmp_path / "a.json")
    with pytest.raises(GenotypeError, match=r"cannot read genotype file '.*a.json': too many levels of symbolic"):
        load(str(tmp_path / "a.json"))
    long = "g" * 5000 + ".json"
    with pytest.raises(GenotypeError, match=r"cannot read genotype file 'ggg.*\.\.\.': file name too long") as err:
        load(long)
    assert len(str(err.value)) < 300
    with pytest.raises(GenotypeError, match="no published genotype named 'ggg"):
        load("g" * 5000)


def test_oversized_file_is_refused_by_its_size(tmp_path):
    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(5 * 1024 * 1024)  # sparse: nothing to read, the size alone decides
    with pytest.raises(GenotypeError, match=r"is larger than the 4194304-byte limit"):
        load(str(big))


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_one_line(tmp_path):
    path = _write(tmp_path, "locked", V2)
    path.chmod(0)
    with pytest.raises(GenotypeError, match=r"cannot read genotype file '.*locked.json': permission denied"):
        load(str(path))


# ------------------------------------------------------------------------------------------------------------ bounds
def _too_many_edges(d):
    d["space"] = "user_chain"
    d["cells"] = {"layers": {"edges": [["skip_connect", i, i + 1] for i in range(MAX_EDGES + 1)], "concat": []}}


@pytest.mark.parametrize(
    ("mutation", "message"),
    [
        (
            lambda d: d["cells"].update({f"c{i}": d["cells"]["normal"] for i in range(MAX_CELLS)}),
            rf"field 'cells' has {MAX_CELLS + 2} cells; the limit is {MAX_CELLS}",
        ),
        (_too_many_edges, rf"cells.layers.edges has {MAX_EDGES + 1} edges; the limit is {MAX_EDGES} per cell"),
        (
            lambda d: d["cells"]["normal"]["edges"][0].__setitem__(2, MAX_NODE + 1),
            rf"field 'dst' must be a node index \(int 0..{MAX_NODE}\), got {MAX_NODE + 1}",
        ),
        (
            lambda d: d["cells"]["normal"].__setitem__("concat", [2] * (MAX_NODE + 2)),
            rf"concat must be a list of at most {MAX_NODE + 1} node indices",
        ),
        (lambda d: d["cells"]["normal"]["edges"][0].__setitem__(0, 'sep"conv'), r"\(op\) 'sep\"conv' is not a valid"),
        (
            lambda d: d["cells"]["normal"]["edges"][0].__setitem__(0, "x" * 65),
            r"\(op\) 'xxx.*\.\.\. is not a valid name",
        ),
        (lambda d: d["cells"]["normal"]["edges"][0].__setitem__(0, ""), r"\(op\) '' is not a valid name"),
        (lambda d: d["cells"].__setitem__("nor\nmal", d["cells"].pop("normal")), r"cell name 'nor\\nmal' is not"),
        (lambda d: d.__setitem__("space", "../darts"), r"field 'space' '../darts' is not a valid name"),
        (
            lambda d: d.__setitem__("meta", {"a": json.loads("[" * MAX_META_DEPTH + "]" * MAX_META_DEPTH)}),
            rf"meta\['a'\]\[0\]\[0\].* is nested deeper than {MAX_META_DEPTH} levels \(the limit\)",
        ),
        (
            lambda d: d.__setitem__("meta", {"alpha": [0] * MAX_META_ITEMS}),
            rf"field 'meta' holds more than {MAX_META_ITEMS} values \(the limit\)",
        ),
    ],
)
def test_limits_name_the_field_and_the_limit(mutation, message):
    with pytest.raises(GenotypeError, match=message) as err:
        Genotype.from_json(json.dumps(_mutated(mutation)), source="my.json")
    assert str(err.value).startswith("my.json: ") and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"x": float("nan")}, r"meta\['x'\] is nan; meta numbers must be finite"),
        ({"x": {1: 2}}, r"meta\['x'\] has the key 1; keys must be strings"),
        ({"x": [object()]}, r"meta\['x'\]\[0\] holds a Python object; meta must be plain JSON"),
    ],
)
def test_meta_from_a_checkpoint_dict_must_be_plain_json(meta, message):
    data = {**V2, "meta": meta}
    with pytest.raises(GenotypeError, match=message):
        Genotype.from_dict(data, source="ckpt")


def test_shipped_genotypes_spaces_and_ops_fit_the_rules():
    rule = re.compile(NAME_PATTERN)
    for name in published():
        g = load(name)
        assert g.space in BUILTIN_SPACES
        Genotype.from_json(g.to_json())
    for space in BUILTIN_SPACES:
        spec = get_space_spec(space)
        assert rule.fullmatch(space) and all(rule.fullmatch(c) for c in spec.cells)
        assert all(rule.fullmatch(op) for cs in spec.cells.values() for op in cs.ops)
    assert all(rule.fullmatch(op) for op in registry.registered_ops())
    assert set(BUILTIN_SPACES) <= set(registered_spaces())
