"""Paired per-seed comparisons of two leaderboard rows, hand-listed or automatic.

``leaderboards/comparisons.toml`` lists pairs (e.g. ``dec-semi`` against
``transformer@lf0.4``); besides those, every variant of a method is compared with the
method's default row over the seeds both have. For each metric: the per-seed differences
(candidate minus baseline), their mean ± sample std and a two-sided paired t-test (scipy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import MsabenchError

from .leaderboard_format import fmt as _fmt, read_toml as _read_toml
from .results import run_leaf


@dataclass
class Comparison:
    """``candidate`` minus ``baseline`` per shared seed; rows are ``method`` or
    ``method@variant``."""

    dataset: str
    baseline: str
    candidate: str
    metrics: list[str]
    setting: str = ""
    note: str = ""


#: a paired difference is called significant below this two-sided p-value
ALPHA = 0.05

def load_comparisons(path: Path | None) -> list[Comparison]:
    if path is None or not Path(path).is_file():
        return []
    out = []
    for i, row in enumerate(_read_toml(path).get("pair", [])):
        missing = [k for k in ("dataset", "baseline", "candidate", "metrics") if k not in row]
        if missing:
            raise MsabenchError(f"{path}: [[pair]] #{i + 1} lacks {', '.join(missing)}")
        if not isinstance(row["metrics"], list) or not row["metrics"]:
            raise MsabenchError(f"{path}: [[pair]] #{i + 1}: metrics must be a non-empty list "
                                "of metric keys, e.g. [\"acc2_non0\", \"f1_non0\"]")
        out.append(Comparison(row["dataset"], row["baseline"], row["candidate"],
                              [str(m) for m in row["metrics"]], row.get("setting", ""),
                              row.get("note", "")))
    return out


def render_comparisons(dataset: str, setting: str, group: Any,
                       infos: Mapping[tuple[str, str], Mapping[str, Any]],
                       comparisons: Iterable[Comparison]) -> str:
    """Paired per-seed differences for the comparisons whose two rows both have results here."""
    from scipy import stats
    from tabulate import tabulate

    keys = {run_leaf(m, v): rows for (m, v), rows in group.groupby(["method", "variant"])}
    blocks = []
    for comp in comparisons:
        if comp.dataset != dataset or comp.setting not in ("", setting):
            continue
        if comp.baseline not in keys or comp.candidate not in keys:
            continue
        base = keys[comp.baseline].set_index("seed")
        cand = keys[comp.candidate].set_index("seed")
        seeds = sorted(set(base.index) & set(cand.index))
        table = []
        for key in comp.metrics:
            info = infos.get((dataset, key), {})
            col = f"m:{key}"
            if not seeds or col not in base or col not in cand:
                continue
            b = [float(base.loc[s, col]) for s in seeds]
            c = [float(cand.loc[s, col]) for s in seeds]
            if any(math.isnan(v) for v in b + c):
                continue
            diff = [y - x for x, y in zip(b, c)]
            mean = sum(diff) / len(diff)
            std = (math.sqrt(sum((d - mean) ** 2 for d in diff) / (len(diff) - 1))
                   if len(diff) > 1 else math.nan)
            p = math.nan
            if len(diff) > 1 and std > 0:
                p = float(stats.ttest_rel(c, b).pvalue)
            scale, digits = (100.0, 2) if info.get("percent") else (1.0, 3)
            higher = info.get("higher_is_better", True)
            if math.isnan(p):
                verdict = "n/a (fewer than 2 seeds or identical differences)"
            elif p < ALPHA:
                better = (mean > 0) == bool(higher)
                verdict = f"yes: candidate {'better' if better else 'worse'}"
            else:
                verdict = "no"
            table.append([
                info.get("display", key),
                _fmt(sum(b) / len(b), info, _std(b)), _fmt(sum(c) / len(c), info, _std(c)),
                ", ".join(f"{d * scale:+.{digits}f}" for d in diff),
                f"{mean * scale:+.{digits}f} ± " + ("–" if math.isnan(std) else f"{std * scale:.{digits}f}"),
                "–" if math.isnan(p) else f"{p:.3f}", verdict])
        if not table:
            continue
        head = (f"\n**Paired comparison: `{comp.candidate}` vs `{comp.baseline}`** (same seeds "
                f"{', '.join(str(s) for s in seeds)}; candidate minus baseline; two-sided paired "
                f"t-test, significant at p < {ALPHA})" + (f". {comp.note}" if comp.note else "")
                + "\n")
        blocks.append(head)
        blocks.append(tabulate(table, headers=["Metric", comp.baseline, comp.candidate,
                                               "Per-seed difference", "Mean difference",
                                               "p", "Significant"],
                               tablefmt="github", disable_numparse=True))
    return "\n".join(blocks)


def _std(values: list[float]) -> float:
    if len(values) < 2:
        return math.nan
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def paired(base: list[float], cand: list[float]) -> tuple[float, float, float]:
    """Mean and sample std of ``cand - base`` per seed, and the two-sided paired t-test p
    (NaN with fewer than two seeds or identical differences)."""
    from scipy import stats

    diff = [c - b for b, c in zip(base, cand)]
    mean = sum(diff) / len(diff)
    std = _std(diff)
    p = float(stats.ttest_rel(cand, base).pvalue) if len(diff) > 1 and std > 0 else math.nan
    return mean, std, p


def headline_metrics(keys: list[str], infos: Mapping[tuple[str, str], Mapping[str, Any]],
                     dataset: str) -> list[str]:
    """The columns of the automatic comparisons: the first two percentage metrics (Acc2 and
    F1 in leaderboard order), then MAE and Corr where the table has them."""
    percent = [k for k in keys if infos.get((dataset, k), {}).get("percent")][:2]
    return percent + [k for k in ("mae", "corr") if k in keys]


def render_variant_comparisons(dataset: str, setting: str, group: Any, keys: list[str],
                               infos: Mapping[tuple[str, str], Mapping[str, Any]],
                               listed: Iterable[Comparison]) -> str:
    """Every variant of a method against the method's default row, paired over the seeds both
    have (two or more), in one table; pairs already in comparisons.toml are left to their own
    block."""
    from tabulate import tabulate

    hand = {(c.baseline, c.candidate) for c in listed
            if c.dataset == dataset and c.setting in ("", setting)}
    rows_by = {(m, v): r for (m, v), r in group.groupby(["method", "variant"], sort=True)}
    metrics = headline_metrics(keys, infos, dataset)
    table = []
    for (method, variant), cand in rows_by.items():
        base = rows_by.get((method, "default"))
        if variant == "default" or base is None or (method, run_leaf(method, variant)) in hand:
            continue
        b, c = base.set_index("seed"), cand.set_index("seed")
        seeds = sorted(set(b.index) & set(c.index))
        if len(seeds) < 2:
            continue
        cells = [f"{method} ({variant})", str(len(seeds))]
        for key in metrics:
            col = f"m:{key}"
            if col not in b or col not in c:
                cells.append("–")
                continue
            x = [float(b.loc[s, col]) for s in seeds]
            y = [float(c.loc[s, col]) for s in seeds]
            if any(math.isnan(v) for v in x + y):
                cells.append("–")
                continue
            mean, _, p = paired(x, y)
            info = infos.get((dataset, key), {})
            scale, digits = (100.0, 2) if info.get("percent") else (1.0, 3)
            mark = "*" if not math.isnan(p) and p < ALPHA else ""
            cells.append(f"{mean * scale:+.{digits}f} (p {'–' if math.isnan(p) else f'{p:.3f}'})"
                         + mark)
        table.append(cells)
    if not table:
        return ""
    headers = ["Variant vs its method's default", "Shared seeds"] + [
        infos.get((dataset, k), {}).get("display", k) for k in metrics]
    return ("\n**Variants against their method's default** (paired over the shared seeds; mean "
            f"difference variant minus default, two-sided paired t-test p; * p < {ALPHA}):\n\n"
            + tabulate(table, headers=headers, tablefmt="github", disable_numparse=True))
