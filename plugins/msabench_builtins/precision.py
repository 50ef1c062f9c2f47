"""Opt-in mixed precision for training loops: ``train.precision = "fp32" | "bf16" | "auto"``.

    from msabench_builtins.precision import autocast_context

    with autocast_context(device, config["train"].get("precision", "auto")):
        loss, _ = method.training_step(batch)
    loss.backward()                      # outside the context, as torch recommends

- ``"fp32"``: nothing changes (a null context).
- ``"bf16"``: ``torch.autocast(device.type, dtype=torch.bfloat16)``: matrix products and
  attention run in bfloat16, reductions, softmax and losses stay float32 (torch's autocast
  lists), parameters and gradients stay float32. bfloat16 has float32's exponent range, so no
  loss scaling (``GradScaler``) is needed. On CPU it is allowed but rarely faster.
- ``"auto"`` (the intended default): ``"bf16"`` on CUDA devices that support it, ``"fp32"``
  everywhere else (CPU, MPS, older GPUs) -- so CPU results stay bit-for-bit as before.

Evaluation may use the same context (``torch.no_grad()`` inside it). Results trained in bf16
differ from fp32 ones by more than float rounding: record the resolved precision with the run.
"""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

PRECISIONS = ("fp32", "bf16", "auto")


def resolve_precision(device: torch.device | str, precision: str = "auto") -> str:
    """``"fp32"`` or ``"bf16"``: what ``precision`` means on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"train.precision must be one of {', '.join(PRECISIONS)}, "
                         f"got {precision!r}")
    device = torch.device(device)
    if precision != "auto":
        return precision
    if device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def autocast_context(device: torch.device | str, precision: str = "auto") -> ContextManager:
    """A context manager that runs the forward pass (and loss) in ``precision`` on ``device``;
    a null context for fp32."""
    device = torch.device(device)
    if resolve_precision(device, precision) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
