"""The Pretrainer contract: a stage that trains part of a method before supervised training."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import ConfigError
from .meta import ComponentMeta

if TYPE_CHECKING:
    from .context import RunContext
    from .dataset import LoadedDataset
    from .method import Method


class Pretrainer(ABC):
    """Base class of pretrainer plugins.

    A method lists the pretrainers it runs in its ``pretrain`` config section, e.g.
    ``{"stages": ["dec"], "dec": {"epochs": 200}}``. The runner builds each stage with its
    config (overriding ``defaults``) and calls :meth:`fit` after the model is built and before
    supervised training. Pretrainers may use every training sample, including those whose
    label is hidden (``split.labelled`` False) but must never read hidden labels.

    :meth:`fit` returns a JSON-serialisable log (loss curves per term, diagnostics) stored in
    the run's result file under ``pretraining.<name>``. Train through ``context.fit`` (the
    shared loop: progress, per-term logs, selection, frozen parts) rather than a loop of your
    own.
    """

    name: ClassVar[str]
    meta: ClassVar[ComponentMeta]
    defaults: ClassVar[dict[str, Any]] = {}
    #: names of Method attributes/methods this pretrainer needs (checked before fit)
    requires: ClassVar[tuple[str, ...]] = ()
    #: config keys that are epoch counts: ``--epochs N`` / ``--smoke`` cap them at N
    epoch_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **config: Any) -> None:
        unknown = set(config) - set(self.defaults)
        if unknown:
            raise ConfigError(
                f"pretrainer {self.name}: unknown option(s) {', '.join(sorted(unknown))}; "
                f"options: {', '.join(sorted(self.defaults)) or '(none)'} (set them with --set "
                f"pretrain.{self.name}.OPTION=VALUE)")
        from ..config import check_types

        check_types(f"pretrain.{self.name}", config, self.defaults,
                    where=f"pretrainer {self.name}")
        self.config = {**self.defaults, **config}

    @abstractmethod
    def fit(self, model: "Method", data: "LoadedDataset", context: "RunContext") -> dict[str, Any]:
        """Train ``model`` (in place) on ``data``; return a JSON-serialisable log."""
