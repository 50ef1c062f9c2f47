"""msabench robustness: every built-in method under removed, noisy and word-dropped inputs."""

from __future__ import annotations

import json
import math

import pytest
import torch

from msabench import robustness
from msabench.progress import Progress
from msabench.runner import RunSpec, run
from tests.conftest import TINY_SYNTH

TINY = {"data": {"options": dict(TINY_SYNTH)}, "train": {"epochs": 1}}
SIMS = {"n_train": 24, "n_valid": 8, "n_test": 8, "text_dim": 6, "audio_dim": 5,
        "vision_dim": 4, "text_len": 5, "audio_len": 6, "vision_len": 4,
        "label_source": "builtin"}
CASES = {
    "sf": ("synthetic-mosi", TINY), "tfn": ("synthetic-mosi", TINY),
    "lmf": ("synthetic-mosi", TINY), "mult": ("synthetic-mosi", TINY),
    "transformer": ("synthetic-mosi", TINY), "dec-semi": ("synthetic-mosi", TINY),
    "ef-lstm": ("synthetic-mosi", {**TINY, "data": {**TINY["data"], "setting": "aligned"}}),
    "boost-mtl": ("synthetic-sims2", {
        "data": {"options": SIMS}, "train": {"epochs": 1},
        "model": {"mode": "joint", "encoders": {"text": "features", "audio": "features",
                                                "vision": "features"}},
        "pretrain": {"unimodal": {"epochs": 1}}}),
}


def _trained(tmp_path, method, dataset, overrides):
    [o] = run(RunSpec(method=method, dataset=dataset, seeds=[5], out=tmp_path, quiet=True,
                      overrides=overrides, save_checkpoint=True, epochs=1),
              progress=Progress(quiet=True))
    return o.path


@pytest.mark.parametrize("method", sorted(CASES))
def test_every_builtin_method_is_evaluated_under_each_perturbation(method, tmp_path):
    dataset, overrides = CASES[method]
    path = _trained(tmp_path, method, dataset, overrides)
    [(target, status)] = robustness.run([path], snrs=[10.0], word_dropout=[0.3])
    assert status == "ran" and target.name == "robustness-seed-5.json"
    rec = json.loads(target.read_text())
    assert rec["clean_matches_result"] is True
    names = {p["name"] for p in rec["perturbations"]}
    mods = json.loads(path.read_text())["modalities"]
    assert {f"drop:{m}" for m in mods} | {f"noise:{m}@10dB" for m in mods} <= names
    for p in rec["perturbations"]:
        assert p["status"] in ("ok", "unsupported")
        if p["status"] == "ok":
            assert all(v is None or math.isfinite(v) for v in p["metrics"].values())
            assert isinstance(p["no_effect"], bool)
            if p["kind"] == "noise":   # 10 dB noise moves some prediction of every method
                assert p["no_effect"] is False, p["name"]
        else:
            assert p["reason"].startswith(method)
    absent = {p["name"]: p for p in rec["perturbations"] if p["kind"] == "absent"}
    assert set(absent) == {f"absent:{m}" for m in mods}
    if method in DROPPABLE:  # the fusion-level drop really ran, for every modality
        assert all(p["status"] == "ok" and p["removal"] == "dropped" for p in absent.values())
    # re-running skips what exists
    assert robustness.run([path], snrs=[10.0], word_dropout=[0.3])[0][1] == "skipped"


def test_no_effect_is_computed_from_the_predictions(tmp_path):
    """sf on one-step text features reads no transcript: word dropout cannot change its
    input, so every prediction is unchanged and the entry says so; noise does change them."""
    one_step = {**TINY, "data": {"options": {**TINY_SYNTH, "text_len": 1}}}
    path = _trained(tmp_path, "sf", "synthetic-mosi", one_step)
    record, _ = robustness.evaluate_result(path, snrs=[10.0], word_dropout=[0.5])
    entries = {p["name"]: p for p in record["perturbations"]}
    assert entries["words:0.5"]["status"] == "ok" and entries["words:0.5"]["no_effect"] is True
    assert entries["noise:text@10dB"]["no_effect"] is False


def test_a_method_that_needs_a_modality_says_so(tmp_path, monkeypatch):
    from msabench_builtins.methods.sf import SF

    path = _trained(tmp_path, "sf", "synthetic-mosi", TINY)
    monkeypatch.setattr(SF, "needs_modalities", ("text",), raising=False)
    record, _ = robustness.evaluate_result(path, snrs=[], word_dropout=[])
    [text] = [p for p in record["perturbations"] if p["name"] == "drop:text"]
    assert text["status"] == "unsupported" and "cannot run without text" in text["reason"]


def _split():
    from msabench.api import SplitData

    g = torch.Generator().manual_seed(0)
    n = 400
    return SplitData(ids=[str(i) for i in range(n)],
                     features={"text": torch.randn(n, 6, 4, generator=g) + 1.0,
                               "audio": torch.randn(n, 3, 2, generator=g)},
                     lengths={"text": torch.full((n,), 4), "audio": torch.full((n,), 3)},
                     labels=torch.zeros(n), texts=["a b c d e f g h i j"] * n)


def test_noise_has_the_requested_snr_and_only_on_valid_steps():
    split = _split()
    p = robustness.Perturbation("noise", "text", 10.0)
    noisy = robustness.perturb(split, p, seed=1)
    x, y = split.features["text"], noisy.features["text"]
    assert torch.equal(x[:, 4:], y[:, 4:])  # padding untouched
    signal = (x[:, :4] ** 2).mean()
    noise = ((y - x)[:, :4] ** 2).mean()
    assert 10 * math.log10(signal / noise) == pytest.approx(10.0, abs=0.2)
    again = robustness.perturb(split, p, seed=1)
    assert torch.equal(again.features["text"], y)  # seeded
    assert torch.equal(split.features["text"], x)  # not in place


def test_drop_and_word_dropout():
    split = _split()
    dropped = robustness.perturb(split, robustness.Perturbation("drop", "text"), seed=1)
    assert dropped.features["text"].abs().sum() == 0 and dropped.lengths["text"].sum() == 0
    assert dropped.texts[0] == "" and torch.equal(dropped.features["audio"],
                                                   split.features["audio"])
    step = robustness.perturb(split, robustness.Perturbation("drop", "text"), 1, "zero-step")
    assert bool((step.lengths["text"] == 1).all())
    words = robustness.perturb(split, robustness.Perturbation("words", "text", 0.5), seed=2)
    kept = [len(t.split()) for t in words.texts]
    assert 0.4 < sum(kept) / (10 * len(kept)) < 0.6
    zeroed = (words.features["text"][:, :4].abs().sum(-1) == 0).float().mean()
    assert 0.4 < float(zeroed) < 0.6


def test_cli_and_leaderboard_section(tmp_path):
    from typer.testing import CliRunner

    from msabench.cli import make_app
    from msabench.leaderboard import generate

    results = tmp_path / "results"
    for seed in (1, 2):
        run(RunSpec(method="sf", dataset="synthetic-mosi", seeds=[seed], out=results,
                    quiet=True, overrides=TINY, save_checkpoint=True),
            progress=Progress(quiet=True))
    out = CliRunner().invoke(make_app(), ["robustness", "--results", str(results),
                                          "--snrs", "10", "--word-dropout", "0.2"])
    assert out.exit_code == 0, out.output
    assert "2 evaluated" in out.output
    files = generate(results)
    page = files["synthetic-mosi.md"]
    assert "### Modality robustness" in page and "drop:text" in page and "noise:audio@10dB" in page
    assert "figures/synthetic-mosi--unaligned--robustness.svg" in files
    none = CliRunner().invoke(make_app(), ["robustness", "--results", str(tmp_path / "x")])
    assert none.exit_code == 2 and "--save-checkpoint" in none.output


def test_a_perturbation_the_method_does_not_read_is_shown_as_no_effect():
    from msabench.leaderboard_sections import render_robustness

    def record(method, seed, acc, words_effect, variant="default"):
        return {"method": method, "dataset": "mosi", "setting": "utt", "variant": variant,
                "seed": seed, "clean": {"acc2_non0": acc},
                "perturbations": [
                    {"name": "words:0.1", "kind": "words", "modality": "text", "value": 0.1,
                     "status": "ok", "metrics": {"acc2_non0": acc - words_effect},
                     "no_effect": words_effect == 0.0},
                    {"name": "drop:text", "kind": "drop", "modality": "text", "status": "ok",
                     "metrics": {"acc2_non0": acc - 0.2}, "no_effect": False}]}

    records = [record("sf", 1, 0.80, 0.0), record("sf", 2, 0.82, 0.0),
               # one seed with an effect of zero by chance is not "no effect"
               record("tfn", 1, 0.80, 0.0), record("tfn", 2, 0.80, 0.01),
               # a variant's row is matched by the same label as its numbers
               record("sf", 1, 0.79, 0.0, "wd0"), record("sf", 2, 0.79, 0.0, "wd0")]
    page = render_robustness("mosi", "utt", records, {}, None)
    lines = page.splitlines()
    header = [c.strip() for c in next(x for x in lines if x.startswith("| Method")).split("|")]
    rows = {r.split("|")[1].strip(): dict(zip(header, [c.strip() for c in r.split("|")]))
            for r in lines if r.startswith(("| sf ", "| tfn "))}
    assert rows["sf"]["words:0.1"] == "no effect"
    assert rows["sf (wd0)"]["words:0.1"] == "no effect"
    assert rows["sf"]["drop:text"] != "no effect"
    assert rows["tfn"]["words:0.1"] not in ("no effect", "unsupported")
    assert "no effect" in page.split("|")[0]  # the legend explains it


DROPPABLE = ("sf", "tfn", "lmf", "mult", "transformer", "dec-semi")


@pytest.mark.parametrize("method", DROPPABLE)
def test_absent_modality_is_left_out_of_the_fusion(method, tmp_path):
    """``model.without({m})``: the output does not depend on m's inputs at all (random
    features and lengths give bit-identical predictions) and differs from zeroing m."""
    from msabench.checkpoints import restore

    dataset, overrides = CASES[method]
    restored = restore(_trained(tmp_path, method, dataset, overrides))
    model, test = restored.model, restored.data["test"]
    assert model.droppable_modalities() == set(test.features)
    g = torch.Generator().manual_seed(3)
    for m in test.features:
        p = robustness.Perturbation("drop", m)
        zeroed = restored.context.evaluate(model, robustness.perturb(test, p, 1, "zero-step"))
        noisy = robustness.perturb(test, p, 1)
        x = test.features[m]
        lengths = torch.randint(1, x.shape[1] + 1, (len(test),), generator=g)
        noisy = robustness.replace(noisy, features={**noisy.features, m: torch.randn(
            x.shape, generator=g) * 5}, lengths={**noisy.lengths, m: lengths})
        with model.without({m}):
            dropped = restored.context.evaluate(model, robustness.perturb(test, p, 1))
            again = restored.context.evaluate(model, noisy)
        assert torch.isfinite(dropped.preds).all()
        assert torch.equal(dropped.preds, again.preds), m
        assert not torch.allclose(dropped.preds, zeroed.preds, atol=1e-6), m
        assert model.absent == frozenset()


def test_a_method_without_fusion_level_drop_says_so(tmp_path):
    from msabench.checkpoints import restore

    dataset, overrides = CASES["ef-lstm"]
    path = _trained(tmp_path, "ef-lstm", dataset, overrides)
    model = restore(path).model
    assert model.droppable_modalities() == set()
    with pytest.raises(ValueError, match="cannot leave audio out of its fusion"):
        with model.without({"audio"}):
            pass
    record, _ = robustness.evaluate_result(path, snrs=[], word_dropout=[])
    absent = [p for p in record["perturbations"] if p["kind"] == "absent"]
    assert {p["name"] for p in absent} == {f"absent:{m}" for m in ("text", "audio", "vision")}
    assert all(p["status"] == "unsupported" and "ef-lstm cannot leave" in p["reason"]
               for p in absent)
    zeroed = [p for p in record["perturbations"] if p["kind"] == "drop"]
    assert zeroed and all(p["status"] == "ok" for p in zeroed)
