"""CH-SIMS / CH-SIMS v2 label tables (``label.csv``), as published with the raw videos.

==============  ========  ==========================================================
column          required  meaning
==============  ========  ==========================================================
``video_id``    yes       video folder name under ``Raw/`` (string, e.g. ``video_0001``)
``clip_id``     yes       clip file stem (string; leading zeros matter: ``0001``)
``text``        no        transcript of the clip
``label``       yes       multimodal sentiment in [-1, 1]
``label_T``     yes       text-only (unimodal) sentiment in [-1, 1]
``label_A``     yes       audio-only sentiment in [-1, 1]
``label_V``     yes       vision-only sentiment in [-1, 1]
``annotation``  no        class name (Negative / Neutral / Positive); ignored
``mode``        yes       official split: ``train`` / ``valid`` / ``test``
==============  ========  ==========================================================

Every column is read as text first, so ``clip_id`` keeps its leading zeros and a video id such
as ``0001`` is never turned into a number. :func:`read_sims_labels` returns the table with an
``id`` column ``<video_id>$_$<clip_id>`` (MMSA's sample id) and a ``split`` column (the
validated ``mode``), and raises :class:`DataError` naming the file, the line and the fix for
missing columns, empty ids, non-numeric or out-of-range labels, unknown ``mode`` values and
duplicate ``(video_id, clip_id)`` pairs. Labels are not required to lie on the 0.2 grid: the
official CH-SIMS v2 table has one clip (``test11$_$00006``) labelled -0.1.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from msabench.api.dataset import SPLITS
from msabench.errors import DataError

from .csv_tables import check_range, numeric_column
from .problems import coded

ID_SEP = "$_$"
REQUIRED = ("video_id", "clip_id", "label", "label_T", "label_A", "label_V", "mode")
OPTIONAL = ("text", "annotation")
LABEL_COLUMNS = ("label", "label_T", "label_A", "label_V")
UNIMODAL_COLUMNS = {"label_T": "text", "label_A": "audio", "label_V": "vision"}
LABEL_RANGE = (-1.0, 1.0)


def sims_id(video_id: str, clip_id: str) -> str:
    """MMSA's sample id of a CH-SIMS clip: ``<video_id>$_$<clip_id>``."""
    return f"{video_id}{ID_SEP}{clip_id}"


def _line(index: int) -> str:
    return f"line {index + 2}"  # header is line 1


_UNSAFE_ID = re.compile(r"[/\\:\x00-\x1f\x7f]")


def check_path_ids(path: Path, column: str, values: Sequence[str]) -> None:
    """Refuse ids that would leave ``Raw/`` when joined into ``Raw/<video_id>/<clip_id>.mp4``.

    ``video_id`` and ``clip_id`` name one folder and one file: an id holding ``/``, ``\\``,
    ``:`` or a control character, or equal to ``.`` / ``..``, is refused with the line, so a
    crafted table cannot make msabench read (and extract features from) files outside the
    dataset folder. Values are assumed stripped.
    """
    for i, v in enumerate(values):
        if v in (".", "..") or _UNSAFE_ID.search(v):
            raise coded(DataError(
                f"{path}: column {column!r} on {_line(i)} is {v!r}: ids name a folder or file "
                "under Raw/ (Raw/<video_id>/<clip_id>.mp4), so they may not contain '/', '\\', "
                "':' or control characters, nor be '.' or '..'; this one would reach outside "
                "the dataset folder - fix the label table"), "path-escape")


def read_sims_labels(path: Path | str) -> pd.DataFrame:
    """Read and validate a CH-SIMS (v2) ``label.csv``.

    Returns a DataFrame with columns ``id, video_id, clip_id, [text,] label, label_T,
    label_A, label_V, [annotation,] mode, split`` in file order (string ids, float64 labels).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise coded(DataError(f"{path}: label table not found ({path.resolve()} {what}); pass "
                              "the dataset's label.csv"), "missing-file")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise coded(DataError(f"{path}: cannot parse as CSV ({exc}); label.csv must be a "
                              "comma-separated UTF-8 table with a header line"),
                    "corrupt-file") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; columns present: "
                        f"{', '.join(df.columns) or '(none)'} (a CH-SIMS label.csv has "
                        f"{', '.join(REQUIRED[:2])}, [text,] {', '.join(REQUIRED[2:6])}, "
                        "[annotation,] mode)")
    if len(df) == 0:
        raise DataError(f"{path}: the table has no rows")
    for col in ("video_id", "clip_id"):
        df[col] = df[col].str.strip()
        empty = df[col] == ""
        if empty.any():
            raise DataError(f"{path}: {int(empty.sum())} empty {col!r} value(s), first at "
                            f"{_line(int(np.argmax(empty.to_numpy())))}")
        check_path_ids(path, col, df[col].tolist())

    labels: dict[str, np.ndarray] = {}
    clips = [sims_id(v, c) for v, c in zip(df.video_id, df.clip_id)]
    for col in LABEL_COLUMNS:
        values = numeric_column(df, col, path, clips, "clip")
        check_range(values, col, path, clips, "clip", LABEL_RANGE)
        labels[col] = values

    mode = df["mode"].str.strip().str.lower()
    unknown = sorted(set(mode.unique()) - set(SPLITS))
    if unknown:
        first = int(np.argmax(~mode.isin(SPLITS).to_numpy()))
        raise DataError(f"{path}: column 'mode' has unknown value(s) "
                        f"{', '.join(repr(u) for u in unknown)} (first at {_line(first)}); "
                        "allowed: train, valid, test (rename e.g. 'dev' to 'valid')")

    dup = df.duplicated(["video_id", "clip_id"], keep=False).to_numpy()
    if dup.any():
        first = int(np.argmax(dup))
        vid, clip = df.video_id.iloc[first], df.clip_id.iloc[first]
        lines = [_line(i) for i in np.flatnonzero(
            (df.video_id == vid).to_numpy() & (df.clip_id == clip).to_numpy())]
        raise DataError(f"{path}: {int(df.duplicated(['video_id', 'clip_id']).sum())} "
                        f"duplicate (video_id, clip_id) pair(s), e.g. {sims_id(vid, clip)!r} at "
                        f"{', '.join(lines)}; every clip must appear once")

    out_df = pd.DataFrame({"id": [sims_id(v, c) for v, c in zip(df.video_id, df.clip_id)],
                           "video_id": df.video_id, "clip_id": df.clip_id})
    if "text" in df.columns:
        out_df["text"] = df["text"]
    for col in LABEL_COLUMNS:
        out_df[col] = labels[col]
    if "annotation" in df.columns:
        out_df["annotation"] = df["annotation"]
    out_df["mode"] = mode
    out_df["split"] = mode
    for col in ("id", "video_id", "clip_id", "mode", "split", "text", "annotation"):
        if col in out_df:
            out_df[col] = out_df[col].astype(str)
    return out_df.reset_index(drop=True)


def split_sizes(df: pd.DataFrame) -> tuple[int, int, int]:
    """(train, valid, test) clip counts of a table from :func:`read_sims_labels`."""
    counts = df["split"].value_counts()
    return tuple(int(counts.get(s, 0)) for s in SPLITS)  # type: ignore[return-value]
