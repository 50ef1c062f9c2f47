"""A test plugin implementing every hook once, with small but real components."""

from __future__ import annotations

import torch
from torch import nn

from msabench import hookimpl
from msabench.api import (ComponentMeta, Dataset, DatasetMeta, Extractor, Features, Fusion,
                          LoadedDataset, Method, Metric, Pretrainer, SplitData, masked_mean)


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
            labelled = torch.ones(n, dtype=torch.bool)
            if split == "train" and self.options["hide_fraction"]:
                labelled[: int(n * self.options["hide_fraction"])] = False
            splits[split] = SplitData(
                ids=[f"{split}_{i}" for i in range(n)],
                features={"text": text, "audio": audio},
                lengths={"text": lengths, "audio": torch.full((n,), 3)},
                labels=label.float(), labelled=labelled,
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

    def extract(self, inputs):
        out = torch.zeros(len(inputs), 1, 26)
        for i, text in enumerate(inputs):
            text = text.lower() if self.config["lowercase"] else text
            for ch in text:
                if "a" <= ch <= "z":
                    out[i, 0, ord(ch) - 97] += 1
            out[i] /= max(1.0, float(out[i].sum()))
        return Features(out, torch.ones(len(inputs), dtype=torch.long))


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


@hookimpl
def register_metrics(register):
    register(MSE)


@hookimpl
def register_methods(register):
    register(Linear)


@hookimpl
def register_commands(cli):
    @cli.command("toy-hello")
    def toy_hello(name: str = "world") -> None:
        """Say hello (a plugin-provided command)."""
        print(f"hello {name} from a plugin")
