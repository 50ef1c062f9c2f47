"""``msabench grid``: run a grid file (methods x datasets x settings x variants x label
fractions x seeds) with the local or the Ray executor, showing done / running / failed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .common import handle_errors


class GridView:
    """A live table of the grid on a terminal; one line per finished task elsewhere."""

    def __init__(self, tasks: list[Any], quiet: bool = False) -> None:
        from rich.console import Console

        self.tasks = tasks
        self.quiet = quiet
        self.console = Console(stderr=True)
        self.live = None
        self.reported: set[int] = set()

    def __enter__(self) -> "GridView":
        if not self.quiet and self.console.is_terminal:
            from rich.live import Live

            self.live = Live(self.render(), console=self.console, refresh_per_second=4)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.update(self.render())
            self.live.__exit__(*exc)

    def render(self) -> Any:
        from rich.table import Table

        from ..grid import counts

        c = counts(self.tasks)
        table = Table(title=f"grid: {len(self.tasks)} task(s) - {c['done']} done before, "
                            f"{c['ran']} ran, {c['running']} running, {c['pending']} pending, "
                            f"{c['failed']} failed", title_justify="left")
        for col in ("task", "status", "seconds"):
            table.add_column(col)
        style = {"ran": "green", "done": "dim", "running": "yellow", "failed": "red",
                 "pending": ""}
        shown = [t for t in self.tasks if t.status in ("running", "failed")]
        shown += [t for t in self.tasks if t.status == "ran"][-5:]
        for t in shown:
            table.add_row(t.label, f"[{style[t.status]}]{t.status}[/]" if style[t.status]
                          else t.status, f"{t.seconds:.1f}" if t.seconds else "")
        return table

    def update(self) -> None:
        if self.quiet:
            return
        if self.live is not None:
            self.live.update(self.render())
            return
        for i, t in enumerate(self.tasks):
            if t.status in ("ran", "failed") and i not in self.reported:
                self.reported.add(i)
                self.console.print(f"{t.status}: {t.label} ({t.seconds:.1f}s)"
                                   + (f": {t.error.splitlines()[0]}" if t.error else ""),
                                   highlight=False)


@handle_errors
def grid_command(
    grid_file: Annotated[Path, typer.Argument(help="the grid TOML file (docs/grids.md)")],
    executor: Annotated[Optional[str], typer.Option(
        help="local (in this process, default) or ray (one task per seed); else `executor` "
             "in the file")] = None,
    address: Annotated[Optional[str], typer.Option(
        help="Ray cluster to join: auto or ray://host:port (default: start a local one)")] = None,
    workers: Annotated[Optional[int], typer.Option(
        help="CPUs of the local Ray cluster started without --address (default: all)")] = None,
    out: Annotated[Optional[Path], typer.Option(
        help="results root (else `out` in the file, else leaderboards/results); every "
             "worker must see it")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="list the tasks and what is missing; run nothing")] = False,
    force: Annotated[bool, typer.Option("--force", help="re-run tasks whose result exists")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress display")] = False,
) -> None:
    """Run every missing seed of GRID_FILE: methods x datasets x settings x variants x label
    fractions x seeds. Finished seeds are skipped, so re-running a grid resumes it; exit code
    1 when a task failed."""
    import time

    from rich.console import Console

    from ..errors import ConfigError
    from ..grid import EXECUTORS, counts, expand, run_local, run_ray

    grid = expand(grid_file, out=out, force=force)
    chosen = executor or grid.data.get("executor", "local")
    if chosen not in EXECUTORS:
        raise ConfigError(f"--executor {chosen!r}: choose one of {', '.join(EXECUTORS)}")
    if chosen == "local" and (address or workers):
        raise ConfigError("--address and --workers apply to --executor ray")
    todo = [t for t in grid.tasks if t.status != "done"]
    console = Console()
    if dry_run:
        for t in grid.tasks:
            console.print(f"{'done   ' if t.status == 'done' else 'missing'} {t.label}",
                          highlight=False)
        console.print(f"{len(grid.tasks)} task(s), {len(todo)} to run")
        return
    started = time.perf_counter()
    with GridView(grid.tasks, quiet) as view:
        if chosen == "ray":
            run_ray(todo, address=address, workers=workers, update=view.update)
        else:
            run_local(todo, update=view.update)
        view.update()
    c = counts(grid.tasks)
    console.print(f"grid {grid_file}: {len(grid.tasks)} task(s): {c['ran']} ran, {c['done']} "
                  f"already done, {c['failed']} failed ({chosen} executor, "
                  f"{time.perf_counter() - started:.1f}s)")
    failed = [t for t in grid.tasks if t.status == "failed"]
    for t in failed:
        console.print(f"[red]failed[/] {t.label}: {t.error.splitlines()[0] if t.error else '?'}",
                      highlight=False)
    if failed:
        console.print("re-run the same command to retry them: finished seeds are skipped")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("grid")(grid_command)
