"""``boost-mtl``: pre-trained extractors + unimodal multi-task training (seed 002).

"Boosting Multimodal Sentiment Analysis ..." (JHU-LCAP; the authors released no code). One
encoder branch per modality (:mod:`.boost_encoders`), one MLP head per modality for the
unimodal subtasks (y_t, y_a, y_v) on the branch's global embedding, a registered fusion
(``concat`` = the paper's SF, ``tfn``, ``mult``) and an MLP head for the multimodal task:

    L_k = mean_i |y^_k - y_k|   (k in m, t, a, v; paper eq. 1)      L = sum_k alpha_k L_k  (eq. 2)

Modes (``model.mode``) [paper sec. 3.4]:

``single``    the multimodal task only (L = alpha_M L_M); no unimodal heads.
``joint``     every task at once; encoders fine-tuned by all of them.
``two-step``  step 1 (pretrainer ``unimodal``): each encoder branch + its unimodal head
              fine-tuned on that modality's label, the epoch with the lowest validation
              unimodal L1 kept; step 2 (the supervised stage): the branches and unimodal heads
              frozen (:meth:`frozen`: eval mode, no gradient, bit-identical), only the fusion
              and the multimodal head trained on L_M. Frozen extractors are run once per input
              (the branch memo).

Unimodal labels: datasets without ``label_T/A/V`` (MOSI, MOSEI) switch the joint subtasks off
with a printed notice (``model.missing_unimodal = "label"`` trains those heads on the
multimodal label instead). Step 1 of two-step uses the multimodal label for such modalities,
as the paper does on MOSI ("trained using multimodal sentiment annotations", sec. 4.3;
``pretrain.unimodal.missing``). Hidden labels (label-fraction runs: NaN) never reach a loss.

Defaults and sources
--------------------
- alpha: M 1.0, T 0.2, A 0.8, V 0.4 [thuiar/ch-sims-v2 AV-MC config, per docs/methods.md].
- Adam, lr 1e-5 for pre-trained extractors (``model.encoder_lr``), 1e-4 for everything else
  (``train.lr``) [paper sec. 4.2].
- Extractors [paper sec. 3.2]: text ``hf-text`` ``bert-base-uncased`` (``bert-base-chinese`` on
  CH-SIMS / v2), last hidden layer, [CLS] as the global embedding; audio ``hf-audio``
  ``facebook/hubert-base-ls960`` (16 kHz mono, last layer, mean over time); video ``hf-video``
  ``MCG-NJU/videomae-base`` (the paper's Video Swin has no ``transformers`` port; VideoMAE is the
  closest Kinetics-pretrained video transformer there) on 128x128 face crops at 10 fps
  (OpenCV's bundled cascade, full frame when no face; the paper uses TalkNet), spatial then
  temporal mean. A modality the data has no raw inputs for uses its features through an
  adapter (:mod:`.boost_encoders`), with a notice.
- Our choices (the paper gives none): MLP heads Linear(D, 128) -> ReLU -> Dropout(0.1) ->
  Linear(128, 1); adapters 128 units; batch 32, at most 20 epochs, early stopping after 5
  epochs without a better validation loss; step 1: the same batch, 10 epochs, patience 3.
  Fusion inputs: ``concat`` and ``tfn`` get the global embeddings (the paper's SF concatenates
  global embeddings; TFN's outer product of three 768-d vectors would have 4.5e8 entries, so
  the ``tfn`` fusion's subnets reduce each to 128/32/128 first, MMSA's sizes), ``mult`` the
  sequences (``mult`` fusion defaults, 2 levels).
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

import torch
from torch import nn

from msabench.api import MODALITIES, Batch, ComponentMeta, Components, DataInfo, Method
from msabench.errors import ConfigError

from .boost_encoders import Branch, item_key

PAPER = ("Boosting Multimodal Sentiment Analysis with pre-trained extractors and unimodal "
         "multi-task training (JHU-LCAP), seed 002")
MODES = ("single", "joint", "two-step")
FUSIONS = ("concat", "tfn", "mult")
ALPHA_KEYS = ("label",) + MODALITIES
#: inputs per batch when a frozen extractor fills its memo
CACHE_BATCH = 16
#: the unimodal head output of each modality
HEAD = {m: f"pred_{m}" for m in MODALITIES}

_ENCODERS = {
    "text": {"extractor": "hf-text", "options": {"model": "bert-base-uncased", "max_length": 50},
             "global": "cls"},
    "audio": {"extractor": "hf-audio", "options": {"model": "facebook/hubert-base-ls960"},
              "global": "mean"},
    "vision": {"extractor": "hf-video",
               "options": {"model": "MCG-NJU/videomae-base", "fps": 10, "size": 128,
                           "face": "opencv"},
               "global": "mean"},
}
#: fusion parameters of boost-mtl (over the fusion's own defaults); see the module docstring
FUSION_DEFAULTS: dict[str, dict[str, Any]] = {
    "concat": {},
    "tfn": {"lstm_modalities": []},
    "mult": {"num_layers": 2},
}


def _mlp(d_in: int, hidden: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden, 1))


def l1_on(pred: torch.Tensor, target: torch.Tensor, keep: torch.Tensor) -> torch.Tensor | None:
    """Mean |pred - target| over rows that are kept and have a finite target; None if none."""
    ok = keep & torch.isfinite(target)
    if not bool(ok.any()):
        return None
    return (pred[ok] - target[ok]).abs().mean()


class BoostMTL(Method):
    """Pre-trained encoders + unimodal heads + a fusion + a multimodal head (module doc)."""

    name = "boost-mtl"
    meta = ComponentMeta(
        summary="pre-trained BERT/HuBERT/video encoders + unimodal multi-task heads; modes "
                "single / joint / two-step; fusion concat / tfn / mult",
        paper=PAPER,
        defaults_source="paper sec. 3-4.2 (extractors, losses, modes, Adam 1e-5 / 1e-4); alpha "
                        "from thuiar/ch-sims-v2 (AV-MC); heads, epochs, batch: our choice "
                        "(docs/boost-mtl.md)")
    defaults = {
        "train": {"epochs": 20, "batch_size": 32, "lr": 1e-4, "patience": 5, "select": "loss",
                  "grad_clip": 0.0, "eval_batch_size": 64},
        "model": {
            "mode": "two-step",
            "fusion": "concat",
            "fusion_params": {},
            "encoders": copy.deepcopy(_ENCODERS),
            "finetune": True,
            "encoder_lr": 1e-5,
            "alpha": {"label": 1.0, "text": 0.2, "audio": 0.8, "vision": 0.4},
            "head_hidden": 128,
            "head_dropout": 0.1,
            "adapter_dim": 128,
            "missing_unimodal": "off",
            "cache_frozen": True,
        },
        "pretrain": {"stages": ["unimodal"]},
    }
    dataset_defaults = {
        name: {"model": {"encoders": {"text": {"options": {"model": "bert-base-chinese"}}}}}
        for name in ("chsims", "chsims2")
    }

    def __init__(self, info: DataInfo, config: Mapping[str, Any], components: Components) -> None:
        super().__init__(info, config, components)
        c = self.config
        self.mode = c["mode"]
        if self.mode not in MODES:
            raise ConfigError(f"boost-mtl: model.mode={self.mode!r} is not one of "
                              f"{', '.join(MODES)}")
        if c["fusion"] not in FUSIONS:
            raise ConfigError(f"boost-mtl: model.fusion={c['fusion']!r} is not one of "
                              f"{', '.join(FUSIONS)}")
        if c["missing_unimodal"] not in ("off", "label"):
            raise ConfigError(f"boost-mtl: model.missing_unimodal={c['missing_unimodal']!r} "
                              "must be 'off' or 'label'")
        self.alpha = self._alpha(c["alpha"])
        self.modalities = list(info.modalities)
        self.notices: list[str] = []
        self.branches = nn.ModuleDict(
            {m: self._branch(m, info, components) for m in self.modalities})
        # unimodal heads: the subtasks of joint, every modality's step-1 head in two-step
        self.targets: dict[str, str] = {}
        for m in self.modalities:
            if self.mode == "single":
                continue
            if m in info.unimodal:
                target = m
            elif self.mode == "joint" and c["missing_unimodal"] == "label":
                target = "label"
            elif self.mode == "two-step":
                target = "label"  # step 1 only; the pretrainer may skip it
            else:
                continue
            self.targets[m] = target
        missing = [m for m in self.modalities if m not in info.unimodal]
        if self.mode == "joint" and missing:
            what = ("trained on the multimodal label instead" if c["missing_unimodal"] == "label"
                    else "switched off")
            self.notices.append(f"{info.meta.name}/{info.setting} has no unimodal labels for "
                                f"{', '.join(missing)}: those subtasks are {what}")
        hidden, drop = int(c["head_hidden"]), float(c["head_dropout"])
        self.unimodal_heads = nn.ModuleDict(
            {m: _mlp(self.branches[m].output_dim, hidden, drop) for m in self.targets})
        params = {**FUSION_DEFAULTS[c["fusion"]], **dict(c["fusion_params"] or {})}
        self.fusion = components.fusion(
            c["fusion"], {m: self.branches[m].output_dim for m in self.modalities}, **params)
        self.mm_head = _mlp(self.fusion.output_dim, hidden, drop)
        # scored heads: the multimodal one, and unimodal heads with a unimodal label
        # (a joint subtask with alpha 0 keeps its head, which no loss reaches: not scored)
        self.heads = {"pred": "label", **{
            HEAD[m]: t for m, t in self.targets.items()
            if t != "label" and not (self.mode == "joint" and self.alpha[m] == 0)}}
        for branch in self.branches.values():
            if branch.extractor is not None:
                branch.extractor.set_trainable(bool(c["finetune"]))
                if branch.finetune_layers and c["finetune"]:
                    branch.freeze_lower()

    @classmethod
    def required_models(cls, config: Mapping[str, Any]) -> list[Any]:
        """The checkpoint of every configured extractor (``msabench models``); a modality the
        data has no raw inputs for uses its features instead and loads nothing."""
        from msabench.models import ModelNeed

        encoders = (config.get("model", {}) or {}).get("encoders") or {}
        needs = []
        for m in MODALITIES:
            spec = encoders.get(m, "features")
            if not isinstance(spec, Mapping) or not spec.get("extractor"):
                continue
            options = {**_ENCODERS.get(m, {}).get("options", {}), **(spec.get("options") or {})}
            name = options.get("model")
            if isinstance(name, str) and name.strip():
                needs.append(ModelNeed(name, f"model.encoders.{m}.options.model", modality=m,
                                       revision=options.get("revision"),
                                       role=f"boost-mtl {m} encoder ({spec['extractor']}; used "
                                            f"when the data has raw {m} inputs)"))
        return needs

    # ------------------------------------------------------------------ construction
    def _alpha(self, alpha: Any) -> dict[str, float]:
        if not isinstance(alpha, Mapping) or set(alpha) - set(ALPHA_KEYS):
            raise ConfigError(f"boost-mtl: model.alpha must be a table with keys among "
                              f"{', '.join(ALPHA_KEYS)}, got {alpha!r}")
        out = {**self.defaults["model"]["alpha"], **dict(alpha)}
        for k, v in out.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                raise ConfigError(f"boost-mtl: model.alpha.{k} must be a number >= 0, got {v!r}")
        return {k: float(v) for k, v in out.items()}

    def _branch(self, m: str, info: DataInfo, components: Components) -> Branch:
        c = self.config
        spec = (c["encoders"] or {}).get(m, "features")
        if spec == "features":
            spec = {"extractor": None, "global": "mean"}
        if not isinstance(spec, Mapping):
            raise ConfigError(f"boost-mtl: model.encoders.{m} must be a table (extractor, "
                              f"options, global) or \"features\", got {spec!r}")
        spec = {**_ENCODERS.get(m, {}), **spec} if spec.get("extractor") else dict(spec)
        has_raw = info.has_texts if m == "text" else m in info.media
        if spec.get("extractor") and not has_raw:
            self.notices.append(
                f"{info.meta.name}/{info.setting} has no raw {m} inputs: {m} uses the dataset's "
                f"features through a trainable adapter instead of {spec['extractor']}")
            spec = {"extractor": None, "global": "mean"}
        pooling = spec.get("global", "mean")
        if not spec.get("extractor"):
            return Branch(m, feature_dim=info.feature_dims[m], adapter_dim=int(c["adapter_dim"]),
                          global_pooling="mean")
        extractor = components.extractor(spec["extractor"], **dict(spec.get("options") or {}))
        if getattr(extractor, "modality", m) != m:
            raise ConfigError(f"boost-mtl: model.encoders.{m}.extractor={spec['extractor']!r} "
                              f"reads {extractor.modality}, not {m}")
        layers = spec.get("finetune_layers", 0)
        if isinstance(layers, bool) or not isinstance(layers, int) or layers < 0:
            raise ConfigError(f"boost-mtl: model.encoders.{m}.finetune_layers must be an integer "
                              f">= 0 (0 = every layer), got {layers!r}")
        if layers:
            extractor.load()
        try:
            return Branch(m, extractor=extractor, global_pooling=pooling, finetune_layers=layers)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc

    # ------------------------------------------------------------------ the run
    def setup(self, data: Any) -> None:
        """Print the notices; cache frozen pre-trained extractors' features, or the lower
        layers' output of partially fine-tuned ones (module doc)."""
        for note in self.notices:
            self.context.progress.print(f"[yellow]note:[/] boost-mtl: {note}")
        persist = bool(self.config["cache_frozen"])
        if not self.config["finetune"]:
            self.cache_frozen(data, persist=persist)
            return
        for m, branch in self.branches.items():
            if branch.finetune_layers:
                self._run_cache(branch, data, branch.cache_lower, persist,
                                f"layers below the top {branch.finetune_layers} (pre-trained)")

    def cache_frozen(self, data: Any, persist: bool = False) -> dict[str, dict[str, int]]:
        """Run every extractor branch once over every split's inputs (its memo); with
        ``persist`` also through the on-disk feature cache."""
        return {m: self._run_cache(b, data, b.cache, persist,
                                   f"features ({b.extractor.name}, frozen)")
                for m, b in self.branches.items() if b.extractor is not None}

    def _run_cache(self, branch: Branch, data: Any, fill: Any, persist: bool,
                   what: str) -> dict[str, int]:
        """``fill`` (a Branch memo filler) over every split's raw inputs of the branch's
        modality, with a progress bar; the disk cache under ``<cache>/features`` if
        ``persist``."""
        from msabench.fingerprint import cache_root

        m = branch.modality
        items = [x for s in data.splits for x in (data[s].texts if m == "text"
                                                  else data[s].media[m])]
        task = self.context.progress.task(f"  boost-mtl: {m} {what}",
                                          len({item_key(x) for x in items}))
        got = fill(items, CACHE_BATCH, task, store=cache_root() / "features" if persist else None)
        task.done(f"{got['encoded']} encoded, {got['from_disk']} from the cache")
        return got

    def frozen(self) -> list[nn.Module]:
        if self.mode == "two-step":
            return [*self.branches.values(), *self.unimodal_heads.values()]
        if not self.config["finetune"]:
            return [b.extractor for b in self.branches.values() if b.extractor is not None]
        return []

    def sample_lengths(self, split: Any) -> torch.Tensor | None:
        """Word pieces per transcript when the text branch runs an encoder that counts them
        (an extractor with ``token_lengths(texts)``, as ``hf-text``: what
        ``train.bucket_by_length`` sorts by; each batch is padded to its longest); None
        otherwise (the loop's default lengths)."""
        branch = self.branches["text"] if "text" in self.branches else None
        count = getattr(getattr(branch, "extractor", None), "token_lengths", None)
        if count is None or split.texts is None:
            return None
        return count([str(t) for t in split.texts])

    def encoder_parameters(self) -> set[int]:
        return {id(p) for b in self.branches.values() if b.extractor is not None
                for p in b.extractor.parameters()}

    def param_groups(self, params: list[nn.Parameter], lr: float,
                     weight_decay: float = 0.0) -> list[dict[str, Any]]:
        """Adam groups: pre-trained extractor weights at ``model.encoder_lr``, the rest ``lr``."""
        enc = self.encoder_parameters()
        groups = [{"params": [p for p in params if id(p) in enc],
                   "lr": float(self.config["encoder_lr"])},
                  {"params": [p for p in params if id(p) not in enc], "lr": float(lr)}]
        return [{**g, "weight_decay": weight_decay} for g in groups if g["params"]]

    def configure_optimizer(self, train: Mapping[str, Any]) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.param_groups(self.trainable_parameters(), train["lr"],
                                                  float(train.get("weight_decay", 0.0))),
                                foreach=True)

    # ------------------------------------------------------------------ forward and losses
    def unimodal(self, batch: Batch, m: str) -> torch.Tensor:
        """The unimodal prediction of ``m`` alone (step 1 runs only this branch)."""
        branch = self.branches[m]
        return self.unimodal_heads[m](branch.pool(branch.sequence(batch))).squeeze(-1)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        seqs = {m: self.branches[m].sequence(batch) for m in self.modalities}
        glob = {m: self.branches[m].pool(seqs[m]) for m in self.modalities}
        out = {HEAD[m]: self.unimodal_heads[m](glob[m]).squeeze(-1) for m in self.targets}
        if self.config["fusion"] == "mult":
            feats = {m: seqs[m].values for m in self.modalities}
            masks = {m: seqs[m].mask() for m in self.modalities}
        else:
            feats = {m: glob[m].unsqueeze(1) for m in self.modalities}
            masks = {m: torch.ones(len(batch), 1, dtype=torch.bool, device=glob[m].device)
                     for m in self.modalities}
        out["pred"] = self.mm_head(self.fusion(feats, masks)).squeeze(-1)
        return out

    def target(self, batch: Batch, target: str) -> torch.Tensor:
        return batch.label if target == "label" else batch.unimodal[target]

    def loss_terms(self, outputs: Mapping[str, torch.Tensor],
                   batch: Batch) -> dict[str, torch.Tensor]:
        """The L1 of every task this mode trains on (labelled, finite-label rows only)."""
        keep = batch.labelled
        terms = {}
        main = l1_on(outputs["pred"], batch.label, keep)
        terms["label"] = main if main is not None else outputs["pred"].sum() * 0.0
        if self.mode == "joint":
            for m, target in self.targets.items():
                if self.alpha[m] == 0:
                    continue  # no term at all: the head gets no gradient
                term = l1_on(outputs[HEAD[m]], self.target(batch, target), keep)
                if term is not None:
                    terms[m] = term
        return terms

    def loss(self, outputs: Mapping[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        terms = self.loss_terms(outputs, batch)
        return sum(self.alpha[k] * v for k, v in terms.items())

    def training_step(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        outputs = self(batch)
        terms = self.loss_terms(outputs, batch)
        loss = sum(self.alpha[k] * v for k, v in terms.items())
        logs = {"loss": float(loss.detach())}
        logs.update({f"l1_{k}": float(v.detach()) for k, v in terms.items()})
        return loss, logs
