"""``unimodal``: step 1 of boost-mtl's two-step training (paper sec. 3.4).

For each modality of the run, in order: the method's encoder branch and its unimodal head are
trained together on that modality's label with L1 (Adam: pre-trained extractor weights at the
method's ``model.encoder_lr``, heads and adapters at ``lr``, default ``train.lr``), through the
shared loop (a progress bar per modality), and the epoch with the lowest validation L1 on that
label is kept. A modality without unimodal labels is trained on the multimodal label
(``missing = "label"``, the paper's MOSI protocol) or left as it is (``"skip"``). Only
labelled rows with a finite target reach the loss; hidden labels are NaN and never read.

After the last modality, the method's frozen extractors are run once over every split
(``BoostMTL.cache_frozen``) so step 2 (the supervised stage, branches frozen) never runs them
again. In modes other than ``two-step`` the stage does nothing and logs why.

The log (``pretraining.unimodal`` of the result file) holds per modality: the target, the best
epoch, its validation L1 and the per-epoch history (train and validation L1).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from msabench.api import ComponentMeta, Pretrainer, Recipe, SplitData
from msabench.errors import ConfigError


class UnimodalFinetune(Pretrainer):
    """Step 1 of two-step: each encoder + its unimodal head on its own label (module doc)."""

    name = "unimodal"
    meta = ComponentMeta(
        summary="boost-mtl step 1: fine-tune each encoder branch + unimodal head on its label",
        paper="boost-mtl (seed 002) sec. 3.4, two-step multi-task training",
        defaults_source="paper: step 1 fine-tunes each extractor on its unimodal label; epochs, "
                        "patience, batch: our choice (docs/boost-mtl.md)")
    defaults = {"epochs": 10, "patience": 3, "batch_size": 0, "lr": 0.0, "missing": "label"}
    requires = ("unimodal", "branches", "unimodal_heads", "param_groups", "cache_frozen")
    epoch_keys = ("epochs",)

    def fit(self, model: Any, data: Any, context: Any) -> dict[str, Any]:
        c = self.config
        if c["missing"] not in ("label", "skip"):
            raise ConfigError(f"pretrain.unimodal.missing={c['missing']!r} must be 'label' or "
                              "'skip'")
        if getattr(model, "mode", None) != "two-step":
            return {"skipped": f"model.mode={getattr(model, 'mode', None)!r}: step 1 runs only "
                               "in two-step mode"}
        train, valid = data["train"], data["valid"]
        batch_size = int(c["batch_size"]) or int(context.train["batch_size"])
        lr = float(c["lr"]) or float(context.train["lr"])
        logs: dict[str, Any] = {}
        for m, target in model.targets.items():
            if target == "label" and c["missing"] == "skip":
                logs[m] = {"target": None, "skipped": "no unimodal label (missing = skip)"}
                continue
            if target == "label":
                context.progress.print(f"note: boost-mtl step 1: {data.meta.name} has no {m} "
                                       "labels; the branch is fine-tuned on the multimodal label")
            logs[m] = self._one(model, m, target, train, valid, batch_size, lr, context)
        logs["cache"] = model.cache_frozen(data)
        return logs

    def _one(self, model: Any, m: str, target: str, train: SplitData, valid: SplitData,
             batch_size: int, lr: float, context: Any) -> dict[str, Any]:
        module = nn.ModuleDict({"branch": model.branches[m], "head": model.unimodal_heads[m]})
        params = [p for p in module.parameters() if p.requires_grad]
        if not params:
            raise ConfigError(f"boost-mtl step 1: the {m} branch and head have no trainable "
                              "weights")
        optimizer = torch.optim.Adam(model.param_groups(params, lr))

        def target_of(batch: Any) -> torch.Tensor:
            return batch.label if target == "label" else batch.unimodal[target]

        def step(batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
            ok = batch.labelled & torch.isfinite(target_of(batch))
            pred = model.unimodal(batch, m)
            if not bool(ok.any()):
                return pred.sum() * 0.0, {}
            return (pred[ok] - target_of(batch)[ok]).abs().mean(), {}

        def score() -> dict[str, float]:
            module.eval()
            total, count = 0.0, 0
            with torch.no_grad():
                for batch in valid.batches(int(context.train.get("eval_batch_size", 64))):
                    batch = batch.to(context.device)
                    ok = batch.labelled & torch.isfinite(target_of(batch))
                    if bool(ok.any()):
                        pred = model.unimodal(batch, m)
                        total += float((pred[ok] - target_of(batch)[ok]).abs().sum())
                        count += int(ok.sum())
            return {"l1": total / count if count else math.nan}

        recipe = Recipe(epochs=int(self.config["epochs"]), batch_size=batch_size,
                        patience=int(self.config["patience"]),
                        grad_clip=float(context.train.get("grad_clip", 0.0)), select="l1")
        result = context.fit(module, train, valid, step=step, optimizer=optimizer,
                             recipe=recipe, score=score, name=f"step 1 {m}")
        return {"target": target, "best_epoch": result.best_epoch,
                "best_valid_l1": result.best_score, "epochs_run": result.epochs_run,
                "history": result.history}
