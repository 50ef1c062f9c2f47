"""The Method contract: a complete model plus its training recipe."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import torch
from torch import nn

from .dataset import Batch, DataInfo
from .meta import ComponentMeta

if TYPE_CHECKING:
    from ..registry import Registry
    from .extractor import Extractor
    from .fusion import Fusion


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
    sample on the dataset's label scale. ``prediction_kind`` says what ``pred`` is:

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

    def __init__(self, info: DataInfo, config: Mapping[str, Any], components: Components) -> None:
        super().__init__()
        self.info = info
        self.config = dict(config)
        self.components = components

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

    def configure_optimizer(self, train: Mapping[str, Any]) -> torch.optim.Optimizer:
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=float(train["lr"]),
                                weight_decay=float(train.get("weight_decay", 0.0)))

    def num_parameters(self, trainable_only: bool = True) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)
