"""``mce``: contrastive pretraining of CorMulT's modality correlation evaluator (seed 003).

Works with any method that declares an ``evaluator`` attribute (None before the stage) and
the list of ``modalities`` it reads: the stage builds an :class:`~.mce_model.MCE` for those
modalities, trains it with the triplet loss on positive/negative samples, keeps the epoch
with the best validation loss, freezes it (eval mode, no gradient) and sets
``model.evaluator``. The method lists it in :meth:`Method.frozen` so supervised training
leaves it unchanged. Network, distances, negatives and loss: :mod:`.mce_model`.

Defaults and where they come from (YAMY1234/CorMulT):

- architecture: d_model 128, 3 layers, 4 heads, FFN 256, dropout 0.1, out_dim 64
  [``modality_correlation/correlation_train.py``: ``dataset_specific_configs["mosei_senti"]``];
- Adam lr 2e-4, batch 24, 50 epochs, margin 0.2
  [``modality_correlation/main_correlation.py``: argparse defaults]; best validation loss kept
  [``correlation_train.py:pretrain_correlation_model``: ``save_model`` on a new best];
- negatives: ``strategy`` D, ``noise_std`` 0.1 [``main_correlation.py``; paper Table 2: D
  best]; ``distance`` cosine [``correlation_loss.py:TripleLoss``; paper Table 3].

msabench choices (docs/cormult.md): training negatives are drawn afresh every batch (seeded by
the run seed); the validation negatives are drawn once (a fixed generator) so that the epochs
are compared on the same triplets (the code redraws them every epoch); no weight decay, no
gradient clipping (the code has neither). ``mahalanobis``: before every epoch, and once more
after the best epoch is restored, the covariance of the training vectors (every modality's
time-mean projection, pooled) is recomputed in eval mode and inverted with a ridge of 1e-4 x
its mean variance; the last one is stored in the evaluator (``inv_cov``) for stage 2.

Utterance-level data (every sequence of length 1): strategy B returns the positive unchanged
(the code's ``shift_sequence`` leaves length-1 sequences alone), so a B triplet can only cost
the margin. The stage detects it: with ``strategy = "D"`` it draws A or C only and says so in
the log (``b_degenerate``, ``strategies_used``); ``strategy = "B"`` is refused with a message.

Stored in the result file under ``pretraining.mce``: the per-epoch curves (train loss and
each directed pair's term, validation loss and triplet accuracy), the validation triplet
accuracy per negative type before and after training, and the distribution of correlations
per modality pair on the test split (mean, std, min, quartiles, max); on data with planted
disagreements (an ``extras["weak_modality"]`` column, e.g. ``synthetic-mosei``) also the
mean correlation with and without a planted disagreement and the AUC of telling them apart.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch

from msabench.api import ComponentMeta, Pretrainer, Recipe
from msabench.api.dataset import MODALITIES
from msabench.errors import ConfigError, TrainingDiverged

from .mce_model import (CODES, DISTANCES, MCE, STRATEGIES, distance, draw_strategies,
                        inverse_covariance, make_negatives, mce_loss)

if TYPE_CHECKING:
    from msabench.api import LoadedDataset, Method, RunContext, SplitData

ARCH_KEYS = ("d_model", "num_layers", "num_heads", "dim_feedforward", "dropout", "out_dim",
             "max_len")


def auc(pos: torch.Tensor, neg: torch.Tensor) -> float:
    """P(score of a ``pos`` row > score of a ``neg`` row), ties counted half (Mann-Whitney)."""
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    diff = pos.double().unsqueeze(1) - neg.double().unsqueeze(0)
    return float((diff > 0).double().mean() + 0.5 * (diff == 0).double().mean())


def summary(values: torch.Tensor) -> dict[str, float]:
    v = values.double().cpu()
    q = torch.quantile(v, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.double))
    return {"mean": float(v.mean()), "std": float(v.std()) if len(v) > 1 else 0.0,
            "min": float(q[0]), "q25": float(q[1]), "median": float(q[2]),
            "q75": float(q[3]), "max": float(q[4]), "n": len(v)}


class MCEPretrainer(Pretrainer):
    """Trains the modality correlation evaluator with the triplet loss; freezes it."""

    name = "mce"
    requires = ("evaluator", "modalities")
    epoch_keys = ("epochs",)
    meta = ComponentMeta(
        summary="CorMulT's modality correlation evaluator, trained with a triplet loss",
        paper="CorMulT: A Semi-supervised Modality Correlation-aware Multimodal Transformer "
              "for Sentiment Analysis (seed 003)",
        url="https://github.com/YAMY1234/CorMulT",
        defaults_source=(
            "YAMY1234/CorMulT modality_correlation/correlation_train.py dataset_specific_configs"
            "['mosei_senti'] (d_model 128, 3 layers, 4 heads, FFN 256, dropout 0.1, out 64); "
            "main_correlation.py argparse (Adam 2e-4, batch 24, 50 epochs, margin 0.2, "
            "noise_std 0.1); correlation_loss.py TripleLoss (cosine); paper sec. 4.2-4.3 "
            "(strategy D, cosine best); msabench choices in docs/cormult.md"),
    )
    defaults = {
        "strategy": "D", "distance": "cosine", "margin": 0.2, "noise_std": 0.1,
        "epochs": 50, "batch_size": 24, "lr": 2e-4,
        "d_model": 128, "num_layers": 3, "num_heads": 4, "dim_feedforward": 256,
        "dropout": 0.1, "out_dim": 64, "max_len": 5000,
    }

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        c = self.config
        if c["strategy"] not in STRATEGIES:
            raise ConfigError(f"pretrain.mce.strategy={c['strategy']!r}: choose one of "
                              f"{', '.join(STRATEGIES)}")
        if c["distance"] not in DISTANCES:
            raise ConfigError(f"pretrain.mce.distance={c['distance']!r}: choose one of "
                              f"{', '.join(DISTANCES)}")
        for key in ("epochs",):
            if int(c[key]) < 0:
                raise ConfigError(f"pretrain.mce.{key} must be >= 0, got {c[key]}")
        for key in ("batch_size", "d_model", "num_layers", "num_heads", "out_dim"):
            if int(c[key]) < 1:
                raise ConfigError(f"pretrain.mce.{key} must be >= 1, got {c[key]}")
        if int(c["d_model"]) % int(c["num_heads"]):
            raise ConfigError(f"pretrain.mce.d_model={c['d_model']} is not divisible by "
                              f"num_heads={c['num_heads']}")

    # -------------------------------------------------------------- helpers
    @torch.no_grad()
    def vectors(self, mce: MCE, split: "SplitData", device: torch.device,
                batch_size: int = 256) -> dict[str, torch.Tensor]:
        """Eval-mode time-mean projections of every sample of ``split``."""
        mce.eval()
        parts: dict[str, list[torch.Tensor]] = {m: [] for m in mce.modalities}
        for b in split.batches(batch_size):
            b = b.to(device)
            out = mce.pooled(b.features, b.lengths)
            for m in mce.modalities:
                parts[m].append(out[m].cpu())
        return {m: torch.cat(v) for m, v in parts.items()}

    def fixed_negatives(self, split: "SplitData", mods: list[str], strategy: str, seed: int,
                        allow_b: bool) -> list[tuple[Any, dict, dict, dict]]:
        """Batches of ``split`` (in order) with negatives drawn once by a fixed generator."""
        gen = torch.Generator().manual_seed(seed)
        out = []
        for b in split.batches(256):
            feats = {m: b.features[m] for m in mods}
            lens = {m: b.lengths[m] for m in mods}
            codes = draw_strategies(strategy, len(b), gen, allow_b)
            nf, nl, info = make_negatives(feats, lens, codes, gen, float(self.config["noise_std"]))
            out.append((b, nf, nl, info))
        return out

    @torch.no_grad()
    def evaluate(self, mce: MCE, triplets: list, device: torch.device) -> dict[str, float]:
        """Validation loss and triplet accuracy: the share of triplets whose negative differs
        from the positive with ``d(anchor, pos) < d(anchor, neg)``."""
        mce.eval()
        c = self.config
        inv = mce.inv_cov if c["distance"] == "mahalanobis" else None
        total, n, right, counted = 0.0, 0, 0, 0
        for b, nf, nl, _ in triplets:
            pos = mce.pooled({m: b.features[m].to(device) for m in mce.modalities},
                             {m: b.lengths[m].to(device) for m in mce.modalities})
            neg = mce.pooled({m: x.to(device) for m, x in nf.items()},
                             {m: x.to(device) for m, x in nl.items()})
            loss, _ = mce_loss(pos, neg, float(c["margin"]), c["distance"], inv)
            total += float(loss) * len(b)
            n += len(b)
            for x in mce.modalities:
                for y in mce.modalities:
                    if x == y:
                        continue
                    differs = (nf[y] != b.features[y]).flatten(1).any(1) | (
                        nl[y] != b.lengths[y])
                    d_pos = distance(pos[x], pos[y], c["distance"], inv).cpu()
                    d_neg = distance(pos[x], neg[y], c["distance"], inv).cpu()
                    right += int(((d_pos < d_neg) & differs).sum())
                    counted += int(differs.sum())
        return {"loss": total / max(n, 1),
                "accuracy": right / counted if counted else float("nan"),
                "triplets": counted}

    def accuracy_by_type(self, mce: MCE, split: "SplitData", mods: list[str], seed: int,
                         device: torch.device, b_degenerate: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, s in enumerate(CODES):
            if s == "B" and b_degenerate:
                out[s] = {"accuracy": None, "note": "degenerate: every sequence has length 1, "
                          "the shifted negative equals the positive"}
                continue
            res = self.evaluate(mce, self.fixed_negatives(split, mods, s, seed + 101 * k, True),
                                device)
            out[s] = {"accuracy": res["accuracy"], "loss": res["loss"],
                      "triplets": res["triplets"]}
        return out

    def correlation_summary(self, mce: MCE, split: "SplitData",
                            device: torch.device) -> dict[str, Any]:
        vec = self.vectors(mce, split, device)
        cors = mce.pair_correlations({m: v.to(device) for m, v in vec.items()})
        weak = split.extras.get("weak_modality")
        out: dict[str, Any] = {}
        for (x, y), v in cors.items():
            v = v.cpu()
            row: dict[str, Any] = summary(v)
            if weak is not None:
                ix, iy = MODALITIES.index(x), MODALITIES.index(y)  # the column's index
                planted = (weak == ix) | (weak == iy)
                row["planted"] = {"mean_disagreeing": float(v[planted].mean()) if bool(
                    planted.any()) else None,
                    "mean_agreeing": float(v[~planted].mean()) if bool((~planted).any()) else None,
                    "auc_low_cor_is_planted": auc(-v[planted], -v[~planted])}
            out[f"{x}-{y}"] = row
        return out

    # -------------------------------------------------------------- fit
    def fit(self, model: "Method", data: "LoadedDataset", context: "RunContext") -> dict[str, Any]:
        c = self.config
        device = context.device
        mods = list(model.modalities)
        if len(mods) < 2:
            raise ConfigError(f"pretrainer mce: correlations need two or more modalities, the "
                              f"run has {mods}; drop --modalities or the mce stage")
        train, valid, test = data["train"], data["valid"], data["test"]
        b_degenerate = all(int(train.lengths[m].max()) <= 1 for m in mods)
        if b_degenerate and c["strategy"] == "B":
            raise ConfigError(
                "pretrainer mce: strategy B (temporal shift) is degenerate on this data: every "
                "sequence has length 1, so the shifted negative equals the positive and the "
                "loss is the constant margin; use strategy A, C or D (D then draws A/C only)")
        allow_b = not b_degenerate
        dims = {m: int(train.features[m].shape[-1]) for m in mods}
        mce = MCE(dims, distance=c["distance"], **{k: c[k] for k in ARCH_KEYS}).to(device)
        seed = int(context.seed)
        gen = torch.Generator().manual_seed(seed + 30011)
        valid_triplets = self.fixed_negatives(valid, mods, c["strategy"], seed + 30029, allow_b)
        inv_state: dict[str, Any] = {}
        log: dict[str, Any] = {
            "config": dict(c), "modalities": mods, "samples": len(train),
            "b_degenerate": b_degenerate,
            "strategies_used": (["A", "B", "C"] if allow_b else ["A", "C"])
            if c["strategy"] == "D" else [c["strategy"]]}
        if b_degenerate:
            context.progress.print(
                "[yellow]note:[/] mce: every sequence has length 1, so strategy B (temporal "
                "shift) is degenerate" + (" -- strategy D draws A or C only"
                                          if c["strategy"] == "D" else ""))
        log["valid_accuracy_before"] = self.accuracy_by_type(mce, valid, mods, seed, device,
                                                             b_degenerate)

        def refresh_cov(epoch: int = 0, row: dict | None = None) -> None:
            if c["distance"] != "mahalanobis":
                return
            vec = self.vectors(mce, train, device)
            mce.inv_cov.copy_(inverse_covariance(torch.cat(list(vec.values()))).to(device))
            inv_state["refreshed"] = inv_state.get("refreshed", 0) + 1

        def step(batch):
            feats = {m: batch.features[m] for m in mods}
            lens = {m: batch.lengths[m] for m in mods}
            codes = draw_strategies(c["strategy"], len(batch), gen, allow_b)
            nf, nl, _ = make_negatives(feats, lens, codes, gen, float(c["noise_std"]))
            pos = mce.pooled(feats, lens)
            neg = mce.pooled(nf, nl)
            inv = mce.inv_cov if c["distance"] == "mahalanobis" else None
            loss, terms = mce_loss(pos, neg, float(c["margin"]), c["distance"], inv)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"pretrainer mce: loss became {float(loss)}; lower "
                                       "pretrain.mce.lr")
            return loss, {"loss": float(loss.detach()),
                          **{k: float(v.detach()) for k, v in terms.items()}}

        started = time.perf_counter()
        opt = torch.optim.Adam(mce.parameters(), lr=float(c["lr"]), foreach=True)
        fitted = context.fit(
            mce, train, step=step, optimizer=opt,
            score=lambda: self.evaluate(mce, valid_triplets, device),
            recipe=Recipe(epochs=int(c["epochs"]), batch_size=int(c["batch_size"]),
                          select="loss", higher_is_better=False),
            generator=torch.Generator().manual_seed(seed + 30047),
            before_epoch=refresh_cov, name="mce (contrastive)",
            status=lambda row: f"triplet {row['train_loss']:.4f}")
        refresh_cov()  # the covariance of the restored best epoch (mahalanobis)
        log["history"] = fitted.history
        log["best_epoch"] = fitted.best_epoch
        log["best_valid_loss"] = fitted.best_score
        log["seconds"] = round(time.perf_counter() - started, 3)
        if inv_state:
            log["covariance_refreshes"] = inv_state["refreshed"]
        log["valid_accuracy"] = self.accuracy_by_type(mce, valid, mods, seed, device,
                                                      b_degenerate)
        log["test_correlations"] = self.correlation_summary(mce, test, device)
        mce.eval()
        for p in mce.parameters():
            p.requires_grad_(False)
        model.evaluator = mce
        acc = ", ".join(f"{k} {v['accuracy']:.3f}" for k, v in log["valid_accuracy"].items()
                        if v.get("accuracy") is not None)
        context.progress.print(
            f"seed {context.seed}: mce pretraining done (best epoch {fitted.best_epoch}, valid "
            f"triplet loss {fitted.best_score:.4f}; valid accuracy by negative type: {acc})")
        return log
