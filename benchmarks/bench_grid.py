"""Grid executors: Ray overhead versus local, and Ray with 1 vs 2 workers.

A 2-method (sf, lmf) x 5-seed grid on tiny synthetic-mosi, run three times into fresh
result folders: the local executor, Ray with a 1-CPU local cluster, Ray with a 2-CPU local
cluster. Wall time includes starting and stopping the Ray cluster (that is the overhead a
user pays). Target: Ray (2 workers) under 1.3x the local wall time on a 2-core machine.

    OMP_NUM_THREADS=1 python benchmarks/bench_grid.py [--epochs 5]
"""

from __future__ import annotations

import argparse
import os
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


def once(executor: str, workers: int | None, epochs: int) -> tuple[float, int]:
    from msabench.grid import counts, expand, run_local, run_ray

    with tempfile.TemporaryDirectory() as tmp:
        grid = expand(write_grid(Path(tmp), epochs), out=Path(tmp) / "results")
        started = time.perf_counter()
        if executor == "local":
            run_local(grid.tasks)
        else:
            run_ray(grid.tasks, workers=workers)
        wall = time.perf_counter() - started
        c = counts(grid.tasks)
        assert c["failed"] == 0, [t.error for t in grid.tasks if t.error]
        return wall, c["ran"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    load = os.getloadavg()
    rows = []
    for name, executor, workers in (("local", "local", None), ("ray, 1 worker", "ray", 1),
                                    ("ray, 2 workers", "ray", 2)):
        wall, ran = once(executor, workers, args.epochs)
        rows.append((name, wall, ran))
    local = rows[0][1]
    print(f"cpus {os.cpu_count()}, load average before {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f}, epochs {args.epochs}")
    print("| executor | tasks | wall s | x local |")
    print("|---|---|---|---|")
    for name, wall, ran in rows:
        print(f"| {name} | {ran} | {wall:.1f} | {wall / local:.2f} |")


if __name__ == "__main__":
    main()
