"""Training-step time with and without :mod:`msabench.allocator` (glibc keeps freed memory).

    python benchmarks/bench_allocator.py [--methods tfn:32,mult:128,sf:32] [--steps 40]
                                         [--rounds 3] [--threads 1] [--warmup 3]
                                         [--shapes utt|unaligned]

For each ``method:batch`` this builds the method through the registry with its MOSI defaults
(seeded weights; ``bench_mult_utt.build_method``) on random inputs of MOSI's shapes:
``--shapes utt`` (default) is ``utt-bclstm``, one 50-d vector per modality
(``bench_mult_utt.utt_batch``); ``--shapes unaligned`` is the unaligned MOSI setting, text
50 x 768, audio 375 x 5, vision 500 x 20, zero-padded with per-sample lengths
(``bench_reference.make_batches``; slow: use ``--steps 1 --warmup 1``). It times ``--steps`` training
steps (zero_grad, forward, loss, backward, optimiser step) after ``--warmup`` untimed steps,
in a fresh child process per measurement: once with the allocator tuning
(what ``msabench run`` does) and once with ``MSABENCH_MALLOC_TUNING=0`` (glibc's defaults),
alternating, ``--rounds`` times. The table gives medians over rounds of the wall milliseconds
per step, the kernel (system) CPU milliseconds per step and the minor page faults per step
(``getrusage`` over the timed steps), the peak resident memory of the child, and the speed-up.
The computed numbers are the same either way (the test suite checks a whole run).
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

CHILD = r"""
import json, resource, sys, time, torch
sys.path.insert(0, {root!r})
sys.path.insert(0, {benchmarks!r})
method, batch, steps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
warmup, shapes = int(sys.argv[5]), sys.argv[6]
torch.set_num_threads(threads)
from msabench.allocator import keep_freed_memory
state = keep_freed_memory()
from bench_mult_utt import build_method, train_step, utt_batch, utt_info
if shapes == "unaligned":
    from bench_reference import _info, make_batches
    model, opt = build_method(method, _info())
    data = make_batches(1, batch)[0]
else:
    model, opt = build_method(method, utt_info(50))
    data = utt_batch(batch, 50)
for _ in range(warmup):
    train_step(model, opt, data)
r0 = resource.getrusage(resource.RUSAGE_SELF)
t0 = time.perf_counter()
for _ in range(steps):
    train_step(model, opt, data)
wall = time.perf_counter() - t0
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{"state": state, "ms": wall / steps * 1000,
                  "sys_ms": (r1.ru_stime - r0.ru_stime) / steps * 1000,
                  "faults": (r1.ru_minflt - r0.ru_minflt) / steps,
                  "rss_mib": r1.ru_maxrss / 1024}}))
"""


def measure(method: str, batch: int, steps: int, threads: int, tuned: bool,
            warmup: int, shapes: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads),
           "MSABENCH_MALLOC_TUNING": "1" if tuned else "0"}
    proc = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), benchmarks=str(ROOT / "benchmarks")), method,
                           str(batch), str(steps), str(threads), str(warmup), shapes],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{method} (tuned={tuned}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="tfn:32,mult:128,sf:32",
                        help="method:batch pairs (the MOSI recipes' batches by default)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--shapes", choices=("utt", "unaligned"), default="utt")
    args = parser.parse_args()
    from tabulate import tabulate

    rows = []
    for item in args.methods.split(","):
        method, _, batch = item.partition(":")
        batch_size = int(batch or 32)
        runs: dict[bool, list[dict]] = {True: [], False: []}
        for _ in range(args.rounds):
            for tuned in (False, True):
                runs[tuned].append(measure(method, batch_size, args.steps, args.threads, tuned,
                                            args.warmup, args.shapes))
        base = statistics.median(r["ms"] for r in runs[False])
        for tuned in (False, True):
            rs = runs[tuned]
            ms = statistics.median(r["ms"] for r in rs)
            rows.append([f"{method} (batch {batch_size})",
                         f"kept ({rs[0]['state']})" if tuned else "glibc default",
                         f"{ms:.1f}", f"{min(r['ms'] for r in rs):.1f}-"
                                      f"{max(r['ms'] for r in rs):.1f}",
                         f"{statistics.median(r['sys_ms'] for r in rs):.1f}",
                         f"{statistics.median(r['faults'] for r in rs):,.0f}",
                         f"{max(r['rss_mib'] for r in rs):,.0f}", f"{base / ms:.2f}x"])
    print(f"Training step on {args.shapes} MOSI shapes, {args.threads} thread(s), "
          f"{args.steps} steps x {args.rounds} rounds per row (medians)\n")
    print(tabulate(rows, headers=["method", "freed memory", "ms/step", "range",
                                  "kernel ms/step", "page faults/step", "peak RSS MiB",
                                  "speed-up"], tablefmt="github"))


if __name__ == "__main__":
    main()
