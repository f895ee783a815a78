"""dnas.ops.heap: the glibc heap-trim policy of the fused mixed op."""

import pytest
import torch

from dnas.ops import MixedOp, heap


@pytest.fixture
def restore_threshold():
    before = heap.get_heap_trim()
    yield
    heap.set_heap_trim(before)


def test_threshold_settings(restore_threshold):
    heap.set_heap_trim(64)
    assert heap.get_heap_trim() == 64
    heap.set_heap_trim(None)
    assert heap.get_heap_trim() is None
    assert heap.maybe_trim() is False  # off: never trims
    with pytest.raises(ValueError, match=">= 0 MiB or None"):
        heap.set_heap_trim(-1)


@pytest.mark.skipif(heap._libc is None, reason="needs Linux with glibc")
def test_trims_only_above_the_threshold(restore_threshold):
    blocks = [torch.empty(64 * 1024) for _ in range(64)]  # 256 KiB each, then freed: free heap bytes exist
    del blocks
    heap.set_heap_trim(0)
    assert heap.maybe_trim() is True
    heap.set_heap_trim(1 << 30)  # 1 TiB: nothing this process frees reaches it
    assert heap.maybe_trim() is False


def test_fused_recompute_trims_and_save_does_not(monkeypatch, restore_threshold):
    import dnas.ops.fused as fused_mod

    calls = []
    monkeypatch.setattr(fused_mod, "maybe_trim", lambda: calls.append(1))
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    w = torch.randn(8).softmax(0)
    MixedOp(4, impl="fused")(x, w).sum().backward()
    assert len(calls) == 2  # after the forward and after the backward
    MixedOp(4, impl="fused_save")(x, w).sum().backward()
    assert len(calls) == 2


def test_no_glibc_is_a_no_op(monkeypatch, restore_threshold):
    monkeypatch.setattr(heap, "_libc", None)
    heap.set_heap_trim(0)
    assert heap.maybe_trim() is False
