"""dec-semi (seeds 000/001): the transformer classifier, the ``dec`` pretrainer and the method.

Loss terms are checked against hand computations on small tensors; the pretrainer against the
properties the paper needs (sharper targets, real weight transfer, hidden labels never read).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from msabench.api import DataInfo, LoadedDataset, SplitData
from msabench.api.dataset import DatasetMeta
from msabench.errors import ConfigError
from msabench.plugins import get_registry
from msabench.runner import Progress, RunSpec, run
from msabench.training import LoopContext
from msabench_builtins.methods.transformer import (ModalityEncoder, TransformerClassifier,
                                                   binary_targets)
from msabench_builtins.pretrainers.dec import (DEC, clustering_loss, cluster_purity,
                                               disentangle_loss, reconstruction_loss,
                                               soft_assignment, supervised_loss,
                                               target_distribution)
from tests.conftest import real_data

QUIET = Progress(quiet=True)
TINY_MODEL = {"d_model": 16, "layers": 1, "heads": 4, "ffn": 32, "dropout": 0.0,
              "head_dims": [8], "head_dropout": 0.0, "max_positions": 64,
              "zero_label": "positive"}
TINY_DEC = {"stage1_epochs": 3, "stage2_epochs": 3, "kmeans_n_init": 2, "batch_size": 16,
            "decoder_hidden": [16], "purity_every": 1}


# ------------------------------------------------------------------ loss terms by hand
def test_soft_assignment_by_hand():
    z = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    centres = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    q = soft_assignment(z, centres, dof=1.0)
    # row 0: squared distances 0 and 4 -> kernels 1 and 1/5; row 1: 2 and 2 -> equal
    expected = torch.tensor([[1 / 1.2, 0.2 / 1.2], [0.5, 0.5]])
    assert torch.allclose(q, expected, atol=1e-6)
    # dof changes the kernel: (1 + d2/a)^(-(a+1)/2) with a = 3, d2 = 4 -> (7/3)^-2
    q3 = soft_assignment(z[:1], centres, dof=3.0)
    k = (1 + 4 / 3) ** -2
    assert torch.allclose(q3, torch.tensor([[1 / (1 + k), k / (1 + k)]]), atol=1e-6)


def test_target_distribution_by_hand():
    q = torch.tensor([[0.8, 0.2], [0.5, 0.5]])
    f = [0.8 + 0.5, 0.2 + 0.5]
    rows = []
    for a, b in q.tolist():
        w = [a * a / f[0], b * b / f[1]]
        rows.append([w[0] / sum(w), w[1] / sum(w)])
    assert torch.allclose(target_distribution(q), torch.tensor(rows), atol=1e-6)


def test_clustering_loss_is_batch_mean_kl():
    p = torch.tensor([[0.9, 0.1], [0.4, 0.6]])
    q = torch.tensor([[0.7, 0.3], [0.5, 0.5]])
    hand = sum(pi * math.log(pi / qi) for pr, qr in zip(p.tolist(), q.tolist())
               for pi, qi in zip(pr, qr)) / 2
    assert float(clustering_loss(p, q)) == pytest.approx(hand, rel=1e-6)
    assert float(clustering_loss(q, q)) == pytest.approx(0.0, abs=1e-7)
    # a zero target entry contributes nothing (0 log 0 = 0)
    assert float(clustering_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.5]]))) == \
        pytest.approx(math.log(2), rel=1e-6)


def test_reconstruction_loss_by_hand():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    x_hat = torch.ones(2, 2)
    assert float(reconstruction_loss(x_hat, x)) == pytest.approx((0 + 1 + 4 + 9) / 2)
    weight = torch.tensor([[1.0, 1.0], [1.0, 0.0]])  # drop the last (padded) entry
    assert float(reconstruction_loss(x_hat, x, weight)) == pytest.approx((0 + 1 + 4) / 2)


def test_disentangle_loss_by_hand():
    z = torch.tensor([[1.0, 2.0], [3.0, 1.0], [2.0, 6.0]])
    # centred: (-1,-1), (1,-2), (0,3); C_12 = (1 - 2 + 0) / 3; two off-diagonal entries
    assert float(disentangle_loss(z)) == pytest.approx(2 * (1 / 3) ** 2, rel=1e-6)
    # uncorrelated dimensions cost nothing, whatever their variances
    z = torch.tensor([[1.0, 5.0], [-1.0, 5.0], [1.0, -5.0], [-1.0, -5.0]])
    assert float(disentangle_loss(z)) == pytest.approx(0.0, abs=1e-7)


def test_supervised_loss_reads_only_kept_rows():
    q = torch.tensor([[0.9, 0.1], [0.3, 0.7], [0.5, 0.5]])
    target = torch.tensor([0.0, 1.0, 0.0])
    keep = torch.tensor([True, True, False])
    hand = -(math.log(0.9) + math.log(0.7)) / 2
    assert float(supervised_loss(q, target, keep)) == pytest.approx(hand, rel=1e-6)
    # nothing kept: zero, still differentiable
    q.requires_grad_(True)
    out = supervised_loss(q, target, torch.zeros(3, dtype=torch.bool))
    out.backward()
    assert float(out.detach()) == 0.0


def test_cluster_purity_by_hand():
    assign = torch.tensor([0, 0, 1, 1, 1])
    classes = torch.tensor([0, 1, 1, 1, 0])
    assert cluster_purity(assign, classes) == pytest.approx((1 + 2) / 5)
    assert cluster_purity(classes, classes) == 1.0


def test_target_distribution_rows_sum_to_one_and_sharpen():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(200, 6, generator=gen)
    centres = torch.randn(3, 6, generator=gen)
    q = soft_assignment(z, centres)
    p = target_distribution(q)
    assert torch.allclose(p.sum(1), torch.ones(200), atol=1e-6)
    assert torch.allclose(q.sum(1), torch.ones(200), atol=1e-6)

    def entropy(x):
        return -(x * x.clamp_min(1e-12).log()).sum(1)

    assert float(entropy(p).mean()) < float(entropy(q).mean())
    assert float(p.max(1).values.mean()) > float(q.max(1).values.mean())
    # with balanced clusters every single row is sharper (p ~ q^2)
    q_bal = torch.tensor([[0.6, 0.4], [0.4, 0.6]])
    p_bal = target_distribution(q_bal)
    assert bool((p_bal.max(1).values > q_bal.max(1).values).all())


# ------------------------------------------------------------------ the classifier
def _info(dims=None, lengths=None, label_range=(-3.0, 3.0)) -> DataInfo:
    dims = dims or {"text": 12, "audio": 5, "vision": 7}
    lengths = lengths or {m: 6 for m in dims}
    meta = DatasetMeta(name="toy", title="toy", language="en", label_range=label_range,
                       convention="mosi", synthetic=True)
    return DataInfo(meta=meta, setting="default", modalities=tuple(dims),
                    feature_dims=dict(dims), max_lengths=dict(lengths), aligned=False,
                    has_unimodal_labels=False, has_texts=False)


def _split(n: int, dims=None, seed: int = 0, steps: int = 6) -> SplitData:
    dims = dims or {"text": 12, "audio": 5, "vision": 7}
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randn(n, generator=gen) * 1.5
    labels[:2] = torch.tensor([-1.0, 1.0])  # both classes present
    feats, lengths = {}, {}
    for i, (m, d) in enumerate(dims.items()):
        x = torch.randn(n, steps, d, generator=gen) * 0.5
        x[:, :, 0] += labels.unsqueeze(1)  # planted signal
        ln = torch.randint(1, steps + 1, (n,), generator=gen)
        x[torch.arange(steps).unsqueeze(0) >= ln.unsqueeze(1)] = 0.0
        feats[m], lengths[m] = x, ln
    return SplitData(ids=[f"s{i}" for i in range(n)], features=feats, lengths=lengths,
                     labels=labels.clamp(-3, 3))


def _model(info=None, **over) -> TransformerClassifier:
    torch.manual_seed(0)
    return TransformerClassifier(info or _info(), {**TINY_MODEL, **over},
                                 components=None)  # components are not used


def test_parameter_count_on_the_papers_inputs():
    """GloVe 300 / COVAREP 74 / FACET 47 with the defaults: 849,152 in the encoders and 876,033
    in all (the paper reports 851,713; docs/dec-semi.md explains the difference)."""
    info = _info({"text": 300, "audio": 74, "vision": 47}, {"text": 30, "audio": 30, "vision": 30})
    model = TransformerClassifier(info, TransformerClassifier.defaults["model"], None)
    assert sum(p.numel() for p in model.encoder.parameters()) == 849_152
    assert model.num_parameters() == 876_033
    layer = model.encoder.encoders["text"].encoder.layers[0]
    assert layer.self_attn.num_heads == 4 and layer.linear1.out_features == 256
    assert len(model.encoder.encoders["text"].encoder.layers) == 2
    assert isinstance(model.head[1], torch.nn.BatchNorm1d)


def test_forward_shapes_and_probability_mapping():
    model = _model().eval()
    batch = _split(10).batch(torch.arange(10))
    out = model(batch)
    assert out["pred"].shape == (10,) and out["logit"].shape == (10,)
    assert out["z"].shape == (10, 3 * 16)
    p = torch.sigmoid(out["logit"])
    assert torch.allclose(out["pred"], 3 * (2 * p - 1), atol=1e-5)
    assert torch.equal(out["pred"] > 0, out["logit"] > 0)
    sims = _model(_info(label_range=(-1.0, 1.0))).eval()
    assert float(sims(batch)["pred"].detach().abs().max()) <= 1.0


def test_padding_and_trimming_do_not_change_the_encoding():
    torch.manual_seed(0)
    enc = ModalityEncoder(5, 16, 2, 4, 32, 0.0, 64).eval()
    x = torch.randn(3, 4, 5)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    x = x * mask.unsqueeze(-1)
    padded = torch.cat([x, torch.zeros(3, 26, 5)], 1)  # data.max_length = 30
    pmask = torch.cat([mask, torch.zeros(3, 26, dtype=torch.bool)], 1)
    with torch.no_grad():
        a, b = enc(x, mask), enc(padded, pmask)
        one = enc(x[2:, :1], mask[2:, :1])  # row 2 alone, unpadded
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(a[2:], one, atol=1e-5)
    # a sample with no valid step gives a finite vector, not NaN
    with torch.no_grad():
        empty = enc(x[:1], torch.zeros(1, 4, dtype=torch.bool))
    assert torch.isfinite(empty).all()


def test_binary_targets_and_zero_labels():
    label = torch.tensor([-2.0, 0.0, 1.5, float("nan")])
    t, keep = binary_targets(label, "positive")
    assert t.tolist()[:3] == [0.0, 1.0, 1.0] and keep.tolist() == [True, True, True, False]
    t, keep = binary_targets(label, "ignore")
    assert keep.tolist() == [True, False, True, False]


def test_classifier_loss_uses_labelled_rows_only():
    model = _model().eval()
    split = _split(8)
    batch = split.batch(torch.arange(8))
    poisoned = replace(batch, labelled=torch.tensor([True] * 4 + [False] * 4),
                       label=torch.cat([batch.label[:4], torch.full((4,), float("nan"))]))
    flipped = replace(poisoned, label=torch.cat([batch.label[:4], -batch.label[4:] * 100]))
    out = model(batch)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        out["logit"][:4], (batch.label[:4] >= 0).float())
    assert float(model.loss(out, poisoned).detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    assert float(model.loss(out, flipped).detach()) == pytest.approx(float(expected.detach()), rel=1e-6)


def test_bad_model_config_is_refused():
    with pytest.raises(ConfigError, match="zero_label"):
        _model(zero_label="neutral")
    with pytest.raises(ConfigError, match="divisible"):
        _model(d_model=18)


# ------------------------------------------------------------------ the pretrainer
def _dataset(n_train=64, labelled_fraction=0.4, seed=0) -> LoadedDataset:
    meta = DatasetMeta(name="toy", title="toy", language="en", label_range=(-3.0, 3.0),
                       convention="mosi", synthetic=True)
    train = _split(n_train, seed=seed)
    k = int(n_train * labelled_fraction)
    labelled = torch.zeros(n_train, dtype=torch.bool)
    labelled[:k] = True
    labels = train.labels.clone()
    labels[~labelled] = float("nan")  # what the runner's hide_labels does
    train = replace(train, labelled=labelled, labels=labels)
    return LoadedDataset(meta=meta, setting="default",
                         splits={"train": train, "valid": _split(24, seed=seed + 1),
                                 "test": _split(24, seed=seed + 2)})


def _context(seed=3) -> RunContext:
    return LoopContext(device=torch.device("cpu"), seed=seed, train={}, progress=QUIET)


def _pretrain(data, seed=3, **over):
    model = _model()
    dec = DEC(**{**TINY_DEC, **over})
    torch.manual_seed(seed)
    log = dec.fit(model, data, _context(seed))
    return model, dec, log


def test_transfer_copies_the_pretrained_encoder_and_nothing_else():
    data = _dataset()
    model = _model()
    before_enc = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    before_head = {k: v.clone() for k, v in model.head.state_dict().items()}
    dec = DEC(**TINY_DEC)
    log = dec.fit(model, data, _context())
    pretrained = dec.network.encoder.state_dict()
    after = model.encoder.state_dict()
    assert set(after) == set(pretrained)
    for key in after:
        assert torch.equal(after[key], pretrained[key]), key
        assert after[key].data_ptr() != pretrained[key].data_ptr()  # copied, not shared
    changed = [k for k in after if not torch.equal(after[k], before_enc[k])]
    assert len(changed) > len(after) // 2  # the encoder really was trained
    for key, value in model.head.state_dict().items():
        assert torch.equal(value, before_head[key]), key  # the head starts fresh
    assert log["transferred"]["parameters"] == sum(p.numel() for p in model.encoder.parameters())


def test_hidden_labels_are_never_read():
    """Poison the labels of the unlabelled rows (NaN, then huge flipped values): the
    pretraining and the supervised loss must give bit-identical weights and loss curves."""
    clean = _dataset()
    train = clean["train"]
    poisoned_labels = torch.where(train.labelled, train.labels, torch.full_like(train.labels, -1e6))
    poisoned = replace(clean, splits={**clean.splits, "train": replace(train, labels=poisoned_labels)})
    m1, _, log1 = _pretrain(clean)
    m2, _, log2 = _pretrain(poisoned)
    for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k
    assert json.dumps(log1["stage2"]["history"]) == json.dumps(log2["stage2"]["history"])
    assert log1["kmeans"] == log2["kmeans"]
    # ... while changing a labelled row's label does change the result (the test can fail)
    relabelled = train.labels.clone()
    relabelled[train.labelled] = -relabelled[train.labelled]
    flipped = replace(clean, splits={**clean.splits, "train": replace(train, labels=relabelled)})
    _, _, log3 = _pretrain(flipped)
    assert log3["stage2"]["history"] != log1["stage2"]["history"]


def test_pretraining_losses_decrease_and_are_logged():
    data = _dataset(n_train=96)
    _, _, log = _pretrain(data, stage1_epochs=15, stage2_epochs=4)
    s1 = log["stage1"]["history"]
    assert len(s1) == 15 and {"recon", "disentangle", "total"} <= set(s1[0])
    assert s1[-1]["recon"] < 0.7 * s1[0]["recon"]
    s2 = log["stage2"]["history"]
    assert len(s2) == 4 and {"kl", "recon", "supervised", "disentangle", "total"} <= set(s2[0])
    assert "assignment_changed" in s2[1] and "valid_purity" in s2[-1]
    assert 0.5 <= log["valid_purity"] <= 1.0
    assert log["kmeans"]["n_init"] == 2 and sum(log["kmeans"]["cluster_sizes"]) == 96
    assert log["labelled"] == int(96 * 0.4) and log["samples"] == 96
    json.dumps(log)  # stored in the result file


def test_stage2_weights_follow_the_config():
    """total = kl + alpha recon + beta supervised + gamma disentangle, per epoch mean."""
    _, _, log = _pretrain(_dataset(), stage2_alpha=0.3, stage2_beta=2.0, stage2_gamma=0.01)
    for row in log["stage2"]["history"]:
        total = row["kl"] + 0.3 * row["recon"] + 2.0 * row["supervised"] + 0.01 * row["disentangle"]
        assert row["total"] == pytest.approx(total, rel=1e-4)


def test_sequence_reconstruction_target():
    _, _, log = _pretrain(_dataset(), recon_target="sequence")
    assert log["reconstruction_dim"] == 6 * (12 + 5 + 7)
    assert math.isfinite(log["stage1"]["history"][-1]["recon"])


def test_pretrainer_config_errors():
    with pytest.raises(ConfigError, match="unknown option"):
        DEC(stage1_epoch=3)
    with pytest.raises(ConfigError, match="recon_target"):
        DEC(recon_target="pixels")
    with pytest.raises(ConfigError, match="clusters = 2"):
        DEC(clusters=3).fit(_model(), _dataset(), _context())
    DEC(clusters=3, stage2_beta=0.0, **{k: v for k, v in TINY_DEC.items()}).fit(
        _model(), _dataset(), _context())  # unsupervised clustering with more clusters is fine


# ------------------------------------------------------------------ the methods end to end
def test_dec_semi_end_to_end_on_synthetic(tmp_path, tiny_synth_overrides):
    overrides = tiny_synth_overrides + [
        f"model.{k}={json.dumps(v)}" for k, v in TINY_MODEL.items()] + [
        f"pretrain.dec.{k}={json.dumps(v)}" for k, v in TINY_DEC.items()]
    [o] = run(RunSpec(method="dec-semi", dataset="synthetic-mosi", epochs=3, overrides=overrides,
                      out=tmp_path, quiet=True))
    res = json.loads(o.path.read_text())
    assert res["config"]["data"]["label_fraction"] == 0.4
    assert res["labelled_train"] == round(0.4 * 160)
    assert res["preprocessing"]["normalize"] == "minmax-zscore"
    assert res["prediction_kind"] == "probability-mapped"
    dec = res["pretraining"]["dec"]
    assert len(dec["stage1"]["history"]) == 3 and len(dec["stage2"]["history"]) == 3
    assert dec["samples"] == 160 and dec["labelled"] == 64
    assert res["metrics"]["test"]["mae"] is not None and res["not_applicable"] == []
    assert res["parameters"]["trainable"] > 0


def test_variant_names_record_the_label_fraction(tmp_path, tiny_synth_overrides):
    overrides = tiny_synth_overrides + [f"model.{k}={json.dumps(v)}" for k, v in TINY_MODEL.items()]
    [o] = run(RunSpec(method="transformer", dataset="synthetic-mosi", epochs=2, out=tmp_path,
                      quiet=True, overrides=overrides + ["data.label_fraction=0.4"]))
    assert "@lf0.4_cfg-" in o.path.parent.name
    res = json.loads(o.path.read_text())
    assert res["pretraining"] == {} and res["labelled_train"] == 64


@pytest.mark.realdata
@pytest.mark.slow
def test_dec_semi_beats_the_majority_class_on_real_mosi(tmp_path):
    """A short dec-semi schedule at 40% labels on the real bc-LSTM features beats the majority
    class of the test split (Acc2 60.5%) by a wide margin."""
    path = real_data("mosi/mosi_utt.npz")
    overrides = ["pretrain.dec.stage1_epochs=5", "pretrain.dec.stage2_epochs=3",
                 "pretrain.dec.kmeans_n_init=3", "train.lr=1e-3", "data.setting=utt-bclstm"]
    [o] = run(RunSpec(method="dec-semi", dataset="mosi", epochs=15, overrides=overrides,
                      data_dir=path.parent, out=tmp_path, quiet=True,
                      ), registry=get_registry())
    res = json.loads(o.path.read_text())
    assert res["setting"] == "utt-bclstm"
    majority = 0.605
    assert res["metrics"]["test"]["acc2_non0"] > majority + 0.1
    assert res["pretraining"]["dec"]["valid_purity"] > 0.6


def test_progress_shows_both_stages_fine_tuning_and_the_parameter_count(tmp_path,
                                                                        tiny_synth_overrides):
    import io

    from rich.console import Console

    buffer = io.StringIO()
    progress = Progress(console=Console(file=buffer, width=160, force_terminal=False))
    overrides = tiny_synth_overrides + [
        f"model.{k}={json.dumps(v)}" for k, v in TINY_MODEL.items()] + [
        f"pretrain.dec.{k}={json.dumps(v)}" for k, v in TINY_DEC.items()]
    [o] = run(RunSpec(method="dec-semi", dataset="synthetic-mosi", epochs=2, overrides=overrides,
                      out=tmp_path), progress=progress)
    text = buffer.getvalue()
    res = json.loads(o.path.read_text())
    assert "dec stage 1 (autoencoder)" in text and "dec stage 2 (clustering)" in text
    assert "seed 1111 epochs" in text  # the fine-tuning bar
    assert f"{res['parameters']['trainable']:,} trainable parameters" in text
    assert "valid cluster purity" in text
