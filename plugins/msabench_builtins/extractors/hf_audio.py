"""``hf-audio``: a pre-trained ``transformers`` speech encoder (HuBERT, wav2vec 2.0, WavLM,
data2vec-audio) as an extractor.

The model is a local directory (``save_pretrained`` layout: config, weights and the feature
extractor's ``preprocessor_config.json``) or a hub name; nothing is downloaded for a local
directory, and hub names are only looked up in the local cache with ``HF_HUB_OFFLINE=1`` or
``local_files_only=true`` (exactly as ``hf-text``).

Inputs are 1-D waveforms (NumPy arrays or lists of floats, mono, at ``sample_rate`` Hz), paths
of audio/video files or :class:`~msabench.api.MediaRef` s (a file and a ``[start, end)`` segment),
decoded with :func:`msabench_builtins.media.load_audio` (PyAV) at ``sample_rate``. Each waveform goes through the model's feature extractor on its own (so its
normalisation never sees padding); waveforms shorter than the convolutional front end's
receptive field (400 samples = 25 ms for HuBERT/wav2vec 2.0) are zero-padded to it.

Poolings:

``mean``    (N, 1, H): the selected hidden layer averaged over the valid frames (boost-mtl:
            HuBERT, 16 kHz, last layer, mean over time).
``frames``  (N, T, H): every frame (20 ms for HuBERT), zero after each input's last frame;
            ``lengths`` = valid frames.

Batching never changes the features: models whose feature extractor returns an attention mask
(layer-norm front ends, e.g. wav2vec2-large-lv60) run padded batches with that mask; models
without one (group-norm front ends such as hubert-base and wav2vec2-base, whose outputs change
with padding) batch only waveforms of identical length, otherwise one waveform per forward.

The Extractor contract: ``prepare(raw)`` decodes, normalises and pads the waveforms
(``input_values`` (N, S), ``attention_mask`` (N, S), ``input_lengths`` (N,) samples);
``forward(inputs)`` runs the encoder with gradients and returns every frame (N, T, H) with the
valid frames per input (a padded batch is given the attention mask only when the feature
extractor asks for one, as transformers does); ``extract`` is the frozen, batched path above.

The model-locating/loading logic shared with ``hf-text`` and ``hf-video`` lives in
:mod:`._hf` (:class:`HFModelExtractor`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from msabench.api import ComponentMeta, Features
from msabench.errors import DataError

from ._hf import HFModelExtractor, check_sequence, is_media, media_segment, track

POOLINGS = ("mean", "frames")


class HFAudioExtractor(HFModelExtractor):
    """Waveforms or audio/video files -> features from a ``transformers`` speech encoder
    (AutoFeatureExtractor + AutoModel), frozen, in eval mode under ``torch.no_grad()``."""

    name = "hf-audio"
    modality = "audio"
    processor_what = "feature extractor"
    meta = ComponentMeta(
        summary="transformers speech encoder (HuBERT/wav2vec 2.0; local dir or hub name) -> "
                "mean-pooled or frame features",
        paper="Hsu et al. 2021, HuBERT (arXiv:2106.07447)",
        license="Apache-2.0 (code); the weights carry their own licence",
        defaults_source="boost-mtl (Boosting MSA, JHU-LCAP): HuBERT at 16 kHz, last layer, mean "
                        "over time; facebook/hubert-base-ls960 is the reference base checkpoint",
        url="https://huggingface.co/docs/transformers/model_doc/hubert")
    defaults = {
        "model": "facebook/hubert-base-ls960",  # local directory or hub name
        "pooling": "mean",          # "mean" (N, 1, H) or "frames" (N, T, H)
        "layer": -1,                # -1 = last layer; k = hidden_states[k] (0 = after the CNN)
        "sample_rate": 16000,       # Hz of waveform inputs and of decoded files
        "batch_size": 8,
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
        if isinstance(c["sample_rate"], bool) or not isinstance(c["sample_rate"], int) \
                or c["sample_rate"] < 1:
            raise self._config_error(f"option sample_rate must be a positive integer (Hz), got "
                                     f"{c['sample_rate']!r}")

    def _load_processor(self, source: str, kwargs: dict[str, Any]) -> Any:
        from transformers import AutoFeatureExtractor

        try:
            fe = AutoFeatureExtractor.from_pretrained(source, **kwargs)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise self._load_error("the feature extractor", exc) from exc
        rate = getattr(fe, "sampling_rate", None)
        if rate is not None and int(rate) != self.config["sample_rate"]:
            raise self._config_error(
                f"model {self.config['model']!r} expects {rate} Hz audio but option "
                f"sample_rate={self.config['sample_rate']}; set sample_rate={rate} (files are "
                f"then decoded at that rate; resample waveform inputs to it)")
        return fe

    def _key_parts(self) -> list[str]:
        c = self.config
        return [f"pooling={c['pooling']!r}", f"layer={c['layer']!r}",
                f"sample_rate={c['sample_rate']!r}"]

    # ------------------------------------------------------------------ inputs
    def _waveforms(self, inputs: Sequence[Any]) -> list[np.ndarray]:
        from msabench_builtins.media import load_audio

        items = check_sequence(self.name, inputs, "waveforms or file paths")
        waves = []
        for i, item in enumerate(items):
            if is_media(item):
                path, start, end = media_segment(item)
                waves.append(load_audio(path, self.config["sample_rate"], start=start, end=end))
                continue
            try:
                wave = np.asarray(item, dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise DataError(f"extractor hf-audio: input {i} is a {type(item).__name__}, not a "
                                f"waveform or a file path") from exc
            if wave.ndim == 2 and 1 in wave.shape:
                wave = wave.reshape(-1)
            if wave.ndim != 1:
                raise DataError(f"extractor hf-audio: input {i} has shape {wave.shape}; pass mono "
                                f"1-D waveforms (average the channels first)")
            if wave.size == 0:
                raise DataError(f"extractor hf-audio: input {i} is an empty waveform")
            if not np.isfinite(wave).all():
                raise DataError(f"extractor hf-audio: input {i} has NaN or infinite samples")
            waves.append(wave)
        return waves

    def _min_samples(self) -> int:
        """Shortest input the convolutional front end turns into one frame."""
        kernels = getattr(self.hf_config, "conv_kernel", None)
        strides = getattr(self.hf_config, "conv_stride", None)
        if not kernels or not strides:
            return 1
        n = 1
        for k, s in reversed(list(zip(kernels, strides))):
            n = (n - 1) * s + k
        return n

    def _normalised(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        """Each waveform through the feature extractor on its own (its normalisation never
        sees padding), zero-padded to the front end's receptive field when shorter."""
        fe, rate, minimum = self.processor, self.config["sample_rate"], self._min_samples()
        out = []
        for wave in waves:
            x = np.asarray(fe(wave, sampling_rate=rate)["input_values"][0], dtype=np.float32)
            if x.shape[0] < minimum:  # shorter than one frame: zero-pad (after normalisation)
                x = np.pad(x, (0, minimum - x.shape[0]))
            out.append(x)
        return out

    @staticmethod
    def _stack(values: list[np.ndarray]) -> dict[str, torch.Tensor]:
        n_samples = [len(x) for x in values]
        batch = torch.zeros(len(values), max(n_samples))
        mask = torch.zeros(len(values), max(n_samples), dtype=torch.long)
        for row, x in enumerate(values):
            batch[row, :len(x)] = torch.from_numpy(x)
            mask[row, :len(x)] = 1
        return {"input_values": batch, "attention_mask": mask,
                "input_lengths": torch.tensor(n_samples, dtype=torch.int64)}

    def prepare(self, raw: Sequence[Any]) -> dict[str, torch.Tensor]:
        """Decoded, normalised waveforms zero-padded to the longest: ``input_values`` (N, S),
        ``attention_mask`` (N, S), ``input_lengths`` (N,) samples."""
        waves = self._waveforms(raw)
        if not waves:
            raise DataError("extractor hf-audio: prepare() needs at least one input")
        return self._stack(self._normalised(waves))

    # ------------------------------------------------------------------ the encoder
    def _frames(self, n_samples: torch.Tensor, steps: int) -> torch.Tensor:
        fn = getattr(self.model, "_get_feat_extract_output_lengths", None)
        if fn is None:
            return torch.full_like(n_samples, steps)
        return fn(n_samples).to(torch.int64).clamp(1, steps)

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> Features:  # type: ignore[override]
        """Every frame of the ``layer``-th hidden state (N, T, H) in float32, zero after each
        input's last valid frame, with the valid frames per input. Differentiable."""
        self.load()
        use_mask = bool(getattr(self.processor, "return_attention_mask", False))
        kwargs = {"attention_mask": inputs["attention_mask"]} if use_mask else {}
        out = self.model(inputs["input_values"], output_hidden_states=self.config["layer"] != -1,
                         return_dict=True, **kwargs)
        hidden = self._hidden(out).float()
        valid = self._frames(inputs["input_lengths"], hidden.shape[1])
        steps = torch.arange(hidden.shape[1], device=hidden.device)
        keep = (steps.unsqueeze(0) < valid.to(hidden.device).unsqueeze(1)).to(hidden.dtype)
        return Features(hidden * keep.unsqueeze(-1), valid)

    def extract(self, inputs: Sequence[Any]) -> Features:
        waves = self._waveforms(inputs)
        dim, pooling = self.output_dim, self.config["pooling"]
        if not waves:
            return Features(torch.zeros(0, 1, dim), torch.zeros(0, dtype=torch.int64))
        self.load()
        values_list = self._normalised(waves)
        n_samples = [len(x) for x in values_list]
        use_mask = bool(getattr(self.processor, "return_attention_mask", False))
        order = sorted(range(len(waves)), key=lambda i: n_samples[i])
        bs = self.config["batch_size"]
        batches: list[list[int]] = []
        for i in order:
            if batches and len(batches[-1]) < bs and (
                    use_mask or n_samples[batches[-1][0]] == n_samples[i]):
                batches[-1].append(i)
            else:
                batches.append([i])
        pooled: dict[int, torch.Tensor] = {}
        frames: dict[int, torch.Tensor] = {}
        show = track(batches, f"hf-audio {Path(str(self.config['model'])).name}") \
            if len(waves) > bs else iter(batches)
        device = self.device()
        with self.frozen():
            for idx in show:
                batch = {k: v.to(device) for k, v in
                         self._stack([values_list[i] for i in idx]).items()}
                feats = self(batch)
                hidden, valid = feats.values.cpu(), feats.lengths.cpu()
                for row, i in enumerate(idx):
                    h = hidden[row, :int(valid[row])]
                    if pooling == "mean":
                        pooled[i] = h.mean(dim=0)
                    else:
                        frames[i] = h
        n = len(waves)
        if pooling == "mean":
            values = torch.stack([pooled[i] for i in range(n)]).unsqueeze(1)
            return Features(values.contiguous(), torch.ones(n, dtype=torch.int64))
        lengths = torch.tensor([frames[i].shape[0] for i in range(n)], dtype=torch.int64)
        values = torch.zeros(n, int(lengths.max()), dim)
        for i in range(n):
            values[i, :lengths[i]] = frames[i]
        return Features(values, lengths)
