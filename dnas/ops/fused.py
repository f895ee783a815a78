"""The fused mixed op: ``Σ_k w_k · op_k(x)`` as one autograd node with an explicit backward.

The naive mixed op lets autograd record every candidate op, so backward keeps each op's output and all of its
intermediates (≈25 input-sized tensors per DARTS edge). :class:`FusedMixedFunction` instead runs the candidates under
``no_grad`` and records a single node:

* forward: ``none`` (:class:`~dnas.ops.darts.Zero`) is skipped (it adds an exact zero; its α gradient stays a true
  zero); one ReLU is shared by every candidate that starts with ``ReLU`` (sep/dil convs, ReLUConvBN, …); outputs are
  combined by ``dnas::weighted_sum`` in op order, so the result is bitwise the naive sum; BatchNorm running statistics
  and ``num_batches_tracked`` are updated exactly once, by this forward.
* policy ``"recompute"`` (``impl="fused"``) saves only ``x``, the op weights and the RNG state; backward recomputes
  the candidates **one at a time** (the generic op-by-op path: it works for any candidate list, e.g. a user's 1-D or
  tabular ops), takes ``∂L/∂w_k = ⟨g, op_k(x)⟩`` with ``dnas::weighted_inner`` and back-propagates ``w_k · g`` through
  that op alone, so at most one candidate's graph is alive. Buffers touched by the recompute (BN running statistics)
  are restored, so they see exactly one update per step, as with the naive op.
* policy ``"save"`` (``impl="fused_save"``) keeps the candidates' graphs from the forward (minus the shared ReLU
  copies and ``none``): more memory, no recomputation.

Backward is first-order only (a double backward raises :data:`_DOUBLE_BACKWARD`). An op whose weight is exactly 0 is
skipped where that is exact: the weights need no gradient and the op has no buffers to update in this mode (e.g.
BatchNorm in eval); ``skip_zero_weights`` (:class:`~dnas.ops.mixed.MixedOp`) skips it even when BatchNorm trains.
"""

from __future__ import annotations

import torch
from torch import nn

from dnas.ops.heap import maybe_trim
from dnas.ops.kernels import weighted_inner, weighted_inner_reference, weighted_sum
from dnas.ops.stages import ReLUStage, Stage, compile_chain

FUSED_POLICIES: tuple[str, ...] = ("recompute", "save")

_DOUBLE_BACKWARD = (
    "the fused MixedOp (impl='fused'/'fused_save') has a first-order backward only; double backward "
    "(create_graph=True, e.g. exact second-order α gradients) needs mixed_op_impl='naive'. DARTS(unrolled=True) "
    "works with the fused op: its Hessian-vector product uses finite differences of first derivatives."
)


class _Plan:
    """Static facts about a mixed op's candidates, computed once per module."""

    def __init__(self, ops: nn.ModuleList):
        self.zero = [bool(type(op).__dict__.get("is_zero", False)) for op in ops]
        self.tail = [None if z else _relu_tail_safe(op) for op, z in zip(ops, self.zero)]
        params: list[nn.Parameter] = []
        index: dict[int, int] = {}
        self.param_index: list[list[int]] = []
        for op in ops:
            idx = []
            for p in op.parameters():
                if id(p) not in index:
                    index[id(p)] = len(params)
                    params.append(p)
                idx.append(index[id(p)])
            self.param_index.append(idx)
        self.num_params = len(params)
        self.pindex = index
        self.has_buffers = [any(True for _ in op.buffers()) for op in ops]
        # the fast path: candidates that compile to a chain of known stages (dnas.ops.stages); None = generic path
        self.chains: list[list[Stage] | None] = [None if z else compile_chain(op) for op, z in zip(ops, self.zero)]
        self.chain_relu = [False] * len(ops)  # chain starts with a ReLU: it runs on the shared ReLU
        for k, chain in enumerate(self.chains):
            if chain and isinstance(chain[0], ReLUStage):
                self.chains[k], self.chain_relu[k] = chain[1:], True


def _relu_tail_safe(op: nn.Module) -> nn.Module | None:
    """The part of ``op`` after its leading ``nn.ReLU``, or None.

    Only for ops whose forward is exactly their ``nn.Sequential`` (a plain ``Sequential``, or an op whose class
    declares ``sequential_forward``, as the DARTS blocks): a user's module with its own ``forward`` is run whole.
    """
    attr = type(op).__dict__.get("sequential_forward")
    seq = getattr(op, attr) if attr else op
    if type(seq) is nn.Sequential and len(seq) > 1 and type(seq[0]) is nn.ReLU:
        return seq[1:]
    return None


def plan_for(mixed: nn.Module) -> _Plan:
    plan = mixed.__dict__.get("_fused_plan")
    if plan is None:
        plan = _Plan(mixed._ops)
        mixed.__dict__["_fused_plan"] = plan
    return plan


def _active_ops(plan: _Plan, ops: nn.ModuleList, weights: torch.Tensor, skip_zero: bool) -> list[int]:
    """Indices of the candidates to run, in op order."""
    can_skip = not weights.requires_grad
    wvals = weights.detach().tolist() if can_skip else None
    active = []
    for k, op in enumerate(ops):
        if plan.zero[k]:
            continue
        if can_skip and wvals[k] == 0.0 and (skip_zero or not (op.training and plan.has_buffers[k])):
            continue
        active.append(k)
    return active


def _run(plan: _Plan, ops: nn.ModuleList, k: int, x: torch.Tensor, r: torch.Tensor | None) -> torch.Tensor:
    tail = plan.tail[k]
    return tail(r) if tail is not None else ops[k](x)


class _BuffersKept:
    """Restore the buffers of ``module`` on exit (the recompute must not update BN running statistics again)."""

    def __init__(self, module: nn.Module, active: bool):
        self.buffers = [b for b in module.buffers()] if active else []

    def __enter__(self):
        self.saved = [b.clone() for b in self.buffers]

    def __exit__(self, *exc):
        with torch.no_grad():
            for b, s in zip(self.buffers, self.saved):
                b.copy_(s)


def _accumulate(acc: torch.Tensor | None, o: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``acc + w·o`` through ``dnas::weighted_sum`` (``1·acc`` is exact, so the naive rounding order is kept)."""
    if o.device.type == "cpu":  # the reference kernel's arithmetic, minus its exact `1·acc`: one pass fewer
        return w * o if acc is None else acc.add_(w * o)
    if acc is None:
        return weighted_sum([o], w.reshape(1))
    return weighted_sum([acc, o], torch.stack((torch.ones_like(w), w)))


def _chain_forward(chain: list[Stage], x: torch.Tensor, keep: bool):
    """Run a compiled chain (the real forward: buffers update).

    Returns its output, each stage's aux and, with ``keep`` (policy ``save``), each stage's input.
    """
    auxs, inputs = [], []
    for stage in chain:
        if keep:
            inputs.append(x)
        x, aux = stage.forward(x)
        auxs.append(aux)
    return x, auxs, inputs if keep else None


def _chain_replay(chain: list[Stage], x: torch.Tensor, auxs: list) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Recompute a chain with the forward's statistics (no side effects); return the output and the stage inputs."""
    inputs = []
    for stage, aux in zip(chain, auxs):
        inputs.append(x)
        x = stage.replay(x, aux)
    return x, inputs


def _pack(chain_saved: dict) -> tuple[list, list[torch.Tensor]]:
    """Flatten ``{k: (auxs, inputs, out)}`` into a tensor list and a layout of indices into it (None kept)."""
    tensors: list[torch.Tensor] = []

    def put(t):
        if t is None:
            return None
        if isinstance(t, tuple):
            return tuple(put(a) for a in t)
        tensors.append(t)
        return len(tensors) - 1

    layout = []
    for k, (auxs, inputs, out) in chain_saved.items():
        layout.append((k, [put(a) for a in auxs], None if inputs is None else [put(t) for t in inputs], put(out)))
    return layout, tensors


def _unpack(layout: list | None, tensors) -> dict:
    if not layout:
        return {}

    def get(i):
        if i is None:
            return None
        if isinstance(i, tuple):
            return tuple(get(a) for a in i)
        return tensors[i]

    return {
        k: ([get(a) for a in auxs], None if ins is None else [get(i) for i in ins], get(o))
        for k, auxs, ins, o in layout
    }


def _inner(grad: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
    """``⟨grad, o⟩``: ``dnas::weighted_inner`` on CUDA, its reference called directly on CPU.

    The first dispatch of a custom op costs ≈ 150 MB of one-time RSS, which CPU runs need not pay.
    """
    if grad.device.type == "cpu":
        return weighted_inner_reference(grad, [o])[0]
    return weighted_inner(grad, [o])[0]


class FusedMixedFunction(torch.autograd.Function):
    """``Σ_k w_k · op_k(x)``, explicit backward; ``apply(mixed, policy, skip_zero, record, x, weights, *params)``."""

    @staticmethod
    def forward(ctx, mixed, policy, skip_zero, record, x, weights, *params):
        ops, plan = mixed._ops, plan_for(mixed)
        active = _active_ops(plan, ops, weights, skip_zero)
        if not active and not any(plan.zero):  # nothing to run and no `none` op to give the output shape
            active = [0]
        ctx.mixed, ctx.policy, ctx.active = mixed, policy, active
        # compiled chains handle batched 2-D feature maps; anything else takes the generic path
        chain_of = plan.chains if x.dim() == 4 else [None] * len(ops)
        ctx.shared_relu = any(
            (plan.chain_relu[k] if chain_of[k] is not None else plan.tail[k] is not None) for k in active
        )
        save = policy == "save" and record
        if policy == "recompute" and record:  # what the recompute must reproduce: RNG streams and autocast
            ctx.cpu_rng = torch.get_rng_state()
            ctx.cuda_rng = torch.cuda.get_rng_state(x.device) if x.is_cuda else None
            dev = x.device.type
            ctx.autocast = (dev, torch.is_autocast_enabled(dev), torch.get_autocast_dtype(dev))
        with torch.enable_grad() if save else torch.no_grad():
            xi = x.detach().requires_grad_(ctx.needs_input_grad[4]) if save else x
            r = torch.relu(xi) if ctx.shared_relu else None
            ri = r.detach().requires_grad_(ctx.needs_input_grad[4]) if (save and r is not None) else r
            outs, out, chain_saved = [], None, {}
            for k in active:  # accumulate as we go: at most two op outputs alive besides the sum
                chain = chain_of[k]
                if chain is not None:
                    with torch.no_grad():  # (with `save`, r is on the generic ops' graph: chains get it detached)
                        inp = (r if plan.chain_relu[k] else x).detach()
                        o, auxs, inputs = _chain_forward(chain, inp, keep=save)
                    chain_saved[k] = (auxs, inputs, o if save else None)
                else:
                    o = _run(plan, ops, k, xi, ri)
                out = _accumulate(out, o.detach(), weights.detach()[k])
                if save and chain is None:
                    outs.append(o)
                del o
        if out is None:  # only `none` ops ran: it gives the output shape
            out = ops[plan.zero.index(True)](x.detach())
        # parameters go through save_for_backward so an in-place change before backward raises, as with naive
        ctx.num_params = len(params)
        # the chains' tensors (BN statistics; with `save` also stage inputs and outputs) go through save_for_backward
        # too, so saved-tensor hooks see (and can count or offload) everything this node keeps
        ctx.chain_layout, chain_tensors = _pack(chain_saved) if record else (None, [])
        ctx.num_generic_outs = len(outs) if save else 0
        if save:
            ctx.graph = (xi, ri, outs)
        generic_outs = [o.detach() for o in outs] if save else []
        ctx.save_for_backward(x, weights, *params, *generic_outs, *chain_tensors)
        if policy == "recompute" and x.device.type == "cpu":
            maybe_trim()  # the lowest-memory policy gives freed temporaries back (dnas.ops.heap)
        return out

    @staticmethod
    def backward(ctx, grad):
        if torch.is_grad_enabled():
            raise RuntimeError(_DOUBLE_BACKWARD)
        mixed, plan, active = ctx.mixed, plan_for(ctx.mixed), ctx.active
        saved = ctx.saved_tensors
        x, weights, params = saved[0], saved[1], saved[2 : 2 + ctx.num_params]
        need_x, need_w = ctx.needs_input_grad[4], ctx.needs_input_grad[5]
        need_p = ctx.needs_input_grad[6:]
        grad = grad.contiguous()
        grad_w = torch.zeros_like(weights) if need_w else None
        grad_p: list[torch.Tensor | None] = [None] * len(params)
        grad_x = None
        grad_r = None
        for k in range(len(mixed._ops)):  # parameters of skipped ops get exact zero gradients, as with naive
            if k not in active:
                for i in plan.param_index[k]:
                    if need_p[i] and grad_p[i] is None:
                        grad_p[i] = torch.zeros_like(params[i])

        def accumulate(k, out, inp, is_relu):
            nonlocal grad_x, grad_r
            if need_w:
                grad_w[k] = _inner(grad, out.detach())
            if not out.requires_grad:  # the op does not depend on x or parameters
                return
            targets = [inp] if need_x else []
            pidx = [i for i in plan.param_index[k] if need_p[i]]
            targets += [params[i] for i in pidx]
            if not targets:
                return
            gs = torch.autograd.grad(out, targets, grad * weights[k].detach(), allow_unused=True)
            if need_x:
                g_in, gs = gs[0], gs[1:]
                if g_in is not None:
                    if is_relu:
                        grad_r = g_in if grad_r is None else grad_r + g_in
                    else:
                        grad_x = g_in if grad_x is None else grad_x + g_in
            for i, g in zip(pidx, gs):
                if g is not None:
                    grad_p[i] = g if grad_p[i] is None else grad_p[i] + g

        def chain_backward(k, o, inputs, auxs):
            nonlocal grad_x, grad_r
            if need_w:
                grad_w[k] = _inner(grad, o)
            wk = weights[k].detach()
            g = grad
            for stage, xin, aux in zip(reversed(plan.chains[k]), reversed(inputs), reversed(auxs)):
                g, pgs = stage.backward(g, xin, aux)  # linear in g: scaled by w_k once, below
                for p, pg in zip(stage.params, pgs):
                    i = plan.pindex[id(p)]
                    if pg is not None and need_p[i]:
                        pg = pg * wk
                        grad_p[i] = pg if grad_p[i] is None else grad_p[i] + pg
            if need_x:
                if plan.chain_relu[k]:
                    grad_r = g * wk if grad_r is None else grad_r.add_(g, alpha=wk.item())
                else:
                    grad_x = g * wk if grad_x is None else grad_x.add_(g, alpha=wk.item())

        chain_saved = _unpack(ctx.chain_layout, saved[2 + ctx.num_params + ctx.num_generic_outs :])
        if chain_saved:
            r = torch.relu(x) if any(plan.chain_relu[k] for k in chain_saved) and ctx.policy != "save" else None
            for k, (auxs, inputs, o) in chain_saved.items():
                if ctx.policy != "save":
                    o, inputs = _chain_replay(plan.chains[k], r if plan.chain_relu[k] else x, auxs)
                chain_backward(k, o, inputs, auxs)
                del o, inputs
            del r
        generic = [k for k in active if k not in chain_saved]  # candidates on the generic (autograd) path
        if ctx.policy == "save":
            xi, ri, outs = ctx.graph
            with torch.enable_grad():
                for k, out in zip(generic, outs):
                    is_relu = plan.tail[k] is not None
                    accumulate(k, out, ri if is_relu else xi, is_relu)
            del ctx.graph
        elif generic:  # recompute them (the compiled chains were replayed above)
            devices = [x.device] if x.is_cuda else []
            dev, amp, amp_dtype = ctx.autocast
            with torch.random.fork_rng(devices=devices), torch.autocast(dev, dtype=amp_dtype, enabled=amp):
                torch.set_rng_state(ctx.cpu_rng)
                if ctx.cuda_rng is not None:
                    torch.cuda.set_rng_state(ctx.cuda_rng, x.device)
                xi = x.detach().requires_grad_(need_x)
                relu_first = any(plan.tail[k] is not None for k in generic)
                ri = torch.relu(x.detach()).requires_grad_(need_x) if relu_first else None
                for k in generic:
                    op = mixed._ops[k]
                    is_relu = plan.tail[k] is not None
                    # restored after the op's backward (BN saves its running-stat tensors for backward)
                    with _BuffersKept(op, op.training and plan.has_buffers[k]), torch.enable_grad():
                        out = _run(plan, mixed._ops, k, xi, ri)
                        accumulate(k, out, ri if is_relu else xi, is_relu)
                        del out
        if need_x and grad_r is not None:
            gx = torch.ops.aten.threshold_backward(grad_r, x, 0)
            grad_x = gx if grad_x is None else grad_x + gx
        if need_x and grad_x is None:
            grad_x = torch.zeros_like(x)
        if ctx.policy == "recompute" and x.device.type == "cpu":
            maybe_trim()
        return (None, None, None, None, grad_x, grad_w, *grad_p)


def fused_mixed_op(
    mixed: nn.Module, x: torch.Tensor, weights: torch.Tensor, policy: str = "recompute", skip_zero_weights: bool = False
) -> torch.Tensor:
    """Apply :class:`FusedMixedFunction` to the candidates of ``mixed`` (a :class:`~dnas.ops.MixedOp`)."""
    if policy not in FUSED_POLICIES:
        raise ValueError(f"fused policy must be one of {FUSED_POLICIES}, got {policy!r}")
    if weights.dim() != 1:
        raise ValueError(f"the fused mixed op takes one weight per candidate, shape (K,); got {tuple(weights.shape)}")
    plan = plan_for(mixed)
    # each parameter once (candidates may share one), in the order of plan.param_index
    params = list({id(p): p for op in mixed._ops for p in op.parameters()}.values())
    if len(params) != plan.num_params:
        raise RuntimeError("the candidates' parameters changed after the fused mixed op was first used")
    grads_wanted = x.requires_grad or weights.requires_grad or any(p.requires_grad for p in params)
    record = torch.is_grad_enabled() and grads_wanted
    return FusedMixedFunction.apply(mixed, policy, skip_zero_weights, record, x, weights, *params)
