"""``mag``: the Multimodal Adaptation Gate (MAG, Rahman et al. 2020) inside a BERT-family encoder.

MAG shifts every token representation ``Z`` of a pre-trained encoder by a displacement built
from the token's (word-aligned) non-verbal features [paper eq. 1-6; code:
WasifurRahman/BERT_multimodal_transformer modeling.py]::

    g_m   = ReLU(W_gm [X_m ; Z] + b_gm)            one gate per modality m (audio, vision)
    H     = sum_m g_m * (W_m X_m + b_m)
    alpha = min(beta * ||Z||_2 / (||H||_2 + eps), 1)      per token; ||H|| = 0 counts as 1
    out   = Dropout(LayerNorm(Z + alpha * H))

:class:`MAG` is that module. :class:`MAGFusion` holds an ``hf-text`` extractor
(:attr:`MAGFusion.text_encoder`, fine-tuned: ``set_trainable(True)``) whose ``transformers``
model is located and loaded exactly as the extractor does (local directory or hub name,
offline-aware), and inserts the MAG in front of that model's encoder layer ``injection_layer``
(0 = on the embedding output, as the original; ``num_hidden_layers`` = after the last layer).
The injection is a forward pre-hook on the model's own ``encoder.layer[k]``, so the
pre-trained embeddings, layers, attention-mask handling and pooler are transformers' own,
unchanged; the tokenizer is the extractor's (:attr:`HFTextExtractor.tokenizer`). Supported: BERT-style encoders
(``model.embeddings`` + ``model.encoder.layer``): BERT, MiniLM (a ``BertModel``), RoBERTa,
ELECTRA, XLM-R, ...; anything else is refused with a clear error.

Interface choice: the text enters as token ids, not as a feature tensor. ``forward(features,
masks)`` (the Fusion contract) reads them from ``features["text_bert"]``, a ``(B, 3, L)`` integer
tensor in MMSA's layout (input_ids, attention_mask, token_type_ids), and the gated modalities
from ``features[m]`` ``(B, L, D_m)``, one vector per token; ``masks`` is not used (the attention
mask is row 1 of ``text_bert``). :meth:`MAGFusion.forward_tokens` takes the same inputs as
separate arguments. Every modality in ``input_dims`` except ``text`` gets a gate.

Output ``(B, hidden_size)``: the encoder's pooler on the [CLS] state (``pooling="pooler"``, as
the original ``BertPooler``: Linear + tanh, pre-trained weights) or the raw [CLS] hidden state
(``pooling="cls"``; also used when the model has no pooler, e.g. ELECTRA).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from msabench.api import ComponentMeta, Fusion
from msabench.errors import ConfigError
from msabench_builtins.extractors.hf_text import HFTextExtractor

POOLINGS = ("pooler", "cls")
MAG_CITATION = (
    "@inproceedings{rahman2020integrating, title={Integrating Multimodal Information in Large "
    "Pretrained Transformers}, author={Rahman, Wasifur and Hasan, Md Kamrul and Lee, Sangwu and "
    "Zadeh, AmirAli Bagher and Mao, Chengfeng and Morency, Louis-Philippe and Hoque, Ehsan}, "
    "booktitle={ACL}, pages={2359--2369}, year={2020}}")


class MAG(nn.Module):
    """The Multimodal Adaptation Gate on token states ``z`` (B, L, H) (module docstring).

    ``input_dims`` maps each gated modality to its feature size; with none, ``H = 0`` and the
    output is ``Dropout(LayerNorm(z))``. ``init_std``: initialise the linear layers as BERT does
    (normal(0, init_std), zero bias; the original calls BERT's ``init_weights`` on the MAG);
    ``None`` keeps PyTorch's default initialisation. ``layer_norm_eps`` defaults to
    ``nn.LayerNorm``'s 1e-5, as the original.
    """

    def __init__(self, hidden_size: int, input_dims: Mapping[str, int], beta_shift: float = 1.0,
                 dropout: float = 0.5, eps: float = 1e-6, layer_norm_eps: float = 1e-5,
                 init_std: float | None = None) -> None:
        super().__init__()
        self.order = list(input_dims)
        self.beta_shift = float(beta_shift)
        self.eps = float(eps)
        self.gates = nn.ModuleDict(
            {m: nn.Linear(int(d) + hidden_size, hidden_size) for m, d in input_dims.items()})
        self.projections = nn.ModuleDict(
            {m: nn.Linear(int(d), hidden_size) for m, d in input_dims.items()})
        self.layer_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(float(dropout))
        if init_std is not None:
            for layer in [*self.gates.values(), *self.projections.values()]:
                nn.init.normal_(layer.weight, mean=0.0, std=float(init_std))
                nn.init.zeros_(layer.bias)

    def displacement(self, z: torch.Tensor, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``H = sum_m ReLU(W_gm [X_m; Z]) * W_m X_m`` (B, L, H)."""
        h = torch.zeros_like(z)
        for m in self.order:
            x = inputs[m].to(z.dtype)
            gate = torch.relu(self.gates[m](torch.cat([x, z], dim=-1)))
            h = h + gate * self.projections[m](x)
        return h

    def scale(self, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``alpha = min(beta * ||Z|| / (||H|| + eps), 1)`` per token (B, L); a zero ``H`` is
        given norm 1 (as the original), so there is never a division by zero or a NaN."""
        z_norm = z.norm(p=2, dim=-1)
        h_norm = h.norm(p=2, dim=-1)
        h_norm = torch.where(h_norm == 0, torch.ones_like(h_norm), h_norm)
        return torch.clamp(self.beta_shift * z_norm / (h_norm + self.eps), max=1.0)

    def forward(self, z: torch.Tensor, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        h = self.displacement(z, inputs)
        alpha = self.scale(z, h).unsqueeze(-1)
        return self.dropout(self.layer_norm(z + alpha * h))


class MAGFusion(Fusion):
    """MAG inside a pre-trained BERT-family encoder -> pooled [CLS] vector (B, hidden_size).

    Inputs: ``features["text_bert"]`` (B, 3, L) token ids / attention mask / token types and,
    for every modality of ``input_dims`` except ``text``, ``features[m]`` (B, L, D_m) with one
    vector per token; or the same through :meth:`forward_tokens`. The MAG runs before encoder
    layer ``injection_layer`` (a forward pre-hook on ``bert.encoder.layer[k]``). The encoder is
    an ``hf-text`` extractor, :attr:`text_encoder`, whose weights are loaded in ``__init__``
    and fine-tuned with the rest (:attr:`bert` is its ``transformers`` model); the matching
    tokenizer is loaded on first use of :attr:`tokenizer`.
    """

    name = "mag"
    meta = ComponentMeta(
        summary="multimodal adaptation gate inside a BERT-family encoder",
        paper="Rahman et al. 2020, Integrating Multimodal Information in Large Pretrained "
              "Transformers (ACL 2020)",
        citation=MAG_CITATION,
        license="code: see WasifurRahman/BERT_multimodal_transformer; weights: their own licence",
        defaults_source="WasifurRahman/BERT_multimodal_transformer: multimodal_driver.py "
                        "(beta_shift 1.0, dropout_prob 0.5, bert-base-uncased), modeling.py "
                        "(MAG, eps 1e-6), bert.py (MAG on the embedding output, BertPooler)",
        url="https://github.com/WasifurRahman/BERT_multimodal_transformer")
    defaults = {
        "model": "bert-base-uncased",  # local directory or hub name of a BERT-family encoder
        "injection_layer": 0,          # MAG before encoder layer k (0 = on the embedding output)
        "beta_shift": 1.0,             # beta in alpha = min(beta * |Z| / |H|, 1)
        "dropout": 0.5,                # dropout after the MAG's LayerNorm
        "eps": 1e-6,                   # added to |H| in alpha
        "pooling": "pooler",           # "pooler" (BertPooler on [CLS]) or "cls" (raw [CLS] state)
        "local_files_only": False,     # never contact the hub (also implied by HF_HUB_OFFLINE=1)
        "revision": None,              # hub revision; ignored for local directories
    }
    requires_aligned = True

    def __init__(self, input_dims: Mapping[str, int], **params: Any) -> None:
        super().__init__(input_dims, **params)
        p = self.params
        if not isinstance(p["model"], (str, Path)) or not str(p["model"]).strip():
            raise ConfigError(f"fusion mag: option model must be a local directory or a hub name, "
                              f"got {p['model']!r}")
        if p["pooling"] not in POOLINGS:
            raise ConfigError(f"fusion mag: option pooling={p['pooling']!r} is not one of "
                              f"{', '.join(POOLINGS)}")
        layer = p["injection_layer"]
        if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
            raise ConfigError(f"fusion mag: option injection_layer must be an integer >= 0 "
                              f"(0 = after the embeddings), got {layer!r}")
        for key in ("beta_shift", "eps"):
            if not isinstance(p[key], (int, float)) or p[key] <= 0:
                raise ConfigError(f"fusion mag: option {key} must be a positive number, "
                                  f"got {p[key]!r}")
        if not isinstance(p["dropout"], (int, float)) or not 0 <= p["dropout"] < 1:
            raise ConfigError(f"fusion mag: option dropout must lie in [0, 1), "
                              f"got {p['dropout']!r}")
        self.gated = {m: int(d) for m, d in self.input_dims.items() if m != "text"}
        # the encoder is registered first, the MAG second: parameter order and the seeded
        # initialisation of the MAG are those of the original module layout
        self.text_encoder = self._load_encoder()
        model = self.text_encoder.model
        layers = model.encoder.layer
        if layer > len(layers):
            raise ConfigError(f"fusion mag: injection_layer={layer} is out of range; model "
                              f"{p['model']!r} has {len(layers)} layers (0 = after the embeddings, "
                              f"{len(layers)} = after the last layer)")
        self.hidden_size = int(model.config.hidden_size)
        self.vocab_size = int(model.config.vocab_size)
        self.use_pooler = p["pooling"] == "pooler" and getattr(model, "pooler", None) is not None
        self.mag = MAG(self.hidden_size, self.gated, beta_shift=p["beta_shift"],
                       dropout=p["dropout"], eps=p["eps"],
                       init_std=getattr(model.config, "initializer_range", 0.02))
        self.injection_layer = layer
        if layer < len(layers):
            layers[layer].register_forward_pre_hook(self._inject_before, with_kwargs=True)
        else:
            layers[layer - 1].register_forward_hook(self._inject_after)
        self._pending: dict[str, torch.Tensor] | None = None
        self._injected = False
        self._fast_checked = False
        self.output_dim = self.hidden_size

    # ------------------------------------------------------------------ loading
    def _load_encoder(self) -> HFTextExtractor:
        """The ``hf-text`` extractor of ``model``, loaded (float32) and trainable."""
        p = self.params
        try:
            encoder = HFTextExtractor(
                model=str(p["model"]), local_files_only=bool(p["local_files_only"]),
                revision=None if p["revision"] is None else str(p["revision"]))
            config = encoder.hf_config
            if getattr(config, "is_encoder_decoder", False) or getattr(config, "is_decoder",
                                                                       False):
                raise self._unsupported(type(config).__name__, config)
            encoder.load()
        except ConfigError as exc:
            if str(exc).startswith("fusion mag:"):
                raise
            raise ConfigError(f"fusion mag: {exc}") from exc
        model = encoder.model
        layers = getattr(getattr(model, "encoder", None), "layer", None)
        if not hasattr(model, "embeddings") or not isinstance(layers, nn.ModuleList) or not layers:
            raise self._unsupported(type(model).__name__, model.config)
        model.float()
        return encoder.set_trainable(True)

    @property
    def bert(self) -> nn.Module:
        """The ``transformers`` model of :attr:`text_encoder` (BERT, MiniLM, RoBERTa, ...)."""
        return self.text_encoder.model

    def _unsupported(self, what: str, config: Any) -> ConfigError:
        return ConfigError(
            f"fusion mag: model {self.params['model']!r} ({what}, model_type "
            f"{getattr(config, 'model_type', '?')!r}) is not a supported architecture; MAG needs a "
            f"BERT-style encoder with model.embeddings and model.encoder.layer[i] (BERT, MiniLM, "
            f"RoBERTa, ELECTRA, XLM-R, ...)")

    @property
    def tokenizer(self):
        """The encoder's tokenizer (:attr:`HFTextExtractor.tokenizer`, loaded on first use);
        must be a fast tokenizer (word alignment needs ``word_ids``)."""
        try:
            tokenizer = self.text_encoder.tokenizer
        except ConfigError as exc:
            raise ConfigError(f"fusion mag: {exc}") from exc
        if not self._fast_checked:
            if not getattr(tokenizer, "is_fast", False):
                raise ConfigError(f"fusion mag: the tokenizer of {self.params['model']!r} is not a "
                                  f"fast (tokenizers-backed) tokenizer; word alignment needs one "
                                  f"(save the model with a tokenizer.json)")
            self._fast_checked = True
        return tokenizer

    # ------------------------------------------------------------------ injection hooks
    def _fuse(self, hidden: torch.Tensor) -> torch.Tensor:
        self._injected = True
        return self.mag(hidden, self._pending)

    def _inject_before(self, module: nn.Module, args: tuple, kwargs: dict):
        if self._pending is None:  # the encoder used on its own: no MAG
            return None
        if args:
            return (self._fuse(args[0]), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": self._fuse(kwargs["hidden_states"])}

    def _inject_after(self, module: nn.Module, args: tuple, output: Any):
        if self._pending is None:
            return None
        if isinstance(output, torch.Tensor):
            return self._fuse(output)
        return (self._fuse(output[0]), *output[1:])

    # ------------------------------------------------------------------ forward
    def forward(self, features: Mapping[str, torch.Tensor],
                masks: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        tokens = features.get("text_bert")
        if tokens is None or tokens.dim() != 3 or tokens.shape[1] != 3:
            raise ValueError(
                "fusion mag needs the token ids as features['text_bert'], a (B, 3, L) integer "
                "tensor (input_ids, attention_mask, token_type_ids), plus features[m] (B, L, D_m) "
                "for " + (", ".join(self.gated) or "no modality") + "; the mag-bert method builds "
                "them from transcripts or MMSA's text_bert")
        tokens = tokens.long()
        return self.forward_tokens(tokens[:, 0], tokens[:, 1], tokens[:, 2],
                                   **{m: features[m] for m in self.gated if m in features})

    def forward_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                       token_type_ids: torch.Tensor | None = None,
                       **modalities: torch.Tensor) -> torch.Tensor:
        """Pooled (B, hidden_size) representation of the tokens with MAG-fused ``modalities``
        (``audio=`` / ``vision=``: (B, L, D_m), one vector per token, zeros on special tokens)."""
        if input_ids.dim() != 2:
            raise ValueError(f"fusion mag: input_ids must be (B, L), got {tuple(input_ids.shape)}")
        missing = [m for m in self.gated if m not in modalities]
        extra = [m for m in modalities if m not in self.gated]
        if missing or extra:
            raise ValueError(f"fusion mag: expected modalities {sorted(self.gated)}, got "
                             f"{sorted(modalities)}")
        for m, x in modalities.items():
            if x.dim() != 3 or tuple(x.shape[:2]) != tuple(input_ids.shape) \
                    or x.shape[2] != self.gated[m]:
                raise ValueError(
                    f"fusion mag: {m} must be (B, L, D) = ({input_ids.shape[0]}, "
                    f"{input_ids.shape[1]}, {self.gated[m]}) to match the tokens, got "
                    f"{tuple(x.shape)}; MAG needs one {m} vector per token")
        if input_ids.numel() and int(input_ids.max()) >= self.vocab_size:
            raise ConfigError(
                f"fusion mag: token id {int(input_ids.max())} is outside the vocabulary of model "
                f"{self.params['model']!r} ({self.vocab_size} tokens); the ids were made with "
                f"another tokenizer (MMSA's text_bert uses bert-base-uncased / bert-base-chinese): "
                f"use a model with that vocabulary or re-tokenise the transcripts "
                f"(mag-bert: --set model.input_mode=words or utterance)")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        self._pending, self._injected = dict(modalities), False
        try:
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                            token_type_ids=token_type_ids, return_dict=True)
        finally:
            self._pending = None
        if not self._injected:  # pragma: no cover - a transformers change we must hear about
            raise RuntimeError(f"fusion mag: the MAG was not applied (encoder layer "
                               f"{self.injection_layer} was not called by "
                               f"{type(self.bert).__name__})")
        if self.use_pooler:
            return out.pooler_output
        return out.last_hidden_state[:, 0]
