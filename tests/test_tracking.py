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


def test_epochs_reach_trackers_live_during_training(system, tmp_path, monkeypatch):
    """Each epoch's row is sent as the epoch ends, inside the supervised fit, not replayed
    after the seed; a pretraining stage's fits come live too, named <pretrainer>.<fit>."""
    from msabench import training
    from tests.all_hooks_plugin import ListTracker

    real = training.fit_method

    def fit_method(*args, **kwargs):
        ListTracker.EVENTS.append(("fit start",))
        try:
            return real(*args, **kwargs)
        finally:
            ListTracker.EVENTS.append(("fit end",))

    monkeypatch.setattr(training, "fit_method", fit_method)
    ListTracker.EVENTS.clear()
    run(RunSpec(method="sf", dataset="synthetic-mosi", seeds=[3], out=tmp_path, quiet=True,
                overrides=TINY, trackers=["toy-list"]),
        registry=system.registry, progress=Progress(quiet=True))
    events = [e[0] if e[0] != "epoch" else ("epoch", e[1], e[2]["epoch"])
              for e in ListTracker.EVENTS]
    assert events == ["start", "fit start", ("epoch", "train", 1), ("epoch", "train", 2),
                      "fit end", "finish"]
    # pretraining (dec's two fits) also live, and each row once
    ListTracker.EVENTS.clear()
    run(RunSpec(method="dec-semi", dataset="synthetic-mosi", seeds=[3], out=tmp_path,
                quiet=True, overrides=TINY, trackers=["toy-list"], epochs=1),
        registry=system.registry, progress=Progress(quiet=True))
    stages = [e[1] for e in ListTracker.EVENTS if e[0] == "epoch"]
    assert stages[-1] == "train" and stages.count("train") == 1
    pre = [s for s in stages if s != "train"]
    assert pre and all(s.startswith("dec.") for s in pre) and len(set(pre)) == len(pre)
    assert ListTracker.EVENTS.index(("fit start",)) > max(
        i for i, e in enumerate(ListTracker.EVENTS) if e[0] == "epoch" and e[1] != "train")


def test_stage_names_are_mlflow_keys():
    from msabench.training import stage_name

    assert stage_name(None, "epochs") == "train"
    assert stage_name("dec", "dec stage 1 (autoencoder)") == "dec.stage-1-autoencoder"
    assert stage_name("unimodal", "step 1 text") == "unimodal.step-1-text"
    assert stage_name("mce", "mce (contrastive)") == "mce.contrastive"


def test_mlflow_receives_each_epoch_while_the_seed_trains(tmp_path, monkeypatch):
    """The file-backed MLflow store holds epoch k's metrics (step=k) when epoch k ends, before
    the seed finishes: read back from the store inside the training loop."""
    pytest.importorskip("mlflow")
    import mlflow
    from msabench_builtins.trackers.mlflow import MLflowTracker

    store = tmp_path / "mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = mlflow.tracking.MlflowClient(tracking_uri=store.as_uri())
    from msabench import training

    seen, fitting = [], []
    real, real_fit = MLflowTracker.log_epoch, training.fit_method

    def fit_method(*args, **kwargs):
        fitting.append(True)
        try:
            return real_fit(*args, **kwargs)
        finally:
            fitting.clear()

    def probe(self, stage, row):
        real(self, stage, row)
        run_id = self.run.info.run_id
        steps = [h.step for h in client.get_metric_history(run_id, "train_loss")]
        r = client.get_run(run_id)
        seen.append((row["epoch"], bool(fitting), steps, r.info.status,
                     "test.mae" in r.data.metrics))

    monkeypatch.setattr(MLflowTracker, "log_epoch", probe)
    monkeypatch.setattr(training, "fit_method", fit_method)
    run(RunSpec(method="sf", dataset="synthetic-mosi", seeds=[4], out=tmp_path / "r",
                quiet=True, overrides=[*TINY[:-1], "train.epochs=3", "train.patience=0"],
                trackers=["mlflow"]),
        progress=Progress(quiet=True))
    assert seen == [(1, True, [1], "RUNNING", False), (2, True, [1, 2], "RUNNING", False),
                    (3, True, [1, 2, 3], "RUNNING", False)]


def test_histories_not_sent_live_are_replayed_once_when_the_seed_finishes():
    """A pretrainer with its own loop (no ``context.fit``) logs a history that never came
    live: ``finish`` sends it (and the supervised history) before the result, named by its
    path in the pretraining log; a stage that did come live is not sent twice."""
    from msabench.tracking import Trackers

    class Recorder:
        name = "recorder"

        def __init__(self):
            self.events = []

        def log_epoch(self, stage, row):
            self.events.append(("epoch", stage, row["epoch"]))

        def finish(self, result):
            self.events.append(("finish",))

    result = {"pretraining": {"ae": {"stage1": {"history": [{"epoch": 1}, {"epoch": 2}]},
                                     "note": "not a history"},
                              "mce": {"history": [{"epoch": 1}]}},
              "history": [{"epoch": 1}, {"epoch": 2}, {"epoch": 3}]}
    rec = Recorder()
    Trackers([rec]).finish(result)
    assert rec.events == [("epoch", "ae.stage1", 1), ("epoch", "ae.stage1", 2),
                          ("epoch", "mce", 1), ("epoch", "train", 1), ("epoch", "train", 2),
                          ("epoch", "train", 3), ("finish",)]
    # mce's and the supervised epochs came live: only ae's history is replayed
    rec = Recorder()
    trackers = Trackers([rec])
    trackers.log_epoch("mce.contrastive", {"epoch": 1})
    trackers.log_epoch("train", {"epoch": 1})
    rec.events.clear()
    trackers.finish(result)
    assert rec.events == [("epoch", "ae.stage1", 1), ("epoch", "ae.stage1", 2), ("finish",)]


class _Recorder:
    name = "recorder"

    def __init__(self):
        self.events = []

    def log_epoch(self, stage, row):
        self.events.append((stage, row["epoch"]))

    def finish(self, result):
        self.events.append(("finish",))


def _mixed_pretrainer(context, live_part2: bool) -> dict:
    """A pretrainer ("mix") that trains part 1 through ``context.fit`` and part 2 in its own
    loop, reporting part 2's epochs with ``context.log_epoch`` when ``live_part2``."""
    import torch
    from torch import nn

    from msabench.api import Recipe, SplitData

    torch.manual_seed(0)
    split = SplitData(ids=[str(i) for i in range(8)], features={"text": torch.randn(8, 1, 3)},
                      lengths={"text": torch.ones(8, dtype=torch.long)},
                      labels=torch.randn(8))
    net = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)

    def step(batch):
        loss = (net(batch.features["text"][:, 0]).squeeze(-1) - batch.label).pow(2).mean()
        return loss, {"loss": loss.detach()}

    part1 = context.fit(net, split, step=step, optimizer=optimizer,
                        recipe=Recipe(epochs=2, batch_size=4, select=None), name="part 1")
    part2 = []
    for epoch in (1, 2, 3):  # its own loop
        optimizer.zero_grad()
        loss, _ = step(split.batch(torch.arange(8)))
        loss.backward()
        optimizer.step()
        row = {"epoch": epoch, "loss": float(loss.detach())}
        part2.append(row)
        if live_part2:
            context.log_epoch("part 2", row)
    # part 1 is stored with renamed terms under its own path, as dec does
    return {"part1": {"history": [{"epoch": r["epoch"], "total": r["train_loss"]}
                                  for r in part1.history]},
            "part2": {"history": part2}}


@pytest.mark.parametrize("live_part2", [False, True])
def test_a_pretrainer_that_trains_partly_in_its_own_loop_loses_no_epoch(live_part2):
    """Part 1 (context.fit) comes live; part 2 (its own loop) comes live through
    ``context.log_epoch`` or, when it does not report, is replayed from the log when the seed
    finishes; no epoch is sent twice (the replay used to skip every history of a pretrainer
    that had sent anything live)."""
    import torch

    from msabench.progress import Progress as P
    from msabench.tracking import Trackers
    from msabench.training import LoopContext

    rec = _Recorder()
    trackers = Trackers([rec])
    context = LoopContext(device=torch.device("cpu"), seed=1, train={},
                          progress=P(quiet=True))
    context.on_epoch = trackers.log_epoch
    context.stage = "mix"
    log = _mixed_pretrainer(context, live_part2)
    context.stage = None
    trackers.log_epoch("train", {"epoch": 1})
    trackers.finish({"pretraining": {"mix": log}, "history": [{"epoch": 1}]})
    part2 = ("mix.part-2", "mix.part2")[not live_part2]
    assert rec.events == [("mix.part-1", 1), ("mix.part-1", 2), *(
        [(part2, e) for e in (1, 2, 3)] if live_part2 else []), ("train", 1),
        *([] if live_part2 else [(part2, e) for e in (1, 2, 3)]), ("finish",)]


def test_each_live_fit_accounts_for_one_logged_history_only():
    """Two logged histories with the same epochs, one fit live: the other is replayed."""
    from msabench.tracking import Trackers

    rec = _Recorder()
    trackers = Trackers([rec])
    trackers.log_epoch("ae.first", {"epoch": 1})
    trackers.log_epoch("ae.first", {"epoch": 2})
    trackers.log_epoch("train", {"epoch": 1})
    rec.events.clear()
    rows = [{"epoch": 1}, {"epoch": 2}]
    trackers.finish({"pretraining": {"ae": {"a": {"history": rows}, "b": {"history": rows},
                                            "c": {"history": rows[:1]}}},
                     "history": [{"epoch": 1}]})
    assert rec.events == [("ae.b", 1), ("ae.b", 2), ("ae.c", 1), ("finish",)]


def test_two_live_fits_with_one_name_account_for_two_histories():
    """A pretrainer that calls ``context.fit`` twice under the same name: the epoch numbers
    start again, so they are two live fits and neither logged history is replayed."""
    from msabench.tracking import Trackers

    rec = _Recorder()
    trackers = Trackers([rec])
    for epoch in (1, 2, 1, 2):
        trackers.log_epoch("ae.fit", {"epoch": epoch})
    rec.events.clear()
    rows = [{"epoch": 1}, {"epoch": 2}]
    trackers.finish({"pretraining": {"ae": {"a": {"history": rows}, "b": {"history": rows}}},
                     "history": []})
    assert rec.events == [("finish",)]
