"""Stable problem codes of the data errors the readers raise (``msabench data check``).

A reader raises :class:`~msabench.errors.DataError` as always; :func:`coded` also attaches one
of the :data:`CODES` below as ``err.code`` so that ``msabench data check --json`` (and any other
tool) can tell the kinds of failure apart without parsing messages. A ``DataError`` without a
code is reported as ``load-error``. The problems ``data check`` finds in a dataset that did
load have their own codes (``msabench/cli/data.py``). The codes are part of the public
interface: never rename one, only add new ones (docs/datasets.md lists them all).
"""

from __future__ import annotations

from msabench.errors import DataError

#: code -> one-line meaning (docs/datasets.md, "Problem codes")
CODES = {
    "load-error": "the dataset could not be loaded (any other data problem)",
    "missing-file": "a file or folder the dataset needs does not exist",
    "corrupt-file": "a file is truncated, corrupt or not in the expected format",
    "unsafe-pickle": "a pickle references code or builds arrays from raw memory; refused",
    "oversized-claim": "a header or length field claims more data than the file holds",
    "decompression-bomb": "compressed data inflates far beyond any genuine feature file",
    "unsafe-link": "an HDF5 file holds a soft/external link, external storage or a virtual "
                   "dataset",
    "unsafe-member": "an archive member is a symlink, a directory or not an .npy array",
    "path-escape": "an id in a label table would read media outside the data directory",
    "nonfinite-features": "features hold NaN or +inf",
    "nonfinite-labels": "labels hold NaN or inf",
    "labels-out-of-range": "labels lie outside the dataset's label range",
    "out-of-memory": "reading the file needs more memory than is available",
}


def coded(err: DataError, code: str) -> DataError:
    """Attach the stable problem ``code`` to ``err`` and return it (``raise coded(...)``)."""
    if code not in CODES:  # pragma: no cover - a programming error
        raise ValueError(f"unknown problem code {code!r}")
    err.code = code  # type: ignore[attr-defined]
    return err


def code_of(err: BaseException) -> str:
    code = getattr(err, "code", None)
    return code if isinstance(code, str) and code in CODES else "load-error"


def human_bytes(n: int | float) -> str:
    """``931.3 GiB``: a byte count for messages."""
    n = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{int(n)} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def physical_memory() -> int | None:
    """Total RAM of this machine in bytes, or None where the OS does not say."""
    import os

    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - non-POSIX
        return None
