"""The raw CH-SIMS v2 layout (also what MMSA-FET consumes): ``label.csv`` plus the clips.

::

    <root>/label.csv                      video_id, clip_id, text, label, label_T, label_A,
                                          label_V, annotation, mode
    <root>/Raw/<video_id>/<clip_id>.mp4   one clip per row

``video_id`` and ``clip_id`` are read as strings (``0001`` keeps its zeros); sample ids are
``<video_id>$_$<clip_id>``, as in the MMSA pickles. ``mode`` is ``train``/``valid``/``test``.
``label`` is required, ``label_T/_A/_V`` become the unimodal labels when present, ``text``
is required only with a text extractor (and becomes ``SplitData.texts`` when present);
``annotation`` and other columns are ignored. With an audio or vision extractor, each clip's
file is also exposed as ``SplitData.media[m]`` (one :class:`MediaRef` per clip, the whole
file) for methods that fine-tune an encoder on the raw inputs.
Both ids name one folder and one file under
``Raw/``: an id holding ``/``, ``\\``, ``:`` or a control character, or equal to ``.``/``..``,
is refused (:func:`~.chsims.check_path_ids`), and so is a clip whose path resolves outside
``Raw/`` (a symlink), so a label table cannot make msabench read files elsewhere.

:func:`load_raw` runs one extractor per modality: text on ``text``, audio on the waveform
decoded at the extractor's ``sample_rate`` option (default 16 kHz), vision on the frames
decoded at its ``fps``/``size`` options (default 10 fps, 128x128), in chunks of the
extractor's ``batch_size`` clips (decoded media never all sit in memory at once).

Feature cache
-------------
One ``.npz`` per modality and extractor configuration in ``cache_dir``, named
``<modality>-<extractor name>-<sha256(key)[:16]>.npz`` where key = ``extractor.cache_key()``
plus the decoding parameters. It is content-addressed: each row is keyed by a digest of the
clip's input, not by its id or path, so renaming or moving the dataset keeps the cache, and a
changed input is recomputed:

- text: sha256 of the text;
- media: sha256 of the file size plus the first and the last MiB of the file (the whole file
  when it is at most 2 MiB).

File digests are remembered in ``cache_dir/file-digests.npz`` by (absolute path, size,
mtime) so a second load reads no media at all. Only missing rows are extracted; the cache is
rewritten (atomically, :func:`~msabench_builtins.datasets.archive.save_archive`, never
pickled) after each modality, also when extraction stops with an error or Ctrl-C, so finished
chunks are kept. Delete the folder to clear it. Sequence features (e.g. ``hf-text`` tokens)
are stored without their padding and re-padded to the longest clip of the dataset. Cache files
are read back with the checks of :mod:`.safe_npz` (:mod:`.raw_cache`); one that fails them is
rebuilt, never trusted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from msabench.api.dataset import (MODALITIES, SPLITS, DatasetMeta, LoadedDataset, MediaRef,
                                 SplitData)
from msabench.api.extractor import Extractor
from msabench.errors import DataError

from .archive import UNIMODAL_KEYS
from .csv_tables import check_range, numeric_column, read_table
from .problems import coded
from .raw_cache import _FeatureStore, _FileDigests, _text_digest, file_digest  # noqa: F401
from .raw_extract import _Bars, _check_output, extract_all  # noqa: F401

COLUMNS = ("video_id", "clip_id", "text", "label", "label_T", "label_A", "label_V",
           "annotation", "mode")
REQUIRED = ("video_id", "clip_id", "label", "mode")
LAYOUT = ("the raw layout (CH-SIMS v2 / MMSA-FET) is <root>/label.csv with columns "
          + ", ".join(COLUMNS) + " and one clip per row at <root>/Raw/<video_id>/<clip_id>.mp4")
ID_SEP = "$_$"
MAX_LISTED = 20


# --------------------------------------------------------------------------------------------
# label.csv

@dataclass
class _Table:
    ids: list[str]
    video: list[str]
    clip: list[str]
    split: np.ndarray
    labels: np.ndarray
    unimodal: dict[str, np.ndarray]
    texts: list[str] | None


def _read_labels(label: Path, meta: DatasetMeta, need_text: bool) -> _Table:
    required = REQUIRED + (("text",) if need_text else ())
    df = read_table(label, required, LAYOUT, why={"text": " (needed by the text extractor)"})

    video = [v.strip() for v in df["video_id"]]
    clip = [c.strip() for c in df["clip_id"]]
    for col, vals in (("video_id", video), ("clip_id", clip)):
        empty = [i for i, v in enumerate(vals) if not v]
        if empty:
            raise DataError(f"{label}: column {col!r} is empty on {len(empty)} row(s), first on "
                            f"line {empty[0] + 2}")
    from .chsims import check_path_ids

    check_path_ids(label, "video_id", video)
    check_path_ids(label, "clip_id", clip)
    ids = [f"{v}{ID_SEP}{c}" for v, c in zip(video, clip)]
    seen: dict[str, int] = {}
    for i, sid in enumerate(ids):
        if sid in seen:
            raise DataError(f"{label}: clip {sid!r} appears twice (lines {seen[sid] + 2} and "
                            f"{i + 2}); every (video_id, clip_id) pair must be unique")
        seen[sid] = i

    split = np.array([m.strip().lower() for m in df["mode"]])
    bad = ~np.isin(split, SPLITS)
    if bad.any():
        first = int(np.argmax(bad))
        values = sorted(set(split[bad].tolist()))
        raise DataError(f"{label}: column 'mode' has unknown value(s) "
                        f"{', '.join(repr(v) for v in values[:5])} (first on line {first + 2}, "
                        f"clip {ids[first]!r}); allowed: train, valid, test")
    for s in SPLITS:
        if not (split == s).any():
            raise DataError(f"{label}: no {s!r} rows in column 'mode'; every split "
                            f"(train, valid, test) needs at least one clip")

    def numeric(col: str) -> np.ndarray:
        return check_range(numeric_column(df, col, label, ids, "clip"), col, label, ids, "clip",
                           meta.label_range)

    labels = numeric("label")
    # a dataset without unimodal labels (MOSI, MOSEI) ignores label_T/_A/_V (may be empty)
    unimodal = {mod: numeric(col) for col, mod in UNIMODAL_KEYS.items()
                if col in df.columns and meta.unimodal_labels}
    texts = list(df["text"]) if "text" in df.columns else None
    return _Table(ids, video, clip, split, labels, unimodal, texts)


def _media_paths(root: Path, table: _Table) -> list[Path]:
    paths = [root / "Raw" / v / f"{c}.mp4" for v, c in zip(table.video, table.clip)]
    base = (root / "Raw").resolve()
    for sid, p in zip(table.ids, paths):  # ids are checked; a symlinked clip may still leave
        real = p.resolve()
        if p.exists() and not real.is_relative_to(base):
            raise coded(DataError(
                f"{p}: clip {sid!r} resolves to {real}, outside {base}; msabench reads clips "
                "only from inside the dataset's Raw/ folder - replace the link by the file"),
                "path-escape")
    missing = [i for i, p in enumerate(paths) if not p.is_file()]
    if missing:
        listed = "\n".join(f"  {table.ids[i]}: expected {paths[i]}" for i in missing[:MAX_LISTED])
        more = (f"\n  ... and {len(missing) - MAX_LISTED} more"
                if len(missing) > MAX_LISTED else "")
        raise DataError(f"{root}: {len(missing)} of {len(paths)} clip video(s) are missing "
                        f"(the audio/vision extractors read them):\n{listed}{more}\n"
                        f"{LAYOUT}")
    return paths


# --------------------------------------------------------------------------------------------
# loading

def load_raw(root: Path | str, *, meta: DatasetMeta, setting: str,
             extractors: Mapping[str, Extractor], cache_dir: Path | str) -> LoadedDataset:
    """Read the raw layout under ``root`` (or ``root`` = the ``label.csv`` itself), extract
    features with ``extractors`` (modality -> extractor) and cache them in ``cache_dir``.

    Every problem raises :class:`DataError` naming the file, clip and fix; see the module
    docstring for the layout and the cache.
    """
    root = Path(root).expanduser()
    if root.is_file() and root.suffix.lower() == ".csv":
        label, root = root, root.parent
    else:
        label = root / "label.csv"
    if not label.is_file():
        where = root.resolve()
        why = "does not exist" if not root.exists() else "has no label.csv"
        raise coded(DataError(f"{label}: label.csv not found ({where} {why}); {LAYOUT} (check "
                              f"--data-dir / MSABENCH_DATA_DIR)"), "missing-file")
    check_extractors(label, meta, setting, extractors)

    table = _read_labels(label, meta, need_text="text" in extractors)
    media = [m for m in ("audio", "vision") if m in extractors]
    paths = _media_paths(root, table) if media else []
    features, lengths, notes = extract_all(
        extractors, ids=table.ids, texts=table.texts,
        refs=[MediaRef(str(p)) for p in paths] if media else None, cache_dir=Path(cache_dir))

    refs = [MediaRef(str(p)) for p in paths] if media else []
    return assemble(meta=meta, setting=setting, source=label, ids=table.ids, split=table.split,
                    labels=table.labels, unimodal=table.unimodal, texts=table.texts,
                    refs={m: refs for m in media}, features=features, lengths=lengths,
                    notes=notes)


def check_extractors(where: Path, meta: DatasetMeta, setting: str,
                     extractors: Mapping[str, Extractor]) -> None:
    """The setting exists and ``extractors`` maps known modalities to matching extractors."""
    if setting not in meta.settings:
        raise DataError(f"dataset {meta.name} has no setting {setting!r}; "
                        f"settings: {', '.join(meta.settings)}")
    if not extractors:
        raise DataError(f"{where}: no extractors given; the raw layout needs one extractor per "
                        f"modality ({', '.join(MODALITIES)})")
    for mod, ex in extractors.items():
        if mod not in MODALITIES:
            raise DataError(f"load_raw: unknown modality {mod!r}; modalities: "
                            f"{', '.join(MODALITIES)}")
        if getattr(ex, "modality", mod) != mod:
            raise DataError(f"load_raw: extractor {ex.name!r} reads {ex.modality!r}, but was "
                            f"given for modality {mod!r}")


def assemble(*, meta: DatasetMeta, setting: str, source: Path | str, ids: list[str],
             split: np.ndarray, labels: np.ndarray, unimodal: Mapping[str, np.ndarray],
             texts: list[str] | None, refs: Mapping[str, list[MediaRef]],
             features: Mapping[str, torch.Tensor], lengths: Mapping[str, torch.Tensor],
             notes: list[str]) -> LoadedDataset:
    """The validated :class:`LoadedDataset` of one row per sample (``split`` names each
    row's split); ``refs[m]`` becomes ``SplitData.media[m]``."""
    splits = {}
    for s in SPLITS:
        rows = np.flatnonzero(split == s)
        idx = torch.from_numpy(rows)
        splits[s] = SplitData(
            ids=[ids[i] for i in rows],
            features={m: x[idx] for m, x in features.items()},
            lengths={m: x[idx] for m, x in lengths.items()},
            labels=torch.from_numpy(labels[rows].astype(np.float32)),
            unimodal={m: torch.from_numpy(u[rows].astype(np.float32))
                      for m, u in unimodal.items()},
            texts=[texts[i] for i in rows] if texts is not None else None,
            media={m: [r[i] for i in rows] for m, r in refs.items()})
    loaded = LoadedDataset(meta=meta, setting=setting, splits=splits, source=str(source),
                           notes=notes)
    loaded.validate()
    return loaded
