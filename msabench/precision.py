"""Mixed precision of the shared loop: ``train.precision = "auto" | "fp32" | "bf16"``.

- ``"fp32"``: nothing changes (a null context).
- ``"bf16"``: ``torch.autocast(device.type, dtype=torch.bfloat16)`` around the forward passes of
  training and evaluation: matrix products and attention run in bfloat16; reductions, softmax
  and losses stay float32 (torch's autocast lists); parameters, gradients and optimiser state
  stay float32. bfloat16 has float32's exponent range, so no loss scaling is needed.
- ``"auto"`` (the default): ``"bf16"`` on CUDA devices that support it, ``"fp32"`` everywhere
  else (CPU, MPS, older GPUs), so CPU results stay bit-for-bit what they were before the key
  existed.

On a CPU without native bfloat16 instructions (AVX512-BF16 / AMX; oneDNN's
``_is_mkldnn_bf16_supported``) ``"bf16"`` still works (torch emulates it) but is slower than
fp32: :func:`precision_notice` says so, and the runner's loop prints it once.

The loop (:mod:`msabench.training`) autocasts ``step(batch)`` (the method's forward and loss)
and ``model(batch)`` in evaluation, and computes the evaluation loss and every metric from
float32 copies of the outputs. A run records the resolved precision (``precision`` in its
result file) next to ``train.precision`` in its config.
"""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

from .config import PRECISIONS
from .errors import ConfigError


def check_precision(precision: object) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`; else a :class:`ConfigError` naming it."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ConfigError(f"train.precision={precision!r} is not one of "
                          f"{', '.join(PRECISIONS)} (auto: bf16 autocast on CUDA, fp32 on "
                          f"CPU); e.g. --set train.precision=fp32")
    return precision


def resolve_precision(device: torch.device | str, precision: str = "auto") -> str:
    """``"fp32"`` or ``"bf16"``: what ``precision`` means on ``device``."""
    check_precision(precision)
    device = torch.device(device)
    if precision != "auto":
        return precision
    if device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bfloat16 instructions oneDNN uses (AVX512-BF16, AMX)."""
    check = getattr(getattr(torch.ops, "mkldnn", None), "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except (RuntimeError, AttributeError):  # pragma: no cover (torch without oneDNN)
        return False


def precision_notice(device: torch.device | str, resolved: str) -> str | None:
    """A one-line notice for a slow combination (bf16 on a CPU without bf16 instructions),
    else None."""
    device = torch.device(device)
    if resolved == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        return ("train.precision=bf16 on a CPU without bfloat16 instructions (no AVX512-BF16 "
                "or AMX): torch emulates bf16, so this run is slower than fp32 and its metrics "
                "still differ from fp32 ones; use train.precision=fp32 (or auto) for speed")
    return None


def autocast_context(device: torch.device | str, precision: str = "auto") -> ContextManager:
    """A context manager that runs the forward pass (and loss) in ``precision`` on ``device``;
    a null context for fp32."""
    device = torch.device(device)
    if resolve_precision(device, precision) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
