"""Exceptions a user can cause. Each carries one message that names the input and the fix."""

from __future__ import annotations

import difflib
from typing import Iterable


class MsabenchError(Exception):
    """Base class for every error msabench reports to the user without a traceback."""


class UnknownComponentError(MsabenchError, KeyError):
    def __init__(self, kind: str, name: str, known: Iterable[str]):
        known = sorted(known)
        self.kind, self.name, self.known = kind, name, known
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        msg = f"unknown {kind} {name!r}."
        if close:
            msg += " Did you mean " + " or ".join(repr(c) for c in close) + "?"
        msg += f" Known {kind}s: {', '.join(known) if known else '(none registered)'}."
        from .hookspecs import KINDS

        if kind in KINDS:
            msg += f" `msabench list {kind}s` shows them with the plugin that provides each."
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would otherwise add quotes
        return self.args[0]


class DuplicateComponentError(MsabenchError):
    pass


class ConfigError(MsabenchError):
    pass


class DataError(MsabenchError):
    pass


class TrainingDiverged(MsabenchError, FloatingPointError):
    """A training loss became NaN or infinite; the seed writes no result."""
