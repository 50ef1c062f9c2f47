"""Run a plan: load the data once, then per seed build, pretrain, train, evaluate, record.

``msabench run`` is a thin wrapper over :func:`run`. The dataset is loaded once and shared by
all seeds; the deterministic preprocessing (``data.max_length``, ``data.normalize``) is applied
once after loading, and only the label mask (``data.label_fraction``) is made per seed, as a
copy of the train split that shares its features (:mod:`msabench.preprocess`). Each finished
seed is written to disk before the next starts, so an interrupted multi-seed run keeps what it
finished; existing results are skipped unless ``force``.

Planning (names and config -> :class:`~msabench.plan.Plan`) lives in :mod:`msabench.plan`,
the loop in :mod:`msabench.training`, the progress display in :mod:`msabench.progress` and
the result record in :mod:`msabench.results`.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from .config import DEFAULT_SEEDS  # noqa: F401  (re-exported)
from .errors import ConfigError, DataError, MsabenchError
from .fingerprint import describe_change, fingerprint_files
from .plan import (ENV_DATA_DIR, Plan, RunSpec, parse_modalities, prepare,  # noqa: F401
                   prepare_data, resolve_data_dir)
from .progress import Progress
from .registry import Registry
from .results import (RunResult, claim, clean_stale_temporaries, iter_results, provenance,
                      read_result, release, result_path, run_dir, write_result)


@dataclass
class SeedOutcome:
    seed: int
    path: Path
    status: str  # "ran" | "skipped"
    test: dict[str, Any] = field(default_factory=dict)


class RunInterrupted(MsabenchError):
    """Ctrl-C during a multi-seed run; ``outcomes`` are the seeds already on disk."""

    def __init__(self, outcomes: list[SeedOutcome]) -> None:
        self.outcomes = outcomes
        kept = ", ".join(f"seed {o.seed}" for o in outcomes) or "no seed"
        super().__init__(f"interrupted; {kept} finished and kept on disk. Re-run the same "
                         "command to continue: finished seeds are skipped.")


def metric_classes(registry: Registry, convention: str) -> list[type]:
    """Every registered metric of ``convention``, in leaderboard order."""
    classes = [e.load() for e in registry.entries("metric")]
    classes = [c for c in classes if convention in c.conventions]
    if not classes:
        raise MsabenchError(f"no metric plugin applies to convention {convention!r}")
    keys = [c.key for c in classes]
    dup = {k for k in keys if keys.count(k) > 1}
    if dup:
        raise MsabenchError(f"two metrics for convention {convention!r} use the key(s) {dup}")
    return sorted(classes, key=lambda c: (c.order, c.key))


_metric_classes = metric_classes  # the name tests and benchmarks used


def run(spec: RunSpec, registry: Registry | None = None, progress: Progress | None = None,
        data_cache: dict[Any, Any] | None = None) -> list[SeedOutcome]:
    """Every seed of ``spec``. ``data_cache``: a dict the caller keeps between calls (the grid
    executors, one per process) holding the last loaded and preprocessed dataset, so the
    next run of the same data (another seed or method of a grid) does not load it again; it
    is keyed by everything loading depends on (see :func:`data_key`)."""
    from .plugins import get_registry

    from .allocator import keep_freed_memory
    from .training import set_threads

    registry = registry or get_registry()
    plan = prepare(spec, registry)
    progress = progress or Progress(quiet=spec.quiet)
    threads = set_threads(spec.threads)
    keep_freed_memory()  # no page faults for the same large temporaries every step
    if plan.capped:
        what = "--smoke" if spec.smoke else f"--epochs {spec.epochs}"
        progress.print(f"{what} sets {', '.join(plan.capped)}"
                       + (f"; results go to {spec.out}" if spec.smoke else ""))
    folder = run_dir(spec.out, spec.dataset, plan.setting, spec.method, plan.variant)
    check_writable(Path(spec.out))
    clean_stale_temporaries(folder)
    check_variant_folder(folder, plan.hash, set(spec.seeds))
    dataset = plan.dataset_cls(data_dir=plan.data_dir, setting=plan.setting,
                               options=plan.config["data"]["options"])
    plan.data_files = fingerprint_files(dataset.input_files())
    outcomes: list[SeedOutcome] = []
    todo: list[int] = []
    for seed in spec.seeds:
        path = result_path(spec.out, spec.dataset, plan.setting, spec.method, plan.variant, seed)
        if path.exists() and not spec.force:
            old = read_result(path)
            if old.config_hash != plan.hash:
                raise MsabenchError(
                    f"{path} exists but was produced with a different config (hash "
                    f"{old.config_hash} vs {plan.hash}); pass --force to overwrite it or "
                    "--tag NAME to keep both")
            change = describe_change(old.data_files, plan.data_files) if old.data_files else None
            if change:
                raise MsabenchError(
                    f"{path} exists but was produced from different data: {change}. Pass "
                    "--tag NAME to keep both results, or --force to replace this one")
            outcomes.append(SeedOutcome(seed, path, "skipped", old.test))
            progress.print(f"seed {seed}: result exists, skipped ({path}); --force re-runs it")
            if plan.config["train"]["save_checkpoint"] and not old.checkpoint:
                progress.print(f"[yellow]note:[/] seed {seed} has no checkpoint; --force "
                               "re-runs it with --save-checkpoint to write one")
            continue
        todo.append(seed)
    if not todo:
        return outcomes
    progress.print(f"{spec.method} on {spec.dataset}/{plan.setting}: seeds "
                   f"{', '.join(map(str, todo))}, {threads} torch thread(s)")
    key = data_key(plan) if data_cache is not None else None
    if key is not None and key in data_cache:
        data, record = data_cache[key]
        plan.preprocessing = dict(record)
    else:
        data, plan.preprocessing = load_dataset(plan, progress)
        if data_cache is not None:
            data_cache.clear()  # one dataset at a time: a process holds at most one copy
            data_cache[key] = (data, dict(plan.preprocessing))
    try:
        with progress.live(), _sigterm_as_interrupt():
            seeds_task = progress.task(f"{spec.method} on {spec.dataset}/{plan.setting}",
                                       len(todo))
            if plan.config["train"].get("vectorize"):  # several seeds in one pass
                from .vectorized import run_vectorized

                todo = run_vectorized(plan, spec, data, todo, registry, progress, outcomes,
                                      seeds_task)
            for seed in todo:
                path = result_path(spec.out, spec.dataset, plan.setting, spec.method,
                                   plan.variant, seed)
                if not claim(path):
                    progress.print(f"seed {seed}: another run is training it now "
                                   f"({path}.lock); skipped here")
                    continue
                try:
                    if path.exists() and not spec.force:  # finished by a concurrent run
                        outcomes.append(SeedOutcome(seed, path, "skipped",
                                                    read_result(path).test))
                        continue
                    check_variant_folder(folder, plan.hash, set(spec.seeds))
                    result = run_seed(plan, spec, data, seed, registry, progress)
                    write_result(path, result)
                finally:
                    release(path)
                outcomes.append(SeedOutcome(seed, path, "ran", result.test))
                seeds_task.advance(1, status=f"seed {seed} written")
    except KeyboardInterrupt:
        raise RunInterrupted(outcomes) from None
    return outcomes


def data_key(plan: Plan) -> str:
    """What :func:`load_dataset` depends on: dataset, setting, data folder, the whole data
    config and the input files' fingerprints (a changed file is a new key)."""
    import json

    return json.dumps([plan.dataset_cls.name, plan.setting, str(plan.data_dir),
                       plan.config["data"], plan.data_files], sort_keys=True, default=str)


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (a scheduler's stop) ends the run like Ctrl-C: finished seeds stay on disk."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def check_writable(out: Path) -> None:
    """Fail before any work when the results root cannot be created or written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot write results there ({exc.strerror or exc}); "
                          "give a writable folder") from None


def check_variant_folder(folder: Path, config_hash: str, replaced: set[int]) -> None:
    """Every seed of one variant must come from one config: refuse to add a seed to a folder
    whose other seeds were produced with a different config (the seeds of this run,
    ``replaced``, are checked one by one: skipped when equal, refused or forced otherwise)."""
    errors: list[str] = []
    other = [(p, r) for p, r in iter_results(folder, errors)
             if r.config_hash != config_hash and r.seed not in replaced]
    if errors:
        raise MsabenchError("; ".join(errors))
    if other:
        names = ", ".join(p.name for p, _ in other[:5])
        raise MsabenchError(
            f"{folder} holds seeds from another config ({names}: hash "
            f"{other[0][1].config_hash}, this run {config_hash}); one variant folder must hold "
            "one config. Pass --tag NAME to keep both, or re-run those seeds too with --force "
            "(--seeds listing them)")


def open_dataset(plan: Plan) -> Any:
    """Instantiate, load and validate the dataset of ``plan`` and select its modalities."""
    data_cfg = plan.config["data"]
    dataset = plan.dataset_cls(data_dir=plan.data_dir, setting=plan.setting,
                               options=data_cfg["options"])
    data = dataset.load()
    if not data.validated:
        data.validate()
    mods = data_cfg["modalities"]
    if mods is not None and list(mods) != list(data.modalities):
        data = data.select_modalities(mods)
    cap = data_cfg.get("max_samples")
    if cap is not None:
        import torch

        data = replace(data, splits={name: split.subset(torch.arange(min(cap, len(split))))
                                     for name, split in data.splits.items()})
    return data


def load_dataset(plan: Plan, progress: Progress) -> tuple[Any, dict[str, Any]]:
    """:func:`open_dataset`, then the once-per-run preprocessing; returns the data and the
    preprocessing record stored in every result file."""
    from . import preprocess

    started = time.perf_counter()
    data = open_dataset(plan)
    data.check_magnitudes()
    data, record = preprocess.prepare(data, plan.config["data"])
    progress.print(f"loaded {plan.dataset_cls.name}/{plan.setting} "
                   f"({', '.join(f'{k} {v}' for k, v in data.sizes().items())}) "
                   f"in {time.perf_counter() - started:.1f}s")
    for note in data.notes:
        progress.print(f"[yellow]note:[/] {note}")
    return data, record


def _check_inputs(method_cls: Any, info: Any, spec: RunSpec, setting: str) -> None:
    if method_cls.requires_aligned and not info.aligned:
        raise DataError(
            f"method {spec.method} needs aligned (or utterance-level) inputs, but "
            f"{spec.dataset}/{setting} has modalities of different lengths "
            f"{info.max_lengths}; choose an aligned setting (msabench info {spec.dataset})")
    if method_cls.requires_texts and not info.has_texts:
        raise DataError(f"method {spec.method} needs raw transcripts; {spec.dataset}/"
                        f"{setting} has none")


def pretrain(model: Any, data: Any, stages_cfg: Mapping[str, Any], registry: Registry,
             context: Any) -> dict[str, Any]:
    """Run the method's pretraining stages in order; their logs by stage name."""
    logs: dict[str, Any] = {}
    for stage in stages_cfg.get("stages", []):
        stage_cls = registry.load("pretrainer", stage)
        missing = [r for r in stage_cls.requires if not hasattr(model, r)]
        if missing:
            raise ConfigError(f"pretrainer {stage} needs {', '.join(missing)} on the model; "
                              f"method {model.name} does not provide it")
        context.stage = stage  # names the live epochs trackers receive (LoopContext)
        try:
            logs[stage] = stage_cls(**stages_cfg.get(stage, {})).fit(model, data, context)
        finally:
            context.stage = None
    return logs


def run_seed(plan: Plan, spec: RunSpec, data: Any, seed: int, registry: Registry,
             progress: Progress) -> RunResult:
    """One seed. With ``train.save_checkpoint`` the selected weights are saved beside the
    seed's result path (msabench.checkpoints); the run's trackers (``spec.trackers``) see it."""
    from .tracking import open_trackers

    checkpoint_for = (result_path(spec.out, spec.dataset, plan.setting, spec.method,
                                  plan.variant, seed)
                      if plan.config["train"]["save_checkpoint"] else None)
    trackers = open_trackers(spec.trackers, registry, progress)
    trackers.start(method=spec.method, dataset=spec.dataset, setting=plan.setting,
                   variant=plan.variant, seed=seed, config=plan.config,
                   config_hash=plan.hash)
    try:
        result = _run_seed(plan, spec, data, seed, registry, progress, checkpoint_for,
                           on_epoch=trackers.log_epoch)
    except BaseException as exc:
        trackers.fail(exc)
        raise
    trackers.finish(result)
    return result


def _run_seed(plan: Plan, spec: RunSpec, data: Any, seed: int, registry: Registry,
              progress: Progress, checkpoint_for: Path | None,
              on_epoch: Any = None) -> RunResult:
    from .training import fit_method

    config = plan.config
    data, labels_record, context = seed_context(plan, spec, data, seed, registry, progress)
    context.on_epoch = on_epoch  # each epoch's row, live, to the run's trackers
    started = time.perf_counter()
    model = build_model(plan, data, context, registry, seed)
    pretraining = pretrain(model, data, config["pretrain"], registry, context)
    train_split, labelled = labelled_train(data, config)
    fitted = fit_method(model, train_split, data["valid"], context)
    # counted after every stage: pretraining may add or freeze parts
    trainable, total = model.num_parameters(True), model.num_parameters(False)
    progress.print(f"seed {seed}: {spec.method} has {trainable:,} trainable parameters"
                   + (f" ({total:,} in all)" if total != trainable else ""))
    test = context.evaluate(model, data["test"])
    valid = context.evaluate(model, data["valid"])
    wall = time.perf_counter() - started
    checkpoint = {}
    if checkpoint_for is not None:
        from .checkpoints import save_checkpoint

        checkpoint = save_checkpoint(model, checkpoint_for, plan.hash, {
            "method": spec.method, "dataset": spec.dataset, "setting": plan.setting,
            "variant": plan.variant, "seed": seed})
    return seed_result(plan, spec, data, model, context, fitted, test, valid, seed=seed,
                       labelled=labelled, labels_record=labels_record,
                       pretraining=pretraining, wall_time_s=wall, timing=f"{wall:.1f}s",
                       checkpoint=checkpoint)


def seed_context(plan: Plan, spec: RunSpec, data: Any, seed: int, registry: Registry,
                 progress: Progress) -> tuple[Any, dict[str, Any], Any]:
    """``(data, labels_record, context)`` for one seed: the train split's label mask for this
    seed (a copy sharing the features; hidden labels are NaN), the input checks, and the loop
    context on the configured device with the dataset's metrics."""
    from . import preprocess
    from .training import LoopContext, pick_device

    config = plan.config
    data, labels_record = preprocess.for_seed(data, config["data"], seed)
    _check_inputs(plan.method_cls, data.info(), spec, plan.setting)
    context = LoopContext(device=pick_device(str(config["train"]["device"])), seed=seed,
                          train=config["train"], progress=progress,
                          metric_classes=metric_classes(registry, data.meta.convention))
    return data, labels_record, context


def build_model(plan: Plan, data: Any, context: Any, registry: Registry, seed: int) -> Any:
    """The seed's model as every loop builds it: seeded, constructed on the context's device,
    given its context, told which heads cannot be scored (printed), then ``setup(data)``."""
    from .api import Components
    from .training import seed_everything

    info = data.info()
    seed_everything(seed)
    model = plan.method_cls(info, plan.config["model"], Components(registry)).to(context.device)
    model.context = context
    heads = model.check_heads()
    skipped = [h for h, t in heads.items() if t != "label" and t not in info.unimodal]
    if skipped:
        context.progress.print(f"[yellow]note:[/] {data.meta.name}/{plan.setting} has no "
                               f"unimodal labels for head(s) {', '.join(skipped)}; they are "
                               "not scored")
    model.setup(data)
    return model


def labelled_train(data: Any, config: Mapping[str, Any]) -> tuple[Any, int]:
    """The labelled rows of the train split (hidden labels left out) and their count; fewer
    than 2 is a ConfigError naming the label fraction."""
    import torch

    train_split = data["train"]
    labelled = train_split.labelled
    n = int(labelled.sum())
    if n < 2:
        raise ConfigError(
            f"data.label_fraction={config['data']['label_fraction']} leaves {n} labelled "
            f"training sample(s) of {len(train_split)}; supervised training needs at least 2 "
            "(batch statistics, a validation-selected fit): raise --label-fraction")
    if not bool(labelled.all()):
        train_split = train_split.subset(torch.nonzero(labelled).flatten())
    return train_split, n


def seed_result(plan: Plan, spec: RunSpec, data: Any, model: Any, context: Any, fitted: Any,
                test: Any, valid: Any, *, seed: int, labelled: int,
                labels_record: Mapping[str, Any], pretraining: Mapping[str, Any],
                wall_time_s: float, timing: str, checkpoint: Mapping[str, Any] | None = None,
                extra: Mapping[str, Any] | None = None) -> RunResult:
    """One seed's RunResult from its fitted model and test/valid evaluations; prints the test
    warnings and a summary line (``timing`` ends it). Shared by the per-seed loop and the
    vectorised one (msabench.vectorized), so both write the same record."""
    import torch

    progress, device, info = context.progress, context.device, data.info()
    for message in test.warnings:
        progress.print(f"[yellow]warning (test metrics):[/] {message}")
    summary = ", ".join(f"{k} {v:.4f}" for k, v in test.metrics.items() if v is not None)
    progress.print(f"seed {seed}: test {summary} (best epoch {fitted.best_epoch}, {timing})")
    config, method_cls = plan.config, plan.method_cls
    return RunResult(
        provenance=provenance(), method=spec.method, dataset=spec.dataset,
        setting=plan.setting, variant=plan.variant, seed=seed,
        synthetic=bool(data.meta.synthetic), convention=data.meta.convention,
        dataset_title=data.meta.title, data_source=data.source, data_files=plan.data_files,
        config=config,
        config_hash=plan.hash, prediction_kind=method_cls.prediction_kind,
        metrics={"test": test.metrics, "valid": valid.metrics},
        heads={h: {"target": test.heads[h]["target"], "test": test.heads[h]["metrics"],
                   "valid": valid.heads[h]["metrics"],
                   "not_applicable": test.heads[h]["not_applicable"]} for h in test.heads},
        overrides=plan.overrides,
        prediction_summary={"positive_fraction": float((test.preds > 0).float().mean()),
                            "std": float(test.preds.std()) if len(test.preds) > 1 else 0.0},
        test_loss=test.loss, not_applicable=test.not_applicable,
        metric_warnings=test.warnings,
        metric_info={c.key: c.info() for c in context.metric_classes},
        split_sizes=data.sizes(), modalities=list(data.modalities),
        feature_dims=info.feature_dims, labelled_train=labelled,
        preprocessing={**plan.preprocessing, **labels_record},
        parameters={"trainable": model.num_parameters(True),
                    "total": model.num_parameters(False)},
        best_epoch=fitted.best_epoch, epochs_run=fitted.epochs_run,
        stopped_early=fitted.stopped_early,
        selection={"criterion": config["train"]["select"], "best_valid": fitted.best_score},
        history=fitted.history, pretraining=dict(pretraining),
        wall_time_s=round(wall_time_s, 3), checkpoint=dict(checkpoint or {}),
        precision=context.precision, extra=dict(extra or {}),
        device=str(device) if device.type == "cpu" else
        f"{device} ({torch.cuda.get_device_name(device)})")


def summarize(outcomes: Sequence[SeedOutcome]) -> dict[str, tuple[float, float, int]]:
    """Mean, sample std and count of each test metric over the given seeds."""
    keys = list(dict.fromkeys(k for o in outcomes for k, v in o.test.items() if v is not None))
    out = {}
    for key in keys:
        vals = [o.test[key] for o in outcomes if o.test.get(key) is not None]
        mean = sum(vals) / len(vals)
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
        out[key] = (mean, std, len(vals))
    return out
