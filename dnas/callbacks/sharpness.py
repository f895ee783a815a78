"""Sharpness of the search: the dominant eigenvalue of the validation loss's Hessian with respect to α.

RobustDARTS (Zela et al., "Understanding and Robustifying Differentiable Architecture Search", ICLR 2020; reference
code ``automl/RobustDARTS``) showed that the largest eigenvalue of ``∇²_α L_valid`` grows as a DARTS search heads for
a degenerate cell, and uses its rise as an early-stopping signal; SD-DARTS (Zhu et al. 2021) and SDARTS (Chen & Hsieh
2020) exist to keep it low. :class:`HessianEigenvalue` logs it every few epochs as ``arch/hessian_eigenvalue``.

How: power iteration (the dominant eigenvalue, largest in magnitude) on Hessian-vector products. By default each
product is exact, a double backward (Pearlmutter 1994: ``Hv = ∇(∇L · v)``); RobustDARTS' reference builds the whole
α Hessian by double backward too (``src/search/analyze.py``, ``Analyzer._hessian``). A supernet with the fused mixed op
(:mod:`dnas.ops.fused`), whose hand-written backward is first order only, gets a central difference of two α
gradients instead, ``Hv ≈ (∇L(α + εv) − ∇L(α − εv)) / 2ε`` for a unit ``v`` (the product DARTS' second-order step
uses, :mod:`dnas.search.architect`). The difference is unreliable on ReLU/max-pool networks: a step of ε moves
activations across their kinks, where the gradient jumps, so the matrix it implies is neither the Hessian nor
symmetric (measured on the MNIST-1D quickstart supernet in float32: 142 % relative error against the exact Hessian
at ε = 1e-2, 369 % at 1e-3; docs/benchmarks.md); ``method="autograd"`` with ``mixed_op_impl: naive`` avoids it. The
loss is the cross-entropy of the supernet with its own edge weights (softmax α, selection applied; no Gumbel noise, no
latency term) on a fixed set of samples from the datamodule's ``val_dataloader()`` (the architecture half), in train
mode (BN batch statistics, as the reference measures during search), with every buffer restored afterwards and the
global RNG untouched, so measuring does not change the search.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_info

from dnas.callbacks.evaluation import first_samples, measuring
from dnas.callbacks.plots import find_supernet


def _flat(grads, alphas: list[torch.nn.Parameter]) -> torch.Tensor:
    """``grads`` (one per α, None where α is unused) as one vector, zeros for the unused."""
    return torch.cat([(torch.zeros_like(a) if g is None else g).reshape(-1) for a, g in zip(alphas, grads)])


def flat_alpha_grad(loss_fn, alphas: list[torch.nn.Parameter]) -> torch.Tensor:
    """The gradient of ``loss_fn()`` with respect to ``alphas``, flattened into one vector (no ``.grad`` written)."""
    return _flat(torch.autograd.grad(loss_fn(), alphas, allow_unused=True), alphas)


@torch.no_grad()
def _shift(alphas: list[torch.nn.Parameter], base: list[torch.Tensor], v: torch.Tensor, eps: float) -> None:
    offset = 0
    for a, b in zip(alphas, base):
        n = a.numel()
        a.copy_(b + eps * v[offset : offset + n].view_as(a))
        offset += n


def hessian_vector_product(loss_fn, alphas: list[torch.nn.Parameter], v: torch.Tensor, eps: float) -> torch.Tensor:
    """``∇²L · v`` by a central difference of gradients at ``α ± eps·v`` (``v`` unit length); α is restored exactly."""
    base = [a.detach().clone() for a in alphas]
    try:
        _shift(alphas, base, v, eps)
        g_plus = flat_alpha_grad(loss_fn, alphas)
        _shift(alphas, base, v, -eps)
        g_minus = flat_alpha_grad(loss_fn, alphas)
    finally:
        with torch.no_grad():
            for a, b in zip(alphas, base):
                a.copy_(b)
    return (g_plus - g_minus) / (2 * eps)


def autograd_hessian_vector_product(loss_fn, alphas: list[torch.nn.Parameter], v: torch.Tensor) -> torch.Tensor:
    """``∇²L · v`` exactly, by double backward: the α gradient of ``∇L · v`` (needs twice-differentiable ops)."""
    flat = _flat(torch.autograd.grad(loss_fn(), alphas, create_graph=True, allow_unused=True), alphas)
    if not flat.requires_grad:  # the loss does not depend on α at all
        return torch.zeros_like(flat)
    return _flat(torch.autograd.grad(torch.dot(flat, v), alphas, allow_unused=True), alphas).detach()


def dominant_eigenvalue(
    loss_fn,
    alphas: list[torch.nn.Parameter],
    iterations: int = 20,
    tolerance: float = 1e-3,
    eps: float = 1e-2,
    start: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    method: Literal["autograd", "difference"] = "autograd",
) -> tuple[float, torch.Tensor, int]:
    """Power iteration on Hessian-vector products: ``(eigenvalue, unit eigenvector, products used)``.

    Stops when the Rayleigh quotient changes by less than ``tolerance`` (relative) or after ``iterations`` products.
    ``start`` warm-starts from a previous eigenvector; otherwise a normal vector drawn from ``generator``.
    ``method``: ``"autograd"`` (exact double-backward products) or ``"difference"`` (central differences, step
    ``eps``).
    """
    if method not in ("autograd", "difference"):
        raise ValueError(f"method must be 'autograd' or 'difference', got {method!r}")
    n = sum(a.numel() for a in alphas)
    ref = alphas[0]
    if start is None or start.numel() != n:
        start = torch.randn(n, generator=generator, dtype=torch.float64).to(ref.device, ref.dtype)
    v = start / start.norm().clamp_min(1e-30)
    value, used = 0.0, 0
    for used in range(1, iterations + 1):
        if method == "autograd":
            hv = autograd_hessian_vector_product(loss_fn, alphas, v)
        else:
            hv = hessian_vector_product(loss_fn, alphas, v, eps)
        new = float(torch.dot(v, hv))
        norm = hv.norm()
        if not torch.isfinite(norm) or float(norm) == 0.0:
            return new, v, used
        v = hv / norm
        if used > 1 and abs(new - value) <= tolerance * max(abs(new), 1e-12):
            return new, v, used
        value = new
    return value, v, used


class HessianEigenvalue(pl.Callback):
    """Log the dominant eigenvalue of ``∇²_α L_valid`` every ``every_n_epochs`` epochs (RobustDARTS' signal).

    Logged at the end of a training epoch as ``arch/hessian_eigenvalue`` (with ``arch/hessian_products``, the
    Hessian-vector products it took); :attr:`history` keeps ``(epochs completed, eigenvalue)`` pairs and travels in
    checkpoints. Each product costs a forward and a double backward (``"autograd"``) or two forward/backward passes
    (``"difference"``) over ``num_samples`` samples.

    Args:
        every_n_epochs: measure after every n-th epoch (and after the last).
        num_samples: samples of the validation (architecture) split the loss is taken over, the same every time.
        iterations: most power-iteration steps (Hessian-vector products).
        tolerance: stop when the eigenvalue estimate changes by less than this (relative).
        eps: finite-difference step along the unit direction (``"difference"`` only).
        method: ``"autograd"`` (exact products by double backward), ``"difference"`` (central differences of α
            gradients; unreliable across ReLU/max-pool kinks, see the module docstring) or ``"auto"``: autograd
            unless the supernet's mixed op is fused (first-order backward only), then difference.
        seed: seed of the first start vector (later measurements warm-start from the previous eigenvector).
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        num_samples: int = 128,
        iterations: int = 10,
        tolerance: float = 1e-2,
        eps: float = 1e-2,
        method: Literal["auto", "autograd", "difference"] = "auto",
        seed: int = 0,
    ):
        super().__init__()
        counts = {"every_n_epochs": every_n_epochs, "num_samples": num_samples, "iterations": iterations}
        for name, value in counts.items():
            if value < 1:
                raise ValueError(f"HessianEigenvalue: {name} must be >= 1, got {value}")
        if eps <= 0 or tolerance < 0:
            raise ValueError(f"HessianEigenvalue: eps must be > 0 and tolerance >= 0, got {eps}, {tolerance}")
        if method not in ("auto", "autograd", "difference"):
            raise ValueError(f"HessianEigenvalue: method must be 'auto', 'autograd' or 'difference', got {method!r}")
        self.method = method
        self.every_n_epochs, self.num_samples, self.iterations = every_n_epochs, num_samples, iterations
        self.tolerance, self.eps, self.seed = tolerance, eps, seed
        self.history: list[tuple[int, float]] = []
        self.seconds = 0.0
        self._batches: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self._vector: torch.Tensor | None = None

    def samples(self, trainer: pl.Trainer) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The first ``num_samples`` samples of the validation loader, as batches (cached for the run)."""
        if self._batches is None:
            dm = trainer.datamodule
            loader = dm.val_dataloader() if dm is not None else trainer.val_dataloaders
            self._batches = list(first_samples(loader, self.num_samples))
            if not self._batches:
                raise ValueError("HessianEigenvalue: the validation loader yielded no samples")
        return self._batches

    def product_method(self, net: torch.nn.Module) -> str:
        """The product ``method`` resolves to on ``net`` (``"auto"``: difference only for a fused mixed op)."""
        if self.method != "auto":
            return self.method
        impl = getattr(getattr(net, "edge_options", None), "mixed_op_impl", None)
        return "difference" if impl is not None and impl.startswith("fused") else "autograd"

    def measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple[float, int]:
        """``(dominant eigenvalue, Hessian-vector products)`` of the validation loss at the current α."""
        net = find_supernet(pl_module, "HessianEigenvalue")
        device = next(net.parameters()).device
        batches = [(x.to(device), y.to(device)) for x, y in self.samples(trainer)]
        total = sum(len(y) for _, y in batches)
        alphas = [group.alpha for group in net.arch_groups.values()]

        def loss() -> torch.Tensor:
            weights = net.edge_weights()
            return sum(F.cross_entropy(net(x, weights), y, reduction="sum") for x, y in batches) / total

        method = self.product_method(net)
        generator = torch.Generator().manual_seed(self.seed)  # never the global RNG: the search's stream stays as is
        with measuring(net, train=True), torch.enable_grad():
            value, self._vector, used = dominant_eigenvalue(
                loss, alphas, self.iterations, self.tolerance, self.eps, self._vector, generator, method
            )
        return value, used

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        done = trainer.current_epoch + 1
        last = trainer.max_epochs is not None and done >= trainer.max_epochs
        if done % self.every_n_epochs and not last:
            return
        start = time.perf_counter()
        value, used = self.measure(trainer, pl_module)
        self.seconds += time.perf_counter() - start
        self.history = [h for h in self.history if h[0] != done] + [(done, value)]
        pl_module.log("arch/hessian_eigenvalue", value, on_step=False, on_epoch=True)
        pl_module.log("arch/hessian_products", float(used), on_step=False, on_epoch=True)
        rank_zero_info(f"dnas: epoch {done}: dominant Hessian eigenvalue of the validation loss w.r.t. α {value:.4g}")

    def state_dict(self) -> dict[str, Any]:
        return {"history": [list(h) for h in self.history], "seconds": self.seconds}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [(int(e), float(v)) for e, v in state_dict.get("history", [])]
        self.seconds = float(state_dict.get("seconds", 0.0))
