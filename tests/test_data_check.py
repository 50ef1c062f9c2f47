"""``msabench data check``: the runner's loading path, summarised without training."""

import json

import pytest
from typer.testing import CliRunner

from msabench import hookimpl
from msabench.api import Dataset, DatasetMeta, LoadedDataset
from msabench.cli import make_app
from msabench.errors import DataError
from msabench.plugins import PluginSystem, set_plugin_system
from tests.conftest import TINY_SYNTH


def _tiny():
    return [x for k, v in TINY_SYNTH.items() for x in ("--set", f"data.options.{k}={v}")]


def _check(*args, app=None):
    return CliRunner().invoke(app or make_app(), ["data", "check", *args])


def test_check_prints_tables_histogram_and_problems():
    result = _check("synthetic-mosi", *_tiny())
    assert result.exit_code == 0, result.output
    out = result.output
    for text in ("synthetic-mosi", "SYNTHETIC", "train: 160 samples, 160 labelled",
                 "valid: 48 samples", "test: 64 samples", "(8, 24)", "(12, 5)", "(10, 20)",
                 "label histogram", "[+2.14, +3.00]", "█", "differ from the standard"):
        assert text in out, text


def test_check_json_summary_is_consistent():
    result = _check("synthetic-mosi", *_tiny(), "--json")
    assert result.exit_code == 0, result.output
    s = json.loads(result.output)
    assert s["ok"] is True and s["setting"] == "unaligned" and s["synthetic"] is True
    assert {k: v["n"] for k, v in s["splits"].items()} == {"train": 160, "valid": 48, "test": 64}
    train = s["splits"]["train"]
    assert train["modalities"]["text"]["shape"] == [8, 24]
    ln = train["modalities"]["audio"]["length"]
    assert 1 <= ln["min"] <= ln["median"] <= ln["max"] <= 12
    assert -3 <= train["label"]["min"] <= train["label"]["mean"] <= train["label"]["max"] <= 3
    assert len(s["histogram"]["edges"]) == 8 and s["histogram"]["edges"][0] == -3.0
    for name, counts in s["histogram"]["counts"].items():
        assert len(counts) == 7 and sum(counts) == s["splits"][name]["n"]
    assert s["preprocessing"] == {"normalize": "none", "max_length": None}
    assert any("split sizes 160/48/64" in p for p in s["problems"])


def test_check_applies_the_runs_preprocessing():
    result = _check("synthetic-mosi", *_tiny(), "--set", "data.normalize=zscore",
                    "--set", "data.max_length=6", "--set", "data.label_fraction=0.25",
                    "--set", 'data.modalities=["text", "audio"]', "--json")
    assert result.exit_code == 0, result.output
    s = json.loads(result.output)
    text = s["splits"]["train"]["modalities"]["text"]
    assert text["shape"] == [6, 24] and text["length"]["max"] <= 6
    assert abs(text["mean"]) < 1e-4 and abs(text["std"] - 1) < 1e-3
    assert set(s["splits"]["train"]["modalities"]) == {"text", "audio"}
    assert s["splits"]["train"]["labelled"] == 40 and s["splits"]["valid"]["labelled"] == 48
    assert s["preprocessing"]["statistics"] == "train split, 160 samples"


def test_check_rejects_non_data_keys_and_unknown_names():
    bad = _check("synthetic-mosi", "--set", "train.lr=1")
    assert bad.exit_code == 2 and "only data.* keys" in bad.output
    typo = _check("synthetic-mosy")
    assert typo.exit_code == 2 and "Did you mean 'synthetic-mosi'" in typo.output


class BrokenData(Dataset):
    name = "broken-data"
    meta = DatasetMeta(name="broken-data", title="always fails", language="none",
                       label_range=(-1.0, 1.0), convention="sims")

    def load(self) -> LoadedDataset:
        raise DataError(f"{self.data_dir}/labels.csv: column 'label' missing; re-export it")


class BrokenPlugin:
    @hookimpl
    def register_datasets(self, register):
        register(BrokenData)


@pytest.fixture
def broken_app():
    system = PluginSystem()
    system.load_entry_points()
    system.register(BrokenPlugin(), "broken")
    set_plugin_system(system)
    return make_app(system)


def test_data_error_is_a_problem_with_exit_code_2(broken_app, tmp_path):
    result = _check("broken-data", "--data-dir", str(tmp_path), app=broken_app)
    assert result.exit_code == 2
    assert "problem:" in result.output and "column 'label' missing" in result.output
    assert str(tmp_path) in result.output.replace("\n", "")
    as_json = _check("broken-data", "--json", app=broken_app)
    assert as_json.exit_code == 2
    s = json.loads(as_json.output)
    assert s["ok"] is False and "column 'label' missing" in s["problems"][0]
    bad_option = _check("synthetic-mosi", "--set", "data.options.n_trian=5", app=broken_app)
    assert bad_option.exit_code == 2 and "unknown option(s) n_trian" in bad_option.output
