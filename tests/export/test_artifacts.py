"""Export artifacts load and run where ``import dnas`` fails, and give the in-framework outputs; bad input is refused.

Each round trip runs in a subprocess whose ``PYTHONPATH`` starts with a directory holding a ``dnas/__init__.py`` that
raises ImportError, so the artifact provably needs nothing but torch (and onnxruntime / onnx for ONNX).
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from dnas.export import build_model
from dnas.export.artifacts import ExportError, export_model
from dnas.export.checkpoints import CheckpointMismatchError, load_weights, read_checkpoint, weights_from_checkpoint
from dnas.genotypes import Genotype, load

# every op the python template knows, stride-2 `none` and `skip_connect` (FactorizedReduce) included
ALL_OPS = Genotype.darts(
    normal=[
        ("dil_conv_5x5", 0),
        ("none", 1),
        ("sep_conv_7x7", 0),
        ("avg_pool_3x3", 2),
        ("conv_7x1_1x7", 3),
        ("skip_connect", 1),
        ("dil_conv_3x3", 4),
        ("sep_conv_5x5", 2),
    ],
    reduce=[
        ("skip_connect", 0),
        ("none", 1),
        ("conv_7x1_1x7", 1),
        ("max_pool_3x3", 2),
        ("sep_conv_3x3", 0),
        ("avg_pool_3x3", 3),
        ("sep_conv_7x7", 1),
        ("dil_conv_5x5", 4),
    ],
)

LOADER = textwrap.dedent(
    """
    import json, sys
    import torch
    try:
        import dnas  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("dnas must not be importable here")
    cases = json.loads(sys.argv[1])
    for case in cases:
        x = torch.load(case["x"])
        if case["format"] == "python":
            import importlib.util
            spec = importlib.util.spec_from_file_location("exported_" + str(abs(hash(case["dir"]))),
                                                          case["dir"] + "/model.py")
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            with torch.no_grad():
                y = mod.load_model()(x)
        elif case["format"] == "pt2":
            y = torch.export.load(case["dir"] + "/model.pt2").module()(x)
        else:
            try:
                import onnxruntime as ort
                y = ort.InferenceSession(case["dir"] + "/model.onnx").run(None, {"x": x.numpy()})[0]
            except ImportError:
                from onnx.reference import ReferenceEvaluator
                y = ReferenceEvaluator(case["dir"] + "/model.onnx").run(None, {"x": x.numpy()})[0]
            y = torch.as_tensor(y)
        torch.save(y.detach(), case["y"])
    print("ok")
    """
)


def run_without_dnas(tmp_path: Path, cases: list[dict]) -> None:
    blocker = tmp_path / "blocker" / "dnas"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('dnas is blocked in this process')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "blocker"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", LOADER, json.dumps(cases)], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def trained_like(model: torch.nn.Module) -> torch.nn.Module:
    """Non-default BN statistics and weights, so a wrong key mapping cannot pass by accident."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.dtype.is_floating_point:
                t.copy_(torch.rand_like(t) + 0.5 if "running_var" in name else torch.randn_like(t) * 0.3)
    return model.eval()


def test_round_trip_every_format_without_dnas(tmp_path):
    cases, expected = [], {}
    builds = [
        ("python", "all_ops", ALL_OPS, dict(init_channels=4, layers=3, auxiliary=True), (3, 3, 32, 32)),
        (
            "python",
            "amoeba_imagenet",
            load("AmoebaNet"),
            dict(init_channels=8, layers=3, stem="imagenet", num_classes=5),
            (2, 3, 64, 64),
        ),
        # one (reduction) cell keeps the exporters' tracing short; the python cases cover every op and both cells
        ("pt2", "pt2", load("PC_DARTS"), dict(init_channels=4, layers=1, in_channels=1), (3, 1, 8, 8)),
        ("onnx", "onnx", load("DARTS_V2"), dict(init_channels=4, layers=1, in_channels=1), (3, 1, 8, 8)),
    ]
    for fmt, name, g, opts, shape in builds:
        model = trained_like(build_model(g, **opts))
        x = torch.randn(*shape)
        with torch.no_grad():
            expected[name] = model(x)
        options = {"num_classes": 10, "in_channels": 3, "stem": "cifar", "auxiliary": False, **opts}
        out = export_model(model, g, options, tmp_path / name, fmt=fmt, input_size=shape[2:], name=name, flops=False)
        assert (out / {"python": "model.py", "pt2": "model.pt2", "onnx": "model.onnx"}[fmt]).is_file()
        assert Genotype.from_file(out / "genotype.json") == g
        torch.save(x, tmp_path / f"{name}_x.pt")
        y_path = str(tmp_path / f"{name}_y.pt")
        cases.append({"format": fmt, "dir": str(out), "x": str(tmp_path / f"{name}_x.pt"), "y": y_path, "name": name})
    run_without_dnas(tmp_path, cases)
    for case in cases:
        name = case["name"]
        y = torch.load(case["y"])
        # batch 3 differs from the traced batch 2: the exported batch dimension is dynamic
        assert y.shape == expected[name].shape
        torch.testing.assert_close(y, expected[name], rtol=1e-4, atol=1e-5, msg=name)


def test_python_artifact_is_torch_only_and_weights_load_safely(tmp_path):
    g = load("DARTS_V2")
    opts = dict(init_channels=4, layers=3, num_classes=10, in_channels=1, stem="cifar", auxiliary=False)
    out = export_model(build_model(g, **opts), g, opts, tmp_path / "m", input_size=(8, 8), name="DARTS_V2")
    src = (out / "model.py").read_text()
    imports = {line.split()[1] for line in src.splitlines() if line.startswith(("import ", "from "))}
    assert imports <= {"__future__", "pathlib", "torch"}, imports  # __future__: annotations stay unevaluated
    state = torch.load(out / "weights.pt", weights_only=True)
    assert set(state) == set(build_model(g, **opts).state_dict())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["parameters"] == sum(p.numel() for p in build_model(g, **opts).parameters())
    assert summary["macs"] * 2 == summary["flops"] > 0 and "multiply-accumulate" in summary["flops_definition"]


def test_summary_counts_aux_separately_and_flops_match_hand_count(tmp_path):
    from dnas.export.summary import model_summary

    # a 1x1 conv (4 -> 6) on 5×5, global pooling (not counted), a linear 6 -> 3: MACs = 4·6·25 + 6·3
    net = torch.nn.Sequential(torch.nn.Conv2d(4, 6, 1, bias=False), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(1))
    net.append(torch.nn.Linear(6, 3))
    s = model_summary(net, (1, 4, 5, 5))
    assert s["macs"] == 4 * 6 * 25 + 6 * 3
    model = build_model("DARTS_V2", init_channels=4, layers=3, auxiliary=True)
    s = model_summary(model, (1, 3, 32, 32), flops=False)
    aux = sum(p.numel() for p in model.auxiliary_head.parameters())
    assert s["parameters_auxiliary_head"] == aux > 0
    assert s["parameters_with_auxiliary"] == s["parameters"] + aux


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_existing_output_refused_and_overwrite_replaces_only_an_export(tmp_path):
    g = load("DARTS_V2")
    opts = dict(init_channels=4, layers=3, num_classes=10, in_channels=1, stem="cifar", auxiliary=False)
    model = build_model(g, **opts)
    out = tmp_path / "m"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="already exists.*--overwrite"):
        export_model(model, g, opts, out, input_size=(8, 8), flops=False)
    assert (out / "keep.txt").read_text() == "mine"
    # a directory export did not write is never replaced, overwrite or not
    with pytest.raises(ExportError, match="already exists and is not a dnas export.*even with --overwrite"):
        export_model(model, g, opts, out, input_size=(8, 8), overwrite=True, flops=False)
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"
    # an empty directory may be used; a previous export (marked in summary.json) is replaced
    empty = tmp_path / "e"
    empty.mkdir()
    export_model(model, g, opts, empty, input_size=(8, 8), overwrite=True, flops=False)
    assert json.loads((empty / "summary.json").read_text())["dnas_export"] == 1
    (empty / "__pycache__").mkdir()  # what importing model.py leaves
    (empty / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"")
    export_model(model, g, opts, empty, input_size=(8, 8), overwrite=True, flops=False)
    assert sorted(p.name for p in empty.iterdir()) == ["genotype.json", "model.py", "summary.json", "weights.pt"]
    # ... unless a user's file was added to it
    (empty / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match=r"did not write: \['notes.txt'\]"):
        export_model(model, g, opts, empty, input_size=(8, 8), overwrite=True, flops=False)
    assert (empty / "notes.txt").read_text() == "mine"
    assert _leftovers(tmp_path) == []


def test_failure_mid_export_leaves_nothing(tmp_path, monkeypatch):
    import dnas.export.artifacts as artifacts

    def boom(*args, **kwargs):
        raise RuntimeError("tracing failed")

    monkeypatch.setattr(artifacts, "_write_pt2", boom)
    g = load("DARTS_V2")
    opts = dict(init_channels=4, layers=3, num_classes=10, in_channels=1, stem="cifar", auxiliary=False)
    old = tmp_path / "old"
    export_model(build_model(g, **opts), g, opts, old, input_size=(8, 8), flops=False)
    before = sorted(p.name for p in old.iterdir())
    with pytest.raises(RuntimeError, match="tracing failed"):
        export_model(build_model(g, **opts), g, opts, tmp_path / "new", fmt="pt2", input_size=(8, 8))
    with pytest.raises(RuntimeError, match="tracing failed"):
        export_model(build_model(g, **opts), g, opts, old, fmt="pt2", input_size=(8, 8), overwrite=True)
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in old.iterdir()) == before  # the previous export survives a failed overwrite
    assert _leftovers(tmp_path) == []


def test_onnx_without_packages_gives_install_hint(tmp_path, monkeypatch):
    import dnas.export.artifacts as artifacts

    monkeypatch.setattr(artifacts, "onnx_available", lambda: False)
    g = load("DARTS_V2")
    with pytest.raises(ExportError, match=r"pip install 'dnas\[onnx\]'"):
        export_model(build_model(g, init_channels=4, layers=3), g, {}, tmp_path / "o", fmt="onnx")
    with pytest.raises(ExportError, match="unknown export format 'tflite'"):
        export_model(build_model(g, init_channels=4, layers=3), g, {}, tmp_path / "o", fmt="tflite")
    assert list(tmp_path.iterdir()) == []


_SCALE = {"factor": 2.0}  # plain data: model.py carries it as a literal
_NOT_PORTABLE = textwrap  # a module model.py may not import


class _ScaledConv(torch.nn.Module):
    """A user's op: its forward reads a module-level constant."""

    def __init__(self, C_in, C_out, stride):
        super().__init__()
        self.conv = torch.nn.Conv2d(C_in, C_out, 3, stride, 1, bias=False)

    def forward(self, x):
        return self.conv(x) * _SCALE["factor"]


class _UsesAnotherLibrary(torch.nn.Module):
    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        _NOT_PORTABLE.dedent("")
        return x[:, :, :: self.stride, :: self.stride]


def test_python_format_writes_a_users_op_and_refuses_what_it_cannot_carry(tmp_path):
    from dnas.ops.registry import _OPS, register_op

    register_op("my_test_conv", lambda C_in, C_out, stride, affine: _ScaledConv(C_in, C_out, stride))
    register_op("my_test_other", lambda C_in, C_out, stride, affine: _UsesAnotherLibrary(stride))
    try:
        g = Genotype.darts(
            [("my_test_conv", 0), ("sep_conv_3x3", 1)] * 4, [("max_pool_3x3", 0), ("my_test_conv", 1)] * 4
        )
        model = trained_like(build_model(g, init_channels=4, layers=3, in_channels=1))
        out = export_model(model, g, {}, tmp_path / "p", input_shape=(1, 8, 8), flops=False)
        source = (out / "model.py").read_text()
        assert "class _ScaledConv(nn.Module):" in source and "_SCALE = {'factor': 2.0}" in source
        x = torch.randn(2, 1, 8, 8)
        torch.save(x, tmp_path / "x.pt")
        case = {"format": "python", "dir": str(out), "x": str(tmp_path / "x.pt"), "y": str(tmp_path / "y.pt")}
        run_without_dnas(tmp_path, [case])
        with torch.no_grad():
            torch.testing.assert_close(torch.load(tmp_path / "y.pt"), model(x), rtol=1e-6, atol=1e-7)

        bad = Genotype.darts([("my_test_other", 0), ("sep_conv_3x3", 1)] * 4, [("max_pool_3x3", 0)] * 8)
        model = build_model(bad, init_channels=4, layers=3, in_channels=1)  # the in-framework network builds it
        with pytest.raises(ExportError, match=r"_UsesAnotherLibrary.forward uses module 'textwrap'.*only torch"):
            export_model(model, bad, {}, tmp_path / "q", input_shape=(1, 8, 8), flops=False)
        assert not (tmp_path / "q").exists()
    finally:
        _OPS.pop("my_test_conv", None)
        _OPS.pop("my_test_other", None)


def test_checkpoint_mismatch_and_unsafe_checkpoints(tmp_path):
    g = load("DARTS_V2")
    small = build_model(g, init_channels=4, layers=3)
    other = build_model(g, init_channels=6, layers=3)
    torch.save(other.state_dict(), tmp_path / "w.pt")
    with pytest.raises(CheckpointMismatchError, match=r"shape mismatch.*checkpoint \(18, 3, 3, 3\) vs network"):
        load_weights(small, weights_from_checkpoint(read_checkpoint(tmp_path / "w.pt")), source="w.pt")
    # Lightning-style checkpoint of a retrained model: keys "model.*"
    torch.save({"state_dict": {f"model.{k}": v for k, v in small.state_dict().items()}}, tmp_path / "r.ckpt")
    load_weights(small, weights_from_checkpoint(read_checkpoint(tmp_path / "r.ckpt")))
    torch.save({"state_dict": {"supernet.alpha_normal": torch.zeros(14, 8)}}, tmp_path / "s.ckpt")
    with pytest.raises(CheckpointMismatchError, match="search checkpoint"):
        weights_from_checkpoint(read_checkpoint(tmp_path / "s.ckpt"))
    torch.save({"obj": Genotype}, tmp_path / "evil.ckpt")  # a pickled class: refused by weights_only loading
    with pytest.raises(CheckpointMismatchError, match="weights_only=True"):
        read_checkpoint(tmp_path / "evil.ckpt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.ckpt")
