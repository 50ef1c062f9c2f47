"""Small building blocks shared by the built-in methods, chosen for CPU speed.

``FastDropout``  inverted dropout whose mask comes from ``torch.rand`` (``mask = U >= p``)
                 instead of ``Tensor.bernoulli_``. Same distribution and scaling as
                 ``nn.Dropout`` (each entry kept with probability ``1 - p`` and scaled by
                 ``1 / (1 - p)``), a different random stream. On CPU torch's ``bernoulli_``
                 is slow: on TFN's (32, 140,481) fused tensor it takes ~37 ms against ~21 ms
                 for the uniform draw (2 cores, torch 2.13).
``fused_adam``   ``torch.optim.Adam`` with ``fused=True`` (one kernel per step instead of a
                 chain of foreach ops; supported on CPU from torch 2.4), falling back to the
                 default implementation where the fused one is unavailable. The update is
                 Adam's; rounding differs from the foreach implementation in the last bits.
                 On TFN's 9.0M-weight post-fusion layer one step takes ~5 ms instead of ~34 ms.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


class FastDropout(nn.Module):
    """Inverted dropout with a uniform-draw mask (see the module doc)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must lie in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand_like(x) >= self.p
        return x * keep.to(x.dtype) * (1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


def fused_adam(params: Iterable[torch.nn.Parameter], lr: float,
               weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam with ``fused=True`` where torch supports it, else the default implementation."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
