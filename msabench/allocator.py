"""Keep freed tensor memory in the process (glibc ``mallopt``) instead of handing it back to the
operating system after every training step.

glibc serves an allocation above its mmap threshold (dynamic, at most 32 MiB by default) with a
fresh ``mmap`` and unmaps it on free, and returns the free top of its heap to the system past a
trim threshold. A CPU training step that allocates the same large temporaries every step then
pays a page fault for every 4 KiB of them, every step: TFN's MOSI step (batch 32) allocates
the 32 x 140,481 fused tensor, its dropout mask and products (18 MiB each) and the 36 MiB
gradient of the 9M-weight post-fusion layer, and took 26-33 thousand minor page faults and
42-69 ms of kernel time per step (of 186-271 ms; 1 thread, seven measurements). With the mmap
threshold at :data:`MMAP_BYTES` and the trim threshold at :data:`TRIM_BYTES`, blocks up to
64 MiB come from the heap and stay there when freed: 0-146 faults, at most 0.2 ms of kernel
time and a 1.24-1.33x faster step (``benchmarks/bench_allocator.py``, three runs).

Why not keep larger blocks too: a 1 GiB mmap threshold also kept the reference MulT's
attention maps (up to 160 MB each at batch 16) in the heap, which made its step 1.4x faster
but raised its peak memory from 5,477 to 7,411 MiB, because torch's 64-byte-aligned blocks need spare copies in
the heap before glibc reuses them. At 64 MiB its peak is unchanged (docs/baselines.md). Blocks
above 64 MiB still go back to the system when freed.

Numbers do not change: this is where memory comes from, not what is computed (tested on a
whole TFN run).

:func:`keep_freed_memory` is called by :func:`msabench.runner.run` (so by ``msabench run``,
grids and benchmarks that train through it). ``MSABENCH_MALLOC_TUNING=0`` turns it off. It
does nothing outside glibc (macOS, musl, Windows).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

#: allocations up to this size come from the heap (above it: mmap, unmapped on free)
MMAP_BYTES = 64 << 20
#: free memory at the top of the heap is returned to the system only past this size
TRIM_BYTES = 1 << 30
ENV = "MSABENCH_MALLOC_TUNING"
#: glibc <malloc.h> parameter numbers
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

_applied: str | None = None


def keep_freed_memory() -> str:
    """Set glibc's mmap threshold to :data:`MMAP_BYTES` and its trim threshold to
    :data:`TRIM_BYTES`, once per process.
    Returns what was done: ``"applied"``, ``"off"`` (``MSABENCH_MALLOC_TUNING=0``),
    ``"unsupported: <why>"`` (not glibc, or ``mallopt`` refused)."""
    global _applied
    if _applied is not None:
        return _applied
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        _applied = "off"
        return _applied
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        _applied = f"unsupported: {platform.system()} without glibc"
        return _applied
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError) as exc:
        _applied = f"unsupported: no mallopt ({exc})"
        return _applied
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # the trim threshold first: if the mmap one is refused, memory still stays in the heap
    trim = mallopt(M_TRIM_THRESHOLD, TRIM_BYTES)
    mmap = mallopt(M_MMAP_THRESHOLD, MMAP_BYTES)
    _applied = "applied" if trim == 1 and mmap == 1 else (
        f"unsupported: mallopt refused (trim {trim}, mmap {mmap})")
    return _applied
