"""Read one CMU-MultimodalSDK computational sequence (``.csd``, HDF5) safely: :func:`read_csd`.

The layout (module docstring of :mod:`.sdk`)::

    /<root>/data/<video_id>/features    (m, n)
    /<root>/data/<video_id>/intervals   (m, 2)
    /<root>/metadata/<key>              (1,)    JSON-encoded string

A ``.csd`` is untrusted input. Besides its structure and shapes, :func:`read_csd` checks every
link and dataset it touches before reading any data (:func:`_child`, :func:`_check_dataset`):

* only hard links are followed: a soft link can loop (HDF5 then fails with "Special link
  traversal failed") and an external link opens another HDF5 file anywhere on this machine;
* datasets with external raw storage (data read from arbitrary files, e.g. ``/etc/...``) and
  virtual datasets (data mapped from other files) are refused;
* a dataset's claimed size must be backed by its storage in the file (contiguous data must lie
  inside the file; chunked/compressed data may inflate at most ``MAX_RATIO``-fold once above
  ``BOMB_MIN_BYTES``, as for ``.npz`` members);
* any HDF5 error while reading becomes a :class:`~msabench.errors.DataError` naming the file.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from msabench.errors import DataError

from .problems import coded

# --------------------------------------------------------------------------------------------
# reading one computational sequence

def _h5py():
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py is installed with the test extras
        raise DataError("reading CMU-MultimodalSDK .csd files needs h5py; install it with "
                        "`pip install h5py`") from None
    return h5py


def _decode(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        return _decode(value.reshape(-1)[0]) if value.size else ""
    return str(value)


def _metadata_value(dataset: Any) -> str:
    """The SDK stores json.dumps(value) in a (1,) string dataset; return the string value."""
    raw = dataset[()]
    text = _decode(raw)
    try:
        value = json.loads(text)
    except (ValueError, TypeError):
        return text
    return value if isinstance(value, str) else text


_H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, AttributeError)
_H5_FIX = "re-download it (a genuine computational sequence holds only groups and datasets)"


def _child(parent: Any, name: str, where: str, path: Path) -> Any:
    """``parent[name]`` after checking that the link is a plain hard link.

    Soft links can loop (HDF5 then fails with 'Special link traversal failed'), external links
    open other HDF5 files anywhere on this machine: a genuine .csd has neither.
    """
    h5py = _h5py()
    link = parent.get(name, getlink=True)
    if isinstance(link, h5py.SoftLink):
        raise coded(DataError(f"{path}: {where} is a soft link to {link.path!r}; soft links "
                              f"can loop or alias other entries - {_H5_FIX}"), "unsafe-link")
    if isinstance(link, h5py.ExternalLink):
        raise coded(DataError(f"{path}: {where} is an external link into {link.filename!r}; "
                              "msabench never follows links to other files - " + _H5_FIX),
                    "unsafe-link")
    if not isinstance(link, h5py.HardLink):
        raise coded(DataError(f"{path}: {where} is a {type(link).__name__} link, not a group "
                              f"or dataset - {_H5_FIX}"), "unsafe-link")
    return parent[name]


def _check_dataset(dset: Any, where: str, path: Path, file_size: int) -> None:
    """Refuse external raw storage, virtual datasets and sizes the file cannot back."""
    from .problems import human_bytes
    from .safe_npz import BOMB_MIN_BYTES, MAX_RATIO

    if dset.external:
        files = ", ".join(repr(e[0]) for e in dset.external)
        raise coded(DataError(f"{path}: {where} keeps its data in external file(s) {files}; "
                              "msabench reads data only from the .csd itself - " + _H5_FIX),
                    "unsafe-link")
    if dset.is_virtual:
        raise coded(DataError(f"{path}: {where} is a virtual dataset (its data are mapped "
                              f"from other files) - {_H5_FIX}"), "unsafe-link")
    if dset.dtype.kind == "O":  # variable-length strings: the pointers say nothing about size
        return
    nbytes = int(np.prod(dset.shape, dtype=object)) * dset.dtype.itemsize
    stored = dset.id.get_storage_size()
    offset = dset.id.get_offset() if dset.chunks is None else None
    if offset is not None and offset + stored > file_size:
        raise coded(DataError(f"{path}: {where} claims {human_bytes(stored)} of data at byte "
                              f"{offset}, past the end of the {human_bytes(file_size)} file; "
                              "the file is truncated - re-download it"), "oversized-claim")
    if nbytes > max(BOMB_MIN_BYTES, MAX_RATIO * stored):
        raise coded(DataError(
            f"{path}: {where} claims a {dset.shape} {dset.dtype} array "
            f"({human_bytes(nbytes)}) backed by {human_bytes(stored)} of storage in the "
            f"{human_bytes(file_size)} file; genuine features are not stored like this (a "
            f"corrupt header or a decompression bomb) - {_H5_FIX}"), "oversized-claim")


@dataclass
class CompSeq:
    """One validated computational sequence. Frames are read from disk on access.

    ``videos`` lists the data entries in storage order; ``self[video]`` returns
    ``(features, intervals)``: features ``(m, n)`` float32 (or ``str`` for word files, see
    ``kind``) and intervals ``(m, 2)`` float64 seconds. Use ``with cs.opened():`` around many
    reads to keep one file handle open.
    """

    path: Path
    root: str
    metadata: dict[str, str]
    videos: tuple[str, ...]
    kind: str  # "numeric" or "words"
    dim: int
    rows: dict[str, int] = field(repr=False, default_factory=dict)
    _handle: Any = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.videos)

    def __iter__(self) -> Iterator[str]:
        return iter(self.videos)

    def __contains__(self, video: object) -> bool:
        return video in self.rows

    @property
    def data(self) -> "CompSeq":
        """Mapping view video -> (features, intervals) (the SDK's ``.data``)."""
        return self

    def keys(self) -> tuple[str, ...]:
        return self.videos

    @contextmanager
    def opened(self) -> Iterator["CompSeq"]:
        if self._handle is not None:
            yield self
            return
        h5py = _h5py()
        with h5py.File(self.path, "r") as fh:
            self._handle = fh
            try:
                yield self
            finally:
                self._handle = None

    def __getitem__(self, video: str) -> tuple[np.ndarray, np.ndarray]:
        if video not in self.rows:
            raise DataError(f"{self.path}: no entry for video {video!r} in group "
                            f"'{self.root}/data' ({len(self.videos)} videos present)")
        try:
            with self.opened():
                grp = self._handle[self.root]["data"][video]
                feats = grp["features"][()]
                ivs = np.asarray(grp["intervals"][()], dtype=np.float64)
        except _H5_ERRORS as exc:
            raise coded(DataError(f"{self.path}: cannot read entry '{self.root}/data/{video}' "
                                  f"({type(exc).__name__}: {exc}); the file looks truncated "
                                  "or corrupt - re-download it"), "corrupt-file") from None
        feats = feats.reshape(-1, 1) if feats.ndim == 1 else feats
        if ivs.ndim == 1:  # the SDK accepts a single (2,) interval
            ivs = ivs.reshape(1, 2)
        if self.kind == "words":
            flat = [_decode(x) for x in feats[:, 0].tolist()]
            return np.array(flat, dtype=str).reshape(-1, 1), ivs
        return np.asarray(feats, dtype=np.float32), ivs


def read_csd(path: Path | str) -> CompSeq:
    """Open and validate one ``.csd`` file (structure, shapes); frames are read on access.

    Raises :class:`DataError` naming the file when it is missing, not HDF5, has no root group,
    lacks ``<root>/data`` or ``<root>/metadata``, or an entry lacks ``features``/``intervals``
    or has inconsistent shapes.
    """
    h5py = _h5py()
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise coded(DataError(f"{path}: computational sequence not found ({path.resolve()} "
                              f"{what})"), "missing-file")
    if not h5py.is_hdf5(str(path)):
        raise coded(DataError(f"{path}: not an HDF5 file, so not a CMU-MultimodalSDK "
                              "computational sequence (.csd); re-download it (an interrupted "
                              "download or an HTML error page saved as .csd looks like this)"),
                    "corrupt-file")
    try:
        fh = h5py.File(path, "r")
    except _H5_ERRORS as exc:
        raise coded(DataError(f"{path}: cannot open as HDF5 ({exc}); the file looks truncated "
                              "or corrupt, re-download it"), "corrupt-file") from None
    try:
        with fh:
            return _read_structure(path, fh)
    except DataError:
        raise
    except _H5_ERRORS as exc:
        raise coded(DataError(f"{path}: cannot read its HDF5 structure ({type(exc).__name__}: "
                              f"{exc}); the file looks truncated or corrupt - re-download it"),
                    "corrupt-file") from None


def _read_structure(path: Path, fh: Any) -> CompSeq:
    h5py = _h5py()
    size = path.stat().st_size
    top = {k: _child(fh, k, f"entry {k!r}", path) for k in fh.keys()}
    groups = [k for k, v in top.items() if isinstance(v, h5py.Group)]
    if not groups:
        raise DataError(f"{path}: no root group; a computational sequence holds one group "
                        "'<root name>' with 'data' and 'metadata' inside")
    if len(groups) > 1:
        with_data = [g for g in groups if "data" in top[g]]
        if len(with_data) != 1:
            raise DataError(f"{path}: {len(groups)} top-level groups "
                            f"({', '.join(map(repr, groups))}); a computational sequence "
                            "holds exactly one root group")
        groups = with_data
    root = groups[0]
    rgrp = top[root]
    subs = {}
    for sub in ("data", "metadata"):
        node = _child(rgrp, sub, f"group '{root}/{sub}'", path) if sub in rgrp else None
        if not isinstance(node, h5py.Group):
            present = ", ".join(repr(k) for k in rgrp.keys()) or "(nothing)"
            raise DataError(f"{path}: missing group '{root}/{sub}' (the root group holds "
                            f"{present}); not a complete computational sequence")
        subs[sub] = node
    metadata = {}
    for k in subs["metadata"].keys():
        where = f"metadata entry '{root}/metadata/{k}'"
        node = _child(subs["metadata"], k, where, path)
        if isinstance(node, h5py.Dataset):
            _check_dataset(node, where, path, size)
            metadata[str(k)] = _metadata_value(node)
    data = subs["data"]
    videos: list[str] = []
    rows: dict[str, int] = {}
    kind: str | None = None
    dim = -1
    for video in data.keys():
        grp = _child(data, video, f"entry '{root}/data/{video}'", path)
        where = f"{path}: entry '{root}/data/{video}'"
        if not isinstance(grp, h5py.Group):
            raise DataError(f"{where} is not a group with 'features' and 'intervals'")
        parts = {}
        for name in ("features", "intervals"):
            node = _child(grp, name, f"dataset '{root}/data/{video}/{name}'", path) \
                if name in grp else None
            if not isinstance(node, h5py.Dataset):
                raise DataError(f"{where} has no '{name}' dataset")
            _check_dataset(node, f"dataset '{root}/data/{video}/{name}'", path, size)
            parts[name] = node
        fshape, ishape = parts["features"].shape, parts["intervals"].shape
        m = ishape[0] if len(ishape) == 2 else (1 if ishape == (2,) else -1)
        if m < 0 or (len(ishape) == 2 and ishape[1] != 2):
            raise DataError(f"{where}: intervals have shape {ishape}, expected (m, 2)")
        if len(fshape) not in (1, 2) or fshape[0] != m:
            raise DataError(f"{where}: features have shape {fshape} but intervals "
                            f"{ishape}; expected (m, n) features for m intervals")
        n = fshape[1] if len(fshape) == 2 else 1
        fdtype = parts["features"].dtype
        this = "words" if fdtype.kind in "SUO" else "numeric"
        if this == "numeric" and fdtype.kind not in "fiub":
            raise DataError(f"{where}: features have unsupported dtype {fdtype}")
        if parts["intervals"].dtype.kind not in "fiu":
            raise DataError(f"{where}: intervals must be numeric seconds, found dtype "
                            f"{parts['intervals'].dtype}")
        if kind is None:
            kind, dim = this, n
        elif this != kind:
            raise DataError(f"{where}: {this} features in a file whose other entries hold "
                            f"{kind} features")
        elif n != dim and m > 0:
            raise DataError(f"{where}: features have {n} columns, other entries {dim}")
        videos.append(str(video))
        rows[str(video)] = m
    return CompSeq(path=path, root=str(root), metadata=metadata, videos=tuple(videos),
                   kind=kind or "numeric", dim=max(dim, 0), rows=rows)
