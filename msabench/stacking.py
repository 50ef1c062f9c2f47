"""The stacked training loop of a vectorised run (:mod:`msabench.vectorized`).

:class:`Stack` holds the active seeds' parameters and buffers stacked along a new first
dimension, each seed's own module keeping views into them; :func:`fit_stacked` is
:func:`msabench.training.fit` for several seeds at once (one ``torch.func.vmap`` over
``functional_call`` per step, per-seed losses, clipping, validation, selection and early
stopping; the stack shrinks as seeds stop and the last seed goes on alone).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

#: optimisers whose update is elementwise, so one on stacked tensors equals one per seed
ELEMENTWISE_OPTIMIZERS = ("Adam", "AdamW", "SGD")


@dataclass
class _Seed:
    """One seed of the stacked pass: its own data, model, context and selection state."""

    seed: int
    path: Path
    data: Any
    labels_record: dict[str, Any]
    model: Any
    context: Any
    train: Any
    labelled: int
    generator: Any
    history: list[dict[str, Any]] = field(default_factory=list)
    best_state: dict[str, Any] | None = None
    best_score: float = math.nan
    best_epoch: int = 0
    epochs_run: int = 0
    stopped_early: bool = False
    error: BaseException | None = None


class NotVectorizable(Exception):
    """Raised while setting up the stacked pass: the seeds fall back to the per-seed loop."""


class Stack:
    """The stacked parameters and buffers of the active seeds; each seed's own module keeps
    views into them, so the ordinary evaluation of a seed sees its current weights."""

    def __init__(self, seeds: list[_Seed]) -> None:
        import torch

        self.seeds = seeds
        base = seeds[0].model
        self.names = [n for n, _ in base.named_parameters()]
        self.buffer_names = [n for n, _ in base.named_buffers()]
        per = [dict(s.model.named_parameters()) for s in seeds]
        perb = [dict(s.model.named_buffers()) for s in seeds]
        self.params = {n: torch.stack([p[n].detach() for p in per]).requires_grad_(
            base.get_parameter(n).requires_grad) for n in self.names}
        self.buffers = {n: torch.stack([b[n] for b in perb]) for n in self.buffer_names}
        self._point()

    def _point(self) -> None:
        for k, s in enumerate(self.seeds):
            for n in self.names:
                s.model.get_parameter(n).data = self.params[n].detach()[k]
            for n in self.buffer_names:
                s.model.get_buffer(n).data = self.buffers[n][k]

    def unstack_one(self, optimizer: Any) -> Any:
        """The one seed left gets its own tensors and its own optimiser (the method's, with
        the stacked optimiser's state of that seed): it trains as in a solo run from here."""
        [s] = self.seeds
        model = s.model
        for n in self.names:
            model.get_parameter(n).data = self.params[n].detach()[0].clone()
        for n in self.buffer_names:
            model.get_buffer(n).data = self.buffers[n][0].clone()
        solo = model.configure_optimizer(s.context.train)
        for n in self.names:
            state = optimizer.state.get(self.params[n])
            if state:
                shape = self.params[n].shape
                solo.state[model.get_parameter(n)] = {
                    k: (v[0].clone() if hasattr(v, "shape") and v.dim() and v.shape == shape
                        else v) for k, v in state.items()}
        return solo

    def keep(self, rows: list[int]) -> dict[Any, Any]:
        """Keep only ``rows`` (positions of the active seeds); returns old -> new tensors."""
        import torch

        index = torch.tensor(rows, device=next(iter(self.params.values())).device)
        moved = {}
        for n in self.names:
            old = self.params[n]
            new = old.detach().index_select(0, index).clone().requires_grad_(old.requires_grad)
            self.params[n], moved[old] = new, new
        for n in self.buffer_names:
            self.buffers[n] = self.buffers[n].index_select(0, index).clone()
        self.seeds = [self.seeds[r] for r in rows]
        self._point()
        return moved


def _stacked_optimizer(model: Any, stack: Stack, train: Any) -> Any:
    """The method's optimiser, rebuilt with the same groups over the stacked tensors."""
    single = model.configure_optimizer(train)
    kind = type(single).__name__
    if kind not in ELEMENTWISE_OPTIMIZERS or type(single).__module__.split(".")[0] != "torch":
        raise NotVectorizable(f"method {model.name} uses the optimiser {kind}; only torch's "
                              f"{', '.join(ELEMENTWISE_OPTIMIZERS)} (elementwise) are stacked")
    name_of = {id(p): n for n, p in model.named_parameters()}
    groups = [{**{k: v for k, v in g.items() if k != "params"},
               "params": [stack.params[name_of[id(p)]] for p in g["params"]]}
              for g in single.param_groups]
    return type(single)(groups, **single.defaults)


def _restack_optimizer(optimizer: Any, moved: dict[Any, Any], rows: list[int]) -> Any:
    import torch

    groups = [{**{k: v for k, v in g.items() if k != "params"},
               "params": [moved[p] for p in g["params"]]} for g in optimizer.param_groups]
    fresh = type(optimizer)(groups, **optimizer.defaults)
    index = None
    for old, new in moved.items():
        state = optimizer.state.get(old)
        if not state:
            continue
        if index is None:
            index = torch.tensor(rows, device=old.device)
        fresh.state[new] = {k: (v.index_select(0, index).clone()
                                if torch.is_tensor(v) and v.dim() and v.shape == old.shape
                                else v) for k, v in state.items()}
    return fresh


def batch_tensors(batch: Any) -> dict[str, Any]:
    """The tensors of one batch as the pytree the stacked forward reads."""
    out = {"features": dict(batch.features), "lengths": dict(batch.lengths),
           "label": batch.label, "labelled": batch.labelled, "unimodal": dict(batch.unimodal),
           "extras": dict(batch.extras)}
    if batch.index is not None:
        out["index"] = batch.index
    return out


def stack_batches(batches: list[Any]) -> dict[str, Any]:
    """The tensors of K same-size batches stacked along a new first dimension (a pytree)."""
    import torch

    first = batches[0]
    out: dict[str, Any] = {
        "features": {m: torch.stack([b.features[m] for b in batches]) for m in first.features},
        "lengths": {m: torch.stack([b.lengths[m] for b in batches]) for m in first.lengths},
        "label": torch.stack([b.label for b in batches]),
        "labelled": torch.stack([b.labelled for b in batches]),
        "unimodal": {m: torch.stack([b.unimodal[m] for b in batches]) for m in first.unimodal},
        "extras": {k: torch.stack([b.extras[k] for b in batches]) for k in first.extras},
    }
    if first.index is not None:
        out["index"] = torch.stack([b.index for b in batches])
    return out


def seed_batches(trains: list[Any], batch_size: int, generators: list[Any]) -> Iterator[list]:
    """One epoch of each seed's own shuffled batches, step by step: exactly the batches the
    solo loop draws (:func:`msabench.training.epoch_order` without bucketing)."""
    from .training import epoch_order

    orders = [epoch_order(t, batch_size, g) for t, g in zip(trains, generators)]
    for indices in zip(*orders, strict=True):
        yield [t.batch(i) for t, i in zip(trains, indices)]


def _clip_per_seed(params: list[Any], max_norm: float) -> None:
    """``clip_grad_norm_`` of each seed's own gradients (rows of the stacked gradients)."""
    import torch

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    norms = torch.stack([g.reshape(g.shape[0], -1).norm(2, dim=1) for g in grads], dim=1)
    total = norms.norm(2, dim=1)  # (K,)
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.reshape((-1,) + (1,) * (g.dim() - 1)))


def _stacked_loss(stack: Stack, forward: Any, models: list[Any], split: Any,
                  batch_size: int, device: Any) -> list[float]:
    """Each stacked seed's loss on ``split`` as :func:`msabench.training.evaluate` computes
    it (the mean of ``model.loss`` over the batches, weighted by batch size), in eval mode, in
    one vmapped pass per batch (the batch is shared: ``in_dims`` None)."""
    import torch
    from torch.func import vmap

    from .vectorized import stacked_forward

    totals = [0.0] * len(models)
    count = 0
    with torch.no_grad(), stacked_forward():
        for batch in split.batches(batch_size):
            batch = batch.to(device)
            ids = list(batch.ids)
            outputs = vmap(lambda p, b, t: forward(p, b, t, ids), in_dims=(0, 0, None),
                           randomness="different")(stack.params, stack.buffers,
                                                   batch_tensors(batch))
            for k, model in enumerate(models):
                loss = model.loss({h: v[k] for h, v in outputs.items()}, batch)
                totals[k] += float(loss) * len(batch)
            count += len(batch)
    return [t / max(count, 1) for t in totals]


def fit_stacked(seeds: list[_Seed], recipe: Any, device: Any, progress: Any,
                name: str = "epochs") -> None:
    """The shared loop of :func:`msabench.training.fit` for several seeds at once; fills each
    seed's history, best state and stopping epoch (``error`` for a seed that diverged)."""
    import torch
    from torch.func import functional_call, vmap

    from .api import Batch
    from .errors import TrainingDiverged
    from .training import _finite_or_raise
    from .vectorized import stacked_forward

    stack = Stack(seeds)
    base = seeds[0].model  # the module functional_call runs; every seed's weights are passed
    optimizer = _stacked_optimizer(base, stack, seeds[0].context.train)
    solo = None  # the last seed's own optimiser once it trains alone
    select = recipe.select
    n_train = len(seeds[0].train)
    task = progress.task(f"  seeds {', '.join(str(s.seed) for s in seeds)} {name} "
                         "(vectorised)", int(recipe.epochs))

    def forward(params: dict, buffers: dict, tensors: dict, ids: list[str]) -> dict:
        batch = Batch(ids=ids, features=tensors["features"], lengths=tensors["lengths"],
                      label=tensors["label"], labelled=tensors["labelled"],
                      unimodal=tensors["unimodal"], extras=tensors["extras"],
                      index=tensors.get("index"))
        return dict(functional_call(base, (params, buffers), (batch,)))

    for epoch in range(1, recipe.epochs + 1):
        active = stack.seeds
        base.train()
        sums: list[dict[str, float]] = [{} for _ in active]
        seen = 0
        trainable = [p for p in stack.params.values() if p.requires_grad]
        if solo is not None:  # one seed left: its own module, as the solo loop trains it
            active[0].model.train()
            trainable = [p for p in active[0].model.parameters() if p.requires_grad]
        for batches in seed_batches([s.train for s in active], recipe.batch_size,
                                    [s.generator for s in active]):
            if len(batches[0]) < 2 and n_train > 1:
                continue  # as the solo loop: a lone leftover sample breaks BatchNorm
            batches = [b.to(device) for b in batches]
            if solo is not None:
                s, batch = active[0], batches[0]
                solo.zero_grad(set_to_none=True)
                loss, _ = s.model.training_step(batch)
                try:
                    _finite_or_raise(loss, f"seed {s.seed}: {name}", epoch)
                except TrainingDiverged as exc:
                    s.error = exc
                    break
                loss.backward()
                if recipe.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(trainable, recipe.grad_clip)
                solo.step()
                seen += len(batch)
                sums[0]["loss"] = sums[0].get("loss", 0.0) + float(loss.detach()) * len(batch)
                continue
            tensors = stack_batches(batches)
            optimizer.zero_grad(set_to_none=True)
            ids = list(batches[0].ids)
            with stacked_forward():
                outputs = vmap(lambda p, b, t: forward(p, b, t, ids), in_dims=(0, 0, 0),
                               randomness="different")(stack.params, stack.buffers, tensors)
            losses = []
            for k, s in enumerate(active):
                loss = s.model.loss({h: v[k] for h, v in outputs.items()}, batches[k])
                if s.error is None:
                    try:
                        _finite_or_raise(loss, f"seed {s.seed}: {name}", epoch)
                    except TrainingDiverged as exc:
                        s.error = exc
                losses.append(loss if s.error is None else loss.detach() * 0.0)
            torch.stack(losses).sum().backward()
            if recipe.grad_clip > 0:
                _clip_per_seed(trainable, recipe.grad_clip)
            optimizer.step()
            n = len(batches[0])
            seen += n
            for k, loss in enumerate(losses):
                sums[k]["loss"] = sums[k].get("loss", 0.0) + float(loss.detach()) * n
        valid_losses = None
        valid = active[0].data["valid"]
        if solo is None and select == "loss" and all(s.data["valid"] is valid for s in active):
            # one stacked pass over the shared validation split (the loss is all that
            # selection needs); otherwise each seed's ordinary evaluation
            base.eval()
            valid_losses = _stacked_loss(stack, forward, [s.model for s in active], valid,
                                         int(active[0].context.train.get("eval_batch_size",
                                                                         256)), device)
        keep: list[int] = []
        for k, s in enumerate(active):
            if s.error is not None:
                continue
            row: dict[str, Any] = {"epoch": epoch}
            row.update({f"train_{key}": v / max(seen, 1) for key, v in sums[k].items()})
            if valid_losses is not None:
                score = {"loss": valid_losses[k]}
            else:
                val = s.context.evaluate(s.model, s.data["valid"])
                score = {"loss": val.loss}
                if select != "loss":
                    value = val.score(select)
                    score[select] = math.nan if value is None else value
            row.update({f"valid_{key}": v for key, v in score.items()})
            value = row.get(f"valid_{select}")
            if value is None or (isinstance(value, float) and math.isnan(value)):
                from .errors import ConfigError

                raise ConfigError(f"{name}: validation {select} is undefined at epoch "
                                  f"{epoch}; choose another train.select")
            better = value > s.best_score if recipe.higher_is_better else value < s.best_score
            if s.best_state is None or better:
                s.best_score, s.best_epoch = float(value), epoch
                s.best_state = {key: v.detach().clone()
                                for key, v in s.model.state_dict().items()}
            row.update({"best_epoch": s.best_epoch, "best": s.best_score})
            s.history.append(row)
            s.epochs_run = epoch
            if recipe.patience > 0 and epoch - s.best_epoch >= recipe.patience:
                s.stopped_early = epoch < recipe.epochs
                continue
            keep.append(k)
        task.advance(1, status=f"{len(keep)} of {len(seeds)} seed(s) training")
        if not keep:
            break
        if len(keep) < len(active) and solo is None:
            moved = stack.keep(keep)
            optimizer = _restack_optimizer(optimizer, moved, keep)
            if len(keep) == 1:
                # vmap over one seed only adds overhead: the last seed goes on alone
                solo = stack.unstack_one(optimizer)
    for s in seeds:
        if s.best_state is not None:
            s.model.load_state_dict(s.best_state)
    done = [s for s in seeds if s.error is None]
    task.done(", ".join(f"seed {s.seed} best {select} {s.best_score:.4f} @ {s.best_epoch}"
                        for s in done))
