"""Test-wide isolation: no third-party plugins, no writes to the user's cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# keep whatever third-party plugins are installed out of the tests (built-ins still load)
os.environ["MSABENCH_DISABLE_PLUGIN_AUTOLOAD"] = "1"
os.environ.pop("MSABENCH_BLOCK_PLUGINS", None)
os.environ.pop("MSABENCH_PLUGINS", None)
os.environ.pop("MSABENCH_DATA_DIR", None)


def real_data(relative: str) -> Path:
    """Path of a file under ../shared/data; skip (or fail in CI) when absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        if os.environ.get("MSABENCH_REQUIRE_DATA") == "1":
            pytest.fail(f"{path} is missing but MSABENCH_REQUIRE_DATA=1 (CI must run real-data tests)")
        pytest.skip(f"real data {path} not available (set MSABENCH_REQUIRE_DATA=1 to fail instead)")
    return path


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory):
    if "MSABENCH_CACHE_DIR" not in os.environ:
        os.environ["MSABENCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("msabench-cache"))
    yield


@pytest.fixture(autouse=True)
def _fresh_plugin_system():
    """Each test starts from the default (built-ins only) plugin system."""
    from msabench.plugins import set_plugin_system

    set_plugin_system(None)
    yield
    set_plugin_system(None)


TINY_SYNTH = {"n_train": 160, "n_valid": 48, "n_test": 64, "text_dim": 24, "text_len": 8,
              "audio_len": 12, "vision_len": 10}


@pytest.fixture
def tiny_synth_overrides():
    """--set overrides that make synthetic-mosi tiny (fast tests)."""
    return [f"data.options.{k}={v}" for k, v in TINY_SYNTH.items()]


@pytest.fixture
def system():
    """A plugin system with the built-ins and tests/all_hooks_plugin.py (every hook once)."""
    from msabench.plugins import PluginSystem, set_plugin_system
    from tests import all_hooks_plugin

    system = PluginSystem()
    system.load_entry_points()
    system.register(all_hooks_plugin, "all-hooks", version="9.9")
    set_plugin_system(system)
    return system


@pytest.fixture
def registry(system):
    """The registry of :func:`system` (built-ins plus tests/all_hooks_plugin.py)."""
    return system.registry
