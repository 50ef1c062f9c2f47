"""Checkpoints beside result files: saved with --save-checkpoint, verified when loaded."""

from __future__ import annotations

import json
import subprocess

import pytest

from msabench.checkpoints import CheckpointError, checkpoint_path, restore, sha256_file
from msabench.progress import Progress
from msabench.runner import RunSpec, run
from tests.conftest import ROOT, TINY_SYNTH

TINY = [f"data.options.{k}={v}" for k, v in TINY_SYNTH.items()] + ["train.epochs=2"]


def _run(out, save=True, seeds=(7,), extra=()):
    return run(RunSpec(method="sf", dataset="synthetic-mosi", seeds=list(seeds), out=out,
                       quiet=True, overrides=TINY + list(extra), save_checkpoint=save),
               progress=Progress(quiet=True))


def test_checkpoint_is_saved_recorded_and_restores_the_same_metrics(tmp_path):
    [o] = _run(tmp_path)
    res = json.loads(o.path.read_text())
    ckpt = checkpoint_path(o.path)
    assert ckpt.name == "seed-7.safetensors" and ckpt.is_file()
    rec = res["checkpoint"]
    assert rec["file"] == ckpt.name and rec["sha256"] == sha256_file(ckpt)
    assert rec["config_hash"] == res["config_hash"] and rec["format"] == "safetensors"
    restored = restore(o.path)
    ev = restored.context.evaluate(restored.model, restored.data["test"])
    for key, value in res["metrics"]["test"].items():
        assert value is None or ev.metrics[key] == pytest.approx(value, abs=1e-6)


def test_off_by_default_and_no_key_in_the_result(tmp_path):
    [o] = _run(tmp_path, save=False)
    assert "checkpoint" not in json.loads(o.path.read_text())
    assert not list(tmp_path.rglob("*.safetensors"))
    with pytest.raises(CheckpointError, match="has no checkpoint"):
        restore(o.path)


def test_a_changed_checkpoint_or_config_is_refused(tmp_path):
    [o] = _run(tmp_path)
    ckpt = checkpoint_path(o.path)
    blob = bytearray(ckpt.read_bytes())
    blob[-1] ^= 0xFF
    ckpt.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="sha256"):
        restore(o.path)
    [o] = _run(tmp_path / "b")
    res = json.loads(o.path.read_text())
    res["config"]["model"]["dropout"] = 0.123  # the stored config no longer hashes to itself
    o.path.write_text(json.dumps(res))
    with pytest.raises(CheckpointError, match="edited"):
        restore(o.path)


def test_a_checkpoint_of_another_config_is_refused(tmp_path):
    [a] = _run(tmp_path / "a")
    [b] = _run(tmp_path / "b", extra=["train.lr=0.003"])
    # b's checkpoint copied over a's, digest updated: the header's config hash still differs
    checkpoint_path(a.path).write_bytes(checkpoint_path(b.path).read_bytes())
    res = json.loads(a.path.read_text())
    res["checkpoint"]["sha256"] = sha256_file(checkpoint_path(a.path))
    a.path.write_text(json.dumps(res))
    with pytest.raises(CheckpointError, match="written for config"):
        restore(a.path)


def test_cli_flag_and_gitignore(tmp_path):
    from typer.testing import CliRunner

    from msabench.cli import make_app

    args = ["run", "-m", "sf", "-d", "synthetic-mosi", "--seeds", "3", "--out", str(tmp_path),
            "--save-checkpoint", "-q"] + [x for s in TINY for x in ("--set", s)]
    result = CliRunner().invoke(make_app(), args)
    assert result.exit_code == 0, result.output
    assert len(list(tmp_path.rglob("seed-3.safetensors"))) == 1
    probe = "leaderboards/results/mosi/utt-bclstm/sf/seed-1111.safetensors"
    assert subprocess.run(["git", "check-ignore", "-q", probe], cwd=ROOT).returncode == 0


def test_save_checkpoint_is_a_config_key_and_the_flag_overrides_it(tmp_path):
    """train.save_checkpoint from a --config file or --set; --save-checkpoint /
    --no-save-checkpoint win over it; the key changes neither the variant nor the hash."""
    from typer.testing import CliRunner

    from msabench.cli import make_app

    config = tmp_path / "run.toml"
    config.write_text("[train]\nsave_checkpoint = true\n")
    base = ["run", "-m", "sf", "-d", "synthetic-mosi", "-q"] + [x for s in TINY
                                                                for x in ("--set", s)]

    def go(out, *extra):
        result = CliRunner().invoke(make_app(), base + ["--out", str(tmp_path / out),
                                                        "--seeds", "1", *extra])
        assert result.exit_code == 0, result.output
        return list((tmp_path / out).rglob("seed-1.safetensors"))

    assert len(go("file", "--config", str(config))) == 1
    assert len(go("set", "--set", "train.save_checkpoint=true")) == 1
    assert go("flag-off", "--config", str(config), "--no-save-checkpoint") == []
    assert len(go("flag-on", "--set", "train.save_checkpoint=false", "--save-checkpoint")) == 1
    assert go("default") == []
    names = {p.parent.name for p in (tmp_path).rglob("seed-1.json")}
    hashes = {json.loads(p.read_text())["config_hash"] for p in tmp_path.rglob("seed-1.json")}
    assert len(names) == 1 and len(hashes) == 1
    bad = CliRunner().invoke(make_app(), base + ["--set", "train.save_checkpoint=3",
                                                 "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "true or false" in bad.output


def test_a_grid_sets_save_checkpoint_through_its_set_list(tmp_path):
    from msabench.grid import expand, run_local

    grid = tmp_path / "grid.toml"
    sets = ", ".join(f'"{s}"' for s in TINY)
    grid.write_text(f'methods = ["sf"]\ndatasets = ["synthetic-mosi"]\nseeds = [1]\n'
                    f'threads = 1\nout = "{tmp_path / "r"}"\n'
                    f'set = [{sets}, "train.save_checkpoint=true"]\n')
    g = expand(grid)
    run_local(g.tasks)
    assert g.tasks[0].status == "ran", g.tasks[0].error
    assert len(list((tmp_path / "r").rglob("seed-1.safetensors"))) == 1
