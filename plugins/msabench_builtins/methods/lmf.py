"""``lmf``: Low-rank Multimodal Fusion (Liu et al., ACL 2018) as in thuiar/MMSA.

The ``lmf`` fusion (``fusions/lmf.py``) with ``output_dim = 1`` *is* the model: its output is
the prediction, with no sigmoid or rescaling (MMSA's LMF returns the raw low-rank fusion
output for regression). L1 loss; model selection on the validation loss; early stop after 8.

Optimiser as MMSA's LMF trainer (``trains/singleTask/LMF.py``): Adam with two parameter groups,
the modality factors at ``model.factor_lr`` and the subnetworks at ``train.lr``, both with
``train.weight_decay``. MMSA's groups (``parameters()[:3]`` and ``[5:]``) leave out
``fusion_weights`` and ``fusion_bias``, so they stay at their initial values; with
``model.train_fusion_weights = false`` (the default) they are frozen here likewise
(``requires_grad = False``, so the trainable parameter count is rank + 1 lower than the total);
``true`` trains them at ``train.lr``.

Any non-empty modality subset works (the elementwise product runs over the modalities present).

Defaults per dataset: thuiar/MMSA ``src/MMSA/config/config_regression.json`` (commit
15f24e75ac3209bb0d670982bf03eb5ad575fa66), keys ``lmf.commonParams.early_stop`` and
``lmf.datasetParams.<mosi|mosei|sims|simsv2>``: ``hidden_dims`` (text, audio, video),
``dropouts`` (audio, video, text, post-fusion; the last is unused by MMSA's forward), ``rank``,
``batch_size``, ``learning_rate``, ``factor_lr``, ``weight_decay``. ``synthetic-mosi`` uses
MOSI's; ``chsims`` = MMSA ``sims``, ``chsims2`` = ``simsv2``. Text dropout is MMSA's effective
0.0; ``epochs = 100`` is an msabench cap (MMSA stops only early).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from msabench.api import ComponentMeta, Components, ComposedMethod, DataInfo

from .tfn import MMSA_DATASETS

#: MMSA config_regression.json lmf.datasetParams (hidden: text/audio/video; drop: audio/video/text)
_MMSA = {
    "mosi": dict(hidden=(128, 16, 128), drop=(0.3, 0.3, 0.3), rank=3, batch_size=64, lr=1e-3,
                 factor_lr=1e-3, wd=5e-3),
    "mosei": dict(hidden=(128, 16, 128), drop=(0.2, 0.2, 0.2), rank=4, batch_size=32, lr=1e-3,
                  factor_lr=1e-3, wd=1e-3),
    "sims": dict(hidden=(64, 16, 64), drop=(0.2, 0.2, 0.2), rank=4, batch_size=64, lr=2e-3,
                 factor_lr=5e-4, wd=5e-3),
    "simsv2": dict(hidden=(64, 32, 64), drop=(0.3, 0.3, 0.3), rank=4, batch_size=32, lr=2e-3,
                   factor_lr=5e-4, wd=1e-4),
}


def _sections(p: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    t, a, v = p["hidden"]
    da, dv, _dt = p["drop"]
    return {
        "train": {"batch_size": p["batch_size"], "lr": p["lr"], "weight_decay": p["wd"],
                  "patience": 8},
        "model": {"hidden": {"text": t, "audio": a, "vision": v},
                  "dropout": {"text": 0.0, "audio": da, "vision": dv},
                  "rank": p["rank"], "factor_lr": p["factor_lr"]},
    }


class LMF(ComposedMethod):
    """LMF: unimodal subnets, modality-specific low-rank factors, raw scalar output."""

    name = "lmf"
    vectorizable = True
    meta = ComponentMeta(
        summary="LMF (Liu et al. 2018), MMSA defaults",
        paper="Liu et al., Efficient Low-rank Multimodal Fusion with Modality-Specific "
              "Factors, ACL 2018",
        citation="@inproceedings{liu2018efficient, title={Efficient Low-rank Multimodal Fusion "
                 "With Modality-Specific Factors}, author={Liu, Zhun and Shen, Ying and "
                 "Lakshminarasimhan, Varun Bharadhwaj and Liang, Paul Pu and Zadeh, Amir and "
                 "Morency, Louis-Philippe}, booktitle={ACL}, year={2018}}",
        url="https://github.com/thuiar/MMSA/blob/master/src/MMSA/models/singleTask/LMF.py",
        defaults_source=(
            "thuiar/MMSA src/MMSA/config/config_regression.json @15f24e75: "
            "lmf.commonParams.early_stop (8) and lmf.datasetParams.{mosi (also synthetic-mosi),"
            " mosei, sims -> chsims, simsv2 -> chsims2}: hidden_dims, dropouts, rank, "
            "batch_size, learning_rate, factor_lr, weight_decay; optimiser groups and frozen "
            "fusion_weights/bias from trains/singleTask/LMF.py; text dropout 0.0 (MMSA "
            "TextSubNet's effective value); epochs 100 is an msabench cap"),
    )
    defaults = {
        "train": {"epochs": 100, **_sections(_MMSA["mosi"])["train"], "select": "loss"},
        "model": {**_sections(_MMSA["mosi"])["model"], "train_fusion_weights": False},
        "pretrain": {},
    }
    dataset_defaults = {ours: _sections(_MMSA[theirs]) for ours, theirs in MMSA_DATASETS.items()}

    def __init__(self, info: DataInfo, config: Mapping[str, Any], components: Components) -> None:
        super().__init__(info, config, components)
        trainable = bool(self.config["train_fusion_weights"])
        self.fusion.fusion_weights.requires_grad_(trainable)
        self.fusion.fusion_bias.requires_grad_(trainable)

    def fusion_spec(self) -> tuple[str, dict[str, Any]]:
        cfg = self.config
        return "lmf", dict(hidden=dict(cfg["hidden"]), dropout=dict(cfg["dropout"]),
                           rank=int(cfg["rank"]), output_dim=1)

    def head(self, fused: torch.Tensor) -> dict[str, torch.Tensor]:
        """The fusion's output is the prediction (no head)."""
        return {"pred": fused.squeeze(-1)}

    def configure_optimizer(self, train: Mapping[str, Any]) -> torch.optim.Optimizer:
        factors = list(self.fusion.factors.values())
        factor_ids = {id(p) for p in factors}
        others = [p for p in self.parameters() if p.requires_grad and id(p) not in factor_ids]
        return torch.optim.Adam(
            [{"params": factors, "lr": float(self.config["factor_lr"])},
             {"params": others, "lr": float(train["lr"])}],
            weight_decay=float(train.get("weight_decay", 0.0)), foreach=True)
