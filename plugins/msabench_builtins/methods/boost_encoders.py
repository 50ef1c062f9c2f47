"""The per-modality encoder branches of ``boost-mtl`` and their feature memo.

A :class:`Branch` turns one modality of a batch into a sequence ``Features`` (B, T, D) and a
global embedding (B, D):

``extractor`` branch  a pre-trained extractor plugin (``hf-text`` / ``hf-audio`` / ``hf-video``)
                      on the batch's raw inputs (transcripts, media files), fine-tuned
                      (``extractor.encode`` with gradients) or frozen; the sequence is the
                      extractor's finest grain (tokens, audio frames, video clips);
``features`` branch   the dataset's pre-computed features through a trainable adapter
                      (Linear + ReLU per step, ``adapter_dim`` units): the stand-in for an
                      encoder on modalities that have no raw inputs (e.g. openSMILE audio of
                      ``mosi`` utt-clean), so the unimodal subtasks and step 1 of two-step
                      have weights to shape, as the paper's subtasks shape its encoders.

Global embeddings: ``cls`` (the first token, BERT's [CLS]: the paper's text global) or
``mean`` (masked mean over time: the paper's audio and video global).

Partial fine-tuning (``finetune_layers = k`` in an ``hf-text`` encoder spec; 0 = every layer,
the paper): only the top ``k`` transformer layers are trained. The input of layer ``L - k`` is
computed once per transcript with the pre-trained weights (eval mode, no gradient; memoised
like frozen features, and cached on disk) and every batch runs only the top ``k`` layers, with
the extended additive attention mask, so a step costs about ``k / L`` of a full one. Identical
to the full forward when nothing has been trained yet (tested). It exists for CPU budgets: the
top layers see the same inputs as in full fine-tuning except for the lower layers' dropout.

Frozen extractors are run once per distinct input: :meth:`Branch.cache` fills an in-memory
memo (key: the transcript, or the media file and segment) for every sample of the given
splits, and with ``store`` also a feature file on disk keyed by the extractor's
``cache_key()`` and the content digest of each input (``raw_cache._FeatureStore``), so a second
run with the same frozen pre-trained encoder decodes and encodes nothing.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from msabench.api import Batch, Features, masked_mean
from msabench.errors import DataError

GLOBAL_POOLINGS = ("cls", "mean")


def item_key(item: Any) -> str:
    """In-memory memo key of one raw input (a transcript, a path, or a MediaRef)."""
    if isinstance(item, str) and not hasattr(item, "path"):
        return "text\0" + item
    path = getattr(item, "path", item)
    return f"media\0{path}\0{getattr(item, 'start', None)}\0{getattr(item, 'end', None)}"


def content_digest(item: Any, modality: str) -> str:
    """On-disk cache key of one raw input: its content, not its name."""
    from msabench_builtins.datasets.raw_cache import _text_digest, file_digest

    if modality == "text":
        return _text_digest(str(item))
    path = Path(str(getattr(item, "path", item)))
    if not path.is_file():
        raise DataError(f"{path}: media file not found (a {modality} input of boost-mtl)")
    start, end = getattr(item, "start", None), getattr(item, "end", None)
    return hashlib.sha256(f"{file_digest(path)}|{start}|{end}".encode()).hexdigest()


class Branch(nn.Module):
    """One modality's encoder (module docstring)."""

    def __init__(self, modality: str, *, extractor: nn.Module | None = None,
                 feature_dim: int | None = None, adapter_dim: int = 128,
                 global_pooling: str = "mean", finetune_layers: int = 0) -> None:
        super().__init__()
        if global_pooling not in GLOBAL_POOLINGS:
            raise ValueError(f"boost-mtl: global pooling {global_pooling!r} of {modality} is not "
                             f"one of {', '.join(GLOBAL_POOLINGS)}")
        self.modality = modality
        self.global_pooling = global_pooling
        self.extractor = extractor
        if extractor is None:
            if feature_dim is None:
                raise ValueError(f"boost-mtl: branch {modality} needs an extractor or a "
                                 "feature size")
            self.adapter = nn.Sequential(nn.Linear(int(feature_dim), int(adapter_dim)), nn.ReLU())
            self.output_dim = int(adapter_dim)
        else:
            self.adapter = None
            self.output_dim = int(extractor.output_dim)
        self.memo: dict[str, torch.Tensor] | None = None
        #: partial fine-tuning: the top ``finetune_layers`` layers train, the rest is memoised
        self.finetune_layers = int(finetune_layers or 0)
        self.lower: dict[str, torch.Tensor] | None = None
        if self.finetune_layers:
            layers = self._layers()
            if not 0 < self.finetune_layers <= len(layers):
                raise ValueError(f"boost-mtl: finetune_layers={finetune_layers} of {modality} "
                                 f"must be in 1..{len(layers)} (0 = every layer)")
            if extractor.config.get("layer", -1) != -1:
                raise ValueError(f"boost-mtl: finetune_layers needs the last hidden layer "
                                 f"(layer -1) of the {modality} encoder")

    def _layers(self) -> Any:
        model = getattr(self.extractor, "model", None) if self.extractor is not None else None
        layers = getattr(getattr(model, "encoder", None), "layer", None)
        if layers is None or getattr(self.extractor, "name", "") != "hf-text":
            raise ValueError(f"boost-mtl: finetune_layers works with hf-text encoders whose "
                             f"model has encoder.layer (BERT family), not "
                             f"{getattr(self.extractor, 'name', None)!r}")
        return layers

    def freeze_lower(self) -> None:
        """Partial fine-tuning: every extractor weight except the top layers' stops training."""
        layers = self._layers()
        top = {id(p) for layer in layers[len(layers) - self.finetune_layers:]
               for p in layer.parameters()}
        for p in self.extractor.parameters():
            if id(p) not in top:
                p.requires_grad_(False)

    @property
    def kind(self) -> str:
        return "features" if self.extractor is None else "extractor"

    # ------------------------------------------------------------------ forward
    def sequence(self, batch: Batch) -> Features:
        """(B, T, D) features of this modality with (B,) lengths, zero after each length."""
        m = self.modality
        if self.extractor is None:
            x, lengths = batch.features[m], batch.lengths[m]
            mask = batch.mask(m).unsqueeze(-1).to(x.dtype)
            return Features(self.adapter(x) * mask, lengths)
        raw = batch.raw(m)
        if self.memo is not None:
            return self._from_memo(raw, batch.label.device)
        if self.finetune_layers:
            return self._top_layers(raw, batch.label.device)
        return self.extractor.encode(raw, "tokens")

    # ------------------------------------------------------------------ partial fine-tuning
    def _lower_rows(self, raw: Sequence[Any]) -> list[torch.Tensor]:
        """The input of the first trained layer for each text (pre-trained weights)."""
        ex = self.extractor
        was = ex.training
        ex.eval()
        try:
            with torch.no_grad():
                inputs = ex.prepare(list(raw))
                device = next(ex.parameters()).device
                out = ex.model(**{k: v.to(device) for k, v in inputs.items()},
                               output_hidden_states=True, return_dict=True)
                states = out.hidden_states[len(out.hidden_states) - 1 - self.finetune_layers]
        finally:
            ex.train(was)
        lengths = inputs["attention_mask"].sum(1).tolist()
        return [states[i, :n].float().cpu().clone() for i, n in enumerate(lengths)]

    def _top_layers(self, raw: Sequence[Any], device: torch.device) -> Features:
        keys = [item_key(x) for x in raw]
        if self.lower is None:
            self.lower = {}
        missing = [i for i, k in enumerate(keys) if k not in self.lower]
        if missing:
            for i, row in zip(missing, self._lower_rows([raw[i] for i in missing])):
                self.lower[keys[i]] = row
        rows = [self.lower[k] for k in keys]
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.int64, device=device)
        hidden = torch.zeros(len(rows), int(lengths.max()), rows[0].shape[1], device=device)
        for i, r in enumerate(rows):
            hidden[i, :len(r)] = r.to(device)
        valid = torch.arange(hidden.shape[1], device=device)[None, :] < lengths[:, None]
        additive = (~valid).to(hidden.dtype)[:, None, None, :] * torch.finfo(hidden.dtype).min
        layers = self._layers()
        for layer in layers[len(layers) - self.finetune_layers:]:
            out = layer(hidden, attention_mask=additive)
            hidden = out[0] if isinstance(out, tuple) else out
        return Features(hidden * valid.unsqueeze(-1).to(hidden.dtype), lengths)

    def pool(self, feats: Features) -> torch.Tensor:
        """The global embedding (B, D)."""
        if self.global_pooling == "cls":
            return feats.values[:, 0]
        return masked_mean(feats.values, feats.mask())

    # ------------------------------------------------------------------ frozen memo
    def _encode_frozen(self, raw: Sequence[Any]) -> list[torch.Tensor]:
        ex = self.extractor
        was = ex.training
        ex.eval()
        try:
            with torch.no_grad():
                feats = ex.encode(list(raw), "tokens")
        finally:
            ex.train(was)
        values, lengths = feats.values.float().cpu(), feats.lengths.cpu().tolist()
        return [values[i, :n].clone() for i, n in enumerate(lengths)]

    def _from_memo(self, raw: Sequence[Any], device: torch.device) -> Features:
        keys = [item_key(x) for x in raw]
        missing = [i for i, k in enumerate(keys) if k not in self.memo]
        if missing:
            for i, row in zip(missing, self._encode_frozen([raw[i] for i in missing])):
                self.memo[keys[i]] = row
        rows = [self.memo[k] for k in keys]
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.int64)
        values = torch.zeros(len(rows), int(lengths.max()), rows[0].shape[1])
        for i, r in enumerate(rows):
            values[i, :len(r)] = r
        return Features(values.to(device), lengths.to(device))

    def cache(self, items: Iterable[Any], batch_size: int, task: Any = None,
              store: Path | None = None) -> dict[str, int]:
        """Fill the memo for ``items`` (frozen extractor only); with ``store`` (a directory),
        read and extend the on-disk feature file of this extractor configuration. Returns how
        many inputs were encoded and how many came from the disk cache."""
        if self.extractor is None:
            return {"encoded": 0, "from_disk": 0}
        self.memo = {} if self.memo is None else self.memo
        return self._fill(self.memo, self._encode_frozen, "tokens", "", items, batch_size,
                          task, store)

    def cache_lower(self, items: Iterable[Any], batch_size: int, task: Any = None,
                    store: Path | None = None) -> dict[str, int]:
        """Partial fine-tuning: fill the memo of the lower layers' output for ``items``, through
        the on-disk cache when ``store`` is given (pre-trained weights only)."""
        self.lower = {} if self.lower is None else self.lower
        return self._fill(self.lower, self._lower_rows, f"below-top-{self.finetune_layers}",
                          "lower-", items, batch_size, task, store)

    def _fill(self, memo: dict[str, torch.Tensor], compute: Any, what: str, prefix: str,
              items: Iterable[Any], batch_size: int, task: Any,
              store: Path | None) -> dict[str, int]:
        """``memo[item_key(x)] = compute([x])[0]`` for every distinct item not there yet, in
        batches, through the feature file ``store/boost-<modality>-<prefix><hash>.npz`` (keyed
        by the extractor's cache key, ``what`` and each input's content digest) when given."""
        from msabench_builtins.datasets.raw_cache import _FeatureStore

        unique: dict[str, Any] = {}
        for item in items:
            unique.setdefault(item_key(item), item)
        todo = [k for k in unique if k not in memo]
        disk, digests = None, {}
        if store is not None:
            key = f"boost-mtl|{self.extractor.cache_key()}|{what}"
            name = (f"boost-{self.modality}-{prefix}"
                    f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz")
            disk = _FeatureStore(Path(store) / name, key)
            digests = {k: content_digest(unique[k], self.modality) for k in todo}
        rest = []
        for k in todo:
            row = disk.rows.get(digests[k]) if disk is not None else None
            if row is not None:
                memo[k] = torch.from_numpy(row.copy())
            else:
                rest.append(k)
        if task is not None and len(todo) > len(rest):
            task.advance(len(todo) - len(rest))
        try:
            for start in range(0, len(rest), batch_size):
                chunk = rest[start:start + batch_size]
                for k, row in zip(chunk, compute([unique[k] for k in chunk])):
                    memo[k] = row
                    if disk is not None:
                        disk.add(digests[k], row.numpy())
                if task is not None:
                    task.advance(len(chunk))
        finally:
            if disk is not None:
                disk.path.parent.mkdir(parents=True, exist_ok=True)
                disk.save()
        return {"encoded": len(rest), "from_disk": len(todo) - len(rest)}

    def clear_memo(self) -> None:
        self.memo = None
