"""``hf-video``: a pre-trained ``transformers`` video backbone (VideoMAE and other clip models
with a fixed ``num_frames``) as an extractor.

The model is a local directory (``save_pretrained`` layout: config, weights and the image
processor's ``preprocessor_config.json``) or a hub name, located exactly as ``hf-text`` does.
The image processor needs Pillow (``pip install pillow``; transformers uses torchvision instead
when it is installed, which can change the pixels by resampling differences).

Inputs are frame arrays ``(T, H, W, 3)`` uint8 RGB (or lists of ``(H, W, 3)`` frames), paths
of video files or :class:`~msabench.api.MediaRef` s (a file and a ``[start, end)`` segment), decoded with :func:`msabench_builtins.media.load_frames` at ``fps`` frames per
second, short side scaled to ``size`` and centre-cropped to ``size`` x ``size`` (boost-mtl:
128x128 face video at 10 fps). With ``face="opencv"`` frames are decoded with their short side
at ``face_decode_size``, uncropped, and each clip is cut to the largest face found by OpenCV's
bundled Haar cascade, ``size`` x ``size``, falling back to the full frame when a clip has no face
(:mod:`msabench_builtins.faces`); frame-array inputs are cropped the same way. The model sees clips of ``num_frames`` frames (from its config,
16 for VideoMAE):

``clip_sampling="cover"``    ceil(T / num_frames) windows of consecutive frames whose starts
                             are spread evenly over the video, so every frame is seen (the
                             windows overlap a little unless T is a multiple of num_frames);
``clip_sampling="uniform"``  one clip of num_frames frames spread evenly over the video.

A video shorter than num_frames gives one clip that repeats frames evenly.

The Extractor contract: ``prepare(raw)`` decodes, samples, crops and processes the frames of
every clip (``pixel_values`` (K, num_frames, 3, h, w) for the K clips of all N videos, and
``clips`` (N,) clips per video); ``forward(inputs)`` runs the backbone with gradients and
returns one vector per clip (the mean over the clip's tokens), (N, max clips, H), lengths =
clips per video: the finest grain of a clip model. ``extract`` (frozen, batches of
``batch_size`` clips) pools as the ``pooling`` option says:

``mean``   (N, 1, H), length 1: the mean over every token of every clip, i.e. spatial then
           temporal average pooling (boost-mtl), since each clip has the same number of tokens
           per time step (accumulated in float64);
``clips``  (N, C, H) with C = clips per video: one vector per clip, as ``forward``.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from msabench.api import ComponentMeta, Features
from msabench.errors import DataError

from ..faces import DETECTORS as FACE_DETECTORS
from ._hf import HFModelExtractor, check_sequence, is_media, media_segment, track

CLIP_SAMPLINGS = ("cover", "uniform")
POOLINGS = ("mean", "clips")


def clip_indices(n_frames: int, num_frames: int, sampling: str) -> list[np.ndarray]:
    """Frame indices of each clip (see the module docstring)."""
    if n_frames <= num_frames or sampling == "uniform":
        return [np.linspace(0, n_frames - 1, num_frames).round().astype(np.int64)]
    k = math.ceil(n_frames / num_frames)
    starts = np.linspace(0, n_frames - num_frames, k).round().astype(np.int64)
    return [s + np.arange(num_frames) for s in starts]


class HFVideoExtractor(HFModelExtractor):
    """Frame arrays or video files -> clip-pooled features from a ``transformers`` video
    backbone (AutoImageProcessor + AutoModel), frozen, in eval mode under ``torch.no_grad()``."""

    name = "hf-video"
    modality = "vision"
    processor_what = "image processor"
    meta = ComponentMeta(
        summary="transformers video backbone (VideoMAE; local dir or hub name) -> features "
                "pooled over space then time",
        paper="Tong et al. 2022, VideoMAE (arXiv:2203.12602)",
        license="Apache-2.0 (code); the weights carry their own licence",
        defaults_source="boost-mtl (Boosting MSA, JHU-LCAP): Video Swin on 128x128 face video at "
                        "10 fps, spatial then temporal average pooling; VideoMAE is the video "
                        "backbone transformers provides (MCG-NJU/videomae-base)",
        url="https://huggingface.co/docs/transformers/model_doc/videomae")
    defaults = {
        "model": "MCG-NJU/videomae-base",  # local directory or hub name
        "fps": 10,                  # frames per second decoded from video files
        "size": 128,                # decoded frames are size x size (short side, centre crop)
        "clip_sampling": "cover",   # "cover" (every frame) or "uniform" (one clip)
        "pooling": "mean",          # "mean" (N, 1, H) or "clips" (N, C, H), one vector per clip
        "face": "none",             # "opencv": crop the largest face (msabench_builtins.faces)
        "face_decode_size": 360,    # short side of the frames searched for faces (face only)
        "layer": -1,                # -1 = last hidden layer; k = hidden_states[k] (0 = embeddings)
        "batch_size": 8,            # clips per forward pass
        "device": "cpu",
        "local_files_only": False,  # never touch the network (also implied by HF_HUB_OFFLINE=1)
        "revision": None,           # hub revision; ignored for local dirs
    }

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        c = self.config
        if c["pooling"] not in POOLINGS:
            raise self._config_error(f"option pooling={c['pooling']!r} is not one of "
                                     f"{', '.join(POOLINGS)}")
        if c["clip_sampling"] not in CLIP_SAMPLINGS:
            raise self._config_error(f"option clip_sampling={c['clip_sampling']!r} is not one of "
                                     f"{', '.join(CLIP_SAMPLINGS)}")
        if isinstance(c["fps"], bool) or not isinstance(c["fps"], (int, float)) or c["fps"] <= 0:
            raise self._config_error(f"option fps must be a positive number, got {c['fps']!r}")
        if isinstance(c["size"], bool) or not isinstance(c["size"], int) or c["size"] < 1:
            raise self._config_error(f"option size must be a positive integer (pixels), got "
                                     f"{c['size']!r}")
        if c["face"] not in FACE_DETECTORS:
            raise self._config_error(f"option face={c['face']!r} is not one of "
                                     f"{', '.join(FACE_DETECTORS)}")
        if isinstance(c["face_decode_size"], bool) or not isinstance(c["face_decode_size"], int) \
                or c["face_decode_size"] < c["size"]:
            raise self._config_error(f"option face_decode_size must be an integer >= size "
                                     f"({c['size']}), got {c['face_decode_size']!r}")
        self._faces = None

    @property
    def num_frames(self) -> int:
        value = getattr(self.hf_config, "num_frames", None)
        if not isinstance(value, int) or value < 1:
            raise self._config_error(
                f"model {self.config['model']!r} ({type(self.hf_config).__name__}) has no "
                f"num_frames in its config; hf-video needs a clip model such as VideoMAE")
        return value

    def _load_processor(self, source: str, kwargs: dict[str, Any]) -> Any:
        from transformers import AutoImageProcessor

        try:
            return AutoImageProcessor.from_pretrained(source, **kwargs)
        except ImportError as exc:
            raise self._config_error(f"the image processor of {self.config['model']!r} needs a "
                                     f"package that is not installed: pip install pillow "
                                     f"[{exc}]") from exc
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise self._load_error("the image processor", exc) from exc

    def _key_parts(self) -> list[str]:
        # transformers picks the torchvision image-processing backend when it is installed,
        # Pillow otherwise; their resampling differs slightly, so the choice is in the key
        backend = "torchvision" if importlib.util.find_spec("torchvision") else "pil"
        c = self.config
        parts = [f"fps={c['fps']!r}", f"size={c['size']!r}",
                 f"clip_sampling={c['clip_sampling']!r}", f"layer={c['layer']!r}",
                 f"image_backend={backend!r}"]
        # the default pooling and face options are left out, so the keys of features cached
        # before the options existed (mean-pooled full frames) stay valid
        if c["face"] != "none":
            parts += [f"face={c['face']!r}", f"face_decode_size={c['face_decode_size']!r}"]
        return parts if c["pooling"] == "mean" else [*parts, f"pooling={c['pooling']!r}"]

    @property
    def faces(self) -> Any:
        """The face cropper (option ``face``), or None for full frames."""
        if self.config["face"] == "opencv" and self._faces is None:
            from ..faces import FaceCropper

            self._faces = FaceCropper()
        return self._faces

    # ------------------------------------------------------------------ inputs
    def _video(self, i: int, item: Any) -> np.ndarray:
        from msabench_builtins.media import load_frames

        if is_media(item):
            path, start, end = media_segment(item)
            if self.faces is not None:
                frames = load_frames(path, fps=self.config["fps"],
                                     size=self.config["face_decode_size"], start=start, end=end,
                                     square=False)
                return self.faces(frames, self.config["size"])
            return load_frames(path, fps=self.config["fps"], size=self.config["size"],
                               start=start, end=end)
        try:
            frames = np.asarray(item)
        except (TypeError, ValueError) as exc:
            raise DataError(f"extractor hf-video: input {i} is a {type(item).__name__}, not a "
                            f"frame array or a file path") from exc
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
            raise DataError(f"extractor hf-video: input {i} has shape {frames.shape}; pass "
                            f"(T, H, W, 3) RGB frames with T >= 1")
        if frames.dtype != np.uint8:
            raise DataError(f"extractor hf-video: input {i} has dtype {frames.dtype}; pass uint8 "
                            f"RGB frames in 0..255 (e.g. frames.astype(np.uint8))")
        if self.faces is not None:
            return self.faces(frames, self.config["size"])
        return frames

    def _clips(self, frames: np.ndarray) -> list[np.ndarray]:
        return [frames[idx] for idx in clip_indices(len(frames), self.num_frames,
                                                    self.config["clip_sampling"])]

    def _pixels(self, clips: Sequence[np.ndarray]) -> torch.Tensor:
        """The image processor's ``pixel_values`` of ``clips`` (K, num_frames, 3, h, w)."""
        return self.processor([list(frames) for frames in clips],
                              return_tensors="pt")["pixel_values"]

    def prepare(self, raw: Sequence[Any]) -> dict[str, torch.Tensor]:
        """``pixel_values`` of every clip of every video and ``clips`` (N,) per video."""
        items = check_sequence(self.name, raw, "frame arrays or file paths")
        if not items:
            raise DataError("extractor hf-video: prepare() needs at least one input")
        clips: list[np.ndarray] = []
        counts = []
        for i, item in enumerate(items):
            own = self._clips(self._video(i, item))
            clips.extend(own)
            counts.append(len(own))
        return {"pixel_values": self._pixels(clips),
                "clips": torch.tensor(counts, dtype=torch.int64)}

    # ------------------------------------------------------------------ the encoder
    def _clip_means(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(K, H) float32: the mean over each clip's tokens of the ``layer``-th hidden state."""
        self.load()
        out = self.model(pixel_values=pixel_values,
                         output_hidden_states=self.config["layer"] != -1, return_dict=True)
        return self._hidden(out).float().mean(dim=1)

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> Features:  # type: ignore[override]
        """One vector per clip (N, max clips, H), zero after each video's last clip, with
        lengths = clips per video. Differentiable."""
        means = self._clip_means(inputs["pixel_values"])
        counts = inputs["clips"].to(torch.int64)
        rows = counts.tolist()
        steps = max(rows)
        parts = [torch.cat([m, m.new_zeros(steps - len(m), m.shape[1])])
                 for m in torch.split(means, rows)]
        return Features(torch.stack(parts), counts.to(means.device))

    def extract(self, inputs: Sequence[Any]) -> Features:
        items = check_sequence(self.name, inputs, "frame arrays or file paths")
        dim = self.output_dim
        if not items:
            return Features(torch.zeros(0, 1, dim), torch.zeros(0, dtype=torch.int64))
        self.num_frames  # noqa: B018 - a model without num_frames fails before decoding
        self.load()
        bs, device = self.config["batch_size"], self.device()
        per_video: list[list[torch.Tensor]] = [[] for _ in items]
        pending: list[tuple[int, np.ndarray]] = []  # (video index, clip frames)

        def run(clips: list[tuple[int, np.ndarray]]) -> None:
            means = self._clip_means(self._pixels([f for _, f in clips]).to(device)).cpu()
            for row, (i, _) in enumerate(clips):
                per_video[i].append(means[row])

        numbered = list(enumerate(items))
        label = f"hf-video {Path(str(self.config['model'])).name}"
        show = track(numbered, label) if len(items) > bs else iter(numbered)
        with self.frozen():
            for i, item in show:
                for clip in self._clips(self._video(i, item)):
                    pending.append((i, clip))
                    if len(pending) == bs:
                        run(pending)
                        pending = []
            if pending:
                run(pending)
        if self.config["pooling"] == "clips":
            lengths = torch.tensor([len(v) for v in per_video], dtype=torch.int64)
            values = torch.zeros(len(items), int(lengths.max()), dim)
            for i, v in enumerate(per_video):
                values[i, :len(v)] = torch.stack(v)
            return Features(values, lengths)
        values = torch.zeros(len(items), dim, dtype=torch.float32)
        for i, v in enumerate(per_video):
            total = torch.zeros(dim, dtype=torch.float64)
            for m in v:  # float64 running sum in clip order, as before the Extractor module
                total += m.double()
            values[i] = (total / len(v)).float()
        return Features(values.unsqueeze(1).contiguous(), torch.ones(len(items), dtype=torch.int64))
