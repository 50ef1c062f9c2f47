"""``tfn``: Tensor Fusion (Zadeh et al., EMNLP 2017), following thuiar/MMSA's TFN.

Per modality a subnetwork (MMSA ``models/subNets/FeatureNets.py``) makes one vector ``h_m``:

- modalities in ``lstm_modalities`` (default: text), MMSA ``TextSubNet``: a one-layer LSTM over
  the valid steps (``pack_padded_sequence`` with the sample's length; MMSA runs it over the
  padding too), the final hidden state, Dropout, Linear(hidden -> ``text_out``);
- every other modality, MMSA ``SubNet``: the mean over the valid steps (MMSA's
  ``need_normalized`` averages over all padded steps), BatchNorm1d -> Dropout -> 3 x (Linear +
  ReLU) with ``hidden[m]`` units.

Each ``h_m`` gets a constant 1 (MMSA puts it first: ``[1; h_m]``) and the fused vector is the
flattened outer product of all of them, ``kron([1; h_1], [1; h_2], ...)`` in the order of
``input_dims`` (text, audio, vision for the built-in datasets; MMSA multiplies audio, video,
text, which is the same vector up to a fixed permutation). Any non-empty subset of modalities
works (modality ablations): ``output_dim = prod_m(out_m + 1)``.

Text dropout: MMSA's ``config_regression.json`` lists a text dropout (0.3 for MOSI), but its
``TextSubNet`` replaces it by 0.0 for a one-layer LSTM, so it never applied; the default here is
that effective 0.0 (``dropout.text = 0.3`` applies the listed value).

The subnetworks are shared with the ``lmf`` fusion.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import nn

from msabench.api import ComponentMeta, Fusion, masked_mean
from msabench.errors import ConfigError

from ..nn import lstm_final_hidden


class FusionParamError(ConfigError, ValueError):
    """A bad fusion hyperparameter: a ``ConfigError`` for the CLI, a ``ValueError`` as the
    Fusion contract asks."""


class PooledSubNet(nn.Module):
    """MMSA ``SubNet`` on the masked time mean: BatchNorm1d -> Dropout -> 3 x (Linear + ReLU)."""

    def __init__(self, in_size: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(in_size)
        self.drop = nn.Dropout(dropout)
        self.mlp = nn.Sequential(nn.Linear(in_size, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU())
        self.out_dim = hidden

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.drop(self.norm(masked_mean(x, mask))))


class LSTMSubNet(nn.Module):
    """MMSA ``TextSubNet``: LSTM over the valid steps -> final hidden -> Dropout -> Linear."""

    def __init__(self, in_size: int, hidden: int, out_size: int, dropout: float) -> None:
        super().__init__()
        self.rnn = nn.LSTM(in_size, hidden, num_layers=1, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden, out_size)
        self.out_dim = out_size

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # packed LSTM; an unrolled one inside a vectorised run's stacked forward (builtins nn.py)
        return self.linear(self.drop(lstm_final_hidden(self.rnn, x, mask.sum(1))))


def _per_modality(params: Mapping[str, Any], key: str, modalities: list[str], fusion: str,
                  cast: type) -> dict[str, Any]:
    table = params[key]
    if not isinstance(table, Mapping):
        raise FusionParamError(
            f"fusion {fusion}: {key} must be a table per modality, e.g. "
            f"{{text = 128, audio = 32, vision = 128}}; got {table!r}")
    missing = [m for m in modalities if m not in table]
    if missing:
        raise FusionParamError(
            f"fusion {fusion}: {key} has no value for modality {missing[0]!r} "
            f"(set {key}.{missing[0]}=...); it has {', '.join(sorted(table)) or 'none'}")
    return {m: cast(table[m]) for m in modalities}


def build_subnets(fusion: str, input_dims: Mapping[str, int], params: Mapping[str, Any],
                  text_out: Mapping[str, int] | None = None) -> nn.ModuleDict:
    """One subnetwork per modality from ``hidden``, ``dropout``, ``lstm_modalities`` and the
    LSTM output sizes ``text_out[m]`` (default ``params["text_out"]`` for every LSTM modality)."""
    modalities = list(input_dims)
    if not modalities:
        raise FusionParamError(f"fusion {fusion} needs at least one modality")
    hidden = _per_modality(params, "hidden", modalities, fusion, int)
    dropout = _per_modality(params, "dropout", modalities, fusion, float)
    lstm = params["lstm_modalities"]
    if isinstance(lstm, str) or not all(isinstance(m, str) for m in lstm):
        raise FusionParamError(f"fusion {fusion}: lstm_modalities must be a list of modality "
                               f"names, e.g. [\"text\"]; got {lstm!r}")
    for m in modalities:
        if hidden[m] < 1:
            raise FusionParamError(f"fusion {fusion}: hidden.{m} must be >= 1, got {hidden[m]}")
        if not 0.0 <= dropout[m] < 1.0:
            raise FusionParamError(
                f"fusion {fusion}: dropout.{m} must lie in [0, 1), got {dropout[m]}")
    nets = nn.ModuleDict()
    for m in modalities:
        if m in lstm:
            out = int(text_out[m]) if text_out is not None else int(params["text_out"])
            if out < 1:
                raise FusionParamError(f"fusion {fusion}: text_out must be >= 1, got {out}")
            nets[m] = LSTMSubNet(int(input_dims[m]), hidden[m], out, dropout[m])
        else:
            nets[m] = PooledSubNet(int(input_dims[m]), hidden[m], dropout[m])
    return nets


def merge_tables(defaults: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """Per-modality tables given in part (``hidden = {audio = 16}``) keep the other defaults."""
    out = dict(params)
    for key, value in params.items():
        if isinstance(value, Mapping) and isinstance(defaults.get(key), Mapping):
            out[key] = {**defaults[key], **value}
    return out


def encode_present(subnets: Mapping[str, nn.Module], order: list[str],
                   features: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor],
                   absent: frozenset[str] = frozenset()) -> dict[str, torch.Tensor]:
    """Each modality's subnet output ``h_m`` (TFN and LMF, before the 1 is appended); an
    ``absent`` modality's is zero, so ``[1; h_m]`` is the constant-1 part alone and its factor
    reduces to the modality-free term."""
    out = {m: subnets[m](features[m], masks[m]) for m in order if m not in absent}
    some = next(iter(out.values()))
    for m in absent:
        out[m] = some.new_zeros(some.shape[0], subnets[m].out_dim)
    return out


def with_one(h: torch.Tensor) -> torch.Tensor:
    """``[1; h]`` per row, as MMSA's TFN and LMF do."""
    return torch.cat([torch.ones_like(h[:, :1]), h], dim=1)


def outer_flatten(vectors: list[torch.Tensor]) -> torch.Tensor:
    """Row-wise Kronecker product of (B, d_i) tensors -> (B, prod d_i)."""
    fused = vectors[0]
    for v in vectors[1:]:
        fused = torch.bmm(fused.unsqueeze(2), v.unsqueeze(1)).flatten(1)
    return fused


class TensorFusion(Fusion):
    """TFN: per-modality subnets, append 1, N-way outer product, flatten (see module doc)."""

    name = "tfn"
    meta = ComponentMeta(
        summary="TFN tensor fusion: outer product of [1; h_m] over the modalities present",
        paper="Zadeh et al., Tensor Fusion Network for Multimodal Sentiment Analysis, EMNLP 2017",
        url="https://github.com/thuiar/MMSA/blob/master/src/MMSA/models/singleTask/TFN.py",
        defaults_source="thuiar/MMSA src/MMSA/config/config_regression.json, tfn.datasetParams"
                        ".mosi: hidden_dims [t 128, a 32, v 128], text_out 32, dropouts [a 0.3, "
                        "v 0.3, t 0.3 -> 0.0 effective in TextSubNet]")
    defaults = {
        "hidden": {"text": 128, "audio": 32, "vision": 128},
        "text_out": 32,
        "dropout": {"text": 0.0, "audio": 0.3, "vision": 0.3},
        "lstm_modalities": ["text"],
    }

    def __init__(self, input_dims: Mapping[str, int], **params: Any) -> None:
        super().__init__(input_dims, **params)
        self.params = merge_tables(self.defaults, self.params)
        self.order = list(self.input_dims)
        self.subnets = build_subnets(self.name, self.input_dims, self.params)
        self.sizes = {m: self.subnets[m].out_dim + 1 for m in self.order}
        self.output_dim = math.prod(self.sizes.values())

    supports_absent = True

    def encode(self, features: Mapping[str, torch.Tensor],
               masks: Mapping[str, torch.Tensor],
               absent: frozenset[str] = frozenset()) -> dict[str, torch.Tensor]:
        """The unimodal vectors ``h_m`` (before the 1 is appended): :func:`encode_present`."""
        return encode_present(self.subnets, self.order, features, masks, absent)

    def fuse(self, hidden: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return outer_flatten([with_one(hidden[m]) for m in self.order])

    def forward(self, features: Mapping[str, torch.Tensor],
                masks: Mapping[str, torch.Tensor],
                absent: frozenset[str] = frozenset()) -> torch.Tensor:
        return self.fuse(self.encode(features, masks, absent))
