"""``hf-audio``: a pre-trained ``transformers`` speech encoder (HuBERT, wav2vec 2.0, WavLM,
data2vec-audio) as an extractor.

The model is a local directory (``save_pretrained`` layout: config, weights and the feature
extractor's ``preprocessor_config.json``) or a hub name; nothing is downloaded for a local
directory, and hub names are only looked up in the local cache with ``HF_HUB_OFFLINE=1`` or
``local_files_only=true`` (exactly as ``hf-text``).

Inputs are 1-D waveforms (NumPy arrays or lists of floats, mono, at ``sample_rate`` Hz) or
paths of audio/video files, decoded with :func:`msabench_builtins.media.load_audio` (PyAV) at
``sample_rate``. Each waveform goes through the model's feature extractor on its own (so its
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

This module also holds :class:`HFModelExtractor`, the model-locating/loading logic shared with
``hf-video``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from msabench.api import ComponentMeta, Extractor, Features
from msabench.errors import ConfigError, DataError

from .hf_text import _looks_like_path, _offline_env, _progress

POOLINGS = ("mean", "frames")
#: files whose content is hashed into the cache key of a local model; weight files contribute
#: name, size and modification time (a model re-saved in place gets a new key)
_SMALL_FILES = ("config.json", "preprocessor_config.json", "video_preprocessor_config.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".h5", ".msgpack")


class HFModelExtractor(Extractor):
    """Shared base of the ``transformers`` extractors that pair a processor with AutoModel.

    Subclasses set ``processor_what`` (for messages) and implement :meth:`_load_processor`.
    Options common to all: ``model``, ``layer``, ``batch_size``, ``device``,
    ``local_files_only``, ``revision``. :attr:`output_dim` reads the hidden size from the
    config only; weights load on the first :meth:`extract` (or :meth:`load`).
    """

    processor_what: ClassVar[str] = "processor"

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        c = self.config
        if not isinstance(c["model"], (str, os.PathLike)) or not str(c["model"]).strip():
            raise self._config_error(f"option model must be a local directory or a hub name, "
                                     f"got {c['model']!r}")
        if isinstance(c["batch_size"], bool) or not isinstance(c["batch_size"], int) \
                or c["batch_size"] < 1:
            raise self._config_error(f"option batch_size must be a positive integer, got "
                                     f"{c['batch_size']!r}")
        if isinstance(c["layer"], bool) or not isinstance(c["layer"], int):
            raise self._config_error(f"option layer must be an integer (-1 = last hidden "
                                     f"layer), got {c['layer']!r}")
        if c["revision"] is not None and not isinstance(c["revision"], str):
            raise self._config_error(f"option revision must be a string or None, got "
                                     f"{c['revision']!r}")
        self._hf_config = None
        self._processor = None
        self._model = None

    def _config_error(self, msg: str) -> ConfigError:
        return ConfigError(f"extractor {self.name}: {msg}")

    # ------------------------------------------------------------------ locating the model
    @property
    def model_dir(self) -> Path | None:
        """The local directory ``model`` names, or None for a hub name."""
        path = Path(str(self.config["model"])).expanduser()
        return path.resolve() if path.is_dir() else None

    def _source(self) -> tuple[str, dict[str, Any]]:
        name = str(self.config["model"])
        local = self.model_dir
        if local is not None:
            return str(local), {"local_files_only": True}
        if _looks_like_path(name) or Path(name).expanduser().exists():
            raise self._config_error(
                f"model {name!r} is not an existing directory; pass a local model directory "
                f"(config.json, weights, {self.processor_what} config) with --set ...model=/path "
                f"or a hub name that is in the local Hugging Face cache")
        kwargs: dict[str, Any] = {
            "local_files_only": bool(self.config["local_files_only"]) or _offline_env()}
        if self.config["revision"] is not None:
            kwargs["revision"] = self.config["revision"]
        return name, kwargs

    def _load_error(self, what: str, exc: Exception) -> ConfigError:
        name = str(self.config["model"])
        _, kwargs = self._source()
        if kwargs["local_files_only"] and self.model_dir is None:
            msg = (f"model {name!r} is neither a local directory nor available offline (not in "
                   f"the Hugging Face cache); pass a local path with --set ...model=/path/to/model")
        elif self.model_dir is None:
            msg = (f"could not load {what} of model {name!r} from the hub or the local cache; "
                   f"pass a local path with --set ...model=/path/to/model (without network "
                   f"access, set HF_HUB_OFFLINE=1 to skip the hub's retries)")
        else:
            msg = (f"could not load {what} from local directory {name!r}; it must hold a "
                   f"transformers model saved with save_pretrained (config.json, weights) and "
                   f"its {self.processor_what} (preprocessor_config.json)")
        return self._config_error(f"{msg} [{type(exc).__name__}: {exc}]")

    # ------------------------------------------------------------------ lazy loading
    @property
    def hf_config(self):
        if self._hf_config is None:
            from transformers import AutoConfig

            source, kwargs = self._source()
            try:
                self._hf_config = AutoConfig.from_pretrained(source, **kwargs)
            except (OSError, ValueError, KeyError) as exc:
                raise self._load_error("the config", exc) from exc
        return self._hf_config

    @property
    def output_dim(self) -> int:
        config = self.hf_config
        for attr in ("hidden_size", "d_model", "embed_dim", "dim"):
            value = getattr(config, attr, None)
            if isinstance(value, int) and value > 0:
                return value
        raise self._config_error(f"cannot read the hidden size of model "
                                 f"{self.config['model']!r} from its config "
                                 f"({type(config).__name__})")

    def _load_processor(self, source: str, kwargs: dict[str, Any]) -> Any:
        raise NotImplementedError

    def load(self) -> None:
        """Load the processor and the weights now (otherwise done on the first extract)."""
        if self._model is not None:
            return
        from transformers import AutoModel

        source, kwargs = self._source()
        config = self.hf_config
        processor = self._load_processor(source, kwargs)
        try:
            model = AutoModel.from_pretrained(source, config=config, **kwargs)
        except (OSError, ValueError, KeyError) as exc:
            raise self._load_error("the weights", exc) from exc
        try:
            model.to(self.config["device"])
        except (RuntimeError, AssertionError) as exc:
            raise self._config_error(f"option device={self.config['device']!r} is not usable "
                                     f"here ({exc}); use device='cpu'") from exc
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self._processor, self._model = processor, model

    def _hidden(self, out: Any) -> torch.Tensor:
        """The configured layer of a model output (``layer`` -1 = last_hidden_state)."""
        layer = self.config["layer"]
        if layer == -1:
            return out.last_hidden_state
        states = out.hidden_states
        if not -len(states) <= layer < len(states):
            raise self._config_error(
                f"option layer={layer} is out of range; model {self.config['model']!r} has "
                f"{len(states)} hidden states (0 = embeddings, {len(states) - 1} or -1 = last)")
        return states[layer]

    # ------------------------------------------------------------------ caching
    def _key_parts(self) -> list[str]:
        """Options (besides model/revision) that change the features."""
        return [f"layer={self.config['layer']!r}"]

    def cache_key(self) -> str:
        """Identifies the computed features: model (absolute path plus a fingerprint of its
        files for local directories), revision and the options that change the features;
        batch_size, device and local_files_only do not and are left out."""
        c = self.config
        local = self.model_dir
        model = str(local) if local is not None else str(c["model"])
        parts = [f"model={model!r}", f"revision={c['revision']!r}", *self._key_parts()]
        if local is not None:
            parts.append(f"fingerprint={fingerprint(local)}")
        return f"{self.name}({','.join(parts)})"


def fingerprint(directory: Path) -> str:
    """Content of the small config files plus name, size and mtime of the weight files."""
    digest = hashlib.sha256()
    for path in sorted(directory.iterdir()):
        if not path.is_file():
            continue
        if path.name in _SMALL_FILES:
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        elif path.name.endswith(_WEIGHT_SUFFIXES):
            st = path.stat()
            digest.update(f"{path.name}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:16]


def is_path(item: Any) -> bool:
    return isinstance(item, (str, os.PathLike))


def check_sequence(name: str, inputs: Any, what: str) -> list:
    """``inputs`` as a list; refuses a lone string/path (a common slip)."""
    if is_path(inputs) or isinstance(inputs, bytes):
        raise DataError(f"extractor {name}: extract() takes a sequence of {what}, got a single "
                        f"path; wrap it in a list: extract([path])")
    try:
        return list(inputs)
    except TypeError as exc:
        raise DataError(f"extractor {name}: extract() takes a sequence of {what}, got "
                        f"{type(inputs).__name__}") from exc


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

    # ------------------------------------------------------------------ extraction
    def _waveforms(self, inputs: Sequence[Any]) -> list[np.ndarray]:
        from msabench_builtins.media import load_audio

        items = check_sequence(self.name, inputs, "waveforms or file paths")
        waves = []
        for i, item in enumerate(items):
            if is_path(item):
                waves.append(load_audio(item, self.config["sample_rate"]))
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

    def _frames(self, n_samples: torch.Tensor, steps: int) -> torch.Tensor:
        fn = getattr(self._model, "_get_feat_extract_output_lengths", None)
        if fn is None:
            return torch.full_like(n_samples, steps)
        return fn(n_samples).to(torch.int64).clamp(1, steps)

    def extract(self, inputs: Sequence[Any]) -> Features:
        waves = self._waveforms(inputs)
        dim, pooling = self.output_dim, self.config["pooling"]
        if not waves:
            return Features(torch.zeros(0, 1, dim), torch.zeros(0, dtype=torch.int64))
        self.load()
        fe, model = self._processor, self._model
        rate, device = self.config["sample_rate"], self.config["device"]
        minimum = self._min_samples()
        values_list = []
        for wave in waves:
            x = np.asarray(fe(wave, sampling_rate=rate)["input_values"][0], dtype=np.float32)
            if x.shape[0] < minimum:  # shorter than one frame: zero-pad (after normalisation)
                x = np.pad(x, (0, minimum - x.shape[0]))
            values_list.append(x)
        n_samples = [len(x) for x in values_list]
        use_mask = bool(getattr(fe, "return_attention_mask", False))
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
        show = _progress(batches, f"hf-audio {Path(str(self.config['model'])).name}") \
            if len(waves) > bs else iter(batches)
        with torch.no_grad():
            for idx in show:
                longest = max(n_samples[i] for i in idx)
                batch = torch.zeros(len(idx), longest)
                mask = torch.zeros(len(idx), longest, dtype=torch.long)
                for row, i in enumerate(idx):
                    batch[row, :n_samples[i]] = torch.from_numpy(values_list[i])
                    mask[row, :n_samples[i]] = 1
                kwargs = {"attention_mask": mask.to(device)} if use_mask else {}
                out = model(batch.to(device), output_hidden_states=self.config["layer"] != -1,
                            return_dict=True, **kwargs)
                hidden = self._hidden(out).float().cpu()
                valid = self._frames(torch.tensor([n_samples[i] for i in idx]), hidden.shape[1])
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
