"""A test plugin implementing every hook once, with small but real components."""

from __future__ import annotations

import torch
from torch import nn

from msabench import hookimpl
from msabench.api import (ComponentMeta, Dataset, DatasetMeta, Extractor, Features, Fusion,
                          LoadedDataset, Method, Metric, Pretrainer, Recipe, Schedule, SplitData,
                          masked_mean)


class ToyData(Dataset):
    """A small learnable regression problem: label = 2.5 * tanh(w . mean(text) + 0.5 * audio)."""

    name = "toy-data"
    meta = DatasetMeta(name="toy-data", title="Toy test data (synthetic)", language="none",
                       label_range=(-3.0, 3.0), convention="mosi", modalities=("text", "audio"),
                       split_sizes=(192, 64, 64), synthetic=True)
    defaults = {"n_train": 192, "hide_fraction": 0.0}

    def load(self) -> LoadedDataset:
        g = torch.Generator().manual_seed(7)
        w = torch.randn(6, generator=g)
        splits = {}
        sizes = {"train": self.options["n_train"], "valid": 64, "test": 64}
        for split, n in sizes.items():
            text = torch.randn(n, 5, 6, generator=g)
            lengths = torch.randint(2, 6, (n,), generator=g)
            steps = torch.arange(5).unsqueeze(0) < lengths.unsqueeze(1)
            text = text * steps.unsqueeze(-1)
            audio = torch.randn(n, 3, 2, generator=g)
            pooled = text.sum(1) / lengths.unsqueeze(1)
            label = 2.5 * torch.tanh(pooled @ w + 0.5 * audio.mean(1)[:, 0])
            # unimodal labels: what each modality alone says (no extra random draws)
            unimodal = {"text": (2.5 * torch.tanh(pooled @ w)).float(),
                        "audio": (2.5 * torch.tanh(audio.mean(1)[:, 0])).float()}
            labelled = torch.ones(n, dtype=torch.bool)
            if split == "train" and self.options["hide_fraction"]:
                labelled[: int(n * self.options["hide_fraction"])] = False
            splits[split] = SplitData(
                ids=[f"{split}_{i}" for i in range(n)],
                features={"text": text, "audio": audio},
                lengths={"text": lengths, "audio": torch.full((n,), 3)},
                labels=label.float(), labelled=labelled, unimodal=unimodal,
                texts=[f"sample {i}" for i in range(n)])
        return LoadedDataset(self.meta, self.setting, splits, source="generated in memory")


class LetterCounts(Extractor):
    """Bag of letters a-z per text, normalised (a real, if humble, text extractor)."""

    name = "toy-letters"
    modality = "text"
    meta = ComponentMeta(summary="letter frequencies")
    defaults = {"lowercase": True}

    @property
    def output_dim(self) -> int:
        return 26

    def prepare(self, raw):
        counts = torch.zeros(len(raw), 1, 26)
        for i, text in enumerate(raw):
            text = text.lower() if self.config["lowercase"] else text
            for ch in text:
                if "a" <= ch <= "z":
                    counts[i, 0, ord(ch) - 97] += 1
        return {"counts": counts}

    def forward(self, inputs):
        counts = inputs["counts"]
        out = counts / counts.sum(-1, keepdim=True).clamp_min(1.0)
        return Features(out, torch.ones(len(counts), dtype=torch.long))

    def extract(self, inputs):
        with torch.no_grad():
            return self(self.prepare(inputs))


class SumFusion(Fusion):
    """Project every pooled modality to ``dim`` and add them."""

    name = "toy-sum"
    meta = ComponentMeta(summary="sum of projections")
    defaults = {"dim": 8}

    def __init__(self, input_dims, **params):
        super().__init__(input_dims, **params)
        self.proj = nn.ModuleDict({m: nn.Linear(d, self.params["dim"]) for m, d in input_dims.items()})
        self.output_dim = self.params["dim"]

    def forward(self, features, masks):
        return sum(self.proj[m](masked_mean(x, masks[m])) for m, x in features.items())


class CentreInputs(Pretrainer):
    """Learns the mean pooled feature of every modality over ALL training samples (labelled or
    not) and stores it on the model, which subtracts it; logs which ids it saw."""

    name = "toy-centre"
    meta = ComponentMeta(summary="input centring")
    defaults = {"passes": 1}
    requires = ("centres",)

    def fit(self, model, data, context):
        train = data["train"]
        seen = []
        for _ in range(self.config["passes"]):
            for m in model.centres:
                mask = torch.arange(train.features[m].shape[1]) < train.lengths[m].unsqueeze(1)
                model.centres[m].copy_(masked_mean(train.features[m], mask).mean(0))
            seen = list(train.ids)
        return {"samples_seen": len(seen), "hidden_labels_seen": int((~train.labelled).sum()),
                "seed": context.seed}


class MSE(Metric):
    name = "toy-mse"
    key = "mse"
    display = "MSE"
    conventions = ("mosi",)
    higher_is_better = False
    order = 50
    meta = ComponentMeta(summary="mean squared error")

    @staticmethod
    def functional(preds, target):
        return ((preds - target) ** 2).mean()


class Linear(Method):
    """Linear regression on centred, pooled features."""

    name = "toy-linear"
    meta = ComponentMeta(summary="linear probe", defaults_source="test choice")
    defaults = {"train": {"epochs": 15, "batch_size": 32, "lr": 0.05, "patience": 5},
                "model": {"scale": 1.0}, "pretrain": {}}

    def __init__(self, info, config, components):
        super().__init__(info, config, components)
        self.centres = nn.ParameterDict({m: nn.Parameter(torch.zeros(d), requires_grad=False)
                                         for m, d in info.feature_dims.items()})
        self.head = nn.Linear(sum(info.feature_dims.values()), 1)

    def forward(self, batch):
        pooled = [masked_mean(batch.features[m], batch.mask(m)) - self.centres[m]
                  for m in self.info.modalities]
        return {"pred": self.config["scale"] * self.head(torch.cat(pooled, -1)).squeeze(-1)}


class WarmUpEvaluator(Pretrainer):
    """Trains the method's ``evaluator`` to predict the label from pooled text on the shared
    loop (selection on the validation loss); the method then keeps it frozen."""

    name = "toy-warmup"
    meta = ComponentMeta(summary="evaluator warm-up on the shared loop")
    defaults = {"epochs": 4, "lr": 0.05}
    requires = ("evaluator",)
    epoch_keys = ("epochs",)

    def fit(self, model, data, context):
        evaluator = model.evaluator

        def predict(batch):
            return evaluator(masked_mean(batch.features["text"], batch.mask("text"))).squeeze(-1)

        def step(batch):
            loss = nn.functional.mse_loss(predict(batch), batch.label)
            return loss, {"mse": float(loss.detach())}

        def score():
            with torch.no_grad():
                evaluator.eval()
                batch = data["valid"].batch(torch.arange(len(data["valid"])))
                return {"loss": float(nn.functional.mse_loss(predict(batch), batch.label))}

        opt = torch.optim.SGD(evaluator.parameters(), lr=self.config["lr"])
        fitted = context.fit(evaluator, data["train"], data["valid"], step=step, optimizer=opt,
                             recipe=Recipe(epochs=self.config["epochs"], batch_size=32),
                             score=score, name="toy warm-up")
        return {"history": fitted.history, "best_epoch": fitted.best_epoch}


class MultiHead(Method):
    """A multimodal head and one head per modality; a frozen evaluator (with dropout) gates the
    fused vector; per-term losses; a per-step scheduler."""

    name = "toy-multihead"
    meta = ComponentMeta(summary="multi-head method with a frozen evaluator",
                         defaults_source="test choice")
    defaults = {"train": {"epochs": 6, "batch_size": 32, "lr": 0.02, "patience": 0},
                "model": {"hidden": 8}, "pretrain": {"stages": ["toy-warmup"]}}

    def __init__(self, info, config, components):
        super().__init__(info, config, components)
        h = int(self.config["hidden"])
        self.encoders = nn.ModuleDict({m: nn.Linear(d, h) for m, d in info.feature_dims.items()})
        self.unimodal_heads = nn.ModuleDict({m: nn.Linear(h, 1) for m in info.feature_dims})
        self.head = nn.Linear(h * len(info.feature_dims), 1)
        self.evaluator = nn.Sequential(nn.Linear(info.feature_dims["text"], 4), nn.Dropout(0.5),
                                       nn.Linear(4, 1))
        self.evaluator_modes: list[bool] = []  # evaluator.training seen in training forwards
        self.heads = {"pred": "label", **{f"pred_{m}": m for m in info.unimodal
                                           if m in info.feature_dims}}

    def frozen(self):
        return [self.evaluator]

    def forward(self, batch):
        pooled = {m: masked_mean(batch.features[m], batch.mask(m)) for m in self.encoders}
        hidden = {m: torch.relu(self.encoders[m](x)) for m, x in pooled.items()}
        if self.training:
            self.evaluator_modes.append(self.evaluator.training)
        gate = torch.sigmoid(self.evaluator(pooled["text"]))
        fused = torch.cat([hidden[m] for m in self.encoders], -1) * gate
        out = {"pred": self.head(fused).squeeze(-1)}
        for m, h in hidden.items():
            out[f"pred_{m}"] = self.unimodal_heads[m](h).squeeze(-1)
        return out

    def training_step(self, batch):
        out = self(batch)
        terms = {"label": nn.functional.l1_loss(out["pred"], batch.label)}
        for head, target in self.heads.items():
            if target != "label":
                terms[target] = nn.functional.l1_loss(out[head], batch.unimodal[target])
        loss = sum(terms.values())
        return loss, {f"loss_{k}": float(v.detach()) for k, v in terms.items()}

    def configure_scheduler(self, optimizer, train, steps_per_epoch):
        return Schedule(torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.99),
                        interval="step")


@hookimpl
def register_datasets(register):
    register(ToyData)


@hookimpl
def register_extractors(register):
    register(LetterCounts)


@hookimpl
def register_fusions(register):
    register(SumFusion)


@hookimpl
def register_pretrainers(register):
    register(CentreInputs)
    register(WarmUpEvaluator)


@hookimpl
def register_metrics(register):
    register(MSE)


@hookimpl
def register_methods(register):
    register(Linear)
    register(MultiHead)


@hookimpl
def register_commands(cli):
    @cli.command("toy-hello")
    def toy_hello(name: str = "world") -> None:
        """Say hello (a plugin-provided command)."""
        print(f"hello {name} from a plugin")


class ListTracker:
    """A tracker that keeps what it receives in memory (``EVENTS``)."""

    name = "toy-list"
    meta = ComponentMeta(summary="records tracker calls in memory")
    EVENTS: list = []

    def __init__(self, **options):
        self.options = options

    def start(self, run):
        self.EVENTS.append(("start", dict(run)))

    def log_epoch(self, stage, row):
        self.EVENTS.append(("epoch", stage, dict(row)))

    def finish(self, result):
        self.EVENTS.append(("finish", dict(result)))

    def fail(self, error):
        self.EVENTS.append(("fail", str(error)))


@hookimpl
def register_trackers(register):
    register(ListTracker)
