"""Grids: methods x datasets x settings x variants x label fractions x seeds, one task per seed.

``msabench grid GRID.toml`` expands the file into tasks, skips those whose result file exists
(so re-running a grid runs only what is missing) and runs the rest with an executor:

``local``  in this process, one task after another (the default)
``ray``    one Ray task per seed (``--address auto`` or ``ray://host:port`` joins a cluster;
           without ``--address`` a local one is started with ``--workers`` CPUs); each task's
           resources come from the file's ``[resources]`` table (``num_cpus``, ``num_gpus``,
           per method under ``[resources.methods.<name>]``)

Every task is an ordinary :func:`msabench.runner.run` of one seed: it claims the seed
(``seed-N.json.lock``), trains and writes the result file atomically **where it runs**, so the
results root must be one folder every worker sees (one machine, or shared storage on a
cluster); a task that fails or is killed loses nothing that finished, and its stale claim is
taken over by the next attempt. The grid file format is documented in docs/grids.md.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from . import config as cfg
from .errors import ConfigError, MsabenchError

GRID_KEYS = ("methods", "datasets", "settings", "seeds", "label_fractions", "variants", "set",
             "epochs", "out", "data_dir", "save_checkpoint", "trackers", "resources",
             "threads", "executor")
RESOURCE_KEYS = ("num_cpus", "num_gpus", "memory", "resources")
EXECUTORS = ("local", "ray")


def parse_fractions(text: str | Sequence[Any], where: str) -> list[float]:
    """``"0.05,0.1,1.0"`` (or a list) -> distinct fractions in (0, 1]."""
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        out = [float(x) for x in items if str(x).strip()]
    except ValueError:
        raise ConfigError(f"{where} {text!r}: give comma-separated numbers in (0, 1], e.g. "
                          "0.05,0.1,0.2,0.4,1.0") from None
    bad = [f for f in out if not 0.0 < f <= 1.0]
    if not out or bad or len(set(out)) != len(out):
        raise ConfigError(f"{where} {text!r}: give distinct numbers in (0, 1], e.g. "
                          "0.05,0.1,0.2,0.4,1.0")
    return out


def fraction_tag(tag: str | None, fraction: float) -> str | None:
    """A tag combined with a label fraction: ``tag`` at 1.0, ``tag_lf<F>`` below; no tag
    leaves the variant to be derived (``lf0.1``)."""
    if not tag:
        return None
    return tag if fraction == 1.0 else f"{tag}_lf{fraction:g}"


@dataclass
class Task:
    """One seed of one cell of the grid."""

    method: str
    dataset: str
    seed: int
    overrides: dict[str, Any]
    tag: str | None
    variant: str
    setting: str
    path: Path
    resources: dict[str, Any]
    options: dict[str, Any]
    status: str = "pending"  # pending | done (existed) | running | ran | failed
    error: str = ""
    seconds: float = 0.0

    @property
    def label(self) -> str:
        from .results import run_leaf

        leaf = run_leaf(self.method, self.variant)
        return f"{self.dataset}/{self.setting}/{leaf} seed {self.seed}"

    def payload(self) -> dict[str, Any]:
        """What a worker needs (plain data: it crosses process and machine boundaries)."""
        return {"method": self.method, "dataset": self.dataset, "seed": self.seed,
                "overrides": self.overrides, "tag": self.tag, **self.options}


@dataclass
class Grid:
    path: Path
    data: dict[str, Any]
    tasks: list[Task] = field(default_factory=list)


def load_grid(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"grid file {path} does not exist")
    try:
        data = cfg.tomllib.loads(path.read_text(encoding="utf-8"))
    except cfg.tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"grid file {path} is not valid TOML: {exc}") from None
    cfg.check_keys("grid", data, GRID_KEYS, f"grid file {path}")
    for key in ("methods", "datasets", "seeds"):
        if not isinstance(data.get(key), list) or not data[key]:
            raise ConfigError(f"grid file {path}: {key} must be a non-empty list, e.g. "
                              + {"methods": 'methods = ["sf", "tfn"]',
                                 "datasets": 'datasets = ["synthetic-mosi"]',
                                 "seeds": "seeds = [1111, 1112, 1113]"}[key])
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in data["seeds"]) \
            or len(set(data["seeds"])) != len(data["seeds"]):
        raise ConfigError(f"grid file {path}: seeds must be distinct integers")
    for i, variant in enumerate(data.get("variants", [])):
        if not isinstance(variant, dict):
            raise ConfigError(f"grid file {path}: [[variants]] #{i + 1} must be a table")
        cfg.check_keys("variants", variant, ("tag", "set"), f"grid file {path} [[variants]] "
                                                            f"#{i + 1}")
    resources = data.get("resources", {})
    cfg.check_keys("resources", {k: v for k, v in resources.items() if k != "methods"},
                   RESOURCE_KEYS, f"grid file {path}")
    if data.get("executor", "local") not in EXECUTORS:
        raise ConfigError(f"grid file {path}: executor must be one of {', '.join(EXECUTORS)}")
    return data


def _resources(data: Mapping[str, Any], method: str) -> dict[str, Any]:
    table = dict(data.get("resources", {}))
    per_method = table.pop("methods", {}).get(method, {})
    out = {"num_cpus": 1, **table, **per_method}
    return {k: v for k, v in out.items() if k in RESOURCE_KEYS}


def expand(path: Path, registry: Any = None, out: Path | None = None,
           force: bool = False) -> Grid:
    """Plan every task of the grid file (configs validated, result paths resolved, finished
    seeds marked ``done``) without running anything."""
    from .plan import RunSpec, prepare
    from .plugins import get_registry
    from .results import DEFAULT_RESULTS_DIR, read_result, result_path

    registry = registry or get_registry()
    data = load_grid(path)
    out = Path(out or data.get("out") or DEFAULT_RESULTS_DIR).resolve()
    common = cfg.parse_overrides(data.get("set", []))
    fractions = (parse_fractions(data["label_fractions"], f"{path}: label_fractions")
                 if data.get("label_fractions") else [None])
    variants = data.get("variants") or [{}]
    settings = data.get("settings") or [None]
    grid = Grid(Path(path), data)
    for method, dataset, setting, variant, fraction in product(
            data["methods"], data["datasets"], settings, variants, fractions):
        over = cfg.deep_merge(common, cfg.parse_overrides(variant.get("set", [])))
        if setting:
            over = cfg.deep_merge(over, {"data": {"setting": setting}})
        tag = variant.get("tag")
        if fraction is not None:
            over = cfg.deep_merge(over, {"data": {"label_fraction": fraction}})
            tag = fraction_tag(tag, fraction)
        spec = RunSpec(method=method, dataset=dataset, seeds=data["seeds"], overrides=over,
                       epochs=data.get("epochs"), out=out, tag=tag)
        try:
            plan = prepare(spec, registry)
        except MsabenchError as exc:
            raise ConfigError(f"grid file {path}: {method} on {dataset}"
                              + (f" ({setting})" if setting else "") + f": {exc}") from None
        resources = _resources(data, method)
        options = {"epochs": data.get("epochs"), "out": str(out),
                   "data_dir": data.get("data_dir"),
                   # None: train.save_checkpoint of the config (`set`, variants) decides
                   "save_checkpoint": data.get("save_checkpoint"),
                   "trackers": list(data.get("trackers", [])),
                   "threads": data.get("threads") or max(1, int(resources.get("num_cpus", 1))),
                   "force": force}
        for seed in data["seeds"]:
            where = result_path(out, dataset, plan.setting, method, plan.variant, seed)
            task = Task(method, dataset, int(seed), over, tag, plan.variant, plan.setting,
                        where, resources, options)
            if where.exists() and not force:
                try:
                    if read_result(where).config_hash == plan.hash:
                        task.status = "done"
                except MsabenchError:
                    pass  # a damaged file: the task runs and the runner names the problem
            grid.tasks.append(task)
    return grid


#: the last dataset this process loaded for a task (runner.run's ``data_cache``): the next
#: seed or method of the same data, on the same worker, does not load it again
_DATA_CACHE: dict[str, Any] = {}


def execute(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Run one task (any process, any machine): ``runner.run`` of one seed, quiet, reusing
    the dataset the previous task of this process loaded when it is the same. Returns
    ``{"status": "ran"|"skipped"|"failed", "seconds", "error"}``; never raises for a failed
    run, so an executor gets the message as data."""
    from .plan import RunSpec
    from .progress import Progress
    from .runner import run

    started = time.perf_counter()
    # a joined cluster's workers get the driver's msabench/HF/MLflow variables here, before
    # anything reads them (cheaper than a runtime_env, which starts workers ~3 s slower)
    os.environ.update(payload.get("env") or {})
    try:
        spec = RunSpec(method=payload["method"], dataset=payload["dataset"],
                       seeds=[payload["seed"]], overrides=payload["overrides"],
                       epochs=payload.get("epochs"), out=Path(payload["out"]),
                       data_dir=Path(payload["data_dir"]) if payload.get("data_dir") else None,
                       tag=payload.get("tag"), quiet=True, force=bool(payload.get("force")),
                       threads=payload.get("threads"),
                       save_checkpoint=payload.get("save_checkpoint"),
                       trackers=payload.get("trackers", []))
        outcomes = run(spec, progress=Progress(quiet=True), data_cache=_DATA_CACHE)
        status = outcomes[0].status if outcomes else "skipped"
        return {"status": status, "seconds": time.perf_counter() - started, "error": ""}
    except BaseException as exc:  # noqa: BLE001 (reported as data, the grid goes on)
        from .runner import RunInterrupted

        # Ctrl-C or SIGTERM (the runner turns both into RunInterrupted) stops the grid, not
        # just this task: the next tasks must not start
        if isinstance(exc, (KeyboardInterrupt, RunInterrupted)):
            raise
        message = str(exc) if isinstance(exc, MsabenchError) else (
            f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}")
        return {"status": "failed", "seconds": time.perf_counter() - started, "error": message}


# ------------------------------------------------------------------ executors
Update = Callable[[], None]


def run_local(tasks: Sequence[Task], update: Update = lambda: None) -> None:
    try:
        for task in tasks:
            task.status = "running"
            update()
            _finish(task, execute(task.payload()))
            update()
    finally:
        _DATA_CACHE.clear()  # the grid is over: do not hold its data in this process


def _finish(task: Task, outcome: Mapping[str, Any]) -> None:
    task.seconds = float(outcome.get("seconds", 0.0))
    task.error = str(outcome.get("error", ""))
    task.status = "failed" if outcome.get("status") == "failed" else (
        "ran" if outcome.get("status") == "ran" else "done")


def _forwarded_env() -> dict[str, str]:
    keep = ("MSABENCH_", "HF_", "TRANSFORMERS_", "MLFLOW_", "OMP_NUM_THREADS")
    return {k: v for k, v in os.environ.items() if k.startswith(keep)}


def run_ray(tasks: Sequence[Task], address: str | None = None, workers: int | None = None,
            update: Update = lambda: None, poll: float = 0.5) -> None:
    """One Ray task per seed; results are written by the workers (see the module doc)."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'msabench[ray]'") from None
    started_here = False
    # every task carries the driver's msabench/HF/MLflow variables (execute sets them): the
    # workers of a joined cluster do not see this shell's environment, and this is cheaper
    # than a runtime_env (which made each job's workers start ~3 s later)
    env = _forwarded_env()
    if not ray.is_initialized():
        if address:
            try:
                ray.init(address=address, log_to_driver=False)
            except (ConnectionError, ray.exceptions.AuthenticationError) as exc:
                raise ConfigError(
                    f"--address {address}: could not join a Ray cluster there ({exc}). Check "
                    f"that it runs (`ray status --address {address}`) and that the address is "
                    "the head's GCS address, ray://host:10001 or auto. A cluster with token "
                    "authentication (Ray's default for a cluster that ray.init started) also "
                    "needs RAY_AUTH_MODE=token in this shell, with its token in "
                    "~/.ray/auth_token") from None
        else:
            # a cluster started here: its raylet and workers inherit this process's
            # environment, PYTHONPATH included
            ray.init(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False,
                     log_to_driver=False)
        started_here = True
    try:
        remote = ray.remote(max_retries=0)(execute)
        pending = {}
        for task in tasks:
            ref = remote.options(**task.resources).remote({**task.payload(), "env": env})
            pending[ref] = task
            task.status = "pending"
        update()
        running_since = time.time()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=poll)
            for ref in ready:
                task = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as exc:  # a killed worker, a lost node
                    outcome = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                               "seconds": time.time() - running_since}
                _finish(task, outcome)
            _mark_running(pending)
            update()
    finally:
        if started_here:
            ray.shutdown()


def _mark_running(pending: Mapping[Any, Task]) -> None:
    """Ray does not say which queued task started; a claimed seed (its lock file) is one."""
    for task in pending.values():
        if task.status == "pending" and Path(f"{task.path}.lock").exists():
            task.status = "running"


def counts(tasks: Sequence[Task]) -> dict[str, int]:
    out = {k: 0 for k in ("done", "ran", "running", "pending", "failed")}
    for task in tasks:
        out[task.status] = out.get(task.status, 0) + 1
    return out
