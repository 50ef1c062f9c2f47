"""``transformer``: the classifier of the dec-semi paper, trained from scratch.

Architecture [paper sec. 3.2; docs/methods.md "dec-semi"]: one encoder per modality,
``Linear(d_m -> d_model)`` [choice: 74/47-d inputs do not divide into 4 heads], sinusoidal
positional encoding, ``layers`` (2) ``nn.TransformerEncoderLayer`` with ``heads`` (4) heads and a
``ffn`` (256)-wide feed-forward block, then a masked mean over time [paper: mean-aggregated;
masking padded steps is the choice]. The pooled vectors are concatenated (``z``, the latent the
``dec`` pretrainer clusters) and a head narrows them to one logit: ``Linear -> BatchNorm1d ->
ReLU -> Dropout`` then ``Linear -> ReLU`` blocks down to ``Linear(-> 1)`` [paper: "additional
fully connected layers to progressively reduce the embedding dimension"; widths are the
choice ``head_dims``].

Objective: binary cross-entropy on the sign of the label [paper]. A label of exactly 0 is
positive by default (``zero_label = "positive"``, MMSA's Has0 convention, also how
:func:`msabench.preprocess.class_of` stratifies the labelled subset), or left out of the loss
(``"ignore"``).

Prediction on the label scale (so every metric of the convention is reported): with
``p = sigmoid(logit)`` and label range ``[lo, hi]``, ``pred = (lo + hi) / 2 + (hi - lo) / 2 *
(2p - 1)``; on MOSI ``pred = 3 (2p - 1) = 3 tanh(logit / 2)``. The sign of ``pred`` is the
sign of the logit, so Acc2/F1 are the classifier's own decisions; MAE, Corr and Acc7 then
measure a mapped probability, not a regression, and results carry ``prediction_kind =
"probability-mapped"`` (leaderboards mark these rows).

Recipe [paper sec. 4.2]: Adam lr 4e-5, weight decay 1e-2, batch 128, 500 epochs, the best
epoch on validation (``select = "loss"``: validation BCE; no early stopping); sequences padded /
truncated to 30 steps and normalised min-max then z-score per modality with training-split
statistics (``data.max_length``, ``data.normalize``).

Parameter count: the paper reports 851,713 for its CMU-MOSI inputs (GloVe 300, COVAREP 74,
FACET 47). With ``d_model`` 128 the three encoders alone have 849,152 parameters on those inputs,
so no ordinary head fits the remaining 2,561; ours (head 384 -> 64 -> 32 -> 1) totals 876,033
(+2.9%). Every run prints and stores its own count.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import nn

from msabench.api import Batch, ComponentMeta, Components, DataInfo, Method
from msabench.api.fusion import masked_mean
from msabench.errors import ConfigError
from msabench.vectorized import in_stacked_forward

PAPER = ("Enhancing Multi-Modal Video Sentiment Classification Through Semi-Supervised "
         "Clustering (2025; seeds 000/001)")
ZERO_LABELS = ("positive", "ignore")


class SinusoidalPositions(nn.Module):
    """Adds the fixed sine/cosine table of Vaswani et al. to (B, T, D) inputs."""

    def __init__(self, dim: int, max_positions: int) -> None:
        super().__init__()
        position = torch.arange(max_positions, dtype=torch.float32).unsqueeze(1)
        div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
        table = torch.zeros(max_positions, dim)
        table[:, 0::2] = torch.sin(position * div)
        table[:, 1::2] = torch.cos(position * div)[:, : dim // 2]
        self.register_buffer("table", table, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = x.shape[1]
        if steps > self.table.shape[0]:
            raise ConfigError(f"sequence of {steps} steps exceeds model.max_positions "
                              f"({self.table.shape[0]}); set data.max_length (the paper uses 30) "
                              "or raise model.max_positions")
        return x + self.table[:steps]


class ModalityEncoder(nn.Module):
    """Linear projection, positions, a TransformerEncoder, masked mean over time."""

    def __init__(self, input_dim: int, d_model: int, layers: int, heads: int, ffn: int,
                 dropout: float, max_positions: int) -> None:
        super().__init__()
        self.proj = nn.Linear(input_dim, d_model)
        self.positions = SinusoidalPositions(d_model, max_positions)
        layer = nn.TransformerEncoderLayer(d_model, heads, ffn, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # steps after the batch's longest valid sequence are padding for every row: dropping
        # them changes no output beyond float rounding (padded keys are masked, the mean skips
        # padded steps) but
        # saves the work, e.g. utterance-level features padded to data.max_length = 30
        # a sample with no valid step would make every attention row -inf (NaN); let it attend
        # to its first (zero-padded) step instead, its pooled vector is then that step's output
        if in_stacked_forward():
            # a vectorised run's stacked forward (msabench.vectorized): no data-dependent
            # Python control flow; the same mask without trimming (equal up to float rounding)
            first = mask[:, :1] | ~mask.any(1, keepdim=True)
            mask = torch.cat([first, mask[:, 1:]], dim=1)
        else:
            longest = int(mask.sum(1).max()) if mask.numel() else 0
            if 0 < longest < x.shape[1]:
                x, mask = x[:, :longest], mask[:, :longest]
            empty = ~mask.any(1)
            if bool(empty.any()):
                mask = mask.clone()
                mask[empty, 0] = True
        h = self.encoder(self.positions(self.proj(x)), src_key_padding_mask=~mask)
        return masked_mean(h, mask)


class MultimodalEncoder(nn.Module):
    """One :class:`ModalityEncoder` per modality; ``forward`` returns the concatenated pooled
    vectors ``z`` (B, d_model * M). This is the part the ``dec`` pretrainer trains and
    transfers."""

    def __init__(self, input_dims: Mapping[str, int], d_model: int, layers: int, heads: int,
                 ffn: int, dropout: float, max_positions: int) -> None:
        super().__init__()
        self.modalities = list(input_dims)
        self.encoders = nn.ModuleDict({
            m: ModalityEncoder(int(d), d_model, layers, heads, ffn, dropout, max_positions)
            for m, d in input_dims.items()})
        self.output_dim = d_model * len(self.modalities)

    def forward(self, batch: Batch, absent: frozenset[str] = frozenset()) -> torch.Tensor:
        """``absent`` modalities are omitted: their pooled vector is zero, so the head's first
        linear layer gets no term from them (their inputs are never read)."""
        present = next(m for m in self.modalities if m not in absent)
        n = batch.features[present].shape[0]
        return torch.cat([batch.features[present].new_zeros(n, self.encoders[m].proj.out_features)
                          if m in absent else self.encoders[m](batch.features[m], batch.mask(m))
                          for m in self.modalities], dim=-1)


def binary_targets(label: torch.Tensor, zero_label: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(targets in {0, 1}, rows that count): label > 0 is 1, < 0 is 0; 0 per ``zero_label``.
    NaN (hidden) labels never count."""
    finite = torch.isfinite(label)
    safe = torch.nan_to_num(label, nan=0.0)
    if zero_label == "positive":
        return (safe >= 0).to(label.dtype), finite
    return (safe > 0).to(label.dtype), finite & (safe != 0)


class TransformerClassifier(Method):
    """Per-modality transformer encoders, concatenation, FC-BN-ReLU-Dropout head to one logit."""

    name = "transformer"
    vectorizable = True
    prediction_kind = "probability-mapped"
    meta = ComponentMeta(
        summary="dec-semi paper's transformer classifier (no pretraining), binary BCE",
        paper=PAPER,
        defaults_source=(
            "paper sec. 3.1-3.2, 4.2 (seed 001): 2 encoder layers, 4 heads, FFN 256, mean "
            "pooling, FC+BN+ReLU+Dropout head to one logit, Adam lr 4e-5, weight decay 1e-2, "
            "batch 128, 500 epochs, best validation checkpoint, length 30, min-max then "
            "z-score. msabench choices (docs/dec-semi.md): d_model 128 input projection, "
            "sinusoidal positions, encoder dropout 0.1, head 64-32 with dropout 0.3, masked "
            "mean, zero labels positive, selection on validation BCE, probability mapped to "
            "the label scale"),
    )
    defaults = {
        "train": {"epochs": 500, "batch_size": 128, "lr": 4e-5, "weight_decay": 1e-2,
                  "patience": 0, "select": "loss"},
        "model": {"d_model": 128, "layers": 2, "heads": 4, "ffn": 256, "dropout": 0.1,
                  "head_dims": [64, 32], "head_dropout": 0.3, "max_positions": 512,
                  "zero_label": "positive"},
        "pretrain": {},
        "data": {"normalize": "minmax-zscore", "max_length": 30},
    }

    def __init__(self, info: DataInfo, config: Mapping[str, Any], components: Components) -> None:
        super().__init__(info, config, components)
        cfg = self.config
        if cfg["zero_label"] not in ZERO_LABELS:
            raise ConfigError(f"model.zero_label={cfg['zero_label']!r}: choose one of "
                              f"{', '.join(ZERO_LABELS)}")
        d_model, heads = int(cfg["d_model"]), int(cfg["heads"])
        if d_model % heads:
            raise ConfigError(f"model.d_model ({d_model}) must be divisible by model.heads ({heads})")
        self.modalities = list(info.modalities)
        self.encoder = MultimodalEncoder(
            {m: info.feature_dims[m] for m in self.modalities}, d_model, int(cfg["layers"]),
            heads, int(cfg["ffn"]), float(cfg["dropout"]), int(cfg["max_positions"]))
        dims = [int(d) for d in cfg["head_dims"]]
        if not dims:
            raise ConfigError("model.head_dims needs at least one width (the FC-BN layer)")
        layers: list[nn.Module] = [nn.Linear(self.encoder.output_dim, dims[0]),
                                   nn.BatchNorm1d(dims[0]), nn.ReLU(),
                                   nn.Dropout(float(cfg["head_dropout"]))]
        for a, b in zip(dims, dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(dims[-1], 1))
        self.head = nn.Sequential(*layers)
        lo, hi = (float(v) for v in info.label_range)
        self.register_buffer("_centre", torch.tensor((lo + hi) / 2), persistent=False)
        self.register_buffer("_half", torch.tensor((hi - lo) / 2), persistent=False)

    def droppable_modalities(self) -> set[str]:
        """Any modality, when there are two or more (late fusion: each has its own encoder)."""
        mods = list(self.encoder.modalities)
        return set(mods) if len(mods) > 1 else set()

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        z = self.encoder(batch, self.absent) if self.absent else self.encoder(batch)
        logit = self.head(z).squeeze(-1)
        pred = self._centre + self._half * torch.tanh(logit / 2)  # = centre + half (2p - 1)
        return {"pred": pred, "logit": logit, "z": z}

    def targets(self, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Binary targets and the rows that count (:func:`binary_targets`); used by the loss
        and by the ``dec`` pretrainer."""
        return binary_targets(label, self.config["zero_label"])

    def loss(self, outputs: Mapping[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        target, keep = self.targets(batch.label)
        keep = keep & batch.labelled
        if not bool(keep.any()):
            return outputs["logit"].sum() * 0.0
        return nn.functional.binary_cross_entropy_with_logits(outputs["logit"][keep], target[keep])
