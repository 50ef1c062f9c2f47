"""``concat``: the shallow-fusion (SF) fusion: masked mean over time per modality, concatenated."""

from __future__ import annotations

from typing import Mapping

import torch

from msabench.api import ComponentMeta, Fusion, masked_mean


class ConcatFusion(Fusion):
    """Masked mean-pool each modality over its valid steps, then concatenate in modality order.

    Works on aligned and unaligned inputs (each modality is pooled with its own mask).
    ``output_dim`` is the sum of the input dimensions.
    """

    name = "concat"
    meta = ComponentMeta(
        summary="masked mean-pool each modality and concatenate (shallow/late fusion)",
        defaults_source="no hyperparameters")
    defaults: dict = {}

    def __init__(self, input_dims: Mapping[str, int], **params) -> None:
        super().__init__(input_dims, **params)
        self.order = list(input_dims)
        self.output_dim = sum(self.input_dims.values())

    def forward(self, features: Mapping[str, torch.Tensor],
                masks: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([masked_mean(features[m], masks[m]) for m in self.order], dim=-1)
