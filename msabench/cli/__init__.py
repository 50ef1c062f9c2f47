"""The ``msabench`` command: a typer app composed of small modules.

Each module adds its commands with ``register(app)``; heavy imports (torch, pandas) happen
inside command bodies so ``msabench --help`` and ``msabench list`` stay fast and torch-free.
Plugins add commands through the ``register_commands`` hook.
"""

from __future__ import annotations

from typing import Any

import typer

from ..errors import MsabenchError

HELP = ("Benchmark multimodal sentiment analysis methods: run any method on any dataset, "
        "store results, regenerate leaderboards.")


def make_app(system: Any = None) -> typer.Typer:
    """A fresh app with the core commands and those of every loaded plugin."""
    from ..plugins import get_plugin_system
    from . import data, grid, info, leaderboard, listing, models, robustness, run

    app = typer.Typer(name="msabench", help=HELP, no_args_is_help=True, add_completion=False,
                      pretty_exceptions_enable=False)
    for module in (run, grid, robustness, data, leaderboard, listing, info, models):
        module.register(app)
    (system or get_plugin_system()).add_commands(app)
    return app


_APP: typer.Typer | None = None


def get_app() -> typer.Typer:
    """The process-wide app (built on first use; tests call :func:`make_app`)."""
    global _APP
    if _APP is None:
        _APP = make_app()
    return _APP


def main() -> None:
    application = get_app()
    try:
        application(prog_name="msabench")
    except MsabenchError as exc:
        from ..runner import RunInterrupted
        from .common import print_error

        print_error(str(exc))
        raise SystemExit(130 if isinstance(exc, RunInterrupted) else 2) from None
