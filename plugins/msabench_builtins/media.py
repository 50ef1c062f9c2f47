"""Decoding (and writing) audio and video files with PyAV (``pip install av``; its wheels
bundle ffmpeg).

``load_audio(path, sample_rate)``  float32 mono waveform, resampled by ffmpeg's swresample
                                   (:class:`av.AudioResampler`); channels are down-mixed.
``load_frames(path, fps, size)``   uint8 RGB frames (T, size, size, 3) sampled at ``fps``:
                                   for each time k/fps (k = 0, 1, ... while inside the
                                   video) the decoded frame whose timestamp is nearest (ties
                                   go to the earlier frame), like ffmpeg's ``fps`` filter;
                                   each frame is scaled (bilinear, swscale) so its short side
                                   is ``size`` and centre-cropped to ``size`` x ``size``.

Both take an optional segment ``start`` / ``end`` in seconds (a :class:`~msabench.api.MediaRef`
cut from a longer recording; None = from the beginning / to the end): ``load_audio`` keeps the
samples ``round(start * rate) .. round(end * rate)``, ``load_frames`` the sampled frames whose
time ``k / fps`` lies in ``[start, end)``. The whole stream is decoded and then cut (clips are
short; no seeking).

``write_wav`` (16-bit PCM, standard library) and ``write_video`` (MPEG-4 ``.mp4``, PyAV) write
the generated media of ``synthetic-sims2``.

Times are measured from the first decoded frame. Rotation metadata and non-square sample
aspect ratios are ignored. ``av`` is imported on first use, so importing this module is free.
Every problem with a file (missing, undecodable, no audio/video stream, no samples) raises
:class:`~msabench.errors.DataError` naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np

from msabench.errors import ConfigError, DataError

_EPS = 1e-6


def _av() -> Any:
    try:
        import av
    except ImportError as exc:
        raise ConfigError(
            "decoding audio/video files needs the PyAV package (it bundles ffmpeg): "
            "pip install av") from exc
    return av


def _open(path: Path | str, kind: str) -> tuple[Any, Path]:
    av = _av()
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise DataError(f"{path}: cannot read {kind}: the file {what}")
    try:
        return av.open(str(path), mode="r"), path
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: cannot open as a media file ({exc}); is it a valid audio/video "
                        f"file (e.g. .mp4, .wav)?") from None


def _decode_error(path: Path, kind: str, exc: Exception) -> DataError:
    return DataError(f"{path}: decoding the {kind} stream failed ({type(exc).__name__}: {exc}); "
                     f"the file looks truncated or corrupt")


def _check_positive(name: str, value: Any, kind: type = int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int) \
            or not value > 0:
        raise ConfigError(f"{name} must be a positive {'number' if kind is float else 'integer'}, "
                          f"got {value!r}")


# --------------------------------------------------------------------------------------------
# audio

def load_audio(path: Path | str, sample_rate: int = 16000, *, start: float | None = None,
               end: float | None = None) -> np.ndarray:
    """The first audio stream of ``path`` as a float32 mono waveform at ``sample_rate`` Hz
    (only the segment ``[start, end)`` seconds when given)."""
    _check_positive("sample_rate", sample_rate)
    _check_segment(path, start, end)
    av = _av()
    container, path = _open(path, "audio")
    with container:
        if not container.streams.audio:
            raise DataError(f"{path}: has no audio stream (streams: {_streams(container)})")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=int(sample_rate))
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                frame.pts = None  # let the resampler count samples (robust to pts gaps)
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):  # flush
                chunks.append(out.to_ndarray().reshape(-1))
        except (av.error.FFmpegError, ValueError) as exc:
            raise _decode_error(path, "audio", exc) from None
    if not chunks or sum(c.size for c in chunks) == 0:
        raise DataError(f"{path}: the audio stream holds no samples")
    wave = np.concatenate(chunks).astype(np.float32, copy=False)
    if start is None and end is None:
        return wave
    lo = 0 if start is None else int(round(start * sample_rate))
    hi = len(wave) if end is None else int(round(end * sample_rate))
    if hi <= lo or lo >= len(wave):
        raise DataError(f"{path}: the segment [{start}, {end}) s holds no audio samples (the "
                        f"stream lasts {len(wave) / sample_rate:.3f} s)")
    return wave[lo:hi]


def _check_segment(path: Path | str, start: float | None, end: float | None) -> None:
    for name, value in (("start", start), ("end", end)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not value >= 0):
            raise DataError(f"{path}: segment {name} must be a number of seconds >= 0, got "
                            f"{value!r}")
    if start is not None and end is not None and end <= start:
        raise DataError(f"{path}: segment end {end} is not after start {start}")


def _streams(container: Any) -> str:
    kinds = [s.type for s in container.streams]
    return ", ".join(kinds) if kinds else "none"


# --------------------------------------------------------------------------------------------
# video

def load_frames(path: Path | str, fps: float = 10, size: int = 128, *,
                start: float | None = None, end: float | None = None,
                square: bool = True) -> np.ndarray:
    """RGB frames of the first video stream of ``path`` sampled at ``fps``, as uint8
    ``(T, size, size, 3)`` (short side scaled to ``size``, centre crop); only the frames at
    times in ``[start, end)`` seconds when given. ``square=False`` keeps the whole frame
    (short side scaled to ``size``, no crop): the input of a face detector."""
    _check_positive("fps", fps, float)
    _check_positive("size", size)
    _check_segment(path, start, end)
    av = _av()
    container, path = _open(path, "video")
    frames: list[np.ndarray] = []
    with container:
        if not container.streams.video:
            raise DataError(f"{path}: has no video stream (streams: {_streams(container)})")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        native_dt = 1.0 / float(rate) if rate else None
        try:
            for frame in _sample(container.decode(stream), float(fps), native_dt):
                frames.append(_resize_crop(frame, int(size), square))
        except (av.error.FFmpegError, ValueError) as exc:
            raise _decode_error(path, "video", exc) from None
    if not frames:
        raise DataError(f"{path}: the video stream holds no frames")
    if start is None and end is None:
        return np.stack(frames)
    times = np.arange(len(frames)) / float(fps)
    keep = np.ones(len(frames), dtype=bool)
    if start is not None:
        keep &= times >= start - _EPS
    if end is not None:
        keep &= times < end - _EPS
    if not keep.any():
        raise DataError(f"{path}: the segment [{start}, {end}) s holds no frames at {fps} fps "
                        f"(the video lasts about {len(frames) / float(fps):.3f} s)")
    return np.stack([f for f, k in zip(frames, keep) if k])


def _sample(decoded: Iterator[Any], fps: float, native_dt: float | None) -> Iterator[Any]:
    """Yield, for each target time k/fps, the decoded frame nearest to it (streaming)."""
    k = 0
    t0 = None
    prev = prev_t = None
    last_dt = native_dt
    for index, frame in enumerate(decoded):
        t = frame.time
        if t is None:  # no timestamps: assume a constant rate
            t = index * (native_dt or 1.0 / fps)
        if t0 is None:
            t0 = t
        t -= t0
        if prev is not None:
            if t <= prev_t:  # out-of-order/duplicate timestamp: keep the later frame
                prev = frame
                continue
            last_dt = t - prev_t
            mid = (prev_t + t) / 2
            while k / fps <= mid + _EPS:
                yield prev
                k += 1
        prev, prev_t = frame, t
    if prev is None:
        return
    end = prev_t + (native_dt or last_dt or 1.0 / fps)
    while k / fps < end - _EPS:
        yield prev
        k += 1
    if k == 0:  # a single frame shorter than one target step
        yield prev


def _resize_crop(frame: Any, size: int, square: bool = True) -> np.ndarray:
    w, h = frame.width, frame.height
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    rgb = frame.reformat(width=new_w, height=new_h, format="rgb24",
                         interpolation="BILINEAR").to_ndarray()
    if not square:
        return np.ascontiguousarray(rgb)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return np.ascontiguousarray(rgb[top:top + size, left:left + size])


# --------------------------------------------------------------------------------------------
# writing (synthetic media, test fixtures)

def write_wav(path: Path | str, wave: np.ndarray, sample_rate: int = 16000) -> Path:
    """Write a mono float waveform in [-1, 1] as a 16-bit PCM ``.wav`` (standard library only;
    values outside [-1, 1] are clipped)."""
    import wave as wavfile

    _check_positive("sample_rate", sample_rate)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = (np.clip(np.asarray(wave, dtype=np.float64).reshape(-1), -1.0, 1.0) * 32767.0)
    with wavfile.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(int(sample_rate))
        out.writeframes(np.round(pcm).astype("<i2").tobytes())
    return path


def write_video(path: Path | str, frames: np.ndarray, fps: int = 10) -> Path:
    """Write uint8 RGB frames ``(T, H, W, 3)`` (H and W even) as an ``.mp4`` (MPEG-4 part 2,
    yuv420p) with PyAV, at ``fps`` frames per second."""
    _check_positive("fps", fps)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 \
            or frames.shape[1] % 2 or frames.shape[2] % 2 or not len(frames):
        raise DataError(f"{path}: write_video needs uint8 (T, H, W, 3) frames with even H and W, "
                        f"got {frames.dtype} {frames.shape}")
    av = _av()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=int(fps))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
