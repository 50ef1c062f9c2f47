"""The pickle readers: restricted unpickler, MMSA / MulT / MAG-BERT pickles.

The real feature pickles (100 MB - 13 GB) are not available here, so every fixture is written by
the tests in exactly the published structure (docs/datasets.md) with the REAL CMU-MOSI ids,
labels and transcripts of ``../shared/data/mosi/mosi_utt.npz`` (and the real CH-SIMS v2 labels
of ``../shared/data/chsims2/label.csv`` for the SIMS-style file), random features at the
published shapes, and a few samples per split for speed.
"""

from __future__ import annotations

import collections
import inspect
import io
import os
import pickle
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from msabench.api.dataset import DatasetMeta
from msabench.errors import DataError
from msabench_builtins.datasets import safe_pickle
from msabench_builtins.datasets.magbert import load_magbert_pickle
from msabench_builtins.datasets.mmsa import load_mmsa_pickle
from msabench_builtins.datasets.mult import load_mult_pickle, trailing_lengths
from msabench_builtins.datasets.safe_pickle import safe_load, sha256_file, verify_checksum
from tests.conftest import real_data

MOSI_META = DatasetMeta(name="test-mosi", title="MOSI-shaped test data", language="en",
                        label_range=(-3.0, 3.0), convention="mosi",
                        settings=("unaligned", "aligned", "magbert"),
                        default_setting="unaligned")
SIMS_META = DatasetMeta(name="test-sims2", title="SIMS v2-shaped test data", language="zh",
                        label_range=(-1.0, 1.0), convention="sims", unimodal_labels=True,
                        settings=("unaligned",), default_setting="unaligned")
SPLITS = ("train", "valid", "test")
SIZES = {"train": 40, "valid": 12, "test": 20}
# published shapes (docs/datasets.md): MOSI MMSA unaligned / aligned, MulT, MAG-BERT, SIMS v2
MOSI_UNALIGNED = {"text": (50, 768), "audio": (375, 5), "vision": (500, 20)}
MOSI_ALIGNED = {"text": (50, 768), "audio": (50, 5), "vision": (50, 20)}
SIMS2_UNALIGNED = {"text": (50, 768), "audio": (925, 25), "vision": (232, 177)}
MULT_NOALIGN = {"text": (50, 300), "audio": (375, 5), "vision": (500, 20)}


# --------------------------------------------------------------------------------------------
# the real MOSI ids / labels / transcripts

@pytest.fixture(scope="module")
def mosi() -> dict[str, dict[str, list]]:
    """The first SIZES[split] samples of each standard split of the real CMU-MOSI."""
    arc = np.load(real_data("mosi/mosi_utt.npz"), allow_pickle=False)
    out = {}
    for split in SPLITS:
        rows = np.flatnonzero(arc["split"] == split)[:SIZES[split]]
        out[split] = {
            "video": arc["video"][rows].tolist(),
            "seg": arc["seg"][rows].tolist(),
            "ids": arc["ids"][rows].tolist(),
            "mmsa_ids": [f"{v}$_${s}" for v, s in zip(arc["video"][rows], arc["seg"][rows])],
            "label": arc["label"][rows].astype(np.float32),
            "sentence": arc["sentence"][rows].tolist(),
            "interval": arc["interval"][rows],
        }
        for arr in (out[split]["label"], out[split]["interval"]):
            arr.flags.writeable = False  # fixtures must copy, never edit the shared real data
    return out


@pytest.fixture(scope="module")
def sims2() -> dict[str, dict[str, list]]:
    import pandas as pd

    table = pd.read_csv(real_data("chsims2/label.csv"), dtype={"video_id": str, "clip_id": str})
    out = {}
    for split in SPLITS:
        part = table[table["mode"] == split].head(SIZES[split])
        out[split] = {"mmsa_ids": [f"{v}$_${c}" for v, c in zip(part.video_id, part.clip_id)],
                      **{k: part[k].to_numpy(np.float32)
                         for k in ("label", "label_T", "label_A", "label_V")}}
        for k in ("label", "label_T", "label_A", "label_V"):
            out[split][k].flags.writeable = False
    return out


def dump(obj, path: Path, protocol: int = 4) -> Path:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=protocol)
    return path


# --------------------------------------------------------------------------------------------
# MMSA fixtures

def mmsa_split(real: dict, rng: np.random.Generator, shapes: dict, *, aligned: bool,
               sims: dict | None = None) -> dict:
    n = len(real["mmsa_ids"])
    L = shapes["text"][0]
    text_len = rng.integers(3, L + 1, n)
    mask = (np.arange(L)[None, :] < text_len[:, None]).astype(np.int64)
    ids = rng.integers(1000, 20000, (n, L)) * mask
    split = {
        "id": np.array(real["mmsa_ids"], dtype=object),
        "raw_text": np.array(real.get("sentence", [f"clip {i}" for i in range(n)]),
                             dtype=object),
        "text": rng.standard_normal((n, *shapes["text"]), dtype=np.float32),
        "text_bert": np.stack([ids, mask, np.zeros_like(mask)], axis=1),
        "audio": rng.standard_normal((n, *shapes["audio"]), dtype=np.float32),
        "vision": rng.standard_normal((n, *shapes["vision"]), dtype=np.float32),
        "regression_labels": (sims or real)["label"].copy(),
        "classification_labels": np.sign((sims or real)["label"]).astype(np.float32),
        "annotations": np.array(["Positive"] * n, dtype=object),
    }
    if not aligned:
        split["audio_lengths"] = rng.integers(1, shapes["audio"][0] + 1, n).tolist()
        split["vision_lengths"] = rng.integers(1, shapes["vision"][0] + 1, n)
    if sims is not None:
        for m in "TAV":
            split[f"regression_labels_{m}"] = sims[f"label_{m}"].copy()
    return split


def mmsa_data(mosi, *, aligned: bool = False, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    shapes = MOSI_ALIGNED if aligned else MOSI_UNALIGNED
    return {s: mmsa_split(mosi[s], rng, shapes, aligned=aligned) for s in SPLITS}


def write_mmsa(tmp_path: Path, data: dict, name: str = "unaligned_50.pkl") -> Path:
    return dump(data, tmp_path / name)


def load_mmsa(path: Path, meta: DatasetMeta = MOSI_META, setting: str = "unaligned"):
    return load_mmsa_pickle(path, meta=meta, setting=setting)


# --------------------------------------------------------------------------------------------
# the restricted unpickler

class Payload:
    """Unpickling this object runs ``func(*args)`` (with the standard unpickler)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def test_safe_load_round_trips_plain_data_and_arrays_at_every_protocol(tmp_path):
    obj = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "ids": np.array(["x", "y"]),
           "obj": np.array(["p", "q"], dtype=object), "bytes": np.array([[b"v", b"1"]]),
           "scalar": np.float64(1.5), "lst": [1, 2.5, None, True, "s", b"b", (1, 2)],
           "od": collections.OrderedDict(k=np.int64(3)), "big": np.ones((40, 50), np.float32)}
    for protocol in range(0, pickle.HIGHEST_PROTOCOL + 1):
        back = safe_load(dump(obj, tmp_path / f"p{protocol}.pkl", protocol))
        assert back.keys() == obj.keys()
        for key in ("a", "ids", "obj", "bytes", "big"):
            np.testing.assert_array_equal(back[key], obj[key])
        assert back["scalar"] == 1.5 and back["lst"] == obj["lst"] and back["od"] == obj["od"]
        assert back["big"].flags.writeable


@pytest.mark.parametrize("func, args, refused", [
    (os.system, ("touch {marker}",), f"{os.system.__module__}.system"),
    (eval, ("__import__('os').system('touch {marker}')",), "builtins.eval"),
    (subprocess.Popen, (["touch", "{marker}"],), "subprocess.Popen"),
    (exec, ("open('{marker}', 'w').close()",), "builtins.exec"),
    (getattr, (Payload(__import__, "os"), "system"), "builtins.getattr"),
])
@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_malicious_pickles_execute_nothing(tmp_path, func, args, refused, protocol):
    marker = tmp_path / "pwned"
    args = tuple(a.format(marker=marker) if isinstance(a, str) else
                 [x.format(marker=marker) for x in a] if isinstance(a, list) else a
                 for a in args)
    # hidden inside an otherwise well-formed dataset dict
    path = dump({"train": {"id": np.array(["a"]), "x": Payload(func, *args)}},
                tmp_path / "evil.pkl", protocol)
    with pytest.raises(DataError) as err:
        safe_load(path)
    msg = str(err.value)
    assert str(path) in msg and repr(refused) in msg
    assert "msabench refuses to execute code from pickles" in msg
    assert not marker.exists()


def test_malicious_payload_is_live_with_plain_pickle(tmp_path):
    """The fixture really is malicious: the standard unpickler runs it."""
    marker = tmp_path / "pwned"
    data = pickle.dumps(Payload(subprocess.call, ["touch", str(marker)]))
    pickle.loads(data)  # noqa: S301 - proving the payload works
    assert marker.exists()


@pytest.mark.parametrize("raw, refused", [
    (b"(S'touch {m}'\nios\nsystem\n.", "os.system"),  # INST opcode, protocol 0
    (b"c__builtin__\neval\n(S'1'\ntR.", "builtins.eval"),  # Python-2 module name
    (b"cnumpy.testing._private.utils\nrunstring\n(S'1'\n}tR.", "numpy.testing._private.utils.runstring"),
    (b"cbuiltins\nset\n(]tR.", "builtins.set"),  # not needed by any dataset file
    (b"ccollections\ndefaultdict\n)R.", "collections.defaultdict"),
])
def test_hand_written_opcodes_are_refused(tmp_path, raw, refused):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(raw.replace(b"{m}", str(marker).encode()))
    with pytest.raises(DataError, match=f"references the global '{refused}'"):
        safe_load(path)
    assert not marker.exists()


def test_malicious_mmsa_file_refused_by_the_reader(tmp_path, mosi):
    marker = tmp_path / "pwned"
    data = mmsa_data(mosi)
    data["test"]["annotations"] = Payload(os.system, f"touch {marker}")
    path = write_mmsa(tmp_path, data)
    with pytest.raises(DataError, match="refuses to execute code"):
        load_mmsa(path)
    assert not marker.exists()


def test_truncated_and_non_pickle_files(tmp_path):
    good = dump({"a": np.ones(100)}, tmp_path / "good.pkl")
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(DataError, match="truncated, corrupt or") as err:
        safe_load(cut)
    assert err.value.code == "oversized-claim"  # the last frame claims more than is left
    text = tmp_path / "text.pkl"
    text.write_text("this is not a pickle")
    with pytest.raises(DataError, match=str(text)):
        safe_load(text)
    with pytest.raises(DataError, match="does not exist"):
        safe_load(tmp_path / "missing.pkl")


def test_verify_checksum(tmp_path):
    path = dump({"a": 1}, tmp_path / "f.pkl")
    digest = sha256_file(path)
    assert verify_checksum(path, digest.upper()) == digest
    wrong = "0" * 64
    with pytest.raises(DataError) as err:
        verify_checksum(path, wrong)
    msg = str(err.value)
    assert str(path) in msg and wrong in msg and digest in msg and "mismatch" in msg
    with pytest.raises(DataError, match="not 64 hex digits"):
        verify_checksum(path, "abc")


# --------------------------------------------------------------------------------------------
# MMSA

def test_mmsa_unaligned(tmp_path, mosi):
    raw = mmsa_data(mosi)
    path = write_mmsa(tmp_path, raw)
    data = load_mmsa(path)
    assert data.sizes() == SIZES and data.validated and data.source == str(path)
    assert data.notes == []
    info = data.info()
    assert not info.aligned and not info.has_unimodal_labels and info.has_texts
    assert info.feature_dims == {"text": 768, "audio": 5, "vision": 20}
    assert info.max_lengths == {"text": 50, "audio": 375, "vision": 500}
    for s in SPLITS:
        split, real = data[s], mosi[s]
        n = SIZES[s]
        assert split.ids == real["mmsa_ids"]  # MMSA's videoid$_$clipid kept verbatim
        assert split.texts == real["sentence"]
        assert torch.equal(split.labels, torch.tensor(real["label"]))
        for m, shape in MOSI_UNALIGNED.items():
            x = split.features[m]
            assert x.shape == (n, *shape) and x.dtype == torch.float32
            np.testing.assert_array_equal(x.numpy(), raw[s][m])
        np.testing.assert_array_equal(split.lengths["text"].numpy(),
                                      raw[s]["text_bert"][:, 1].sum(1))
        np.testing.assert_array_equal(split.lengths["audio"].numpy(), raw[s]["audio_lengths"])
        np.testing.assert_array_equal(split.lengths["vision"].numpy(), raw[s]["vision_lengths"])
        assert all(v.dtype == torch.int64 for v in split.lengths.values())


def test_mmsa_aligned_uses_text_lengths(tmp_path, mosi):
    raw = mmsa_data(mosi, aligned=True)
    data = load_mmsa(write_mmsa(tmp_path, raw, "aligned_50.pkl"), setting="aligned")
    assert data.info().aligned
    for s in SPLITS:
        lens = data[s].lengths
        np.testing.assert_array_equal(lens["text"].numpy(), raw[s]["text_bert"][:, 1].sum(1))
        assert torch.equal(lens["audio"], lens["text"]) and torch.equal(lens["vision"], lens["text"])
        assert data[s].features["audio"].shape == (SIZES[s], 50, 5)


def test_mmsa_without_text_bert_uses_full_text_length(tmp_path, mosi):
    raw = mmsa_data(mosi)
    for s in SPLITS:
        del raw[s]["text_bert"], raw[s]["raw_text"]
    data = load_mmsa(write_mmsa(tmp_path, raw))
    assert all(bool((data[s].lengths["text"] == 50).all()) for s in SPLITS)
    assert data["train"].texts is None


def test_mmsa_sims_unimodal_labels(tmp_path, sims2):
    rng = np.random.default_rng(1)
    raw = {s: mmsa_split(sims2[s], rng, SIMS2_UNALIGNED, aligned=False, sims=sims2[s])
           for s in SPLITS}
    data = load_mmsa(write_mmsa(tmp_path, raw, "unaligned.pkl"), meta=SIMS_META)
    assert data.info().has_unimodal_labels
    assert data.info().feature_dims == {"text": 768, "audio": 25, "vision": 177}
    for s in SPLITS:
        split = data[s]
        assert split.ids == sims2[s]["mmsa_ids"]
        assert torch.equal(split.labels, torch.tensor(sims2[s]["label"]))
        for mod, key in (("text", "label_T"), ("audio", "label_A"), ("vision", "label_V")):
            assert torch.equal(split.unimodal[mod], torch.tensor(sims2[s][key]))


def test_mmsa_minus_inf_replaced_and_noted(tmp_path, mosi):
    raw = mmsa_data(mosi)
    raw["train"]["audio"][0, :3, 0] = -np.inf
    raw["test"]["audio"][5, 7, 2] = -np.inf
    data = load_mmsa(write_mmsa(tmp_path, raw))
    [note] = data.notes
    assert "'audio'" in note and "replaced 4 -inf" in note and "train 3, test 1" in note
    assert float(data["train"].features["audio"][0, 0, 0]) == 0.0
    assert all(bool(torch.isfinite(data[s].features["audio"]).all()) for s in SPLITS)


def test_mmsa_nan_refused_with_count_split_and_key(tmp_path, mosi):
    raw = mmsa_data(mosi)
    raw["valid"]["vision"][3, 10, :4] = np.nan
    path = write_mmsa(tmp_path, raw)
    with pytest.raises(DataError) as err:
        load_mmsa(path)
    msg = str(err.value)
    assert str(path) in msg and "[valid]" in msg and "'vision' has 4 NaN" in msg
    assert repr(mosi["valid"]["mmsa_ids"][3]) in msg


def test_mmsa_inconsistent_n(tmp_path, mosi):
    raw = mmsa_data(mosi)
    raw["test"]["audio"] = raw["test"]["audio"][:-1]
    path = write_mmsa(tmp_path, raw)
    with pytest.raises(DataError, match=r"\[test\]: inconsistent N: key 'audio' has 19 rows"):
        load_mmsa(path)


def test_mmsa_feature_size_differs_between_splits(tmp_path, mosi):
    raw = mmsa_data(mosi)
    raw["test"]["audio"] = np.zeros((20, 375, 6), np.float32)
    with pytest.raises(DataError, match=r"\[test\]: modality 'audio' has 6-d features but 5-d"):
        load_mmsa(write_mmsa(tmp_path, raw))


@pytest.mark.parametrize("key, t", [("audio_lengths", 375), ("vision_lengths", 500)])
def test_mmsa_lengths_beyond_t(tmp_path, mosi, key, t):
    raw = mmsa_data(mosi)
    lens = np.asarray(raw["train"][key]).copy()
    lens[2] = t + 1
    raw["train"][key] = lens
    path = write_mmsa(tmp_path, raw)
    with pytest.raises(DataError) as err:
        load_mmsa(path)
    msg = str(err.value)
    assert f"[train]: key {key!r} has 1 length(s) outside [0, {t}]" in msg
    assert f"first: {t + 1}" in msg and repr(mosi["train"]["mmsa_ids"][2]) in msg


def test_mmsa_text_mask_longer_than_text(tmp_path, mosi):
    raw = mmsa_data(mosi)
    tb = raw["valid"]["text_bert"]
    raw["valid"]["text_bert"] = np.concatenate([tb, np.ones((tb.shape[0], 3, 4), tb.dtype)], 2)
    with pytest.raises(DataError, match=r"'text_bert': \d+ attention mask\(s\) cover more"):
        load_mmsa(write_mmsa(tmp_path, raw))


def test_mmsa_zero_lengths_become_one_with_a_note(tmp_path, mosi):
    raw = mmsa_data(mosi)
    raw["train"]["vision_lengths"][:2] = 0
    data = load_mmsa(write_mmsa(tmp_path, raw))
    assert data["train"].lengths["vision"][:2].tolist() == [1, 1]
    assert any("'vision_lengths': 2 sample(s) have length 0" in n for n in data.notes)


def test_mmsa_missing_split_and_key(tmp_path, mosi):
    raw = mmsa_data(mosi)
    raw["dev"] = raw.pop("valid")
    path = write_mmsa(tmp_path, raw)
    with pytest.raises(DataError) as err:
        load_mmsa(path)
    msg = str(err.value)
    assert str(path) in msg and "missing split 'valid'" in msg and "'dev'" in msg
    raw["valid"] = raw.pop("dev")
    del raw["test"]["vision"]
    with pytest.raises(DataError) as err:
        load_mmsa(write_mmsa(tmp_path, raw))
    msg = str(err.value)
    assert "[test]: missing key 'vision'" in msg and "keys present: id, raw_text" in msg


def test_mmsa_mult_file_gets_a_format_hint(tmp_path):
    raw = {s: {"text": np.zeros((2, 3, 4), np.float32), "labels": np.zeros((2, 1, 1))}
           for s in SPLITS}
    with pytest.raises(DataError, match="looks like a MulT pickle.*format=mult"):
        load_mmsa(dump(raw, tmp_path / "x.pkl"))
    with pytest.raises(DataError, match="expected a dict of splits"):
        load_mmsa(dump([1, 2], tmp_path / "y.pkl"))


def test_mmsa_labels_out_of_range(tmp_path, mosi):
    path = write_mmsa(tmp_path, mmsa_data(mosi))
    # a MOSI file read as a SIMS dataset: labels in [-3, 3] are outside [-1, 1]
    with pytest.raises(DataError) as err:
        load_mmsa(path, meta=SIMS_META)
    msg = str(err.value)
    assert "[train]: key 'regression_labels'" in msg and "outside the dataset range [-1.0, 1.0]" in msg
    raw = mmsa_data(mosi)
    raw["test"]["regression_labels"][4] = 3.5
    with pytest.raises(DataError, match=r"1 label\(s\) outside .* first 3\.500 at sample"):
        load_mmsa(write_mmsa(tmp_path, raw))
    raw["test"]["regression_labels"][4] = np.nan
    with pytest.raises(DataError, match=r"'regression_labels' has 1 NaN label"):
        load_mmsa(write_mmsa(tmp_path, raw))


def test_mmsa_duplicate_ids(tmp_path, mosi):
    raw = mmsa_data(mosi)
    raw["train"]["id"][5] = raw["train"]["id"][4]
    with pytest.raises(DataError, match=r"\[train\]: 1 duplicate sample id\(s\), e\.g\. '"):
        load_mmsa(write_mmsa(tmp_path, raw))
    raw = mmsa_data(mosi)
    raw["test"]["id"][0] = raw["train"]["id"][0]
    with pytest.raises(DataError, match="is in both the 'train' and the 'test' split"):
        load_mmsa(write_mmsa(tmp_path, raw))


def test_mmsa_mixed_aligned_splits_refused(tmp_path, mosi):
    raw = mmsa_data(mosi)
    del raw["test"]["audio_lengths"]
    with pytest.raises(DataError, match="'audio_lengths' is in split 'train' but not in split 'test'"):
        load_mmsa(write_mmsa(tmp_path, raw))


def test_mmsa_float64_and_protocol2_files(tmp_path, mosi):
    raw = mmsa_data(mosi)
    for s in SPLITS:
        raw[s]["audio"] = raw[s]["audio"].astype(np.float64)
    data = load_mmsa(dump(raw, tmp_path / "p2.pkl", protocol=2))
    assert data["train"].features["audio"].dtype == torch.float32
    np.testing.assert_allclose(data["train"].features["audio"].numpy(), raw["train"]["audio"])


def test_mmsa_features_are_not_copied(tmp_path, mosi, monkeypatch):
    """float32 arrays from the pickle become tensors without a copy (torch.from_numpy)."""
    seen = {}
    real_load = safe_pickle.safe_load

    def spy(path, **kw):
        obj = real_load(path, **kw)
        seen["text"] = obj["train"]["text"]
        return obj

    monkeypatch.setattr("msabench_builtins.datasets.mmsa.safe_load", spy)
    data = load_mmsa(write_mmsa(tmp_path, mmsa_data(mosi)))
    assert data["train"].features["text"].data_ptr() == seen["text"].ctypes.data


# --------------------------------------------------------------------------------------------
# MulT (Python-2 pickles)

class Py2Pickler(pickle._Pickler):
    """Writes what Python 2 + NumPy 1.x wrote: protocol 2, every str/bytes as a Python-2 ``str``
    (BINSTRING opcodes, including the arrays' raw data) and ``numpy.core`` module names."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj):
        raw = obj if isinstance(obj, bytes) else obj.encode("utf-8")
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str

    def save_global(self, obj, name=None):
        name = name or obj.__qualname__
        module = pickle.whichmodule(obj, name).replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())
        self.memoize(obj)


def py2_dump(obj, path: Path) -> Path:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    path.write_bytes(buf.getvalue())
    return path


def mult_data(mosi, *, id_parts: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    out, lengths = {}, {}
    for s in SPLITS:
        real, n = mosi[s], SIZES[s]
        split, lengths[s] = {}, {}
        for m, (t, d) in MULT_NOALIGN.items():
            x = rng.standard_normal((n, t, d), dtype=np.float32)
            lens = rng.integers(1, t + 1, n)
            lens[0] = t  # one sample without padding
            x[np.arange(t)[None, :] >= lens[:, None]] = 0.0  # trailing zero padding
            split[m], lengths[s][m] = x, lens
        split["labels"] = real["label"].reshape(n, 1, 1).copy()
        if id_parts == 3:
            split["id"] = np.array([[v.encode(), f"{a:.3f}".encode(), f"{b:.3f}".encode()]
                                    for v, (a, b) in zip(real["video"], real["interval"])])
        elif id_parts == 2:
            split["id"] = np.array([[v.encode(), str(g).encode()]
                                    for v, g in zip(real["video"], real["seg"])])
        else:
            split["id"] = np.array([i.encode() for i in real["ids"]])
        out[s] = split
    return out, lengths


def test_python2_pickle_needs_latin1_and_loads(tmp_path):
    arr = np.arange(300, dtype=np.float32).reshape(3, 100) * 1.7  # raw bytes > 127
    path = py2_dump({"train": {"x": arr, "id": np.array([[b"vid", b"1", b"2"]])}}, tmp_path / "p.pkl")
    assert b"numpy.core.multiarray" in path.read_bytes()
    with pytest.raises(UnicodeDecodeError):
        with open(path, "rb") as fh:
            pickle.load(fh)  # Python 3's default ASCII decoding cannot read it
    back = safe_load(path)
    np.testing.assert_array_equal(back["train"]["x"], arr)
    assert back["train"]["id"].tolist() == [[b"vid", b"1", b"2"]]


@pytest.mark.parametrize("id_parts", [3, 2, 1])
def test_mult_noalign(tmp_path, mosi, id_parts):
    raw, lengths = mult_data(mosi, id_parts=id_parts)
    data = load_mult_pickle(py2_dump(raw, tmp_path / "mosi_data_noalign.pkl"), meta=MOSI_META,
                            setting="unaligned")
    assert data.sizes() == SIZES and not data.info().aligned
    assert data.info().feature_dims == {"text": 300, "audio": 5, "vision": 20}
    assert any("no lengths" in n for n in data.notes)
    for s in SPLITS:
        split, real = data[s], mosi[s]
        if id_parts == 3:
            assert split.ids == [f"{v}_{a:.3f}_{b:.3f}"
                                 for v, (a, b) in zip(real["video"], real["interval"])]
        else:
            assert split.ids == real["ids"]  # video_segment, as the SDK and mosi_utt.npz
        assert torch.equal(split.labels, torch.tensor(real["label"]))
        assert split.texts is None
        for m in MULT_NOALIGN:
            np.testing.assert_array_equal(split.lengths[m].numpy(), lengths[s][m])
            np.testing.assert_array_equal(split.features[m].numpy(), raw[s][m])


def test_mult_aligned_minus_inf_and_all_zero_samples(tmp_path, mosi):
    raw, _ = mult_data(mosi, id_parts=2)
    for s in SPLITS:
        for m in ("audio", "vision"):
            raw[s][m] = raw[s][m][:, :50].copy()
    raw["train"]["audio"][1, 0, 0] = -np.inf
    raw["valid"]["vision"][2] = 0.0  # no data at all: length 1
    data = load_mult_pickle(py2_dump(raw, tmp_path / "mosi_data.pkl"), meta=MOSI_META,
                            setting="aligned")
    assert any("'audio': replaced 1 -inf value(s) by 0 (train 1)" in n for n in data.notes)
    assert int(data["valid"].lengths["vision"][2]) == 1
    assert data.info().max_lengths == {"text": 50, "audio": 50, "vision": 50}


def test_mult_errors(tmp_path, mosi):
    raw, _ = mult_data(mosi)
    raw["valid"]["vision"][0, 0, 0] = np.nan
    path = py2_dump(raw, tmp_path / "m.pkl")
    with pytest.raises(DataError, match=r"\[valid\]: key 'vision' has 1 NaN"):
        load_mult_pickle(path, meta=MOSI_META, setting="unaligned")
    raw, _ = mult_data(mosi)
    raw["test"]["labels"] = raw["test"]["labels"][:-2]
    with pytest.raises(DataError, match=r"\[test\]: inconsistent N: key 'id' has 20 rows .* but key 'labels' has 18"):
        load_mult_pickle(py2_dump(raw, path), meta=MOSI_META, setting="unaligned")
    raw, _ = mult_data(mosi)
    del raw["test"]
    with pytest.raises(DataError, match="missing split 'test'"):
        load_mult_pickle(py2_dump(raw, path), meta=MOSI_META, setting="unaligned")
    raw, _ = mult_data(mosi)
    raw["train"]["labels"][3] = -4.0
    with pytest.raises(DataError, match="outside the dataset range"):
        load_mult_pickle(py2_dump(raw, path), meta=MOSI_META, setting="unaligned")
    raw, _ = mult_data(mosi, id_parts=1)
    raw["valid"]["id"][1] = raw["valid"]["id"][0]
    with pytest.raises(DataError, match="duplicate sample id"):
        load_mult_pickle(py2_dump(raw, path), meta=MOSI_META, setting="unaligned")
    raw, _ = mult_data(mosi)
    del raw["train"]["labels"]
    raw["train"]["regression_labels"] = np.zeros(40)
    with pytest.raises(DataError, match="looks like an MMSA pickle"):
        load_mult_pickle(py2_dump(raw, path), meta=MOSI_META, setting="unaligned")


def test_trailing_lengths_chunked():
    x = np.zeros((7, 6, 2), np.float32)
    x[0, 5, 1] = 1  # last step
    x[1, 2, 0] = -1  # a zero step before it does not shorten it
    x[1, 0, 0] = 3
    x[2, 0, 0] = 1
    assert trailing_lengths(x, chunk_rows=3).tolist() == [6, 3, 1, 1, 1, 1, 1]


# --------------------------------------------------------------------------------------------
# MAG-BERT

def magbert_data(mosi, seed: int = 0, dims: tuple[int, int] = (47, 74)):
    rng = np.random.default_rng(seed)
    out = {}
    for s, name in zip(SPLITS, ("train", "dev", "test")):
        real = mosi[s]
        examples = []
        for i, (sentence, label, sid) in enumerate(zip(real["sentence"], real["label"],
                                                        real["ids"])):
            words = sentence.split()
            visual = rng.standard_normal((len(words), dims[0])).astype(np.float32)
            acoustic = rng.standard_normal((len(words), dims[1])).astype(np.float32)
            lab = np.array([[label]], dtype=np.float32) if i % 2 else float(label)
            examples.append(((words, visual, acoustic), lab, sid))
        out[name] = examples
    return out


def test_magbert(tmp_path, mosi):
    raw = magbert_data(mosi)
    data = load_magbert_pickle(dump(raw, tmp_path / "mosi.pkl"), meta=MOSI_META,
                               setting="magbert")
    assert data.sizes() == SIZES
    assert data.modalities == ("audio", "vision")
    lmax = max(len(ex[0][0]) for split in raw.values() for ex in split)
    assert data.info().max_lengths == {"audio": lmax, "vision": lmax}
    assert data.info().feature_dims == {"audio": 74, "vision": 47}
    assert any("'dev' read as 'valid'" in n for n in data.notes)
    for s, name in zip(SPLITS, ("train", "dev", "test")):
        split, real = data[s], mosi[s]
        assert split.ids == real["ids"]
        assert torch.equal(split.labels, torch.tensor(real["label"]))
        assert split.texts == [" ".join(t.split()) for t in real["sentence"]]
        for i, ((words, visual, acoustic), _, _) in enumerate(raw[name]):
            assert split.texts[i].split(" ") == words  # the word list round-trips
            n_w = len(words)
            assert int(split.lengths["audio"][i]) == int(split.lengths["vision"][i]) == n_w
            np.testing.assert_array_equal(split.features["vision"][i, :n_w].numpy(), visual)
            np.testing.assert_array_equal(split.features["audio"][i, :n_w].numpy(), acoustic)
            assert not bool(split.features["audio"][i, n_w:].any())


def test_magbert_errors(tmp_path, mosi):
    path = tmp_path / "mosi.pkl"
    raw = magbert_data(mosi)
    (words, visual, acoustic), label, seg = raw["dev"][3]
    raw["dev"][3] = ((words, visual[:-1], acoustic), label, seg)
    with pytest.raises(DataError, match=r"\[dev\]: example 3 \(segment '.+'\): visual has "
                                        r"\d+ rows but there are \d+ words"):
        load_magbert_pickle(dump(raw, path), meta=MOSI_META, setting="magbert")
    raw = magbert_data(mosi)
    raw["train"][0] = ("facet", "covarep")
    with pytest.raises(DataError, match=r"example 0 is not \(\(words, visual, acoustic\)"):
        load_magbert_pickle(dump(raw, path), meta=MOSI_META, setting="magbert")
    raw = magbert_data(mosi)
    raw["test"][2][0][2][0, 5] = np.nan
    with pytest.raises(DataError, match=r"\[test\]: key 'acoustic' has 1 NaN value\(s\), first "
                                        r"in sample '.+'"):
        load_magbert_pickle(dump(raw, path), meta=MOSI_META, setting="magbert")
    raw = magbert_data(mosi)
    del raw["dev"]
    with pytest.raises(DataError, match="missing split 'valid'.* train / valid / test / dev"):
        load_magbert_pickle(dump(raw, path), meta=MOSI_META, setting="magbert")
    raw = magbert_data(mosi)
    raw["train"][1] = (raw["train"][1][0], np.array([1.0, 2.0]), raw["train"][1][2])
    with pytest.raises(DataError, match="label must be one number"):
        load_magbert_pickle(dump(raw, path), meta=MOSI_META, setting="magbert")
    raw = magbert_data(mosi)
    raw["test"][0] = (raw["test"][0][0], raw["test"][0][1], raw["train"][0][2])
    with pytest.raises(DataError, match="in both the 'train' and the 'test' split"):
        load_magbert_pickle(dump(raw, path), meta=MOSI_META, setting="magbert")


# --------------------------------------------------------------------------------------------
# end to end: a loaded MMSA file trains the built-in sf method

@pytest.mark.slow  # ~3 s, most of it importing the metric plugins (torchmetrics)
def test_mmsa_file_trains_sf_end_to_end(tmp_path, mosi):
    from msabench.api import Components
    from msabench.config import resolve
    from msabench.plugins import get_registry
    from msabench.runner import metric_classes
    from msabench.training import LoopContext, evaluate, fit_method, seed_everything

    data = load_mmsa(write_mmsa(tmp_path, mmsa_data(mosi)))
    registry = get_registry()
    method_cls = registry.load("method", "sf")
    config = resolve(method_cls, "test-mosi",
                     {"train": {"epochs": 2, "batch_size": 16, "device": "cpu"},
                      "model": {"hidden": 16}})
    seed_everything(0)
    model = method_cls(data.info(), config["model"], Components(registry))
    metrics = metric_classes(registry, data.meta.convention)
    device = torch.device("cpu")
    context = LoopContext(device=device, seed=0, train=config["train"], metric_classes=metrics)
    fitted = fit_method(model, data["train"], data["valid"], context)
    assert fitted.epochs_run == 2 and len(fitted.history) == 2
    result = evaluate(model, data["test"], metrics, 64, device)
    assert result.preds.shape == (SIZES["test"],) and bool(torch.isfinite(result.preds).all())
    assert result.metrics["mae"] is not None and np.isfinite(result.loss)


def test_mosi_dataset_plugin_reads_the_mmsa_and_mult_files(tmp_path, mosi):
    """The registered ``mosi`` dataset finds the files under --data-dir and uses these readers."""
    from msabench.plugins import get_registry

    (tmp_path / "Processed").mkdir()
    write_mmsa(tmp_path / "Processed", mmsa_data(mosi))
    mosi_cls = get_registry().load("dataset", "mosi")
    data = mosi_cls(data_dir=tmp_path, setting="unaligned").load()
    assert data.sizes() == SIZES and data["test"].ids == mosi["test"]["mmsa_ids"]
    assert data.notes[0].startswith("read ") and "as mmsa" in data.notes[0]
    raw, _ = mult_data(mosi, id_parts=2)
    py2_dump(raw, tmp_path / "mosi_data_noalign.pkl")
    data = mosi_cls(data_dir=tmp_path, setting="unaligned", options={"format": "mult"}).load()
    assert data["train"].ids == mosi["train"]["ids"] and "as mult" in data.notes[0]


def test_validate_loaded_matches_the_core_checks(tmp_path, mosi):
    from msabench_builtins.datasets.checks import validate_loaded

    data = load_mmsa(write_mmsa(tmp_path, mmsa_data(mosi)))
    data.validated = False
    validate_loaded(data)  # the chunked finiteness scan too
    assert data.validated
    data.validate()  # the core agrees
    data["valid"].features["audio"][3, 2, 1] = float("nan")
    with pytest.raises(DataError, match=r"\[valid\]: modality 'audio' has non-finite values"):
        validate_loaded(data)
    data["valid"].features["audio"][3, 2, 1] = 0.0
    data["test"].lengths["vision"][0] = 501
    with pytest.raises(DataError, match=r"\[test\]: modality 'vision' lengths must lie in \[1, 500\]"):
        validate_loaded(data)


# every test that reads ../shared/data carries the realdata marker
for _name, _test in list(globals().items()):
    if _name.startswith("test_") and {"mosi", "sims2"} & set(inspect.signature(_test).parameters):
        globals()[_name] = pytest.mark.realdata(_test)


def test_mmsa_keeps_text_bert_as_extra(tmp_path):
    """MMSA's published tokenisation travels with the samples (SplitData.extras)."""
    import pickle

    import numpy as np
    import torch

    from msabench.api.dataset import DatasetMeta
    from msabench_builtins.datasets.mmsa import load_mmsa_pickle

    rng = np.random.default_rng(0)
    data = {}
    for split, n in (("train", 6), ("valid", 3), ("test", 3)):
        bert = np.zeros((n, 3, 5), dtype=np.int64)
        bert[:, 0] = rng.integers(1000, 2000, (n, 5))
        bert[:, 1, :4] = 1
        data[split] = {
            "id": np.array([f"v{split}$_${i}" for i in range(n)], dtype=object),
            "raw_text": np.array([f"text {i}" for i in range(n)], dtype=object),
            "text": rng.normal(size=(n, 5, 8)).astype(np.float32), "text_bert": bert,
            "audio": rng.normal(size=(n, 5, 2)).astype(np.float32),
            "vision": rng.normal(size=(n, 5, 3)).astype(np.float32),
            "regression_labels": rng.uniform(-3, 3, n).astype(np.float32)}
    path = tmp_path / "aligned_50.pkl"
    path.write_bytes(pickle.dumps(data, protocol=4))
    meta = DatasetMeta(name="mosi", title="t", language="en", label_range=(-3.0, 3.0),
                       convention="mosi", settings=("aligned",), default_setting="aligned")
    loaded = load_mmsa_pickle(path, meta=meta, setting="aligned")
    tb = loaded["train"].extras["text_bert"]
    assert tb.dtype == torch.int64 and tb.shape == (6, 3, 5)
    assert torch.equal(tb, torch.from_numpy(data["train"]["text_bert"]))
    batch = loaded["train"].batch(torch.tensor([4, 1]))
    assert torch.equal(batch.extras["text_bert"], tb[[4, 1]])
    assert loaded.info().extras == ("text_bert",)


def test_structure_fuzz_findings_are_data_errors(tmp_path):
    """Found by mutating the fixtures' objects (issue 14): a ``text_bert`` key holding None
    crashed the MMSA reader with a TypeError, and a 0-d array of words the MAG-BERT reader."""
    from tests.test_hostile_files import MOSI, magbert_obj, mmsa_obj

    data = mmsa_obj()
    for split in data.values():
        split["text_bert"] = None  # treated as absent: text lengths are the full L
    loaded = load_mmsa_pickle(dump(data, tmp_path / "tb.pkl"), meta=MOSI, setting="unaligned")
    assert "text_bert" not in loaded["train"].extras
    assert loaded["train"].lengths["text"].tolist() == [4] * len(loaded["train"])

    data = magbert_obj()
    (words, vis, ac), label, seg = data["dev"][0]
    data["dev"][0] = ((np.array(0.5), vis, ac), label, seg)
    with pytest.raises(DataError, match=r"\[dev\]: example 0 \(segment 'vidvalid\[0\]'\): words "
                                        r"must be a list of strings, found array of shape \(\)"):
        load_magbert_pickle(dump(data, tmp_path / "mag.pkl"), meta=MOSI, setting="magbert")
