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

import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from msabench.api.dataset import (MODALITIES, SPLITS, DatasetMeta, LoadedDataset, MediaRef,
                                 SplitData)
from msabench.api.extractor import Extractor
from msabench.errors import DataError

from .archive import UNIMODAL_KEYS
from .problems import coded
from .raw_cache import _FeatureStore, _FileDigests, _text_digest, file_digest  # noqa: F401

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
    import pandas as pd

    try:
        df = pd.read_csv(label, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise coded(DataError(f"{label}: cannot read as CSV ({exc}); {LAYOUT}"),
                    "corrupt-file") from None
    df.columns = [str(c).strip() for c in df.columns]
    required = REQUIRED + (("text",) if need_text else ())
    missing = [c for c in required if c not in df.columns]
    if missing:
        why = " (needed by the text extractor)" if missing == ["text"] else ""
        raise DataError(f"{label}: missing column(s) {', '.join(missing)}{why}; columns present: "
                        f"{', '.join(df.columns) or '(none)'}; {LAYOUT}")
    dup = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if dup:
        raise DataError(f"{label}: duplicate column(s) {', '.join(dup)}")
    if len(df) == 0:
        raise DataError(f"{label}: has a header but no rows")

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
        raw = df[col].str.strip()
        vals = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(vals)
        if bad.any():
            first = int(np.argmax(bad))
            raise DataError(f"{label}: column {col!r} has {int(bad.sum())} missing or "
                            f"non-numeric value(s), first {raw.iloc[first]!r} on line "
                            f"{first + 2} (clip {ids[first]!r})")
        lo, hi = meta.label_range
        out = (vals < lo - 1e-6) | (vals > hi + 1e-6)
        if out.any():
            first = int(np.argmax(out))
            raise DataError(f"{label}: column {col!r} has {int(out.sum())} value(s) outside the "
                            f"dataset range [{lo}, {hi}], first {vals[first]} on line "
                            f"{first + 2} (clip {ids[first]!r})")
        return vals

    labels = numeric("label")
    unimodal = {mod: numeric(col) for col, mod in UNIMODAL_KEYS.items() if col in df.columns}
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


def _slug(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]+", "-", text).strip("-") or "extractor"


def _option(ex: Extractor, name: str, default: Any) -> Any:
    value = getattr(ex, "config", {}).get(name, default)
    return default if value is None else value


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
    if setting not in meta.settings:
        raise DataError(f"dataset {meta.name} has no setting {setting!r}; "
                        f"settings: {', '.join(meta.settings)}")
    if not extractors:
        raise DataError(f"{label}: no extractors given; the raw layout needs one extractor per "
                        f"modality ({', '.join(MODALITIES)})")
    for mod, ex in extractors.items():
        if mod not in MODALITIES:
            raise DataError(f"load_raw: unknown modality {mod!r}; modalities: "
                            f"{', '.join(MODALITIES)}")
        if getattr(ex, "modality", mod) != mod:
            raise DataError(f"load_raw: extractor {ex.name!r} reads {ex.modality!r}, but was "
                            f"given for modality {mod!r}")

    table = _read_labels(label, meta, need_text="text" in extractors)
    media = [m for m in ("audio", "vision") if m in extractors]
    paths = _media_paths(root, table) if media else []
    cache_dir = Path(cache_dir).expanduser()
    notes: list[str] = []
    digests = _FileDigests(cache_dir / "file-digests.npz")

    features: dict[str, torch.Tensor] = {}
    lengths: dict[str, torch.Tensor] = {}
    with _Bars() as bars:
        for mod in MODALITIES:
            if mod not in extractors:
                continue
            values, lens, computed = _modality(mod, extractors[mod], table, paths, digests,
                                               cache_dir, bars)
            digests.save()
            features[mod], lengths[mod] = values, lens
            notes.append(f"{mod}: {extractors[mod].name} features for {len(table.ids)} clips, "
                         f"{len(table.ids) - computed} from the cache in {cache_dir}")

    splits = {}
    for s in SPLITS:
        rows = np.flatnonzero(table.split == s)
        idx = torch.from_numpy(rows)
        splits[s] = SplitData(
            ids=[table.ids[i] for i in rows],
            features={m: x[idx] for m, x in features.items()},
            lengths={m: x[idx] for m, x in lengths.items()},
            labels=torch.from_numpy(table.labels[rows].astype(np.float32)),
            unimodal={m: torch.from_numpy(u[rows].astype(np.float32))
                      for m, u in table.unimodal.items()},
            texts=[table.texts[i] for i in rows] if table.texts is not None else None,
            media={m: [MediaRef(str(paths[i])) for i in rows] for m in media})
    loaded = LoadedDataset(meta=meta, setting=setting, splits=splits, source=str(label),
                           notes=notes)
    loaded.validate()
    return loaded


def _modality(mod: str, ex: Extractor, table: _Table, paths: list[Path],
              digests: _FileDigests, cache_dir: Path, bars: "_Bars",
              ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(N, T, D) features and (N,) lengths of one modality, plus how many were computed."""
    from msabench_builtins import media as media_io

    if mod == "text":
        decode_desc = "text"
        keys = [_text_digest(t) for t in table.texts]
        load: Callable[[int], Any] = lambda i: table.texts[i]  # noqa: E731
    elif mod == "audio":
        rate = int(_option(ex, "sample_rate", 16000))
        decode_desc = f"audio(sample_rate={rate})"
        keys = [digests(p) for p in paths]
        load = lambda i: media_io.load_audio(paths[i], rate)  # noqa: E731
    else:
        fps, size = _option(ex, "fps", 10), int(_option(ex, "size", 128))
        decode_desc = f"frames(fps={fps!r},size={size})"
        keys = [digests(p) for p in paths]
        load = lambda i: media_io.load_frames(paths[i], fps=fps, size=size)  # noqa: E731
    key = f"{ex.cache_key()}|input={decode_desc}"
    name = f"{mod}-{_slug(ex.name)}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    store = _FeatureStore(cache_dir / name, key)

    todo: list[int] = []
    queued: set[str] = set()
    for i, d in enumerate(keys):
        if d not in store.rows and d not in queued:
            todo.append(i)
            queued.add(d)
    chunk = _option(ex, "batch_size", 16)
    chunk = chunk if isinstance(chunk, int) and not isinstance(chunk, bool) and chunk > 0 else 16
    if todo:
        task = bars.add(f"{mod}: {ex.name}", len(todo))
        try:
            for start in range(0, len(todo), chunk):
                rows = todo[start:start + chunk]
                out = ex.extract([load(i) for i in rows])
                values, lens = _check_output(ex, out, len(rows))
                for j, i in enumerate(rows):
                    store.add(keys[i], values[j, :lens[j]].copy())
                bars.advance(task, len(rows))
        finally:
            store.save()

    rows_ = [store.rows[d] for d in keys]
    dims = {r.shape[1] for r in rows_}
    if len(dims) != 1:
        raise DataError(f"{store.path}: cached {mod} features of different widths "
                        f"{sorted(dims)}; delete the file to rebuild it")
    lens = np.array([len(r) for r in rows_], dtype=np.int64)
    values = np.zeros((len(rows_), int(lens.max()), dims.pop()), dtype=np.float32)
    for i, r in enumerate(rows_):
        values[i, :len(r)] = r
    return torch.from_numpy(values), torch.from_numpy(lens), len(todo)


def _check_output(ex: Extractor, out: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    values = getattr(out, "values", None)
    lens = getattr(out, "lengths", None)
    if not isinstance(values, torch.Tensor) or not isinstance(lens, torch.Tensor) \
            or values.dim() != 3 or values.shape[0] != n or lens.shape != (n,):
        shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(out).__name__
        raise DataError(f"extractor {ex.name}: extract() of {n} inputs returned {shape}; "
                        f"expected Features with ({n}, T, D) values and ({n},) lengths")
    values = values.detach().float().cpu().numpy()
    lens = lens.detach().cpu().numpy().astype(np.int64)
    if (lens < 1).any() or (lens > values.shape[1]).any():
        raise DataError(f"extractor {ex.name}: returned lengths outside [1, {values.shape[1]}]")
    if not np.isfinite(values).all():
        raise DataError(f"extractor {ex.name}: returned NaN or infinite features")
    return values, lens


class _Bars:
    """One rich progress bar per modality on stderr (terminals only)."""

    def __init__(self) -> None:
        self.progress = None

    def __enter__(self) -> "_Bars":
        return self

    def add(self, description: str, total: int) -> Any:
        if self.progress is None:
            if not sys.stderr.isatty():
                return None
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self.progress = Progress(
                TextColumn("[progress.description]{task.description}"), BarColumn(),
                MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                console=Console(stderr=True))
            self.progress.start()
        return self.progress.add_task(description, total=total)

    def advance(self, task: Any, n: int) -> None:
        if self.progress is not None and task is not None:
            self.progress.advance(task, n)

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()
