"""What a run hands to methods and pretrainers: device, seed, progress, and the shared loop.

The contracts in :mod:`msabench.api` do not import the runner or the training loop; the runner
builds a :class:`RunContext` whose :meth:`RunContext.fit` and :meth:`RunContext.evaluate` are
the one training loop of msabench (:mod:`msabench.training`). A pretraining stage, a
method's own second step, and the runner's supervised stage all train through it, so every
stage gets validation-based selection, early stopping, declared schedulers, frozen parts kept
in eval mode, per-term loss logs and a progress bar.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .dataset import Batch, SplitData
    from .method import Method

#: when a declared scheduler steps
INTERVALS = ("step", "epoch")


class Task(Protocol):
    """One progress bar."""

    def advance(self, steps: int = 1, status: str | None = None) -> None: ...

    def done(self, status: str | None = None) -> None: ...


class Progress(Protocol):
    """The progress protocol: bars for long work and one-line messages."""

    def task(self, description: str, total: int) -> Task: ...

    def print(self, message: str) -> None: ...


class SilentProgress:
    """A :class:`Progress` that shows nothing (tests, notebooks, nested work)."""

    class _Task:
        def advance(self, steps: int = 1, status: str | None = None) -> None:
            pass

        def done(self, status: str | None = None) -> None:
            pass

    def task(self, description: str, total: int) -> Task:
        return self._Task()

    def print(self, message: str) -> None:
        pass


@dataclass
class Schedule:
    """A learning-rate scheduler and when the loop steps it.

    ``interval``: ``"step"`` (after every optimiser step) or ``"epoch"`` (after validation).
    ``monitor``: for schedulers stepped with a value (``ReduceLROnPlateau``), the history key
    whose value is passed, e.g. ``"valid_loss"``; None steps without a value.
    """

    scheduler: Any
    interval: str = "epoch"
    monitor: str | None = None

    def __post_init__(self) -> None:
        if self.interval not in INTERVALS:
            raise ValueError(f"Schedule.interval must be one of {INTERVALS}, got "
                             f"{self.interval!r}")


@dataclass
class Recipe:
    """How one stage trains. ``select``: None keeps the last epoch's weights (no selection);
    otherwise the name of the score returned by ``score`` (history key ``valid_<select>``)
    whose best value picks the epoch, ``higher_is_better`` its direction. ``patience``: stop
    after that many epochs without improvement (0 = never). ``grad_clip``: max gradient norm
    (0 = off). ``bucket_by_length``: training batches of samples of similar length (fewer pad
    tokens per batch; :func:`msabench.bucketing.bucketed_order`), False = plain shuffled
    batches."""

    epochs: int
    batch_size: int
    patience: int = 0
    grad_clip: float = 0.0
    select: str | None = "loss"
    higher_is_better: bool = False
    bucket_by_length: bool = False

    @classmethod
    def from_train(cls, train: Mapping[str, Any], **overrides: Any) -> "Recipe":
        """The recipe of a run's ``train`` config section (selection direction set by the
        caller, which knows the metrics)."""
        values = dict(epochs=int(train["epochs"]), batch_size=int(train["batch_size"]),
                      patience=int(train["patience"]), grad_clip=float(train["grad_clip"]),
                      select=str(train["select"]),
                      bucket_by_length=bool(train.get("bucket_by_length", False)))
        values.update(overrides)
        return cls(**values)


@dataclass
class FitResult:
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    best_score: float
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Evaluation:
    """Scores of every head of a method on one split.

    ``metrics``/``not_applicable``/``warnings`` are the multimodal head's (``pred``);
    ``heads[name]`` holds ``{"target", "metrics", "not_applicable"}`` of every other head.
    """

    loss: float
    metrics: dict[str, float | None]
    not_applicable: list[str]
    preds: Any
    labels: Any
    warnings: list[str] = field(default_factory=list)
    heads: dict[str, dict[str, Any]] = field(default_factory=dict)

    def score(self, key: str) -> float | None:
        """``loss``, a metric of ``pred`` (``mae``) or ``<head>.<metric>`` (``pred_text.mae``)."""
        if key == "loss":
            return self.loss
        head, _, metric = key.rpartition(".")
        if not head or head == "pred":
            return self.metrics.get(metric)
        return self.heads.get(head, {}).get("metrics", {}).get(metric)


StepFn = Callable[["Batch"], "tuple[torch.Tensor, Mapping[str, float]]"]
ScoreFn = Callable[[], "Mapping[str, float]"]
EpochHook = Callable[[int, dict], None]


class RunContext(ABC):
    """Handed to pretrainers (``Pretrainer.fit``) and available to methods as
    ``method.context`` during a run: where to run, which seed, the run's ``train`` config, its
    metric classes, how to report progress, and the shared loop."""

    def __init__(self, *, device: Any, seed: int, train: Mapping[str, Any],
                 progress: Progress | None = None, metric_classes: Sequence[type] = ()) -> None:
        self.device = device
        self.seed = int(seed)
        self.train = dict(train)
        self.progress: Progress = progress if progress is not None else SilentProgress()
        self.metric_classes = list(metric_classes)

    @abstractmethod
    def fit(self, module: "nn.Module", train: "SplitData", valid: "SplitData | None" = None, *,
            step: StepFn, optimizer: "torch.optim.Optimizer", recipe: Recipe,
            score: ScoreFn | None = None, schedule: Schedule | None = None,
            frozen: Sequence["nn.Module"] = (), generator: "torch.Generator | None" = None,
            before_epoch: EpochHook | None = None, after_epoch: EpochHook | None = None,
            name: str = "train", status: Callable[[dict], str] | None = None) -> FitResult:
        """Train ``module`` with ``step(batch) -> (loss, {term: value})`` on shuffled batches of
        ``train`` (seeded by ``generator``, else the run seed).

        Each epoch: ``before_epoch(epoch, row)``; every batch: ``optimizer.zero_grad``, ``step``,
        backward, gradient clipping, ``optimizer.step``, a ``"step"`` schedule; then ``score()``
        (a mapping of validation scores, stored as ``valid_<key>``) when given;
        ``after_epoch(epoch, row)`` (may add diagnostics to the row); an ``"epoch"`` schedule;
        selection and early stopping on ``recipe.select``. ``frozen`` modules stay in eval mode
        and receive no gradient. The history rows hold the per-sample mean of every term
        ``step`` logs (``train_<term>``). The best epoch's weights are restored when selecting.
        """

    @abstractmethod
    def evaluate(self, model: "Method", split: "SplitData",
                 batch_size: int | None = None) -> Evaluation:
        """Every head of ``model`` on ``split`` with the run's metrics."""

    def log_epoch(self, name: str, row: Mapping[str, Any]) -> None:
        """Report one epoch of a stage that trains in its own loop instead of :meth:`fit`
        (``row``: its history row, e.g. ``{"epoch": 3, "train_loss": 0.41}``), as the epoch
        ends. The run's trackers receive it live, named like a :meth:`fit` of the same
        ``name``. Epochs trained through :meth:`fit` are reported already; do not repeat them
        here. This base implementation reports nowhere."""
