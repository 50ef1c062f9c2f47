"""The modality correlation evaluator (MCE) of CorMulT: network, distances, negatives, loss.

Authors' code: YAMY1234/CorMulT (cited below as ``file:function``). The pretrainer that trains
it is :mod:`.mce`; the method that uses it frozen is ``methods/cormult.py``.

Network [``modality_correlation/correlation_models.py:CorrelationModel``]: per modality
``Linear(d_m -> d_model)``; one shared sinusoidal positional encoding with dropout
(``PositionalEncoding``, max_len 5000, dropout 0.1); per modality an independent
``nn.TransformerEncoder`` of ``num_layers`` PyTorch post-LN layers (``d_model`` 128, 4 heads,
FFN 256, ReLU, dropout 0.1; the code builds one layer and ``nn.TransformerEncoder`` deep-copies
it, so the three encoders share no weights); ``Linear(d_model -> out_dim)`` (64) per modality.
A modality's vector is the time mean of its projections [``correlation_loss.py:TripleLoss``,
``src/models.py:MULTModel.forward``]. msabench choice: padded steps are masked in attention
and left out of the mean (the code zero-pads and averages over the padded length).

Distances (``distance``; the paper, sec. 4.3, compares five): ``cosine`` ``1 - cos(a, b)``
(the code's only one, default), ``euclidean`` ``||a - b||_2``, ``manhattan`` ``||a - b||_1``,
``chebyshev`` ``max_i |a_i - b_i|``, ``mahalanobis`` ``sqrt((a - b) C^-1 (a - b)^T)`` with
``C`` the covariance of the training vectors of every modality pooled (see :mod:`.mce`).
Correlation (:func:`correlation`): ``Cor = cos(a, b) = 1 - d`` for cosine (range [-1, 1]);
for the other distances, which the paper does not turn into a coefficient, msabench uses
``Cor = (1 - d) / (1 + d)``: 1 at d = 0, 0 at d = 1, towards -1 as d grows, i.e. the same
range (-1, 1] as the cosine.

Negatives [paper sec. 4.2; ``correlation_dataset.py:generate_negative_sample``], drawn per
sample (codes 0/1/2):

- A: one modality chosen uniformly is replaced by the same modality of another sample. The
  code takes it from a random sample of the dataset; the paper says "from another randomly
  selected data sample in the same batch", which is what msabench does (partner ``(i + k) mod
  B`` with ``k`` uniform in 1..B-1, never the sample itself; the swapped modality keeps the
  partner's length).
- B: every modality shifted by one step, ``x'[t] = x[t + 1]`` with the last (valid) step set to
  zero [``shift_sequence``]; a length-1 sequence is left unchanged, as the code does -- so on
  utterance-level data (every sequence of length 1) B yields the positive itself (degenerate).
- C: Gaussian noise ``N(0, noise_std^2)`` added to every valid step of the non-text modalities,
  and one valid text step (chosen uniformly) replaced by ``N(0, 1) * noise_std``; ``noise_std``
  0.1 [``main_correlation.py``: ``args.noise_std = 0.1``].
- D (the default): each sample draws one of A/B/C uniformly (the code's net effect: it picks
  A/B/C uniformly, or "D" with probability 0.25, which again picks A/B/C uniformly).

Loss [paper eq. 8; ``correlation_loss.py:TripleLoss``, ``correlation_train.py``]:
``TL(anchor, pos, neg) = mean_batch max(0, d(anchor, pos) - d(anchor, neg) + margin)``,
margin 0.2, summed over the ordered modality pairs ``(X, Y)``, ``X != Y`` -- anchor X of the
positive sample, positive and negative Y -- and divided by the number of modalities (six
pairs / 3 for text/audio/vision).
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import nn

DISTANCES = ("cosine", "euclidean", "manhattan", "chebyshev", "mahalanobis")
STRATEGIES = ("A", "B", "C", "D")
CODES = {"A": 0, "B": 1, "C": 2}
_EPS = 1e-12


# ------------------------------------------------------------------ distances
def distance(a: torch.Tensor, b: torch.Tensor, kind: str = "cosine",
             inv_cov: torch.Tensor | None = None) -> torch.Tensor:
    """(B, D) x (B, D) -> (B,) distance of each row pair (see the module docstring)."""
    if kind == "cosine":
        return 1.0 - nn.functional.cosine_similarity(a, b, dim=-1)
    diff = a - b
    if kind == "euclidean":  # clamped so that the gradient at a == b is finite
        return diff.pow(2).sum(-1).clamp_min(_EPS).sqrt()
    if kind == "manhattan":
        return diff.abs().sum(-1)
    if kind == "chebyshev":
        return diff.abs().amax(-1)
    if kind == "mahalanobis":
        if inv_cov is None:
            raise ValueError("mahalanobis distance needs the inverse covariance (inv_cov)")
        quad = torch.einsum("bi,ij,bj->b", diff, inv_cov.to(diff.dtype), diff)
        return quad.clamp_min(_EPS).sqrt()
    raise ValueError(f"unknown distance {kind!r}; choose one of {', '.join(DISTANCES)}")


def correlation(a: torch.Tensor, b: torch.Tensor, kind: str = "cosine",
                inv_cov: torch.Tensor | None = None) -> torch.Tensor:
    """(B,) correlation in [-1, 1]: the cosine itself, else ``(1 - d) / (1 + d)``."""
    if kind == "cosine":
        return nn.functional.cosine_similarity(a, b, dim=-1)
    d = distance(a, b, kind, inv_cov)
    return (1.0 - d) / (1.0 + d)


def inverse_covariance(vectors: torch.Tensor, ridge: float = 1e-4) -> torch.Tensor:
    """``(C + ridge * mean(diag C) * I)^-1`` of (N, D) vectors, computed in float64."""
    x = vectors.double()
    x = x - x.mean(0, keepdim=True)
    cov = x.T @ x / max(x.shape[0] - 1, 1)
    scale = float(torch.diagonal(cov).mean()) or 1.0
    eye = torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
    return torch.linalg.inv(cov + ridge * scale * eye).to(vectors.dtype)


def triplet_loss(anchor: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, margin: float = 0.2,
                 kind: str = "cosine", inv_cov: torch.Tensor | None = None) -> torch.Tensor:
    """``mean_batch max(0, d(anchor, pos) - d(anchor, neg) + margin)`` on (B, D) vectors."""
    d_pos = distance(anchor, pos, kind, inv_cov)
    d_neg = distance(anchor, neg, kind, inv_cov)
    return torch.clamp(d_pos - d_neg + margin, min=0.0).mean()


def mce_loss(pos: Mapping[str, torch.Tensor], neg: Mapping[str, torch.Tensor], margin: float,
             kind: str = "cosine", inv_cov: torch.Tensor | None = None,
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Sum of ``TL(pos[X], pos[Y], neg[Y])`` over ordered pairs X != Y, divided by the number
    of modalities (eq. 8); also each pair's term, keyed ``"X<-Y"``."""
    mods = list(pos)
    terms = {f"{x}<-{y}": triplet_loss(pos[x], pos[y], neg[y], margin, kind, inv_cov)
             for x in mods for y in mods if x != y}
    total = sum(terms.values()) / max(len(mods), 1)
    return total, terms


# ------------------------------------------------------------------ negatives
def shift_one(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Strategy B on (B, T, D): ``x'[t] = x[t + 1]``, last valid step zero; length-1 rows
    unchanged [``correlation_dataset.py:shift_sequence``]."""
    out = torch.zeros_like(x)
    out[:, :-1] = x[:, 1:]
    steps = torch.arange(x.shape[1], device=x.device)
    keep = steps.unsqueeze(0) < (lengths - 1).unsqueeze(1)
    out = out * keep.unsqueeze(-1).to(x.dtype)
    single = lengths <= 1
    if bool(single.any()):
        out[single] = x[single]
    return out


def draw_strategies(strategy: str, n: int, generator: torch.Generator,
                    allow_b: bool = True) -> torch.Tensor:
    """(n,) codes 0/1/2 (A/B/C): all the same for A/B/C; uniform per sample for D (over A and
    C only when ``allow_b`` is False)."""
    if strategy in CODES:
        return torch.full((n,), CODES[strategy], dtype=torch.long)
    if strategy != "D":
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    pool = torch.tensor([0, 1, 2] if allow_b else [0, 2])
    return pool[torch.randint(len(pool), (n,), generator=generator)]


def make_negatives(features: Mapping[str, torch.Tensor], lengths: Mapping[str, torch.Tensor],
                   codes: torch.Tensor, generator: torch.Generator, noise_std: float = 0.1,
                   ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor],
                              dict[str, torch.Tensor]]:
    """Negative features and lengths for a batch, row ``i`` built by strategy ``codes[i]``.

    Returns ``(features, lengths, info)``; ``info["swapped"]`` (B,) is the index (in modality
    order) of the modality an A row took from ``info["partner"]``, -1 elsewhere. With one row
    there is no partner: A rows fall back to C.
    """
    mods = list(features)
    b = len(codes)
    device = next(iter(features.values())).device
    codes = codes.clone()
    if b < 2:
        codes[codes == 0] = 2
    feats = {m: x.clone() for m, x in features.items()}
    lens = {m: x.clone() for m, x in lengths.items()}
    swapped = torch.full((b,), -1, dtype=torch.long)
    partner = torch.arange(b)
    rows_a = torch.nonzero(codes == 0).flatten()
    if len(rows_a):
        which = torch.randint(len(mods), (len(rows_a),), generator=generator)
        offset = torch.randint(1, b, (len(rows_a),), generator=generator)
        swapped[rows_a] = which
        partner[rows_a] = (rows_a + offset) % b
        for k, m in enumerate(mods):
            rows = rows_a[which == k]
            if len(rows):
                src = partner[rows]
                feats[m][rows.to(device)] = features[m][src.to(device)]
                lens[m][rows.to(lengths[m].device)] = lengths[m][src.to(lengths[m].device)]
    rows_b = (codes == 1).to(device)
    if bool(rows_b.any()):
        for m in mods:
            shifted = shift_one(features[m], lengths[m].to(device))
            feats[m] = torch.where(rows_b.view(-1, 1, 1), shifted, feats[m])
    rows_c = (codes == 2)
    if bool(rows_c.any()):
        for m in mods:
            x = features[m]
            steps = torch.arange(x.shape[1])
            valid = (steps.unsqueeze(0) < lengths[m].cpu().unsqueeze(1))
            if m == "text":
                pick = (torch.rand(b, generator=generator) * lengths[m].cpu().float()).long()
                pick = torch.minimum(pick, lengths[m].cpu() - 1)
                at = (steps.unsqueeze(0) == pick.unsqueeze(1)) & rows_c.unsqueeze(1)
                repl = torch.randn(x.shape, generator=generator) * noise_std
                feats[m] = torch.where(at.unsqueeze(-1).to(device), repl.to(x.dtype).to(device),
                                       feats[m])
            else:
                noise = torch.randn(x.shape, generator=generator) * noise_std
                noise = noise * (valid & rows_c.unsqueeze(1)).unsqueeze(-1)
                feats[m] = feats[m] + noise.to(x.dtype).to(device)
    return feats, lens, {"codes": codes, "swapped": swapped, "partner": partner}


# ------------------------------------------------------------------ the network
class PositionalEncoding(nn.Module):
    """Sinusoidal positions (sin on even, cos on odd dimensions) plus dropout
    [``correlation_models.py:PositionalEncoding``]."""

    def __init__(self, d_model: int, dropout: float = 0.1, max_len: int = 5000) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        position = torch.arange(max_len, dtype=torch.float).unsqueeze(1)
        div = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(position * div)
        pe[:, 1::2] = torch.cos(position * div)[:, : d_model // 2]
        self.register_buffer("pe", pe.unsqueeze(0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > self.pe.shape[1]:
            raise ValueError(f"MCE: sequence of {x.shape[1]} steps is longer than the positional "
                             f"encoding ({self.pe.shape[1]}); raise pretrain.mce.max_len")
        return self.dropout(x + self.pe[:, : x.shape[1]])


class MCE(nn.Module):
    """Modality correlation evaluator: per-modality encoders into a shared space."""

    def __init__(self, input_dims: Mapping[str, int], d_model: int = 128, num_layers: int = 3,
                 num_heads: int = 4, dim_feedforward: int = 256, dropout: float = 0.1,
                 out_dim: int = 64, max_len: int = 5000, distance: str = "cosine") -> None:
        super().__init__()
        if distance not in DISTANCES:
            raise ValueError(f"MCE: unknown distance {distance!r}; choose one of "
                             f"{', '.join(DISTANCES)}")
        self.modalities = list(input_dims)
        self.distance = distance
        self.inp = nn.ModuleDict({m: nn.Linear(d, d_model) for m, d in input_dims.items()})
        self.pos = PositionalEncoding(d_model, dropout, max_len)
        self.enc = nn.ModuleDict({m: nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d_model, num_heads, dim_feedforward, dropout,
                                       batch_first=True),
            num_layers, enable_nested_tensor=False) for m in self.modalities})
        self.out = nn.ModuleDict({m: nn.Linear(d_model, out_dim) for m in self.modalities})
        # inverse covariance of the training vectors (mahalanobis only; set by the pretrainer)
        self.register_buffer("inv_cov", torch.eye(out_dim))

    def pooled(self, features: Mapping[str, torch.Tensor],
               lengths: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per modality the masked time mean of the shared-space projections, (B, out_dim)."""
        out = {}
        for m in self.modalities:
            x = features[m]
            steps = torch.arange(x.shape[1], device=x.device)
            valid = steps.unsqueeze(0) < lengths[m].to(x.device).unsqueeze(1)
            h = self.enc[m](self.pos(self.inp[m](x)), src_key_padding_mask=~valid)
            h = self.out[m](h) * valid.unsqueeze(-1).to(x.dtype)
            out[m] = h.sum(1) / valid.sum(1, keepdim=True).clamp_min(1).to(x.dtype)
        return out

    def pair_correlations(self, vectors: Mapping[str, torch.Tensor],
                          ) -> dict[tuple[str, str], torch.Tensor]:
        """Cor of every unordered pair ``(X, Y)`` (X before Y in modality order), (B,) each."""
        inv = self.inv_cov if self.distance == "mahalanobis" else None
        mods = self.modalities
        return {(x, y): correlation(vectors[x], vectors[y], self.distance, inv)
                for i, x in enumerate(mods) for y in mods[i + 1:]}

    def forward(self, features: Mapping[str, torch.Tensor],
                lengths: Mapping[str, torch.Tensor]) -> dict[tuple[str, str], torch.Tensor]:
        return self.pair_correlations(self.pooled(features, lengths))
