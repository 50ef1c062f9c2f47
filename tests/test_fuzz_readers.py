"""Fuzz every dataset reader with seeded byte flips and truncations of a small valid file.

For each reader (MMSA, MulT and MAG-BERT pickles, the .npz archive, SDK .csd, CH-SIMS
label.csv) :data:`CASES` mutated copies of a fixture built by tests/test_hostile_files.py are
read in ONE child process (faulthandler on, core dumps off, address space capped 3 GiB above
what the imports need). The only outcomes allowed are a successful load or msabench's own
``DataError``: any other exception, a crash of the child (a signal), a payload marker file, or
a run over the time budget fails the test that owns the reader. Run with ``-s`` to see one
summary line per reader (cases, outcomes, seconds).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.test_hostile_files import (LABEL_CSV, ROOT, archive_arrays, dump,
                                      magbert_obj, mmsa_obj, mult_obj, write_label_csv,
                                      write_sdk)

#: cases per reader and the seed; MSABENCH_FUZZ_CASES / MSABENCH_FUZZ_SEED fuzz deeper locally
#: (the time budget then scales with the number of cases)
CASES = int(os.environ.get("MSABENCH_FUZZ_CASES", 300))
SEED = int(os.environ.get("MSABENCH_FUZZ_SEED", 14))
READERS = ("mmsa", "mult", "magbert", "npz", "sdk", "csv")
TIME_BUDGET_S = 180 * max(1.0, CASES / 300)  # a guard against hangs and runaway cases, not a speed target (63 s with load 6 on 2 cores, the readers' own share 33 s)

CHILD = r"""
import faulthandler, json, os, random, resource, sys, time, traceback
faulthandler.enable()
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
from msabench.errors import DataError
from msabench_builtins.datasets.archive import load_archive
from msabench_builtins.datasets.chsims import read_sims_labels
from msabench_builtins.datasets.magbert import load_magbert_pickle
from msabench_builtins.datasets.mmsa import load_mmsa_pickle
from msabench_builtins.datasets.mult import load_mult_pickle
from msabench_builtins.datasets.raw import _read_labels
from tests.test_hostile_files import MOSI, SIMS, load_sdk_files

spec = json.loads(sys.argv[1])
work = spec["work"]
fixtures = spec["fixtures"]


def read_csv(p):
    read_sims_labels(p)
    _read_labels(__import__("pathlib").Path(p), SIMS, need_text=False)


READ = {
    "mmsa": lambda p: load_mmsa_pickle(p, meta=MOSI, setting="unaligned"),
    "mult": lambda p: load_mult_pickle(p, meta=MOSI, setting="unaligned"),
    "magbert": lambda p: load_magbert_pickle(p, meta=MOSI, setting="magbert"),
    "npz": lambda p: load_archive(p, meta=MOSI, setting="unaligned"),
    "csv": read_csv,
}


def mutate(data, rng):  # 1 flipped byte (50 %), 2-8 flips (20 %), a cut (15 %) or both (15 %)
    b = bytearray(data)
    r = rng.random()
    if r < 0.85:
        for _ in range(1 if r < 0.5 else rng.randint(2, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    if r >= 0.7:
        del b[rng.randrange(len(b)):]
    return bytes(b)


with open("/proc/self/status") as fh:
    vm = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (vm + (3 << 30), resource.RLIM_INFINITY))
for reader in spec["readers"]:
    started = time.perf_counter()
    counts, others, slowest = {}, [], (0.0, -1)
    for i in range(spec["cases"]):
        rng = random.Random(spec["seed"] * 100003 + i)
        if reader == "sdk":  # alternately the label file and the feature file
            label, audio = fixtures["sdk"]
            target = label if i % 2 == 0 else audio
        else:
            target = fixtures[reader]
        ext = os.path.splitext(target)[1]
        path = os.path.join(work, f"{reader}-{i}{ext}")
        with open(target, "rb") as fh:
            data = fh.read()
        with open(path, "wb") as fh:
            fh.write(mutate(data, rng))
        print(json.dumps(["case", reader, i]), flush=True)
        t0 = time.perf_counter()
        try:
            if reader == "sdk":
                other = audio if target == label else label
                load_sdk_files(*((path, other) if target == label else (other, path)))
            else:
                READ[reader](path)
            outcome = "loaded"
        except DataError as exc:
            outcome = "DataError:" + str(getattr(exc, "code", None))
            if not str(exc).strip():
                others.append([i, "empty DataError message"])
        except BaseException as exc:
            outcome = "other:" + type(exc).__name__
            others.append([i, "".join(traceback.format_exception(exc))[-1500:]])
        took = time.perf_counter() - t0
        slowest = max(slowest, (took, i))
        counts[outcome] = counts.get(outcome, 0) + 1
        os.unlink(path)
    print(json.dumps(["done", reader, {"counts": counts, "others": others[:10],
                                       "seconds": time.perf_counter() - started,
                                       "slowest": slowest}]), flush=True)
"""


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory):
    """Run every reader's cases in one child process; {reader: result} plus the run's facts."""
    base = tmp_path_factory.mktemp("fuzz")
    marker = base / "pwned"
    mmsa = mmsa_obj()  # flips must never turn the data into code that creates the marker
    mmsa["train"]["raw_text"][0] = f"os\nsystem\n(S'touch {marker}'\ntR."
    fixtures = {
        "mmsa": dump(mmsa, base / "mmsa.pkl", 4),
        "mult": dump(mult_obj(), base / "mult.pkl", 2),
        "magbert": dump(magbert_obj(), base / "mag.pkl", 5),
        "npz": base / "arc.npz",
        "sdk": write_sdk(base / "sdk"),
        "csv": write_label_csv(base / "csv", LABEL_CSV),
    }
    from msabench_builtins.datasets.archive import save_archive

    save_archive(fixtures["npz"], archive_arrays())
    work = base / "work"
    work.mkdir()
    spec = {"work": str(work), "cases": CASES, "seed": SEED, "readers": list(READERS),
            "fixtures": {k: [str(p) for p in v] if isinstance(v, tuple) else str(v)
                         for k, v in fixtures.items()}}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], capture_output=True,
                          text=True, timeout=3 * TIME_BUDGET_S, cwd=work, env=env)
    wall = time.perf_counter() - started
    results, last = {}, None
    for line in proc.stdout.splitlines():
        kind, reader, value = json.loads(line)
        if kind == "case":
            last = (reader, value)
        else:
            results[reader] = value
            last = None
    for reader, r in results.items():
        outcomes = ", ".join(f"{n} {k}" for k, n in sorted(r["counts"].items()))
        print(f"\nfuzz {reader}: {sum(r['counts'].values())} cases in {r['seconds']:.1f} s "
              f"(slowest {r['slowest'][0] * 1000:.0f} ms, case {r['slowest'][1]}): {outcomes}")
    print(f"\nfuzz total: {sum(sum(r['counts'].values()) for r in results.values())} cases, "
          f"child wall time {wall:.1f} s (imports included), exit code {proc.returncode}")
    return {"results": results, "rc": proc.returncode, "stderr": proc.stderr, "last": last,
            "wall": wall, "marker": marker, "work": work}


def test_fuzz_child_did_not_crash_and_stayed_in_budget(fuzz):
    assert fuzz["rc"] == 0, (f"the fuzz child died (exit {fuzz['rc']}) during case "
                             f"{fuzz['last']}:\n{fuzz['stderr'][-4000:]}")
    assert set(fuzz["results"]) == set(READERS)
    assert fuzz["wall"] < TIME_BUDGET_S, f"fuzzing took {fuzz['wall']:.1f} s"
    assert not fuzz["marker"].exists() and not any(fuzz["work"].iterdir())


@pytest.mark.parametrize("reader", READERS)
def test_reader_gives_only_loads_or_data_errors(fuzz, reader):
    r = fuzz["results"].get(reader)
    assert r is not None, f"{reader} did not finish (crash in case {fuzz['last']})"
    assert sum(r["counts"].values()) == CASES
    assert not r["others"], "\n\n".join(f"case {i}:\n{tb}" for i, tb in r["others"])
    assert set(r["counts"]) <= {"loaded"} | {k for k in r["counts"] if k.startswith("DataError:")}
    # a few-KiB file never legitimately needs gigabytes: its claims must be refused, not tried
    assert "DataError:out-of-memory" not in r["counts"]
    assert any(k.startswith("DataError:") for k in r["counts"])  # the mutations do bite
