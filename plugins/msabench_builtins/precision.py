"""Mixed precision for training loops (moved to :mod:`msabench.precision`, where the shared
loop reads ``train.precision``); kept so that plugins importing it from here keep working."""

from msabench.precision import (PRECISIONS, autocast_context, check_precision,  # noqa: F401
                                cpu_has_native_bf16, precision_notice, resolve_precision)
