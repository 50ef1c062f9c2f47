"""``synthetic-sims2``: SYNTHETIC data in CH-SIMS v2 shapes, with unimodal labels, transcripts
and (setting ``raw``) generated audio and video files.

It exists so that unimodal heads, the ``sims`` metric convention and encoders fine-tuned on raw
media can be run end to end with no download. It is **not a benchmark**: numbers on it say
whether a method learns at all, never how good it is on CH-SIMS v2 (results and leaderboards
mark it SYNTHETIC).

Generative model (``numpy.random`` streams seeded by ``generator_seed``, independent of the run
seed):

1. Labels. Each sample's (``label``, ``label_T``, ``label_A``, ``label_V``) is a row of the
   real CH-SIMS v2 ``label.csv`` (4403 clips) drawn with replacement, so the joint distribution
   of the four labels is the real one. The table is looked up as ``data.options.label_source``
   says: ``"auto"`` (default) reads ``<data dir>/label.csv`` or ``<data dir>/chsims2/label.csv``
   when a data directory is given and the file is there (``--data-dir ../shared/data``), and
   otherwise uses the built-in copy below; a path names the table; ``"builtin"`` always uses
   the built-in copy. The built-in copy is a coarse histogram computed once from the real
   table (:data:`SIGN_PATTERNS`: counts of the 79 sign patterns of the four labels, negative /
   zero / positive; :data:`SIGN_VALUES`: each column's values within its sign): a pattern is
   drawn, then each nonzero label from its column's values of that sign, the magnitudes of
   the four coupled by a Gaussian copula (correlation 0.8). It reproduces the sign agreement
   between the labels and every column's marginal exactly in expectation, the magnitude
   coupling only approximately. The source used is in the data's ``source`` and notes.
2. Layout. Pseudo-videos ``synv_NNNN`` of 2..8 clips ``0001``, ``0002``, ...; sample ids are
   ``<video_id>$_$<clip_id>`` (MMSA's); a video never spans two splits; rows are train, valid,
   test (``n_train`` / ``n_valid`` / ``n_test``).
3. Features (both settings), unaligned like MMSA's SIMS v2 ``unaligned.pkl``: text (50, 768),
   audio (925, 25), vision (232, 177) by default (``*_len``, ``*_dim``), per-sample lengths.
   Modality m carries its OWN unimodal label only: with ``z_m`` the standardised ``label_T`` /
   ``label_A`` / ``label_V``, valid step t is ``a_m z_m (1 + 0.5 j_t) w_m + n_t`` (the
   ``synthetic-mosi`` feature model: fixed random unit direction ``w_m``, per-step jitter and
   isotropic noise, zero padding; signal-to-noise text > audio > vision).
4. Transcripts: 4..7 lower-case ASCII English words (not Chinese): filler words plus one
   sentiment word chosen by ``label_T`` (``terrible`` ... ``excellent``; ``okay`` at 0).
5. Media (setting ``raw``): per clip a mono 16 kHz ``.wav`` of 0.4..0.9 s, a tone whose pitch
   (``220 * 2 ** label_A`` Hz) and loudness (amplitude ``0.25 + 0.2 * label_A``) encode
   ``label_A``, and an ``.mp4`` (MPEG-4, ``media_fps`` fps, 5..10 frames of
   ``media_size`` x ``media_size``) whose brightness (``128 + 90 * label_V``) and tint (red
   for positive, blue for negative ``label_V``) encode ``label_V``, with a moving square and
   pixel noise. They are exposed as ``SplitData.media["audio"]`` / ``["vision"]`` (a
   ``MediaRef`` per clip) and written once into ``$MSABENCH_CACHE_DIR/synthetic/`` (default
   ``~/.cache/msabench/synthetic/``) as ``synthetic-sims2-media-<key>/Raw/<video_id>/
   <clip_id>.{wav,mp4}``, keyed by a hash of everything they depend on, written to a
   temporary folder and renamed into place (1-2 s for 100 clips; never into the repository).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from msabench.api.dataset import SPLITS, Dataset, DatasetMeta, LoadedDataset, MediaRef
from msabench.errors import DataError

from .raw import assemble
from .synthetic import _features, _lengths, cache_root

GENERATOR_VERSION = 1
LABEL_COLUMNS = ("label", "label_T", "label_A", "label_V")
UNIMODAL = {"text": "label_T", "audio": "label_A", "vision": "label_V"}
COPULA_RHO = 0.8
CLIPS_PER_VIDEO = (2, 8)
SAMPLE_RATE = 16000

# The built-in copy of the real CH-SIMS v2 label table (4403 clips), computed once from
# label.csv: counts of the sign pattern of (label, label_T, label_A, label_V), n < 0, z = 0, p > 0
SIGN_PATTERNS: dict[str, int] = {
    "nnnn": 1320, "pppp": 927, "pzpp": 209, "nznn": 180, "nnnz": 177, "pppz": 149, "zzzz": 118,
    "ppzp": 92, "pppn": 76, "npnn": 73, "pnpp": 60, "nnzn": 58, "pzzp": 57, "ppzz": 51,
    "nnzz": 44, "nnnp": 43, "nzzn": 37, "zpzz": 34, "zppz": 33, "zzzn": 31, "zzzp": 30,
    "znzz": 29, "nznz": 25, "nnpp": 24, "nppn": 23, "znnz": 23, "nnpn": 19, "pnnp": 19,
    "pnzp": 19, "zznz": 19, "zzpp": 17, "nzzz": 16, "znnp": 16, "zpzn": 16, "npzn": 15,
    "ppnp": 15, "zppp": 15, "nnzp": 14, "znpp": 14, "zpnn": 14, "znnn": 13, "znzp": 13,
    "zppn": 13, "zznn": 13, "zzpz": 13, "pzpz": 12, "ppnn": 11, "znzn": 11, "zpnz": 11,
    "zpzp": 11, "pzzz": 10, "npnz": 9, "nzpn": 9, "znpz": 8, "nnpz": 7, "ppzn": 7, "zznp": 7,
    "nppp": 6, "nzzp": 6, "ppnz": 6, "pznp": 6, "zzpn": 6, "nznp": 4, "nzpp": 4, "pnpn": 4,
    "pzzn": 4, "nppz": 3, "npzz": 3, "pnpz": 3, "pzpn": 3, "znpn": 3, "npnp": 2, "pnnn": 2,
    "pnzz": 2, "pznn": 2, "zpnp": 2, "npzp": 1, "nzpz": 1, "pnzn": 1,
}
# ... and each column's values (value: count) among its negative / positive labels
SIGN_VALUES: dict[str, dict[str, dict[float, int]]] = {
    "label": {"n": {-1.0: 736, -0.8: 366, -0.6: 447, -0.4: 269, -0.2: 304, -0.1: 1},
              "p": {0.2: 256, 0.4: 218, 0.6: 615, 0.8: 352, 1.0: 306}},
    "label_T": {"n": {-1.0: 422, -0.8: 456, -0.6: 488, -0.4: 288, -0.2: 291, -0.1: 1},
                "p": {0.2: 254, 0.4: 266, 0.6: 537, 0.8: 353, 1.0: 208}},
    "label_A": {"n": {-1.0: 580, -0.8: 396, -0.6: 435, -0.4: 238, -0.2: 362, -0.1: 1},
                "p": {0.2: 363, 0.4: 352, 0.6: 546, 0.8: 246, 1.0: 154}},
    "label_V": {"n": {-1.0: 665, -0.8: 310, -0.6: 381, -0.4: 259, -0.2: 348, -0.1: 1},
                "p": {0.2: 223, 0.4: 191, 0.6: 507, 0.8: 330, 1.0: 382}},
}

FILLER = ("the", "this", "movie", "scene", "story", "actor", "was", "is", "really", "quite",
          "a", "so", "just", "very")
SENTIMENT = ((-0.6, ("terrible", "awful", "hate")), (-1e-9, ("bad", "boring", "dull")),
             (1e-9, ("okay", "fine", "plain")), (0.6, ("good", "nice", "fun")),
             (np.inf, ("excellent", "great", "love")))

_INT_OPTIONS = ("n_train", "n_valid", "n_test", "text_dim", "audio_dim", "vision_dim",
                "text_len", "audio_len", "vision_len", "generator_seed", "media_fps",
                "media_size")


class SyntheticSims2(Dataset):
    """SYNTHETIC CH-SIMS v2-shaped data with unimodal labels, transcripts and generated media;
    see the module docstring."""

    name: ClassVar[str] = "synthetic-sims2"
    meta: ClassVar[DatasetMeta] = DatasetMeta(
        name="synthetic-sims2",
        title="Synthetic CH-SIMS v2-shaped data (SYNTHETIC — not a real benchmark)",
        language="synthetic", label_range=(-1.0, 1.0), convention="sims",
        split_sizes=(64, 16, 16), settings=("unaligned", "raw"), default_setting="unaligned",
        unimodal_labels=True, synthetic=True,
        license="generated by msabench; labels drawn from the CH-SIMS v2 label distribution",
        citation="", paper="")
    defaults: ClassVar[dict[str, Any]] = {
        "n_train": 64, "n_valid": 16, "n_test": 16,
        "text_dim": 768, "audio_dim": 25, "vision_dim": 177,
        "text_len": 50, "audio_len": 925, "vision_len": 232,
        "generator_seed": 0,
        "label_source": "auto",   # "auto", "builtin" or the path of a CH-SIMS v2 label.csv
        "media_fps": 8, "media_size": 32,  # generated videos (setting raw)
    }

    # ----------------------------------------------------------------------------------------
    def checked_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        for key in _INT_OPTIONS:
            value = self.options[key]
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise DataError(f"dataset {self.name}: option {key} must be an integer, got "
                                f"{value!r}")
            low = 0 if key == "generator_seed" else 1
            if int(value) < low:
                raise DataError(f"dataset {self.name}: option {key} must be >= {low}, got {value}")
            opts[key] = int(value)
        if opts["media_size"] % 2:
            raise DataError(f"dataset {self.name}: option media_size must be even (video "
                            f"encoding), got {opts['media_size']}")
        source = self.options["label_source"]
        if not isinstance(source, (str, os.PathLike)) or not str(source).strip():
            raise DataError(f"dataset {self.name}: option label_source must be 'auto', "
                            f"'builtin' or the path of a CH-SIMS v2 label.csv, got {source!r}")
        opts["label_source"] = str(source)
        return opts

    def label_table(self, source: str) -> Path | None:
        """The label.csv to sample from, or None for the built-in histogram."""
        if source == "builtin":
            return None
        if source != "auto":
            path = Path(source).expanduser()
            if not path.is_absolute() and self.data_dir is not None:
                path = self.data_dir / path
            if not path.is_file():
                raise DataError(f"dataset {self.name}: label_source {source!r} is not a file "
                                f"(looked at {path}); pass a CH-SIMS v2 label.csv, 'auto' or "
                                f"'builtin'")
            return path
        if self.data_dir is None:
            return None
        for candidate in (self.data_dir / "label.csv", self.data_dir / "chsims2" / "label.csv"):
            if candidate.is_file():
                return candidate
        return None

    def load(self) -> LoadedDataset:
        opts = self.checked_options()
        table = self.label_table(opts["label_source"])
        root = np.random.SeedSequence([0x73696D73, GENERATOR_VERSION, opts["generator_seed"]])
        s_labels, s_layout, s_len, s_dir, s_feat, s_text, s_media = root.spawn(7)
        sizes = {s: opts[f"n_{s}"] for s in SPLITS}
        n = sum(sizes.values())
        if table is None:
            labels = builtin_labels(np.random.default_rng(s_labels), n)
            label_note = "the built-in CH-SIMS v2 sign-pattern histogram"
        else:
            labels, digest = sample_table(np.random.default_rng(s_labels), table, n)
            label_note = f"rows of a CH-SIMS v2 label.csv (sha256 {digest[:12]})"
        video, clip, split = layout(np.random.default_rng(s_layout), sizes)
        ids = [f"{v}$_${c}" for v, c in zip(video, clip)]
        features, lengths = self._features(opts, labels, s_len, s_dir, s_feat)
        texts = transcripts(np.random.default_rng(s_text), labels[:, 1])
        media: dict[str, list[MediaRef]] = {}
        notes = [f"SYNTHETIC: labels are {label_note}; transcripts are ASCII English words"]
        if self.setting == "raw":
            folder = write_media(np.random.default_rng(s_media), labels, video, clip, opts)
            media = {"audio": [MediaRef(str(folder / "Raw" / v / f"{c}.wav"))
                               for v, c in zip(video, clip)],
                     "vision": [MediaRef(str(folder / "Raw" / v / f"{c}.mp4"))
                                for v, c in zip(video, clip)]}
            notes.append(f"media: {n} .wav and {n} .mp4 files in {folder}")
        source = (f"generated (synthetic-sims2 generator v{GENERATOR_VERSION}; labels: "
                  f"{label_note})")
        return assemble(meta=self.meta, setting=self.setting, source=source, ids=ids,
                        split=split, labels=labels[:, 0],
                        unimodal={m: labels[:, 1 + k] for k, m in enumerate(UNIMODAL)},
                        texts=texts, refs=media, features=features, lengths=lengths,
                        notes=notes)

    @staticmethod
    def _features(opts: dict[str, Any], labels: np.ndarray, s_len: Any, s_dir: Any,
                  s_feat: Any) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        n = len(labels)
        len_rng, dir_rng = np.random.default_rng(s_len), np.random.default_rng(s_dir)
        duration = len_rng.beta(2.0, 2.5, size=n)
        features, lengths = {}, {}
        for k, (mod, rng_seed) in enumerate(zip(UNIMODAL, s_feat.spawn(3))):
            t, d = opts[f"{mod}_len"], opts[f"{mod}_dim"]
            y = labels[:, 1 + k]
            z = (y - y.mean()) / max(float(y.std()), 1e-6)
            lens = _lengths(len_rng, duration, mod, t)
            direction = dir_rng.standard_normal(d)
            direction /= np.linalg.norm(direction)
            x = _features(np.random.default_rng(rng_seed), z, lens, mod, t, d, direction)
            features[mod], lengths[mod] = torch.from_numpy(x), torch.from_numpy(lens)
        return features, lengths


# --------------------------------------------------------------------------------------------
# labels

def sample_table(rng: np.random.Generator, path: Path, n: int) -> tuple[np.ndarray, str]:
    """``n`` rows of (label, label_T, label_A, label_V) drawn with replacement from a CH-SIMS
    v2 label.csv, and the file's sha256."""
    from .chsims import read_sims_labels

    df = read_sims_labels(path)
    table = df[list(LABEL_COLUMNS)].to_numpy(dtype=np.float64)
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return table[rng.integers(0, len(table), size=n)], digest


def builtin_labels(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` rows drawn from the built-in histogram (module docstring, step 1)."""
    from scipy.stats import norm

    patterns = sorted(SIGN_PATTERNS)
    counts = np.array([SIGN_PATTERNS[p] for p in patterns], dtype=np.float64)
    drawn = rng.choice(len(patterns), size=n, p=counts / counts.sum())
    shared = rng.standard_normal(n)
    noise = rng.standard_normal((n, len(LABEL_COLUMNS)))
    u = norm.cdf(COPULA_RHO * shared[:, None] + np.sqrt(1 - COPULA_RHO ** 2) * noise)
    out = np.zeros((n, len(LABEL_COLUMNS)))
    for j, col in enumerate(LABEL_COLUMNS):
        for sign in ("n", "p"):
            hist = SIGN_VALUES[col][sign]
            values = np.array(sorted(hist, key=abs))  # weakest first: u orders the magnitude
            cum = np.cumsum([hist[v] for v in values]) / sum(hist.values())
            rows = np.array([patterns[d][j] == sign for d in drawn])
            pick = np.minimum(np.searchsorted(cum, u[rows, j], side="right"), len(values) - 1)
            out[rows, j] = values[pick]
    return out


# --------------------------------------------------------------------------------------------
# layout, transcripts, media

def layout(rng: np.random.Generator, sizes: dict[str, int]) -> tuple[list[str], list[str],
                                                                      np.ndarray]:
    """(video ids, clip ids, split) per row; pseudo-videos of 2..8 clips within a split."""
    video: list[str] = []
    clip: list[str] = []
    split: list[str] = []
    v = 0
    lo, hi = CLIPS_PER_VIDEO
    for name, n in sizes.items():
        left = n
        while left > 0:
            c = int(rng.integers(lo, hi + 1))
            if left - c < lo:  # do not leave a one-clip video: absorb the remainder
                c = left if left <= hi else left - lo
            v += 1
            video.extend([f"synv_{v:04d}"] * c)
            clip.extend(f"{k:04d}" for k in range(1, c + 1))
            split.extend([name] * c)
            left -= c
    return video, clip, np.array(split)


def transcripts(rng: np.random.Generator, label_t: np.ndarray) -> list[str]:
    """4..7 ASCII words per clip: fillers and one sentiment word chosen by ``label_T``."""
    out = []
    for y in label_t:
        words = list(rng.choice(FILLER, size=int(rng.integers(3, 7))))
        group = next(g for bound, g in SENTIMENT if y < bound)
        words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(group)))
        out.append(" ".join(str(w) for w in words))
    return out


def _media_key(labels: np.ndarray, video: list[str], clip: list[str], opts: dict[str, Any]) -> str:
    blob = json.dumps({"version": GENERATOR_VERSION, "seed": opts["generator_seed"],
                       "fps": opts["media_fps"], "size": opts["media_size"],
                       "ids": [f"{v}/{c}" for v, c in zip(video, clip)],
                       "labels": labels[:, 2:].round(6).tolist()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def write_media(rng: np.random.Generator, labels: np.ndarray, video: list[str], clip: list[str],
                opts: dict[str, Any]) -> Path:
    """The folder holding ``Raw/<video>/<clip>.wav`` and ``.mp4`` of every clip, generated
    once (module docstring, step 5)."""
    from msabench_builtins.media import write_video, write_wav

    parent = cache_root() / "synthetic"
    folder = parent / f"synthetic-sims2-media-{_media_key(labels, video, clip, opts)}"
    if (folder / "complete").is_file():
        return folder
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".synthetic-sims2-media-", dir=parent))
    try:
        fps, size = opts["media_fps"], opts["media_size"]
        for i, (v, c) in enumerate(zip(video, clip)):
            y_a, y_v = float(labels[i, 2]), float(labels[i, 3])
            write_wav(tmp / "Raw" / v / f"{c}.wav", tone(rng, y_a), SAMPLE_RATE)
            write_video(tmp / "Raw" / v / f"{c}.mp4", frames(rng, y_v, size), fps)
        (tmp / "complete").write_text(f"synthetic-sims2 media, generator v{GENERATOR_VERSION}\n")
        if folder.exists():  # an incomplete earlier attempt
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished first
            if not (folder / "complete").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def tone(rng: np.random.Generator, y: float) -> np.ndarray:
    """0.4..0.9 s at 16 kHz: pitch 220 * 2 ** y Hz, amplitude 0.25 + 0.2 y, light noise."""
    n = int(SAMPLE_RATE * rng.uniform(0.4, 0.9))
    t = np.arange(n) / SAMPLE_RATE
    wave = (0.25 + 0.2 * y) * np.sin(2 * np.pi * 220.0 * 2.0 ** y * t + rng.uniform(0, 2 * np.pi))
    return wave + 0.01 * rng.standard_normal(n)


def frames(rng: np.random.Generator, y: float, size: int) -> np.ndarray:
    """5..10 RGB frames: brightness 128 + 90 y, red (y > 0) or blue (y < 0) tint, a moving
    bright square and pixel noise."""
    t = int(rng.integers(5, 11))
    base = 128.0 + 90.0 * y
    colour = np.array([base + 60 * max(y, 0.0), base, base + 60 * max(-y, 0.0)])
    video = np.broadcast_to(colour, (t, size, size, 3)).copy()
    side = max(2, size // 4)
    for k in range(t):
        x0 = (k * size // t) % (size - side)
        video[k, side:2 * side, x0:x0 + side] += 50.0
    video += rng.normal(0.0, 6.0, video.shape)
    return np.clip(np.round(video), 0, 255).astype(np.uint8)
