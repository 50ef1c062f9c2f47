"""``msabench data check NAME``: load a dataset the way ``msabench run`` does and summarise it.

Nothing is trained. The summary (splits, shapes, lengths, labels, a label histogram, notes and
problems found) is a plain dict built by :func:`summarize`, printed as rich tables or as JSON.

Every problem has a stable ``code`` and a ``severity``. A dataset that does not load is one
error whose code is the reader's (``err.code`` of the :class:`~msabench.errors.DataError`, e.g.
``unsafe-pickle``, ``nonfinite-features``; ``load-error`` when it has none). On a dataset that
loads, :data:`CHECK_CODES` lists what is looked for and how severe it is. Exit codes: 0 no
error-level problem (warnings allowed), 1 error-level problems in a dataset that loaded, 2 the
dataset does not load (or the command line is wrong).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .common import handle_errors

HIST_BINS = 7
BAR_WIDTH = 24
#: |x| above this overflows float32 when squared (sqrt(float32 max) = 1.8e19): variances,
#: norms and MSE of such features are inf, and training turns NaN; the same value as
#: msabench.api.dataset.MAX_FEATURE_MAGNITUDE, with which runs refuse such data (a test pins
#: the two together; this module does not import torch)
OVERFLOW_LIMIT = 1.8e19
#: labels spanning at most this fraction of the dataset's label range belong to another
#: dataset (a CH-SIMS file, labels in [-1, 1], read as MOSI, range [-3, 3], spans a third)
FOREIGN_SPAN = 1 / 3 + 1e-6
FOREIGN_MIN_SAMPLES = 30

#: problems looked for in a dataset that loaded: code -> severity ("error" exits 1)
CHECK_CODES = {
    "overflow-features": "error",
    "foreign-labels": "error",
    "foreign-keys": "error",
    "split-leakage": "error",
    "zero-samples": "warning",
    "constant-dims": "warning",
    "single-class": "warning",
    "hidden-labels": "warning",
    "split-sizes": "warning",
}


def problem(code: str, message: str, **where: Any) -> dict[str, Any]:
    """One problem record: ``code``, ``severity``, ``message`` and where (split, modality)."""
    severity = CHECK_CODES.get(code, "error")  # unknown codes (load failures) are errors
    return {"code": code, "severity": severity, "message": message,
            **{k: v for k, v in where.items() if v is not None}}


def overflow_problems(data: Any) -> list[dict[str, Any]]:
    """Finite features whose magnitude overflows float32 arithmetic, per split and modality.

    Scans every value (padding included: a huge padded value still meets the weights before a
    mask), in row chunks.
    """
    out = []
    for name, split in data.splits.items():
        for m, x in split.features.items():
            count, first, peak = 0, None, 0.0
            for lo in range(0, x.shape[0], 512):
                a = x[lo:lo + 512].abs()
                big = (a > OVERFLOW_LIMIT) & a.isfinite()
                if bool(big.any()):
                    count += int(big.sum())
                    peak = max(peak, float(a[big].max()))
                    if first is None:
                        first = lo + int(big.flatten(1).any(1).nonzero()[0, 0])
            if count:
                sid = split.ids[first]
                out.append(problem(
                    "overflow-features",
                    f"{name}: modality {m!r} has {count} finite value(s) with |x| > "
                    f"{OVERFLOW_LIMIT:.1e} (largest {peak:.3g}, first in sample {sid!r}); "
                    "their squares overflow float32, so variances, norms and losses become inf "
                    "and training turns NaN - rescale or fix the features", split=name,
                    modality=m))
    return out


def foreign_problems(data: Any) -> list[dict[str, Any]]:
    """Labels or label keys that belong to another dataset than the one being loaded."""
    import torch

    meta = data.meta
    out = []
    extra = sorted({m for s in data.splits.values() for m in s.unimodal})
    if extra and not meta.unimodal_labels:
        out.append(problem(
            "foreign-keys",
            f"the data carry unimodal labels ({', '.join(extra)}; e.g. MMSA keys "
            f"regression_labels_T/_A/_V), which {meta.name} does not have: only CH-SIMS / "
            f"CH-SIMS v2 files carry them - is this file from another dataset?"))
    labels = torch.cat([s.labels[torch.isfinite(s.labels)] for s in data.splits.values()])
    lo, hi = meta.label_range
    if len(labels) >= FOREIGN_MIN_SAMPLES and hi > lo:
        a, b = float(labels.min()), float(labels.max())
        if b - a <= FOREIGN_SPAN * (hi - lo):
            hint = (" - the range of CH-SIMS / CH-SIMS v2 labels" if -1 - 1e-6 <= a
                    and b <= 1 + 1e-6 and (lo, hi) != (-1.0, 1.0) else "")
            out.append(problem(
                "foreign-labels",
                f"all {len(labels)} labels lie in [{a:.3f}, {b:.3f}]{hint}, at most a third of "
                f"{meta.name}'s range [{lo:g}, {hi:g}]; genuine {meta.name} labels spread over "
                "the whole range, so this file probably belongs to another dataset (check the "
                "file and --data-dir)"))
    return out


def _round(x: float, digits: int = 4) -> float:
    return round(float(x), digits)


def _zero_samples(split: Any, modality: str, chunk: int = 512) -> int:
    """Samples whose features are all exactly 0 (a missing modality, often)."""
    x = split.features[modality]
    return sum(int((x[lo:lo + chunk].abs().flatten(1).amax(1) == 0).sum())
               for lo in range(0, x.shape[0], chunk))


def _modality_summary(split: Any, modality: str) -> dict[str, Any]:
    from ..preprocess import split_stats

    x, lens = split.features[modality], split.lengths[modality].float()
    stats = split_stats(split, modality)
    mean = stats.mean.mean()
    std = (stats.std ** 2 + (stats.mean - mean) ** 2).mean().sqrt()
    return {"shape": [int(x.shape[1]), int(x.shape[2])],
            "length": {"min": int(lens.min()), "median": _round(lens.median()),
                       "max": int(lens.max())},
            "mean": _round(mean), "std": _round(std),
            "min": _round(stats.min.min()), "max": _round(stats.max.max()),
            "constant_dims": int(stats.constant.sum()),
            "zero_samples": _zero_samples(split, modality)}


def histogram(labels: Any, label_range: tuple[float, float], bins: int = HIST_BINS) -> list[int]:
    """Counts in ``bins`` equal-width bins over ``label_range`` (the last bin is closed)."""
    import torch

    lo, hi = label_range
    idx = ((labels.double() - lo) / (hi - lo) * bins).floor().clamp(0, bins - 1).long()
    return torch.bincount(idx, minlength=bins).tolist()


def summarize(data: Any, labelled: dict[str, int] | None = None,
              problems: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Everything ``data check`` shows about a loaded dataset, JSON-serialisable.

    ``problems``: found beforehand (e.g. :func:`overflow_problems` on the data as loaded,
    before preprocessing); the ones found here are appended.
    """
    from ..preprocess import class_of

    meta = data.meta
    lo, hi = meta.label_range
    splits: dict[str, Any] = {}
    problems = list(problems or [])
    for name, split in data.splits.items():
        y = split.labels
        splits[name] = {
            "n": len(split),
            "labelled": (labelled or {}).get(name, int(split.labelled.sum())),
            "modalities": {m: _modality_summary(split, m) for m in split.features},
            "label": {"mean": _round(y.mean()), "std": _round(y.std()) if len(y) > 1 else 0.0,
                      "min": _round(y.min()), "max": _round(y.max())} if len(y) else {},
            "unimodal_labels": sorted(split.unimodal),
        }
        for m, info in splits[name]["modalities"].items():
            if info["zero_samples"]:
                problems.append(problem(
                    "zero-samples", f"{name}: {info['zero_samples']} sample(s) have all-zero "
                    f"{m} features (missing {m}?)", split=name, modality=m))
        classes = set(class_of(y).tolist())
        if len(y) and len(classes) < 2:
            which = "non-negative" if classes == {1} else "negative"
            problems.append(problem("single-class", f"{name}: every label is {which}; binary "
                                    "metrics are degenerate", split=name))
        if name != "train" and not bool(split.labelled.all()):
            problems.append(problem(
                "hidden-labels", f"{name}: {int((~split.labelled).sum())} hidden label(s) "
                "outside train; evaluation uses every label", split=name))
    for m, info in splits.get("train", {}).get("modalities", {}).items():
        if info["constant_dims"]:
            problems.append(problem(
                "constant-dims", f"train: {info['constant_dims']} of {info['shape'][1]} {m} "
                "dimension(s) are constant (they carry no information)", split="train",
                modality=m))
    names = list(data.splits)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = set(data.splits[a].ids) & set(data.splits[b].ids)
            if shared:
                problems.append(problem(
                    "split-leakage", f"{len(shared)} sample id(s) occur in both {a} and {b} "
                    f"(e.g. {sorted(shared)[0]!r}): split leakage"))
    sizes = [len(data.splits[s]) for s in ("train", "valid", "test") if s in data.splits]
    if meta.split_sizes and tuple(sizes) != tuple(meta.split_sizes):
        problems.append(problem(
            "split-sizes", f"split sizes {'/'.join(map(str, sizes))} differ from the standard "
            f"{'/'.join(map(str, meta.split_sizes))} (train/valid/test)"))
    problems += foreign_problems(data)
    edges = [_round(lo + (hi - lo) * k / HIST_BINS, 3) for k in range(HIST_BINS + 1)]
    return {
        "dataset": meta.name, "title": meta.title, "setting": data.setting,
        "source": data.source, "synthetic": bool(meta.synthetic),
        "convention": meta.convention, "label_range": [lo, hi],
        "ok": not any(p["severity"] == "error" for p in problems),
        "splits": splits,
        "histogram": {"edges": edges,
                      "counts": {n: histogram(s.labels, (lo, hi)) for n, s in data.splits.items()}},
        "notes": list(data.notes), "problems": problems, "counts": counts(problems),
    }


def counts(problems: list[dict[str, Any]]) -> dict[str, int]:
    return {sev: sum(p["severity"] == sev for p in problems) for sev in ("error", "warning")}


def _print_problems(console: Any, problems: list[dict[str, Any]]) -> None:
    from rich.text import Text

    for p in problems:
        style = "bold red" if p["severity"] == "error" else "yellow"
        console.print(Text(f"{p['severity']} [{p['code']}]: ", style=style) + Text(p["message"]),
                      soft_wrap=True)
    c = counts(problems)
    if not problems:
        console.print("[green]no problems found[/]")
    else:
        console.print(f"{c['error']} error(s), {c['warning']} warning(s)"
                      + (" - the dataset is not fit to train on" if c["error"] else ""))


def _print(summary: dict[str, Any], preprocessing: dict[str, Any] | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    synthetic = " [bold red]SYNTHETIC[/]" if summary["synthetic"] else ""
    console.rule(f"[bold]{summary['dataset']}[/] / {summary['setting']}{synthetic}")
    console.print(f"{summary['title']}; convention {summary['convention']}, labels in "
                  f"{summary['label_range']}; source: {summary['source'] or '(not given)'}")
    if preprocessing and (preprocessing.get("normalize") != "none"
                          or preprocessing.get("max_length")):
        console.print(f"preprocessing: {preprocessing}")
    for name, s in summary["splits"].items():
        table = Table(title=f"{name}: {s['n']} samples, {s['labelled']} labelled"
                            + (f", unimodal labels {', '.join(s['unimodal_labels'])}"
                               if s["unimodal_labels"] else ""), title_justify="left")
        for col in ("", "shape (T, D)", "length min/med/max", "mean", "std", "min", "max"):
            table.add_column(col, overflow="fold", justify="left" if not col else "right")
        for m, info in s["modalities"].items():
            ln = info["length"]
            table.add_row(m, f"({info['shape'][0]}, {info['shape'][1]})",
                          f"{ln['min']}/{ln['median']:g}/{ln['max']}",
                          *(f"{info[k]:.3f}" for k in ("mean", "std", "min", "max")))
        if s["label"]:
            lab = s["label"]
            table.add_row("label", "", "", f"{lab['mean']:.3f}", f"{lab['std']:.3f}",
                          f"{lab['min']:.3f}", f"{lab['max']:.3f}")
        console.print(table)
    hist = summary["histogram"]
    counts = hist["counts"]
    totals = [sum(c[k] for c in counts.values()) for k in range(HIST_BINS)]
    table = Table(title="label histogram (all splits)", title_justify="left")
    table.add_column("bin")
    for name in counts:
        table.add_column(name, justify="right")
    table.add_column("")
    edges = hist["edges"]
    for k in range(HIST_BINS):
        close = "]" if k == HIST_BINS - 1 else ")"
        bar = "█" * round(BAR_WIDTH * totals[k] / max(max(totals), 1))
        table.add_row(f"[{edges[k]:+.2f}, {edges[k + 1]:+.2f}{close}",
                      *(str(c[k]) for c in counts.values()), bar)
    console.print(table)
    for note in summary["notes"]:
        console.print(f"[yellow]note:[/] {note}", soft_wrap=True)
    _print_problems(console, summary["problems"])


@handle_errors
def check_command(
    name: Annotated[str, typer.Argument(help="dataset name (msabench list datasets)")],
    data_dir: Annotated[Optional[Path], typer.Option(help="where the dataset files are (else $MSABENCH_DATA_DIR or the config file)")] = None,
    setting: Annotated[Optional[str], typer.Option(help="dataset setting; default: the dataset's")] = None,
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", "-s", help="a data.* config key, e.g. --set data.options.n_train=100 or "
                            "--set data.normalize=zscore (repeatable)")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML config file (its [data] section)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Load DATASET as `msabench run` would and print splits, shapes, lengths, labels, a label
    histogram, notes and problems found (each with a stable code); trains nothing. Exit code 1
    when an error-level problem is found, 2 when the dataset does not load."""
    from .. import preprocess
    from ..errors import DataError
    from ..plugins import get_registry
    from ..runner import DEFAULT_SEEDS, open_dataset, prepare_data

    overrides = list(set_ or [])
    if setting:
        overrides.append(f"data.setting={json.dumps(setting)}")
    plan = prepare_data(name, get_registry(), overrides, config, data_dir)
    data_cfg = plan.config["data"]
    try:
        # what load_dataset does, with the overflow scan on the data as loaded (before
        # max_length / normalize could hide or amplify the values)
        loaded = open_dataset(plan)
        found = overflow_problems(loaded)
        data, record = preprocess.prepare(loaded, data_cfg)
    except DataError as exc:
        code = getattr(exc, "code", None)  # set by the readers (msabench_builtins problems.py)
        failed = [problem(code if isinstance(code, str) and code else "load-error", str(exc))]
        if as_json:
            typer.echo(json.dumps({"dataset": name, "setting": plan.setting, "ok": False,
                                   "problems": failed, "counts": counts(failed)}, indent=2))
        else:
            from rich.console import Console

            _print_problems(Console(), failed)
        raise typer.Exit(2) from None
    labelled = None
    if data_cfg["label_fraction"] < 1:
        seed = data_cfg["label_seed"] if data_cfg["label_seed"] is not None else DEFAULT_SEEDS[0]
        masked, rec = preprocess.for_seed(data, data_cfg, seed)
        labelled = {"train": rec["labelled"]}
        record = {**record, **rec}
    summary = summarize(data, labelled, found)
    summary["preprocessing"] = record
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        _print(summary, record)
    if not summary["ok"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    data_app = typer.Typer(name="data", help="Inspect datasets without training anything.",
                           no_args_is_help=True)
    data_app.command("check")(check_command)
    app.add_typer(data_app, name="data")
