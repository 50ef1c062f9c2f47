"""Several seeds in one pass: ``msabench run --seeds a,b,c --vectorize`` (``train.vectorize``).

The seeds of one run are trained as one stacked model: each seed's model is built exactly as
in a solo run (``seed_everything(seed)`` then the method's constructor, so initial weights are
bit-identical), then the parameters and buffers are stacked along a new first dimension and
one ``torch.func.vmap`` over ``functional_call`` runs every seed's forward on its own batch.
Each seed shuffles with its own generator (``torch.Generator().manual_seed(seed)``, as the solo
loop), so the stacked batch is K different batches. The summed per-seed losses give each seed
its own gradient; the method's optimiser (Adam, AdamW or SGD: elementwise updates) on the
stacked parameters equals one optimiser per seed. Gradient-norm clipping is computed per seed.
Validation, selection and early stopping are per seed: after every epoch each seed's
validation loss (one vmapped pass over a shared validation split when selecting on the loss,
else each seed's own module, whose parameters are views into the stacked tensors, through the
ordinary evaluation); a seed that stops keeps its best weights and leaves the stack (the others
are re-stacked with their optimiser state; the last one goes on alone, as in a solo run). Test
metrics come from each seed's own module. The loop itself is in :mod:`msabench.stacking`; this
module decides, sets the seeds up and writes. Result files are the solo ones, written by the
same writer, with the same config hash, plus ``"vectorized": {...}`` saying that the seed was
trained this way.

Equality with solo runs: exact in law, equal to float rounding in practice (batched matrix
products round differently), **with dropout off**. Under ``vmap(randomness="different")`` each
seed draws its own dropout masks, but not from the solo run's random stream, so with dropout on
a seed's result is a different draw of the same distribution. Tolerances are in
docs/vectorize.md and tested in tests/test_vectorize.py.

Methods opt in with ``vectorizable = True`` (and may refuse a config with
:meth:`~msabench.api.Method.vectorize_refusal`). Runs that cannot be vectorised (pretraining
stages, schedulers, a custom ``training_step``, frozen parts, checkpoints, trackers, ...) print
why and train seed by seed as before. Inside the stacked forward :func:`in_stacked_forward` is
True: code with data-dependent Python control flow (``pack_padded_sequence``, ``int(t.max())``)
takes a vmap-friendly path there.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from .stacking import _Seed

_STACKED: contextvars.ContextVar[bool] = contextvars.ContextVar("msabench_stacked",
                                                                 default=False)


def in_stacked_forward() -> bool:
    """True inside the vmapped forward of a vectorised run (one call traces every seed)."""
    return _STACKED.get()


@contextlib.contextmanager
def stacked_forward() -> Iterator[None]:
    token = _STACKED.set(True)
    try:
        yield
    finally:
        _STACKED.reset(token)


def refusal(plan: Any, spec: Any, seeds: list[int]) -> str | None:
    """Why the seeds of this run cannot be vectorised (None: they can); config-level checks
    made before any model is built."""
    config = plan.config
    if len(seeds) < 2:
        return None if not seeds else "only one seed is left to train"
    if not getattr(plan.method_cls, "vectorizable", False):
        return f"method {spec.method} does not declare vectorizable = True"
    reason = plan.method_cls.vectorize_refusal(config)
    if reason:
        return reason
    if config["pretrain"].get("stages"):
        return f"pretraining stages ({', '.join(config['pretrain']['stages'])}) train per seed"
    if plan.method_cls.requires_texts:
        return f"method {spec.method} reads raw transcripts, which cannot be stacked"
    if config["train"].get("bucket_by_length"):
        return ("train.bucket_by_length batches each seed's samples by length, which cannot "
                "be stacked")
    from .precision import resolve_precision
    from .training import pick_device

    wanted = config["train"].get("precision", "auto")
    if resolve_precision(pick_device(config["train"].get("device", "auto")), wanted) != "fp32":
        return f"the stacked loop runs in fp32 only (train.precision = {wanted!r} is bf16 here)"
    if config["train"].get("save_checkpoint"):  # the flag or the config key (plan applied it)
        return ("checkpoints (train.save_checkpoint / --save-checkpoint) are written by the "
                "per-seed loop")
    from .tracking import tracker_names

    if tracker_names(spec.trackers):  # --tracker, a grid's trackers or $MSABENCH_TRACKERS
        return "trackers follow the per-seed loop"
    return None


def run_vectorized(plan: Any, spec: Any, data: Any, todo: list[int], registry: Any,
                   progress: Any, outcomes: list[Any], seeds_task: Any) -> list[int]:
    """Train the seeds ``todo`` as one stacked model and write their result files (appending
    to ``outcomes``); returns the seeds left for the runner's per-seed loop: all of them when
    the run cannot be vectorised (the reason is printed), else none."""
    from .results import claim, read_result, release, result_path, write_result
    from .runner import SeedOutcome, check_variant_folder, run_dir
    from .stacking import NotVectorizable

    reason = refusal(plan, spec, todo)
    if reason:
        progress.print(f"[yellow]note:[/] --vectorize: {reason}; training seed by seed")
        return todo
    paths = {s: result_path(spec.out, spec.dataset, plan.setting, spec.method, plan.variant, s)
             for s in todo}
    claimed: list[int] = []
    try:
        for seed in todo:
            if not claim(paths[seed]):
                progress.print(f"seed {seed}: another run is training it now "
                               f"({paths[seed]}.lock); skipped here")
                continue
            claimed.append(seed)
            if paths[seed].exists() and not spec.force:  # finished by a concurrent run
                outcomes.append(SeedOutcome(seed, paths[seed], "skipped",
                                            read_result(paths[seed]).test))
                claimed.pop()
                release(paths[seed])
        if not claimed:
            return []
        check_variant_folder(run_dir(spec.out, spec.dataset, plan.setting, spec.method,
                                     plan.variant), plan.hash, set(spec.seeds))
        try:
            results, failure = train_seeds(plan, spec, data, claimed, registry, progress)
        except NotVectorizable as exc:
            progress.print(f"[yellow]note:[/] --vectorize: {exc}; training seed by seed")
            return claimed
        for seed in claimed:
            if seed in results:
                write_result(paths[seed], results[seed])
                outcomes.append(SeedOutcome(seed, paths[seed], "ran", results[seed].test))
                seeds_task.advance(1, status=f"seed {seed} written")
        if failure is not None:
            raise failure
        return []
    finally:
        for seed in claimed:
            release(paths[seed])


def _setup_seed(plan: Any, spec: Any, data: Any, seed: int, registry: Any, progress: Any,
                path: Path) -> _Seed:
    """What the runner's ``_run_seed`` does before training, for one seed."""
    import torch

    from .runner import build_model, labelled_train, seed_context
    from .stacking import _Seed

    config = plan.config
    data, labels_record, context = seed_context(plan, spec, data, seed, registry, progress)
    model = build_model(plan, data, context, registry, seed)
    train_split, labelled = labelled_train(data, config)
    return _Seed(seed, path, data, labels_record, model, context, train_split,
                 labelled, torch.Generator().manual_seed(seed))


def _check_stackable(seeds: list[_Seed]) -> None:
    from .api import Method
    from .stacking import NotVectorizable

    model = seeds[0].model
    if type(model).training_step is not Method.training_step:
        raise NotVectorizable(f"method {model.name} has its own training_step")
    if model.frozen():
        raise NotVectorizable(f"method {model.name} has frozen parts")
    sizes = {len(s.train) for s in seeds}
    if len(sizes) != 1:
        raise NotVectorizable(f"the seeds' labelled training sets differ in size ({sizes})")


def train_seeds(plan: Any, spec: Any, data: Any, seeds: list[int], registry: Any,
                progress: Any) -> tuple[dict[int, Any], BaseException | None]:
    """Build every seed as the solo run does, train them stacked, evaluate each on its own:
    ``({seed: RunResult}, the first seed's divergence error or None)``. Raises
    :class:`NotVectorizable` before training when the models cannot be stacked."""
    from .api import Recipe
    from .errors import ConfigError
    from .results import result_path
    from .stacking import NotVectorizable, fit_stacked
    from .training import selection_direction

    started = time.perf_counter()
    config = plan.config
    states = [_setup_seed(plan, spec, data, seed, registry, progress,
                          result_path(spec.out, spec.dataset, plan.setting, spec.method,
                                      plan.variant, seed)) for seed in seeds]
    _check_stackable(states)
    first = states[0]
    heads = first.model.check_heads()
    cfg = config["train"]
    higher = selection_direction(str(cfg["select"]), first.context.metric_classes, heads)
    recipe = Recipe.from_train(cfg, higher_is_better=higher)
    if recipe.epochs < 1:
        raise ConfigError(f"train.epochs ({recipe.epochs}) must be >= 1")
    probe = first.model.configure_optimizer(cfg)
    if first.model.configure_scheduler(probe, cfg,
                                       first.train.num_batches(recipe.batch_size)) is not None:
        raise NotVectorizable(f"method {spec.method} declares a learning-rate scheduler "
                              "(stepped per seed)")
    del probe
    progress.print(f"--vectorize: seeds {', '.join(map(str, seeds))} train as one stacked "
                   "model")
    fit_stacked(states, recipe, first.context.device, progress)
    wall = time.perf_counter() - started
    results: dict[int, Any] = {}
    failure = next((s.error for s in states if s.error is not None), None)
    for s in states:
        if s.error is not None:
            progress.print(f"[red]seed {s.seed}:[/] {s.error}")
            continue
        results[s.seed] = _result(plan, spec, s, wall, [x.seed for x in states])
    return results, failure


def _result(plan: Any, spec: Any, s: _Seed, wall: float, together: list[int]) -> Any:
    """The seed's RunResult, written as the runner writes it (runner.seed_result)."""
    from .api import FitResult
    from .runner import seed_result

    fitted = FitResult(s.best_epoch, s.epochs_run, s.stopped_early, s.best_score, s.history)
    test = s.context.evaluate(s.model, s.data["test"])
    valid = s.context.evaluate(s.model, s.data["valid"])
    return seed_result(
        plan, spec, s.data, s.model, s.context, fitted, test, valid, seed=s.seed,
        labelled=s.labelled, labels_record=s.labels_record, pretraining={},
        wall_time_s=wall / len(together), timing="vectorised",
        extra={"vectorized": {"seeds": together, "wall_time_s": round(wall, 3),
                              "note": "trained with the other seeds of this run as one "
                                      "stacked model (msabench.vectorized); wall_time_s is "
                                      "this seed's share of the pass"}})
