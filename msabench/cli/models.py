"""``msabench models``: the pre-trained checkpoints a run needs - list, download once, verify.

The needs come from the method (:meth:`msabench.api.Method.required_models` on the resolved
config) and the dataset setting (:meth:`msabench.api.Dataset.required_models`), plus any
``--model NAME``. Locating, downloading and loading go through the built-in Hugging Face
loader (:mod:`msabench_builtins.hf`), the one every built-in extractor and the ``mag`` fusion
use, so what this command reports is what a run will do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .common import handle_errors


def collect_needs(method: str | None, dataset: str | None, *, setting: str | None = None,
                  overrides: list[str] | None = None, file_config: dict | None = None,
                  models: list[str] | None = None) -> list[Any]:
    """The :class:`~msabench.models.ModelNeed` list of a method on a dataset (either may be
    None), plus ``models`` given by name; one entry per (name, revision)."""
    from .. import config as cfg
    from ..models import ModelNeed
    from ..plan import RunSpec, data_config, prepare
    from ..plugins import get_plugin_system

    registry = get_plugin_system().registry
    file_config = dict(file_config or {})
    over = cfg.parse_overrides(overrides or [])
    if setting:
        over = cfg.deep_merge(over, {"data": {"setting": setting}})
    needs: list[ModelNeed] = []
    data_cfg = None
    dataset_cls = None
    if method:
        if dataset:
            plan = prepare(RunSpec(method=method, dataset=dataset, overrides=over,
                                   file_config=file_config), registry)
            config, dataset_cls = plan.config, plan.dataset_cls
            data_cfg = config["data"]
        else:
            method_cls = registry.load("method", method)
            config = cfg.resolve(method_cls, "", file_config, over)
        needs += registry.load("method", method).required_models(config)
    elif dataset:
        dataset_cls = registry.load("dataset", dataset)
        data_cfg = data_config(dataset, dataset_cls, file_config, over)
    if dataset_cls is not None and data_cfg is not None:
        ds = dataset_cls(data_dir=None, setting=data_cfg["setting"],
                         options=data_cfg.get("options") or {})
        needs += ds.required_models()
    needs += [ModelNeed(name, "--model") for name in models or []]
    merged: dict[tuple[str, str | None], ModelNeed] = {}
    for need in needs:
        key = (need.name, need.revision)
        if key in merged:
            old = merged[key]
            merged[key] = ModelNeed(old.name, f"{old.key}, {need.key}",
                                    old.modality or need.modality, old.revision,
                                    "; ".join(filter(None, [old.role, need.role])))
        else:
            merged[key] = need
    return list(merged.values())


@handle_errors
def models_command(
    method: Annotated[Optional[str], typer.Option("--method", "-m", help="method name")] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", "-d", help="dataset name")] = None,
    setting: Annotated[Optional[str], typer.Option(help="dataset setting (default: the dataset's)")] = None,
    model: Annotated[Optional[list[str]], typer.Option(
        "--model", help="a hub name or directory to include (repeatable)")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML config file")] = None,
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", "-s", help="override a config key, e.g. --set model.model=roberta-base")] = None,
    model_dir: Annotated[Optional[Path], typer.Option(
        help="the model directory (else model_dir in --config, $MSABENCH_MODEL_DIR, "
             "<cache>/models)")] = None,
    download: Annotated[bool, typer.Option(
        "--download", help="fetch every checkpoint that is not local into the model directory")] = False,
    verify: Annotated[bool, typer.Option(
        "--verify", help="load each checkpoint (config, weights, processor) and report OK or the fix")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """The pre-trained checkpoints METHOD on DATASET loads, where each would load from
    (local directory, bundled package, model directory, Hugging Face cache, or missing);
    --download fetches them once into the model directory, --verify loads each."""
    from ..config import load_config_file
    from ..errors import ConfigError
    from ..models import ENV_MODEL_DIR, model_dir as current_model_dir
    from ..models import resolve_model_dir, use_model_dir

    file_cfg = load_config_file(config) if config else {}
    import os

    chosen = resolve_model_dir(model_dir, file_cfg)
    origin = ("--model-dir" if model_dir is not None else "model_dir in --config"
              if chosen is not None else "$" + ENV_MODEL_DIR if os.environ.get(ENV_MODEL_DIR)
              else "default: <cache>/models")
    use_model_dir(chosen)
    method = method or file_cfg.get("method")
    dataset = dataset or file_cfg.get("dataset")
    if not (method or dataset or model):
        raise ConfigError("say whose checkpoints to list: --method NAME and/or --dataset NAME "
                          "(e.g. msabench models -m mag-bert -d mosi), or --model HUB_NAME")
    needs = collect_needs(method, dataset, setting=setting, overrides=set_ or [],
                          file_config=file_cfg, models=model)
    from msabench_builtins import hf

    root = current_model_dir()
    failures: list[str] = []
    rows: list[dict[str, Any]] = []
    if not as_json:
        typer.echo(f"model directory: {root} ({origin})")
        if not needs:
            typer.echo("no pre-trained checkpoints needed")
    for need in needs:
        loc = hf.locate(need.name, need.revision)
        row: dict[str, Any] = {"name": need.name, "key": need.key, "role": need.role,
                               "modality": need.modality, "revision": need.revision,
                               "source": loc.kind, "path": str(loc.path) if loc.path else None,
                               "looked": loc.looked}
        if download and loc.kind not in ("path", "bundled", "model-dir"):
            try:
                target = hf.download(need.name, need.revision)
                row["downloaded"] = str(target)
                loc = hf.locate(need.name, need.revision)
                row.update(source=loc.kind, path=str(loc.path) if loc.path else None)
            except ConfigError as exc:
                row["error"] = str(exc)
                failures.append(str(exc))
        if verify:
            ok, message = hf.verify(need)
            row["verified"], row["verify"] = ok, message
            if not ok:
                failures.append(f"{need.name}: {message}")
        rows.append(row)
        if not as_json:
            _print_row(row)
    if as_json:
        typer.echo(json.dumps({"model_dir": str(root), "models": rows}, indent=2))
    if failures:
        raise typer.Exit(2)


def _print_row(row: dict[str, Any]) -> None:
    what = f" ({row['role']})" if row["role"] else ""
    rev = f"@{row['revision']}" if row["revision"] else ""
    typer.echo(f"{row['name']}{rev}  [{row['key']}]{what}")
    if row["source"] == "missing":
        typer.echo(f"  source: missing - looked in: {'; '.join(row['looked'])}")
        if "error" not in row and "verify" not in row:
            typer.echo(f"  fix: msabench models --download --model {row['name']}")
    else:
        typer.echo(f"  source: {row['source']} - {row['path']}")
    if "downloaded" in row:
        typer.echo(f"  downloaded to {row['downloaded']}")
    if "error" in row:
        typer.echo(f"  download failed: {row['error']}")
    if "verify" in row:
        typer.echo(f"  verify: {row['verify'] if row['verified'] else 'FAILED - ' + row['verify']}")


def register(app: typer.Typer) -> None:
    app.command("models")(models_command)
