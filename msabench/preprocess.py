"""Run-level preprocessing: normalisation, pad/truncate and label-fraction masking.

These are dataset options of the run config (``data.normalize``, ``data.max_length``,
``data.label_fraction``, ``data.label_seed``), so a method never re-implements them. The runner
applies them in this order:

1. once per run, after loading and modality selection (deterministic, shared by all seeds):
   :func:`pad_truncate`, then :func:`normalize` (statistics over the steps the model sees);
2. once per seed: :func:`mask_labels` on the train split (a cheap copy: features are shared).

Everything here is a pure function: inputs are never modified.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Mapping

import torch

from .api.dataset import MODALITIES, LoadedDataset, SplitData
from .errors import ConfigError

#: ``data.normalize`` values and the steps each applies, in order
SCHEMES: dict[str, tuple[str, ...]] = {
    "none": (), "zscore": ("zscore",), "minmax": ("minmax",), "minmax-zscore": ("minmax", "zscore")}
_CHUNK = 512  # samples per chunk, to bound the float64 working memory on large splits


@dataclass(frozen=True)
class Stats:
    """Per-dimension statistics of one modality over the valid (unpadded) steps of a split.

    Tensors are float64 of shape (D,); ``std`` is the population standard deviation (ddof 0,
    as scikit-learn's ``StandardScaler``). ``samples`` and ``steps`` count what they came from.
    """

    mean: torch.Tensor
    std: torch.Tensor
    min: torch.Tensor
    max: torch.Tensor
    samples: int
    steps: int

    @property
    def constant(self) -> torch.Tensor:
        """(D,) bool: dimensions with one value over all valid steps (max == min)."""
        return self.max == self.min

    def shift_scale(self, step: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``x -> (x - shift) / scale`` for ``step`` ("zscore" or "minmax"). A constant
        dimension gets scale 1 (as scikit-learn), so it maps to 0 on the train split and to
        its offset from the train value elsewhere; there is never a division by zero."""
        if step == "zscore":
            shift, scale = self.mean, self.std
        else:
            shift, scale = self.min, self.max - self.min
        scale = torch.where(self.constant | (scale <= 0), torch.ones_like(scale), scale)
        return shift, scale


def _valid(split: SplitData, m: str, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = split.features[m][lo:hi]
    mask = torch.arange(x.shape[1]).unsqueeze(0) < split.lengths[m][lo:hi].unsqueeze(1)
    return x, mask


def split_stats(split: SplitData, modality: str) -> Stats:
    """Two-pass float64 statistics of ``modality`` over the valid steps of ``split``."""
    n, dim = len(split), split.features[modality].shape[-1]
    total, count = torch.zeros(dim, dtype=torch.float64), 0
    lo_v = torch.full((dim,), math.inf, dtype=torch.float64)
    hi_v = torch.full((dim,), -math.inf, dtype=torch.float64)
    for lo in range(0, n, _CHUNK):
        x, mask = _valid(split, modality, lo, lo + _CHUNK)
        rows = x[mask].double()
        total += rows.sum(0)
        count += rows.shape[0]
        if rows.shape[0]:
            lo_v = torch.minimum(lo_v, rows.min(0).values)
            hi_v = torch.maximum(hi_v, rows.max(0).values)
    mean = total / max(count, 1)
    sq = torch.zeros(dim, dtype=torch.float64)
    for lo in range(0, n, _CHUNK):
        x, mask = _valid(split, modality, lo, lo + _CHUNK)
        sq += ((x[mask].double() - mean) ** 2).sum(0)
    return Stats(mean, (sq / max(count, 1)).sqrt(), lo_v, hi_v, n, count)


def _transform(split: SplitData, m: str, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    src = split.features[m]
    out = torch.empty_like(src)
    for lo in range(0, len(split), _CHUNK):
        x, mask = _valid(split, m, lo, lo + _CHUNK)
        y = (x.double() - shift) / scale
        out[lo:lo + _CHUNK] = (y * mask.unsqueeze(-1)).to(src.dtype)  # padded steps stay 0
    return out


def normalize_with_stats(data: LoadedDataset, scheme: str,
                         ) -> tuple[LoadedDataset, dict[str, list[Stats]]]:
    """:func:`normalize`, also returning the statistics of every step per modality."""
    steps = check_scheme(scheme)
    used: dict[str, list[Stats]] = {m: [] for m in data.modalities}
    for step in steps:
        train = data["train"]
        fitted = {m: split_stats(train, m) for m in data.modalities}
        splits = {}
        for name, split in data.splits.items():
            feats = {m: _transform(split, m, *fitted[m].shift_scale(step)) for m in split.features}
            splits[name] = replace(split, features=feats)
        data = replace(data, splits=splits)
        for m, s in fitted.items():
            used[m].append(s)
    return data, used


def normalize(data: LoadedDataset, scheme: str) -> LoadedDataset:
    """Normalise every modality per feature dimension with statistics of the TRAIN split only.

    ``scheme``: ``"none"``; ``"zscore"`` (x - mean) / std; ``"minmax"`` (x - min) / (max - min)
    to [0, 1] on train; ``"minmax-zscore"`` min-max, then z-score with the statistics of the
    min-max-scaled train split (the dec-semi paper's scheme). Statistics are taken over valid
    steps only; padded steps stay exactly 0; valid and test are transformed with the train
    statistics. Constant dimensions get scale 1 (see :meth:`Stats.shift_scale`).

    Note: with per-dimension statistics both steps are affine, so ``minmax-zscore`` equals
    ``zscore`` up to float rounding (z-scores are invariant to a positive affine map); it is
    kept as a name so configs can state the paper's recipe literally.
    """
    return normalize_with_stats(data, scheme)[0]


def check_scheme(scheme: Any) -> tuple[str, ...]:
    if scheme not in SCHEMES:
        raise ConfigError(f"data.normalize={scheme!r}: choose one of {', '.join(SCHEMES)}")
    return SCHEMES[scheme]


def check_max_length(max_length: Any) -> dict[str, int] | None:
    """``None`` | int | {modality: int} -> ``None`` or {modality: N} (every N >= 1)."""
    if max_length is None:
        return None
    table = max_length if isinstance(max_length, Mapping) else dict.fromkeys(MODALITIES, max_length)
    for m, n in table.items():
        if m not in MODALITIES:
            raise ConfigError(f"data.max_length.{m}: unknown modality; use {', '.join(MODALITIES)}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"data.max_length: {n!r} for {m} is not a positive integer "
                              "(e.g. --max-length 30 or --set data.max_length.text=30)")
    return dict(table)


def check_label_fraction(fraction: Any, key: str = "data.label_fraction") -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ConfigError(f"{key}={fraction!r}: must lie in (0, 1] "
                          "(1.0 = every label is used; 0.4 = 40% labelled)")
    return float(fraction)


def valid_fraction(data_cfg: Mapping[str, Any]) -> float:
    """The labelled fraction of the validation split: ``data.valid_label_fraction``, or the
    train fraction when unset (the semi-supervised protocol: model selection sees no more
    labels per sample than training does). 1.0 keeps the old behaviour (all validation
    labels)."""
    value = data_cfg.get("valid_label_fraction")
    return check_label_fraction(data_cfg.get("label_fraction", 1.0) if value is None else value,
                                "data.valid_label_fraction")


def check_config(data_cfg: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` on a bad preprocessing value (before any data is loaded)."""
    check_scheme(data_cfg.get("normalize", "none"))
    check_max_length(data_cfg.get("max_length"))
    check_label_fraction(data_cfg.get("label_fraction", 1.0))
    valid = data_cfg.get("valid_label_fraction")
    if valid is not None:
        check_label_fraction(valid, "data.valid_label_fraction")
    seed = data_cfg.get("label_seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError(f"data.label_seed={seed!r}: an integer, or unset to use the run seed")
    cap = data_cfg.get("max_samples")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 2):
        raise ConfigError(f"data.max_samples={cap!r}: an integer >= 2 (samples kept per split), "
                          "or unset to keep all")


def pad_truncate(data: LoadedDataset, max_length: Any) -> LoadedDataset:
    """Keep the first N steps of each sequence (lengths clipped to N) or zero-pad up to N.

    ``max_length``: ``None`` (keep), an int for every modality, or {modality: N}; modalities
    absent from the table or from the data are kept as they are.
    """
    table = check_max_length(max_length)
    if not table:
        return data
    splits = {}
    for name, split in data.splits.items():
        feats, lens = dict(split.features), dict(split.lengths)
        for m, n in table.items():
            if m not in feats or feats[m].shape[1] == n:
                continue
            x = feats[m]
            if x.shape[1] > n:
                feats[m] = x[:, :n].clone()
            else:
                feats[m] = torch.cat([x, x.new_zeros(x.shape[0], n - x.shape[1], x.shape[2])], 1)
            lens[m] = lens[m].clamp(max=n)
        splits[name] = replace(split, features=feats, lengths=lens)
    return replace(data, splits=splits)


def _allocate(sizes: list[int], fraction: float, total: int) -> list[int]:
    """Per-class counts summing to ``total``, each within 1 of ``fraction * size`` (largest
    remainders), and at least 1 for every non-empty class when ``total`` allows it."""
    ideal = [fraction * n for n in sizes]
    take = [min(n, math.floor(v)) for n, v in zip(sizes, ideal)]
    order = sorted(range(len(sizes)), key=lambda c: (-(ideal[c] - take[c]), c))
    for c in order:
        if sum(take) >= total:
            break
        if take[c] < sizes[c]:
            take[c] += 1
    for c in range(len(sizes)):
        if take[c] == 0 and sizes[c] and total >= sum(1 for n in sizes if n):
            donor = max(range(len(sizes)), key=lambda k: take[k])
            take[donor] -= 1
            take[c] = 1
    return take


def class_of(labels: torch.Tensor) -> torch.Tensor:
    """The stratification class: 1 for label >= 0 (non-negative, MMSA's "Has0" positive), 0 for
    label < 0."""
    return (labels >= 0).long()


def hide_labels(split: SplitData) -> SplitData:
    """A copy whose hidden rows (``labelled`` False) have NaN labels (and unimodal labels), so
    code that reads them by mistake poisons its loss; features are shared, not copied."""
    hidden = ~split.labelled
    if not bool(hidden.any()):
        return split
    labels = split.labels.clone()
    labels[hidden] = math.nan
    unimodal = {}
    for m, u in split.unimodal.items():
        unimodal[m] = u.clone()
        unimodal[m][hidden] = math.nan
    return replace(split, labels=labels, unimodal=unimodal)


def mask_labels(split: SplitData, fraction: float, seed: int) -> SplitData:
    """Keep the labels of a seeded, stratified ``fraction`` of ``split``; hide the rest.

    Among the rows labelled so far, exactly ``round(fraction * n)`` (at least 1) stay labelled,
    stratified by :func:`class_of` (each class keeps ``fraction`` of its rows, within one, and
    at least one when possible). The same ``seed`` picks the same rows. The returned copy has
    the new ``labelled`` mask and NaN in place of every hidden label (:func:`hide_labels`):
    supervised training uses the labelled rows only; pretrainers see every row and must use
    ``labelled``.
    """
    fraction = check_label_fraction(fraction)
    if fraction >= 1.0:
        return hide_labels(split)
    eligible = torch.nonzero(split.labelled).flatten()
    n = int(eligible.numel())
    if n == 0:
        return hide_labels(split)
    total = max(1, math.floor(fraction * n + 0.5))
    cls = class_of(split.labels[eligible])
    groups = [eligible[cls == c] for c in (0, 1)]
    counts = _allocate([int(g.numel()) for g in groups], fraction, total)
    generator = torch.Generator().manual_seed(int(seed))
    keep = torch.zeros(len(split), dtype=torch.bool)
    for group, k in zip(groups, counts):
        order = torch.randperm(int(group.numel()), generator=generator)
        keep[group[order[:k]]] = True
    return hide_labels(replace(split, labelled=keep))


def label_summary(split: SplitData) -> dict[str, int]:
    """Labelled counts in total and per stratification class, for result files."""
    lab = split.labelled
    cls = class_of(torch.nan_to_num(split.labels, nan=0.0))
    return {"labelled": int(lab.sum()), "total": len(split),
            "labelled_negative": int((lab & (cls == 0)).sum()),
            "labelled_non_negative": int((lab & (cls == 1)).sum())}


def prepare(data: LoadedDataset, data_cfg: Mapping[str, Any]) -> tuple[LoadedDataset, dict]:
    """The once-per-run steps (pad/truncate, then normalise) and a JSON record of what was done
    (stored under ``preprocessing`` in every result file)."""
    check_config(data_cfg)
    table = check_max_length(data_cfg.get("max_length"))
    data = pad_truncate(data, table)
    scheme = data_cfg.get("normalize", "none")
    applied = {m: n for m, n in (table or {}).items() if m in data.modalities} or None
    record: dict[str, Any] = {"normalize": scheme, "max_length": applied}
    if scheme != "none":
        data, stats = normalize_with_stats(data, scheme)
        first = next(iter(stats.values()))[0]
        record["statistics"] = f"train split, {first.samples} samples"
        record["constant_dims"] = {m: int(s[0].constant.sum()) for m, s in stats.items()}
        data = replace(data, notes=[*data.notes, (
            f"features normalised ({scheme}) per modality and dimension with statistics "
            f"from the train split only ({first.samples} samples)")])
    return data, record


def for_seed(data: LoadedDataset, data_cfg: Mapping[str, Any], seed: int,
             ) -> tuple[LoadedDataset, dict[str, Any]]:
    """The per-seed step: the train split with the seed's label mask (``label_seed`` when set,
    else the run seed); other splits and all features are shared with ``data``."""
    fraction = check_label_fraction(data_cfg.get("label_fraction", 1.0))
    label_seed = data_cfg.get("label_seed")
    label_seed = seed if label_seed is None else int(label_seed)
    train = mask_labels(data["train"], fraction, label_seed)
    record = {"label_fraction": fraction, "label_seed": label_seed, **label_summary(train)}
    splits = {**data.splits, "train": train}
    v_fraction = valid_fraction(data_cfg)
    if v_fraction < 1.0:
        # another stream than train's (seed + 1): the two masks are drawn independently
        splits["valid"] = mask_labels(data["valid"], v_fraction, label_seed + 1)
        record["valid_label_fraction"] = v_fraction
        record["valid_labelled"] = int(splits["valid"].labelled.sum())
    if all(splits[k] is data.splits[k] for k in splits):
        return data, record
    return replace(data, splits=splits), record
