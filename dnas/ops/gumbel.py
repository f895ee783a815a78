"""Gumbel-softmax sampling of architecture weights (Jang et al., ICLR 2017; FBNet, Wu et al. 2019, §3).

``m = softmax((α + g) / τ)`` with ``g ~ Gumbel(0, 1)`` per entry: a differentiable sample of the categorical
``softmax(α)`` that sharpens as the temperature ``τ`` falls. The *hard* form returns the one-hot of ``argmax m`` in
the forward pass and the soft sample's gradient in the backward pass (straight-through): ``hard - m.detach() + m``.

:class:`GumbelSampler` is a ``sampler`` for :meth:`dnas.cells.Supernet.edge_weights`, so any space can be searched
with Gumbel weights. By default the mixed op still evaluates every candidate in hard mode (zero-weighted outputs stay
in the graph), which gives the exact straight-through gradient to every α and keeps every weight in the backward pass,
so DDP needs no ``find_unused_parameters``. With sampled execution (:func:`dnas.ops.mixed.set_sampled_execution`, as
:class:`dnas.GDAS` does) only the sampled op of each edge runs.
"""

from __future__ import annotations

import torch


def sample_gumbel(shape_like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard Gumbel noise ``-log(E)``, ``E ~ Exp(1)``, shaped, typed and placed like ``shape_like``.

    The noise is drawn on the generator's device (a CPU generator serves a CUDA α: the stream does not depend on the
    accelerator) and moved. ``E`` is clamped to the dtype's smallest normal number: ``exponential_`` can return 0,
    whose noise ``+inf`` would make the sample NaN (the GDAS reference resamples in that case; the clamp changes
    nothing else).
    """
    device = shape_like.device if generator is None else generator.device
    e = torch.empty(shape_like.shape, dtype=shape_like.dtype, device=device).exponential_(generator=generator)
    return -e.clamp_min_(torch.finfo(e.dtype).tiny).log().to(shape_like.device)


def gumbel_softmax(
    logits: torch.Tensor,
    tau: float | torch.Tensor = 1.0,
    hard: bool = False,
    dim: int = -1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One Gumbel-softmax sample of ``softmax(logits)`` along ``dim``.

    Args:
        logits: unnormalised log-probabilities (α).
        tau: temperature τ > 0.
        hard: return the straight-through one-hot sample.
        dim: the category axis.
        generator: optional RNG for reproducible noise.
    """
    if float(tau) <= 0:
        raise ValueError(f"Gumbel-softmax temperature must be > 0, got {float(tau)}")
    y = torch.softmax((logits + sample_gumbel(logits, generator)) / tau, dim=dim)
    if not hard:
        return y
    index = y.argmax(dim=dim, keepdim=True)
    one_hot = torch.zeros_like(y).scatter_(dim, index, 1.0)
    return one_hot - y.detach() + y


class GumbelSampler:
    """``sampler(α) -> weights`` drawing Gumbel-softmax samples row by row (usable in ``Supernet.edge_weights``).

    Args:
        tau: temperature (a float or a 0-d tensor such as a search module's ``temperature`` buffer).
        hard: straight-through one-hot samples.
        generator: optional RNG.
    """

    def __init__(self, tau: float | torch.Tensor = 1.0, hard: bool = False, generator: torch.Generator | None = None):
        self.tau, self.hard, self.generator = tau, hard, generator

    def __call__(self, alpha: torch.Tensor) -> torch.Tensor:
        return gumbel_softmax(alpha, self.tau, self.hard, dim=-1, generator=self.generator)

    def __repr__(self) -> str:
        return f"GumbelSampler(tau={float(self.tau):.4g}, hard={self.hard})"
