"""Open untrusted ``.npz`` archives: check every member before NumPy allocates or inflates it.

``numpy.load(path, allow_pickle=False)`` never unpickles, but it trusts the rest of the file:

* a member's ``.npy`` header may claim any shape: NumPy allocates ``shape * itemsize`` bytes
  before reading a byte of data (a 1 KiB member claiming 3 TiB ends in ``MemoryError``);
* a deflated member may inflate 1000-fold (a 1.1 MB archive holding a 1.2 GB array of zeros
  loads, and the run then dies in the allocator);
* a member that is not an ``.npy`` (a symlink entry, a directory, any other file) comes back
  as raw ``bytes`` instead of an array.

:class:`SafeNpz` reads the zip directory and each member's ``.npy`` header itself and refuses,
with a :class:`~msabench.errors.DataError` naming the file, the key and the fix:

* symlink and directory entries, encrypted members, duplicate names (at open);
* members that are not ``.npy`` arrays, or whose dtype is not a plain numeric/bool/string
  dtype (object arrays would need unpickling);
* a header whose ``shape * itemsize`` differs from what the zip entry holds
  (``header + data == uncompressed size``, exactly as ``numpy.save`` writes it);
* an entry whose compressed bytes lie outside the file, or a stored entry whose sizes differ;
* a compressed member that would inflate to more than :data:`BOMB_MIN_BYTES` at a ratio above
  :data:`MAX_RATIO` (genuine features deflate about 1.1:1, padded sequences and fixed-width
  strings up to ~200:1; zeros reach 1030:1);
* arrays that together need more than ``max_bytes`` (default: this machine's RAM).

Only then does NumPy read the member (``allow_pickle=False``).
"""

from __future__ import annotations

import math
import stat
import zipfile
import zlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from msabench.errors import DataError

from .problems import coded, human_bytes, physical_memory

#: a compressed member may inflate at most MAX_RATIO-fold once it exceeds BOMB_MIN_BYTES
MAX_RATIO = 200
BOMB_MIN_BYTES = 64 << 20
PLAIN_KINDS = "biufcSU"
_READ_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error,
                NotImplementedError, RuntimeError, KeyError, TypeError, SyntaxError)
_FIX = "re-create the archive with numpy.savez (or msabench's save_archive)"


class SafeNpz:
    """A read-only ``.npz`` with NumPy's ``files`` / ``[key]`` interface; checks before reading.

    Use as a context manager (closes the zip). ``max_bytes``: the most the arrays read from
    this archive may occupy together (``None``: the machine's physical memory).
    """

    def __init__(self, path: Path | str, *, max_bytes: int | None = None) -> None:
        self.path = Path(path)
        self.size = self.path.stat().st_size
        self.max_bytes = max_bytes if max_bytes is not None else physical_memory()
        self.used = 0
        try:
            self.zip = zipfile.ZipFile(self.path)
        except (*_READ_ERRORS, zipfile.LargeZipFile) as exc:
            raise self.fail(f"cannot open as a zip archive ({type(exc).__name__}: {exc}); "
                            f"{_FIX}", "corrupt-file") from None
        try:
            self.members = self._members()
        except BaseException:
            self.zip.close()
            raise
        self.files = list(self.members)

    def fail(self, msg: str, code: str) -> DataError:
        return coded(DataError(f"{self.path}: {msg}"), code)

    def _members(self) -> dict[str, zipfile.ZipInfo]:
        out: dict[str, zipfile.ZipInfo] = {}
        for info in self.zip.infolist():
            name = info.filename
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise self.fail(f"member {name!r} is a symbolic link; an .npz archive holds "
                                "only .npy arrays, and a link could point anywhere on this "
                                f"machine - {_FIX}", "unsafe-member")
            if info.is_dir():
                raise self.fail(f"member {name!r} is a directory; an .npz archive holds only "
                                f".npy arrays - {_FIX}", "unsafe-member")
            if info.flag_bits & 0x1:
                raise self.fail(f"member {name!r} is encrypted; msabench reads only plain "
                                f"archives - {_FIX}", "unsafe-member")
            key = name[:-4] if name.endswith(".npy") else name
            if key in out:
                raise self.fail(f"two members are named {name!r}; which one is meant is "
                                f"ambiguous - {_FIX}", "corrupt-file")
            out[key] = info
        return out

    # -- numpy's NpzFile interface -------------------------------------------------------

    def __enter__(self) -> "SafeNpz":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.zip.close()

    def __contains__(self, key: object) -> bool:
        return key in self.members

    def __iter__(self) -> Iterator[str]:
        return iter(self.files)

    def __getitem__(self, key: str) -> np.ndarray:
        return self.read(key)

    # -- reading ------------------------------------------------------------------------

    def header(self, key: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
        """``(shape, fortran_order, dtype, header_length)`` of member ``key``, checked."""
        info = self.members[key]
        where = f"key {key!r}"
        try:
            with self.zip.open(info) as fp:
                if fp.read(6) != b"\x93NUMPY":
                    raise self.fail(f"{where} is not an .npy array (member {info.filename!r} "
                                    f"does not start with the .npy magic); an .npz archive "
                                    f"holds only .npy arrays - {_FIX}", "unsafe-member")
                version = tuple(fp.read(2))
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
                else:
                    raise self.fail(f"{where}: .npy format version {version} is not supported "
                                    "(numpy.save writes 1.0 or 2.0 for plain arrays)",
                                    "corrupt-file")
                header_len = fp.tell()
        except DataError:
            raise
        except _READ_ERRORS as exc:
            raise self.fail(f"{where}: cannot read its .npy header ({type(exc).__name__}: "
                            f"{exc}); the file looks truncated or corrupt - {_FIX}",
                            "corrupt-file") from None
        return shape, bool(fortran), dtype, header_len

    def check(self, key: str) -> tuple[tuple[int, ...], np.dtype, int]:
        """Every check of the module docstring for ``key``; returns (shape, dtype, nbytes)."""
        info = self.members[key]
        where = f"key {key!r}"
        shape, _, dtype, header_len = self.header(key)
        if dtype.hasobject:
            raise self.fail(
                f"{where} holds a Python-object array, which can only be read by unpickling; "
                "msabench never unpickles archives (allow_pickle=False). Re-save it with "
                "fixed-width strings (np.array(list_of_str)) or numeric arrays", "unsafe-member")
        if dtype.kind not in PLAIN_KINDS or dtype.fields is not None or dtype.subdtype is not None:
            raise self.fail(f"{where} has dtype {dtype}; an msabench archive holds numeric, "
                            "bool or fixed-width string arrays only", "corrupt-file")
        nbytes = math.prod(shape) * dtype.itemsize
        claim = f"a {shape} {dtype} array ({human_bytes(nbytes)})"
        held = info.file_size - header_len
        if nbytes != held:
            code = "oversized-claim" if nbytes > held else "corrupt-file"
            raise self.fail(f"{where}: its .npy header claims {claim}, but the zip entry holds "
                            f"{human_bytes(max(held, 0))} of array data (the whole file is "
                            f"{human_bytes(self.size)}); the archive is truncated, corrupt or "
                            f"crafted - {_FIX}", code)
        if info.header_offset + info.compress_size > self.size:
            raise self.fail(f"{where}: the zip entry claims {human_bytes(info.compress_size)} "
                            f"of data at byte {info.header_offset}, past the end of the "
                            f"{human_bytes(self.size)} file; the archive is truncated or "
                            f"crafted - {_FIX}", "oversized-claim")
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise self.fail(f"{where}: a stored (uncompressed) entry whose sizes differ "
                            f"({info.compress_size} vs {info.file_size} bytes) - {_FIX}",
                            "corrupt-file")
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > BOMB_MIN_BYTES and ratio > MAX_RATIO:
            raise self.fail(
                f"{where}: {human_bytes(info.compress_size)} of compressed data would inflate "
                f"to {claim}, a ratio of {ratio:.0f}:1; genuine features compress at most "
                f"about {MAX_RATIO}:1, so this looks like a decompression bomb. If you trust "
                "the file, re-save it uncompressed (numpy.savez, not savez_compressed)",
                "decompression-bomb")
        if self.max_bytes is not None and self.used + nbytes > self.max_bytes:
            raise self.fail(f"{where}: reading {claim} would bring this archive's arrays to "
                            f"{human_bytes(self.used + nbytes)}, more than the "
                            f"{human_bytes(self.max_bytes)} of memory this machine has",
                            "out-of-memory")
        return shape, dtype, nbytes

    def read(self, key: str) -> np.ndarray:
        """Member ``key`` as an array, after :meth:`check`."""
        if key not in self.members:
            raise KeyError(f"{key} is not a file in the archive")
        _, _, nbytes = self.check(key)
        try:
            with self.zip.open(self.members[key]) as fp:
                arr = np.lib.format.read_array(fp, allow_pickle=False)
        except _READ_ERRORS as exc:
            raise self.fail(f"key {key!r} cannot be read ({type(exc).__name__}: {exc}); the "
                            f"file looks truncated or corrupt - {_FIX}",
                            "corrupt-file") from None
        self.used += nbytes
        return arr


def read_arrays(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    """The arrays ``keys`` of a (cache) archive, or None when it is absent, lacks a key or
    fails any check (the caller then rebuilds it)."""
    if not path.is_file():
        return None
    try:
        with SafeNpz(path) as npz:
            if not all(k in npz for k in keys):
                return None
            return {k: npz[k] for k in keys}
    except (DataError, OSError):
        return None
