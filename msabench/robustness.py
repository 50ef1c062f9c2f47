"""Modality robustness of trained models: test metrics under perturbed test inputs.

For every result file with a checkpoint (``msabench run --save-checkpoint``), the model is
rebuilt and evaluated on the test split:

``clean``             unchanged (and compared with the stored test metrics)
``drop:<m>``          modality ``m`` removed: features zeroed and its mask emptied (lengths
                      0). A model that cannot take an empty sequence (attention over no
                      step gives NaN; recurrent encoders refuse length 0) gets one zero step
                      instead (``removal: "zero-step"`` in the record). Raw transcripts become
                      empty strings and token-id extras (``text_*``) are zeroed; raw media of
                      ``m`` are withheld, so a method that decodes them says it cannot run.
                      A method may declare ``needs_modalities = ("text",)``: those drops are
                      reported as unsupported without running.
``absent:<m>``         modality ``m`` dropped from the fusion (``with model.without({m})``,
                      :meth:`msabench.api.Method.droppable_modalities`): the method runs
                      without it, never reading its inputs (concat/sf: the part is the
                      training mean; tfn/lmf: the constant-1 part only; mult: the crossmodal
                      blocks that read it are skipped; transformer/dec-semi: its pooled
                      vector is omitted). A method that cannot is reported ``unsupported``
                      with the reason; ``drop:<m>`` (zeroed) is its fallback number.
``noise:<m>@<snr>dB`` Gaussian noise on the valid steps of ``m`` at that signal-to-noise
                      ratio (signal power: the mean square of ``m``'s valid test features)
``words:<p>``         every word dropped with probability ``p``: removed from raw
                      transcripts, its step zeroed in word-level text features

Perturbations are seeded (the run's seed), so the numbers are reproducible. A perturbation
that raises is recorded as unsupported with the reason; one that leaves every prediction
unchanged is flagged ``no_effect`` (the method does not read those inputs). The record goes
to ``robustness-seed-<seed>.json`` beside the result file (the name keeps it out of the
``seed-*.json`` result glob).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

from .errors import MsabenchError

DEFAULT_SNRS = (20.0, 10.0, 0.0)
DEFAULT_WORD_DROPOUT = (0.1, 0.3)
KIND = "msabench-robustness"
SCHEMA = 2  # 2: absent:<m> entries
PREFIX = "robustness-"


@dataclass(frozen=True)
class Perturbation:
    kind: str  # drop | absent | noise | words
    modality: str | None = None
    value: float | None = None

    @property
    def name(self) -> str:
        if self.kind in ("drop", "absent"):
            return f"{self.kind}:{self.modality}"
        if self.kind == "noise":
            return f"noise:{self.modality}@{self.value:g}dB"
        return f"words:{self.value:g}"


def robustness_path(result_path: Path) -> Path:
    result_path = Path(result_path)
    return result_path.with_name(PREFIX + result_path.name)


def plan_perturbations(modalities: Sequence[str], has_words: bool,
                       snrs: Iterable[float] = DEFAULT_SNRS,
                       word_dropout: Iterable[float] = DEFAULT_WORD_DROPOUT,
                       ) -> list[Perturbation]:
    out = [Perturbation("drop", m) for m in modalities]
    out += [Perturbation("absent", m) for m in modalities]
    out += [Perturbation("noise", m, float(s)) for m in modalities for s in snrs]
    if has_words:
        out += [Perturbation("words", "text", float(p)) for p in word_dropout]
    return out


def _generator(seed: int, name: str) -> Any:
    import torch

    offset = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
    return torch.Generator().manual_seed((int(seed) + offset) % (2**63))


def _valid_steps(split: Any, m: str) -> Any:
    import torch

    x = split.features[m]
    return torch.arange(x.shape[1]).unsqueeze(0) < split.lengths[m].unsqueeze(1)


def perturb(split: Any, p: Perturbation, seed: int, removal: str = "masked") -> Any:
    """A copy of ``split`` with ``p`` applied (features are never modified in place)."""
    import torch

    features, lengths = dict(split.features), dict(split.lengths)
    texts, extras, media = split.texts, dict(split.extras), dict(split.media)
    m = p.modality
    if p.kind in ("drop", "absent"):  # absent: also withheld, and left out of the fusion
        features[m] = torch.zeros_like(features[m])
        fill = 0 if removal == "masked" else 1
        lengths[m] = torch.full_like(lengths[m], fill)
        if m == "text":
            texts = [""] * len(split) if texts is not None else None
            extras = {k: (torch.zeros_like(v) if k.startswith("text") else v)
                      for k, v in extras.items()}
        media.pop(m, None)
    elif p.kind == "noise":
        x = features[m]
        valid = _valid_steps(split, m).unsqueeze(-1).to(x.dtype)
        count = valid.sum() * x.shape[-1]
        power = float((x.double() ** 2 * valid).sum() / count.clamp_min(1)) if count else 0.0
        sigma = math.sqrt(power / (10.0 ** (p.value / 10.0))) if power > 0 else 0.0
        noise = torch.randn(x.shape, generator=_generator(seed, p.name), dtype=x.dtype)
        features[m] = x + noise * sigma * valid
    elif p.kind == "words":
        g = _generator(seed, p.name)
        if texts is not None:
            kept = []
            for text in texts:
                words = text.split()
                keep = torch.rand(len(words), generator=g) >= p.value
                kept.append(" ".join(w for w, k in zip(words, keep.tolist()) if k))
            texts = kept
        x = features.get("text")
        if x is not None and x.shape[1] > 1:  # word-level features: zero dropped steps
            drop = (torch.rand(x.shape[:2], generator=g) < p.value) & _valid_steps(split, "text")
            features["text"] = x * (~drop).unsqueeze(-1).to(x.dtype)
    else:  # pragma: no cover
        raise ValueError(p.kind)
    return replace(split, features=features, lengths=lengths, texts=texts, extras=extras,
                   media=media)


def _evaluate(restored: Any, split: Any) -> Any:
    import torch

    ev = restored.context.evaluate(restored.model, split)
    if ev.preds.numel() and not bool(torch.isfinite(ev.preds).all()):
        raise FloatingPointError("non-finite predictions")
    return ev


def evaluate_result(result_path: Path, registry: Any = None, data_dir: Path | None = None,
                    snrs: Iterable[float] = DEFAULT_SNRS,
                    word_dropout: Iterable[float] = DEFAULT_WORD_DROPOUT,
                    data: Any = None, progress: Any = None) -> tuple[dict[str, Any], Any]:
    """The robustness record of one result file (its checkpoint rebuilt and evaluated), and
    the loaded data (pass it back as ``data`` for another seed of the same variant)."""
    import torch

    from .checkpoints import restore
    from .results import provenance

    restored = restore(result_path, registry, data_dir=data_dir, data=data, progress=progress)
    model, result = restored.model, restored.result
    test = restored.data["test"]
    needs = set(getattr(type(model), "needs_modalities", ()) or ())
    has_words = "text" in test.features and (
        test.texts is not None or test.features["text"].shape[1] > 1)
    clean = _evaluate(restored, test)
    stored = result.test
    matches = all(stored.get(k) is None or v is None or abs(v - stored[k]) <= 1e-4
                  for k, v in clean.metrics.items())
    records = []
    for p in plan_perturbations(list(test.features), has_words, snrs, word_dropout):
        entry: dict[str, Any] = {"name": p.name, "kind": p.kind, "modality": p.modality,
                                 "value": p.value}
        if p.kind in ("drop", "absent") and p.modality in needs:
            entry.update(status="unsupported", reason=f"{result.method} cannot run without "
                         f"{p.modality} (it declares needs_modalities)")
            records.append(entry)
            continue
        if p.kind == "absent":
            records.append(_absent(restored, test, p, result, clean))
            continue
        attempts = ("masked", "zero-step") if p.kind == "drop" else ("masked",)
        error = ""
        for removal in attempts:
            try:
                ev = _evaluate(restored, perturb(test, p, result.seed, removal))
            except Exception as exc:  # a method that cannot take this input says why
                error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                continue
            entry.update(status="ok", metrics=ev.metrics,
                         no_effect=bool(torch.equal(ev.preds, clean.preds)))
            if p.kind == "drop":
                entry["removal"] = removal
            break
        else:
            what = (f"cannot run without {p.modality}" if p.kind == "drop"
                    else "cannot run on this input")
            entry.update(status="unsupported", reason=f"{result.method} {what}: {error}")
        records.append(entry)
    return {"kind": KIND, "schema_version": SCHEMA, "method": result.method,
            "dataset": result.dataset, "setting": result.setting, "variant": result.variant,
            "seed": result.seed, "config_hash": result.config_hash,
            "checkpoint_sha256": result.checkpoint.get("sha256"),
            "metric_info": result.metric_info, "clean": clean.metrics,
            "clean_matches_result": matches, "snrs": list(snrs),
            "word_dropout": list(word_dropout), "perturbations": records,
            **provenance()}, restored.base_data


def _absent(restored: Any, test: Any, p: Perturbation, result: Any,
            clean: Any) -> dict[str, Any]:
    """The ``absent:<m>`` entry: evaluated with ``m`` left out of the fusion, or why not."""
    import torch

    model, m = restored.model, p.modality
    entry: dict[str, Any] = {"name": p.name, "kind": p.kind, "modality": m, "value": None}
    if m not in model.droppable_modalities():
        entry.update(status="unsupported", reason=(
            f"{result.method} cannot leave {m} out of its fusion (it declares no "
            f"modality drop; drop:{m} zeroes the input instead)"))
        return entry
    try:
        with model.without({m}):
            ev = _evaluate(restored, perturb(test, p, result.seed))
    except Exception as exc:
        entry.update(status="unsupported", reason=f"{result.method} cannot run without {m} "
                     f"in its fusion: {type(exc).__name__}: {exc}")
        return entry
    entry.update(status="ok", removal="dropped", metrics=ev.metrics,
                 no_effect=bool(torch.equal(ev.preds, clean.preds)))
    return entry


def find_results(root: Path, method: str | None = None, dataset: str | None = None,
                 setting: str | None = None, variant: str | None = None) -> list[Path]:
    """Result files under ``root`` with a checkpoint, filtered by identity."""
    from .results import iter_results

    out = []
    for path, res in iter_results(root):
        if not res.checkpoint:
            continue
        if (method and res.method != method) or (dataset and res.dataset != dataset) \
                or (setting and res.setting != setting) or (variant and res.variant != variant):
            continue
        out.append(path)
    return out


def run(paths: Sequence[Path], registry: Any = None, data_dir: Path | None = None,
        snrs: Iterable[float] = DEFAULT_SNRS, word_dropout: Iterable[float] = DEFAULT_WORD_DROPOUT,
        force: bool = False, progress: Any = None,
        on_done: Any = None) -> list[tuple[Path, str]]:
    """Evaluate every result file of ``paths``; returns (record path, "ran"|"skipped").
    The dataset is loaded once per variant folder."""
    import json

    from .results import write_result

    snrs, word_dropout = list(snrs), list(word_dropout)
    done: list[tuple[Path, str]] = []
    cache: dict[Path, Any] = {}
    for path in paths:
        target = robustness_path(path)
        if target.exists() and not force:
            old = json.loads(target.read_text(encoding="utf-8"))
            if old.get("snrs") == snrs and old.get("word_dropout") == word_dropout \
                    and old.get("schema_version") == SCHEMA:
                done.append((target, "skipped"))
                continue
        record, cache[path.parent] = evaluate_result(path, registry, data_dir, snrs,
                                                     word_dropout, data=cache.get(path.parent),
                                                     progress=progress)
        write_result(target, record)
        done.append((target, "ran"))
        if on_done is not None:
            on_done(target, record)
    return done


def iter_records(root: Path) -> Iterable[tuple[Path, dict[str, Any]]]:
    """Every robustness record under ``root`` (a bad one raises, naming the file)."""
    import json

    for path in sorted(Path(root).rglob(f"{PREFIX}seed-*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise MsabenchError(f"robustness file {path} is unreadable ({exc}); delete it and "
                                "re-run msabench robustness") from exc
        if not isinstance(data, dict) or data.get("kind") != KIND:
            raise MsabenchError(f"{path} is not a robustness record (kind {KIND!r})")
        yield path, data
