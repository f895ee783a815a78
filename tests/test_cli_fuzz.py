"""Hostile inputs to the CLI tools: every one gets exit code 2 and one line, runs nothing, and touches nothing else.

The classes of input (non-regular files, oversized, deeply nested, non-UTF-8, injection strings in every string field,
URLs) are fed to ``dnas export``, ``dnas plot``, ``dnas lut merge`` and ``dnas fit --config``, in-process. Each case
asserts: exit status 2, exactly one non-empty line on stderr, no marker file written by a payload, and no file changed
outside the case's output directory.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

from dnas.cli import main
from dnas.genotypes import load

ROOT = Path(__file__).resolve().parents[1]
MARKER = "PWNED_MARKER"


def _payloads(marker: Path) -> list[str]:
    """Strings that become code if any tool pastes them into Python, YAML tags, a shell or a path unescaped."""
    return [
        f'x"""\nimport os; open({str(marker)!r}, "w")\n"""',
        f"x'''\nopen({str(marker)!r}, 'w')\n'''",
        f"\"); open({str(marker)!r}, 'w'); (\"",
        f"!!python/object/apply:os.system ['touch {marker}']",
        f"$(touch {marker})",
        f"`touch {marker}`",
        "../../../../etc/passwd",
        "\x00nul",
        "é" * 70,
    ]


def _genotype_with(field: str, value: str) -> dict:
    data = load("DARTS_V2").to_dict()
    if field == "space":
        data["space"] = value
    elif field == "op":
        data["cells"]["normal"]["edges"][0][0] = value
    elif field == "cell":
        data["cells"][value] = data["cells"].pop("normal")
    elif field == "meta":
        data["meta"] = {"name": value, value: 1}
    return data


def _cases(tmp: Path) -> list[tuple[str, list[str]]]:
    marker = tmp / MARKER
    cases: list[tuple[str, list[str]]] = []
    fifo = tmp / "fifo.json"
    os.mkfifo(fifo)
    loop = tmp / "loop.json"
    os.symlink(loop, loop)
    (tmp / "dir.json").mkdir()
    big = tmp / "big.json"
    big.write_bytes(b'{"space": "darts", "meta": {"pad": "' + b"a" * (5 * 1024 * 1024) + b'"}}')
    deep = tmp / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    binary = tmp / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage\x80" * 10)
    empty = tmp / "empty.json"
    empty.write_bytes(b"")
    many = tmp / "many_cells.json"
    cell = {"edges": [["skip_connect", 0, 2], ["skip_connect", 1, 2]], "concat": [2]}
    many.write_text(json.dumps({"space": "darts", "cells": {f"c{i}": cell for i in range(3000)}}))
    files = [fifo, loop, tmp / "dir.json", big, deep, binary, empty, many, Path("/dev/zero"), tmp / "missing.json"]
    files.append(tmp / ("x" * 300 + ".json"))  # a name longer than the file system allows
    for i, payload in enumerate(_payloads(marker)):
        for field in ("space", "op", "cell"):
            f = tmp / f"inject_{field}_{i}.json"
            f.write_text(json.dumps(_genotype_with(field, payload)))
            files.append(f)
    urls = ["http://127.0.0.1:9/evil.json", "file:///etc/passwd", "s3://bucket/x.json", "memory://x.json"]

    out = tmp / "out"
    for f in [*files, *urls]:
        name = Path(str(f)).name
        cases.append((f"export --genotype {name}", ["export", "--genotype", str(f), "--out", str(out), "--no-flops"]))
        cases.append((f"plot {name}", ["plot", str(f), "--out", str(out / "plot")]))
        cases.append((f"lut merge {name}", ["lut", "merge", str(f), "--out", str(out / "lut.json")]))
    for f in [fifo, loop, tmp / "dir.json", binary, empty, Path("/dev/zero"), big, deep]:
        cases.append(
            (f"export --ckpt {f.name}", ["export", "--genotype", "DARTS_V2", "--ckpt", str(f), "--out", str(out)])
        )
    # a genotype *file name* carrying a payload (file names used to reach the generated model.py); invalid content
    evil_name = tmp / ('evil"""\nopen(' + repr(MARKER) + ', "w")\n"""x.json')
    evil_name.write_text(json.dumps({"space": "darts", "cells": {"normal": {}}}))
    cases.append(("export --genotype <payload file name>", ["export", "--genotype", str(evil_name), "--out", str(out)]))
    for f in [fifo, tmp / "dir.json", binary, empty, Path("/dev/zero"), big, *[Path(u) for u in urls[:2]]]:
        cases.append((f"fit --config {f.name}", ["fit", "--config", str(f)]))
    hostile_yaml = tmp / "hostile.yaml"
    hostile_yaml.write_text(f"!!python/object/apply:os.system ['touch {marker}']\n")
    cases.append(("fit --config <yaml tag>", ["fit", "--config", str(hostile_yaml)]))
    for flag, value in [("--dpi", "0"), ("--dpi", "-5"), ("--per_row", "0")]:
        cases.append((f"plot {flag} {value}", ["plot", "DARTS_V2", flag, value, "--out", str(out / "p")]))
    return cases


def _snapshot(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    seen = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == skip or skip in Path(dirpath).parents:
            dirnames[:] = []
            continue
        for n in filenames + dirnames:
            p = Path(dirpath) / n
            try:
                st = p.lstat()
            except OSError:
                continue
            seen[str(p)] = (st.st_mtime_ns, st.st_size)
    return seen


def _run(argv: list[str]) -> tuple[object, str]:
    err = io.StringIO()
    code: object = 0
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code
    return code, err.getvalue()


def test_hostile_inputs_to_every_tool_get_exit_2_one_line_and_touch_nothing(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # anything written relative to the working directory lands here and is checked too
    cases = _cases(tmp_path)
    failures = []
    for label, argv in cases:
        before = _snapshot(tmp_path, tmp_path / "out")
        code, err = _run(argv)
        lines = [line for line in err.splitlines() if line.strip()]
        after = _snapshot(tmp_path, tmp_path / "out")
        problems = []
        if code != 2:
            problems.append(f"exit {code!r}")
        if len(lines) != 1:
            problems.append(f"{len(lines)} stderr lines: {lines[:3]!r}")
        elif "Traceback" in err:
            problems.append("traceback")
        if (tmp_path / MARKER).exists() or (work / MARKER).exists():
            problems.append("payload ran")
        changed = sorted(set(before.items()) ^ set(after.items()))
        if changed:
            problems.append(f"touched {changed[:3]}")
        if problems:
            failures.append(f"{label}: {'; '.join(problems)}")
    assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(failures)
