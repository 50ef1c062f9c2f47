"""Planning a run from names and config, without loading data or importing torch.

:class:`RunSpec` is what ``msabench run`` (or a script) asks for; :func:`prepare` resolves it
into a :class:`Plan`: the method and dataset classes, the resolved config (one precedence:
CLI > config file > dataset defaults > method defaults, :mod:`msabench.config`), the variant
name, the data directory and the config hash.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import config as cfg
from .errors import ConfigError
from .registry import Registry
from .results import DEFAULT_RESULTS_DIR

ENV_DATA_DIR = "MSABENCH_DATA_DIR"
#: where smoke runs write (never the leaderboard results)
SMOKE_DIR = Path(".msabench-smoke") / "results"
SMOKE_SAMPLES = 64


@dataclass
class RunSpec:
    """One ``msabench run``. ``overrides`` is a nested dict of config values (typed data:
    ``{"train": {"lr": 1e-4}}``); a list of ``--set`` strings (``["train.lr=1e-4"]``) is
    parsed once into that form. ``file_config`` is the already-read ``--config`` file (read
    from ``config_file`` when not given)."""

    method: str
    dataset: str
    seeds: Sequence[int] = cfg.DEFAULT_SEEDS
    config_file: Path | None = None
    overrides: Mapping[str, Any] | Sequence[str] = field(default_factory=dict)
    epochs: int | None = None
    data_dir: Path | None = None
    out: Path = DEFAULT_RESULTS_DIR
    force: bool = False
    tag: str | None = None
    quiet: bool = False
    file_config: Mapping[str, Any] | None = None
    #: every stage one epoch on at most SMOKE_SAMPLES samples per split, results in SMOKE_DIR
    smoke: bool = False
    #: torch threads (None: the CPUs this process may use, see training.default_threads)
    threads: int | None = None
    #: write each seed's selected weights beside its result (msabench.checkpoints); None:
    #: ``train.save_checkpoint`` of the config (file, --set), which a bool here overrides
    save_checkpoint: bool | None = None
    #: names of registered trackers that receive each seed's config, history and metrics
    trackers: Sequence[str] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.overrides, Mapping):
            self.overrides = cfg.parse_overrides(self.overrides)
        if self.smoke:
            self.epochs = 1
            self.force = True
            if Path(self.out) == DEFAULT_RESULTS_DIR:
                self.out = SMOKE_DIR
        if self.epochs is not None and (isinstance(self.epochs, bool) or int(self.epochs) < 1):
            raise ConfigError(f"--epochs {self.epochs!r}: give a positive integer")
        if self.threads is not None and (isinstance(self.threads, bool) or int(self.threads) < 1):
            raise ConfigError(f"--threads {self.threads!r}: give a positive integer")
        if self.file_config is None:
            self.file_config = cfg.load_config_file(self.config_file) if self.config_file else {}
        self.seeds = [int(s) for s in self.seeds]


@dataclass
class Plan:
    method_cls: Any
    dataset_cls: Any
    config: dict[str, Any]
    setting: str
    variant: str
    data_dir: Path | None
    hash: str
    preprocessing: dict[str, Any] = field(default_factory=dict)
    #: the config keys --epochs / --smoke capped, as "key=value"
    capped: list[str] = field(default_factory=list)
    #: fingerprints of the dataset's input files (msabench.fingerprint)
    data_files: dict[str, Any] = field(default_factory=dict)
    #: what differs from the method's defaults, flattened (config.overrides)
    overrides: dict[str, Any] = field(default_factory=dict)


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


def prepare(spec: RunSpec, registry: Registry) -> Plan:
    """Resolve names and config without loading data (cheap; used by run and for planning)."""
    method_cls = registry.load("method", spec.method)
    dataset_cls = registry.load("dataset", spec.dataset)
    file_cfg = dict(spec.file_config or {})
    config = cfg.resolve(method_cls, spec.dataset, file_cfg, spec.overrides)
    capped: list[str] = []
    if spec.epochs is not None:  # --epochs caps every stage, pretraining included
        caps = epoch_caps(config, registry, int(spec.epochs))
        if spec.smoke:
            caps = cfg.deep_merge(caps, {"data": {"max_samples": SMOKE_SAMPLES}})
        capped = [f"{k}={v}" for k, v in cfg.flatten(caps).items()]
        config = cfg.resolve(method_cls, spec.dataset, file_cfg, spec.overrides, caps)
    if spec.save_checkpoint is not None:  # the CLI flag: above the file and --set
        config["train"]["save_checkpoint"] = bool(spec.save_checkpoint)
    defaults = cfg.resolve(method_cls, spec.dataset)
    for c in (config, defaults):
        complete_data_config(c["data"], dataset_cls)
    # the setting is its own level of a result's identity (path, leaderboard table), so a
    # non-default setting alone does not make a config variant
    defaults["data"]["setting"] = config["data"]["setting"]
    variant = cfg.variant_name(config, defaults, spec.tag or file_cfg.get("tag"))
    data_dir = resolve_data_dir(spec.dataset, spec.data_dir, file_cfg.get("data_dir"))
    return Plan(method_cls, dataset_cls, config, config["data"]["setting"], variant, data_dir,
                cfg.config_hash(config), capped=capped,
                overrides=cfg.overrides(config, defaults))


def epoch_caps(config: Mapping[str, Any], registry: Registry, epochs: int) -> dict[str, Any]:
    """The config overlay that limits every stage to ``epochs``: ``train.epochs`` and each
    pretraining stage's ``epoch_keys`` (e.g. ``pretrain.dec.stage1_epochs``), never raising a
    stage above its configured count."""
    caps: dict[str, Any] = {"train": {"epochs": epochs}}
    for stage in config["pretrain"].get("stages", []):
        stage_cls = registry.load("pretrainer", stage)
        current = {**stage_cls.defaults, **config["pretrain"].get(stage, {})}
        keys = {k: min(int(current[k]), epochs) for k in stage_cls.epoch_keys}
        if keys:
            caps.setdefault("pretrain", {})[stage] = keys
    return caps


def data_config(dataset: str, dataset_cls: Any, *layers: Mapping[str, Any]) -> dict[str, Any]:
    """The ``data`` section alone (no method): defaults, then each layer's ``data`` table
    (keys checked), completed with the dataset's default setting and options."""
    data_cfg = dict(cfg.DATA_DEFAULTS)
    for layer in layers:
        section = layer.get("data", {})
        cfg.check_keys("data", section, cfg.DATA_DEFAULTS, f"data config for {dataset}")
        data_cfg = cfg.deep_merge(data_cfg, section)
    complete_data_config(data_cfg, dataset_cls)
    return data_cfg


def prepare_data(dataset: str, registry: Registry, overrides: Sequence[str] = (),
                 config_file: Path | None = None, data_dir: Path | None = None) -> Plan:
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
    data_cfg = data_config(dataset, dataset_cls, file_cfg, cli_cfg)
    return Plan(None, dataset_cls, {"data": data_cfg}, data_cfg["setting"], "default",
                resolve_data_dir(dataset, data_dir, file_cfg.get("data_dir")), "")


def complete_data_config(data_cfg: dict[str, Any], dataset_cls: Any) -> None:
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
    """``"ta"`` or ``"text,audio"`` -> ``["text", "audio"]``; a repeated modality is refused."""
    text = text.strip()
    parts = text.split(",") if "," in text else list(text) if len(text) <= 3 else [text]
    out = [_modality_name(p.strip()) for p in parts if p.strip()]
    bad = [m for m in out if m not in _MOD_LETTERS.values()]
    if bad or not out:
        raise ConfigError(f"--modalities {text!r}: use letters t, a, v (e.g. 'ta') or names "
                          "text,audio,vision")
    if len(set(out)) != len(out):
        raise ConfigError(f"--modalities {text!r} names a modality twice; give each once "
                          "(e.g. 'ta')")
    return out
