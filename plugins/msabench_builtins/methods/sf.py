"""``sf``: the shallow-fusion baseline.

Pooled features per modality, a fusion (``concat`` by default; any registered fusion name works,
e.g. ``--set model.fusion=tfn``), BatchNorm on the fused vector, then an MLP regressor trained
with L1 loss (the MMSA regression recipe).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from msabench.api import ComponentMeta, Components, ComposedMethod, DataInfo

#: fusions checked to work in a vectorised run's stacked forward (tests/test_vectorize.py)
VECTORIZABLE_FUSIONS = ("concat", "tfn", "lmf")


class SF(ComposedMethod):
    """Shallow (late) fusion: pooled unimodal features -> fusion -> MLP -> sentiment score."""

    name = "sf"
    vectorizable = True  # with the fusions in VECTORIZABLE_FUSIONS (vectorize_refusal)
    meta = ComponentMeta(
        summary="SF baseline: pooled features per modality, fusion, MLP regressor",
        defaults_source="msabench choice: L1 loss, Adam 1e-3, batch 32, early stop 8 as in "
                        "thuiar/MMSA config_regression.json; MLP width 128, dropout 0.2",
    )
    defaults = {
        "train": {"epochs": 30, "batch_size": 32, "lr": 1e-3, "weight_decay": 0.0,
                  "patience": 8, "select": "loss"},
        "model": {"fusion": "concat", "fusion_params": {}, "hidden": 128, "layers": 2,
                  "dropout": 0.2, "input_norm": True},
        "pretrain": {},
    }

    def __init__(self, info: DataInfo, config: Mapping[str, Any], components: Components) -> None:
        super().__init__(info, config, components)  # modalities and model.fusion
        cfg = self.config
        width = self.fusion.output_dim
        self.norm = nn.BatchNorm1d(width) if cfg["input_norm"] else nn.Identity()
        layers: list[nn.Module] = []
        for _ in range(int(cfg["layers"])):
            layers += [nn.Linear(width, int(cfg["hidden"])), nn.ReLU(), nn.Dropout(float(cfg["dropout"]))]
            width = int(cfg["hidden"])
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def head(self, fused: torch.Tensor) -> dict[str, torch.Tensor]:
        """With modalities :attr:`absent` (``model.without``) and the concat fusion, each
        absent part is its training mean (the input BatchNorm's running mean), which the
        BatchNorm maps to its bias: the modality contributes its average, nothing that
        depends on its inputs (a zero part would be an out-of-distribution value)."""
        slices = getattr(self.fusion, "slices", None)
        if self.absent and slices and isinstance(self.norm, nn.BatchNorm1d) \
                and self.norm.running_mean is not None:
            fused = fused.clone()
            for m in self.absent:
                fused[:, slices[m]] = self.norm.running_mean[slices[m]].to(fused.dtype)
        return {"pred": self.mlp(self.norm(fused)).squeeze(-1), "fused": fused}

    @classmethod
    def vectorize_refusal(cls, config: Mapping[str, Any]) -> str | None:
        fusion = str(config["model"].get("fusion"))
        if fusion not in VECTORIZABLE_FUSIONS:
            return (f"sf with fusion {fusion!r}: only {', '.join(VECTORIZABLE_FUSIONS)} are "
                    "checked to run under torch.func.vmap")
        return None
