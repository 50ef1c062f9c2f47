"""Shared machinery of the ``transformers`` extractors (hf-text, hf-audio, hf-video).

:class:`HFModelExtractor` locates a model (local directory or hub name, offline-aware, with the
public helpers of :mod:`msabench_builtins.hf`), reads its hidden size from the config without
loading weights, loads the processor (tokenizer, feature extractor, image processor) on first
use and the weights on :meth:`~HFModelExtractor.load`, selects a hidden layer, and builds cache
keys that fingerprint local model files.

The loaded ``transformers`` model is the submodule :attr:`~HFModelExtractor.model` of the
extractor, so ``.parameters()``, ``.to()``, ``.train()`` / ``.eval()`` and ``state_dict()``
reach it. It is loaded frozen (eval mode, no gradients); :meth:`set_trainable` (``True``)
fine-tunes it. :meth:`~HFModelExtractor.frozen` is the context of the frozen path
(``extract``): eval mode and ``torch.no_grad()``, the previous train/eval modes restored after.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any, ClassVar, Iterator, Sequence

import torch

from msabench.api import Extractor, Features
from msabench.api.dataset import MediaRef
from msabench.errors import ConfigError, DataError
from msabench_builtins.hf import (download_command, fingerprint, local_source, looks_like_path,
                                  offline_env, offline_message)


class HFModelExtractor(Extractor):
    """Shared base of the ``transformers`` extractors that pair a processor with AutoModel.

    Subclasses set ``processor_what`` (for messages) and implement :meth:`_load_processor`,
    ``prepare``, ``forward`` and ``extract``. Options common to all: ``model``, ``layer``,
    ``batch_size``, ``device``, ``local_files_only``, ``revision``. :attr:`output_dim` reads
    the hidden size from the config only; the weights load on :meth:`load` (called by
    ``extract``, ``encode``, ``forward`` and ``set_trainable``), onto ``device``; ``.to()``
    moves them afterwards.
    """

    processor_what: ClassVar[str] = "processor"
    #: what a local model directory must hold besides config.json and the weights
    processor_files: ClassVar[str] = "preprocessor_config.json"
    #: appended to the "not available offline" error
    offline_hint: ClassVar[str] = ""

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
        #: the transformers model (a submodule once loaded; None before)
        self.register_module("model", None)

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
        local = self.model_dir or local_source(name)  # bundled package, then the model dir
        if local is not None:
            return str(local), {"local_files_only": True}
        if looks_like_path(name) or Path(name).expanduser().exists():
            raise self._config_error(
                f"model {name!r} is not an existing directory; pass a local model directory "
                f"(config.json, weights, {self.processor_what} config) with --set ...model=/path "
                f"or a hub name that is in the local Hugging Face cache")
        kwargs: dict[str, Any] = {
            "local_files_only": bool(self.config["local_files_only"]) or offline_env()}
        if self.config["revision"] is not None:
            kwargs["revision"] = self.config["revision"]
        return name, kwargs

    def _load_error(self, what: str, exc: Exception) -> ConfigError:
        name = str(self.config["model"])
        source, kwargs = self._source()
        hub = (self.model_dir or local_source(name)) is None
        if kwargs["local_files_only"] and hub:
            msg = (f"model {name!r} is neither a local directory nor available offline: "
                   f"{offline_message(name, self.config['revision'])}{self.offline_hint}")
        elif hub:
            msg = (f"could not load {what} of model {name!r} from the hub or the local cache; "
                   f"fetch it once with `{download_command(name)}`, or pass a local path with "
                   f"--set ...model=/path/to/model (without network access, set "
                   f"HF_HUB_OFFLINE=1 to skip the hub's retries)")
        else:
            msg = (f"could not load {what} from local directory {source!r}; it must hold a "
                   f"transformers model saved with save_pretrained (config.json, weights) and "
                   f"its {self.processor_what} ({self.processor_files})")
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
        if hasattr(config, "get_text_config"):
            config = config.get_text_config()
        for attr in ("hidden_size", "d_model", "embed_dim", "dim", "n_embd"):
            value = getattr(config, attr, None)
            if isinstance(value, int) and value > 0:
                return value
        raise self._config_error(f"cannot read the hidden size of model "
                                 f"{self.config['model']!r} from its config "
                                 f"({type(config).__name__})")

    def _load_processor(self, source: str, kwargs: dict[str, Any]) -> Any:
        raise NotImplementedError

    @property
    def processor(self) -> Any:
        """The model's processor (tokenizer / feature extractor / image processor), loaded on
        first use without the weights."""
        if self._processor is None:
            source, kwargs = self._source()
            self._processor = self._load_processor(source, kwargs)
        return self._processor

    def _prepare_model(self, model: Any) -> Any:
        """Hook for subclasses (e.g. keep only the encoder of an encoder-decoder)."""
        return model

    @property
    def loaded(self) -> bool:
        return self.model is not None

    def load(self) -> None:
        """Load the weights now (frozen, eval mode, on ``device``); the processor loads on
        first use (:attr:`processor`)."""
        if self.model is not None:
            return
        from transformers import AutoModel

        source, kwargs = self._source()
        config = self.hf_config
        try:
            model = AutoModel.from_pretrained(source, config=config, **kwargs)
        except (OSError, ValueError, KeyError) as exc:
            raise self._load_error("the weights", exc) from exc
        model = self._prepare_model(model)
        try:
            model.to(self.config["device"])
        except (RuntimeError, AssertionError) as exc:
            raise self._config_error(f"option device={self.config['device']!r} is not usable "
                                     f"here ({exc}); use device='cpu'") from exc
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.model = model

    def device(self) -> torch.device:
        """Where the weights are (``device`` before they are loaded)."""
        if self.model is not None:
            for p in self.model.parameters():
                return p.device
        return torch.device(self.config["device"])

    def encode(self, raw: Sequence[Any], pooling: str = "tokens") -> Features:
        self.load()
        return super().encode(raw, pooling)

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Eval mode and no gradient for the frozen path; every submodule's previous
        train/eval mode is restored afterwards."""
        self.load()
        modes = [(m, m.training) for m in self.modules()]
        self.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            for m, mode in modes:
                m.training = mode

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


def is_path(item: Any) -> bool:
    return isinstance(item, (str, os.PathLike))


def is_media(item: Any) -> bool:
    """A file path or a :class:`MediaRef`."""
    return is_path(item) or isinstance(item, MediaRef)


def media_segment(item: Any) -> tuple[Any, float | None, float | None]:
    """(path, start, end) of a path or a :class:`MediaRef`."""
    if isinstance(item, MediaRef):
        return item.path, item.start, item.end
    return item, None, None


def check_sequence(name: str, inputs: Any, what: str) -> list:
    """``inputs`` as a list; refuses a lone string/path (a common slip)."""
    if is_media(inputs) or isinstance(inputs, bytes):
        raise DataError(f"extractor {name}: extract() takes a sequence of {what}, got a single "
                        f"path; wrap it in a list: extract([path])")
    try:
        return list(inputs)
    except TypeError as exc:
        raise DataError(f"extractor {name}: extract() takes a sequence of {what}, got "
                        f"{type(inputs).__name__}") from exc


def track(batches: list, description: str):
    """Iterate ``batches`` with a rich progress bar on stderr (more than one batch, tty only)."""
    if len(batches) <= 1 or not sys.stderr.isatty():
        return iter(batches)
    from rich.console import Console
    from rich.progress import track as rich_track

    return rich_track(batches, description=description, total=len(batches),
                      console=Console(stderr=True), transient=True)
