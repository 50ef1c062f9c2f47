"""Run-level preprocessing: train-only normalisation, pad/truncate, stratified label masking,
and their wiring into the runner, the config and ``msabench run``."""

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import msabench.runner as runner_mod
from msabench import config as cfg
from msabench import preprocess
from msabench.api import DatasetMeta, LoadedDataset, SplitData
from msabench.errors import ConfigError
from msabench.runner import Progress, RunSpec, run
from tests import all_hooks_plugin

QUIET = Progress(quiet=True)
META = DatasetMeta(name="toy-pre", title="toy", language="none", label_range=(-3.0, 3.0),
                   convention="mosi", modalities=("text", "audio"))


def _split(n, seed, prefix):
    g = torch.Generator().manual_seed(seed)
    text = torch.randn(n, 6, 4, generator=g) * 3 + 2
    text[:, :, 3] = 5.0  # constant on train (and, below, different on test)
    audio = torch.rand(n, 4, 2, generator=g) * 10 - 1
    lens_t = torch.randint(1, 7, (n,), generator=g)
    lens_a = torch.randint(1, 5, (n,), generator=g)
    # padded steps hold non-zero garbage here: statistics must ignore them, outputs zero them
    labels = (torch.rand(n, generator=g) * 6 - 3).clamp(-3, 3)
    return SplitData(ids=[f"{prefix}{i}" for i in range(n)],
                     features={"text": text, "audio": audio},
                     lengths={"text": lens_t, "audio": lens_a}, labels=labels,
                     unimodal={"text": labels.clone()})


@pytest.fixture
def toy():
    splits = {"train": _split(40, 1, "tr"), "valid": _split(12, 2, "va"),
              "test": _split(15, 3, "te")}
    splits["test"].features["text"][:, :, 3] = 7.0
    return LoadedDataset(META, "default", splits, source="memory")


def _valid_rows(split, m):
    x, lens = split.features[m].numpy().astype(np.float64), split.lengths[m].numpy()
    mask = np.arange(x.shape[1])[None, :] < lens[:, None]
    return x, mask


def _np_zscore(train_rows, rows):
    mean, std = train_rows.mean(0), train_rows.std(0)
    std = np.where(train_rows.max(0) == train_rows.min(0), 1.0, std)
    return (rows - mean) / std


def _np_minmax(train_rows, rows):
    lo, hi = train_rows.min(0), train_rows.max(0)
    rng = np.where(hi == lo, 1.0, hi - lo)
    return (rows - lo) / rng


def _check_against_numpy(data, out, transform):
    for m in data.modalities:
        tx, tmask = _valid_rows(data["train"], m)
        train_rows = tx[tmask]
        for name in ("train", "valid", "test"):
            x, mask = _valid_rows(data[name], m)
            got = out[name].features[m].numpy()
            np.testing.assert_allclose(got[mask], transform(train_rows, x[mask]),
                                       rtol=1e-5, atol=1e-5)
            assert np.all(got[~mask] == 0), f"{name}/{m}: padded steps must stay 0"


def test_zscore_uses_train_statistics_only(toy):
    before = {m: toy["valid"].features[m].clone() for m in toy.modalities}
    out = preprocess.normalize(toy, "zscore")
    _check_against_numpy(toy, out, _np_zscore)
    # train valid steps are standardised; valid/test are not (they used train statistics)
    x, mask = _valid_rows(out["train"], "audio")
    np.testing.assert_allclose(x[mask].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(x[mask].std(0), 1, atol=1e-5)
    vx, vmask = _valid_rows(out["valid"], "audio")
    assert not np.allclose(vx[vmask].mean(0), 0, atol=1e-3)
    for m in toy.modalities:  # inputs untouched
        assert torch.equal(toy["valid"].features[m], before[m])
    assert out["train"].ids == toy["train"].ids and out["train"].labels is toy["train"].labels


def test_constant_dimensions_do_not_divide_by_zero(toy):
    for scheme in ("zscore", "minmax", "minmax-zscore"):
        out = preprocess.normalize(toy, scheme)
        for name in ("train", "valid", "test"):
            assert bool(torch.isfinite(out[name].features["text"]).all()), (scheme, name)
        x, mask = _valid_rows(out["train"], "text")
        assert np.all(x[mask][:, 3] == 0)
        tx, tmask = _valid_rows(out["test"], "text")
        assert np.allclose(tx[tmask][:, 3], 2.0)  # offset from the train value, unscaled
    stats = preprocess.split_stats(toy["train"], "text")
    assert stats.constant.tolist() == [False, False, False, True]


def test_minmax_and_minmax_zscore_match_numpy(toy):
    out = preprocess.normalize(toy, "minmax")
    _check_against_numpy(toy, out, _np_minmax)
    x, mask = _valid_rows(out["train"], "audio")
    np.testing.assert_allclose(x[mask].min(0), 0, atol=1e-6)
    np.testing.assert_allclose(x[mask].max(0), 1, atol=1e-6)

    def composed(train_rows, rows):
        return _np_zscore(_np_minmax(train_rows, train_rows), _np_minmax(train_rows, rows))

    both = preprocess.normalize(toy, "minmax-zscore")
    _check_against_numpy(toy, both, composed)
    # z-scores are invariant to the (positive, affine) min-max step: same as zscore alone
    z = preprocess.normalize(toy, "zscore")
    for name in ("train", "test"):
        torch.testing.assert_close(both[name].features["audio"], z[name].features["audio"],
                                   rtol=1e-4, atol=1e-4)


def test_none_is_identity_and_bad_scheme_is_config_error(toy):
    assert preprocess.normalize(toy, "none") is toy
    with pytest.raises(ConfigError, match="data.normalize='z'"):
        preprocess.normalize(toy, "z")


def test_pad_truncate_shapes_and_lengths(toy):
    out = preprocess.pad_truncate(toy, 3)
    for name in ("train", "valid", "test"):
        src, dst = toy[name], out[name]
        assert dst.features["text"].shape[1:] == (3, 4)  # truncated from 6
        assert dst.features["audio"].shape[1:] == (3, 2)  # truncated from 4
        assert torch.equal(dst.features["text"], src.features["text"][:, :3])
        assert torch.equal(dst.lengths["text"], src.lengths["text"].clamp(max=3))
    padded = preprocess.pad_truncate(toy, {"text": 9})
    x = padded["train"].features["text"]
    assert x.shape[1:] == (9, 4) and bool((x[:, 6:] == 0).all())
    assert torch.equal(x[:, :6], toy["train"].features["text"])
    assert torch.equal(padded["train"].lengths["text"], toy["train"].lengths["text"])
    assert padded["train"].features["audio"] is toy["train"].features["audio"]
    assert padded.info().max_lengths == {"text": 9, "audio": 4}
    assert preprocess.pad_truncate(toy, None) is toy
    assert preprocess.pad_truncate(toy, {"vision": 5})["train"].features.keys() == {"text", "audio"}
    for bad in (0, -2, 2.5, {"txt": 3}, {"text": "3"}, True):
        with pytest.raises(ConfigError):
            preprocess.pad_truncate(toy, bad)


def _labelled_split(n_neg=70, n_pos=130, seed=0):
    g = torch.Generator().manual_seed(seed)
    neg = -torch.rand(n_neg, generator=g) * 3 - 0.01
    pos = torch.rand(n_pos, generator=g) * 3
    pos[:10] = 0.0  # zero counts as non-negative
    labels = torch.cat([neg, pos])[torch.randperm(n_neg + n_pos, generator=g)]
    n = len(labels)
    return SplitData(ids=[f"s{i}" for i in range(n)], features={"text": torch.randn(n, 3, 2)},
                     lengths={"text": torch.full((n,), 3)}, labels=labels,
                     unimodal={"audio": labels * 0.5})


def test_mask_labels_exact_count_and_stratified():
    split = _labelled_split()
    for fraction in (0.4, 0.1, 0.55, 0.999):
        masked = preprocess.mask_labels(split, fraction, seed=3)
        assert int(masked.labelled.sum()) == round(fraction * 200)
        for cls, size in ((0, 70), (1, 130)):
            in_class = preprocess.class_of(split.labels) == cls
            kept = int((masked.labelled & in_class).sum())
            assert abs(kept - fraction * size) <= 1, (fraction, cls, kept)


def test_mask_labels_deterministic_per_seed_and_seeds_differ():
    split = _labelled_split()
    a = preprocess.mask_labels(split, 0.4, seed=1)
    b = preprocess.mask_labels(split, 0.4, seed=1)
    c = preprocess.mask_labels(split, 0.4, seed=2)
    assert torch.equal(a.labelled, b.labelled)
    assert not torch.equal(a.labelled, c.labelled)


def test_hidden_labels_are_nan_and_supervised_subset_is_labelled_only():
    split = _labelled_split()
    masked = preprocess.mask_labels(split, 0.4, seed=5)
    hidden = ~masked.labelled
    assert bool(torch.isnan(masked.labels[hidden]).all())
    assert bool(torch.isnan(masked.unimodal["audio"][hidden]).all())
    assert torch.equal(masked.labels[masked.labelled], split.labels[masked.labelled])
    assert masked.features["text"] is split.features["text"]  # shared, not copied
    assert bool(split.labelled.all()) and not bool(torch.isnan(split.labels).any())
    sup = masked.subset(torch.nonzero(masked.labelled).flatten())
    assert len(sup) == 80 and bool(sup.labelled.all()) and bool(torch.isfinite(sup.labels).all())


def test_mask_labels_edge_cases():
    split = _labelled_split(n_neg=1, n_pos=9)
    masked = preprocess.mask_labels(split, 0.3, seed=0)
    assert int(masked.labelled.sum()) == 3
    assert bool(masked.labelled[split.labels < 0].all())  # the lone negative keeps its label
    assert preprocess.mask_labels(split, 1.0, seed=0) is split
    assert int(preprocess.mask_labels(split, 0.01, seed=0).labelled.sum()) == 1
    for bad in (0, 0.0, -0.1, 1.5, "half", True):
        with pytest.raises(ConfigError, match="label_fraction"):
            preprocess.mask_labels(split, bad, seed=0)


# ---- wiring: config, runner, CLI -------------------------------------------------------------

def _spec(tmp_path, **kw):
    base = dict(method="toy-linear", dataset="toy-data", out=tmp_path / "results", quiet=True,
                epochs=2)
    base.update(kw)
    return RunSpec(**base)


def test_default_data_keys_keep_the_config_hash():
    config = {"train": {"lr": 1.0}, "data": {"setting": "x", "modalities": None, "options": {}}}
    with_new = {**config, "data": {**config["data"], "normalize": "none", "max_length": None,
                                   "label_fraction": 1.0, "label_seed": None}}
    assert cfg.config_hash(with_new) == cfg.config_hash(config)
    changed = {**with_new, "data": {**with_new["data"], "label_fraction": 0.4}}
    assert cfg.config_hash(changed) != cfg.config_hash(config)


def test_bad_preprocessing_values_fail_before_loading(registry, tmp_path):
    for override, message in (("data.normalize=l2", "data.normalize"),
                              ("data.label_fraction=0", "label_fraction"),
                              ("data.max_length=-1", "max_length"),
                              ("data.lable_fraction=0.5", "Did you mean data.label_fraction")):
        with pytest.raises(ConfigError, match=message):
            run(_spec(tmp_path, overrides=[override]), registry=registry, progress=QUIET)


def test_label_fraction_run_records_and_pretrainer_sees_nan(registry, tmp_path, monkeypatch):
    seen = []
    fit = all_hooks_plugin.CentreInputs.fit

    def spy(self, model, data, context):
        train = data["train"]
        seen.append((int(torch.isnan(train.labels).sum()), int((~train.labelled).sum())))
        return fit(self, model, data, context)

    monkeypatch.setattr(all_hooks_plugin.CentreInputs, "fit", spy)
    [o] = run(_spec(tmp_path, overrides=["data.label_fraction=0.5",
                                         'pretrain.stages=["toy-centre"]']),
              registry=registry, progress=QUIET)
    res = json.loads(o.path.read_text())
    assert res["config"]["data"]["label_fraction"] == 0.5
    assert res["labelled_train"] == 96
    pre = res["preprocessing"]
    assert pre["label_fraction"] == 0.5 and pre["labelled"] == 96 and pre["total"] == 192
    assert pre["label_seed"] == 1111  # null label_seed -> the run seed
    assert pre["labelled_negative"] + pre["labelled_non_negative"] == 96
    assert res["pretraining"]["toy-centre"]["samples_seen"] == 192
    assert res["pretraining"]["toy-centre"]["hidden_labels_seen"] == 96
    assert seen == [(96, 96)]  # every hidden label the pretrainer could read is NaN


def test_seeds_share_features_and_mask_per_seed(registry, tmp_path, monkeypatch):
    captured = []
    real = runner_mod.run_seed

    def spy(plan, spec, data, seed, registry, progress):
        captured.append(preprocess.for_seed(data, plan.config["data"], seed)[0])
        return real(plan, spec, data, seed, registry, progress)

    monkeypatch.setattr(runner_mod, "run_seed", spy)
    cls = registry.load("dataset", "toy-data")
    loads = []
    original = cls.load
    monkeypatch.setattr(cls, "load", lambda self: loads.append(1) or original(self))
    run(_spec(tmp_path, seeds=[1, 2], overrides=["data.label_fraction=0.25"]),
        registry=registry, progress=QUIET)
    assert len(loads) == 1
    a, b = (d["train"] for d in captured)
    assert a.features["text"] is b.features["text"]
    assert int(a.labelled.sum()) == int(b.labelled.sum()) == 48
    assert not torch.equal(a.labelled, b.labelled)
    captured.clear()
    run(_spec(tmp_path, seeds=[1, 2], out=tmp_path / "fixed",
              overrides=["data.label_fraction=0.25", "data.label_seed=9"]),
        registry=registry, progress=QUIET)
    assert torch.equal(captured[0]["train"].labelled, captured[1]["train"].labelled)


def test_normalise_and_max_length_in_a_run(registry, tmp_path):
    [o] = run(_spec(tmp_path, overrides=['data.normalize="zscore"', "data.max_length.text=3"]),
              registry=registry, progress=QUIET)
    res = json.loads(o.path.read_text())
    pre = res["preprocessing"]
    assert pre["normalize"] == "zscore" and pre["statistics"] == "train split, 192 samples"
    assert pre["max_length"] == {"text": 3} and pre["label_fraction"] == 1.0
    assert res["labelled_train"] == 192 and math.isfinite(o.test["mae"])


def test_run_command_flags(registry, tmp_path):
    from msabench.cli import make_app

    out = tmp_path / "results"
    args = ["run", "-m", "toy-linear", "-d", "toy-data", "--epochs", "2", "--quiet",
            "--out", str(out), "--label-fraction", "0.5", "--normalize", "minmax-zscore",
            "--max-length", "4"]
    result = CliRunner().invoke(make_app(), args)
    assert result.exit_code == 0, result.output
    [path] = out.rglob("seed-*.json")
    data = json.loads(path.read_text())["config"]["data"]
    assert (data["label_fraction"], data["normalize"], data["max_length"]) == (0.5, "minmax-zscore", 4)
    bad = CliRunner().invoke(make_app(), args[:-6] + ["--label-fraction", "1.5"])
    assert bad.exit_code == 2 and "label_fraction" in bad.output


def test_validation_is_as_labelled_as_train_by_default(registry, tmp_path, monkeypatch):
    """data.valid_label_fraction: unset = the train fraction (model selection sees no more
    labels than the protocol claims); 1.0 = the old behaviour, as its own variant."""
    import msabench.training as training

    seen = []
    evaluate = training.evaluate

    def spy(model, split, *args, **kwargs):
        seen.append((len(split), int(split.labelled.sum()), int(torch.isnan(split.labels).sum())))
        return evaluate(model, split, *args, **kwargs)

    monkeypatch.setattr(training, "evaluate", spy)
    [o] = run(_spec(tmp_path, epochs=None, overrides=["data.label_fraction=0.5"]),
              registry=registry, progress=QUIET)
    res = json.loads(o.path.read_text())
    assert res["variant"] == "lf0.5"
    pre = res["preprocessing"]
    assert pre["valid_label_fraction"] == 0.5 and pre["valid_labelled"] == 32
    valid_calls = [s for s in seen if s[0] == 64 and s[1] == 32]
    assert valid_calls and all(nan == 32 for _, _, nan in valid_calls)
    assert res["metrics"]["valid"]["mae"] is not None  # scored on the 32 labelled rows
    assert res["split_sizes"]["test"] == 64 and (64, 64, 0) in seen  # test stays whole
    [old] = run(_spec(tmp_path, epochs=None, overrides=["data.label_fraction=0.5",
                                           "data.valid_label_fraction=1.0"]),
                registry=registry, progress=QUIET)
    old_res = json.loads(old.path.read_text())
    assert old_res["variant"] == "lf0.5_vlf1" and "valid_label_fraction" not in old_res[
        "preprocessing"]
    assert old_res["config_hash"] != res["config_hash"]


def test_results_made_before_valid_label_fraction_do_not_pass_for_the_new_protocol():
    old = {"train": {"lr": 1.0}, "data": {"setting": "x", "modalities": None, "options": {},
                                          "label_fraction": 0.4}}
    new = {**old, "data": {**old["data"], "valid_label_fraction": None}}
    explicit_old = {**old, "data": {**old["data"], "valid_label_fraction": 1.0}}
    assert cfg.config_hash(new) == cfg.config_hash(old)  # None resolves to the train fraction
    assert cfg.config_hash(explicit_old) != cfg.config_hash(new)
    full = {"train": {"lr": 1.0}, "data": {"setting": "x", "modalities": None, "options": {}}}
    assert cfg.config_hash({**full, "data": {**full["data"], "valid_label_fraction": None}}) \
        == cfg.config_hash(full)  # fully labelled runs keep their identity
