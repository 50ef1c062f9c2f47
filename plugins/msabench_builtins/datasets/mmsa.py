"""MMSA feature pickles: ``Processed/aligned_50.pkl``, ``unaligned_50.pkl``, ``unaligned_39.pkl``
(CH-SIMS) and CH-SIMS v2 ``unaligned.pkl``, read as published by thuiar/MMSA.

The file is a dict ``{train, valid, test}``; each split is a dict of arrays with N rows:

==========================  ==============  ===============================================
key                         shape           use
==========================  ==============  ===============================================
``id``                      (N,) str        sample id ``videoid$_$clipid`` (kept verbatim)
``raw_text``                (N,) str        transcript -> ``SplitData.texts`` (optional)
``text``                    (N, L, 768)     BERT features (modality ``text``)
``text_bert``               (N, 3, L) int   input_ids / attention_mask / token_type_ids:
                                            only the attention mask is used, for the text
                                            lengths (sum of the mask row); absent: L
``audio``, ``vision``       (N, T, D)       modalities ``audio`` / ``vision``
``audio_lengths``,          (N,) int        unaligned files only; valid steps per sample
``vision_lengths``
``regression_labels``       (N,)            sentiment label (checked against the dataset's
                                            label range)
``regression_labels_T/A/V`` (N,)            unimodal labels (CH-SIMS, CH-SIMS v2) ->
                                            ``SplitData.unimodal``
``classification_labels``,  -               ignored
``annotations``, others
==========================  ==============  ===============================================

Aligned files have no ``*_lengths``: their audio/vision are word-aligned to the text, so
audio/vision get the text lengths (when their T equals the text's L; otherwise all T steps,
with a note). ``-inf`` (MMSA's audio has some) becomes 0 and is counted in the notes; NaN,
+inf, lengths beyond T, inconsistent sample counts, missing splits/keys, labels outside the
range and duplicate ids are refused with a :class:`~msabench.errors.DataError` naming the file,
split, key and the fix. Zero lengths are counted as 1 (noted).

The file is read with :func:`safe_pickle.safe_load` (no code execution) and the arrays become
tensors with ``torch.from_numpy``: no feature array is copied when it is float32 already (as
published), and the finiteness scan works in row chunks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from msabench.api.dataset import DatasetMeta, LoadedDataset, SplitData
from msabench.errors import DataError

from .checks import (SplitReader, assemble, check_unique_ids, neginf_note, split_dicts,
                     to_split, zero_length_note)
from .safe_pickle import safe_load

FORMAT = "MMSA pickle"
MODALITY_KEYS = ("text", "audio", "vision")
REQUIRED = ("id", *MODALITY_KEYS, "regression_labels")
UNIMODAL_KEYS = {"regression_labels_T": "text", "regression_labels_A": "audio",
                 "regression_labels_V": "vision"}
LENGTH_KEYS = ("audio_lengths", "vision_lengths")


def load_mmsa_pickle(path: Path | str, *, meta: DatasetMeta, setting: str) -> LoadedDataset:
    """Read an MMSA pickle into a validated :class:`LoadedDataset` (module docstring)."""
    path = Path(path).expanduser()
    if setting not in meta.settings:
        raise DataError(f"dataset {meta.name} has no setting {setting!r}; "
                        f"settings: {', '.join(meta.settings)}")
    data = safe_load(path)
    splits = split_dicts(data, path, FORMAT)
    del data
    notes: list[str] = []
    neginf: dict[str, dict[str, int]] = {m: {} for m in MODALITY_KEYS}
    zero: dict[str, int] = {}
    out: dict[str, SplitData] = {}
    optional: set[str] | None = None  # optional keys of the first split; others must match
    first_split = ""
    full_t: dict[str, int] = {}
    for split, (name, d) in splits.items():
        r = SplitReader(path, FORMAT, name, keys=[str(k) for k in d])
        for key in REQUIRED:
            if key not in d:
                raise r.fail(f"missing key {key!r}; keys present: {r.keys_present()}. "
                             f"{_hint(d)}")
        present = {k for k in (*LENGTH_KEYS, *UNIMODAL_KEYS) if k in d}
        if optional is None:
            optional, first_split = present, name
        elif present != optional:
            key = sorted(present ^ optional)[0]
            has, lacks = (name, first_split) if key in present else (first_split, name)
            raise r.fail(f"key {key!r} is in split {has!r} but not in split {lacks!r}; every "
                         f"split of an {FORMAT} has the same keys (mixed aligned/unaligned or "
                         "SIMS/non-SIMS splits?) - re-download the file")
        ids_arr = r.array("id", d["id"])
        if ids_arr.ndim != 1:
            raise r.fail(f"key 'id' must be (N,) strings, found shape {ids_arr.shape}")
        n = int(ids_arr.shape[0])
        if n == 0:
            raise r.fail("split is empty (key 'id' has no rows)")
        r.ids = ids = r.strings("id", ids_arr, n)
        texts = r.strings("raw_text", d["raw_text"], n) if "raw_text" in d else None
        labels = r.labels("regression_labels", d["regression_labels"], n, meta.label_range)
        unimodal = {mod: r.labels(key, d[key], n, meta.label_range)
                    for key, mod in UNIMODAL_KEYS.items() if key in d}

        feats: dict[str, np.ndarray] = {}
        for m in MODALITY_KEYS:
            # pop: the split dict must not keep a second reference (a float64 file would
            # otherwise hold both the original and the float32 copy)
            feats[m], neginf[m][split] = r.features(m, d.pop(m), n)
        t_text = feats["text"].shape[1]
        lens = {"text": text_lengths(r, d.get("text_bert"), n, t_text, zero)}
        for m in ("audio", "vision"):
            key, t = f"{m}_lengths", feats[m].shape[1]
            if key in d:
                lens[m] = r.lengths(key, d[key], n, t, m, zero)
            elif t == t_text:
                lens[m] = lens["text"].copy()
            else:
                lens[m] = np.full(n, t, dtype=np.int64)
                full_t[m] = t
        out[split] = to_split(ids, feats, lens, labels, unimodal, texts)
        if d.get("text_bert") is not None:  # the published tokenisation (checked by
            # text_lengths), for BERT-based methods
            out[split].extras["text_bert"] = torch.from_numpy(
                np.ascontiguousarray(d["text_bert"]).astype(np.int64, copy=False))
        del feats

    check_unique_ids(path, {s: out[s].ids for s in out})
    for m in MODALITY_KEYS:
        note = neginf_note(path, m, neginf[m])
        if note:
            notes.append(note)
    notes += zero_length_note(path, zero)
    for m, t in full_t.items():
        notes.append(f"{path}: no '{m}_lengths' key and {m} has {t} steps, not the text's "
                     f"{out['train'].features['text'].shape[1]}: every {m} sample uses all "
                     f"{t} steps")
    if meta.unimodal_labels and not out["train"].unimodal:
        notes.append(f"{path}: no regression_labels_T/_A/_V keys: this {meta.name} file has "
                     "no unimodal labels")
    return assemble(path, meta, setting, out, notes)


def text_lengths(r: SplitReader, text_bert: object, n: int, t: int,
                 zero: dict[str, int]) -> np.ndarray:
    """Valid text steps per sample: the sum of ``text_bert``'s attention-mask row, else ``t``."""
    if text_bert is None:
        return np.full(n, t, dtype=np.int64)
    tb = r.array("text_bert", text_bert)
    r.rows("text_bert", tb, n)
    if tb.ndim != 3 or tb.shape[1] != 3:
        raise r.fail(f"key 'text_bert' must have shape (N, 3, L) (input_ids, attention_mask, "
                     f"token_type_ids), found {tb.shape}")
    if tb.dtype.kind not in "iufb":
        raise r.fail(f"key 'text_bert' must be numeric token ids, found dtype {tb.dtype}")
    mask = tb[:, 1, :]
    if not np.isin(mask, (0, 1)).all():
        bad = int((~np.isin(mask, (0, 1))).any(axis=1).argmax())
        raise r.fail(f"key 'text_bert': row 1 (the attention mask) must hold only 0/1, not "
                     f"so at {r.where(bad)}; the array is not MMSA's (input_ids, "
                     "attention_mask, token_type_ids)")
    lens = mask.sum(axis=1).astype(np.int64)
    over = lens > t
    if over.any():
        first = int(np.argmax(over))
        raise r.fail(f"key 'text_bert': {int(over.sum())} attention mask(s) cover more tokens "
                     f"than the {t} steps of 'text' (first: {int(lens[first])} at "
                     f"{r.where(first)}); 'text_bert' and 'text' do not belong together - "
                     "re-download the file")
    z = lens == 0
    if z.any():
        zero["text_bert"] = zero.get("text_bert", 0) + int(z.sum())
        lens[z] = 1
    return lens


def _hint(d: dict) -> str:
    keys = set(map(str, d))
    if "labels" in keys and "regression_labels" not in keys:
        return ("This looks like a MulT pickle (key 'labels'): read it with "
                "--set data.options.format=mult.")
    return (f"An {FORMAT} split has the keys id, raw_text, text, text_bert, audio, vision, "
            "[audio_lengths, vision_lengths], regression_labels (docs/datasets.md); re-download "
            "the file from the MMSA links")
