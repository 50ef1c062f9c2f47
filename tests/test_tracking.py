"""Experiment trackers: the register_trackers hook and the built-in MLflow tracker."""

from __future__ import annotations

import pytest

from msabench.progress import Progress
from msabench.runner import RunSpec, run
from tests.conftest import TINY_SYNTH

TINY = [f"data.options.{k}={v}" for k, v in TINY_SYNTH.items()] + ["train.epochs=2"]


def test_a_plugin_tracker_receives_config_history_and_metrics(system, tmp_path):
    from tests.all_hooks_plugin import ListTracker

    ListTracker.EVENTS.clear()
    [o] = run(RunSpec(method="sf", dataset="synthetic-mosi", seeds=[3], out=tmp_path,
                      quiet=True, overrides=TINY, trackers=["toy-list"]),
              registry=system.registry, progress=Progress(quiet=True))
    kinds = [e[0] for e in ListTracker.EVENTS]
    assert kinds == ["start", "epoch", "epoch", "finish"]
    start = ListTracker.EVENTS[0][1]
    assert start["method"] == "sf" and start["seed"] == 3 and "train" in start["config"]
    assert ListTracker.EVENTS[1][1] == "train" and "train_loss" in ListTracker.EVENTS[1][2]
    assert ListTracker.EVENTS[-1][1]["metrics"]["test"] == o.test


def test_env_var_names_trackers_and_a_failure_is_reported(system, tmp_path, monkeypatch):
    from tests.all_hooks_plugin import ListTracker

    ListTracker.EVENTS.clear()
    monkeypatch.setenv("MSABENCH_TRACKERS", "toy-list")
    with pytest.raises(Exception, match="select"):
        run(RunSpec(method="sf", dataset="synthetic-mosi", seeds=[3], out=tmp_path,
                    quiet=True, overrides=TINY + ["train.select=nonsense"]),
            registry=system.registry, progress=Progress(quiet=True))
    assert [e[0] for e in ListTracker.EVENTS] == ["start", "fail"]


def test_mlflow_tracker_with_a_file_store(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    store = tmp_path / "mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3: file store opt-in
    [o] = run(RunSpec(method="sf", dataset="synthetic-mosi", seeds=[4], out=tmp_path / "r",
                      quiet=True, overrides=TINY, trackers=["mlflow"]),
              progress=Progress(quiet=True))
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri=store.as_uri())
    [exp] = [e for e in client.search_experiments() if e.name == "msabench"]
    [r] = client.search_runs([exp.experiment_id])
    assert r.data.tags["msabench.method"] == "sf" and r.data.tags["msabench.seed"] == "4"
    assert r.data.params["train.epochs"] == "2"
    assert r.data.metrics["test.mae"] == pytest.approx(o.test["mae"])
    history = client.get_metric_history(r.info.run_id, "train_loss")
    assert [h.step for h in history] == [1, 2]
    assert r.info.status == "FINISHED"
