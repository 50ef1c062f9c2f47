"""The MAG-BERT pickle (WasifurRahman/BERT_multimodal_transformer): ``mosi.pkl`` / ``mosei.pkl``.

``data[train|dev|test]`` is a list of examples ``((words, visual, acoustic), label, segment)``:

=============  ===================  ===================================================
part           shape                use
=============  ===================  ===================================================
``words``      list of L_w str      the transcript, one entry per word
``visual``     (L_w, 47) float      word-level Facet features (MOSEI: 35-d)
``acoustic``   (L_w, 74) float      word-level COVAREP features
``label``      scalar or (1, 1)     sentiment label
``segment``    str                  sample id
=============  ===================  ===================================================

``dev`` becomes the ``valid`` split. The reader produces the modalities ``audio`` (N, L, 74)
and ``vision`` (N, L, 47), zero-padded to the longest example of the file (L), with lengths =
number of words (an example without words gets one all-zero step, noted); there is no text
feature array. **The words are kept as** ``SplitData.texts``: each transcript is the words
joined with single spaces, so a later MAG-BERT-style method recovers the exact word list with
``text.split(" ")`` (and so the word-level audio/vision rows line up with the words). When a
word itself contains a space that round trip fails (such words are counted in a note); an
example without words has the transcript ``""``.

Read with :func:`safe_pickle.safe_load` (no code execution).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from msabench.api.dataset import DatasetMeta, LoadedDataset, SplitData
from msabench.errors import DataError

from .checks import (SplitReader, assemble, check_unique_ids, decode, neginf_note,
                     split_dicts, to_split, zero_length_note)
from .safe_pickle import safe_load

FORMAT = "MAG-BERT pickle"
EXAMPLE = "((words, visual, acoustic), label, segment)"
#: modality name -> position in the (words, visual, acoustic) triple
MODALITY_PARTS = {"audio": 2, "vision": 1}
PART_NAMES = {1: "visual", 2: "acoustic"}


class _Parsed:
    def __init__(self, name: str) -> None:
        self.name = name
        self.words: list[list[str]] = []
        self.feats: dict[str, list[np.ndarray]] = {m: [] for m in MODALITY_PARTS}
        self.labels: list[float] = []
        self.ids: list[str] = []


def load_magbert_pickle(path: Path | str, *, meta: DatasetMeta, setting: str) -> LoadedDataset:
    """Read a MAG-BERT pickle into a validated :class:`LoadedDataset` (module docstring)."""
    path = Path(path).expanduser()
    if setting not in meta.settings:
        raise DataError(f"dataset {meta.name} has no setting {setting!r}; "
                        f"settings: {', '.join(meta.settings)}")
    data = safe_load(path)
    splits = split_dicts(data, path, FORMAT, aliases={"dev": "valid"}, item="list")
    del data
    dims: dict[str, int] = {}
    parsed: dict[str, _Parsed] = {}
    for split, (name, examples) in splits.items():
        parsed[split] = _parse(SplitReader(path, FORMAT, name), examples, dims)
    check_unique_ids(path, {s: p.ids for s, p in parsed.items()})
    t = max(max((len(w) for w in p.words), default=1) for p in parsed.values())
    t = max(t, 1)

    notes: list[str] = []
    neginf: dict[str, dict[str, int]] = {m: {} for m in MODALITY_PARTS}
    zero: dict[str, int] = {}
    spaced = 0
    out: dict[str, SplitData] = {}
    for split, p in parsed.items():
        r = SplitReader(path, FORMAT, p.name, ids=p.ids, n_from="the list of examples")
        n = len(p.ids)
        lengths = np.array([len(w) for w in p.words], dtype=np.int64)
        if (lengths == 0).any():
            zero["words"] = zero.get("words", 0) + int((lengths == 0).sum())
            lengths[lengths == 0] = 1
        feats: dict[str, np.ndarray] = {}
        for m, rows in p.feats.items():
            x = np.zeros((n, t, dims[m]), dtype=np.float32)
            for i, a in enumerate(rows):
                x[i, :a.shape[0]] = a
            feats[m], neginf[m][split] = r.features(PART_NAMES[MODALITY_PARTS[m]], x, n)
        spaced += sum(1 for words in p.words for w in words if " " in w)
        labels = r.check_labels("label", np.asarray(p.labels, dtype=np.float64),
                                meta.label_range)
        texts = [" ".join(words) for words in p.words]
        out[split] = to_split(p.ids, feats, {m: lengths for m in feats}, labels, None, texts)
        if p.name != split:
            notes.append(f"{path}: split {p.name!r} read as {split!r}")
    for m in MODALITY_PARTS:
        note = neginf_note(path, PART_NAMES[MODALITY_PARTS[m]], neginf[m])
        if note:
            notes.append(note)
    notes += zero_length_note(path, zero)
    if spaced:
        notes.append(f"{path}: {spaced} word(s) contain spaces, so splitting their transcript "
                     "on single spaces does not give back exactly the word list")
    notes.append(f"{path}: word-level audio/vision padded to {t} words; transcripts are the "
                 "words joined with single spaces")
    return assemble(path, meta, setting, out, notes)


def _parse(r: SplitReader, examples: list, dims: dict[str, int]) -> _Parsed:
    if not examples:
        raise r.fail("split is empty (no examples)")
    p = _Parsed(r.split)
    for i, ex in enumerate(examples):
        where = f"example {i}"
        try:
            (words, *parts), label, segment = ex
            if len(parts) != 2:
                raise ValueError
        except (TypeError, ValueError):
            raise r.fail(f"{where} is not {EXAMPLE} (found {_describe(ex)}); is this the "
                         "MAG-BERT mosi.pkl/mosei.pkl (not the older Dropbox file with "
                         "facet/covarep/glove keys)?") from None
        sid = decode(segment)
        where = f"example {i} (segment {sid!r})"
        if isinstance(words, np.ndarray) and words.ndim == 1:
            words = words.tolist()
        if not isinstance(words, (list, tuple)):
            raise r.fail(f"{where}: words must be a list of strings, found {_describe(words)}")
        word_list = [decode(w) for w in words]
        for m, pos in MODALITY_PARTS.items():
            part = PART_NAMES[pos]
            a = r.array(f"{part} of {where}", parts[pos - 1])
            if a.ndim != 2 or a.dtype.kind not in "fiub":
                raise r.fail(f"{where}: {part} must be a numeric (L_w, D) array, found "
                             f"{_describe(a)}")
            if a.shape[0] != len(word_list):
                raise r.fail(f"{where}: {part} has {a.shape[0]} rows but there are "
                             f"{len(word_list)} words; MAG-BERT features are one row per word")
            expected = dims.setdefault(m, a.shape[1])
            if a.shape[1] != expected:
                raise r.fail(f"{where}: {part} is {a.shape[1]}-d but earlier examples are "
                             f"{expected}-d; every example must have the same feature size")
            p.feats[m].append(a)
        lab = np.asarray(label)
        if lab.size != 1 or lab.dtype.kind not in "fiub":
            raise r.fail(f"{where}: label must be one number (a scalar or (1, 1) array), "
                         f"found {_describe(label)}")
        p.words.append(word_list)
        p.labels.append(float(lab.reshape(())))
        p.ids.append(sid)
    return p


def _describe(obj: Any) -> str:
    if isinstance(obj, np.ndarray):
        return f"array of shape {obj.shape} dtype {obj.dtype}"
    if isinstance(obj, (tuple, list)):
        return f"{type(obj).__name__} of length {len(obj)}"
    return type(obj).__name__
