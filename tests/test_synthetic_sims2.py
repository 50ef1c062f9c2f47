"""``synthetic-sims2``: metadata, labels drawn from the real CH-SIMS v2 joint distribution (the
table itself or the built-in histogram), planted per-modality signal, transcripts, generated
media that decode, caching, ``msabench data check``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from msabench.api.dataset import MediaRef
from msabench.errors import DataError
from msabench.plugins import get_registry
from tests.conftest import real_data

TINY = {"n_train": 40, "n_valid": 12, "n_test": 12, "text_dim": 12, "audio_dim": 5,
        "vision_dim": 7, "text_len": 8, "audio_len": 20, "vision_len": 10}
CLI_TINY = [x for k, v in TINY.items() for x in ("--set", f"data.options.{k}={v}")]


def _load(setting="unaligned", data_dir=None, **options):
    cls = get_registry().load("dataset", "synthetic-sims2")
    return cls(data_dir=data_dir, setting=setting, options={**TINY, **options}).load()


def _real_labels() -> np.ndarray:
    import pandas as pd

    df = pd.read_csv(real_data("chsims2/label.csv"), dtype=str)
    return df[["label", "label_T", "label_A", "label_V"]].astype(float).to_numpy()


def _stats(y: np.ndarray) -> dict[str, float]:
    s = np.sign(y)
    return {"T": float((s[:, 1] != s[:, 0]).mean()), "A": float((s[:, 2] != s[:, 0]).mean()),
            "V": float((s[:, 3] != s[:, 0]).mean()), "weak": float((np.abs(y[:, 0]) <= 0.4 + 1e-6).mean()),
            "neg": float((y[:, 0] < 0).mean())}


def test_metadata_is_synthetic_sims():
    meta = get_registry().load("dataset", "synthetic-sims2").meta
    assert meta.synthetic and "SYNTHETIC" in meta.title and meta.convention == "sims"
    assert meta.label_range == (-1.0, 1.0) and meta.unimodal_labels
    assert meta.settings == ("unaligned", "raw")


def test_shapes_labels_texts_and_determinism():
    data = _load(label_source="builtin")
    assert data.sizes() == {"train": 40, "valid": 12, "test": 12} and data.validated
    info = data.info()
    assert info.feature_dims == {"text": 12, "audio": 5, "vision": 7}
    assert info.max_lengths == {"text": 8, "audio": 20, "vision": 10} and not info.aligned
    assert info.unimodal == ("text", "audio", "vision") and info.has_texts and info.media == ()
    ids = [i for s in data.splits.values() for i in s.ids]
    assert len(set(ids)) == 64 and all("$_$" in i for i in ids)
    videos = {s: {i.split("$_$")[0] for i in split.ids} for s, split in data.splits.items()}
    assert not (videos["train"] & videos["valid"]) and not (videos["train"] & videos["test"])
    for split in data.splits.values():
        assert all(isinstance(t, str) and t.isascii() and 4 <= len(t.split()) <= 7
                   for t in split.texts)
        for y in (split.labels, *split.unimodal.values()):
            assert y.shape == (len(split),) and float(y.abs().max()) <= 1.0
    again = _load(label_source="builtin")
    assert torch.equal(again["test"].features["vision"], data["test"].features["vision"])
    assert again["train"].texts == data["train"].texts
    other = _load(label_source="builtin", generator_seed=1)
    assert not torch.equal(other["train"].labels, data["train"].labels)


def test_each_modality_carries_its_own_unimodal_label():
    """Oracle check: the time-mean projected on the planted direction correlates with the
    modality's own label more than with the other modalities' labels."""
    data = _load(label_source="builtin", n_train=400, n_valid=4, n_test=4)
    train = data["train"]
    for m in ("text", "audio", "vision"):
        x, n = train.features[m], train.lengths[m].float()[:, None]
        mean = (x.sum(1) / n).numpy()
        direction = np.linalg.lstsq(mean, train.unimodal[m].numpy(), rcond=None)[0]
        score = mean @ direction
        own = np.corrcoef(score, train.unimodal[m].numpy())[0, 1]
        others = [abs(np.corrcoef(score, train.unimodal[o].numpy())[0, 1])
                  for o in ("text", "audio", "vision") if o != m]
        assert own > 0.6 and own > max(others) + 0.05, (m, own, others)
    words = {"terrible", "awful", "hate", "bad", "boring", "dull"}
    neg = [any(w in words for w in t.split()) for t in train.texts]
    assert np.array_equal(np.array(neg), train.unimodal["text"].numpy() < 0)


@pytest.mark.realdata
def test_labels_follow_the_real_joint_distribution():
    real = _real_labels()
    table = _load(data_dir=real_data("chsims2/label.csv").parents[1], n_train=3000, n_valid=1,
                  n_test=1, text_dim=2, audio_dim=2, vision_dim=2)
    assert "rows of a CH-SIMS v2 label.csv" in table.source
    builtin = _load(label_source="builtin", n_train=3000, n_valid=1, n_test=1, text_dim=2,
                    audio_dim=2, vision_dim=2)
    assert "built-in" in builtin.source
    want = _stats(real)  # e.g. sign(label_T) != sign(label) on 25.2 % of the real clips
    for data in (table, builtin):
        t = data["train"]
        y = np.stack([t.labels, t.unimodal["text"], t.unimodal["audio"],
                      t.unimodal["vision"]], 1).astype(np.float64)
        got = _stats(y)
        for key in want:
            assert abs(got[key] - want[key]) < 0.03, (data.source, key, got[key], want[key])
    # sampled rows are rows of the real table
    rows = {tuple(np.round(r, 3)) for r in real}
    t = table["train"]
    y = np.stack([t.labels, t.unimodal["text"], t.unimodal["audio"], t.unimodal["vision"]], 1)
    assert all(tuple(np.round(r.astype(np.float64), 3)) in rows for r in y)


@pytest.mark.realdata
def test_builtin_histogram_is_the_real_tables():
    from msabench_builtins.datasets.synthetic_sims2 import SIGN_PATTERNS, SIGN_VALUES

    real = _real_labels()
    codes = np.array(list("nzp"))[(np.sign(real) + 1).astype(int)]
    patterns: dict[str, int] = {}
    for row in codes:
        patterns["".join(row)] = patterns.get("".join(row), 0) + 1
    assert patterns == SIGN_PATTERNS
    for j, col in enumerate(("label", "label_T", "label_A", "label_V")):
        for sign, keep in (("n", real[:, j] < 0), ("p", real[:, j] > 0)):
            values, counts = np.unique(real[keep, j], return_counts=True)
            assert dict(zip(values.round(3).tolist(), counts.tolist())) == SIGN_VALUES[col][sign]


def test_label_source_option(tmp_path):
    with pytest.raises(DataError, match="label_source 'nowhere.csv' is not a file"):
        _load(data_dir=tmp_path, label_source="nowhere.csv")
    (tmp_path / "label.csv").write_text(
        "video_id,clip_id,label,label_T,label_A,label_V,mode\n"
        "v1,0001,0.4,0.6,-0.2,0.0,train\nv1,0002,-1.0,-1.0,-0.8,-0.6,test\n", encoding="utf-8")
    data = _load(data_dir=tmp_path)  # auto: <data dir>/label.csv
    labels = torch.cat([s.labels for s in data.splits.values()])
    assert set(labels.double().numpy().round(3).tolist()) <= {0.4, -1.0} and "label.csv" in data.source
    assert _load(data_dir=tmp_path, label_source="builtin").source != data.source
    with pytest.raises(DataError, match="option media_size must be even"):
        _load(media_size=31)


def test_raw_media_decode_and_encode_the_labels(tmp_path, monkeypatch):
    from msabench_builtins.media import load_audio, load_frames

    monkeypatch.setenv("MSABENCH_CACHE_DIR", str(tmp_path))
    data = _load("raw", label_source="builtin")
    info = data.info()
    assert info.media == ("audio", "vision")
    train = data["train"]
    refs = train.media["audio"] + train.media["vision"]
    assert all(isinstance(r, MediaRef) and Path(r.path).is_file() for r in refs)
    folder = Path(train.media["audio"][0].path).parents[2]
    assert folder.parent == tmp_path / "synthetic" and (folder / "complete").is_file()
    assert str(Path(__file__).resolve().parents[1]) not in str(folder)  # never in the repo
    pitch, bright = [], []
    for i in range(len(train)):
        wave = load_audio(train.media["audio"][i].path, 16000)
        assert wave.ndim == 1 and 0.39 * 16000 <= len(wave) <= 0.91 * 16000
        spectrum = np.abs(np.fft.rfft(wave))
        pitch.append(np.argmax(spectrum) * 16000 / len(wave))
        frames = load_frames(train.media["vision"][i].path, fps=8, size=32)
        assert frames.shape[1:] == (32, 32, 3) and 5 <= len(frames) <= 10
        bright.append(frames.astype(np.float64).mean())
    # pitch 220 * 2 ** label_A Hz; brightness 128 + 90 label_V (plus tint and a bright square)
    np.testing.assert_allclose(pitch, 220 * 2 ** train.unimodal["audio"].numpy(), rtol=0.05)
    assert np.corrcoef(bright, train.unimodal["vision"].numpy())[0, 1] > 0.95
    # cached: a second load writes nothing and points at the same files
    stamp = (folder / "complete").stat().st_mtime_ns
    again = _load("raw", label_source="builtin")
    assert again["test"].media["vision"] == data["test"].media["vision"]
    assert (folder / "complete").stat().st_mtime_ns == stamp
    assert not list((tmp_path / "synthetic").glob(".synthetic-sims2-media-*"))  # no leftovers
    batch = train.batch(torch.tensor([3, 1]))
    assert batch.raw("audio") == [train.media["audio"][3], train.media["audio"][1]]
    assert data.select_modalities(["text", "audio"])["train"].media.keys() == {"audio"}


def test_data_check_cli(tmp_path, monkeypatch):
    from msabench.cli import make_app

    monkeypatch.setenv("MSABENCH_CACHE_DIR", str(tmp_path))
    result = CliRunner().invoke(make_app(), ["data", "check", "synthetic-sims2", "--setting",
                                             "raw", *CLI_TINY, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["ok"] is True and summary["synthetic"] is True
    assert {k: v["n"] for k, v in summary["splits"].items()} == {"train": 40, "valid": 12,
                                                                 "test": 12}
