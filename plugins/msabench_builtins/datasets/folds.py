"""The standard CMU-MOSI and CMU-MOSEI train/valid/test folds, by video.

The fold lists are the public ones of the CMU-MultimodalSDK
(``mmsdk/mmdatasdk/dataset/standard_datasets/CMU_MOSI/cmu_mosi_std_folds.py`` and
``.../CMU_MOSEI/cmu_mosei_std_folds.py``: ``standard_train_fold``, ``standard_valid_fold``,
``standard_test_fold``), shipped as data in ``folds/mosi.json`` and ``folds/mosei.json`` in the
SDK's order.

=========  ==========================  ===============================================
dataset    videos (train/valid/test)   segments (train/valid/test)
=========  ==========================  ===============================================
CMU-MOSI   52 / 10 / 31                1284 / 229 / 686 (all 2199 opinion segments)
CMU-MOSEI  2249 / 300 / 678            16327 / 1871 / 4662 on the SDK label segments;
                                       two test videos of the SDK list
                                       (``7l3BNtSE0xc``, ``dZFV0lyedX4``) have no
                                       labelled segment. MMSA's processed pickles hold
                                       16326 / 1871 / 4659: they lost 1 train and 3 test
                                       segments in their own processing.
=========  ==========================  ===============================================

Use :func:`standard_folds` to get ``{"train": {...}, "valid": {...}, "test": {...}}`` (sets of
video ids) and :func:`split_of` to look up one video. Segment ids are ``<video>_<k>`` (k from
1, MMSA and msabench) or ``<video>[<k>]`` (k from 0, the SDK after ``align``);
:func:`video_of` strips either suffix.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources
from typing import Mapping

from msabench.api.dataset import SPLITS
from msabench.errors import DataError

#: accepted dataset names -> fold file stem
_ALIASES = {
    "mosi": "mosi", "cmu-mosi": "mosi", "cmu_mosi": "mosi", "cmumosi": "mosi",
    "mosei": "mosei", "cmu-mosei": "mosei", "cmu_mosei": "mosei", "cmumosei": "mosei",
}
_SDK_SEGMENT = re.compile(r"^(?P<video>.+)\[(?P<k>\d+)\]$")
_MSA_SEGMENT = re.compile(r"^(?P<video>.+)_(?P<k>\d+)$")


def known_datasets() -> tuple[str, ...]:
    return ("mosi", "mosei")


@lru_cache(maxsize=None)
def _load(stem: str) -> dict[str, tuple[str, ...]]:
    ref = resources.files(__package__).joinpath("folds", f"{stem}.json")
    try:
        raw = json.loads(ref.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(
            f"the standard fold file folds/{stem}.json is missing from the installed "
            "msabench_builtins package; reinstall msabench (the wheel must ship "
            "msabench_builtins/datasets/folds/*.json as package data)") from None
    folds: dict[str, tuple[str, ...]] = {}
    seen: dict[str, str] = {}
    for split in SPLITS:
        videos = raw.get(split)
        if not isinstance(videos, list) or not all(isinstance(v, str) for v in videos):
            raise DataError(f"folds/{stem}.json: key {split!r} must be a list of video ids")
        for v in videos:
            if v in seen:
                raise DataError(f"folds/{stem}.json: video {v!r} is in both {seen[v]!r} and "
                                f"{split!r}")
            seen[v] = split
        folds[split] = tuple(videos)
    return folds


def standard_folds(dataset: str) -> dict[str, set[str]]:
    """The standard SDK folds of ``dataset`` (``"mosi"`` or ``"mosei"``) as sets of video ids.

    Returns a fresh ``{"train": set, "valid": set, "test": set}`` on every call (callers may
    modify it). Raises :class:`DataError` for a dataset without standard SDK folds.
    """
    stem = _ALIASES.get(str(dataset).strip().lower())
    if stem is None:
        raise DataError(
            f"no standard CMU-MultimodalSDK folds for dataset {dataset!r}; known: "
            f"{', '.join(known_datasets())} (pass your own folds as "
            "{'train': set_of_video_ids, 'valid': ..., 'test': ...})")
    return {split: set(videos) for split, videos in _load(stem).items()}


def fold_order(dataset: str) -> dict[str, list[str]]:
    """The fold lists in the SDK's own order (for reproducing SDK-ordered outputs)."""
    standard_folds(dataset)  # validates the name
    stem = _ALIASES[str(dataset).strip().lower()]
    return {split: list(videos) for split, videos in _load(stem).items()}


def check_folds(folds: Mapping[str, object], where: str = "folds") -> dict[str, set[str]]:
    """Validate user-supplied folds: keys train/valid/test, disjoint sets of video ids."""
    if not isinstance(folds, Mapping):
        raise DataError(f"{where}: folds must be a mapping split -> video ids, got "
                        f"{type(folds).__name__}")
    unknown = sorted(set(folds) - set(SPLITS))
    if unknown:
        raise DataError(f"{where}: unknown split name(s) {', '.join(map(repr, unknown))}; "
                        "allowed: train, valid, test (rename e.g. 'dev' to 'valid')")
    out: dict[str, set[str]] = {}
    seen: dict[str, str] = {}
    for split in SPLITS:
        videos = folds.get(split, ())
        if isinstance(videos, str):
            raise DataError(f"{where}: split {split!r} must be a collection of video ids, "
                            "not one string")
        out[split] = {str(v) for v in videos}
        for v in out[split]:
            if v in seen:
                raise DataError(f"{where}: video {v!r} is in both {seen[v]!r} and {split!r}; "
                                "folds must be disjoint")
            seen[v] = split
    return out


def split_of(video: str, folds: Mapping[str, object]) -> str | None:
    """The split (``train``/``valid``/``test``) holding ``video``, or None when in none."""
    for split in SPLITS:
        if video in folds.get(split, ()):  # type: ignore[operator]
            return split
    return None


def video_of(segment_id: str) -> str:
    """Video id of a segment id ``<video>[<k>]`` (SDK) or ``<video>_<k>`` (MMSA/msabench).

    Video ids may contain underscores (``I5y0__X72p0``); only a trailing ``_<digits>`` or
    ``[<digits>]`` is stripped. Raises :class:`DataError` when neither form matches.
    """
    for pattern in (_SDK_SEGMENT, _MSA_SEGMENT):
        m = pattern.match(segment_id)
        if m:
            return m.group("video")
    raise DataError(f"segment id {segment_id!r} is neither '<video>_<k>' nor '<video>[<k>]'")
