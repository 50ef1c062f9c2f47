"""Pre-trained checkpoints: what a run needs (:class:`ModelNeed`) and the model directory.

A method declares the checkpoints it loads with
:meth:`msabench.api.Method.required_models` (``config`` -> list of :class:`ModelNeed`), a
dataset with :meth:`msabench.api.Dataset.required_models` (e.g. the text encoder of a setting
that extracts features). ``msabench models`` lists them, downloads them once into the model
directory and verifies that they load.

The model directory is where downloaded checkpoints live, one folder per hub name:
``org/name`` is ``<model dir>/org--name`` (``<model dir>/org/name`` is accepted too), a name
without an organisation (``bert-base-uncased``) is ``<model dir>/bert-base-uncased``. It is,
first match wins: ``--model-dir`` (``msabench run`` / ``msabench models``), ``model_dir`` at
the top level of the ``--config`` TOML file, ``$MSABENCH_MODEL_DIR``, else
``<cache root>/models`` (``$MSABENCH_CACHE_DIR/models``, default ``~/.cache/msabench/models``).
The command line applies the first two by setting ``$MSABENCH_MODEL_DIR`` for the process
(:func:`use_model_dir`), so every loader, built-in or third-party, sees one place.

Nothing here imports torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

ENV_MODEL_DIR = "MSABENCH_MODEL_DIR"


@dataclass(frozen=True)
class ModelNeed:
    """One checkpoint a run loads.

    ``name``      hub name (``org/name``) or local directory, as configured
    ``key``       the config key that chooses it (``model.model``, ``data.options.text_model``)
                  so a listing can say how to change it
    ``modality``  ``text`` / ``audio`` / ``vision`` (what the processor is: a tokenizer, a
                  feature extractor, an image processor), or None when unknown
    ``revision``  hub revision (branch, tag or commit), None = the default branch
    ``role``      what it is for, for people (``"MAG-BERT encoder"``)
    """

    name: str
    key: str
    modality: str | None = None
    revision: str | None = None
    role: str = ""


def model_dir() -> Path:
    """The model directory now: ``$MSABENCH_MODEL_DIR``, else ``<cache root>/models``."""
    env = os.environ.get(ENV_MODEL_DIR, "").strip()
    if env:
        return Path(env).expanduser()
    from .fingerprint import cache_root

    return cache_root() / "models"


def resolve_model_dir(cli_dir: Path | str | None,
                      file_config: Mapping[str, Any] | None = None) -> Path | None:
    """``--model-dir`` > ``model_dir`` in the config file; None when neither is given (then
    :func:`model_dir` falls back to the environment and the default)."""
    if cli_dir is not None and str(cli_dir).strip():
        return Path(cli_dir).expanduser()
    value = (file_config or {}).get("model_dir")
    if value is not None:
        from .errors import ConfigError

        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"config file: model_dir={value!r} must be a folder path (a "
                              "non-empty string)")
        return Path(value).expanduser()
    return None


def use_model_dir(path: Path | str | None) -> None:
    """Make ``path`` the model directory of this process (no-op for None)."""
    if path is not None:
        os.environ[ENV_MODEL_DIR] = str(Path(path).expanduser())


def dir_names(name: str) -> tuple[str, ...]:
    """The folder names of hub name ``name`` inside the model directory, preferred first."""
    name = name.strip().strip("/")
    if "/" in name:
        return (name.replace("/", "--"), name)
    return (name,)


def model_dir_candidates(name: str, root: Path | None = None) -> list[Path]:
    """Where hub model ``name`` may sit in the model directory (``root``, default
    :func:`model_dir`), preferred first."""
    root = model_dir() if root is None else Path(root)
    return [root / d for d in dir_names(name)]


def find_in_model_dir(name: str, root: Path | None = None) -> Path | None:
    """The first candidate folder holding a ``config.json``, or None."""
    for path in model_dir_candidates(name, root):
        if (path / "config.json").is_file():
            return path
    return None
