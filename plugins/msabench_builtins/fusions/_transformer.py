"""The transformer blocks of MulT (Tsai et al. 2019), written for msabench.

Follows the reference implementation (yaohungt/Multimodal-Transformer, ``modules/``, itself
adapted from fairseq) in every parameter and in the order of operations:

- inputs scaled by ``sqrt(d)`` plus fairseq sinusoidal position embeddings (positions start at
  1; ``[sin | cos]`` halves; a zero column for odd ``d``), then embedding dropout -- applied
  separately to the query, key and value streams, as in the reference;
- pre-LayerNorm layers: ``x + Dropout_res(Attn(LN0(x), LN0(k), LN0(v)))`` then
  ``x + Dropout_res(fc2(Dropout_relu(ReLU(fc1(LN1(x))))))`` with a 4d ReLU feed-forward; the
  key/value stream is the (fixed) source sequence in every layer of a crossmodal transformer;
- a final LayerNorm;
- multi-head attention with one packed ``(3d, d)`` input projection (Xavier-uniform, zero
  biases) and attention-weight dropout.

Differences, all documented and switchable where they change results:

- **key padding masks** (the reference has none): keys at padded steps get no attention weight,
  so the output at a valid step does not depend on padding. ``key_valid=None`` restores the
  reference behaviour.
- **future mask on padded batches**: the reference allows target step ``i`` to see source steps
  ``j <= i + |T_src - T_tgt|`` computed from the padded lengths; here the offset is computed
  per sample from the valid lengths (identical for unpadded inputs). When a source is empty for
  a sample (length 0), its crossmodal output is zero.
- positions are always ``1..T``: the reference gives position 0 (a zero embedding) to any step
  whose first projected channel is exactly 0, which in practice only hits zero padding.

Tensors are batch-first, ``(B, T, d)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


def sinusoidal_table(num_positions: int, dim: int) -> torch.Tensor:
    """fairseq/tensor2tensor sinusoids for positions ``0..num_positions-1``; row 0 is zero
    (the padding index), so real steps use rows ``1..T``."""
    half = dim // 2
    step = math.log(10000) / max(half - 1, 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float) * -step)
    angles = torch.arange(num_positions, dtype=torch.float).unsqueeze(1) * freqs.unsqueeze(0)
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if dim % 2 == 1:
        table = torch.cat([table, torch.zeros(num_positions, 1)], dim=1)
    table[0] = 0
    return table


class SinusoidalPositions(nn.Module):
    """Adds nothing learnable: returns the ``(T, d)`` embedding of positions ``1..T``."""

    def __init__(self, dim: int, init_size: int = 128) -> None:
        super().__init__()
        self.dim = dim
        self.register_buffer("table", sinusoidal_table(init_size + 1, dim), persistent=False)

    def forward(self, length: int, like: torch.Tensor) -> torch.Tensor:
        if length + 1 > self.table.shape[0]:
            self.table = sinusoidal_table(length + 1, self.dim).to(self.table.device)
        return self.table[1:length + 1].to(dtype=like.dtype, device=like.device)


def _xavier_linear(n_in: int, n_out: int) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.constant_(layer.bias, 0.0)
    return layer


#: CPU attention with dropout runs in batch chunks of at most this many score elements
CHUNK_ELEMENTS = 1 << 24


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
          dropout: float) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
           dropout: float) -> torch.Tensor:
    """softmax(q k^T / sqrt(d_h) masked) with dropout on the weights, times v: (B, H, T, d_h).

    Without attention dropout torch's fused kernels never materialise the (B, H, Tq, Tk)
    weights. On CPU no fused kernel supports dropout, and the weights of a 500-step memory at
    batch 128 would take several GB per layer; there the attention runs in batch chunks
    (<= ``CHUNK_ELEMENTS`` weights each) under activation checkpointing (recomputed in the
    backward pass with the same dropout mask), which bounds memory at ~30 % more compute.
    """
    if dropout <= 0 or q.device.type != "cpu" or not torch.is_grad_enabled():
        return _sdpa(q, k, v, mask, dropout)
    b, h, tq, _ = q.shape
    step = max(1, CHUNK_ELEMENTS // max(1, h * tq * k.shape[2]))
    if step >= b:
        return _sdpa(q, k, v, mask, dropout)
    outs = []
    for s in range(0, b, step):
        m = None if mask is None else mask[s:s + step] if mask.shape[0] > 1 else mask
        outs.append(checkpoint(_sdpa, q[s:s + step], k[s:s + step], v[s:s + step], m, dropout,
                               use_reentrant=False))
    return torch.cat(outs) if len(outs) > 1 else outs[0]


class MultiheadAttention(nn.Module):
    """Multi-head attention with a packed q/k/v projection (parameters as in fairseq)."""

    def __init__(self, dim: int, num_heads: int, attn_dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by {num_heads} heads")
        self.dim, self.num_heads, self.attn_dropout = dim, num_heads, float(attn_dropout)
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.xavier_uniform_(self.out_proj.weight)
        nn.init.constant_(self.out_proj.bias, 0.0)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.dim // self.num_heads).transpose(1, 2)

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None,
                value: torch.Tensor | None = None,
                allowed: torch.Tensor | None = None) -> torch.Tensor:
        """``allowed`` is a bool ``(B, Tq, Tk)`` (or broadcastable) mask, True where query step
        i may attend to key step j; every row must allow at least one key."""
        w, b, d = self.in_proj_weight, self.in_proj_bias, self.dim
        if key is None:
            q, k, v = F.linear(query, w, b).chunk(3, dim=-1)
        else:
            q = F.linear(query, w[:d], b[:d])
            k = F.linear(key, w[d:2 * d], b[d:2 * d])
            v = F.linear(value if value is not None else key, w[2 * d:], b[2 * d:])
        mask = allowed.unsqueeze(1) if allowed is not None else None
        dropout = self.attn_dropout if self.training else 0.0
        out = attend(self._heads(q), self._heads(k), self._heads(v), mask, dropout)
        out = out.transpose(1, 2).reshape(query.shape[0], query.shape[1], d)
        return self.out_proj(out)


class EncoderLayer(nn.Module):
    """One pre-LN transformer layer (self-attention, or crossmodal with a key/value stream)."""

    def __init__(self, dim: int, num_heads: int, attn_dropout: float, relu_dropout: float,
                 res_dropout: float) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(dim, num_heads, attn_dropout)
        self.relu_dropout, self.res_dropout = float(relu_dropout), float(res_dropout)
        self.fc1 = _xavier_linear(dim, 4 * dim)
        self.fc2 = _xavier_linear(4 * dim, dim)
        self.layer_norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(2)])

    def forward(self, x: torch.Tensor, x_k: torch.Tensor | None, x_v: torch.Tensor | None,
                allowed: torch.Tensor | None) -> torch.Tensor:
        residual = x
        x = self.layer_norms[0](x)
        if x_k is None:
            x = self.self_attn(x, allowed=allowed)
        else:
            x = self.self_attn(x, self.layer_norms[0](x_k), self.layer_norms[0](x_v),
                               allowed=allowed)
        x = residual + F.dropout(x, self.res_dropout, self.training)
        residual = x
        x = F.relu(self.fc1(self.layer_norms[1](x)))
        x = self.fc2(F.dropout(x, self.relu_dropout, self.training))
        return residual + F.dropout(x, self.res_dropout, self.training)


def attention_mask(tgt_valid: torch.Tensor | None, src_valid: torch.Tensor | None,
                   tgt_len: int, src_len: int, future_mask: bool,
                   device: torch.device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(allowed (B|1, Tq, Tk) bool or None, src_empty (B,) bool or None)``.

    Key padding: keys at invalid source steps are excluded. Future mask: target step ``i`` sees
    source steps ``j <= i + |L_src - L_tgt|`` (the reference's rule; valid lengths per sample
    when masks are given, padded lengths otherwise). Samples with an empty source keep key 0
    open (their output is zeroed by the caller) so no softmax row is empty.
    """
    if src_valid is None and not future_mask:
        return None, None
    i = torch.arange(tgt_len, device=device).view(1, -1, 1)
    j = torch.arange(src_len, device=device).view(1, 1, -1)
    allowed = torch.ones(1, tgt_len, src_len, dtype=torch.bool, device=device)
    empty = None
    if src_valid is not None:
        src_lengths = src_valid.sum(1)
        empty = src_lengths == 0
        keys = src_valid.clone()
        keys[:, 0] |= empty
        allowed = allowed & keys.unsqueeze(1)
    if future_mask:
        if src_valid is not None and tgt_valid is not None:
            offset = (src_valid.sum(1) - tgt_valid.sum(1)).abs().view(-1, 1, 1)
        else:
            offset = abs(src_len - tgt_len)
        allowed = allowed & (j <= i + offset)
    return allowed, empty


class TransformerEncoder(nn.Module):
    """Scaled input + sinusoidal positions -> ``layers`` pre-LN layers -> LayerNorm.

    ``forward(x)`` is self-attention; ``forward(x, source)`` is a crossmodal transformer in
    which ``x`` (target) attends to ``source`` in every layer.
    """

    def __init__(self, dim: int, num_heads: int, layers: int, attn_dropout: float = 0.0,
                 relu_dropout: float = 0.0, res_dropout: float = 0.0,
                 embed_dropout: float = 0.0, future_mask: bool = False) -> None:
        super().__init__()
        self.dim = dim
        self.embed_scale = math.sqrt(dim)
        self.embed_dropout = float(embed_dropout)
        self.future_mask = bool(future_mask)
        self.positions = SinusoidalPositions(dim)
        self.layers = nn.ModuleList([
            EncoderLayer(dim, num_heads, attn_dropout, relu_dropout, res_dropout)
            for _ in range(layers)])
        self.layer_norm = nn.LayerNorm(dim)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed_scale * x + self.positions(x.shape[1], x)

    def forward(self, x: torch.Tensor, source: torch.Tensor | None = None,
                tgt_valid: torch.Tensor | None = None,
                src_valid: torch.Tensor | None = None) -> torch.Tensor:
        """``tgt_valid``/``src_valid``: (B, T) bool validity masks or None (no key padding;
        for self-attention ``src_valid`` defaults to ``tgt_valid``)."""
        drop = lambda t: F.dropout(t, self.embed_dropout, self.training)  # noqa: E731
        h = drop(self._embed(x))
        x_k = x_v = None
        if source is not None:
            e = self._embed(source)
            x_k, x_v = drop(e), drop(e)
        else:
            src_valid = tgt_valid if src_valid is None else src_valid
        src_len = source.shape[1] if source is not None else x.shape[1]
        allowed, empty = attention_mask(tgt_valid, src_valid, x.shape[1], src_len,
                                        self.future_mask, x.device)
        for layer in self.layers:
            h = layer(h, x_k, x_v, allowed)
        h = self.layer_norm(h)
        if empty is not None and source is not None and bool(empty.any()):
            h = h * (~empty).to(h.dtype).view(-1, 1, 1)
        return h
