"""``train.precision`` in the shared loop: bf16 autocast of the forward passes, fp32 losses and
metrics, the resolved precision in the result file, clear errors for bad values."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from msabench import config as cfg
from msabench.api import Recipe
from msabench.errors import ConfigError
from msabench.precision import precision_notice, resolve_precision
from msabench.runner import Progress, RunSpec, run
from msabench.training import LoopContext, evaluate, fit

QUIET = Progress(quiet=True)


def _data(registry):
    data = registry.load("dataset", "toy-data")().load()
    data.validate()
    return data


class _Probe(nn.Module):
    """A tiny regression model that records the dtype its Linear layer computes in."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, 16), nn.Tanh(), nn.Linear(16, 1))
        self.dtypes: list[torch.dtype] = []
        self.loss_dtypes: list[torch.dtype] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x).squeeze(-1)
        self.dtypes.append(out.dtype)
        return out


def _train_probe(data, precision: str, epochs: int = 3) -> tuple[_Probe, torch.Tensor]:
    torch.manual_seed(0)
    x_key = sorted(data["train"].features)[0]
    model = _Probe(data["train"].features[x_key].shape[-1])
    opt = torch.optim.SGD(model.parameters(), lr=0.05)

    def step(batch):
        pred = model(batch.features[x_key][:, 0])
        loss = nn.functional.mse_loss(pred, batch.label)
        model.loss_dtypes.append(loss.dtype)
        return loss, {}

    fit(model, data["train"], step=step, optimizer=opt, device=torch.device("cpu"), seed=3,
        recipe=Recipe(epochs=epochs, batch_size=32, select=None), precision=precision)
    with torch.no_grad():
        out = model(data["test"].features[x_key][:, 0]).float()
    return model, out


def test_bf16_training_is_close_to_fp32_but_not_identical(registry):
    data = _data(registry)
    m32, out32 = _train_probe(data, "fp32")
    m16, out16 = _train_probe(data, "bf16")
    assert set(m32.dtypes) == {torch.float32}
    assert torch.bfloat16 in m16.dtypes[:-1]           # training forwards ran in bf16
    assert set(m16.loss_dtypes) == {torch.float32}      # the loss stays float32 (autocast list)
    # parameters stay float32; weights trained in bf16 differ from fp32 ones, but only a little
    assert all(p.dtype == torch.float32 for p in m16.parameters())
    assert not torch.equal(out32, out16)
    scale = out32.abs().max()
    assert (out32 - out16).abs().max() < 0.05 * scale, (out32 - out16).abs().max()
    # "auto" on CPU is fp32, bit for bit
    _, auto = _train_probe(data, "auto")
    assert torch.equal(auto, out32)


def test_evaluate_runs_the_forward_in_bf16_and_scores_in_fp32(registry):
    from msabench.api import Components

    data = _data(registry)
    method_cls = registry.load("method", "sf")
    config = cfg.method_defaults(method_cls, "toy-data")["model"]
    torch.manual_seed(0)
    model = method_cls(data.info(), config, Components(registry)).eval()
    metrics = [registry.load("metric", k) for k in ("mosi-mae", "mosi-corr")]
    cpu = torch.device("cpu")
    e32 = evaluate(model, data["test"], metrics, 16, cpu, "fp32")
    e16 = evaluate(model, data["test"], metrics, 16, cpu, "bf16")
    assert e16.preds.dtype == torch.float32
    assert not torch.equal(e32.preds, e16.preds)
    assert (e32.preds - e16.preds).abs().max() < 0.05 * e32.preds.abs().max()
    assert abs(e32.metrics["mae"] - e16.metrics["mae"]) < 0.02
    assert isinstance(e16.loss, float)


def test_the_resolved_precision_is_recorded_and_the_key_is_neutral(registry, tmp_path):
    spec = dict(method="sf", dataset="toy-data", quiet=True, epochs=2, seeds=[5])
    [auto] = run(RunSpec(out=tmp_path / "a", **spec), registry=registry, progress=QUIET)
    [bf16] = run(RunSpec(out=tmp_path / "b", overrides=["train.precision=bf16"], **spec),
                 registry=registry, progress=QUIET)
    a, b = (json.loads(o.path.read_text()) for o in (auto, bf16))
    assert a["precision"] == "fp32" and a["config"]["train"]["precision"] == "auto"
    assert b["precision"] == "bf16" and b["config"]["train"]["precision"] == "bf16"
    assert a["config_hash"] != b["config_hash"]          # bf16 is a different run
    assert auto.test != bf16.test                        # and computes different numbers
    # the default is left out of the identity: results made before the key keep their hash
    old = json.loads(json.dumps(a["config"]))
    del old["train"]["precision"], old["train"]["bucket_by_length"]
    assert cfg.config_hash(old) == a["config_hash"]


@pytest.mark.parametrize("value", ["fp16", "BF16", 16, True])
def test_a_bad_precision_names_the_value(registry, tmp_path, value):
    method_cls = registry.load("method", "sf")
    with pytest.raises(ConfigError, match=r"train\.precision=.*must be one of auto, fp32, bf16"):
        cfg.resolve(method_cls, "toy-data", {"train": {"precision": value}})
    with pytest.raises(ConfigError, match=f"train.precision={value!r} is not one of"):
        resolve_precision("cpu", value)
    # a context built around the config check still refuses it when first used
    context = LoopContext(device=torch.device("cpu"), seed=0, train={"precision": value})
    with pytest.raises(ConfigError, match="train.precision"):
        context.precision


def test_resolution_and_the_cpu_notice(monkeypatch):
    import msabench.precision as prec

    assert resolve_precision("cpu", "auto") == "fp32"
    assert resolve_precision("cpu", "bf16") == "bf16"
    assert resolve_precision("cuda", "fp32") == "fp32"
    monkeypatch.setattr(prec, "cpu_has_native_bf16", lambda: False)
    assert "without bfloat16 instructions" in precision_notice("cpu", "bf16")
    assert precision_notice("cpu", "fp32") is None
    monkeypatch.setattr(prec, "cpu_has_native_bf16", lambda: True)
    assert precision_notice("cpu", "bf16") is None
    printed = []

    class Record:
        def print(self, message):
            printed.append(message)

    monkeypatch.setattr(prec, "cpu_has_native_bf16", lambda: False)
    context = LoopContext(device=torch.device("cpu"), seed=0, train={"precision": "bf16"},
                          progress=Record())
    assert context.precision == "bf16" and context.precision == "bf16"
    assert len(printed) == 1 and "bfloat16" in printed[0]   # once per run, not per call
