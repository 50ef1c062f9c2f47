"""``mult``: the Multimodal Transformer (Tsai et al., ACL 2019) as a complete method.

The ``mult`` fusion (crossmodal transformers + memories, see
``msabench_builtins.fusions.mult``) followed by the reference's residual output head
(yaohungt/Multimodal-Transformer ``src/models.py``)::

    h   = fusion(features, masks)                       # (B, M(M-1) dim); 6 dim for t/a/v
    out = Linear(h + proj2(Dropout_out(ReLU(proj1(h)))))  -> (B,) sentiment score

trained as the reference ``src/train.py``: L1 loss, Adam, gradient-norm clipping
(``train.grad_clip``), ``ReduceLROnPlateau(mode="min", factor=0.1, patience=lr_patience)``
stepped with the validation loss every epoch, the checkpoint with the best validation loss
kept. The reference has no early stopping (``train.patience = 0``).

Defaults and where they come from
---------------------------------
- CMU-MOSI (the base defaults, also used for ``synthetic-mosi``): Tsai et al. 2019, Table 5
  (appendix), column CMU-MOSI: batch 128, Adam lr 1e-3, d = 40, 4 crossmodal blocks, 10 heads,
  temporal kernels (text 1-or-3 -> 1) / vision 3 / audio 3, textual embedding dropout 0.2,
  crossmodal attention block dropout 0.2, output dropout 0.1, gradient clip 0.8, 100 epochs.
  Not in the table, from the reference ``main.py`` defaults: relu dropout 0.1, residual dropout
  0.1, audio/vision attention dropout 0.0, ``attn_mask`` on, LR-plateau patience
  (``--when``) 20, memories with ``max(layers, 3)`` layers.
- CMU-MOSEI: the same Table 5, column CMU-MOSEI: batch 16, lr 1e-3, d 40, 4 blocks, 8 heads,
  textual embedding dropout 0.3, attention dropout 0.1, output dropout 0.1, clip 1.0, 20 epochs.
- CH-SIMS / CH-SIMS v2 (not in the paper): thuiar/MMSA ``config/config_regression.json``,
  ``mult.datasetParams.sims``: d 50, 10 heads, 2 levels, kernels text 5 / audio 1 / vision 1,
  lr 2e-3, dropouts text 0.3 / embed 0.1 / attn 0.2 / attn_a 0.1 / attn_v 0 / relu 0 /
  res 0.2 / output 0.1, clip 0.6, plateau patience 10, early stop 8. MMSA trains batches of 16
  and accumulates gradients over ``update_epochs = 8`` batches per Adam step; msabench has no
  accumulation, so batch 128 (the same samples per step). MMSA clips gradient *values*
  (``clip_grad_value_``) and its MulT trainer builds Adam without the configured weight decay;
  here the runner clips the gradient norm and weight decay is 0.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from msabench.api import ComponentMeta, Components, ComposedMethod, DataInfo, Schedule

#: model keys handed to the ``mult`` fusion unchanged
FUSION_KEYS = ("dim", "num_heads", "num_layers", "mem_layers", "kernel_sizes", "attn_mask",
               "key_padding_mask", "last_step", "text_dropout", "embed_dropout",
               "attn_dropout", "attn_dropout_audio", "attn_dropout_vision", "relu_dropout",
               "res_dropout")

_SIMS = {  # MMSA trains until early stopping (8 epochs); 100 is our cap
    "train": {"batch_size": 128, "lr": 2e-3, "grad_clip": 0.6, "patience": 8, "epochs": 100},
    "model": {"dim": 50, "num_heads": 10, "num_layers": 2,
              "kernel_sizes": {"text": 5, "audio": 1, "vision": 1},
              "text_dropout": 0.3, "embed_dropout": 0.1, "attn_dropout": 0.2,
              "attn_dropout_audio": 0.1, "attn_dropout_vision": 0.0, "relu_dropout": 0.0,
              "res_dropout": 0.2, "out_dropout": 0.1, "lr_patience": 10},
}


class MulT(ComposedMethod):
    """MulT: crossmodal transformers over unaligned sequences, residual MLP head, L1 loss."""

    name = "mult"
    meta = ComponentMeta(
        summary="MulT (Tsai et al. 2019): crossmodal transformers, residual head, L1 loss",
        paper="Tsai et al. 2019, Multimodal Transformer for Unaligned Multimodal Language "
              "Sequences (ACL)",
        citation="@inproceedings{tsai2019MULT, title={Multimodal Transformer for Unaligned "
                 "Multimodal Language Sequences}, author={Tsai, Yao-Hung Hubert and Bai, "
                 "Shaojie and Liang, Paul Pu and Kolter, J. Zico and Morency, Louis-Philippe "
                 "and Salakhutdinov, Ruslan}, booktitle={ACL}, year={2019}}",
        url="https://github.com/yaohungt/Multimodal-Transformer",
        license="MIT (reference implementation)",
        defaults_source=(
            "mosi + synthetic-mosi: Tsai et al. 2019 Table 5 (appendix; arXiv 1906.00295, "
            "PMC7195022), CMU-MOSI column (batch 128, "
            "lr 1e-3, d 40, 4 blocks, 10 heads, kernels t1/v3/a3, embedding dropout 0.2, "
            "attention dropout 0.2, output dropout 0.1, clip 0.8, 100 epochs) + "
            "yaohungt/Multimodal-Transformer main.py defaults for the rest (relu/res dropout "
            "0.1, attn_mask, ReduceLROnPlateau patience 20 factor 0.1); mosei: Table 5 "
            "CMU-MOSEI column; chsims/chsims2: thuiar/MMSA config_regression.json "
            "mult.datasetParams.sims (batch 16 x update_epochs 8 -> 128)"),
    )
    defaults = {
        "train": {"epochs": 100, "batch_size": 128, "lr": 1e-3, "weight_decay": 0.0,
                  "patience": 0, "grad_clip": 0.8, "select": "loss"},
        "model": {
            "dim": 40, "num_heads": 10, "num_layers": 4, "mem_layers": 0,
            "kernel_sizes": {"text": 1, "audio": 3, "vision": 3},
            "attn_mask": True, "key_padding_mask": True, "last_step": "valid",
            "text_dropout": 0.2, "embed_dropout": 0.2, "attn_dropout": 0.2,
            "attn_dropout_audio": 0.0, "attn_dropout_vision": 0.0,
            "relu_dropout": 0.1, "res_dropout": 0.1,
            "out_dropout": 0.1,
            "lr_patience": 20,   # ReduceLROnPlateau patience in epochs (reference --when); 0 = off
            "lr_factor": 0.1,
        },
        "pretrain": {},
    }
    dataset_defaults = {
        "mosei": {
            "train": {"batch_size": 16, "lr": 1e-3, "grad_clip": 1.0, "epochs": 20},
            "model": {"num_heads": 8, "text_dropout": 0.3, "embed_dropout": 0.3,
                      "attn_dropout": 0.1, "out_dropout": 0.1},
        },
        "chsims": _SIMS,
        "chsims2": _SIMS,
    }

    def __init__(self, info: DataInfo, config: Mapping[str, Any], components: Components) -> None:
        super().__init__(info, config, components)
        cfg = self.config
        width = self.fusion.output_dim
        self.out_dropout = float(cfg["out_dropout"])
        self.proj1 = nn.Linear(width, width)
        self.proj2 = nn.Linear(width, width)
        self.out_layer = nn.Linear(width, 1)

    def fusion_spec(self) -> tuple[str, dict[str, Any]]:
        return "mult", {k: self.config[k] for k in FUSION_KEYS if k in self.config}

    def head(self, fused: torch.Tensor) -> dict[str, torch.Tensor]:
        """The reference's residual output head. ``forward(batch, cross_scale=...)`` passes
        ``cross_scale`` to the fusion (``fusions/mult.py``)."""
        hidden = self.proj2(F.dropout(F.relu(self.proj1(fused)), self.out_dropout,
                                      self.training)) + fused
        return {"pred": self.out_layer(hidden).squeeze(-1), "fused": fused}

    def configure_scheduler(self, optimizer: torch.optim.Optimizer, train: Mapping[str, Any],
                            steps_per_epoch: int) -> Schedule | None:
        """ReduceLROnPlateau on the validation loss, as the reference (``--when`` epochs)."""
        patience = int(self.config["lr_patience"])
        if patience <= 0:
            return None
        return Schedule(torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=float(self.config["lr_factor"]), patience=patience),
            interval="epoch", monitor="valid_loss")
