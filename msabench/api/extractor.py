"""The Extractor contract: raw inputs of one modality -> feature tensors."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import torch

from .meta import ComponentMeta


@dataclass
class Features:
    """(N, T, D) float features with (N,) int64 valid lengths."""

    values: torch.Tensor
    lengths: torch.Tensor

    def __post_init__(self) -> None:
        if self.values.dim() != 3 or self.lengths.shape != (self.values.shape[0],):
            raise ValueError(
                f"Features must be (N, T, D) with (N,) lengths, got {tuple(self.values.shape)} "
                f"and {tuple(self.lengths.shape)}")


class Extractor(ABC):
    """Base class of extractor plugins.

    ``modality`` is the modality the extractor reads (``text``, ``audio`` or ``vision``);
    ``config`` overrides ``defaults``. :attr:`output_dim` is known after construction, before
    any input is seen, so methods can be built from it. :meth:`cache_key` identifies the
    configuration for on-disk feature caches.
    """

    name: ClassVar[str]
    modality: ClassVar[str]
    meta: ClassVar[ComponentMeta]
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **config: Any) -> None:
        unknown = set(config) - set(self.defaults)
        if unknown:
            raise ValueError(
                f"extractor {self.name}: unknown option(s) {', '.join(sorted(unknown))}; "
                f"options: {', '.join(sorted(self.defaults))}")
        self.config = {**self.defaults, **config}

    @property
    @abstractmethod
    def output_dim(self) -> int:
        """Feature dimension D of :meth:`extract`'s output."""

    @abstractmethod
    def extract(self, inputs: Sequence[Any]) -> Features:
        """Turn N raw inputs (strings, waveforms, frame arrays, paths) into features."""

    def cache_key(self) -> str:
        items = ",".join(f"{k}={self.config[k]!r}" for k in sorted(self.config))
        return f"{self.name}({items})"
