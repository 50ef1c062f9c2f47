"""``mag-bert``: MAG-BERT (Rahman et al. 2020) on a BERT-family encoder.

The ``mag`` fusion (MAG inside the encoder, pooled [CLS]) -> Dropout -> Linear(1), trained on
the regression label [code: WasifurRahman/BERT_multimodal_transformer bert.py,
multimodal_driver.py].

Inputs (``model.input_mode``; ``auto`` picks the first that applies):

``text_bert``  the batch has ``extras["text_bert"]`` (MMSA ``aligned_50``: (B, 3, L) ids, mask,
               token types of bert-base-uncased) and audio/vision of the same length L: used
               as they are, as MMSA's MAG_BERT does (``max_length`` does not apply).
``words``      word-level audio/vision (the MAG-BERT pickle: one row per word) and transcripts
               that are the words joined by single spaces: every word is tokenised on its own
               and its audio/vision vector is repeated over its word pieces; [CLS], [SEP] and
               padding get zeros; at most ``max_length`` tokens [code: multimodal_driver.py
               convert_to_features / prepare_bert_input]. A transcript whose word count differs
               from the feature length (a word containing a space) is aligned as far as it
               goes, with a warning.
``utterance``  utterance-level audio/vision (T = 1, e.g. mosi ``utt-clean``) and raw
               transcripts: the sentence is tokenised and the utterance vector is broadcast over
               all its word pieces, zeros on special tokens and padding [msabench choice: the
               paper needs word-level features; this is the closest faithful use of
               utterance-level ones].

A modality the data lacks (``utt-clean`` has no vision) loses its gate term
(``missing_modality = "drop"``, default) or is fed zeros of size ``zero_dims[m]``
(``"zeros"``: the original architecture on an all-zero input). Unaligned sequences are refused:
MAG needs one vector per token (``requires_aligned``). Batches are padded to their longest
tokenisation rather than always to ``max_length`` (the released driver pads every input to
``max_seq_length`` = 50); with the attention mask the outputs are the same up to float
rounding. ``model.pad_to = N`` pads every batch to at least N tokens (``pad_to = 50`` is the
released layout, kept to measure what dynamic padding saves); ``train.bucket_by_length = true``
batches transcripts of similar token counts together (:meth:`MAGBert.sample_lengths`), so
batches also pad less within an epoch.

Recipe [code: multimodal_driver.py argparse defaults]: MSE loss, AdamW lr 1e-5 with weight
decay 0.01 except biases and LayerNorm weights (eps 1e-6, transformers' AdamW default), batch
48, 40 epochs, linear warm-up over 10% of the steps then linear decay. The released driver
passes ``get_linear_schedule_with_warmup(num_warmup_steps=total, num_training_steps=0.1 *
total)`` - swapped arguments, so its learning rate rises linearly over the whole run;
``model.schedule = "released"`` reproduces that, the default ``"linear"`` is what the argument
names (and the earlier ``WarmupLinearSchedule`` call of the same driver) intend. The released
code reports test scores every epoch without model selection; msabench selects the epoch with
the lowest validation loss and does not stop early (``patience = 0``, all 40 epochs run).
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping

import torch
from torch import nn

from msabench.api import Batch, ComponentMeta, Components, DataInfo, Method, Schedule
from msabench.errors import ConfigError

from ..fusions.mag import MAG_CITATION

GATED = ("audio", "vision")
INPUT_MODES = ("auto", "text_bert", "words", "utterance")
SCHEDULES = ("linear", "released", "constant")
LOSSES = ("mse", "l1")


class MAGBert(Method):
    """MAG-BERT: multimodal adaptation gate in a pre-trained BERT, [CLS] regression head.

    Text enters as word pieces (MMSA's ``text_bert`` or the transcripts re-tokenised with the
    encoder's tokenizer); audio/vision are aligned to the word pieces (``model.input_mode``);
    the ``mag`` fusion returns the pooled [CLS] vector; Dropout -> Linear(1) predicts the label.
    MSE loss, AdamW with warm-up and linear decay (module docstring for every choice).
    """

    name = "mag-bert"
    meta = ComponentMeta(
        summary="MAG-BERT (Rahman et al. 2020) on a BERT-family encoder",
        paper="Rahman et al. 2020, Integrating Multimodal Information in Large Pretrained "
              "Transformers (ACL 2020)",
        citation=MAG_CITATION,
        license="code: see WasifurRahman/BERT_multimodal_transformer; weights: their own licence",
        defaults_source=(
            "WasifurRahman/BERT_multimodal_transformer multimodal_driver.py argparse defaults: "
            "bert-base-uncased, max_seq_length 50, train_batch_size 48, dev/test batch 128, "
            "n_epochs 40, learning_rate 1e-5, warmup_proportion 0.1, beta_shift 1.0, "
            "dropout_prob 0.5 (MAG), MSELoss, AdamW weight decay 0.01 except bias/LayerNorm; "
            "bert.py: head dropout = hidden_dropout_prob; global_configs.py: MOSI acoustic 74 / "
            "visual 47 (MOSEI 35) for zero_dims. msabench choices: selection on validation "
            "loss, warm-up then linear decay (the released call swaps the two step counts; "
            "schedule='released' reproduces it), utterance broadcasting. CH-SIMS: "
            "bert-base-chinese (thuiar/MMSA config_regression.json bert_mag sims)"),
        url="https://github.com/WasifurRahman/BERT_multimodal_transformer")
    defaults = {
        "train": {"epochs": 40, "batch_size": 48, "lr": 1e-5, "weight_decay": 0.01,
                  "patience": 0, "grad_clip": 0.0, "select": "loss", "eval_batch_size": 128},
        "model": {
            "model": "bert-base-uncased",   # encoder: local directory or hub name
            "injection_layer": 0,           # MAG before encoder layer k (0 = after embeddings)
            "beta_shift": 1.0,
            "mag_dropout": 0.5,
            "head_dropout": None,           # None = the encoder's hidden_dropout_prob (0.1)
            "pooling": "pooler",            # "pooler" or "cls"
            "max_length": 50,               # tokens incl. [CLS]/[SEP] (words/utterance modes)
            "pad_to": None,                 # None = pad each batch to its longest; N = >= N
            "input_mode": "auto",           # auto, text_bert, words, utterance
            "missing_modality": "drop",     # "drop" the gate term or feed "zeros"
            "zero_dims": {"audio": 74, "vision": 47},
            "loss": "mse",                  # "mse" (original) or "l1" (MMSA's regression loss)
            "schedule": "linear",           # linear, released, constant
            "warmup_proportion": 0.1,
            "adam_eps": 1e-6,
            "local_files_only": False,
            "revision": None,
        },
        "pretrain": {},
    }
    dataset_defaults = {
        "mosei": {"model": {"zero_dims": {"audio": 74, "vision": 35}}},
        "chsims": {"model": {"model": "bert-base-chinese"}},
        "chsims2": {"model": {"model": "bert-base-chinese"}},
    }
    requires_aligned = True

    def __init__(self, info: DataInfo, config: Mapping[str, Any], components: Components) -> None:
        super().__init__(info, config, components)
        cfg = self.config
        self._check_config(cfg)
        if not info.aligned:
            raise ConfigError(
                f"method mag-bert needs word-aligned or utterance-level inputs (one audio/vision "
                f"vector per word), but {info.meta.name}/{info.setting} is unaligned "
                f"{info.max_lengths}; choose an aligned setting (e.g. aligned, magbert, utt-clean)")
        if "text" in info.meta.modalities and "text" not in info.modalities:
            # the text reaches BERT from the transcripts / text_bert ids, which a modality
            # subset keeps: without this check an "av" run would silently still read the text
            raise ConfigError(
                f"method mag-bert reads the text in its BERT encoder, so data.modalities must "
                f"include text (got {', '.join(info.modalities)}); use e.g. --modalities ta")
        self.present = [m for m in GATED if m in info.modalities]
        self.zeroed = {m: int(cfg["zero_dims"][m]) for m in GATED if m not in self.present} \
            if cfg["missing_modality"] == "zeros" else {}
        self.mode = self._pick_mode(info, cfg["input_mode"])
        self.max_length = int(cfg["max_length"])
        self.pad_to = None if cfg["pad_to"] is None else int(cfg["pad_to"])
        dims = {m: info.feature_dims[m] for m in self.present}
        dims.update(self.zeroed)
        self.fusion = components.fusion(
            "mag", dims, model=cfg["model"], injection_layer=cfg["injection_layer"],
            beta_shift=cfg["beta_shift"], dropout=cfg["mag_dropout"], pooling=cfg["pooling"],
            local_files_only=cfg["local_files_only"], revision=cfg["revision"])
        bert_config = self.fusion.bert.config
        p = cfg["head_dropout"]
        self.drop = nn.Dropout(float(bert_config.hidden_dropout_prob if p is None else p))
        self.head = nn.Linear(self.fusion.output_dim, 1)
        nn.init.normal_(self.head.weight, std=getattr(bert_config, "initializer_range", 0.02))
        nn.init.zeros_(self.head.bias)
        self._cache: dict[str, tuple[list[int], list[int], list[int], int]] = {}
        self._mismatch_warned = False

    # ------------------------------------------------------------------ configuration
    @classmethod
    def required_models(cls, config: Mapping[str, Any]) -> list:
        """The BERT-family encoder ``model.model`` (at ``model.revision``), fine-tuned."""
        from msabench.api import ModelNeed

        m = config["model"]
        return [ModelNeed(str(m["model"]), "model.model", modality="text",
                          revision=m.get("revision"), role="MAG-BERT encoder (fine-tuned)")]

    @staticmethod
    def _check_config(cfg: Mapping[str, Any]) -> None:
        choices = {"input_mode": INPUT_MODES, "schedule": SCHEDULES, "loss": LOSSES,
                   "missing_modality": ("drop", "zeros")}
        for key, allowed in choices.items():
            if cfg[key] not in allowed:
                raise ConfigError(f"mag-bert: model.{key}={cfg[key]!r} is not one of "
                                  f"{', '.join(allowed)}")
        n = cfg["max_length"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 3:
            raise ConfigError(f"mag-bert: model.max_length must be an integer >= 3 "
                              f"([CLS], one token, [SEP]), got {n!r}")
        p = cfg["pad_to"]
        if p is not None and (isinstance(p, bool) or not isinstance(p, int) or p < 1):
            raise ConfigError(f"mag-bert: model.pad_to must be a positive integer (pad every "
                              f"batch to at least that many tokens) or unset, got {p!r}")
        w = cfg["warmup_proportion"]
        if not isinstance(w, (int, float)) or not 0 <= w <= 1:
            raise ConfigError(f"mag-bert: model.warmup_proportion must lie in [0, 1], got {w!r}")
        p = cfg["head_dropout"]
        if p is not None and (not isinstance(p, (int, float)) or not 0 <= p < 1):
            raise ConfigError(f"mag-bert: model.head_dropout must lie in [0, 1), got {p!r}")
        if cfg["missing_modality"] == "zeros":
            zd = cfg["zero_dims"]
            bad = [m for m in GATED if not isinstance(zd.get(m), int) or zd.get(m) < 1]
            if bad:
                raise ConfigError(f"mag-bert: model.zero_dims.{bad[0]} must be a positive "
                                  f"integer (the size of the all-zero {bad[0]} input)")

    def _pick_mode(self, info: DataInfo, mode: str) -> str:
        where = f"{info.meta.name}/{info.setting}"
        utterance = all(info.max_lengths[m] == 1 for m in self.present)
        if mode == "auto":
            if "text_bert" in info.extras:
                return "text_bert"
            if not info.has_texts:
                raise ConfigError(
                    f"mag-bert needs the text as tokens: {where} has neither MMSA's text_bert "
                    f"token ids nor raw transcripts; use a setting that has one (msabench info "
                    f"{info.meta.name})")
            return "utterance" if utterance else "words"
        if mode == "text_bert" and "text_bert" not in info.extras:
            raise ConfigError(f"mag-bert: input_mode=text_bert but {where} has no "
                              f"extras['text_bert'] (MMSA pickles provide it)")
        if mode in ("words", "utterance") and not info.has_texts:
            raise ConfigError(f"mag-bert: input_mode={mode} needs raw transcripts; {where} "
                              f"has none")
        if mode == "utterance" and not utterance:
            raise ConfigError(f"mag-bert: input_mode=utterance needs utterance-level (T = 1) "
                              f"audio/vision; {where} has {info.max_lengths}")
        return mode

    def configure_optimizer(self, train: Mapping[str, Any]) -> torch.optim.Optimizer:
        """AdamW; no weight decay on biases and LayerNorm parameters (as the original)."""
        no_decay: set[int] = set()
        for module in self.modules():
            if isinstance(module, nn.LayerNorm):
                no_decay.update(id(p) for p in module.parameters(recurse=False))
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                no_decay.add(id(p))
        params = self.trainable_parameters()
        groups = [
            {"params": [p for p in params if id(p) not in no_decay],
             "weight_decay": float(train.get("weight_decay", 0.0))},
            {"params": [p for p in params if id(p) in no_decay], "weight_decay": 0.0},
        ]
        return torch.optim.AdamW([g for g in groups if g["params"]], lr=float(train["lr"]),
                                 eps=float(self.config["adam_eps"]), foreach=True)

    def configure_scheduler(self, optimizer: torch.optim.Optimizer, train: Mapping[str, Any],
                            steps_per_epoch: int) -> Schedule:
        """Per-batch LambdaLR over ``epochs * steps_per_epoch`` steps (module docstring)."""
        total = max(1, int(steps_per_epoch) * int(train["epochs"]))
        warmup = int(float(self.config["warmup_proportion"]) * total)
        schedule = self.config["schedule"]

        def factor(step: int) -> float:
            if schedule == "constant":
                return 1.0
            if schedule == "released":  # warm-up over all steps, never decays
                return step / total if step < total else 1.0
            if step < warmup:
                return step / max(1, warmup)
            return max(0.0, (total - step) / max(1, total - warmup))

        return Schedule(torch.optim.lr_scheduler.LambdaLR(optimizer, factor), interval="step")

    # ------------------------------------------------------------------ inputs
    def _encode(self, text: str) -> tuple[list[int], list[int], list[int], int]:
        """(input_ids, token_type_ids, step index per token (-1: special), words) of one text."""
        hit = self._cache.get(text)
        if hit is not None:
            return hit
        tok = self.fusion.tokenizer
        if self.mode == "words":
            words = text.split(" ")
            enc = tok(words, is_split_into_words=True, truncation=True, max_length=self.max_length)
            index = [-1 if w is None else int(w) for w in enc.word_ids()]
        else:
            words = [text]
            enc = tok(text, truncation=True, max_length=self.max_length)
            index = [-1 if w is None else 0 for w in enc.word_ids()]
        ids = list(enc["input_ids"])
        types = list(enc.get("token_type_ids") or [0] * len(ids))
        out = (ids, types, index, len(words))
        self._cache[text] = out
        return out

    def tokenize(self, texts: list[str], device: torch.device | str = "cpu"
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``tokens`` (B, 3, L) (ids, mask, types; padded to the longest, or to ``pad_to``),
        ``index`` (B, L) (the audio/vision step each token takes, -1 for special tokens and
        padding) and ``words`` (B,) (words per transcript)."""
        encoded = [self._encode(t) for t in texts]
        length = max(len(e[0]) for e in encoded)
        if self.pad_to is not None:
            length = max(length, self.pad_to)
        pad = self.fusion.tokenizer.pad_token_id or 0
        tokens = torch.zeros(len(texts), 3, length, dtype=torch.long)
        tokens[:, 0] = pad
        index = torch.full((len(texts), length), -1, dtype=torch.long)
        for i, (ids, types, idx, _) in enumerate(encoded):
            n = len(ids)
            tokens[i, 0, :n] = torch.tensor(ids)
            tokens[i, 1, :n] = 1
            tokens[i, 2, :n] = torch.tensor(types)
            index[i, :n] = torch.tensor(idx)
        words = torch.tensor([e[3] for e in encoded], dtype=torch.long)
        return tokens.to(device), index.to(device), words.to(device)

    def sample_lengths(self, split: Any) -> torch.Tensor:
        """(N,) word pieces per sample (the loop's length bucketing, ``train.bucket_by_length``):
        the tokenisation of each transcript (cached for training), or the attention-mask sum of
        MMSA's ``text_bert``."""
        if self.mode == "text_bert":
            return split.extras["text_bert"][:, 1].sum(-1).long()
        return torch.tensor([len(self._encode(t)[0]) for t in split.texts], dtype=torch.long)

    @staticmethod
    def align(x: torch.Tensor, index: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, D) step features -> (B, L, D) token features: token j takes step
        ``index[b, j]`` (clipped to the sample's valid steps); zeros where ``index`` is -1."""
        valid = index >= 0
        steps = torch.minimum(index.clamp(min=0), (lengths.to(index.device) - 1).clamp(min=0)
                              .unsqueeze(1))
        out = torch.gather(x, 1, steps.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        return out * valid.unsqueeze(-1).to(x.dtype)

    def prepare_inputs(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(text_bert-style tokens (B, 3, L), {modality: (B, L, D)}) for the fusion."""
        device = batch.label.device
        if self.mode == "text_bert":
            tokens = batch.extras["text_bert"].to(device).long()
            length = tokens.shape[-1]
            bad = {m: batch.features[m].shape[1] for m in self.present
                   if batch.features[m].shape[1] != length}
            if bad:
                raise ConfigError(
                    f"mag-bert: MMSA's text_bert has {length} tokens but the audio/vision "
                    f"sequences have {bad} steps; MAG needs one vector per token (leave "
                    f"data.max_length unset, or set model.input_mode=words)")
            mods = {m: batch.features[m] for m in self.present}
        else:
            if batch.texts is None:
                raise ConfigError(f"mag-bert: input_mode={self.mode} needs transcripts, but the "
                                  f"batch has none")
            tokens, index, words = self.tokenize(list(batch.texts), device)
            mods = {}
            for m in self.present:
                lengths = batch.lengths[m].to(device)
                if self.mode == "words":
                    self._check_word_counts(words, lengths, batch, m)
                mods[m] = self.align(batch.features[m], index, lengths)
        for m, d in self.zeroed.items():
            mods[m] = torch.zeros(tokens.shape[0], tokens.shape[-1], d, device=device)
        return tokens, mods

    def _check_word_counts(self, words: torch.Tensor, lengths: torch.Tensor, batch: Batch,
                           m: str) -> None:
        bad = words != lengths
        if bool(bad.any()) and not self._mismatch_warned:
            i = int(torch.nonzero(bad)[0])
            warnings.warn(
                f"mag-bert: {int(bad.sum())} transcript(s) in a batch have a word count that "
                f"differs from their {m} length (first: {batch.ids[i]!r}, {int(words[i])} words "
                f"vs {int(lengths[i])} steps); their word pieces are aligned as far as the "
                f"features go (words containing spaces break the words-joined-by-spaces "
                f"convention)", stacklevel=2)
            self._mismatch_warned = True

    # ------------------------------------------------------------------ model
    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        tokens, mods = self.prepare_inputs(batch)
        pooled = self.fusion({"text_bert": tokens, **mods})
        return {"pred": self.head(self.drop(pooled)).squeeze(-1), "fused": pooled}

    def loss(self, outputs: Mapping[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        """MSE (the original) or L1 on labelled rows."""
        keep = batch.labelled
        if not bool(keep.any()):
            return outputs["pred"].sum() * 0.0
        fn = nn.functional.mse_loss if self.config["loss"] == "mse" else nn.functional.l1_loss
        return fn(outputs["pred"][keep], batch.label[keep])

