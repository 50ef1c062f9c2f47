"""Offline defaults: the model directory (``MSABENCH_MODEL_DIR`` / ``model_dir`` /
``--model-dir``), the ``required_models`` contract and ``msabench models`` (list, download,
verify). Checkpoints are tiny random BERTs saved here with ``save_pretrained``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from msabench.api import Method, ModelNeed
from msabench.cli import make_app
from msabench.errors import ConfigError
from msabench.models import ENV_MODEL_DIR, model_dir, model_dir_candidates
from msabench_builtins.extractors.hf_text import HFTextExtractor
from msabench_builtins.hf import locate, offline_message

runner = CliRunner()
WORDS = ["the", "movie", "was", "great", "bad", "i", "liked", "it"]


def save_tiny_bert(path: Path) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(path / "vocab.txt")).save_pretrained(path)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=20,
                         max_position_embeddings=32)).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("bert") / "tiny")


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # an empty Hugging Face cache
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE",
                        str(tmp_path / "hf-home" / "hub"))
    monkeypatch.delenv(ENV_MODEL_DIR, raising=False)


def copy_model(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------------------ resolution
def test_model_dir_default_env_and_layouts(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_MODEL_DIR, raising=False)
    monkeypatch.setenv("MSABENCH_CACHE_DIR", str(tmp_path / "cache"))
    assert model_dir() == tmp_path / "cache" / "models"
    monkeypatch.setenv(ENV_MODEL_DIR, str(tmp_path / "models"))
    assert model_dir() == tmp_path / "models"
    assert model_dir_candidates("org/name") == [tmp_path / "models" / "org--name",
                                                tmp_path / "models" / "org" / "name"]
    assert model_dir_candidates("bert-base-uncased") == [tmp_path / "models" / "bert-base-uncased"]


@pytest.mark.parametrize("layout", ["org--tiny", "org/tiny"])
def test_hub_name_loads_from_the_model_dir_offline(offline, monkeypatch, tmp_path, tiny_bert,
                                                   layout):
    models = tmp_path / "models"
    copy_model(tiny_bert, models / layout)
    ex = HFTextExtractor(model="org/tiny", pooling="mean")
    with pytest.raises(ConfigError, match="not available offline"):
        ex.output_dim  # today's behaviour, before the model dir is set
    monkeypatch.setenv(ENV_MODEL_DIR, str(models))
    ex = HFTextExtractor(model="org/tiny", pooling="mean")
    out = ex.extract(["the movie was great"])
    assert out.values.shape == (1, 1, 16)
    assert locate("org/tiny").kind == "model-dir"
    assert "org/tiny" in ex.cache_key() and str(models) not in ex.cache_key()


def test_resolution_order(offline, monkeypatch, tmp_path, tiny_bert):
    models = tmp_path / "models"
    monkeypatch.setenv(ENV_MODEL_DIR, str(models))
    copy_model(tiny_bert, models / "bert-base-uncased")
    # an explicit directory wins over everything
    assert locate(str(tiny_bert)).kind == "path"
    # the model dir serves a hub name without an organisation
    loc = locate("bert-base-uncased")
    assert loc.kind == "model-dir" and loc.path == models / "bert-base-uncased"
    # a bundled package wins over a copy in the model dir
    from msabench_builtins.hf import bundled_model_dir

    if bundled_model_dir("sentence-transformers/all-MiniLM-L6-v2") is not None:
        copy_model(tiny_bert, models / "sentence-transformers--all-MiniLM-L6-v2")
        assert locate("sentence-transformers/all-MiniLM-L6-v2").kind == "bundled"
    # a folder without config.json is not a model
    (models / "org--empty").mkdir()
    assert locate("org/empty").kind == "missing"


def test_offline_error_names_model_places_and_command(offline, monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_MODEL_DIR, str(tmp_path / "models"))
    with pytest.raises(ConfigError) as err:
        HFTextExtractor(model="org/absent").output_dim
    msg = str(err.value)
    assert "'org/absent'" in msg
    assert str(tmp_path / "models" / "org--absent") in msg
    assert "Hugging Face cache" in msg
    assert "msabench models --download --model org/absent" in msg
    assert "msabench models --download" in offline_message("org/absent")


# ------------------------------------------------------------------------------ contract
def test_required_models_contract():
    from msabench_builtins.methods.mag_bert import MAGBert
    from msabench_builtins.methods.transformer import TransformerClassifier as Transformer

    class Toy(Method):
        name = "toy"

    needs = Toy.required_models({"model": {"text_model": "org/a", "model": "none",
                                           "hidden": 3, "revision": "v1"}})
    assert needs == [ModelNeed("org/a", "model.text_model", revision="v1",
                               role="toy text model")]
    assert Transformer.required_models({"model": Transformer.defaults["model"]}) == []
    mag = MAGBert.required_models({"model": {**MAGBert.defaults["model"], "model": "x/y"}})
    assert [(n.name, n.key, n.modality) for n in mag] == [("x/y", "model.model", "text")]


def test_dataset_needs_depend_on_the_setting():
    from msabench_builtins.datasets.mosi import Mosi
    from msabench_builtins.datasets.sims import ChSims2

    assert Mosi(setting="unaligned").required_models() == []
    assert [n.name for n in Mosi(setting="utt-clean").required_models()] == \
        ["sentence-transformers/all-MiniLM-L6-v2"]
    raw = Mosi(setting="raw", options={"text_model": "none"}).required_models()
    assert [(n.key, n.modality) for n in raw] == [("data.options.audio_model", "audio"),
                                                   ("data.options.video_model", "vision")]
    assert [n.modality for n in ChSims2(setting="raw").required_models()] == \
        ["text", "audio", "vision"]


# ------------------------------------------------------------------------------ the command
def invoke(*args: str):
    return runner.invoke(make_app(), ["models", *args])


def test_listing_mag_bert_on_mosi(offline, tmp_path):
    result = invoke("-m", "mag-bert", "-d", "mosi", "--model-dir", str(tmp_path / "m"))
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"model directory: {tmp_path / 'm'} (--model-dir)" in out
    assert "bert-base-uncased  [model.model] (MAG-BERT encoder (fine-tuned))" in out
    assert "source: missing" in out and str(tmp_path / "m" / "bert-base-uncased") in out
    assert "fix: msabench models --download --model bert-base-uncased" in out
    clean = invoke("-m", "mag-bert", "-d", "mosi", "--setting", "utt-clean", "--json")
    names = {m["name"]: m for m in json.loads(clean.output)["models"]}
    assert set(names) == {"bert-base-uncased", "sentence-transformers/all-MiniLM-L6-v2"}
    assert names["bert-base-uncased"]["source"] == "missing"
    none = invoke("-m", "transformer", "-d", "mosi")
    assert none.exit_code == 0 and "no pre-trained checkpoints needed" in none.output


def test_listing_finds_the_model_dir_from_config_and_set(offline, tmp_path, tiny_bert):
    copy_model(tiny_bert, tmp_path / "m" / "org--tiny")
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'method = "mag-bert"\ndataset = "mosi"\nmodel_dir = "{tmp_path / "m"}"\n'
                   '[model]\nmodel = "org/tiny"\n', encoding="utf-8")
    result = invoke("--config", str(cfg))
    assert result.exit_code == 0, result.output
    assert "(model_dir in --config)" in result.output
    assert f"source: model-dir - {tmp_path / 'm' / 'org--tiny'}" in result.output


def test_verify_ok_and_missing(offline, tmp_path, tiny_bert):
    copy_model(tiny_bert, tmp_path / "m" / "org--tiny")
    ok = invoke("--model", "org/tiny", "--verify", "--model-dir", str(tmp_path / "m"))
    assert ok.exit_code == 0, ok.output
    assert "verify: OK: BertModel" in ok.output and "(model-dir)" in ok.output
    bad = invoke("--model", "org/tiny", "--model", "org/absent", "--verify",
                 "--model-dir", str(tmp_path / "m"))
    assert bad.exit_code == 2
    assert "verify: FAILED - model 'org/absent' is not available offline" in bad.output
    assert "msabench models --download --model org/absent" in bad.output
    # a broken copy is found but does not load: the fix says so
    broken = tmp_path / "m" / "org--broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}", encoding="utf-8")
    res = invoke("--model", "org/broken", "--verify", "--model-dir", str(tmp_path / "m"))
    assert res.exit_code == 2 and "found at" in res.output and "does not load" in res.output


def test_download_offline_fails_clearly(offline, tmp_path):
    result = invoke("--model", "org/absent", "--download", "--model-dir", str(tmp_path / "m"))
    assert result.exit_code == 2
    assert "download failed: cannot download 'org/absent'" in result.output
    assert "offline (HF_HUB_OFFLINE" in result.output
    assert str(tmp_path / "m" / "org--absent") in result.output
    assert not (tmp_path / "m" / "org--absent").exists()


def test_models_needs_a_target():
    result = invoke()
    assert result.exit_code == 2 and "--method NAME and/or --dataset NAME" in result.output


def test_run_accepts_model_dir(tmp_path, monkeypatch):
    """``model_dir`` is a known top-level config key and --model-dir an option of run."""
    from msabench.config import load_config_file

    cfg = tmp_path / "c.toml"
    cfg.write_text('model_dir = "/somewhere"\n', encoding="utf-8")
    assert load_config_file(cfg)["model_dir"] == "/somewhere"
    result = runner.invoke(make_app(), ["run", "--help"])
    assert "--model-dir" in result.output
