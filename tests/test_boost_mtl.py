"""boost-mtl (seed 002): the multi-task loss, zero-weight subtasks, two-step freezing, loading
encoders from local directories, hidden labels, the frozen-feature cache, modes and fusions."""

from __future__ import annotations

import json
import math

import pytest
import torch

from msabench.api import Components
from msabench.config import TRAIN_DEFAULTS
from msabench.plan import RunSpec
from msabench.plugins import get_registry
from msabench.runner import metric_classes, run
from msabench.training import LoopContext, fit_method, seed_everything
from tests.test_raw_media import tiny_bert, tiny_hubert, tiny_videomae  # noqa: F401

pytest.importorskip("av", reason="PyAV decodes the generated media")

DATA = {"n_train": 24, "n_valid": 8, "n_test": 8, "text_dim": 6, "audio_dim": 5,
        "vision_dim": 4, "text_len": 5, "audio_len": 6, "vision_len": 4,
        "label_source": "builtin"}
FEATURES = {"text": "features", "audio": "features", "vision": "features"}


class Printed:
    """A Progress that keeps what it prints."""

    def __init__(self):
        from msabench.api import SilentProgress

        self.lines = []
        self._silent = SilentProgress()

    def task(self, description, total):
        return self._silent.task(description, total)

    def print(self, message):
        self.lines.append(message)


def _data(setting="unaligned", dataset="synthetic-sims2", **extra):
    cls = get_registry().load("dataset", dataset)
    opts = dict(DATA) if dataset == "synthetic-sims2" else {"n_train": 24, "n_valid": 8,
                                                           "n_test": 8}
    return cls(setting=setting, options={**opts, **extra}).load()


def _method(data, **model):
    registry = get_registry()
    cls = registry.load("method", "boost-mtl")
    config = {**cls.defaults["model"], "encoders": FEATURES, **model}
    seed_everything(0)
    return cls(data.info(), config, Components(registry))


def _context(data, progress=None, **train):
    registry = get_registry()
    cfg = {**TRAIN_DEFAULTS, "epochs": 2, "batch_size": 8, "lr": 1e-3, "patience": 0,
           "eval_batch_size": 16, **train}
    return LoopContext(device=torch.device("cpu"), seed=0, train=cfg, progress=progress,
                       metric_classes=metric_classes(registry, data.meta.convention))


def _batch(data, n=8):
    return next(data["train"].batches(n))


# ------------------------------------------------------------------------------ the loss
def test_joint_loss_is_the_weighted_sum_of_l1_terms_by_hand():
    data = _data()
    model = _method(data, mode="joint").eval()  # no dropout: two forwards agree
    batch = _batch(data)
    out = {k: v.detach() for k, v in model(batch).items()}
    y = {"label": batch.label, **batch.unimodal}
    pred = {"label": out["pred"], "text": out["pred_text"], "audio": out["pred_audio"],
            "vision": out["pred_vision"]}
    alpha = {"label": 1.0, "text": 0.2, "audio": 0.8, "vision": 0.4}
    by_hand = 0.0
    for k in alpha:
        by_hand += alpha[k] * sum(abs(float(p) - float(t)) for p, t in zip(pred[k], y[k])) / len(
            batch)
    assert float(model.loss(out, batch)) == pytest.approx(by_hand, rel=1e-5)
    loss, logs = model.training_step(batch)
    assert logs["loss"] == pytest.approx(by_hand, rel=1e-5)
    assert set(logs) == {"loss", "l1_label", "l1_text", "l1_audio", "l1_vision"}
    assert model.heads == {"pred": "label", "pred_text": "text", "pred_audio": "audio",
                           "pred_vision": "vision"}


def test_single_and_two_step_train_on_the_multimodal_task_only():
    data = _data()
    batch = _batch(data)
    single = _method(data, mode="single")
    assert single.heads == {"pred": "label"} and not single.unimodal_heads
    out = {k: v.detach() for k, v in single(batch).items()}
    assert float(single.loss(out, batch)) == pytest.approx(
        float((out["pred"] - batch.label).abs().mean()), rel=1e-6)
    two = _method(data, mode="two-step")
    out = {k: v.detach() for k, v in two(batch).items()}
    assert set(two.unimodal_heads) == {"text", "audio", "vision"}
    assert float(two.loss(out, batch)) == pytest.approx(
        float((out["pred"] - batch.label).abs().mean()), rel=1e-6)


def test_a_subtask_with_weight_zero_gets_no_gradient():
    data = _data()
    model = _method(data, mode="joint", alpha={"audio": 0.0})
    loss, logs = model.training_step(_batch(data))
    loss.backward()
    assert "l1_audio" not in logs and "pred_audio" not in model.heads
    assert all(p.grad is None for p in model.unimodal_heads["audio"].parameters())
    for m in ("text", "vision"):
        grads = [p.grad for p in model.unimodal_heads[m].parameters()]
        assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0


def test_hidden_labels_never_reach_a_loss():
    data = _data()
    model = _method(data, mode="joint")
    batch = _batch(data)
    hidden = torch.zeros(len(batch), dtype=torch.bool)
    hidden[::2] = True
    batch.labelled = ~hidden
    out = {k: v.detach() for k, v in model(batch).items()}
    reference = float(model.loss(out, batch))
    for poison in (float("nan"), 1e6):
        batch.label = batch.label.clone()
        batch.label[hidden] = poison
        for m in batch.unimodal:
            batch.unimodal[m] = batch.unimodal[m].clone()
            batch.unimodal[m][hidden] = poison
        assert float(model.loss(out, batch)) == pytest.approx(reference, rel=1e-6)
    # a NaN unimodal label on a labelled row is skipped by that term only
    batch.unimodal["text"][~hidden] = float("nan")
    terms = model.loss_terms(out, batch)
    assert "text" not in terms and torch.isfinite(sum(terms.values()))


def test_datasets_without_unimodal_labels_switch_subtasks_off_with_a_notice():
    data = _data(dataset="synthetic-mosi")
    printed = Printed()
    model = _method(data, mode="joint")
    model.context = _context(data, printed)
    model.setup(data)
    assert model.heads == {"pred": "label"}
    assert any("no unimodal labels" in line and "switched off" in line
               for line in printed.lines)
    _, logs = model.training_step(_batch(data))
    assert set(logs) == {"loss", "l1_label"}
    fallback = _method(data, mode="joint", missing_unimodal="label")
    _, logs = fallback.training_step(_batch(data))
    assert set(logs) == {"loss", "l1_label", "l1_text", "l1_audio", "l1_vision"}


@pytest.mark.parametrize("fusion", ["concat", "tfn", "mult"])
def test_each_fusion_gives_one_prediction_per_sample(fusion):
    data = _data()
    model = _method(data, mode="joint", fusion=fusion)
    out = model(_batch(data, 6))
    assert out["pred"].shape == (6,) and torch.isfinite(out["pred"]).all()


def test_bad_configuration_is_named():
    from msabench.errors import ConfigError

    data = _data()
    with pytest.raises(ConfigError, match="model.mode='twostep'"):
        _method(data, mode="twostep")
    with pytest.raises(ConfigError, match="model.fusion='lmf'"):
        _method(data, fusion="lmf")
    with pytest.raises(ConfigError, match="model.alpha.text"):
        _method(data, alpha={"text": -1})


# ------------------------------------------------------------------------------ encoders
def _raw_encoders(bert, hubert, videomae, **vision):
    return {"text": {"extractor": "hf-text", "options": {"model": str(bert), "max_length": 12}},
            "audio": {"extractor": "hf-audio", "options": {"model": str(hubert)}},
            "vision": {"extractor": "hf-video",
                       "options": {"model": str(videomae), "size": 32, "fps": 10,
                                   "face": "opencv", **vision}}}


def test_encoders_load_from_save_pretrained_directories(tiny_bert, tiny_hubert, tiny_videomae):
    from transformers import AutoModel

    pytest.importorskip("cv2", reason="face crops need opencv-python-headless")
    data = _data("raw")
    model = _method(data, mode="joint", encoders=_raw_encoders(tiny_bert, tiny_hubert,
                                                               tiny_videomae))
    for m, path in (("text", tiny_bert), ("audio", tiny_hubert), ("vision", tiny_videomae)):
        branch = model.branches[m]
        assert branch.kind == "extractor"
        saved = AutoModel.from_pretrained(path).state_dict()
        loaded = branch.extractor.model.state_dict()
        assert saved.keys() == loaded.keys()
        assert all(torch.equal(saved[k], loaded[k]) for k in saved), m
    out = model(_batch(data, 4))
    assert out["pred"].shape == (4,)
    # fine-tuning: pre-trained weights at encoder_lr, the rest at train.lr
    opt = model.configure_optimizer({"lr": 1e-4})
    lrs = sorted(g["lr"] for g in opt.param_groups)
    assert lrs == [1e-5, 1e-4]


def test_two_step_step2_leaves_the_encoders_bit_identical(tiny_bert, tiny_hubert,
                                                         tiny_videomae):
    pytest.importorskip("cv2", reason="face crops need opencv-python-headless")
    from msabench_builtins.pretrainers.unimodal import UnimodalFinetune

    data = _data("raw")
    model = _method(data, mode="two-step", fusion="mult",
                    encoders=_raw_encoders(tiny_bert, tiny_hubert, tiny_videomae),
                    fusion_params={"dim": 8, "num_heads": 2, "num_layers": 1})
    context = _context(data, lr=3e-3)
    model.context = context
    initial = {k: v.clone() for k, v in model.branches.state_dict().items()}
    log = UnimodalFinetune(epochs=1).fit(model, data, context)
    assert {"text", "audio", "vision"} <= set(log)
    assert all(log[m]["target"] == m for m in ("text", "audio", "vision"))
    after1 = {k: v.clone() for k, v in model.branches.state_dict().items()}
    changed = [k for k in initial if not torch.equal(initial[k], after1[k])]
    assert any(k.startswith("text.extractor") for k in changed)
    assert any(k.startswith("audio.extractor") for k in changed)
    assert any(k.startswith("vision.extractor") for k in changed)
    # step 1 ran every frozen extractor once over every split
    assert all(len(model.branches[m].memo) == 40 for m in ("text", "audio", "vision"))
    heads1 = {k: v.clone() for k, v in model.unimodal_heads.state_dict().items()}
    fusion0 = {k: v.clone() for k, v in model.fusion.state_dict().items()}
    fitted = fit_method(model, data["train"], data["valid"], context)
    assert fitted.epochs_run == 2
    after2 = model.branches.state_dict()
    assert all(torch.equal(after1[k], after2[k]) for k in after1)
    assert all(torch.equal(heads1[k], v) for k, v in model.unimodal_heads.state_dict().items())
    assert any(not torch.equal(fusion0[k], v) for k, v in model.fusion.state_dict().items())


def test_frozen_extractor_features_are_cached_on_disk_and_reused(tiny_bert, tmp_path,
                                                               monkeypatch):
    monkeypatch.setenv("MSABENCH_CACHE_DIR", str(tmp_path))
    data = _data()
    encoders = {**FEATURES, "text": {"extractor": "hf-text",
                                     "options": {"model": str(tiny_bert), "max_length": 12}}}
    counts = []
    for _ in range(2):
        model = _method(data, mode="joint", finetune=False, encoders=encoders)
        model.context = _context(data)
        calls = []
        original = model.branches["text"].extractor.encode
        model.branches["text"].extractor.encode = lambda raw, pooling: (
            calls.append(len(raw)), original(raw, pooling))[1]
        model.setup(data)
        counts.append((sum(calls), model.branches["text"].memo))
    n = len(set(data["train"].texts + data["valid"].texts + data["test"].texts))
    assert counts[0][0] == n and counts[1][0] == 0  # the second run encodes nothing
    first, second = counts[0][1], counts[1][1]
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert list((tmp_path / "features").glob("boost-text-*.npz"))


# ------------------------------------------------------------------------------ end to end
@pytest.mark.parametrize("mode", ["single", "joint", "two-step"])
def test_audio_video_only_runs_end_to_end_in_every_mode(mode, tmp_path, monkeypatch):
    # a cache of its own: a step 1 cached by an earlier run would be reused (and say so)
    monkeypatch.setenv("MSABENCH_CACHE_DIR", str(tmp_path / "cache"))
    spec = RunSpec(method="boost-mtl", dataset="synthetic-sims2", seeds=[3], out=tmp_path,
                   quiet=True, overrides={
                       "data": {"modalities": ["audio", "vision"], "options": DATA},
                       "model": {"mode": mode, "encoders": FEATURES},
                       "train": {"epochs": 2}, "pretrain": {"unimodal": {"epochs": 1}}})
    [outcome] = run(spec)
    result = json.loads(outcome.path.read_text())
    assert result["modalities"] == ["audio", "vision"]
    heads = set(result["heads"])
    assert heads == (set() if mode == "single" else {"pred_audio", "pred_vision"})  # pred: metrics
    assert result["metrics"]["test"]["mae"] > 0
    log = result["pretraining"]["unimodal"]
    if mode == "two-step":
        assert set(log) == {"audio", "vision", "cache"}
        assert log["audio"]["best_valid_l1"] > 0
    else:
        assert "skipped" in log


def test_joint_trains_exactly_what_single_trains_without_unimodal_labels(tmp_path):
    """Backs docs/boost-mtl.md's "joint = single on MOSI, not re-run": on a dataset without
    unimodal labels the joint run's metrics and history equal the single run's, bit for bit."""

    def once(mode):
        spec = RunSpec(method="boost-mtl", dataset="synthetic-mosi", seeds=[4],
                       out=tmp_path / mode, quiet=True, overrides={
                           "data": {"options": {"n_train": 24, "n_valid": 8, "n_test": 8}},
                           "model": {"mode": mode, "encoders": FEATURES},
                           "train": {"epochs": 2}})
        [outcome] = run(spec)
        return json.loads(outcome.path.read_text())

    single, joint = once("single"), once("joint")
    assert joint["config"]["model"]["mode"] == "joint"
    assert joint["metrics"] == single["metrics"]
    assert joint["history"] == single["history"]
    assert joint["heads"] == single["heads"] == {}


def test_step1_is_reused_across_fusions_and_step2_is_bit_identical(tmp_path, monkeypatch):
    monkeypatch.setenv("MSABENCH_CACHE_DIR", str(tmp_path / "cache"))

    def once(fusion, out):
        spec = RunSpec(method="boost-mtl", dataset="synthetic-sims2", seeds=[5], out=out,
                       quiet=True, force=True, overrides={
                           "data": {"options": DATA},
                           "model": {"mode": "two-step", "encoders": FEATURES, "fusion": fusion},
                           "train": {"epochs": 2}, "pretrain": {"unimodal": {"epochs": 2}}})
        [outcome] = run(spec)
        return json.loads(outcome.path.read_text())

    first = once("concat", tmp_path / "a")
    assert "reused" not in first["pretraining"]["unimodal"]
    assert list((tmp_path / "cache" / "boost-step1").glob("*.pt"))
    again = once("concat", tmp_path / "b")  # loaded, not trained
    assert again["pretraining"]["unimodal"]["reused"] is True
    assert again["metrics"] == first["metrics"] and again["history"] == first["history"]
    other = once("tfn", tmp_path / "c")  # another fusion: the same step 1
    assert other["pretraining"]["unimodal"]["reused"] is True
    assert other["heads"]["pred_text"] == first["heads"]["pred_text"]
    # a damaged cache file is ignored and step 1 trained again
    for f in (tmp_path / "cache" / "boost-step1").glob("*.pt"):
        f.write_bytes(b"not a checkpoint")
    fresh = once("concat", tmp_path / "d")
    assert "reused" not in fresh["pretraining"]["unimodal"]
    assert fresh["metrics"] == first["metrics"]


def test_required_models_lists_each_configured_encoder():
    from msabench.config import resolve

    cls = get_registry().load("method", "boost-mtl")
    needs = {n.modality: (n.name, n.key) for n in cls.required_models(resolve(cls, "chsims2"))}
    assert needs == {
        "text": ("bert-base-chinese", "model.encoders.text.options.model"),
        "audio": ("facebook/hubert-base-ls960", "model.encoders.audio.options.model"),
        "vision": ("MCG-NJU/videomae-base", "model.encoders.vision.options.model")}
    assert cls.required_models(resolve(cls, "mosi"))[0].name == "bert-base-uncased"
    only_text = resolve(cls, "mosi", {"model": {"encoders": {"audio": "features",
                                                             "vision": "features"}}})
    assert [n.modality for n in cls.required_models(only_text)] == ["text"]


def test_partial_fine_tuning_runs_only_the_top_layers_and_matches_the_full_forward(tiny_bert):
    data = _data()
    encoders = {**FEATURES, "text": {"extractor": "hf-text", "finetune_layers": 1,
                                     "options": {"model": str(tiny_bert), "max_length": 12}}}
    model = _method(data, mode="joint", encoders=encoders)
    branch = model.branches["text"]
    trainable = {n for n, p in branch.extractor.model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("encoder.layer.1.") for n in trainable)
    batch = _batch(data)
    model.eval()
    part = branch.sequence(batch)
    full = branch.extractor.encode(batch.raw("text"), "tokens")
    assert torch.equal(part.lengths, full.lengths)
    assert torch.allclose(part.values, full.values, atol=1e-5)
    model.train()
    loss, _ = model.training_step(batch)
    loss.backward()
    assert all((p.grad is not None) == (n in trainable)
               for n, p in branch.extractor.model.named_parameters())
    from msabench.errors import ConfigError

    with pytest.raises(ConfigError, match="finetune_layers=5"):
        _method(data, encoders={**encoders, "text": {**encoders["text"], "finetune_layers": 5}})


def test_step1_never_reads_hidden_labels():
    """Step 1 on a split whose hidden rows carry NaN labels: a NaN reaching a loss would stop
    the shared loop (TrainingDiverged); the kept rows must still train the branches."""
    from dataclasses import replace

    from msabench_builtins.pretrainers.unimodal import UnimodalFinetune

    data = _data()
    for name in ("train", "valid"):
        split = data.splits[name]
        hidden = torch.zeros(len(split), dtype=torch.bool)
        hidden[::2] = True
        labels = split.labels.clone()
        labels[hidden] = float("nan")
        unimodal = {m: u.clone() for m, u in split.unimodal.items()}
        for u in unimodal.values():
            u[hidden] = float("nan")
        data.splits[name] = replace(split, labels=labels, unimodal=unimodal, labelled=~hidden)
    model = _method(data, mode="two-step")
    model.context = _context(data)
    before = {k: v.clone() for k, v in model.branches.state_dict().items()}
    log = UnimodalFinetune(epochs=2, reuse=False).fit(model, data, model.context)
    for m in ("text", "audio", "vision"):
        assert all(math.isfinite(row["train_loss"]) and math.isfinite(row["valid_l1"])
                   for row in log[m]["history"])
    after = model.branches.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
