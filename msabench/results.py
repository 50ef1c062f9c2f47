"""One self-describing JSON file per (method, dataset, setting, variant, seed).

Layout under the results root::

    <root>/<dataset>/<setting>/<method>[@<variant>]/seed-<seed>.json

Files are written atomically (temporary file + rename), so an interrupted run never leaves a
half-written result, and finished seeds are never lost.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from .errors import MsabenchError

SCHEMA_VERSION = 1
REQUIRED_KEYS = ("schema_version", "method", "dataset", "setting", "variant", "seed", "metrics",
                 "metric_info", "config", "config_hash")
DEFAULT_RESULTS_DIR = Path("leaderboards") / "results"


def run_dir(root: Path, dataset: str, setting: str, method: str, variant: str) -> Path:
    leaf = method if variant == "default" else f"{method}@{variant}"
    return Path(root) / dataset / setting / leaf


def result_path(root: Path, dataset: str, setting: str, method: str, variant: str,
                seed: int) -> Path:
    return run_dir(root, dataset, setting, method, variant) / f"seed-{seed}.json"


def write_result(path: Path, result: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
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


def read_result(path: Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise MsabenchError(f"result file {path} is unreadable ({exc}); delete it and re-run "
                            "that seed, or restore it from git") from exc
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise MsabenchError(f"result file {path} lacks {', '.join(missing)}: not an msabench "
                            "result (or a damaged one)")
    if data["schema_version"] > SCHEMA_VERSION:
        raise MsabenchError(
            f"result file {path} has schema version {data['schema_version']}, newer than this "
            f"msabench understands ({SCHEMA_VERSION}); upgrade msabench")
    return data


def iter_results(root: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    root = Path(root)
    if not root.is_dir():
        return
    for path in sorted(root.rglob("seed-*.json")):
        yield path, read_result(path)


@lru_cache(maxsize=1)
def git_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the msabench source tree, or (None, None) outside a checkout."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                                text=True, timeout=10)
        if commit.returncode != 0:
            return None, None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=here, capture_output=True, text=True, timeout=10)
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
