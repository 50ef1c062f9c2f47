"""One self-describing JSON file per (method, dataset, setting, variant, seed).

Layout under the results root::

    <root>/<dataset>/<setting>/<method>[@<variant>]/seed-<seed>.json

Files are written atomically (temporary file + rename), so an interrupted run never leaves a
half-written result, and finished seeds are never lost.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Mapping

from .errors import MsabenchError

#: 2: per-head metrics (``heads``), input-file fingerprints (``data_files``), parameter counts
#: taken after every stage; version-1 files are still read (they have neither)
SCHEMA_VERSION = 2
REQUIRED_KEYS = ("schema_version", "method", "dataset", "setting", "variant", "seed", "metrics",
                 "metric_info", "config", "config_hash")
DEFAULT_RESULTS_DIR = Path("leaderboards") / "results"
#: provenance keys, stored at the top level of the JSON file
PROVENANCE_KEYS = ("msabench_version", "git_commit", "git_dirty", "created", "python_version",
                   "torch_version", "platform", "torch_threads", "argv")


@dataclasses.dataclass
class RunResult:
    """One run (method x dataset x setting x variant x seed): the record a result file holds.

    :meth:`to_dict` is the JSON layout written by :func:`write_result`; :meth:`from_dict`
    reads it back, version-1 files included. ``metrics`` is ``{"test": {...}, "valid": {...}}``
    of the multimodal head ``pred``; ``heads[name]`` holds ``{"target", "test", "valid",
    "not_applicable"}`` of every other head the method declares. Keys this version does not
    know are kept in ``extra`` and written back unchanged.
    """

    method: str
    dataset: str
    setting: str
    variant: str
    seed: int
    config: dict[str, Any]
    config_hash: str
    metrics: dict[str, dict[str, float | None]]
    metric_info: dict[str, dict[str, Any]]
    schema_version: int = SCHEMA_VERSION
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)
    synthetic: bool = False
    convention: str = ""
    dataset_title: str = ""
    data_source: str = ""
    #: {absolute path: {"name", "size", "sha256"}} of the input files (empty: generated data,
    #: or a result written before data fingerprints were recorded)
    data_files: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    prediction_kind: str = "regression"
    heads: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    #: the config keys that differ from the method's defaults (flattened), for legends
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: test predictions at a glance: fraction predicted positive (> 0), their std
    prediction_summary: dict[str, float] = dataclasses.field(default_factory=dict)
    test_loss: float | None = None
    not_applicable: list[str] = dataclasses.field(default_factory=list)
    metric_warnings: list[str] = dataclasses.field(default_factory=list)
    split_sizes: dict[str, int] = dataclasses.field(default_factory=dict)
    modalities: list[str] = dataclasses.field(default_factory=list)
    feature_dims: dict[str, int] = dataclasses.field(default_factory=dict)
    labelled_train: int | None = None
    preprocessing: dict[str, Any] = dataclasses.field(default_factory=dict)
    parameters: dict[str, int] = dataclasses.field(default_factory=dict)
    best_epoch: int | None = None
    epochs_run: int | None = None
    stopped_early: bool = False
    selection: dict[str, Any] = dataclasses.field(default_factory=dict)
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    pretraining: dict[str, Any] = dataclasses.field(default_factory=dict)
    wall_time_s: float | None = None
    device: str = ""
    #: the saved weights (``msabench run --save-checkpoint``): ``{"file", "format", "sha256",
    #: "config_hash", "tensors", "bytes"}`` (msabench.checkpoints); empty (and not written)
    #: when none was saved
    checkpoint: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: the precision the loop ran in (``train.precision`` resolved on the device: "fp32" or
    #: "bf16"); empty (and not written) in results made before it was recorded (all fp32)
    precision: str = ""
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def test(self) -> dict[str, float | None]:
        return self.metrics.get("test", {})

    def head_metrics(self, head: str = "pred", split: str = "test") -> dict[str, float | None]:
        """Metrics of ``head`` on ``split`` (``pred`` = the multimodal head)."""
        if head == "pred":
            return self.metrics.get(split, {})
        return self.heads.get(head, {}).get(split, {})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name not in ("provenance", "extra"):
                out[f.name] = getattr(self, f.name)
        if self.schema_version < 2:  # a version-1 record is written back as it was read
            for key in ("data_files", "heads", "overrides", "prediction_summary"):
                if not out[key]:
                    del out[key]
        for key in OPTIONAL_KEYS:  # newer optional fields: absent from the file when empty
            if not out[key]:
                del out[key]
        out.update(self.provenance)
        out.update({k: v for k, v in self.extra.items() if k not in out})
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "result") -> "RunResult":
        """Build the record, checking the type of every field it reads; a wrong one raises
        :class:`MsabenchError` naming ``where``, the field and the fix."""
        if not isinstance(data, Mapping):
            raise MsabenchError(f"{where}: holds a JSON {type(data).__name__}, not a result "
                                "object; delete it and re-run that seed, or restore it from git")
        _check_fields(data, where)
        names = {f.name for f in dataclasses.fields(cls)} - {"provenance", "extra"}
        known = {k: v for k, v in data.items() if k in names}
        provenance = {k: data[k] for k in PROVENANCE_KEYS if k in data}
        extra = {k: v for k, v in data.items() if k not in names and k not in provenance}
        return cls(**known, provenance=provenance, extra=extra)


#: fields added after schema 2 that are left out of a file when empty (older files stay valid)
OPTIONAL_KEYS = ("checkpoint", "precision")

_FIX = "fix or delete the file and re-run that seed (or restore it from git)"
_TYPES = {"schema_version": int, "seed": int, "method": str, "dataset": str, "setting": str,
          "variant": str, "config_hash": str, "config": dict, "metric_info": dict,
          "metrics": dict, "checkpoint": dict}


def _check_fields(data: Mapping[str, Any], where: str) -> None:
    for key, kind in _TYPES.items():
        value = data.get(key)
        if key in data and (not isinstance(value, kind) or isinstance(value, bool)):
            raise MsabenchError(f"{where}: field {key!r} is {value!r}, not a JSON "
                                f"{ {int: 'integer', str: 'string', dict: 'object'}[kind] }; "
                                f"{_FIX}")
    metrics = data.get("metrics", {})
    if "test" not in metrics or not isinstance(metrics["test"], dict):
        raise MsabenchError(f"{where}: field 'metrics' has no 'test' object; {_FIX}")
    for split, values in metrics.items():
        if not isinstance(values, dict):
            raise MsabenchError(f"{where}: metrics.{split} is {values!r}, not an object; {_FIX}")
        for key, value in values.items():
            bad = value is not None and (isinstance(value, bool)
                                         or not isinstance(value, (int, float))
                                         or not math.isfinite(value))
            if bad:
                raise MsabenchError(f"{where}: metrics.{split}.{key} is {value!r}; a metric is "
                                    f"a finite number or null (not applicable); {_FIX}")


def run_leaf(method: str, variant: str) -> str:
    """A run's folder name (and short name): ``method``, or ``method@variant``."""
    return method if variant == "default" else f"{method}@{variant}"


def run_dir(root: Path, dataset: str, setting: str, method: str, variant: str) -> Path:
    return Path(root) / dataset / setting / run_leaf(method, variant)


def result_path(root: Path, dataset: str, setting: str, method: str, variant: str,
                seed: int) -> Path:
    return run_dir(root, dataset, setting, method, variant) / f"seed-{seed}.json"


def write_result(path: Path, result: "RunResult | Mapping[str, Any]") -> Path:
    path = Path(path)
    if isinstance(result, RunResult):
        result = result.to_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{os.getpid()}-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2, sort_keys=True, allow_nan=True)
            fh.write("\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; results are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_result(path: Path) -> RunResult:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise MsabenchError(f"result file {path} is unreadable ({exc}); delete it and re-run "
                            "that seed, or restore it from git") from exc
    if not isinstance(data, dict):
        raise MsabenchError(f"result file {path} holds a JSON {type(data).__name__}, not a "
                            f"result object; {_FIX}")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise MsabenchError(f"result file {path} lacks {', '.join(missing)}: not an msabench "
                            "result (or a damaged one)")
    if not isinstance(data["schema_version"], int) or isinstance(data["schema_version"], bool):
        raise MsabenchError(f"result file {path}: field 'schema_version' is "
                            f"{data['schema_version']!r}, not an integer; {_FIX}")
    if data["schema_version"] > SCHEMA_VERSION:
        raise MsabenchError(
            f"result file {path} has schema version {data['schema_version']}, newer than this "
            f"msabench understands ({SCHEMA_VERSION}); upgrade msabench")
    try:
        return RunResult.from_dict(data, str(path))
    except TypeError as exc:
        raise MsabenchError(f"result file {path} is damaged ({exc}); delete it and re-run "
                            "that seed, or restore it from git") from exc


def iter_results(root: Path, errors: list[str] | None = None
                 ) -> Iterator[tuple[Path, RunResult]]:
    """Every result file under ``root``. With ``errors``, an unreadable file is reported there
    and skipped, so one bad file does not hide the others; without, it raises."""
    root = Path(root)
    if not root.is_dir():
        return
    for path in sorted(root.rglob("seed-*.json")):
        try:
            result = read_result(path)
        except MsabenchError as exc:
            if errors is None:
                raise
            errors.append(str(exc))
            continue
        yield path, result


# ------------------------------------------------------------------ concurrent runs
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim(path: Path) -> bool:
    """Atomically claim the seed whose result goes to ``path`` (``<path>.lock`` created with
    O_EXCL, holding this process id). False when a live process holds it; a claim left by a
    dead process (killed run) is taken over. Release with :func:`release`."""
    lock = Path(f"{path}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner = int(lock.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                owner = -1
            if owner > 0 and _alive(owner) and owner != os.getpid():
                return False
            lock.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{os.getpid()} {platform.node()}\n")
        return True
    return False


def release(path: Path) -> None:
    Path(f"{path}.lock").unlink(missing_ok=True)


def clean_stale_temporaries(folder: Path) -> list[Path]:
    """Delete ``.tmp-<pid>-*.json`` files of writers that no longer run (a write killed before
    its rename); a live writer's file is left alone."""
    removed = []
    for tmp in Path(folder).glob(".tmp-*.json"):
        parts = tmp.name.split("-")
        pid = int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else -1
        if pid > 0 and _alive(pid):
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


#: repository folders that are not code: changes there do not make a result's code dirty
NOT_SOURCE = ("leaderboards",)


@lru_cache(maxsize=1)
def git_state(here: Path | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the msabench source tree, or (None, None) outside a checkout.
    ``dirty``: a tracked file differs from the commit, outside :data:`NOT_SOURCE` (the
    committed results and leaderboards, which runs themselves rewrite: a second run in one
    checkout must not call the code dirty because the first one wrote its results)."""
    here = here or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                                text=True, timeout=10)
        if commit.returncode != 0:
            return None, None
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=here,
                             capture_output=True, text=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                 ".", *(f":(exclude){p}" for p in NOT_SOURCE)],
                                cwd=top or here, capture_output=True, text=True, timeout=10)
        return commit.stdout.strip(), bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


def provenance() -> dict[str, Any]:
    import torch

    from . import __version__

    commit, dirty = git_state()
    return {
        "msabench_version": __version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python_version": platform.python_version(),
        "torch_version": torch.__version__,
        "platform": f"{platform.system()}-{platform.machine()}",
        "torch_threads": torch.get_num_threads(),
        "argv": sys.argv[1:],
    }
