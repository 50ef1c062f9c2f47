"""The Dataset contract: frozen metadata plus train/valid/test splits of modality tensors."""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Mapping, Sequence

import torch

from ..errors import DataError

CONVENTIONS = ("mosi", "sims")
MODALITIES = ("text", "audio", "vision")
SPLITS = ("train", "valid", "test")

if TYPE_CHECKING:
    from ..models import ModelNeed


@dataclass(frozen=True)
class DatasetMeta:
    """Validated, frozen description of a dataset (what ``msabench info`` prints).

    ``convention`` selects the metric convention (``metrics.md``): ``"mosi"`` for labels in
    [-3, 3] (CMU-MOSI, CMU-MOSEI), ``"sims"`` for labels in [-1, 1] (CH-SIMS, CH-SIMS v2).
    ``split_sizes`` are the standard published sizes (train, valid, test).
    """

    name: str
    title: str
    language: str
    label_range: tuple[float, float]
    convention: str
    modalities: tuple[str, ...] = MODALITIES
    split_sizes: tuple[int, int, int] | None = None
    settings: tuple[str, ...] = ("default",)
    default_setting: str = "default"
    unimodal_labels: bool = False
    citation: str = ""
    license: str = ""
    paper: str = ""
    homepage: str = ""
    synthetic: bool = False

    def __post_init__(self) -> None:
        if not re.match(r"^[a-z0-9][a-z0-9\-]*$", self.name):
            raise ValueError(f"dataset name {self.name!r} must be lowercase and hyphenated")
        lo, hi = self.label_range
        if not lo < hi:
            raise ValueError(f"dataset {self.name}: label_range {self.label_range} is empty")
        if self.convention not in CONVENTIONS:
            raise ValueError(f"dataset {self.name}: convention must be one of {CONVENTIONS}")
        if self.default_setting not in self.settings:
            raise ValueError(f"dataset {self.name}: default_setting not in settings")
        if not self.modalities:
            raise ValueError(f"dataset {self.name}: no modalities")

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "title": self.title, "language": self.language,
            "label_range": list(self.label_range), "convention": self.convention,
            "modalities": list(self.modalities),
            "split_sizes": list(self.split_sizes) if self.split_sizes else None,
            "settings": list(self.settings), "default_setting": self.default_setting,
            "unimodal_labels": self.unimodal_labels, "citation": self.citation,
            "license": self.license, "paper": self.paper, "homepage": self.homepage,
            "synthetic": self.synthetic,
        }


@dataclass(frozen=True)
class MediaRef:
    """A raw media input of one sample: a file and, for clips cut from a longer recording,
    the segment ``[start, end)`` in seconds (None = from the beginning / to the end).

    Datasets that have raw media expose them as ``SplitData.media[modality]`` (one ref per
    sample) so a method can decode and fine-tune an encoder end to end; extractors'
    ``prepare`` turns a list of refs into tensors (decode, resample, crop).
    """

    path: str
    start: float | None = None
    end: float | None = None

    def __post_init__(self) -> None:
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise DataError(f"media {self.path}: segment end {self.end} is not after start "
                            f"{self.start}")


@dataclass
class Batch:
    """One mini-batch. ``features[m]`` is (B, T_m, D_m); ``lengths[m]`` is (B,) int64.

    ``labelled`` is False where the label is hidden (semi-supervised settings): supervised
    losses must ignore those rows. ``unimodal[m]`` holds the unimodal labels where the dataset
    has them (NaN on hidden rows). Raw inputs, where the dataset has them: ``texts`` (one
    transcript per sample) and ``media[m]`` (a :class:`MediaRef` per sample for ``audio`` /
    ``vision``). ``index`` holds each row's position in its split.
    """

    ids: list[str]
    features: dict[str, torch.Tensor]
    lengths: dict[str, torch.Tensor]
    label: torch.Tensor
    labelled: torch.Tensor
    unimodal: dict[str, torch.Tensor] = field(default_factory=dict)
    texts: list[str] | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    media: dict[str, list[MediaRef]] = field(default_factory=dict)
    index: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def raw(self, modality: str) -> list[Any]:
        """The raw inputs of ``modality``: transcripts for ``text``, media refs otherwise."""
        if modality == "text" and self.texts is not None:
            return list(self.texts)
        if modality in self.media:
            return list(self.media[modality])
        raise DataError(f"this dataset/setting has no raw {modality} inputs (raw inputs "
                        f"present: {', '.join(self.raw_modalities()) or 'none'}); choose a "
                        "setting with transcripts or media files")

    def raw_modalities(self) -> list[str]:
        return (["text"] if self.texts is not None else []) + list(self.media)

    def mask(self, modality: str) -> torch.Tensor:
        """(B, T) bool, True at valid (non-padded) steps."""
        feats = self.features[modality]
        steps = torch.arange(feats.shape[1], device=feats.device)
        return steps.unsqueeze(0) < self.lengths[modality].unsqueeze(1)

    def masks(self) -> dict[str, torch.Tensor]:
        return {m: self.mask(m) for m in self.features}

    def to(self, device: torch.device | str) -> "Batch":
        if str(device) == "cpu" and self.label.device.type == "cpu":
            return self
        return replace(
            self,
            features={m: x.to(device) for m, x in self.features.items()},
            lengths={m: x.to(device) for m, x in self.lengths.items()},
            label=self.label.to(device),
            labelled=self.labelled.to(device),
            unimodal={m: x.to(device) for m, x in self.unimodal.items()},
            extras={k: x.to(device) for k, x in self.extras.items()},
        )


@dataclass
class SplitData:
    """All samples of one split, in memory.

    Utterance-level features are stored as (N, 1, D) with length 1, so every method sees the
    same (N, T, D) layout. ``extras`` holds per-sample side data that is not a modality (first
    dimension N), e.g. MMSA's ``text_bert`` token ids (N, 3, L) for BERT-based methods.
    """

    ids: list[str]
    features: dict[str, torch.Tensor]
    lengths: dict[str, torch.Tensor]
    labels: torch.Tensor
    unimodal: dict[str, torch.Tensor] = field(default_factory=dict)
    labelled: torch.Tensor | None = None
    texts: list[str] | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    media: dict[str, list[MediaRef]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.labelled is None:
            self.labelled = torch.ones(len(self.ids), dtype=torch.bool)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: torch.Tensor | Sequence[int]) -> "SplitData":
        idx = torch.as_tensor(index, dtype=torch.long)
        ids = [self.ids[i] for i in idx.tolist()]
        texts = [self.texts[i] for i in idx.tolist()] if self.texts is not None else None
        return SplitData(
            ids=ids,
            features={m: x[idx] for m, x in self.features.items()},
            lengths={m: x[idx] for m, x in self.lengths.items()},
            labels=self.labels[idx],
            unimodal={m: x[idx] for m, x in self.unimodal.items()},
            labelled=self.labelled[idx],
            texts=texts,
            extras={k: x[idx] for k, x in self.extras.items()},
            media={m: [refs[i] for i in idx.tolist()] for m, refs in self.media.items()},
        )

    def batch(self, idx: torch.Tensor) -> Batch:
        idx = torch.as_tensor(idx, dtype=torch.long)
        ilist = idx.tolist()
        return Batch(
            ids=[self.ids[i] for i in ilist],
            features={m: x[idx] for m, x in self.features.items()},
            lengths={m: x[idx] for m, x in self.lengths.items()},
            label=self.labels[idx],
            labelled=self.labelled[idx],
            unimodal={m: x[idx] for m, x in self.unimodal.items()},
            texts=[self.texts[i] for i in ilist] if self.texts is not None else None,
            extras={k: x[idx] for k, x in self.extras.items()},
            media={m: [refs[i] for i in ilist] for m, refs in self.media.items()},
            index=idx,
        )

    def batch_indices(self, batch_size: int, *, shuffle: bool = False,
                      generator: torch.Generator | None = None,
                      drop_last: bool = False) -> list[torch.Tensor]:
        """The sample indices of each batch of :meth:`batches`, in order (one ``randperm``
        draw from ``generator`` when shuffling)."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - (n % batch_size) if drop_last and n > batch_size else n
        return [order[start:start + batch_size] for start in range(0, stop, batch_size)]

    def batches(self, batch_size: int, *, shuffle: bool = False,
                generator: torch.Generator | None = None,
                drop_last: bool = False) -> Iterator[Batch]:
        for index in self.batch_indices(batch_size, shuffle=shuffle, generator=generator,
                                        drop_last=drop_last):
            yield self.batch(index)

    def num_batches(self, batch_size: int) -> int:
        return math.ceil(len(self) / batch_size)

    def validate(self, where: str, label_range: tuple[float, float] | None = None) -> None:
        """Raise :class:`DataError` naming ``where`` (file/split) and the key on inconsistency."""
        n = len(self.ids)
        if len(set(self.ids)) != n:
            seen: set[str] = set()
            dup = next(i for i in self.ids if i in seen or seen.add(i))
            raise DataError(f"{where}: duplicate sample id {dup!r}")
        if self.labels.shape != (n,):
            raise DataError(f"{where}: labels have shape {tuple(self.labels.shape)}, expected ({n},)")
        for m, x in self.features.items():
            if x.dim() != 3 or x.shape[0] != n:
                raise DataError(
                    f"{where}: modality {m!r} has shape {tuple(x.shape)}; expected ({n}, T, D)")
            lens = self.lengths.get(m)
            if lens is None or lens.shape != (n,):
                raise DataError(f"{where}: modality {m!r} needs lengths of shape ({n},)")
            if int(lens.max()) > x.shape[1] or int(lens.min()) < 1:
                raise DataError(
                    f"{where}: modality {m!r} lengths must lie in [1, {x.shape[1]}] "
                    f"(found {int(lens.min())}..{int(lens.max())})")
            if not _all_finite(x):
                bad = int((~torch.isfinite(x)).sum())
                raise DataError(f"{where}: modality {m!r} has {bad} non-finite values (NaN/inf); "
                                "fix or drop those samples (MMSA replaces -inf by 0)")
        for key, x in self.extras.items():
            if x.shape[0] != n:
                raise DataError(f"{where}: extra {key!r} has {x.shape[0]} rows for {n} samples")
        for m, refs in self.media.items():
            if len(refs) != n:
                raise DataError(f"{where}: {len(refs)} {m} media refs for {n} samples")
        if self.texts is not None and len(self.texts) != n:
            raise DataError(f"{where}: {len(self.texts)} transcripts for {n} samples")
        _check_labels(where, "labels", self.labels, n, label_range, self.labelled)
        for m, y in self.unimodal.items():
            if m not in MODALITIES:
                raise DataError(f"{where}: unimodal labels for unknown modality {m!r} "
                                f"(modalities: {', '.join(MODALITIES)})")
            _check_labels(where, f"unimodal {m} labels", y, n, label_range, self.labelled)


def _check_labels(where: str, what: str, y: torch.Tensor, n: int,
                  label_range: tuple[float, float] | None, labelled: torch.Tensor | None) -> None:
    """Shape (N,), finite on every labelled row (NaN only where ``labelled`` is False), inside
    the dataset's label range."""
    if y.shape != (n,):
        raise DataError(f"{where}: {what} have shape {tuple(y.shape)}, expected ({n},)")
    finite = torch.isfinite(y)
    if labelled is not None and not bool(labelled.all()):
        hidden = ~labelled
        if bool(torch.isinf(y).any()) or bool((~finite & ~hidden).any()):
            raise DataError(f"{where}: {what} contain NaN or inf on labelled rows (NaN is "
                            "allowed only where the label is hidden)")
    elif not bool(finite.all()):
        raise DataError(f"{where}: {what} contain NaN or inf")
    if label_range is not None and bool(finite.any()):
        lo, hi = label_range
        vals = y[finite]
        if float(vals.min()) < lo - 1e-6 or float(vals.max()) > hi + 1e-6:
            raise DataError(
                f"{where}: {what} span [{float(vals.min()):.3f}, {float(vals.max()):.3f}], "
                f"outside the dataset range [{lo}, {hi}]")


#: features beyond this magnitude overflow float32 in ordinary training arithmetic: their
#: squares pass float32's 3.4e38
MAX_FEATURE_MAGNITUDE = 1.8e19


def _max_abs(x: torch.Tensor, rows: int = 256) -> float:
    """Largest |value| in row chunks (bounded temporary memory)."""
    if not x.is_floating_point() or x.numel() == 0:
        return 0.0
    return max(float(x[i:i + rows].abs().max()) for i in range(0, x.shape[0], rows))


def _all_finite(x: torch.Tensor, rows: int = 256) -> bool:
    """Finiteness in row chunks: bounded temporary memory on big feature tensors."""
    if not x.is_floating_point():
        return True
    return all(bool(torch.isfinite(x[i:i + rows]).all()) for i in range(0, x.shape[0], rows))


@dataclass
class DataInfo:
    """What a method needs to know to build itself for a loaded dataset."""

    meta: DatasetMeta
    setting: str
    modalities: tuple[str, ...]
    feature_dims: dict[str, int]
    max_lengths: dict[str, int]
    aligned: bool
    has_unimodal_labels: bool
    has_texts: bool
    extras: tuple[str, ...] = ()
    #: modalities whose raw media (MediaRef per sample) the splits carry
    media: tuple[str, ...] = ()
    #: modalities with unimodal labels
    unimodal: tuple[str, ...] = ()

    @property
    def label_range(self) -> tuple[float, float]:
        return self.meta.label_range


@dataclass
class LoadedDataset:
    meta: DatasetMeta
    setting: str
    splits: dict[str, SplitData]
    source: str = ""  # file(s) the data came from, for results and error messages
    notes: list[str] = field(default_factory=list)
    validated: bool = False  # set by validate(); the runner skips a second full check

    def __getitem__(self, split: str) -> SplitData:
        if split not in self.splits:
            raise DataError(
                f"dataset {self.meta.name} ({self.setting}) has no {split!r} split; "
                f"splits present: {', '.join(self.splits)}")
        return self.splits[split]

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.splits["train"].features)

    def info(self) -> DataInfo:
        train = self.splits["train"]
        dims = {m: int(x.shape[-1]) for m, x in train.features.items()}
        max_lengths = {m: int(x.shape[1]) for m, x in train.features.items()}
        aligned = len(set(max_lengths.values())) == 1 and all(
            torch.equal(train.lengths[m], train.lengths[next(iter(train.lengths))])
            for m in train.lengths)
        return DataInfo(
            meta=self.meta, setting=self.setting, modalities=self.modalities, feature_dims=dims,
            max_lengths=max_lengths, aligned=aligned,
            has_unimodal_labels=bool(train.unimodal), has_texts=train.texts is not None,
            extras=tuple(train.extras), media=tuple(train.media), unimodal=tuple(train.unimodal))

    def sizes(self) -> dict[str, int]:
        return {name: len(split) for name, split in self.splits.items()}

    def validate(self) -> None:
        for split in SPLITS:
            if split not in self.splits:
                raise DataError(f"{self.source or self.meta.name}: missing split {split!r}")
        mods = set(self.splits["train"].features)
        for name, split in self.splits.items():
            where = f"{self.source or self.meta.name} [{name}]"
            if set(split.features) != mods:
                raise DataError(f"{where}: modalities {sorted(split.features)} differ from "
                                f"train's {sorted(mods)}")
            split.validate(where, self.meta.label_range)
        self.validated = True

    def check_magnitudes(self) -> None:
        """Raise :class:`DataError` naming the split and modality when a finite feature's
        magnitude overflows float32 training arithmetic (``msabench data check`` reports the
        same as ``overflow-features``); runs call it before training."""
        for name, split in self.splits.items():
            for m, x in split.features.items():
                peak = _max_abs(x)
                if peak > MAX_FEATURE_MAGNITUDE:
                    raise DataError(
                        f"{self.source or self.meta.name} [{name}]: modality {m!r} has values "
                        f"of magnitude {peak:.3g}; their squares overflow float32 (max 3.4e38), "
                        "so training would turn NaN. Rescale or fix the features (values "
                        f"beyond {MAX_FEATURE_MAGNITUDE:.1e} are not measurements: check the "
                        "file); msabench data check lists every such value")

    def select_modalities(self, modalities: Sequence[str]) -> "LoadedDataset":
        missing = [m for m in modalities if m not in self.modalities]
        if missing:
            raise DataError(f"dataset {self.meta.name} has no modality {missing[0]!r}; "
                            f"available: {', '.join(self.modalities)}")
        splits = {}
        for name, split in self.splits.items():
            # a dropped modality takes its unimodal labels and raw inputs with it
            splits[name] = replace(
                split,
                features={m: split.features[m] for m in modalities},
                lengths={m: split.lengths[m] for m in modalities},
                unimodal={m: y for m, y in split.unimodal.items() if m in modalities},
                media={m: refs for m, refs in split.media.items() if m in modalities},
                texts=split.texts if "text" in modalities else None)
        return replace(self, splits=splits, validated=self.validated)


class Dataset(ABC):
    """Base class of dataset plugins.

    Subclasses set ``name`` and ``meta`` and implement :meth:`load`. ``data_dir`` is where the
    user's files are (``--data-dir``, ``MSABENCH_DATA_DIR``, or the config file); synthetic
    datasets ignore it. ``options`` are dataset-specific settings from the run config.
    """

    name: ClassVar[str]
    meta: ClassVar[DatasetMeta]
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, *, data_dir: Path | str | None = None, setting: str | None = None,
                 options: Mapping[str, Any] | None = None) -> None:
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.setting = setting or self.meta.default_setting
        if self.setting not in self.meta.settings:
            raise DataError(
                f"dataset {self.name} has no setting {self.setting!r}; "
                f"settings: {', '.join(self.meta.settings)}")
        unknown = set(options or {}) - set(self.defaults)
        if unknown:
            raise DataError(
                f"dataset {self.name}: unknown option(s) {', '.join(sorted(unknown))}; "
                f"options: {', '.join(sorted(self.defaults)) or '(none)'}")
        self.options = {**self.defaults, **dict(options or {})}

    def required_models(self) -> list["ModelNeed"]:
        """The pre-trained checkpoints :meth:`load` runs for this setting and these options
        (e.g. the text encoder of a setting that extracts features), found without loading
        anything; ``msabench models`` lists them beside the method's. Default: none."""
        return []

    def input_files(self) -> list[Path]:
        """The files :meth:`load` would read, found without reading them (default: none, e.g.
        for generated data). The runner fingerprints them (size, SHA-256) so a stored result
        is reused only for the same data."""
        return []

    @abstractmethod
    def load(self) -> LoadedDataset:
        """Read (or generate) all splits; raise :class:`DataError` with a fix on bad input."""
