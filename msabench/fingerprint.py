"""Fingerprints of the input files a run reads, so the data is part of a result's identity.

A result is only reused ("result exists, skipped") when the data files that produced it are
the same files now: same name, size and SHA-256. Hashing a multi-GB pickle takes a while, so
each digest is cached by absolute path, size and modification time in
``$MSABENCH_CACHE_DIR/fingerprints.json`` (default ``~/.cache/msabench``) and recomputed only
when one of those changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

CACHE_FILE = "fingerprints.json"


def cache_root() -> Path:
    """``$MSABENCH_CACHE_DIR``, else ``~/.cache/msabench``."""
    env = os.environ.get("MSABENCH_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "msabench"


def _sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _load_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_cache(path: Path, data: Mapping[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:  # a read-only cache only costs a re-hash next time
        pass


def fingerprint_files(paths: Iterable[Path]) -> dict[str, dict[str, Any]]:
    """``{absolute path: {"name", "size", "sha256"}}`` of every existing file in ``paths``."""
    cache_path = cache_root() / CACHE_FILE
    cache = _load_cache(cache_path)
    out: dict[str, dict[str, Any]] = {}
    changed = False
    for p in paths:
        path = Path(p).resolve()
        if not path.is_file():
            continue
        st = path.stat()
        key = str(path)
        hit = cache.get(key)
        if not (isinstance(hit, dict) and hit.get("size") == st.st_size
                and hit.get("mtime_ns") == st.st_mtime_ns and isinstance(hit.get("sha256"), str)):
            hit = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": _sha256(path)}
            cache[key] = hit
            changed = True
        out[key] = {"name": path.name, "size": st.st_size, "sha256": hit["sha256"]}
    if changed:
        _save_cache(cache_path, cache)
    return out


def describe_change(old: Mapping[str, Mapping[str, Any]],
                    new: Mapping[str, Mapping[str, Any]]) -> str | None:
    """None when ``old`` and ``new`` name the same data (by content), else what changed."""
    old_sums = {v.get("sha256") for v in old.values()}
    new_sums = {v.get("sha256") for v in new.values()}
    if old_sums == new_sums:
        return None
    gone = [f"{p} ({v.get('size')} bytes)" for p, v in old.items()
            if v.get("sha256") not in new_sums]
    came = [f"{p} ({v.get('size')} bytes)" for p, v in new.items()
            if v.get("sha256") not in old_sums]
    parts = []
    if gone:
        parts.append("it was computed from " + ", ".join(gone))
    if came:
        parts.append("this run reads " + ", ".join(came))
    return "; ".join(parts)
