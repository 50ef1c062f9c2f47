"""TFN, LMF and EF-LSTM baselines: shapes, parameter counts and outputs against independent
re-implementations of thuiar/MMSA's modules, masking, ablations, training, and runs end to end.

The ``reference_*`` modules below are written from MMSA's code (models/singleTask/TFN.py,
LMF.py, EF_LSTM.py, models/subNets/FeatureNets.py) in its own layout and argument order
(hidden_dims text/audio/video, dropouts audio/video/text/post-fusion), without importing
msabench's implementation.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from msabench.api import Batch, Components, DataInfo, DatasetMeta
from msabench.config import method_defaults
from msabench.errors import ConfigError, DataError
from msabench.plugins import get_registry
from msabench.runner import Progress, RunSpec, run
from tests.conftest import TINY_SYNTH

QUIET = Progress(quiet=True)
MOSI = DatasetMeta(name="mosi-like", title="MOSI-shaped", language="en", label_range=(-3.0, 3.0),
                   convention="mosi")
SIMS = DatasetMeta(name="sims-like", title="SIMS-shaped", language="zh", label_range=(-1.0, 1.0),
                   convention="sims")
# MMSA datasetCommonParams feature_dims (text, audio, video) and our dataset names
FEATURE_DIMS = {"mosi": (768, 5, 20), "mosei": (768, 74, 35), "chsims": (768, 33, 709),
                "chsims2": (768, 33, 709)}
MMSA_KEY = {"mosi": "mosi", "mosei": "mosei", "chsims": "sims", "chsims2": "simsv2"}
# thuiar/MMSA src/MMSA/config/config_regression.json @15f24e75, as written there
MMSA_CONFIG = {
    "tfn": {
        "mosi": {"hidden_dims": [128, 32, 128], "text_out": 32, "post_fusion_dim": 64,
                 "dropouts": [0.3, 0.3, 0.3, 0.5], "batch_size": 32, "learning_rate": 0.001},
        "mosei": {"hidden_dims": [128, 16, 128], "text_out": 128, "post_fusion_dim": 16,
                  "dropouts": [0.4, 0.4, 0.4, 0.4], "batch_size": 128, "learning_rate": 0.005},
        "sims": {"hidden_dims": [128, 32, 128], "text_out": 256, "post_fusion_dim": 32,
                 "dropouts": [0.4, 0.4, 0.4, 0.4], "batch_size": 32, "learning_rate": 0.0005},
        "simsv2": {"hidden_dims": [128, 32, 128], "text_out": 128, "post_fusion_dim": 32,
                   "dropouts": [0.3, 0.3, 0.3, 0.5], "batch_size": 128, "learning_rate": 0.002},
    },
    "lmf": {
        "mosi": {"hidden_dims": [128, 16, 128], "dropouts": [0.3, 0.3, 0.3, 0.3], "rank": 3,
                 "batch_size": 64, "learning_rate": 0.001, "factor_lr": 0.001,
                 "weight_decay": 0.005},
        "mosei": {"hidden_dims": [128, 16, 128], "dropouts": [0.2, 0.2, 0.2, 0.2], "rank": 4,
                  "batch_size": 32, "learning_rate": 0.001, "factor_lr": 0.001,
                  "weight_decay": 0.001},
        "sims": {"hidden_dims": [64, 16, 64], "dropouts": [0.2, 0.2, 0.2, 0.2], "rank": 4,
                 "batch_size": 64, "learning_rate": 0.002, "factor_lr": 0.0005,
                 "weight_decay": 0.005},
        "simsv2": {"hidden_dims": [64, 32, 64], "dropouts": [0.3, 0.3, 0.3, 0.5], "rank": 4,
                   "batch_size": 32, "learning_rate": 0.002, "factor_lr": 0.0005,
                   "weight_decay": 0.0001},
    },
    "ef-lstm": {
        "mosi": {"hidden_dims": 128, "num_layers": 4, "dropout": 0.5, "batch_size": 32,
                 "learning_rate": 0.001, "weight_decay": 0.005},
        "mosei": {"hidden_dims": 256, "num_layers": 2, "dropout": 0.4, "batch_size": 128,
                  "learning_rate": 0.005, "weight_decay": 0.0001},
        "sims": {"hidden_dims": 32, "num_layers": 3, "dropout": 0.5, "batch_size": 128,
                 "learning_rate": 0.0005, "weight_decay": 0.001},
        "simsv2": {"hidden_dims": 128, "num_layers": 3, "dropout": 0.2, "batch_size": 32,
                   "learning_rate": 0.0005, "weight_decay": 0.0},
    },
}


# ------------------------------------------------------------------ independent references
class RefSubNet(nn.Module):
    def __init__(self, in_size, hidden_size, dropout):
        super().__init__()
        self.norm = nn.BatchNorm1d(in_size)
        self.drop = nn.Dropout(p=dropout)
        self.linear_1 = nn.Linear(in_size, hidden_size)
        self.linear_2 = nn.Linear(hidden_size, hidden_size)
        self.linear_3 = nn.Linear(hidden_size, hidden_size)

    def forward(self, x):
        y = F.relu(self.linear_1(self.drop(self.norm(x))))
        return F.relu(self.linear_3(F.relu(self.linear_2(y))))


class RefTextSubNet(nn.Module):
    def __init__(self, in_size, hidden_size, out_size, num_layers=1, dropout=0.2):
        super().__init__()
        if num_layers == 1:
            dropout = 0.0
        self.rnn = nn.LSTM(in_size, hidden_size, num_layers=num_layers, dropout=dropout,
                           batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.linear_1 = nn.Linear(hidden_size, out_size)

    def forward(self, x):
        _, final_states = self.rnn(x)
        return self.linear_1(self.dropout(final_states[0].squeeze(0)))


class RefTFN(nn.Module):
    def __init__(self, feature_dims, hidden_dims, text_out, dropouts, post_fusion_dim):
        super().__init__()
        self.text_in, self.audio_in, self.video_in = feature_dims
        self.text_hidden, self.audio_hidden, self.video_hidden = hidden_dims
        self.audio_prob, self.video_prob, self.text_prob, self.post_fusion_prob = dropouts
        self.audio_subnet = RefSubNet(self.audio_in, self.audio_hidden, self.audio_prob)
        self.video_subnet = RefSubNet(self.video_in, self.video_hidden, self.video_prob)
        self.text_subnet = RefTextSubNet(self.text_in, self.text_hidden, text_out,
                                         dropout=self.text_prob)
        self.post_fusion_dropout = nn.Dropout(p=self.post_fusion_prob)
        self.post_fusion_layer_1 = nn.Linear(
            (text_out + 1) * (self.video_hidden + 1) * (self.audio_hidden + 1), post_fusion_dim)
        self.post_fusion_layer_2 = nn.Linear(post_fusion_dim, post_fusion_dim)
        self.post_fusion_layer_3 = nn.Linear(post_fusion_dim, 1)
        self.output_range = nn.Parameter(torch.FloatTensor([6]), requires_grad=False)
        self.output_shift = nn.Parameter(torch.FloatTensor([-3]), requires_grad=False)

    def forward(self, text_x, audio_x, video_x):
        audio_h = self.audio_subnet(audio_x.squeeze(1))
        video_h = self.video_subnet(video_x.squeeze(1))
        text_h = self.text_subnet(text_x)
        b = audio_h.shape[0]
        one = torch.ones(b, 1)
        _a, _v, _t = (torch.cat((one, h), 1) for h in (audio_h, video_h, text_h))
        fusion = torch.bmm(_a.unsqueeze(2), _v.unsqueeze(1))
        fusion = fusion.view(-1, (self.audio_hidden + 1) * (self.video_hidden + 1), 1)
        fusion = torch.bmm(fusion, _t.unsqueeze(1)).view(b, -1)
        y = F.relu(self.post_fusion_layer_1(self.post_fusion_dropout(fusion)))
        y = self.post_fusion_layer_3(F.relu(self.post_fusion_layer_2(y)))
        return torch.sigmoid(y) * self.output_range + self.output_shift


class RefLMF(nn.Module):
    def __init__(self, feature_dims, hidden_dims, dropouts, rank):
        super().__init__()
        text_in, audio_in, video_in = feature_dims
        text_hidden, audio_hidden, video_hidden = hidden_dims
        text_out = text_hidden // 2
        a_p, v_p, t_p, _ = dropouts
        self.audio_subnet = RefSubNet(audio_in, audio_hidden, a_p)
        self.video_subnet = RefSubNet(video_in, video_hidden, v_p)
        self.text_subnet = RefTextSubNet(text_in, text_hidden, text_out, dropout=t_p)
        self.audio_factor = nn.Parameter(torch.Tensor(rank, audio_hidden + 1, 1))
        self.video_factor = nn.Parameter(torch.Tensor(rank, video_hidden + 1, 1))
        self.text_factor = nn.Parameter(torch.Tensor(rank, text_out + 1, 1))
        self.fusion_weights = nn.Parameter(torch.Tensor(1, rank))
        self.fusion_bias = nn.Parameter(torch.Tensor(1, 1))
        for p in (self.audio_factor, self.video_factor, self.text_factor, self.fusion_weights):
            nn.init.xavier_normal_(p)
        self.fusion_bias.data.fill_(0)

    def forward(self, text_x, audio_x, video_x):
        audio_h = self.audio_subnet(audio_x.squeeze(1))
        video_h = self.video_subnet(video_x.squeeze(1))
        text_h = self.text_subnet(text_x)
        one = torch.ones(audio_h.shape[0], 1)
        _a, _v, _t = (torch.cat((one, h), 1) for h in (audio_h, video_h, text_h))
        zy = (torch.matmul(_a, self.audio_factor) * torch.matmul(_v, self.video_factor)
              * torch.matmul(_t, self.text_factor))
        out = torch.matmul(self.fusion_weights, zy.permute(1, 0, 2)).squeeze() + self.fusion_bias
        return out.view(-1, 1)


class RefEFLSTM(nn.Module):
    def __init__(self, feature_dims, seq_len, hidden_size, num_layers, dropout):
        super().__init__()
        self.norm = nn.BatchNorm1d(seq_len)
        self.lstm = nn.LSTM(sum(feature_dims), hidden_size, num_layers=num_layers,
                            dropout=dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden_size, hidden_size)
        self.out = nn.Linear(hidden_size, 1)

    def forward(self, text_x, audio_x, video_x):
        x = self.norm(torch.cat([text_x, audio_x, video_x], dim=-1))
        _, final_states = self.lstm(x)
        x = self.dropout(final_states[0][-1])
        return self.out(self.dropout(F.relu(self.linear(x))))


def reference_tfn(dataset: str) -> RefTFN:
    c = MMSA_CONFIG["tfn"][MMSA_KEY[dataset]]
    return RefTFN(FEATURE_DIMS[dataset], c["hidden_dims"], c["text_out"], c["dropouts"],
                  c["post_fusion_dim"])


def reference_lmf(dataset: str) -> RefLMF:
    c = MMSA_CONFIG["lmf"][MMSA_KEY[dataset]]
    return RefLMF(FEATURE_DIMS[dataset], c["hidden_dims"], c["dropouts"], c["rank"])


def reference_ef_lstm(dataset: str, seq_len: int = 50) -> RefEFLSTM:
    c = MMSA_CONFIG["ef-lstm"][MMSA_KEY[dataset]]
    return RefEFLSTM(FEATURE_DIMS[dataset], seq_len, c["hidden_dims"], c["num_layers"],
                     c["dropout"])


def mmsa_count(model: nn.Module) -> int:
    """MMSA's utils count_parameters: trainable parameters only."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ------------------------------------------------------------------------------ helpers
def info_for(dims, lengths, *, meta=MOSI, aligned=False) -> DataInfo:
    return DataInfo(meta=meta, setting="test", modalities=tuple(dims), feature_dims=dict(dims),
                    max_lengths=dict(lengths), aligned=aligned, has_unimodal_labels=False,
                    has_texts=False)


def build(method: str, info: DataInfo, dataset: str = "mosi", **model):
    cls = get_registry().load("method", method)
    config = method_defaults(cls, dataset)["model"]
    config.update(model)
    return cls(info, config, Components(get_registry()))


def make_batch(dims, steps, lengths, seed=0, labels=None) -> Batch:
    g = torch.Generator().manual_seed(seed)
    n = len(next(iter(lengths.values())))
    feats = {}
    for m, d in dims.items():
        x = torch.randn(n, steps[m], d, generator=g)
        valid = torch.arange(steps[m]).unsqueeze(0) < lengths[m].unsqueeze(1)
        feats[m] = x * valid.unsqueeze(-1)
    label = labels if labels is not None else torch.rand(n, generator=g) * 6 - 3
    return Batch(ids=[str(i) for i in range(n)], features=feats,
                 lengths={m: torch.as_tensor(v) for m, v in lengths.items()},
                 label=label, labelled=torch.ones(n, dtype=torch.bool))


def scramble_padding(batch: Batch, seed=1) -> Batch:
    g = torch.Generator().manual_seed(seed)
    feats = {}
    for m, x in batch.features.items():
        pad = ~batch.mask(m)
        feats[m] = torch.where(pad.unsqueeze(-1), 100 * torch.randn(x.shape, generator=g), x)
    return Batch(ids=batch.ids, features=feats, lengths=batch.lengths, label=batch.label,
                 labelled=batch.labelled)


SMALL = {"text": 12, "audio": 5, "vision": 7}
UNALIGNED_STEPS = {"text": 8, "audio": 12, "vision": 10}


def unaligned_lengths(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randint(1, t + 1, (n,), generator=g) for m, t in UNALIGNED_STEPS.items()}


# ------------------------------------------------------------------ defaults and counts
@pytest.mark.parametrize("method", ["tfn", "lmf", "ef-lstm"])
@pytest.mark.parametrize("dataset", ["mosi", "mosei", "chsims", "chsims2", "synthetic-mosi"])
def test_defaults_are_mmsa_config_regression(method, dataset):
    cls = get_registry().load("method", method)
    cfg = method_defaults(cls, dataset)
    c = MMSA_CONFIG[method][MMSA_KEY.get(dataset, "mosi")]
    train, model = cfg["train"], cfg["model"]
    assert train["batch_size"] == c["batch_size"] and train["lr"] == c["learning_rate"]
    assert train["patience"] == 8 and train["select"] == "loss"
    assert train["weight_decay"] == c.get("weight_decay", 0.0)
    if method == "ef-lstm":
        assert (model["hidden"], model["num_layers"], model["dropout"]) == (
            c["hidden_dims"], c["num_layers"], c["dropout"])
        return
    t, a, v = c["hidden_dims"]
    da, dv, _text_dropout_unused_by_mmsa, dp = c["dropouts"]
    assert model["hidden"] == {"text": t, "audio": a, "vision": v}
    assert model["dropout"] == {"text": 0.0, "audio": da, "vision": dv}
    if method == "tfn":
        assert model["text_out"] == c["text_out"] and model["post_fusion_dim"] == c["post_fusion_dim"]
        assert model["post_fusion_dropout"] == dp
    else:
        assert model["rank"] == c["rank"] and model["factor_lr"] == c["factor_lr"]
    assert "MMSA" in cls.meta.defaults_source and "config_regression.json" in cls.meta.defaults_source


@pytest.mark.parametrize("dataset", ["mosi", "mosei", "chsims", "chsims2"])
def test_parameter_counts_match_reference(dataset):
    t, a, v = FEATURE_DIMS[dataset]
    dims = {"text": t, "audio": a, "vision": v}
    meta = MOSI if dataset.startswith("mos") else SIMS
    info = info_for(dims, {"text": 50, "audio": 375, "vision": 500}, meta=meta)
    tfn = build("tfn", info, dataset)
    assert tfn.num_parameters() == mmsa_count(reference_tfn(dataset))
    lmf = build("lmf", info, dataset)
    ref = reference_lmf(dataset)
    assert lmf.num_parameters(trainable_only=False) == mmsa_count(ref)
    # MMSA's optimiser never updates fusion_weights (1 x rank) and fusion_bias (1 x 1)
    rank = MMSA_CONFIG["lmf"][MMSA_KEY[dataset]]["rank"]
    assert lmf.num_parameters() == mmsa_count(ref) - rank - 1
    aligned = info_for(dims, {m: 50 for m in dims}, meta=meta, aligned=True)
    assert build("ef-lstm", aligned, dataset).num_parameters() == mmsa_count(
        reference_ef_lstm(dataset))
    if dataset == "mosi":  # the numbers quoted in the report
        assert tfn.num_parameters() == 9_497_043
        assert lmf.num_parameters(trainable_only=False) == 505_071


# ------------------------------------------------------------- outputs equal the reference
def _copy_subnet(ours, ref, lstm: bool):
    if lstm:
        ref.rnn.load_state_dict(ours.rnn.state_dict())
        ref.linear_1.load_state_dict(ours.linear.state_dict())
    else:
        ref.norm.load_state_dict(ours.norm.state_dict())
        for i, layer in enumerate((ref.linear_1, ref.linear_2, ref.linear_3)):
            layer.load_state_dict(ours.mlp[2 * i].state_dict())


def _utterance_batch(n=5, t_len=6, seed=0):
    """Audio/vision one step each (MMSA feeds their time mean), text at full length."""
    g = torch.Generator().manual_seed(seed)
    feats = {"text": torch.randn(n, t_len, SMALL["text"], generator=g),
             "audio": torch.randn(n, 1, SMALL["audio"], generator=g),
             "vision": torch.randn(n, 1, SMALL["vision"], generator=g)}
    lengths = {"text": torch.full((n,), t_len), "audio": torch.ones(n, dtype=torch.long),
               "vision": torch.ones(n, dtype=torch.long)}
    return Batch(ids=[str(i) for i in range(n)], features=feats, lengths=lengths,
                 label=torch.zeros(n), labelled=torch.ones(n, dtype=torch.bool))


def test_tfn_output_equals_reference_with_the_same_weights():
    torch.manual_seed(0)
    hidden = {"text": 6, "audio": 3, "vision": 4}
    ours = build("tfn", info_for(SMALL, {"text": 6, "audio": 1, "vision": 1}), hidden=hidden,
                 text_out=5, post_fusion_dim=7).eval()
    ref = RefTFN((SMALL["text"], SMALL["audio"], SMALL["vision"]), (6, 3, 4), 5,
                 (0.3, 0.3, 0.3, 0.5), 7).eval()
    sub = ours.fusion.subnets
    _copy_subnet(sub["text"], ref.text_subnet, lstm=True)
    _copy_subnet(sub["audio"], ref.audio_subnet, lstm=False)
    _copy_subnet(sub["vision"], ref.video_subnet, lstm=False)
    first = ours.post_fusion[1]
    # ours flattens text x audio x vision, MMSA audio x video x text: permute the input axis
    w = first.weight.detach().view(7, 6, 4, 5).permute(0, 2, 3, 1).reshape(7, -1)
    ref.post_fusion_layer_1.weight.data.copy_(w)
    ref.post_fusion_layer_1.bias.data.copy_(first.bias.detach())
    ref.post_fusion_layer_2.load_state_dict(ours.post_fusion[3].state_dict())
    ref.post_fusion_layer_3.load_state_dict(ours.post_fusion[5].state_dict())
    batch = _utterance_batch()
    expected = ref(batch.features["text"], batch.features["audio"], batch.features["vision"])
    assert torch.allclose(ours(batch)["pred"], expected.squeeze(-1), atol=1e-5)


def test_lmf_output_equals_reference_with_the_same_weights():
    torch.manual_seed(0)
    ours = build("lmf", info_for(SMALL, {"text": 6, "audio": 1, "vision": 1}),
                 hidden={"text": 8, "audio": 3, "vision": 4}, rank=2).eval()
    ref = RefLMF((SMALL["text"], SMALL["audio"], SMALL["vision"]), (8, 3, 4),
                 (0.3, 0.3, 0.3, 0.3), 2).eval()
    f = ours.fusion
    _copy_subnet(f.subnets["text"], ref.text_subnet, lstm=True)
    _copy_subnet(f.subnets["audio"], ref.audio_subnet, lstm=False)
    _copy_subnet(f.subnets["vision"], ref.video_subnet, lstm=False)
    for m, name in (("text", "text_factor"), ("audio", "audio_factor"), ("vision", "video_factor")):
        getattr(ref, name).data.copy_(f.factors[m].detach())
    ref.fusion_weights.data.copy_(f.fusion_weights.detach())
    ref.fusion_bias.data.copy_(torch.tensor([[0.25]]))
    f.fusion_bias.data.fill_(0.25)
    batch = _utterance_batch(seed=1)
    expected = ref(batch.features["text"], batch.features["audio"], batch.features["vision"])
    assert torch.allclose(ours(batch)["pred"], expected.squeeze(-1), atol=1e-5)


def test_ef_lstm_output_equals_reference_on_full_length_aligned_input():
    torch.manual_seed(0)
    steps = 6
    ours = build("ef-lstm", info_for(SMALL, {m: steps for m in SMALL}, aligned=True),
                 hidden=9, num_layers=2).eval()
    ref = RefEFLSTM((SMALL["text"], SMALL["audio"], SMALL["vision"]), steps, 9, 2, 0.5).eval()
    for name in ("norm", "lstm", "linear", "out"):
        getattr(ref, name).load_state_dict(getattr(ours, name).state_dict())
    lengths = {m: torch.full((4,), steps) for m in SMALL}
    batch = make_batch(SMALL, {m: steps for m in SMALL}, lengths, seed=2)
    expected = ref(batch.features["text"], batch.features["audio"], batch.features["vision"])
    assert torch.allclose(ours(batch)["pred"], expected.squeeze(-1), atol=1e-5)


# ----------------------------------------------------------------------- fusion mechanics
def test_tfn_outer_product_on_a_hand_example():
    fusion = get_registry().load("fusion", "tfn")({"text": 3, "audio": 2},
                                                   hidden={"text": 4, "audio": 2}, text_out=1)
    fused = fusion.fuse({"text": torch.tensor([[2.0]]), "audio": torch.tensor([[3.0, 4.0]])})
    # [1; 2] (x) [1; 3; 4]
    assert fused.tolist() == [[1.0, 3.0, 4.0, 2.0, 6.0, 8.0]]
    assert fusion.output_dim == 2 * 3


def test_tfn_fusion_is_the_kronecker_product_of_one_augmented_vectors():
    torch.manual_seed(0)
    fusion = get_registry().load("fusion", "tfn")(
        SMALL, hidden={"text": 5, "audio": 3, "vision": 4}, text_out=2).eval()
    batch = make_batch(SMALL, UNALIGNED_STEPS, unaligned_lengths(n=3))
    hidden = fusion.encode(batch.features, batch.masks())
    fused = fusion(batch.features, batch.masks())
    assert fused.shape == (3, 3 * 4 * 5) and fusion.output_dim == 60
    for i in range(3):
        one = [torch.cat([torch.ones(1), hidden[m][i]]) for m in ("text", "audio", "vision")]
        assert torch.allclose(fused[i], torch.kron(torch.kron(one[0], one[1]), one[2]))


def test_lmf_fusion_equals_low_rank_weights_applied_to_the_tfn_tensor():
    torch.manual_seed(0)
    lmf = get_registry().load("fusion", "lmf")(
        SMALL, hidden={"text": 4, "audio": 3, "vision": 2}, rank=3, output_dim=2).eval()
    h = {"text": torch.randn(4, 2), "audio": torch.randn(4, 3), "vision": torch.randn(4, 2)}
    z = {m: torch.cat([torch.ones(4, 1), x], 1) for m, x in h.items()}
    tensor = torch.einsum("bi,bj,bk->bijk", z["text"], z["audio"], z["vision"])
    f = lmf.factors
    weight = torch.einsum("r,rio,rjo,rko->ijko", lmf.fusion_weights[0], f["text"], f["audio"],
                          f["vision"])
    expected = torch.einsum("bijk,ijko->bo", tensor, weight) + lmf.fusion_bias
    assert torch.allclose(lmf.fuse(h), expected, atol=1e-5)
    assert lmf.fuse(h).shape == (4, 2) and lmf.output_dim == 2


@pytest.mark.parametrize("method,kw", [
    ("tfn", {"hidden": {"text": 6, "audio": 3, "vision": 4}, "text_out": 3}),
    ("lmf", {"hidden": {"text": 6, "audio": 3, "vision": 4}}),
])
def test_padding_is_ignored_and_unaligned_input_works(method, kw):
    torch.manual_seed(0)
    model = build(method, info_for(SMALL, UNALIGNED_STEPS), **kw).eval()
    batch = make_batch(SMALL, UNALIGNED_STEPS, unaligned_lengths())
    with torch.no_grad():
        pred = model(batch)["pred"]
        assert pred.shape == (6,) and torch.isfinite(pred).all()
        assert torch.equal(model(scramble_padding(batch))["pred"], pred)
        changed = make_batch(SMALL, UNALIGNED_STEPS, unaligned_lengths(), seed=5)
        assert not torch.allclose(model(changed)["pred"], pred)  # valid steps do matter
    if method == "tfn":
        assert bool(((pred > -3) & (pred < 3)).all())
        sims = build("tfn", info_for(SMALL, UNALIGNED_STEPS, meta=SIMS), **kw).eval()
        with torch.no_grad():
            assert bool((sims(batch)["pred"].abs() < 1).all())  # scaled to the label range


@pytest.mark.parametrize("norm", ["time", "feature", "none"])
def test_ef_lstm_ignores_padding(norm):
    torch.manual_seed(0)
    steps = {m: 8 for m in SMALL}
    model = build("ef-lstm", info_for(SMALL, steps, aligned=True), hidden=6, num_layers=2,
                  norm=norm).eval()
    lens = torch.tensor([8, 3, 5, 1])
    batch = make_batch(SMALL, steps, {m: lens for m in SMALL})
    with torch.no_grad():
        pred = model(batch)["pred"]
        assert pred.shape == (4,)
        assert torch.allclose(model(scramble_padding(batch))["pred"], pred, atol=1e-6)


def test_modality_ablations():
    two = {"text": SMALL["text"], "vision": SMALL["vision"]}
    steps = {m: UNALIGNED_STEPS[m] for m in two}
    lengths = {m: v for m, v in unaligned_lengths().items() if m in two}
    batch = make_batch(two, steps, lengths)
    tfn = build("tfn", info_for(two, steps))  # MOSI defaults: text_out 32, vision 128
    assert tfn.fusion.output_dim == 33 * 129
    lmf = build("lmf", info_for(two, steps))
    assert set(lmf.fusion.factors) == {"text", "vision"}
    av = {"audio": SMALL["audio"], "vision": SMALL["vision"]}
    ef = build("ef-lstm", info_for(av, {m: 8 for m in av}, aligned=True), hidden=6)
    assert ef.lstm.input_size == SMALL["audio"] + SMALL["vision"]
    av_batch = make_batch(av, {m: 8 for m in av}, {m: torch.tensor([8, 2, 4]) for m in av})
    for model, b in ((tfn, batch), (lmf, batch), (ef, av_batch)):
        assert model.eval()(b)["pred"].shape == (len(b),)


def test_partial_per_modality_tables_keep_the_other_defaults():
    # e.g. sf with --set model.fusion=tfn --set model.fusion_params.hidden.audio=3
    tfn = get_registry().load("fusion", "tfn")(SMALL, hidden={"audio": 3})
    assert tfn.sizes == {"text": 33, "audio": 4, "vision": 129}
    lmf = get_registry().load("fusion", "lmf")(SMALL, hidden={"text": 10})
    assert {m: f.shape[1] for m, f in lmf.factors.items()} == {"text": 6, "audio": 17,
                                                                 "vision": 129}


def test_bad_hyperparameters_are_clear_config_errors():
    with pytest.raises(ConfigError, match="hidden has no value for modality 'depth'"):
        build("tfn", info_for({"text": 4, "depth": 3}, {"text": 5, "depth": 5}))
    with pytest.raises(ConfigError, match="model.norm must be one of"):
        build("ef-lstm", info_for(SMALL, {m: 8 for m in SMALL}, aligned=True), norm="layer")
    with pytest.raises(ConfigError, match="first post-fusion layer would need"):
        build("tfn", info_for(SMALL, UNALIGNED_STEPS),
              hidden={"text": 8, "audio": 2048, "vision": 2048}, text_out=2048)
    with pytest.raises(ValueError, match="rank and output_dim must be >= 1"):  # fusion contract
        get_registry().load("fusion", "lmf")(SMALL, rank=0)


# ------------------------------------------------------------------------------ training
@pytest.mark.parametrize("method,kw,steps", [
    ("tfn", {"hidden": {"text": 16, "audio": 8, "vision": 8}, "text_out": 8}, UNALIGNED_STEPS),
    ("lmf", {"hidden": {"text": 16, "audio": 8, "vision": 8}, "factor_lr": 1e-2},
     UNALIGNED_STEPS),
    ("ef-lstm", {"hidden": 16, "num_layers": 2}, {m: 8 for m in SMALL}),
])
def test_loss_decreases_on_a_fixed_batch(method, kw, steps):
    torch.manual_seed(0)
    aligned = method == "ef-lstm"
    model = build(method, info_for(SMALL, steps, aligned=aligned), **kw)
    if aligned:
        shared = torch.randint(1, 9, (32,), generator=torch.Generator().manual_seed(0))
        lengths = {m: shared for m in SMALL}
    else:
        lengths = unaligned_lengths(n=32)
    batch = make_batch(SMALL, steps, lengths, seed=3)
    opt = model.configure_optimizer({"lr": 1e-2, "weight_decay": 0.0})
    losses = []
    for _ in range(40):
        loss, _logs = model.training_step(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses[::8]


def test_tfn_uses_the_cpu_fast_dropout_and_fused_adam_with_mmsa_settings():
    """The TFN speed-up (docs/baselines.md) is two swaps; both must stay in place, and the
    optimiser must still train every parameter with the configured lr and weight decay."""
    from msabench_builtins.nn import FastDropout

    model = build("tfn", info_for(SMALL, UNALIGNED_STEPS), post_fusion_dropout=0.2)
    assert isinstance(model.post_fusion[0], FastDropout) and model.post_fusion[0].p == 0.2
    opt = model.configure_optimizer({"lr": 5e-4, "weight_decay": 1e-4})
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["fused"] is True
    [group] = opt.param_groups
    assert group["lr"] == 5e-4 and group["weight_decay"] == 1e-4
    assert {id(q) for q in group["params"]} == {id(q) for q in model.parameters()}


def test_lmf_optimizer_groups_follow_mmsa():
    model = build("lmf", info_for(SMALL, UNALIGNED_STEPS))
    opt = model.configure_optimizer({"lr": 2e-3, "weight_decay": 5e-3})
    factors, others = opt.param_groups
    assert factors["lr"] == model.config["factor_lr"] and others["lr"] == 2e-3
    assert {id(p) for p in factors["params"]} == {id(p) for p in model.fusion.factors.values()}
    frozen = {id(model.fusion.fusion_weights), id(model.fusion.fusion_bias)}
    assert not frozen & {id(p) for p in others["params"]}
    trained = build("lmf", info_for(SMALL, UNALIGNED_STEPS), train_fusion_weights=True)
    assert trained.num_parameters() == trained.num_parameters(trainable_only=False)


# ------------------------------------------------------------------------------ end to end
def _spec(tmp_path, method, *extra, seeds=(1,)):
    overrides = [f"data.options.{k}={v}" for k, v in TINY_SYNTH.items()]
    return RunSpec(method=method, dataset="synthetic-mosi", seeds=list(seeds),
                   out=tmp_path / "results", quiet=True,
                   overrides=[*overrides, "train.epochs=2", *extra])


@pytest.mark.parametrize("method,extra", [
    ("tfn", ("model.hidden.vision=32", "model.text_out=16")),  # 7x smaller fused tensor
    ("lmf", ('data.modalities=["text","audio"]',)),
    ("ef-lstm", ('data.setting="aligned"',)),
])
def test_runs_end_to_end_on_tiny_synthetic_mosi(tmp_path, method, extra):
    [outcome] = run(_spec(tmp_path, method, *extra), progress=QUIET)
    assert outcome.status == "ran" and outcome.path.exists()
    res = json.loads(outcome.path.read_text())
    assert res["method"] == method and res["dataset"] == "synthetic-mosi"
    assert res["setting"] == ("aligned" if method == "ef-lstm" else "unaligned")
    assert res["epochs_run"] == 2 and res["parameters"]["trainable"] > 0
    assert {"mae", "corr", "acc2_has0"} <= set(res["metrics"]["test"])
    assert res["config"]["train"]["batch_size"] == MMSA_CONFIG[method]["mosi"]["batch_size"]
    if method == "tfn":  # a nested --set keeps the other per-modality defaults
        assert res["config"]["model"]["hidden"] == {"text": 128, "audio": 32, "vision": 32}
        assert res["parameters"]["trainable"] < 2_000_000
    if method == "lmf":  # the two-modality ablation
        assert res["config"]["data"]["modalities"] == ["text", "audio"]


def test_ef_lstm_refuses_unaligned_data(tmp_path):
    with pytest.raises(DataError, match="needs aligned .*choose an aligned setting"):
        run(_spec(tmp_path, "ef-lstm"), progress=QUIET)
    assert not list((tmp_path / "results").rglob("seed-*.json"))
