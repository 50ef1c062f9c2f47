"""The utterance-archive reader (``archive.py``) and the embedded ``synthetic-mosi`` dataset."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from msabench.api.dataset import DatasetMeta
from msabench.errors import DataError
from msabench_builtins.datasets import synthetic as synthetic_mod
from msabench_builtins.datasets.archive import load_archive, save_archive
from msabench_builtins.datasets.synthetic import MOSI_LABEL_HISTOGRAM, SyntheticMosi

META = DatasetMeta(name="test-archive", title="archive test data", language="en",
                   label_range=(-3.0, 3.0), convention="mosi")
MOSI_UTT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mosi" / "mosi_utt.npz"


def real_data_file(path: Path) -> Path:
    """``path`` if present; otherwise skip, or fail when MSABENCH_REQUIRE_DATA=1 (CI)."""
    if not path.exists():
        if os.environ.get("MSABENCH_REQUIRE_DATA") == "1":
            pytest.fail(f"{path} is missing but MSABENCH_REQUIRE_DATA=1 (CI must run real-data tests)")
        pytest.skip(f"real data {path} not available (set MSABENCH_REQUIRE_DATA=1 to fail instead)")
    return path


# --------------------------------------------------------------------------------------------
# a small archive written with plain numpy

def small_arrays(n_train: int = 6, n_valid: int = 3, n_test: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    n = n_train + n_valid + n_test
    split = np.array(["train"] * n_train + ["valid"] * n_valid + ["test"] * n_test)
    # interleave the splits so the reader has to gather rows, not slice them
    order = np.argsort(np.arange(n) % 3, kind="stable")
    split = split[order]
    return {
        "ids": np.array([f"vid{i // 2}_{i % 2 + 1}" for i in range(n)]),
        "video": np.array([f"vid{i // 2}" for i in range(n)]),
        "label": np.linspace(-3, 3, n),
        "split": split,
        "sentence": np.array([f"sentence number {i}" for i in range(n)]),
        "text": rng.standard_normal((n, 4, 3)).astype(np.float32),
        "text_lengths": (np.arange(n) % 4 + 1).astype(np.int32),
        "audio": rng.standard_normal((n, 2)),  # utterance-level, float64
        "vision": rng.standard_normal((n, 5, 2)).astype(np.float32),  # no lengths: full T
        "label_T": np.linspace(-1, 1, n),
        "label_A": np.zeros(n),
        "label_V": np.ones(n),
    }


def write(tmp_path: Path, arrays: dict[str, np.ndarray], name: str = "data.npz") -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_archive_round_trip(tmp_path):
    arrays = small_arrays()
    path = write(tmp_path, arrays)
    data = load_archive(path, meta=META, setting="default")
    assert data.sizes() == {"train": 6, "valid": 3, "test": 3}
    assert data.modalities == ("text", "audio", "vision")
    assert str(path) in data.source and data.notes == []
    for name, split in data.splits.items():
        rows = np.flatnonzero(arrays["split"] == name)
        n = len(rows)
        assert split.ids == arrays["ids"][rows].tolist()
        assert split.texts == arrays["sentence"][rows].tolist()
        assert split.features["text"].shape == (n, 4, 3)
        assert split.features["audio"].shape == (n, 1, 2)
        assert split.features["vision"].shape == (n, 5, 2)
        for m in split.features:
            assert split.features[m].dtype == torch.float32
            assert split.lengths[m].dtype == torch.int64
        assert split.lengths["text"].tolist() == arrays["text_lengths"][rows].tolist()
        assert split.lengths["audio"].tolist() == [1] * n
        assert split.lengths["vision"].tolist() == [5] * n
        np.testing.assert_allclose(split.features["text"].numpy(), arrays["text"][rows])
        np.testing.assert_allclose(split.features["audio"][:, 0].numpy(), arrays["audio"][rows],
                                   rtol=1e-6)
        np.testing.assert_allclose(split.labels.numpy(), arrays["label"][rows], rtol=1e-6)
        assert split.labels.dtype == torch.float32
        assert set(split.unimodal) == {"text", "audio", "vision"}
        np.testing.assert_allclose(split.unimodal["text"].numpy(), arrays["label_T"][rows],
                                   rtol=1e-6)
        assert split.unimodal["vision"].tolist() == [1.0] * n
    info = data.info()
    assert info.has_texts and info.has_unimodal_labels and not info.aligned


def test_archive_modality_mapping_and_bytes_strings(tmp_path):
    arrays = small_arrays()
    arrays["ids"] = np.char.encode(arrays["ids"], "utf-8")  # |S ids are decoded
    arrays["feats"] = arrays.pop("vision")
    path = write(tmp_path, arrays)
    data = load_archive(path, meta=META, setting="default", modalities={"vision": "feats"})
    assert data.modalities == ("vision",)
    assert data["train"].ids[0] == "vid0_1"
    with pytest.raises(DataError, match=r"missing key 'nope' \(modality 'text'\)"):
        load_archive(path, meta=META, setting="default", modalities={"text": "nope"})


def test_save_archive_is_deterministic_and_atomic(tmp_path):
    arrays = small_arrays()
    a = save_archive(tmp_path / "a" / "x.npz", arrays)
    b = save_archive(tmp_path / "b" / "x.npz", arrays)
    assert a.read_bytes() == b.read_bytes()
    assert os.listdir(tmp_path / "a") == ["x.npz"]  # no temporary file left behind
    with np.load(a, allow_pickle=False) as z:
        assert z.files == list(arrays)
        np.testing.assert_array_equal(z["text"], arrays["text"])
    data = load_archive(a, meta=META, setting="default")
    assert data.sizes()["train"] == 6
    with pytest.raises(DataError, match="object array"):
        save_archive(tmp_path / "o.npz", {"ids": np.array(["a", None], dtype=object)})


# --------------------------------------------------------------------------------------------
# validation errors: each names the file, the key and the fix

def load_broken(tmp_path: Path, **changes):
    arrays = small_arrays()
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    path = write(tmp_path, arrays)
    return path, (lambda **kw: load_archive(path, meta=META, setting="default", **kw))


def test_missing_file_says_where_it_looked(tmp_path):
    path = tmp_path / "nowhere" / "mosi_utt.npz"
    with pytest.raises(DataError) as err:
        load_archive(path, meta=META, setting="default")
    msg = str(err.value)
    assert str(path.resolve()) in msg and "not found" in msg and "does not exist" in msg


def test_not_a_zip(tmp_path):
    path = tmp_path / "fake.npz"
    path.write_text("hello, not a zip")
    with pytest.raises(DataError, match=r"fake\.npz: not an \.npz archive"):
        load_archive(path, meta=META, setting="default")
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(DataError, match="not an .npz"):
        load_archive(single, meta=META, setting="default")


@pytest.mark.parametrize("key", ["ids", "label", "split"])
def test_missing_required_key_lists_keys_present(tmp_path, key):
    path, load = load_broken(tmp_path, **{key: None})
    with pytest.raises(DataError) as err:
        load()
    msg = str(err.value)
    assert str(path) in msg and f"missing required key {key!r}" in msg
    assert "keys present:" in msg and "text" in msg


def test_missing_split_key_names_the_alternatives(tmp_path):
    arrays = small_arrays()
    arrays["split_other"] = arrays["split"]
    path = write(tmp_path, arrays)
    with pytest.raises(DataError, match=r"missing required key 'split_x' \(split keys present: "
                                        r"split, split_other"):
        load_archive(path, meta=META, setting="default", split_key="split_x")


def test_inconsistent_n(tmp_path):
    arrays = small_arrays()
    path, load = load_broken(tmp_path, audio=arrays["audio"][:-1])
    with pytest.raises(DataError) as err:
        load()
    msg = str(err.value)
    assert str(path) in msg and "'audio' has 11 rows" in msg and "'ids' has 12" in msg


def test_unknown_split_values(tmp_path):
    split = small_arrays()["split"].copy()
    split[split == "valid"] = "dev"
    path, load = load_broken(tmp_path, split=split)
    with pytest.raises(DataError) as err:
        load()
    msg = str(err.value)
    assert str(path) in msg and "key 'split'" in msg and "'dev'" in msg and "valid" in msg


def test_no_valid_split_needs_valid_from_train(tmp_path):
    split = small_arrays()["split"].copy()
    split[split == "valid"] = "train"
    path, load = load_broken(tmp_path, split=split)
    with pytest.raises(DataError, match=r"key 'split' has no 'valid' samples; pass valid_from_train"):
        load()


@pytest.mark.parametrize("bad, shown", [(5, "5"), (0, "0"), (-1, "-1")])
def test_lengths_out_of_range(tmp_path, bad, shown):
    lengths = small_arrays()["text_lengths"].copy()
    lengths[4] = bad
    path, load = load_broken(tmp_path, text_lengths=lengths)
    with pytest.raises(DataError) as err:
        load()
    msg = str(err.value)
    assert str(path) in msg and "'text_lengths'" in msg and "outside [1, 4]" in msg
    assert f"first: {shown} at sample 'vid2_1'" in msg and "split" in msg


def test_minus_inf_replaced_and_noted(tmp_path):
    audio = small_arrays()["audio"].copy()
    audio[0, 0] = audio[3, 1] = audio[5, 0] = -np.inf
    _, load = load_broken(tmp_path, audio=audio)
    data = load()
    assert any("'audio'" in note and "replaced 3 -inf" in note for note in data.notes)
    feats = torch.cat([data[s].features["audio"] for s in ("train", "valid", "test")])
    assert bool(torch.isfinite(feats).all()) and int((feats == 0).sum()) == 3


def test_nan_refused_with_count_and_key(tmp_path):
    vision = small_arrays()["vision"].copy()
    vision[2, 1, :] = np.nan
    path, load = load_broken(tmp_path, vision=vision)
    with pytest.raises(DataError) as err:
        load()
    msg = str(err.value)
    assert str(path) in msg and "'vision' has 2 NaN" in msg and "vid1_1" in msg


def test_nan_and_inf_labels_refused(tmp_path):
    label = small_arrays()["label"].copy()
    label[1] = np.nan
    _, load = load_broken(tmp_path, label=label)
    with pytest.raises(DataError, match=r"key 'label' has 1 NaN label"):
        load()


def test_labels_outside_range(tmp_path):
    label = small_arrays()["label"] * 2
    path, load = load_broken(tmp_path, label=label)
    with pytest.raises(DataError) as err:
        load()
    msg = str(err.value)
    assert str(path) in msg and "key 'label'" in msg and "outside the dataset range [-3.0, 3.0]" in msg
    label_v = small_arrays()["label_V"] * 4
    _, load = load_broken(tmp_path, label_V=label_v)
    with pytest.raises(DataError, match="key 'label_V' has 12 label"):
        load()


def test_duplicate_ids(tmp_path):
    ids = small_arrays()["ids"].copy()
    ids[7] = ids[2]
    path, load = load_broken(tmp_path, ids=ids)
    with pytest.raises(DataError) as err:
        load()
    msg = str(err.value)
    assert str(path) in msg and "key 'ids' has 1 duplicate" in msg and repr(str(ids[2])) in msg
    assert "of split key 'split'" in msg


def test_object_arrays_refused_and_pickle_never_allowed(tmp_path, monkeypatch):
    calls = []
    real_read = np.lib.format.read_array

    def spy(*args, **kwargs):  # every member is read by numpy's read_array (safe_npz.SafeNpz)
        calls.append(kwargs.get("allow_pickle"))
        return real_read(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "read_array", spy)
    sentence = np.array(["a sentence"] * 12, dtype=object)
    path, load = load_broken(tmp_path, sentence=sentence)
    with pytest.raises(DataError) as err:
        load()
    msg = str(err.value)
    assert str(path) in msg and "'sentence'" in msg and "never unpickles" in msg
    assert calls and set(calls) == {False}  # the object array itself is refused unread


def test_carve_valid_by_video(tmp_path):
    arrays = small_arrays(n_train=40, n_valid=0, n_test=8)
    n = len(arrays["ids"])
    arrays["ids"] = np.array([f"v{i // 4}_{i % 4 + 1}" for i in range(n)])
    arrays["video"] = np.array([f"v{i // 4}" for i in range(n)])
    arrays["split"] = np.array(["train"] * 40 + ["test"] * 8)
    arrays["text_lengths"] = np.ones(n, dtype=np.int64)
    path = write(tmp_path, arrays)
    data = load_archive(path, meta=META, setting="default", valid_from_train=0.2, seed=3)
    assert data.sizes() == {"train": 32, "valid": 8, "test": 8}  # 2 of 10 train videos
    vids = {s: {i.rsplit("_", 1)[0] for i in data[s].ids} for s in ("train", "valid")}
    assert not vids["train"] & vids["valid"]
    assert any("2 of 10 train videos" in note for note in data.notes)
    again = load_archive(path, meta=META, setting="default", valid_from_train=0.2, seed=3)
    assert again["valid"].ids == data["valid"].ids
    other = load_archive(path, meta=META, setting="default", valid_from_train=0.2, seed=4)
    assert other.sizes()["valid"] == 8
    # without a video key: by sample, and the note says so
    arrays.pop("video")
    path = write(tmp_path, arrays, "novideo.npz")
    data = load_archive(path, meta=META, setting="default", valid_from_train=0.25)
    assert data.sizes() == {"train": 30, "valid": 10, "test": 8}
    assert any("by sample" in note for note in data.notes)
    with pytest.raises(DataError, match="strictly between 0 and 1"):
        load_archive(path, meta=META, setting="default", valid_from_train=1.5)


def test_unknown_setting(tmp_path):
    path = write(tmp_path, small_arrays())
    with pytest.raises(DataError, match="no setting 'aligned'"):
        load_archive(path, meta=META, setting="aligned")


# --------------------------------------------------------------------------------------------
# synthetic-mosi

SMALL = {"n_train": 120, "n_valid": 40, "n_test": 60, "text_dim": 16, "audio_dim": 5,
         "vision_dim": 6, "text_len": 10, "audio_len": 20, "vision_len": 24}
HIST_VALUES = np.array(sorted(MOSI_LABEL_HISTOGRAM), dtype=np.float32)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("MSABENCH_CACHE_DIR", str(path))
    return path


def synth(setting: str = "unaligned", **options) -> SyntheticMosi:
    return SyntheticMosi(setting=setting, options={**SMALL, **options})


def all_rows(data, what):
    return torch.cat([getattr(data[s], what) for s in ("train", "valid", "test")])


def test_synthetic_meta():
    meta = SyntheticMosi.meta
    assert meta.synthetic and "SYNTHETIC" in meta.title and meta.convention == "mosi"
    assert meta.settings == ("unaligned", "aligned") and meta.default_setting == "unaligned"
    assert meta.split_sizes == (1284, 229, 686) and meta.label_range == (-3.0, 3.0)
    assert SyntheticMosi.defaults["text_dim"] == 768 and SyntheticMosi.defaults["cache"] is True
    assert SyntheticMosi().setting == "unaligned"


@pytest.mark.parametrize("setting", ["unaligned", "aligned"])
def test_synthetic_shapes_and_cache(cache_dir, setting):
    ds = synth(setting)
    data = ds.load()
    path = ds.cache_path()
    assert path.is_file() and path.parent == cache_dir / "synthetic"
    assert data.meta.synthetic and data.setting == setting and path.name in data.source
    assert data.sizes() == {"train": 120, "valid": 40, "test": 60}
    steps = ({"text": 10, "audio": 20, "vision": 24} if setting == "unaligned"
             else {"text": 10, "audio": 10, "vision": 10})
    dims = {"text": 16, "audio": 5, "vision": 6}
    train = data["train"]
    for m in ("text", "audio", "vision"):
        assert train.features[m].shape == (120, steps[m], dims[m])
        assert train.features[m].dtype == torch.float32
        lens = train.lengths[m]
        assert int(lens.min()) >= 1 and int(lens.max()) <= steps[m]
        assert len(set(lens.tolist())) > 3  # lengths vary per sample
        pad = torch.arange(steps[m])[None, :] >= lens[:, None]
        assert bool((train.features[m][pad] == 0).all())
        assert bool((train.features[m][~pad] != 0).all())
    info = data.info()
    assert info.aligned == (setting == "aligned") and info.has_texts
    if setting == "aligned":
        assert torch.equal(train.lengths["text"], train.lengths["audio"])
    assert train.texts[0].startswith("synthetic sample ")
    # labels come from the MOSI histogram only
    labels = all_rows(data, "labels")
    assert bool(torch.isin(labels, torch.from_numpy(HIST_VALUES)).all())
    assert len(set(labels.tolist())) > 10
    # the second load reuses the cache: no rewrite
    mtime = path.stat().st_mtime_ns
    again = synth(setting)
    assert again.cache_path() == path
    data2 = again.load()
    assert path.stat().st_mtime_ns == mtime
    for s in ("train", "valid", "test"):
        assert data2[s].ids == data[s].ids
        for m in data[s].features:
            assert torch.equal(data2[s].features[m], data[s].features[m])
        assert torch.equal(data2[s].labels, data[s].labels)


def test_synthetic_deterministic_byte_equal(tmp_path, monkeypatch):
    paths = []
    for sub in ("one", "two"):
        monkeypatch.setenv("MSABENCH_CACHE_DIR", str(tmp_path / sub))
        ds = synth()
        ds.load()
        paths.append(ds.cache_path())
    assert paths[0] != paths[1] and paths[0].name == paths[1].name
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert sorted(os.listdir(paths[0].parent)) == [paths[0].name]  # no stray temporary files
    with zipfile.ZipFile(paths[0]) as zf:
        assert {"ids.npy", "video.npy", "split.npy", "sentence.npy",
                "text_lengths.npy"} <= set(zf.namelist())


def test_synthetic_cache_reused_not_rewritten(cache_dir, monkeypatch):
    synth().load()
    monkeypatch.setattr(synthetic_mod, "save_archive",
                        lambda *a, **k: pytest.fail("cache was rewritten"))
    synth().load()


def test_synthetic_options_change_the_key_and_the_data(cache_dir):
    base = synth()
    assert synth(generator_seed=1).cache_path() != base.cache_path()
    assert synth(setting="aligned").cache_path() != base.cache_path()
    assert synth(cache=False).cache_key() == base.cache_key()  # cache is not part of the key
    a, b = base.load(), synth(generator_seed=1).load()
    assert not torch.equal(a["train"].labels, b["train"].labels)
    # same generator seed: same samples and labels in both settings
    c = synth(setting="aligned").load()
    assert c["test"].ids == a["test"].ids and torch.equal(c["test"].labels, a["test"].labels)


def test_synthetic_no_cache_writes_nothing(cache_dir):
    data = synth(cache=False).load()
    assert data.sizes()["train"] == 120 and "not cached" in data.source
    assert not cache_dir.exists()


def test_synthetic_bad_options(cache_dir):
    with pytest.raises(DataError, match="unknown option"):
        SyntheticMosi(options={"n_trian": 3})
    with pytest.raises(DataError, match="option text_dim must be an integer"):
        synth(text_dim="big").load()
    with pytest.raises(DataError, match="option n_test must be >= 1"):
        synth(n_test=0).load()
    with pytest.raises(DataError, match="option cache must be true or false"):
        synth(cache="yes").load()


def test_synthetic_videos_do_not_span_splits(cache_dir):
    ds = synth()
    ds.load()
    with np.load(ds.cache_path(), allow_pickle=False) as z:
        video, split, ids = z["video"], z["split"], z["ids"]
    for v in np.unique(video):
        assert len(set(split[video == v].tolist())) == 1
    assert all(i.startswith(v + "_") for i, v in zip(ids.tolist(), video.tolist()))
    assert 3 < len(np.unique(video)) < 60


def test_synthetic_label_marginal_is_mosi():
    """At N = 2199 the systematic sample reproduces the real MOSI counts exactly."""
    scores = np.random.default_rng(5).standard_normal(2199)
    labels = synthetic_mod._labels(np.random.default_rng(1), scores)
    values, counts = np.unique(labels, return_counts=True)
    assert dict(zip(values.tolist(), counts.tolist())) == MOSI_LABEL_HISTOGRAM
    # label order follows the score
    order = np.argsort(scores)
    assert np.all(np.diff(labels[order]) >= 0)


def _ridge_mae(data, mods, lam=30.0):
    def feats(split):
        return torch.cat([(split.features[m].sum(1) / split.lengths[m][:, None]).double()
                          for m in mods], 1)

    xtr, xte = feats(data["train"]), feats(data["test"])
    ytr, yte = data["train"].labels.double(), data["test"].labels.double()
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-8
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    w = torch.linalg.solve(xtr.T @ xtr + lam * torch.eye(xtr.shape[1], dtype=torch.double),
                           xtr.T @ (ytr - ytr.mean()))
    return float((xte @ w + ytr.mean() - yte).abs().mean())


def test_synthetic_signal_is_learnable(cache_dir):
    data = SyntheticMosi(options={
        "n_train": 900, "n_valid": 20, "n_test": 500, "text_dim": 32, "audio_dim": 5,
        "vision_dim": 8, "text_len": 12, "audio_len": 30, "vision_len": 30,
        "cache": False}).load()
    mean_mae = float((data["test"].labels - data["train"].labels.mean()).abs().mean())
    text = _ridge_mae(data, ["text"])
    tri = _ridge_mae(data, ["text", "audio", "vision"])
    assert text < 0.8 * mean_mae, (text, mean_mae)
    assert tri < text - 0.05, (tri, text)


# --------------------------------------------------------------------------------------------
# the real CMU-MOSI utterance archive

MOSI_META = DatasetMeta(name="mosi", title="CMU-MOSI", language="en", label_range=(-3.0, 3.0),
                        convention="mosi", split_sizes=(1284, 229, 686))


@pytest.mark.realdata
def test_real_mosi_archive():
    path = real_data_file(MOSI_UTT)
    data = load_archive(path, meta=MOSI_META, setting="default", split_key="split")
    assert data.sizes() == {"train": 1284, "valid": 229, "test": 686}
    train = data["train"]
    assert train.texts is not None and all(isinstance(t, str) for t in train.texts[:5])
    assert train.features["text"].shape == (1284, 1, 50)
    assert data.info().aligned and data.notes == []

    bc = load_archive(path, meta=MOSI_META, setting="default", split_key="split_bclstm",
                      valid_from_train=0.15, seed=0)
    sizes = bc.sizes()
    assert sizes["test"] == 752 and sizes["train"] + sizes["valid"] == 1447
    assert 0.05 * 1447 < sizes["valid"] < 0.3 * 1447
    video = {s: {i.rsplit("_", 1)[0] for i in bc[s].ids} for s in ("train", "valid", "test")}
    assert not video["train"] & video["valid"]
    assert not video["test"] & (video["train"] | video["valid"])
    assert any("by 'video'" in note for note in bc.notes)


def test_features_that_overflow_float32_arithmetic_are_refused_naming_modality_and_split():
    import torch

    from msabench.api import DatasetMeta, LoadedDataset, SplitData
    from msabench.errors import DataError

    def split(value):
        x = torch.ones(4, 2, 3)
        x[1, 0, 2] = value
        return SplitData(ids=[str(i) for i in range(4)], features={"audio": x},
                         lengths={"audio": torch.full((4,), 2)}, labels=torch.zeros(4))

    meta = DatasetMeta(name="t", title="t", language="en", label_range=(-3.0, 3.0),
                       convention="mosi", modalities=("audio",))
    bad = LoadedDataset(meta, "default", {"train": split(1.0), "valid": split(1e38),
                                          "test": split(1.0)}, source="file.npz")
    bad.validate()  # finite: loads, so `msabench data check` can report it with its code
    with pytest.raises(DataError, match=r"file.npz \[valid\]: modality 'audio' has values of "
                                        r"magnitude 1e\+38; their squares overflow float32"):
        bad.check_magnitudes()
    LoadedDataset(meta, "default", {s: split(1e6) for s in ("train", "valid", "test")},
                  source="file.npz").check_magnitudes()  # large but ordinary


def test_data_check_and_runs_use_one_overflow_threshold():
    from msabench.api.dataset import MAX_FEATURE_MAGNITUDE
    from msabench.cli.data import OVERFLOW_LIMIT

    assert OVERFLOW_LIMIT == MAX_FEATURE_MAGNITUDE
