"""Every hook a plugin can implement.

A plugin is a module (or object) with functions decorated by :data:`hookimpl`. Hooks are called
with keyword arguments only, so a hook is extended by adding optional arguments, never renamed.

All ``register_*`` hooks receive one ``register`` callable with the signature::

    register(target, *, name=None, summary="")

``target`` is either the component class itself or a lazy reference ``"package.module:Class"``.
A lazy reference must also give ``name``; it is imported only when the component is used, which
keeps ``msabench --help`` and ``msabench list`` free of torch. The class always carries its own
``name`` (lowercase, hyphenated) and the registry checks that both agree. ``msabench list``
shows the class's ``meta`` summary, read from its source for lazy references; ``summary`` is
only for classes whose source cannot say it.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

PROJECT = "msabench"

hookspec = pluggy.HookspecMarker(PROJECT)
#: Decorator for plugin hook implementations (``from msabench import hookimpl``).
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[..., None]

#: the component kinds, each registered through ``register_<kind>s``
KINDS = ("dataset", "extractor", "fusion", "pretrainer", "metric", "method", "tracker")


@hookspec
def register_datasets(register: Register) -> None:
    """Register :class:`msabench.api.Dataset` subclasses.

    Example::

        @hookimpl
        def register_datasets(register):
            register("my_pkg.data:MyDataset", name="my-dataset")
    """


@hookspec
def register_extractors(register: Register) -> None:
    """Register :class:`msabench.api.Extractor` subclasses (raw input -> feature tensors)."""


@hookspec
def register_fusions(register: Register) -> None:
    """Register :class:`msabench.api.Fusion` subclasses (modality features -> joint vector)."""


@hookspec
def register_pretrainers(register: Register) -> None:
    """Register :class:`msabench.api.Pretrainer` subclasses (stages run before supervised training)."""


@hookspec
def register_metrics(register: Register) -> None:
    """Register :class:`msabench.api.Metric` subclasses (torchmetrics-based, one per convention)."""


@hookspec
def register_methods(register: Register) -> None:
    """Register :class:`msabench.api.Method` subclasses (a complete trainable model + recipe)."""


@hookspec
def register_trackers(register: Register) -> None:
    """Register :class:`msabench.tracking.Tracker` subclasses (experiment trackers).

    A tracker receives each seed's identity and resolved config (``start``), every epoch's
    history row (``log_epoch``) and the final result (``finish``, or ``fail``). Trackers are
    opt-in: a run uses the ones named by ``--tracker NAME`` or ``$MSABENCH_TRACKERS``.
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add commands to the ``msabench`` typer application.

    ``cli`` is the root :class:`typer.Typer`; add a command with ``@cli.command()`` or a group
    with ``cli.add_typer(sub_app, name="...")``. Import heavy modules inside the command body so
    that ``msabench --help`` stays fast.
    """
