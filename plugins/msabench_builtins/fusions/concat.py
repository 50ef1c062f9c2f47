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
    supports_absent = True

    def __init__(self, input_dims: Mapping[str, int], **params) -> None:
        super().__init__(input_dims, **params)
        self.order = list(input_dims)
        self.output_dim = sum(self.input_dims.values())
        starts = [0]
        for m in self.order:
            starts.append(starts[-1] + int(self.input_dims[m]))
        #: where each modality's part lies in the output (sf fills a dropped part)
        self.slices = {m: slice(a, b) for m, a, b in zip(self.order, starts, starts[1:])}

    def forward(self, features: Mapping[str, torch.Tensor],
                masks: Mapping[str, torch.Tensor],
                absent: frozenset[str] = frozenset()) -> torch.Tensor:
        """An ``absent`` modality's part is zero (never computed from its features)."""
        present = next(m for m in self.order if m not in absent)
        zeros = features[present].new_zeros
        return torch.cat([zeros(features[present].shape[0], self.input_dims[m]) if m in absent
                          else masked_mean(features[m], masks[m]) for m in self.order], dim=-1)
