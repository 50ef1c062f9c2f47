"""Small helpers shared by the leaderboard and comparison renderers."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, Mapping

from .errors import MsabenchError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise MsabenchError(f"{path} is not valid TOML: {exc}") from exc


def fmt(value: float, info: Mapping[str, Any], std: float | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    scale, digits = (100.0, 2) if info.get("percent") else (1.0, 3)
    text = f"{value * scale:.{digits}f}"
    if std is not None:
        text += " ± " + ("–" if math.isnan(std) else f"{std * scale:.{digits}f}")
    return text


def row_label(method: str, variant: str) -> str:
    """A leaderboard row's name: the method, with its variant in parentheses unless default."""
    return method if variant == "default" else f"{method} ({variant})"
