"""Grid executors: Ray overhead versus local, cold and warm, with 1 vs 2 workers.

A 2-method (sf, lmf) x 5-seed grid on tiny synthetic-mosi, each repeat into a fresh result
folder, timed as the wall time of the executor call (`run_local` / `run_ray`):

``local``            this process, after one untimed local grid (torch, the plugins and
                     their first-call imports already loaded: the steady state)
``ray cold``         no cluster running: `run_ray(workers=W)` starts a local cluster, its
                     workers import torch and msabench, it runs, and it stops the cluster;
                     what `msabench grid --executor ray --workers W` pays
``ray join``         a W-CPU cluster already running (started once, in another process):
                     each repeat connects as a new driver (a new Ray job, so new worker
                     processes that import torch and msabench again) and disconnects; what
                     `msabench grid --executor ray --address ...` pays per grid
``ray warm``         the same driver keeps Ray connected across grids (a notebook, a
                     script running several grids): worker processes, their imports and
                     their cached dataset are reused

Medians over ``--repeats``; the ratio is to the local median. Target: under 1.3x local.

    OMP_NUM_THREADS=1 python benchmarks/bench_grid.py [--epochs 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TINY = {"n_train": 320, "n_valid": 64, "n_test": 64, "text_dim": 24, "text_len": 8,
        "audio_len": 12, "vision_len": 10}


def write_grid(folder: Path, epochs: int) -> Path:
    sets = ", ".join(f'"data.options.{k}={v}"' for k, v in TINY.items())
    path = folder / "grid.toml"
    path.write_text(f"""methods = ["sf", "lmf"]
datasets = ["synthetic-mosi"]
seeds = [1, 2, 3, 4, 5]
epochs = {epochs}
threads = 1
set = [{sets}, "train.patience=0"]
""")
    return path


def once(executor: str, epochs: int, **ray_args) -> float:
    from msabench.grid import counts, expand, run_local, run_ray

    with tempfile.TemporaryDirectory() as tmp:
        grid = expand(write_grid(Path(tmp), epochs), out=Path(tmp) / "results")
        started = time.perf_counter()
        if executor == "local":
            run_local(grid.tasks)
        else:
            run_ray(grid.tasks, **ray_args)
        wall = time.perf_counter() - started
        c = counts(grid.tasks)
        assert c["failed"] == 0 and c["ran"] == 10, [t.error for t in grid.tasks if t.error]
        return wall


HEAD = """
import sys, time, ray
ray.init(num_cpus=int(sys.argv[1]), include_dashboard=False, log_to_driver=False)
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()  # until the benchmark closes stdin
"""


def start_cluster(workers: int) -> tuple[subprocess.Popen, str, float]:
    """A W-CPU cluster owned by a child process (stopped by closing its stdin): no `ray
    start`/`ray stop`, which would touch other users' Ray processes on this machine."""
    started = time.perf_counter()
    head = subprocess.Popen([sys.executable, "-c", HEAD, str(workers)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    address = head.stdout.readline().strip()
    if not address:
        raise RuntimeError("the Ray head process did not start")
    return head, address, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import ray

    load = os.getloadavg()
    rows: list[tuple[str, list[float]]] = []
    once("local", args.epochs)  # untimed: imports and first calls
    rows.append(("local", [once("local", args.epochs) for _ in range(args.repeats)]))
    starts = {}
    for w in (1, 2):
        rows.append((f"ray cold, {w} worker(s)",
                     [once("ray", args.epochs, workers=w) for _ in range(args.repeats)]))
        head, address, starts[w] = start_cluster(w)
        try:
            rows.append((f"ray join, {w} worker(s)",
                         [once("ray", args.epochs, address=address)
                          for _ in range(args.repeats)]))
            ray.init(address=address, log_to_driver=False)
            once("ray", args.epochs)  # untimed: the workers start and import
            rows.append((f"ray warm, {w} worker(s)",
                         [once("ray", args.epochs) for _ in range(args.repeats)]))
            ray.shutdown()
        finally:
            head.stdin.close()
            head.wait(timeout=120)
    local = statistics.median(rows[0][1])
    after = os.getloadavg()
    print(f"cpus {os.cpu_count()}, load average before {load[0]:.2f}, after {after[0]:.2f}; "
          f"epochs {args.epochs}, repeats {args.repeats}; cluster start (not in join/warm): "
          + ", ".join(f"{w} worker(s) {s:.1f}s" for w, s in starts.items()))
    print("| executor | median wall s | runs s | x local |")
    print("|---|---|---|---|")
    for name, walls in rows:
        med = statistics.median(walls)
        print(f"| {name} | {med:.1f} | {' '.join(f'{w:.1f}' for w in walls)} | "
              f"{med / local:.2f} |")


if __name__ == "__main__":
    main()
