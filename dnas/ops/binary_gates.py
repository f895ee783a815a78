"""ProxylessNAS binary gates: one sampled path for the weight step, two for the architecture step.

Cai, Zhu & Han, "ProxylessNAS: Direct Neural Architecture Search on Target Task and Hardware", ICLR 2019, §3.2;
reference mit-han-lab/proxylessnas, ``search/modules/mix_op.py``, mode ``two``.

Per edge, path probabilities ``p = softmax(α)`` (selection masks and fixed edges applied) and binary gates ``g``:

* **weight step** (:func:`sample_single_paths`): one path drawn from ``p``; its gate is 1, every other 0, so a mixed op
  in sampled execution runs that op only. The rows are constants (the weight step does not train α).
* **architecture step** (:func:`sample_two_paths`): two paths drawn from ``p`` without replacement; the other paths are
  masked "as if they do not exist" and the probabilities re-normalised over the two, ``p̃ = softmax(α_a, α_b)``; one of
  the two is drawn from ``p̃`` and its gate opened (the reference's order). The row holds ``1 + (p̃ − sg(p̃))`` for the
  open gate and ``−p̃`` for the closed one (the ``"binary_gate"`` mode of :class:`~dnas.ops.mixed.MixedOp`: both ops run,
  the value is the open op's output), so autograd gives, for ``i`` among the two,
  ``∂L/∂α_i = Σ_j ∂L/∂g_j · p̃_j (δ_ij − p̃_i)`` with ``∂L/∂g_j = ⟨∂L/∂out, op_j(x)⟩`` (paper, Eq. 4; reference
  ``set_arch_param_grad``), and exactly 0 for the paths not sampled.
* after the α update, :func:`rescale_sampled` shifts the two sampled α by a common offset so that
  ``Σ_{sampled} exp(α)`` is what it was before the update: the unsampled paths' probabilities are unchanged (paper,
  §3.2, "we need to rescale the value of these two updated architecture parameters"; reference
  ``rescale_updated_arch_param``: ``α_i −= log(Σ exp(α_new) / Σ exp(α_old))`` over the two).

Rows with a single available path (a fixed edge, one op left by selection) get that path's gate, a constant; rows with
none (a removed edge) stay zero. The draws come from a CPU ``generator`` (the search module's, saved in checkpoints).
"""

from __future__ import annotations

import torch


def sample_single_paths(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One path per row of ``probs`` ``(E, K)`` drawn by its probabilities: one-hot constant rows (zero rows stay 0)."""
    p = probs.detach().float().cpu()
    out = torch.zeros_like(p)
    live = (p > 0).any(-1).nonzero().flatten()
    if live.numel():
        idx = torch.multinomial(p[live], 1, generator=generator)
        out[live] = torch.zeros(live.numel(), p.shape[1]).scatter_(1, idx, 1.0)
    return out.to(device=probs.device, dtype=probs.dtype)


def sample_two_paths(
    alpha: torch.Tensor, probs: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Binary gates of the architecture step (module docstring) for one α table.

    Args:
        alpha: ``(E, K)`` architecture parameters (the gradient goes to them).
        probs: ``(E, K)`` path probabilities to sample from (softmax α with selection applied); zero = unavailable.
        generator: CPU RNG of the draws.

    Returns:
        ``(gates, gate_probs, sampled)``: the gate rows for the mixed ops (``1 + (p̃ − sg(p̃))`` open, ``−p̃`` closed,
        0 elsewhere), ``p̃`` scattered over the sampled paths (for an expected cost, as the reference's
        ``current_prob_over_ops``), and the boolean ``(E, K)`` mask of the paths sampled in rows with two.
    """
    p = probs.detach().float().cpu()
    E, K = p.shape
    available = (p > 0).sum(-1)
    base = torch.zeros_like(p).scatter_(1, p.argmax(-1, keepdim=True), 1.0) * (available == 1)[:, None]  # 1-path rows
    base = base.to(device=alpha.device, dtype=alpha.dtype)
    sampled = torch.zeros(E, K, dtype=torch.bool)
    rows = (available >= 2).nonzero().flatten()
    if not rows.numel():
        return base, base, sampled.to(alpha.device)
    pair = torch.multinomial(p[rows], 2, replacement=False, generator=generator)  # (R, 2)
    sampled[rows[:, None], pair] = True
    rows_d, pair_d = rows.to(alpha.device), pair.to(alpha.device)
    p2 = torch.softmax(alpha[rows_d].gather(1, pair_d), dim=-1)  # p̃ over the two, exactly 0 gradient elsewhere
    opened = torch.multinomial(p2.detach().float().cpu(), 1, generator=generator)  # (R, 1): 0 or 1
    is_open = torch.zeros(rows.numel(), 2, dtype=torch.bool).scatter_(1, opened, True).to(alpha.device)
    gate_vals = torch.where(is_open, 1 + (p2 - p2.detach()), -p2)  # value exactly 1 / −p̃
    zeros = torch.zeros(rows.numel(), K, device=alpha.device, dtype=p2.dtype)
    gates = base.index_copy(0, rows_d, zeros.scatter(1, pair_d, gate_vals).to(alpha.dtype))
    gate_probs = base.index_copy(0, rows_d, zeros.scatter(1, pair_d, p2).to(alpha.dtype))
    return gates, gate_probs, sampled.to(alpha.device)


@torch.no_grad()
def rescale_sampled(alpha: torch.Tensor, before: torch.Tensor, sampled: torch.Tensor) -> None:
    """Shift each row's sampled α (in place) so that ``Σ_{sampled} exp(α)`` equals its value in ``before``.

    Rows without a sampled path are left alone. Unsampled paths keep their probabilities ``softmax(α)`` exactly as
    before the update (when the update left their α unchanged); the sampled paths keep their ratio.
    """
    rows = sampled.any(-1)
    if not bool(rows.any()):
        return
    neg_inf = torch.tensor(float("-inf"), dtype=alpha.dtype, device=alpha.device)
    offset = torch.where(sampled, alpha, neg_inf).logsumexp(-1) - torch.where(sampled, before, neg_inf).logsumexp(-1)
    alpha.sub_(torch.where(sampled, offset[:, None], torch.zeros_like(alpha)))
