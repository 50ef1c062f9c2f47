"""Traps a researcher falls into (issue 15): stale results, --epochs vs pretraining, threads."""

from __future__ import annotations

import io

import pytest
import torch

from msabench.errors import MsabenchError
from msabench.plugins import get_registry
from msabench.results import read_result
from msabench.runner import Progress, RunSpec, prepare, run
from tests import all_hooks_plugin

QUIET = Progress(quiet=True)


class FileToyData(all_hooks_plugin.ToyData):
    """The toy data, 'read' from ``<data_dir>/toy.bin`` (its bytes only scale the labels)."""

    name = "file-toy"
    meta = all_hooks_plugin.ToyData.meta.__class__(
        **{**all_hooks_plugin.ToyData.meta.as_dict(), "name": "file-toy",
           "label_range": (-3.0, 3.0), "split_sizes": (192, 64, 64),
           "modalities": ("text", "audio")})

    def input_files(self):
        return [self.data_dir / "toy.bin"]

    def load(self):
        data = super().load()
        scale = 1.0 if (self.data_dir / "toy.bin").read_bytes()[:1] == b"a" else 0.5
        for split in data.splits.values():
            split.labels.mul_(scale)
        return data


@pytest.fixture
def system(system):
    """The conftest system plus a dataset read from a file."""
    system.registry.add("dataset", FileToyData, plugin="test")
    return system


def test_a_result_from_other_data_is_not_served_as_new(system, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "toy.bin").write_bytes(b"a" * 100)
    spec = dict(method="toy-linear", dataset="file-toy", out=tmp_path / "res", quiet=True,
                data_dir=data_dir, overrides={"train": {"epochs": 2}})
    [first] = run(RunSpec(**spec), registry=system.registry, progress=QUIET)
    stored = read_result(first.path)
    [(path, entry)] = stored.data_files.items()
    assert path.endswith("toy.bin") and entry["size"] == 100 and len(entry["sha256"]) == 64
    # same data: skipped
    [again] = run(RunSpec(**spec), registry=system.registry, progress=QUIET)
    assert again.status == "skipped"
    # other bytes in the same file: refused, naming the file and both ways out
    (data_dir / "toy.bin").write_bytes(b"b" * 120)
    with pytest.raises(MsabenchError, match=r"different data: .*toy.bin \(100 bytes\).*"
                                            r"toy.bin \(120 bytes\).*--tag NAME.*--force"):
        run(RunSpec(**spec), registry=system.registry, progress=QUIET)
    [forced] = run(RunSpec(**spec, force=True), registry=system.registry, progress=QUIET)
    assert forced.status == "ran" and forced.test != first.test


def test_epochs_caps_pretraining_stages_too():
    plan = prepare(RunSpec(method="dec-semi", dataset="synthetic-mosi", epochs=2,
                           overrides={"pretrain": {"dec": {"stage2_epochs": 1}}}),
                   get_registry())
    dec = plan.config["pretrain"]["dec"]
    assert plan.config["train"]["epochs"] == 2
    assert dec["stage1_epochs"] == 2 and dec["stage2_epochs"] == 1  # never raised
    assert plan.capped == ["train.epochs=2", "pretrain.dec.stage1_epochs=2",
                           "pretrain.dec.stage2_epochs=1"]


def test_smoke_runs_every_stage_once_on_a_few_samples_outside_the_leaderboards(
        system, tmp_path, monkeypatch):
    from rich.console import Console

    monkeypatch.chdir(tmp_path)
    buffer = io.StringIO()
    progress = Progress(console=Console(file=buffer, width=200, force_terminal=False))
    spec = dict(method="toy-multihead", dataset="toy-data", smoke=True)
    [outcome] = run(RunSpec(**spec), registry=system.registry, progress=progress)
    assert outcome.path.resolve().is_relative_to(tmp_path / ".msabench-smoke" / "results")
    res = read_result(outcome.path)
    assert res.split_sizes == {"train": 64, "valid": 64, "test": 64}
    assert res.epochs_run == 1 and len(res.pretraining["toy-warmup"]["history"]) == 1
    text = buffer.getvalue()
    assert "--smoke sets train.epochs=1, pretrain.toy-warmup.epochs=1, data.max_samples=64" in text
    # a second smoke run trains again (never "result exists, skipped")
    [again] = run(RunSpec(**spec), registry=system.registry, progress=QUIET)
    assert again.status == "ran"


def test_threads_are_set_and_recorded(tmp_path):
    before = torch.get_num_threads()
    try:
        [outcome] = run(RunSpec(method="sf", dataset="synthetic-mosi", out=tmp_path, quiet=True,
                                threads=1, overrides={"train": {"epochs": 1},
                                                      "data": {"max_samples": 40}}),
                        progress=QUIET)
        assert read_result(outcome.path).provenance["torch_threads"] == 1
    finally:
        torch.set_num_threads(before)


def test_bad_epochs_and_threads_are_refused_before_any_work():
    from msabench.errors import ConfigError

    with pytest.raises(ConfigError, match="--epochs 0"):
        RunSpec(method="sf", dataset="synthetic-mosi", epochs=0)
    with pytest.raises(ConfigError, match="--threads 0"):
        RunSpec(method="sf", dataset="synthetic-mosi", threads=0)
