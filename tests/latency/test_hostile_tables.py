"""``dnas lut merge`` on hostile cost tables: one ``dnas lut merge: error:`` line and exit status 2, never a traceback,
a hang or an unbounded read."""

import json
import os
import signal

import pytest

from dnas.latency import CostTable, CostTableError
from dnas.latency.cli import main as lut_main

ENTRY = {"module": "layers.edges.0", "group": "layers", "edge": 0, "input_shape": [1, 8, 8, 8], "ops": {"skip": 0.0}}
GOOD = {"schema_version": 1, "kind": "dnas.cost_table", "metric": "params", "meta": {}, "entries": [ENTRY]}


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


def _table(**changes) -> str:
    data = json.loads(json.dumps(GOOD))
    for key, value in changes.items():
        if key in ("input_shape", "stats"):
            data["entries"][0][key] = value
        else:
            data[key] = value
    return json.dumps(data)


def _make(tmp_path, kind):
    path = tmp_path / "t.json"
    if kind == "truncated":
        path.write_text(_table()[:70])
    elif kind == "nested":
        path.write_text("[" * 100_000 + "]" * 100_000)
    elif kind == "deep_meta":
        path.write_text(_table(meta={"a": json.loads("[" * 900 + "]" * 900)}))
    elif kind == "nan":
        path.write_text(_table(meta={"a": float("nan")}))
    elif kind == "long_int":
        path.write_text(_table().replace('"edge": 0', '"edge": ' + "9" * 5000))
    elif kind == "bad_shape":
        path.write_text(_table(input_shape=["x"]))
    elif kind == "bad_stats":
        path.write_text(_table(stats={"skip": {"median": {"a": [1]}}}))
    elif kind == "not_utf8":
        path.write_bytes(b'{"kind": "\xff\xfe"}')
    elif kind == "loop":
        (tmp_path / "u.json").symlink_to(path)
        path.symlink_to(tmp_path / "u.json")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "oversized":
        with open(path, "wb") as f:
            f.truncate(17 * 1024 * 1024)
    elif kind == "device":
        return "/dev/zero"
    return str(path)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("truncated", "invalid JSON at line 1"),
        ("nested", "JSON nested too deeply"),
        ("deep_meta", "field 'meta' is nested deeper than 64 levels"),
        ("nan", "non-finite number NaN is not allowed"),
        ("long_int", "Exceeds the limit"),
        ("bad_shape", "field 'input_shape' must be a list of ints >= 0"),
        ("bad_stats", "field 'stats' must be an object of op -> {name: finite number}"),
        ("not_utf8", "is not UTF-8 text"),
        ("loop", "cannot read cost table"),
        ("fifo", "is a FIFO (named pipe), not a regular file"),
        ("directory", "is a directory, not a regular file"),
        ("oversized", "is larger than the 16777216-byte limit"),
        ("device", "'/dev/zero' is a character device, not a regular file"),
    ],
)
def test_merge_refuses_hostile_tables_with_one_line(tmp_path, capsys, no_hang, kind, message):
    path = _make(tmp_path, kind)
    with pytest.raises(SystemExit) as exc:
        lut_main(["merge", path, "--out", str(tmp_path / "merged.json")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("dnas lut merge: error: "), err
    assert message in err, err
    assert not (tmp_path / "merged.json").exists()
    with pytest.raises(CostTableError, match="t.json|/dev/zero"):
        CostTable.load(path)


def test_merge_reports_an_unwritable_output_in_one_line(tmp_path, capsys):
    (tmp_path / "t.json").write_text(_table())
    (tmp_path / "afile").write_text("x")
    with pytest.raises(SystemExit) as exc:
        lut_main(["merge", str(tmp_path / "t.json"), "--out", str(tmp_path / "afile" / "m.json")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("dnas lut merge: error: cannot write"), err
