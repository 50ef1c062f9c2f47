"""One config object, one precedence: CLI > config file (TOML) > dataset defaults > defaults.

A resolved run config is a dict with four sections:

``train``    the runner's recipe (:data:`TRAIN_DEFAULTS` lists every key)
``model``    the method's hyperparameters (keys must exist in the method's defaults)
``pretrain`` ``{"stages": [...], "<stage>": {...}}``
``data``     ``setting``, ``modalities``, dataset-specific ``options`` and the run-level
             preprocessing of :mod:`msabench.preprocess` (:data:`DATA_DEFAULTS` lists every key)
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
import re
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: the seeds of a run when none are given (``--seeds``, ``seeds`` in the config file)
DEFAULT_SEEDS: tuple[int, ...] = (1111,)
#: every key the runner reads from ``train``; methods override values, never add keys
TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 30,          # maximum number of supervised epochs
    "batch_size": 32,
    "lr": 1e-3,
    "weight_decay": 0.0,
    "patience": 8,         # early stopping: epochs without validation improvement (0 = off)
    "grad_clip": 0.0,      # max gradient norm (0 = off)
    "select": "loss",      # validation criterion: "loss" or a metric key ("mae", "acc2_non0", ...)
    "eval_batch_size": 256,
    "device": "auto",      # "auto" (cuda if available), "cpu", "cuda", "cuda:1", ...
    "save_checkpoint": False,  # write each seed's selected weights beside its result
                               # (seed-N.safetensors; --save-checkpoint/--no-save-checkpoint wins)
    "vectorize": False,    # train the run's seeds as one stacked model (docs/vectorize.md)
    "precision": "auto",   # "auto" (bf16 autocast on CUDA, fp32 elsewhere), "fp32", "bf16"
    "bucket_by_length": False,  # batches of similar-length samples (msabench.bucketing)
}
#: the values of ``train.precision`` (:mod:`msabench.precision` applies them)
PRECISIONS = ("auto", "fp32", "bf16")
#: declared type and range of every ``train`` key: (kind, lower bound, bound inclusive)
TRAIN_TYPES: dict[str, tuple] = {  # (kind, lower bound, inclusive[, upper bound])
    "epochs": ("int", 1, True), "batch_size": ("int", 1, True), "lr": ("float", 0, False, 1e3),
    "weight_decay": ("float", 0, True), "patience": ("int", 0, True),
    "grad_clip": ("float", 0, True), "select": ("str", None, True),
    "eval_batch_size": ("int", 1, True), "device": ("device", None, True),
    "save_checkpoint": ("bool", None, True),
    "vectorize": ("bool", None, True),
    "precision": ("precision", None, True), "bucket_by_length": ("bool", None, True),
}
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
#: every key of ``data``; the preprocessing keys are applied by :mod:`msabench.preprocess`
DATA_DEFAULTS: dict[str, Any] = {
    "setting": None,        # dataset setting (e.g. "aligned"); None = the dataset's default
    "modalities": None,     # modality subset for ablations, e.g. ["text", "audio"]; None = all
    "options": {},          # dataset-specific options (msabench info DATASET lists them)
    "normalize": "none",    # "none", "zscore", "minmax" or "minmax-zscore": per modality and
                            # feature dimension, statistics from the TRAIN split's valid steps only
    "max_length": None,     # None = keep; N = first N steps / zero-pad to N for every modality;
                            # {text = 30, audio = 50} per modality
    "label_fraction": 1.0,  # in (0, 1]: keep the labels of a stratified fraction of train
    "label_seed": None,     # seed of the labelled subset; None = the run seed
    "valid_label_fraction": None,  # labelled fraction of valid; None = label_fraction (1.0:
                                   # every validation label, the behaviour before this key)
    "max_samples": None,    # None = all; N = the first N samples of every split (smoke runs)
}
#: data keys whose default means "no preprocessing": left out of a run's identity while at the
#: default, so result files written before these keys existed keep their config hash
NEUTRAL_DATA_KEYS = ("normalize", "max_length", "label_fraction", "label_seed", "max_samples",
                     "valid_label_fraction")
SECTIONS = ("train", "model", "pretrain", "data")
#: ``model_dir``: where downloaded checkpoints live (msabench.models); not part of a run's
#: identity, like ``data_dir``
TOP_LEVEL_KEYS = ("method", "dataset", "seeds", "tag", "data_dir", "model_dir")
#: train keys whose default reproduces what ran before they existed (fp32 on CPU, unbucketed
#: batches): left out of a run's identity while at the default, so older results keep their
#: config hash. The resolved precision of a run is recorded in its result file.
NEUTRAL_TRAIN_KEYS = ("precision", "bucket_by_length")
#: model keys (of any method that declares them) whose default reproduces what ran before they
#: existed: left out of the identity at that default. ``pad_to`` (mag-bert): None = pad each
#: batch to its longest input, as before; a number is a new variant
NEUTRAL_MODEL_KEYS: dict[str, Any] = {"pad_to": None}
#: keys that do not change what is computed, so they do not change a run's identity
NON_IDENTITY_KEYS = {("train", "device"), ("train", "eval_batch_size"),
                     ("train", "save_checkpoint"), ("train", "vectorize")}


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (pass an existing TOML file to --config)")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    unknown = set(data) - set(SECTIONS) - set(TOP_LEVEL_KEYS)
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown top-level key(s) {', '.join(sorted(unknown))}; "
            f"allowed: sections [{'], ['.join(SECTIONS)}] and keys {', '.join(TOP_LEVEL_KEYS)}")
    return data


def parse_value(text: str) -> Any:
    """Parse a ``--set`` value as a TOML literal (numbers, booleans, arrays, quoted strings);
    anything else is taken as a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["train.lr=1e-4", "model.hidden=64"]`` -> nested dict."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.lr=1e-4")
        parts = key.split(".")
        if parts[0] not in SECTIONS:
            raise ConfigError(
                f"--set {item!r}: key must start with a section ({', '.join(SECTIONS)}), "
                f"e.g. train.lr or model.hidden")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part} is both a value and a section")
        node[parts[-1]] = parse_value(raw.strip())
    return out


def check_keys(section: str, given: Mapping[str, Any], known: Iterable[str], where: str) -> None:
    known = list(known)
    for key in given:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
            hint = f" Did you mean {section}.{close[0]}?" if close else ""
            raise ConfigError(
                f"{where}: unknown key {section}.{key}.{hint} Known {section} keys: "
                f"{', '.join(sorted(known)) or '(none)'}.")


def method_defaults(method_cls: Any, dataset: str) -> dict[str, Any]:
    """The method's documented defaults for this dataset, on top of the runner's defaults."""
    base = {"train": dict(TRAIN_DEFAULTS), "model": {}, "pretrain": {}, "data": dict(DATA_DEFAULTS)}
    base = deep_merge(base, getattr(method_cls, "defaults", {}) or {})
    per_dataset = (getattr(method_cls, "dataset_defaults", {}) or {}).get(dataset, {})
    return deep_merge(base, per_dataset)


def _kind_name(kind: str) -> str:
    return {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
            "list": "a list", "dict": "a table", "device": "auto, cpu, cuda or cuda:N",
            "precision": f"one of {', '.join(PRECISIONS)}"}[kind]


def _kind_of(default: Any) -> str | None:
    """The type a key's documented default declares (None: any value, e.g. a None default)."""
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    if isinstance(default, str):
        return "str"
    if isinstance(default, (list, tuple)):
        return "list"
    if isinstance(default, Mapping):
        return "dict"
    return None


def check_value(name: str, value: Any, kind: str | None, lower: float | None = None,
                inclusive: bool = True, upper: float | None = None, where: str = "") -> None:
    """Raise one :class:`ConfigError` naming ``name`` when ``value`` is not of ``kind`` (and,
    for numbers, finite and above ``lower``)."""
    if kind is None:
        return
    ok = {"bool": lambda v: isinstance(v, bool),
          "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
          "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          "str": lambda v: isinstance(v, str),
          "list": lambda v: isinstance(v, (list, tuple)),
          "dict": lambda v: isinstance(v, Mapping),
          "device": lambda v: isinstance(v, str) and bool(_DEVICE.match(v)),
          "precision": lambda v: v in PRECISIONS}[kind](value)
    prefix = f"{where}: " if where else ""
    if not ok:
        hint = f" (numbers go without quotes: --set {name}=<number>)" if kind in (
            "int", "float") and isinstance(value, str) else ""
        raise ConfigError(f"{prefix}{name}={value!r} must be {_kind_name(kind)}{hint}")
    if kind in ("int", "float"):
        if not math.isfinite(float(value)):
            raise ConfigError(f"{prefix}{name}={value!r} must be a finite number")
        if lower is not None and (value < lower or (value == lower and not inclusive)):
            bound = ">=" if inclusive else ">"
            raise ConfigError(f"{prefix}{name}={value!r} must be {bound} {lower:g}")
        if upper is not None and value > upper:
            raise ConfigError(f"{prefix}{name}={value!r} must be <= {upper:g}")


def check_types(section: str, values: Mapping[str, Any], defaults: Mapping[str, Any],
                where: str = "") -> None:
    """Every value of ``section`` against its declared type: ``train`` by
    :data:`TRAIN_TYPES`, other sections by the type of the documented default."""
    for key, value in values.items():
        name = f"{section}.{key}"
        if section == "train" and key in TRAIN_TYPES:
            check_value(name, value, *TRAIN_TYPES[key], where=where)
        elif key in defaults:
            check_value(name, value, _kind_of(defaults[key]), where=where)


def resolve(method_cls: Any, dataset: str, *layers: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``layers`` (lowest precedence first) over the method's defaults; validate keys and
    the type and range of every value once, naming the key."""
    defaults = method_defaults(method_cls, dataset)
    config = defaults
    where = f"config for method {method_cls.name}"
    for layer in layers:
        sections = {k: v for k, v in layer.items() if k in SECTIONS}
        for name, section in sections.items():
            if not isinstance(section, Mapping):
                raise ConfigError(f"{where}: [{name}] must be a table of keys (e.g. "
                                  f"[{name}] with key = value lines), got {section!r}")
        check_keys("train", sections.get("train", {}), TRAIN_DEFAULTS, where)
        check_keys("model", sections.get("model", {}), defaults["model"], where)
        check_keys("data", sections.get("data", {}), DATA_DEFAULTS, where)
        config = deep_merge(config, sections)
    check_types("train", config["train"], TRAIN_DEFAULTS, where)
    check_types("model", config["model"], defaults["model"], where)
    for key in ("setting",):
        value = config["data"].get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{where}: data.{key}={value!r} must be a string")
    for key in ("modalities",):
        value = config["data"].get(key)
        if value is not None and (not isinstance(value, list)
                                  or not all(isinstance(m, str) for m in value)):
            raise ConfigError(f"{where}: data.{key}={value!r} must be a list of names, e.g. "
                              "[\"text\", \"audio\"]")
    if not isinstance(config["data"].get("options", {}), Mapping):
        raise ConfigError(f"{where}: data.options must be a table")
    stages = config["pretrain"].get("stages", [])
    if not isinstance(stages, list) or not all(isinstance(x, str) for x in stages):
        raise ConfigError(f"pretrain.stages must be a list of pretrainer names, got {stages!r}")
    return config


def identity_view(config: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(config))
    for section, key in NON_IDENTITY_KEYS:
        out.get(section, {}).pop(key, None)
    data = out.get("data", {})
    if data.get("label_fraction", 1.0) != 1.0 and data.get("valid_label_fraction") is None:
        # semi-supervised runs: the validation protocol is part of the identity, so results
        # made before valid_label_fraction existed (validation fully labelled) never pass
        # for runs under the new default (validation as labelled as train)
        data["valid_label_fraction"] = data["label_fraction"]
    for key in NEUTRAL_DATA_KEYS:
        if key in data and data[key] == DATA_DEFAULTS[key]:
            del data[key]
    train = out.get("train", {})
    for key in NEUTRAL_TRAIN_KEYS:
        if key in train and train[key] == TRAIN_DEFAULTS[key]:
            del train[key]
    model = out.get("model", {})
    for key, default in NEUTRAL_MODEL_KEYS.items():
        if key in model and model[key] == default:
            del model[key]
    return out


def config_hash(config: Mapping[str, Any]) -> str:
    blob = json.dumps(identity_view(config), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def overrides(config: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of ``config`` that matter and differ from ``defaults``, flattened
    (``{"train.lr": 0.0003}``); a key the defaults lack maps to its value, a key only the
    defaults have maps to None. Stored in every result so leaderboards can print a legend."""
    now = flatten(identity_view(config))
    base = flatten(identity_view(defaults))
    raw = flatten(config)
    out = {}
    for key in sorted(set(now) | set(base)):
        if now.get(key) == base.get(key):
            continue
        value = now[key] if key in now else raw.get(key)
        if value is None or value == {}:
            continue  # an implied value (a key left at its neutral default) or an empty table
        out[key] = value
    return out


def variant_name(config: Mapping[str, Any], defaults: Mapping[str, Any], tag: str | None) -> str:
    """How a run's config differs from the method's defaults, as a short stable name.

    ``default`` when nothing that matters differs; otherwise the differences joined by ``_``:
    ``lf0.4`` for a non-default ``data.label_fraction``, ``m-ta`` for a modality subset and
    ``cfg-<hash>`` for anything else (e.g. ``lf0.4_m-ta``). An explicit ``--tag`` wins.
    """
    if tag:
        if not all(c.isalnum() or c in "-_." for c in tag):
            raise ConfigError(f"--tag {tag!r}: use letters, digits, '-', '_' and '.' only")
        return tag
    now = flatten(identity_view(config))
    base = flatten(identity_view(defaults))
    diff = {k for k in set(now) | set(base) if now.get(k) != base.get(k)}
    vlf = "data.valid_label_fraction"
    if vlf in diff and now.get(vlf, 1.0) == now.get("data.label_fraction", 1.0):
        diff.discard(vlf)  # the default protocol: validation as labelled as train
    if not diff:
        return "default"
    parts = []
    if "data.label_fraction" in diff:
        parts.append(f"lf{float(config['data']['label_fraction']):g}")
    if vlf in diff:
        parts.append(f"vlf{float(now.get(vlf, 1.0)):g}")
    if "data.modalities" in diff and config["data"]["modalities"]:
        parts.append("m-" + "".join(m[0] for m in config["data"]["modalities"]))
    if diff - {"data.label_fraction", "data.modalities", vlf}:
        parts.append("cfg-" + config_hash(config)[:8])
    return "_".join(parts) if parts else "cfg-" + config_hash(config)[:8]
