"""Extra leaderboard sections: label-efficiency curves and modality robustness.

Both are derived from files on disk, like the tables: curves from the result files (every
method whose variants differ only in ``data.label_fraction``, at two or more fractions),
robustness from the ``robustness-seed-*.json`` records of ``msabench robustness``. Each
section is a markdown table plus a link to its SVG figure (:mod:`msabench.plots`).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Iterable, Mapping

from .leaderboard_format import fmt, row_label

#: the metric the curves, robustness tables and figures show, first present wins
MAIN_METRICS = ("acc2_non0", "acc2", "acc2_has0")
LABEL_KEYS = ("label_fraction", "valid_label_fraction", "label_seed")


def main_metric(keys: Iterable[str], infos: Mapping[tuple[str, str], Mapping[str, Any]],
                dataset: str) -> str | None:
    keys = list(keys)
    for key in MAIN_METRICS:
        if key in keys:
            return key
    ordered = sorted(keys, key=lambda k: (infos.get((dataset, k), {}).get("order", 999), k))
    return ordered[0] if ordered else None


def figure_name(dataset: str, setting: str, kind: str) -> str:
    return f"figures/{dataset}--{setting}--{kind}.svg"


def base_key(config_json: str) -> str:
    """A row's identity without its label fraction: rows that share it form one curve."""
    flat = json.loads(config_json)
    fraction = flat.get("data.label_fraction", 1.0)
    valid = flat.get("data.valid_label_fraction")
    # the validation protocol is part of the curve: "follows train" (the default) or a fixed
    # labelled fraction of valid (e.g. 1.0, the old protocol: variants named ..._vlf1)
    protocol = "follows" if valid is None or valid == fraction else valid
    base = {k: v for k, v in flat.items() if not any(k == f"data.{x}" for x in LABEL_KEYS)}
    return json.dumps({**base, "valid_protocol": protocol}, sort_keys=True)


def curve_label(method: str, variant: str) -> str:
    rest = "_".join(p for p in variant.split("_")
                    if not re.fullmatch(r"v?lf[0-9.]+", p) and p != "default")
    return method if not rest else f"{method} ({rest})"


def curves(group: Any) -> dict[str, list[dict[str, Any]]]:
    """Curve label -> points ``{"fraction", "variant", "rows"}`` sorted by fraction, for
    every method whose rows differ only in the label fraction, at two or more fractions."""
    out: dict[str, list[dict[str, Any]]] = {}
    for (method, base), rows in group.groupby(["method", group["config"].map(base_key)],
                                              sort=True):
        points = []
        for (fraction, variant), sub in rows.groupby(["label_fraction", "variant"], sort=True):
            points.append({"fraction": float(fraction), "variant": variant, "rows": sub})
        if len({p["fraction"] for p in points}) < 2:
            continue
        labels = {curve_label(method, p["variant"]) for p in points}
        label = sorted(labels, key=len)[0]
        while label in out:
            label += "'"
        out[label] = sorted(points, key=lambda p: p["fraction"])
    return out


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) \
        if len(values) > 1 else math.nan
    return mean, std


def render_curves(dataset: str, setting: str, group: Any,
                  infos: Mapping[tuple[str, str], Mapping[str, Any]],
                  figure: str | None) -> str:
    from tabulate import tabulate

    found = curves(group)
    metric = main_metric([c[2:] for c in group.columns if c.startswith("m:")], infos, dataset)
    if not found or metric is None:
        return ""
    info = infos.get((dataset, metric), {})
    fractions = sorted({p["fraction"] for pts in found.values() for p in pts})
    table = []
    for label, points in found.items():
        by = {p["fraction"]: p for p in points}
        cells = [label]
        for f in fractions:
            if f not in by:
                cells.append("")
                continue
            vals = [float(v) for v in by[f]["rows"][f"m:{metric}"].dropna()]
            if not vals:
                cells.append("–")
                continue
            mean, std = _mean_std(vals)
            cells.append(f"{fmt(mean, info, std)} (n={len(vals)})")
        table.append(cells)
    out = [f"### Label efficiency: {info.get('display', metric)} vs labelled fraction", "",
           "Each point is a variant trained with that fraction of the train labels "
           "(`--label-fractions`, seeded and stratified; validation as labelled as train "
           "unless the variant says otherwise); mean ± sample std over seeds (n).", "",
           tabulate(table, headers=["Method"] + [f"{f:g}" for f in fractions],
                    tablefmt="github", disable_numparse=True)]
    if figure:
        out += ["", f"![label efficiency on {dataset}/{setting}]({figure})"]
    return "\n".join(out)


def _labelled(records: Iterable[Mapping[str, Any]], dataset: str,
              setting: str) -> Iterable[tuple[str, Mapping[str, Any]]]:
    """The robustness records of ``dataset``/``setting`` with their table row labels."""
    for rec in records:
        if rec["dataset"] == dataset and rec["setting"] == setting:
            yield row_label(rec["method"], rec["variant"]), rec


def robustness_frame(records: Iterable[Mapping[str, Any]], dataset: str, setting: str,
                     metric: str) -> dict[str, dict[str, list[float]]]:
    """``{row label: {perturbation: [value per seed]}}`` (``clean`` included); unsupported
    perturbations map to an empty list."""
    out: dict[str, dict[str, list[float]]] = {}
    for label, rec in _labelled(records, dataset, setting):
        row = out.setdefault(label, {})
        clean = (rec.get("clean") or {}).get(metric)
        if clean is not None:
            row.setdefault("clean", []).append(float(clean))
        for p in rec.get("perturbations", []):
            cell = row.setdefault(p["name"], [])
            value = (p.get("metrics") or {}).get(metric) if p.get("status") == "ok" else None
            if value is not None:
                cell.append(float(value))
    return out


def no_effect_cells(records: Iterable[Mapping[str, Any]], dataset: str,
                    setting: str) -> set[tuple[str, str]]:
    """``(row label, perturbation)`` pairs flagged ``no_effect`` in every seed's record: the
    method does not read that input (e.g. word dropout on pre-extracted utterance vectors),
    so the cell says so instead of showing a change of zero as if it were robustness."""
    seen: dict[tuple[str, str], bool] = {}
    for label, rec in _labelled(records, dataset, setting):
        for p in rec.get("perturbations", []):
            if p.get("status") == "ok":
                key = (label, p["name"])
                seen[key] = seen.get(key, True) and bool(p.get("no_effect"))
    return {key for key, flag in seen.items() if flag}


def _order(name: str) -> tuple:
    kind, _, rest = name.partition(":")
    rank = {"clean": 0, "drop": 1, "absent": 2, "noise": 3, "words": 4}.get(kind, 5)
    mod, _, snr = rest.partition("@")
    number = float(re.sub(r"[^0-9.\-]", "", snr or rest) or 0) if (snr or kind == "words") else 0
    return (rank, mod, -number if kind == "noise" else number)


def render_robustness(dataset: str, setting: str, records: list[Mapping[str, Any]],
                      infos: Mapping[tuple[str, str], Mapping[str, Any]],
                      figure: str | None) -> str:
    from tabulate import tabulate

    keys = sorted({k for r in records for k in (r.get("clean") or {})})
    metric = main_metric(keys, infos, dataset)
    frame = robustness_frame(records, dataset, setting, metric) if metric else {}
    if not frame:
        return ""
    unread = no_effect_cells(records, dataset, setting)
    info = infos.get((dataset, metric), {})
    names = sorted({n for row in frame.values() for n in row if n != "clean"}, key=_order)
    table = []
    for label in sorted(frame):
        row = frame[label]
        clean = _mean_std(row["clean"])[0] if row.get("clean") else None
        n = len(row.get("clean", []))
        cells = [label, str(n), fmt(clean, info) if clean is not None else "–"]
        for name in names:
            vals = row.get(name)
            if vals is None:
                cells.append("")
            elif not vals:
                cells.append("unsupported")
            elif (label, name) in unread:
                cells.append("no effect")
            else:
                mean = _mean_std(vals)[0]
                drop = fmt(mean - clean, info) if clean is not None else ""
                cells.append(f"{fmt(mean, info)} ({'+' if mean >= (clean or 0) else ''}{drop})")
        table.append(cells)
    out = [f"### Modality robustness: test {info.get('display', metric)} under perturbations",
           "", "From `msabench robustness` on the stored checkpoints: each cell is the mean "
           "over seeds and, in parentheses, the change from clean. `drop:m` removes modality m "
           "(zeroed features, empty mask); `absent:m` leaves it out of the fusion, where the "
           "method supports that; `noise:m@S dB` adds Gaussian noise at S dB SNR; "
           "`words:p` drops each word with probability p; \"no effect\": every prediction was "
           "unchanged in every seed, because the method does not read that input (e.g. word "
           "dropout on pre-extracted utterance vectors) (docs/robustness.md).", "",
           tabulate(table, headers=["Method", "Seeds", "clean"] + names, tablefmt="github",
                    disable_numparse=True)]
    if figure:
        out += ["", f"![robustness on {dataset}/{setting}]({figure})"]
    return "\n".join(out)
