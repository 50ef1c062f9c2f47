import pytest

from msabench import config as cfg
from msabench.errors import ConfigError


class FakeMethod:
    name = "fake"
    defaults = {"train": {"lr": 1e-3, "epochs": 10}, "model": {"hidden": 64, "dropout": 0.1},
                "pretrain": {}}
    dataset_defaults = {"mosi": {"model": {"hidden": 128}, "train": {"batch_size": 16}}}


def test_precedence_cli_over_file_over_dataset_over_method_defaults():
    file_cfg = {"model": {"hidden": 256, "dropout": 0.3}, "method": "fake"}
    cli_cfg = cfg.parse_overrides(["model.dropout=0.5"])
    resolved = cfg.resolve(FakeMethod, "mosi", file_cfg, cli_cfg)
    assert resolved["model"] == {"hidden": 256, "dropout": 0.5}
    assert resolved["train"]["batch_size"] == 16            # dataset default
    assert resolved["train"]["lr"] == 1e-3                  # method default
    assert resolved["train"]["patience"] == cfg.TRAIN_DEFAULTS["patience"]  # runner default
    assert cfg.resolve(FakeMethod, "other")["model"]["hidden"] == 64


def test_parse_overrides_types():
    out = cfg.parse_overrides(["train.lr=1e-4", "model.hidden=32", "model.flag=true",
                               "data.modalities=['text', 'audio']", "model.fusion=concat",
                               'model.name="quoted"', "data.options.n_train=10"])
    assert out["train"]["lr"] == pytest.approx(1e-4)
    assert out["model"]["hidden"] == 32 and out["model"]["flag"] is True
    assert out["data"]["modalities"] == ["text", "audio"]
    assert out["model"]["fusion"] == "concat" and out["model"]["name"] == "quoted"
    assert out["data"]["options"] == {"n_train": 10}


@pytest.mark.parametrize("item, match", [
    ("lr=1e-3", "must start with a section"),
    ("train.lr", "expected KEY=VALUE"),
])
def test_bad_overrides(item, match):
    with pytest.raises(ConfigError, match=match):
        cfg.parse_overrides([item])


def test_unknown_keys_get_did_you_mean():
    with pytest.raises(ConfigError, match=r"model\.hiden.*Did you mean model\.hidden"):
        cfg.resolve(FakeMethod, "mosi", {"model": {"hiden": 3}})
    with pytest.raises(ConfigError, match=r"train\.epoch.*Did you mean train\.epochs"):
        cfg.resolve(FakeMethod, "mosi", {"train": {"epoch": 3}})


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        cfg.load_config_file(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nlr = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        cfg.load_config_file(bad)
    odd = tmp_path / "odd.toml"
    odd.write_text("[trian]\nlr = 1\n")
    with pytest.raises(ConfigError, match="unknown top-level key.*trian"):
        cfg.load_config_file(odd)
    good = tmp_path / "good.toml"
    good.write_text('method = "fake"\n[train]\nlr = 0.5\n')
    assert cfg.load_config_file(good)["train"]["lr"] == 0.5


def test_variant_names_and_hash():
    defaults = cfg.resolve(FakeMethod, "mosi")
    for c in (defaults,):
        c["data"]["modalities"] = ["text", "audio", "vision"]
    same = cfg.deep_merge(defaults, {"train": {"device": "cuda"}})  # device is not identity
    assert cfg.variant_name(same, defaults, None) == "default"
    assert cfg.config_hash(same) == cfg.config_hash(defaults)
    ablation = cfg.deep_merge(defaults, {"data": {"modalities": ["text", "audio"]}})
    assert cfg.variant_name(ablation, defaults, None) == "m-ta"
    changed = cfg.deep_merge(defaults, {"train": {"lr": 0.1}})
    name = cfg.variant_name(changed, defaults, None)
    assert name.startswith("cfg-") and name == cfg.variant_name(changed, defaults, None)
    assert cfg.variant_name(changed, defaults, "my-tag") == "my-tag"
    with pytest.raises(ConfigError):
        cfg.variant_name(changed, defaults, "bad/tag")


# ------------------------------------------------------------------ typed values (issue 14)
@pytest.mark.parametrize("layer, message", [
    ({"train": {"lr": "fast"}}, r"train.lr='fast' must be a number \(numbers go without quotes"),
    ({"train": {"batch_size": "big"}}, "train.batch_size='big' must be an integer"),
    ({"train": {"epochs": "abc"}}, "train.epochs='abc' must be an integer"),
    ({"train": {"epochs": 1.7}}, "train.epochs=1.7 must be an integer"),
    ({"train": {"epochs": True}}, "train.epochs=True must be an integer"),
    ({"train": {"lr": [1, 2]}}, r"train.lr=\[1, 2\] must be a number"),
    ({"train": {"lr": -1.0}}, "train.lr=-1.0 must be > 0"),
    ({"train": {"lr": float("nan")}}, "train.lr=nan must be a finite number"),
    ({"train": {"lr": float("inf")}}, "train.lr=inf must be a finite number"),
    ({"train": {"lr": 1e38}}, "train.lr=1e\\+38 must be <= 1000"),
    ({"train": {"weight_decay": -1}}, "train.weight_decay=-1 must be >= 0"),
    ({"train": {"eval_batch_size": 0}}, "train.eval_batch_size=0 must be >= 1"),
    ({"train": {"device": "tpu"}}, "train.device='tpu' must be auto, cpu, cuda or cuda:N"),
    ({"train": 3}, r"\[train\] must be a table"),
    ({"model": {"hidden": "big"}}, "model.hidden='big' must be an integer"),
    ({"model": {"dropout": "x"}}, "model.dropout='x' must be a number"),
    ({"model": {"input_norm": 1}}, "model.input_norm=1 must be true or false"),
    ({"data": {"modalities": "ta"}}, "data.modalities='ta' must be a list"),
    ({"pretrain": {"stages": "dec"}}, "pretrain.stages must be a list"),
])
def test_every_value_is_type_and_range_checked_naming_the_key(layer, message):
    from msabench.errors import ConfigError
    from msabench.plugins import get_registry

    sf = get_registry().load("method", "sf")
    with pytest.raises(ConfigError, match=message):
        cfg.resolve(sf, "mosi", layer)


def test_every_builtin_default_passes_its_own_type_checks():
    from msabench.plugins import get_registry

    registry = get_registry()
    for name in registry.names("method"):
        method = registry.load("method", name)
        for dataset in ("mosi", "mosei", "chsims", "chsims2", "synthetic-mosi"):
            cfg.resolve(method, dataset)  # raises on a default of the wrong type
    for name in registry.names("pretrainer"):
        registry.load("pretrainer", name)()


def test_pretrainer_options_are_type_checked():
    from msabench.errors import ConfigError
    from msabench.plugins import get_registry

    dec = get_registry().load("pretrainer", "dec")
    with pytest.raises(ConfigError, match="pretrain.dec.stage1_epochs='ten' must be an integer"):
        dec(stage1_epochs="ten")
