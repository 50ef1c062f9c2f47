"""Metrics under the CMU-MOSI / CMU-MOSEI convention (labels in [-3, 3]).

Thin :class:`msabench.api.Metric` subclasses; the definitions live in
:mod:`msabench_builtins.metrics.functional` and in ``docs/metrics.md``.
"""

from __future__ import annotations

from msabench.api import ComponentMeta, Metric

from . import functional as F

_SOURCE = "thuiar/MMSA src/MMSA/utils/metricsTop.py (__eval_mosei_regression)"
_URL = "https://github.com/thuiar/MMSA"


def _meta(summary: str) -> ComponentMeta:
    return ComponentMeta(summary=summary, defaults_source=_SOURCE, url=_URL)


class _MosiMetric(Metric):
    conventions = ("mosi",)


class Acc2Has0(_MosiMetric):
    """Binary accuracy, (pred >= 0) vs (label >= 0) over all samples (0 is non-negative)."""

    name = "mosi-acc2-has0"
    key = "acc2_has0"
    display = "Acc2-has0"
    percent = True
    needs_regression = False
    order = 10
    meta = _meta("binary accuracy, zero label counts as non-negative (has0)")
    functional = staticmethod(F.mosi_acc2_has0)


class Acc2Non0(_MosiMetric):
    """Binary accuracy, (pred > 0) vs (label > 0) on samples whose label is not 0."""

    name = "mosi-acc2-non0"
    key = "acc2_non0"
    display = "Acc2-non0"
    percent = True
    needs_regression = False
    order = 11
    meta = _meta("binary accuracy on non-zero labels (non0); NaN if every label is 0")
    functional = staticmethod(F.mosi_acc2_non0)


class F1Has0(_MosiMetric):
    """Weighted F1 of the has0 binarisation."""

    name = "mosi-f1-has0"
    key = "f1_has0"
    display = "F1-has0"
    percent = True
    needs_regression = False
    order = 20
    meta = _meta("weighted F1, zero label counts as non-negative (has0)")
    functional = staticmethod(F.mosi_f1_has0)


class F1Non0(_MosiMetric):
    """Weighted F1 of the non0 binarisation (zero labels dropped)."""

    name = "mosi-f1-non0"
    key = "f1_non0"
    display = "F1-non0"
    percent = True
    needs_regression = False
    order = 21
    meta = _meta("weighted F1 on non-zero labels (non0); NaN if every label is 0")
    functional = staticmethod(F.mosi_f1_non0)


class Acc7(_MosiMetric):
    """7-class accuracy: clip to [-3, 3], round half to even, exact match."""

    name = "mosi-acc7"
    key = "acc7"
    display = "Acc7"
    percent = True
    order = 30
    meta = _meta("7-class accuracy: clip to [-3, 3], round half to even")
    functional = staticmethod(F.mosi_acc7)


class Acc5(_MosiMetric):
    """5-class accuracy: clip to [-2, 2], round half to even, exact match."""

    name = "mosi-acc5"
    key = "acc5"
    display = "Acc5"
    percent = True
    order = 31
    meta = _meta("5-class accuracy: clip to [-2, 2], round half to even")
    functional = staticmethod(F.mosi_acc5)


class Acc3(_MosiMetric):
    """3-class accuracy: clip to [-1, 1], round half to even, exact match."""

    name = "mosi-acc3"
    key = "acc3"
    display = "Acc3"
    percent = True
    order = 32
    meta = _meta("3-class accuracy: clip to [-1, 1], round half to even")
    functional = staticmethod(F.mosi_acc3)


class MAE(_MosiMetric):
    """Mean absolute error on unclipped values."""

    name = "mosi-mae"
    key = "mae"
    display = "MAE"
    higher_is_better = False
    order = 40
    meta = _meta("mean absolute error on unclipped values")
    functional = staticmethod(F.mosi_mae)


class Corr(_MosiMetric):
    """Pearson correlation on unclipped values (0.0 with a warning when either is constant)."""

    name = "mosi-corr"
    key = "corr"
    display = "Corr"
    order = 50
    meta = _meta("Pearson correlation on unclipped values")
    functional = staticmethod(F.mosi_corr)
