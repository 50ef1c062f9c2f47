"""``dec``: semi-supervised Deep Embedded Clustering pretraining (dec-semi paper, seed 001).

Works with any method that exposes an ``encoder`` module (``encoder(batch) -> z`` of shape
(B, Z), ``encoder.output_dim = Z``), ``targets(label) -> (binary targets, rows that count)`` and
the list of ``modalities`` it reads (``requires``). The encoder is copied into an autoencoder, trained in two stages on every
training sample, labelled or not, and its weights are copied back into the method
(the transfer); the method's head is not touched.

Stage 1 [paper sec. 4.3, eq. 4-6]: ``L = alpha1 * L_recon + gamma1 * L_disentangle`` with
alpha1 = 1, gamma1 = 0.001, Adam 5e-4, 200 epochs.

Cluster centres: k-means (scikit-learn, ``kmeans_n_init`` = 20 restarts) on ``z`` of all
training samples [code: piiswrong/dec, vlukiyanov/pt-dec]; ``clusters`` = 2, the number of
classes [choice]. The k-means clusters are numbered arbitrarily, while the supervised term
reads cluster ``j`` as class ``j``; the centres are therefore reordered to the class each
cluster's labelled members mostly have (Hungarian matching on the labelled subset,
``align_clusters``) [choice].

Stage 2 [paper eq. 1-3, 7-8]: ``L = KL(P||Q) + alpha2 * L_recon + beta2 * L_supervised +
gamma2 * L_disentangle`` with alpha2 = 0.1, beta2 = 0.5, gamma2 = 0, Adam 1e-4, 100 epochs;
centres are trained with the encoder and decoder. ``Q``: Student-t soft assignments with
``dof`` = 1; ``P``: ``q^2 / f`` row-normalised, ``f_j = sum_i q_ij``, recomputed over the whole
training set every ``target_interval`` epochs (default 1) [code: piiswrong/dec dec.py] and
fixed in between. ``L_supervised``: cross-entropy of ``Q`` against the class of the labelled
rows only (``-1/N_l sum log q_{i,y_i}``); hidden labels are NaN and are masked out before any
arithmetic.

Losses are means over the batch: ``L_recon = 1/B sum_i ||x_i - x^_i||^2`` (eq. 4), ``KL =
1/B sum_ij p_ij log(p_ij / q_ij)`` (eq. 1 per sample, as pt-dec), ``L_disentangle = sum_{i!=j}
C_ij^2`` with ``C = z^T z / B`` of the batch-centred ``z`` (eq. 5-6).

Decoder [choice; the paper only says "a decoder reconstructs the inputs"]: an MLP
``Z -> decoder_hidden -> targets``. ``recon_target = "mean"`` (default) reconstructs each
modality's masked time-mean of the normalised input (for utterance-level features, the
features themselves); ``"sequence"`` reconstructs every valid step (``T_m * d_m`` outputs per
modality, padded steps excluded from the loss).

Diagnostics in the returned log (stored in the result file under ``pretraining.dec``): the
per-epoch mean of every loss term for both stages, the fraction of training samples whose hard
cluster changed at each target refresh, k-means inertia and cluster sizes, and the cluster
purity on the validation split (after k-means and at the end, plus every ``purity_every``
stage-2 epochs): ``sum_k max_c n_kc / N`` with the binary class of each validation label.
"""

from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from msabench.api import Batch, ComponentMeta, Pretrainer, Recipe, SplitData
from msabench.errors import ConfigError, TrainingDiverged

if TYPE_CHECKING:
    from msabench.api import LoadedDataset, Method
    from msabench.api import RunContext

RECON_TARGETS = ("mean", "sequence")


# ------------------------------------------------------------------ the loss terms (eq. 1-7)
def soft_assignment(z: torch.Tensor, centres: torch.Tensor, dof: float = 1.0) -> torch.Tensor:
    """Student-t kernel ``q_ij`` (eq. 2): (B, Z) x (K, Z) -> (B, K), rows summing to 1."""
    dist2 = torch.cdist(z, centres).pow(2) if z.shape[0] > 0 else z.new_zeros(0, len(centres))
    kernel = (1.0 + dist2 / dof).pow(-(dof + 1.0) / 2.0)
    return kernel / kernel.sum(1, keepdim=True)


def target_distribution(q: torch.Tensor) -> torch.Tensor:
    """``p_ij = (q_ij^2 / f_j) / sum_j' (q_ij'^2 / f_j')`` with ``f_j = sum_i q_ij`` (eq. 3)."""
    weight = q.pow(2) / q.sum(0, keepdim=True)
    return weight / weight.sum(1, keepdim=True)


def clustering_loss(p: torch.Tensor, q: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``KL(P || Q)`` summed over clusters, averaged over samples (eq. 1)."""
    p = p.clamp_min(0.0)
    terms = torch.where(p > 0, p * (torch.log(p.clamp_min(eps)) - torch.log(q.clamp_min(eps))),
                        torch.zeros_like(p))
    return terms.sum() / max(q.shape[0], 1)


def reconstruction_loss(x_hat: torch.Tensor, x: torch.Tensor,
                        weight: torch.Tensor | None = None) -> torch.Tensor:
    """``1/B sum_i ||x_i - x^_i||^2`` (eq. 4); ``weight`` (same shape, 0/1) drops padded
    entries."""
    err = (x_hat - x).pow(2)
    if weight is not None:
        err = err * weight
    return err.sum() / max(x.shape[0], 1)


def disentangle_loss(z: torch.Tensor) -> torch.Tensor:
    """Sum of squared off-diagonal entries of ``C = z^T z / N`` of the centred batch (eq. 5-6)."""
    centred = z - z.mean(0, keepdim=True)
    cov = centred.T @ centred / max(z.shape[0], 1)
    off = cov - torch.diag_embed(torch.diagonal(cov))  # zero the diagonal, no cancellation
    return off.pow(2).sum()


def supervised_loss(q: torch.Tensor, target: torch.Tensor, keep: torch.Tensor,
                    eps: float = 1e-12) -> torch.Tensor:
    """Cross-entropy of the soft assignments against the class of the rows in ``keep``
    (eq. 7): ``-1/N_l sum_{i in L} log q_{i, y_i}``; 0 (with a graph) when no row counts."""
    if not bool(keep.any()):
        return q.sum() * 0.0
    rows = q[keep]
    cls = target[keep].long()
    return -torch.log(rows.gather(1, cls.unsqueeze(1)).clamp_min(eps)).mean()


def cluster_purity(assignment: torch.Tensor, classes: torch.Tensor) -> float:
    """``sum_k max_c |{i: a_i = k, y_i = c}| / N``: 1.0 when every cluster holds one class."""
    if assignment.numel() == 0:
        return float("nan")
    total = 0
    for k in torch.unique(assignment):
        members = classes[assignment == k]
        total += int(torch.bincount(members.long()).max())
    return total / assignment.numel()


# ------------------------------------------------------------------ the autoencoder
def reconstruction_targets(batch: Batch, modalities: list[str], mode: str,
                           ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """What the decoder reconstructs: (B, sum d_m) time-means, or (B, sum T_m d_m) steps with
    a 0/1 weight that drops padded steps."""
    from msabench.api.fusion import masked_mean

    if mode == "mean":
        return torch.cat([masked_mean(batch.features[m], batch.mask(m)) for m in modalities],
                         -1), None
    xs, ws = [], []
    for m in modalities:
        x = batch.features[m]
        w = batch.mask(m).unsqueeze(-1).expand_as(x).to(x.dtype)
        xs.append(x.reshape(x.shape[0], -1))
        ws.append(w.reshape(x.shape[0], -1))
    return torch.cat(xs, -1), torch.cat(ws, -1)


class DECNetwork(nn.Module):
    """The copied encoder, an MLP decoder and the cluster centres."""

    def __init__(self, encoder: nn.Module, target_dim: int, hidden: list[int],
                 clusters: int) -> None:
        super().__init__()
        self.encoder = encoder
        dims = [int(encoder.output_dim)] + [int(h) for h in hidden]
        layers: list[nn.Module] = []
        for a, b in zip(dims, dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(dims[-1], target_dim))
        self.decoder = nn.Sequential(*layers)
        self.centres = nn.Parameter(torch.zeros(clusters, dims[0]))


class DEC(Pretrainer):
    """Two-stage semi-supervised DEC on the method's encoder; transfers the encoder back."""

    name = "dec"
    requires = ("encoder", "targets", "modalities")
    epoch_keys = ("stage1_epochs", "stage2_epochs")
    meta = ComponentMeta(
        summary="semi-supervised Deep Embedded Clustering pretraining of a method's encoder",
        paper="dec-semi paper (seeds 000/001); DEC: Xie et al. 2016, Unsupervised Deep "
              "Embedding for Clustering Analysis (ICML)",
        defaults_source=(
            "paper sec. 4.3: stage 1 alpha 1, gamma 0.001, Adam 5e-4, 200 epochs; stage 2 "
            "alpha 0.1, beta 0.5, gamma 0, Adam 1e-4, 100 epochs; Student-t dof 1 (eq. 2). "
            "piiswrong/dec and vlukiyanov/pt-dec: k-means with 20 restarts, target refreshed "
            "over the training set, KL averaged over the batch. msabench choices "
            "(docs/dec-semi.md): 2 clusters aligned to the classes, MLP decoder 256 "
            "reconstructing time-means, batch 128, refresh every epoch, no weight decay"),
    )
    defaults = {
        "clusters": 2,
        "dof": 1.0,
        "batch_size": 128,
        "decoder_hidden": [256],
        "recon_target": "mean",
        "weight_decay": 0.0,
        "stage1_epochs": 200, "stage1_lr": 5e-4, "stage1_alpha": 1.0, "stage1_gamma": 0.001,
        "stage2_epochs": 100, "stage2_lr": 1e-4, "stage2_alpha": 0.1, "stage2_beta": 0.5,
        "stage2_gamma": 0.0,
        "target_interval": 1,
        "kmeans_n_init": 20,
        "align_clusters": True,
        "purity_every": 10,
    }

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        c = self.config
        if c["recon_target"] not in RECON_TARGETS:
            raise ConfigError(f"pretrain.dec.recon_target={c['recon_target']!r}: choose "
                              f"{' or '.join(RECON_TARGETS)}")
        for key in ("stage1_epochs", "stage2_epochs"):
            if int(c[key]) < 0:
                raise ConfigError(f"pretrain.dec.{key} must be >= 0, got {c[key]}")
        for key in ("clusters", "batch_size", "target_interval", "kmeans_n_init"):
            if int(c[key]) < 1:
                raise ConfigError(f"pretrain.dec.{key} must be >= 1, got {c[key]}")
        if float(c["dof"]) <= 0:
            raise ConfigError(f"pretrain.dec.dof must be > 0, got {c['dof']}")

    # -------------------------------------------------------------- helpers
    @torch.no_grad()
    def _embed(self, net: DECNetwork, split: SplitData, device: torch.device) -> torch.Tensor:
        net.eval()
        out = [net.encoder(b.to(device)) for b in split.batches(512)]
        return torch.cat(out) if out else torch.zeros(0, net.centres.shape[1], device=device)

    def _purity(self, net: DECNetwork, split: SplitData, model: "Method",
                device: torch.device) -> float:
        target, keep = model.targets(split.labels)
        if not bool(keep.any()):
            return float("nan")
        with torch.no_grad():
            q = soft_assignment(self._embed(net, split, device), net.centres, float(self.config["dof"]))
        return cluster_purity(q.argmax(1).cpu()[keep], target[keep])

    def _step(self, net: DECNetwork, model: "Method", weights: dict[str, float],
              p_full: torch.Tensor | None):
        """One training step of a stage for the shared loop: (total loss, {term: value})."""
        c = self.config

        def step(batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
            z = net.encoder(batch)
            x, w = reconstruction_targets(batch, model.modalities, c["recon_target"])
            terms = {"recon": reconstruction_loss(net.decoder(z), x, w),
                     "disentangle": disentangle_loss(z)}
            total = weights["alpha"] * terms["recon"] + weights["gamma"] * terms["disentangle"]
            if p_full is not None:
                q = soft_assignment(z, net.centres, float(c["dof"]))
                terms["kl"] = clustering_loss(p_full[batch.index.to(p_full.device)], q)
                target, keep = model.targets(batch.label)
                terms["supervised"] = supervised_loss(q, target, keep & batch.labelled)
                total = total + terms["kl"] + weights["beta"] * terms["supervised"]
            if not torch.isfinite(total):
                raise TrainingDiverged(
                    f"pretrainer dec: loss became {float(total)}; lower the stage's learning "
                    "rate (pretrain.dec.stage1_lr / stage2_lr)")
            return total, {k: float(v.detach()) for k, v in terms.items()}

        return step

    @staticmethod
    def _rows(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The loop's rows with the stage's term names (``total``, ``recon``, ...)."""
        out = []
        for row in history:
            new = {}
            for key, value in row.items():
                if key == "train_loss":
                    key = "total"
                elif key.startswith("train_"):
                    key = key[len("train_"):]
                new[key] = value
            out.append(new)
        return out

    def _align(self, net: DECNetwork, z: torch.Tensor, assign: np.ndarray, split: SplitData,
               model: "Method") -> dict[str, Any]:
        """Reorder the centres so that cluster j is the one whose labelled members are mostly
        class j (Hungarian matching on the labelled training rows)."""
        from scipy.optimize import linear_sum_assignment

        k = net.centres.shape[0]
        target, keep = model.targets(split.labels)
        keep = keep & split.labelled
        counts = np.zeros((k, k), dtype=np.int64)
        for cl, y in zip(assign[keep.numpy()], target[keep].long().numpy()):
            if y < k:
                counts[cl, y] += 1
        rows, cols = linear_sum_assignment(-counts)
        order = np.empty(k, dtype=np.int64)
        order[cols] = rows  # new index (class) <- old cluster
        with torch.no_grad():
            net.centres.copy_(net.centres[torch.as_tensor(order)].clone())
        return {"old_cluster_of_class": order.tolist(), "labelled_counts": counts.tolist()}

    # -------------------------------------------------------------- fit
    def fit(self, model: "Method", data: "LoadedDataset", context: "RunContext") -> dict[str, Any]:
        from sklearn.cluster import KMeans

        c = self.config
        device = context.device
        train, valid = data["train"], data["valid"]
        k = int(c["clusters"])
        if float(c["stage2_beta"]) > 0 and k != 2:
            raise ConfigError(f"pretrain.dec.clusters={k}: the supervised term reads cluster j "
                              "as class j of the binary target, so it needs clusters = 2 (or set "
                              "pretrain.dec.stage2_beta=0)")
        if len(train) < k:
            raise ConfigError(f"pretrainer dec: {len(train)} training samples for {k} clusters")
        probe = train.batch(torch.arange(min(2, len(train))))
        x0, _ = reconstruction_targets(probe, model.modalities, c["recon_target"])
        net = DECNetwork(copy.deepcopy(model.encoder), int(x0.shape[1]),
                         list(c["decoder_hidden"]), k).to(device)
        self.network = net  # kept for inspection (tests, notebooks); not saved
        generator = torch.Generator().manual_seed(int(context.seed) + 7919)
        log: dict[str, Any] = {"config": dict(c), "samples": len(train),
                               "labelled": int(train.labelled.sum()),
                               "reconstruction_dim": int(x0.shape[1])}

        # stage 1: reconstruction + disentanglement, on the shared loop (no selection: the
        # last epoch's weights go on; every sample, labelled or not)
        started = time.perf_counter()
        params = list(net.encoder.parameters()) + list(net.decoder.parameters())
        opt = torch.optim.Adam(params, lr=float(c["stage1_lr"]), weight_decay=float(c["weight_decay"]),
                               foreach=True)
        w1 = {"alpha": float(c["stage1_alpha"]), "gamma": float(c["stage1_gamma"]), "beta": 0.0}
        bs = int(c["batch_size"])
        stage1 = context.fit(
            net, train, step=self._step(net, model, w1, None), optimizer=opt,
            recipe=Recipe(epochs=int(c["stage1_epochs"]), batch_size=bs, select=None),
            generator=generator, name="dec stage 1 (autoencoder)",
            status=lambda row: f"recon {row['train_recon']:.4f} "
                               f"disent {row['train_disentangle']:.4f}")
        log["stage1"] = {"history": self._rows(stage1.history),
                         "seconds": round(time.perf_counter() - started, 3)}

        # k-means centres on z of every training sample
        z = self._embed(net, train, device).cpu()
        kmeans = KMeans(n_clusters=k, n_init=int(c["kmeans_n_init"]),
                        random_state=int(context.seed) % (2**31))
        assign = kmeans.fit_predict(z.double().numpy())
        with torch.no_grad():
            net.centres.copy_(torch.as_tensor(kmeans.cluster_centers_, dtype=net.centres.dtype))
        km: dict[str, Any] = {"inertia": float(kmeans.inertia_), "n_init": int(c["kmeans_n_init"]),
                              "cluster_sizes": np.bincount(assign, minlength=k).tolist()}
        if c["align_clusters"] and bool(train.labelled.any()):
            km["alignment"] = self._align(net, z, assign, train, model)
        km["valid_purity"] = self._purity(net, valid, model, device)
        log["kmeans"] = km

        # stage 2: KL(P||Q) + reconstruction + supervised (+ disentanglement); the target
        # distribution P is refreshed over the whole training set before every
        # target_interval-th epoch and fixed in between
        started = time.perf_counter()
        params = params + [net.centres]
        opt = torch.optim.Adam(params, lr=float(c["stage2_lr"]), weight_decay=float(c["weight_decay"]),
                               foreach=True)
        w2 = {"alpha": float(c["stage2_alpha"]), "gamma": float(c["stage2_gamma"]),
              "beta": float(c["stage2_beta"])}
        p_full = torch.zeros(len(train), k, device=device)
        state: dict[str, Any] = {"previous": None}

        def refresh(epoch: int, row: dict[str, Any]) -> None:
            if state["previous"] is not None and (epoch - 1) % int(c["target_interval"]) != 0:
                return
            with torch.no_grad():
                q_full = soft_assignment(self._embed(net, train, device), net.centres,
                                         float(c["dof"]))
            p_full.copy_(target_distribution(q_full).detach())
            hard = q_full.argmax(1).cpu()
            if state["previous"] is not None:
                row["assignment_changed"] = float((hard != state["previous"]).float().mean())
            state["previous"] = hard

        def purity(epoch: int, row: dict[str, Any]) -> None:
            if epoch % int(c["purity_every"]) == 0 or epoch == int(c["stage2_epochs"]):
                row["valid_purity"] = self._purity(net, valid, model, device)

        stage2 = context.fit(
            net, train, step=self._step(net, model, w2, p_full), optimizer=opt,
            recipe=Recipe(epochs=int(c["stage2_epochs"]), batch_size=bs, select=None),
            generator=generator, before_epoch=refresh, after_epoch=purity,
            name="dec stage 2 (clustering)",
            status=lambda row: f"kl {row['train_kl']:.4f} sup {row['train_supervised']:.4f}")
        log["stage2"] = {"history": self._rows(stage2.history),
                         "seconds": round(time.perf_counter() - started, 3)}
        log["valid_purity"] = self._purity(net, valid, model, device)

        # transfer: the pretrained encoder's weights into the method
        model.encoder.load_state_dict(net.encoder.state_dict())
        log["transferred"] = {"module": "encoder",
                              "parameters": sum(p.numel() for p in model.encoder.parameters())}
        context.progress.print(
            f"seed {context.seed}: dec pretraining done (valid cluster purity "
            f"{log['valid_purity']:.3f} after k-means {km['valid_purity']:.3f}); encoder "
            "weights transferred")
        return log
