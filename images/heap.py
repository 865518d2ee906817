"""Keeping the layer walk's buffers in the heap. A walk reads its layers in chunks of a few
MiB, each a fresh bytes object freed a moment later. glibc serves blocks this large with
mmap, or from the top of the heap, which it gives back to the kernel once it is freed: either
way the next chunk is new memory, faulted in page by page (about 120,000 faults, 0.03 s of
the main thread for a 500 MB image). Raising both thresholds lets the freed chunks be reused.
It costs at most the thresholds' worth of memory kept when the walk is over.

Elsewhere than glibc (musl's mallopt does nothing), or if the call fails, nothing changes."""

from __future__ import annotations

_M_TRIM_THRESHOLD = -1  # glibc's <malloc.h>
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest: blocks under it come from the heap
TRIM_THRESHOLD = 64 << 20  # free memory at the heap's top kept up to this
_done: bool | None = None


def keep_chunks_in_heap() -> bool:
    """Raise glibc's thresholds, once per process; whether they are raised."""
    global _done
    if _done is None:
        _done = _mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and _mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    return _done


def _mallopt(parameter: int, value: int) -> bool:
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no C library to load, or one without mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(parameter, value))
