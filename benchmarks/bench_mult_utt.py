"""MulT's training step on utterance-level inputs (one step per modality), by code path.

    python benchmarks/bench_mult_utt.py [--batch 128] [--dim 50] [--steps 20] [--rounds 5]
                                        [--threads 1]

On utterance features (``mosi`` ``utt-bclstm``: one 50-d vector per modality) a MulT step is a
few thousand tiny torch calls, so per-call costs decide its speed. This times one training
step (zero_grad, forward, L1 loss, backward, Adam step) of the ``mult`` method with its MOSI
defaults on random inputs of that shape, in one process, under three settings of the two
knobs that matter:

- ``blocked, single-tensor Adam``: ``fusions._transformer.SMALL_PAIRS = 0`` (every CPU
  attention through the blocked kernel) and ``foreach=False`` (torch's CPU default);
- ``fast path``: ``SMALL_PAIRS`` at its default (attention over <= 16 pairs per head is one
  plain SDPA call), ``foreach=False``;
- ``fast path + foreach Adam``: both defaults (what ``msabench run`` does).

The settings run interleaved, ``--rounds`` times ``--steps`` timed steps each after 3 warm-up
steps; the table gives the median milliseconds per step, the range over rounds, and the
speed-up against the first setting. A second table times the optimiser step alone (after a
backward pass, ``--steps`` steps per round): single-tensor, ``foreach`` (what the built-in
methods use: the same bits) and ``fused`` Adam (other rounding; for comparison).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def utt_info(dim: int):
    """The DataInfo of ``mosi`` ``utt-bclstm``-shaped inputs: one ``dim``-d step per modality."""
    from msabench.api import DataInfo, DatasetMeta

    dims = {"text": dim, "audio": dim, "vision": dim}
    meta = DatasetMeta(name="mosi", title="utterance-shaped (benchmark)", language="en",
                       label_range=(-3.0, 3.0), convention="mosi")
    return DataInfo(meta=meta, setting="utt", modalities=tuple(dims), feature_dims=dims,
                    max_lengths={m: 1 for m in dims}, aligned=True, has_unimodal_labels=False,
                    has_texts=False)


def utt_batch(batch: int, dim: int):
    """A seeded random Batch of :func:`utt_info`'s shapes."""
    import torch

    from msabench.api import Batch

    g = torch.Generator().manual_seed(1)
    mods = ("text", "audio", "vision")
    return Batch(ids=[str(i) for i in range(batch)],
                 features={m: torch.randn(batch, 1, dim, generator=g) for m in mods},
                 lengths={m: torch.ones(batch, dtype=torch.long) for m in mods},
                 label=torch.rand(batch, generator=g) * 6 - 3,
                 labelled=torch.ones(batch, dtype=torch.bool))


def build_method(method: str, info):
    """``method`` from the registry (a plugin override is benchmarked too) with its MOSI
    defaults on ``info``, in training mode, seeded weights, and its own optimiser."""
    import torch

    from msabench import config as cfg
    from msabench.api import Components
    from msabench.plugins import get_registry

    registry = get_registry()
    cls = registry.load("method", method)
    config = cfg.resolve(cls, "mosi", {})
    torch.manual_seed(0)
    model = cls(info, config["model"], Components(registry)).train()
    return model, model.configure_optimizer(config["train"])


def train_step(model, optimizer, batch) -> None:
    """One training step as the loop takes it: zero_grad, forward, loss, backward, step."""
    optimizer.zero_grad(set_to_none=True)
    model.training_step(batch)[0].backward()
    optimizer.step()


def build(batch: int, dim: int, method: str = "mult"):
    """(model, optimiser, batch) on utterance-shaped inputs."""
    model, optimizer = build_method(method, utt_info(dim))
    return model, optimizer, utt_batch(batch, dim)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=128, help="MulT's MOSI recipe batch")
    parser.add_argument("--dim", type=int, default=50, help="feature size per modality")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch
    from tabulate import tabulate

    import msabench_builtins.fusions._transformer as tr

    torch.set_num_threads(args.threads)
    model, optimizer, batch = build(args.batch, args.dim)
    default_pairs = tr.SMALL_PAIRS

    def step() -> None:
        train_step(model, optimizer, batch)

    settings = [("blocked, single-tensor Adam", 0, False),
                ("fast path", default_pairs, False),
                ("fast path + foreach Adam (default)", default_pairs, True)]
    times: dict[str, list[float]] = {name: [] for name, _, _ in settings}
    try:
        for _ in range(args.rounds):
            for name, pairs, foreach in settings:
                tr.SMALL_PAIRS = pairs
                for group in optimizer.param_groups:
                    group["foreach"] = foreach
                for _ in range(3):
                    step()
                start = time.perf_counter()
                for _ in range(args.steps):
                    step()
                times[name].append((time.perf_counter() - start) / args.steps * 1000)
    finally:
        tr.SMALL_PAIRS = default_pairs
    updates: dict[str, list[float]] = {"single-tensor": [], "foreach (default)": [],
                                       "fused (not used)": []}
    kwargs = {"single-tensor": {"foreach": False}, "foreach (default)": {"foreach": True},
              "fused (not used)": {"fused": True}}
    lr = optimizer.param_groups[0]["lr"]
    for _ in range(args.rounds):
        for name in updates:
            opt = torch.optim.Adam(model.parameters(), lr=lr, **kwargs[name])
            optimizer.zero_grad(set_to_none=True)
            model.training_step(batch)[0].backward()
            opt.step()   # warm-up: creates the state
            start = time.perf_counter()
            for _ in range(args.steps):
                opt.step()
            updates[name].append((time.perf_counter() - start) / args.steps * 1000)
    base = statistics.median(times[settings[0][0]])
    rows = [[name, f"{statistics.median(t):.0f}", f"{min(t):.0f}-{max(t):.0f}",
             f"{base / statistics.median(t):.2f}x"] for name, t in times.items()]
    print(f"MulT training step, utterance-shaped inputs (3 x 1 x {args.dim}), batch "
          f"{args.batch}, {args.threads} thread(s), {args.rounds} interleaved rounds of "
          f"{args.steps} steps\n")
    print(tabulate(rows, headers=["code path", "ms/step (median)", "range over rounds",
                                  "speed-up"], tablefmt="github"))
    n_tensors = sum(1 for p in model.parameters() if p.requires_grad)
    print(f"\nAdam step alone ({n_tensors} parameter tensors)\n")
    print(tabulate([[name, f"{statistics.median(t):.1f}", f"{min(t):.1f}-{max(t):.1f}"]
                    for name, t in updates.items()],
                   headers=["update", "ms/step (median)", "range over rounds"],
                   tablefmt="github"))


if __name__ == "__main__":
    main()
