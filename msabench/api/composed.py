"""A method composed of registered components: its modalities, one fusion, and a head."""

from __future__ import annotations

from typing import Any, Mapping

import torch

from .dataset import Batch, DataInfo
from .method import Components, Method


class ComposedMethod(Method):
    """Base class of methods that are "modalities -> a registered fusion -> a head".

    ``__init__`` keeps ``self.modalities`` (the run's modalities, in order) and builds
    ``self.fusion`` from :meth:`fusion_spec` with one input per modality (its feature size).
    A subclass calls ``super().__init__`` first and then builds its head modules from
    ``self.fusion.output_dim``, so parameters are created fusion first, head second.
    ``forward`` is ``head(fuse(batch))``; a subclass implements :meth:`head` and, unless the
    fusion and its parameters come from ``model.fusion`` / ``model.fusion_params``,
    :meth:`fusion_spec`.

    The name ``head`` is taken by the method: store head modules under other attribute names.
    """

    def __init__(self, info: DataInfo, config: Mapping[str, Any], components: Components) -> None:
        super().__init__(info, config, components)
        self.modalities = list(info.modalities)
        name, params = self.fusion_spec()
        self.fusion = components.fusion(
            name, {m: info.feature_dims[m] for m in self.modalities}, **dict(params))

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "head":
            raise AttributeError(
                f"{type(self).__name__}: 'head' is ComposedMethod.head (the method that turns "
                "the fused representation into outputs); store head modules under another name")
        super().__setattr__(name, value)

    def fusion_spec(self) -> tuple[str, Mapping[str, Any]]:
        """(registered fusion name, its keyword parameters); default: ``model.fusion`` and
        ``model.fusion_params``."""
        return self.config["fusion"], dict(self.config.get("fusion_params") or {})

    def droppable_modalities(self) -> set[str]:
        """Every modality, when the fusion declares ``supports_absent`` and there are two or
        more; none otherwise."""
        if getattr(self.fusion, "supports_absent", False) and len(self.modalities) > 1:
            return set(self.modalities)
        return set()

    def fuse(self, batch: Batch, **kwargs: Any) -> torch.Tensor:
        """The fusion's output (B, fusion.output_dim) for the features and masks of this
        method's modalities; ``kwargs`` go to the fusion unchanged (e.g. MulT's
        ``cross_scale``); the :attr:`absent` modalities go as ``absent=`` when there are
        any (the fusion never reads their features)."""
        feats = {m: batch.features[m] for m in self.modalities}
        masks = {m: batch.mask(m) for m in self.modalities}
        if self.absent:
            kwargs["absent"] = self.absent
        return self.fusion(feats, masks, **kwargs)

    def head(self, fused: torch.Tensor) -> dict[str, torch.Tensor]:  # pragma: no cover
        """Fused representation -> outputs, at least ``{"pred": (B,)}``."""
        raise NotImplementedError

    def forward(self, batch: Batch, **fuse_kwargs: Any) -> dict[str, torch.Tensor]:
        return self.head(self.fuse(batch, **fuse_kwargs))
