"""Metrics under the CH-SIMS / CH-SIMS v2 convention (predictions and labels clipped to [-1, 1]).

Thin :class:`msabench.api.Metric` subclasses; the definitions live in
:mod:`msabench_builtins.metrics.functional` and in ``docs/metrics.md``.
"""

from __future__ import annotations

from msabench.api import ComponentMeta, Metric

from . import functional as F

_MMSA = ("thuiar/MMSA src/MMSA/utils/metricsTop.py (__eval_sims_regression)",
         "https://github.com/thuiar/MMSA")
_V2 = ("thuiar/ch-sims-v2 utils/metricsTop.py (__eval_sims_regression)",
       "https://github.com/thuiar/ch-sims-v2")


def _meta(summary: str, source: tuple[str, str] = _MMSA) -> ComponentMeta:
    return ComponentMeta(summary=summary, defaults_source=source[0], url=source[1])


class _SimsMetric(Metric):
    conventions = ("sims",)


class Acc2(_SimsMetric):
    """Binary accuracy with (lo, hi] bins [-1, 0], (0, 1] (a zero counts as negative)."""

    name = "sims-acc2"
    key = "acc2"
    display = "Acc2"
    percent = True
    needs_regression = False
    order = 10
    meta = _meta("binary accuracy, bins [-1, 0] / (0, 1] after clipping")
    functional = staticmethod(F.sims_acc2)


class Acc2Weak(_SimsMetric):
    """acc2 on the samples whose clipped label lies in [-0.4, 0.4] (NaN if there are none)."""

    name = "sims-acc2-weak"
    key = "acc2_weak"
    display = "Acc2-weak"
    percent = True
    needs_regression = False
    order = 11
    meta = _meta("binary accuracy on weak-sentiment labels in [-0.4, 0.4]", _V2)
    functional = staticmethod(F.sims_acc2_weak)


class F1(_SimsMetric):
    """Weighted F1 of the acc2 bins."""

    name = "sims-f1"
    key = "f1"
    display = "F1"
    percent = True
    needs_regression = False
    order = 20
    meta = _meta("weighted F1 of the acc2 bins")
    functional = staticmethod(F.sims_f1)


class Acc3(_SimsMetric):
    """3-class accuracy, bins [-1, -0.1], (-0.1, 0.1], (0.1, 1]."""

    name = "sims-acc3"
    key = "acc3"
    display = "Acc3"
    percent = True
    order = 30
    meta = _meta("3-class accuracy, bins [-1, -0.1] / (-0.1, 0.1] / (0.1, 1]")
    functional = staticmethod(F.sims_acc3)


class Acc5(_SimsMetric):
    """5-class accuracy, bins [-1, -0.7], (-0.7, -0.1], (-0.1, 0.1], (0.1, 0.7], (0.7, 1]."""

    name = "sims-acc5"
    key = "acc5"
    display = "Acc5"
    percent = True
    order = 31
    meta = _meta("5-class accuracy, edges -0.7, -0.1, 0.1, 0.7 ((lo, hi] bins)")
    functional = staticmethod(F.sims_acc5)


class MAE(_SimsMetric):
    """Mean absolute error of the clipped values."""

    name = "sims-mae"
    key = "mae"
    display = "MAE"
    higher_is_better = False
    order = 40
    meta = _meta("mean absolute error of values clipped to [-1, 1]")
    functional = staticmethod(F.sims_mae)


class Corr(_SimsMetric):
    """Pearson correlation of the clipped values (0.0 with a warning when either is constant)."""

    name = "sims-corr"
    key = "corr"
    display = "Corr"
    order = 50
    meta = _meta("Pearson correlation of values clipped to [-1, 1]")
    functional = staticmethod(F.sims_corr)


class R2(_SimsMetric):
    """Coefficient of determination of the clipped values (as reported for CH-SIMS v2)."""

    name = "sims-r2"
    key = "r2"
    display = "R2"
    order = 60
    meta = _meta("coefficient of determination of values clipped to [-1, 1]", _V2)
    functional = staticmethod(F.sims_r2)
