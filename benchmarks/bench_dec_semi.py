"""Wall time and peak memory of a full ``dec-semi`` run per seed (issue 5 target: < 10 min).

    python benchmarks/bench_dec_semi.py [--setting utt-bclstm] [--seeds 1111,1112]
                                        [--label-fraction 0.4] [--data-dir ../shared/data]

Each seed runs ``msabench run --method dec-semi`` in a fresh subprocess with the paper's epoch
counts (stage 1: 200, stage 2: 100, fine-tuning: 500) into a temporary results folder, so the
peak resident memory (the child's ``ru_maxrss``) is that run's alone. The table gives, per seed,
the whole command's wall time (start-up and data loading included), the run's own time from its
result file, the time of each pretraining stage and the fine-tuning, and the peak RSS; then the
medians. ``--quick`` divides every epoch count by 10 for a smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_seed(args: argparse.Namespace, seed: int, out: Path) -> dict:
    cmd = [str(Path(sys.executable).parent / "msabench"), "run", "--method", "dec-semi", "--dataset",
           "mosi", "--setting", args.setting, "--seeds", str(seed), "--label-fraction",
           str(args.label_fraction), "--out", str(out), "--quiet", "--force"]
    if args.quick:
        cmd += ["--epochs", "50", "--set", "pretrain.dec.stage1_epochs=20",
                "--set", "pretrain.dec.stage2_epochs=10"]
    env = {**os.environ, "MSABENCH_DATA_DIR": str(args.data_dir), "HF_HUB_OFFLINE": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"dec-semi seed {seed} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB, max over children
    [path] = list(out.rglob(f"seed-{seed}.json"))
    res = json.loads(path.read_text())
    dec = res["pretraining"]["dec"]
    s1, s2 = dec["stage1"]["seconds"], dec["stage2"]["seconds"]
    return {"seed": seed, "command_s": wall, "run_s": res["wall_time_s"], "stage1_s": s1,
            "stage2_s": s2, "finetune_s": res["wall_time_s"] - s1 - s2,
            "peak_rss_mib": peak / 1024.0, "peak_is_new": peak > before,
            "acc2_non0": res["metrics"]["test"]["acc2_non0"],
            "epochs": (len(dec["stage1"]["history"]), len(dec["stage2"]["history"]),
                       res["epochs_run"]),
            "device": res["device"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", default="utt-bclstm")
    parser.add_argument("--seeds", default="1111,1112")
    parser.add_argument("--label-fraction", type=float, default=0.4)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--quick", action="store_true", help="epoch counts / 10 (smoke run)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            rows.append(run_seed(args, seed, Path(tmp) / str(seed)))
    print(f"dec-semi on mosi/{args.setting}, label fraction {args.label_fraction}, epochs "
          f"(stage 1, stage 2, fine-tuning) = {rows[0]['epochs']}, {os.cpu_count()} CPU cores, "
          f"device {rows[0]['device']}" + (" [--quick: NOT the paper's epoch counts]" if args.quick else ""))
    print()
    print("| seed | command s | run s | stage 1 s | stage 2 s | fine-tune s | peak RSS MiB | Acc2-non0 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['seed']} | {r['command_s']:.1f} | {r['run_s']:.1f} | {r['stage1_s']:.1f} | "
              f"{r['stage2_s']:.1f} | {r['finetune_s']:.1f} | {r['peak_rss_mib']:.0f} | "
              f"{r['acc2_non0'] * 100:.2f} |")
    med = {k: statistics.median(r[k] for r in rows)
           for k in ("command_s", "run_s", "stage1_s", "stage2_s", "finetune_s", "peak_rss_mib")}
    print(f"| median | {med['command_s']:.1f} | {med['run_s']:.1f} | {med['stage1_s']:.1f} | "
          f"{med['stage2_s']:.1f} | {med['finetune_s']:.1f} | {med['peak_rss_mib']:.0f} | |")
    print()
    print(f"target: < 600 s per seed; median command time {med['command_s']:.0f} s "
          f"({'met' if med['command_s'] < 600 else 'NOT met'}). Peak RSS is the maximum over "
          "the seeds' subprocesses so far (ru_maxrss of children).")


if __name__ == "__main__":
    main()
