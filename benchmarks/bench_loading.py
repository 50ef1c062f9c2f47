"""Loading targets of the MMSA pickle reader: time <= 2x a bare ``pickle.load``, peak memory
<= 1.5x the in-memory size of the arrays.

    python benchmarks/bench_loading.py [--repeats 3] [--scale 1.0]

Writes a full-size MMSA-shaped CMU-MOSI ``unaligned_50.pkl`` to a temporary folder (1284/229/686
samples; text 50x768, audio 375x5, vision 500x20 float32, random; ``text_bert`` (N, 3, 50) int64
with a random attention mask, ``raw_text``, ``id``, lengths, labels; 100 ``-inf`` values in the
audio, as MMSA's audio has some), then prints one table.

Time: median of ``--repeats`` runs of a bare ``pickle.load`` (the standard, unrestricted
unpickler) against the median of ``--repeats`` runs of ``load_mmsa_pickle`` (restricted
unpickling + validation + numpy -> torch; its chunked equivalent of ``LoadedDataset.validate``),
each in a fresh subprocess (warm OS file cache: the file is read once before timing). An
information row adds the core's own ``LoadedDataset.validate()`` (whole-tensor
``torch.isfinite``), which the reader replaces by a chunked scan: it shows why.

Memory: in a fresh subprocess, after all imports, the resident set size (``VmRSS``) is the
baseline; after the load, the process's peak RSS is read from ``VmHWM`` in ``/proc/self/status``
(the same high-water mark ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` reports, except that
Linux carries ``ru_maxrss`` over ``execve`` from the forked parent, so a child of a big parent
would report the parent's size; ``VmHWM`` belongs to the new process image only). Peak minus
baseline is the extra memory the load needed at its worst moment, covering every allocation
(Python objects, NumPy buffers, torch and temporaries) whether tracemalloc sees it or not. It is
compared with the arrays' in-memory size (sum of ``nbytes`` of every numeric array in the file).
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"train": 1284, "valid": 229, "test": 686}
SHAPES = {"text": (50, 768), "audio": (375, 5), "vision": (500, 20)}


def write_fixture(path: Path, scale: float, seed: int = 0) -> int:
    """Write the MMSA-shaped pickle; return the arrays' in-memory size in bytes."""
    rng = np.random.default_rng(seed)
    data, nbytes = {}, 0
    for split, full in SIZES.items():
        n = max(2, int(full * scale))
        L = SHAPES["text"][0]
        text_len = rng.integers(3, L + 1, n)
        mask = (np.arange(L)[None, :] < text_len[:, None]).astype(np.int64)
        d = {
            "id": np.array([f"vid{split}{i // 10}$_${i % 10 + 1}" for i in range(n)], dtype=object),
            "raw_text": np.array([f"transcript number {i} of {split}" for i in range(n)],
                                 dtype=object),
            "text_bert": np.stack([rng.integers(1000, 30000, (n, L)) * mask, mask,
                                   np.zeros_like(mask)], axis=1),
            "regression_labels": rng.uniform(-3, 3, n).astype(np.float32),
            "classification_labels": rng.integers(0, 3, n).astype(np.float32),
            "annotations": np.array(["Neutral"] * n, dtype=object),
        }
        for m, shape in SHAPES.items():
            d[m] = rng.standard_normal((n, *shape), dtype=np.float32)
        d["audio_lengths"] = rng.integers(1, SHAPES["audio"][0] + 1, n)
        d["vision_lengths"] = rng.integers(1, SHAPES["vision"][0] + 1, n)
        if split == "train":
            flat = d["audio"].reshape(-1)
            flat[rng.choice(flat.size, 100, replace=False)] = -np.inf
        nbytes += sum(a.nbytes for a in d.values() if a.dtype != object)
        data[split] = d
    with open(path, "wb") as fh:
        pickle.dump(data, fh, protocol=4)
    return nbytes


# --------------------------------------------------------------------------------------------
# child processes (one measurement each)

CHILD = r"""
import gc, json, pickle, resource, sys, time
mode, path = sys.argv[1], sys.argv[2]
import numpy, torch  # noqa: F401 - imports count in the baseline, not in the load
from msabench.api.dataset import DatasetMeta
from msabench_builtins.datasets.mmsa import load_mmsa_pickle
meta = DatasetMeta(name="bench-mosi", title="bench", language="en", label_range=(-3.0, 3.0),
                   convention="mosi")
def status_kib(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
gc.collect()
base = status_kib("VmRSS")
start = time.perf_counter()
if mode == "bare":
    with open(path, "rb") as fh:
        obj = pickle.load(fh)
else:
    obj = load_mmsa_pickle(path, meta=meta, setting="default")
    if mode == "mmsa+core":
        obj.validate()  # the core's whole-tensor check, for comparison
elapsed = time.perf_counter() - start
peak = status_kib("VmHWM")  # peak RSS of this process image (KiB)
maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux; see the docstring
print(json.dumps({"seconds": elapsed, "extra_peak_bytes": (peak - base) * 1024,
                  "ru_maxrss_bytes": maxrss * 1024}))
"""


def measure(mode: str, path: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, mode, str(path)], capture_output=True,
                          text=True, cwd=ROOT)
    if proc.returncode:
        raise SystemExit(f"{mode} child failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="fraction of the MOSI sample counts (1.0 = full size)")
    args = parser.parse_args()
    from tabulate import tabulate

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "unaligned_50.pkl"
        t0 = time.perf_counter()
        array_bytes = write_fixture(path, args.scale)
        wrote = time.perf_counter() - t0
        path.read_bytes()  # warm the OS file cache
        runs = {mode: [measure(mode, path) for _ in range(args.repeats)]
                for mode in ("bare", "mmsa", "mmsa+core")}
        file_bytes = path.stat().st_size

    med = {mode: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
           for mode, rs in runs.items()}
    ratio_t = med["mmsa"]["seconds"] / med["bare"]["seconds"]
    ratio_m = med["mmsa"]["extra_peak_bytes"] / array_bytes
    ratio_mb = med["bare"]["extra_peak_bytes"] / array_bytes
    mib = 1 << 20
    rows = [
        ["bare pickle.load", f"{med['bare']['seconds']:.3f} s", "1.00x", "-",
         f"{med['bare']['extra_peak_bytes'] / mib:.0f} MiB", f"{ratio_mb:.2f}x", "-", "-"],
        ["load_mmsa_pickle (load + validate)", f"{med['mmsa']['seconds']:.3f} s",
         f"{ratio_t:.2f}x", "<= 2x", f"{med['mmsa']['extra_peak_bytes'] / mib:.0f} MiB",
         f"{ratio_m:.2f}x", "<= 1.5x",
         "ok" if ratio_t <= 2 and ratio_m <= 1.5 else "MISSED"],
        ["  + core LoadedDataset.validate() (not done)", f"{med['mmsa+core']['seconds']:.3f} s",
         f"{med['mmsa+core']['seconds'] / med['bare']['seconds']:.2f}x", "-",
         f"{med['mmsa+core']['extra_peak_bytes'] / mib:.0f} MiB",
         f"{med['mmsa+core']['extra_peak_bytes'] / array_bytes:.2f}x", "-", "info"],
    ]
    n = {s: max(2, int(v * args.scale)) for s, v in SIZES.items()}
    print(f"MMSA-shaped MOSI unaligned pickle: {n['train']}/{n['valid']}/{n['test']} samples, "
          f"arrays {array_bytes / mib:.0f} MiB in memory, file {file_bytes / mib:.0f} MiB "
          f"(written in {wrote:.1f} s); medians of {args.repeats} fresh subprocesses each")
    print(tabulate(rows, headers=["", "time", "vs bare", "target", "extra peak RSS",
                                  "vs arrays", "target", ""], tablefmt="github"))
    print("extra peak RSS = peak RSS (VmHWM) after the load - RSS (VmRSS) after the imports, in "
          "the same fresh process")


if __name__ == "__main__":
    main()
