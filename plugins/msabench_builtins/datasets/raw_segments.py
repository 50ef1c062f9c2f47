"""Raw CMU-MOSI / CMU-MOSEI: full videos plus the official segment intervals.

::

    <root>/segments.csv          one row per opinion segment (columns below)
    <root>/Raw/<video_id>.mp4    the full video of each video id

Videos are also found where CMU's raw archives put them: ``Raw/Video/Full/<video_id>.mp4``
(CMU-MOSI) and ``Raw/Videos/Full/Combined/<video_id>.mp4`` (CMU-MOSEI); the first of
:data:`VIDEO_DIRS` holding the file wins.

==============  ========  ====================================================================
column          required  meaning
==============  ========  ====================================================================
``segment_id``  yes       the sample id, kept as written (``03bSnISJMiM_1``, ``-3g5yACwYnA[0]``)
``start``       yes       segment start in seconds from the beginning of the video
``end``         yes       segment end in seconds (``start <= end``, ``end > 0``)
``video_id``    no        the video file stem; default: ``segment_id`` without its trailing
                          ``_<k>`` or ``[<k>]``
``label``       no        sentiment in [-3, 3]; without the column, each segment takes the
                          label of the SDK label file beside the table (``CMU_MOSI_Opinion_
                          Labels.csd`` / ``CMU_MOSEI_Labels.csd``) whose interval on the same
                          video matches (within 0.01 s)
``split``       no        ``train`` / ``valid`` / ``test``; default: the standard SDK folds by
                          video (:mod:`.folds`)
``text``        no        the transcript; needed by the text extractor
==============  ========  ====================================================================

Instead of ``segments.csv``, the SDK label file alone serves as the interval table (labels,
intervals, segment ids ``<video>_<k>`` as the ``sdk`` setting names them, the standard folds;
no transcripts, so the text extractor must be switched off with ``text_model = "none"``).

Each segment becomes ``MediaRef(<video file>, start, end)`` and goes through the extractors
and the digest-keyed feature cache of :mod:`.raw_extract` (a segment is keyed by the video's
digest and its interval). The official intervals hold a few oddities, cut as
:func:`media_windows` says: negative starts (CMU-MOSEI: 223 segments, down to -0.49 s) start
at 0, and windows shorter than 0.1 s (CMU-MOSI: one of length 0) are widened to 0.1 s around
their centre; the data notes count them. Every problem raises :class:`DataError` naming the file, the
segment and the fix: a missing video, an interval outside its video, a bad or missing column.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from msabench.api.dataset import SPLITS, DatasetMeta, LoadedDataset, MediaRef
from msabench.api.extractor import Extractor
from msabench.errors import DataError

from .csv_tables import check_range, line, numeric_column, read_table
from .problems import coded  # noqa: F401

COLUMNS = ("segment_id", "video_id", "start", "end", "label", "split", "text")
REQUIRED = ("segment_id", "start", "end")
#: folders (under the table's folder) searched for ``<video_id>.mp4``, in this order
VIDEO_DIRS = ("Raw", "Raw/Video/Full", "Raw/Videos/Full/Combined")
#: how far (seconds) an interval from the table and one from the SDK label file may differ
MATCH_TOLERANCE = 0.01
#: the shortest window (seconds) cut for a segment: shorter ones are widened around their centre
MIN_WINDOW = 0.1
MAX_LISTED = 20
LAYOUT = ("the raw MOSI/MOSEI layout is <root>/segments.csv with columns segment_id, start, end "
          "[, video_id, label, split, text] and the full videos at <root>/Raw/<video_id>.mp4 "
          "(or the CMU archive folders Raw/Video/Full/, Raw/Videos/Full/Combined/); see "
          "docs/datasets.md")


@dataclass
class Segments:
    """The interval table: one entry per segment, in table order."""

    ids: list[str]
    video: list[str]
    start: np.ndarray
    end: np.ndarray
    split: np.ndarray
    labels: np.ndarray
    texts: list[str] | None
    source: Path
    notes: list[str]


_line = line


def read_segments_csv(path: Path, *, dataset: str, meta: DatasetMeta,
                      label_file: Path | None = None) -> Segments:
    """Read and check ``segments.csv`` (module docstring); labels from ``label_file`` (an SDK
    label ``.csd``) when the table has no ``label`` column."""
    from .chsims import check_path_ids
    from .folds import split_of, standard_folds, video_of

    df = read_table(path, REQUIRED, LAYOUT, lower_case=True)
    ids = [s.strip() for s in df["segment_id"]]
    empty = [i for i, s in enumerate(ids) if not s]
    if empty:
        raise DataError(f"{path}: column 'segment_id' is empty on {len(empty)} row(s), first "
                        f"on {_line(empty[0])}")
    seen: dict[str, int] = {}
    for i, sid in enumerate(ids):
        if sid in seen:
            raise DataError(f"{path}: segment {sid!r} appears twice ({_line(seen[sid])} and "
                            f"{_line(i)}); segment ids must be unique")
        seen[sid] = i
    if "video_id" in df.columns:
        video = [v.strip() for v in df["video_id"]]
        bad = [i for i, v in enumerate(video) if not v]
        if bad:
            raise DataError(f"{path}: column 'video_id' is empty on {_line(bad[0])} (segment "
                            f"{ids[bad[0]]!r})")
    else:
        video = []
        for i, sid in enumerate(ids):
            try:
                video.append(video_of(sid))
            except DataError:
                raise DataError(f"{path}: segment {sid!r} on {_line(i)} is neither "
                                "'<video>_<k>' nor '<video>[<k>]', so its video is unknown; "
                                "add a video_id column") from None
    check_path_ids(path, "video_id", video)

    def numeric(col: str) -> np.ndarray:
        return numeric_column(df, col, path, ids, "segment", "give plain numbers, e.g. 12.5")

    start, end = numeric("start"), numeric("end")
    bad = (end < start) | (end <= 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{path}: segment {ids[i]!r} on {_line(i)} has start {start[i]:g} and "
                        f"end {end[i]:g}; every interval needs start <= end and end > 0 "
                        "(seconds from the beginning of the video)")

    notes: list[str] = []
    if "label" in df.columns:
        labels = check_range(numeric("label"), "label", path, ids, "segment", meta.label_range)
    elif label_file is not None and label_file.is_file():
        labels = _labels_by_interval(path, label_file, ids, video, start, end)
        notes.append(f"labels from {label_file} (matched by video and interval)")
    else:
        names = {"mosi": "CMU_MOSI_Opinion_Labels.csd", "mosei": "CMU_MOSEI_Labels.csd"}
        raise DataError(f"{path}: no 'label' column and no SDK label file beside it; add a "
                        f"label column (sentiment in [{meta.label_range[0]:g}, "
                        f"{meta.label_range[1]:g}]) or put "
                        f"{names.get(dataset, 'the SDK label file')} in {path.parent}")

    if "split" in df.columns:
        split = np.array([s.strip().lower() for s in df["split"]])
        badsplit = ~np.isin(split, SPLITS)
        if badsplit.any():
            i = int(np.argmax(badsplit))
            raise DataError(f"{path}: column 'split' has unknown value {str(split[i])!r} on "
                            f"{_line(i)} (segment {ids[i]!r}); allowed: train, valid, test "
                            "(rename e.g. 'dev' to 'valid')")
    else:
        folds = standard_folds(dataset)
        split = np.array([split_of(v, folds) or "" for v in video])
        outside = sorted({v for v, s in zip(video, split) if not s})
        if outside:
            raise DataError(f"{path}: no 'split' column, and {len(outside)} video(s) are in no "
                            f"standard {dataset} fold (e.g. {', '.join(outside[:5])}); add a "
                            "split column (train/valid/test)")
        notes.append(f"splits: the standard {dataset} folds by video")
    for s in SPLITS:
        if not (split == s).any():
            raise DataError(f"{path}: no {s!r} segment; every split needs at least one")
    texts = [t for t in df["text"]] if "text" in df.columns else None
    return Segments(ids, video, start, end, split, labels, texts, path, notes)


def _labels_by_interval(path: Path, label_file: Path, ids: list[str], video: list[str],
                        start: np.ndarray, end: np.ndarray) -> np.ndarray:
    from .sdk import read_sdk_labels

    sdk = read_sdk_labels(label_file)
    by_video: dict[str, list[int]] = {}
    for j, v in enumerate(sdk["video"].tolist()):
        by_video.setdefault(v, []).append(j)
    iv = sdk["intervals"]
    sdk_ids = sdk["ids"].tolist()
    used: set[int] = set()
    labels = np.empty(len(ids), dtype=np.float64)
    for i, (sid, v) in enumerate(zip(ids, video)):
        rows = by_video.get(v, [])
        hit = [j for j in rows if abs(iv[j, 0] - start[i]) <= MATCH_TOLERANCE
               and abs(iv[j, 1] - end[i]) <= MATCH_TOLERANCE]
        if not hit:
            raise DataError(f"{path}: segment {sid!r} ({_line(i)}, video {v!r}, "
                            f"[{start[i]:g}, {end[i]:g}) s) has no label: {label_file} has "
                            f"{'no segment of that video' if not rows else 'no segment with that interval'}"
                            f"; add a label column to {path.name}")
        # the official files repeat a few intervals with different labels (CMU-MOSI
        # bOL9jKpeJRs_24/_25): the segment of the same id wins, else the first one not taken
        same = [j for j in hit if sdk_ids[j] == sid]
        free = same or [j for j in hit if j not in used]
        if not free or (not same and len({float(sdk["labels"][j]) for j in free}) > 1):
            raise DataError(f"{path}: segment {sid!r} ({_line(i)}) matches "
                            f"{len(hit)} segments of {label_file} with the same interval "
                            f"({', '.join(sdk_ids[j] for j in hit)}) and different labels; "
                            f"name it as the SDK does (<video>_<k>) or add a label column")
        used.add(free[0])
        labels[i] = sdk["labels"][free[0]]
    return labels


def segments_from_sdk(label_file: Path, *, dataset: str) -> Segments:
    """The interval table of an SDK label file: ids ``<video>_<k>``, its labels and intervals,
    the standard folds (segments of videos in no fold are left out, with a note)."""
    from .sdk import read_sdk_labels

    sdk = read_sdk_labels(label_file, folds=dataset)
    keep = np.isin(sdk["split"], SPLITS)
    notes = [f"intervals and labels from {label_file}; splits: the standard {dataset} folds"]
    if not keep.all():
        notes.append(f"{int((~keep).sum())} segment(s) of videos in no standard fold left out")
    iv = sdk["intervals"][keep]
    return Segments(sdk["ids"][keep].tolist(), sdk["video"][keep].tolist(),
                    iv[:, 0].astype(np.float64), iv[:, 1].astype(np.float64),
                    sdk["split"][keep], sdk["labels"][keep], None, label_file, notes)


def video_files(root: Path, seg: Segments) -> dict[str, Path]:
    """``video_id -> file`` for every video of the table; DataError listing the missing."""
    base = root.resolve()
    found: dict[str, Path] = {}
    missing: list[str] = []
    for v in dict.fromkeys(seg.video):
        path = next((root / d / f"{v}.mp4" for d in VIDEO_DIRS
                     if (root / d / f"{v}.mp4").is_file()), None)
        if path is None:
            missing.append(v)
            continue
        real = path.resolve()
        if not real.is_relative_to(base):
            raise coded(DataError(
                f"{path}: video {v!r} resolves to {real}, outside {base}; msabench reads videos "
                "only from inside the dataset folder - replace the link by the file"),
                "path-escape")
        found[v] = path
    if missing:
        first = {v: seg.ids[seg.video.index(v)] for v in missing[:MAX_LISTED]}
        listed = "\n".join(f"  video {v!r} (segment {first[v]!r}, ...): expected "
                           f"{root / VIDEO_DIRS[0] / (v + '.mp4')}" for v in missing[:MAX_LISTED])
        more = (f"\n  ... and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED
                else "")
        raise coded(DataError(
            f"{seg.source}: {len(missing)} of {len(found) + len(missing)} video(s) named by the "
            f"interval table are missing (the audio/vision extractors cut segments from "
            f"them):\n{listed}{more}\nPut each full video there, or switch the media "
            f"extractors off (--set data.options.audio_model=none / video_model=none); "
            f"{LAYOUT}"), "missing-file")
    return found


def media_windows(start: np.ndarray, end: np.ndarray) -> tuple[list[float], list[float], int]:
    """The ``[start, end)`` cut from the video for each segment, and how many differ from the
    table: a negative start (the SDK's MOSEI intervals have a few, down to about -0.5 s) starts
    at 0; a window shorter than :data:`MIN_WINDOW` (CMU-MOSI ``2WGyTLYerpo_44`` has length 0)
    is widened to it around its centre (never before 0)."""
    starts, ends, changed = [], [], 0
    for s0, e0 in zip(start.tolist(), end.tolist()):
        s, e = max(0.0, s0), e0
        if e - s < MIN_WINDOW:
            s = max(0.0, (s + e) / 2 - MIN_WINDOW / 2)
            e = s + MIN_WINDOW
        changed += (s, e) != (s0, e0)
        starts.append(float(s))
        ends.append(float(e))
    return starts, ends, changed


def load_raw_segments(table: Path, *, meta: DatasetMeta, setting: str, dataset: str,
                      extractors: Mapping[str, Extractor], cache_dir: Path,
                      label_file: Path | None = None, tolerance: float = 0.5) -> LoadedDataset:
    """Read the interval table ``table`` (``segments.csv`` or an SDK label ``.csd``), cut each
    segment out of its full video, extract and cache features (module docstring)."""
    from .raw import assemble, check_extractors
    from .raw_extract import extract_all

    table = Path(table).expanduser()
    check_extractors(table, meta, setting, extractors)
    if table.suffix.lower() == ".csd":
        seg = segments_from_sdk(table, dataset=dataset)
    else:
        seg = read_segments_csv(table, dataset=dataset, meta=meta, label_file=label_file)
    if "text" in extractors and seg.texts is None:
        where = (f"{table} is an SDK label file (no transcripts)" if table.suffix == ".csd"
                 else f"{table} has no 'text' column")
        raise DataError(f"{where}, but the text extractor needs the transcript of every "
                        f"segment: add a text column to segments.csv, or load audio and vision "
                        f"only with --set data.options.text_model=none")
    media = [m for m in ("audio", "vision") if m in extractors]
    refs: list[MediaRef] = []
    if media:
        files = video_files(table.parent, seg)
        starts, ends, widened = media_windows(seg.start, seg.end)
        refs = [MediaRef(str(files[v]), s, e) for v, s, e in zip(seg.video, starts, ends)]
        if widened:
            seg.notes.append(f"{widened} segment(s) shorter than {MIN_WINDOW:g} s (or starting "
                             f"before 0 s) cut as a {MIN_WINDOW:g} s window around their centre "
                             f"(or from 0 s)")
    features, lengths, notes = extract_all(
        extractors, ids=seg.ids, texts=seg.texts, refs=refs or None, cache_dir=cache_dir,
        tolerance=tolerance)
    return assemble(meta=meta, setting=setting, source=table, ids=seg.ids, split=seg.split,
                    labels=seg.labels, unimodal={}, texts=seg.texts,
                    refs={m: refs for m in media}, features=features, lengths=lengths,
                    notes=seg.notes + notes)
