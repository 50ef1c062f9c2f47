"""Feature extraction of the raw layouts, shared by CH-SIMS (:mod:`.raw`, one file per clip)
and CMU-MOSI / CMU-MOSEI (:mod:`.raw_segments`, segments cut from full videos).

:func:`extract_all` runs one extractor per modality over a list of inputs: transcripts for
``text``, :class:`~msabench.api.MediaRef` for ``audio`` / ``vision`` (a whole file, or the
segment ``[start, end)`` seconds of one), and caches the features in the digest-keyed stores
of :mod:`.raw_cache` (the module docstring of :mod:`.raw` describes the cache):

- a whole file is keyed by its file digest (as before segments existed, so existing caches
  stay valid);
- a segment by sha256 of the file digest and its ``start`` / ``end`` (``repr`` of the floats):
  the same interval of the same bytes is never extracted twice, a moved or renamed video keeps
  its features, and a changed interval is recomputed.

Segments are decoded one video at a time: the rows to extract are ordered by file, each file's
stream is decoded once (at the extractor's ``sample_rate`` or ``fps``/``size``) and cut with
exactly the rules of :func:`msabench_builtins.media.load_audio` / ``load_frames`` (audio samples
``round(start * rate) .. round(end * rate)``; frames whose time ``k / fps`` lies in
``[start, end)``). A segment that starts after the end of the decoded stream, or ends more than
``tolerance`` seconds after it, raises :class:`DataError` naming the file, the segment, both
times and the fix; a segment ending within ``tolerance`` past the end is cut at the end.
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from msabench.api.dataset import MODALITIES, MediaRef
from msabench.api.extractor import Extractor
from msabench.errors import DataError

from .raw_cache import _FeatureStore, _FileDigests, _text_digest

_EPS = 1e-6


def _slug(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]+", "-", text).strip("-") or "extractor"


def _option(ex: Extractor, name: str, default: Any) -> Any:
    value = getattr(ex, "config", {}).get(name, default)
    return default if value is None else value


def segment_digest(file_digest: str, start: float | None, end: float | None) -> str:
    """The cache key of a segment of a file (the file digest alone for a whole file)."""
    if start is None and end is None:
        return file_digest
    return hashlib.sha256(f"segment\0{file_digest}\0{start!r}\0{end!r}".encode()).hexdigest()


def extract_all(extractors: Mapping[str, Extractor], *, ids: Sequence[str],
                texts: Sequence[str] | None, refs: Sequence[MediaRef] | None,
                cache_dir: Path, tolerance: float = 0.0,
                ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], list[str]]:
    """Features ``{m: (N, T, D)}``, lengths ``{m: (N,)}`` and notes, one row per input.

    ``texts`` feeds the text extractor, ``refs`` (one :class:`MediaRef` per row, whole files or
    segments) the audio and vision extractors. Computed rows are added to the cache in
    ``cache_dir``; rows already there are read back."""
    cache_dir = Path(cache_dir).expanduser()
    digests = _FileDigests(cache_dir / "file-digests.npz")
    features: dict[str, torch.Tensor] = {}
    lengths: dict[str, torch.Tensor] = {}
    notes: list[str] = []
    with _Bars() as bars:
        for mod in MODALITIES:
            if mod not in extractors:
                continue
            ex = extractors[mod]
            values, lens, computed = _modality(mod, ex, ids, texts, refs, digests, cache_dir,
                                               bars, tolerance)
            digests.save()
            features[mod], lengths[mod] = values, lens
            notes.append(f"{mod}: {ex.name} features for {len(ids)} clips, "
                         f"{len(ids) - computed} from the cache in {cache_dir}")
    return features, lengths, notes


class _Decoded:
    """Decodes each file once (the last one is kept) and cuts segments out of it."""

    def __init__(self, mod: str, ex: Extractor, ids: Sequence[str], tolerance: float) -> None:
        self.mod, self.ids, self.tolerance = mod, ids, float(tolerance)
        self.path: str | None = None
        self.data: np.ndarray | None = None
        if mod == "audio":
            self.rate = float(int(_option(ex, "sample_rate", 16000)))
            self.desc = f"audio(sample_rate={int(self.rate)})"
        else:
            self.fps, self.size = _option(ex, "fps", 10), int(_option(ex, "size", 128))
            self.rate = float(self.fps)
            self.desc = f"frames(fps={self.fps!r},size={self.size})"

    def _decode(self, path: str) -> np.ndarray:
        from msabench_builtins import media as media_io

        if self.path != path:
            self.data = None  # free the previous stream first
            if self.mod == "audio":
                self.data = media_io.load_audio(path, int(self.rate))
            else:
                self.data = media_io.load_frames(path, fps=self.fps, size=self.size)
            self.path = path
        return self.data  # type: ignore[return-value]

    def __call__(self, i: int, ref: MediaRef) -> np.ndarray:
        if ref.start is None and ref.end is None:
            return self._decode(ref.path)
        data = self._decode(ref.path)
        n = len(data)
        duration = n / self.rate
        start = 0.0 if ref.start is None else float(ref.start)
        end = duration if ref.end is None else float(ref.end)
        if start >= duration or end > duration + self.tolerance:
            raise DataError(
                f"{ref.path}: segment {self.ids[i]!r} [{start:g}, {end:g}) s lies outside the "
                f"{self.mod} stream, which lasts {duration:.3f} s; the interval table does not "
                f"match this video (a different or truncated download?): replace the video, "
                f"fix the segment's start/end, or allow a longer overhang with --set "
                f"data.options.interval_tolerance=SECONDS (now {self.tolerance:g})")
        if self.mod == "audio":
            lo, hi = int(round(start * self.rate)), min(n, int(round(end * self.rate)))
            return data[lo:hi]
        times = np.arange(n) / self.rate
        keep = (times >= start - _EPS) & (times < end - _EPS)
        if not keep.any():
            raise DataError(f"{ref.path}: segment {self.ids[i]!r} [{start:g}, {end:g}) s holds "
                            f"no frame at {self.fps} fps; raise data.options.fps")
        return data[keep]


def _modality(mod: str, ex: Extractor, ids: Sequence[str], texts: Sequence[str] | None,
              refs: Sequence[MediaRef] | None, digests: _FileDigests, cache_dir: Path,
              bars: "_Bars", tolerance: float) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(N, T, D) features and (N,) lengths of one modality, plus how many were computed."""
    if mod == "text":
        if texts is None:
            raise DataError(f"extractor {ex.name}: the text modality needs transcripts")
        decode_desc = "text"
        keys = [_text_digest(t) for t in texts]
        load: Callable[[int], Any] = lambda i: texts[i]  # noqa: E731
        order: list[int] = list(range(len(keys)))
    else:
        if refs is None:
            raise DataError(f"extractor {ex.name}: the {mod} modality needs media files")
        decoded = _Decoded(mod, ex, ids, tolerance)
        decode_desc = decoded.desc
        keys = [segment_digest(digests(Path(r.path)), r.start, r.end) for r in refs]
        load = lambda i: decoded(i, refs[i])  # noqa: E731
        order = list(range(len(keys)))
        if any(r.start is not None or r.end is not None for r in refs):
            # one decode per file: the rows of a file next to each other, in time order
            order.sort(key=lambda i: (refs[i].path, refs[i].start or 0.0))
    key = f"{ex.cache_key()}|input={decode_desc}"
    name = f"{mod}-{_slug(ex.name)}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    store = _FeatureStore(cache_dir / name, key)

    todo: list[int] = []
    queued: set[str] = set()
    for i in order:
        d = keys[i]
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
