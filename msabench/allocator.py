"""Keep freed tensor memory in the process (glibc ``mallopt``) instead of handing it back to the
operating system after every training step.

glibc serves an allocation above its mmap threshold (dynamic, at most 32 MiB by default) with a
fresh ``mmap`` and unmaps it on free, and returns the free top of its heap to the system past a
trim threshold. A CPU training step that allocates the same large temporaries every step then
pays a page fault for every 4 KiB of them, every step: TFN's MOSI step (batch 32) allocates
the 32 x 140,481 fused tensor, its dropout mask and products (18 MiB each) and the 36 MiB
gradient of the 9M-weight post-fusion layer, and took 25-32 thousand minor page faults and
50-70 ms of kernel time per step (of 240-270 ms). With both thresholds at
:data:`THRESHOLD_BYTES` freed blocks stay in the heap and are reused: under 400 faults and
about 1 ms of kernel time per step (``benchmarks/bench_allocator.py``). MulT on the unaligned
MOSI shapes (batch 64, one step) went from 1.5 million faults and 3.6 s of kernel time to
16 thousand and 0.06 s.

Cost: memory is not returned between steps, and the peak grows a little, because torch's
64-byte-aligned blocks need a few spare copies in the heap before they are reused (the MulT
step above: 5,083 -> 5,229 MiB peak; TFN: unchanged). Numbers do not change: this is where
memory comes from, not what is computed (tested on a whole TFN run).

:func:`keep_freed_memory` is called by :func:`msabench.runner.run` (so by ``msabench run``,
grids and benchmarks that train through it). ``MSABENCH_MALLOC_TUNING=0`` turns it off. It
does nothing outside glibc (macOS, musl, Windows).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

#: both thresholds: allocations below this come from the heap and stay there when freed
THRESHOLD_BYTES = 1 << 30
ENV = "MSABENCH_MALLOC_TUNING"
#: glibc <malloc.h> parameter numbers
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

_applied: str | None = None


def keep_freed_memory() -> str:
    """Raise glibc's mmap and trim thresholds to :data:`THRESHOLD_BYTES` once per process.
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
    trim = mallopt(M_TRIM_THRESHOLD, THRESHOLD_BYTES)
    mmap = mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES)
    _applied = "applied" if trim == 1 and mmap == 1 else (
        f"unsupported: mallopt refused (trim {trim}, mmap {mmap})")
    return _applied
