"""Discovery through entry points, environment controls, and containment of broken plugins."""

import json

import pytest
from typer.testing import CliRunner

from msabench.plugins import PluginSystem, set_plugin_system
from tests.plugin_helpers import install_fake_plugin

GOOD = """
from msabench import hookimpl

class Gate:
    name = "fake-gate"

@hookimpl
def register_fusions(register):
    register(Gate)
"""

DUPLICATE = """
from msabench import hookimpl

@hookimpl
def register_methods(register):
    register("somewhere.else:SF", name="sf")
    register("somewhere.else:Other", name="fake-other")
"""

RAISING_HOOK = """
from msabench import hookimpl

@hookimpl
def register_datasets(register):
    raise RuntimeError("boom while registering")
"""


def _system(monkeypatch, **env):
    for key in ("MSABENCH_DISABLE_PLUGIN_AUTOLOAD", "MSABENCH_PLUGINS", "MSABENCH_BLOCK_PLUGINS"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    system = PluginSystem()
    system.load_entry_points()
    return system


@pytest.fixture
def site(tmp_path, monkeypatch):
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    return path


def test_builtins_load_through_entry_point(monkeypatch):
    system = _system(monkeypatch)
    info = system.plugins["builtins"]
    assert info.builtin and info.status == "ok" and info.distribution == "msabench"
    assert "sf" in system.registry.names("method")
    assert system.registry.get("method", "sf").plugin == "builtins"


def test_third_party_plugin_is_discovered(site, monkeypatch):
    install_fake_plugin(site, "fake-good", "fakegood", "fake_good_mod", GOOD)
    system = _system(monkeypatch)
    assert system.plugins["fakegood"].status == "ok"
    assert system.plugins["fakegood"].version == "0.1"
    entry = system.registry.get("fusion", "fake-gate")
    assert entry.plugin == "fakegood" and entry.plugin_version == "0.1"


def test_disable_autoload_keeps_builtins(site, monkeypatch):
    install_fake_plugin(site, "fake-good2", "fakegood2", "fake_good_mod2", GOOD)
    system = _system(monkeypatch, MSABENCH_DISABLE_PLUGIN_AUTOLOAD="1")
    assert system.plugins["fakegood2"].status == "skipped"
    assert "fake-gate" not in system.registry.names("fusion")
    assert "sf" in system.registry.names("method")


def test_allowlist_and_blocklist(site, monkeypatch):
    install_fake_plugin(site, "fake-good3", "fakegood3", "fake_good_mod3", GOOD)
    system = _system(monkeypatch, MSABENCH_PLUGINS="other")
    assert system.plugins["fakegood3"].status == "skipped"
    system = _system(monkeypatch, MSABENCH_PLUGINS="fakegood3")
    assert system.plugins["fakegood3"].status == "ok"
    system = _system(monkeypatch, MSABENCH_BLOCK_PLUGINS="fakegood3,builtins")
    assert system.plugins["fakegood3"].status == "blocked"
    assert system.plugins["builtins"].status == "blocked"
    assert system.registry.names("method") == []


def test_import_error_is_contained_and_reported(site, monkeypatch):
    install_fake_plugin(site, "fake-broken", "fakebroken", "fake_broken_mod",
                        "import this_module_does_not_exist_anywhere\n")
    system = _system(monkeypatch)
    info = system.plugins["fakebroken"]
    assert info.status == "broken"
    assert "this_module_does_not_exist_anywhere" in info.reason
    assert "sf" in system.registry.names("method")  # unrelated components still work


def test_duplicate_name_from_third_party_is_reported_not_fatal(site, monkeypatch):
    install_fake_plugin(site, "fake-dup", "fakedup", "fake_dup_mod", DUPLICATE)
    system = _system(monkeypatch)
    reg = system.registry
    assert reg.get("method", "sf").plugin == "builtins"  # the built-in keeps its name
    assert reg.get("method", "fake-other").plugin == "fakedup"  # the rest still registers
    info = system.plugins["fakedup"]
    assert info.status == "partial" and "duplicate method name 'sf'" in info.reason


def test_raising_hook_is_attributed(site, monkeypatch):
    install_fake_plugin(site, "fake-raise", "fakeraise", "fake_raise_mod", RAISING_HOOK)
    system = _system(monkeypatch)
    _ = system.registry
    info = system.plugins["fakeraise"]
    assert info.status == "broken" and "boom while registering" in info.reason


def test_cli_keeps_working_with_broken_plugin(site, monkeypatch):
    install_fake_plugin(site, "fake-broken2", "fakebroken2", "fake_broken_mod2",
                        "raise ImportError('plugin is broken on purpose')\n")
    system = _system(monkeypatch)
    set_plugin_system(system)
    from msabench.cli import make_app as get_app

    runner = CliRunner()
    result = runner.invoke(get_app(), ["list", "methods"])
    assert result.exit_code == 0, result.output
    assert "sf" in result.output
    assert "fakebroken2" in result.output and "broken on purpose" in result.output
    result = runner.invoke(get_app(), ["plugins", "--json"])
    assert result.exit_code == 0
    data = {p["name"]: p for p in json.loads(result.output)}
    assert data["fakebroken2"]["status"] == "broken"
    assert "sf" in data["builtins"]["components"]["method"]


MISSPELLED = """
from msabench import hookimpl

@hookimpl
def register_fusion(register):
    raise AssertionError("never called")
"""


def test_misspelled_hook_is_reported(site, monkeypatch):
    install_fake_plugin(site, "fake-typo", "faketypo", "fake_typo_mod", MISSPELLED)
    system = _system(monkeypatch)
    info = system.plugins["faketypo"]
    assert info.status == "partial"
    assert "register_fusion is not a msabench hook" in info.reason
    assert "did you mean register_fusions" in info.reason
