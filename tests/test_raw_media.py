"""Raw media: PyAV decoding, the hf-audio and hf-video extractors (tiny random HuBERT and
VideoMAE saved to disk) and the raw CH-SIMS v2 layout reader with its feature cache.

The MP4 files are written here with PyAV's bundled ffmpeg: video ``mpeg4`` (yuv420p), audio
``aac`` (mono, 16 kHz)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

av = pytest.importorskip("av", reason="PyAV (pip install av) decodes the media files")

from msabench.api.dataset import DatasetMeta  # noqa: E402
from msabench.errors import ConfigError, DataError  # noqa: E402
from msabench_builtins.datasets.raw import file_digest, load_raw  # noqa: E402
from msabench_builtins.extractors.hf_audio import HFAudioExtractor  # noqa: E402
from msabench_builtins.extractors.hf_text import HFTextExtractor  # noqa: E402
from msabench_builtins.extractors.hf_video import HFVideoExtractor, clip_indices  # noqa: E402
from msabench_builtins.media import load_audio, load_frames  # noqa: E402

HIDDEN = 32
SR = 16000
META = DatasetMeta(name="tiny-raw", title="tiny raw layout", language="en",
                   label_range=(-1.0, 1.0), convention="sims", settings=("raw",),
                   default_setting="raw", unimodal_labels=True)


# ------------------------------------------------------------------------------ fixtures
def write_clip(path: Path, *, seconds: float = 1.0, fps: int = 10, width: int = 32,
               height: int = 32, freq: float = 440.0, shade: int = 0, audio: bool = True,
               video: bool = True) -> Path:
    """An MP4 with a colour-ramp video (red = frame index) and a mono sine audio track."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        if video:
            vs = out.add_stream("mpeg4", rate=fps)
            vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        if audio:
            aus = out.add_stream("aac", rate=SR)
            aus.layout = "mono"
        if video:
            n = int(round(seconds * fps))
            for i in range(n):
                img = np.zeros((height, width, 3), np.uint8)
                img[..., 0] = int(250 * i / n)
                img[..., 1] = shade
                img[: height // 2, : width // 2, 2] = 200
                for packet in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(packet)
            for packet in vs.encode():
                out.mux(packet)
        if audio:
            n = int(round(seconds * SR))
            wave = (0.5 * np.sin(2 * np.pi * freq * np.arange(n) / SR)).astype(np.float32)
            step = aus.codec_context.frame_size or 1024
            for start in range(0, n, step):
                frame = av.AudioFrame.from_ndarray(wave[None, start:start + step], format="flt",
                                                   layout="mono")
                frame.sample_rate, frame.pts = SR, start
                for packet in aus.encode(frame):
                    out.mux(packet)
            for packet in aus.encode():
                out.mux(packet)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("media") / "sine.mp4")


@pytest.fixture(scope="module")
def tiny_hubert(tmp_path_factory) -> Path:
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    path = tmp_path_factory.mktemp("tiny-hubert")
    torch.manual_seed(0)
    config = HubertConfig(hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=37, conv_dim=(16, 16, 16), conv_stride=(5, 4, 4),
                          conv_kernel=(10, 8, 4), num_conv_pos_embeddings=16,
                          num_conv_pos_embedding_groups=2)
    HubertModel(config).eval().save_pretrained(path)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SR, padding_value=0.0,
                             do_normalize=True, return_attention_mask=False).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_videomae(tmp_path_factory) -> Path:
    from transformers import VideoMAEConfig, VideoMAEImageProcessor, VideoMAEModel

    path = tmp_path_factory.mktemp("tiny-videomae")
    torch.manual_seed(0)
    config = VideoMAEConfig(image_size=32, patch_size=16, num_frames=4, tubelet_size=2,
                            hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=37)
    VideoMAEModel(config).eval().save_pretrained(path)
    VideoMAEImageProcessor(size={"shortest_edge": 32},
                           crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = tmp_path_factory.mktemp("tiny-bert")
    words = ["the", "movie", "was", "great", "bad", "not", "very", "fun", "i", "liked", "it"]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True).save_pretrained(path)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=HIDDEN, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=37, max_position_embeddings=64)
    BertModel(config).eval().save_pretrained(path)
    return path


def waves(n: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal(k).astype(np.float32) for k in (16000, 8000, 8000, 100)[:n]]


# ------------------------------------------------------------------------------ media
def test_load_audio_is_the_16k_sine(clip):
    wave = load_audio(clip)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - SR) <= 1024 + 400  # AAC codes whole 1024-sample frames
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spectrum) * SR / len(wave) - 440.0) < 3.0
    assert 0.3 < np.abs(wave).max() < 0.7
    half = load_audio(clip, sample_rate=8000)
    assert abs(len(half) - len(wave) / 2) <= 64
    assert abs(np.argmax(np.abs(np.fft.rfft(half))) * 8000 / len(half) - 440.0) < 3.0


def test_load_frames_samples_the_requested_fps(clip, tmp_path):
    frames = load_frames(clip)  # 10 fps, 128x128
    assert frames.shape == (10, 128, 128, 3) and frames.dtype == np.uint8
    red = frames[:, 96, 96, 0].astype(int)  # the red channel ramps with the frame index
    assert np.all(np.diff(red) > 0)
    assert abs(red[0] - 0) <= 8 and abs(red[-1] - 225) <= 8
    assert frames[:, 20, 20, 2].mean() > 150 and frames[:, 100, 100, 2].mean() < 50
    five = load_frames(clip, fps=5, size=64)
    assert five.shape == (5, 64, 64, 3)
    np.testing.assert_allclose(five[:, 48, 48, 0], red[::2], atol=8)  # frames 0, 2, 4, ...
    assert load_frames(clip, fps=25, size=16).shape == (25, 16, 16, 3)  # frames repeat
    wide = write_clip(tmp_path / "wide.mp4", width=64, height=32, fps=25, seconds=0.8)
    out = load_frames(wide, fps=10, size=16)
    assert out.shape == (8, 16, 16, 3)  # short side scaled, centre-cropped


def test_media_errors(tmp_path, clip, monkeypatch):
    with pytest.raises(DataError, match="nope.mp4: cannot read audio: the file does not exist"):
        load_audio(tmp_path / "nope.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 100)
    with pytest.raises(DataError, match="junk.mp4: cannot open as a media file"):
        load_frames(junk)
    silent = write_clip(tmp_path / "silent.mp4", audio=False, seconds=0.3)
    with pytest.raises(DataError, match=r"silent.mp4: has no audio stream \(streams: video\)"):
        load_audio(silent)
    sound = write_clip(tmp_path / "sound.m4a", video=False, seconds=0.3)
    with pytest.raises(DataError, match=r"sound.m4a: has no video stream \(streams: audio\)"):
        load_frames(sound)
    with pytest.raises(ConfigError, match="fps must be a positive number"):
        load_frames(clip, fps=0)
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(ConfigError, match="PyAV.*pip install av"):
        load_audio(clip)


# ------------------------------------------------------------------------------ hf-audio
def test_audio_output_dim_without_loading_weights(tiny_hubert):
    ex = HFAudioExtractor(model=str(tiny_hubert))
    assert ex.output_dim == HIDDEN and ex.model is None and ex._processor is None
    assert ex.modality == "audio" and ex.name == "hf-audio"


def test_audio_frames_match_transformers(tiny_hubert):
    from transformers import AutoModel

    inputs = waves()
    feats = HFAudioExtractor(model=str(tiny_hubert), pooling="frames", batch_size=3).extract(inputs)
    model = AutoModel.from_pretrained(str(tiny_hubert)).eval()
    expected = model._get_feat_extract_output_lengths(torch.tensor([16000, 8000, 8000, 105]))
    assert feats.lengths.tolist() == expected.tolist()  # 100 samples are padded to 105 (1 frame)
    assert feats.values.shape == (4, int(expected.max()), HIDDEN)
    x = (inputs[0] - inputs[0].mean()) / np.sqrt(inputs[0].var() + 1e-7)  # do_normalize
    with torch.no_grad():
        ref = model(torch.from_numpy(x)[None]).last_hidden_state[0]
    torch.testing.assert_close(feats.values[0, :feats.lengths[0]], ref, atol=1e-4, rtol=1e-4)
    assert torch.count_nonzero(feats.values[1, feats.lengths[1]:]) == 0
    mean = HFAudioExtractor(model=str(tiny_hubert)).extract(inputs)
    assert mean.values.shape == (4, 1, HIDDEN) and mean.lengths.tolist() == [1] * 4
    for i in range(4):
        pooled = feats.values[i, :feats.lengths[i]].mean(0)
        torch.testing.assert_close(mean.values[i, 0], pooled, atol=1e-5, rtol=1e-5)


def test_audio_deterministic_batch_invariant_and_paths(tiny_hubert, clip):
    inputs = waves() + [str(clip)]
    one = HFAudioExtractor(model=str(tiny_hubert), batch_size=1).extract(inputs)
    four = HFAudioExtractor(model=str(tiny_hubert), batch_size=4).extract(inputs)
    again = HFAudioExtractor(model=str(tiny_hubert), batch_size=4).extract(inputs)
    assert torch.equal(four.values, again.values)
    assert (one.values - four.values).abs().max() < 1e-5
    from_wave = HFAudioExtractor(model=str(tiny_hubert)).extract([load_audio(clip)])
    torch.testing.assert_close(from_wave.values[0], four.values[4], atol=1e-5, rtol=1e-5)
    layer0 = HFAudioExtractor(model=str(tiny_hubert), layer=0).extract(inputs[:1])
    assert layer0.values.shape == (1, 1, HIDDEN)
    assert not torch.allclose(layer0.values[0], four.values[0])


def test_audio_errors_and_cache_key(tiny_hubert, tmp_path):
    with pytest.raises(ConfigError, match="pooling='cls' is not one of mean, frames"):
        HFAudioExtractor(model=str(tiny_hubert), pooling="cls")
    with pytest.raises(ConfigError, match="is not an existing directory"):
        HFAudioExtractor(model=str(tmp_path / "missing") + "/").output_dim
    ex = HFAudioExtractor(model=str(tiny_hubert))
    with pytest.raises(DataError, match=r"input 0 has shape \(2, 100\); pass mono"):
        ex.extract([np.zeros((2, 100), np.float32)])
    with pytest.raises(DataError, match="single path; wrap it in a list"):
        ex.extract(str(tmp_path / "a.wav"))
    with pytest.raises(ConfigError, match="expects 16000 Hz audio but option sample_rate=8000"):
        HFAudioExtractor(model=str(tiny_hubert), sample_rate=8000).extract(waves(1))
    key = ex.cache_key()
    assert key.startswith("hf-audio(") and "pooling='mean'" in key and "fingerprint=" in key
    assert HFAudioExtractor(model=str(tiny_hubert), batch_size=2).cache_key() == key
    assert HFAudioExtractor(model=str(tiny_hubert), pooling="frames").cache_key() != key


# ------------------------------------------------------------------------------ hf-video
def test_clip_indices():
    assert [c.tolist() for c in clip_indices(2, 4, "cover")] == [[0, 0, 1, 1]]
    assert [c.tolist() for c in clip_indices(4, 4, "cover")] == [[0, 1, 2, 3]]
    assert [c.tolist() for c in clip_indices(10, 4, "cover")] == [[0, 1, 2, 3], [3, 4, 5, 6],
                                                                 [6, 7, 8, 9]]
    assert [c.tolist() for c in clip_indices(10, 4, "uniform")] == [[0, 3, 6, 9]]


def test_video_output_dim_without_loading_weights(tiny_videomae):
    ex = HFVideoExtractor(model=str(tiny_videomae))
    assert ex.output_dim == HIDDEN and ex.num_frames == 4 and ex.model is None
    assert ex.modality == "vision" and ex.name == "hf-video"


def test_video_features(tiny_videomae, clip):
    from transformers import AutoImageProcessor, AutoModel

    rng = np.random.default_rng(0)
    videos = [rng.integers(0, 256, (t, 40, 48, 3), dtype=np.uint8) for t in (4, 1, 9)]
    feats = HFVideoExtractor(model=str(tiny_videomae), batch_size=2).extract(videos + [clip])
    assert feats.values.shape == (4, 1, HIDDEN) and feats.lengths.tolist() == [1] * 4
    again = HFVideoExtractor(model=str(tiny_videomae), batch_size=2).extract(videos + [clip])
    assert torch.equal(feats.values, again.values)
    one = HFVideoExtractor(model=str(tiny_videomae), batch_size=1).extract(videos + [clip])
    assert (one.values - feats.values).abs().max() < 1e-5
    # reference: a 4-frame video is one clip; the output is the mean over its tokens
    processor = AutoImageProcessor.from_pretrained(str(tiny_videomae))
    model = AutoModel.from_pretrained(str(tiny_videomae)).eval()
    with torch.no_grad():
        hidden = model(**processor([list(videos[0])], return_tensors="pt")).last_hidden_state
    assert hidden.shape == (1, 8, HIDDEN)  # (4 / tubelet 2) x (32 / 16)^2 tokens
    torch.testing.assert_close(feats.values[0, 0], hidden[0].mean(0), atol=1e-5, rtol=1e-5)
    decoded = load_frames(clip, fps=10, size=128)
    from_frames = HFVideoExtractor(model=str(tiny_videomae)).extract([decoded])
    torch.testing.assert_close(from_frames.values[0], feats.values[3], atol=1e-6, rtol=1e-6)
    uniform = HFVideoExtractor(model=str(tiny_videomae), clip_sampling="uniform").extract([decoded])
    assert not torch.allclose(uniform.values, from_frames.values)


def test_video_errors(tiny_videomae):
    ex = HFVideoExtractor(model=str(tiny_videomae))
    with pytest.raises(DataError, match="input 0 has dtype float32; pass uint8"):
        ex.extract([np.zeros((4, 8, 8, 3), np.float32)])
    with pytest.raises(DataError, match=r"input 0 has shape \(8, 8, 3\)"):
        ex.extract([np.zeros((8, 8, 3), np.uint8)])
    with pytest.raises(ConfigError, match="clip_sampling='all' is not one of cover, uniform"):
        HFVideoExtractor(model=str(tiny_videomae), clip_sampling="all")
    assert "fps=10" in ex.cache_key() and "size=128" in ex.cache_key()
    assert HFVideoExtractor(model=str(tiny_videomae), fps=5).cache_key() != ex.cache_key()


# ------------------------------------------------------------------------------ raw layout
ROWS = [  # video_id, clip_id, text, label, label_T, label_A, label_V, mode
    ("video_0001", "0001", "the movie was great", 0.8, 1.0, 0.6, 0.4, "train"),
    ("video_0001", "0002", "not very fun", -0.6, -0.8, -0.2, 0.0, "train"),
    ("video_0001", "0010", "i liked it", 0.4, 0.6, 0.2, 0.2, "valid"),
    ("video_0002", "0001", "bad", -1.0, -1.0, -0.8, -0.6, "test"),
    ("video_0002", "0002", "", 0.0, 0.2, 0.0, -0.2, "train"),
    ("video_0002", "0003", "the movie was not bad", 0.2, 0.4, 0.0, 0.2, "test"),
]
HEADER = "video_id,clip_id,text,label,label_T,label_A,label_V,annotation,mode\n"


def write_layout(root: Path, rows=ROWS, *, header: str = HEADER, media: bool = True) -> Path:
    lines = [header]
    for k, (vid, cid, text, lab, lt, la, lv, mode) in enumerate(rows):
        lines.append(f"{vid},{cid},{text},{lab},{lt},{la},{lv},"
                     f"{'Positive' if lab > 0 else 'Negative'},{mode}\n")
        if media:
            write_clip(root / "Raw" / vid / f"{cid}.mp4", seconds=0.6 + 0.1 * k,
                       freq=300.0 + 80 * k, shade=40 * k)
    root.mkdir(parents=True, exist_ok=True)
    (root / "label.csv").write_text("".join(lines), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def raw_root(tmp_path_factory) -> Path:
    return write_layout(tmp_path_factory.mktemp("raw") / "chsims2")


class Counter:
    """Wraps extractor.extract and counts calls and inputs."""

    def __init__(self, extractor):
        self.calls = self.inputs = 0
        self._extract = extractor.extract
        extractor.extract = self

    def __call__(self, inputs):
        self.calls += 1
        self.inputs += len(inputs)
        return self._extract(inputs)


def make_extractors(bert, hubert, videomae):
    return {"text": HFTextExtractor(model=str(bert), max_length=16, batch_size=4),
            "audio": HFAudioExtractor(model=str(hubert), batch_size=4),
            "vision": HFVideoExtractor(model=str(videomae), batch_size=4)}


def test_load_raw_and_cache_reuse(raw_root, tiny_bert, tiny_hubert, tiny_videomae, tmp_path):
    cache = tmp_path / "cache"
    exs = make_extractors(tiny_bert, tiny_hubert, tiny_videomae)
    counters = {m: Counter(ex) for m, ex in exs.items()}
    data = load_raw(raw_root, meta=META, setting="raw", extractors=exs, cache_dir=cache)
    assert data.sizes() == {"train": 3, "valid": 1, "test": 2}
    assert data["train"].ids == ["video_0001$_$0001", "video_0001$_$0002", "video_0002$_$0002"]
    assert data["valid"].ids == ["video_0001$_$0010"]  # leading zeros kept
    assert data["test"].texts == ["bad", "the movie was not bad"]
    assert data["train"].labels.tolist() == pytest.approx([0.8, -0.6, 0.0])
    assert set(data["test"].unimodal) == {"text", "audio", "vision"}
    assert data["test"].unimodal["audio"].tolist() == pytest.approx([-0.8, 0.0])
    assert data["train"].unimodal["vision"].tolist() == pytest.approx([0.4, 0.0, -0.2])
    info = data.info()
    assert info.feature_dims == {"text": HIDDEN, "audio": HIDDEN, "vision": HIDDEN}
    assert info.max_lengths["audio"] == info.max_lengths["vision"] == 1
    assert 2 <= info.max_lengths["text"] <= 16 and info.has_unimodal_labels and info.has_texts
    assert data.validated and data.source == str(raw_root / "label.csv")
    assert {m: c.inputs for m, c in counters.items()} == {"text": 6, "audio": 6, "vision": 6}
    assert all(c.calls == 2 for c in counters.values())  # chunks of batch_size=4 clips
    # the stored features are the extractors' own output for each clip
    clip = raw_root / "Raw" / "video_0002" / "0003.mp4"
    direct = HFAudioExtractor(model=str(tiny_hubert)).extract([load_audio(clip)]).values[0]
    torch.testing.assert_close(data["test"].features["audio"][1], direct, atol=1e-5, rtol=1e-5)
    direct = HFVideoExtractor(model=str(tiny_videomae)).extract([load_frames(clip)]).values[0]
    torch.testing.assert_close(data["test"].features["vision"][1], direct, atol=1e-5, rtol=1e-5)
    assert sorted(p.suffix for p in cache.iterdir()) == [".npz"] * 4  # 3 modalities + digests

    # second load: fresh extractor instances, same configuration -> nothing recomputed
    exs2 = make_extractors(tiny_bert, tiny_hubert, tiny_videomae)
    counters2 = {m: Counter(ex) for m, ex in exs2.items()}
    again = load_raw(raw_root / "label.csv", meta=META, setting="raw", extractors=exs2,
                     cache_dir=cache)
    assert {m: c.calls for m, c in counters2.items()} == {"text": 0, "audio": 0, "vision": 0}
    for split in ("train", "valid", "test"):
        assert again[split].ids == data[split].ids
        for m in ("text", "audio", "vision"):
            assert torch.equal(again[split].features[m], data[split].features[m])
            assert torch.equal(again[split].lengths[m], data[split].lengths[m])
    assert any("6 from the cache" in note for note in again.notes)

    # a different configuration is a different cache entry
    frames = HFAudioExtractor(model=str(tiny_hubert), pooling="frames")
    counter = Counter(frames)
    framed = load_raw(raw_root, meta=META, setting="raw", extractors={"audio": frames},
                      cache_dir=cache)
    assert counter.inputs == 6 and framed.info().max_lengths["audio"] > 1
    assert set(framed.modalities) == {"audio"}


def test_cache_is_content_addressed(tiny_bert, tiny_hubert, tiny_videomae, tmp_path):
    root = write_layout(tmp_path / "a", ROWS[:3] + ROWS[3:4] + ROWS[5:])  # 5 clips
    cache = tmp_path / "cache"
    load_raw(root, meta=META, setting="raw", cache_dir=cache,
             extractors=make_extractors(tiny_bert, tiny_hubert, tiny_videomae))
    moved = tmp_path / "b"
    shutil.copytree(root, moved)  # same content elsewhere: still cached
    write_clip(moved / "Raw" / "video_0001" / "0002.mp4", seconds=0.9, freq=900.0, shade=255)
    exs = make_extractors(tiny_bert, tiny_hubert, tiny_videomae)
    counters = {m: Counter(ex) for m, ex in exs.items()}
    load_raw(moved, meta=META, setting="raw", extractors=exs, cache_dir=cache)
    assert {m: c.inputs for m, c in counters.items()} == {"text": 0, "audio": 1, "vision": 1}
    assert file_digest(moved / "Raw" / "video_0001" / "0001.mp4") == \
        file_digest(root / "Raw" / "video_0001" / "0001.mp4")


def test_missing_videos_are_all_listed(raw_root, tiny_hubert, tmp_path):
    root = tmp_path / "broken"
    shutil.copytree(raw_root, root)
    (root / "Raw" / "video_0001" / "0010.mp4").unlink()
    shutil.rmtree(root / "Raw" / "video_0002")
    ex = HFAudioExtractor(model=str(tiny_hubert))
    counter = Counter(ex)
    with pytest.raises(DataError) as err:
        load_raw(root, meta=META, setting="raw", extractors={"audio": ex}, cache_dir=tmp_path)
    msg = str(err.value)
    assert "4 of 6 clip video(s) are missing" in msg
    for vid, cid in (("video_0001", "0010"), ("video_0002", "0001"), ("video_0002", "0002"),
                     ("video_0002", "0003")):
        assert f"{vid}$_${cid}: expected {root / 'Raw' / vid / f'{cid}.mp4'}" in msg
    assert "video_0001$_$0001" not in msg and counter.calls == 0
    # more than 20: the first 20 are listed, then a count
    many = [(f"v{k:03d}", f"{k:04d}", "x", 0.0, 0.0, 0.0, 0.0, ("train", "valid", "test")[k % 3])
            for k in range(25)]
    write_layout(tmp_path / "many", many, media=False)
    with pytest.raises(DataError, match=r"25 of 25 clip video\(s\)(.|\n)*v019\$_\$0019: "
                                        r"expected(.|\n)*\.\.\. and 5 more"):
        load_raw(tmp_path / "many", meta=META, setting="raw", extractors={"audio": ex},
                 cache_dir=tmp_path)


def test_label_csv_errors(tmp_path, tiny_hubert, tiny_bert):
    ex = {"audio": HFAudioExtractor(model=str(tiny_hubert))}
    with pytest.raises(DataError, match=r"label.csv: label.csv not found .*does not exist.*"
                                        r"<root>/Raw/<video_id>/<clip_id>.mp4"):
        load_raw(tmp_path / "nowhere", meta=META, setting="raw", extractors=ex,
                 cache_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty has no label.csv\); the raw layout"):
        load_raw(tmp_path / "empty", meta=META, setting="raw", extractors=ex, cache_dir=tmp_path)
    bad = write_layout(tmp_path / "bad", ROWS, media=False,
                       header=HEADER.replace(",mode", ",split"))
    with pytest.raises(DataError, match="missing column.* mode; columns present: video_id, "
                                        "clip_id, text, .*split"):
        load_raw(bad, meta=META, setting="raw", extractors=ex, cache_dir=tmp_path)
    no_text = [r[:2] + r[3:] for r in ROWS]
    root = tmp_path / "notext"
    root.mkdir()
    (root / "label.csv").write_text(
        "video_id,clip_id,label,label_T,label_A,label_V,mode\n"
        + "".join(",".join(map(str, r)) + "\n" for r in no_text), encoding="utf-8")
    text = {"text": HFTextExtractor(model=str(tiny_bert))}
    with pytest.raises(DataError, match=r"missing column\(s\) text \(needed by the text "
                                        r"extractor\)"):
        load_raw(root, meta=META, setting="raw", extractors=text, cache_dir=tmp_path)
    rows = [r[:3] + (1.5,) + r[4:] for r in ROWS[:1]] + ROWS[1:]
    out = write_layout(tmp_path / "range", rows, media=False)
    with pytest.raises(DataError, match=r"column 'label' has 1 value\(s\) outside the dataset "
                                        r"range \[-1.0, 1.0\], first 1.5 on line 2"):
        load_raw(out, meta=META, setting="raw", extractors=ex, cache_dir=tmp_path)
    rows = [r[:7] + ("dev",) for r in ROWS[:1]] + ROWS[1:]
    out = write_layout(tmp_path / "mode", rows, media=False)
    with pytest.raises(DataError, match="'mode' has unknown value.*'dev'.*allowed: train, "
                                        "valid, test"):
        load_raw(out, meta=META, setting="raw", extractors=ex, cache_dir=tmp_path)


def test_progress_bars_and_partial_cache_on_error(raw_root, tiny_bert, monkeypatch, tmp_path):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    text = HFTextExtractor(model=str(tiny_bert), max_length=16, batch_size=2)
    counter = Counter(text)
    inner = counter._extract

    def fail_on_third(inputs):
        if counter.calls == 3:
            raise KeyboardInterrupt
        return inner(inputs)

    counter._extract = fail_on_third
    with pytest.raises(KeyboardInterrupt):
        load_raw(raw_root, meta=META, setting="raw", extractors={"text": text},
                 cache_dir=tmp_path)
    assert counter.calls == 3  # chunks of 2: the first two chunks finished and were cached
    text2 = HFTextExtractor(model=str(tiny_bert), max_length=16, batch_size=2)
    counter2 = Counter(text2)
    data = load_raw(raw_root, meta=META, setting="raw", extractors={"text": text2},
                    cache_dir=tmp_path)
    assert counter2.inputs == 2 and data.modalities == ("text",)


@pytest.mark.realdata
def test_real_chsims2_label_csv_parses_and_reports_missing_clips(tiny_hubert, tmp_path):
    """The real CH-SIMS v2 label.csv (no text column, no videos here): every row parses, and
    the missing clips are reported at once, 20 listed."""
    from tests.conftest import real_data

    label = real_data("chsims2/label.csv")
    ex = {"audio": HFAudioExtractor(model=str(tiny_hubert))}
    with pytest.raises(DataError) as err:
        load_raw(label, meta=META, setting="raw", extractors=ex, cache_dir=tmp_path)
    msg = str(err.value)
    assert "4403 of 4403 clip video(s) are missing" in msg and "... and 4383 more" in msg
    assert f"video_0001$_$0001: expected {label.parent / 'Raw' / 'video_0001' / '0001.mp4'}" in msg
    assert msg.count(": expected ") == 20
    from msabench_builtins.datasets.raw import _read_labels

    table = _read_labels(label, META, need_text=False)
    assert [int((table.split == s).sum()) for s in ("train", "valid", "test")] == [2722, 647, 1034]
    assert table.ids[0] == "video_0001$_$0001" and set(table.unimodal) == {"text", "audio",
                                                                           "vision"}
    assert table.texts is None
