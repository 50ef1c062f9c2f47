"""``synthetic-mosi``: SYNTHETIC data in CMU-MOSI shapes with a planted, learnable signal.

This is msabench's embedded default dataset, so that every method can be run end to end with
no download. It is **not a benchmark**: numbers on it say whether a method learns at all, never
how good it is on real data (results and leaderboards mark it SYNTHETIC).

Shapes mirror the MMSA MOSI pickles: 1284/229/686 train/valid/test samples; ``unaligned``:
text (50, 768) with per-sample lengths, audio (375, 5), vision (500, 20); ``aligned``: every
modality has ``text_len`` (50) steps and all modalities of a sample share one length.

Generative model (all draws from ``numpy.random`` streams seeded by ``generator_seed``, which
is independent of the run seed; the same seed gives the same samples, latents and labels in
both settings):

1. Layout. Samples are grouped into pseudo-videos of 8..40 segments (``video`` ids
   ``synvNNN``, sample ids ``synvNNN_k``); a video never spans two splits. Rows are stored
   train, then valid, then test. ``sentence`` is a short placeholder ("synthetic sample 17")
   that carries no signal.
2. Latents. Per sample, independent standard-normal factors ``z_t, z_a, z_v``.
3. Score. ``s = 1.0 z_t + 0.5 z_a + 0.3 z_v + 0.4 z_a z_v + 0.2 e``, ``e ~ N(0, 1)``: text
   dominates, audio and vision add linear signal, and the ``z_a z_v`` cross-modal interaction
   is only reachable by a model that combines audio and vision non-linearly.
4. Labels. A systematic sample (random offset) of N labels from the embedded histogram of the
   2199 real CMU-MOSI opinion labels is sorted and assigned by the rank of ``s``: the label
   order follows ``s`` and the marginal is MOSI's (exactly its counts at N = 2199).
5. Lengths. A shared per-sample "duration" ``u ~ Beta(2, 2.5)`` plus per-modality jitter sets
   the valid steps in [low, T] (low = 20 % / 27 % / 24 % of T for text / audio / vision, e.g.
   text 10..50, audio 101..375, vision 120..500). Aligned: every modality uses the text lengths.
6. Features. For modality m with latent ``z_m``, a fixed random unit direction ``w_m`` in R^D
   and valid step t: ``x[t] = a_m z_m (1 + 0.5 j_t) w_m + n_t`` with ``j_t, n_t`` standard
   normal (per-step jitter and isotropic noise); padded steps are exactly 0. The amplitude
   ``a_m`` is set so that the oracle projection of the time-mean on ``w_m`` explains a fraction
   ``R2_m`` of ``z_m`` at a mid-range length: 0.85 (text) > 0.70 (audio) > 0.55 (vision), i.e.
   the signal-to-noise ratio decreases text > audio > vision. Per step the signal is weak
   (``a_m`` << 1), so a method has to pool over time.

What a linear probe gets (closed-form ridge on standardised time-mean features, lambda chosen
on valid; full size, generator seed 0, unaligned): predicting the train mean gives test MAE
1.360; text 0.946 (r 0.656); text+audio+vision 0.836 (r 0.740); adding audio x vision product
features lowers it further (about 0.82), so non-linear fusion has something to find. The
oracle ceiling is far higher: the labels correlate r 0.96 with the noiseless score
and r 0.92 with its linear part.

The data is written as an msabench utterance archive (``.npz``, see ``archive.py``) and then
read back through :func:`load_archive`, so the default dataset exercises a real reader. The
archive is cached under ``$MSABENCH_CACHE_DIR/synthetic/`` (default
``~/.cache/msabench/synthetic/``), keyed by a hash of (generator version, setting, options),
written atomically; ``cache = false`` generates into a temporary folder that is deleted.
Full size is about 440 MB (unaligned) / 350 MB (aligned) of float32.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from msabench.api.dataset import Dataset, DatasetMeta, LoadedDataset
from msabench.errors import DataError

from .archive import load_archive, save_archive

GENERATOR_VERSION = 1

# value: count of the 2199 real CMU-MOSI opinion labels
MOSI_LABEL_HISTOGRAM: dict[float, int] = {
    -3.0: 12, -2.8: 32, -2.6: 36, -2.5: 2, -2.4: 40, -2.25: 2, -2.2: 61, -2.0: 103, -1.8: 72,
    -1.75: 4, -1.6: 91, -1.5: 10, -1.4: 79, -1.333: 2, -1.25: 8, -1.2: 71, -1.0: 110, -0.8: 68,
    -0.75: 8, -0.667: 3, -0.6: 55, -0.5: 18, -0.4: 69, -0.333: 2, -0.25: 10, -0.2: 55, 0.0: 96,
    0.2: 61, 0.25: 12, 0.333: 1, 0.4: 62, 0.5: 17, 0.6: 63, 0.667: 2, 0.75: 4, 0.8: 77,
    1.0: 62, 1.2: 68, 1.25: 7, 1.333: 4, 1.4: 92, 1.5: 3, 1.6: 90, 1.75: 4, 1.8: 94, 2.0: 120,
    2.2: 94, 2.25: 2, 2.4: 54, 2.5: 2, 2.6: 44, 2.8: 29, 3.0: 12,
}

SCORE_WEIGHTS = {"text": 1.0, "audio": 0.5, "vision": 0.3}
INTERACTION = 0.4  # weight of z_a * z_v
SCORE_NOISE = 0.2
R2 = {"text": 0.85, "audio": 0.70, "vision": 0.55}  # oracle recoverability of z_m; SNR order
LOW_FRACTION = {"text": 0.20, "audio": 0.27, "vision": 0.24}  # shortest length / T
STEP_JITTER = 0.5
VIDEO_SIZE = (8, 40)
_ROW_CHUNK = 128

_INT_OPTIONS = ("n_train", "n_valid", "n_test", "text_dim", "audio_dim", "vision_dim",
                "text_len", "audio_len", "vision_len", "generator_seed")


# the one definition of msabench's cache folder ($MSABENCH_CACHE_DIR, else ~/.cache/msabench)
from msabench.fingerprint import cache_root  # noqa: E402,F401  (re-exported for the datasets)


class SyntheticMosi(Dataset):
    """SYNTHETIC MOSI-shaped data with a planted signal; see the module docstring."""

    name: ClassVar[str] = "synthetic-mosi"
    meta: ClassVar[DatasetMeta] = DatasetMeta(
        name="synthetic-mosi",
        title="Synthetic MOSI-shaped data (SYNTHETIC — not a real benchmark)",
        language="synthetic", label_range=(-3.0, 3.0), convention="mosi",
        split_sizes=(1284, 229, 686), settings=("unaligned", "aligned"),
        default_setting="unaligned", synthetic=True,
        license="generated by msabench; no license restrictions", citation="", paper="")
    defaults: ClassVar[dict[str, Any]] = {
        "n_train": 1284, "n_valid": 229, "n_test": 686,
        "text_dim": 768, "audio_dim": 5, "vision_dim": 20,
        "text_len": 50, "audio_len": 375, "vision_len": 500,
        "generator_seed": 0, "cache": True,
    }

    # ----------------------------------------------------------------------------------------
    def checked_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        for key in _INT_OPTIONS:
            value = self.options[key]
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) and not (
                    isinstance(value, float) and value.is_integer()):
                raise DataError(f"dataset {self.name}: option {key} must be an integer, got "
                                f"{value!r}")
            value = int(value)
            low = 0 if key == "generator_seed" else 1
            if value < low:
                raise DataError(f"dataset {self.name}: option {key} must be >= {low}, got {value}")
            opts[key] = value
        cache = self.options["cache"]
        if not isinstance(cache, bool):
            raise DataError(f"dataset {self.name}: option cache must be true or false, got "
                            f"{cache!r}")
        opts["cache"] = cache
        return opts

    def cache_key(self) -> str:
        opts = {k: v for k, v in self.checked_options().items() if k != "cache"}
        blob = json.dumps({"generator": self.name, "version": GENERATOR_VERSION,
                           "setting": self.setting, "options": opts}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def cache_path(self) -> Path:
        return cache_root() / "synthetic" / f"{self.name}-{self.setting}-{self.cache_key()}.npz"

    def write(self, path: Path) -> Path:
        """Generate the archive for this setting and options into ``path`` (atomically)."""
        arrays = generate(self.setting, self.checked_options())
        save_archive(path, arrays)
        return path

    def load(self) -> LoadedDataset:
        opts = self.checked_options()
        if not opts["cache"]:
            with tempfile.TemporaryDirectory(prefix="msabench-synthetic-") as tmp:
                path = self.write(Path(tmp) / "synthetic-mosi.npz")
                loaded = load_archive(path, meta=self.meta, setting=self.setting)
                loaded.source = f"generated (synthetic-mosi generator v{GENERATOR_VERSION}, not cached)"
                return loaded
        path = self.cache_path()
        loaded = None
        if path.is_file():
            try:
                loaded = load_archive(path, meta=self.meta, setting=self.setting)
            except DataError:
                loaded = None  # a damaged cache file: regenerate it below
        if loaded is None:
            self.write(path)
            loaded = load_archive(path, meta=self.meta, setting=self.setting)
        # machine-independent provenance (the cache folder differs between machines)
        loaded.source = (f"generated (synthetic-mosi generator v{GENERATOR_VERSION}, "
                         f"cached as {path.name})")
        return loaded


# --------------------------------------------------------------------------------------------
# the generator

def _layout(rng: np.random.Generator, sizes: dict[str, int]) -> tuple[np.ndarray, np.ndarray,
                                                                      np.ndarray]:
    """Pseudo-videos within each split: returns (ids, video, split) string arrays."""
    ids: list[str] = []
    videos: list[str] = []
    splits: list[str] = []
    v = 0
    lo, hi = VIDEO_SIZE
    for split, n in sizes.items():
        counts: list[int] = []
        left = n
        while left > 0:
            c = int(rng.integers(lo, hi + 1))
            if left - c < lo:  # do not leave a tiny last video: absorb the remainder
                c = left if left <= hi else left - lo
            counts.append(c)
            left -= c
        for c in counts:
            name = f"synv{v:03d}"
            v += 1
            ids.extend(f"{name}_{k}" for k in range(1, c + 1))
            videos.extend([name] * c)
            splits.extend([split] * c)
    return np.array(ids), np.array(videos), np.array(splits)


def _labels(rng: np.random.Generator, score: np.ndarray) -> np.ndarray:
    values = np.array(sorted(MOSI_LABEL_HISTOGRAM), dtype=np.float64)
    counts = np.array([MOSI_LABEL_HISTOGRAM[v] for v in values], dtype=np.float64)
    cum = np.cumsum(counts) / counts.sum()
    n = len(score)
    q = (np.arange(n) + rng.random()) / n  # systematic sample of the histogram's quantiles
    sorted_labels = values[np.minimum(np.searchsorted(cum, q, side="right"), len(values) - 1)]
    labels = np.empty(n, dtype=np.float64)
    labels[np.argsort(score, kind="stable")] = sorted_labels
    return labels


def _lengths(rng: np.random.Generator, duration: np.ndarray, mod: str, t: int) -> np.ndarray:
    low = max(1, int(round(LOW_FRACTION[mod] * t)))
    frac = np.clip(duration + 0.08 * rng.standard_normal(len(duration)), 0.0, 1.0)
    return (low + np.round(frac * (t - low))).astype(np.int64)


def _features(rng: np.random.Generator, z: np.ndarray, lengths: np.ndarray, mod: str, t: int,
              d: int, direction: np.ndarray) -> np.ndarray:
    n = len(z)
    low = max(1, int(round(LOW_FRACTION[mod] * t)))
    mid = 0.5 * (low + t)
    amp = np.float32(np.sqrt(R2[mod] / ((1.0 - R2[mod]) * mid)))
    x = np.zeros((n, t, d), dtype=np.float32)
    steps = np.arange(t)
    direction = direction.astype(np.float32)
    for start in range(0, n, _ROW_CHUNK):
        stop = min(start + _ROW_CHUNK, n)
        mask = steps[None, :] < lengths[start:stop, None]  # (B, T) valid steps
        k = int(mask.sum())
        noise = rng.standard_normal((k, d), dtype=np.float32)
        jitter = rng.standard_normal(k, dtype=np.float32)
        zz = np.broadcast_to(z[start:stop, None], mask.shape)[mask].astype(np.float32)
        coef = amp * zz * (1.0 + np.float32(STEP_JITTER) * jitter)
        noise += coef[:, None] * direction[None, :]
        x[start:stop][mask] = noise
    return x


def generate(setting: str, opts: dict[str, Any]) -> dict[str, np.ndarray]:
    """All arrays of the archive (ordered as written), for ``setting`` and checked ``opts``."""
    if setting not in ("unaligned", "aligned"):
        raise DataError(f"synthetic-mosi has no setting {setting!r}")
    root = np.random.SeedSequence([0x6D736162, GENERATOR_VERSION, int(opts["generator_seed"])])
    (s_layout, s_latent, s_label, s_len, s_dir, s_text, s_audio,
     s_vision) = root.spawn(8)
    sizes = {"train": opts["n_train"], "valid": opts["n_valid"], "test": opts["n_test"]}
    ids, video, split = _layout(np.random.default_rng(s_layout), sizes)
    n = len(ids)

    latent_rng = np.random.default_rng(s_latent)
    z = latent_rng.standard_normal((3, n))
    z_t, z_a, z_v = z
    score = (SCORE_WEIGHTS["text"] * z_t + SCORE_WEIGHTS["audio"] * z_a
             + SCORE_WEIGHTS["vision"] * z_v + INTERACTION * z_a * z_v
             + SCORE_NOISE * latent_rng.standard_normal(n))
    label = _labels(np.random.default_rng(s_label), score)

    mods = ("text", "audio", "vision")
    if setting == "aligned":
        steps = {m: opts["text_len"] for m in mods}
    else:
        steps = {m: opts[f"{m}_len"] for m in mods}
    len_rng = np.random.default_rng(s_len)
    duration = len_rng.beta(2.0, 2.5, size=n)
    lengths = {m: _lengths(len_rng, duration, m, steps[m]) for m in mods}
    if setting == "aligned":
        lengths = {m: lengths["text"] for m in mods}

    dir_rng = np.random.default_rng(s_dir)
    arrays: dict[str, np.ndarray] = {
        "ids": ids, "video": video, "label": label, "split": split,
        "sentence": np.array([f"synthetic sample {i}" for i in range(n)]),
    }
    for mod, seq, latent in zip(mods, (s_text, s_audio, s_vision), (z_t, z_a, z_v)):
        d = opts[f"{mod}_dim"]
        direction = dir_rng.standard_normal(d)
        direction /= np.linalg.norm(direction)
        arrays[mod] = _features(np.random.default_rng(seq), latent, lengths[mod], mod,
                                steps[mod], d, direction)
        arrays[f"{mod}_lengths"] = lengths[mod]
    return arrays
