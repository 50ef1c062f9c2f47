"""Face crops for video encoders: OpenCV's bundled cascade on a real photograph (scikit-image's
``astronaut``, Eileen Collins, public domain), the nearest-box rule, the full-frame fallback and
the hf-video ``face`` option on a video file."""

from __future__ import annotations

import builtins

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2", reason="face crops need opencv-python-headless<5")
skdata = pytest.importorskip("skimage.data", reason="the test photograph ships with scikit-image")

from msabench.errors import ConfigError  # noqa: E402
from msabench_builtins.faces import FaceCropper, centre_square  # noqa: E402

#: where the face is in the 512x512 astronaut photograph (by eye: forehead to chin, ear to ear)
FACE_X, FACE_Y = (170, 280), (40, 170)


def _inside(x, y):
    return FACE_X[0] <= x <= FACE_X[1] and FACE_Y[0] <= y <= FACE_Y[1]


def test_the_cascade_finds_the_face_in_a_real_photograph():
    img = skdata.astronaut()
    x, y, w, h = FaceCropper().detect(img)
    assert _inside(x + w / 2, y + h / 2)
    assert 60 <= w <= 160  # a face, not the whole picture or an eye
    assert FaceCropper().detect(np.full((240, 320, 3), 90, np.uint8)) is None


def test_crops_are_square_resized_and_centred_on_the_face():
    img = skdata.astronaut()
    cropper = FaceCropper()
    frames = np.stack([img] * 3)
    out = cropper(frames, 64)
    assert out.shape == (3, 64, 64, 3) and out.dtype == np.uint8
    left, top, side = cropper.boxes(frames)[0]
    assert _inside(left + side / 2, top + side / 2) and side < 512
    assert cropper.stats == {"clips": 1, "with_face": 1, "full_frame": 0}


def test_frames_without_a_face_take_the_nearest_box_and_faceless_clips_the_full_frame():
    img = skdata.astronaut()
    blank = np.full_like(img, 30)
    cropper = FaceCropper()
    boxes = cropper.boxes(np.stack([blank, img, blank, blank]))
    assert boxes[0] == boxes[1] == boxes[2] == boxes[3]
    clip = np.stack([blank, blank])
    out = cropper(clip, 64)
    assert np.array_equal(out[0], centre_square(blank, 64, cv2))
    assert cropper.stats["full_frame"] == 1


def test_missing_opencv_is_a_clear_error(monkeypatch):
    real_import = builtins.__import__

    def no_cv2(name, *args, **kwargs):
        if name == "cv2":
            raise ImportError("No module named 'cv2'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cv2)
    with pytest.raises(ConfigError, match="opencv-python-headless.*face='none'"):
        FaceCropper()


def test_hf_video_face_option_crops_video_files(tmp_path):
    pytest.importorskip("av", reason="PyAV writes and decodes the test video")
    from msabench.api import MediaRef
    from msabench_builtins.extractors.hf_video import HFVideoExtractor
    from msabench_builtins.media import write_video

    img = cv2.resize(skdata.astronaut(), (320, 320))
    frames = np.stack([img] * 6)
    path = write_video(tmp_path / "astronaut.mp4", frames, fps=10)
    ex = HFVideoExtractor(model=str(tmp_path), face="opencv", size=48, face_decode_size=320)
    cropped = ex._video(0, MediaRef(str(path), 0.0, 0.4))
    assert cropped.shape == (4, 48, 48, 3)
    assert ex.faces.stats["with_face"] == 1
    plain = HFVideoExtractor(model=str(tmp_path), size=48)._video(0, MediaRef(str(path)))
    assert plain.shape == (6, 48, 48, 3)
    # the crop is a zoom on the face: it differs from the full-frame picture
    assert np.abs(cropped[0].astype(int) - plain[0].astype(int)).mean() > 10
    assert "face='opencv'" in ex.cache_key() and "face" not in plain_key(tmp_path)
    with pytest.raises(ConfigError, match="face='mtcnn'"):
        HFVideoExtractor(model=str(tmp_path), face="mtcnn")


def plain_key(tmp_path):
    from msabench_builtins.extractors.hf_video import HFVideoExtractor

    return HFVideoExtractor(model=str(tmp_path), size=48)._key_parts().__repr__()
