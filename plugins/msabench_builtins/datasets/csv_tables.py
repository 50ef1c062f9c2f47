"""Reading the CSV tables of the raw layouts (CH-SIMS ``label.csv``, MOSI/MOSEI
``segments.csv``): one set of checks, each error naming the file, the line and the row."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from msabench.errors import DataError

from .problems import coded


def line(i: int) -> str:
    """The file line of data row ``i`` (line 1 is the header)."""
    return f"line {i + 2}"


def read_table(path: Path, required: Sequence[str], layout: str, *, lower_case: bool = False,
               why: dict[str, str] | None = None) -> "Any":
    """The CSV at ``path`` as strings, column names stripped (and lower-cased); a clear error
    for an unreadable file, missing (``why`` explains a column) or duplicate columns, no rows."""
    import pandas as pd

    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise coded(DataError(f"{path}: cannot read as CSV ({exc}); {layout}"),
                    "corrupt-file") from None
    df.columns = [str(c).strip().lower() if lower_case else str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        reason = (why or {}).get(missing[0], "") if len(missing) == 1 else ""
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}{reason}; columns "
                        f"present: {', '.join(df.columns) or '(none)'}; {layout}")
    dup = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if dup:
        raise DataError(f"{path}: duplicate column(s) {', '.join(dup)}")
    if len(df) == 0:
        raise DataError(f"{path}: has a header but no rows")
    return df


def numeric_column(df: "Any", col: str, path: Path, ids: Sequence[str], what: str,
                   hint: str = "") -> np.ndarray:
    """Column ``col`` as float64; an error naming the first missing or non-numeric value, its
    line and its row (``what`` ``ids[i]``, e.g. ``segment 'abc_1'``)."""
    import pandas as pd

    raw = df[col].str.strip()
    vals = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(vals)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{path}: column {col!r} has {int(bad.sum())} missing or non-numeric "
                        f"value(s), first {raw.iloc[i]!r} on {line(i)} ({what} {ids[i]!r})"
                        + (f"; {hint}" if hint else ""))
    return vals


def check_range(vals: np.ndarray, col: str, path: Path, ids: Sequence[str], what: str,
                label_range: tuple[float, float]) -> np.ndarray:
    """``vals`` unchanged when every value lies in ``label_range`` (1e-6 slack); otherwise an
    error naming the count, the first value, its line and its row."""
    lo, hi = label_range
    out = (vals < lo - 1e-6) | (vals > hi + 1e-6)
    if out.any():
        i = int(np.argmax(out))
        raise DataError(f"{path}: column {col!r} has {int(out.sum())} value(s) outside the "
                        f"dataset range [{lo}, {hi}], first {vals[i]:g} on {line(i)} "
                        f"({what} {ids[i]!r})")
    return vals
