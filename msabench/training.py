"""The one training loop of msabench, and evaluation of every head of a method.

:class:`LoopContext` is the runner's :class:`msabench.api.RunContext`: pretrainers and methods
reach :func:`fit` and :func:`evaluate` through it. :func:`fit_method` is the supervised stage
the runner runs for every method.
"""

from __future__ import annotations

import math
import os
import random
import sys
import warnings
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .api import (Batch, Evaluation, FitResult, Method, Metric, Recipe, RunContext, Schedule,
                  SplitData)
from .api.context import EpochHook, ScoreFn, StepFn
from .errors import ConfigError, TrainingDiverged
from .precision import autocast_context, precision_notice, resolve_precision


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch; ask torch for deterministic kernels."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    # torch.use_deterministic_algorithms also sets torch._inductor.config.deterministic, and
    # importing that config imports inductor and dynamo: 2.5-4 s per process on a 2-core
    # machine (paid by every Ray worker, every `msabench run`). Nothing here compiles, so the
    # kernel flag is set directly; inductor's flag too once something has imported it.
    if "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch._C._set_deterministic_algorithms(True, warn_only=True)
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def default_threads() -> int:
    """The CPUs this process may run on (its affinity mask: taskset, cgroup cpusets, a batch
    scheduler's allocation), not the machine's core count torch assumes."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover (not Linux)
        return max(1, os.cpu_count() or 1)


def set_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads; returns the count. ``None``: torch's current count
    (``OMP_NUM_THREADS`` or the machine's cores) capped at :func:`default_threads`, the CPUs
    this process may actually use. The same seed gives bit-identical CPU results only with
    the same thread count (float reductions are split differently), so every result records
    ``torch_threads``."""
    n = int(threads) if threads is not None else min(torch.get_num_threads(), default_threads())
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name!r} but no CUDA device is available; "
                          "use --set train.device=cpu (or auto)")
    return device


# ------------------------------------------------------------------ metrics and evaluation
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


def _targets(split: SplitData, target: str) -> torch.Tensor | None:
    return split.labels if target == "label" else split.unimodal.get(target)


def _fp32(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """The outputs with floating tensors in float32 (bf16 autocast leaves some in bfloat16)."""
    return {k: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v
            for k, v in outputs.items()}


@torch.no_grad()
def evaluate(model: Method, split: SplitData, metric_classes: Sequence[type[Metric]],
             batch_size: int, device: torch.device, precision: str = "fp32") -> Evaluation:
    """Loss and every head's metrics. A head whose target the split lacks (no unimodal labels)
    is skipped; rows whose target is NaN (hidden) are left out of that head's metrics. The
    forward pass runs in ``precision`` (:mod:`msabench.precision`); the loss and the metrics
    are computed from float32 outputs."""
    model.eval()
    heads = model.check_heads()
    outs: dict[str, list[torch.Tensor]] = {h: [] for h in heads}
    total, count = 0.0, 0
    for batch in split.batches(batch_size):
        batch = batch.to(device)
        with autocast_context(device, precision):
            outputs = model(batch)
        outputs = _fp32(outputs)
        total += float(model.loss(outputs, batch)) * len(batch)
        count += len(batch)
        for head in heads:
            if head in outputs:
                outs[head].append(outputs[head].detach().float().reshape(-1).cpu())
    pred = torch.cat(outs["pred"]) if outs["pred"] else torch.zeros(0)
    # rows whose label is hidden (a partly labelled validation split) are not scored
    scored = split.labelled & torch.isfinite(split.labels)
    caught: list[str] = []
    metrics, na = compute_metrics(metric_classes, pred[scored], split.labels[scored],
                                  model.prediction_kind, caught)
    extra: dict[str, dict[str, Any]] = {}
    for head, target in heads.items():
        y = _targets(split, target)
        if head == "pred" or y is None or not outs[head]:
            continue
        p = torch.cat(outs[head])
        keep = torch.isfinite(y)
        head_warnings: list[str] = []
        values, head_na = compute_metrics(metric_classes, p[keep], y[keep],
                                          model.prediction_kind, head_warnings)
        extra[head] = {"target": target, "metrics": values, "not_applicable": head_na,
                       "warnings": head_warnings}
    return Evaluation(total / max(count, 1), metrics, na, pred, split.labels, caught, extra)


# ------------------------------------------------------------------ the loop
def _finite_or_raise(loss: torch.Tensor, name: str, epoch: int) -> None:
    if not torch.isfinite(loss):
        raise TrainingDiverged(
            f"{name}: training loss became {float(loss.detach())} at epoch {epoch}; no result "
            "is written for this seed. Lower the learning rate, enable gradient clipping "
            "(train.grad_clip), or check the inputs (msabench data check)")


def _step_schedule(schedule: Schedule | None, row: Mapping[str, Any]) -> None:
    if schedule is None:
        return
    if schedule.monitor is not None:
        if schedule.monitor not in row:
            raise ConfigError(f"the scheduler monitors {schedule.monitor!r}, which this stage "
                              f"does not log (logged: {', '.join(sorted(row))})")
        schedule.scheduler.step(row[schedule.monitor])
    else:
        schedule.scheduler.step()


def epoch_order(train: SplitData, batch_size: int, generator: torch.Generator,
                lengths: torch.Tensor | None = None) -> list[torch.Tensor]:
    """The index tensors of one training epoch's batches, in the order :func:`fit` trains
    them: shuffled batches (one ``randperm`` from ``generator``), or, given per-sample
    ``lengths`` (``recipe.bucket_by_length``), :func:`msabench.bucketing.bucketed_order`.
    Benchmarks use it to replay exactly the loop's batches."""
    if lengths is None:
        return train.batch_indices(batch_size, shuffle=True, generator=generator)
    from .bucketing import bucketed_order

    return bucketed_order(lengths, batch_size, generator)


def fit(module: nn.Module, train: SplitData, valid: SplitData | None = None, *, step: StepFn,
        optimizer: torch.optim.Optimizer, recipe: Recipe, device: torch.device, seed: int,
        score: ScoreFn | None = None, schedule: Schedule | None = None,
        frozen: Sequence[nn.Module] = (), generator: torch.Generator | None = None,
        before_epoch: EpochHook | None = None, after_epoch: EpochHook | None = None,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
        name: str = "train", precision: str = "fp32") -> FitResult:
    """The shared loop (documented on :meth:`msabench.api.RunContext.fit`). ``step`` runs
    under ``precision``'s autocast (:mod:`msabench.precision`), the backward pass outside it;
    ``recipe.bucket_by_length`` batches samples of similar length (:mod:`msabench.bucketing`)."""
    if recipe.epochs < 0 or recipe.batch_size < 1:
        raise ConfigError(f"{name}: epochs ({recipe.epochs}) must be >= 0 and batch size "
                          f"({recipe.batch_size}) >= 1")
    if recipe.select is not None and score is None:
        raise ConfigError(f"{name}: selecting on {recipe.select!r} needs a score function")
    generator = generator if generator is not None else torch.Generator().manual_seed(seed)
    frozen_ids = {id(p) for m in frozen for p in m.parameters()}
    for m in frozen:
        m.requires_grad_(False)
    params = [p for p in module.parameters() if p.requires_grad and id(p) not in frozen_ids]
    lengths = None
    if recipe.bucket_by_length:
        from .bucketing import sample_lengths

        lengths = sample_lengths(module, train)
    history: list[dict[str, Any]] = []
    best_state: dict[str, torch.Tensor] | None = None
    best_score, best_epoch, epoch, stopped_early = math.nan, 0, 0, False
    for epoch in range(1, recipe.epochs + 1):
        row: dict[str, Any] = {"epoch": epoch}
        if before_epoch is not None:
            before_epoch(epoch, row)
        module.train()
        for m in frozen:
            m.eval()
        sums: dict[str, float] = {}
        seen = 0
        for index in epoch_order(train, recipe.batch_size, generator, lengths):
            batch = train.batch(index)
            if len(batch) < 2 and len(train) > 1:
                continue  # a lone leftover sample breaks BatchNorm; it is seen in other epochs
            batch = batch.to(device)
            optimizer.zero_grad(set_to_none=True)
            with autocast_context(device, precision):
                loss, logs = step(batch)
            loss = loss.float()
            _finite_or_raise(loss, name, epoch)
            loss.backward()
            if recipe.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, recipe.grad_clip)
            optimizer.step()
            if schedule is not None and schedule.interval == "step":
                _step_schedule(schedule, row)
            n = len(batch)
            seen += n
            for key, value in {"loss": float(loss.detach()), **dict(logs)}.items():
                sums[key] = sums.get(key, 0.0) + float(value) * n
        row.update({f"train_{k}": v / max(seen, 1) for k, v in sums.items()})
        if score is not None:
            row.update({f"valid_{k}": v for k, v in score().items()})
        if after_epoch is not None:
            after_epoch(epoch, row)
        if recipe.select is not None:
            value = row.get(f"valid_{recipe.select}")
            if value is None or (isinstance(value, float) and math.isnan(value)):
                raise ConfigError(f"{name}: validation {recipe.select} is undefined at epoch "
                                  f"{epoch}; choose another train.select")
            better = value > best_score if recipe.higher_is_better else value < best_score
            if best_state is None or better:
                best_score, best_epoch = float(value), epoch
                best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            row.update({"best_epoch": best_epoch, "best": best_score})
        history.append(row)
        if schedule is not None and schedule.interval == "epoch":
            _step_schedule(schedule, row)
        if on_epoch is not None:
            on_epoch(row)
        if recipe.select is not None and recipe.patience > 0 \
                and epoch - best_epoch >= recipe.patience:
            stopped_early = epoch < recipe.epochs
            break
    if best_state is not None:
        module.load_state_dict(best_state)
    elif recipe.select is None:
        best_epoch = epoch
    return FitResult(best_epoch, epoch, stopped_early, best_score, history)


def selection_direction(select: str, metric_classes: Sequence[type[Metric]],
                        heads: Mapping[str, str]) -> bool:
    """True when higher is better for ``train.select`` (``loss``, ``<metric>`` or
    ``<head>.<metric>``); a clear error for anything else."""
    if select == "loss":
        return False
    head, _, key = select.rpartition(".")
    if head and head not in heads:
        raise ConfigError(f"train.select={select!r}: the method has no head {head!r} (heads: "
                          f"{', '.join(heads)})")
    for cls in metric_classes:
        if cls.key == key:
            return bool(cls.higher_is_better)
    raise ConfigError(
        f"train.select={select!r} is neither 'loss' nor a metric of this dataset's convention "
        f"(optionally prefixed by a head, e.g. pred_text.mae); choose one of: loss, "
        f"{', '.join(c.key for c in metric_classes)}")


class LoopContext(RunContext):
    """The runner's :class:`RunContext`: the shared loop on the run's device and metrics, in
    the run's precision (``train.precision`` resolved on the device: :attr:`precision`).

    ``on_epoch(stage, row)``, when set (the runner sets the run's trackers), receives each
    epoch's history row as soon as the epoch ends; ``stage`` is ``"train"`` for the
    supervised stage and ``<pretrainer>.<fit name>`` inside a pretraining stage (the runner
    sets :attr:`stage` to the pretrainer's name meanwhile), see :func:`stage_name`."""

    on_epoch: Callable[[str, dict[str, Any]], None] | None = None
    stage: str | None = None
    _precision: str | None = None

    @property
    def precision(self) -> str:
        """``"fp32"`` or ``"bf16"``: ``train.precision`` on this device; prints a notice once
        when the combination is slow (bf16 on a CPU without bf16 instructions)."""
        if self._precision is None:
            self._precision = resolve_precision(self.device, self.train.get("precision", "auto"))
            notice = precision_notice(self.device, self._precision)
            if notice:
                self.progress.print(f"[yellow]note:[/] {notice}")
        return self._precision

    def fit(self, module: nn.Module, train: SplitData, valid: SplitData | None = None, *,
            step: StepFn, optimizer: torch.optim.Optimizer, recipe: Recipe,
            score: ScoreFn | None = None, schedule: Schedule | None = None,
            frozen: Sequence[nn.Module] = (), generator: torch.Generator | None = None,
            before_epoch: EpochHook | None = None, after_epoch: EpochHook | None = None,
            name: str = "train", status: Callable[[dict], str] | None = None) -> FitResult:
        task = self.progress.task(f"  seed {self.seed} {name}", int(recipe.epochs))
        describe = status or _default_status(recipe)

        listener, stage = self.on_epoch, stage_name(self.stage, name)

        def on_epoch(row: dict[str, Any]) -> None:
            task.advance(1, status=describe(row))
            if listener is not None:
                listener(stage, dict(row))

        result = fit(module, train, valid, step=step, optimizer=optimizer, recipe=recipe,
                     device=self.device, seed=self.seed, score=score, schedule=schedule,
                     frozen=frozen, generator=generator, before_epoch=before_epoch,
                     after_epoch=after_epoch, on_epoch=on_epoch, name=name,
                     precision=self.precision)
        if recipe.select is not None:
            task.done(f"best {recipe.select} {result.best_score:.4f} @ epoch "
                      f"{result.best_epoch}" + (f", stopped early at {result.epochs_run}"
                                                if result.stopped_early else ""))
        else:
            task.done()
        return result

    def log_epoch(self, name: str, row: Mapping[str, Any]) -> None:
        if self.on_epoch is not None:
            self.on_epoch(stage_name(self.stage, name), dict(row))

    def evaluate(self, model: Method, split: SplitData,
                 batch_size: int | None = None) -> Evaluation:
        bs = int(batch_size or self.train.get("eval_batch_size", 256))
        return evaluate(model, split, self.metric_classes, bs, self.device, self.precision)


def stage_name(pretrainer: str | None, fit_name: str) -> str:
    """A tracker's name for one ``context.fit``: ``train`` outside pretraining, else the
    pretrainer's name and the fit's, slugged (``dec``, ``"dec stage 1 (autoencoder)"`` ->
    ``dec.stage-1-autoencoder``): letters, digits, ``-`` and ``.`` only (MLflow keys)."""
    if pretrainer is None:
        return "train"
    slug = "-".join("".join(c if c.isalnum() else " " for c in fit_name.lower()).split())
    if slug.startswith(pretrainer.lower() + "-"):
        slug = slug[len(pretrainer) + 1:]
    return f"{pretrainer}.{slug or 'fit'}"


def _default_status(recipe: Recipe) -> Callable[[dict], str]:
    def describe(row: Mapping[str, Any]) -> str:
        if recipe.select is not None and f"valid_{recipe.select}" in row:
            return (f"valid {recipe.select} {row[f'valid_{recipe.select}']:.4f} "
                    f"(best {row['best']:.4f} @ {row['best_epoch']})")
        terms = [k for k in row if k.startswith("train_")]
        return " ".join(f"{k[6:]} {row[k]:.4f}" for k in terms[:3])
    return describe


def fit_method(model: Method, train: SplitData, valid: SplitData,
               context: RunContext) -> FitResult:
    """The supervised stage of every run: ``model.training_step`` on the labelled training
    rows, the method's optimiser and declared schedule, selection on ``train.select`` over
    the validation split (every head scored), the method's frozen parts kept in eval mode."""
    cfg = context.train
    heads = model.check_heads()
    higher = selection_direction(str(cfg["select"]), context.metric_classes, heads)
    recipe = Recipe.from_train(cfg, higher_is_better=higher)
    if recipe.epochs < 1:
        raise ConfigError(f"train.epochs ({recipe.epochs}) must be >= 1")
    optimizer = model.configure_optimizer(cfg)
    schedule = model.configure_scheduler(optimizer, cfg, train.num_batches(recipe.batch_size))
    if schedule is not None and not isinstance(schedule, Schedule):
        raise ConfigError(f"method {model.name}: configure_scheduler must return a "
                          f"msabench.api.Schedule (scheduler + interval) or None, got "
                          f"{type(schedule).__name__}")
    select = recipe.select

    def score() -> dict[str, float]:
        val = context.evaluate(model, valid)
        out = {"loss": val.loss}
        value = val.score(select)
        if select != "loss":
            out[select] = math.nan if value is None else value
        return out

    def step(batch: Batch) -> tuple[torch.Tensor, Mapping[str, float]]:
        loss, logs = model.training_step(batch)
        return loss, {k: v for k, v in logs.items() if k != "loss"}

    return context.fit(model, train, valid, step=step, optimizer=optimizer, recipe=recipe,
                       score=score, schedule=schedule, frozen=model.frozen(), name="epochs")
