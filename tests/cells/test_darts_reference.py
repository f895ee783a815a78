"""Reference parity of DartsSupernet with quark0/darts `cnn/model_search.py`.

The oracle below is an independent functional forward written from the reference layout (quark0/darts
`cnn/model_search.py`, `cnn/operations.py`): it reads a state dict keyed exactly as the reference's
``Network.state_dict()`` (``cells.<i>._ops.<edge>._ops.<op>.op.<n>.weight``, ``preprocess0.conv_1.weight``, ...) plus
``alphas_normal`` / ``alphas_reduce``, and never touches our modules.
"""

import pytest
import torch
import torch.nn.functional as F

from dnas.cells.darts import DartsSupernet, darts_edges, import_reference_state
from dnas.ops import DARTS_PRIMITIVES


def _bn(x, sd, prefix):
    w = sd.get(prefix + ".weight")
    b = sd.get(prefix + ".bias")
    return F.batch_norm(x, sd[prefix + ".running_mean"], sd[prefix + ".running_var"], w, b, training=False, eps=1e-5)


def _fr(x, sd, p):
    x = F.relu(x)
    a = F.conv2d(x, sd[p + ".conv_1.weight"], stride=2)
    b = F.conv2d(x[:, :, 1:, 1:], sd[p + ".conv_2.weight"], stride=2)
    return _bn(torch.cat([a, b], 1), sd, p + ".bn")


def _rcb(x, sd, p):
    return _bn(F.conv2d(F.relu(x), sd[p + ".op.1.weight"]), sd, p + ".op.2")


def _sep(x, sd, p, k, stride):
    C = x.shape[1]
    y = F.conv2d(F.relu(x), sd[p + ".op.1.weight"], stride=stride, padding=k // 2, groups=C)
    y = _bn(F.conv2d(y, sd[p + ".op.2.weight"]), sd, p + ".op.3")
    y = F.conv2d(F.relu(y), sd[p + ".op.5.weight"], padding=k // 2, groups=C)
    return _bn(F.conv2d(y, sd[p + ".op.6.weight"]), sd, p + ".op.7")


def _dil(x, sd, p, k, stride):
    C = x.shape[1]
    y = F.conv2d(F.relu(x), sd[p + ".op.1.weight"], stride=stride, padding=2 * (k // 2), dilation=2, groups=C)
    return _bn(F.conv2d(y, sd[p + ".op.2.weight"]), sd, p + ".op.3")


def _mixed(x, w, sd, p, stride):
    outs = [
        x[:, :, ::stride, ::stride] * 0.0,
        _bn(F.max_pool2d(x, 3, stride, 1), sd, p + "._ops.1.1"),
        _bn(F.avg_pool2d(x, 3, stride, 1, count_include_pad=False), sd, p + "._ops.2.1"),
        x if stride == 1 else _fr(x, sd, p + "._ops.3"),
        _sep(x, sd, p + "._ops.4", 3, stride),
        _sep(x, sd, p + "._ops.5", 5, stride),
        _dil(x, sd, p + "._ops.6", 3, stride),
        _dil(x, sd, p + "._ops.7", 5, stride),
    ]
    return sum(wi * o for wi, o in zip(w, outs))


def reference_forward(sd, x, layers):
    s = _bn(F.conv2d(x, sd["stem.0.weight"], padding=1), sd, "stem.1")
    s0 = s1 = s
    red = {layers // 3, 2 * layers // 3}
    for i in range(layers):
        p = f"cells.{i}"
        reduction = i in red
        w = torch.softmax(sd["alphas_reduce" if reduction else "alphas_normal"], dim=-1)
        h0 = _fr(s0, sd, p + ".preprocess0") if (i - 1) in red else _rcb(s0, sd, p + ".preprocess0")
        h1 = _rcb(s1, sd, p + ".preprocess1")
        states, offset = [h0, h1], 0
        for _ in range(4):
            node = sum(
                _mixed(h, w[offset + j], sd, f"{p}._ops.{offset + j}", 2 if reduction and j < 2 else 1)
                for j, h in enumerate(states)
            )
            offset += len(states)
            states.append(node)
        s0, s1 = s1, torch.cat(states[-4:], dim=1)
    out = F.adaptive_avg_pool2d(s1, 1).flatten(1)
    return F.linear(out, sd["classifier.weight"], sd["classifier.bias"])


def _to_reference_key(key: str) -> str:
    return key.replace(".dag.edges.", "._ops.")


def _reference_state(model: DartsSupernet, seed: int = 0) -> dict:
    """A random state laid out as the reference saves it (our keys renamed; every value redrawn)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith("arch."):  # α and selection buffers: the reference keeps α outside its state dict
            continue
        if key.endswith("num_batches_tracked"):
            new = torch.tensor(7)
        elif key.endswith("running_var"):
            new = 0.5 + torch.rand(value.shape, generator=g)
        else:
            new = 0.3 * torch.randn(value.shape, generator=g)
        state[_to_reference_key(key)] = new
    state["alphas_normal"] = torch.randn(14, 8, generator=g)
    state["alphas_reduce"] = torch.randn(14, 8, generator=g)
    return state


def test_parameter_count_and_shapes_match_reference_search_network():
    model = DartsSupernet(init_channels=16, num_classes=10, layers=8)
    weights = sum(p.numel() for p in model.weight_parameters())
    # The reference logs "param size = 1.930618MB" for this network (C=16, 8 cells, 10 classes); derived:
    # stem 3*48*9 + 2*48; cells and classifier as in cnn/model_search.py.
    assert weights == 1_930_618
    assert model.alpha("normal").shape == (14, 8) and model.alpha("reduce").shape == (14, 8)
    assert [n for n, _ in model.named_arch_parameters()] == ["arch.normal.alpha", "arch.reduce.alpha"]
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["stem.0.weight"] == (48, 3, 3, 3)
    assert shapes["cells.0.preprocess0.op.1.weight"] == (16, 48, 1, 1)
    assert shapes["cells.3.preprocess0.conv_1.weight"] == (16, 64, 1, 1)  # FactorizedReduce(64 -> 32): two halves
    assert shapes["cells.2.dag.edges.0._ops.3.conv_1.weight"] == (16, 32, 1, 1)  # stride-2 skip in reduction cell
    assert shapes["cells.0.dag.edges.13._ops.5.op.1.weight"] == (16, 1, 5, 5)
    assert shapes["classifier.weight"] == (10, 256)
    assert darts_edges()[:5] == ((0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
    assert model.candidate_names == DARTS_PRIMITIVES


@pytest.mark.parametrize("layers", [3, 5])
def test_imported_reference_state_gives_reference_logits(layers):
    torch.manual_seed(0)
    model = DartsSupernet(init_channels=4, num_classes=7, layers=layers, in_channels=3).double()
    state = {k: v.double() if v.is_floating_point() else v for k, v in _reference_state(model).items()}
    import_reference_state(model, state)
    model.eval()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    ours = model(x)
    ref = reference_forward(state, x, layers)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    assert torch.equal(model.alpha("normal").detach(), state["alphas_normal"])
    assert int(model.cells[0].preprocess1.op[2].num_batches_tracked) == 7


def test_import_reference_state_rejects_wrong_shapes_and_keys():
    model = DartsSupernet(init_channels=4, num_classes=5, layers=3)
    state = _reference_state(model)
    bad = dict(state)
    bad["classifier.weight"] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match="classifier.weight"):
        import_reference_state(model, bad)
    extra = dict(state, **{"cells.0._ops.99._ops.0.weight": torch.zeros(1)})
    with pytest.raises(KeyError, match="_ops.99"):
        import_reference_state(model, extra)
    missing = dict(state)
    del missing["stem.0.weight"]
    with pytest.raises(KeyError, match="lacks"):
        import_reference_state(model, missing)
