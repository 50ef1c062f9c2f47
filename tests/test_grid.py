"""msabench grid (local and Ray executors, resume after failures) and --label-fractions."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from msabench.cli import make_app
from tests.conftest import TINY_SYNTH

SETS = ", ".join(f'"data.options.{k}={v}"' for k, v in TINY_SYNTH.items())


BROKEN = """
[[variants]]

[[variants]]
tag = "broken"
set = ["train.select=nonsense"]   # fails at run time, in the task
"""


def _grid(tmp_path, executor="local", extra="", variants=BROKEN):
    """sf and lmf x seeds 1, 2 on tiny synthetic-mosi; ``variants``: the [[variants]] tables
    (default: the default one and one that fails in its task)."""
    path = tmp_path / "grid.toml"
    path.write_text(f"""
methods = ["sf", "lmf"]
datasets = ["synthetic-mosi"]
seeds = [1, 2]
epochs = 1
threads = 1
out = "{tmp_path / 'results'}"
set = [{SETS}]
executor = "{executor}"
{variants}
{extra}
""")
    return path


def _invoke(*args):
    return CliRunner().invoke(make_app(), list(args))


def _results(tmp_path):
    return sorted(p.relative_to(tmp_path / "results").as_posix()
                  for p in (tmp_path / "results").rglob("seed-*.json"))


def _check_grid_and_resume(tmp_path, *executor_args):
    grid = _grid(tmp_path)
    first = _invoke("grid", str(grid), "-q", *executor_args)
    assert first.exit_code == 1, first.output
    assert "4 ran, 0 already done, 4 failed" in first.output
    assert "nonsense" in first.output
    done = _results(tmp_path)
    assert len(done) == 4 and not any("broken" in d for d in done)
    assert {d.rsplit("/", 1)[1] for d in done} == {"seed-1.json", "seed-2.json"}
    # a lost result (a killed task) and the failures are all that a re-run attempts
    (tmp_path / "results" / done[0]).unlink()
    again = _invoke("grid", str(grid), "-q", *executor_args)
    assert "1 ran, 3 already done, 4 failed" in again.output, again.output
    assert _results(tmp_path) == done
    dry = _invoke("grid", str(grid), "--dry-run")
    assert dry.exit_code == 0 and "8 task(s), 4 to run" in dry.output


def test_local_grid_runs_skips_and_resumes(tmp_path):
    _check_grid_and_resume(tmp_path)


def test_ray_grid_on_a_local_two_cpu_cluster(tmp_path):
    pytest.importorskip("ray")
    # behaviour only: Ray's overhead is measured by benchmarks/bench_grid.py, not here (this
    # test took 14 min on a 2-core machine with load 6)
    _check_grid_and_resume(tmp_path, "--executor", "ray", "--workers", "2")


def test_grid_file_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('methods = ["sf"]\ndatasets = ["synthetic-mosi"]\nseeds = [1]\nmethod = "x"\n')
    out = _invoke("grid", str(bad))
    assert out.exit_code == 2 and "unknown key grid.method" in " ".join(out.output.split())
    bad.write_text('methods = ["sff"]\ndatasets = ["synthetic-mosi"]\nseeds = [1]\n')
    out = _invoke("grid", str(bad))
    assert out.exit_code == 2 and "sf" in out.output  # did you mean


def test_resources_per_method(tmp_path):
    from msabench.grid import expand

    grid = _grid(tmp_path, extra='[resources]\nnum_cpus = 1\n[resources.methods.lmf]\n'
                                 'num_cpus = 2\nnum_gpus = 0.5\n')
    tasks = expand(grid).tasks
    assert {t.method: t.resources["num_cpus"] for t in tasks} == {"sf": 1, "lmf": 2}
    assert {t.resources.get("num_gpus") for t in tasks if t.method == "lmf"} == {0.5}
    assert len(tasks) == 8 and all(t.status == "pending" for t in tasks)


def test_label_fractions_run_one_variant_each_and_draw_a_curve(tmp_path):
    from msabench.leaderboard import generate

    args = ["run", "-m", "sf", "-d", "synthetic-mosi", "--seeds", "1,2", "--epochs", "1",
            "--out", str(tmp_path), "--label-fractions", "0.5,1.0", "-q"]
    args += [x for k, v in TINY_SYNTH.items() for x in ("--set", f"data.options.{k}={v}")]
    out = _invoke(*args)
    assert out.exit_code == 0, out.output
    folders = sorted(p.name for p in (tmp_path / "synthetic-mosi" / "unaligned").iterdir())
    assert len(folders) == 2 and folders[1].startswith("sf@lf0.5_cfg-")  # tiny data: cfg-
    res = json.loads((tmp_path / "synthetic-mosi/unaligned" / folders[1] / "seed-1.json")
                     .read_text())
    assert res["config"]["data"]["label_fraction"] == 0.5
    files = generate(tmp_path)
    page = files["synthetic-mosi.md"]
    assert "### Label efficiency" in page
    assert "figures/synthetic-mosi--unaligned--label-efficiency.svg" in files
    tagged = _invoke(*args, "--tag", "mine")  # a tag names the curve; points get _lf<F>
    assert tagged.exit_code == 0, tagged.output
    names = sorted(p.name for p in (tmp_path / "synthetic-mosi" / "unaligned").iterdir())
    assert "sf@mine" in names and "sf@mine_lf0.5" in names


def test_a_process_loads_each_dataset_once_across_grid_tasks(tmp_path, monkeypatch):
    """The executors' worker-side cache: consecutive tasks on the same data (seeds, methods)
    load it once; another data config (here a variant with more training rows: the whole
    data config is the key) loads again; the local executor drops it when the grid ends."""
    from msabench import grid as grid_mod
    from msabench import runner

    loads = []
    real = runner.load_dataset
    monkeypatch.setattr(runner, "load_dataset", lambda plan, progress: (
        loads.append(plan.config["data"]["options"]["n_train"]), real(plan, progress))[1])
    path = _grid(tmp_path, variants="""
[[variants]]
[[variants]]
tag = "bigger"
set = ["data.options.n_train=48"]
""")
    grid = grid_mod.expand(path)
    grid_mod.run_local(grid.tasks)
    assert [t.status for t in grid.tasks] == ["ran"] * 8
    # sf: default, bigger; lmf: default, bigger -> 4 loads for 8 tasks
    assert loads == [TINY_SYNTH["n_train"], 48, TINY_SYNTH["n_train"], 48]
    assert grid_mod._DATA_CACHE == {}


def test_ctrl_c_stops_a_local_grid(tmp_path, monkeypatch):
    """An interrupted task (Ctrl-C or SIGTERM, which the runner turns into RunInterrupted)
    stops the local grid: it is not recorded as one failed task with the next ones started."""
    from msabench import grid as grid_mod
    from msabench import runner

    calls = []

    def interrupted(spec, **kwargs):
        calls.append(spec.method)
        kwargs["data_cache"]["loaded"] = object()  # as a real task leaves its dataset
        raise runner.RunInterrupted([])

    monkeypatch.setattr(runner, "run", interrupted)
    grid = grid_mod.expand(_grid(tmp_path, variants=""))
    with pytest.raises(runner.RunInterrupted):
        grid_mod.run_local(grid.tasks)
    assert calls == ["sf"]
    assert [t.status for t in grid.tasks[1:]] == ["pending"] * 3
    assert grid_mod._DATA_CACHE == {}


def test_a_cluster_that_cannot_be_joined_is_a_clear_error(tmp_path, monkeypatch):
    """--address to a cluster that refuses the connection (not running, or token
    authentication without RAY_AUTH_MODE=token, as measured with a cluster started by
    ray.init in another process) names the address and both fixes, not a Ray traceback."""
    ray = pytest.importorskip("ray")
    from msabench import grid as grid_mod
    from msabench.errors import ConfigError

    # what ray.init raises: the cluster refuses the connection, or token mode is on and no
    # token is found
    for raised in (ConnectionError("Failed to connect to Ray cluster at 10.0.0.9:6379"),
                   ray.exceptions.AuthenticationError("no authentication token found")):
        def refuse(*args, raised=raised, **kwargs):
            raise raised

        monkeypatch.setattr(ray, "is_initialized", lambda: False)
        monkeypatch.setattr(ray, "init", refuse)
        grid = grid_mod.expand(_grid(tmp_path, variants=""))
        with pytest.raises(ConfigError) as info:
            grid_mod.run_ray(grid.tasks, address="10.0.0.9:6379")
        message = str(info.value)
        assert "--address 10.0.0.9:6379" in message and "ray status" in message
        assert "RAY_AUTH_MODE=token" in message and str(raised) in message


def test_every_ray_task_carries_the_drivers_environment(tmp_path, monkeypatch):
    """run_ray puts the driver's MSABENCH_/HF_/MLFLOW_ variables into every task's payload:
    the only way they reach the workers of a joined cluster (no runtime_env)."""
    ray = pytest.importorskip("ray")
    from msabench import grid as grid_mod

    payloads = []

    class Remote:
        def options(self, **resources):
            return self

        def remote(self, payload):
            payloads.append(payload)
            return len(payloads)

    monkeypatch.setenv("MSABENCH_GRID_PROBE", "driver")
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "remote", lambda **kwargs: lambda fn: Remote())
    monkeypatch.setattr(ray, "wait", lambda refs, **kwargs: (refs[:1], refs[1:]))
    monkeypatch.setattr(ray, "get", lambda ref: {"status": "ran", "seconds": 0.0})
    grid = grid_mod.expand(_grid(tmp_path, variants=""))
    grid_mod.run_ray(grid.tasks)
    assert len(payloads) == len(grid.tasks) == 4
    assert all(p["env"]["MSABENCH_GRID_PROBE"] == "driver" for p in payloads)
    assert [t.status for t in grid.tasks] == ["ran"] * 4


def test_a_task_carries_the_drivers_environment(monkeypatch):
    """Ray tasks carry the MSABENCH_/HF_/MLFLOW_ variables (a joined cluster's workers do not
    see the driver's shell); execute sets them before running, even for a task that fails."""
    from msabench.grid import _forwarded_env, execute

    monkeypatch.setenv("MSABENCH_GRID_PROBE", "driver")
    env = _forwarded_env()
    assert env["MSABENCH_GRID_PROBE"] == "driver" and "PATH" not in env
    monkeypatch.delenv("MSABENCH_GRID_PROBE")
    out = execute({"method": "no-such-method", "dataset": "synthetic-mosi", "seed": 1,
                   "overrides": {}, "out": "/nonexistent", "env": env})
    assert out["status"] == "failed" and "no-such-method" in out["error"]
    assert __import__("os").environ["MSABENCH_GRID_PROBE"] == "driver"
    monkeypatch.delenv("MSABENCH_GRID_PROBE")
