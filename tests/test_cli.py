"""The command line: torch-free listing, info, errors, and a run + leaderboard round trip."""

import json
import os
import subprocess
import sys

from typer.testing import CliRunner

from msabench.cli import make_app
from msabench.plugins import PluginSystem, set_plugin_system
from tests import all_hooks_plugin

NO_TORCH = """
import sys
from msabench.cli import main
sys.argv = ["msabench", *{args!r}]
try:
    main()
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
heavy = sorted(m for m in ("torch", "transformers", "pandas", "torchmetrics") if m in sys.modules)
print("HEAVY=" + ",".join(heavy))
"""


def _run_no_torch(args):
    out = subprocess.run([sys.executable, "-c", NO_TORCH.format(args=args)], capture_output=True,
                         text=True, env={**os.environ}, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_help_and_list_do_not_import_torch():
    for args in (["--help"], ["list"], ["list", "metrics"], ["plugins"]):
        stdout = _run_no_torch(args)
        assert "HEAVY=\n" in stdout, (args, stdout[-300:])


def test_list_shows_plugin_and_version():
    result = CliRunner().invoke(make_app(), ["list", "methods"])
    assert result.exit_code == 0
    assert "sf" in result.output and "builtins" in result.output and "0.1.0" in result.output
    bad = CliRunner().invoke(make_app(), ["list", "metod"])
    assert bad.exit_code == 2 and "Did you mean 'methods'" in bad.output


def test_info_shows_metadata_and_defaults():
    result = CliRunner().invoke(make_app(), ["info", "sf", "--json"])
    assert result.exit_code == 0, result.output
    [info] = json.loads(result.output)
    assert info["kind"] == "method" and info["defaults"]["train"]["batch_size"] == 32
    assert "MMSA" in info["metadata"]["defaults_source"]
    missing = CliRunner().invoke(make_app(), ["info", "sff"])
    assert missing.exit_code == 2 and "Did you mean 'sf'" in missing.output


def test_unknown_method_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(make_app(), ["run", "--method", "fs", "--dataset", "synthetic-mosi",
                                             "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown method 'fs'" in result.output and "Did you mean 'sf'" in result.output
    bad_seeds = CliRunner().invoke(make_app(), ["run", "-m", "sf", "-d", "synthetic-mosi",
                                                "--seeds", "1,x", "--out", str(tmp_path)])
    assert bad_seeds.exit_code == 2 and "--seeds" in bad_seeds.output


def test_run_then_leaderboard_round_trip(tmp_path):
    system = PluginSystem()
    system.load_entry_points()
    system.register(all_hooks_plugin, "all-hooks")
    set_plugin_system(system)
    app = make_app(system)
    results, boards = tmp_path / "results", tmp_path / "boards"
    args = ["run", "-m", "sf", "-d", "toy-data", "--seeds", "1,2", "--epochs", "3", "--quiet",
            "--out", str(results), "--tag", "short"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "2 run, 0 skipped" in first.output
    second = CliRunner().invoke(app, args)
    assert "0 run, 2 skipped" in second.output
    lb = ["leaderboard", "--results", str(results), "--out", str(boards),
          "--reported", str(tmp_path / "none.toml")]
    assert CliRunner().invoke(app, lb).exit_code == 0
    text = (boards / "toy-data.md").read_text()
    assert "| sf (short) " in text and "SYNTHETIC DATA" in text
    assert CliRunner().invoke(app, lb + ["--check"]).exit_code == 0


def test_info_accepts_plural_kind_and_rejects_unknown_kind():
    ok = CliRunner().invoke(make_app(), ["info", "concat", "--kind", "fusions", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)[0]["kind"] == "fusion"
    bad = CliRunner().invoke(make_app(), ["info", "concat", "--kind", "fusoin"])
    assert bad.exit_code == 2 and "unknown kind 'fusoin'" in bad.output


def test_config_file_supplies_method_dataset_and_seeds(tmp_path):
    system = PluginSystem()
    system.load_entry_points()
    system.register(all_hooks_plugin, "all-hooks")
    set_plugin_system(system)
    cfg = tmp_path / "run.toml"
    cfg.write_text('method = "sf"\ndataset = "toy-data"\nseeds = [3, 4]\ntag = "fromfile"\n'
                   "[train]\nepochs = 2\n")
    result = CliRunner().invoke(make_app(system), ["run", "--config", str(cfg), "--quiet",
                                                   "--out", str(tmp_path / "res")])
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in (tmp_path / "res" / "toy-data" / "default" / "sf@fromfile").iterdir())
    assert files == ["seed-3.json", "seed-4.json"]
    missing = CliRunner().invoke(make_app(system), ["run", "--quiet", "--out", str(tmp_path)])
    assert missing.exit_code == 2 and "give --method and --dataset" in missing.output
