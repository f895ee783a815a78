import pytest
import torch
from einops import rearrange

from dnas.ops import build_op
from dnas.ops.fbnet import FBNET_PRIMITIVES, ChannelShuffle, FBNetBlock


def test_channel_shuffle_matches_the_shufflenet_reshape():
    x = torch.randn(2, 12, 3, 3)
    torch.testing.assert_close(ChannelShuffle(3)(x), rearrange(x, "b (g c) h w -> b (c g) h w", g=3))


@pytest.mark.parametrize("name", FBNET_PRIMITIVES[:-1])
def test_block_parameter_count_is_the_paper_formula(name):
    k, e, g = int(name[1]), int(name.split("_")[1][1]), 2 if name.endswith("g2") else 1
    cin, cout = 16, 24
    mid = cin * e
    expect = cin * mid // g + 2 * mid + mid * k * k + 2 * mid + mid * cout // g + 2 * cout
    block = build_op(name, cin, cout, 2, True)
    assert sum(p.numel() for p in block.parameters()) == expect
    assert block(torch.randn(1, cin, 8, 8)).shape == (1, cout, 4, 4)


def test_residual_only_when_shape_is_kept():
    assert FBNetBlock(8, 8, 3, 1).residual and not FBNetBlock(8, 16, 3, 1).residual
    assert not FBNetBlock(8, 8, 3, 1, stride=2).residual
    block = FBNetBlock(8, 8, 3, 6).eval()
    for p in block.pwl.parameters():  # zero the last conv and BN affine: the block is the identity
        torch.nn.init.zeros_(p)
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(block(x), x)


def test_skip_is_identity_or_projection():
    x = torch.randn(1, 8, 4, 4)
    assert build_op("skip", 8, 8, 1, True)(x) is x
    proj = build_op("skip", 8, 16, 2, True)
    assert proj(x).shape == (1, 16, 2, 2) and sum(p.numel() for p in proj.parameters()) == 8 * 16 + 32


def test_group_block_rejects_odd_channels():
    with pytest.raises(ValueError, match="divisible"):
        build_op("k3_e1_g2", 3, 8, 1, True)
