"""Every hook, exercised through a plugin that implements each one (tests/all_hooks_plugin.py)."""

import pluggy
import pytest
import torch
from typer.testing import CliRunner

from msabench import hookspecs
from msabench.registry import KINDS
from msabench.runner import Progress, RunSpec, run
from tests import all_hooks_plugin


def hook_names():
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return sorted(name for name in dir(pm.hook) if name.startswith("register_"))


def test_test_plugin_covers_every_hook(system):
    assert sorted(system.plugins["all-hooks"].hooks) == hook_names()
    assert hook_names() == sorted([f"register_{k}s" for k in KINDS] + ["register_commands"])


@pytest.mark.parametrize("kind, name", [("dataset", "toy-data"), ("extractor", "toy-letters"),
                                        ("fusion", "toy-sum"), ("pretrainer", "toy-centre"),
                                        ("metric", "toy-mse"), ("method", "toy-linear")])
def test_register_hooks_put_components_in_registry(system, kind, name):
    entry = system.registry.get(kind, name)
    assert entry.plugin == "all-hooks" and entry.plugin_version == "9.9"
    assert entry.load().name == name


def test_register_extractors_component_extracts(system):
    extractor = system.registry.load("extractor", "toy-letters")()
    feats = extractor.extract(["abc", "zz"])
    assert extractor.output_dim == 26 and feats.values.shape == (2, 1, 26)
    assert feats.values[1, 0, 25] == 1.0 and torch.allclose(feats.values[0, 0, :3], torch.tensor([1 / 3] * 3))


def test_register_commands_adds_cli_command(system):
    from msabench.cli import make_app

    result = CliRunner().invoke(make_app(system), ["toy-hello", "--name", "msa"])
    assert result.exit_code == 0 and "hello msa from a plugin" in result.output


def test_register_fusions_and_metrics_used_by_a_run(system, tmp_path):
    spec = RunSpec(method="sf", dataset="toy-data", out=tmp_path, quiet=True,
                   overrides=["model.fusion=toy-sum", "model.fusion_params.dim=4",
                              "train.epochs=3"])
    [outcome] = run(spec, registry=system.registry, progress=Progress(quiet=True))
    assert "mse" in outcome.test  # the plugin metric applies to the mosi convention
    import json
    res = json.loads(outcome.path.read_text())
    assert res["config"]["model"]["fusion"] == "toy-sum"
    assert res["metric_info"]["mse"]["higher_is_better"] is False


def test_register_pretrainers_stage_runs_before_training(system, tmp_path):
    spec = RunSpec(method="toy-linear", dataset="toy-data", out=tmp_path, quiet=True,
                   overrides=['pretrain.stages=["toy-centre"]', "data.options.hide_fraction=0.5"])
    [outcome] = run(spec, registry=system.registry, progress=Progress(quiet=True))
    import json
    res = json.loads(outcome.path.read_text())
    log = res["pretraining"]["toy-centre"]
    # the pretrainer saw all 192 training samples, including the 96 with hidden labels ...
    assert log == {"samples_seen": 192, "hidden_labels_seen": 96, "seed": 1111}
    # ... while supervised training used only the labelled half
    assert res["labelled_train"] == 96


def test_pretrainer_requirements_are_checked(system, tmp_path):
    from msabench.errors import ConfigError

    spec = RunSpec(method="sf", dataset="toy-data", out=tmp_path, quiet=True,
                   overrides=['pretrain.stages=["toy-centre"]'])
    with pytest.raises(ConfigError, match="needs centres"):
        run(spec, registry=system.registry, progress=Progress(quiet=True))
