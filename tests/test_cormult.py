"""cormult (seed 003): the MCE's negatives, loss and distances, the pretrainer, the method.

Negatives are checked on small tensors for exactly what each strategy says it does; the
triplet loss against a hand computation; each distance against scipy; the method for a frozen,
unchanged evaluator in stage 2 and for the two scalings.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from scipy.spatial import distance as sd

from msabench.api import DataInfo, LoadedDataset, SplitData
from msabench.api.dataset import DatasetMeta
from msabench.errors import ConfigError
from msabench.plugins import get_registry
from msabench.runner import Progress, RunSpec, run
from msabench.training import LoopContext, fit_method
from msabench_builtins.methods.cormult import CorMulT
from msabench_builtins.pretrainers.mce import MCEPretrainer, auc
from msabench_builtins.pretrainers.mce_model import (MCE, correlation, distance, draw_strategies,
                                                     inverse_covariance, make_negatives,
                                                     mce_loss, shift_one, triplet_loss)
from tests.conftest import real_data

QUIET = Progress(quiet=True)
DIMS = {"text": 6, "audio": 4, "vision": 3}
TINY_MCE = {"d_model": 8, "num_layers": 1, "num_heads": 2, "dim_feedforward": 16,
            "out_dim": 4, "epochs": 2, "batch_size": 8}
TINY_MULT = {"dim": 8, "num_heads": 2, "num_layers": 1, "mem_layers": 1}


def _batch(b=4, t=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    lengths = {m: torch.randint(2, t + 1, (b,), generator=gen) for m in DIMS}
    feats = {}
    for m, d in DIMS.items():
        x = torch.randn(b, t, d, generator=gen)
        x[torch.arange(t).unsqueeze(0) >= lengths[m].unsqueeze(1)] = 0.0
        feats[m] = x
    return feats, lengths


# ------------------------------------------------------------------ negatives
def test_strategy_a_swaps_one_modality_with_another_sample():
    feats, lens = _batch(b=6)
    codes = torch.zeros(6, dtype=torch.long)
    nf, nl, info = make_negatives(feats, lens, codes, torch.Generator().manual_seed(1))
    mods = list(DIMS)
    for i in range(6):
        j, k = int(info["partner"][i]), int(info["swapped"][i])
        assert j != i and k >= 0
        for n, m in enumerate(mods):
            if n == k:  # the swapped modality is the partner's, with the partner's length
                assert torch.equal(nf[m][i], feats[m][j]) and nl[m][i] == lens[m][j]
                assert not torch.equal(nf[m][i], feats[m][i])
            else:
                assert torch.equal(nf[m][i], feats[m][i]) and nl[m][i] == lens[m][i]


def test_strategy_b_shifts_by_one_with_a_zero_last_step():
    x = torch.arange(1.0, 13.0).view(2, 6, 1)
    lengths = torch.tensor([4, 1])
    x[0, 4:] = 0.0
    out = shift_one(x, lengths)
    assert out[0, :, 0].tolist() == [2.0, 3.0, 4.0, 0.0, 0.0, 0.0]  # x'[t] = x[t+1], last 0
    assert torch.equal(out[1], x[1])  # a length-1 sequence is left unchanged (as the code)
    feats, lens = _batch()
    nf, nl, _ = make_negatives(feats, lens, torch.ones(4, dtype=torch.long),
                               torch.Generator().manual_seed(0))
    for m in DIMS:
        for i in range(4):
            n = int(lens[m][i])
            assert torch.equal(nf[m][i, : n - 1], feats[m][i, 1:n])
            assert bool((nf[m][i, n - 1:] == 0).all()) and nl[m][i] == n


def test_strategy_c_noises_audio_vision_and_one_text_step_only():
    feats, lens = _batch(b=5)
    nf, nl, _ = make_negatives(feats, lens, torch.full((5,), 2), torch.Generator().manual_seed(2),
                               noise_std=0.1)
    for i in range(5):
        for m in ("audio", "vision"):
            n = int(lens[m][i])
            assert bool((nf[m][i, :n] != feats[m][i, :n]).all())   # every valid step noised
            assert bool((nf[m][i, n:] == 0).all())                 # padding untouched
            assert (nf[m][i] - feats[m][i]).abs().max() < 1.0      # sigma 0.1
        changed = (nf["text"][i] != feats["text"][i]).any(-1)
        assert int(changed.sum()) == 1 and int(changed.nonzero()) < int(lens["text"][i])
        step = int(changed.nonzero())
        assert nf["text"][i, step].abs().max() < 1.0               # N(0, 1) * 0.1
    assert all(torch.equal(nl[m], lens[m]) for m in DIMS)


def test_strategy_d_draws_each_strategy_and_skips_b_when_degenerate():
    gen = torch.Generator().manual_seed(0)
    codes = draw_strategies("D", 3000, gen)
    share = torch.bincount(codes, minlength=3).float() / 3000
    assert torch.allclose(share, torch.full((3,), 1 / 3), atol=0.04)
    no_b = draw_strategies("D", 500, gen, allow_b=False)
    assert set(no_b.tolist()) == {0, 2}
    assert set(draw_strategies("C", 10, gen).tolist()) == {2}


# ------------------------------------------------------------------ loss and distances
def test_triplet_loss_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 1.0], [0.0, 2.0]])
    n = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    # row 0: d_pos = 1 - 1/sqrt2, d_neg = 1 -> max(0, -1/sqrt2 + 0.2) = 0
    # row 1: d_pos = 0, d_neg = 1 - 1/sqrt2 -> max(0, 1/sqrt2 - 1 + 0.2) = 0
    # with margin 0.5: row 0 0.5 - 0.7071, row 1 0.5 - 0.2929 = 0.2071
    assert float(triplet_loss(a, p, n, 0.2)) == pytest.approx(0.0)
    assert float(triplet_loss(a, p, n, 0.5)) == pytest.approx((0.5 - (1 - 2 ** -0.5)) / 2,
                                                              abs=1e-6)
    pos = {"text": a, "audio": p, "vision": n}
    neg = {"text": n, "audio": a, "vision": p}
    total, terms = mce_loss(pos, neg, 0.5)
    assert len(terms) == 6
    hand = sum(float(triplet_loss(pos[x], pos[y], neg[y], 0.5))
               for x in pos for y in pos if x != y) / 3
    assert float(total) == pytest.approx(hand)


@pytest.mark.parametrize("kind,ref", [("cosine", sd.cosine), ("euclidean", sd.euclidean),
                                      ("manhattan", sd.cityblock), ("chebyshev", sd.chebyshev)])
def test_distances_against_scipy(kind, ref):
    gen = torch.Generator().manual_seed(4)
    a, b = torch.randn(7, 5, generator=gen).double(), torch.randn(7, 5, generator=gen).double()
    ours = distance(a, b, kind).numpy()
    theirs = [ref(x, y) for x, y in zip(a.numpy(), b.numpy())]
    assert np.allclose(ours, theirs, atol=1e-10)


def test_mahalanobis_against_scipy_with_the_training_covariance():
    gen = torch.Generator().manual_seed(5)
    train = (torch.randn(200, 4, generator=gen) @ torch.randn(4, 4, generator=gen)).double()
    inv = inverse_covariance(train, ridge=0.0)
    assert np.allclose(inv.numpy(), np.linalg.inv(np.cov(train.numpy().T)), atol=1e-8)
    a, b = torch.randn(6, 4, generator=gen).double(), torch.randn(6, 4, generator=gen).double()
    ours = distance(a, b, "mahalanobis", inv).numpy()
    theirs = [sd.mahalanobis(x, y, inv.numpy()) for x, y in zip(a.numpy(), b.numpy())]
    assert np.allclose(ours, theirs, atol=1e-10)


@pytest.mark.parametrize("kind", ["cosine", "euclidean", "manhattan", "chebyshev", "mahalanobis"])
def test_correlations_lie_in_the_documented_range(kind):
    gen = torch.Generator().manual_seed(6)
    a = torch.randn(50, 4, generator=gen) * 10
    b = torch.cat([a[:10], -a[10:20], torch.randn(30, 4, generator=gen) * 10])
    cor = correlation(a, b, kind, torch.eye(4))
    assert bool(((cor >= -1 - 1e-6) & (cor <= 1 + 1e-6)).all())
    assert torch.allclose(cor[:10], torch.ones(10), atol=1e-5)  # identical vectors: 1
    if kind != "cosine":
        d = distance(a, b, kind, torch.eye(4))
        assert torch.allclose(cor, (1 - d) / (1 + d))
        assert bool((cor > -1).all())


def test_auc_by_hand():
    assert auc(torch.tensor([2.0, 3.0]), torch.tensor([1.0])) == 1.0
    assert auc(torch.tensor([1.0]), torch.tensor([1.0, 2.0])) == 0.25


# ------------------------------------------------------------------ pretrainer and method
def _split(n, steps=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    lab = torch.randn(n, generator=gen).clamp(-3, 3)
    feats, lens = {}, {}
    for m, d in DIMS.items():
        lens[m] = torch.randint(1, steps + 1, (n,), generator=gen)
        x = torch.randn(n, steps, d, generator=gen) + lab.view(-1, 1, 1)
        x[torch.arange(steps).unsqueeze(0) >= lens[m].unsqueeze(1)] = 0.0
        feats[m] = x
    return SplitData(ids=[f"s{seed}-{i}" for i in range(n)], features=feats, lengths=lens,
                     labels=lab, extras={"weak_modality": torch.randint(-1, 3, (n,),
                                                                        generator=gen)})


def _data(steps=4):
    meta = DatasetMeta(name="toy", title="toy", language="en", label_range=(-3.0, 3.0),
                       convention="mosi", synthetic=True)
    return LoadedDataset(meta=meta, setting="default", splits={
        "train": _split(32, steps, 0), "valid": _split(16, steps, 1), "test": _split(16, steps, 2)})


def _method(data, **over):
    info = data.info()
    cfg = {**CorMulT.defaults["model"], **TINY_MULT, **over}
    torch.manual_seed(0)
    return CorMulT(info, cfg, __import__("msabench.api", fromlist=["Components"]).Components(
        get_registry()))


def _context(seed=3):
    from msabench.plugins import get_registry as reg
    from msabench.runner import metric_classes
    return LoopContext(device=torch.device("cpu"), seed=seed,
                       train={**CorMulT.defaults["train"], "epochs": 2, "batch_size": 8,
                              "patience": 0},
                       progress=QUIET, metric_classes=metric_classes(reg(), "mosi"))


def test_pretrainer_logs_curves_accuracy_and_correlations():
    data = _data()
    model = _method(data)
    log = MCEPretrainer(**TINY_MCE).fit(model, data, _context())
    assert isinstance(model.evaluator, MCE) and not model.evaluator.training
    assert all(not p.requires_grad for p in model.evaluator.parameters())
    assert len(log["history"]) == 2 and "valid_loss" in log["history"][0]
    assert "train_text<-audio" in log["history"][0] and log["best_epoch"] in (1, 2)
    assert set(log["valid_accuracy"]) == {"A", "B", "C"} and not log["b_degenerate"]
    pair = log["test_correlations"]["text-audio"]
    assert -1 <= pair["min"] <= pair["q25"] <= pair["median"] <= pair["q75"] <= pair["max"] <= 1
    assert "auc_low_cor_is_planted" in pair["planted"]
    json.dumps(log)  # stored in the result file


def test_strategy_b_on_length_one_data_is_detected():
    data = _data(steps=1)
    model = _method(data)
    with pytest.raises(ConfigError, match="degenerate"):
        MCEPretrainer(**{**TINY_MCE, "strategy": "B"}).fit(model, data, _context())
    log = MCEPretrainer(**TINY_MCE).fit(model, data, _context())
    assert log["b_degenerate"] and log["strategies_used"] == ["A", "C"]
    assert log["valid_accuracy"]["B"]["accuracy"] is None


def test_mahalanobis_pretraining_stores_the_training_covariance():
    data = _data()
    model = _method(data)
    log = MCEPretrainer(**{**TINY_MCE, "distance": "mahalanobis"}).fit(model, data, _context())
    assert log["covariance_refreshes"] == 3  # before each of 2 epochs + after restoring
    assert not torch.equal(model.evaluator.inv_cov, torch.eye(4))


def test_evaluator_stays_frozen_and_unchanged_in_stage_two():
    data = _data()
    model = _method(data)
    context = _context()
    model.context = context
    MCEPretrainer(**TINY_MCE).fit(model, data, context)
    before = {k: v.clone() for k, v in model.evaluator.state_dict().items()}
    modes = []
    original = model.correlations

    def spy(batch):
        modes.append(model.evaluator.training)
        return original(batch)

    model.correlations = spy
    assert model.evaluator in model.frozen()
    ids = {id(p) for p in model.trainable_parameters()}
    assert not any(id(p) in ids for p in model.evaluator.parameters())
    fit_method(model, data["train"], data["valid"], context)
    assert modes and not any(modes)  # eval mode in every training and validation step
    after = model.evaluator.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_scalings_and_the_correlation_cache():
    data = _data()
    model = _method(data)
    MCEPretrainer(**TINY_MCE).fit(model, data, _context())
    model.eval()
    batch = data["test"].batch(torch.arange(6))
    cor = model.evaluator({m: batch.features[m] for m in DIMS},
                          {m: batch.lengths[m] for m in DIMS})
    cached = model.correlations(batch)  # fills the cache
    assert torch.allclose(model.correlations(batch), torch.stack(list(cor.values()), -1))
    assert torch.allclose(cached, torch.stack(list(cor.values()), -1))
    scale = model.cross_scale(batch)
    assert torch.allclose(scale[("text", "audio")], 1 + cor[("text", "audio")])
    assert torch.allclose(scale[("vision", "audio")], 1 + cor[("audio", "vision")])
    manual = model.head(model.fuse(batch, cross_scale=scale))["pred"]
    assert torch.allclose(model(batch)["pred"], manual)
    model.config["correlation"] = "product"
    assert torch.allclose(model.cross_scale(batch)[("audio", "text")], cor[("text", "audio")])
    model.config["correlation"] = "none"
    assert torch.allclose(model(batch)["pred"], model.head(model.fuse(batch))["pred"])


def test_cormult_without_the_stage_says_what_to_do():
    data = _data()
    model = _method(data)
    with pytest.raises(ConfigError, match="mce"):
        model(data["test"].batch(torch.arange(2)))
    with pytest.raises(ConfigError, match="correlation"):
        _method(data, correlation="sum")


def test_synthetic_mosei_plants_disagreeing_samples():
    from msabench_builtins.datasets.synthetic_mosei import SyntheticMosei

    opts = {"n_train": 40, "n_valid": 20, "n_test": 20, "text_len": 4, "audio_len": 6,
            "vision_len": 6, "weak_fraction": 0.5}
    data = SyntheticMosei(options=opts).load()
    assert data.meta.synthetic and "SYNTHETIC" in data.meta.title
    assert data.info().feature_dims == {"text": 768, "audio": 74, "vision": 35}
    weak = torch.cat([data[s].extras["weak_modality"] for s in ("train", "valid", "test")])
    assert 0.3 < float((weak >= 0).float().mean()) < 0.7 and set(weak.tolist()) <= {-1, 0, 1, 2}
    again = SyntheticMosei(options=opts).load()
    assert torch.equal(again["train"].features["audio"], data["train"].features["audio"])


def test_cormult_end_to_end_on_synthetic_mosei(tmp_path):
    overrides = [f"data.options.{k}={v}" for k, v in {
        "n_train": 32, "n_valid": 16, "n_test": 16, "text_len": 4, "audio_len": 6,
        "vision_len": 6}.items()]
    overrides += [f"model.{k}={v}" for k, v in TINY_MULT.items()]
    overrides += [f"pretrain.mce.{k}={v}" for k, v in TINY_MCE.items() if k != "epochs"]
    [o] = run(RunSpec(method="cormult", dataset="synthetic-mosei", epochs=2, out=tmp_path,
                      overrides=overrides, quiet=True))
    res = json.loads(o.path.read_text())
    mce = res["pretraining"]["mce"]
    assert len(mce["history"]) == 2 and res["synthetic"]
    assert set(mce["test_correlations"]) == {"text-audio", "text-vision", "audio-vision"}
    assert res["parameters"]["total"] > res["parameters"]["trainable"]  # the frozen MCE
    assert res["metrics"]["test"]["mae"] is not None


@pytest.mark.realdata
@pytest.mark.slow
def test_cormult_on_real_mosi_detects_the_degenerate_shift(tmp_path):
    path = real_data("mosi/mosi_utt.npz")
    overrides = ["data.setting=utt-bclstm", "pretrain.mce.epochs=1", "train.epochs=1"]
    [o] = run(RunSpec(method="cormult", dataset="mosi", overrides=overrides,
                      data_dir=path.parent, out=tmp_path, quiet=True), registry=get_registry())
    res = json.loads(o.path.read_text())
    mce = res["pretraining"]["mce"]
    assert mce["b_degenerate"] and mce["strategies_used"] == ["A", "C"]
    assert res["metrics"]["test"]["acc2_non0"] > 0.6
    assert not math.isnan(mce["best_valid_loss"])


def test_only_cormult_without_correlation_scaling_can_leave_a_modality_out():
    """The correlation evaluator reads every modality, so with scaling on no modality is
    droppable and ``without`` refuses, naming it; with ``correlation = none`` (plain MulT) a
    left-out modality's inputs no longer matter."""
    data = _data()
    scaled = _method(data)
    assert scaled.droppable_modalities() == set()
    with pytest.raises(ValueError, match="cormult cannot leave audio out of its fusion"):
        with scaled.without({"audio"}):
            pass
    plain = _method(data, correlation="none").eval()
    assert plain.droppable_modalities() == set(data.info().modalities)
    batch = data["test"].batch(torch.arange(6))
    noisy = batch.features["audio"] + 5 * torch.randn_like(batch.features["audio"])
    other = dataclasses.replace(batch, features={**batch.features, "audio": noisy})
    with torch.no_grad():
        full = plain(batch)["pred"]
        with plain.without({"audio"}):
            dropped, again = plain(batch)["pred"], plain(other)["pred"]
    assert torch.equal(dropped, again)
    assert not torch.allclose(dropped, full)
