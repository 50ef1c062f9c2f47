"""``msabench leaderboard``: regenerate (or check) the leaderboard markdown from result files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import RESULTS_DIR, handle_errors


@handle_errors
def leaderboard_command(
    results: Annotated[Path, typer.Option(help="results root")] = RESULTS_DIR,
    out: Annotated[Path, typer.Option(help="where the markdown goes")] = Path("leaderboards"),
    reported: Annotated[Path, typer.Option(help="published numbers shown as 'reported' rows")] =
    Path("leaderboards") / "reported.toml",
    comparisons: Annotated[Path, typer.Option(
        help="paired per-seed comparisons rendered under the tables")] =
    Path("leaderboards") / "comparisons.toml",
    check: Annotated[bool, typer.Option("--check", help="write nothing; exit 1 if the markdown "
                                                        "on disk differs from the results")] = False,
    show: Annotated[bool, typer.Option("--print", help="write nothing; print the markdown of "
                                                       "every dataset to stdout")] = False,
    head: Annotated[str, typer.Option(
        help="whose metrics the tables show: pred (the multimodal head, default) or another "
             "head a method declares, e.g. pred_text; a head other than pred implies --print")
    ] = "pred",
) -> None:
    """Rebuild leaderboards/*.md: one table per dataset and setting, mean ± sample std over seeds."""
    from rich.console import Console

    from ..errors import MsabenchError
    from ..leaderboard import dataset_pages, generate, write_or_check

    show = show or head != "pred"  # per-head tables are printed, never committed
    if check and show:
        raise MsabenchError("--check and --print (or --head) exclude each other: --check "
                            "compares the markdown on disk, --print only prints it")
    console = Console()
    files = generate(results, reported, results_label=results.as_posix(),
                     comparisons_file=comparisons, head=head)
    if not files:
        console.print(f"no result files under {results}" + (f" with a head {head!r}"
                                                              if head != "pred" else "")
                      + "; nothing to generate")
    if show:
        if files:
            typer.echo(dataset_pages(files))
        return
    differing = write_or_check(files, out, check)
    if check:
        if differing:
            console.print(f"[red]leaderboard markdown is out of date:[/] {', '.join(differing)}; "
                          "run `msabench leaderboard` and commit the result")
            raise typer.Exit(1)
        console.print(f"leaderboards up to date ({len(files)} file(s))")
        return
    for name in differing:
        console.print(f"updated {out / name}" if "stale" not in name else f"removed {name}")
    console.print(f"{len(files)} leaderboard file(s) in {out}, {len(differing)} changed")


def register(app: typer.Typer) -> None:
    app.command("leaderboard")(leaderboard_command)
