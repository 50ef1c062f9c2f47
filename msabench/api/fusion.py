"""The Fusion contract: per-modality features -> one joint representation per sample."""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import torch
from torch import nn

from .meta import ComponentMeta


class Fusion(nn.Module):
    """Base class of fusion plugins.

    Constructed with ``input_dims`` (modality -> feature size D_m) and keyword hyperparameters
    (overriding ``defaults``); must set ``self.output_dim``. :meth:`forward` receives
    ``features[m]`` of shape (B, T_m, D_m) and boolean ``masks[m]`` of shape (B, T_m) (True at
    valid steps) and returns (B, output_dim). Fusions that need aligned inputs set
    ``requires_aligned = True``.

    A fusion that can leave modalities out sets ``supports_absent = True`` and accepts
    ``forward(features, masks, absent=frozenset({...}))`` (only passed when non-empty): the
    output keeps its shape and must not depend on an absent modality's features or mask
    (concat: its part is zero; tfn/lmf: its vector is the constant-1 part alone; mult: the
    crossmodal blocks that read it are skipped).
    """

    name: ClassVar[str]
    meta: ClassVar[ComponentMeta]
    defaults: ClassVar[dict[str, Any]] = {}
    requires_aligned: ClassVar[bool] = False
    supports_absent: ClassVar[bool] = False

    output_dim: int

    def __init__(self, input_dims: Mapping[str, int], **params: Any) -> None:
        super().__init__()
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise ValueError(
                f"fusion {self.name}: unknown parameter(s) {', '.join(sorted(unknown))}; "
                f"parameters: {', '.join(sorted(self.defaults)) or '(none)'}")
        self.input_dims = dict(input_dims)
        self.params = {**self.defaults, **params}

    def forward(self, features: Mapping[str, torch.Tensor],
                masks: Mapping[str, torch.Tensor]) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over time of (B, T, D) ``x`` counting only steps where ``mask`` (B, T) is True."""
    weights = mask.to(x.dtype)
    summed = torch.bmm(weights.unsqueeze(1), x).squeeze(1)  # (B, D) without a (B, T, D) temp
    return summed / weights.sum(1, keepdim=True).clamp_min(1.0)
