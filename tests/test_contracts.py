"""The core contracts: api independence, the shared loop, heads, frozen parts, result records."""

from __future__ import annotations

import ast
import io
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from msabench.api import Recipe, Schedule, SilentProgress
from msabench.results import SCHEMA_VERSION, RunResult, read_result, write_result
from msabench.runner import Progress, RunSpec, run
from msabench.training import LoopContext, fit, fit_method

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"msabench.runner", "msabench.training", "msabench.plan", "msabench.progress"}


def _imports(path: Path) -> list[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ["msabench", "api"]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append(name)
            out += [f"{name}.{a.name}" for a in node.names]
    return out


def test_api_imports_nothing_from_the_runner_or_the_loop():
    files = sorted((ROOT / "msabench" / "api").glob("*.py"))
    assert len(files) >= 8
    bad = {f.name: sorted(n for n in _imports(f) if any(n == m or n.startswith(m + ".")
                                                         for m in FORBIDDEN))
           for f in files}
    assert {k: v for k, v in bad.items() if v} == {}


def test_the_import_check_catches_a_relative_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from ..runner import RunContext\nfrom .. import training\n")
    names = _imports(probe)
    assert "msabench.runner" in names and "msabench.training" in names


# ------------------------------------------------------------------ toy plugin system
def _toy(system):
    data = system.registry.load("dataset", "toy-data")().load()
    data.validate()
    return data


def _context(metrics=(), seed=5, **train):
    cfg = {"epochs": 6, "batch_size": 32, "lr": 0.02, "weight_decay": 0.0, "patience": 0,
           "grad_clip": 0.0, "select": "loss", "eval_batch_size": 64, **train}
    return LoopContext(device=torch.device("cpu"), seed=seed, train=cfg,
                       metric_classes=list(metrics))


def _metrics(system):
    from msabench.runner import metric_classes

    return metric_classes(system.registry, "mosi")


def test_frozen_part_with_dropout_stays_in_eval_mode_and_unchanged(system):
    from msabench.api import Components

    data = _toy(system)
    method_cls = system.registry.load("method", "toy-multihead")
    torch.manual_seed(0)
    model = method_cls(data.info(), {"hidden": 8}, Components(system.registry))
    context = _context(_metrics(system))
    warm = system.registry.load("pretrainer", "toy-warmup")()
    before_warmup = [p.detach().clone() for p in model.evaluator.parameters()]
    log = warm.fit(model, data, context)
    assert len(log["history"]) == 4 and "train_mse" in log["history"][0]
    assert "valid_loss" in log["history"][0] and log["best_epoch"] >= 1
    after_warmup = [p.detach().clone() for p in model.evaluator.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(before_warmup, after_warmup))  # trained
    total = model.num_parameters(False)
    frozen = sum(p.numel() for p in model.evaluator.parameters())
    assert model.num_parameters(True) == total - frozen
    encoder_before = model.encoders["text"].weight.detach().clone()
    fitted = fit_method(model, data["train"], data["valid"], context)
    assert fitted.epochs_run == 6
    # every training forward saw the evaluator in eval mode (its dropout off) ...
    assert model.evaluator_modes and not any(model.evaluator_modes)
    # ... and its weights are exactly those of the pretraining stage
    for a, b in zip(after_warmup, model.evaluator.parameters()):
        assert torch.equal(a, b)
    assert not torch.equal(encoder_before, model.encoders["text"].weight)  # the rest trained
    # per-term losses of the step are in the history
    assert {"train_loss", "train_loss_label", "train_loss_text", "train_loss_audio"} <= set(
        fitted.history[0])


def test_without_frozen_the_loop_would_train_the_part_in_train_mode(system):
    """The guard above is not vacuous: a method that declares nothing frozen trains it."""
    from msabench.api import Components

    data = _toy(system)
    method_cls = system.registry.load("method", "toy-multihead")
    model = method_cls(data.info(), {"hidden": 8}, Components(system.registry))
    model.frozen = lambda: []
    before = [p.detach().clone() for p in model.evaluator.parameters()]
    fit_method(model, data["train"], data["valid"], _context(_metrics(system), epochs=2))
    assert all(model.evaluator_modes)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.evaluator.parameters()))


def test_every_head_is_scored_selected_on_and_stored(system, tmp_path):
    spec = RunSpec(method="toy-multihead", dataset="toy-data", out=tmp_path, quiet=True,
                   overrides={"train": {"select": "pred_text.mae", "epochs": 4}})
    [outcome] = run(spec, registry=system.registry, progress=Progress(quiet=True))
    res = read_result(outcome.path)
    assert res.schema_version == SCHEMA_VERSION
    assert set(res.heads) == {"pred_text", "pred_audio"}
    text = res.heads["pred_text"]
    assert text["target"] == "text" and set(text["test"]) >= {"mae", "corr", "acc7"}
    assert res.head_metrics("pred_text", "valid")["mae"] == pytest.approx(
        min(row["valid_pred_text.mae"] for row in res.history))
    assert res.selection["criterion"] == "pred_text.mae"
    assert res.history[res.best_epoch - 1]["valid_pred_text.mae"] == res.selection["best_valid"]
    # the text head, trained on the text label, fits it better than the multimodal label
    assert text["test"]["corr"] > 0.5
    # parameter counts are taken after every stage and leave the frozen evaluator out
    assert res.parameters["trainable"] < res.parameters["total"]
    assert "toy-warmup" in res.pretraining


def test_select_on_an_unknown_head_names_the_heads(system, tmp_path):
    from msabench.errors import ConfigError

    spec = RunSpec(method="toy-multihead", dataset="toy-data", out=tmp_path, quiet=True,
                   overrides={"train": {"select": "pred_vision.mae"}})
    with pytest.raises(ConfigError, match="no head 'pred_vision'.*pred_text"):
        run(spec, registry=system.registry, progress=Progress(quiet=True))


def test_heads_follow_the_unimodal_labels_the_data_has(system, tmp_path):
    """The same method on data without unimodal labels declares (and so scores) only ``pred``."""
    data = _toy(system)
    for split in data.splits.values():
        split.unimodal.clear()
    from msabench.api import Components

    model = system.registry.load("method", "toy-multihead")(
        data.info(), {"hidden": 8}, Components(system.registry))
    assert model.heads == {"pred": "label"}


def test_leaderboard_shows_pred_by_default_and_a_head_on_request(system, tmp_path):
    from msabench.leaderboard import generate

    spec = RunSpec(method="toy-multihead", dataset="toy-data", out=tmp_path, quiet=True,
                   seeds=[1, 2], overrides={"train": {"epochs": 2}})
    outcomes = run(spec, registry=system.registry, progress=Progress(quiet=True))
    default = generate(tmp_path)["toy-data.md"]
    text = generate(tmp_path, head="pred_text")["toy-data.md"]
    head_mae = sum(read_result(o.path).heads["pred_text"]["test"]["mae"] for o in outcomes) / 2
    pred_mae = sum(o.test["mae"] for o in outcomes) / 2
    assert abs(head_mae - pred_mae) > 1e-3  # the two tables must differ to tell them apart
    assert f"{pred_mae:.3f} ±" in default and f"{head_mae:.3f} ±" not in default
    assert f"{head_mae:.3f} ±" in text and f"{pred_mae:.3f} ±" not in text


# ------------------------------------------------------------------ the loop itself
class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Linear(2, 1)


def _split(n=40, seed=0):
    from msabench.api import SplitData

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 2, generator=g)
    y = (x[:, 0] @ torch.tensor([1.0, -2.0])).float()
    return SplitData(ids=[str(i) for i in range(n)], features={"text": x},
                     lengths={"text": torch.ones(n, dtype=torch.long)}, labels=y)


def test_schedules_step_when_declared():
    module, data = _Tiny(), _split()

    def step(batch):
        loss = ((module.w(batch.features["text"][:, 0]).squeeze(-1) - batch.label) ** 2).mean()
        return loss, {}

    for interval, expected in (("step", 0.5 ** 6), ("epoch", 0.5 ** 3)):  # 2 batches x 3 epochs
        opt = torch.optim.SGD(module.parameters(), lr=1.0)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        fit(module, data, step=step, optimizer=opt, recipe=Recipe(3, 20, select=None),
            device=torch.device("cpu"), seed=0, schedule=Schedule(sched, interval))
        assert opt.param_groups[0]["lr"] == pytest.approx(expected)


def test_a_monitored_schedule_needs_its_key():
    from msabench.errors import ConfigError

    module, data = _Tiny(), _split()
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt)

    def step(batch):
        return module.w(batch.features["text"][:, 0]).pow(2).mean(), {}

    with pytest.raises(ConfigError, match="monitors 'valid_loss'"):
        fit(module, data, step=step, optimizer=opt, recipe=Recipe(1, 20, select=None),
            device=torch.device("cpu"), seed=0,
            schedule=Schedule(plateau, "epoch", monitor="valid_loss"))


def test_loop_selects_the_best_epoch_and_stops_early():
    module, data = _Tiny(), _split()
    scores = iter([3.0, 1.0, 2.0, 2.5, 4.0, 0.5])
    seen = []

    def step(batch):
        return module.w.weight.sum() * 0.0, {}

    def score():
        value = next(scores)
        seen.append(value)
        return {"loss": value}

    opt = torch.optim.SGD(module.parameters(), lr=0.0)
    res = fit(module, data, data, step=step, optimizer=opt,
              recipe=Recipe(6, 20, patience=2, select="loss"), device=torch.device("cpu"),
              seed=0, score=score)
    assert seen == [3.0, 1.0, 2.0, 2.5] and res.best_epoch == 2 and res.stopped_early
    assert res.history[-1]["best"] == 1.0


def test_non_finite_loss_stops_with_a_clear_message():
    module, data = _Tiny(), _split()

    def step(batch):
        return module.w.weight.sum() * float("nan"), {}

    with pytest.raises(FloatingPointError, match="toy stage: training loss became nan"):
        fit(module, data, step=step, optimizer=torch.optim.SGD(module.parameters(), lr=0.1),
            recipe=Recipe(1, 20, select=None), device=torch.device("cpu"), seed=0,
            name="toy stage")


# ------------------------------------------------------------------ result records
def test_version_1_result_files_read_and_round_trip():
    # a schema-1 file as msabench wrote it (MOSI utt-bclstm sf seed 1111, commit 6022699),
    # frozen here: the committed leaderboard files are re-run and rewritten at newer versions
    path = ROOT / "tests" / "fixtures" / "result-v1-sf-seed-1111.json"
    raw = json.loads(path.read_text())
    assert raw["schema_version"] == 1
    res = read_result(path)
    assert isinstance(res, RunResult) and res.heads == {} and res.seed == 1111
    assert res.test == raw["metrics"]["test"] and res.provenance["git_commit"] == raw["git_commit"]
    assert res.to_dict() == raw  # nothing lost, nothing added


def test_result_record_writes_what_it_reads(tmp_path):
    res = RunResult(method="m", dataset="d", setting="s", variant="default", seed=1,
                    config={"train": {}}, config_hash="abc", metrics={"test": {"mae": 0.5}},
                    metric_info={"mae": {}}, heads={"pred_text": {"target": "text",
                                                                  "test": {"mae": 0.7}}},
                    provenance={"git_commit": "x"}, extra={"future_key": [1, 2]})
    path = write_result(tmp_path / "seed-1.json", res)
    back = read_result(path)
    assert back == res and json.loads(path.read_text())["future_key"] == [1, 2]
    assert back.head_metrics("pred_text") == {"mae": 0.7}


# ------------------------------------------------------------------ progress in logs
def test_progress_prints_plain_lines_when_not_on_a_terminal():
    from rich.console import Console

    buffer = io.StringIO()
    progress = Progress(console=Console(file=buffer, width=120, force_terminal=False))
    task = progress.task("  seed 1 epochs", 3)
    task.advance(1, status="valid loss 0.5")
    task.done("best loss 0.5 @ epoch 1")
    lines = buffer.getvalue().splitlines()
    assert lines == ["seed 1 epochs 1/3: valid loss 0.5", "seed 1 epochs done: best loss 0.5 @ epoch 1"]


def test_silent_progress_satisfies_the_protocol():
    task = SilentProgress().task("x", 2)
    task.advance(1, status="s")
    task.done()


def test_the_runner_says_which_heads_it_cannot_score(system, tmp_path):
    """A method declaring a unimodal head on data without those labels: a printed note."""
    from rich.console import Console

    from msabench.api import Method

    class NeedsVision(system.registry.load("method", "toy-linear")):
        name = "needs-vision"

        def __init__(self, info, config, components):
            super().__init__(info, config, components)
            self.heads = {"pred": "label", "pred_vision": "vision"}

    system.registry.add("method", NeedsVision, plugin="test")
    buffer = io.StringIO()
    progress = Progress(console=Console(file=buffer, width=200, force_terminal=False))
    [outcome] = run(RunSpec(method="needs-vision", dataset="toy-data", out=tmp_path,
                            overrides={"train": {"epochs": 1}}),
                    registry=system.registry, progress=progress)
    assert "has no unimodal labels for head(s) pred_vision; they are not scored" in (
        buffer.getvalue())
    assert read_result(outcome.path).heads == {}
    assert issubclass(NeedsVision, Method)
