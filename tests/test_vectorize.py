"""Several seeds in one pass (msabench.vectorized, ``msabench run --vectorize``).

Equality with solo runs is checked with dropout off (vmap cannot replay the solo run's dropout
stream): metrics within ``METRIC_TOL``, per-epoch validation losses within ``LOSS_TOL`` and the
same selected / last epochs (docs/vectorize.md states the tolerance).
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from torch import nn

from msabench.config import parse_overrides
from msabench.progress import Progress
from msabench.runner import RunSpec, run
from tests.conftest import TINY_SYNTH

METRIC_TOL = 1e-4
LOSS_TOL = 1e-4
#: the transformer's stacked forward rounds differently (no padding trim, batched attention)
#: and Adam's scale-free update amplifies that over epochs: measured up to ~2e-4 on Corr
TOL = {"transformer": 1e-3}

#: tiny, dropout-free settings of the five methods that declare vectorizable
NO_DROPOUT = {
    "sf": ["model.dropout=0.0", "model.hidden=16", "train.lr=3e-3"],
    "lmf": ["model.dropout={text=0.0,audio=0.0,vision=0.0}",
            "model.hidden={text=8,audio=4,vision=8}", "train.lr=1e-2", "train.batch_size=32"],
    "ef-lstm": ['data.setting="aligned"', "model.dropout=0.0", "model.hidden=8",
                "model.num_layers=2", "train.lr=1e-2"],
    "transformer": ["model.dropout=0.0", "model.head_dropout=0.0", "model.d_model=8",
                    "model.heads=2", "model.ffn=16", "model.layers=1", "model.head_dims=[8]",
                    "train.lr=1e-3", "train.batch_size=32"],
    "tfn": ["model.post_fusion_dropout=0.0", "model.dropout={text=0.0,audio=0.0,vision=0.0}",
            "model.hidden={text=8,audio=4,vision=4}", "model.text_out=4",
            "model.post_fusion_dim=8"],
}


class Notes(Progress):
    """A silent progress display that keeps what the run printed."""

    def __init__(self) -> None:
        super().__init__(quiet=True)
        self.lines: list[str] = []

    def print(self, message: str) -> None:
        self.lines.append(message)


def _run(out, method, seeds, sets, vectorize, progress=None):
    over = [f"data.options.{k}={v}" for k, v in TINY_SYNTH.items()] + list(sets)
    if vectorize:
        over.append("train.vectorize=true")
    spec = RunSpec(method=method, dataset="synthetic-mosi", seeds=seeds, out=out, quiet=True,
                   overrides=parse_overrides(over), threads=1)
    outcomes = run(spec, progress=progress or Progress(quiet=True))
    return {o.seed: json.loads(o.path.read_text()) for o in outcomes}


def _assert_same(solo: dict, vec: dict, tol: float = METRIC_TOL) -> None:
    assert solo["config_hash"] == vec["config_hash"]
    assert set(solo) | {"vectorized"} == set(vec)  # same record, plus how it was trained
    assert "vectorized" not in solo and vec["vectorized"]["seeds"]
    assert vec["best_epoch"] == solo["best_epoch"]
    assert vec["epochs_run"] == solo["epochs_run"]
    assert vec["stopped_early"] == solo["stopped_early"]
    assert len(vec["history"]) == len(solo["history"])
    for a, b in zip(solo["history"], vec["history"]):
        assert list(a) == list(b)
        assert b["valid_loss"] == pytest.approx(a["valid_loss"], abs=LOSS_TOL)
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=LOSS_TOL)
    for split in ("test", "valid"):
        for key, value in solo["metrics"][split].items():
            other = vec["metrics"][split][key]
            assert (value is None) == (other is None), key
            if value is not None:
                assert other == pytest.approx(value, abs=tol), (split, key)
    assert vec["test_loss"] == pytest.approx(solo["test_loss"], abs=LOSS_TOL)
    assert vec["prediction_summary"]["std"] == pytest.approx(
        solo["prediction_summary"]["std"], abs=tol)
    assert vec["parameters"] == solo["parameters"]


@pytest.mark.parametrize("method", sorted(NO_DROPOUT))
def test_each_seed_equals_its_solo_run(method, tmp_path):
    seeds = [11, 12]
    sets = NO_DROPOUT[method] + ["train.epochs=3"]
    solo = _run(tmp_path / "solo", method, seeds, sets, False)
    vec = _run(tmp_path / "vec", method, seeds, sets, True)
    for seed in seeds:
        _assert_same(solo[seed], vec[seed], TOL.get(method, METRIC_TOL))
    # the seeds are different models (own initialisation and shuffling), not one model twice
    a, b = (vec[s]["history"][-1]["valid_loss"] for s in seeds)
    assert a != b


def test_early_stopping_and_clipping_per_seed(tmp_path):
    """Seeds stop at different epochs (the stack shrinks and carries the optimiser state of the
    others; the last seed goes on alone with its own optimiser); clipping is per seed."""
    seeds = [1, 2, 3, 4]
    sets = ["model.dropout=0.0", "model.hidden=16", "train.lr=3e-3", "train.epochs=12",
            "train.patience=1", "train.grad_clip=0.5"]
    solo = _run(tmp_path / "solo", "sf", seeds, sets, False)
    vec = _run(tmp_path / "vec", "sf", seeds, sets, True)
    for seed in seeds:
        _assert_same(solo[seed], vec[seed])
    stops = sorted(vec[s]["epochs_run"] for s in seeds)
    # the test exercises a shrinking stack (measured: 9, 10, 10, 12) and a lone last seed
    assert len(set(stops)) > 2 and stops[0] < 12 and stops[-1] > stops[-2], stops


def test_each_seed_draws_its_own_solo_batches():
    from msabench.stacking import seed_batches
    from msabench.api import SplitData

    n = 10
    split = SplitData(ids=[f"s{i}" for i in range(n)], features={"text": torch.zeros(n, 1, 2)},
                      lengths={"text": torch.ones(n, dtype=torch.long)},
                      labels=torch.zeros(n))
    seeds = [1, 2, 3]
    steps = list(seed_batches([split] * 3, 4, [torch.Generator().manual_seed(s)
                                               for s in seeds]))
    assert [len(b) for b in steps[0]] == [4, 4, 4] and len(steps) == 3
    for k, seed in enumerate(seeds):
        solo = [b.ids for b in split.batches(4, shuffle=True,
                                             generator=torch.Generator().manual_seed(seed))]
        assert [step[k].ids for step in steps] == solo
    assert steps[0][0].ids != steps[0][1].ids != steps[0][2].ids


@pytest.mark.parametrize("layers", [1, 3])
def test_unrolled_lstm_equals_packed_lstm_and_runs_under_vmap(layers):
    from torch.func import functional_call, stack_module_state, vmap

    from msabench.vectorized import stacked_forward
    from msabench_builtins.nn import lstm_final_hidden, unrolled_lstm

    torch.manual_seed(0)
    lstms = [nn.LSTM(5, 7, num_layers=layers, batch_first=True) for _ in range(3)]
    x = torch.randn(3, 4, 6, 5)
    lengths = torch.tensor([[6, 3, 1, 4], [2, 6, 5, 1], [1, 1, 6, 6]])
    solo = torch.stack([lstm_final_hidden(m, x[k], lengths[k]) for k, m in enumerate(lstms)])
    for k, m in enumerate(lstms):
        assert torch.allclose(unrolled_lstm(m, x[k], lengths[k]), solo[k], atol=1e-6)
    # the stacked path: three LSTMs' weights stacked, each with its own batch
    params = {f"lstm.{k}": v for k, v in stack_module_state(lstms)[0].items()}
    wrap = _Wrap(lstms[0])
    with stacked_forward():
        stacked = vmap(lambda p, xs, ls: functional_call(wrap, p, (xs, ls)))(params, x, lengths)
    assert torch.allclose(stacked, solo, atol=1e-6)
    with pytest.raises(RuntimeError), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # vmap's "performance drop" fallbacks before the error
        # why the unrolled path exists: aten::lstm has no vmap rule
        vmap(lambda p, xs, ls: functional_call(wrap, p, (xs, ls)))(params, x, lengths)


class _Wrap(nn.Module):
    def __init__(self, lstm):
        super().__init__()
        self.lstm = lstm

    def forward(self, x, lengths):
        from msabench_builtins.nn import lstm_final_hidden

        return lstm_final_hidden(self.lstm, x, lengths)


def test_unsupported_method_falls_back_to_seed_by_seed(tmp_path, monkeypatch):
    from msabench.plugins import get_registry

    monkeypatch.setattr(get_registry().load("method", "sf"), "vectorizable", False)
    notes = Notes()
    res = _run(tmp_path, "sf", [1, 2], ["train.epochs=1"], True, notes)
    assert any("--vectorize: method sf does not declare vectorizable" in line
               and "seed by seed" in line for line in notes.lines), notes.lines
    assert all("vectorized" not in r for r in res.values())


def test_a_config_the_method_refuses_falls_back(tmp_path):
    notes = Notes()
    res = _run(tmp_path, "ef-lstm", [1, 2], ['data.setting="aligned"', 'model.norm="feature"',
                                             "model.hidden=4", "model.num_layers=1",
                                             "train.epochs=1"], True, notes)
    assert any("model.norm = 'feature'" in line for line in notes.lines), notes.lines
    assert all("vectorized" not in r for r in res.values())


def test_checkpoints_from_the_config_key_fall_back_to_seed_by_seed(tmp_path):
    notes = Notes()
    res = _run(tmp_path, "sf", [1, 2], ["train.epochs=1", "train.save_checkpoint=true"], True,
               notes)
    assert any("--vectorize: checkpoints" in line for line in notes.lines), notes.lines
    assert all("vectorized" not in r for r in res.values())
    assert len(list(tmp_path.rglob("seed-*.safetensors"))) == 2


@pytest.mark.parametrize("setting, says", [
    ('train.precision="bf16"', "fp32 only"),
    ("train.bucket_by_length=true", "bucket_by_length"),
])
def test_bf16_and_bucketing_fall_back_to_seed_by_seed(setting, says, tmp_path):
    notes = Notes()
    res = _run(tmp_path, "sf", [1, 2], ["train.epochs=1", setting], True, notes)
    assert any("--vectorize:" in line and says in line for line in notes.lines), notes.lines
    assert all("vectorized" not in r for r in res.values())


def test_trackers_named_in_the_environment_fall_back_to_seed_by_seed(system, tmp_path,
                                                                   monkeypatch):
    """$MSABENCH_TRACKERS names trackers as --tracker does: the stacked loop sends no epochs
    to trackers, so those runs go seed by seed and every epoch reaches the tracker."""
    from tests.all_hooks_plugin import ListTracker

    ListTracker.EVENTS.clear()
    monkeypatch.setenv("MSABENCH_TRACKERS", "toy-list")
    notes = Notes()
    res = _run(tmp_path, "sf", [1, 2], ["train.epochs=2", "train.patience=0"], True, notes)
    assert any("--vectorize: trackers" in line for line in notes.lines), notes.lines
    assert all("vectorized" not in r for r in res.values())
    assert [e[0] for e in ListTracker.EVENTS].count("epoch") == 4  # 2 seeds x 2 epochs


def test_resume_skips_finished_seeds_and_the_hash_ignores_vectorize(tmp_path):
    sets = ["model.dropout=0.0", "train.epochs=1"]
    first = _run(tmp_path, "sf", [1, 2], sets, True)
    notes = Notes()
    over = [f"data.options.{k}={v}" for k, v in TINY_SYNTH.items()] + sets
    outcomes = run(RunSpec(method="sf", dataset="synthetic-mosi", seeds=[1, 2, 3],
                           out=tmp_path, quiet=True, overrides=parse_overrides(over),
                           threads=1), progress=notes)  # solo now: same variant folder
    assert [o.status for o in outcomes] == ["skipped", "skipped", "ran"]
    third = json.loads(outcomes[2].path.read_text())
    assert third["config_hash"] == first[1]["config_hash"] and "vectorized" not in third
    assert first[1]["config"]["train"]["vectorize"] is True
    assert first[1]["vectorized"]["seeds"] == [1, 2]


def test_cli_vectorize_flag(tmp_path):
    from typer.testing import CliRunner

    from msabench.cli import make_app

    sets = [a for k, v in TINY_SYNTH.items() for a in ("--set", f"data.options.{k}={v}")]
    result = CliRunner().invoke(make_app(), ["run", "-m", "lmf", "-d", "synthetic-mosi", "--seeds",
                                      "5,6", "--vectorize", "--epochs", "1", "--quiet",
                                      "--out", str(tmp_path), *sets])
    assert result.exit_code == 0, result.output
    files = sorted(tmp_path.rglob("seed-*.json"))
    assert len(files) == 2
    for f in files:
        assert json.loads(f.read_text())["vectorized"]["seeds"] == [5, 6]
