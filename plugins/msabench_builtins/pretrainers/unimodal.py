"""``unimodal``: step 1 of boost-mtl's two-step training (paper sec. 3.4).

For each modality of the run, in order: the method's encoder branch and its unimodal head are
trained together on that modality's label with L1 (Adam: pre-trained extractor weights at the
method's ``model.encoder_lr``, heads and adapters at ``lr``, default ``train.lr``), through the
shared loop (a progress bar per modality), and the epoch with the lowest validation L1 on that
label is kept. A modality without unimodal labels is trained on the multimodal label
(``missing = "label"``, the paper's MOSI protocol) or left as it is (``"skip"``). Only
labelled rows with a finite target reach the loss; hidden labels are NaN and never read.

Re-use (``reuse = true``, default): step 1 does not depend on the fusion, so the two-step runs
of one seed with ``concat``, ``tfn`` and ``mult`` would train the same branches three times.
The fine-tuned branch and head weights and the log are saved under
``$MSABENCH_CACHE_DIR/boost-step1/<key>.pt`` (``torch.save``; read back with
``torch.load(weights_only=True)``, never unpickled), the key hashing everything step 1
depends on: the seed, the data (ids, labels, label mask, transcripts, media paths, features),
the method's config without the fusion and multimodal-head keys, the extractors' cache keys,
this stage's options and the recipe keys it reads. Either way the global random state is
re-seeded from the run seed when step 1 ends, so step 2 is bit-identical whether step 1 was
trained or loaded (tested). The log says ``"reused": true`` when it was loaded.

After the last modality, the method's frozen extractors are run once over every split
(``BoostMTL.cache_frozen``) so step 2 (the supervised stage, branches frozen) never runs them
again. In modes other than ``two-step`` the stage does nothing and logs why.

The log (``pretraining.unimodal`` of the result file) holds per modality: the target, the best
epoch, its validation L1 and the per-epoch history (train and validation L1).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from msabench.api import ComponentMeta, Pretrainer, Recipe, SplitData
from msabench.errors import ConfigError


def _reseed(seed: int) -> None:
    """Re-seed python, numpy and torch from the run seed when step 1 ends (step 2's dropout
    then does not depend on whether step 1 was trained or loaded)."""
    derived = (int(seed) * 1_000_003 + 17) % (2**31)
    random.seed(derived)
    np.random.seed(derived)
    torch.manual_seed(derived)


class UnimodalFinetune(Pretrainer):
    """Step 1 of two-step: each encoder + its unimodal head on its own label (module doc)."""

    name = "unimodal"
    meta = ComponentMeta(
        summary="boost-mtl step 1: fine-tune each encoder branch + unimodal head on its label",
        paper="boost-mtl (seed 002) sec. 3.4, two-step multi-task training",
        defaults_source="paper: step 1 fine-tunes each extractor on its unimodal label; epochs, "
                        "patience, batch: our choice (docs/boost-mtl.md)")
    defaults = {"epochs": 10, "patience": 3, "batch_size": 0, "lr": 0.0, "missing": "label",
                "reuse": True}
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
        path = self.checkpoint(model, data, context) if c["reuse"] else None
        logs = self._load(model, path) if path is not None else None
        if logs is None:
            logs = self._train(model, train, valid, batch_size, lr, context, data)
            if path is not None:
                self._save(model, path, logs)
        else:
            context.progress.print(f"seed {context.seed}: boost-mtl step 1 loaded from {path} "
                                   "(same seed, data and step-1 config; pretrain.unimodal.reuse"
                                   "=false trains it again)")
        _reseed(context.seed)
        logs["cache"] = model.cache_frozen(data)
        return logs

    def _train(self, model: Any, train: SplitData, valid: SplitData, batch_size: int, lr: float,
               context: Any, data: Any) -> dict[str, Any]:
        c = self.config
        logs: dict[str, Any] = {}
        for m, target in model.targets.items():
            if target == "label" and c["missing"] == "skip":
                logs[m] = {"target": None, "skipped": "no unimodal label (missing = skip)"}
                continue
            if target == "label":
                context.progress.print(f"note: boost-mtl step 1: {data.meta.name} has no {m} "
                                       "labels; the branch is fine-tuned on the multimodal label")
            logs[m] = self._one(model, m, target, train, valid, batch_size, lr, context)
        return logs

    # ------------------------------------------------------------------ re-use
    def checkpoint(self, model: Any, data: Any, context: Any) -> Path:
        """The cache file of this step 1 (module docstring)."""
        from msabench.fingerprint import cache_root

        digest = hashlib.sha256()
        skip = {"fusion", "fusion_params", "missing_unimodal", "alpha", "cache_frozen"}
        cfg = {k: v for k, v in model.config.items() if k not in skip}
        extractors = {m: b.extractor.cache_key() for m, b in model.branches.items()
                      if b.extractor is not None}
        recipe = {k: context.train.get(k) for k in ("lr", "batch_size", "grad_clip",
                                                     "eval_batch_size")}
        head = {"seed": context.seed, "config": cfg, "extractors": extractors,
                "stage": self.config, "recipe": recipe, "device": str(context.device),
                "targets": model.targets, "modalities": model.modalities, "version": 1}
        digest.update(json.dumps(head, sort_keys=True, default=str).encode())
        for name in sorted(data.splits):
            split = data[name]
            digest.update(f"{name}\0{len(split)}\0".encode())
            digest.update("\0".join(split.ids).encode())
            for t in (split.labels, split.labelled, *[split.unimodal[m] for m in
                                                      sorted(split.unimodal)]):
                digest.update(t.detach().cpu().numpy().tobytes())
            for m in sorted(split.features):
                digest.update(split.features[m].detach().cpu().numpy().tobytes())
                digest.update(split.lengths[m].detach().cpu().numpy().tobytes())
            if split.texts is not None:
                digest.update("\0".join(split.texts).encode())
            for m in sorted(split.media):
                digest.update("\0".join(str(x) for x in split.media[m]).encode())
        return cache_root() / "boost-step1" / f"{digest.hexdigest()[:32]}.pt"

    @staticmethod
    def _weights(model: Any) -> dict[str, torch.Tensor]:
        state = {f"branches.{k}": v for k, v in model.branches.state_dict().items()}
        state.update({f"unimodal_heads.{k}": v
                      for k, v in model.unimodal_heads.state_dict().items()})
        return state

    def _save(self, model: Any, path: Path, logs: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save({"weights": self._weights(model), "log": json.dumps(logs)}, tmp)
        os.replace(tmp, path)

    def _load(self, model: Any, path: Path) -> dict[str, Any] | None:
        if not path.is_file():
            return None
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            weights, log = saved["weights"], json.loads(saved["log"])
            expected = self._weights(model)
            if set(weights) != set(expected) or any(
                    weights[k].shape != expected[k].shape for k in expected):
                return None
        except Exception:  # a damaged or foreign file is ignored and rebuilt, never trusted
            return None
        model.branches.load_state_dict(
            {k[len("branches."):]: v for k, v in weights.items() if k.startswith("branches.")})
        model.unimodal_heads.load_state_dict(
            {k[len("unimodal_heads."):]: v for k, v in weights.items()
             if k.startswith("unimodal_heads.")})
        return {**log, "reused": True}

    def _one(self, model: Any, m: str, target: str, train: SplitData, valid: SplitData,
             batch_size: int, lr: float, context: Any) -> dict[str, Any]:
        module = nn.ModuleDict({"branch": model.branches[m], "head": model.unimodal_heads[m]})
        params = [p for p in module.parameters() if p.requires_grad]
        if not params:
            raise ConfigError(f"boost-mtl step 1: the {m} branch and head have no trainable "
                              "weights")
        optimizer = torch.optim.Adam(model.param_groups(params, lr), foreach=True)

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
