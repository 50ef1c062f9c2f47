"""An msabench plugin in one file: the ``gated-sum`` fusion.

For every modality m: masked mean-pool over time, project to a common ``dim``
(``p_m = W_m pool(x_m) + b_m``), then compute one sigmoid gate per modality from the
concatenation of all projections (``g = sigmoid(W_g [p_text; p_audio; p_vision] + b_g)``).
The fused vector is ``sum_m g_m * p_m``, so ``output_dim == dim``.

Discovery imports this module (to find the ``@hookimpl`` functions) every time ``msabench``
starts, including ``msabench --help``, so the top of the module imports nothing heavy. The
fusion is registered lazily as ``"msabench_example_gated:GatedSumFusion"`` and the class is
built on first attribute access (module ``__getattr__``, PEP 562), which is when torch is
imported. In a package with several modules you would simply put the class in its own module
(``my_pkg/fusion.py``) and register ``"my_pkg.fusion:GatedSumFusion"``.
"""

from __future__ import annotations

from typing import Any

from msabench import hookimpl

__version__ = "0.1.0"

FUSION_NAME = "gated-sum"


@hookimpl
def register_fusions(register):
    # lazy reference: nothing is imported until a run (or `msabench info gated-sum`) uses it
    register(f"{__name__}:GatedSumFusion", name=FUSION_NAME,
             summary="project each pooled modality to dim; sigmoid gate per modality; gated sum")


def _define_fusion() -> type:
    import torch
    from torch import nn

    from msabench.api import ComponentMeta, Fusion, masked_mean

    class GatedSumFusion(Fusion):
        """Gated sum of per-modality projections of the masked time-mean.

        Parameters: ``dim`` (int, default 64), the common projection size and ``output_dim``.
        Works on aligned and unaligned inputs: each modality is pooled with its own mask.
        """

        name = FUSION_NAME
        meta = ComponentMeta(
            summary="project each pooled modality to dim; sigmoid gate per modality; gated sum",
            defaults_source="example plugin choice (dim 64)",
            license="MIT",
        )
        defaults = {"dim": 64}
        requires_aligned = False

        def __init__(self, input_dims, **params: Any) -> None:
            super().__init__(input_dims, **params)  # checks params against ``defaults``
            dim = int(self.params["dim"])
            if dim < 1:
                raise ValueError(f"fusion {self.name}: dim must be >= 1, got {dim}")
            self.order = list(self.input_dims)
            self.proj = nn.ModuleDict(
                {m: nn.Linear(d, dim) for m, d in self.input_dims.items()})
            self.gate = nn.Linear(dim * len(self.order), len(self.order))
            self.output_dim = dim

        def forward(self, features, masks) -> torch.Tensor:
            projected = torch.stack(
                [self.proj[m](masked_mean(features[m], masks[m])) for m in self.order],
                dim=1)                                                    # (B, M, dim)
            gates = torch.sigmoid(self.gate(projected.flatten(1)))        # (B, M)
            return (gates.unsqueeze(-1) * projected).sum(dim=1)           # (B, dim)

    # make the class look module-level (reprs, pickling, `msabench info`)
    GatedSumFusion.__module__ = __name__
    GatedSumFusion.__qualname__ = "GatedSumFusion"
    return GatedSumFusion


def __getattr__(name: str) -> Any:
    if name == "GatedSumFusion":
        cls = _define_fusion()
        globals()[name] = cls  # later lookups bypass __getattr__
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
