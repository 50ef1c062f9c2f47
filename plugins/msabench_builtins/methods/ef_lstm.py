"""``ef-lstm``: early-fusion LSTM as in thuiar/MMSA (``models/singleTask/EF_LSTM.py``).

The modality features of each time step are concatenated (so the modalities must be aligned:
``requires_aligned``), normalised, and read by an LSTM; its last layer's final hidden state
goes through Dropout -> Linear(hidden, hidden) + ReLU -> Dropout -> Linear(hidden, 1). The
output is the prediction, with no sigmoid (as MMSA). L1 loss, Adam with weight decay, model
selection on the validation loss, early stop after 8 epochs.

``model.norm``: ``"time"`` (default) is MMSA's ``BatchNorm1d(seq_len)``, which treats each time
step as a channel (statistics per step over the batch and all features; the data's step count
is fixed when the model is built, and shorter batches are zero-padded to it); ``"feature"`` is
a BatchNorm per feature over the valid steps; ``"none"`` skips it. Unlike MMSA, the LSTM reads
only each sample's valid steps (``pack_padded_sequence``), so padding never reaches the output.
The LSTM's inter-layer dropout is ``model.dropout`` as in MMSA.

Any non-empty modality subset works (fewer features are concatenated).

Defaults per dataset: thuiar/MMSA ``src/MMSA/config/config_regression.json`` (commit
15f24e75ac3209bb0d670982bf03eb5ad575fa66), keys ``ef_lstm.commonParams.early_stop`` and
``ef_lstm.datasetParams.<mosi|mosei|sims|simsv2>``: ``hidden_dims``, ``num_layers``,
``dropout``, ``batch_size``, ``learning_rate``, ``weight_decay``; ``synthetic-mosi`` uses
MOSI's, ``chsims`` = ``sims``, ``chsims2`` = ``simsv2``. MMSA runs it on the aligned pickles
(``need_data_aligned``); CH-SIMS has no aligned setting, so on it the runner refuses the method.
``epochs = 100`` is an msabench cap (MMSA stops only early).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from msabench.api import Batch, ComponentMeta, Components, DataInfo, Method
from msabench.errors import ConfigError, DataError

from ..nn import lstm_final_hidden

from .tfn import MMSA_DATASETS

_MMSA = {
    "mosi": dict(hidden=128, layers=4, dropout=0.5, batch_size=32, lr=1e-3, wd=5e-3),
    "mosei": dict(hidden=256, layers=2, dropout=0.4, batch_size=128, lr=5e-3, wd=1e-4),
    "sims": dict(hidden=32, layers=3, dropout=0.5, batch_size=128, lr=5e-4, wd=1e-3),
    "simsv2": dict(hidden=128, layers=3, dropout=0.2, batch_size=32, lr=5e-4, wd=0.0),
}
NORMS = ("time", "feature", "none")


def _sections(p: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        "train": {"batch_size": p["batch_size"], "lr": p["lr"], "weight_decay": p["wd"],
                  "patience": 8},
        "model": {"hidden": p["hidden"], "num_layers": p["layers"], "dropout": p["dropout"]},
    }


class EFLSTM(Method):
    """Early fusion: per-step concatenation of aligned modalities -> LSTM -> MLP."""

    name = "ef-lstm"
    meta = ComponentMeta(
        summary="EF-LSTM early-fusion LSTM, MMSA defaults",
        paper="Early-fusion LSTM baseline (as benchmarked by MMSA; Williams et al., "
              "Recognizing Emotions in Video Using Multimodal DNN Feature Fusion, 2018)",
        url="https://github.com/thuiar/MMSA/blob/master/src/MMSA/models/singleTask/EF_LSTM.py",
        defaults_source=(
            "thuiar/MMSA src/MMSA/config/config_regression.json @15f24e75: "
            "ef_lstm.commonParams.early_stop (8) and ef_lstm.datasetParams.{mosi (also "
            "synthetic-mosi), mosei, sims -> chsims, simsv2 -> chsims2}: hidden_dims, "
            "num_layers, dropout, batch_size, learning_rate, weight_decay; norm 'time' = MMSA's "
            "BatchNorm1d(seq_len); epochs 100 is an msabench cap"),
    )
    defaults = {
        "train": {"epochs": 100, **_sections(_MMSA["mosi"])["train"], "select": "loss"},
        "model": {**_sections(_MMSA["mosi"])["model"], "norm": "time"},
        "pretrain": {},
    }
    dataset_defaults = {ours: _sections(_MMSA[theirs]) for ours, theirs in MMSA_DATASETS.items()}
    requires_aligned = True
    vectorizable = True  # not with model.norm = "feature" (vectorize_refusal)

    @classmethod
    def vectorize_refusal(cls, config: Mapping[str, Any]) -> str | None:
        if str(config["model"].get("norm")) == "feature":
            return ("ef-lstm with model.norm = 'feature' normalises a data-dependent set of "
                    "steps (boolean indexing), which torch.func.vmap cannot batch")
        return None

    def __init__(self, info: DataInfo, config: Mapping[str, Any], components: Components) -> None:
        super().__init__(info, config, components)
        cfg = self.config
        self.modalities = list(info.modalities)
        hidden, layers, dropout = int(cfg["hidden"]), int(cfg["num_layers"]), float(cfg["dropout"])
        norm = str(cfg["norm"])
        if norm not in NORMS:
            raise ConfigError(f"method ef-lstm: model.norm must be one of {', '.join(NORMS)}; "
                              f"got {norm!r}")
        if hidden < 1 or layers < 1 or not 0.0 <= dropout < 1.0:
            raise ConfigError(
                f"method ef-lstm: needs model.hidden >= 1, model.num_layers >= 1 and "
                f"model.dropout in [0, 1); got {hidden}, {layers}, {dropout}")
        lengths = {info.max_lengths[m] for m in self.modalities}
        if len(lengths) != 1:
            raise ConfigError(
                f"method ef-lstm concatenates the modalities step by step and needs one sequence "
                f"length; got {info.max_lengths} (choose an aligned setting)")
        self.steps = lengths.pop()
        in_size = sum(info.feature_dims[m] for m in self.modalities)
        self.norm_kind = norm
        if norm == "time":
            self.norm = nn.BatchNorm1d(self.steps)
        elif norm == "feature":
            self.norm = nn.BatchNorm1d(in_size)
        else:
            self.norm = nn.Identity()
        self.lstm = nn.LSTM(in_size, hidden, num_layers=layers, batch_first=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, 1)

    def _inputs(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        feats = [batch.features[m] for m in self.modalities]
        steps = {x.shape[1] for x in feats}
        if len(steps) != 1:
            raise DataError(
                f"method ef-lstm needs aligned modalities; this batch has step counts "
                f"{ {m: batch.features[m].shape[1] for m in self.modalities} }")
        x = torch.cat(feats, dim=-1)
        lengths = batch.lengths[self.modalities[0]]
        for m in self.modalities[1:]:
            lengths = torch.maximum(lengths, batch.lengths[m])
        return x, lengths

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        x, lengths = self._inputs(batch)
        if self.norm_kind == "time":
            t = x.shape[1]
            if t > self.steps:
                if int(lengths.max()) > self.steps:
                    raise DataError(
                        f"method ef-lstm (norm 'time') was built for {self.steps} steps but got "
                        f"a batch with {int(lengths.max())} valid steps; set data.max_length or "
                        f"model.norm='feature'")
                x, t = x[:, :self.steps], self.steps
            if t < self.steps:
                x = nn.functional.pad(x, (0, 0, 0, self.steps - t))
            x = self.norm(x)
        elif self.norm_kind == "feature":
            valid = torch.arange(x.shape[1], device=x.device).unsqueeze(0) < lengths.unsqueeze(1)
            normed = torch.zeros_like(x)
            normed[valid] = self.norm(x[valid])
            x = normed
        # packed LSTM; an unrolled one inside a vectorised run's stacked forward (builtins nn.py)
        h = self.drop(lstm_final_hidden(self.lstm, x, lengths))
        h = self.drop(torch.relu(self.linear(h)))
        return {"pred": self.out(h).squeeze(-1)}
