"""Core targets (issue 2): CLI start-up, torch-free listing, main-job time, test-suite time.

    python benchmarks/bench_core.py [--repeats 10] [--skip-demo] [--with-tests]

Prints one table. Times are medians over repeats (the demo and the test suite run once each:
they take minutes). The main job is run into a temporary results directory, so the committed
results are not touched.
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

from tabulate import tabulate

ROOT = Path(__file__).resolve().parents[1]
PROBE = ("import sys; from msabench.cli import main; sys.argv=['msabench', *sys.argv[1:]]\n"
         "try:\n    main()\nexcept SystemExit:\n    pass\n"
         "print('TORCH_IMPORTED=' + str('torch' in sys.modules), file=sys.stderr)")


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    return time.perf_counter() - start, proc


def median_time(cmd: list[str], repeats: int) -> float:
    timed(cmd)  # warm the file cache
    return statistics.median(timed(cmd)[0] for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--with-tests", action="store_true")
    args = parser.parse_args()
    exe = str(Path(sys.executable).with_name("msabench"))
    rows = []
    for label, cli_args, target in (("msabench --help", ["--help"], 0.5),
                                    ("msabench list", ["list"], None),
                                    ("msabench plugins", ["plugins"], None)):
        t = median_time([exe, *cli_args], args.repeats)
        _, proc = timed([sys.executable, "-c", PROBE, *cli_args])
        torch_loaded = "TORCH_IMPORTED=True" in proc.stderr
        rows.append([label, f"{t:.3f} s (median of {args.repeats})",
                     f"< {target} s" if target else "-",
                     "yes" if torch_loaded else "no",
                     "ok" if (target is None or t < target) and not torch_loaded else "MISSED"])
    if not args.skip_demo:
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "MSABENCH_CACHE_DIR": str(Path(tmp) / "cache")}
            cmd = [exe, "run", "--method", "sf", "--dataset", "synthetic-mosi", "--seeds",
                   "1111,1112,1113,1114,1115", "--quiet", "--out", str(Path(tmp) / "results")]
            t_run, proc = timed(cmd, env)
            if proc.returncode != 0:
                sys.exit(f"demo run failed:\n{proc.stderr[-2000:]}")
            t_lb, proc = timed([exe, "leaderboard", "--results", str(Path(tmp) / "results"),
                                "--out", str(Path(tmp) / "boards")], env)
            total = t_run + t_lb
            rows.append(["main job (sf, synthetic-mosi, 5 seeds, cold cache) + leaderboard",
                         f"{total:.1f} s (run {t_run:.1f} + leaderboard {t_lb:.1f})", "< 120 s",
                         "-", "ok" if total < 120 else "MISSED"])
    if args.with_tests:
        t, proc = timed([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"])
        last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-200:]
        rows.append([f"test suite ({last})", f"{t:.0f} s", "< 600 s", "-",
                     "ok" if t < 600 and proc.returncode == 0 else "MISSED"])
    print(tabulate(rows, headers=["what", "time", "target", "torch imported", "status"],
                   tablefmt="github"))
    print(f"\nmachine: {os.cpu_count()} CPUs; python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
