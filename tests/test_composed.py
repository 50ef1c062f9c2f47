"""ComposedMethod: the shared "modalities -> registered fusion -> head" base of sf, tfn, lmf and
mult, and a third-party-style subclass of it that works with any registered fusion."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from msabench import hookimpl
from msabench.api import (Batch, ComponentMeta, Components, ComposedMethod, DataInfo,
                          DatasetMeta, Method)
from msabench.config import deep_merge, method_defaults
from msabench.plugins import PluginSystem, get_registry, set_plugin_system
from msabench.runner import Progress, RunSpec, run
from tests import all_hooks_plugin

COMPOSED = ("sf", "tfn", "lmf", "mult")
META = DatasetMeta(name="mosi-like", title="MOSI-shaped", language="en",
                   label_range=(-3.0, 3.0), convention="mosi")
DIMS = {"text": 12, "audio": 5, "vision": 7}
LENS = {"text": 6, "audio": 9, "vision": 8}
#: small parameters per registered fusion (a fusion not listed here runs with its defaults)
TINY_FUSION = {
    "tfn": {"hidden": {"text": 6, "audio": 3, "vision": 3}, "text_out": 3},
    "lmf": {"hidden": {"text": 6, "audio": 3, "vision": 3}, "rank": 2, "output_dim": 4},
    "mult": {"dim": 8, "num_heads": 2, "num_layers": 1},
}
#: fusions outside the features + masks contract, with the test that covers them
NOT_COMPOSABLE = {"mag": "takes BERT token ids (features['text_bert']) and a pretrained "
                         "encoder; covered by tests/test_baselines_mag.py"}
TINY_MODEL = {  # built-ins' model overrides that keep the test fast
    "sf": {"hidden": 8},
    "tfn": {"hidden": {"text": 6, "audio": 3, "vision": 3}, "text_out": 3, "post_fusion_dim": 4},
    "lmf": {"hidden": {"text": 6, "audio": 3, "vision": 3}, "rank": 2},
    "mult": {"dim": 8, "num_heads": 2, "num_layers": 1},
}


def _info(modalities=tuple(DIMS)) -> DataInfo:
    return DataInfo(meta=META, setting="default", modalities=tuple(modalities),
                    feature_dims={m: DIMS[m] for m in modalities},
                    max_lengths={m: LENS[m] for m in modalities}, aligned=False,
                    has_unimodal_labels=False, has_texts=False)


def _batch(modalities=tuple(DIMS), n=5) -> Batch:
    g = torch.Generator().manual_seed(3)
    return Batch(ids=[str(i) for i in range(n)],
                 features={m: torch.randn(n, LENS[m], DIMS[m], generator=g) for m in modalities},
                 lengths={m: torch.randint(1, LENS[m] + 1, (n,), generator=g)
                          for m in modalities},
                 label=torch.rand(n, generator=g) * 6 - 3,
                 labelled=torch.ones(n, dtype=torch.bool))


class PooledHead(ComposedMethod):
    """A third-party-style method: any fusion (``model.fusion``), then one linear layer."""

    name = "pooled-head"
    meta = ComponentMeta(summary="any registered fusion, then a linear layer")
    defaults = {"train": {"epochs": 2, "batch_size": 32, "lr": 1e-2},
                "model": {"fusion": "concat", "fusion_params": {}}, "pretrain": {}}

    def __init__(self, info, config, components):
        super().__init__(info, config, components)
        self.out = nn.Linear(self.fusion.output_dim, 1)

    def head(self, fused):
        return {"pred": self.out(fused).squeeze(-1)}


class _ThirdParty:
    @staticmethod
    @hookimpl
    def register_methods(register):
        register(PooledHead)


def _build(name: str, info: DataInfo) -> Method:
    registry = get_registry()
    cls = registry.load("method", name)
    config = deep_merge(method_defaults(cls, "mosi"), {"model": TINY_MODEL[name]})
    return cls(info, config["model"], Components(registry))


@pytest.mark.parametrize("name", COMPOSED)
def test_builtin_composed_methods_differ_only_in_their_head(name):
    """sf, tfn, lmf and mult inherit the prologue (modalities, fusion, fuse, forward) and
    supply only the fusion's name and parameters and the head."""
    cls = get_registry().load("method", name)
    assert issubclass(cls, ComposedMethod)
    own = set(vars(cls))
    assert "head" in own
    assert not own & {"forward", "fuse"}, f"{name} re-implements the composed forward"

    info = _info(("text", "audio"))
    method = _build(name, info)
    fusion_name, params = method.fusion_spec()
    assert method.modalities == ["text", "audio"]
    assert isinstance(method.fusion, get_registry().load("fusion", fusion_name))
    assert method.fusion.input_dims == {"text": 12, "audio": 5}
    assert set(params) <= set(method.fusion.params)
    # the fusion's parameters come first: the head is built on top of them
    names = [n for n, _ in method.named_parameters()]
    fusion_count = sum(1 for _ in method.fusion.parameters())
    assert all(n.startswith("fusion.") for n in names[:fusion_count])

    method.eval()
    batch = _batch(("text", "audio"))
    with torch.no_grad():
        out = method(batch)
        direct = method.head(method.fuse(batch))
    assert out.keys() == direct.keys() and "pred" in out
    for key in out:
        torch.testing.assert_close(out[key], direct[key], rtol=0, atol=0)
    assert out["pred"].shape == (5,)


def test_fuse_passes_keyword_arguments_to_the_fusion():
    method = _build("mult", _info())
    method.eval()
    batch = _batch()
    pairs = [(a, b) for a in DIMS for b in DIMS if a != b]
    with torch.no_grad():
        plain = method(batch)["pred"]
        ones = method(batch, cross_scale={p: 1.0 for p in pairs})["pred"]
        zeroed = method(batch, cross_scale={p: 0.0 for p in pairs})["pred"]
    torch.testing.assert_close(plain, ones, rtol=0, atol=0)
    assert not torch.allclose(plain, zeroed)


def test_head_is_reserved_for_the_method():
    class Clash(PooledHead):
        def __init__(self, info, config, components):
            super().__init__(info, config, components)
            self.head = nn.Linear(1, 1)

    with pytest.raises(AttributeError, match="'head' is ComposedMethod.head"):
        Clash(_info(), PooledHead.defaults["model"], Components(get_registry()))


@pytest.mark.parametrize("fusion", get_registry().names("fusion"))
def test_third_party_subclass_works_with_any_registered_fusion(fusion):
    if fusion in NOT_COMPOSABLE:
        pytest.skip(NOT_COMPOSABLE[fusion])
    config = {"fusion": fusion, "fusion_params": TINY_FUSION.get(fusion, {})}
    torch.manual_seed(0)
    method = PooledHead(_info(), config, Components(get_registry()))
    batch = _batch()
    method.train()
    out = method(batch)
    assert out["pred"].shape == (5,) and torch.isfinite(out["pred"]).all()
    loss = method.loss(out, batch)
    loss.backward()
    assert method.out.weight.grad is not None
    grads = [p.grad for p in method.fusion.parameters() if p.requires_grad]
    assert not grads or any(g is not None and bool(g.abs().sum() > 0) for g in grads)


def test_third_party_subclass_runs_end_to_end(tmp_path):
    system = PluginSystem()
    system.load_entry_points()
    system.register(all_hooks_plugin, "all-hooks")
    system.register(_ThirdParty, "third-party-composed")
    set_plugin_system(system)
    spec = RunSpec(method="pooled-head", dataset="toy-data", out=tmp_path, quiet=True,
                   overrides=["model.fusion=tfn", "model.fusion_params.hidden.text=4",
                              "model.fusion_params.hidden.audio=2",
                              "model.fusion_params.text_out=2"])
    [outcome] = run(spec, registry=system.registry, progress=Progress(quiet=True))
    result = json.loads(outcome.path.read_text())
    assert result["config"]["model"]["fusion"] == "tfn"
    assert result["epochs_run"] == 2 and result["parameters"]["trainable"] > 0
