"""CMU-MultimodalSDK computational sequences (``.csd``): reading and label-driven loading.

A computational sequence is an HDF5 file with one root group (its "root name")::

    /<root>/data/<video_id>/features    (m, n)  per-frame features (float, or byte strings
                                                 for word files such as
                                                 CMU_MOSI_TimestampedWords.csd)
    /<root>/data/<video_id>/intervals   (m, 2)  [start, end] of each frame, in seconds
    /<root>/metadata/<key>              (1,)    JSON-encoded string (the SDK writes
                                                 json.dumps(value))

Feature files (word vectors, COVAREP, Facet, OpenFace, words) hold one entry per *video*; the
label file (``CMU_MOSI_Opinion_Labels.csd``, ``CMU_MOSEI_Labels.csd``) holds one row per
*segment*: row k (0-based, in storage order) of video ``v`` is segment ``v_{k+1}`` (the id
convention of MMSA and ``mosi_utt.npz``; the SDK's own ``align`` names it ``v[k]``).

:func:`read_csd` (:mod:`.csd`) opens and validates one file (structure, shapes, and the
links and sizes a crafted file could abuse) and returns a :class:`CompSeq`;
:func:`read_sdk_labels` turns a label file into flat numpy arrays (ids, labels, split, ...);
:func:`load_sdk` cuts every modality's frames to the label segments and returns a validated
:class:`~msabench.api.dataset.LoadedDataset`.

Cutting rule (the SDK's ``mmdataset.align`` with its ``__intersect_and_copy``, epsilon
``1e-5``): a video's frames are first sorted by start time (stable); frame ``[s0, s1]``
belongs to segment ``[r0, r1]`` when ::

    s0 < r1 + eps  and  s1 > r0 - eps  and  |min(s1, r1) - max(s0, r0)| > eps

i.e. when it overlaps the segment by more than ``eps`` seconds. A frame that only touches a
segment boundary (``s1 == r0``) is not included, a frame straddling a boundary is included in
both neighbouring segments, and zero-length frames are never included. The frames are copied
whole (the SDK clips their *intervals* to the segment but never the features). Unlike the SDK,
which drops a zero-length segment and a segment for which one modality has no frame, msabench
keeps every labelled segment (CMU-MOSI has one zero-length segment, ``2WGyTLYerpo_44``, and the
standard 2199-segment count includes it): a segment with no frame in a modality gets one
all-zero step (length 1), counted in :attr:`LoadedDataset.notes`.

Sequences are right-padded with zeros to the longest segment of the modality over all splits,
or truncated to ``max_len[modality]`` frames (the first ones kept); lengths count the real
frames. ``-inf`` feature values are replaced by 0 (as MMSA does) and counted in a note; NaN and
``+inf`` are refused unless ``nan_to_zero=True``. Words (``words_file``) give
:attr:`SplitData.texts`: the segment's words in time order, joined with single spaces, the
silence token ``sp`` skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from msabench.api.dataset import SPLITS, DatasetMeta, LoadedDataset, SplitData
from msabench.errors import DataError

from .csd import CompSeq, read_csd  # noqa: F401 - re-exported: sdk.read_csd is public
from .folds import check_folds, standard_folds

#: the SDK's interval tolerance (``epsilon=10e-6`` in mmsdk/mmdatasdk/dataset/dataset.py)
EPSILON = 1e-5
#: word tokens that are not words (the SDK's forced-alignment silence marker)
SILENCE_TOKENS = frozenset({"sp"})
NO_SPLIT = "none"
_DEFAULT_MAX_BYTES = 8 << 30


# --------------------------------------------------------------------------------------------
# labels

def _resolve_folds(folds: Mapping[str, Any] | str | None,
                   where: str) -> dict[str, set[str]] | None:
    if folds is None:
        return None
    if isinstance(folds, str):
        return standard_folds(folds)
    return check_folds(folds, where)


def read_sdk_labels(label_file: Path | str | CompSeq,
                    folds: Mapping[str, Any] | str | None = None, *,
                    label_column: int = 0) -> dict[str, np.ndarray]:
    """Flatten a segment-level label file into numpy arrays, one row per segment.

    Keys: ``ids`` (``<video>_<k>``, k from 1 in storage order), ``labels`` (float64, column
    ``label_column``), ``targets`` (all label columns, (N, n)), ``split`` (train/valid/test
    from ``folds``; ``"none"`` for a video in no fold, or everywhere when ``folds`` is None),
    ``video``, ``seg`` (int64, 1-based), ``intervals`` ((N, 2) float64 seconds) and
    ``fold_videos_missing`` (fold videos with no segment in the file). ``folds`` is a mapping
    split -> video ids or a dataset name for :func:`standard_folds` (``"mosi"``, ``"mosei"``).
    Rows come in storage order: videos as the file lists them, segments in row order.
    """
    cs = label_file if isinstance(label_file, CompSeq) else read_csd(label_file)
    fold_sets = _resolve_folds(folds, str(cs.path))
    if cs.kind != "numeric":
        raise DataError(f"{cs.path}: features are strings, not labels; pass the segment label "
                        "file (e.g. CMU_MOSI_Opinion_Labels.csd) as the label file")
    if not cs.videos:
        raise DataError(f"{cs.path}: group '{cs.root}/data' is empty; no labelled segments")
    if not 0 <= label_column < max(cs.dim, 1):
        raise DataError(f"{cs.path}: label_column={label_column} but the labels have "
                        f"{cs.dim} column(s)")
    video_of_split: dict[str, str] = {}
    if fold_sets is not None:
        for split, vids in fold_sets.items():
            for v in vids:
                video_of_split[v] = split
    ids: list[str] = []
    videos: list[str] = []
    segs: list[int] = []
    splits: list[str] = []
    targets: list[np.ndarray] = []
    intervals: list[np.ndarray] = []
    with cs.opened():
        for video in cs.videos:
            feats, ivs = cs[video]
            m = feats.shape[0]
            split = video_of_split.get(video, NO_SPLIT)
            for k in range(m):
                ids.append(f"{video}_{k + 1}")
                videos.append(video)
                segs.append(k + 1)
                splits.append(split)
            targets.append(feats.astype(np.float64))
            intervals.append(ivs)
    target = (np.concatenate(targets, axis=0) if targets
              else np.zeros((0, max(cs.dim, 1))))
    labels = target[:, label_column].copy()
    bad = ~np.isfinite(labels)
    if bad.any():
        first = int(np.argmax(bad))
        raise DataError(f"{cs.path}: {int(bad.sum())} NaN/inf label(s), first at segment "
                        f"{ids[first]!r}; msabench never trains on NaN: fix or drop them")
    iv = np.concatenate(intervals, axis=0) if intervals else np.zeros((0, 2))
    if not np.all(np.isfinite(iv)):
        first = int(np.argmax(~np.all(np.isfinite(iv), axis=1)))
        raise DataError(f"{cs.path}: non-finite interval at segment {ids[first]!r}")
    present = set(videos)
    missing = sorted(v for v in video_of_split if v not in present)
    return {
        "ids": np.array(ids, dtype=str),
        "labels": labels,
        "targets": target,
        "split": np.array(splits, dtype="<U5"),
        "video": np.array(videos, dtype=str),
        "seg": np.array(segs, dtype=np.int64),
        "intervals": iv,
        "fold_videos_missing": np.array(missing, dtype=str),
    }


# --------------------------------------------------------------------------------------------
# cutting frames to segments

def overlapping_frames(frame_intervals: np.ndarray, start: float, end: float,
                       eps: float = EPSILON) -> np.ndarray:
    """Boolean mask of the frames that belong to segment ``[start, end]`` (the SDK's rule)."""
    s0 = frame_intervals[:, 0]
    s1 = frame_intervals[:, 1]
    hit = (s0 < end + eps) & (s1 > start - eps)
    overlap = np.minimum(s1, end) - np.maximum(s0, start)
    return hit & (np.abs(overlap) > eps)


def _sorted_frames(feats: np.ndarray, ivs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if ivs.shape[0] > 1 and np.any(np.diff(ivs[:, 0]) < 0):
        order = np.argsort(ivs[:, 0], kind="stable")
        return feats[order], ivs[order]
    return feats, ivs


def _segment_rows(labels: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, list[int]]:
    """video -> row indices (into the kept label rows) of its segments."""
    out: dict[str, list[int]] = {}
    for row, video in enumerate(labels["video"][keep].tolist()):
        out.setdefault(video, []).append(row)
    return out


def _missing_videos(cs: CompSeq, videos: list[str], what: str) -> None:
    missing = [v for v in videos if v not in cs]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise DataError(
            f"{cs.path}: video {missing[0]!r}{more} of the label file has no entry in this "
            f"{what} file ({len(missing)} of {len(videos)} labelled videos missing); use the "
            "feature files of the same dataset release as the labels")


def _cut_modality(cs: CompSeq, modality: str, labels: dict[str, np.ndarray],
                  keep: np.ndarray, by_video: dict[str, list[int]], limit: int | None,
                  nan_to_zero: bool, max_bytes: int | None,
                  notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    if cs.kind != "numeric":
        raise DataError(f"{cs.path}: holds words (string features), not numeric features for "
                        f"modality {modality!r}; pass it as words_file= to get the segments' "
                        "texts, and a word-vector file (e.g. *_TimestampedWordVectors.csd) as "
                        "the text features")
    _missing_videos(cs, list(by_video), f"{modality!r} feature")
    ivs_all = labels["intervals"][keep]
    n = int(keep.sum())
    pieces: list[np.ndarray | None] = [None] * n
    empty = n_neg = 0
    first_bad: tuple[str, int, str] | None = None
    n_bad = 0
    with cs.opened():
        for video, rows in by_video.items():
            feats, ivs = _sorted_frames(*cs[video])
            if feats.shape[0] and not np.all(np.isfinite(ivs)):
                raise DataError(f"{cs.path}: video {video!r} has non-finite frame intervals")
            for row in rows:
                start, end = ivs_all[row]
                chunk = feats[overlapping_frames(ivs, float(start), float(end))]
                if limit is not None:
                    chunk = chunk[:limit]
                if chunk.shape[0] == 0:
                    empty += 1
                    continue
                if not np.isfinite(chunk).all():
                    chunk = chunk.copy()
                    neg = np.isneginf(chunk)
                    n_neg += int(neg.sum())
                    chunk[neg] = 0.0
                    bad = ~np.isfinite(chunk)
                    if bad.any():
                        n_bad += int(bad.sum())
                        if first_bad is None:
                            kind = "NaN" if np.isnan(chunk).any() else "+inf"
                            first_bad = (video, row, kind)
                        if nan_to_zero:
                            chunk[bad] = 0.0
                pieces[row] = chunk
    ids = labels["ids"][keep]
    if n_bad and not nan_to_zero:
        video, row, kind = first_bad  # type: ignore[misc]
        raise DataError(f"{cs.path}: {n_bad} NaN/+inf feature value(s) inside the labelled "
                        f"segments (first: {kind} in segment {str(ids[row])!r}); msabench "
                        "never trains on NaN silently: fix the features or pass "
                        "nan_to_zero=True to replace them by 0 (counted in the notes)")
    if n_bad:
        notes.append(f"{cs.path}: replaced {n_bad} NaN/+inf value(s) by 0 (nan_to_zero=True)")
    if n_neg:
        notes.append(f"{cs.path}: replaced {n_neg} -inf value(s) by 0 (as MMSA does)")
    if empty:
        notes.append(f"{cs.path}: {empty} of {n} segment(s) have no {modality!r} frame "
                     "overlapping their interval; each got one all-zero step (length 1)")
    lengths = np.array([1 if p is None else p.shape[0] for p in pieces], dtype=np.int64)
    t = int(lengths.max()) if n else 1
    d = cs.dim
    size = n * t * d * 4
    if max_bytes is not None and size > max_bytes:
        raise DataError(
            f"{cs.path}: padding modality {modality!r} to its longest segment ({t} frames) "
            f"needs {size / 2**30:.1f} GiB ({n} x {t} x {d} float32); pass max_len="
            f"{{{modality!r}: N}} to truncate (e.g. 500) or raise max_bytes")
    out = np.zeros((n, t, d), dtype=np.float32)
    for row, p in enumerate(pieces):
        if p is not None:
            out[row, :p.shape[0]] = p
    return out, lengths


def _cut_words(cs: CompSeq, labels: dict[str, np.ndarray], keep: np.ndarray,
               by_video: dict[str, list[int]], notes: list[str]) -> list[str]:
    if cs.kind != "words":
        raise DataError(f"{cs.path}: words_file must hold words (string features, e.g. "
                        "CMU_MOSI_TimestampedWords.csd); this file holds numeric features: "
                        "pass it in feature_files instead")
    _missing_videos(cs, list(by_video), "words")
    ivs_all = labels["intervals"][keep]
    texts = [""] * int(keep.sum())
    with cs.opened():
        for video, rows in by_video.items():
            words, ivs = _sorted_frames(*cs[video])
            tokens = words[:, 0] if words.ndim == 2 else words
            for row in rows:
                start, end = ivs_all[row]
                sel = tokens[overlapping_frames(ivs, float(start), float(end))].tolist()
                texts[row] = " ".join(w.strip() for w in sel
                                      if w.strip() and w.strip().lower() not in SILENCE_TOKENS)
    n_empty = sum(1 for t in texts if not t)
    if n_empty:
        notes.append(f"{cs.path}: {n_empty} segment(s) have no word inside their interval "
                     "(empty text)")
    return texts


def _limits(max_len: Mapping[str, int] | int | None,
            modalities: list[str]) -> dict[str, int | None]:
    if max_len is None:
        return {m: None for m in modalities}
    if isinstance(max_len, int):
        max_len = {m: max_len for m in modalities}
    unknown = sorted(set(max_len) - set(modalities))
    if unknown:
        raise DataError(f"max_len names modality {unknown[0]!r}, which has no feature file; "
                        f"modalities: {', '.join(modalities)}")
    out: dict[str, int | None] = {m: None for m in modalities}
    for m, v in max_len.items():
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise DataError(f"max_len[{m!r}] must be a positive integer, got {v!r}")
        out[m] = int(v)
    return out


def _path(base: Path | None, p: Path | str) -> Path:
    p = Path(p).expanduser()
    return base / p if base is not None and not p.is_absolute() else p


def load_sdk(source: Path | str | None = None, *, meta: DatasetMeta, setting: str,
             label_file: Path | str | None = None,
             feature_files: Mapping[str, Path | str] | None = None,
             words_file: Path | str | None = None,
             folds: Mapping[str, Any] | str | None = None,
             max_len: Mapping[str, int] | int | None = None, label_column: int = 0,
             nan_to_zero: bool = False,
             max_bytes: int | None = _DEFAULT_MAX_BYTES) -> LoadedDataset:
    """Load SDK computational sequences into a validated :class:`LoadedDataset`.

    ``source`` is the folder holding the files (relative ``label_file``/``feature_files``/
    ``words_file`` paths are resolved against it) or the label file itself. ``feature_files``
    maps modality -> ``.csd`` with per-video frames; at least one is required (for labels
    only, use :func:`read_sdk_labels`). ``folds`` is a mapping split -> video ids or a dataset
    name (``"mosi"``/``"mosei"``); None uses the standard folds of ``meta.name``. Segments of
    videos in no fold are left out (counted in a note). See the module docstring for the exact
    cutting, padding and value rules.
    """
    if setting not in meta.settings:
        raise DataError(f"dataset {meta.name} has no setting {setting!r}; "
                        f"settings: {', '.join(meta.settings)}")
    base: Path | None = None
    if source is not None:
        src = Path(source).expanduser()
        if src.is_dir():
            base = src
        elif src.is_file():
            base = src.parent
            if label_file is None:
                label_file = src.name
        elif not src.exists():
            raise DataError(f"{src}: SDK data folder not found ({src.resolve()} does not exist)")
    if label_file is None:
        candidates = sorted(base.glob("*Label*.csd")) if base is not None else []
        if len(candidates) != 1:
            found = ", ".join(c.name for c in candidates) or "none"
            raise DataError(f"{base or '(no folder)'}: pass label_file= (the segment label "
                            f".csd, e.g. CMU_MOSI_Opinion_Labels.csd); *Label*.csd files "
                            f"found: {found}")
        label_file = candidates[0]
    label_path = _path(base, label_file)
    if not feature_files:
        raise DataError(f"{label_path}: load_sdk needs at least one feature file "
                        "(feature_files={'text': ..., 'audio': ..., 'vision': ...}); for labels "
                        "only use read_sdk_labels()")
    if folds is None:
        folds = meta.name
    fold_sets = _resolve_folds(folds, str(label_path))

    notes: list[str] = []
    labels = read_sdk_labels(label_path, fold_sets, label_column=label_column)
    lo, hi = meta.label_range
    out = (labels["labels"] < lo - 1e-6) | (labels["labels"] > hi + 1e-6)
    if out.any():
        first = int(np.argmax(out))
        raise DataError(
            f"{label_path}: {int(out.sum())} label(s) outside the dataset range [{lo}, {hi}] "
            f"(first {labels['labels'][first]:.3f} at segment {str(labels['ids'][first])!r}, "
            f"column {label_column}); check label_column and the dataset")
    keep = labels["split"] != NO_SPLIT
    n_out = int((~keep).sum())
    if n_out:
        n_vid = len(set(labels["video"][~keep].tolist()))
        notes.append(f"{label_path}: {n_out} segment(s) of {n_vid} video(s) are in no fold "
                     "and were left out")
    if len(labels["fold_videos_missing"]):
        miss = labels["fold_videos_missing"].tolist()
        notes.append(f"{label_path}: {len(miss)} fold video(s) have no labelled segment: "
                     f"{', '.join(miss[:5])}{' ...' if len(miss) > 5 else ''}")
    n_zero = int((np.abs(labels["intervals"][keep, 1] - labels["intervals"][keep, 0])
                  <= EPSILON).sum())
    if n_zero:
        notes.append(f"{label_path}: {n_zero} segment(s) have a zero-length interval (the "
                     "SDK's align drops them; msabench keeps them)")
    for split in SPLITS:
        if not np.any(labels["split"] == split):
            raise DataError(f"{label_path}: no labelled segment falls in the {split!r} fold; "
                            "check that the folds belong to this dataset")
    by_video = _segment_rows(labels, keep)

    modalities = list(feature_files)
    limits = _limits(max_len, modalities)
    feats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    sources = [str(label_path)]
    for modality, fpath in feature_files.items():
        cs = read_csd(_path(base, fpath))
        feats[modality] = _cut_modality(cs, modality, labels, keep, by_video, limits[modality],
                                        nan_to_zero, max_bytes, notes)
        sources.append(f"{modality}={cs.path.name}")
    texts: list[str] | None = None
    if words_file is not None:
        wcs = read_csd(_path(base, words_file))
        texts = _cut_words(wcs, labels, keep, by_video, notes)
        sources.append(f"words={wcs.path.name}")

    split_of_row = labels["split"][keep]
    ids = labels["ids"][keep]
    y = labels["labels"][keep].astype(np.float32)
    splits: dict[str, SplitData] = {}
    for split in SPLITS:
        rows = np.flatnonzero(split_of_row == split)
        splits[split] = SplitData(
            ids=ids[rows].tolist(),
            features={m: torch.from_numpy(np.ascontiguousarray(x[rows]))
                      for m, (x, _) in feats.items()},
            lengths={m: torch.from_numpy(lens[rows].copy()) for m, (_, lens) in feats.items()},
            labels=torch.from_numpy(y[rows].copy()),
            texts=[texts[i] for i in rows.tolist()] if texts is not None else None,
        )
    loaded = LoadedDataset(meta=meta, setting=setting, splits=splits,
                           source=" + ".join(sources), notes=notes)
    loaded.validate()
    return loaded
