"""The fused mixed op's custom operators: opcheck, and the Triton kernels under TRITON_INTERPRET=1 vs the reference."""

import os
import subprocess
import sys

import pytest
import torch
from torch.library import opcheck

from dnas.ops import kernels
from dnas.ops.kernels import weighted_inner_reference, weighted_sum_reference


def _outs(K, shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, dtype=dtype, generator=g) for _ in range(K)]


@pytest.mark.parametrize("K", [1, 3])
def test_opcheck(K):
    outs = _outs(K, (2, 3, 5, 5), torch.float32)
    w = torch.randn(K)
    opcheck(torch.ops.dnas.weighted_sum.default, (outs, w))
    opcheck(torch.ops.dnas.weighted_inner.default, (outs[0], outs))


def test_cpu_kernels_are_the_references():
    outs = _outs(4, (2, 3, 4, 4), torch.float64)
    w = torch.randn(4, dtype=torch.float64)
    expected = sum(wk * o for wk, o in zip(w, outs))  # the naive mixed op's sum
    assert torch.equal(kernels.weighted_sum(outs, w), expected)
    dots = torch.tensor([(outs[0] * o).sum().item() for o in outs], dtype=torch.float64)
    torch.testing.assert_close(kernels.weighted_inner(outs[0], outs), dots, rtol=1e-12, atol=0)


def _triton_mixed():
    if not kernels.TRITON_AVAILABLE:
        pytest.skip("triton is not installed")
    from dnas.ops.kernels import triton_mixed

    return triton_mixed


# sizes below, at and above one block (1024), and not multiples of it
@pytest.mark.parametrize("K,shape", [(1, (3, 7)), (4, (2, 4, 8, 16)), (5, (2, 3, 13, 17))])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_triton_kernels_interpreted(K, shape, dtype):
    """Runs only in a process started with TRITON_INTERPRET=1 (CI job, or the subprocess test below)."""
    tm = _triton_mixed()
    if not tm.INTERPRET:
        pytest.skip("needs TRITON_INTERPRET=1 from process start (see test_triton_kernels_in_interpreter_process)")
    outs = _outs(K, shape, dtype, seed=K)
    w = torch.randn(K, dtype=dtype).softmax(0)
    assert torch.equal(tm.weighted_sum(outs, w), weighted_sum_reference(outs, w))
    grad = torch.randn(shape, dtype=dtype)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(tm.weighted_inner(grad, outs), weighted_inner_reference(grad, outs), **tol)
    a, b = tm.weighted_inner(grad, outs), tm.weighted_inner(grad, outs)
    assert torch.equal(a, b)  # fixed-order reduction


def test_triton_kernels_in_interpreter_process():
    """triton.jit picks the interpreter when a kernel is defined, so the kernel tests run in a fresh process."""
    tm = _triton_mixed()
    if tm.INTERPRET:
        pytest.skip("already interpreting: test_triton_kernels_interpreted runs directly")
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        __file__,
        "-o",
        "addopts=",
        "-q",
        "-p",
        "no:cacheprovider",
        "-k",
        "kernels_interpreted",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "6 passed" in proc.stdout, proc.stdout[-2000:]
