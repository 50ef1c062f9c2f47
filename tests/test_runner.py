"""The runner end to end on the toy dataset: results, reproducibility, skipping, interrupts."""

import json

import pytest
import torch

import msabench.runner as runner_mod
from msabench.errors import ConfigError, DataError, MsabenchError
from msabench.results import SCHEMA_VERSION
from msabench.runner import Progress, RunInterrupted, RunSpec, run

QUIET = Progress(quiet=True)


def _spec(tmp_path, **kw):
    base = dict(method="sf", dataset="toy-data", out=tmp_path / "results", quiet=True)
    base.update(kw)
    return RunSpec(**base)


def test_result_file_is_self_describing(registry, tmp_path):
    [o] = run(_spec(tmp_path, epochs=4), registry=registry, progress=QUIET)
    res = json.loads(o.path.read_text())
    assert o.path.parent.name.startswith("sf@cfg-")  # --epochs changes the config -> a variant
    for key in ("schema_version", "msabench_version", "git_commit", "config", "metrics",
                "split_sizes", "parameters", "wall_time_s", "device", "config_hash", "created",
                "history", "best_epoch", "torch_version", "synthetic"):
        assert key in res, key
    assert res["schema_version"] == SCHEMA_VERSION
    assert res["split_sizes"] == {"train": 192, "valid": 64, "test": 64}
    assert res["config"]["train"]["epochs"] == 4 and res["epochs_run"] <= 4
    assert res["parameters"]["trainable"] > 0
    assert res["device"] == "cpu" and res["synthetic"] is True
    assert set(res["metrics"]["test"]) >= {"mae", "corr", "acc2_has0", "acc7", "mse"}
    assert len(res["history"]) == res["epochs_run"]


def test_same_seed_same_metrics_other_seed_differs(registry, tmp_path):
    a = run(_spec(tmp_path, seeds=[5], out=tmp_path / "a"), registry=registry, progress=QUIET)
    b = run(_spec(tmp_path, seeds=[5], out=tmp_path / "b"), registry=registry, progress=QUIET)
    c = run(_spec(tmp_path, seeds=[6], out=tmp_path / "c"), registry=registry, progress=QUIET)
    assert a[0].test == b[0].test
    assert a[0].test != c[0].test


@pytest.mark.parametrize("kind,extra", [("Adam", {}), ("AdamW", {"eps": 1e-6})])
def test_the_multi_tensor_adam_update_is_the_single_tensor_one_bit_for_bit(kind, extra):
    """The built-in optimisers pass ``foreach=True`` (faster on CPU, where torch defaults to
    one tensor at a time); results made with the single-tensor update stay reproducible
    because both give the same bits: weight decay and two parameter groups included."""
    g = torch.Generator().manual_seed(0)
    shapes = [(40, 40), (40,), (3, 40, 5), (1,)]
    weights = [torch.randn(s, generator=g) for s in shapes]
    grads = [[torch.randn(s, generator=g) for s in shapes] for _ in range(6)]

    def trained(foreach):
        params = [torch.nn.Parameter(w.clone()) for w in weights]
        opt = getattr(torch.optim, kind)([{"params": params[:2], "weight_decay": 0.01},
                                          {"params": params[2:], "lr": 3e-3}],
                                         lr=1e-3, foreach=foreach, **extra)
        for step in grads:
            for p, grad in zip(params, step):
                p.grad = grad.clone()
            opt.step()
        return params

    single, multi = trained(False), trained(True)
    for a, b, w in zip(single, multi, weights):
        assert torch.equal(a, b) and not torch.equal(a, w)


def test_a_run_with_the_multi_tensor_update_equals_one_with_the_single_tensor_update(
        registry, tmp_path, monkeypatch):
    from msabench.api.method import Method

    real = Method.configure_optimizer
    used = []

    def configured(self, train, foreach=None):
        opt = real(self, train)
        if foreach is not None:
            for group in opt.param_groups:
                group["foreach"] = foreach
        used.append(opt.param_groups[0]["foreach"])
        return opt

    monkeypatch.setattr(Method, "configure_optimizer", configured)
    [multi] = run(_spec(tmp_path, seeds=[5], out=tmp_path / "a", epochs=3), registry=registry,
                  progress=QUIET)
    monkeypatch.setattr(Method, "configure_optimizer",
                        lambda self, train: configured(self, train, foreach=False))
    [single] = run(_spec(tmp_path, seeds=[5], out=tmp_path / "b", epochs=3), registry=registry,
                   progress=QUIET)
    assert used == [True, False]
    assert multi.test == single.test


def test_training_learns_and_beats_trivial_baselines(registry, tmp_path):
    [o] = run(_spec(tmp_path), registry=registry, progress=QUIET)
    res = json.loads(o.path.read_text())
    hist = res["history"]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"] * 0.8
    # predicting the train mean on this data gives MAE ~1.5; a learned model is far better
    data = registry.load("dataset", "toy-data")().load()
    mean_mae = float((data["test"].labels - data["train"].labels.mean()).abs().mean())
    assert o.test["mae"] < 0.6 * mean_mae
    assert o.test["corr"] > 0.8


def test_existing_results_are_skipped_then_forced(registry, tmp_path):
    spec = _spec(tmp_path, seeds=[1, 2])
    first = run(spec, registry=registry, progress=QUIET)
    assert [o.status for o in first] == ["ran", "ran"]
    mtime = first[0].path.stat().st_mtime_ns
    again = run(spec, registry=registry, progress=QUIET)
    assert [o.status for o in again] == ["skipped", "skipped"]
    assert again[0].test == first[0].test and first[0].path.stat().st_mtime_ns == mtime
    spec.force = True
    forced = run(spec, registry=registry, progress=QUIET)
    assert [o.status for o in forced] == ["ran", "ran"]


def test_changed_defaults_with_same_variant_refuse_to_overwrite(registry, tmp_path):
    [o] = run(_spec(tmp_path, tag="mine"), registry=registry, progress=QUIET)
    spec = _spec(tmp_path, tag="mine", overrides=["train.lr=0.5"])
    with pytest.raises(MsabenchError, match="different config"):
        run(spec, registry=registry, progress=QUIET)
    assert o.path.exists()


def test_interrupt_keeps_finished_seeds(registry, tmp_path, monkeypatch):
    real = runner_mod.run_seed
    calls = []

    def flaky(plan, spec, data, seed, registry, progress):
        calls.append(seed)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(plan, spec, data, seed, registry, progress)

    monkeypatch.setattr(runner_mod, "run_seed", flaky)
    spec = _spec(tmp_path, seeds=[1, 2, 3])
    with pytest.raises(RunInterrupted) as err:
        run(spec, registry=registry, progress=QUIET)
    assert [o.seed for o in err.value.outcomes] == [1]
    assert "seed 1 finished and kept" in str(err.value)
    files = sorted(p.name for p in (tmp_path / "results").rglob("seed-*.json"))
    assert files == ["seed-1.json"]
    assert not list((tmp_path / "results").rglob(".tmp-*"))
    monkeypatch.setattr(runner_mod, "run_seed", real)
    rerun = run(spec, registry=registry, progress=QUIET)
    assert [o.status for o in rerun] == ["skipped", "ran", "ran"]


def test_dataset_loaded_once_for_all_seeds(registry, tmp_path, monkeypatch):
    cls = registry.load("dataset", "toy-data")
    loads = []
    original = cls.load
    monkeypatch.setattr(cls, "load", lambda self: loads.append(1) or original(self))
    run(_spec(tmp_path, seeds=[1, 2, 3], epochs=1), registry=registry, progress=QUIET)
    assert len(loads) == 1


def test_modality_ablation(registry, tmp_path):
    [o] = run(_spec(tmp_path, overrides=['data.modalities=["text"]']), registry=registry,
              progress=QUIET)
    res = json.loads(o.path.read_text())
    assert res["variant"] == "m-t" and res["config"]["data"]["modalities"] == ["text"]
    with pytest.raises(DataError, match="no modality 'vision'"):
        run(_spec(tmp_path, overrides=['data.modalities=["vision"]']), registry=registry,
            progress=QUIET)


def test_bad_selection_metric_and_unknown_names(registry, tmp_path):
    with pytest.raises(ConfigError, match="train.select='acc9'"):
        run(_spec(tmp_path, overrides=["train.select=acc9"]), registry=registry, progress=QUIET)
    with pytest.raises(MsabenchError, match="Did you mean 'toy-data'"):
        run(_spec(tmp_path, dataset="toy-dta"), registry=registry, progress=QUIET)


def test_select_on_metric_direction(registry, tmp_path):
    [o] = run(_spec(tmp_path, overrides=["train.select=corr", "train.epochs=6"]),
              registry=registry, progress=QUIET)
    res = json.loads(o.path.read_text())
    best = max(h["valid_corr"] for h in res["history"])
    assert res["selection"]["best_valid"] == pytest.approx(best)
    assert res["metrics"]["valid"]["corr"] == pytest.approx(best)


def test_setting_is_not_a_variant(tmp_path):
    from msabench.plugins import get_registry

    spec = RunSpec(method="sf", dataset="synthetic-mosi", out=tmp_path, quiet=True,
                   overrides=['data.setting="aligned"'])
    plan = runner_mod.prepare(spec, get_registry())
    assert plan.setting == "aligned" and plan.variant == "default"


def test_results_written_into_the_checkout_do_not_make_its_code_dirty(tmp_path):
    """git_dirty is about code: a changed committed result (a second run in one checkout
    rewrites leaderboards/results) leaves it False; a changed source file sets it."""
    import shutil
    import subprocess

    from msabench.results import git_state

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "leaderboards" / "results").mkdir(parents=True)
    (repo / "pkg" / "code.py").write_text("x = 1\n")
    (repo / "leaderboards" / "results" / "seed-1.json").write_text("{}\n")

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo,
                       check=True, capture_output=True)

    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "init")
    state = git_state.__wrapped__   # uncached
    commit, dirty = state(repo / "pkg")
    assert len(commit) == 40 and dirty is False
    (repo / "leaderboards" / "results" / "seed-1.json").write_text('{"new": 1}\n')
    assert state(repo / "pkg") == (commit, False)
    (repo / "pkg" / "code.py").write_text("x = 2\n")
    assert state(repo / "pkg") == (commit, True)
