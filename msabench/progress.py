"""The runner's :class:`msabench.api.Progress`: rich bars on a terminal, plain lines elsewhere.

On a terminal every stage gets a live bar (seeds, epochs, pretraining stages). When stderr is
not a terminal (redirected to a log file, a batch scheduler) a bar would print nothing until
the end, so each step of a bar is printed as one plain line instead (stage, step/total,
status), and the log shows the run's progress as it happens.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator


class Progress:
    """Rich progress bars for seeds, epochs and pretraining stages (silent when quiet)."""

    def __init__(self, quiet: bool = False, console: Any = None) -> None:
        self.quiet = quiet
        self._progress = None
        self.console = None
        if quiet:
            return
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.plain = not self.console.is_terminal
        if not self.plain:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress,
                                       TextColumn, TimeElapsedColumn)

            self._progress = RichProgress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TextColumn("{task.fields[status]}"),
                console=self.console, transient=False)

    @contextlib.contextmanager
    def live(self) -> Iterator["Progress"]:
        if self._progress is None:
            yield self
            return
        with self._progress:
            yield self

    def task(self, description: str, total: int) -> "_Task":
        if self._progress is None and self.console is not None:
            return _PlainTask(self, description, total)
        return _Task(self._progress, description, total)

    def print(self, message: str) -> None:
        if not self.quiet and self.console is not None:
            self.console.print(message, highlight=False)


class _Task:
    def __init__(self, progress: Any, description: str, total: int) -> None:
        self._progress = progress
        self._id = progress.add_task(description, total=total, status="") if progress else None

    def advance(self, steps: int = 1, status: str | None = None) -> None:
        if self._progress is not None:
            kwargs = {"status": status} if status is not None else {}
            self._progress.update(self._id, advance=steps, **kwargs)

    def done(self, status: str | None = None) -> None:
        """Finish the bar where it stands (an early-stopped run ends short of its total)."""
        if self._progress is not None:
            task = self._progress.tasks[self._progress.task_ids.index(self._id)]
            kwargs = {"status": status} if status is not None else {}
            self._progress.update(self._id, total=task.completed, **kwargs)


class _PlainTask:
    """One printed line per step (logs, pipes): ``stage k/N: status``."""

    def __init__(self, owner: Progress, description: str, total: int) -> None:
        self.owner, self.description, self.total, self.count = owner, description.strip(), total, 0

    def advance(self, steps: int = 1, status: str | None = None) -> None:
        self.count += steps
        self.owner.print(f"{self.description} {self.count}/{self.total}"
                         + (f": {status}" if status else ""))

    def done(self, status: str | None = None) -> None:
        if status:
            self.owner.print(f"{self.description} done: {status}")
