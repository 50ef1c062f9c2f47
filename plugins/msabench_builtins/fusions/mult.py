"""``mult``: the Multimodal Transformer fusion (Tsai et al., ACL 2019).

Reference: yaohungt/Multimodal-Transformer ``src/models.py`` (MULTModel) and ``modules/``;
the blocks are in :mod:`._transformer`. Per modality ``m`` (in input order):

1. padded steps are zeroed; text gets input dropout (``text_dropout``); a bias-free Conv1d
   (``kernel_sizes[m]``, "same" padding: ``(k-1)//2`` zeros on the left, the rest on the right)
   projects ``D_m -> dim``. The reference uses kernel 1; the paper's Table 5 lists 1-or-3/3/3
   (text/vision/audio) on MOSI and MOSEI; MMSA uses unpadded ("valid") convolutions.
2. for every target ``X`` and every other modality ``Y`` a crossmodal transformer
   (``num_layers`` pre-LN layers, ``num_heads`` heads) in which ``X`` attends to ``Y``; its
   output ``h_{X<-Y}`` (B, T_X, dim) is multiplied by ``cross_scale[(X, Y)]`` when given
   (the hook CorMulT uses: ``(1 + Cor_XY)``); attention dropout is chosen by the *source*
   modality as in the reference (``attn_dropout_audio``/``attn_dropout_vision`` for audio and
   vision sources, ``attn_dropout`` otherwise and in the memories);
3. per target, a self-attention "memory" transformer over the concatenation of its crossmodal
   outputs (width ``(M-1) * dim``; ``max(num_layers, 3)`` layers unless ``mem_layers`` > 0);
4. the memory output at the target's **last valid step** per sample (``last_step = "valid"``,
   our choice for padded batches; the reference takes the last padded step: ``"padded"``);
5. the targets' vectors concatenated: ``output_dim = M * (M-1) * dim`` (6 * dim for three
   modalities, as the reference).

With two modalities each target attends to the other one (output ``2 * dim``). With a single
modality there is no other source: its "crossmodal" transformer is a self-attention
transformer (pair ``(X, X)``) followed by the memory (output ``dim``).

Key padding masks built from the batch masks (``key_padding_mask = true``) are a documented
improvement over the reference, which attends to padded steps; they add no parameters. With
them (and ``last_step = "valid"``) padded steps cannot reach a valid one, so :meth:`encode`
runs the batch in length groups cut to their valid steps (same outputs up to float rounding,
about half the attention work on MOSI-shaped batches of 128; ``GROUP_SIZE``).
``attn_mask`` (default true, as the reference) applies the future mask in every transformer.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from msabench.api import ComponentMeta, Fusion

from ._transformer import TransformerEncoder

_LAST_STEP = ("valid", "padded")

#: samples per length group in :meth:`MulTFusion.encode` (0: no grouping, no trimming)
GROUP_SIZE = 16


class MulTFusion(Fusion):
    """MulT: crossmodal transformers for every ordered modality pair, self-attention memories
    per target, last step of each memory, concatenated."""

    name = "mult"
    meta = ComponentMeta(
        summary="MulT: six crossmodal transformers + self-attention memories",
        paper="Tsai et al. 2019, Multimodal Transformer for Unaligned Multimodal Language "
              "Sequences (ACL)",
        url="https://github.com/yaohungt/Multimodal-Transformer",
        license="MIT (reference implementation)",
        defaults_source="Tsai et al. 2019 Table 5 (CMU-MOSI): dim 40, 4 crossmodal blocks, "
                        "10 heads, kernels text 1 / audio 3 / vision 3, textual embedding "
                        "dropout 0.2, crossmodal attention dropout 0.2; other dropouts: "
                        "yaohungt/Multimodal-Transformer main.py defaults",
    )
    defaults: dict[str, Any] = {
        "dim": 40,
        "num_heads": 10,
        "num_layers": 4,
        "mem_layers": 0,            # 0 = max(num_layers, 3), the reference rule
        "kernel_sizes": {"text": 1, "audio": 3, "vision": 3},
        "attn_mask": True,
        "key_padding_mask": True,
        "last_step": "valid",
        "text_dropout": 0.2,        # input dropout on text features (reference: embed_dropout)
        "embed_dropout": 0.2,       # after scaling + positions, in every transformer
        "attn_dropout": 0.2,        # text source and the memories
        "attn_dropout_audio": 0.0,  # audio source
        "attn_dropout_vision": 0.0,  # vision source
        "relu_dropout": 0.1,
        "res_dropout": 0.1,
    }
    supports_absent = True

    def __init__(self, input_dims: Mapping[str, int], **params: Any) -> None:
        super().__init__(input_dims, **params)
        p = self.params
        if not self.input_dims:
            raise ValueError("fusion mult: no modalities")
        d, heads = int(p["dim"]), int(p["num_heads"])
        if d < 1 or heads < 1 or int(p["num_layers"]) < 1:
            raise ValueError(f"fusion mult: dim ({d}), num_heads ({heads}) and num_layers "
                             f"({p['num_layers']}) must be >= 1")
        if d % heads:
            raise ValueError(f"fusion mult: dim={d} is not divisible by num_heads={heads}; "
                             "choose e.g. dim=40 with 10, 8, 5 or 4 heads")
        if p["last_step"] not in _LAST_STEP:
            raise ValueError(f"fusion mult: last_step must be one of {_LAST_STEP}, "
                             f"got {p['last_step']!r}")
        kernels = dict(p["kernel_sizes"] or {})
        self.order = list(self.input_dims)
        self.dim = d
        self.kernel = {m: int(kernels.get(m, 1)) for m in self.order}
        for m, k in self.kernel.items():
            if k < 1:
                raise ValueError(f"fusion mult: kernel_sizes.{m}={k} must be >= 1")
        self.proj = nn.ModuleDict({
            m: nn.Conv1d(dim_m, d, kernel_size=self.kernel[m], bias=False)
            for m, dim_m in self.input_dims.items()})
        self.pairs = {x: [y for y in self.order if y != x] or [x] for x in self.order}
        drop = {"audio": p["attn_dropout_audio"], "vision": p["attn_dropout_vision"]}
        common = dict(num_heads=heads, relu_dropout=float(p["relu_dropout"]),
                      res_dropout=float(p["res_dropout"]),
                      embed_dropout=float(p["embed_dropout"]), future_mask=bool(p["attn_mask"]))
        self.cross = nn.ModuleDict({
            self.pair_key(x, y): TransformerEncoder(
                d, layers=int(p["num_layers"]),
                attn_dropout=float(drop.get(y, p["attn_dropout"])), **common)
            for x in self.order for y in self.pairs[x]})
        mem_layers = int(p["mem_layers"]) or max(int(p["num_layers"]), 3)
        for x in self.order:
            if (len(self.pairs[x]) * d) % heads:
                raise ValueError(f"fusion mult: memory width {len(self.pairs[x]) * d} is not "
                                 f"divisible by num_heads={heads}")
        self.memory = nn.ModuleDict({
            x: TransformerEncoder(len(self.pairs[x]) * d, layers=mem_layers,
                                  attn_dropout=float(p["attn_dropout"]), **common)
            for x in self.order})
        self.part_dims = {x: len(self.pairs[x]) * d for x in self.order}
        self.output_dim = sum(self.part_dims.values())

    @staticmethod
    def pair_key(target: str, source: str) -> str:
        """ModuleDict key of the crossmodal transformer in which ``target`` attends to
        ``source``."""
        return f"{target}<-{source}"

    # ----------------------------------------------------------------------------------------
    def project(self, features: Mapping[str, torch.Tensor],
                masks: Mapping[str, torch.Tensor],
                absent: frozenset[str] = frozenset()) -> dict[str, torch.Tensor]:
        """Zero padding, text dropout, temporal Conv1d: modality -> (B, T_m, dim)."""
        out = {}
        for m in self.order:
            if m in absent:
                continue
            x = features[m] * masks[m].unsqueeze(-1).to(features[m].dtype)
            if m == "text":
                x = F.dropout(x, float(self.params["text_dropout"]), self.training)
            k = self.kernel[m]
            x = F.pad(x.transpose(1, 2), ((k - 1) // 2, k - 1 - (k - 1) // 2))
            out[m] = self.proj[m](x).transpose(1, 2)
        return out

    def encode(self, features: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor],
               cross_scale: Mapping[tuple[str, str], torch.Tensor | float] | None = None,
               absent: frozenset[str] = frozenset()) -> dict[str, Any]:
        """Every intermediate: ``cross[(X, Y)]`` (B, T_X, dim) after scaling, ``memory[X]``
        (B, T_X, part_dims[X]) and ``last[X]`` (B, part_dims[X]).

        ``absent`` modalities are left out: every crossmodal block that reads one (as target
        or source) is skipped and its output is zero, so nothing depends on their inputs.

        With key padding masks and ``last_step = "valid"`` nothing at a padded step reaches a
        valid one, so the batch runs in length groups: samples sorted by their total valid
        length, ``GROUP_SIZE`` at a time, each group cut to its longest valid steps per
        modality (attention costs Tq x Tk: on MOSI-shaped batches of 128 the groups hold about
        half the attention weights of the padded batch). The outputs at valid steps are those of the whole padded batch
        (up to float rounding); ``cross``/``memory`` hold zeros at the steps cut off.
        """
        missing = [m for m in self.order if m not in features or m not in masks]
        if missing:
            raise ValueError(f"fusion mult: missing modality {missing[0]!r}; it was built for "
                             f"{', '.join(self.order)}")
        masks = {m: masks[m].bool() for m in self.order}
        scales = dict(cross_scale or {})
        unknown = set(scales) - {(x, y) for x in self.order for y in self.pairs[x]}
        if unknown:
            raise ValueError(f"fusion mult: cross_scale has unknown pair(s) {sorted(unknown)}; "
                             f"pairs are (target, source) among {self.order}")
        absent = frozenset(absent)
        groups = self._groups(masks, absent)
        if groups is None:
            return self._encode(features, masks, scales, absent)
        batch = masks[self.order[0]].shape[0]
        parts = []
        for idx in groups:
            ends = {m: 1 if m in absent else max(1, int(self._ends(masks[m])[idx].max()))
                    for m in self.order}
            sub_f = {m: features[m][idx, :ends[m]] for m in self.order}
            sub_m = {m: masks[m][idx, :ends[m]] for m in self.order}
            sub_s = {pair: (s[idx] if isinstance(s, torch.Tensor) and s.dim() else s)
                     for pair, s in scales.items()}
            parts.append(self._encode(sub_f, sub_m, sub_s, absent))
        if len(groups) == 1 and groups[0].numel() == batch and bool(
                (groups[0] == torch.arange(batch, device=groups[0].device)).all()):
            inverse = None
        else:
            inverse = torch.argsort(torch.cat(groups))

        def join(tensors: list[torch.Tensor], steps: int | None) -> torch.Tensor:
            if steps is not None:
                tensors = [F.pad(t, (0, 0, 0, steps - t.shape[1])) for t in tensors]
            out = torch.cat(tensors) if len(tensors) > 1 else tensors[0]
            return out if inverse is None else out[inverse]

        steps = {m: features[m].shape[1] for m in self.order}
        return {"cross": {pair: join([p["cross"][pair] for p in parts], steps[pair[0]])
                          for pair in parts[0]["cross"]},
                "memory": {x: join([p["memory"][x] for p in parts], steps[x])
                           for x in self.order},
                "last": {x: join([p["last"][x] for p in parts], None) for x in self.order}}

    @staticmethod
    def _ends(mask: torch.Tensor) -> torch.Tensor:
        """(B,) the last valid step + 1 (0 for an empty row)."""
        steps = torch.arange(1, mask.shape[1] + 1, device=mask.device)
        return (mask * steps).amax(1) if mask.shape[1] else mask.new_zeros(mask.shape[0])

    def _groups(self, masks: Mapping[str, torch.Tensor],
                absent: frozenset[str] = frozenset()) -> list[torch.Tensor] | None:
        """Sample indices per length group (from the present modalities' lengths), or None
        when padding must be kept."""
        if (GROUP_SIZE < 1 or not self.params["key_padding_mask"]
                or self.params["last_step"] != "valid"):
            return None
        present = [m for m in self.order if m not in absent]
        ends = torch.stack([self._ends(masks[m]) for m in present]).sum(0)
        if bool((ends == sum(masks[m].shape[1] for m in present)).all()):
            return None  # nothing to cut
        order = torch.argsort(ends, stable=True)
        return list(order.split(GROUP_SIZE))

    def _encode(self, features: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor],
                scales: Mapping[tuple[str, str], torch.Tensor | float],
                absent: frozenset[str] = frozenset()) -> dict[str, Any]:
        use_kpm = bool(self.params["key_padding_mask"])
        valid = {m: (masks[m] if use_kpm else None) for m in self.order}
        proj = self.project(features, masks, absent)
        cross, memory, last = {}, {}, {}
        for x in self.order:
            if x in absent:  # no target sequence: its memory and last vector are zero
                steps = features[x].shape[1]
                batch = next(iter(proj.values())).shape[0]
                memory[x] = features[x].new_zeros(batch, steps, self.part_dims[x])
                last[x] = features[x].new_zeros(batch, self.part_dims[x])
                continue
            hs = []
            for y in self.pairs[x]:
                net = self.cross[self.pair_key(x, y)]
                if y in absent:  # the block that reads y is skipped
                    h = torch.zeros_like(proj[x])
                elif y == x:
                    h = net(proj[x], tgt_valid=valid[x])
                else:
                    h = net(proj[x], proj[y], tgt_valid=valid[x], src_valid=valid[y])
                if (x, y) in scales:
                    s = torch.as_tensor(scales[(x, y)], dtype=h.dtype, device=h.device)
                    h = h * (s.view(-1, 1, 1) if s.dim() else s)
                cross[(x, y)] = h
                hs.append(h)
            seq = self.memory[x](torch.cat(hs, dim=-1), tgt_valid=valid[x])
            memory[x] = seq
            lengths = masks[x].sum(1)
            if self.params["last_step"] == "valid":
                idx = (lengths - 1).clamp_min(0)
            else:
                idx = torch.full_like(lengths, seq.shape[1] - 1)
            vec = seq[torch.arange(seq.shape[0], device=seq.device), idx]
            if self.params["last_step"] == "valid":
                vec = vec * (lengths > 0).to(vec.dtype).unsqueeze(-1)  # empty modality -> 0
            last[x] = vec
        return {"cross": cross, "memory": memory, "last": last}

    def forward(self, features: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor],
                cross_scale: Mapping[tuple[str, str], torch.Tensor | float] | None = None,
                absent: frozenset[str] = frozenset()) -> torch.Tensor:
        """(B, output_dim): the targets' last-step memory vectors, in modality order (an
        ``absent`` target's part zero).

        ``cross_scale[(target, source)]``: a scalar or (B,) tensor multiplying the crossmodal
        output ``h_{target<-source}``; pairs not given are left unscaled.
        """
        last = self.encode(features, masks, cross_scale, absent)["last"]
        return torch.cat([last[x] for x in self.order], dim=-1)
