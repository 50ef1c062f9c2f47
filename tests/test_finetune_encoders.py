"""Fine-tuning encoders end to end on raw media: a tiny random HuBERT (hf-audio) and VideoMAE
(hf-video) inside a test method that calls ``extractor.encode(batch.raw(m), pooling)`` and a
linear head, trained for one epoch by the shared loop (``LoopContext`` + ``fit_method``) on the
generated media of ``synthetic-sims2`` (setting ``raw``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("av", reason="PyAV (pip install av) decodes the media files")

from msabench.api import Components, ComponentMeta, Method  # noqa: E402
from msabench.config import TRAIN_DEFAULTS  # noqa: E402
from msabench.plugins import get_registry  # noqa: E402
from msabench.training import LoopContext, fit_method, seed_everything  # noqa: E402
from tests.test_raw_media import tiny_hubert, tiny_videomae  # noqa: E402,F401

DATA = {"n_train": 32, "n_valid": 8, "n_test": 8, "text_dim": 4, "audio_dim": 3, "vision_dim": 3,
        "text_len": 4, "audio_len": 6, "vision_len": 5, "label_source": "builtin"}


class EncoderProbe(Method):
    """A fine-tuned extractor + Linear head, trained on the modality's unimodal label."""

    name = "encoder-probe"
    meta = ComponentMeta(summary="test: fine-tune one extractor on raw inputs")
    defaults = {"train": {}, "model": {"modality": "audio", "extractor": "hf-audio",
                                       "options": {}, "pooling": "mean"}, "pretrain": {}}

    def __init__(self, info, config, components):
        super().__init__(info, config, components)
        self.modality = config["modality"]
        self.encoder = components.extractor(config["extractor"], **config["options"])
        self.encoder.set_trainable(True)  # before the optimiser is built
        self.head = nn.Linear(self.encoder.output_dim, 1)
        self.heads = {"pred": "label", "pred_m": self.modality}

    def forward(self, batch):
        feats = self.encoder.encode(batch.raw(self.modality), self.config["pooling"])
        pred = self.head(feats.values[:, 0]).squeeze(-1)
        return {"pred": pred, "pred_m": pred}

    def loss(self, outputs, batch):
        return nn.functional.mse_loss(outputs["pred_m"], batch.unimodal[self.modality])


@pytest.fixture(scope="module")
def sims2_raw(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MSABENCH_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        cls = get_registry().load("dataset", "synthetic-sims2")
        yield cls(setting="raw", options=DATA).load()


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _train_one_epoch(data, modality, extractor, options, pooling="mean", lr=3e-3):
    registry = get_registry()
    train = {**TRAIN_DEFAULTS, "epochs": 1, "batch_size": 8, "lr": lr, "patience": 0,
             "eval_batch_size": 16}
    seed_everything(0)
    method = EncoderProbe(data.info(), {"modality": modality, "extractor": extractor,
                                        "options": options, "pooling": pooling},
                          Components(registry))
    from msabench.runner import metric_classes

    context = LoopContext(device=torch.device("cpu"), seed=0, train=train,
                          metric_classes=metric_classes(registry, "sims"))
    method.context = context
    encoder = method.encoder.model
    assert method.num_parameters() == sum(p.numel() for p in method.parameters())
    before = {n: p.detach().clone() for n, p in encoder.named_parameters()}
    loss_before = context.evaluate(method, data["train"]).loss
    fitted = fit_method(method, data["train"], data["valid"], context)
    loss_after = context.evaluate(method, data["train"]).loss
    changed = [n for n, p in encoder.named_parameters() if not torch.equal(p, before[n])]
    return method, fitted, loss_before, loss_after, changed, len(before)


def test_finetune_tiny_hubert_on_generated_audio(sims2_raw, tiny_hubert, one_thread):
    method, fitted, before, after, changed, total = _train_one_epoch(
        sims2_raw, "audio", "hf-audio", {"model": str(tiny_hubert), "sample_rate": 16000})
    assert fitted.epochs_run == 1 and fitted.history[0]["train_loss"] > 0
    assert after < before, (before, after)  # the training loss falls
    # gradients reached the encoder: most of its weight tensors changed (the masked-frame
    # embedding is unused in a forward pass and keeps its value)
    assert len(changed) >= total - 2 and any("encoder.layers.1" in n for n in changed)
    assert any("feature_extractor.conv_layers.0" in n for n in changed)
    frozen = method.encoder.extract(sims2_raw["test"].media["audio"][:3])  # still extracts
    assert frozen.values.shape == (3, 1, method.encoder.output_dim)


def test_finetune_tiny_videomae_on_generated_video(sims2_raw, tiny_videomae, one_thread):
    method, fitted, before, after, changed, total = _train_one_epoch(
        sims2_raw, "vision", "hf-video", {"model": str(tiny_videomae), "fps": 8, "size": 32},
        lr=3e-4)
    assert fitted.epochs_run == 1
    assert after < before, (before, after)
    assert len(changed) == total and any("encoder.layer.1" in n for n in changed)
    test = sims2_raw["test"]
    clips = method.encoder.encode(test.media["vision"][:2], "tokens")
    assert clips.values.shape[0] == 2 and int(clips.lengths.min()) >= 1  # one vector per clip
