"""``msabench data check NAME``: load a dataset the way ``msabench run`` does and summarise it.

Nothing is trained. The summary (splits, shapes, lengths, labels, a label histogram, notes and
problems found) is a plain dict built by :func:`summarize`, printed as rich tables or as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .common import handle_errors

HIST_BINS = 7
BAR_WIDTH = 24


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


def summarize(data: Any, labelled: dict[str, int] | None = None) -> dict[str, Any]:
    """Everything ``data check`` shows about a loaded dataset, JSON-serialisable."""
    from ..preprocess import class_of

    meta = data.meta
    lo, hi = meta.label_range
    splits: dict[str, Any] = {}
    problems: list[str] = []
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
                problems.append(f"{name}: {info['zero_samples']} sample(s) have all-zero "
                                f"{m} features (missing {m}?)")
        classes = set(class_of(y).tolist())
        if len(y) and len(classes) < 2:
            which = "non-negative" if classes == {1} else "negative"
            problems.append(f"{name}: every label is {which}; binary metrics are degenerate")
        if name != "train" and not bool(split.labelled.all()):
            problems.append(f"{name}: {int((~split.labelled).sum())} hidden label(s) outside "
                            "train; evaluation uses every label")
    for m, info in splits.get("train", {}).get("modalities", {}).items():
        if info["constant_dims"]:
            problems.append(f"train: {info['constant_dims']} of {info['shape'][1]} {m} "
                            "dimension(s) are constant (they carry no information)")
    names = list(data.splits)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = set(data.splits[a].ids) & set(data.splits[b].ids)
            if shared:
                problems.append(f"{len(shared)} sample id(s) occur in both {a} and {b} "
                                f"(e.g. {sorted(shared)[0]!r}): split leakage")
    sizes = [len(data.splits[s]) for s in ("train", "valid", "test") if s in data.splits]
    if meta.split_sizes and tuple(sizes) != tuple(meta.split_sizes):
        problems.append(f"split sizes {'/'.join(map(str, sizes))} differ from the standard "
                        f"{'/'.join(map(str, meta.split_sizes))} (train/valid/test)")
    edges = [_round(lo + (hi - lo) * k / HIST_BINS, 3) for k in range(HIST_BINS + 1)]
    return {
        "dataset": meta.name, "title": meta.title, "setting": data.setting,
        "source": data.source, "synthetic": bool(meta.synthetic),
        "convention": meta.convention, "label_range": [lo, hi], "ok": True,
        "splits": splits,
        "histogram": {"edges": edges,
                      "counts": {n: histogram(s.labels, (lo, hi)) for n, s in data.splits.items()}},
        "notes": list(data.notes), "problems": problems,
    }


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
    for problem in summary["problems"]:
        console.print(f"[red]problem:[/] {problem}", soft_wrap=True)
    if not summary["problems"]:
        console.print("[green]no problems found[/]")


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
    histogram, notes and problems found; trains nothing. Exit code 2 when it does not load."""
    from .. import preprocess
    from ..errors import DataError
    from ..plugins import get_registry
    from ..runner import DEFAULT_SEEDS, Progress, load_dataset, prepare_data

    overrides = list(set_ or [])
    if setting:
        overrides.append(f"data.setting={json.dumps(setting)}")
    plan = prepare_data(name, get_registry(), overrides, config, data_dir)
    data_cfg = plan.config["data"]
    try:
        data, record = load_dataset(plan, Progress(quiet=True))
    except DataError as exc:
        if as_json:
            typer.echo(json.dumps({"dataset": name, "setting": plan.setting, "ok": False,
                                   "problems": [str(exc)]}, indent=2))
        else:
            from rich.console import Console
            from rich.text import Text

            Console().print(Text("problem: ", style="bold red") + Text(str(exc)), soft_wrap=True)
        raise typer.Exit(2) from None
    labelled = None
    if data_cfg["label_fraction"] < 1:
        seed = data_cfg["label_seed"] if data_cfg["label_seed"] is not None else DEFAULT_SEEDS[0]
        masked, rec = preprocess.for_seed(data, data_cfg, seed)
        labelled = {"train": rec["labelled"]}
        record = {**record, **rec}
    summary = summarize(data, labelled)
    summary["preprocessing"] = record
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    _print(summary, record)


def register(app: typer.Typer) -> None:
    data_app = typer.Typer(name="data", help="Inspect datasets without training anything.",
                           no_args_is_help=True)
    data_app.command("check")(check_command)
    app.add_typer(data_app, name="data")
