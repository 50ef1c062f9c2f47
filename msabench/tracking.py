"""Experiment tracking as plugins: a tracker receives each seed's config, history and metrics.

A tracker is a :class:`Tracker` subclass registered through the ``register_trackers`` hook
(like every other component) and chosen per run by name: ``msabench run --tracker mlflow``
(repeatable), ``trackers = ["mlflow"]`` in a grid file, or ``$MSABENCH_TRACKERS=mlflow``.
Trackers are opt-in: an installed tracker plugin logs nothing until named.

For each seed the runner calls, in order:

``start(run)``      identity and resolved config: ``{"method", "dataset", "setting",
                    "variant", "seed", "config", "config_hash"}``
``log_epoch(stage, row)``
                    one call per epoch of every stage, **as the epoch ends** (from the shared
                    loop, :class:`msabench.training.LoopContext`), with the history row
                    (``epoch``, ``train_loss``, ``valid_<metric>`` ...); ``stage`` is
                    ``"train"`` for supervised training and ``<pretrainer>.<fit>`` for a
                    pretraining stage's fit (``dec.stage-1-autoencoder``, ``mce.contrastive``,
                    ``unimodal.step-1-text``). A stage that trains in its own loop sends
                    its epochs live with ``context.log_epoch(name, row)``. Otherwise each
                    ``history`` list in the stage's log that no live fit accounts for is sent
                    at the end of the seed (stage: its path in the log, e.g.
                    ``mystage.part2.history`` -> ``mystage.part2``); a live fit accounts for a
                    logged history of the same pretrainer with the same ``epoch`` sequence,
                    each live fit for one history, in order
``finish(result)``  the result file's content (a dict: ``metrics``, ``heads``,
                    ``best_epoch``, ``wall_time_s`` ...); ``fail(error)`` instead when the
                    seed raised (the result file is not written then)

A tracker that raises is reported once and switched off for the rest of the seed: tracking
never loses a result.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, Mapping, Sequence

from .api import ComponentMeta
from .errors import ConfigError

ENV_TRACKERS = "MSABENCH_TRACKERS"


class Tracker:
    """Base class of trackers. ``options``: keyword options (documented in ``defaults``)."""

    name: ClassVar[str]
    meta: ClassVar[ComponentMeta]
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise ConfigError(f"tracker {self.name}: unknown option(s) {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(self.defaults)) or '(none)'}")
        self.options = {**self.defaults, **options}

    def start(self, run: Mapping[str, Any]) -> None:
        """A seed begins."""

    def log_epoch(self, stage: str, row: Mapping[str, Any]) -> None:
        """One epoch of ``stage`` (``train`` or a pretraining stage)."""

    def finish(self, result: Mapping[str, Any]) -> None:
        """The seed ended; ``result`` is what its result file holds."""

    def fail(self, error: BaseException) -> None:
        """The seed raised ``error``; no result is written."""


def tracker_names(names: Sequence[str] = ()) -> list[str]:
    """The trackers of a run: ``names`` (CLI, grid file) plus ``$MSABENCH_TRACKERS``."""
    env = [n.strip() for n in os.environ.get(ENV_TRACKERS, "").split(",") if n.strip()]
    return list(dict.fromkeys([*names, *env]))


class Trackers:
    """The run's trackers behind one object; a failing tracker is warned about and dropped."""

    def __init__(self, trackers: Sequence[Tracker], progress: Any = None) -> None:
        self.trackers = list(trackers)
        self.progress = progress
        #: the fits sent live, in order: (stage name, its epoch numbers); a stage name seen
        #: again after another stage, or with an epoch number that does not grow, is a new fit
        self.live: list[tuple[str, list[Any]]] = []

    def _call(self, method: str, *args: Any) -> None:
        for tracker in list(self.trackers):
            try:
                getattr(tracker, method)(*args)
            except Exception as exc:  # tracking must never cost a result
                self.trackers.remove(tracker)
                if self.progress is not None:
                    self.progress.print(f"[yellow]warning:[/] tracker {tracker.name} failed in "
                                        f"{method} ({type(exc).__name__}: {exc}); it is off for "
                                        "the rest of this seed")

    def start(self, **run: Any) -> None:
        self._call("start", run)

    def log_epoch(self, stage: str, row: Mapping[str, Any]) -> None:
        """One epoch, live (the runner passes this to the loop context)."""
        epoch = row.get("epoch")
        last = self.live[-1] if self.live else None
        if (last is not None and last[0] == stage and last[1]
                and _grows(last[1][-1], epoch)):
            last[1].append(epoch)
        else:
            self.live.append((stage, [epoch]))
        self._call("log_epoch", stage, row)

    def finish(self, result: Any) -> None:
        data = result.to_dict() if hasattr(result, "to_dict") else dict(result)
        # histories that did not come live (a stage with its own loop) are sent now
        for stage, rows in self._not_live(_histories(data.get("pretraining") or {})):
            for row in rows:
                self._call("log_epoch", stage, row)
        if not any(stage == "train" for stage, _ in self.live):
            for row in data.get("history") or []:
                self._call("log_epoch", "train", row)
        self._call("finish", data)

    def fail(self, error: BaseException) -> None:
        self._call("fail", error)

    def _not_live(self, logged: list[tuple[str, list]]) -> list[tuple[str, list]]:
        """The logged histories no live fit accounts for: each live stage of a pretrainer
        accounts for the first unmatched history of that pretrainer with the same epoch
        numbers (a fit's history may be stored under another path, or with renamed terms)."""
        unused: dict[str, list[list[Any]]] = {}
        for stage, epochs in self.live:
            if stage != "train":
                unused.setdefault(stage.split(".", 1)[0], []).append(epochs)
        out = []
        for stage, rows in logged:
            candidates = unused.get(stage.split(".", 1)[0], [])
            epochs = [row.get("epoch") for row in rows]
            if epochs in candidates:
                candidates.remove(epochs)
            else:
                out.append((stage, rows))
        return out


def _grows(previous: Any, epoch: Any) -> bool:
    """Whether ``epoch`` continues a fit whose last epoch was ``previous``."""
    try:
        return epoch > previous
    except TypeError:
        return False


def open_trackers(names: Sequence[str], registry: Any, progress: Any = None) -> Trackers:
    """Instantiate the named trackers (plus ``$MSABENCH_TRACKERS``) from the registry."""
    out = []
    for name in tracker_names(names):
        cls = registry.load("tracker", name)
        out.append(cls())
    return Trackers(out, progress)


def _histories(logs: Mapping[str, Any], prefix: str = "") -> list[tuple[str, list]]:
    """Every ``history`` list in a pretraining log, named by its path (``dec.stage1``)."""
    out: list[tuple[str, list]] = []
    for key, value in logs.items():
        name = f"{prefix}{key}"
        if key == "history" and isinstance(value, list):
            out.append((prefix.rstrip(".") or "pretrain", [r for r in value if isinstance(r, Mapping)]))
        elif isinstance(value, Mapping):
            out += _histories(value, name + ".")
    return out
