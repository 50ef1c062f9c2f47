"""``msabench info NAME``: metadata and documented defaults of a component."""

from __future__ import annotations

import json
from typing import Annotated, Any, Optional

import typer

from .common import handle_errors


def describe(entry: Any) -> dict[str, Any]:
    """Everything worth showing about a registered component (imports it)."""
    cls = entry.load()
    out: dict[str, Any] = {"name": entry.name, "kind": entry.kind, "plugin": entry.plugin,
                           "plugin_version": entry.plugin_version, "class": entry.reference,
                           "summary": entry.describe()}
    meta = getattr(cls, "meta", None)
    if meta is not None:
        out["metadata"] = meta.as_dict() if hasattr(meta, "as_dict") else {
            k: v for k, v in vars(meta).items() if v}
    for attr in ("defaults", "dataset_defaults", "conventions", "key", "display",
                 "higher_is_better", "percent", "needs_regression", "prediction_kind",
                 "requires_aligned", "requires_texts", "modality", "requires"):
        value = getattr(cls, attr, None)
        if value not in (None, {}, ()):
            out[attr] = value
    doc = (cls.__doc__ or "").strip()
    if doc:
        out["doc"] = doc
    return out


@handle_errors
def info_command(
    name: Annotated[str, typer.Argument(help="component name, e.g. sf or synthetic-mosi")],
    kind: Annotated[Optional[str], typer.Option(help="disambiguate when several kinds share the name")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show a component's metadata (paper, citation, license, source of defaults) and defaults."""
    from rich.console import Console
    from rich.pretty import Pretty

    from ..errors import UnknownComponentError
    from ..plugins import get_registry

    registry = get_registry()
    entries = [registry.get(kind, name)] if kind else registry.find(name)
    if not entries:
        raise UnknownComponentError("component", name, registry.all_names())
    details = [describe(e) for e in entries]
    if as_json:
        typer.echo(json.dumps(details, indent=2, default=str))
        return
    console = Console()
    for d in details:
        console.rule(f"[bold]{d['kind']}[/] {d['name']}  ({d['plugin']} {d['plugin_version']})")
        for key, value in d.items():
            if key in ("name", "kind"):
                continue
            console.print(f"[bold]{key}[/]:", Pretty(value) if isinstance(value, (dict, list, tuple)) else value)


def register(app: typer.Typer) -> None:
    app.command("info")(info_command)
