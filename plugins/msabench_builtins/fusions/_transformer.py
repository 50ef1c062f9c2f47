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


#: CPU attention runs in blocks of at most this many score elements (batch chunk x heads x
#: query rows x key extent): bounded temporaries, never a (B, heads, Tq, Tk) tensor at once
CHUNK_ELEMENTS = 1 << 24
#: query rows per CPU block tried under a future mask (early rows see fewer keys) ...
QUERY_BLOCKS = (256, 128, 64)
#: ... each extra block counted as this many score elements of work (its ~25 torch calls)
BLOCK_COST = 1 << 19
#: CPU attention over at most this many (query, key) pairs per sample and head (utterance-level
#: inputs: 1 x 1) is one plain ``scaled_dot_product_attention`` call: its weights are a few
#: numbers per sample, and the blocked kernel's per-call planning would cost more than them
SMALL_PAIRS = 16


class AttentionMask:
    """Which keys each query may attend to, kept in O(B * T) form.

    Query step ``i`` of sample ``b`` may attend to key step ``j`` when ``keys[b, j]`` (every key
    when ``keys`` is None) and, with a future mask, ``j <= i + offset[b]`` (``offset``: an int
    for every sample or a (B,) tensor; None: no future mask). Nothing of shape (B, Tq, Tk) is
    built except per block (:meth:`block`) or on request (:meth:`dense`: the (B|1, 1, Tq, Tk)
    mask, broadcast over the heads, that torch's fused kernels on other devices take).
    ``offset`` must be >= 0, so a query row is empty only when its sample has no key at all:
    such samples (``empty``) get key 0 opened, so no softmax row is empty (no NaN), and
    :func:`attend` returns zeros for them.
    """

    def __init__(self, keys: torch.Tensor | None, offset: torch.Tensor | int | None,
                 tgt_len: int, src_len: int) -> None:
        self.keys, self.offset = keys, offset
        self.tgt_len, self.src_len = tgt_len, src_len
        self.device = keys.device if keys is not None else (
            offset.device if isinstance(offset, torch.Tensor) else None)
        per_sample = isinstance(offset, torch.Tensor)
        self.batch = keys.shape[0] if keys is not None else (
            offset.shape[0] if per_sample else None)
        n = self.batch or 1
        self.empty = None
        if keys is not None and not bool(keys.any(1).all()):
            self.empty = ~keys.any(1)
            keys = keys.clone()
            keys[:, 0] |= self.empty
            self.keys = keys
        if keys is not None:  # key extent (last allowed key + 1) and leading allowed run
            steps = torch.arange(1, src_len + 1, device=keys.device)
            self._end = (keys * steps).amax(1).tolist()
            self._run = keys.int().cumprod(1).sum(1).tolist()
        else:
            self._end, self._run = [src_len] * n, [src_len] * n
        if offset is None:
            self._off = None
        elif per_sample:
            self._off = offset.tolist()
        else:
            self._off = [int(offset)] * n

    def extent(self, b0: int, b1: int, q1: int) -> int:
        """Keys ``0..extent-1`` hold every key that query rows ``< q1`` of samples
        ``b0..b1-1`` may see (at least 1)."""
        ends = self._end[b0:b1]
        if self._off is not None:
            ends = [min(e, q1 + o) for e, o in zip(ends, self._off[b0:b1])]
        return max(1, max(ends))

    def block(self, b0: int, b1: int, q0: int, q1: int, k1: int) -> torch.Tensor | None:
        """(c|1, 1, q1-q0, k1) bool for samples ``b0..b1-1``, query rows ``q0..q1-1`` and keys
        ``0..k1-1``; None when every one of these pairs is allowed."""
        mask = None
        if self.keys is not None and min(self._run[b0:b1]) < k1:
            mask = self.keys[b0:b1, :k1].view(-1, 1, 1, k1)
        if self._off is not None and k1 - 1 > q0 + min(self._off[b0:b1]):
            off = (self.offset[b0:b1].view(-1, 1, 1, 1) if isinstance(self.offset, torch.Tensor)
                   else int(self.offset))
            i = torch.arange(q0, q1, device=self.device).view(1, 1, -1, 1)
            j = torch.arange(k1, device=self.device).view(1, 1, 1, -1)
            future = j <= i + off
            mask = future if mask is None else mask & future
        return mask

    def dense(self) -> torch.Tensor | None:
        """The whole (B|1, 1, Tq, Tk) bool mask, or None when every pair is allowed."""
        return self.block(0, self.batch or 1, 0, self.tgt_len, self.src_len)


def _dropped(shape: tuple[int, ...], p: float, generator: torch.Generator,
             device: torch.device) -> tuple[torch.Tensor, float]:
    """(bool mask of the dropped attention weights, 1 / keep probability).

    Each weight is dropped with probability ``round(p * 65536) / 65536`` (|error| <= 7.7e-6,
    e.g. 0.199997 for 0.2), decided by 16 random bits drawn as full-range int64 words (four
    weights per draw, about 3.5x cheaper than ``bernoulli_`` on CPU). The kept weights are
    scaled by the exact inverse keep probability, so the expectation is unchanged."""
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device)
    words.random_(-2 ** 63, None, generator=generator)
    cut = round(p * 65536)
    drop = words.view(torch.int16)[:n].view(shape) < cut - 32768
    return drop, 65536.0 / (65536 - cut)


_FLASH = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
_FLASH_BACKWARD = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward",
                          None)


def _bias(allowed: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """Additive (c|1, 1, rows, keys) mask: 0 where allowed, -inf elsewhere (not per head)."""
    if allowed is None:
        return None
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(
        ~allowed, float("-inf"))


def _plan(mask: AttentionMask, b: int, h: int, tq: int) -> list[tuple[int, int, int, int, int]]:
    """CPU blocks ``(b0, b1, q0, q1, k1)``: samples ``b0..b1-1``, query rows ``q0..q1-1``, keys
    ``0..k1-1`` (the keys those queries may see), at most ``CHUNK_ELEMENTS`` weights each; of
    the query splits in ``QUERY_BLOCKS`` (all rows at once without a future mask) the one with
    the least work, counting ``BLOCK_COST`` per block."""
    tk = mask.src_len
    candidates = [tq] + ([r for r in QUERY_BLOCKS if r < tq] if mask._off is not None else [])
    best, best_cost = [], None
    for rows in candidates:
        rows = max(1, min(rows, CHUNK_ELEMENTS // (h * tk)))
        step = max(1, CHUNK_ELEMENTS // (h * rows * tk))
        plan, cost = [], 0
        for b0 in range(0, b, step):
            b1 = min(b, b0 + step)
            for q0 in range(0, tq, rows):
                q1 = min(tq, q0 + rows)
                k1 = mask.extent(b0, b1, q1)
                plan.append((b0, b1, q0, q1, k1))
                cost += (b1 - b0) * h * (q1 - q0) * k1 + BLOCK_COST
        if best_cost is None or cost < best_cost:
            best, best_cost = plan, cost
    return best


class _BlockAttention(torch.autograd.Function):
    """CPU attention over the blocks of :func:`_plan`, dropout on the weights optional.

    Without dropout each block is torch's fused flash kernel (forward and backward ops called
    directly, so the gradients of all blocks land in one buffer). With dropout (no fused CPU
    kernel has it) each block is computed explicitly -- softmax(q k^T / sqrt(d_h), masked),
    weights dropped by :func:`_dropped` and scaled by 1 / keep, times v -- and nothing of size
    heads x Tq x Tk is kept: the backward pass recomputes the weights and regenerates each
    block's dropout mask from its seed (as the fused GPU kernels do). Saved: q, k, v, the
    output (and the flash kernel's log-sum-exp rows)."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu", cast_inputs=torch.float32)  # bf16: fp32 inside
    def forward(ctx, q, k, v, mask, p, seed):  # noqa: D102
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        b, h, tq, d = q.shape
        plan = _plan(mask, b, h, tq)
        flash = p == 0 and _FLASH is not None and _FLASH_BACKWARD is not None
        out = q.new_empty(q.shape)
        lse = q.new_empty(b, h, tq) if flash else None
        scale = d ** -0.5
        for n, (b0, b1, q0, q1, k1) in enumerate(plan):
            bias = _bias(mask.block(b0, b1, q0, q1, k1), q.dtype)
            qb, kb, vb = q[b0:b1, :, q0:q1], k[b0:b1, :, :k1], v[b0:b1, :, :k1]
            if flash:
                o, lse[b0:b1, :, q0:q1] = _FLASH(qb, kb, vb, 0.0, False, attn_mask=bias)
                out[b0:b1, :, q0:q1] = o
                continue
            weights = _BlockAttention._weights(qb, kb, bias, scale)
            if p > 0:
                gen = torch.Generator().manual_seed(seed + n)
                drop, inv_keep = _dropped(weights.shape, p, gen, q.device)
                weights.masked_fill_(drop, 0.0)
                out[b0:b1, :, q0:q1] = torch.matmul(weights, vb).mul_(inv_keep)
            else:
                out[b0:b1, :, q0:q1] = torch.matmul(weights, vb)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.mask, ctx.p, ctx.seed, ctx.plan, ctx.flash = mask, p, seed, plan, flash
        return out

    @staticmethod
    def _weights(q, k, bias, scale):
        scores = torch.matmul(q * scale, k.transpose(-1, -2))
        if bias is not None:
            scores.add_(bias)
        return torch.softmax(scores, dim=-1)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad_out):  # noqa: D102
        q, k, v, out, lse = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        mask, p = ctx.mask, ctx.p
        scale = q.shape[-1] ** -0.5
        grad_q, grad_k, grad_v = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
        for n, (b0, b1, q0, q1, k1) in enumerate(ctx.plan):
            bias = _bias(mask.block(b0, b1, q0, q1, k1), q.dtype)
            qb, kb, vb = q[b0:b1, :, q0:q1], k[b0:b1, :, :k1], v[b0:b1, :, :k1]
            gb, ob = grad_out[b0:b1, :, q0:q1], out[b0:b1, :, q0:q1]
            if ctx.flash:
                dq, dk, dv = _FLASH_BACKWARD(gb, qb, kb, vb, ob, lse[b0:b1, :, q0:q1], 0.0,
                                             False, attn_mask=bias)
                grad_q[b0:b1, :, q0:q1] = dq
                grad_k[b0:b1, :, :k1] += dk
                grad_v[b0:b1, :, :k1] += dv
                continue
            weights = _BlockAttention._weights(qb, kb, bias, scale)
            drop, inv_keep = None, 1.0
            if p > 0:
                gen = torch.Generator().manual_seed(ctx.seed + n)
                drop, inv_keep = _dropped(weights.shape, p, gen, q.device)
            g_scaled = gb * inv_keep if p > 0 else gb
            # dL/d(weights after dropout), through the dropout; row sums: sum_j P dP = dO . O
            grad_w = torch.matmul(g_scaled, vb.transpose(-1, -2))
            if drop is not None:
                grad_w.masked_fill_(drop, 0.0)
            row = (gb * ob).sum(-1, keepdim=True)
            grad_scores = grad_w.sub_(row).mul_(weights)
            if drop is not None:
                weights.masked_fill_(drop, 0.0)
            grad_v[b0:b1, :, :k1] += torch.matmul(weights.transpose(-1, -2), g_scaled)
            del weights, drop, grad_w
            grad_q[b0:b1, :, q0:q1] = torch.matmul(grad_scores, kb).mul_(scale)
            grad_k[b0:b1, :, :k1] += torch.matmul(grad_scores.transpose(-1, -2), qb).mul_(scale)
        return grad_q, grad_k, grad_v, None, None, None


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
          dropout: float) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: AttentionMask | None,
           dropout: float) -> torch.Tensor:
    """softmax(q k^T / sqrt(d_h), masked) with dropout on the weights, times v: (B, H, Tq, d_h).

    Off CPU, and on CPU when a sample has at most ``SMALL_PAIRS`` (query, key) pairs per head
    (one-step utterance features): one ``F.scaled_dot_product_attention`` call (torch's fused
    kernels, dropout included, drawn as ``F.dropout`` draws; the mask is (B, 1, Tq, Tk),
    broadcast over the heads). Otherwise on CPU:
    :class:`_BlockAttention`, in blocks (a batch chunk x a range of query rows, at most
    ``CHUNK_ELEMENTS`` weights; see :func:`_plan`) over only the keys the block's queries may see (padded keys
    past every sample's end and, under a future mask, keys after the block's last visible
    step are skipped). Dropout draws a different random stream from ``F.dropout`` (same rate
    up to 7.7e-6, same places; see :func:`_dropped`). Samples without any key give zeros.
    """
    if q.device.type != "cpu" or q.shape[2] * k.shape[2] <= SMALL_PAIRS:
        out = _sdpa(q, k, v, mask.dense() if mask is not None else None, dropout)
    else:
        if mask is None:
            mask = AttentionMask(None, None, q.shape[2], k.shape[2])
        seed = int(torch.randint(2 ** 62, (), dtype=torch.int64)) if dropout > 0 else 0
        out = _BlockAttention.apply(q, k, v, mask, float(dropout), seed)
    if mask is not None and mask.empty is not None:
        out = out.masked_fill(mask.empty.view(-1, 1, 1, 1), 0.0)
    return out


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
                allowed: AttentionMask | None = None) -> torch.Tensor:
        """``allowed``: the keys each query may attend to (None: all); every query must be
        allowed at least one key."""
        w, b, d = self.in_proj_weight, self.in_proj_bias, self.dim
        if key is None:
            q, k, v = F.linear(query, w, b).chunk(3, dim=-1)
        else:
            q = F.linear(query, w[:d], b[:d])
            k = F.linear(key, w[d:2 * d], b[d:2 * d])
            v = F.linear(value if value is not None else key, w[2 * d:], b[2 * d:])
        dropout = self.attn_dropout if self.training else 0.0
        out = attend(self._heads(q), self._heads(k), self._heads(v), allowed, dropout)
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
                allowed: AttentionMask | None) -> torch.Tensor:
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
                   device: torch.device) -> tuple[AttentionMask | None, torch.Tensor | None]:
    """``(allowed or None, src_empty (B,) bool or None)``.

    Key padding: keys at invalid source steps are excluded. Future mask: target step ``i`` sees
    source steps ``j <= i + |L_src - L_tgt|`` (the reference's rule; valid lengths per sample
    when masks are given, padded lengths otherwise). Samples with an empty source get zero
    attention outputs (:class:`AttentionMask`); the caller zeroes their final output.
    """
    if src_valid is None and not future_mask:
        return None, None
    keys = empty = None
    if src_valid is not None:
        keys = src_valid.to(device)
        empty = ~keys.any(1)
    offset = None
    if future_mask:
        if src_valid is not None and tgt_valid is not None:
            offset = (src_valid.sum(1) - tgt_valid.to(device).sum(1)).abs()
        else:
            offset = abs(src_len - tgt_len)
    return AttentionMask(keys, offset, tgt_len, src_len), empty


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
