"""One MCE epoch and one cormult epoch vs a plain MulT epoch on MOSEI shapes (issue 11 target).

    python benchmarks/bench_cormult.py [--scale 1.0] [--batches 3] [--threads 2]
                                       [--samples 16327]

Inputs are random tensors in the MOSEI shapes of the issue: text 50 x 768, audio 500 x 74,
vision 500 x 35 (``--scale`` multiplies the three sequence lengths, e.g. 0.2 for 10/100/100),
with random valid lengths (at least a fifth of each maximum). Each measurement runs in a fresh
subprocess (so ``ru_maxrss`` is that measurement's peak resident memory) and times
``--batches`` optimiser steps after one warm-up step:

- ``mce``: one contrastive training step of the MCE (batch 24 as the authors' code: negatives
  by strategy D, positive and negative forward, triplet loss, backward, Adam);
- ``mult``: one step of the cormult recipe without the evaluator (batch 48,
  ``model.correlation = none``: plain MulT, d 30, 2 levels, 2 heads, MSE, clip 0.8);
- ``cormult``: the same step with a trained-shape MCE frozen in eval mode, correlations from
  the per-sample cache (every epoch after the first);
- ``cormult-nocache``: the same, the MCE run in every step (what epoch 1 costs, and every
  epoch with ``model.cache_correlations = false``).

An epoch is extrapolated as (seconds per step) x ceil(``--samples`` / batch), 16327 = the MOSEI
training fold. The target: a cormult epoch at most 1.3 x a plain MulT epoch.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {"text": (50, 768), "audio": (500, 74), "vision": (500, 35)}
KINDS = ("mce", "mult", "cormult", "cormult-nocache")


def _data(batch: int, scale: float, seed: int = 0):
    import torch

    from msabench.api import SplitData

    gen = torch.Generator().manual_seed(seed)
    feats, lens = {}, {}
    for m, (t, d) in SHAPES.items():
        t = max(1, int(round(t * scale)))
        ln = torch.randint(max(1, t // 5), t + 1, (batch,), generator=gen)
        x = torch.randn(batch, t, d, generator=gen)
        x[torch.arange(t).unsqueeze(0) >= ln.unsqueeze(1)] = 0.0
        feats[m], lens[m] = x, ln
    return SplitData(ids=[f"b{i}" for i in range(batch)], features=feats, lengths=lens,
                     labels=torch.randn(batch).clamp(-3, 3))


def measure(kind: str, scale: float, batches: int) -> dict:
    import torch

    from msabench.api import Components, DataInfo
    from msabench.api.dataset import DatasetMeta
    from msabench.plugins import get_registry
    from msabench_builtins.methods.cormult import CorMulT
    from msabench_builtins.pretrainers.mce import MCEPretrainer
    from msabench_builtins.pretrainers.mce_model import (MCE, draw_strategies, make_negatives,
                                                         mce_loss)

    torch.manual_seed(0)
    batch = 24 if kind == "mce" else 48
    split = _data(batch, scale)
    dims = {m: d for m, (_, d) in SHAPES.items()}
    cfg = MCEPretrainer.defaults
    mce = MCE(dims, **{k: cfg[k] for k in ("d_model", "num_layers", "num_heads",
                                           "dim_feedforward", "dropout", "out_dim")})
    b = split.batch(torch.arange(batch))
    if kind == "mce":
        opt = torch.optim.Adam(mce.parameters(), lr=2e-4)
        gen = torch.Generator().manual_seed(1)

        def step() -> None:
            mce.train()
            codes = draw_strategies("D", batch, gen)
            nf, nl, _ = make_negatives(b.features, b.lengths, codes, gen, 0.1)
            loss, _ = mce_loss(mce.pooled(b.features, b.lengths), mce.pooled(nf, nl), 0.2)
            opt.zero_grad()
            loss.backward()
            opt.step()
    else:
        meta = DatasetMeta(name="bench", title="bench", language="en",
                           label_range=(-3.0, 3.0), convention="mosi", synthetic=True)
        info = DataInfo(meta=meta, setting="bench", modalities=tuple(SHAPES),
                        feature_dims=dims, max_lengths={m: x.shape[1] for m, x in
                                                        split.features.items()},
                        aligned=False, has_unimodal_labels=False, has_texts=False)
        model_cfg = dict(CorMulT.defaults["model"])
        if kind == "mult":
            model_cfg["correlation"] = "none"
        model_cfg["cache_correlations"] = kind == "cormult"
        model = CorMulT(info, model_cfg, Components(get_registry()))
        if kind != "mult":
            mce.eval()
            for p in mce.parameters():
                p.requires_grad_(False)
            model.evaluator = mce
        opt = model.configure_optimizer(CorMulT.defaults["train"])

        def step() -> None:
            model.train()
            model.evaluator is not None and model.evaluator.eval()
            loss = model.loss(model(b), b)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.trainable_parameters(), 0.8)
            opt.step()

    step()  # warm-up (and, for "cormult", fills the correlation cache)
    start = time.perf_counter()
    for _ in range(batches):
        step()
    per_step = (time.perf_counter() - start) / batches
    return {"kind": kind, "batch": batch, "seconds_per_step": per_step,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "lengths": {m: int(x.shape[1]) for m, x in split.features.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--samples", type=int, default=16327)
    ap.add_argument("--only", choices=KINDS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.only:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(measure(args.only, args.scale, args.batches)))
        return
    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    for kind in KINDS:
        cmd = [sys.executable, __file__, "--only", kind, "--scale", str(args.scale),
               "--batches", str(args.batches), "--threads", str(args.threads)]
        out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"{kind} failed:\n{out.stderr[-2000:]}")
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row["epoch_s"] = row["seconds_per_step"] * math.ceil(args.samples / row["batch"])
        rows.append(row)
    mult = next(r for r in rows if r["kind"] == "mult")["epoch_s"]
    lengths = rows[0]["lengths"]
    print(f"MOSEI shapes x{args.scale}: text {lengths['text']}x768, audio {lengths['audio']}x74, "
          f"vision {lengths['vision']}x35; {args.threads} thread(s); {args.batches} timed "
          f"steps; epoch = {args.samples} samples")
    print("| measurement | batch | s/step | epoch (s) | vs mult | peak RSS (MiB) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['kind']} | {r['batch']} | {r['seconds_per_step']:.3f} | {r['epoch_s']:.0f} "
              f"| {r['epoch_s'] / mult:.2f}x | {r['peak_rss_mib']:.0f} |")


if __name__ == "__main__":
    main()
