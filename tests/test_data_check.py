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
    sizes = [p for p in s["problems"] if p["code"] == "split-sizes"]
    assert len(sizes) == 1 and "split sizes 160/48/64" in sizes[0]["message"]
    assert sizes[0]["severity"] == "warning" and s["ok"] is True
    assert s["counts"] == {"error": 0, "warning": len(s["problems"])}


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
    assert "error [load-error]:" in result.output and "column 'label' missing" in result.output
    assert "1 error(s), 0 warning(s)" in result.output
    assert str(tmp_path) in result.output.replace("\n", "")
    as_json = _check("broken-data", "--json", app=broken_app)
    assert as_json.exit_code == 2
    s = json.loads(as_json.output)
    assert s["ok"] is False and "column 'label' missing" in s["problems"][0]["message"]
    assert s["problems"][0]["code"] == "load-error" and s["counts"] == {"error": 1, "warning": 0}
    bad_option = _check("synthetic-mosi", "--set", "data.options.n_trian=5", app=broken_app)
    assert bad_option.exit_code == 2 and "unknown option(s) n_trian" in bad_option.output


# --------------------------------------------------------------------------------------------
# hostile and foreign files (issue 14): error-level problems exit non-zero with stable codes

def _mmsa(tmp_path, data, name="unaligned_50.pkl"):
    import pickle

    path = tmp_path / name
    path.write_bytes(pickle.dumps(data, protocol=4))
    return path


def _codes(summary):
    return {p["code"]: p for p in summary["problems"]}


def test_overflowing_features_are_an_error_naming_split_and_modality(tmp_path):
    from tests.test_hostile_files import mmsa_obj

    data = mmsa_obj()
    data["valid"]["audio"][1, 2, 0] = 1e38  # finite in float32, but its square is inf
    data["valid"]["audio"][2, 0, 1] = -3e20
    _mmsa(tmp_path, data)
    result = _check("mosi", "--data-dir", str(tmp_path), "--json")
    assert result.exit_code == 1, result.output
    s = json.loads(result.output)
    assert s["ok"] is False and s["counts"]["error"] == 1
    over = _codes(s)["overflow-features"]
    assert over["severity"] == "error" and over["split"] == "valid" and over["modality"] == "audio"
    assert "2 finite value(s) with |x| > 1.8e+19 (largest 1e+38, first in sample " \
           "'vidvalid$_$1')" in over["message"]
    assert _codes(s)["split-sizes"]["severity"] == "warning"
    text = _check("mosi", "--data-dir", str(tmp_path))
    assert text.exit_code == 1
    out = " ".join(text.output.split())
    assert "error [overflow-features]: valid: modality 'audio' has 2 finite value(s)" in out
    assert "1 error(s), 1 warning(s) - the dataset is not fit to train on" in out


def _sims_scale(n=(40, 10, 10), unimodal=True, scale=1.0, seed=0):
    """An MMSA pickle with CH-SIMS-scale labels (0.2 grid in [-1, 1]) and T/A/V label keys."""
    import numpy as np

    from tests.test_hostile_files import SIZES, mmsa_obj

    rng = np.random.default_rng(seed)
    grid = np.round(np.arange(-1.0, 1.01, 0.2), 1) * scale
    out = {}
    for (split, k), base in zip(zip(SIZES, n), [mmsa_obj(seed + i) for i in range(3)]):
        big = {key: np.concatenate([v] * (k // len(v) + 1))[:k] if hasattr(v, "__len__")
               else v for key, v in base[split].items()}
        big["id"] = np.array([f"v{split}$_${i}" for i in range(k)], dtype=object)
        big["regression_labels"] = rng.choice(grid, k).astype(np.float32)
        if unimodal:
            for m in "TAV":
                big[f"regression_labels_{m}"] = rng.choice(grid, k).astype(np.float32)
        out[split] = big
    return out


def test_a_chsims_file_placed_as_mosi_is_flagged(tmp_path):
    _mmsa(tmp_path, _sims_scale())
    result = _check("mosi", "--data-dir", str(tmp_path), "--json")
    assert result.exit_code == 1, result.output
    s = json.loads(result.output)
    codes = _codes(s)
    assert codes["foreign-labels"]["severity"] == "error"
    assert "all 60 labels lie in [-1.000, 1.000] - the range of CH-SIMS / CH-SIMS v2 labels" \
           in codes["foreign-labels"]["message"]
    assert codes["foreign-keys"]["severity"] == "error"
    assert "unimodal labels (audio, text, vision" in codes["foreign-keys"]["message"]
    assert "only CH-SIMS / CH-SIMS v2 files carry them" in codes["foreign-keys"]["message"]
    assert s["counts"] == {"error": 2, "warning": 1}  # + split sizes
    # a run prints the same as notes (the pickle readers add them)
    assert any("unimodal labels (audio, text, vision)" in n for n in s["notes"])
    assert any("all labels lie in [-1.000, 1.000]" in n for n in s["notes"])


def test_a_genuine_mosi_scale_file_is_not_flagged(tmp_path):
    _mmsa(tmp_path, _sims_scale(unimodal=False, scale=3.0))
    result = _check("mosi", "--data-dir", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    s = json.loads(result.output)
    assert s["ok"] is True and set(_codes(s)) == {"split-sizes"}
    assert not any("another dataset" in n for n in s["notes"])


@pytest.mark.parametrize("case, code", [("nan", "nonfinite-features"),
                                        ("forged", "unsafe-pickle"),
                                        ("bomb", "decompression-bomb")])
def test_load_failures_report_the_readers_code(tmp_path, case, code):
    import os

    from tests.test_hostile_files import Reduce, mmsa_obj, write_bomb

    args = ["mosi", "--data-dir", str(tmp_path), "--json"]
    if case == "bomb":
        write_bomb(tmp_path / "mosei_utt.npz")
        args = ["mosei", "--setting", "utt", "--data-dir", str(tmp_path), "--json"]
    else:
        data = mmsa_obj()
        if case == "nan":
            data["test"]["vision"][0, 0, 0] = float("nan")
        else:
            marker = tmp_path / "pwned"  # (forged arrays are tested in a child process)
            data["train"]["annotations"] = Reduce(os.system, (f"touch {marker}",))
        _mmsa(tmp_path, data)
    result = _check(*args)
    assert result.exit_code == 2, result.output
    s = json.loads(result.output)
    assert s["ok"] is False and s["counts"] == {"error": 1, "warning": 0}
    assert [p["code"] for p in s["problems"]] == [code]
    assert s["problems"][0]["severity"] == "error" and str(tmp_path) in s["problems"][0]["message"]
    assert not (tmp_path / "pwned").exists()


def test_missing_files_have_their_code(tmp_path):
    result = _check("mosi", "--data-dir", str(tmp_path), "--json")
    assert result.exit_code == 2, result.output
    s = json.loads(result.output)
    assert [p["code"] for p in s["problems"]] == ["missing-file"]
    assert "none of the expected files is in" in s["problems"][0]["message"]
