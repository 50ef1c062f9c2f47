"""Name -> component lookup.

Entries are registered by plugins (see :mod:`msabench.hookspecs`) either as classes or as lazy
``"module:Class"`` references; a lazy entry is imported the first time it is loaded. Duplicate
names are refused loudly (the first registration wins and the second plugin is reported), and
unknown names fail with the known names and a "did you mean".
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import DuplicateComponentError, MsabenchError, UnknownComponentError

from .hookspecs import KINDS  # noqa: E402
HOOK_FOR_KIND = {kind: f"register_{kind}s" for kind in KINDS}
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]*$")


#: where the one-line description sits in a meta constructor call: (keyword, position);
#: ComponentMeta(summary, ...) and helpers such as ``_meta(summary, ...)`` use the default
_SUMMARY_ARG = {"DatasetMeta": ("title", 1)}
_DEFAULT_SUMMARY_ARG = ("summary", 0)


def meta_summary(meta: Any) -> str:
    """A component's one-line description from its ``meta``: ``summary``, or a dataset's
    ``title`` (:class:`~msabench.api.DatasetMeta` has no summary)."""
    text = getattr(meta, "summary", "") or getattr(meta, "title", "")
    return text if isinstance(text, str) else ""


def _first_line(doc: str | None) -> str:
    lines = (doc or "").strip().splitlines()
    return lines[0].strip() if lines else ""


@functools.lru_cache(maxsize=64)
def _parse(path: str, mtime_ns: int, size: int) -> ast.Module:
    with open(path, "rb") as fh:
        return ast.parse(fh.read(), filename=path)


def _module_tree(module_name: str) -> ast.Module | None:
    """The parsed source of a module, found without executing it (only its parent packages
    are imported, as ``import`` would); None when there is no readable ``.py`` source."""
    try:
        spec = importlib.util.find_spec(module_name)
        origin = spec.origin if spec is not None else None
        if not origin or not origin.endswith(".py"):
            return None
        stat = os.stat(origin)
        return _parse(origin, stat.st_mtime_ns, stat.st_size)
    except (ImportError, ValueError, OSError, SyntaxError):
        return None


def _literal_summary(call: ast.expr) -> str | None:
    """The string literal holding the summary in ``meta = SomeMeta(...)``, if there is one."""
    if not isinstance(call, ast.Call):
        return None
    func = call.func
    callee = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
    keyword, position = _SUMMARY_ARG.get(callee, _DEFAULT_SUMMARY_ARG)
    values = [kw.value for kw in call.keywords if kw.arg == keyword]
    if not values and len(call.args) > position:
        values = [call.args[position]]
    if values and isinstance(values[0], ast.Constant) and isinstance(values[0].value, str):
        return values[0].value
    return None


def _class_summary(node: ast.ClassDef, classes: dict[str, ast.ClassDef], seen: set[str]) -> str:
    seen.add(node.name)
    meta = None
    for stmt in node.body:
        if isinstance(stmt, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "meta" for t in stmt.targets):
            meta = stmt.value
        elif (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
              and stmt.target.id == "meta" and stmt.value is not None):
            meta = stmt.value
    if meta is not None:
        return _literal_summary(meta) or _first_line(ast.get_docstring(node))
    for base in node.bases:  # meta inherited from a class of the same module
        if isinstance(base, ast.Name) and base.id in classes and base.id not in seen:
            found = _class_summary(classes[base.id], classes, seen)
            if found:
                return found
    return _first_line(ast.get_docstring(node))


def source_summary(reference: str) -> str:
    """The summary of a lazy ``"module:Class"`` reference, read from the module's source with
    :mod:`ast` (nothing is executed, so listing stays free of torch): the string literal passed
    as ``summary`` (keyword or first argument; a ``DatasetMeta``'s ``title``) to the call
    assigned to ``meta`` in the class body, or in a base class defined in the same module;
    else the first line of the class docstring; ``""`` when the source cannot be read."""
    module_name, _, qualname = reference.partition(":")
    tree = _module_tree(module_name)
    if tree is None:
        return ""
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    scope: list[ast.stmt] = tree.body
    node = None
    for part in qualname.split("."):
        node = next((n for n in scope if isinstance(n, ast.ClassDef) and n.name == part), None)
        if node is None:
            return ""
        scope = node.body
    return _class_summary(node, classes, set()) if node is not None else ""


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
        """One line for ``msabench list``, importing nothing: the summary given at registration
        (third-party plugins may pass one), else the class's ``meta`` summary (a dataset's
        ``title``) -- from the class itself once it is loaded, else read from its source
        (:func:`source_summary`) -- else the first line of its docstring."""
        if self.summary:
            return self.summary
        cls = self.target if not self.is_lazy else self._loaded
        if cls is not None:
            return meta_summary(getattr(cls, "meta", None)) or _first_line(cls.__doc__)
        return source_summary(self.target)


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
