"""Modality ablations end to end: every method that supports modality subsets runs through the
runner on tiny synthetic-mosi with ``data.modalities`` = t, ta, av and all three, and its result
file records exactly the requested modalities (``modalities``, ``feature_dims``, the variant
name) with finite metrics. ``ef-lstm`` and ``mag-bert`` get the aligned setting."""

from __future__ import annotations

import json
import math

import pytest

from msabench.errors import ConfigError, DataError
from msabench.runner import Progress, RunSpec, run
from tests.test_baselines_mag import tiny_bert  # noqa: F401  (module-scoped fixture)
from tests.test_dec_semi import TINY_DEC, TINY_MODEL

QUIET = Progress(quiet=True)
LETTERS = {"t": "text", "a": "audio", "v": "vision"}
SUBSETS = ["t", "ta", "av", "tav"]


def _set(section: str, values: dict) -> list[str]:
    return [f"{section}.{k}={json.dumps(v)}" for k, v in values.items()]


# tiny model settings per method (plus the aligned setting where the method needs it)
TINY = {
    "sf": ["model.hidden=16"],
    "tfn": ["model.hidden.text=16", "model.hidden.audio=8", "model.hidden.vision=8",
            "model.text_out=8", "model.post_fusion_dim=16"],
    "lmf": ["model.hidden.text=16", "model.hidden.audio=8", "model.hidden.vision=8"],
    "mult": ["model.dim=8", "model.num_heads=2", "model.num_layers=1"],
    "ef-lstm": ['data.setting="aligned"', "model.hidden=16", "model.num_layers=1"],
    "transformer": _set("model", TINY_MODEL),
    "dec-semi": _set("model", TINY_MODEL)
    + _set("pretrain.dec", {**TINY_DEC, "stage1_epochs": 1, "stage2_epochs": 1}),
}
ALIGNED = {"ef-lstm", "mag-bert"}


def _run(tmp_path, overrides, method, subset, epochs=1):
    mods = [LETTERS[c] for c in subset]
    spec = RunSpec(method=method, dataset="synthetic-mosi", seeds=[1], epochs=epochs,
                   out=tmp_path / "results", quiet=True,
                   overrides=[*overrides, f"data.modalities={json.dumps(mods)}"])
    [outcome] = run(spec, progress=QUIET)
    assert outcome.status == "ran" and outcome.path.exists()
    return json.loads(outcome.path.read_text()), mods


def _check(res, method, subset, mods):
    assert res["method"] == method
    assert res["setting"] == ("aligned" if method in ALIGNED else "unaligned")
    assert res["modalities"] == mods
    assert res["config"]["data"]["modalities"] == mods
    assert set(res["feature_dims"]) == set(mods)
    assert all(isinstance(d, int) and d > 0 for d in res["feature_dims"].values())
    parts = res["variant"].split("_")
    if subset == "tav":
        # all three given explicitly: the variant may or may not name them (it does today:
        # "m-tav_cfg-..."); it must not name any other subset
        assert not [p for p in parts if p.startswith("m-") and p != "m-tav"], res["variant"]
    else:
        # the tiny settings make the run a config variant too: "m-ta_cfg-<hash>"
        assert f"m-{subset}" in parts, res["variant"]
        assert res["variant"].startswith(f"m-{subset}"), res["variant"]
    test = res["metrics"]["test"]
    assert test["mae"] is not None and math.isfinite(test["mae"])
    assert all(v is None or math.isfinite(v) for v in test.values()), test
    assert math.isfinite(res["test_loss"])
    assert res["parameters"]["trainable"] > 0


@pytest.mark.parametrize("subset", SUBSETS)
@pytest.mark.parametrize("method", list(TINY))
def test_modality_subset_end_to_end(tmp_path, tiny_synth_overrides, method, subset):
    res, mods = _run(tmp_path, tiny_synth_overrides + TINY[method], method, subset)
    _check(res, method, subset, mods)


def test_subsets_change_the_model(tmp_path, tiny_synth_overrides):
    """The subset reaches the model: fewer modalities, fewer parameters (tfn, lmf, mult)."""
    for method in ("tfn", "lmf", "mult"):
        sizes = {}
        for subset in ("t", "ta", "tav"):
            res, _ = _run(tmp_path / f"{method}-{subset}", tiny_synth_overrides + TINY[method],
                          method, subset)
            sizes[subset] = res["parameters"]["trainable"]
        assert sizes["t"] < sizes["ta"] < sizes["tav"], (method, sizes)


def test_ef_lstm_refuses_an_unaligned_multimodal_subset(tmp_path, tiny_synth_overrides):
    overrides = tiny_synth_overrides + [o for o in TINY["ef-lstm"] if "setting" not in o]
    with pytest.raises(DataError, match="needs aligned"):
        _run(tmp_path, overrides, "ef-lstm", "ta")


# ------------------------------------------------------------------------------ mag-bert
def _mag(tiny_synth_overrides, path):
    return tiny_synth_overrides + ['data.setting="aligned"', f"model.model={json.dumps(str(path))}",
                                   "model.local_files_only=true", "train.device=cpu",
                                   "train.batch_size=32"]


@pytest.mark.filterwarnings("ignore:mag-bert.*word count:UserWarning")
@pytest.mark.parametrize("subset", ["t", "ta"])
def test_mag_bert_subsets_with_text(tmp_path, tiny_synth_overrides,
                                    tiny_bert, subset):  # noqa: F811
    res, mods = _run(tmp_path, _mag(tiny_synth_overrides, tiny_bert), "mag-bert", subset)
    _check(res, "mag-bert", subset, mods)


@pytest.mark.filterwarnings("ignore:mag-bert.*word count:UserWarning")
def test_mag_bert_refuses_a_subset_without_text(tmp_path, tiny_synth_overrides,
                                                tiny_bert):  # noqa: F811
    with pytest.raises((ConfigError, DataError), match="text"):
        _run(tmp_path, _mag(tiny_synth_overrides, tiny_bert), "mag-bert", "av")
