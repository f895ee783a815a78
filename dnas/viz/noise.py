"""Could noise alone have decided α this far? A random-walk null model for the verdict.

The ``2×``-uniform criterion of :mod:`dnas.viz.verdict` measures how far α travelled, not why. Under Adam, DARTS' α
optimizer, a step's size hardly depends on the gradient's scale, so α travels even when its gradient is pure noise:
how far depends on the number of steps, the learning rate and the noise's size next to the weight decay. This module
answers "why": it replays the run's own α optimizer (same class and hyperparameters, as many steps, from the same
initial α) on gradients of independent Gaussian noise with the run's own gradient scale at each step (the RMS of the
recorded α gradient), ``draws`` times at once, and counts how often noise ends as far from uniform as the search did,
measured by the mean entropy of the cell's edges (a count of decided edges saturates once both reach the bar; the
entropy keeps ranking). A cell that the search moved no further than noise often does carries no evidence of a
signal; random cells of a space are close to searched ones exactly then (Li & Talwalkar 2019, "Random Search and
Reproducibility for NAS").

Measured on every *free* edge of a cell (no op removed or fixed by a selection callback), not only the kept ones, so
that the observed statistic and the null's come from the same rule. The model assumes what DARTS-style inits give: α
rows start with zero mean (so α is recovered from the recorded softmax up to that mean), and an optimizer that acts
elementwise (Adam, AdamW, SGD with momentum, RMSprop: every draw is a slice of one tensor); gradient clipping and
post-step rescaling (ProxylessNAS) are not replayed. Cost: one optimizer step on a ``(draws, E, K)`` tensor per α step
of the run, once per search: 0.06 s for a quickstart's 72 steps, 12 s per cell for the DARTS paper's 19,550 (CPU,
one thread).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure

from dnas.viz.alpha import edge_entropy, normalised
from dnas.viz.style import new_figure

SIGNIFICANCE = 0.05
"""A cell is beyond noise when noise ends as far from uniform (mean entropy) in at most this fraction of draws."""


@dataclass(frozen=True)
class NoiseTest:
    """The cell's free edges at the end of the search against the same edges under the random-walk null."""

    entropy: float
    """Mean entropy (nats) of the free edges' op distributions at the end of the search."""
    null_entropy: float
    """Its mean over the null's draws."""
    observed: int
    """Free edges whose top op holds at least ``factor / K`` at the end of the search."""
    null_mean: float
    """Its mean over the null's draws."""
    edges: int
    """Free edges of the cell (no op removed or fixed by selection)."""
    hits: int
    """Draws in which noise ended with a mean entropy at most ``entropy`` (at least as far from uniform)."""
    steps: int
    draws: int
    null_entropies: tuple[float, ...] = ()
    """Each draw's mean entropy (the null distribution the p-value is read from)."""

    @property
    def p_value(self) -> float:
        """``P(noise ends as far from uniform)``, estimated as ``(1 + hits) / (1 + draws)``."""
        return (1 + self.hits) / (1 + self.draws)

    @property
    def beyond_noise(self) -> bool:
        return self.p_value <= SIGNIFICANCE

    def summary(self) -> str:
        verdict = "beyond noise" if self.beyond_noise else "within noise"
        return (
            f"{verdict}: {self.edges} free edges at mean entropy {self.entropy:.3f} with {self.observed} decided; "
            f"a random walk of the same {self.steps} α steps with the run's gradient scale ends at "
            f"{self.null_entropy:.3f} with {self.null_mean:.1f} decided (as far in {self.hits} of {self.draws} draws, "
            f"p = {self.p_value:.3f})"
        )


def optimizer_factory(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> Callable[[list], torch.optim.Optimizer]:
    """A constructor of ``optimizer``'s class with the hyperparameters of the param group that holds ``param``.

    Only the group entries that the class's constructor takes are passed (schedulers add others, e.g.
    ``initial_lr``); the learning rate is the group's current one.
    """
    group = next(g for g in optimizer.param_groups if any(p is param for p in g["params"]))
    accepted = inspect.signature(type(optimizer)).parameters
    kwargs = {k: v for k, v in group.items() if k != "params" and k in accepted}
    return lambda params: type(optimizer)(params, **kwargs)


def count_decided(weights: np.ndarray, factor: float) -> np.ndarray:
    """Rows of normalised ``weights (..., E, K)`` whose largest entry is at least ``factor / K``, per leading index."""
    return (weights.max(axis=-1) >= factor / weights.shape[-1]).sum(axis=-1)


def noise_test(
    initial: np.ndarray,
    final: np.ndarray,
    grad_rms: Sequence[float],
    make_optimizer: Callable[[list], torch.optim.Optimizer],
    factor: float,
    draws: int = 200,
    seed: int = 0,
) -> NoiseTest | None:
    """The random-walk null for one cell; None when it has no free edge or took no α step.

    Args:
        initial: ``(E, K)`` edge weights before the first α step (softmax α; any positive row scale).
        final: ``(E, K)`` edge weights at the end (zeros where selection removed an op).
        grad_rms: the RMS of the cell's α gradient at each α step, in order.
        make_optimizer: builds the run's α optimizer for a list of parameters (:func:`optimizer_factory`).
        factor: an edge is decided when its top op holds at least ``factor / K``.
        draws: random walks simulated (one ``(draws, E, K)`` tensor, so one optimizer step per α step).
        seed: seed of the noise.
    """
    initial, final = np.asarray(initial, dtype=np.float64), np.asarray(final, dtype=np.float64)
    free = (initial > 0).all(axis=1) & (final > 0).all(axis=1) & (np.count_nonzero(final, axis=1) > 1)
    if not free.any() or not grad_rms:
        return None
    rows = normalised(final[free])
    entropy = float(edge_entropy(rows).mean())
    log_p = np.log(normalised(initial[free]))
    alpha0 = torch.from_numpy(log_p - log_p.mean(axis=1, keepdims=True)).float()
    alpha = torch.nn.Parameter(alpha0.expand(draws, -1, -1).clone())
    opt = make_optimizer([alpha])
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for rms in grad_rms:
            alpha.grad = torch.randn(alpha.shape, generator=gen) * float(rms)
            opt.step()
        p = torch.softmax(alpha.double(), dim=-1).numpy()
    null_entropy, null_decided = edge_entropy(p).mean(axis=-1), count_decided(p, factor)
    return NoiseTest(
        entropy=entropy,
        null_entropy=float(null_entropy.mean()),
        observed=int(count_decided(rows, factor)),
        null_mean=float(null_decided.mean()),
        edges=int(free.sum()),
        hits=int((null_entropy <= entropy).sum()),
        null_entropies=tuple(float(x) for x in null_entropy),
        steps=len(grad_rms),
        draws=draws,
    )


def plot_noise_tests(tests: Mapping[str, NoiseTest], dpi: int = 100) -> Figure:
    """One panel per cell: the null's mean entropies as a histogram, the search's as a line (left of most = decided)."""
    fig = new_figure(4.2 * len(tests), 3.0, dpi)
    axes = fig.subplots(1, len(tests), squeeze=False)[0]
    for ax, (cell, t) in zip(axes, tests.items()):
        ax.hist(t.null_entropies, bins=30, color="0.7", label=f"noise ({t.draws} walks)")
        ax.axvline(t.entropy, color="tab:red", lw=2, label="this search")
        verdict = "beyond noise" if t.beyond_noise else "within noise"
        ax.set_title(f"{cell}: {verdict} (p = {t.p_value:.3f})", fontsize=10)
        ax.set_xlabel(f"mean entropy of {t.edges} free edges (nats)")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("draws")
    fig.tight_layout()
    return fig
