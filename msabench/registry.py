"""Name -> component lookup.

Entries are registered by plugins (see :mod:`msabench.hookspecs`) either as classes or as lazy
``"module:Class"`` references; a lazy entry is imported the first time it is loaded. Duplicate
names are refused loudly (the first registration wins and the second plugin is reported), and
unknown names fail with the known names and a "did you mean".
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import DuplicateComponentError, MsabenchError, UnknownComponentError

from .hookspecs import KINDS  # noqa: E402
HOOK_FOR_KIND = {kind: f"register_{kind}s" for kind in KINDS}
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]*$")


@dataclass
class Entry:
    kind: str
    name: str
    target: Any  # a class or "module:attr"
    plugin: str
    plugin_version: str = ""
    summary: str = ""
    _loaded: Any = field(default=None, repr=False)

    @property
    def is_lazy(self) -> bool:
        return isinstance(self.target, str)

    @property
    def reference(self) -> str:
        if self.is_lazy:
            return self.target
        return f"{self.target.__module__}:{self.target.__qualname__}"

    def load(self) -> type:
        """Import (if lazy) and return the component class, checking that its name matches."""
        if self._loaded is not None:
            return self._loaded
        obj = self.target
        if self.is_lazy:
            module_name, _, attr = self.target.partition(":")
            try:
                module = importlib.import_module(module_name)
                obj = getattr(module, attr)
            except (ImportError, AttributeError) as exc:
                raise MsabenchError(
                    f"{self.kind} {self.name!r} from plugin {self.plugin!r} could not be loaded "
                    f"from {self.target!r}: {exc}. Reinstall or block the plugin "
                    f"(MSABENCH_BLOCK_PLUGINS={self.plugin})."
                ) from exc
        own = getattr(obj, "name", None)
        if own != self.name:
            raise MsabenchError(
                f"{self.kind} registered as {self.name!r} by plugin {self.plugin!r} but the class "
                f"{self.reference} has name={own!r}; the two must agree."
            )
        self._loaded = obj
        return obj

    def describe(self) -> str:
        if self.summary:
            return self.summary
        if not self.is_lazy:
            doc = (self.target.__doc__ or "").strip().splitlines()
            return doc[0] if doc else ""
        return ""


class Registry:
    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        #: (plugin, message) pairs for registrations that were refused
        self.problems: list[tuple[str, str]] = []

    def add(
        self,
        kind: str,
        target: Any,
        *,
        name: str | None = None,
        summary: str = "",
        plugin: str = "<unknown>",
        plugin_version: str = "",
    ) -> Entry:
        if kind not in self._entries:
            raise MsabenchError(f"unknown component kind {kind!r}; kinds are {', '.join(KINDS)}")
        if isinstance(target, str):
            if ":" not in target:
                raise MsabenchError(
                    f"plugin {plugin!r} registered {kind} {target!r}: a lazy reference must be "
                    "'package.module:Class'"
                )
            if not name:
                raise MsabenchError(
                    f"plugin {plugin!r} registered lazy {kind} {target!r} without name=...; "
                    "lazy references must give the component name"
                )
        else:
            own = getattr(target, "name", None)
            if name is None:
                name = own
            if not name:
                raise MsabenchError(f"plugin {plugin!r} registered {kind} {target!r} with no name")
            if own is not None and own != name:
                raise MsabenchError(
                    f"plugin {plugin!r} registered {kind} {name!r} but the class says name={own!r}"
                )
        if not NAME_RE.match(name):
            raise MsabenchError(
                f"plugin {plugin!r} registered {kind} {name!r}: names are lowercase letters, digits, "
                "'-' and '.'"
            )
        existing = self._entries[kind].get(name)
        if existing is not None:
            raise DuplicateComponentError(
                f"duplicate {kind} name {name!r}: registered by plugin {existing.plugin!r} "
                f"({existing.reference}) and again by plugin {plugin!r} "
                f"({target if isinstance(target, str) else target.__module__}); the second is ignored"
            )
        entry = Entry(kind, name, target, plugin, plugin_version, summary)
        self._entries[kind][name] = entry
        return entry

    def registrar(self, kind: str, plugin: str, plugin_version: str = "") -> Callable[..., None]:
        """The ``register`` callable handed to a plugin's ``register_<kind>s`` hook."""

        def register(target: Any, *, name: str | None = None, summary: str = "") -> None:
            try:
                self.add(kind, target, name=name, summary=summary, plugin=plugin,
                         plugin_version=plugin_version)
            except DuplicateComponentError as exc:
                self.problems.append((plugin, str(exc)))

        return register

    def get(self, kind: str, name: str) -> Entry:
        if kind not in self._entries:
            singular = kind[:-1] if kind.endswith("s") else kind
            if singular not in self._entries:
                raise UnknownComponentError("kind", kind, KINDS)
            kind = singular
        entries = self._entries[kind]
        if name not in entries:
            raise UnknownComponentError(kind, name, entries)
        return entries[name]

    def load(self, kind: str, name: str) -> type:
        return self.get(kind, name).load()

    def names(self, kind: str) -> list[str]:
        return sorted(self._entries[kind])

    def entries(self, kind: str) -> list[Entry]:
        return [self._entries[kind][n] for n in self.names(kind)]

    def find(self, name: str) -> list[Entry]:
        """Every entry of any kind with this name (``msabench info NAME``)."""
        return [self._entries[k][name] for k in KINDS if name in self._entries[k]]

    def all_names(self) -> list[str]:
        return sorted({n for k in KINDS for n in self._entries[k]})
