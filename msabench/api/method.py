"""The Method contract: a complete model plus its training recipe."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Iterator, Mapping

import torch
from torch import nn

from .context import Schedule
from .dataset import MODALITIES, Batch, DataInfo, LoadedDataset  # noqa: F401
from .meta import ComponentMeta

if TYPE_CHECKING:
    from ..models import ModelNeed
    from ..registry import Registry
    from .context import RunContext
    from .extractor import Extractor
    from .fusion import Fusion

#: what a head can be scored against: the multimodal label or a unimodal label
TARGETS = ("label",) + MODALITIES


class Components:
    """Builds other registered components by name (a method asks for its fusion this way)."""

    def __init__(self, registry: "Registry") -> None:
        self.registry = registry

    def fusion(self, name: str, input_dims: Mapping[str, int], **params: Any) -> "Fusion":
        return self.registry.load("fusion", name)(input_dims, **params)

    def extractor(self, name: str, **config: Any) -> "Extractor":
        return self.registry.load("extractor", name)(**config)


class Method(nn.Module):
    """Base class of method plugins.

    ``defaults`` holds the method's documented defaults in three sections:

    ``train``
        recipe read by the runner: ``epochs``, ``batch_size``, ``lr``, ``weight_decay``,
        ``patience`` (early stopping, in epochs), ``grad_clip`` (0 = off), ``select``
        (``"loss"`` or a metric key such as ``"mae"``) -- see :data:`msabench.config.TRAIN_DEFAULTS`.
    ``model``
        hyperparameters handed to ``__init__`` as ``config``.
    ``pretrain``
        ``{"stages": [pretrainer names], "<name>": {options}}``; empty for most methods.

    ``dataset_defaults[dataset_name]`` overlays ``defaults`` for one dataset (record the source
    in ``meta.defaults_source``). Precedence: CLI ``--set`` > ``--config`` TOML > dataset
    defaults > defaults.

    ``forward`` returns a dict with at least ``"pred"``: the scalar sentiment prediction per
    sample on the dataset's label scale.

    Heads: :attr:`heads` maps each scored output of ``forward`` to its target, ``"label"`` (the
    multimodal label) or a modality name (that modality's unimodal label), e.g.
    ``{"pred": "label", "pred_text": "text"}``. Set it on the instance in ``__init__`` when it
    depends on the data (:attr:`DataInfo.unimodal` lists the unimodal labels present). Every
    head is scored with the dataset's metrics and stored in the result file; ``train.select``
    accepts ``<head>.<metric>``. Leaderboards show ``pred``.

    Frozen parts: :meth:`frozen` lists sub-modules that supervised training must not change
    (e.g. a pretrained evaluator): the loop keeps them in eval mode and gives them no
    gradient, and they are left out of the trainable parameter count.

    Schedulers: :meth:`configure_scheduler` returns a :class:`~msabench.api.Schedule` (the
    scheduler and whether it steps per optimiser step or per epoch) or None.

    During a run, :attr:`context` is the run's :class:`~msabench.api.RunContext` (device, seed,
    progress and the shared loop), for methods with a training step of their own.

    Modality removal: :meth:`droppable_modalities` names the modalities the method can run
    *without* (default none); inside ``with model.without({"audio"}):`` :attr:`absent` holds
    them and ``forward`` must leave them out of the fusion, so its outputs do not depend on
    their features, masks or raw inputs at all (``msabench robustness`` reports this as
    ``absent:<m>`` next to ``drop:<m>``, which only zeroes the inputs).
    :class:`~msabench.api.ComposedMethod` does this for every fusion that declares
    ``supports_absent``.

    ``prediction_kind`` says what ``pred`` is:

    ``"regression"``           a regression output; every metric applies.
    ``"probability"``          a class probability mapped to the label scale (document how);
                               metrics that need a true regression output (MAE, Corr, Acc-k)
                               are reported as not applicable.
    ``"probability-mapped"``   the same, but the method documents a mapping meant to be scored
                               by every metric (e.g. ``transformer``: ``3 (2p - 1)`` on MOSI);
                               all metrics are computed and leaderboards mark the row.
    """

    name: ClassVar[str]
    meta: ClassVar[ComponentMeta]
    defaults: ClassVar[dict[str, dict[str, Any]]] = {"train": {}, "model": {}, "pretrain": {}}
    dataset_defaults: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {}
    prediction_kind: ClassVar[str] = "regression"
    requires_aligned: ClassVar[bool] = False
    requires_texts: ClassVar[bool] = False
    #: the seeds of a run may train as one stacked model (``msabench run --vectorize``,
    #: docs/vectorize.md): ``forward`` works under ``torch.func.vmap`` (no data-dependent
    #: Python control flow inside :func:`msabench.vectorized.in_stacked_forward`)
    vectorizable: ClassVar[bool] = False
    heads: dict[str, str] = {"pred": "label"}
    #: the modalities left out of the fusion now (set by :meth:`without`, read by ``forward``)
    absent: frozenset[str] = frozenset()

    def __init__(self, info: DataInfo, config: Mapping[str, Any], components: Components) -> None:
        super().__init__()
        self.info = info
        self.config = dict(config)
        self.components = components
        self.context: "RunContext | None" = None

    def setup(self, data: "LoadedDataset") -> None:
        """Called by the runner once per seed after the model is built and :attr:`context` is
        set, before pretraining: a method may look at the loaded data here (print notices,
        cache frozen encoders' features). Hidden labels are NaN. Default: nothing."""

    @classmethod
    def required_models(cls, config: Mapping[str, Any]) -> list["ModelNeed"]:
        """The pre-trained checkpoints a run with the resolved ``config`` loads (``msabench
        models`` lists, downloads and verifies them). Called on the class, before any data is
        read, so it reads the config only.

        Default: every string value of a ``model`` key named ``model`` or ending in
        ``_model`` (``model.model``, ``model.text_model``), ``"none"`` and empty strings
        excepted, with ``model.revision`` when present. Override it when checkpoints are
        named elsewhere (a fusion option, a pretrainer) or to give the modality and role.
        """
        from ..models import ModelNeed

        model = config.get("model", {}) or {}
        revision = model.get("revision") if isinstance(model.get("revision"), str) else None
        needs = []
        for key, value in model.items():
            if (key == "model" or key.endswith("_model")) and isinstance(value, str) \
                    and value.strip() and value.strip().lower() != "none":
                needs.append(ModelNeed(value, f"model.{key}", revision=revision,
                                       role=f"{cls.name} {key.replace('_', ' ')}"))
        return needs

    def sample_lengths(self, split: Any) -> Any:
        """(N,) token count of each sample of ``split``, which ``train.bucket_by_length``
        sorts by (:mod:`msabench.bucketing`); default None: the transcripts' word counts, or
        the longest valid sequence. A method that tokenises returns its own counts."""
        return None

    def droppable_modalities(self) -> set[str]:
        """The modalities ``forward`` can leave out of the fusion (:attr:`absent`); default
        none: the method cannot run without any of its modalities."""
        return set()

    @contextlib.contextmanager
    def without(self, modalities: Iterable[str]) -> Iterator[None]:
        """Run ``forward`` with ``modalities`` left out of the fusion inside the block; a
        modality the method cannot drop (or all of them) raises ``ValueError`` naming it."""
        names = frozenset(modalities)
        cannot = sorted(names - self.droppable_modalities())
        if cannot:
            raise ValueError(f"method {self.name} cannot leave {', '.join(cannot)} out of its "
                             "fusion (droppable: "
                             f"{', '.join(sorted(self.droppable_modalities())) or 'none'})")
        if names and names >= set(self.info.modalities):
            raise ValueError(f"method {self.name}: dropping every modality leaves no input")
        previous, self.absent = self.absent, names
        try:
            yield
        finally:
            self.absent = previous

    @classmethod
    def vectorize_refusal(cls, config: Mapping[str, Any]) -> str | None:
        """Why a run with the resolved ``config`` cannot train its seeds as one stacked model
        (None: it can), for a method that declares :attr:`vectorizable` (the runner checks the
        flag first). Default: a reason unless :attr:`vectorizable`. Called on the class."""
        if not cls.vectorizable:
            return f"method {cls.name} does not declare vectorizable = True"
        return None

    def frozen(self) -> list[nn.Module]:
        """Sub-modules kept in eval mode and unchanged by supervised training (default none)."""
        return []

    def check_heads(self) -> dict[str, str]:
        """:attr:`heads`, validated: ``pred`` -> ``label`` present, targets known."""
        heads = dict(self.heads)
        if heads.get("pred") != "label":
            raise ValueError(f"method {self.name}: heads must map 'pred' to 'label', got "
                             f"{heads!r}")
        bad = {k: v for k, v in heads.items() if v not in TARGETS}
        if bad:
            raise ValueError(f"method {self.name}: unknown head target(s) {bad}; targets: "
                             f"{', '.join(TARGETS)}")
        return heads

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def loss(self, outputs: Mapping[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        """Supervised loss on labelled rows only (default: L1, as MMSA's regression methods)."""
        keep = batch.labelled
        if not bool(keep.any()):
            return outputs["pred"].sum() * 0.0
        return nn.functional.l1_loss(outputs["pred"][keep], batch.label[keep])

    def training_step(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        outputs = self(batch)
        loss = self.loss(outputs, batch)
        return loss, {"loss": float(loss.detach())}

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters that require a gradient and are not in a :meth:`frozen` part."""
        frozen = {id(p) for m in self.frozen() for p in m.parameters()}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in frozen]

    def configure_optimizer(self, train: Mapping[str, Any]) -> torch.optim.Optimizer:
        """Adam at ``train.lr`` / ``train.weight_decay`` over :meth:`trainable_parameters`.
        ``foreach=True``: torch's multi-tensor update, bit-for-bit the single-tensor one
        (``tests/test_runner.py``) and faster on CPU, where torch would default to one tensor
        at a time (MulT's 459 tensors: ~34 ms instead of ~53 ms per step)."""
        return torch.optim.Adam(self.trainable_parameters(), lr=float(train["lr"]),
                                weight_decay=float(train.get("weight_decay", 0.0)),
                                foreach=True)

    def configure_scheduler(self, optimizer: torch.optim.Optimizer, train: Mapping[str, Any],
                            steps_per_epoch: int) -> Schedule | None:
        """The learning-rate schedule of supervised training (default: none)."""
        return None

    def num_parameters(self, trainable_only: bool = True) -> int:
        if trainable_only:
            return sum(p.numel() for p in self.trainable_parameters())
        return sum(p.numel() for p in self.parameters())
