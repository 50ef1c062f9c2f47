"""MulT: masking, modality subsets, the CorMulT scaling hook, parameters and outputs against an
independent re-implementation of the reference (yaohungt/Multimodal-Transformer), training."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from msabench.api import Batch, Components, DataInfo, DatasetMeta
from msabench.config import resolve
from msabench.plugins import get_registry
from msabench.runner import Progress, RunSpec, run
from msabench_builtins.fusions.mult import MulTFusion
from msabench_builtins.methods.mult import MulT
from tests.conftest import TINY_SYNTH

DIMS = {"text": 24, "audio": 5, "vision": 20}
LENS = {"text": 12, "audio": 30, "vision": 20}
SMALL = {"dim": 8, "num_heads": 2, "num_layers": 2}
NO_DROPOUT = {k: 0.0 for k in ("text_dropout", "embed_dropout", "attn_dropout",
                                "attn_dropout_audio", "attn_dropout_vision", "relu_dropout",
                                "res_dropout")}


def _inputs(dims=DIMS, lens=LENS, batch=4, seed=0, full=False):
    g = torch.Generator().manual_seed(seed)
    feats = {m: torch.randn(batch, lens[m], d, generator=g) for m, d in dims.items()}
    lengths = {m: (torch.full((batch,), lens[m]) if full else
                   torch.randint(1, lens[m] + 1, (batch,), generator=g)) for m in dims}
    if not full:
        for m in dims:
            lengths[m][0] = lens[m]  # one full-length row per modality
    masks = {m: torch.arange(lens[m]) < lengths[m].unsqueeze(1) for m in dims}
    for m in dims:  # padded steps are zero, as the datasets deliver them
        feats[m] = feats[m] * masks[m].unsqueeze(-1)
    return feats, masks, lengths


def _fusion(dims=DIMS, **kw):
    torch.manual_seed(0)
    return MulTFusion(dims, **{**SMALL, **kw}).eval()


def _info(dims, lens=LENS):
    meta = DatasetMeta(name="ref-data", title="test", language="en", label_range=(-3.0, 3.0),
                       convention="mosi")
    return DataInfo(meta=meta, setting="default", modalities=tuple(dims),
                    feature_dims=dict(dims), max_lengths={m: lens.get(m, 1) for m in dims},
                    aligned=False, has_unimodal_labels=False, has_texts=False)


def _method(dims, **model):
    cfg = resolve(MulT, "ref-data", {"model": model})["model"]
    return MulT(_info(dims), cfg, Components(get_registry()))


def _batch(feats, lengths, labels=None):
    b = next(iter(feats.values())).shape[0]
    labels = torch.zeros(b) if labels is None else labels
    return Batch(ids=[str(i) for i in range(b)], features=feats, lengths=lengths,
                 label=labels, labelled=torch.ones(b, dtype=torch.bool))


# --------------------------------------------------------------------------------------------
def test_shapes_subsets_and_empty_modality():
    feats, masks, _ = _inputs()
    for subset, width in ((("text", "audio", "vision"), 6), (("text", "audio"), 2),
                          (("vision",), 1)):
        dims = {m: DIMS[m] for m in subset}
        f = _fusion(dims)
        assert f.output_dim == width * SMALL["dim"]
        parts = f.encode({m: feats[m] for m in subset}, {m: masks[m] for m in subset})
        out = f({m: feats[m] for m in subset}, {m: masks[m] for m in subset})
        assert out.shape == (4, f.output_dim) and torch.isfinite(out).all()
        expected = {(x, y) for x in subset for y in subset if y != x} or {(subset[0],) * 2}
        assert set(parts["cross"]) == expected
        for (x, _y), h in parts["cross"].items():
            assert h.shape == (4, LENS[x], SMALL["dim"])
    # a sample whose audio is empty: finite output, its audio vector is zero
    f = _fusion()
    masks = dict(masks, audio=masks["audio"].clone())
    masks["audio"][1] = False
    out = f.encode(feats, masks)
    assert torch.isfinite(f(feats, masks)).all()
    assert torch.all(out["last"]["audio"][1] == 0)
    assert torch.all(out["cross"][("text", "audio")][1] == 0)
    m = _method({"text": 24, "audio": 5}, **SMALL)
    _, _, lengths = _inputs()
    pred = m(_batch({k: feats[k] for k in ("text", "audio")},
                    {k: lengths[k] for k in ("text", "audio")}))["pred"]
    assert pred.shape == (4,)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        MulTFusion(DIMS, dim=10, num_heads=4)
    with pytest.raises(ValueError, match="last_step"):
        MulTFusion(DIMS, last_step="first")
    with pytest.raises(ValueError, match="unknown parameter"):
        MulTFusion(DIMS, heads=4)
    f = _fusion()
    feats, masks, _ = _inputs()
    with pytest.raises(ValueError, match="unknown pair"):
        f(feats, masks, cross_scale={("text", "text"): 0.0})


def test_future_mask_hides_later_source_steps():
    lens = {m: 16 for m in DIMS}
    feats, masks, _ = _inputs(lens=lens, full=True)
    t = 6
    later = {m: x.clone() for m, x in feats.items()}
    for m in later:
        later[m][:, t + 1:] += 5 * torch.randn_like(later[m][:, t + 1:])
    kernels = {"kernel_sizes": {m: 1 for m in DIMS}}  # wider kernels see step t+1 by design
    f = _fusion(**kernels)
    a, b = f.encode(feats, masks), f.encode(later, masks)
    for pair in a["cross"]:
        assert torch.allclose(a["cross"][pair][:, :t + 1], b["cross"][pair][:, :t + 1], atol=1e-5)
        assert not torch.allclose(a["cross"][pair][:, t + 1:], b["cross"][pair][:, t + 1:])
    for x in a["memory"]:
        assert torch.allclose(a["memory"][x][:, :t + 1], b["memory"][x][:, :t + 1], atol=1e-5)
    # only the source changes: the target's early steps still do not move
    src = dict(feats, audio=later["audio"])
    c = f.encode(src, masks)
    assert torch.allclose(a["cross"][("text", "audio")][:, :t + 1],
                          c["cross"][("text", "audio")][:, :t + 1], atol=1e-5)
    # without the mask, early target steps see the later source steps
    g = _fusion(attn_mask=False, **kernels)
    a, c = g.encode(feats, masks), g.encode(src, masks)
    assert not torch.allclose(a["cross"][("text", "audio")][:, :t + 1],
                              c["cross"][("text", "audio")][:, :t + 1], atol=1e-4)


def test_future_mask_offset_follows_valid_lengths():
    """Target step i sees source steps j <= i + |L_src - L_tgt| (the reference's rule)."""
    feats, masks, lengths = _inputs()
    f = _fusion(kernel_sizes={m: 1 for m in DIMS})
    row = 2
    lt, ls = int(lengths["text"][row]), int(lengths["audio"][row])
    offset = abs(ls - lt)
    i = 0
    if i + offset + 1 >= ls:
        pytest.skip("no source step beyond the window for this draw")
    moved = dict(feats, audio=feats["audio"].clone())
    moved["audio"][row, i + offset + 1:ls] += 5.0
    a, b = f.encode(feats, masks), f.encode(moved, masks)
    h_a, h_b = a["cross"][("text", "audio")][row], b["cross"][("text", "audio")][row]
    assert torch.allclose(h_a[:i + 1], h_b[:i + 1], atol=1e-5)
    assert not torch.allclose(h_a[:lt], h_b[:lt], atol=1e-5)


def test_padding_invariance_and_batch_independence():
    feats, masks, lengths = _inputs(batch=5, seed=3)
    noisy = {m: torch.where(masks[m].unsqueeze(-1), x, 100 * torch.randn_like(x))
             for m, x in feats.items()}
    kernels = {"kernel_sizes": {"text": 3, "audio": 5, "vision": 2}}
    for attn_mask in (True, False):
        f = _fusion(attn_mask=attn_mask, **kernels)
        out = f(feats, masks)
        assert torch.allclose(out, f(noisy, masks), atol=1e-5)
        # each sample alone, cut to its own lengths, gives the same vector as in the batch
        for r in range(5):
            alone = {m: feats[m][r:r + 1, :int(lengths[m][r])] for m in DIMS}
            alone_masks = {m: torch.ones(1, alone[m].shape[1], dtype=torch.bool) for m in DIMS}
            assert torch.allclose(out[r:r + 1], f(alone, alone_masks), atol=1e-5), r
    # the reference behaviour (no key padding masks, last padded step) attends to the padding:
    # a padded sample's vector changes when it is run alone at its own lengths
    ref = _fusion(key_padding_mask=False, last_step="padded", **kernels)
    r = next(r for r in range(5) if all(int(lengths[m][r]) < LENS[m] for m in DIMS))
    alone = {m: feats[m][r:r + 1, :int(lengths[m][r])] for m in DIMS}
    alone_masks = {m: torch.ones(1, alone[m].shape[1], dtype=torch.bool) for m in DIMS}
    assert not torch.allclose(ref(feats, masks)[r:r + 1], ref(alone, alone_masks), atol=1e-3)


def test_cross_scale_hook():
    feats, masks, _ = _inputs()
    f = _fusion()
    pairs = [(x, y) for x in DIMS for y in DIMS if y != x]
    base = f.encode(feats, masks)
    ones = f(feats, masks, cross_scale={p: torch.ones(4) for p in pairs})
    assert torch.allclose(ones, f(feats, masks), atol=1e-6)
    doubled = f.encode(feats, masks, cross_scale={("vision", "audio"): torch.full((4,), 2.0)})
    assert torch.allclose(doubled["cross"][("vision", "audio")],
                          2 * base["cross"][("vision", "audio")], atol=1e-5)
    assert torch.allclose(doubled["last"]["text"], base["last"]["text"], atol=1e-6)
    assert not torch.allclose(doubled["last"]["vision"], base["last"]["vision"], atol=1e-4)
    per_sample = torch.tensor([0.0, 1.0, 1.0, 1.0])
    s = f(feats, masks, cross_scale={p: per_sample for p in pairs})
    assert torch.allclose(s[1:], f(feats, masks)[1:], atol=1e-6)
    # scale 0 everywhere == crossmodal transformers that output zeros
    zeroed = f(feats, masks, cross_scale={p: 0.0 for p in pairs})
    hooks = [net.register_forward_hook(lambda mod, inp, out: torch.zeros_like(out))
             for net in f.cross.values()]
    try:
        silent = f(feats, masks)
    finally:
        for h in hooks:
            h.remove()
    assert torch.allclose(zeroed, silent, atol=1e-6)
    assert torch.allclose(s[0], zeroed[0], atol=1e-6)


# --------------------------------------------------------------------------------------------
# An independent re-implementation of yaohungt/Multimodal-Transformer (src/models.py,
# modules/transformer.py, modules/multihead_attention.py, modules/position_embedding.py):
# sequence-first tensors, additive -inf future mask, no padding masks, fairseq positions.

def _ref_sinusoids(n, d):
    half = d // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float) * -(math.log(10000) / (half - 1)))
    ang = torch.arange(n, dtype=torch.float).unsqueeze(1) * freq.unsqueeze(0)
    emb = torch.cat([torch.sin(ang), torch.cos(ang)], dim=1).view(n, -1)
    if d % 2:
        emb = torch.cat([emb, torch.zeros(n, 1)], dim=1)
    emb[0] = 0
    return emb


def _ref_positions(x):  # x: (T, B, d); position 0 where the first channel is 0 (padding_idx)
    first = x.transpose(0, 1)[:, :, 0]
    pos = torch.arange(1, first.shape[1] + 1).expand_as(first) * first.ne(0)
    table = _ref_sinusoids(first.shape[1] + 1, x.shape[2])
    return table[pos].transpose(0, 1)


class RefMHA(nn.Module):
    def __init__(self, d, heads, attn_dropout=0.0):
        super().__init__()
        self.d, self.h, self.attn_dropout = d, heads, attn_dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d, d))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * d))
        self.out_proj = nn.Linear(d, d)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, q, k, v, mask):
        d, h = self.d, self.h
        tq, b, _ = q.shape
        w, bias = self.in_proj_weight, self.in_proj_bias
        q = F.linear(q, w[:d], bias[:d]) * (d // h) ** -0.5
        k = F.linear(k, w[d:2 * d], bias[d:2 * d])
        v = F.linear(v, w[2 * d:], bias[2 * d:])
        q, k, v = (t.contiguous().view(t.shape[0], b * h, d // h).transpose(0, 1)
                   for t in (q, k, v))
        att = torch.bmm(q, k.transpose(1, 2))
        if mask is not None:
            att = att + mask.unsqueeze(0)
        att = F.dropout(F.softmax(att, dim=-1), self.attn_dropout, self.training)
        out = torch.bmm(att, v).transpose(0, 1).contiguous().view(tq, b, d)
        return self.out_proj(out)


class RefLayer(nn.Module):
    def __init__(self, d, heads, attn_mask, attn_dropout=0.0, relu_dropout=0.0, res_dropout=0.0):
        super().__init__()
        self.self_attn = RefMHA(d, heads, attn_dropout)
        self.relu_dropout, self.res_dropout = relu_dropout, res_dropout
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.layer_norms = nn.ModuleList([nn.LayerNorm(d) for _ in range(2)])
        self.attn_mask = attn_mask

    def forward(self, x, x_k=None, x_v=None):
        residual = x
        x = self.layer_norms[0](x)
        mask = None
        if self.attn_mask:
            d1, d2 = x.shape[0], (x_k if x_k is not None else x).shape[0]
            mask = torch.triu(torch.full((d1, d2), float("-inf")), 1 + abs(d2 - d1))[:d1, :d2]
        if x_k is None:
            x = self.self_attn(x, x, x, mask)
        else:
            x = self.self_attn(x, self.layer_norms[0](x_k), self.layer_norms[0](x_v), mask)
        x = residual + F.dropout(x, self.res_dropout, self.training)
        residual = x
        x = F.dropout(F.relu(self.fc1(self.layer_norms[1](x))), self.relu_dropout, self.training)
        return residual + F.dropout(self.fc2(x), self.res_dropout, self.training)


class RefEncoder(nn.Module):
    def __init__(self, d, heads, layers, attn_mask=True, attn_dropout=0.0, relu_dropout=0.0,
                 res_dropout=0.0, embed_dropout=0.0):
        super().__init__()
        self.scale, self.embed_dropout = math.sqrt(d), embed_dropout
        self.layers = nn.ModuleList([RefLayer(d, heads, attn_mask, attn_dropout, relu_dropout,
                                              res_dropout) for _ in range(layers)])
        self.layer_norm = nn.LayerNorm(d)

    def forward(self, x_in, x_in_k=None, x_in_v=None):
        drop = lambda t: F.dropout(t, self.embed_dropout, self.training)  # noqa: E731
        x = drop(self.scale * x_in + _ref_positions(x_in))
        if x_in_k is not None:
            x_k = drop(self.scale * x_in_k + _ref_positions(x_in_k))
            x_v = drop(self.scale * x_in_v + _ref_positions(x_in_v))
        for layer in self.layers:
            x = layer(x, x_k, x_v) if x_in_k is not None else layer(x)
        return self.layer_norm(x)


class RefMULT(nn.Module):
    """yaohungt's MULTModel; ``dropout`` (our config's keys, all 0 by default) adds its dropouts:
    text input, embedding, attention by source modality (memories: ``attn_dropout``), relu,
    residual and output, where the reference applies them."""

    def __init__(self, orig=(300, 5, 20), d=30, heads=5, layers=5, kernels=(1, 1, 1),
                 dropout=None):
        super().__init__()
        p = {"text_dropout": 0.0, "embed_dropout": 0.0, "attn_dropout": 0.0,
             "attn_dropout_audio": 0.0, "attn_dropout_vision": 0.0, "relu_dropout": 0.0,
             "res_dropout": 0.0, "out_dropout": 0.0, **(dropout or {})}
        self.text_dropout, self.out_dropout = p["text_dropout"], p["out_dropout"]
        common = {"relu_dropout": p["relu_dropout"], "res_dropout": p["res_dropout"],
                  "embed_dropout": p["embed_dropout"]}
        by_source = {"l": p["attn_dropout"], "a": p["attn_dropout_audio"],
                     "v": p["attn_dropout_vision"]}
        self.proj_l = nn.Conv1d(orig[0], d, kernel_size=kernels[0], padding=0, bias=False)
        self.proj_a = nn.Conv1d(orig[1], d, kernel_size=kernels[1], padding=0, bias=False)
        self.proj_v = nn.Conv1d(orig[2], d, kernel_size=kernels[2], padding=0, bias=False)
        for name in ("l_with_a", "l_with_v", "a_with_l", "a_with_v", "v_with_l", "v_with_a"):
            setattr(self, f"trans_{name}", RefEncoder(d, heads, layers,
                                                      attn_dropout=by_source[name[-1]], **common))
        for m in "lav":
            setattr(self, f"trans_{m}_mem", RefEncoder(2 * d, heads, max(layers, 3),
                                                       attn_dropout=p["attn_dropout"], **common))
        self.proj1, self.proj2 = nn.Linear(6 * d, 6 * d), nn.Linear(6 * d, 6 * d)
        self.out_layer = nn.Linear(6 * d, 1)

    def forward(self, x_l, x_a, x_v):
        x_l = F.dropout(x_l, self.text_dropout, self.training)
        l, a, v = (p(x.transpose(1, 2)).permute(2, 0, 1)
                   for p, x in ((self.proj_l, x_l), (self.proj_a, x_a), (self.proj_v, x_v)))
        h_l = self.trans_l_mem(torch.cat([self.trans_l_with_a(l, a, a),
                                          self.trans_l_with_v(l, v, v)], 2))
        h_a = self.trans_a_mem(torch.cat([self.trans_a_with_l(a, l, l),
                                          self.trans_a_with_v(a, v, v)], 2))
        h_v = self.trans_v_mem(torch.cat([self.trans_v_with_l(v, l, l),
                                          self.trans_v_with_a(v, a, a)], 2))
        last = torch.cat([h_l[-1], h_a[-1], h_v[-1]], dim=1)
        hidden = F.dropout(F.relu(self.proj1(last)), self.out_dropout, self.training)
        return self.out_layer(self.proj2(hidden) + last).squeeze(-1)


_NAMES = {"l": "text", "a": "audio", "v": "vision"}


def _our_name(ref_name: str) -> str:
    head, _, rest = ref_name.partition(".")
    if head.startswith("proj_"):
        return f"fusion.proj.{_NAMES[head[-1]]}.{rest}"
    if head.endswith("_mem"):
        return f"fusion.memory.{_NAMES[head[6]]}.{rest}"
    if head.startswith("trans_"):
        x, y = head[6], head[-1]
        return f"fusion.cross.{_NAMES[x]}<-{_NAMES[y]}.{rest}"
    return ref_name


MOSI_GLOVE = {"text": 300, "audio": 5, "vision": 20}


@pytest.mark.parametrize("d,heads,layers,kernels", [
    (30, 5, 5, (1, 1, 1)),     # the reference code: d fixed at 30, main.py defaults
    (40, 10, 4, (1, 1, 1)),    # paper Table 5, CMU-MOSI, with the code's kernel 1
    (40, 10, 4, (1, 3, 3)),    # paper Table 5, CMU-MOSI (our defaults): text 1 / audio 3 / vision 3
])
def test_parameter_count_matches_reference(d, heads, layers, kernels):
    ref = RefMULT(d=d, heads=heads, layers=layers, kernels=kernels)
    ours = _method(MOSI_GLOVE, dim=d, num_heads=heads, num_layers=layers,
                   kernel_sizes=dict(zip(("text", "audio", "vision"), kernels)))
    n_ref = sum(p.numel() for p in ref.parameters())
    assert ours.num_parameters() == n_ref
    mapped = {_our_name(k): v.shape for k, v in ref.state_dict().items()}
    assert mapped == {k: v.shape for k, v in ours.state_dict().items()}
    # by hand: encoder(w, L) = L * (12 w^2 + 13 w) + 2 w; 6 encoder(d, layers) +
    # 3 encoder(2d, max(layers, 3)) + convs d * sum(D_m k_m) + head 2 (36 d^2 + 6 d) + 6 d + 1
    expected = {(30, (1, 1, 1)): 1_071_211, (40, (1, 1, 1)): 1_537_241,
                (40, (1, 3, 3)): 1_539_241}
    assert n_ref == expected[(d, kernels)]


def test_outputs_match_reference_on_unpadded_inputs():
    torch.manual_seed(0)
    ref = RefMULT(d=12, heads=3, layers=2).eval()
    ours = _method(MOSI_GLOVE, dim=12, num_heads=3, num_layers=2,
                   kernel_sizes={m: 1 for m in MOSI_GLOVE}).eval()
    state = {_our_name(k): v for k, v in ref.state_dict().items()}
    ours.load_state_dict(state, strict=True)
    feats, _, lengths = _inputs(MOSI_GLOVE, LENS, batch=3, full=True)
    with torch.no_grad():
        expected = ref(feats["text"], feats["audio"], feats["vision"])
        got = ours(_batch(feats, lengths))["pred"]
    assert torch.allclose(got, expected, atol=1e-5), (got, expected)


# --------------------------------------------------------------------------------------------
def test_defaults_scheduler_and_dataset_overlays():
    cfg = resolve(MulT, "mosi")
    assert cfg["train"]["batch_size"] == 128 and cfg["train"]["grad_clip"] == 0.8
    model = cfg["model"]
    assert (model["dim"], model["num_layers"], model["num_heads"]) == (40, 4, 10)
    assert resolve(MulT, "mosei")["model"]["num_heads"] == 8
    assert resolve(MulT, "chsims")["model"]["dim"] == 50
    assert "Table 5" in MulT.meta.defaults_source
    m = _method(DIMS, **SMALL)
    opt = m.configure_optimizer({"lr": 1e-3, "weight_decay": 0.0})
    schedule = m.configure_scheduler(opt, {}, 10)
    assert schedule.interval == "epoch" and schedule.monitor == "valid_loss"
    sched = schedule.scheduler
    assert isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert sched.patience == 20 and sched.factor == 0.1 and sched.mode == "min"
    assert _method(DIMS, **SMALL, lr_patience=0).configure_scheduler(opt, {}, 10) is None


def test_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    m = _method(DIMS, **SMALL, **NO_DROPOUT).train()
    feats, _, lengths = _inputs(batch=16, seed=1)
    g = torch.Generator().manual_seed(2)
    batch = _batch(feats, lengths, labels=torch.rand(16, generator=g) * 6 - 3)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss, _ = m.training_step(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 0.8)
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.3 * losses[0], losses[::10]


def test_runner_end_to_end(tmp_path):
    overrides = [f"data.options.{k}={v}" for k, v in TINY_SYNTH.items()] + [
        "train.epochs=2", "train.batch_size=32", "model.dim=8", "model.num_heads=2",
        "model.num_layers=1"]
    spec = RunSpec(method="mult", dataset="synthetic-mosi", seeds=[1], overrides=overrides,
                   out=tmp_path / "results", quiet=True)
    [outcome] = run(spec, progress=Progress(quiet=True))
    res = json.loads(outcome.path.read_text())
    assert outcome.path.parent.name.startswith("mult@")
    assert res["config"]["model"]["dim"] == 8 and res["config"]["train"]["grad_clip"] == 0.8
    assert len(res["history"]) == 2 and res["parameters"]["trainable"] > 0
    assert set(res["metrics"]["test"]) >= {"mae", "corr", "acc7"}
    assert math.isfinite(res["metrics"]["test"]["mae"])


def test_reference_dropouts_sit_where_ours_do(monkeypatch):
    """bench_reference.py compares against RefMULT *with our dropouts*; that is fair only if
    every dropout is applied at the same place. Dropout is made deterministic (a plain
    ``x * (1 - p)``, attention weights included: our CPU attention kernel draws its own mask,
    which is made to drop nothing and scale by ``1 - p``), so the two train-mode outputs must
    agree exactly; a dropout missing or misplaced on either side changes the output."""
    import msabench_builtins.fusions._transformer as tr

    def fixed_dropout(x, p=0.5, training=True, inplace=False):
        return x * (1.0 - p) if training else x

    def fixed_attention_dropout(shape, p, generator, device):
        return torch.zeros(shape, dtype=torch.bool, device=device), 1.0 - p

    def no_sdpa_dropout(q, k, v, mask, dropout):  # the kernel must not be used with dropout
        assert dropout == 0.0
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    monkeypatch.setattr(F, "dropout", fixed_dropout)
    monkeypatch.setattr(tr, "_dropped", fixed_attention_dropout)
    monkeypatch.setattr(tr, "_sdpa", no_sdpa_dropout)
    rates = {"text_dropout": 0.1, "embed_dropout": 0.15, "attn_dropout": 0.2,
             "attn_dropout_audio": 0.25, "attn_dropout_vision": 0.3, "relu_dropout": 0.35,
             "res_dropout": 0.4, "out_dropout": 0.45}   # all different: a swap shows
    torch.manual_seed(0)
    ref = RefMULT(d=12, heads=3, layers=2, dropout=rates).train()
    ours = _method(MOSI_GLOVE, dim=12, num_heads=3, num_layers=2,
                   kernel_sizes={m: 1 for m in MOSI_GLOVE}, **rates).train()
    ours.load_state_dict({_our_name(k): v for k, v in ref.state_dict().items()}, strict=True)
    feats, _, lengths = _inputs(MOSI_GLOVE, LENS, batch=3, full=True)
    with torch.no_grad():
        expected = ref(feats["text"], feats["audio"], feats["vision"])
        got = ours(_batch(feats, lengths))["pred"]
        plain = ref.eval()(feats["text"], feats["audio"], feats["vision"])
    assert not torch.allclose(expected, plain, atol=1e-3)  # the dropouts do act
    assert torch.allclose(got, expected, atol=1e-5), (got, expected)
