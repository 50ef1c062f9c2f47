"""The Extractor contract: an encoder of one modality's raw inputs, frozen or fine-tuned.

An extractor is an ``nn.Module`` with two halves:

``prepare(raw)``   no gradient, no learned weights: tokenise transcripts, decode and resample
                   audio, decode, sample and crop video frames. Returns the model inputs as a
                   dict of tensors (padded to the longest input).
``forward(inputs)``  the differentiable encoder: model inputs -> :class:`Features` at the finest
                   grain the encoder has (tokens, audio frames, video clips), with valid lengths.

Pooling is the caller's choice (:func:`pool`: ``"tokens"`` keeps every step, ``"cls"`` the
first, ``"mean"`` the masked mean): a method that fine-tunes an encoder pools as its paper
says; a dataset that pre-computes features pools as its options say
(``data.options.text_pooling`` etc., which a method may set in its defaults).

:meth:`extract` is the frozen path: ``prepare`` + ``forward`` in eval mode under
``torch.no_grad()``, in batches, pooled with the extractor's configured pooling. Datasets use it
to compute (and cache on disk) features once; a method that fine-tunes calls
``forward(prepare(batch.raw(m)))`` inside its own ``forward`` instead, so gradients reach the
encoder.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import torch
from torch import nn

from .meta import ComponentMeta

POOLINGS = ("tokens", "cls", "mean")


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

    def mask(self) -> torch.Tensor:
        steps = torch.arange(self.values.shape[1], device=self.values.device)
        return steps.unsqueeze(0) < self.lengths.to(self.values.device).unsqueeze(1)


def pool(features: Features, how: str) -> Features:
    """``"tokens"``: unchanged; ``"cls"``: the first step (N, 1, D); ``"mean"``: the mean of the
    valid steps (N, 1, D). Differentiable."""
    if how == "tokens":
        return features
    x = features.values
    ones = torch.ones(x.shape[0], dtype=torch.int64, device=features.lengths.device)
    if how == "cls":
        return Features(x[:, :1], ones)
    if how == "mean":
        weights = features.mask().to(x.dtype)
        summed = torch.bmm(weights.unsqueeze(1), x)
        return Features(summed / weights.sum(1).clamp_min(1.0).view(-1, 1, 1), ones)
    raise ValueError(f"pooling {how!r} is not one of {', '.join(POOLINGS)}")


class Extractor(nn.Module):
    """Base class of extractor plugins (module docstring).

    ``modality`` is the modality the extractor reads (``text``, ``audio`` or ``vision``);
    ``config`` overrides ``defaults``. :attr:`output_dim` is known after construction, before
    any input is seen, so methods can be built from it. :meth:`cache_key` identifies the
    configuration for on-disk feature caches. Extractors with pre-trained weights load them in
    :meth:`load` (called by :meth:`extract`, and by a method before it builds its optimiser);
    :meth:`set_trainable` chooses frozen or fine-tuned.
    """

    name: ClassVar[str]
    modality: ClassVar[str]
    meta: ClassVar[ComponentMeta]
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **config: Any) -> None:
        super().__init__()
        unknown = set(config) - set(self.defaults)
        if unknown:
            raise ValueError(
                f"extractor {self.name}: unknown option(s) {', '.join(sorted(unknown))}; "
                f"options: {', '.join(sorted(self.defaults))}")
        self.config = {**self.defaults, **config}

    @property
    @abstractmethod
    def output_dim(self) -> int:
        """Feature dimension D of :meth:`forward`'s output."""

    def load(self) -> None:
        """Load weights (no-op for extractors without any)."""

    @abstractmethod
    def prepare(self, raw: Sequence[Any]) -> dict[str, torch.Tensor]:
        """Turn N raw inputs (strings, waveforms, frame arrays, paths, MediaRefs) into the
        encoder's inputs; no gradient flows through this step."""

    @abstractmethod
    def forward(self, inputs: Mapping[str, torch.Tensor]) -> Features:  # type: ignore[override]
        """The encoder: prepared inputs -> finest-grain features with lengths."""

    def encode(self, raw: Sequence[Any], pooling: str = "tokens") -> Features:
        """``pool(forward(prepare(raw)), pooling)`` on the module's device, with gradients
        where the module is trainable (the fine-tuning path)."""
        inputs = self.prepare(raw)
        device = next((p.device for p in self.parameters()), torch.device("cpu"))
        return pool(self({k: v.to(device) for k, v in inputs.items()}), pooling)

    def set_trainable(self, trainable: bool) -> "Extractor":
        """Fine-tune (True) or freeze (False) every weight of the extractor."""
        self.load()
        for p in self.parameters():
            p.requires_grad_(bool(trainable))
        return self

    @abstractmethod
    def extract(self, inputs: Sequence[Any]) -> Features:
        """The frozen path: N raw inputs -> pooled features, eval mode, no gradient."""

    def cache_key(self) -> str:
        items = ",".join(f"{k}={self.config[k]!r}" for k in sorted(self.config))
        return f"{self.name}({items})"
