import pytest
import torch
from torch import nn

from dnas.cells.fbnet import FBNetSupernet
from dnas.export import build_model
from dnas.genotypes import Genotype, load
from dnas.ops.fbnet import FBNET_PRIMITIVES


def _counts(model):
    total = sum(p.numel() for p in model.parameters())
    conv_fc = sum(p.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) for p in m.parameters())
    return total, conv_fc


@pytest.mark.parametrize("name,paper", [("FBNET_A", 4.3e6), ("FBNET_C", 5.5e6)])
def test_published_parameter_counts(name, paper):
    # the paper / mobile-vision zoo count conv + FC weights (BN excluded): A 4.29M, C 5.53M; with BN 4.32M / 5.57M
    total, conv_fc = _counts(build_model(load(name), num_classes=1000, input_size=224))
    assert abs(conv_fc - paper) / paper < 0.01
    assert conv_fc < total < conv_fc * 1.01


def test_fbnet_b_count_documented():
    total, conv_fc = _counts(build_model(load("FBNET_B"), num_classes=1000, input_size=224))
    assert (total, conv_fc) == (4_863_288, 4_828_600)  # README: paper 4.5M, mobile-vision zoo 4.78M


def test_exported_net_equals_supernet_with_one_hot_weights():
    torch.manual_seed(0)
    net = FBNetSupernet(num_classes=5, in_channels=1, input_size=8, width_mult=0.25, head_channels=16).eval()
    ops = [FBNET_PRIMITIVES[i % 9] for i in range(22)]
    weights = {"layers": torch.nn.functional.one_hot(torch.tensor([i % 9 for i in range(22)]), 9).float()}
    model = build_model(Genotype.chain(ops, "fbnet", meta=net.build_meta())).eval()
    assert type(model) is FBNetSupernet and model.is_discrete  # the same skeleton, the chosen block per layer
    state = {}
    for key, value in net.state_dict().items():
        if key.startswith("body."):
            state[key] = value
        elif key.startswith("layers.edges."):
            _, _, layer, _, op, rest = key.split(".", 5)
            if int(op) == int(layer) % 9:
                state[f"layers.edges.{layer}.{rest}"] = value
    model.load_state_dict(state, strict=True)
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x, weights))


def test_options_override_meta_and_unknown_option_errors():
    g = load("FBNET_A")
    small = build_model(g, num_classes=10, input_size=32, width_mult=0.5)
    assert small(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    with pytest.raises(
        TypeError, match=r"unknown FBNetSupernet export option\(s\) \['layers'\]; allowed: .*width_mult"
    ):
        build_model(g, layers=3)
