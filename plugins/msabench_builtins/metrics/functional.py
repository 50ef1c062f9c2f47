"""Pure-torch implementations of the MSA metric conventions (see ``docs/metrics.md``).

Every function takes predictions and labels (any shape, flattened here; float64 is used for
every continuous quantity) and returns a 0-dim ``torch.float64`` tensor. The definitions are
those of the reference code, thuiar/MMSA ``src/MMSA/utils/metricsTop.py`` (CMU-MOSI/MOSEI and
CH-SIMS) and thuiar/ch-sims-v2 ``utils/metricsTop.py`` (``acc2_weak``, ``r2``); the tests
check them against numpy / scipy / scikit-learn re-implementations.

Decisions at float32 precision
    Every *discrete* decision (clipping before rounding, rounding, the sign tests, the bin
    membership, the zero / weak-label subsets) is taken on the values cast to float32, exactly
    as in the reference code, whose labels and predictions are float32 arrays. A label stored as
    float32 ``0.4`` is ``0.4000000059604645`` once widened to float64 and would otherwise fall
    outside ``[-0.4, 0.4]``; deciding in float32 puts the float32 and the float64 spelling of a
    value in the same bin, the bin the reference code puts it in. MAE, Corr and R2 are computed
    in float64.

Edge cases (each warns with :class:`MetricWarning` where the value is not the plain formula)
    * no samples at all: every metric is NaN;
    * ``acc2_non0`` / ``f1_non0`` when every label is 0 (empty subset): NaN;
    * ``acc2_weak`` when no clipped label lies in [-0.4, 0.4] (empty subset): NaN;
    * ``corr`` when predictions or labels are constant (or fewer than 2 samples): 0.0, as
      ``docs/metrics.md`` asks (numpy / scipy return NaN);
    * ``r2`` with fewer than 2 samples: NaN (as scikit-learn); with constant labels: 1.0 when
      the predictions equal the labels exactly, else 0.0 (scikit-learn's ``force_finite=True``
      rule, applied to exactly constant labels; see :func:`sims_r2`);
    * weighted F1 follows ``sklearn.metrics.f1_score(y_true, y_pred, average="weighted")``:
      classes are those present in labels or predictions, a class's F1 is
      ``2 tp / (n_true + n_pred)``, weights are the label counts (so a class present only in
      the predictions weighs 0, and a class never predicted scores 0);
    * a NaN prediction is never counted as correct (MMSA would count it as negative in the
      binary metrics: ``NaN >= 0`` is false); for weighted F1 it forms a class of its own,
      which has no labels and so weight 0.
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import torch

__all__ = [
    "MetricWarning",
    "accuracy", "weighted_f1", "pearson", "mean_absolute_error", "r2_score",
    "mosi_acc2_has0", "mosi_f1_has0", "mosi_acc2_non0", "mosi_f1_non0",
    "mosi_acc7", "mosi_acc5", "mosi_acc3", "mosi_mae", "mosi_corr",
    "sims_acc2", "sims_acc3", "sims_acc5", "sims_f1", "sims_acc2_weak",
    "sims_mae", "sims_corr", "sims_r2",
    "SIMS_BINS", "SIMS_WEAK_RANGE",
]

F64 = torch.float64
F32 = torch.float32

#: inner (lo, hi] edges of the CH-SIMS bins after clipping to [-1, 1] (MMSA's outer edges
#: -1.01 and 1.01 never matter once values are clipped)
SIMS_BINS: dict[int, tuple[float, ...]] = {
    2: (0.0,),
    3: (-0.1, 0.1),
    5: (-0.7, -0.1, 0.1, 0.7),
}
#: closed interval of clipped labels that ``acc2_weak`` keeps (thuiar/ch-sims-v2)
SIMS_WEAK_RANGE: tuple[float, float] = (-0.4, 0.4)

# class index given to a NaN prediction / NaN label, so that they never match anything
_NAN_PRED = -1
_NAN_TARGET = -2


class MetricWarning(UserWarning):
    """A metric was evaluated on degenerate input and returns a conventional value."""


# ---------------------------------------------------------------------------------------------
# helpers


def _scalar(value: float) -> torch.Tensor:
    return torch.tensor(value, dtype=F64)


def _nan(metric: str, why: str) -> torch.Tensor:
    warnings.warn(f"{metric}: {why}; returning NaN", MetricWarning, stacklevel=3)
    return _scalar(math.nan)


def _flat(preds: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    p = torch.as_tensor(preds).detach().reshape(-1).to(F64)
    t = torch.as_tensor(target).detach().reshape(-1).to(F64)
    if p.shape != t.shape:
        raise ValueError(f"{p.numel()} predictions for {t.numel()} labels")
    return p, t


def _f32(x: torch.Tensor) -> torch.Tensor:
    """The values the reference code takes its discrete decisions on."""
    return x.to(F32)


def _clip32(x: torch.Tensor, bound: float) -> torch.Tensor:
    return torch.clamp(_f32(x), -bound, bound)


def accuracy(pred_cls: torch.Tensor, true_cls: torch.Tensor) -> torch.Tensor:
    """Fraction of equal entries (``sklearn.metrics.accuracy_score``); NaN when empty."""
    n = true_cls.numel()
    if n == 0:
        return _nan("accuracy", "no samples")
    return (pred_cls == true_cls).sum().to(F64) / n


def weighted_f1(true_cls: torch.Tensor, pred_cls: torch.Tensor) -> torch.Tensor:
    """``sklearn.metrics.f1_score(true, pred, average="weighted")`` on discrete labels.

    Classes are the union of the values in ``true_cls`` and ``pred_cls``. Per class,
    F1 = 2 tp / (n_true + n_pred) (that is 2 tp / (2 tp + fp + fn)); the denominator is never 0
    for a class that occurs somewhere. The average is weighted by the number of labels of each
    class (support): a class that occurs only among the predictions has weight 0, a class that is
    never predicted has F1 0 (scikit-learn's ``zero_division`` default gives the same numbers).
    NaN when empty.
    """
    true_cls = true_cls.reshape(-1)
    pred_cls = pred_cls.reshape(-1)
    if true_cls.numel() == 0:
        return _nan("weighted F1", "no samples")
    classes = torch.unique(torch.cat([true_cls, pred_cls]))
    is_true = true_cls.unsqueeze(0) == classes.unsqueeze(1)  # (C, N)
    is_pred = pred_cls.unsqueeze(0) == classes.unsqueeze(1)
    tp = (is_true & is_pred).sum(dim=1).to(F64)
    support = is_true.sum(dim=1).to(F64)
    n_pred = is_pred.sum(dim=1).to(F64)
    f1 = 2.0 * tp / (support + n_pred)
    return (f1 * support).sum() / support.sum()


def mean_absolute_error(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean |pred - label| in float64; NaN when empty."""
    p, t = _flat(preds, target)
    if t.numel() == 0:
        return _nan("mae", "no samples")
    return (p - t).abs().mean()


def pearson(preds: torch.Tensor, target: torch.Tensor, *, metric: str = "corr") -> torch.Tensor:
    """Pearson correlation in float64 (``np.corrcoef`` / ``scipy.stats.pearsonr``).

    When either side is constant (all values exactly equal, or fewer than 2 samples) the
    correlation is undefined; the convention (``docs/metrics.md``) reports 0.0 and warns. NaN when
    there are no samples.
    """
    p, t = _flat(preds, target)
    n = t.numel()
    if n == 0:
        return _nan(metric, "no samples")
    if n < 2 or bool((p == p[0]).all()) or bool((t == t[0]).all()):
        warnings.warn(
            f"{metric}: predictions or labels are constant, the correlation is undefined; "
            "returning 0.0", MetricWarning, stacklevel=2)
        return _scalar(0.0)
    pc = p - p.mean()
    tc = t - t.mean()
    # normalise first (as scipy does) to stay accurate and overflow-free
    pc = pc / torch.linalg.vector_norm(pc)
    tc = tc / torch.linalg.vector_norm(tc)
    return torch.clamp((pc * tc).sum(), -1.0, 1.0)


def r2_score(preds: torch.Tensor, target: torch.Tensor, *, metric: str = "r2") -> torch.Tensor:
    """Coefficient of determination, ``1 - SS_res / SS_tot`` (``sklearn.metrics.r2_score``).

    * fewer than 2 samples: NaN with a warning (scikit-learn returns NaN);
    * constant labels (all exactly equal, SS_tot = 0): 1.0 if every prediction equals its label
      exactly, else 0.0, with a warning. This is scikit-learn's ``force_finite=True`` rule; note
      that scikit-learn itself tests ``SS_tot == 0`` after computing the mean, so for a constant
      label whose mean is inexact in binary (e.g. 0.2 repeated 7 times) it returns a meaningless
      -1e31; we apply the rule to every exactly constant label vector.
    """
    p, t = _flat(preds, target)
    if t.numel() < 2:
        return _nan(metric, "R2 is not defined for fewer than two samples")
    if bool((t == t[0]).all()):
        perfect = bool((p == t).all())
        warnings.warn(
            f"{metric}: labels are constant, R2 is undefined; returning "
            f"{1.0 if perfect else 0.0} (scikit-learn's force_finite rule)",
            MetricWarning, stacklevel=2)
        return _scalar(1.0 if perfect else 0.0)
    ss_res = ((t - p) ** 2).sum()
    ss_tot = ((t - t.mean()) ** 2).sum()
    return 1.0 - ss_res / ss_tot


# ---------------------------------------------------------------------------------------------
# CMU-MOSI / CMU-MOSEI (labels in [-3, 3])


def _rounded_accuracy(preds: torch.Tensor, target: torch.Tensor, bound: float,
                      metric: str) -> torch.Tensor:
    p, t = _flat(preds, target)
    if t.numel() == 0:
        return _nan(metric, "no samples")
    # torch.round rounds half to even, like numpy's round; NaN != NaN so NaN never matches
    return accuracy(torch.round(_clip32(p, bound)), torch.round(_clip32(t, bound)))


def _sign_classes(x: torch.Tensor, strict: bool, nan_class: int) -> torch.Tensor:
    """1 for positive (``> 0`` if strict else ``>= 0``), 0 otherwise, ``nan_class`` for NaN."""
    x32 = _f32(x)
    cls = (x32 > 0 if strict else x32 >= 0).to(torch.int64)
    return torch.where(torch.isnan(x32), torch.full_like(cls, nan_class), cls)


def _has0(preds, target):
    p, t = _flat(preds, target)
    return _sign_classes(p, False, _NAN_PRED), _sign_classes(t, False, _NAN_TARGET)


def _non0(preds, target, metric: str):
    p, t = _flat(preds, target)
    if t.numel() == 0:
        return None, None, _nan(metric, "no samples")
    keep = _f32(t) != 0
    if not bool(keep.any()):
        return None, None, _nan(metric, "every label is 0, the non-zero subset is empty")
    return (_sign_classes(p[keep], True, _NAN_PRED), _sign_classes(t[keep], True, _NAN_TARGET),
            None)


def mosi_acc2_has0(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Accuracy of (pred >= 0) vs (label >= 0) over all samples (0 counts as non-negative)."""
    pb, tb = _has0(preds, target)
    if tb.numel() == 0:
        return _nan("acc2_has0", "no samples")
    return accuracy(pb, tb)


def mosi_f1_has0(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Weighted F1 (``f1_score(label >= 0, pred >= 0, average="weighted")``) over all samples."""
    pb, tb = _has0(preds, target)
    if tb.numel() == 0:
        return _nan("f1_has0", "no samples")
    return weighted_f1(tb, pb)


def mosi_acc2_non0(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Drop samples whose label is 0, then accuracy of (pred > 0) vs (label > 0).

    NaN with a :class:`MetricWarning` when every label is 0 (empty subset).
    """
    pb, tb, bad = _non0(preds, target, "acc2_non0")
    return bad if bad is not None else accuracy(pb, tb)


def mosi_f1_non0(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Weighted F1 of (label > 0, pred > 0) on the samples whose label is not 0.

    NaN with a :class:`MetricWarning` when every label is 0 (empty subset).
    """
    pb, tb, bad = _non0(preds, target, "f1_non0")
    return bad if bad is not None else weighted_f1(tb, pb)


def mosi_acc7(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Clip both to [-3, 3], round half to even, exact-match accuracy (7 classes)."""
    return _rounded_accuracy(preds, target, 3.0, "acc7")


def mosi_acc5(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Clip both to [-2, 2], round half to even, exact-match accuracy (5 classes)."""
    return _rounded_accuracy(preds, target, 2.0, "acc5")


def mosi_acc3(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Clip both to [-1, 1], round half to even, exact-match accuracy (3 classes)."""
    return _rounded_accuracy(preds, target, 1.0, "acc3")


def mosi_mae(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error on the unclipped values."""
    return mean_absolute_error(preds, target)


def mosi_corr(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pearson correlation on the unclipped values; 0.0 (with a warning) if either is constant."""
    return pearson(preds, target, metric="corr")


# ---------------------------------------------------------------------------------------------
# CH-SIMS / CH-SIMS v2 (labels in [-1, 1]; predictions and labels are clipped first)


def _sims_bin(x: torch.Tensor, edges: Sequence[float], nan_class: int) -> torch.Tensor:
    """Index of the (lo, hi] bin of each clipped value (float32 decisions, like np.digitize
    with ``right=True``)."""
    x32 = _clip32(x, 1.0)
    boundaries = torch.tensor(edges, dtype=F32)
    cls = torch.bucketize(x32, boundaries, right=False)  # boundaries[i-1] < x <= boundaries[i]
    return torch.where(torch.isnan(x32), torch.full_like(cls, nan_class), cls)


def _sims_classes(preds, target, n_classes: int):
    p, t = _flat(preds, target)
    edges = SIMS_BINS[n_classes]
    return _sims_bin(p, edges, _NAN_PRED), _sims_bin(t, edges, _NAN_TARGET)


def _sims_accuracy(preds, target, n_classes: int, metric: str) -> torch.Tensor:
    pc, tc = _sims_classes(preds, target, n_classes)
    if tc.numel() == 0:
        return _nan(metric, "no samples")
    return accuracy(pc, tc)


def _clipped(preds, target) -> tuple[torch.Tensor, torch.Tensor]:
    p, t = _flat(preds, target)
    return torch.clamp(p, -1.0, 1.0), torch.clamp(t, -1.0, 1.0)


def sims_acc2(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """2 classes [-1, 0] vs (0, 1] after clipping (0 counts as negative)."""
    return _sims_accuracy(preds, target, 2, "acc2")


def sims_acc3(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """3 classes [-1, -0.1], (-0.1, 0.1], (0.1, 1] after clipping."""
    return _sims_accuracy(preds, target, 3, "acc3")


def sims_acc5(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """5 classes [-1, -0.7], (-0.7, -0.1], (-0.1, 0.1], (0.1, 0.7], (0.7, 1] after clipping."""
    return _sims_accuracy(preds, target, 5, "acc5")


def sims_f1(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Weighted F1 of the acc2 classes, called as f1(label classes, prediction classes)."""
    pc, tc = _sims_classes(preds, target, 2)
    if tc.numel() == 0:
        return _nan("f1", "no samples")
    return weighted_f1(tc, pc)


def sims_acc2_weak(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """acc2 restricted to the samples whose clipped label lies in [-0.4, 0.4] (ch-sims-v2).

    NaN with a :class:`MetricWarning` when no label lies in that range (empty subset).
    """
    p, t = _flat(preds, target)
    if t.numel() == 0:
        return _nan("acc2_weak", "no samples")
    lo, hi = (torch.tensor(v, dtype=F32) for v in SIMS_WEAK_RANGE)
    t32 = _clip32(t, 1.0)
    keep = (t32 >= lo) & (t32 <= hi)
    if not bool(keep.any()):
        return _nan("acc2_weak", "no label lies in [-0.4, 0.4], the weak subset is empty")
    return _sims_accuracy(p[keep], t[keep], 2, "acc2_weak")


def sims_mae(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error of the values clipped to [-1, 1]."""
    return mean_absolute_error(*_clipped(preds, target))


def sims_corr(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of the clipped values; 0.0 (with a warning) if either is constant."""
    return pearson(*_clipped(preds, target), metric="corr")


def sims_r2(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """R2 (``r2_score(label, pred)``) of the clipped values; see :func:`r2_score` for the
    constant-label and fewer-than-two-samples cases."""
    return r2_score(*_clipped(preds, target), metric="r2")
