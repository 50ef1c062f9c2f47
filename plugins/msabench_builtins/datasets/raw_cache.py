"""The feature cache of the raw layout (:mod:`.raw`): file digests and per-extractor stores.

Both are ``.npz`` files written by :func:`~.archive.save_archive` and read back with
:func:`~.safe_npz.read_arrays` (checked, never unpickled). A cache file that is absent,
unreadable, fails a check or is inconsistent is ignored and rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .archive import save_archive
from .safe_npz import read_arrays

_MIB = 1 << 20


# --------------------------------------------------------------------------------------------
# digests

def _text_digest(text: str) -> str:
    return hashlib.sha256(b"text\0" + text.encode("utf-8")).hexdigest()


def file_digest(path: Path) -> str:
    """sha256 of the size plus the first and last MiB (the whole file up to 2 MiB)."""
    size = path.stat().st_size
    digest = hashlib.sha256(f"file\0{size}\0".encode())
    with open(path, "rb") as fh:
        if size <= 2 * _MIB:
            digest.update(fh.read())
        else:
            digest.update(fh.read(_MIB))
            fh.seek(size - _MIB)
            digest.update(fh.read(_MIB))
    return digest.hexdigest()


class _FileDigests:
    """(absolute path, size, mtime_ns) -> digest memo, stored in ``cache_dir``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.memo: dict[tuple[str, int, int], str] = {}
        self.dirty = False
        arrays = read_arrays(path, ("path", "size", "mtime", "digest"))
        if arrays is not None and len({a.shape for a in arrays.values()}) == 1 \
                and arrays["path"].ndim == 1:
            for p, s, m, d in zip(*(arrays[k].tolist() for k in ("path", "size", "mtime",
                                                                  "digest"))):
                self.memo[(p, int(s), int(m))] = d

    def __call__(self, path: Path) -> str:
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        if key not in self.memo:
            self.memo[key] = file_digest(path)
            self.dirty = True
        return self.memo[key]

    def save(self) -> None:
        if not self.dirty:
            return
        keys = sorted(self.memo)
        save_archive(self.path, {
            "path": np.array([k[0] for k in keys]),
            "size": np.array([k[1] for k in keys], np.int64),
            "mtime": np.array([k[2] for k in keys], np.int64),
            "digest": np.array([self.memo[k] for k in keys])})
        self.dirty = False


# --------------------------------------------------------------------------------------------
# the feature store of one extractor configuration

class _FeatureStore:
    KEYS = ("key", "digest", "lengths", "values")

    def __init__(self, path: Path, key: str) -> None:
        self.path, self.key = path, key
        self.rows: dict[str, np.ndarray] = {}  # digest -> (length, D) float32
        self.dirty = False
        arrays = read_arrays(path, self.KEYS)
        if arrays is None or not _consistent(arrays) or str(arrays["key"]) != key:
            return  # absent, unreadable or not written by save(): rebuilt
        offsets = np.concatenate([[0], np.cumsum(arrays["lengths"])])
        values = arrays["values"]
        for j, d in enumerate(arrays["digest"].tolist()):
            self.rows[d] = values[offsets[j]:offsets[j + 1]]

    def add(self, digest: str, value: np.ndarray) -> None:
        self.rows[digest] = value
        self.dirty = True

    def save(self) -> None:
        if not self.dirty or not self.rows:
            return
        digests = sorted(self.rows)
        save_archive(self.path, {
            "key": np.array(self.key),
            "digest": np.array(digests),
            "lengths": np.array([len(self.rows[d]) for d in digests], dtype=np.int64),
            "values": np.concatenate([self.rows[d] for d in digests]).astype(np.float32)})
        self.dirty = False


def _consistent(arrays: dict[str, np.ndarray]) -> bool:
    """Whether a feature store's arrays fit together (as :meth:`_FeatureStore.save` writes)."""
    lengths, values, digest = arrays["lengths"], arrays["values"], arrays["digest"]
    return (arrays["key"].ndim == 0 and values.ndim == 2 and digest.ndim == 1
            and lengths.ndim == 1 and lengths.dtype.kind in "iu"
            and len(lengths) == len(digest) and bool((lengths >= 0).all())
            and int(lengths.sum()) == values.shape[0])
