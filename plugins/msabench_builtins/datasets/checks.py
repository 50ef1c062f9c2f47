"""Validation shared by the dataset readers (``.npz`` archive, MMSA / MulT / MAG-BERT pickles).

Every check raises :class:`~msabench.errors.DataError` with a message that names the file, the
split, the key, the offending sample and the fix. Big feature arrays are scanned in chunks of
:data:`CHUNK_ROWS` rows so the temporary memory stays small, and ``-inf`` is replaced by 0 in
place (as MMSA does) instead of copying the array.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from msabench.api.dataset import SPLITS, DatasetMeta, LoadedDataset, SplitData
from msabench.errors import DataError

from .problems import coded

CHUNK_ROWS = 256  # rows per chunk when scanning big feature arrays (bounds temporary memory)


# --------------------------------------------------------------------------------------------
# format-independent numeric checks

@dataclass
class FiniteScan:
    """What :func:`scan_finite` found; ``first_*`` are row indices (axis 0)."""

    nan: int = 0
    first_nan: int | None = None
    posinf: int = 0
    first_posinf: int | None = None
    neginf: int = 0  # replaced by 0 when the scan was asked to


def scan_finite(x: np.ndarray, *, replace_neginf: bool = True,
                chunk_rows: int = CHUNK_ROWS) -> FiniteScan:
    """Count NaN / +inf / -inf in ``x`` chunk by chunk; set -inf to 0 in place when asked.

    The common all-finite chunk costs one ``isfinite`` pass over a view; only a chunk with a
    non-finite value is looked at more closely. ``x`` must be writeable to replace -inf.
    """
    scan = FiniteScan()
    for start in range(0, x.shape[0], chunk_rows):
        chunk = x[start:start + chunk_rows]
        if np.isfinite(chunk).all():
            continue
        nan = np.isnan(chunk)
        if nan.any():
            scan.nan += int(nan.sum())
            if scan.first_nan is None:
                scan.first_nan = start + int(np.argwhere(nan)[0][0])
        del nan
        pos = np.isposinf(chunk)
        if pos.any():
            scan.posinf += int(pos.sum())
            if scan.first_posinf is None:
                scan.first_posinf = start + int(np.argwhere(pos)[0][0])
        del pos
        neg = np.isneginf(chunk)
        if neg.any():
            scan.neginf += int(neg.sum())
            if replace_neginf:
                chunk[neg] = 0.0
    return scan


def first_duplicate(ids: Sequence[str]) -> tuple[str, int] | None:
    """``(id, number of extra copies in total)`` of the first repeated id, or None."""
    seen: set[str] = set()
    first = None
    extra = 0
    for i in ids:
        if i in seen:
            extra += 1
            if first is None:
                first = i
        else:
            seen.add(i)
    return None if first is None else (first, extra)


# --------------------------------------------------------------------------------------------
# split-dict readers (MMSA / MulT / MAG-BERT pickles)

@dataclass
class SplitReader:
    """One split of a pickled dataset plus the context every error message needs."""

    path: Path
    fmt: str            # e.g. "MMSA pickle"
    split: str          # the name in the file ("dev" for MAG-BERT)
    keys: list[str] = field(default_factory=list)
    ids: list[str] | None = None
    n_from: str = "key 'id'"  # what defines N, for the inconsistent-N message

    def fail(self, msg: str) -> DataError:
        return DataError(f"{self.path} [{self.split}]: {msg}")

    def keys_present(self) -> str:
        return ", ".join(self.keys) or "(none)"

    def where(self, row: int) -> str:
        if self.ids is not None and 0 <= row < len(self.ids):
            return f"sample {self.ids[row]!r} (row {row} of split {self.split!r})"
        return f"row {row} of split {self.split!r}"

    def rows(self, key: str, arr: np.ndarray, n: int) -> None:
        if arr.ndim == 0 or arr.shape[0] != n:
            got = "a scalar" if arr.ndim == 0 else f"{arr.shape[0]} rows (shape {arr.shape})"
            raise self.fail(f"inconsistent N: key {key!r} has {got} but {self.n_from} has {n}; "
                            f"every key of a split must have one row per sample (the file is "
                            f"truncated or was assembled wrongly; re-download the {self.fmt})")

    def array(self, key: str, value: Any) -> np.ndarray:
        if isinstance(value, np.ndarray):
            return value
        try:
            return np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise self.fail(f"key {key!r} cannot be read as an array ({exc}); expected the "
                            f"{self.fmt} layout (docs/datasets.md)") from None

    # -- typed readers -----------------------------------------------------------------------

    def strings(self, key: str, value: Any, n: int) -> list[str]:
        arr = self.array(key, value)
        self.rows(key, arr, n)
        if arr.ndim > 1 and all(d == 1 for d in arr.shape[1:]):
            arr = arr.reshape(n)
        if arr.ndim != 1:
            raise self.fail(f"key {key!r} must be (N,) strings, found shape {arr.shape}")
        return [decode(v) for v in arr.tolist()]

    def features(self, key: str, value: Any, n: int) -> tuple[np.ndarray, int]:
        """(N, T, D) float32 features, -inf replaced by 0 in place; returns the -inf count.

        No copy when the array is already writeable float32 (what the published pickles hold).
        """
        x = self.array(key, value)
        self.rows(key, x, n)
        if x.dtype.kind not in "fiub":
            raise self.fail(f"key {key!r} must hold numeric features, found dtype {x.dtype}")
        if x.ndim != 3:
            raise self.fail(f"key {key!r} must have shape (N, T, D), found {x.shape}; expected "
                            f"the {self.fmt} layout (docs/datasets.md)")
        if x.shape[1] < 1 or x.shape[2] < 1:
            raise self.fail(f"key {key!r} has an empty time or feature axis {x.shape}")
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        elif not x.flags.writeable:
            x = x.copy()
        scan = scan_finite(x)
        if scan.nan:
            raise coded(self.fail(
                f"key {key!r} has {scan.nan} NaN value(s), first in {self.where(scan.first_nan)}; "
                "msabench never trains on NaN silently: fix the feature extraction or drop "
                "those samples"), "nonfinite-features")
        if scan.posinf:
            raise coded(self.fail(
                f"key {key!r} has {scan.posinf} +inf value(s) (after float32 conversion), first "
                f"in {self.where(scan.first_posinf)}; fix or rescale the features"),
                "nonfinite-features")
        return x, scan.neginf

    def lengths(self, key: str, value: Any, n: int, t: int, of: str,
                zero_lengths: dict[str, int]) -> np.ndarray:
        """(N,) int64 valid-step counts in [1, t]; zeros become 1 (counted in ``zero_lengths``)."""
        lens = self.array(key, value)
        self.rows(key, lens, n)
        if lens.ndim > 1 and all(d == 1 for d in lens.shape[1:]):
            lens = lens.reshape(n)
        if lens.ndim != 1 or lens.dtype.kind not in "iuf":
            raise self.fail(f"key {key!r} must be (N,) integers, found shape {lens.shape} "
                            f"dtype {lens.dtype}")
        if lens.dtype.kind == "f" and not (np.all(np.isfinite(lens))
                                           and np.all(lens == np.round(lens))):
            raise self.fail(f"key {key!r} must hold whole numbers of steps")
        lens = lens.astype(np.int64)
        bad = (lens < 0) | (lens > t)
        if bad.any():
            first = int(np.argmax(bad))
            raise self.fail(
                f"key {key!r} has {int(bad.sum())} length(s) outside [0, {t}] (T of {of!r}); "
                f"first: {int(lens[first])} at {self.where(first)}; lengths count valid steps "
                f"and cannot exceed the padded length - the lengths do not belong to these "
                f"features (re-download the {self.fmt})")
        zero = lens == 0
        if zero.any():
            zero_lengths[key] = zero_lengths.get(key, 0) + int(zero.sum())
            lens[zero] = 1
        return lens

    def labels(self, key: str, value: Any, n: int,
               label_range: tuple[float, float]) -> np.ndarray:
        arr = self.array(key, value)
        self.rows(key, arr, n)
        if arr.ndim > 1 and all(d == 1 for d in arr.shape[1:]):
            arr = arr.reshape(n)
        if arr.ndim != 1:
            raise self.fail(f"key {key!r} must have shape (N,) (or (N, 1, 1)), found {arr.shape}")
        if arr.dtype.kind not in "fiub":
            raise self.fail(f"key {key!r} must be numeric, found dtype {arr.dtype}")
        return self.check_labels(key, arr.astype(np.float64), label_range)

    def check_labels(self, key: str, arr: np.ndarray,
                     label_range: tuple[float, float]) -> np.ndarray:
        return check_label_values(key, arr, label_range, self.fail, self.where)


def check_label_values(key: str, arr: np.ndarray, label_range: tuple[float, float],
                       fail: Callable[[str], DataError], where: Callable[[int], str]) -> np.ndarray:
    """NaN, inf and range checks of a float label array; errors name the key and first row."""
    nan = np.isnan(arr)
    if nan.any():
        raise coded(fail(f"key {key!r} has {int(nan.sum())} NaN label(s), first at "
                         f"{where(int(np.argmax(nan)))}; drop those samples or fix the "
                         "labels (msabench never trains on NaN)"), "nonfinite-labels")
    inf = np.isinf(arr)
    if inf.any():
        raise coded(fail(f"key {key!r} has {int(inf.sum())} infinite label(s), first at "
                         f"{where(int(np.argmax(inf)))}; fix the labels"), "nonfinite-labels")
    lo, hi = label_range
    out = (arr < lo - 1e-6) | (arr > hi + 1e-6)
    if out.any():
        first = int(np.argmax(out))
        raise coded(fail(
            f"key {key!r} has {int(out.sum())} label(s) outside the dataset range "
            f"[{lo}, {hi}] (span {arr.min():.3f}..{arr.max():.3f}; first {arr[first]:.3f} "
            f"at {where(first)}); check the label scale or that the file belongs to "
            "this dataset (e.g. a MOSI file read as SIMS)"), "labels-out-of-range")
    return arr.astype(np.float32)


def decode(value: Any) -> str:
    """str of a pickled string: bytes are UTF-8 (falling back to Latin-1), numpy str is str."""
    if isinstance(value, (bytes, bytearray, np.bytes_)):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")
    return str(value)


def split_dicts(data: Any, path: Path, fmt: str, *, aliases: Mapping[str, str] | None = None,
                item: str = "dict") -> dict[str, tuple[str, Any]]:
    """``{train|valid|test: (name in file, split object)}`` of a top-level dict of splits.

    ``aliases`` maps a name in the file to a standard split (e.g. ``{"dev": "valid"}``), used
    only when the standard name is absent.
    """
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a dict of splits {{train, valid, test}} (the {fmt} "
                        f"layout), found {type(data).__name__}; is this the right file/format?")
    found: dict[str, tuple[str, Any]] = {}
    aliases = dict(aliases or {})
    for split in SPLITS:
        if split in data:
            found[split] = (split, data[split])
            continue
        alias = next((a for a, s in aliases.items() if s == split and a in data), None)
        if alias is not None:
            found[split] = (alias, data[alias])
            continue
        names = ", ".join(repr(k) for k in data) or "(none)"
        expected = " / ".join([*SPLITS, *aliases])
        raise DataError(f"{path}: missing split {split!r}; splits present: {names}. A {fmt} "
                        f"holds the splits {expected}: the file is incomplete or not a {fmt} "
                        "(re-download it, or pick the matching format with "
                        "--set data.options.format=...)")
    for split, (name, obj) in found.items():
        wanted = dict if item == "dict" else list
        if not isinstance(obj, wanted):
            raise DataError(f"{path} [{name}]: split {name!r} must be a {item} (the {fmt} "
                            f"layout), found {type(obj).__name__}")
    return found


def check_unique_ids(path: Path, ids: Mapping[str, Sequence[str]]) -> None:
    """Refuse duplicate sample ids within a split and across splits (train/test leakage)."""
    owner: dict[str, str] = {}
    for split, split_ids in ids.items():
        dup = first_duplicate(split_ids)
        if dup is not None:
            raise DataError(f"{path} [{split}]: {dup[1]} duplicate sample id(s), e.g. "
                            f"{dup[0]!r}; every sample needs a unique id (the file was "
                            "assembled wrongly; re-download it)")
        for i in split_ids:
            other = owner.setdefault(i, split)
            if other != split:
                raise DataError(f"{path}: sample id {i!r} is in both the {other!r} and the "
                                f"{split!r} split; a sample in two splits leaks test data into "
                                "training - re-download the file or remove the duplicate")


def neginf_note(path: Path, key: str, per_split: Mapping[str, int]) -> str | None:
    total = sum(per_split.values())
    if not total:
        return None
    parts = ", ".join(f"{s} {c}" for s, c in per_split.items() if c)
    return f"{path}: key {key!r}: replaced {total} -inf value(s) by 0 ({parts}), as MMSA does"


def zero_length_note(path: Path, zero: Mapping[str, int]) -> list[str]:
    return [f"{path}: key {key!r}: {count} sample(s) have length 0; counted as length 1 "
            "(one all-zero padding step) so sequence models see a valid step"
            for key, count in zero.items() if count]


def assemble(path: Path, meta: DatasetMeta, setting: str, splits: Mapping[str, SplitData],
             notes: list[str], source: str | None = None) -> LoadedDataset:
    """Wrap checked splits in a :class:`LoadedDataset` and validate it (:func:`validate_loaded`)."""
    loaded = LoadedDataset(meta=meta, setting=setting, splits=dict(splits),
                           source=source or str(path), notes=notes)
    validate_loaded(loaded, finite_checked=True)
    notes += foreign_notes(path, meta, loaded.splits)
    return loaded


def foreign_notes(path: Path, meta: DatasetMeta, splits: Mapping[str, SplitData]) -> list[str]:
    """Notes (printed by every run) when the file looks like another dataset's: unimodal labels
    on a dataset without them, or labels spanning at most a third of the range (a CH-SIMS file
    placed as MOSI). ``msabench data check`` reports the same as errors."""
    out = []
    extra = sorted({m for s in splits.values() for m in s.unimodal})
    if extra and not meta.unimodal_labels:
        out.append(f"{path}: the file has unimodal labels ({', '.join(extra)}), which "
                   f"{meta.name} does not have (CH-SIMS files do): is it from another dataset? "
                   f"`msabench data check {meta.name}` reports it")
    y = torch.cat([s.labels for s in splits.values()])
    lo, hi = meta.label_range
    if len(y) >= 30 and float(y.max() - y.min()) <= (hi - lo) / 3 + 1e-6:
        out.append(f"{path}: all labels lie in [{float(y.min()):.3f}, {float(y.max()):.3f}], "
                   f"a third of {meta.name}'s range [{lo:g}, {hi:g}] at most: is the file from "
                   f"another dataset? `msabench data check {meta.name}` reports it")
    return out


def validate_loaded(loaded: LoadedDataset, *, finite_checked: bool = False) -> None:
    """Every check of :meth:`LoadedDataset.validate`, without its full-size temporaries.

    The core's check calls ``torch.isfinite(x).all()`` on whole feature tensors: a bool tensor
    as large as the features (plus torch's own temporaries) and, on the MOSI unaligned file,
    about 3x the time of unpickling it. Here the finiteness scan goes in row chunks, and is
    skipped when ``finite_checked`` (the reader's :func:`scan_finite` already scanned the very
    memory the tensors share). One check more than the core's: each modality has the same
    feature size in every split. Sets ``loaded.validated`` so the runner does not repeat it.
    """
    name = loaded.source or loaded.meta.name
    for split in SPLITS:
        if split not in loaded.splits:
            raise DataError(f"{name}: missing split {split!r}")
    train = loaded.splits["train"]
    mods = set(train.features)
    for split_name, split in loaded.splits.items():
        where = f"{name} [{split_name}]"
        if set(split.features) != mods:
            raise DataError(f"{where}: modalities {sorted(split.features)} differ from "
                            f"train's {sorted(mods)}")
        n = len(split.ids)
        dup = first_duplicate(split.ids)
        if dup is not None:
            raise DataError(f"{where}: duplicate sample id {dup[0]!r}")
        if tuple(split.labels.shape) != (n,):
            raise DataError(f"{where}: labels have shape {tuple(split.labels.shape)}, "
                            f"expected ({n},)")
        for m, x in split.features.items():
            if x.dim() != 3 or x.shape[0] != n:
                raise DataError(f"{where}: modality {m!r} has shape {tuple(x.shape)}; "
                                f"expected ({n}, T, D)")
            d_train = train.features[m].shape[-1]
            if x.shape[-1] != d_train:
                raise DataError(f"{where}: modality {m!r} has {x.shape[-1]}-d features but "
                                f"{d_train}-d in the train split; every split must come from "
                                "the same feature extractor")
            lens = split.lengths.get(m)
            if lens is None or tuple(lens.shape) != (n,):
                raise DataError(f"{where}: modality {m!r} needs lengths of shape ({n},)")
            if n and (int(lens.max()) > x.shape[1] or int(lens.min()) < 1):
                raise DataError(f"{where}: modality {m!r} lengths must lie in [1, "
                                f"{x.shape[1]}] (found {int(lens.min())}..{int(lens.max())})")
            if not finite_checked:
                for start in range(0, n, CHUNK_ROWS):
                    chunk = x[start:start + CHUNK_ROWS]
                    if not bool(torch.isfinite(chunk).all()):
                        bad = int((~torch.isfinite(chunk)).sum())
                        raise coded(DataError(
                            f"{where}: modality {m!r} has non-finite values (NaN/inf; {bad} in "
                            f"rows {start}..{start + len(chunk) - 1})"), "nonfinite-features")
        for m, u in {"": split.labels, **split.unimodal}.items():
            what = f"unimodal {m} labels" if m else "labels"
            if tuple(u.shape) != (n,):
                raise DataError(f"{where}: {what} have shape {tuple(u.shape)}, expected ({n},)")
            if not bool(torch.isfinite(u).all()):
                raise DataError(f"{where}: {what} contain NaN or inf")
            lo, hi = loaded.meta.label_range
            if n and (float(u.min()) < lo - 1e-6 or float(u.max()) > hi + 1e-6):
                raise DataError(f"{where}: {what} span [{float(u.min()):.3f}, "
                                f"{float(u.max()):.3f}], outside the dataset range [{lo}, {hi}]")
    loaded.validated = True


def to_split(ids: list[str], features: Mapping[str, np.ndarray],
             lengths: Mapping[str, np.ndarray], labels: np.ndarray,
             unimodal: Mapping[str, np.ndarray] | None = None,
             texts: Iterable[str] | None = None) -> SplitData:
    """NumPy -> torch without copies (``torch.from_numpy`` shares the arrays' memory)."""
    return SplitData(
        ids=ids,
        features={m: torch.from_numpy(x) for m, x in features.items()},
        lengths={m: torch.from_numpy(np.ascontiguousarray(v, dtype=np.int64))
                 for m, v in lengths.items()},
        labels=torch.from_numpy(np.ascontiguousarray(labels, dtype=np.float32)),
        unimodal={m: torch.from_numpy(np.ascontiguousarray(u, dtype=np.float32))
                  for m, u in (unimodal or {}).items()},
        texts=list(texts) if texts is not None else None,
    )
