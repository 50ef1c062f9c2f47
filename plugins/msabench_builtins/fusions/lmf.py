"""``lmf``: Low-rank Multimodal Fusion (Liu et al., ACL 2018), following thuiar/MMSA's LMF.

Same per-modality subnetworks as ``tfn`` (``fusions/tfn.py``), except that an LSTM modality's
output size defaults to ``hidden[m] // 2`` as in MMSA (``text_out = text_hidden // 2``). Each
``[1; h_m]`` is multiplied by ``rank`` modality-specific factors ``W_m`` of shape
(rank, out_m + 1, output_dim); the per-rank projections are multiplied elementwise across the
modalities present and combined with learned ``fusion_weights`` (1, rank) plus
``fusion_bias`` (1, output_dim):

    y = sum_r w_r * prod_m ([1; h_m] @ W_m[r]) + b

which equals a rank-``rank`` factorisation of the TFN weight tensor applied to the TFN outer
product, without building it. ``output_dim`` is MMSA's output size (1 for regression, the
default: the ``lmf`` method uses this value directly as its prediction). Factors and
``fusion_weights`` are initialised with ``xavier_normal_``, the bias with 0, as in MMSA.
MMSA also defines a post-fusion dropout that its forward never uses; it is left out.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from msabench.api import ComponentMeta, Fusion

from .tfn import FusionParamError, build_subnets, encode_present, merge_tables, with_one


class LowRankFusion(Fusion):
    """LMF: modality-specific rank-r factors over [1; h_m], weighted sum over the rank."""

    name = "lmf"
    meta = ComponentMeta(
        summary="LMF low-rank multimodal fusion with modality-specific factors",
        paper="Liu et al., Efficient Low-rank Multimodal Fusion with Modality-Specific "
              "Factors, ACL 2018",
        url="https://github.com/thuiar/MMSA/blob/master/src/MMSA/models/singleTask/LMF.py",
        defaults_source="thuiar/MMSA src/MMSA/config/config_regression.json, lmf.datasetParams"
                        ".mosi: hidden_dims [t 128, a 16, v 128], rank 3, dropouts [a 0.3, "
                        "v 0.3, t 0.3 -> 0.0 effective in TextSubNet]; text_out = hidden // 2 "
                        "and output_dim 1 from models/singleTask/LMF.py")
    defaults = {
        "hidden": {"text": 128, "audio": 16, "vision": 128},
        "text_out": None,          # None: hidden[m] // 2 for LSTM modalities (MMSA)
        "dropout": {"text": 0.0, "audio": 0.3, "vision": 0.3},
        "lstm_modalities": ["text"],
        "rank": 3,
        "output_dim": 1,
    }

    def __init__(self, input_dims: Mapping[str, int], **params: Any) -> None:
        super().__init__(input_dims, **params)
        self.params = merge_tables(self.defaults, self.params)
        self.order = list(self.input_dims)
        rank, out = int(self.params["rank"]), int(self.params["output_dim"])
        if rank < 1 or out < 1:
            raise FusionParamError(
                f"fusion lmf: rank and output_dim must be >= 1, got rank={rank}, "
                f"output_dim={out}")
        text_out = self.params["text_out"]
        hidden = self.params["hidden"]
        per_lstm = None
        if text_out is None and isinstance(hidden, Mapping):
            per_lstm = {m: max(1, int(hidden[m]) // 2) for m in self.order if m in hidden}
        elif text_out is not None:
            per_lstm = {m: int(text_out) for m in self.order}
        self.subnets = build_subnets(self.name, self.input_dims, self.params, per_lstm)
        self.rank = rank
        self.output_dim = out
        self.factors = nn.ParameterDict({
            m: nn.Parameter(torch.empty(rank, self.subnets[m].out_dim + 1, out))
            for m in self.order})
        self.fusion_weights = nn.Parameter(torch.empty(1, rank))
        self.fusion_bias = nn.Parameter(torch.zeros(1, out))
        for factor in self.factors.values():
            nn.init.xavier_normal_(factor)
        nn.init.xavier_normal_(self.fusion_weights)

    supports_absent = True

    def encode(self, features: Mapping[str, torch.Tensor],
               masks: Mapping[str, torch.Tensor],
               absent: frozenset[str] = frozenset()) -> dict[str, torch.Tensor]:
        """The unimodal vectors ``h_m`` (before the 1 is appended): :func:`encode_present`."""
        return encode_present(self.subnets, self.order, features, masks, absent)

    def fuse(self, hidden: Mapping[str, torch.Tensor]) -> torch.Tensor:
        product = None
        for m in self.order:
            z = torch.matmul(with_one(hidden[m]), self.factors[m])   # (rank, B, out)
            product = z if product is None else product * z
        fused = torch.matmul(self.fusion_weights, product.permute(1, 0, 2))  # (B, 1, out)
        return fused.squeeze(1) + self.fusion_bias

    def forward(self, features: Mapping[str, torch.Tensor],
                masks: Mapping[str, torch.Tensor],
                absent: frozenset[str] = frozenset()) -> torch.Tensor:
        return self.fuse(self.encode(features, masks, absent))
