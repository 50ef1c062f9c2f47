"""Speaker-face crops for video encoders (boost-mtl: "the speaker's facial video ... 128x128").

The paper runs TalkNet active-speaker detection, which has no package-index release with
weights. The detector here is OpenCV's frontal-face Haar cascade, which ships inside
``opencv-python-headless`` (``pip install "opencv-python-headless<5"``; OpenCV 5 wheels no
longer bundle the cascade files), so it runs offline with real, published weights.

:func:`crop_faces` on a clip of frames ``(T, H, W, 3)`` (uint8 RGB, any aspect ratio):

1. every ``every``-th frame is searched (grey, histogram-equalised; ``scaleFactor`` 1.1,
   ``minNeighbors`` 5, smallest face 1/8 of the short side); the largest face in a frame is
   taken as the speaker's (the cascade has no notion of who speaks: a documented limit);
2. a frame without a detection takes the box of the nearest frame in time that has one;
3. each box is grown by ``margin`` (0.25 of its side on every side: forehead, chin, a little
   background, as face-video crops of MMSA/OpenFace-style pipelines), made square, moved
   inside the frame, and resized to ``size`` x ``size``;
4. fallback: a clip with no face in any searched frame is the full frame, short side scaled to
   ``size`` and centre-cropped (exactly what ``face="none"`` gives), and is counted in
   :attr:`FaceCropper.stats` so runs can report how often it happened.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from msabench.errors import ConfigError

DETECTORS = ("none", "opencv")
CASCADE = "haarcascade_frontalface_default.xml"


def _cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:
        raise ConfigError(
            "face crops (option face='opencv') need OpenCV: pip install "
            "'opencv-python-headless<5' (or msabench[media]); set face='none' to use the full "
            f"frame instead [{exc}]") from exc
    return cv2


class FaceCropper:
    """Face crops of frame arrays with OpenCV's bundled Haar cascade (module docstring)."""

    def __init__(self, margin: float = 0.25, every: int = 1) -> None:
        if not 0 <= float(margin) <= 2:
            raise ConfigError(f"face margin must be in [0, 2], got {margin!r}")
        if int(every) < 1:
            raise ConfigError(f"face detection stride must be >= 1, got {every!r}")
        cv2 = _cv2()
        path = cv2.data.haarcascades + CASCADE
        self.detector = cv2.CascadeClassifier(path)
        if self.detector.empty():
            raise ConfigError(f"OpenCV could not load its face cascade {path}; this OpenCV "
                              f"build ({cv2.__version__}) does not bundle it: pip install "
                              "'opencv-python-headless<5'")
        self.cv2 = cv2
        self.margin = float(margin)
        self.every = int(every)
        #: clips seen, clips with a face, clips that fell back to the full frame
        self.stats = {"clips": 0, "with_face": 0, "full_frame": 0}

    def detect(self, frame: np.ndarray) -> tuple[int, int, int, int] | None:
        """The largest face (x, y, w, h) in one RGB frame, or None."""
        grey = self.cv2.equalizeHist(self.cv2.cvtColor(frame, self.cv2.COLOR_RGB2GRAY))
        side = max(16, min(frame.shape[:2]) // 8)
        found = self.detector.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5,
                                               minSize=(side, side))
        if len(found) == 0:
            return None
        x, y, w, h = max((tuple(int(v) for v in box) for box in found),
                         key=lambda b: b[2] * b[3])
        return x, y, w, h

    def boxes(self, frames: np.ndarray) -> list[tuple[int, int, int, int] | None]:
        """One square crop box (left, top, side) per frame, None for every frame when the
        clip has no face (steps 1-3 of the module docstring)."""
        found = {t: self.detect(frames[t]) for t in range(0, len(frames), self.every)}
        hits = sorted(t for t, b in found.items() if b is not None)
        if not hits:
            return [None] * len(frames)
        height, width = frames.shape[1:3]
        out = []
        for t in range(len(frames)):
            nearest = min(hits, key=lambda h: (abs(h - t), h))
            x, y, w, h = found[nearest]
            side = int(round(max(w, h) * (1 + 2 * self.margin)))
            side = min(side, height, width)
            cx, cy = x + w / 2, y + h / 2
            left = int(round(min(max(cx - side / 2, 0), width - side)))
            top = int(round(min(max(cy - side / 2, 0), height - side)))
            out.append((left, top, side))
        return out

    def __call__(self, frames: np.ndarray, size: int) -> np.ndarray:
        """``(T, size, size, 3)`` uint8 face crops of ``frames`` ``(T, H, W, 3)``."""
        frames = np.asarray(frames)
        boxes = self.boxes(frames)
        self.stats["clips"] += 1
        if boxes[0] is None:
            self.stats["full_frame"] += 1
            return np.stack([centre_square(f, size, self.cv2) for f in frames])
        self.stats["with_face"] += 1
        crops = []
        for frame, (left, top, side) in zip(frames, boxes):
            patch = frame[top:top + side, left:left + side]
            crops.append(self.cv2.resize(patch, (size, size), interpolation=self.cv2.INTER_AREA))
        return np.stack(crops).astype(np.uint8)


def centre_square(frame: np.ndarray, size: int, cv2: Any) -> np.ndarray:
    """Short side scaled to ``size``, centre crop: the full-frame fallback."""
    h, w = frame.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    patch = frame[top:top + side, left:left + side]
    if side == size:
        return np.ascontiguousarray(patch)
    return cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
