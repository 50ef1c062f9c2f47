"""Grid executors: Ray overhead versus local, cold and warm, with 1 vs 2 workers.

A 2-method (sf, lmf) x 5-seed grid on synthetic-mosi, ``--epochs`` (5) epochs per seed without
early stopping, each repeat into a fresh result folder. ``--size tiny`` (default): 320/64/64
samples and short sequences, a few seconds of training in all; ``--size full``: synthetic-mosi
as ``msabench run`` generates it by default (MOSI sizes, unaligned MOSI shapes: 1284 training
samples, text 50x768), so that the grid's training is not negligible next to Ray's fixed
costs (about 2 minutes locally at 3 epochs).

``--mode call`` (default) times the executor call (`run_local` / `run_ray`) in this process:

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

``--mode command`` times what a user types, each as a fresh process: ``msabench grid FILE``
(local) against ``msabench grid FILE --executor ray --workers W`` (cold) and ``--address``
(join); every side pays Python's start-up and the driver's imports.

Medians over ``--repeats``; the ratio is to the local median. Target: under 1.3x local.

    OMP_NUM_THREADS=1 python benchmarks/bench_grid.py [--size tiny|full] [--mode call|command]
                                                      [--epochs 5] [--repeats 3] [--no-warm]
                                                      [--workers 1,2]
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


def write_grid(folder: Path, epochs: int, size: str = "tiny") -> Path:
    path = folder / "grid.toml"
    sets = [f'"data.options.{k}={v}"' for k, v in TINY.items()] if size == "tiny" else []
    sets.append('"train.patience=0"')
    body = f'epochs = {epochs}\nset = [{", ".join(sets)}]\n'
    path.write_text('methods = ["sf", "lmf"]\ndatasets = ["synthetic-mosi"]\n'
                    f'seeds = [1, 2, 3, 4, 5]\nthreads = 1\n{body}')
    return path


def once(executor: str, epochs: int, size: str = "tiny", **ray_args) -> float:
    from msabench.grid import counts, expand, run_local, run_ray

    with tempfile.TemporaryDirectory() as tmp:
        grid = expand(write_grid(Path(tmp), epochs, size), out=Path(tmp) / "results")
        started = time.perf_counter()
        if executor == "local":
            run_local(grid.tasks)
        else:
            run_ray(grid.tasks, **ray_args)
        wall = time.perf_counter() - started
        c = counts(grid.tasks)
        assert c["failed"] == 0 and c["ran"] == 10, [t.error for t in grid.tasks if t.error]
        return wall


def command(executor: str, epochs: int, size: str, workers: int | None = None,
            address: str | None = None) -> float:
    """Wall seconds of one ``msabench grid`` process (start-up and imports included)."""
    script = Path(sys.executable).with_name("msabench")
    exe = [str(script)] if script.exists() else [
        sys.executable, "-c", "from msabench.cli import main; main()"]
    with tempfile.TemporaryDirectory() as tmp:
        args = exe + ["grid", str(write_grid(Path(tmp), epochs, size)), "-q",
                      "--out", str(Path(tmp) / "results")]
        if executor == "ray":
            args += ["--executor", "ray"] + (["--address", address] if address
                                             else ["--workers", str(workers)])
        # a fresh process joins the token-authenticated cluster that ray.init started only in
        # token mode (docs/grids.md); the cold rows start their own cluster either way
        env = dict(os.environ, RAY_AUTH_MODE="token") if address else None
        started = time.perf_counter()
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL, env=env)
        wall = time.perf_counter() - started
        done = list((Path(tmp) / "results").rglob("seed-*.json"))
        assert len(done) == 10, f"{len(done)} result files, expected 10"
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
    parser.add_argument("--size", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--workers", default="1,2",
                        help="Ray cluster sizes to measure, e.g. 1 or 1,2")
    parser.add_argument("--no-warm", action="store_true",
                        help="skip the warm rows (a long grid then costs two runs less)")
    parser.add_argument("--mode", choices=("call", "command"), default="call")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import ray

    load = os.getloadavg()
    rows: list[tuple[str, list[float]]] = []
    if args.mode == "command":
        main_command(args, load)
        return
    once("local", args.epochs, "tiny")  # untimed: imports and first calls
    rows.append(("local", [once("local", args.epochs, args.size) for _ in range(args.repeats)]))
    starts = {}
    for w in [int(x) for x in args.workers.split(",")]:
        rows.append((f"ray cold, {w} worker(s)",
                     [once("ray", args.epochs, args.size, workers=w)
                      for _ in range(args.repeats)]))
        head, address, starts[w] = start_cluster(w)
        try:
            rows.append((f"ray join, {w} worker(s)",
                         [once("ray", args.epochs, args.size, address=address)
                          for _ in range(args.repeats)]))
            if not args.no_warm:
                ray.init(address=address, log_to_driver=False)
                once("ray", args.epochs, "tiny")  # untimed: the workers start and import
                rows.append((f"ray warm, {w} worker(s)",
                             [once("ray", args.epochs, args.size)
                              for _ in range(args.repeats)]))
                ray.shutdown()
        finally:
            head.stdin.close()
            head.wait(timeout=120)
    report(args, load, rows, "cluster start (not in join/warm): " + ", ".join(
        f"{w} worker(s) {s:.1f}s" for w, s in starts.items()))


def main_command(args: argparse.Namespace, load: tuple[float, ...]) -> None:
    rows: list[tuple[str, list[float]]] = []
    command("local", args.epochs, "tiny")  # untimed: OS caches
    rows.append(("msabench grid (local)",
                 [command("local", args.epochs, args.size) for _ in range(args.repeats)]))
    for w in [int(x) for x in args.workers.split(",")]:
        rows.append((f"msabench grid --executor ray --workers {w} (cold)",
                     [command("ray", args.epochs, args.size, workers=w)
                      for _ in range(args.repeats)]))
        head, address, _ = start_cluster(w)
        try:
            rows.append((f"msabench grid --executor ray --address (join, {w} CPU(s))",
                         [command("ray", args.epochs, args.size, address=address)
                          for _ in range(args.repeats)]))
        finally:
            head.stdin.close()
            head.wait(timeout=120)
    report(args, load, rows, "whole commands, fresh processes")


def report(args: argparse.Namespace, load: tuple[float, ...],
           rows: list[tuple[str, list[float]]], what: str) -> None:
    local = statistics.median(rows[0][1])
    after = os.getloadavg()
    print(f"cpus {os.cpu_count()}, load average before {load[0]:.2f}, after {after[0]:.2f}; "
          f"size {args.size}, epochs {args.epochs}, repeats {args.repeats}; {what}")
    print("| executor | median wall s | runs s | x local |")
    print("|---|---|---|---|")
    for name, walls in rows:
        med = statistics.median(walls)
        print(f"| {name} | {med:.1f} | {' '.join(f'{w:.1f}' for w in walls)} | "
              f"{med / local:.2f} |")


if __name__ == "__main__":
    main()
