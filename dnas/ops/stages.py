"""Explicit forward/backward "stages" of candidate ops, for the fused mixed op's fast path.

A candidate that is a plain chain of known layers (ReLU, convolutions, BatchNorm, 3×3 pooling, FactorizedReduce,
Identity; this covers every DARTS/NASNet search candidate) is compiled by :func:`compile_chain` into a list of
:class:`Stage` objects. The fused mixed op then runs the chain without autograd and back-propagates through it by hand,
which is where it gets its speed on CPU:

* forward is **bitwise** what the ``nn.Module`` computes: convolutions and BatchNorm call the same ATen kernels; the
  3×3 max pool is the maximum of shifted views (max is exact in any order); the 3×3 average pool (CPU, contiguous
  NCHW) adds the window in the kernel's own order (row-major, padding skipped) and divides by the same count.
* backward is exact math in different kernels (gradients agree to rounding): the input gradient of a stride-1
  "same"-padded depthwise convolution is the convolution of the gradient with the flipped kernel (stride 2: ATen's
  transposed convolution without dilation, else the gradient spread over zeros at full resolution); its weight
  gradient is a batched matrix product over image rows (:func:`depthwise_weight_grad`); 1×1 convolutions are matrix
  products; pooling gradients are ATen's own backward kernels run channels-last (the max pool's argmax indices are
  recomputed by ATen, so ties go to the same first maximum). On this 2-core CPU ATen's depthwise backward took
  2.5–9× as long as these for 5×5 and dilated kernels (the plain 3×3 keeps ATen's weight gradient), and its NCHW
  pooling 6–8× as long as its channels-last kernels.
* BatchNorm stages record their batch statistics during the forward; a recomputation (policy ``recompute``)
  normalises with those, so it neither reduces again nor touches the running statistics.

Anything else (a user's module with its own ``forward``, 1-D ops, a conv with unusual padding mode) is not compiled
and the fused op runs it through its generic op-by-op autograd path instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_aten = torch.ops.aten


class Stage:
    """One layer of a compiled chain: ``forward`` (no autograd) and a hand-written ``backward``.

    ``forward(x)`` is the step's real forward (it may update buffers, e.g. BatchNorm's running statistics) and returns
    ``(y, aux)``, where ``aux`` is what a later ``replay``/``backward`` needs besides the input (BatchNorm's batch
    statistics). ``replay(x, aux)`` recomputes ``y`` without side effects. ``backward(g, x, aux)`` returns
    ``(grad_x, grads)`` with one entry (or None) per tensor of ``params``; it is linear in ``g``.
    """

    params: tuple[nn.Parameter, ...] = ()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, object]:
        raise NotImplementedError

    def replay(self, x: torch.Tensor, aux: object) -> torch.Tensor:
        return self.forward(x)[0]

    def backward(self, g: torch.Tensor, x: torch.Tensor, aux: object) -> tuple[torch.Tensor, tuple]:
        raise NotImplementedError


class ReLUStage(Stage):
    def forward(self, x):
        return torch.relu(x), None

    def backward(self, g, x, aux):
        return _aten.threshold_backward(g, x, 0), ()


def depthwise_weight_grad(x: torch.Tensor, g: torch.Tensor, k: int, d: int, p: int, s: int = 1) -> torch.Tensor:
    """∂L/∂w of a depthwise conv (kernel ``k``, dilation ``d``, zero padding ``p``, stride ``s``), ``(C, 1, k, k)``.

    ``w[c, i, j]`` collects ``Σ_{n,h,w} g[n,c,h,w] · x_pad[n,c,s·h+i·d,s·w+j·d]``. With each channel's padded images
    stacked row after row, kernel row ``i`` is one batched matrix product (batch = channels) between the gradient's
    rows and every ``s``-th input row from offset ``i·d`` (a strided view, no copy); the gradient is zero-extended to
    ``H_pad / s`` rows per image so rows never pair across images. Column ``j`` is then a strided diagonal of that
    ``W_out × W_pad`` product. Needs ``H_pad`` and ``2p`` divisible by ``s`` (always true for s ∈ {1, 2}, even sizes).
    """
    N, C, Ho, Wo = g.shape
    Hp, Wp = x.shape[2] + 2 * p, x.shape[3] + 2 * p
    if Hp % s or (2 * p) % s:
        raise ValueError(f"depthwise_weight_grad: padded height {Hp} and 2·padding {2 * p} must divide by stride {s}")
    xt = x.new_zeros(C, N, Hp, Wp)
    xt[:, :, p : p + x.shape[2], p : p + x.shape[3]] = x.transpose(0, 1)
    hq = Hp // s
    ge = g.new_zeros(C, N, hq, Wo)
    ge[:, :, :Ho] = g.transpose(0, 1)
    rows = N * hq - (2 * p) // s
    a = ge.view(C, N * hq, Wo)[:, :rows].transpose(1, 2)
    out = g.new_empty(C, k, k)
    for i in range(k):
        xs = xt.as_strided((C, rows, Wp), (N * Hp * Wp, s * Wp, 1), xt.storage_offset() + i * d * Wp)
        m = torch.bmm(a, xs)
        out[:, i] = m.as_strided((C, k, Wo), (Wo * Wp, d, Wp + s), m.storage_offset()).sum(-1)
    return out.view(C, 1, k, k)


class ConvStage(Stage):
    """Any ``nn.Conv2d`` with zero padding; fast backward for stride-1 depthwise "same" convs and 1×1 convs."""

    def __init__(self, conv: nn.Conv2d):
        self.conv = conv
        self.params = tuple(p for p in (conv.weight, conv.bias) if p is not None)
        k, d, s, p = conv.kernel_size, conv.dilation, conv.stride, conv.padding
        square = k[0] == k[1] and d[0] == d[1] and s[0] == s[1] and p[0] == p[1]
        self.depthwise_same = (
            (conv.groups == conv.in_channels == conv.out_channels and square and p[0] == d[0] * (k[0] - 1) // 2)
            and k[0] % 2 == 1
            and s[0] in (1, 2)
        )
        self.pointwise = k == (1, 1) and s == (1, 1) and p == (0, 0) and conv.groups == 1

    def forward(self, x):
        return self.conv(x), None

    def replay(self, x, aux):
        if self.pointwise and x.dim() == 4 and self.conv.bias is None:  # a matrix product: 4× ATen's 1×1 conv here
            w = self.conv.weight
            return torch.matmul(w.view(w.shape[0], -1), x.reshape(x.shape[0], x.shape[1], -1)).view(
                x.shape[0], w.shape[0], x.shape[2], x.shape[3]
            )
        return self.conv(x)

    def backward(self, g, x, aux):
        conv = self.conv
        w = conv.weight
        gb = g.sum((0, 2, 3)) if conv.bias is not None and conv.bias.requires_grad else None
        if self.pointwise and x.dim() == 4:
            N, Ci, Co = x.shape[0], x.shape[1], g.shape[1]
            gx = torch.matmul(w.view(Co, Ci).t(), g.reshape(N, Co, -1)).view_as(x)
            gw = torch.bmm(g.reshape(N, Co, -1), x.reshape(N, Ci, -1).transpose(1, 2)).sum(0).view_as(w)
            return gx, (gw,) if gb is None else (gw, gb)
        stride = conv.stride[0]
        if self.depthwise_same and x.dim() == 4 and x.shape[2] % stride == 0 and x.shape[3] % stride == 0:
            k, d, p, s = conv.kernel_size[0], conv.dilation[0], conv.padding[0], conv.stride[0]
            if s == 1:  # the transpose of a stride-1 "same" conv is the conv with the flipped kernel
                gx = F.conv2d(g, w.flip(-2, -1), None, 1, p, d, conv.groups)
            elif d == 1:  # ATen's transposed conv is fast (and bitwise its own backward) without dilation
                pad = [x.shape[i] - ((g.shape[i] - 1) * s - 2 * p + d * (k - 1) + 1) for i in (2, 3)]
                gx = F.conv_transpose2d(g, w, None, s, p, pad, conv.groups, d)
            else:  # the strided conv is the stride-1 conv sampled every s: spread g over zeros, flip the kernel
                gz = g.new_zeros(x.shape)
                gz[:, :, ::s, ::s] = g
                gx = F.conv2d(gz, w.flip(-2, -1), None, 1, p, d, conv.groups)
            if k == 3 and d == 1 and s == 1:  # ATen's own weight gradient is fastest for the plain 3×3 kernel
                gw = _aten.convolution_backward(g, x, w, None, [1, 1], [p, p], [d, d], False, [0, 0], conv.groups,
                                                [False, True, False])[1]  # fmt: skip
            else:
                gw = depthwise_weight_grad(x, g, k, d, p, s)
            return gx, (gw,) if gb is None else (gw, gb)
        gx, gw, _ = _aten.convolution_backward(
            g, x, w, None, list(conv.stride), list(conv.padding), list(conv.dilation), False, [0, 0], conv.groups,
            [True, True, False],
        )  # fmt: skip
        return gx, (gw,) if gb is None else (gw, gb)


class BatchNormStage(Stage):
    """``nn.BatchNorm2d`` (any affine/momentum/tracking setting): the module's own update rule, ATen's kernels."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm):
        self.bn = bn
        self.params = tuple(p for p in (bn.weight, bn.bias) if p is not None)

    def _batch_stats(self) -> bool:
        bn = self.bn
        return bn.training or bn.running_mean is None

    def forward(self, x):
        bn = self.bn
        factor = 0.0 if bn.momentum is None else bn.momentum
        if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
            bn.num_batches_tracked.add_(1)
            factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
        batch = self._batch_stats()
        rm = bn.running_mean if (not bn.training or bn.track_running_stats) else None
        rv = bn.running_var if (not bn.training or bn.track_running_stats) else None
        y, mean, invstd = torch.native_batch_norm(x, bn.weight, bn.bias, rm, rv, batch, factor, bn.eps)
        return y, (mean, invstd) if batch else None

    def replay(self, x, aux):
        bn = self.bn
        if aux is None:  # running statistics: no side effects in eval mode
            return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        mean, invstd = aux
        scale = invstd if bn.weight is None else invstd * bn.weight
        shift = -mean * scale if bn.bias is None else bn.bias - mean * scale
        return torch.addcmul(shift.view(1, -1, 1, 1), x, scale.view(1, -1, 1, 1))

    def backward(self, g, x, aux):
        bn = self.bn
        mean, invstd = aux if aux is not None else (None, None)
        want_w = bn.weight is not None and bn.weight.requires_grad
        gx, gw, gb = _aten.native_batch_norm_backward(
            g, x, bn.weight, bn.running_mean, bn.running_var, mean, invstd, aux is not None, bn.eps,
            [True, want_w, want_w],
        )  # fmt: skip
        return gx, (gw, gb) if bn.weight is not None else ()


def _pool_out(size: int, stride: int) -> int:
    return (size + 2 - 3) // stride + 1


def _fold_taps(x: torch.Tensor, stride: int, pad_value: float, combine) -> torch.Tensor:
    """Fold the nine shifted (strided) views of ``x`` padded by 1 with ``pad_value``, in the window's row-major order.

    Starts from a copy of the first view; ``combine(acc, view)`` returns the new accumulator (it may work in place).
    """
    ho, wo = _pool_out(x.shape[2], stride), _pool_out(x.shape[3], stride)
    xp = F.pad(x, (1, 1, 1, 1), value=pad_value)
    acc = None
    for i in range(3):
        for j in range(3):
            v = xp[:, :, i : i + stride * (ho - 1) + 1 : stride, j : j + stride * (wo - 1) + 1 : stride]
            acc = v.clone() if acc is None else combine(acc, v)
    return acc


class MaxPoolStage(Stage):
    """``nn.MaxPool2d(3, stride, padding=1)``: maxima of shifted views; gradient through recomputed argmax indices."""

    def __init__(self, pool: nn.MaxPool2d):
        self.stride = pool.stride if isinstance(pool.stride, int) else pool.stride[0]

    def forward(self, x):
        return _fold_taps(x, self.stride, float("-inf"), torch.maximum), None

    def backward(self, g, x, aux):
        s = self.stride
        # ATen's argmax (first maximum in window order): channels-last runs its vectorised kernel, 6× the NCHW speed
        cl = torch.channels_last
        _, idx = F.max_pool2d(x.contiguous(memory_format=cl), 3, s, 1, return_indices=True)
        gx = _aten.max_pool2d_with_indices_backward(
            g.contiguous(memory_format=cl), x.contiguous(memory_format=cl), [3, 3], [s, s], [1, 1], [1, 1], False, idx
        )
        return gx.contiguous(), ()


class AvgPoolStage(Stage):
    """``nn.AvgPool2d(3, stride, padding=1, count_include_pad=False)``."""

    def __init__(self, pool: nn.AvgPool2d):
        self.pool = pool
        self.stride = pool.stride if isinstance(pool.stride, int) else pool.stride[0]

    def forward(self, x):
        if x.device.type != "cpu" or not x.is_contiguous():  # the ATen kernel's summation order is known on CPU only
            return self.pool(x), None
        add = torch.Tensor.add_  # padding adds an exact 0, in ATen's order (ih, iw)
        total = _fold_taps(x, self.stride, 0.0, add)
        count = _fold_taps(x.new_ones(1, 1, x.shape[2], x.shape[3]), self.stride, 0.0, add)  # in-image taps
        return total.div_(count), None

    def backward(self, g, x, aux):
        s, cl = self.stride, torch.channels_last  # ATen's own backward, channels-last: 8× the NCHW kernel's speed
        gx = _aten.avg_pool2d_backward(
            g.contiguous(memory_format=cl), x.contiguous(memory_format=cl), [3, 3], [s, s], [1, 1], False, False, None
        )
        return gx.contiguous(), ()


class FactorizedReduceStage(Stage):
    """The two offset 1×1 stride-2 convolutions of :class:`~dnas.ops.darts.FactorizedReduce`, concatenated."""

    def __init__(self, fr: nn.Module):
        self.fr = fr
        self.params = (fr.conv_1.weight, fr.conv_2.weight)

    def forward(self, x):
        if any(n % 2 for n in x.shape[2:]):
            self.fr(x)  # raises the module's own error about odd sizes
        fr = self.fr
        return torch.cat([fr.conv_1(x), fr.conv_2(x[:, :, 1:, 1:])], dim=1), None

    def backward(self, g, x, aux):
        half = g.shape[1] // 2
        gx = torch.zeros_like(x)
        grads = []
        for conv, sub, gh in ((self.fr.conv_1, (0, 0), g[:, :half]), (self.fr.conv_2, (1, 1), g[:, half:])):
            xs = x[:, :, sub[0] :: 2, sub[1] :: 2]
            N, Ci, Co = x.shape[0], x.shape[1], gh.shape[1]
            gm = gh.reshape(N, Co, -1)
            gx[:, :, sub[0] :: 2, sub[1] :: 2] = torch.matmul(conv.weight.view(Co, Ci).t(), gm).view_as(xs)
            grads.append(torch.bmm(gm, xs.reshape(N, Ci, -1).transpose(1, 2)).sum(0).view_as(conv.weight))
        return gx, tuple(grads)


def compile_chain(op: nn.Module) -> list[Stage] | None:
    """The stages of ``op``, or None when ``op`` is not a chain of known layers (the generic path then runs it).

    An empty list means the identity. Only modules whose ``forward`` is exactly their layers in order are split: a
    plain ``nn.Sequential``, an op whose class declares ``sequential_forward`` (the attribute holding its layers, e.g.
    the DARTS blocks' ``.op``) or ``fused_stages()`` (e.g. ``FactorizedReduce``). The declaration is read from the
    class itself, not inherited: a subclass with its own forward runs whole.
    """
    declared = type(op).__dict__
    if "fused_stages" in declared:
        return op.fused_stages()
    if "sequential_forward" in declared:
        return compile_chain(getattr(op, declared["sequential_forward"]))
    if type(op) is nn.Sequential:
        stages: list[Stage] = []
        for m in op:
            sub = compile_chain(m)
            if sub is None:
                return None
            stages += sub
        return stages
    if type(op) is nn.Identity:
        return []
    if type(op) is nn.ReLU:
        return [ReLUStage()]
    if type(op) is nn.Conv2d and op.padding_mode == "zeros" and not isinstance(op.padding, str):
        return [ConvStage(op)]
    if type(op) is nn.BatchNorm2d:
        return [BatchNormStage(op)]
    if type(op) in (nn.MaxPool2d, nn.AvgPool2d) and _is_3x3_pad1(op):
        if type(op) is nn.MaxPool2d and op.dilation in (1, (1, 1)) and not op.return_indices:
            return [MaxPoolStage(op)]
        if type(op) is nn.AvgPool2d and not op.count_include_pad and op.divisor_override is None:
            return [AvgPoolStage(op)]
    return None


def _is_3x3_pad1(pool: nn.Module) -> bool:
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    stride = pair(pool.stride)
    return (
        pair(pool.kernel_size) == (3, 3)
        and pair(pool.padding) == (1, 1)
        and not pool.ceil_mode
        and (stride[0] == stride[1])
    )
