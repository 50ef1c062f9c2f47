"""``tfn``: Tensor Fusion Network (Zadeh et al., EMNLP 2017) as in thuiar/MMSA.

The ``tfn`` fusion (``fusions/tfn.py``: unimodal subnets, outer product of ``[1; h_m]``), then
MMSA's post-fusion network: Dropout -> Linear + ReLU -> Linear + ReLU -> Linear(1), and a
sigmoid scaled to the dataset's label range, ``lo + (hi - lo) * sigmoid(y)`` (MMSA: ``* 6 - 3``,
which it also uses on CH-SIMS; here CH-SIMS gets [-1, 1]). L1 loss; Adam without weight decay
(MMSA's TFN trainer); model selection on the validation loss; early stop after 8 epochs.

Any non-empty modality subset works (the outer product runs over the modalities present).

Defaults per dataset: thuiar/MMSA ``src/MMSA/config/config_regression.json`` (commit
15f24e75ac3209bb0d670982bf03eb5ad575fa66), keys ``tfn.commonParams.early_stop`` and
``tfn.datasetParams.<mosi|mosei|sims|simsv2>``: ``hidden_dims`` (text, audio, video),
``text_out``, ``post_fusion_dim``, ``dropouts`` (audio, video, text, post-fusion),
``batch_size``, ``learning_rate``. ``synthetic-mosi`` uses the MOSI values; MMSA ``sims`` is
``chsims`` and ``simsv2`` is ``chsims2``. The text dropout is MMSA's effective 0.0 (see
``fusions/tfn.py``). MMSA trains until early stopping with no epoch cap; ``epochs = 100`` is a
cap chosen here.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from msabench.api import ComponentMeta, Components, ComposedMethod, DataInfo
from msabench.errors import ConfigError

from ..nn import FastDropout, fused_adam

#: MMSA config_regression.json tfn.datasetParams, re-keyed by modality
#: (hidden_dims is text/audio/video; dropouts is audio/video/text/post-fusion)
_MMSA = {
    "mosi": dict(hidden=(128, 32, 128), text_out=32, post=64, drop=(0.3, 0.3, 0.3, 0.5),
                 batch_size=32, lr=1e-3),
    "mosei": dict(hidden=(128, 16, 128), text_out=128, post=16, drop=(0.4, 0.4, 0.4, 0.4),
                  batch_size=128, lr=5e-3),
    "sims": dict(hidden=(128, 32, 128), text_out=256, post=32, drop=(0.4, 0.4, 0.4, 0.4),
                 batch_size=32, lr=5e-4),
    "simsv2": dict(hidden=(128, 32, 128), text_out=128, post=32, drop=(0.3, 0.3, 0.3, 0.5),
                   batch_size=128, lr=2e-3),
}
#: msabench dataset name -> MMSA dataset key
MMSA_DATASETS = {"mosi": "mosi", "synthetic-mosi": "mosi", "mosei": "mosei",
                 "chsims": "sims", "chsims2": "simsv2"}
#: the largest post-fusion weight matrix accepted (entries), before allocating it
MAX_POST_FUSION_WEIGHTS = 500_000_000


def _sections(p: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    t, a, v = p["hidden"]
    da, dv, _dt, dp = p["drop"]
    return {
        "train": {"batch_size": p["batch_size"], "lr": p["lr"], "weight_decay": 0.0,
                  "patience": 8},
        "model": {"hidden": {"text": t, "audio": a, "vision": v}, "text_out": p["text_out"],
                  # text: MMSA's TextSubNet zeroes its dropout for a one-layer LSTM
                  "dropout": {"text": 0.0, "audio": da, "vision": dv},
                  "post_fusion_dim": p["post"], "post_fusion_dropout": dp},
    }


def scale_to_range(y: torch.Tensor, label_range: tuple[float, float]) -> torch.Tensor:
    """``lo + (hi - lo) * sigmoid(y)``: MMSA's ``sigmoid * 6 - 3`` for [-3, 3]."""
    lo, hi = label_range
    return torch.sigmoid(y) * (hi - lo) + lo


class TFN(ComposedMethod):
    """TFN: tensor fusion of unimodal subnets, post-fusion MLP, sigmoid scaled to the labels."""

    name = "tfn"
    vectorizable = True
    meta = ComponentMeta(
        summary="TFN (Zadeh et al. 2017), MMSA defaults",
        paper="Zadeh et al., Tensor Fusion Network for Multimodal Sentiment Analysis, EMNLP 2017",
        citation="@inproceedings{zadeh2017tensor, title={Tensor Fusion Network for Multimodal "
                 "Sentiment Analysis}, author={Zadeh, Amir and Chen, Minghai and Poria, Soujanya "
                 "and Cambria, Erik and Morency, Louis-Philippe}, booktitle={EMNLP}, year={2017}}",
        url="https://github.com/thuiar/MMSA/blob/master/src/MMSA/models/singleTask/TFN.py",
        defaults_source=(
            "thuiar/MMSA src/MMSA/config/config_regression.json @15f24e75: "
            "tfn.commonParams.early_stop (8) and tfn.datasetParams.{mosi (also synthetic-mosi),"
            " mosei, sims -> chsims, simsv2 -> chsims2}: hidden_dims, text_out, "
            "post_fusion_dim, dropouts, batch_size, learning_rate; no weight decay "
            "(trains/singleTask/TFN.py); text dropout 0.0 (MMSA TextSubNet's effective value);"
            " epochs 100 is an msabench cap (MMSA stops only early)"),
    )
    defaults = {
        "train": {"epochs": 100, **_sections(_MMSA["mosi"])["train"], "select": "loss"},
        "model": _sections(_MMSA["mosi"])["model"],
        "pretrain": {},
    }
    dataset_defaults = {ours: _sections(_MMSA[theirs]) for ours, theirs in MMSA_DATASETS.items()}

    def __init__(self, info: DataInfo, config: Mapping[str, Any], components: Components) -> None:
        super().__init__(info, config, components)
        cfg = self.config
        post = int(cfg["post_fusion_dim"])
        width = self.fusion.output_dim
        if post < 1:
            raise ConfigError(f"method tfn: model.post_fusion_dim must be >= 1, got {post}")
        if width * post > MAX_POST_FUSION_WEIGHTS:
            sizes = " x ".join(f"{m} {s}" for m, s in self.fusion.sizes.items())
            raise ConfigError(
                f"method tfn: the fused tensor has {width:,} entries ({sizes}), so the first "
                f"post-fusion layer would need {width * post:,} weights; lower model.hidden.* / "
                f"model.text_out or model.post_fusion_dim")
        # the fused tensor is large (140,481 entries per sample on MOSI): dropout and Adam are
        # the CPU-fast equivalents of nn.Dropout and foreach Adam (builtins nn.py)
        self.post_fusion = nn.Sequential(
            FastDropout(float(cfg["post_fusion_dropout"])),
            nn.Linear(width, post), nn.ReLU(),
            nn.Linear(post, post), nn.ReLU(),
            nn.Linear(post, 1))

    def fusion_spec(self) -> tuple[str, dict[str, Any]]:
        cfg = self.config
        return "tfn", dict(hidden=dict(cfg["hidden"]), text_out=int(cfg["text_out"]),
                           dropout=dict(cfg["dropout"]))

    def head(self, fused: torch.Tensor) -> dict[str, torch.Tensor]:
        y = self.post_fusion(fused).squeeze(-1)
        return {"pred": scale_to_range(y, self.info.label_range)}

    def configure_optimizer(self, train: Mapping[str, Any]) -> torch.optim.Optimizer:
        """Adam as in MMSA, fused (one kernel) where torch supports it: the 9M-weight
        post-fusion layer made the foreach update a fifth of a CPU training step."""
        return fused_adam(self.trainable_parameters(),
                          lr=float(train["lr"]), weight_decay=float(train.get("weight_decay", 0.0)))
