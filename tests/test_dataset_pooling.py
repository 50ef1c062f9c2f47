"""Pooling of pre-computed features is a dataset option (chosen by the method or the user),
and datasets with media expose it: the CH-SIMS raw layout with tiny random encoders, and the
MOSI utt-clean reader on a small archive written in mosi_utt.npz's structure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from msabench.api import MediaRef
from msabench.errors import ConfigError
from msabench.plugins import get_registry
from tests.test_raw_media import HIDDEN, raw_root, tiny_bert, tiny_hubert, tiny_videomae  # noqa: F401


def _chsims2(raw_root, bert, hubert, videomae, **options):
    cls = get_registry().load("dataset", "chsims2")
    opts = {"text_model": str(bert), "audio_model": str(hubert), "video_model": str(videomae),
            "frame_size": 32, **options}
    return cls(data_dir=raw_root, setting="raw", options=opts).load()


def test_chsims_raw_pooling_options_and_media_refs(raw_root, tiny_bert, tiny_hubert,
                                                   tiny_videomae):
    defaults = get_registry().load("dataset", "chsims2").defaults
    assert (defaults["text_pooling"], defaults["audio_pooling"],
            defaults["video_pooling"]) == ("tokens", "mean", "mean")  # as before the options
    data = _chsims2(raw_root, tiny_bert, tiny_hubert, tiny_videomae)
    info = data.info()
    assert info.max_lengths["text"] > 1 and info.max_lengths["audio"] == 1
    assert info.max_lengths["vision"] == 1 and set(info.media) == {"audio", "vision"}
    train = data["train"]
    assert train.texts == ["the movie was great", "not very fun", ""]
    for m in ("audio", "vision"):
        refs = train.media[m]
        assert all(isinstance(r, MediaRef) and r.start is None and r.end is None for r in refs)
        assert [Path(r.path) for r in refs] == [
            raw_root / "Raw" / "video_0001" / "0001.mp4", raw_root / "Raw" / "video_0001" /
            "0002.mp4", raw_root / "Raw" / "video_0002" / "0002.mp4"]
    batch = train.batch(torch.tensor([2, 0]))
    assert batch.raw("text") == ["", "the movie was great"]
    assert Path(batch.raw("vision")[0].path).name == "0002.mp4"

    pooled = _chsims2(raw_root, tiny_bert, tiny_hubert, tiny_videomae, text_pooling="mean",
                      audio_pooling="frames", video_pooling="clips")
    info = pooled.info()
    assert info.max_lengths["text"] == 1 and info.max_lengths["audio"] > 1
    assert info.feature_dims == {"text": HIDDEN, "audio": HIDDEN, "vision": HIDDEN}
    clips = pooled["train"].lengths["vision"]
    assert int(clips.min()) >= 1 and info.max_lengths["vision"] == int(clips.max())
    # mean over the clip vectors = the default mean pooling
    for i in range(len(pooled["train"])):
        n = int(clips[i])
        torch.testing.assert_close(pooled["train"].features["vision"][i, :n].mean(0),
                                   data["train"].features["vision"][i, 0], atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="pooling='max' is not one of tokens, cls, mean"):
        _chsims2(raw_root, tiny_bert, tiny_hubert, tiny_videomae, text_pooling="max")


def _fake_mosi_utt(directory: Path) -> Path:
    """A 24-row archive with mosi_utt.npz's keys (ids, label, split, sentence, openSMILE)."""
    from msabench_builtins.datasets.archive import save_archive

    rng = np.random.default_rng(0)
    words = ["the", "movie", "was", "great", "bad", "not", "very", "fun", "i", "liked", "it"]
    n = 24
    sentences = [" ".join(rng.choice(words, size=int(rng.integers(1, 9)))) for _ in range(n)]
    split = np.array(["train"] * 12 + ["valid"] * 6 + ["test"] * 6)
    path = directory / "mosi_utt.npz"
    save_archive(path, {
        "ids": np.array([f"vid{i // 4}_{i % 4 + 1}" for i in range(n)]),
        "label": np.linspace(-3, 3, n), "split": split, "split_bclstm": split,
        "sentence": np.array(sentences), "audio_opensmile": rng.standard_normal((n, 7))})
    return path


def test_mosi_utt_clean_text_pooling_option(tmp_path, tiny_bert, monkeypatch):
    monkeypatch.setenv("MSABENCH_CACHE_DIR", str(tmp_path / "cache"))
    _fake_mosi_utt(tmp_path)
    cls = get_registry().load("dataset", "mosi")
    assert cls.defaults["text_pooling"] == "mean"
    mean = cls(data_dir=tmp_path, setting="utt-clean", options={"text_model": str(tiny_bert)}).load()
    assert mean["train"].features["text"].shape == (12, 1, HIDDEN)
    assert mean["test"].lengths["text"].tolist() == [1] * 6
    tokens = cls(data_dir=tmp_path, setting="utt-clean",
                 options={"text_model": str(tiny_bert), "text_pooling": "tokens"}).load()
    t = tokens["train"]
    assert t.features["text"].shape == (12, 50, HIDDEN) and int(t.lengths["text"].max()) > 2
    assert any("tokens-pooled" in note for note in tokens.notes)
    # mean pooling of the token features is the mean-pooled setting
    n = t.lengths["text"].to(torch.float32)[:, None]
    torch.testing.assert_close(t.features["text"].sum(1) / n, mean["train"].features["text"][:, 0],
                               atol=1e-5, rtol=1e-5)
    cached = sorted((tmp_path / "cache" / "features").glob("mosi-utt-clean-text-*.npz"))
    assert len(cached) == 2
    with np.load(cached[0]) as a, np.load(cached[1]) as b:  # lengths only with token features
        assert {len(a.files), len(b.files)} == {3, 6}
    again = cls(data_dir=tmp_path, setting="utt-clean",
                options={"text_model": str(tiny_bert), "text_pooling": "tokens"}).load()
    assert torch.equal(again["train"].features["text"], t.features["text"])
    assert torch.equal(again["train"].lengths["text"], t.lengths["text"])
