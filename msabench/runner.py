"""Build a run from names, seed it, train, select on validation, evaluate, write results.

``msabench run`` is a thin wrapper over :func:`run`. The dataset is loaded once and shared by
all seeds; the deterministic preprocessing (``data.max_length``, ``data.normalize``) is applied
once after loading, and only the label mask (``data.label_fraction``) is made per seed, as a
copy of the train split that shares its features (:mod:`msabench.preprocess`). Each finished
seed is written to disk before the next starts, so an interrupted multi-seed run keeps what it
finished; existing results are skipped unless ``force``.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from . import config as cfg
from .errors import ConfigError, DataError, MsabenchError
from .registry import Registry
from .results import DEFAULT_RESULTS_DIR, provenance, read_result, result_path, write_result

ENV_DATA_DIR = "MSABENCH_DATA_DIR"
DEFAULT_SEEDS = (1111,)


@dataclass
class RunSpec:
    method: str
    dataset: str
    seeds: Sequence[int] = DEFAULT_SEEDS
    config_file: Path | None = None
    overrides: Sequence[str] = ()
    epochs: int | None = None
    data_dir: Path | None = None
    out: Path = DEFAULT_RESULTS_DIR
    force: bool = False
    tag: str | None = None
    quiet: bool = False


@dataclass
class SeedOutcome:
    seed: int
    path: Path
    status: str  # "ran" | "skipped"
    test: dict[str, Any] = field(default_factory=dict)


class Progress:
    """Rich progress bars for seeds, epochs and pretraining stages (silent when quiet)."""

    def __init__(self, quiet: bool = False, console: Any = None) -> None:
        self.quiet = quiet
        self._progress = None
        if not quiet:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress,
                                       TextColumn, TimeElapsedColumn)

            self.console = console or Console(stderr=True)
            self._progress = RichProgress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TextColumn("{task.fields[status]}"),
                console=self.console, transient=False)

    @contextlib.contextmanager
    def live(self) -> Iterator["Progress"]:
        if self._progress is None:
            yield self
            return
        with self._progress:
            yield self

    def task(self, description: str, total: int) -> "_Task":
        return _Task(self._progress, description, total)

    def print(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message)


class _Task:
    def __init__(self, progress: Any, description: str, total: int) -> None:
        self._progress = progress
        self._id = progress.add_task(description, total=total, status="") if progress else None

    def advance(self, steps: int = 1, status: str | None = None) -> None:
        if self._progress is not None:
            kwargs = {"status": status} if status is not None else {}
            self._progress.update(self._id, advance=steps, **kwargs)

    def done(self, status: str | None = None) -> None:
        """Finish the bar where it stands (an early-stopped run ends short of its total)."""
        if self._progress is not None:
            task = self._progress.tasks[self._progress.task_ids.index(self._id)]
            kwargs = {"status": status} if status is not None else {}
            self._progress.update(self._id, total=task.completed, **kwargs)


class RunInterrupted(MsabenchError):
    """Ctrl-C during a multi-seed run; ``outcomes`` are the seeds already on disk."""

    def __init__(self, outcomes: list[SeedOutcome]) -> None:
        self.outcomes = outcomes
        kept = ", ".join(f"seed {o.seed}" for o in outcomes) or "no seed"
        super().__init__(f"interrupted; {kept} finished and kept on disk. Re-run the same "
                         "command to continue: finished seeds are skipped.")


@dataclass
class RunContext:
    """Handed to pretrainers: where to run, which seed, and how to report progress."""

    device: Any
    seed: int
    train: Mapping[str, Any]
    progress: Progress


def resolve_data_dir(dataset: str, cli_dir: Path | None, config_dir: str | None) -> Path | None:
    """``--data-dir`` > ``data_dir`` in the config file > ``$MSABENCH_DATA_DIR[/<dataset>]``."""
    if cli_dir is not None:
        return Path(cli_dir)
    if config_dir:
        return Path(config_dir)
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        root = Path(env)
        return root / dataset if (root / dataset).is_dir() else root
    return None


def _metric_classes(registry: Registry, convention: str) -> list[type]:
    classes = []
    for entry in registry.entries("metric"):
        cls = entry.load()
        if convention in cls.conventions:
            classes.append(cls)
    if not classes:
        raise MsabenchError(f"no metric plugin applies to convention {convention!r}")
    keys = [c.key for c in classes]
    dup = {k for k in keys if keys.count(k) > 1}
    if dup:
        raise MsabenchError(f"two metrics for convention {convention!r} use the key(s) {dup}")
    return sorted(classes, key=lambda c: (c.order, c.key))


def prepare(spec: RunSpec, registry: Registry) -> dict[str, Any]:
    """Resolve names and config without loading data (cheap; used by run and for planning)."""
    method_cls = registry.load("method", spec.method)
    dataset_cls = registry.load("dataset", spec.dataset)
    file_cfg = cfg.load_config_file(spec.config_file) if spec.config_file else {}
    cli_cfg = cfg.parse_overrides(spec.overrides)
    if spec.epochs is not None:
        cli_cfg = cfg.deep_merge(cli_cfg, {"train": {"epochs": int(spec.epochs)}})
    config = cfg.resolve(method_cls, spec.dataset, file_cfg, cli_cfg)
    defaults = cfg.resolve(method_cls, spec.dataset)
    for c in (config, defaults):
        _complete_data_config(c["data"], dataset_cls)
    # the setting is its own level of a result's identity (path, leaderboard table), so a
    # non-default setting alone does not make a config variant
    defaults["data"]["setting"] = config["data"]["setting"]
    variant = cfg.variant_name(config, defaults, spec.tag or file_cfg.get("tag"))
    data_dir = resolve_data_dir(spec.dataset, spec.data_dir, file_cfg.get("data_dir"))
    return {"method_cls": method_cls, "dataset_cls": dataset_cls, "config": config,
            "setting": config["data"]["setting"], "variant": variant, "data_dir": data_dir,
            "hash": cfg.config_hash(config)}


def prepare_data(dataset: str, registry: Registry, overrides: Sequence[str] = (),
                 config_file: Path | None = None, data_dir: Path | None = None) -> dict[str, Any]:
    """Like :func:`prepare` for the data alone (no method): ``msabench data check``.

    Only the ``data`` section is read; ``overrides`` outside it are a :class:`ConfigError`.
    """
    dataset_cls = registry.load("dataset", dataset)
    file_cfg = cfg.load_config_file(config_file) if config_file else {}
    cli_cfg = cfg.parse_overrides(overrides)
    other = sorted(set(cli_cfg) - {"data"})
    if other:
        raise ConfigError(f"only data.* keys apply here (got {', '.join(other)}.*), e.g. "
                          "--set data.options.KEY=VALUE or --set data.normalize=zscore")
    data_cfg = dict(cfg.DATA_DEFAULTS)
    for layer in (file_cfg, cli_cfg):
        section = layer.get("data", {})
        cfg._check_keys("data", section, cfg.DATA_DEFAULTS, f"data config for {dataset}")
        data_cfg = cfg.deep_merge(data_cfg, section)
    _complete_data_config(data_cfg, dataset_cls)
    return {"dataset_cls": dataset_cls, "config": {"data": data_cfg},
            "setting": data_cfg["setting"],
            "data_dir": resolve_data_dir(dataset, data_dir, file_cfg.get("data_dir"))}


def _complete_data_config(data_cfg: dict[str, Any], dataset_cls: Any) -> None:
    """Fill in the dataset's default setting and modalities; check the preprocessing keys."""
    from . import preprocess

    data_cfg["setting"] = data_cfg["setting"] or dataset_cls.meta.default_setting
    # None = every modality the loaded setting provides (settings may differ, e.g. mosi
    # utt-clean has no vision); the modalities actually used are recorded in each result
    if data_cfg["modalities"] is not None:
        data_cfg["modalities"] = [_modality_name(m) for m in data_cfg["modalities"]]
    preprocess.check_config(data_cfg)


_MOD_LETTERS = {"t": "text", "a": "audio", "v": "vision"}


def _modality_name(m: str) -> str:
    return _MOD_LETTERS.get(m, m)


def parse_modalities(text: str) -> list[str]:
    """``"ta"`` or ``"text,audio"`` -> ``["text", "audio"]``."""
    text = text.strip()
    parts = text.split(",") if "," in text else list(text) if len(text) <= 3 else [text]
    out = [_modality_name(p.strip()) for p in parts if p.strip()]
    bad = [m for m in out if m not in _MOD_LETTERS.values()]
    if bad or not out:
        raise ConfigError(f"--modalities {text!r}: use letters t, a, v (e.g. 'ta') or names "
                          "text,audio,vision")
    return out


def run(spec: RunSpec, registry: Registry | None = None, progress: Progress | None = None,
        ) -> list[SeedOutcome]:
    from .plugins import get_registry

    registry = registry or get_registry()
    plan = prepare(spec, registry)
    progress = progress or Progress(quiet=spec.quiet)
    config, setting, variant = plan["config"], plan["setting"], plan["variant"]
    outcomes: list[SeedOutcome] = []
    todo: list[int] = []
    for seed in spec.seeds:
        path = result_path(spec.out, spec.dataset, setting, spec.method, variant, seed)
        if path.exists() and not spec.force:
            old = read_result(path)
            if old["config_hash"] != plan["hash"]:
                raise MsabenchError(
                    f"{path} exists but was produced with a different config (hash "
                    f"{old['config_hash']} vs {plan['hash']}); pass --force to overwrite it or "
                    "--tag NAME to keep both")
            outcomes.append(SeedOutcome(seed, path, "skipped", old["metrics"]["test"]))
            progress.print(f"seed {seed}: result exists, skipped ({path}); --force re-runs it")
            continue
        todo.append(seed)
    if not todo:
        return outcomes
    data, preprocessing = load_dataset(plan, progress)
    plan = {**plan, "preprocessing": preprocessing}
    try:
        with progress.live():
            seeds_task = progress.task(f"{spec.method} on {spec.dataset}/{setting}", len(todo))
            for seed in todo:
                path = result_path(spec.out, spec.dataset, setting, spec.method, variant, seed)
                result = run_seed(plan, spec, data, seed, registry, progress)
                write_result(path, result)
                outcomes.append(SeedOutcome(seed, path, "ran", result["metrics"]["test"]))
                seeds_task.advance(1, status=f"seed {seed} written")
    except KeyboardInterrupt:
        raise RunInterrupted(outcomes) from None
    return outcomes


def open_dataset(plan: Mapping[str, Any]) -> Any:
    """Instantiate, load and validate the dataset of ``plan`` and select its modalities."""
    data_cfg = plan["config"]["data"]
    dataset = plan["dataset_cls"](data_dir=plan["data_dir"], setting=plan["setting"],
                                  options=data_cfg["options"])
    data = dataset.load()
    if not data.validated:
        data.validate()
    mods = data_cfg["modalities"]
    if mods is not None and list(mods) != list(data.modalities):
        data = data.select_modalities(mods)
    return data


def load_dataset(plan: Mapping[str, Any], progress: Progress) -> tuple[Any, dict[str, Any]]:
    """:func:`open_dataset`, then the once-per-run preprocessing; returns the data and the
    preprocessing record stored in every result file."""
    from . import preprocess

    started = time.perf_counter()
    data = open_dataset(plan)
    data, record = preprocess.prepare(data, plan["config"]["data"])
    progress.print(f"loaded {plan['dataset_cls'].name}/{plan['setting']} "
                   f"({', '.join(f'{k} {v}' for k, v in data.sizes().items())}) "
                   f"in {time.perf_counter() - started:.1f}s")
    for note in data.notes:
        progress.print(f"[yellow]note:[/] {note}")
    return data, record


def run_seed(plan: Mapping[str, Any], spec: RunSpec, data: Any, seed: int, registry: Registry,
             progress: Progress) -> dict[str, Any]:
    import torch

    from . import preprocess
    from .api import Components
    from .training import evaluate, fit, pick_device, seed_everything

    config, method_cls = plan["config"], plan["method_cls"]
    # per seed: the train split's label mask (a copy sharing the features); hidden labels are NaN
    data, labels_record = preprocess.for_seed(data, config["data"], seed)
    info = data.info()
    if method_cls.requires_aligned and not info.aligned:
        raise DataError(
            f"method {spec.method} needs aligned (or utterance-level) inputs, but "
            f"{spec.dataset}/{plan['setting']} has modalities of different lengths "
            f"{info.max_lengths}; choose an aligned setting (msabench info {spec.dataset})")
    if method_cls.requires_texts and not info.has_texts:
        raise DataError(f"method {spec.method} needs raw transcripts; {spec.dataset}/"
                        f"{plan['setting']} has none")
    train_cfg = config["train"]
    device = pick_device(str(train_cfg["device"]))
    metric_classes = _metric_classes(registry, data.meta.convention)
    started = time.perf_counter()
    seed_everything(seed)
    model = method_cls(info, config["model"], Components(registry)).to(device)
    trainable, total = model.num_parameters(True), model.num_parameters(False)
    progress.print(f"seed {seed}: {spec.method} has {trainable:,} trainable parameters"
                   + (f" ({total:,} in all)" if total != trainable else ""))
    context = RunContext(device=device, seed=seed, train=train_cfg, progress=progress)
    pretraining: dict[str, Any] = {}
    for stage in config["pretrain"].get("stages", []):
        stage_cls = registry.load("pretrainer", stage)
        missing = [r for r in stage_cls.requires if not hasattr(model, r)]
        if missing:
            raise ConfigError(f"pretrainer {stage} needs {', '.join(missing)} on the model; "
                              f"method {spec.method} does not provide it")
        pretrainer = stage_cls(**config["pretrain"].get(stage, {}))
        pretraining[stage] = pretrainer.fit(model, data, context)
    train_split = data["train"]
    labelled = train_split.labelled
    if not bool(labelled.all()):
        train_split = train_split.subset(torch.nonzero(labelled).flatten())
    task = progress.task(f"  seed {seed} epochs", int(train_cfg["epochs"]))
    select = train_cfg["select"]

    def on_epoch(row: Mapping[str, Any]) -> None:
        task.advance(1, status=f"valid {select} {row[f'valid_{select}']:.4f} "
                               f"(best {row['best']:.4f} @ {row['best_epoch']})")

    fitted = fit(model, train_split, data["valid"], train_cfg, metric_classes, device, seed,
                 on_epoch=on_epoch)
    task.done(f"best {select} {fitted.best_score:.4f} @ epoch {fitted.best_epoch}"
              + (f", stopped early at {fitted.epochs_run}" if fitted.stopped_early else ""))
    bs = int(train_cfg["eval_batch_size"])
    test = evaluate(model, data["test"], metric_classes, bs, device)
    valid = evaluate(model, data["valid"], metric_classes, bs, device)
    wall = time.perf_counter() - started
    for message in test.warnings:
        progress.print(f"[yellow]warning (test metrics):[/] {message}")
    summary = ", ".join(f"{k} {v:.4f}" for k, v in test.metrics.items() if v is not None)
    progress.print(f"seed {seed}: test {summary} (best epoch {fitted.best_epoch}, {wall:.1f}s)")
    return {
        "schema_version": 1,
        **provenance(),
        "method": spec.method,
        "dataset": spec.dataset,
        "setting": plan["setting"],
        "variant": plan["variant"],
        "seed": seed,
        "synthetic": bool(data.meta.synthetic),
        "convention": data.meta.convention,
        "dataset_title": data.meta.title,
        "data_source": data.source,
        "config": config,
        "config_hash": plan["hash"],
        "prediction_kind": method_cls.prediction_kind,
        "metrics": {"test": test.metrics, "valid": valid.metrics},
        "test_loss": test.loss,
        "not_applicable": test.not_applicable,
        "metric_warnings": test.warnings,
        "metric_info": {c.key: c.info() for c in metric_classes},
        "split_sizes": data.sizes(),
        "modalities": list(data.modalities),
        "feature_dims": info.feature_dims,
        "labelled_train": int(labelled.sum()),
        "preprocessing": {**plan.get("preprocessing", {}), **labels_record},
        "parameters": {"trainable": trainable, "total": total},
        "best_epoch": fitted.best_epoch,
        "epochs_run": fitted.epochs_run,
        "stopped_early": fitted.stopped_early,
        "selection": {"criterion": select, "best_valid": fitted.best_score},
        "history": fitted.history,
        "pretraining": pretraining,
        "wall_time_s": round(wall, 3),
        "device": str(device) if device.type == "cpu" else
        f"{device} ({torch.cuda.get_device_name(device)})",
    }


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
