"""docs/plugins/example is a real plugin: pip-install it, then drive the CLI in a subprocess.

The example is installed (offline, no dependencies) into a temporary ``--target`` directory that
is put on ``PYTHONPATH`` of the subprocesses only, so nothing leaks into the venv or into the
other tests. It is installed from a copy of the directory so the build (``build/``,
``*.egg-info``) never writes into the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "plugins" / "example"
PLUGIN, FUSION, VERSION = "example-gated", "gated-sum", "0.1.0"
CLI = "from msabench.cli import main; main()"
# `msabench list fusions`, then report which heavy modules the process imported
CLI_NO_TORCH = """
import sys
from msabench.cli import main
try:
    main()
finally:
    print("HEAVY=" + ",".join(m for m in ("torch", "transformers", "pandas") if m in sys.modules))
"""

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A directory holding the installed example (its module and its dist-info)."""
    pip = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, text=True)
    if pip.returncode != 0:
        pytest.skip(f"pip is unusable in this interpreter: {pip.stderr.strip()[-300:]}")
    tmp = tmp_path_factory.mktemp("example-plugin")
    source, target = tmp / "src", tmp / "site"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__"))
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(source)],
        capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, f"pip install of the example failed:\n{done.stdout}\n{done.stderr}"
    assert (target / "msabench_example_gated.py").is_file()
    assert list(target.glob("msabench_example_gated-0.1.0.dist-info/entry_points.txt"))
    return target


def _env(site: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)  # keeps MSABENCH_CACHE_DIR (set by conftest)
    for var in ("MSABENCH_DISABLE_PLUGIN_AUTOLOAD", "MSABENCH_PLUGINS", "MSABENCH_BLOCK_PLUGINS"):
        env.pop(var, None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    env["COLUMNS"] = "200"  # rich tables and messages: no folding of names
    env.update(extra)
    return env


def _cli(args: list[str], env: dict[str, str], cwd: Path, script: str = CLI,
         ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def test_example_plugin_is_discovered(site, tmp_path):
    env = _env(site)
    shown = _cli(["plugins", "--json"], env, tmp_path)
    assert shown.returncode == 0, shown.stderr
    plugins = {p["name"]: p for p in json.loads(shown.stdout)}
    info = plugins[PLUGIN]
    assert info["status"] == "ok", info
    assert info["components"] == {"fusion": [FUSION]}
    assert info["version"] == VERSION and info["distribution"] == "msabench-example-gated"
    assert info["builtin"] is False and info["hooks"] == ["register_fusions"]

    listed = _cli(["list", "fusions"], env, tmp_path, script=CLI_NO_TORCH)
    assert listed.returncode == 0, listed.stderr
    row = next((line for line in listed.stdout.splitlines() if FUSION in line), None)
    assert row is not None, listed.stdout
    assert PLUGIN in row and VERSION in row, row
    # the plugin registers lazily and imports nothing heavy at discovery
    assert "HEAVY=\n" in listed.stdout, listed.stdout[-300:]


def test_example_fusion_runs_and_can_be_blocked(site, tmp_path, tiny_synth_overrides):
    def run_args(out: Path) -> list[str]:
        args = ["run", "--method", "sf", "--dataset", "synthetic-mosi",
                "--set", f"model.fusion={FUSION}", "--epochs", "2", "--quiet", "--out", str(out)]
        for item in tiny_synth_overrides:
            args += ["--set", item]
        return args

    out = tmp_path / "results"
    done = _cli(run_args(out), _env(site), tmp_path)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    files = sorted(out.rglob("seed-*.json"))
    assert len(files) == 1, files
    result = json.loads(files[0].read_text())
    assert result["config"]["model"]["fusion"] == FUSION
    assert result["method"] == "sf" and result["dataset"] == "synthetic-mosi"
    assert result["synthetic"] is True and result["epochs_run"] <= 2
    assert result["variant"] != "default"  # a non-default fusion is a variant of sf

    blocked_env = _env(site, MSABENCH_BLOCK_PLUGINS=PLUGIN)
    shown = _cli(["plugins", "--json"], blocked_env, tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert {p["name"]: p for p in json.loads(shown.stdout)}[PLUGIN]["status"] == "blocked"

    blocked_out = tmp_path / "blocked-results"
    failed = _cli(run_args(blocked_out), blocked_env, tmp_path)
    assert failed.returncode == 2, f"{failed.stdout}\n{failed.stderr}"
    message = " ".join((failed.stdout + failed.stderr).split())
    assert f"unknown fusion '{FUSION}'" in message, message
    assert "Traceback" not in failed.stderr
    assert not list(blocked_out.rglob("seed-*.json"))
