"""Model checkpoints beside result files (safetensors; never pickle).

``msabench run --save-checkpoint`` (or ``train.save_checkpoint = true``: ``[train]`` in the
``--config`` file, ``--set``, a grid's ``set``)
writes the validation-selected weights of each seed next to its result file::

    <root>/<dataset>/<setting>/<method>[@<variant>]/seed-<seed>.safetensors

The result file records ``checkpoint = {"file", "sha256", "config_hash", "format", "tensors",
"bytes"}``; the safetensors header carries the same ``config_hash`` (and method, dataset,
seed). :func:`load_model` rebuilds the method from the result's stored config and refuses a
checkpoint whose digest, config hash or tensor names do not match. safetensors holds tensors
only, so loading one runs no code (unlike ``torch.load`` of a pickle).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .errors import MsabenchError

FORMAT = "safetensors"
SUFFIX = ".safetensors"


class CheckpointError(MsabenchError):
    """A checkpoint is missing, damaged or does not belong to its result file."""


def checkpoint_path(result_path: Path) -> Path:
    """``seed-1111.json`` -> ``seed-1111.safetensors`` (same folder)."""
    result_path = Path(result_path)
    return result_path.with_name(result_path.stem + SUFFIX)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _require_safetensors() -> Any:
    try:
        import safetensors.torch as st
    except ImportError:  # pragma: no cover (a core dependency)
        raise MsabenchError("checkpoints need the safetensors package: pip install safetensors")
    return st


def save_checkpoint(model: Any, result_path: Path, config_hash: str,
                    info: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Write ``model``'s state dict beside ``result_path`` atomically; return the record the
    result file stores under ``checkpoint``."""
    st = _require_safetensors()
    path = checkpoint_path(result_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # clones: safetensors refuses tensors sharing storage (tied weights, views)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    metadata = {"format": "pt", "msabench_config_hash": str(config_hash),
                **{f"msabench_{k}": str(v) for k, v in (info or {}).items()}}
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{os.getpid()}-", suffix=SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        st.save_file(state, tmp, metadata=metadata)
        digest = sha256_file(Path(tmp))
        size = os.path.getsize(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {"file": path.name, "format": FORMAT, "sha256": digest, "config_hash": config_hash,
            "tensors": len(state), "bytes": size}


def verify_checkpoint(result_path: Path, result: Any) -> Path:
    """The checkpoint of ``result`` (a :class:`~msabench.results.RunResult` read from
    ``result_path``), checked: recorded, present, same sha256, and its header's config hash
    equal to the result's (and the result's config hashing to its ``config_hash``)."""
    from .config import config_hash

    record = result.checkpoint or {}
    where = f"{result_path}"
    if not record:
        raise CheckpointError(f"{where} has no checkpoint: re-run that seed with "
                              "`msabench run ... --save-checkpoint --force`")
    path = Path(result_path).parent / str(record.get("file", ""))
    if not path.is_file():
        raise CheckpointError(f"{where} names checkpoint {record.get('file')!r}, which is "
                              f"missing from {path.parent}; re-run the seed with "
                              "--save-checkpoint --force")
    digest = sha256_file(path)
    if digest != record.get("sha256"):
        raise CheckpointError(f"checkpoint {path}: sha256 {digest[:12]}... does not match the "
                              f"result's {str(record.get('sha256'))[:12]}... (changed or "
                              "damaged since it was written); re-run the seed with "
                              "--save-checkpoint --force")
    if record.get("config_hash") != result.config_hash:
        raise CheckpointError(f"checkpoint {path} was recorded for config "
                              f"{record.get('config_hash')}, the result is {result.config_hash}")
    actual = config_hash(result.config)
    if actual != result.config_hash:
        raise CheckpointError(f"{where}: its stored config hashes to {actual}, not the recorded "
                              f"{result.config_hash} (the file was edited); refusing its "
                              "checkpoint")
    _require_safetensors()
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
    except Exception as exc:  # a damaged header
        raise CheckpointError(f"checkpoint {path} is not a readable safetensors file ({exc})")
    if header.get("msabench_config_hash") != result.config_hash:
        raise CheckpointError(f"checkpoint {path} was written for config "
                              f"{header.get('msabench_config_hash')!r}, but {where} is "
                              f"{result.config_hash}; refusing to load it")
    return path


def load_state(model: Any, path: Path) -> None:
    """Load the tensors of ``path`` into ``model`` (strict: same names and shapes)."""
    st = _require_safetensors()
    state = st.load_file(str(path))
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:4])}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:4])}")
        if shapes:
            parts.append(f"other shapes for {', '.join(sorted(shapes)[:4])}")
        raise CheckpointError(f"checkpoint {path} does not fit the rebuilt {model.name} model "
                              f"({'; '.join(parts)}); was the method changed since it was "
                              "trained?")
    model.load_state_dict(state, strict=True)


@dataclass
class Restored:
    """A trained model rebuilt from a result file and its checkpoint, with its data."""

    model: Any
    result: Any
    data: Any
    context: Any
    plan: Any
    #: the run-level preprocessed data before the seed's label mask (reusable for other seeds)
    base_data: Any = None


def restore(result_path: Path, registry: Any = None, data_dir: Path | None = None,
            data: Any = None, progress: Any = None) -> Restored:
    """Rebuild the method of ``result_path`` from its stored config, load its verified
    checkpoint and return it with the run's data (loaded and preprocessed as the run did,
    with the seed's label mask). ``data``: an already loaded (run-level preprocessed) dataset
    to reuse across seeds of one variant."""
    from . import config as cfg
    from . import preprocess
    from .api import Components
    from .plan import Plan, complete_data_config, resolve_data_dir
    from .plugins import get_registry
    from .progress import Progress
    from .results import read_result
    from .runner import load_dataset, metric_classes
    from .training import LoopContext, pick_device, seed_everything

    registry = registry or get_registry()
    progress = progress or Progress(quiet=True)
    result = read_result(result_path)
    path = verify_checkpoint(result_path, result)
    method_cls = registry.load("method", result.method)
    dataset_cls = registry.load("dataset", result.dataset)
    stored = {k: v for k, v in result.config.items() if k in cfg.SECTIONS}
    config = cfg.resolve(method_cls, result.dataset, stored)
    complete_data_config(config["data"], dataset_cls)
    if cfg.config_hash(config) != result.config_hash:
        raise CheckpointError(f"{result_path}: the stored config no longer resolves to the "
                              f"same config (hash {cfg.config_hash(config)} vs "
                              f"{result.config_hash}): the method's defaults changed since "
                              "the run")
    plan = Plan(method_cls, dataset_cls, config, result.setting, result.variant,
                resolve_data_dir(result.dataset, data_dir, None), result.config_hash)
    if data is None:
        data, plan.preprocessing = load_dataset(plan, progress)
    seeded, _ = preprocess.for_seed(data, config["data"], result.seed)
    device = pick_device(str(config["train"]["device"]))
    context = LoopContext(device=device, seed=result.seed, train=config["train"],
                          progress=progress,
                          metric_classes=metric_classes(registry, seeded.meta.convention))
    seed_everything(result.seed)
    model = method_cls(seeded.info(), config["model"], Components(registry))
    model.context = context
    model.setup(seeded)
    load_state(model, path)
    model.to(device)
    model.eval()
    return Restored(model, result, seeded, context, plan, data)
