"""MulT's attention kernels (fusions/_transformer.py): blocked CPU attention against torch's
fused SDPA, the CPU dropout kernel against explicit math with the same mask, empty sources,
what is kept for the backward pass, the length groups of the fusion, and bf16 autocast."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import msabench_builtins.fusions._transformer as tr
import msabench_builtins.fusions.mult as mult_module
from msabench.errors import ConfigError
from msabench_builtins.precision import autocast_context, resolve_precision
from tests.test_baselines_mult import NO_DROPOUT, _fusion, _inputs


def _qkv(dtype, b=5, h=3, tq=70, tk=90, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, t, d, generator=g, dtype=dtype).requires_grad_()
            for t in (tq, tk, tk)]


def _mask(future, tq=70, tk=90):
    src_len = torch.tensor([90, 3, 50, 1, 0])   # the last sample has an empty source
    tgt_len = torch.tensor([70, 10, 30, 5, 8])
    src = torch.arange(tk) < src_len[:, None]
    tgt = torch.arange(tq) < tgt_len[:, None]
    allowed, empty = tr.attention_mask(tgt, src, tq, tk, future, torch.device("cpu"))
    return allowed, empty


def _small_blocks(monkeypatch):
    """Many blocks: 16 query rows, 2 samples per chunk, no per-block cost."""
    monkeypatch.setattr(tr, "QUERY_BLOCKS", (16,))
    monkeypatch.setattr(tr, "BLOCK_COST", 0)
    monkeypatch.setattr(tr, "CHUNK_ELEMENTS", 2 * 3 * 16 * 90)


def _dense_sdpa(q, k, v, allowed):
    """torch's SDPA on the whole (B, 1, Tq, Tk) mask; empty samples -> 0."""
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed.dense())
    return out.masked_fill(allowed.empty.view(-1, 1, 1, 1), 0.0)


@pytest.mark.parametrize("future", [False, True])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
def test_blocked_attention_matches_fused_sdpa(monkeypatch, future, dtype, tol):
    """No dropout: many small blocks (key extents cut per block) == one SDPA call."""
    _small_blocks(monkeypatch)
    q, k, v = _qkv(dtype)
    allowed, empty = _mask(future)
    assert bool(empty[-1]) and not bool(empty[:-1].any())
    got = tr.attend(q, k, v, allowed, 0.0)
    want = _dense_sdpa(q, k, v, allowed)
    grad = torch.randn_like(got)
    g_got = torch.autograd.grad(got, (q, k, v), grad)
    g_want = torch.autograd.grad(want, (q, k, v), grad)
    assert (got - want).abs().max() <= tol
    for a, b in zip(g_got, g_want):
        assert torch.isfinite(a).all() and (a - b).abs().max() <= 10 * tol
    assert torch.all(got[-1] == 0)


@pytest.mark.parametrize("future", [False, True])
def test_dropout_attention_is_explicit_math_with_its_mask(monkeypatch, future):
    """One block: the kernel's output and gradients equal softmax -> drop -> / keep -> @ v
    computed with the very mask it drew; the backward pass regenerates that mask."""
    monkeypatch.setattr(tr, "QUERY_BLOCKS", ())
    monkeypatch.setattr(tr, "CHUNK_ELEMENTS", 10 ** 9)
    drawn = []
    real = tr._dropped

    def recording(shape, p, generator, device):
        drop, inv_keep = real(shape, p, generator, device)
        drawn.append((drop, inv_keep))
        return drop, inv_keep

    monkeypatch.setattr(tr, "_dropped", recording)
    q, k, v = _qkv(torch.float64)
    allowed, _ = _mask(future)
    out = tr.attend(q, k, v, allowed, 0.3)
    grad = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), grad)
    (drop, inv_keep), (drop_again, _) = drawn
    assert torch.equal(drop, drop_again)
    k1 = drop.shape[-1]
    scores = torch.matmul(q, k[:, :, :k1].transpose(-1, -2)) / 2.0
    dense = allowed.dense()
    if dense is not None:
        scores = scores.masked_fill(~dense[..., :k1], float("-inf"))
    weights = torch.softmax(scores, -1).masked_fill(drop, 0.0) * inv_keep
    want = torch.matmul(weights, v[:, :, :k1]).masked_fill(allowed.empty.view(-1, 1, 1, 1), 0)
    assert (out - want).abs().max() < 1e-12
    for a, b in zip(grads, torch.autograd.grad(want, (q, k, v), grad)):
        assert (a - b).abs().max() < 1e-12


@pytest.mark.parametrize("p", [0.0, 0.4])
def test_block_attention_gradcheck(monkeypatch, p):
    monkeypatch.setattr(tr, "QUERY_BLOCKS", (2,))
    monkeypatch.setattr(tr, "BLOCK_COST", 0)
    q, k, v = _qkv(torch.float64, b=2, h=1, tq=5, tk=4, d=2)
    keys = torch.arange(4) < torch.tensor([4, 2])[:, None]
    mask = tr.AttentionMask(keys, torch.tensor([0, 1]), 5, 4)
    assert torch.autograd.gradcheck(
        lambda q, k, v: tr._BlockAttention.apply(q, k, v, mask, p, 123), (q, k, v))


def test_dropout_blocks_draw_independent_masks_and_regenerate_them(monkeypatch):
    _small_blocks(monkeypatch)
    drawn = {"fwd": [], "bwd": []}
    real = tr._dropped
    phase = {"now": "fwd"}

    def recording(shape, p, generator, device):
        drop, inv_keep = real(shape, p, generator, device)
        drawn[phase["now"]].append((generator.initial_seed(), drop))
        return drop, inv_keep

    monkeypatch.setattr(tr, "_dropped", recording)
    q, k, v = _qkv(torch.float32)
    allowed, _ = _mask(True)
    out = tr.attend(q, k, v, allowed, 0.2)
    phase["now"] = "bwd"
    out.sum().backward()
    fwd, bwd = dict(drawn["fwd"]), dict(drawn["bwd"])
    assert len(fwd) == len(drawn["fwd"]) > 4            # one seed per block, all different
    assert fwd.keys() == bwd.keys()
    assert all(torch.equal(fwd[s], bwd[s]) for s in fwd)
    torch.manual_seed(0)
    a = tr.attend(q, k, v, allowed, 0.2)
    torch.manual_seed(0)
    b = tr.attend(q, k, v, allowed, 0.2)
    assert torch.equal(a, b)                             # torch.manual_seed reproduces runs


def test_dropout_rate_and_scale():
    gen = torch.Generator().manual_seed(0)
    for p in (0.1, 0.2, 0.5):
        drop, inv_keep = tr._dropped((64, 10, 50, 50), p, gen, torch.device("cpu"))
        rate = drop.double().mean().item()
        assert abs(rate - p) < 2e-3
        assert abs(inv_keep - 1 / (1 - p)) < 1e-4 / (1 - p) ** 2
    # unbiased: the mean over many draws of the dropped attention equals the plain one
    q, k, v = (t.detach().expand(4000, -1, -1, -1)
               for t in _qkv(torch.float64, b=1, h=1, tq=4, tk=6, d=2))
    plain = tr.attend(q[:1], k[:1], v[:1], None, 0.0)[0]
    torch.manual_seed(3)
    mean = tr.attend(q, k, v, None, 0.2).mean(0)    # 4000 samples, one mask each
    assert (mean - plain).abs().max() < 0.05 * plain.abs().max()


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_empty_sources_give_zeros_not_nan(dropout):
    q, k, v = _qkv(torch.float32)
    keys = torch.zeros(5, 90, dtype=torch.bool)         # every key padded, every sample
    keys[1, :4] = True
    for future in (None, 0):
        allowed = tr.AttentionMask(keys, future, 70, 90)
        out = tr.attend(q, k, v, allowed, dropout)
        out.sum().backward()
        assert torch.isfinite(out).all() and torch.all(out[[0, 2, 3, 4]] == 0)
        assert not torch.all(out[1] == 0)
        for t in (q, k, v):
            assert torch.isfinite(t.grad).all()
            t.grad = None
    # a whole modality missing for one sample, training with dropout: finite gradients
    f = _fusion(attn_dropout=0.3, attn_dropout_audio=0.3).train()
    feats, masks, _ = _inputs()
    masks = dict(masks, audio=masks["audio"].clone())
    masks["audio"][1] = False
    f(feats, masks).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in f.parameters() if p.grad is not None)


def test_nothing_of_size_heads_by_length_squared_is_kept(monkeypatch):
    """What the autograd graph of a training-mode attention layer keeps: no tensor of
    (B, heads, Tq, Tk) elements, with dropout (CPU kernel) or without (fused flash kernel)."""
    b, heads, tq, tk = 4, 8, 40, 60
    for dropout in (0.0, 0.25):
        mha = tr.MultiheadAttention(32, heads, attn_dropout=dropout).train()
        x, src = torch.randn(b, tq, 32), torch.randn(b, tk, 32)
        keys = torch.arange(tk) < torch.tensor([60, 30, 20, 5])[:, None]
        allowed = tr.AttentionMask(keys, 20, tq, tk)
        sizes = []

        def pack(t):
            sizes.append(t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            mha(x, src, src, allowed=allowed).sum().backward()
        # at most a (B, 1, Tq, Tk) bool mask (the block masks), never one per head
        assert sizes and max(sizes) <= b * tq * tk, (dropout, max(sizes))


def _tiny_mask(future):
    """3 x 4 (query, key) pairs; sample 1 has 2 keys, sample 2 none."""
    keys = torch.arange(4) < torch.tensor([4, 2, 0, 3])[:, None]
    return tr.AttentionMask(keys, torch.tensor([1, 0, 0, 2]) if future else None, 3, 4)


@pytest.mark.parametrize("future", [False, True])
def test_attention_over_a_few_steps_is_one_plain_sdpa_call(monkeypatch, future):
    """At most ``SMALL_PAIRS`` pairs per sample and head (utterance features: 1 x 1) skip the
    blocked kernel: no dropout -> the blocked kernel's numbers (fp32 rounding) with key
    padding, future offsets and an empty source; dropout -> softmax, ``F.dropout``, @ v, the
    very draws ``F.dropout`` makes from torch's generator (the reference's stream)."""
    q, k, v = _qkv(torch.float32, b=4, h=2, tq=3, tk=4, d=4)
    allowed = _tiny_mask(future)
    assert 3 * 4 <= tr.SMALL_PAIRS
    monkeypatch.setattr(tr._BlockAttention, "apply", None)    # the plain path must not use it
    got = tr.attend(q, k, v, allowed, 0.0)
    grad = torch.randn_like(got)
    g_got = torch.autograd.grad(got, (q, k, v), grad)
    monkeypatch.undo()
    monkeypatch.setattr(tr, "SMALL_PAIRS", 0)                  # the blocked kernel
    want = tr.attend(q, k, v, allowed, 0.0)
    g_want = torch.autograd.grad(want, (q, k, v), grad)
    assert (got - want).abs().max() <= 2e-6 and torch.all(got[2] == 0)
    for a, b in zip(g_got, g_want):
        assert torch.isfinite(a).all() and (a - b).abs().max() <= 2e-5
    monkeypatch.undo()
    torch.manual_seed(11)
    dropped = tr.attend(q, k, v, allowed, 0.4)
    scores = torch.matmul(q, k.transpose(-1, -2)) / 2.0       # d_h = 4
    dense = allowed.dense()
    if dense is not None:
        scores = scores.masked_fill(~dense, float("-inf"))
    torch.manual_seed(11)
    weights = F.dropout(torch.softmax(scores, -1), 0.4, training=True)
    explicit = torch.matmul(weights, v).masked_fill(allowed.empty.view(-1, 1, 1, 1), 0.0)
    assert not torch.equal(dropped, got)
    assert (dropped - explicit).abs().max() <= 2e-6


def test_length_groups_match_the_padded_batch(monkeypatch):
    """Grouping by length and cutting padding changes nothing at valid steps (fp32)."""
    feats, masks, _ = _inputs(batch=9, seed=5)
    kernels = {"kernel_sizes": {"text": 3, "audio": 5, "vision": 2}}
    f = _fusion(**kernels, **NO_DROPOUT).train()     # train mode: the kernels of training
    monkeypatch.setattr(mult_module, "GROUP_SIZE", 0)
    full = f.encode(feats, masks)
    full_out = f(feats, masks)
    full_grads = torch.autograd.grad(full_out.sum(), list(f.parameters()))
    monkeypatch.setattr(mult_module, "GROUP_SIZE", 2)
    assert len(f._groups({m: t.bool() for m, t in masks.items()})) == 5
    grouped = f.encode(feats, masks)
    out = f(feats, masks)
    grads = torch.autograd.grad(out.sum(), list(f.parameters()))
    assert (out - full_out).abs().max() < 1e-5
    for a, b in zip(grads, full_grads):
        assert (a - b).abs().max() < 1e-4 * max(1.0, b.abs().max().item())
    for pair, h in full["cross"].items():
        valid = masks[pair[0]].unsqueeze(-1)
        assert ((h - grouped["cross"][pair]) * valid).abs().max() < 1e-5
        cut = (grouped["cross"][pair] == 0).all(-1) & ~masks[pair[0]]  # steps cut off: zeros
        assert bool(cut.any())
    # the reference behaviour (padding attended to, last padded step) is never grouped
    ref = _fusion(key_padding_mask=False, last_step="padded", **kernels)
    assert ref._groups({m: t.bool() for m, t in masks.items()}) is None


def test_precision_helper():
    assert resolve_precision("cpu", "auto") == "fp32"
    assert resolve_precision("cpu", "bf16") == "bf16"
    assert resolve_precision("cuda", "fp32") == "fp32"
    if not torch.cuda.is_available():
        assert resolve_precision("cuda", "auto") == "fp32"
    with pytest.raises(ConfigError, match="train.precision='fp16'"):
        resolve_precision("cpu", "fp16")
    f = _fusion(attn_dropout=0.2).eval()
    feats, masks, _ = _inputs()
    with torch.no_grad():
        want = f(feats, masks)
        with autocast_context("cpu", "fp32"):
            assert torch.equal(f(feats, masks), want)
        with autocast_context("cpu", "bf16"):
            got = f(feats, masks)
    assert got.dtype == torch.bfloat16
    assert (got.float() - want).abs().max() < 0.1 * want.abs().max()
    f.train()
    with autocast_context("cpu", "bf16"):
        loss = f(feats, masks).float().pow(2).mean()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() and p.grad.dtype == torch.float32
               for p in f.parameters() if p.grad is not None)
