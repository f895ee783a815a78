"""On one CUDA device: the Triton kernels against fp64, the fused mixed op against the naive one, mixed precision
through the Trainer (float16 autocast with a real ``GradScaler``, bf16 autocast) and bitwise resume under
deterministic algorithms.

Skipped where ``torch.cuda.is_available()`` is False (CI has no GPU); ``benchmarks/cuda_checks.sh`` runs them on one.
Measured errors are printed (``pytest -rP`` shows them). ``DEVICE`` and ``ACCELERATOR`` are module constants so a
script can run the Trainer tests' bodies on a CPU (the skip mark stays: the suite never does).
"""

import copy
import importlib.util
import math
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

import dnas
from dnas.cells.darts import DartsSupernet
from dnas.cells.edges import EdgeOptions
from dnas.cells.nb201 import NB201Supernet
from dnas.data import DigitsDataModule
from dnas.io import load_checkpoint
from dnas.ops import MixedOp, kernels
from dnas.ops.kernels import weighted_inner_reference, weighted_sum_reference

DEVICE, ACCELERATOR = "cuda", "gpu"
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (no GPU in CI)")


def _sibling(name: str):
    """``tests/search/<name>.py`` (its helpers and tolerances, one copy), loaded by path: test folders are not
    packages."""
    module_name = f"_dnas_cuda_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, Path(__file__).parents[1] / "search" / f"{name}.py")
        sys.modules[module_name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[module_name])
    return sys.modules[module_name]


precision_tests, gdas_tests = _sibling("test_precision"), _sibling("test_gdas")


@pytest.fixture(autouse=True)
def _torch_flags():
    """Each test sets the cuDNN / TF32 / deterministic flags it needs; they are restored after it (the Trainer's
    ``deterministic=True`` sets them process-wide)."""
    cudnn = torch.backends.cudnn
    saved = (cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    deterministic = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])


def _exact_fp32() -> None:
    """fp32 convolutions and matmuls in fp32 (cuDNN uses TF32 by default on Ampere and later) with fixed cuDNN
    algorithms: the references below are true fp32."""
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False


# --- the Triton kernels against fp64 -----------------------------------------------------------------------------

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
# (K, shape): below, at and above one Triton block (1024 elements), and not multiples of it
SHAPES = [(1, (3, 7)), (4, (2, 4, 8, 16)), (5, (2, 3, 13, 17)), (8, (8, 16, 33, 31))]


def _randn(K: int, shape: tuple, dtype: torch.dtype, seed: int, transposed: bool) -> list[torch.Tensor]:
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    outs = [torch.randn(shape, device=DEVICE, generator=g).to(dtype) for _ in range(K)]
    return [o.transpose(-1, -2) for o in outs] if transposed else outs  # non-contiguous views


def _report(op: str, dtype, K: int, shape: tuple, transposed: bool, relative, torch_relative) -> None:
    layout = " transposed" if transposed else ""
    print(
        f"{op} {dtype} K={K} {shape}{layout}: max |error| / scale {float(relative.max()):.2e} "
        f"(PyTorch in the same dtype: {float(torch_relative.max()):.2e})"
    )


@pytest.fixture
def triton_calls(monkeypatch):
    """Counts calls of the Triton launchers (:mod:`dnas.ops.kernels.triton_mixed`) by name."""
    assert kernels.TRITON_AVAILABLE and kernels._REGISTER_TRITON, "the operators are not the Triton ones"
    from dnas.ops.kernels import triton_mixed

    calls = {"weighted_sum": 0, "weighted_inner": 0}
    for name in calls:
        launch = getattr(triton_mixed, name)

        def counted(*args, _launch=launch, _name=name):
            calls[_name] += 1
            return _launch(*args)

        monkeypatch.setattr(triton_mixed, name, counted)
    return calls


@pytest.mark.parametrize("transposed", [False, True], ids=["contiguous", "transposed"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("K", "shape"), SHAPES)
def test_triton_kernels_against_fp64(K, shape, dtype, transposed, triton_calls):
    """Elementwise bounds of the standard rounding-error analysis (u = eps/2, the dtype's unit roundoff):
    ``weighted_sum`` is K products and K - 1 additions per element, |error| ≤ (K + 1)·u·Σ|w_k·o_k| (asserted with
    K·eps = 2K·u); ``weighted_inner`` is a dot product of n terms summed in a tree of depth ≤ log2(n) + 15 (per-thread
    runs, warp and block reduction, the partial-sum reduction), |error| ≤ (log2 n + 16)·eps·Σ|g·o_k| (2× margin)."""
    eps, tiny = torch.finfo(dtype).eps, torch.finfo(dtype).smallest_normal
    outs = _randn(K, shape, dtype, seed=K, transposed=transposed)
    w = torch.randn(K, device=DEVICE).softmax(0)
    got = torch.ops.dnas.weighted_sum(outs, w)
    assert got.dtype == dtype and got.shape == outs[0].shape
    outs64, w64 = [o.double() for o in outs], w.to(dtype).double()  # the kernel multiplies by w in the outputs' dtype
    ref = weighted_sum_reference(outs64, w64)
    scale = sum(wk.abs() * o.abs() for wk, o in zip(w64, outs64))
    err = (got.double() - ref).abs()
    torch_err = (weighted_sum_reference(outs, w.to(dtype)).double() - ref).abs()
    _report("weighted_sum", dtype, K, shape, transposed, err / (scale + tiny), torch_err / (scale + tiny))
    assert bool((err <= K * eps * scale + tiny).all()), float((err - K * eps * scale).max())

    grad = _randn(1, shape, dtype, seed=100 + K, transposed=transposed)[0]
    got = torch.ops.dnas.weighted_inner(grad, outs)
    assert got.shape == (K,)
    ref = weighted_inner_reference(grad.double(), outs64)
    scale = torch.stack([(grad.double() * o).abs().sum() for o in outs64])
    n = grad.numel()
    err = (got.double() - ref).abs()
    torch_err = (weighted_inner_reference(grad, outs).double() - ref).abs()
    _report("weighted_inner", dtype, K, shape, transposed, err / scale, torch_err / scale)
    assert bool((err <= (math.log2(n) + 16) * eps * scale + n * tiny).all()), (err / scale).tolist()
    assert torch.equal(got, torch.ops.dnas.weighted_inner(grad, outs))  # fixed-order reduction: deterministic
    assert triton_calls == {"weighted_sum": 1, "weighted_inner": 2}


# --- the fused mixed op against the naive one ----------------------------------------------------------------------


def test_fused_mixed_op_forward_is_bitwise_the_naive_sum():
    """As on the CPU (``tests/ops/test_fused.py``): ``dnas::weighted_sum`` keeps the naive sum's rounding sequence
    (one rounding per multiply and per add), so the fused forward equals the naive one bitwise."""
    _exact_fp32()
    torch.manual_seed(0)
    naive = MixedOp(8, 1, impl="naive").to(DEVICE)
    fused = copy.deepcopy(naive)
    fused.impl = "fused"
    x = torch.randn(4, 8, 9, 9, device=DEVICE)
    w = torch.randn(8, device=DEVICE).softmax(0)
    yn, yf = naive(x, w), fused(x, w)
    print(f"MixedOp forward: max |fused - naive| = {float((yf - yn).detach().abs().max()):.2e}")
    assert torch.equal(yn, yf), _fp_fusion_diagnosis()


def _fp_fusion_diagnosis() -> str:
    """Whether the ``weighted_sum`` kernel matches PyTorch's multiply-then-add bitwise with Triton's default options
    and with ``enable_fp_fusion=False`` (Triton contracts ``acc + w·v`` into one fused multiply-add by default)."""
    import triton

    from dnas.ops.kernels import triton_mixed

    outs = _randn(5, (2, 3, 13, 17), torch.float32, seed=7, transposed=False)
    w = torch.randn(5, device=DEVICE).softmax(0)
    expected = weighted_sum_reference(outs, w)
    stacked, n = torch.stack(outs), outs[0].numel()
    equal = {}
    for fusion in (True, False):
        out = torch.empty_like(outs[0])
        kernel = torch.library.wrap_triton(triton_mixed._weighted_sum_kernel)
        kernel[(triton.cdiv(n, triton_mixed.BLOCK),)](
            stacked, w, out, len(outs), n, BLOCK=triton_mixed.BLOCK, enable_fp_fusion=fusion
        )
        equal[fusion] = torch.equal(out, expected)
    return f"weighted_sum kernel == PyTorch's sum: enable_fp_fusion=True {equal[True]}, False {equal[False]}"


def test_fused_darts_supernet_matches_naive(triton_calls):
    """Same weights, same batch: logits, weight and α gradients and BN running statistics agree in fp32 (TF32 off,
    deterministic cuDNN algorithms; the fused backward sums in another order, so gradients agree to rounding)."""
    _exact_fp32()
    torch.manual_seed(0)
    nets = {impl: DartsSupernet(8, 10, 5, edge_options=EdgeOptions(mixed_op_impl=impl)) for impl in ("naive", "fused")}
    nets["fused"].load_state_dict(nets["naive"].state_dict())
    g = torch.Generator(device=DEVICE).manual_seed(1)
    x = torch.randn(8, 3, 16, 16, device=DEVICE, generator=g)
    y = torch.randint(0, 10, (8,), device=DEVICE, generator=g)
    logits = {}
    for impl, net in nets.items():
        net.to(DEVICE).train()
        logits[impl] = net(x)
        F.cross_entropy(logits[impl], y).backward()
    assert triton_calls["weighted_sum"] > 0 and triton_calls["weighted_inner"] > 0  # the fused op ran the kernels
    gap = float((logits["fused"] - logits["naive"]).detach().abs().max())
    print(f"DartsSupernet logits: max |fused - naive| = {gap:.2e}")
    torch.testing.assert_close(logits["fused"], logits["naive"], rtol=1e-5, atol=1e-5)
    naive_params = dict(nets["naive"].named_parameters())
    worst = 0.0
    for name, p in nets["fused"].named_parameters():
        q = naive_params[name]
        assert (p.grad is None) == (q.grad is None), name
        if q.grad is not None and q.grad.norm() > 0:
            rel = float((p.grad - q.grad).norm() / q.grad.norm())
            worst = max(worst, rel)
            assert rel < 1e-4, (name, rel)
    print(f"DartsSupernet gradients: worst ‖fused - naive‖ / ‖naive‖ = {worst:.2e}")
    assert all(p.grad.abs().sum() > 0 for _, p in nets["fused"].named_arch_parameters())
    for (name, a), b in zip(nets["naive"].named_buffers(), nets["fused"].buffers()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)


# --- mixed precision through the Trainer ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fp32_delta(tmp_path_factory):
    """Δα of the fp32 run of ``(kind, batches)`` on the device (TF32 off), fitted once per module."""
    deltas = {}

    def get(kind: str, batches: int) -> torch.Tensor:
        if (kind, batches) not in deltas:
            _exact_fp32()
            tmp = tmp_path_factory.mktemp("fp32")
            deltas[kind, batches] = precision_tests._alpha_delta(kind, "32-true", tmp, batches, ACCELERATOR)[0]
        return deltas[kind, batches]

    return get


@pytest.mark.parametrize("kind", precision_tests.KINDS)
def test_loss_scaler_path_on_the_device_gives_the_fp32_alpha(tmp_path, kind, fp32_delta):
    """The CPU suite's check with a CUDA ``GradScaler`` (autocast off): scaling by a power of two is exact."""
    reference = fp32_delta(kind, precision_tests.BATCHES)
    assert reference.norm() > 1e-4  # α moved
    _exact_fp32()
    delta, trainer, scaler = precision_tests._alpha_delta(kind, "scaler-only", tmp_path, accelerator=ACCELERATOR)
    torch.testing.assert_close(delta, reference, rtol=1e-4, atol=1e-6)
    assert trainer.global_step == precision_tests.BATCHES
    assert scaler.updates == precision_tests.BATCHES  # once per batch, not once per optimizer


def _low_precision(kind: str, batches: int, fp32_delta, tmp_path):
    """``{precision: relative α error}`` of bf16-mixed and 16-mixed (real CUDA autocast) against fp32."""
    reference = fp32_delta(kind, batches)
    assert reference.norm() > 1e-4  # α moved
    _exact_fp32()
    errors = {}
    for precision in ("bf16-mixed", "16-mixed"):
        delta, trainer, scaler = precision_tests._alpha_delta(kind, precision, tmp_path, batches, ACCELERATOR)
        assert trainer.strategy.root_device.type == DEVICE
        assert bool(torch.isfinite(delta).all()) and delta.norm() > 1e-4, precision  # finite, and α moved
        assert trainer.global_step == batches
        if precision == "16-mixed":
            assert scaler.updates == batches  # once per batch, not once per optimizer
            assert scaler.get_scale() >= 2.0**8  # no step skipped for inf/NaN (the scale would have halved)
        errors[precision] = float((delta - reference).norm() / reference.norm())
        print(f"{kind} {batches} batch(es) {precision}: ‖Δα - Δα_fp32‖ / ‖Δα_fp32‖ = {errors[precision]:.3f}")
    return errors


@pytest.mark.parametrize(("kind", "batches"), list(precision_tests.TOLERANCE))
def test_mixed_precision_on_the_device_tracks_fp32(tmp_path, kind, batches, fp32_delta):
    """The CPU suite's tolerances (``tests/search/test_precision.py``), here with CUDA autocast and GradScaler."""
    errors = _low_precision(kind, batches, fp32_delta, tmp_path)
    for (precision, error), tolerance in zip(errors.items(), precision_tests.TOLERANCE[kind, batches]):
        assert error < tolerance, (precision, error)


def test_mixed_precision_fbnet_alpha_finite_and_one_scaler_update_per_batch(tmp_path, fp32_delta):
    """FBNet has no tolerance (its bf16 trajectory leaves fp32's on the CPU too: error 1.9 after 3 batches); the
    loss-scaler path is checked exactly by the test above."""
    _low_precision("fbnet", precision_tests.BATCHES, fp32_delta, tmp_path)


# --- bitwise resume under deterministic algorithms ------------------------------------------------------------------


class _CudaDraws(pl.Callback):
    """Draws from the device's generator at each batch start: a resume that did not restore it draws other numbers.

    The searches themselves draw nothing there (GDAS's Gumbel noise comes from its own CPU generator), so without
    this callback the saved CUDA state would go unchecked."""

    def __init__(self):
        self.draws: dict[tuple[int, int], torch.Tensor] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.draws[trainer.current_epoch, batch_idx] = torch.rand(4, device=pl_module.device).cpu()


SEARCHES = {
    "DARTS": lambda: dnas.DARTS(DartsSupernet(init_channels=4, num_classes=10, layers=3, in_channels=1)),
    "GDAS": lambda: dnas.GDAS(NB201Supernet(init_channels=4, cells_per_stage=1, in_channels=1), seed=5),
}


def _search(name: str, tmp_path: Path, stop: bool = False, ckpt_path=None):
    torch.manual_seed(0)
    module, draws = SEARCHES[name](), _CudaDraws()
    callbacks = [pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True), draws]
    trainer = pl.Trainer(
        max_epochs=2, limit_train_batches=3, limit_val_batches=1, num_sanity_val_steps=0, accelerator=ACCELERATOR,
        devices=1, deterministic=True, logger=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path, callbacks=callbacks + ([gdas_tests._StopAfterFirstEpoch()] if stop else []),
    )  # fmt: skip
    torch.manual_seed(1)
    trainer.fit(module, DigitsDataModule(batch_size=8), ckpt_path=ckpt_path)
    assert trainer.strategy.root_device.type == DEVICE
    return module, {k: v.detach().cpu() for k, v in module.state_dict().items()}, draws.draws


@pytest.mark.parametrize("name", sorted(SEARCHES))
def test_resume_on_the_device_is_bitwise(tmp_path, name):
    """2 epochs straight vs 1 epoch, ``last.ckpt``, a new Trainer for epoch 2: every weight, buffer and α bitwise
    equal, and the device generator continues where it was saved (``CUBLAS_WORKSPACE_CONFIG``: ``conftest.py``)."""
    module, straight, straight_draws = _search(name, tmp_path / "a")
    _, first_epoch, _ = _search(name, tmp_path / "b", stop=True)
    checkpoint = load_checkpoint(tmp_path / "b" / "last.ckpt")  # weights_only: the generator states are plain data
    cuda_states = checkpoint["dnas_rng"]["ranks"][0]["torch.cuda"]
    if DEVICE == "cuda":
        assert len(cuda_states) == torch.cuda.device_count() and cuda_states[0].dtype == torch.uint8
    resumed_module, resumed, resumed_draws = _search(name, tmp_path / "c", ckpt_path=tmp_path / "b" / "last.ckpt")
    assert straight.keys() == resumed.keys()
    differ = [k for k in straight if not torch.equal(straight[k], resumed[k])]
    assert not differ, differ
    # not vacuous: epoch 2 moved α and the weights, and the device generator moved on between epochs
    arch = [f"supernet.{k}" for k, _ in module.supernet.named_arch_parameters()]
    assert arch and all(not torch.equal(straight[k], first_epoch[k]) for k in arch), arch
    if name == "GDAS":  # its own (CPU) sampling generator, saved in the checkpoint too
        assert torch.equal(module.generator.get_state(), resumed_module.generator.get_state())
    assert not torch.equal(straight_draws[0, 0], straight_draws[1, 0])
    for batch in range(3):
        assert torch.equal(straight_draws[1, batch], resumed_draws[1, batch]), batch
