"""``dec-semi``: the transformer classifier pretrained with semi-supervised DEC (seeds 000/001).

Three steps per seed [paper sec. 3.3, 4.3]:

1. the ``dec`` pretrainer trains a copy of the classifier's encoders as an autoencoder with
   clustering on ALL training samples (labelled and unlabelled; the supervised term reads only
   the labelled ones), two stages with the paper's weights, learning rates and epochs;
2. the pretrained encoder weights are copied into the classifier (the head starts fresh);
3. the classifier is fine-tuned on the labelled subset with the ``transformer`` recipe
   (Adam 4e-5, weight decay 1e-2, batch 128, 500 epochs, best validation epoch) [choice: the
   paper gives no separate fine-tuning recipe].

``data.label_fraction`` defaults to 0.4, the paper's setting (60% of the training labels
hidden, stratified and seeded); ``--label-fraction 1.0`` is the full-data setting. Every result
file records the fraction, the labelled count, both pretraining stages' per-term loss curves,
the validation cluster purity and the classifier's parameter count.
"""

from __future__ import annotations

import copy

from msabench.api import ComponentMeta

from .transformer import PAPER, TransformerClassifier


class DecSemi(TransformerClassifier):
    """``transformer`` + ``dec`` pretraining + fine-tuning on the labelled subset."""

    name = "dec-semi"
    meta = ComponentMeta(
        summary="transformer classifier with semi-supervised DEC pretraining (label fraction 0.4)",
        paper=PAPER,
        defaults_source=(
            "paper sec. 4.2-4.4 (seed 001): 40% of the training labels, DEC pretraining on all "
            "training samples, encoder transfer, fine-tuning with the transformer recipe; "
            "pretrainer defaults: msabench info dec"),
    )
    defaults = copy.deepcopy(TransformerClassifier.defaults)
    defaults["pretrain"] = {"stages": ["dec"], "dec": {}}
    defaults["data"] = {**defaults["data"], "label_fraction": 0.4}
