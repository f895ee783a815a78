"""Give freed CPU heap memory back to the system (glibc), so fused-op temporaries do not inflate RSS.

The fused mixed op allocates many short-lived, input-sized temporaries between long-lived ones (each edge's output).
glibc serves them from its heap once its dynamic mmap threshold has grown, and freed chunks between live ones stay
resident: on the DARTS search network at batch 64 that is ≈ 1.7 GB of RSS that no tensor uses. :func:`maybe_trim`
(called by the fused op after each forward and backward on CPU) asks glibc, only when more than the configured amount
of freed heap has piled up, to release it (``malloc_trim``). Re-touching released pages costs page faults, so a
larger threshold trades memory for speed. Elsewhere (not Linux/glibc) this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

__all__ = ["get_heap_trim", "maybe_trim", "set_heap_trim"]

_DEFAULT_MB = 256
_threshold: int | None = _DEFAULT_MB * 2**20


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                     "keepcost")
    ]  # fmt: skip


def _load_libc():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallinfo2.restype = _Mallinfo2  # glibc >= 2.33
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):
        return None


_libc = _load_libc()


def set_heap_trim(megabytes: int | None = _DEFAULT_MB) -> None:
    """Trim the heap once more than ``megabytes`` of freed memory sit in it; ``None`` turns trimming off.

    Args:
        megabytes: threshold in MiB (default 256); ``0`` trims after every fused forward and backward (lowest RSS,
            slowest), ``None`` never trims (glibc's behaviour).
    """
    global _threshold
    if megabytes is not None and megabytes < 0:
        raise ValueError(f"heap trim threshold must be >= 0 MiB or None, got {megabytes}")
    _threshold = None if megabytes is None else int(megabytes) * 2**20


def get_heap_trim() -> int | None:
    """The current threshold in MiB (None: off)."""
    return None if _threshold is None else _threshold // 2**20


def maybe_trim() -> bool:
    """Release freed heap memory if more than the threshold has accumulated; return whether it trimmed."""
    if _libc is None or _threshold is None:
        return False
    if _libc.mallinfo2().fordblks <= _threshold:
        return False
    _libc.malloc_trim(0)
    return True
