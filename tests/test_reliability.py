"""Runs under faults (issue 14 items 3-4, issue 15 item 9): mixed configs, damaged result
files, killed writers, concurrent runs, SIGTERM, NaN losses, an unwritable --out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from msabench.errors import ConfigError, MsabenchError, TrainingDiverged
from msabench.leaderboard import generate
from msabench.results import claim, clean_stale_temporaries, read_result, release
from msabench.runner import Progress, RunSpec, run
from tests import all_hooks_plugin

ROOT = Path(__file__).resolve().parents[1]
QUIET = Progress(quiet=True)
TINY = {"data": {"options": {"n_train": 48, "n_valid": 16, "n_test": 16, "text_len": 4,
                             "audio_len": 6, "vision_len": 5, "text_dim": 8, "cache": False}},
        "train": {"epochs": 1}}


def _toy(system, tmp_path, seeds, lr, tag="t", **kw):
    spec = RunSpec(method="toy-linear", dataset="toy-data", out=tmp_path, quiet=True,
                   seeds=seeds, tag=tag, overrides={"train": {"lr": lr, "epochs": 2}}, **kw)
    return run(spec, registry=system.registry, progress=QUIET)


# ------------------------------------------------------------------ one variant, one config
def test_a_seed_with_another_config_is_refused_in_a_tagged_variant(system, tmp_path):
    _toy(system, tmp_path, [1, 2], lr=1e-3)
    with pytest.raises(MsabenchError, match=r"holds seeds from another config \(seed-1.json, "
                                            r"seed-2.json.*--tag NAME"):
        _toy(system, tmp_path, [3], lr=1e-1)
    assert not (tmp_path / "toy-data" / "default" / "toy-linear@t" / "seed-3.json").exists()
    # re-running every seed of the folder with the new config is allowed
    outcomes = _toy(system, tmp_path, [1, 2, 3], lr=1e-1, force=True)
    assert [o.status for o in outcomes] == ["ran"] * 3


def test_leaderboard_refuses_a_mixed_folder_naming_the_files(system, tmp_path):
    outcomes = _toy(system, tmp_path, [1, 2], lr=1e-3)
    data = json.loads(outcomes[1].path.read_text())
    data["config_hash"] = "0123456789ab"
    outcomes[1].path.write_text(json.dumps(data))
    with pytest.raises(MsabenchError, match=r"toy-linear \(t\) mixes configs .*seed-1.json.*"
                                            r"0123456789ab: seed-2.json"):
        generate(tmp_path)


# ------------------------------------------------------------------ damaged result files
@pytest.mark.parametrize("content, field", [
    ("3", "JSON int"), ("null", "JSON NoneType"),
    (None, "'schema_version' is '1'"), ("metrics-null", "'metrics' is None"),
    ("no-test", "no 'test' object"), ("string-metric", "metrics.test.mae is '0.5'"),
    ("nan-metric", "metrics.test.mae is nan"), ("string-seed", "'seed' is '1'"),
])
def test_damaged_result_files_are_named_with_the_field(system, tmp_path, content, field):
    [outcome] = _toy(system, tmp_path, [1], lr=1e-3)
    data = json.loads(outcome.path.read_text())
    if content is None:
        data["schema_version"] = "1"
    elif content == "metrics-null":
        data["metrics"] = None
    elif content == "no-test":
        data["metrics"] = {"valid": {}}
    elif content == "string-metric":
        data["metrics"]["test"]["mae"] = "0.5"
    elif content == "nan-metric":
        data["metrics"]["test"]["mae"] = float("nan")
    elif content == "string-seed":
        data["seed"] = "1"
    text = content if content in ("3", "null") else json.dumps(data)
    outcome.path.write_text(text)
    with pytest.raises(MsabenchError, match=field):
        read_result(outcome.path)
    # a resuming run names the file instead of a traceback
    with pytest.raises(MsabenchError, match="seed-1.json"):
        _toy(system, tmp_path, [1], lr=1e-3)


def test_leaderboard_reports_every_bad_file_then_fails(system, tmp_path):
    outcomes = _toy(system, tmp_path, [1, 2, 3], lr=1e-3)
    outcomes[0].path.write_text("null")
    outcomes[2].path.write_text('{"schema_version": 1}')
    with pytest.raises(MsabenchError) as err:
        generate(tmp_path)
    text = str(err.value)
    assert text.startswith("2 problem(s)") and "seed-1.json" in text and "seed-3.json" in text


# ------------------------------------------------------------------ writers and claims
def test_a_killed_writer_leaves_the_old_file_and_its_temporary_is_cleaned(tmp_path):
    target = tmp_path / "seed-1.json"
    target.write_text(json.dumps({"old": True}))
    script = textwrap.dedent(f"""
        import json, sys, time
        from msabench import results
        real = json.dump
        def slow(obj, fh, **kw):
            fh.write('{{"half": ')
            fh.flush()
            print("writing", flush=True)
            time.sleep(60)
        results.json.dump = slow
        results.write_result({str(target)!r}, {{"new": True}})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert json.loads(target.read_text()) == {"old": True}  # never a partial JSON
    leftovers = list(tmp_path.glob(".tmp-*.json"))
    assert len(leftovers) == 1
    assert clean_stale_temporaries(tmp_path) == leftovers and not leftovers[0].exists()


def test_stale_temporaries_of_live_writers_are_kept(tmp_path):
    mine = tmp_path / f".tmp-{os.getpid()}-abc.json"
    mine.write_text("{")
    assert clean_stale_temporaries(tmp_path) == [] and mine.exists()


def test_a_claim_held_by_a_live_process_is_respected_and_a_dead_one_taken_over(tmp_path):
    path = tmp_path / "seed-1.json"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        Path(f"{path}.lock").write_text(f"{sleeper.pid} host\n")
        assert claim(path) is False
    finally:
        sleeper.kill()
        sleeper.wait()
    assert claim(path) is True  # its owner is gone
    assert Path(f"{path}.lock").read_text().split()[0] == str(os.getpid())
    release(path)
    assert not Path(f"{path}.lock").exists()


def test_two_runs_on_one_results_folder_never_train_the_same_seed(tmp_path):
    args = [str(Path(sys.executable).parent / "msabench"), "run", "-m", "sf", "-d", "synthetic-mosi",
            "--seeds", "1,2,3,4", "--out", str(tmp_path), "--threads", "1",
            "--set", "train.epochs=1"]
    for key, value in TINY["data"]["options"].items():
        args += ["--set", f"data.options.{key}={str(value).lower()}"]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'plugins'}"}
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=env, cwd=ROOT) for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    trained = [line for out in outputs for line in out.splitlines()
               if line.startswith("seed ") and ": test " in line]
    seeds = sorted(int(line.split()[1].rstrip(":")) for line in trained)
    assert seeds == [1, 2, 3, 4], outputs  # each seed trained exactly once
    for seed in (1, 2, 3, 4):
        files = list(tmp_path.rglob(f"seed-{seed}.json"))
        assert len(files) == 1 and read_result(files[0]).seed == seed
    assert not list(tmp_path.rglob("*.lock")) and not list(tmp_path.rglob(".tmp-*"))


def test_sigterm_stops_like_ctrl_c_and_keeps_finished_seeds(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        from msabench.plugins import PluginSystem, set_plugin_system
        from msabench.runner import Progress, RunInterrupted, RunSpec, run
        from tests import all_hooks_plugin
        import tests.all_hooks_plugin as p
        real = p.Linear.forward
        def slow(self, batch):
            time.sleep(0.3)
            return real(self, batch)
        p.Linear.forward = slow
        system = PluginSystem(); system.load_entry_points()
        system.register(all_hooks_plugin, "all-hooks", version="9.9"); set_plugin_system(system)
        spec = RunSpec(method="toy-linear", dataset="toy-data", out={str(tmp_path)!r},
                       seeds=[1, 2, 3, 4, 5, 6], quiet=True, tag="sig",
                       overrides={{"train": {{"epochs": 3}}}})
        try:
            run(spec, registry=system.registry, progress=Progress(quiet=True))
        except RunInterrupted as exc:
            print("kept", [o.seed for o in exc.outcomes], flush=True)
            sys.exit(130)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT)
    first = tmp_path / "toy-data" / "default" / "toy-linear@sig" / "seed-1.json"
    deadline = time.time() + 300
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert first.exists(), "the first seed was never written"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130 and out.startswith("kept [1"), out
    kept = sorted(p.name for p in first.parent.glob("seed-*.json"))
    assert kept and len(kept) < 6 and all(read_result(first.parent / k) for k in kept)
    assert not list(first.parent.glob("*.lock"))


# ------------------------------------------------------------------ bad runs
def test_a_diverging_run_stops_clearly_and_writes_no_result(system, tmp_path, monkeypatch):
    forward = all_hooks_plugin.Linear.forward
    calls = []

    def blows_up(self, batch):  # the third training batch produces NaN
        out = forward(self, batch)
        calls.append(1)
        return {"pred": out["pred"] * float("nan")} if len(calls) == 3 else out

    monkeypatch.setattr(all_hooks_plugin.Linear, "forward", blows_up)
    with pytest.raises(TrainingDiverged, match="training loss became nan at epoch 1; no result "
                                               "is written"):
        _toy(system, tmp_path, [1], lr=1e-3, tag="nan")
    assert not list(tmp_path.rglob("seed-1.json")) and not list(tmp_path.rglob("*.lock"))


def test_an_unwritable_out_is_refused_before_any_work(system, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=f"--out {blocker}: cannot write results there"):
        _toy(system, blocker, [1], lr=1e-3)


def test_a_run_on_overflowing_features_stops_before_training_naming_split_and_modality(
        system, tmp_path):
    from msabench.errors import DataError

    class Huge(all_hooks_plugin.ToyData):
        name = "huge-toy"
        meta = all_hooks_plugin.ToyData.meta.__class__(
            **{**all_hooks_plugin.ToyData.meta.as_dict(), "name": "huge-toy",
               "label_range": (-3.0, 3.0), "split_sizes": (192, 64, 64),
               "modalities": ("text", "audio")})

        def load(self):
            data = super().load()
            data.splits["train"].features["audio"][3, 1, 0] = 1e38
            return data

    system.registry.add("dataset", Huge, plugin="test")
    spec = RunSpec(method="toy-linear", dataset="huge-toy", out=tmp_path, quiet=True)
    with pytest.raises(DataError, match=r"\[train\]: modality 'audio' has values of magnitude "
                                        r"1e\+38"):
        run(spec, registry=system.registry, progress=QUIET)
    assert not list(tmp_path.rglob("seed-*.json"))


def test_a_label_fraction_that_leaves_one_labelled_sample_is_refused(system, tmp_path):
    spec = RunSpec(method="toy-linear", dataset="toy-data", out=tmp_path, quiet=True,
                   overrides={"data": {"label_fraction": 1e-9}})
    with pytest.raises(ConfigError, match=r"data.label_fraction=1e-09 leaves 1 labelled "
                                          r"training sample\(s\) of 192.*at least 2"):
        run(spec, registry=system.registry, progress=QUIET)
