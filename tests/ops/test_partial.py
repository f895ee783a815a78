import pytest
import torch
from torch import nn

from dnas.ops.mixed import MixedOp
from dnas.ops.partial import PartialChannelEdge, channel_shuffle


def _reference_shuffle(x, groups):
    """PC-DARTS `model_search.py`: view (B, g, C/g, H, W) -> transpose(1, 2) -> flatten."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous().view(b, c, h, w)


class Scale(nn.Module):
    """A toy mixed op for any rank: Σ_k w_k · (k+1)·x, optionally strided on every spatial axis."""

    def __init__(self, n: int = 2, stride: int = 1):
        super().__init__()
        self.n, self.stride = n, stride

    def forward(self, x, weights):
        if self.stride == 2:
            x = x[(slice(None), slice(None)) + (slice(None, None, 2),) * (x.dim() - 2)]
        return sum(w * (k + 1) * x for k, w in enumerate(weights))


def test_channel_shuffle_hand_example_and_reference():
    x = torch.arange(6.0).view(1, 6)  # tabular: groups (0,1) (2,3) (4,5) interleave to 0,2,4,1,3,5
    assert channel_shuffle(x, 3).tolist() == [[0.0, 2.0, 4.0, 1.0, 3.0, 5.0]]
    img = torch.randn(2, 8, 3, 5)
    assert torch.equal(channel_shuffle(img, 4), _reference_shuffle(img, 4))
    seq = torch.arange(8.0).view(1, 8, 1).expand(1, 8, 3)  # 1-D: same permutation on every position
    assert channel_shuffle(seq, 2)[0, :, 1].tolist() == [0.0, 4.0, 1.0, 5.0, 2.0, 6.0, 3.0, 7.0]


@pytest.mark.parametrize("stride", [1, 2])
def test_partial_edge_matches_reference_formulation(stride):
    torch.manual_seed(0)
    C, k = 8, 4
    op = MixedOp(C // k, stride)
    edge = PartialChannelEdge(op, C, k, stride)
    x = torch.randn(3, C, 6, 6)
    w = torch.softmax(torch.randn(8), -1)
    # the reference MixedOp.forward: ops on x[:, :C//k], rest bypasses (MaxPool2d(2, 2) on reduction), shuffle k
    ref_out = op(x[:, : C // k], w)
    rest = x[:, C // k :]
    if stride == 2:
        rest = nn.MaxPool2d(2, 2)(rest)
    ref = _reference_shuffle(torch.cat([ref_out, rest], 1), k)
    torch.testing.assert_close(edge(x, w), ref, rtol=0, atol=0)


def test_k1_is_the_wrapped_op():
    torch.manual_seed(0)
    op = MixedOp(4, 1)
    x, w = torch.randn(2, 4, 5, 5), torch.softmax(torch.randn(8), -1)
    assert torch.equal(PartialChannelEdge(op, 4, 1)(x, w), op(x, w))


def test_any_rank_and_bypass_channels_untouched():
    w = torch.tensor([0.25, 0.75])  # Σ w_k (k+1) = 1.75
    for shape in [(2, 6), (2, 6, 5), (2, 6, 3, 4), (2, 6, 2, 2, 2)]:
        x = torch.randn(shape)
        out = PartialChannelEdge(Scale(), 6, 3)(x, w)
        # shuffle with 3 groups of 2: output channels (0, 2, 4) come from group heads, op output is channels 0, 1
        expected = channel_shuffle(torch.cat([1.75 * x[:, :2], x[:, 2:]], 1), 3)
        torch.testing.assert_close(out, expected)
        assert out.shape == x.shape


def test_stride2_pools_spatial_axes_and_refuses_tabular():
    x = torch.arange(2 * 4 * 6, dtype=torch.float32).view(2, 4, 6)
    out = PartialChannelEdge(Scale(stride=2), 4, 2, stride=2)(x, torch.tensor([1.0, 0.0]))
    assert out.shape == (2, 4, 3)
    # bypass channels 2, 3 are max-pooled pairwise along the sequence; after the shuffle they sit at 1 and 3
    torch.testing.assert_close(out[:, 1], x[:, 2].view(2, 3, 2).amax(-1))
    torch.testing.assert_close(out[:, 0], x[:, 0, ::2])
    with pytest.raises(ValueError, match="non-spatial"):
        PartialChannelEdge(Scale(stride=2), 4, 2, stride=2)(torch.randn(2, 4), torch.tensor([1.0, 0.0]))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="divisible"):
        PartialChannelEdge(Scale(), 6, 4)
    with pytest.raises(ValueError, match="k\\) must be >= 1"):
        PartialChannelEdge(Scale(), 6, 0)
    with pytest.raises(ValueError, match=r"\(B, 6, ...\)"):
        PartialChannelEdge(Scale(), 6, 2)(torch.randn(2, 4, 3), torch.ones(2))


def test_gradient_reaches_only_the_sampled_channels_through_the_op():
    torch.manual_seed(0)
    op = MixedOp(2, 1, primitives=("sep_conv_3x3", "skip_connect"))
    edge = PartialChannelEdge(op, 8, 4)
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    w = torch.tensor([1.0, 0.0])
    edge(x, w).sum().backward()
    # bypassed channels get exactly d(sum)/dx = 1; the sampled ones get the sep-conv's gradient
    assert torch.equal(x.grad[:, 2:], torch.ones_like(x.grad[:, 2:]))
    assert not torch.allclose(x.grad[:, :2], torch.ones_like(x.grad[:, :2]))
