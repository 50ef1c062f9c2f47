"""The msabench utterance archive (``.npz``): a first-class input format.

An archive is an ordinary NumPy ``.npz`` file (a zip of ``.npy`` arrays) with one row per
sample. msabench never unpickles it and checks every member before reading it
(:class:`~.safe_npz.SafeNpz`: header claims against the zip sizes, decompression bombs,
symlink entries): strings must be stored as fixed-width unicode arrays
(``np.array(list_of_str)``), never as object arrays.

==================  ==================  ====================================================
key                 shape / dtype       meaning
==================  ==================  ====================================================
``ids``             (N,) str            unique sample id (e.g. ``videoid_segment``)
``label``           (N,) float          sentiment label, inside the dataset's label range
split key           (N,) str            ``train`` / ``valid`` / ``test`` (default key
                                        ``split``; an archive may hold several split keys,
                                        e.g. ``split_bclstm``)
modality arrays     (N, D) or           features; (N, D) utterance vectors become
                    (N, T, D) numeric   (N, 1, D) with length 1
``<key>_lengths``   (N,) int            optional, for (N, T, D) arrays: valid steps per
                                        sample, in [1, T] (absent: every sample has T)
``sentence``        (N,) str            optional transcript (``SplitData.texts``)
``label_T/_A/_V``   (N,) float          optional unimodal labels (``SplitData.unimodal``)
``video``           (N,) str            optional video id; used to carve a validation set
                                        out of train by video
==================  ==================  ====================================================

Other keys are ignored. ``-inf`` feature values are replaced by 0 (as MMSA does) and counted
in :attr:`LoadedDataset.notes`; NaN (and ``+inf``) are refused, never trained on silently.

Write an archive with plain NumPy::

    np.savez("my_data.npz", ids=np.array(ids), label=labels, split=np.array(splits),
             text=text_feats, audio=audio_feats, audio_lengths=audio_lens,
             sentence=np.array(transcripts))

or with :func:`save_archive`, which writes byte-identical files for identical arrays and
replaces the target atomically.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from msabench.api.dataset import SPLITS, DatasetMeta, LoadedDataset, SplitData
from msabench.errors import DataError

from .checks import CHUNK_ROWS, check_label_values, scan_finite
from .problems import coded
from .safe_npz import SafeNpz

DEFAULT_MODALITIES = {"text": "text", "audio": "audio", "vision": "vision"}
UNIMODAL_KEYS = {"label_T": "text", "label_A": "audio", "label_V": "vision"}
_CHUNK_ROWS = CHUNK_ROWS  # rows per chunk when scanning big feature arrays (bounds temporary memory)
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


# --------------------------------------------------------------------------------------------
# writing

def save_archive(path: Path | str, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` as an uncompressed ``.npz`` that :func:`numpy.load` reads.

    Unlike :func:`numpy.savez` the output is deterministic (fixed zip timestamps, keys in the
    given order), so identical arrays give byte-identical files; the file is written to a
    temporary name in the target folder and moved into place with :func:`os.replace`, so a
    reader never sees a half-written archive. Object arrays are refused.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for key, arr in arrays.items():
        if np.asarray(arr).dtype.hasobject:
            raise DataError(f"save_archive {path}: key {key!r} is an object array; store "
                            "strings as fixed-width unicode (np.array(list_of_str))")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED,
                                                        allowZip64=True) as zf:
            for key, arr in arrays.items():
                info = zipfile.ZipInfo(f"{key}.npy", date_time=_FIXED_ZIP_TIME)
                info.compress_type = zipfile.ZIP_STORED
                info.external_attr = 0o644 << 16
                with zf.open(info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(arr), allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


# --------------------------------------------------------------------------------------------
# reading

class _Archive:
    """The open ``.npz`` plus the context every error message needs."""

    def __init__(self, path: Path, npz: Any, split_key: str) -> None:
        self.path = path
        self.npz = npz
        self.keys = list(npz.files)
        self.split_key = split_key
        self.ids: np.ndarray | None = None
        self.split: np.ndarray | None = None

    def fail(self, msg: str) -> DataError:
        return DataError(f"{self.path}: {msg}")

    def keys_present(self) -> str:
        return ", ".join(self.keys) or "(none)"

    def where(self, row: int) -> str:
        """'sample 'x' (train split)' for the error messages."""
        sid = repr(str(self.ids[row])) if self.ids is not None else f"row {row}"
        split = f" ({self.split[row]} split, key {self.split_key!r})" if self.split is not None else ""
        return f"sample {sid}{split}"

    def get(self, key: str) -> np.ndarray:
        """The array ``key``, checked by :class:`~.safe_npz.SafeNpz` before it is read."""
        if key not in self.keys:
            raise self.fail(f"missing key {key!r}; keys present: {self.keys_present()}")
        return self.npz[key]

    def rows(self, key: str, arr: np.ndarray, n: int) -> None:
        if arr.ndim == 0 or arr.shape[0] != n:
            got = "a scalar" if arr.ndim == 0 else f"{arr.shape[0]} rows (shape {arr.shape})"
            raise self.fail(f"inconsistent N across keys: key {key!r} has {got} but 'ids' has "
                            f"{n}; every key must have one row per sample")

    def strings(self, key: str, n: int) -> np.ndarray:
        arr = self.get(key)
        self.rows(key, arr, n)
        if arr.ndim != 1:
            raise self.fail(f"key {key!r} must be 1-D (N,) strings, found shape {arr.shape}")
        if arr.dtype.kind == "S":
            arr = np.char.decode(arr, "utf-8")
        elif arr.dtype.kind in "iu":
            arr = arr.astype(str)
        elif arr.dtype.kind != "U":
            raise self.fail(f"key {key!r} must hold strings, found dtype {arr.dtype}; store "
                            "it as np.array(list_of_str)")
        return arr

    def labels(self, key: str, n: int, label_range: tuple[float, float]) -> np.ndarray:
        arr = self.get(key)
        self.rows(key, arr, n)
        if arr.ndim > 1 and all(d == 1 for d in arr.shape[1:]):
            arr = arr.reshape(n)
        if arr.ndim != 1:
            raise self.fail(f"key {key!r} must have shape (N,), found {arr.shape}")
        if arr.dtype.kind not in "fiub":
            raise self.fail(f"key {key!r} must be numeric, found dtype {arr.dtype}")
        return check_label_values(key, arr.astype(np.float64), label_range, self.fail,
                                  self.where)


def _scan_features(arc: _Archive, key: str, x: np.ndarray) -> int:
    """Replace -inf by 0 in place; refuse NaN/+inf. Returns the number of -inf replaced."""
    scan = scan_finite(x, chunk_rows=_CHUNK_ROWS)
    if scan.nan:
        raise coded(arc.fail(f"key {key!r} has {scan.nan} NaN value(s), first in "
                             f"{arc.where(scan.first_nan)}; msabench never trains on NaN "
                             "silently: fix the feature extraction or drop those samples"),
                    "nonfinite-features")
    if scan.posinf:
        raise coded(arc.fail(f"key {key!r} has {scan.posinf} +inf value(s) (after float32 "
                             f"conversion), first in {arc.where(scan.first_posinf)}; fix or "
                             "rescale the features"), "nonfinite-features")
    return scan.neginf


def _feature(arc: _Archive, key: str, n: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Read one modality array as float32 (N, T, D) plus int64 lengths; returns -inf count."""
    x = arc.get(key)
    arc.rows(key, x, n)
    if x.dtype.kind not in "fiub":
        raise arc.fail(f"key {key!r} must be numeric features, found dtype {x.dtype}")
    if x.ndim not in (2, 3):
        raise arc.fail(f"key {key!r} must have shape (N, D) or (N, T, D), found {x.shape}")
    if x.dtype != np.float32:
        x = x.astype(np.float32)
    if not x.flags.writeable:
        x = x.copy()
    replaced = _scan_features(arc, key, x)
    lkey = f"{key}_lengths"
    if x.ndim == 2:
        x = x[:, None, :]
        if lkey in arc.keys:
            lens = arc.get(lkey)
            arc.rows(lkey, lens, n)
            if not np.all(lens == 1):
                raise arc.fail(f"key {lkey!r} gives lengths other than 1 for the utterance-level "
                               f"(N, D) array {key!r}; drop {lkey!r} or store {key!r} as (N, T, D)")
        return x, np.ones(n, dtype=np.int64), replaced
    t = x.shape[1]
    if lkey not in arc.keys:
        return x, np.full(n, t, dtype=np.int64), replaced
    lens = arc.get(lkey)
    arc.rows(lkey, lens, n)
    if lens.ndim > 1 and all(d == 1 for d in lens.shape[1:]):
        lens = lens.reshape(n)
    if lens.ndim != 1 or lens.dtype.kind not in "iuf":
        raise arc.fail(f"key {lkey!r} must be (N,) integers, found shape {lens.shape} "
                       f"dtype {lens.dtype}")
    if lens.dtype.kind == "f":
        if not np.all(np.isfinite(lens)) or not np.all(lens == np.round(lens)):
            raise arc.fail(f"key {lkey!r} must hold whole numbers of steps")
    lens = lens.astype(np.int64)
    bad = (lens < 1) | (lens > t)
    if bad.any():
        first = int(np.argmax(bad))
        raise arc.fail(
            f"key {lkey!r} has {int(bad.sum())} length(s) outside [1, {t}] (T of {key!r}); "
            f"first: {int(lens[first])} at {arc.where(first)}; lengths count valid steps and "
            "must be at least 1 and at most the padded length")
    return x, lens, replaced


def _carve_valid(arc: _Archive, split: np.ndarray, fraction: float, seed: int,
                 notes: list[str], n: int) -> np.ndarray:
    if not 0.0 < fraction < 1.0:
        raise arc.fail(f"valid_from_train={fraction} must lie strictly between 0 and 1")
    train = np.flatnonzero(split == "train")
    rng = np.random.default_rng(seed)
    split = split.astype("<U5", copy=True)
    if "video" in arc.keys:
        video = arc.strings("video", n)
        videos = np.unique(video[train])
        k = int(round(fraction * len(videos)))
        k = min(max(k, 1), len(videos) - 1)
        if k < 1:
            raise arc.fail(f"cannot carve a validation set by video out of {len(videos)} train "
                           f"video(s) of split key {arc.split_key!r}; add a 'valid' split")
        chosen = rng.choice(videos, size=k, replace=False)
        rows = train[np.isin(video[train], chosen)]
        split[rows] = "valid"
        notes.append(f"{arc.path}: split key {arc.split_key!r} has no 'valid' rows; carved "
                     f"{len(rows)} validation samples from {k} of {len(videos)} train videos "
                     f"(valid_from_train={fraction}, seed {seed}, by 'video')")
    else:
        k = int(round(fraction * len(train)))
        k = min(max(k, 1), len(train) - 1)
        if k < 1:
            raise arc.fail(f"cannot carve a validation set out of {len(train)} train sample(s) "
                           f"of split key {arc.split_key!r}; add a 'valid' split")
        rows = np.sort(rng.choice(train, size=k, replace=False))
        split[rows] = "valid"
        notes.append(f"{arc.path}: split key {arc.split_key!r} has no 'valid' rows; carved "
                     f"{k} of {len(train)} train samples as validation (valid_from_train="
                     f"{fraction}, seed {seed}, by sample: the archive has no 'video' key, so "
                     "segments of one video may sit in both train and valid)")
    return split


def _index(rows: np.ndarray) -> slice | np.ndarray:
    """A slice when ``rows`` is contiguous (the split then shares memory, no copy)."""
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows):
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return rows


def load_archive(path: Path | str, *, meta: DatasetMeta, setting: str, split_key: str = "split",
                 modalities: Mapping[str, str] | None = None,
                 valid_from_train: float | None = None, seed: int = 0) -> LoadedDataset:
    """Read an msabench utterance archive into a validated :class:`LoadedDataset`.

    ``modalities`` maps modality name -> array key (default: ``text``/``audio``/``vision``,
    whichever keys are present). When the split key has no ``valid`` rows and
    ``valid_from_train`` is given, that fraction of the train videos (or, without a ``video``
    key, of the train samples) becomes the validation split, chosen with ``seed``.
    Every problem raises :class:`DataError` naming the file, the key and the fix.
    """
    path = Path(path).expanduser()
    if setting not in meta.settings:
        raise DataError(f"dataset {meta.name} has no setting {setting!r}; "
                        f"settings: {', '.join(meta.settings)}")
    if not path.is_file():
        where = path.resolve()
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise coded(DataError(f"{path}: archive not found ({where} {what}); pass the path of "
                              "the .npz file (check --data-dir / MSABENCH_DATA_DIR)"),
                    "missing-file")
    if not zipfile.is_zipfile(path):
        raise coded(DataError(f"{path}: not an .npz archive (not a zip file); an msabench "
                              "utterance archive is written with numpy.savez (see the archive "
                              "format docs)"), "corrupt-file")
    with SafeNpz(path) as npz:  # checks each member before NumPy reads it (safe_npz.py)
        return _load(_Archive(path, npz, split_key), meta, setting, modalities,
                     valid_from_train, seed)


def _load(arc: _Archive, meta: DatasetMeta, setting: str, modalities: Mapping[str, str] | None,
          valid_from_train: float | None, seed: int) -> LoadedDataset:
    notes: list[str] = []
    for key in ("ids", "label", arc.split_key):
        if key not in arc.keys:
            hint = ""
            if key == arc.split_key:
                splits = [k for k in arc.keys if k.startswith("split")]
                hint = (f" (split keys present: {', '.join(splits)}; choose one with split_key)"
                        if splits else " (add a (N,) string array of train/valid/test)")
            raise arc.fail(f"missing required key {key!r}{hint}; keys present: "
                           f"{arc.keys_present()}")
    ids_raw = arc.get("ids")
    if ids_raw.ndim != 1:
        raise arc.fail(f"key 'ids' must be 1-D (N,), found shape {ids_raw.shape}")
    n = int(ids_raw.shape[0])
    if n == 0:
        raise arc.fail("key 'ids' is empty; the archive has no samples")
    ids = arc.strings("ids", n)
    arc.ids = ids
    split = arc.strings(arc.split_key, n)
    uniq, counts = np.unique(ids, return_counts=True)
    if len(uniq) != n:
        dups = uniq[counts > 1]
        in_splits = sorted(set(split[ids == dups[0]].tolist()))
        raise arc.fail(f"key 'ids' has {int((counts[counts > 1] - 1).sum())} duplicate id(s), "
                       f"e.g. {str(dups[0])!r} (in {'/'.join(in_splits)} of split key "
                       f"{arc.split_key!r}); every sample needs a unique id")
    arc.split = split
    unknown = sorted(set(np.unique(split).tolist()) - set(SPLITS))
    if unknown:
        first = int(np.argmax(~np.isin(split, SPLITS)))
        raise arc.fail(f"key {arc.split_key!r} has unknown split value(s) "
                       f"{', '.join(repr(u) for u in unknown)} (first at sample "
                       f"{str(ids[first])!r}); allowed: train, valid, test (rename e.g. "
                       "'dev' to 'valid')")
    for name in ("train", "test"):
        if not (split == name).any():
            raise arc.fail(f"key {arc.split_key!r} has no {name!r} samples; every archive "
                           "needs train and test rows")
    if not (split == "valid").any():
        if valid_from_train is None:
            raise arc.fail(f"key {arc.split_key!r} has no 'valid' samples; pass "
                           "valid_from_train (e.g. 0.15) to carve a validation set out of "
                           "train (by video when the archive has a 'video' key)")
        split = _carve_valid(arc, split, float(valid_from_train), seed, notes, n)
        arc.split = split
    elif valid_from_train is not None:
        notes.append(f"{arc.path}: split key {arc.split_key!r} already has a 'valid' split; "
                     "valid_from_train ignored")

    labels = arc.labels("label", n, meta.label_range)
    unimodal = {mod: arc.labels(key, n, meta.label_range)
                for key, mod in UNIMODAL_KEYS.items() if key in arc.keys}
    texts = arc.strings("sentence", n) if "sentence" in arc.keys else None

    if modalities is None:
        mapping = {m: k for m, k in DEFAULT_MODALITIES.items() if k in arc.keys}
        if not mapping:
            raise arc.fail(f"no modality arrays: none of the keys text, audio, vision is "
                           f"present (keys present: {arc.keys_present()}); name the feature "
                           "keys with modalities={'text': KEY, ...}")
    else:
        mapping = dict(modalities)
        if not mapping:
            raise arc.fail("modalities={} selects no modality")
        for m, k in mapping.items():
            if k not in arc.keys:
                raise arc.fail(f"missing key {k!r} (modality {m!r}); keys present: "
                               f"{arc.keys_present()}")

    rows = {s: np.flatnonzero(split == s) for s in SPLITS}
    index = {s: _index(r) for s, r in rows.items()}
    features: dict[str, dict[str, torch.Tensor]] = {s: {} for s in SPLITS}
    lengths: dict[str, dict[str, torch.Tensor]] = {s: {} for s in SPLITS}
    for mod, key in mapping.items():
        x, lens, replaced = _feature(arc, key, n)
        if replaced:
            notes.append(f"{arc.path}: key {key!r}: replaced {replaced} -inf value(s) by 0 "
                         "(as MMSA does)")
        for s in SPLITS:
            part = x[index[s]]
            features[s][mod] = torch.from_numpy(np.ascontiguousarray(part))
            lengths[s][mod] = torch.from_numpy(np.ascontiguousarray(lens[index[s]]))
        del x

    splits = {}
    for s in SPLITS:
        r = rows[s]
        splits[s] = SplitData(
            ids=ids[r].tolist(),
            features=features[s],
            lengths=lengths[s],
            labels=torch.from_numpy(labels[r].astype(np.float32)),
            unimodal={m: torch.from_numpy(u[r].astype(np.float32)) for m, u in unimodal.items()},
            texts=texts[r].tolist() if texts is not None else None,
        )
    source = str(arc.path) if arc.split_key == "split" else f"{arc.path} (split key {arc.split_key!r})"
    loaded = LoadedDataset(meta=meta, setting=setting, splits=splits, source=source, notes=notes)
    loaded.validate()
    return loaded
