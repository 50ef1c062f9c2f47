"""Component summaries are written once, in each class's ``meta``: ``msabench list`` reads them
from the source (no import), and they equal what the loaded class says."""

from __future__ import annotations

import textwrap

import pytest

from msabench.plugins import get_plugin_system
from msabench.registry import KINDS, Registry, meta_summary, source_summary


def _builtin_entries():
    registry = get_plugin_system().registry
    return [e for kind in KINDS for e in registry.entries(kind) if e.plugin == "builtins"]


def test_builtins_register_no_summary_of_their_own():
    entries = _builtin_entries()
    assert len(entries) > 30
    assert [e.name for e in entries if e.summary] == []


@pytest.mark.parametrize("entry", _builtin_entries(), ids=lambda e: f"{e.kind}:{e.name}")
def test_listed_summary_is_the_loaded_class_meta_summary(entry):
    assert entry._loaded is None
    listed = entry.describe()  # read from the source, nothing imported
    meta = entry.load().meta
    expected = meta.title if entry.kind == "dataset" else meta.summary
    assert listed and listed == expected
    assert entry.describe() == expected  # and from the loaded class


SOURCE = '''
from somewhere import ComponentMeta, DatasetMeta, Metric


def _meta(summary, source=""):
    return ComponentMeta(summary=summary, defaults_source=source)


class Keyword:
    """Keyword docstring."""
    meta = ComponentMeta(paper="p", summary="from the "
                                            "keyword")


class Positional:
    meta = ComponentMeta("first argument")


class Helper(Metric):
    name = "x"
    meta = _meta("through a helper", "src")


class Annotated:
    meta: "ClassVar[ComponentMeta]" = ComponentMeta(summary="annotated")


class Data:
    meta = DatasetMeta(name="data", title="A dataset title", language="en")


class DataPositional:
    meta = DatasetMeta("data", "positional title")


class Inherits(Keyword):
    """Inherits docstring."""


class Computed:
    """Computed: the docstring is the fallback."""
    meta = ComponentMeta(summary=f"{1 + 1}")


class Bare:
    """First line.

    More."""


class Outer:
    class Inner:
        meta = ComponentMeta(summary="nested")
'''


@pytest.fixture
def module(tmp_path, monkeypatch):
    (tmp_path / "summary_probe_mod.py").write_text(textwrap.dedent(SOURCE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "summary_probe_mod"


@pytest.mark.parametrize("cls, expected", [
    ("Keyword", "from the keyword"), ("Positional", "first argument"),
    ("Helper", "through a helper"), ("Annotated", "annotated"), ("Data", "A dataset title"),
    ("DataPositional", "positional title"), ("Inherits", "from the keyword"),
    ("Computed", "Computed: the docstring is the fallback."), ("Bare", "First line."),
    ("Outer.Inner", "nested"), ("Missing", ""),
])
def test_source_summary_reads_meta_without_importing(module, cls, expected):
    import sys

    assert source_summary(f"{module}:{cls}") == expected
    assert module not in sys.modules  # `from somewhere import ...` would fail if it ran


def test_unreadable_sources_give_an_empty_summary(tmp_path, monkeypatch):
    (tmp_path / "summary_broken_mod.py").write_text("class Broken(:\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert source_summary("summary_broken_mod:Broken") == ""
    assert source_summary("no_such_module_xyz:Cls") == ""
    assert source_summary("no_such_pkg_xyz.sub:Cls") == ""
    assert source_summary("sys:Cls") == ""  # built-in module, no .py source


def test_a_registered_summary_still_wins(module):
    reg = Registry()
    given = reg.add("fusion", f"{module}:Keyword", name="given", summary="from register()")
    read = reg.add("fusion", f"{module}:Keyword", name="read")
    assert given.describe() == "from register()"
    assert read.describe() == "from the keyword"


def test_class_registration_uses_meta_then_docstring():
    from msabench.api import ComponentMeta

    class WithMeta:
        """Docstring."""
        name = "with-meta"
        meta = ComponentMeta(summary="meta summary")

    class DocOnly:
        """Docstring only.

        More."""
        name = "doc-only"

    reg = Registry()
    assert reg.add("fusion", WithMeta).describe() == "meta summary"
    assert reg.add("fusion", DocOnly).describe() == "Docstring only."
    assert meta_summary(None) == ""
