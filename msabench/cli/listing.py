"""``msabench list`` and ``msabench plugins``: what is installed, without importing torch."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from .common import handle_errors

from ..hookspecs import KINDS

PLURAL = {f"{kind}s": kind for kind in KINDS}


@handle_errors
def list_command(
    kind: Annotated[Optional[str], typer.Argument(
        help="datasets, methods, fusions, extractors, pretrainers or metrics (default: all)")] = None,
) -> None:
    """List registered components with the plugin (and version) that provides each."""
    from rich.console import Console
    from rich.table import Table

    from ..errors import UnknownComponentError
    from ..plugins import get_plugin_system, warn_broken

    system = get_plugin_system()
    registry = system.registry
    if kind is None:
        kinds = list(PLURAL.values())
    else:
        key = kind if kind in PLURAL else f"{kind}s"
        if key not in PLURAL:
            raise UnknownComponentError("kind", kind, PLURAL)
        kinds = [PLURAL[key]]
    table = Table(title="msabench components")
    for col in ("kind", "name", "plugin", "version", "summary"):
        table.add_column(col, overflow="fold")
    for k in kinds:
        for entry in registry.entries(k):
            table.add_row(k, entry.name, entry.plugin, entry.plugin_version, entry.describe())
    Console().print(table)
    warn_broken(plugins=system.problems())


@handle_errors
def plugins_command(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Installed plugins: version, status (ok/broken/blocked/skipped), hooks and components."""
    from rich.console import Console
    from rich.table import Table

    from ..plugins import get_plugin_system

    system = get_plugin_system()
    _ = system.registry  # calling the hooks fills in components and failures
    infos = list(system.plugins.values())
    if as_json:
        typer.echo(json.dumps([p.as_dict() for p in infos], indent=2))
        return
    table = Table(title="msabench plugins")
    for col in ("name", "version", "distribution", "status", "components", "reason"):
        table.add_column(col, overflow="fold")
    for p in infos:
        comps = ", ".join(f"{len(v)} {k}(s)" for k, v in sorted(p.components.items()))
        status = {"ok": "[green]ok[/]", "broken": "[red]broken[/]"}.get(p.status, p.status)
        table.add_row(p.name + (" (built-in)" if p.builtin else ""), p.version, p.distribution,
                      status, comps, p.reason)
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("list")(list_command)
    app.command("plugins")(plugins_command)
