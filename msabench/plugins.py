"""Plugin discovery: every plugin, built-in or third-party, is an entry point in group ``msabench``.

The built-in plugins under ``plugins/`` are declared as entry points of the ``msabench``
distribution itself, so they go through exactly the same path as a third-party package; only
the environment controls treat them differently:

``MSABENCH_DISABLE_PLUGIN_AUTOLOAD=1``
    load no third-party entry points (the built-ins still load).
``MSABENCH_PLUGINS=a,b``
    load only these third-party plugins (entry-point names); the built-ins still load.
``MSABENCH_BLOCK_PLUGINS=a,b``
    never load these plugins; built-ins can be blocked too.

A plugin that fails to import, or whose hook raises, is recorded as broken with the reason and
skipped; unrelated commands keep working.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any, Iterable

import pluggy

from . import hookspecs
from .registry import HOOK_FOR_KIND, Registry

GROUP = "msabench"
ENV_DISABLE_AUTOLOAD = "MSABENCH_DISABLE_PLUGIN_AUTOLOAD"
ENV_ALLOW = "MSABENCH_PLUGINS"
ENV_BLOCK = "MSABENCH_BLOCK_PLUGINS"
BUILTIN_DIST = "msabench"
#: used when msabench runs from a source tree without installed metadata
FALLBACK_BUILTINS = {"builtins": "msabench_builtins"}


@dataclass
class PluginInfo:
    name: str
    module: str
    version: str = ""
    distribution: str = ""
    builtin: bool = False
    status: str = "ok"  # ok | broken | blocked | skipped
    reason: str = ""
    hooks: list[str] = field(default_factory=list)
    components: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "module": self.module, "version": self.version,
            "distribution": self.distribution, "builtin": self.builtin, "status": self.status,
            "reason": self.reason, "hooks": self.hooks, "components": self.components,
        }


def _env_list(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def _truthy(var: str) -> bool:
    return os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}


class PluginSystem:
    """The pluggy manager plus the registry built from it."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self._registry: Registry | None = None

    # -- discovery -------------------------------------------------------------------------
    def load_entry_points(self, *, autoload: bool | None = None) -> None:
        blocked = _env_list(ENV_BLOCK) or set()
        allowed = _env_list(ENV_ALLOW)
        if autoload is None:
            autoload = not _truthy(ENV_DISABLE_AUTOLOAD)
        # built-ins first, so a third-party plugin can never take a built-in name
        eps = sorted(metadata.entry_points(group=GROUP),
                     key=lambda ep: (ep.dist is None or ep.dist.name != BUILTIN_DIST, ep.name))
        seen_builtin = False
        for ep in eps:
            dist = ep.dist.name if ep.dist is not None else ""
            version = ep.dist.version if ep.dist is not None else ""
            builtin = dist == BUILTIN_DIST
            seen_builtin |= builtin
            info = PluginInfo(ep.name, ep.value, version, dist, builtin)
            if ep.name in self.plugins:
                info.status, info.reason = "broken", (
                    f"duplicate plugin name {ep.name!r} (also from "
                    f"{self.plugins[ep.name].distribution or self.plugins[ep.name].module})")
                self.plugins[f"{ep.name} ({dist})"] = info
                continue
            if ep.name in blocked:
                info.status, info.reason = "blocked", f"listed in {ENV_BLOCK}"
            elif not builtin and not autoload:
                info.status, info.reason = "skipped", f"{ENV_DISABLE_AUTOLOAD} is set"
            elif not builtin and allowed is not None and ep.name not in allowed:
                info.status, info.reason = "skipped", f"not listed in {ENV_ALLOW}"
            if info.status != "ok":
                self.plugins[ep.name] = info
                continue
            try:
                module = ep.load()
            except Exception as exc:  # any import-time failure of a plugin is contained
                info.status, info.reason = "broken", f"import failed: {type(exc).__name__}: {exc}"
                self.plugins[ep.name] = info
                continue
            self._register(module, info)
        if not seen_builtin:
            for name, module_name in FALLBACK_BUILTINS.items():
                if name in blocked or name in self.plugins:
                    continue
                info = PluginInfo(name, module_name, _own_version(), BUILTIN_DIST, True)
                try:
                    module = importlib.import_module(module_name)
                except Exception as exc:
                    info.status, info.reason = "broken", f"import failed: {exc}"
                    self.plugins[name] = info
                    continue
                self._register(module, info)

    def register(self, plugin: ModuleType | object, name: str, *, version: str = "",
                 builtin: bool = False) -> PluginInfo:
        """Register a plugin object directly (tests, notebooks, embedding applications)."""
        module = getattr(plugin, "__name__", type(plugin).__name__)
        info = PluginInfo(name, module, version, "", builtin)
        self._register(plugin, info)
        return info

    def _register(self, plugin: Any, info: PluginInfo) -> None:
        try:
            self.pm.register(plugin, name=info.name)
        except Exception as exc:  # pluggy validation errors: unknown hook, bad signature
            info.status, info.reason = "broken", f"registration failed: {exc}"
        else:
            info.hooks = sorted(
                impl.name for impl in self.pm.get_hookcallers(plugin) or [])
            unknown = _misspelled_hooks(plugin)
            if unknown:
                info.status = "partial"
                info.reason = "; ".join(unknown)
        self.plugins[info.name] = info
        self._registry = None

    # -- the registry ----------------------------------------------------------------------
    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = self._build_registry()
        return self._registry

    def _build_registry(self) -> Registry:
        registry = Registry()
        for kind, hook_name in HOOK_FOR_KIND.items():
            hook = getattr(self.pm.hook, hook_name)
            # call each plugin's implementation on its own so failures are attributed
            for impl in hook.get_hookimpls():  # in registration order
                info = self.plugins.get(impl.plugin_name)
                if info is None or info.status != "ok":
                    continue
                register = registry.registrar(kind, info.name, info.version)
                before = set(registry.names(kind))
                try:
                    impl.function(register=register)
                except Exception as exc:
                    info.status = "broken"
                    info.reason = f"{hook_name} raised {type(exc).__name__}: {exc}"
                    continue
                added = sorted(set(registry.names(kind)) - before)
                if added:
                    info.components[kind] = added
        for plugin, message in registry.problems:
            info = self.plugins.get(plugin)
            if info is not None:
                info.reason = "; ".join(filter(None, [info.reason, message]))
                if info.status == "ok":
                    info.status = "partial"
        return registry

    def add_commands(self, cli: Any) -> None:
        for impl in self.pm.hook.register_commands.get_hookimpls():
            info = self.plugins.get(impl.plugin_name)
            if info is None or info.status not in ("ok", "partial"):
                continue
            try:
                impl.function(cli=cli)
            except Exception as exc:
                info.status = "broken"
                info.reason = f"register_commands raised {type(exc).__name__}: {exc}"

    def problems(self) -> list[PluginInfo]:
        _ = self.registry
        return [p for p in self.plugins.values() if p.status in ("broken", "partial")]


def _misspelled_hooks(plugin: Any) -> list[str]:
    """Hook implementations whose name matches no hook (pluggy would silently ignore them)."""
    import difflib

    known = [name for name in dir(hookspecs) if name.startswith("register_")]
    problems = []
    for name in dir(plugin):
        func = getattr(plugin, name, None)
        if not callable(func) or not hasattr(func, f"{hookspecs.PROJECT}_impl"):
            continue
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            problems.append(f"{name} is not a msabench hook and is never called"
                            + (f" (did you mean {close[0]}?)" if close else ""))
    return problems


def _own_version() -> str:
    from . import __version__

    return __version__


_SYSTEM: PluginSystem | None = None


def get_plugin_system(*, reload: bool = False) -> PluginSystem:
    """The process-wide plugin system, discovered from entry points on first use."""
    global _SYSTEM
    if _SYSTEM is None or reload:
        system = PluginSystem()
        system.load_entry_points()
        _SYSTEM = system
    return _SYSTEM


def set_plugin_system(system: PluginSystem | None) -> None:
    """Replace the process-wide plugin system (tests use this to isolate plugins)."""
    global _SYSTEM
    _SYSTEM = system


def get_registry() -> Registry:
    return get_plugin_system().registry


def warn_broken(stream: Any = None, plugins: Iterable[PluginInfo] | None = None) -> None:
    stream = stream or sys.stderr
    for info in plugins if plugins is not None else get_plugin_system().problems():
        print(f"msabench: plugin {info.name!r} {info.status}: {info.reason}", file=stream)
