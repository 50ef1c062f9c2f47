"""The supervised loop: train, select on validation, stop early, evaluate.

Kept separate from :mod:`msabench.runner` (which resolves names, seeds and files) so methods and
pretrainers can reuse :func:`evaluate` and :func:`seed_everything`.
"""

from __future__ import annotations

import math
import os
import random
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from .api import Method, Metric, SplitData
from .errors import ConfigError


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch; ask torch for deterministic kernels."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name!r} but no CUDA device is available; "
                          "use --set train.device=cpu (or auto)")
    return device


@dataclass
class Evaluation:
    loss: float
    metrics: dict[str, float | None]
    not_applicable: list[str]
    preds: torch.Tensor
    labels: torch.Tensor
    warnings: list[str] = field(default_factory=list)


def compute_metrics(metric_classes: Sequence[type[Metric]], preds: torch.Tensor,
                    labels: torch.Tensor, prediction_kind: str = "regression",
                    metric_warnings: list[str] | None = None,
                    ) -> tuple[dict[str, float | None], list[str]]:
    """Every metric of the convention; NaN becomes None, inapplicable metrics are listed, and
    the metrics' own warnings (e.g. Corr of constant predictions) go to ``metric_warnings``."""
    values: dict[str, float | None] = {}
    not_applicable: list[str] = []
    for cls in metric_classes:
        if cls.needs_regression and prediction_kind == "probability":
            not_applicable.append(cls.key)
            continue
        metric = cls()
        metric.update(preds, labels)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = float(metric.compute())
        for w in caught:
            if metric_warnings is not None and issubclass(w.category, UserWarning):
                metric_warnings.append(f"{cls.key}: {w.message}")
        values[cls.key] = None if math.isnan(value) else value
    return values, not_applicable


@torch.no_grad()
def evaluate(model: Method, split: SplitData, metric_classes: Sequence[type[Metric]],
             batch_size: int, device: torch.device) -> Evaluation:
    model.eval()
    preds, total, count = [], 0.0, 0
    for batch in split.batches(batch_size):
        batch = batch.to(device)
        outputs = model(batch)
        total += float(model.loss(outputs, batch)) * len(batch)
        count += len(batch)
        preds.append(outputs["pred"].detach().float().reshape(-1).cpu())
    pred = torch.cat(preds) if preds else torch.zeros(0)
    caught: list[str] = []
    metrics, na = compute_metrics(metric_classes, pred, split.labels, model.prediction_kind,
                                  caught)
    return Evaluation(total / max(count, 1), metrics, na, pred, split.labels, caught)


@dataclass
class FitResult:
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    best_score: float
    history: list[dict[str, Any]] = field(default_factory=list)


def _direction(select: str, metric_classes: Sequence[type[Metric]]) -> bool:
    """True when higher is better for the selection criterion."""
    if select == "loss":
        return False
    for cls in metric_classes:
        if cls.key == select:
            return bool(cls.higher_is_better)
    raise ConfigError(
        f"train.select={select!r} is neither 'loss' nor a metric of this dataset's convention; "
        f"choose one of: loss, {', '.join(c.key for c in metric_classes)}")


def fit(model: Method, train: SplitData, valid: SplitData, config: Mapping[str, Any],
        metric_classes: Sequence[type[Metric]], device: torch.device, seed: int,
        on_epoch: Callable[[dict[str, Any]], None] | None = None) -> FitResult:
    """Train ``model`` on ``train`` and keep the weights of the best validation epoch."""
    epochs, batch_size = int(config["epochs"]), int(config["batch_size"])
    patience, clip = int(config["patience"]), float(config["grad_clip"])
    select = str(config["select"])
    higher = _direction(select, metric_classes)
    if epochs < 1 or batch_size < 1:
        raise ConfigError(f"train.epochs ({epochs}) and train.batch_size ({batch_size}) must be >= 1")
    optimizer = model.configure_optimizer(config)
    scheduler = getattr(model, "configure_scheduler", lambda opt, cfg, steps: None)(
        optimizer, config, train.num_batches(batch_size))
    generator = torch.Generator().manual_seed(seed)
    best_state: dict[str, torch.Tensor] | None = None
    best_score, best_epoch, history = math.nan, 0, []
    stopped_early = False
    epoch = 0
    for epoch in range(1, epochs + 1):
        model.train()
        loss_sum, n_seen = 0.0, 0
        for batch in train.batches(batch_size, shuffle=True, generator=generator):
            if len(batch) < 2 and len(train) > 1:
                continue  # a lone leftover sample breaks BatchNorm; it is seen in other epochs
            batch = batch.to(device)
            optimizer.zero_grad(set_to_none=True)
            loss, _logs = model.training_step(batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"{model.name}: training loss became {float(loss)} at epoch {epoch}; lower "
                    "train.lr or enable train.grad_clip")
            loss.backward()
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            if scheduler is not None and getattr(scheduler, "step_per_batch", False):
                scheduler.step()
            loss_sum += float(loss.detach()) * len(batch)
            n_seen += len(batch)
        val = evaluate(model, valid, metric_classes, int(config["eval_batch_size"]), device)
        score = val.loss if select == "loss" else val.metrics.get(select)
        if score is None or math.isnan(score):
            raise ConfigError(f"validation {select} is undefined at epoch {epoch}; "
                              "choose another train.select")
        improved = best_state is None or (score > best_score if higher else score < best_score)
        if improved:
            best_score, best_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        row = {"epoch": epoch, "train_loss": loss_sum / max(n_seen, 1), "valid_loss": val.loss,
               f"valid_{select}": score, "best_epoch": best_epoch, "best": best_score}
        history.append(row)
        if scheduler is not None and not getattr(scheduler, "step_per_batch", False):
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(val.loss)
            else:
                scheduler.step()
        if on_epoch is not None:
            on_epoch(row)
        if patience > 0 and epoch - best_epoch >= patience:
            stopped_early = epoch < epochs
            break
    assert best_state is not None
    model.load_state_dict(best_state)
    return FitResult(best_epoch, epoch, stopped_early, best_score, history)
