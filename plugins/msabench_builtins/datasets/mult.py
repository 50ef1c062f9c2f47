"""MulT feature pickles (yaohungt/Multimodal-Transformer): ``mosi_data.pkl``,
``mosi_data_noalign.pkl``, ``mosei_senti_data.pkl``, ``mosei_senti_data_noalign.pkl``.

The file is a dict ``{train, valid, test}``; each split is a dict with N rows:

==========  ===============  ==========================================================
key         shape            use
==========  ===============  ==========================================================
``text``    (N, 50, 300)     GloVe word vectors (modality ``text``)
``audio``   (N, T, 5 | 74)   COVAREP (modality ``audio``); may contain -inf (set to 0)
``vision``  (N, T, 20 | 35)  Facet (modality ``vision``)
``labels``  (N, 1, 1)        sentiment label (also accepted: (N,), (N, 1))
``id``      (N, 3) bytes     id parts, e.g. (video, start, end); also (N, 2) or (N,)
==========  ===============  ==========================================================

**Ids.** The parts of each ``id`` row are decoded (bytes as UTF-8) and the non-empty ones are
joined with ``_``: ``(video, segment)`` gives MMSA-style ``video_segment``; MulT's (N, 3)
``(video, start, end)`` rows give ``video_start_end``. A file without ``id`` gets
``<split>-<row>`` ids (noted).

**Lengths.** MulT files carry no lengths. For each modality and sample the length is the
number of steps up to and including the last step that is not all zeros (at least 1), i.e.
trailing all-zero steps count as padding. Where a file pads at the front instead, every
sample gets all T steps - the same as MulT itself, which uses no masks.

The files were written by Python 2 with an old NumPy; :func:`safe_pickle.safe_load` reads them
with ``encoding="latin1"`` and without executing any code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from msabench.api.dataset import DatasetMeta, LoadedDataset, SplitData
from msabench.errors import DataError

from .checks import (CHUNK_ROWS, SplitReader, assemble, check_unique_ids, decode,
                     neginf_note, split_dicts, to_split)
from .safe_pickle import safe_load

FORMAT = "MulT pickle"
MODALITY_KEYS = ("text", "audio", "vision")
REQUIRED = (*MODALITY_KEYS, "labels")


def load_mult_pickle(path: Path | str, *, meta: DatasetMeta, setting: str) -> LoadedDataset:
    """Read a MulT pickle into a validated :class:`LoadedDataset` (module docstring)."""
    path = Path(path).expanduser()
    if setting not in meta.settings:
        raise DataError(f"dataset {meta.name} has no setting {setting!r}; "
                        f"settings: {', '.join(meta.settings)}")
    data = safe_load(path, encoding="latin1")
    splits = split_dicts(data, path, FORMAT)
    del data
    notes: list[str] = []
    neginf: dict[str, dict[str, int]] = {m: {} for m in MODALITY_KEYS}
    out: dict[str, SplitData] = {}
    generated: list[str] = []
    for split, (name, d) in splits.items():
        for k in [k for k in d if not isinstance(k, str)]:  # bytes keys: decode in place
            d[decode(k)] = d.pop(k)
        r = SplitReader(path, FORMAT, name, keys=list(d), n_from="key 'labels'")
        for key in REQUIRED:
            if key not in d:
                raise r.fail(f"missing key {key!r}; keys present: {r.keys_present()}. "
                             f"{_hint(d)}")
        labels_arr = r.array("labels", d["labels"])
        if labels_arr.ndim == 0:
            raise r.fail("key 'labels' must have shape (N, 1, 1), found a scalar")
        n = int(labels_arr.shape[0])
        if n == 0:
            raise r.fail("split is empty (key 'labels' has no rows)")
        if "id" in d:
            r.ids = ids = mult_ids(r, d["id"], n)
        else:
            ids = [f"{split}-{i}" for i in range(n)]
            generated.append(name)
        labels = r.labels("labels", labels_arr, n, meta.label_range)
        feats: dict[str, np.ndarray] = {}
        lens: dict[str, np.ndarray] = {}
        for m in MODALITY_KEYS:
            feats[m], neginf[m][split] = r.features(m, d.pop(m), n)
            lens[m] = trailing_lengths(feats[m])
        out[split] = to_split(ids, feats, lens, labels)
        del feats

    check_unique_ids(path, {s: out[s].ids for s in out})
    for m in MODALITY_KEYS:
        note = neginf_note(path, m, neginf[m])
        if note:
            notes.append(note)
    if generated:
        notes.append(f"{path}: split(s) {', '.join(generated)} have no 'id' key; samples are "
                     "named <split>-<row>")
    notes.append(f"{path}: MulT files carry no lengths; each modality's length is the number "
                 "of steps up to the last non-all-zero step")
    return assemble(path, meta, setting, out, notes)


def mult_ids(r: SplitReader, value: object, n: int) -> list[str]:
    """Join the decoded, non-empty parts of each id row with ``_``."""
    arr = r.array("id", value)
    r.rows("id", arr, n)
    if arr.ndim == 1:
        ids = [_id_part(v) for v in arr.tolist()]
    elif arr.ndim == 2:
        ids = ["_".join(p for p in (_id_part(v) for v in row) if p) for row in arr.tolist()]
    else:
        raise r.fail(f"key 'id' must be (N,), (N, 2) or (N, 3) strings, found shape {arr.shape}")
    empty = [i for i, s in enumerate(ids) if not s]
    if empty:
        raise r.fail(f"key 'id' has {len(empty)} empty id(s), first at row {empty[0]}")
    return ids


def _id_part(value: object) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    return decode(value).strip()


def trailing_lengths(x: np.ndarray, chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """(N,) steps up to and including the last step with a non-zero value (at least 1)."""
    n, t = x.shape[0], x.shape[1]
    out = np.empty(n, dtype=np.int64)
    for start in range(0, n, chunk_rows):
        nonzero = (x[start:start + chunk_rows] != 0).any(axis=2)  # (rows, T)
        last = t - np.argmax(nonzero[:, ::-1], axis=1)
        last[~nonzero.any(axis=1)] = 1
        out[start:start + chunk_rows] = last
    return out


def _hint(d: dict) -> str:
    if "regression_labels" in d:
        return ("This looks like an MMSA pickle (key 'regression_labels'): read it with "
                "--set data.options.format=mmsa.")
    return (f"A {FORMAT} split has the keys text, audio, vision, labels, id "
            "(docs/datasets.md); re-download the file from the MulT links")
