"""The Metric contract: torchmetrics-based, one class per (metric, convention).

A metric plugin subclasses :class:`Metric` and implements :meth:`Metric.functional` (a pure
function of flattened predictions and labels, the "functional twin"); the base class keeps the
torchmetrics state (all predictions and targets, concatenated) and calls it in ``compute``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torchmetrics
from torchmetrics.utilities import dim_zero_cat

from .meta import ComponentMeta


class Metric(torchmetrics.Metric):
    """Base class of metric plugins.

    Class attributes:

    ``name``
        registry name, unique, e.g. ``"mosi-acc7"``.
    ``key``
        the key under which results store the value, unique within a convention (``"acc7"``).
    ``display``
        column title in leaderboards (``"Acc7"``).
    ``conventions``
        the dataset conventions the metric applies to (``("mosi",)``); the runner evaluates a
        dataset with every metric whose conventions include the dataset's.
    ``higher_is_better``
        direction, used for checkpoint selection and to mark the best leaderboard value.
    ``percent``
        leaderboards show the value x100.
    ``needs_regression``
        the metric needs a prediction on the label scale; methods whose output is only a class
        probability get "not applicable" (never 0) for it.
    ``order``
        column order in leaderboards (ascending).
    """

    name: ClassVar[str]
    key: ClassVar[str]
    display: ClassVar[str]
    conventions: ClassVar[tuple[str, ...]]
    higher_is_better: ClassVar[bool] = True  # type: ignore[misc]
    percent: ClassVar[bool] = False
    needs_regression: ClassVar[bool] = True
    order: ClassVar[int] = 100
    meta: ClassVar[ComponentMeta]

    is_differentiable: ClassVar[bool] = False  # type: ignore[misc]
    full_state_update: ClassVar[bool] = False  # type: ignore[misc]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:  # type: ignore[override]
        preds = torch.as_tensor(preds).detach().reshape(-1).to(torch.float64)
        target = torch.as_tensor(target).detach().reshape(-1).to(torch.float64)
        if preds.shape != target.shape:
            raise ValueError(
                f"metric {self.name}: {preds.numel()} predictions for {target.numel()} labels")
        self.preds.append(preds)
        self.target.append(target)

    def compute(self) -> torch.Tensor:
        if not self.preds:
            raise ValueError(f"metric {self.name}: compute() called before any update()")
        return self.functional(dim_zero_cat(self.preds), dim_zero_cat(self.target))

    @staticmethod
    def functional(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The metric as a pure function of flat float64 ``preds`` and ``target``."""
        raise NotImplementedError

    @classmethod
    def info(cls) -> dict[str, Any]:
        """What a result file stores about the metric so leaderboards need no registry."""
        return {"display": cls.display, "higher_is_better": bool(cls.higher_is_better),
                "percent": bool(cls.percent), "order": int(cls.order), "metric": cls.name}
