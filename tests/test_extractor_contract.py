"""The Extractor contract on hf-text / hf-audio / hf-video: the model is a submodule once
loaded, ``prepare`` + differentiable ``forward`` (gradients reach the weights with
``set_trainable(True)``), the frozen path ``extract`` equals ``pool(forward(prepare(x)))`` in
eval mode without gradients, train/eval modes are restored, and MediaRef segments."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("av", reason="PyAV (pip install av) decodes the media files")

from msabench.api import MediaRef, pool  # noqa: E402
from msabench.errors import DataError  # noqa: E402
from msabench_builtins.extractors.hf_audio import HFAudioExtractor  # noqa: E402
from msabench_builtins.extractors.hf_text import HFTextExtractor  # noqa: E402
from msabench_builtins.extractors.hf_video import HFVideoExtractor  # noqa: E402
from msabench_builtins.media import load_audio, load_frames  # noqa: E402
from tests.test_hf_text import TEXTS, minilm_path, tiny_bert  # noqa: E402,F401
from tests.test_raw_media import (HIDDEN, clip, tiny_hubert, tiny_videomae,  # noqa: E402,F401
                                  write_clip)


def _frozen_equals_forward_and_pool(ex, raw, how, exact=False, atol=1e-6):
    out = ex.extract(raw)
    ex.eval()
    with torch.no_grad():
        ref = pool(ex(ex.prepare(raw)), how)
    steps = ref.values.shape[1]
    assert torch.equal(out.lengths, ref.lengths)
    if exact:
        assert torch.equal(out.values[:, :steps], ref.values)
    else:
        torch.testing.assert_close(out.values[:, :steps], ref.values, atol=atol, rtol=1e-5)
    assert torch.count_nonzero(out.values[:, steps:]) == 0


# ---------------------------------------------------------------- the module
def test_model_is_a_submodule_once_loaded(tiny_bert):
    ex = HFTextExtractor(model=str(tiny_bert), pooling="cls")
    assert ex.model is None and list(ex.parameters()) == []
    ex.load()
    params = list(ex.parameters())
    assert params and all(not p.requires_grad for p in params)  # loaded frozen
    assert not ex.model.training
    assert set(ex.state_dict()) == {f"model.{k}" for k in ex.model.state_dict()}
    assert ex.set_trainable(True) is ex and all(p.requires_grad for p in ex.parameters())
    ex.set_trainable(False)
    assert not any(p.requires_grad for p in ex.parameters())
    ex.to(torch.float64)  # .to() reaches the weights
    assert ex.model.embeddings.word_embeddings.weight.dtype == torch.float64
    assert ex.device() == torch.device("cpu")


@pytest.mark.parametrize("pooling", ["tokens", "cls", "mean"])
def test_text_frozen_path_is_forward_and_pool(tiny_bert, pooling):
    ex = HFTextExtractor(model=str(tiny_bert), pooling=pooling, batch_size=64, max_length=20)
    # one batch: extract sorts by length, but each row's padding is the same
    _frozen_equals_forward_and_pool(ex, TEXTS, pooling, exact=pooling != "mean")


def test_text_prepare_forward_and_modes(tiny_bert):
    ex = HFTextExtractor(model=str(tiny_bert), max_length=8)
    inputs = ex.prepare(["the movie was great", "fun", " ".join(TEXTS)])
    assert set(inputs) == {"input_ids", "attention_mask", "token_type_ids"}
    assert inputs["input_ids"].shape == (3, 8) and inputs["attention_mask"].sum(1).tolist() == [6, 3, 8]
    ex.set_trainable(True).train()
    ex.extract(["fun"])  # the frozen path puts it in eval mode and restores train mode after
    assert ex.training and ex.model.training and ex.model.encoder.layer[0].training
    feats = ex.encode(["the movie was great", "fun"], "mean")
    assert feats.values.shape == (2, 1, HIDDEN) and feats.values.requires_grad
    feats.values.sum().backward()
    grad = ex.model.embeddings.word_embeddings.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    with pytest.raises(DataError, match="needs at least one text"):
        ex.prepare([])


def test_audio_frozen_path_and_gradients(tiny_hubert):
    rng = np.random.default_rng(0)
    same = [rng.standard_normal(8000).astype(np.float32) for _ in range(3)]
    ex = HFAudioExtractor(model=str(tiny_hubert), pooling="frames")
    # group-norm front end, no attention mask: equal-length inputs batch exactly as extract does
    _frozen_equals_forward_and_pool(ex, same, "tokens", atol=1e-5)
    _frozen_equals_forward_and_pool(HFAudioExtractor(model=str(tiny_hubert)), same, "mean",
                                    atol=1e-5)
    inputs = ex.prepare(same[:1] + [same[1][:3000]])
    assert inputs["input_values"].shape == (2, 8000)
    assert inputs["input_lengths"].tolist() == [8000, 3000]
    assert inputs["attention_mask"].sum(1).tolist() == [8000, 3000]
    ex.set_trainable(True)
    feats = ex(inputs)
    assert feats.lengths.tolist() == [99, 37]  # conv strides 5 * 4 * 4 = 80 samples per frame
    assert torch.count_nonzero(feats.values[1, 37:]) == 0
    pool(feats, "mean").values.pow(2).sum().backward()
    assert ex.model.feature_extractor.conv_layers[0].conv.weight.grad.abs().sum() > 0


def test_video_frozen_path_and_gradients(tiny_videomae):
    rng = np.random.default_rng(0)
    videos = [rng.integers(0, 256, (t, 32, 32, 3), dtype=np.uint8) for t in (4, 9, 2)]
    ex = HFVideoExtractor(model=str(tiny_videomae), batch_size=16)
    _frozen_equals_forward_and_pool(ex, videos, "mean", atol=1e-5)
    clips = HFVideoExtractor(model=str(tiny_videomae), pooling="clips", batch_size=16)
    _frozen_equals_forward_and_pool(clips, videos, "tokens", atol=1e-5)
    inputs = clips.prepare(videos)
    assert inputs["clips"].tolist() == [1, 3, 1]  # cover: ceil(9 / 4) clips of 4 frames
    assert inputs["pixel_values"].shape[:2] == (5, 4)
    clips.set_trainable(True)
    feats = clips(inputs)
    assert feats.values.shape == (3, 3, HIDDEN) and feats.lengths.tolist() == [1, 3, 1]
    assert torch.count_nonzero(feats.values[0, 1:]) == 0
    feats.values.sum().backward()
    assert clips.model.embeddings.patch_embeddings.projection.weight.grad.abs().sum() > 0
    with pytest.raises(Exception, match="pooling='frames' is not one of mean, clips"):
        HFVideoExtractor(model=str(tiny_videomae), pooling="frames")
    assert "pooling" not in ex.cache_key() and "pooling='clips'" in clips.cache_key()


def test_media_refs_and_segments(clip, tiny_hubert, tiny_videomae, tmp_path):
    whole = load_audio(clip, 16000)
    part = load_audio(clip, 16000, start=0.25, end=0.5)
    np.testing.assert_array_equal(part, whole[4000:8000])
    frames = load_frames(clip, fps=10, size=32)
    np.testing.assert_array_equal(load_frames(clip, fps=10, size=32, start=0.3), frames[3:])
    with pytest.raises(DataError, match="holds no audio samples"):
        load_audio(clip, 16000, start=5.0)
    with pytest.raises(DataError, match="segment end 0.1 is not after start 0.2"):
        load_frames(clip, start=0.2, end=0.1)
    audio = HFAudioExtractor(model=str(tiny_hubert))
    ref = MediaRef(str(clip), 0.25, 0.5)
    torch.testing.assert_close(audio.extract([ref]).values, audio.extract([part]).values)
    with pytest.raises(DataError, match="got a single path"):
        audio.extract(ref)
    video = HFVideoExtractor(model=str(tiny_videomae), size=32)
    torch.testing.assert_close(video.extract([MediaRef(str(clip))]).values,
                               video.extract([frames]).values)


# ---------------------------------------------------------------- the real MiniLM
def test_minilm_prepares_and_forwards_with_gradients(monkeypatch):
    path = minilm_path()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ex = HFTextExtractor(model=str(path), pooling="mean")
    sentences = ["what a wonderful performance", "i hated every minute of it"]
    inputs = ex.prepare(sentences)
    assert inputs["attention_mask"].sum(1).tolist() == [6, 8]
    assert ex.tokenizer.convert_ids_to_tokens(inputs["input_ids"][0].tolist())[:6] == [
        "[CLS]", "what", "a", "wonderful", "performance", "[SEP]"]
    ex.set_trainable(True).train()
    torch.manual_seed(0)
    feats = ex(inputs)
    assert feats.values.shape == (2, 8, 384) and feats.values.requires_grad
    pooled = pool(feats, "mean").values[:, 0]
    loss = 1 - torch.nn.functional.cosine_similarity(pooled[0], pooled[1], dim=0)
    loss.backward()
    grads = [p.grad for p in ex.parameters()]
    assert sum(g is not None and bool(g.abs().sum() > 0) for g in grads) > len(grads) // 2
    frozen = ex.extract(sentences)  # eval mode, no dropout: the pre-trained embedding
    assert ex.training and not frozen.values.requires_grad
    ex.eval()
    with torch.no_grad():
        ref = pool(ex(inputs), "mean").values
    torch.testing.assert_close(frozen.values, ref, atol=1e-6, rtol=1e-5)
