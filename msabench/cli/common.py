"""Shared helpers for CLI modules: error handling and options used by several commands."""

from __future__ import annotations

import functools
from typing import Any, Callable

import typer

from ..errors import MsabenchError

from ..results import DEFAULT_RESULTS_DIR as RESULTS_DIR  # noqa: E402  (one place)


def print_error(message: str) -> None:
    from rich.console import Console
    from rich.text import Text

    Console(stderr=True).print(Text("error: ", style="bold red") + Text(str(message)))


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """User-caused errors become one red line and exit code 2 (130 for an interrupted run)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MsabenchError as exc:
            from ..runner import RunInterrupted

            print_error(str(exc))
            raise typer.Exit(130 if isinstance(exc, RunInterrupted) else 2) from None

    return wrapper
