"""CH-SIMS and CH-SIMS v2 (supervised part) in the formats users download.

=============  ==========================================================================
setting        files
=============  ==========================================================================
unaligned      MMSA ``Processed/unaligned_39.pkl`` (SIMS) / ``unaligned.pkl`` (SIMS v2)
raw            ``label.csv`` + ``Raw/<video_id>/<clip_id>.mp4``: features are extracted
               by extractor plugins (text, audio, vision) and cached on disk; the splits
               also carry the raw inputs (transcripts and a ``MediaRef`` per clip for audio
               and vision) for methods that fine-tune an encoder
=============  ==========================================================================

Options of the raw layout (``data.options``): ``text_model``, ``audio_model``, ``video_model``,
``fps``, ``frame_size``, and the pooling of the pre-computed features, chosen by the method
(``defaults["data"]["options"]``) or the user: ``text_pooling`` (hf-text: ``tokens``, the
default, ``cls`` or ``mean``), ``audio_pooling`` (hf-audio: ``mean``, the default, or
``frames``), ``video_pooling`` (hf-video: ``mean``, the default, or ``clips``).

Both carry unimodal labels (``label_T``, ``label_A``, ``label_V``) in [-1, 1]; the metric
convention is ``sims`` (clip to [-1, 1]; Acc2 counts zero as negative).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from msabench.api.dataset import DatasetMeta, LoadedDataset

from .standard import Source, StandardDataset

SIMS_CITATION = (
    "@inproceedings{yu2020chsims, title={CH-SIMS: A Chinese Multimodal Sentiment Analysis "
    "Dataset with Fine-grained Annotation of Modality}, author={Yu, Wenmeng and Xu, Hua and "
    "Meng, Fanyang and Zhu, Yilin and Ma, Yixiao and Wu, Jiele and Zou, Jiyun and Yang, "
    "Kaicheng}, booktitle={ACL}, year={2020}}")
SIMS2_CITATION = (
    "@inproceedings{liu2022chsimsv2, title={Make Acoustic and Visual Cues Matter: CH-SIMS v2.0 "
    "Dataset and AV-Mixup Consistent Module}, author={Liu, Yihe and Yuan, Ziqi and Mao, Huisheng "
    "and Liang, Zhiyun and Yang, Wanqiuyue and Qiu, Yuanzhe and Cheng, Tie and Li, Xiaoteng and "
    "Xu, Hua and Gao, Kai}, booktitle={ICMI}, year={2022}}")
SIMS_LICENSE = "research use only; obtained from the authors (thuiar) under their agreement"
HOW_TO_GET_SIMS = ("Request CH-SIMS / CH-SIMS v2 from the authors (thuiar/MMSA and "
                   "thuiar/ch-sims-v2 READMEs): the processed pickle (MMSA format) or the raw "
                   "videos with label.csv.")

#: default extractors of the raw layout and the pooling of their features (configurable
#: through data.options; the poolings are the extractors' own option values)
RAW_DEFAULTS = {"text_model": "bert-base-chinese", "audio_model": "TencentGameMate/chinese-hubert-base",
                "video_model": "MCG-NJU/videomae-base", "fps": 10, "frame_size": 128,
                "text_pooling": "tokens", "audio_pooling": "mean", "video_pooling": "mean"}


class ChSims2(StandardDataset):
    """CH-SIMS v2.0 (supervised part): 4403 Mandarin clips with multimodal and unimodal
    sentiment labels in [-1, 1]."""

    name = "chsims2"
    meta = DatasetMeta(
        name="chsims2", title="CH-SIMS v2.0 (Liu et al. 2022)", language="zh",
        label_range=(-1.0, 1.0), convention="sims", split_sizes=(2722, 647, 1034),
        settings=("unaligned", "raw"), default_setting="unaligned", unimodal_labels=True,
        citation=SIMS2_CITATION, license=SIMS_LICENSE,
        paper="https://doi.org/10.1145/3536221.3556630")
    how_to_get = HOW_TO_GET_SIMS
    defaults = {"file": None, "format": None, "sha256": None, **RAW_DEFAULTS}
    sources = {
        "unaligned": (Source("mmsa", ("unaligned.pkl", "Processed/unaligned.pkl")),),
        "raw": (Source("raw", ("label.csv",)),),
    }

    def read(self, source: Source, path: Path, kwargs: dict[str, Any]) -> LoadedDataset:
        if source.format == "raw":
            return self.read_raw(path)
        return super().read(source, path, kwargs)

    def required_models(self) -> list:
        """raw: the text, audio and video extractor models."""
        from .mosi import raw_needs

        if self.setting != "raw":
            return []
        return raw_needs(self.options, ("text", "audio", "vision"), "raw features")

    def read_raw(self, label_csv: Path) -> LoadedDataset:
        from msabench_builtins.extractors.hf_audio import HFAudioExtractor
        from msabench_builtins.extractors.hf_text import HFTextExtractor
        from msabench_builtins.extractors.hf_video import HFVideoExtractor

        from .raw import load_raw
        from .synthetic import cache_root

        o = self.options
        extractors = {
            "text": HFTextExtractor(model=o["text_model"], pooling=o["text_pooling"]),
            "audio": HFAudioExtractor(model=o["audio_model"], pooling=o["audio_pooling"]),
            "vision": HFVideoExtractor(model=o["video_model"], fps=o["fps"], size=o["frame_size"],
                                       pooling=o["video_pooling"]),
        }
        return load_raw(label_csv.parent, meta=self.meta, setting=self.setting,
                        extractors=extractors, cache_dir=cache_root() / "features")


class ChSims(ChSims2):
    """CH-SIMS (v1): 2281 Mandarin clips with multimodal and unimodal labels in [-1, 1]."""

    name = "chsims"
    meta = DatasetMeta(
        name="chsims", title="CH-SIMS (Yu et al. 2020)", language="zh",
        label_range=(-1.0, 1.0), convention="sims", split_sizes=(1368, 456, 457),
        settings=("unaligned", "raw"), default_setting="unaligned", unimodal_labels=True,
        citation=SIMS_CITATION, license=SIMS_LICENSE,
        paper="https://aclanthology.org/2020.acl-main.343/")
    sources = {
        "unaligned": (Source("mmsa", ("Processed/unaligned_39.pkl", "unaligned_39.pkl")),),
        "raw": (Source("raw", ("label.csv",)),),
    }
