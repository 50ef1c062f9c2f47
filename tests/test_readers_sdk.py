"""CMU-MultimodalSDK (.csd) reader, standard MOSI/MOSEI folds and the CH-SIMS label table.

Real-data tests read ../shared/data (skipped when absent, failing instead when
MSABENCH_REQUIRE_DATA=1); the .csd loader is also tested on small files written here with h5py
in exactly the SDK's structure (/<root>/data/<video>/{features,intervals}, /<root>/metadata).
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

from msabench.api.dataset import DatasetMeta  # noqa: E402
from msabench.errors import DataError  # noqa: E402
from msabench_builtins.datasets.chsims import read_sims_labels, split_sizes  # noqa: E402
from msabench_builtins.datasets.folds import (  # noqa: E402
    check_folds, fold_order, split_of, standard_folds, video_of)
from msabench_builtins.datasets.sdk import (  # noqa: E402
    load_sdk, overlapping_frames, read_csd, read_sdk_labels)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def real(relative: str) -> Path:
    path = DATA / relative
    if not path.exists():
        if os.environ.get("MSABENCH_REQUIRE_DATA") == "1":
            pytest.fail(f"{path} is missing but MSABENCH_REQUIRE_DATA=1 (CI must run real-data "
                        "tests)")
        pytest.skip(f"real data {path} not available (set MSABENCH_REQUIRE_DATA=1 to fail "
                    "instead)")
    return path


# ============================================================================================
# real data

@pytest.mark.realdata
def test_real_mosi_label_csd_equals_mosi_utt_segment_by_segment():
    csd = real("mosi/CMU_MOSI_Opinion_Labels.csd")
    arc = np.load(real("mosi/mosi_utt.npz"), allow_pickle=False)

    cs = read_csd(csd)
    assert cs.root == "Opinion Segment Labels"
    assert cs.kind == "numeric" and cs.dim == 1 and len(cs) == 93
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in cs.metadata.items())
    assert cs.metadata["root name"] == "Opinion Segment Labels"  # JSON-decoded, no quotes
    assert cs.metadata["dataset name"] == "CMU-MOSI"

    lab = read_sdk_labels(cs, "mosi")
    assert len(lab["ids"]) == 2199 and len(set(lab["ids"].tolist())) == 2199
    by_id = {i: n for n, i in enumerate(arc["ids"].tolist())}
    assert set(by_id) == set(lab["ids"].tolist())
    rows = np.array([by_id[i] for i in lab["ids"].tolist()])
    # the same label, interval, video and 1-based segment number for every segment
    # the file stores float32; the archive the same values as float64 decimals
    np.testing.assert_array_equal(lab["labels"].astype(np.float32),
                                  arc["label"][rows].astype(np.float32))
    np.testing.assert_allclose(lab["intervals"], arc["interval"][rows], atol=1e-6)
    assert lab["video"].tolist() == arc["video"][rows].tolist()
    assert lab["seg"].tolist() == arc["seg"][rows].tolist()
    # ids are <video>_<k> with k = storage row + 1 inside each video
    for video in cs.videos:
        n = cs.rows[video]
        assert lab["ids"][lab["video"] == video].tolist() == [f"{video}_{k}" for k in
                                                              range(1, n + 1)]
    # standard folds: segment and video counts, and agreement with the archive's split
    assert Counter(lab["split"].tolist()) == {"train": 1284, "valid": 229, "test": 686}
    videos = {s: set(lab["video"][lab["split"] == s].tolist()) for s in ("train", "valid", "test")}
    assert {s: len(v) for s, v in videos.items()} == {"train": 52, "valid": 10, "test": 31}
    assert lab["split"].tolist() == arc["split"][rows].tolist()
    assert lab["fold_videos_missing"].size == 0


@pytest.mark.realdata
def test_real_mosi_labels_through_load_sdk(tmp_path):
    """The real label file + a synthetic 1-frame-per-second feature file for all 93 videos."""
    csd = real("mosi/CMU_MOSI_Opinion_Labels.csd")
    arc = np.load(real("mosi/mosi_utt.npz"), allow_pickle=False)
    cs = read_csd(csd)
    data = {}
    for video in cs.videos:
        end = int(np.ceil(cs[video][1].max())) + 1
        starts = np.arange(end, dtype=np.float64)
        data[video] = (starts[:, None].astype(np.float32) + 0.5,
                       np.stack([starts, starts + 1.0], axis=1))
    write_csd(tmp_path / "feat.csd", "steps", data)
    meta = DatasetMeta(name="mosi", title="CMU-MOSI", language="en", label_range=(-3.0, 3.0),
                       convention="mosi", settings=("sdk",), default_setting="sdk")
    ds = load_sdk(csd, meta=meta, setting="sdk", feature_files={"audio": tmp_path / "feat.csd"},
                  max_len={"audio": 20})
    assert ds.sizes() == {"train": 1284, "valid": 229, "test": 686}
    label = dict(zip(arc["ids"].tolist(), arc["label"].astype(np.float32).tolist()))
    split = dict(zip(arc["ids"].tolist(), arc["split"].tolist()))
    for name in ("train", "valid", "test"):
        part = ds[name]
        assert all(split[i] == name for i in part.ids)
        assert part.labels.tolist() == [label[i] for i in part.ids]
    # the one zero-length segment (2WGyTLYerpo_44) is kept with one zero step
    where = next(n for n in ("train", "valid", "test") if "2WGyTLYerpo_44" in ds[n].ids)
    row = ds[where].ids.index("2WGyTLYerpo_44")
    assert ds[where].lengths["audio"][row].item() == 1
    assert ds[where].features["audio"][row].abs().sum().item() == 0.0
    assert any("1 segment(s) have a zero-length interval" in n for n in ds.notes)
    assert any("1 of 2199 segment(s) have no 'audio' frame" in n for n in ds.notes)


@pytest.mark.realdata
def test_real_mosi_standard_folds_match_mosi_utt_split():
    arc = np.load(real("mosi/mosi_utt.npz"), allow_pickle=False)
    folds = standard_folds("mosi")
    assert {s: len(v) for s, v in folds.items()} == {"train": 52, "valid": 10, "test": 31}
    got = [split_of(v, folds) for v in arc["video"].tolist()]
    assert got == arc["split"].tolist()
    assert Counter(got) == {"train": 1284, "valid": 229, "test": 686}
    assert set().union(*folds.values()) == set(arc["video"].tolist())


@pytest.mark.realdata
def test_real_mosei_standard_folds_on_segments_csv():
    with open(real("mosei/segments.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    folds = standard_folds("mosei")
    assert {s: len(v) for s, v in folds.items()} == {"train": 2249, "valid": 300, "test": 678}
    # segment ids are the SDK's aligned names <video>[k], k from 0 in storage order
    videos = [video_of(r["segment_id"]) for r in rows]
    assert all(r["segment_id"] == f"{v}[{r['segment_id'].rsplit('[', 1)[1]}" for v, r in
               zip(videos, rows))
    splits = [split_of(v, folds) for v in videos]
    assert None not in splits  # every segment's video is in the SDK folds
    assert splits == [r["split"] for r in rows]
    assert Counter(splits) == {"train": 16327, "valid": 1871, "test": 4662}
    # MMSA's processed pickles have 16326/1871/4659: 1 train and 3 test segments fewer,
    # lost in MMSA's own processing; the SDK folds on the SDK label segments give the above.
    present = set(videos)
    per_split = {s: len(v & present) for s, v in folds.items()}
    assert per_split == {"train": 2249, "valid": 300, "test": 676}
    # two SDK test videos have no labelled segment at all
    assert sorted(set().union(*folds.values()) - present) == ["7l3BNtSE0xc", "dZFV0lyedX4"]
    assert fold_order("mosei")["test"][:2] == ["7l3BNtSE0xc", "dZFV0lyedX4"]


@pytest.mark.realdata
def test_real_chsims2_label_table():
    path = real("chsims2/label.csv")
    df = read_sims_labels(path)
    assert split_sizes(df) == (2722, 647, 1034)
    assert len(df) == 4403 and df["id"].is_unique
    with open(path, newline="", encoding="utf-8") as fh:
        raw = list(csv.DictReader(fh))
    assert df["clip_id"].tolist() == [r["clip_id"] for r in raw]  # strings as written
    assert df["video_id"].tolist() == [r["video_id"] for r in raw]
    assert df["clip_id"].iloc[0] == "0001" and df["id"].iloc[0] == "video_0001$_$0001"
    assert all(isinstance(c, str) for c in df["clip_id"])
    assert (df["clip_id"].str.startswith("0")).sum() > 4000
    for col in ("label", "label_T", "label_A", "label_V"):
        x = df[col].to_numpy()
        assert x.min() >= -1.0 and x.max() <= 1.0
        off = np.abs(x * 5 - np.round(x * 5)) > 1e-6
        # the 0.2 grid, except one clip of the official table labelled -0.1 in every column
        assert df["id"][off].tolist() == ["test11$_$00006"], col
        assert x[off].tolist() == [-0.1]


# ============================================================================================
# synthetic .csd fixtures

def write_csd(path: Path, root: str, data: dict, metadata: dict | None = None, *,
              with_data: bool = True, with_metadata: bool = True) -> Path:
    """Write ``data`` {video: (features, intervals)} in the SDK's file structure."""
    with h5py.File(path, "w") as fh:
        grp = fh.create_group(root)
        if with_data:
            dgrp = grp.create_group("data")
            for video, (feats, ivs) in data.items():
                vgrp = dgrp.create_group(video)
                vgrp.create_dataset("features", data=feats)
                vgrp.create_dataset("intervals", data=np.asarray(ivs, dtype=np.float64))
        if with_metadata:
            mgrp = grp.create_group("metadata")
            for key, value in {"root name": root, **(metadata or {})}.items():
                ds = mgrp.create_dataset(key, (1,), dtype=h5py.special_dtype(vlen=str))
                ds[0] = json.dumps(value)
    return path


META = DatasetMeta(name="sdk-test", title="SDK test", language="en", label_range=(-3.0, 3.0),
                   convention="mosi", settings=("sdk",), default_setting="sdk")
FOLDS = {"train": {"vidA"}, "valid": {"vidB"}, "test": {"vidC"}}

# vidA: frames of 0.5 s stored out of order; features = frame number (1..6) in both columns
A_IVS = np.array([[1.5, 2.0], [0.0, 0.5], [2.5, 3.0], [0.5, 1.0], [2.0, 2.5], [1.0, 1.5],
                  [0.6, 0.6]])  # the last one has zero length
A_FEATS = np.array([[4, 4], [1, 1], [6, 6], [2, 2], [5, 5], [3, 3], [99, 99]], np.float32)


@pytest.fixture
def sdk_dir(tmp_path: Path) -> Path:
    write_csd(tmp_path / "labels.csd", "Opinion Segment Labels", {
        # vidA: segments [0, 1] and [1, 2.5]; vidB: [0.5, 1.5]; vidC: [0, 1] and [10, 11]
        "vidA": (np.array([[1.5], [-2.0]], np.float32), [[0.0, 1.0], [1.0, 2.5]]),
        "vidB": (np.array([[0.4]], np.float32), [[0.5, 1.5]]),
        "vidC": (np.array([[3.0], [-3.0]], np.float32), [[0.0, 1.0], [10.0, 11.0]]),
    }, {"dimension names": ["sentiment score"], "dataset version": 1.0})
    write_csd(tmp_path / "audio.csd", "COVAREP", {
        "vidA": (A_FEATS, A_IVS),
        "vidB": (np.array([[7, 7], [8, 8]], np.float32), [[0.0, 0.9], [1.4, 2.0]]),
        "vidC": (np.array([[9, 9]], np.float32), [[0.2, 0.4]]),  # nothing in [10, 11]
    })
    write_csd(tmp_path / "vision.csd", "Facet", {
        # one frame straddling the boundary between vidA's segments at t=1.0
        "vidA": (np.array([[1.0, 0, 0], [2.0, 0, 0]], np.float32), [[0.8, 1.2], [2.4, 2.6]]),
        "vidB": (np.array([[3.0, 0, 0]], np.float32), [[0.0, 3.0]]),
        "vidC": (np.array([[4.0, 0, 0], [5.0, 0, 0]], np.float32), [[0.0, 0.5], [10.0, 10.5]]),
    })
    write_csd(tmp_path / "words.csd", "words", {
        "vidA": (np.array([[b"world"], [b"hello"], [b"sp"], [b"again"], [b"sp"]]),
                 [[0.6, 1.0], [0.0, 0.4], [0.4, 0.6], [1.2, 2.0], [2.0, 2.5]]),
        "vidB": (np.array([[b"fine"]]), [[0.6, 1.0]]),
        "vidC": (np.array([[b"sp"]]), [[0.0, 1.0]]),
    })
    return tmp_path


def load(sdk_dir: Path, **kwargs):
    args = dict(meta=META, setting="sdk", label_file="labels.csd",
                feature_files={"audio": "audio.csd", "vision": "vision.csd"},
                words_file="words.csd", folds=FOLDS)
    args.update(kwargs)
    return load_sdk(sdk_dir, **args)


def test_read_csd_structure_and_metadata(sdk_dir):
    cs = read_csd(sdk_dir / "labels.csd")
    assert cs.root == "Opinion Segment Labels" and cs.videos == ("vidA", "vidB", "vidC")
    assert cs.metadata == {"root name": "Opinion Segment Labels",
                           "dimension names": '["sentiment score"]', "dataset version": "1.0"}
    feats, ivs = cs["vidA"]
    assert feats.dtype == np.float32 and feats.shape == (2, 1)
    assert ivs.shape == (2, 2)
    audio = read_csd(sdk_dir / "audio.csd")
    assert audio.kind == "numeric" and audio.dim == 2 and audio.rows["vidA"] == 7
    words = read_csd(sdk_dir / "words.csd")
    assert words.kind == "words"
    assert words["vidA"][0][:, 0].tolist() == ["world", "hello", "sp", "again", "sp"]


def test_sdk_labels_ids_in_storage_order(sdk_dir):
    lab = read_sdk_labels(sdk_dir / "labels.csd", FOLDS)
    assert lab["ids"].tolist() == ["vidA_1", "vidA_2", "vidB_1", "vidC_1", "vidC_2"]
    assert lab["split"].tolist() == ["train", "train", "valid", "test", "test"]
    assert lab["seg"].tolist() == [1, 2, 1, 1, 2]
    np.testing.assert_allclose(lab["labels"], [1.5, -2.0, 0.4, 3.0, -3.0], atol=1e-6)
    none = read_sdk_labels(sdk_dir / "labels.csd")
    assert set(none["split"].tolist()) == {"none"}
    missing = read_sdk_labels(sdk_dir / "labels.csd", {**FOLDS, "test": {"vidC", "vidZ"}})
    assert missing["fold_videos_missing"].tolist() == ["vidZ"]


def test_overlap_rule_matches_sdk_intersection():
    ivs = np.array([[0.0, 0.5], [0.5, 1.0], [1.0, 1.5], [0.9, 1.1], [0.7, 0.7],
                    [1.0 - 5e-6, 1.2]])
    # touching the end (1.0) is out; straddling is in; zero length is out; within eps of the
    # boundary counts as touching
    assert overlapping_frames(ivs, 0.5, 1.0).tolist() == [False, True, False, True, False,
                                                          False]


def test_feature_cutting_to_segment_intervals(sdk_dir):
    ds = load(sdk_dir)
    train, valid, test = ds["train"], ds["valid"], ds["test"]
    assert train.ids == ["vidA_1", "vidA_2"] and valid.ids == ["vidB_1"]
    assert test.ids == ["vidC_1", "vidC_2"]
    # audio: padded to the longest segment over all splits (3 frames)
    a = train.features["audio"]
    assert tuple(a.shape) == (2, 3, 2)
    assert train.lengths["audio"].tolist() == [2, 3]
    # [0, 1]: frames 1 and 2 (frame 3 = [1.0, 1.5] only touches; the zero-length frame is out)
    assert a[0, :, 0].tolist() == [1.0, 2.0, 0.0]
    # [1, 2.5]: frames 3, 4, 5 in time order although stored shuffled (6 touches at 2.5)
    assert a[1, :, 0].tolist() == [3.0, 4.0, 5.0]
    # vidB [0.5, 1.5]: [0, 0.9] overlaps, [1.4, 2.0] overlaps
    assert valid.features["audio"][0, :2, 0].tolist() == [7.0, 8.0]
    assert valid.lengths["audio"].tolist() == [2]
    # vision: the frame straddling t=1.0 is in both of vidA's segments
    v = train.features["vision"]
    assert tuple(v.shape) == (2, 2, 3)
    assert train.lengths["vision"].tolist() == [1, 2]
    assert v[0, :1, 0].tolist() == [1.0] and v[1, :, 0].tolist() == [1.0, 2.0]
    assert valid.features["vision"][0, 0, 0].item() == 3.0
    np.testing.assert_allclose(train.labels.numpy(), [1.5, -2.0])
    assert ds.validated and ds.modalities == ("audio", "vision")


def test_word_features_give_texts(sdk_dir):
    ds = load(sdk_dir)
    assert ds["train"].texts == ["hello world", "again"]  # time order, 'sp' skipped
    assert ds["valid"].texts == ["fine"]
    assert ds["test"].texts == ["", ""]
    assert any("2 segment(s) have no word" in n for n in ds.notes)
    assert load(sdk_dir, words_file=None)["train"].texts is None


def test_segment_without_frames_gets_one_zero_step(sdk_dir):
    ds = load(sdk_dir)
    test = ds["test"]
    # vidC_2 = [10, 11]: no audio frame -> length 1 of zeros; vision has [10, 10.5]
    assert test.lengths["audio"].tolist() == [1, 1]
    assert test.features["audio"][1].abs().sum().item() == 0.0
    assert test.features["audio"][0, 0, 0].item() == 9.0
    assert test.lengths["vision"].tolist() == [1, 1]
    assert test.features["vision"][1, 0, 0].item() == 5.0
    notes = [n for n in ds.notes if "no 'audio' frame" in n]
    assert len(notes) == 1 and "1 of 5 segment(s)" in notes[0] and "audio.csd" in notes[0]
    assert not any("no 'vision' frame" in n for n in ds.notes)


def test_max_len_truncates_and_keeps_first_frames(sdk_dir):
    ds = load(sdk_dir, max_len={"audio": 2})
    assert tuple(ds["train"].features["audio"].shape) == (2, 2, 2)
    assert ds["train"].lengths["audio"].tolist() == [2, 2]
    assert ds["train"].features["audio"][1, :, 0].tolist() == [3.0, 4.0]
    with pytest.raises(DataError, match="max_len names modality 'text'"):
        load(sdk_dir, max_len={"text": 3})
    with pytest.raises(DataError, match="positive integer"):
        load(sdk_dir, max_len={"audio": 0})
    with pytest.raises(DataError, match="max_len="):
        load(sdk_dir, max_bytes=10)


def test_inf_and_nan_feature_values(sdk_dir):
    feats = A_FEATS.copy()
    feats[1, 0] = -np.inf  # frame 1, inside vidA_1
    write_csd(sdk_dir / "audio.csd", "COVAREP", {
        "vidA": (feats, A_IVS), "vidB": (np.ones((1, 2), np.float32), [[0.5, 1.0]]),
        "vidC": (np.ones((1, 2), np.float32), [[0.0, 1.0]])})
    ds = load(sdk_dir)
    assert ds["train"].features["audio"][0, 0].tolist() == [0.0, 1.0]
    assert any("replaced 1 -inf" in n for n in ds.notes)
    feats[3, 1] = np.nan  # frame 2
    write_csd(sdk_dir / "audio.csd", "COVAREP", {
        "vidA": (feats, A_IVS), "vidB": (np.ones((1, 2), np.float32), [[0.5, 1.0]]),
        "vidC": (np.ones((1, 2), np.float32), [[0.0, 1.0]])})
    with pytest.raises(DataError, match=r"NaN.*'vidA_1'.*nan_to_zero"):
        load(sdk_dir)
    ds = load(sdk_dir, nan_to_zero=True)
    assert ds["train"].features["audio"][0, 1].tolist() == [2.0, 0.0]


def test_error_non_hdf5_file(tmp_path):
    bad = tmp_path / "CMU_MOSI_COVAREP.csd"
    bad.write_text("<html>404 Not Found</html>")
    with pytest.raises(DataError, match="not an HDF5 file") as err:
        read_csd(bad)
    assert str(bad) in str(err.value)
    with pytest.raises(DataError, match="not found"):
        read_csd(tmp_path / "absent.csd")


def test_error_missing_groups(tmp_path):
    no_data = write_csd(tmp_path / "a.csd", "COVAREP", {}, with_data=False)
    with pytest.raises(DataError, match=r"missing group 'COVAREP/data'"):
        read_csd(no_data)
    no_meta = write_csd(tmp_path / "b.csd", "COVAREP", {"v": (np.ones((1, 2)), [[0, 1]])},
                        with_metadata=False)
    with pytest.raises(DataError, match=r"missing group 'COVAREP/metadata'"):
        read_csd(no_meta)
    empty = tmp_path / "c.csd"
    h5py.File(empty, "w").close()
    with pytest.raises(DataError, match="no root group"):
        read_csd(empty)
    with h5py.File(tmp_path / "d.csd", "w") as fh:
        fh.create_group("R/metadata")
        fh.create_dataset("R/data/vid1/features", data=np.ones((2, 3)))
    with pytest.raises(DataError, match=r"'R/data/vid1' has no 'intervals'"):
        read_csd(tmp_path / "d.csd")
    bad_shape = write_csd(tmp_path / "e.csd", "R", {"vid1": (np.ones((3, 2)), np.ones((2, 2)))})
    with pytest.raises(DataError, match=r"vid1.*features have shape \(3, 2\)"):
        read_csd(bad_shape)


def test_error_video_missing_from_feature_file(sdk_dir):
    write_csd(sdk_dir / "vision.csd", "Facet", {
        "vidA": (np.ones((1, 3), np.float32), [[0.0, 1.0]]),
        "vidC": (np.ones((1, 3), np.float32), [[0.0, 1.0]])})
    with pytest.raises(DataError) as err:
        load(sdk_dir)
    msg = str(err.value)
    assert "'vidB'" in msg and str(sdk_dir / "vision.csd") in msg and "'vision'" in msg


def test_error_words_and_features_swapped_and_labels(sdk_dir):
    with pytest.raises(DataError, match="words_file="):
        load(sdk_dir, feature_files={"text": "words.csd"})
    with pytest.raises(DataError, match="holds numeric features"):
        load(sdk_dir, words_file="audio.csd")
    with pytest.raises(DataError, match="at least one feature file"):
        load(sdk_dir, feature_files={})
    narrow = DatasetMeta(name="sdk-test", title="t", language="en", label_range=(-1.0, 1.0),
                         convention="sims", settings=("sdk",), default_setting="sdk")
    with pytest.raises(DataError, match=r"outside the dataset range.*'vidA_1'"):
        load(sdk_dir, meta=narrow)
    with pytest.raises(DataError, match="in both"):
        load(sdk_dir, folds={"train": {"vidA"}, "valid": {"vidA"}, "test": {"vidC"}})
    with pytest.raises(DataError, match="no labelled segment falls in the 'valid' fold"):
        load(sdk_dir, folds={"train": {"vidA", "vidB"}, "test": {"vidC"}})


def test_videos_outside_folds_are_left_out_with_a_note(sdk_dir):
    write_csd(sdk_dir / "labels.csd", "Opinion Segment Labels", {
        "vidA": (np.array([[1.0]], np.float32), [[0.0, 1.0]]),
        "vidB": (np.array([[0.4]], np.float32), [[0.5, 1.5]]),
        "vidC": (np.array([[3.0]], np.float32), [[0.0, 1.0]]),
        "vidX": (np.array([[0.0], [1.0]], np.float32), [[0.0, 1.0], [1.0, 2.0]]),
    })
    ds = load(sdk_dir)  # vidX is in no fold and in no feature file: not an error
    assert ds.sizes() == {"train": 1, "valid": 1, "test": 1}
    assert any("2 segment(s) of 1 video(s) are in no fold" in n for n in ds.notes)


# ============================================================================================
# folds

def test_standard_folds_shapes_and_lookup():
    mosi = standard_folds("mosi")
    assert {s: len(v) for s, v in mosi.items()} == {"train": 52, "valid": 10, "test": 31}
    assert standard_folds("CMU-MOSI") == mosi
    mosi["train"].clear()  # callers get a fresh copy
    assert len(standard_folds("mosi")["train"]) == 52
    mosei = standard_folds("mosei")
    assert {s: len(v) for s, v in mosei.items()} == {"train": 2249, "valid": 300, "test": 678}
    assert not (mosei["train"] & mosei["valid"] or mosei["train"] & mosei["test"]
                or mosei["valid"] & mosei["test"])
    assert split_of("03bSnISJMiM", standard_folds("mosi")) == "train"
    assert split_of("not-a-video", standard_folds("mosi")) is None
    with pytest.raises(DataError, match="no standard CMU-MultimodalSDK folds"):
        standard_folds("chsims")
    with pytest.raises(DataError, match="unknown split name"):
        check_folds({"train": [], "dev": []})


def test_video_of_segment_ids():
    assert video_of("-3g5yACwYnA[0]") == "-3g5yACwYnA"
    assert video_of("I5y0__X72p0_12") == "I5y0__X72p0"
    assert video_of("_dI--eQ6qVU_3") == "_dI--eQ6qVU"
    assert video_of("81406[4]") == "81406"
    with pytest.raises(DataError):
        video_of("novideo")


# ============================================================================================
# CH-SIMS label table (synthetic)

HEADER = "video_id,clip_id,text,label,label_T,label_A,label_V,annotation,mode\n"


def write_table(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    path = tmp_path / "label.csv"
    path.write_text(header + body, encoding="utf-8")
    return path


def test_sims_table_reads_ids_as_strings(tmp_path):
    path = write_table(tmp_path, "0001,0001,好,0.2,0.4,-0.2,0.0,Positive,train\n"
                                 "0001,00020,不好,-1.0,-1.0,-0.8,-1.0,Negative,valid\n"
                                 "video_0002,0003,,1,1,1,1,Positive, test\n")
    df = read_sims_labels(path)
    assert df["video_id"].tolist() == ["0001", "0001", "video_0002"]
    assert df["clip_id"].tolist() == ["0001", "00020", "0003"]
    assert df["id"].tolist() == ["0001$_$0001", "0001$_$00020", "video_0002$_$0003"]
    assert df["split"].tolist() == ["train", "valid", "test"]
    assert df["text"].tolist() == ["好", "不好", ""]
    assert df["label_A"].tolist() == [-0.2, -0.8, 1.0]
    assert split_sizes(df) == (1, 1, 1)
    # text and annotation are optional
    path = write_table(tmp_path, "v,01,0.2,0.2,0.2,0.2,train\n",
                       header="video_id,clip_id,label,label_T,label_A,label_V,mode\n")
    df = read_sims_labels(path)
    assert "text" not in df.columns and df["clip_id"].tolist() == ["01"]


def test_sims_table_validation(tmp_path):
    path = write_table(tmp_path, "v,1,0.2,0.2,0.2,train\n",
                       header="video_id,clip_id,label,label_T,label_A,mode\n")
    with pytest.raises(DataError, match="missing column.*label_V"):
        read_sims_labels(path)
    path = write_table(tmp_path, "v,0001,t,0.2,1.4,0.2,0.2,P,train\n")
    with pytest.raises(DataError, match=r"'label_T'.*outside the dataset range \[-1.0, 1.0\].*line 2.*v\$_\$0001"):
        read_sims_labels(path)
    path = write_table(tmp_path, "v,0001,t,0.2,x,0.2,0.2,P,train\n")
    with pytest.raises(DataError, match=r"'label_T'.*non-numeric.*'x' on line 2.*v\$_\$0001"):
        read_sims_labels(path)
    path = write_table(tmp_path, "v,0001,t,0.2,0.2,0.2,0.2,P,train\n"
                                 "v,0002,t,0.2,0.2,0.2,0.2,P,dev\n")
    with pytest.raises(DataError, match=r"unknown value.*'dev'.*line 3"):
        read_sims_labels(path)
    path = write_table(tmp_path, "v,0001,t,0.2,0.2,0.2,0.2,P,train\n"
                                 "v,0002,t,0.2,0.2,0.2,0.2,P,test\n"
                                 "v,0001,t,0.4,0.2,0.2,0.2,P,test\n")
    with pytest.raises(DataError, match=r"duplicate.*v\$_\$0001.*line 2, line 4"):
        read_sims_labels(path)
    with pytest.raises(DataError, match="not found"):
        read_sims_labels(tmp_path / "nope.csv")
