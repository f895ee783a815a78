import math

import pytest
import torch

from dnas.ops.gumbel import GumbelSampler, gumbel_softmax


def test_hard_forward_is_one_hot_and_gradient_is_the_soft_samples():
    logits = torch.randn(5, 9, dtype=torch.float64, requires_grad=True)
    hard = gumbel_softmax(logits, tau=0.7, hard=True, generator=torch.Generator().manual_seed(3))
    assert torch.equal(hard.detach().sum(-1), torch.ones(5, dtype=torch.float64))
    assert set(hard.detach().unique().tolist()) <= {0.0, 1.0}
    # the same noise, soft: argmax agrees and the backward pass is exactly the soft sample's (straight-through)
    soft_in = logits.detach().clone().requires_grad_(True)
    soft = gumbel_softmax(soft_in, tau=0.7, hard=False, generator=torch.Generator().manual_seed(3))
    assert torch.equal(hard.detach().argmax(-1), soft.detach().argmax(-1))
    v = torch.randn(5, 9, dtype=torch.float64)
    (g_hard,) = torch.autograd.grad((hard * v).sum(), logits)
    (g_soft,) = torch.autograd.grad((soft * v).sum(), soft_in)
    assert g_hard.abs().sum() > 0
    torch.testing.assert_close(g_hard, g_soft)


def test_soft_sample_is_softmax_of_perturbed_logits_over_tau():
    logits = torch.randn(3, 4)
    y = gumbel_softmax(logits, tau=2.0, generator=torch.Generator().manual_seed(0))
    e = torch.empty_like(logits).exponential_(generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(y, torch.softmax((logits - e.log()) / 2.0, -1))


def test_gumbel_max_frequencies_match_softmax():
    # Gumbel-max trick: argmax(α + g) ~ Categorical(softmax(α))
    alpha = torch.tensor([1.0, 0.0, -1.0, 0.5])
    samples = gumbel_softmax(alpha.expand(40000, 4), tau=1.0, hard=True, generator=torch.Generator().manual_seed(1))
    freq = samples.mean(0)
    torch.testing.assert_close(freq, torch.softmax(alpha, -1), atol=0.01, rtol=0)


def test_low_temperature_approaches_one_hot():
    logits = torch.randn(100, 9, generator=torch.Generator().manual_seed(3))  # independent of the test order
    y = gumbel_softmax(logits, tau=0.01, generator=torch.Generator().manual_seed(2))
    assert y.max(-1).values.mean() > 0.99 and y.max(-1).values.median() > 0.999


def test_sampler_in_supernet_edge_weights_and_bad_temperature():
    from dnas.cells.fbnet import FBNetSupernet

    net = FBNetSupernet(
        num_classes=3, in_channels=1, input_size=4, width_mult=0.25, head_channels=8, primitives=("k3_e1", "skip")
    )
    w = net.edge_weights(sampler=GumbelSampler(torch.tensor(1.0), hard=True))["layers"]
    assert w.shape == (22, 2) and torch.equal(w.detach().sum(-1), torch.ones(22))
    with pytest.raises(ValueError, match="temperature"):
        gumbel_softmax(torch.zeros(3), tau=0.0)
    assert math.isclose(float(GumbelSampler(0.5).tau), 0.5)
