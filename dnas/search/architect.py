"""The architecture gradient of DARTS (Liu et al., ICLR 2019, §2.3; reference quark0/darts `cnn/architect.py`).

First order: ``∇_α L_val(w, α)``, one ``torch.autograd.grad`` in :meth:`dnas.search.darts.DARTS.arch_step`.

Second order (unrolled): with the virtual step ``w' = w − η·(μ·m + ∇_w L_train(w, α) + λ·w)``,
``∇_α L_val(w', α) − η · [∇_α L_train(w⁺, α) − ∇_α L_train(w⁻, α)] / (2ε)``, ``w± = w ± ε·∇_{w'} L_val(w', α)``,
``ε = 0.01 / ‖∇_{w'} L_val(w', α)‖``. Implemented in place on the supernet's parameters
(one saved copy of w instead of a second model); w is restored bit-exactly afterwards. BatchNorm running statistics
are restored after the forward at w' (the reference runs it on a throw-away model copy), and see the train-mode
forwards of the virtual step and of the Hessian-vector product, as in the reference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

LossFn = Callable[[], torch.Tensor]


@torch.no_grad()
def _add_(params: Sequence[torch.Tensor], vecs: Sequence[torch.Tensor], alpha: float) -> None:
    torch._foreach_add_(list(params), list(vecs), alpha=alpha)
    # an autocast context with its cache on (torch's default; Lightning's plugin turns it off) keeps the low-precision
    # copy of each weight until it exits, whatever happens to the weight in between: without this, the forwards at w'
    # and w± would still see w (measured: a 0.30 instead of 0.13 relative error of the bf16 α gradient)
    torch.clear_autocast_cache()


@torch.no_grad()
def _restore(tensors: Sequence[torch.Tensor], saved: Sequence[torch.Tensor]) -> None:
    for t, s in zip(tensors, saved):
        t.copy_(s)
    torch.clear_autocast_cache()


def unrolled_grad(
    train_loss: LossFn,
    val_loss: LossFn,
    weights: Sequence[torch.Tensor],
    arch_params: Sequence[torch.Tensor],
    lr: float,
    momentum: float,
    weight_decay: float,
    momentum_buffers: Sequence[torch.Tensor | None],
    r: float = 1e-2,
    buffers: Sequence[torch.Tensor] = (),
    loss_scale: float = 1.0,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Second-order DARTS α gradient; returns ``(grads, val_loss_at_w')``.

    With ``loss_scale`` S (a mixed-precision loss scale) every gradient is taken of S times the loss, so float16
    backward passes do not underflow; the virtual step and ε use the unscaled weight gradients, and the returned α
    gradients are those of S·L (the formula is linear in them), for the loss scaler to unscale and inf-check.

    Args:
        train_loss: closure computing L_train at the current parameter values (same train batch each call).
        val_loss: closure computing L_val at the current parameter values (same valid batch each call).
        weights: the network weights w (modified in place during the call, restored on return).
        arch_params: α (and β) tensors.
        lr: η, the current weight learning rate (ξ = η as in the paper's footnote).
        momentum: μ of the weight SGD.
        weight_decay: λ of the weight SGD.
        momentum_buffers: SGD momentum buffer per weight (None where SGD has none yet).
        r: numerator of ε = r / ‖v‖.
        buffers: module buffers (BN statistics) to keep unchanged by the forward at w'.
        loss_scale: S, the factor every loss is multiplied by before its gradient is taken.
    """
    weights = list(weights)
    # 1. virtual step w' = w - η(μ m + ∇w L_train + λ w)
    loss = train_loss()
    dtheta = torch.autograd.grad(loss * loss_scale, weights, allow_unused=True)
    with torch.no_grad():
        step = []
        for w, g, m in zip(weights, dtheta, momentum_buffers):
            d = torch.zeros_like(w) if g is None else g / loss_scale
            d.add_(w, alpha=weight_decay)
            if m is not None:
                d.add_(m, alpha=momentum)
            step.append(d)
        saved_buffers = [b.clone() for b in buffers]
        saved = [w.detach().clone() for w in weights]  # restore bit-exactly, not by adding back
    _add_(weights, step, -lr)
    try:
        # 2. L_val at w': grads for α and v = ∇w' L_val
        vloss = val_loss()
        grads = torch.autograd.grad(vloss * loss_scale, list(arch_params) + weights, allow_unused=True)
    finally:
        _restore(weights, saved)
        _restore(buffers, saved_buffers)
    n_a = len(arch_params)
    g_alpha = [torch.zeros_like(a) if g is None else g for a, g in zip(arch_params, grads[:n_a])]
    v = [torch.zeros_like(w) if g is None else g / loss_scale for w, g in zip(weights, grads[n_a:])]
    # 3. finite-difference Hessian-vector product around w
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in v]))
    R = r / float(norm) if float(norm) > 0 else 0.0
    if R == 0.0:
        return [g.detach() for g in g_alpha], vloss.detach()
    _add_(weights, v, R)
    # The finite difference runs in full precision even under mixed-precision autocast: w± differ from w by ε·v, about
    # 1e-3 of a weight, below bfloat16's resolution (2^-8), and the difference of the two gradients would be rounding
    # noise divided by 2ε.
    try:
        with torch.autocast(weights[0].device.type, enabled=False):
            gp = torch.autograd.grad(train_loss() * loss_scale, arch_params, allow_unused=True)
            _add_(weights, v, -2 * R)
            gn = torch.autograd.grad(train_loss() * loss_scale, arch_params, allow_unused=True)
    finally:
        _restore(weights, saved)
    out = []
    for a, ga, p, n in zip(arch_params, g_alpha, gp, gn):
        p = torch.zeros_like(a) if p is None else p
        n = torch.zeros_like(a) if n is None else n
        out.append((ga - lr * (p - n) / (2 * R)).detach())
    return out, vloss.detach()
