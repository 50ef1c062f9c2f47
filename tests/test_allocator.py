"""msabench.allocator: freed tensor memory stays in the process (glibc mallopt)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY_SYNTH

ROOT = Path(__file__).resolve().parents[1]
GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
needs_glibc = pytest.mark.skipif(not GLIBC, reason="mallopt tuning exists only on glibc Linux")


def _child(code: str, tuning: str) -> dict:
    env = {**os.environ, "MSABENCH_MALLOC_TUNING": tuning, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins"),
                                          os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


FAULTS = r"""
import json, resource, torch
from msabench.allocator import keep_freed_memory
state = keep_freed_memory()
def churn():
    x = torch.empty(12_000_000)   # 48 MB: above glibc's largest dynamic mmap threshold
    x.fill_(1.0)
    del x
for _ in range(10):   # the heap settles (aligned blocks need a few spare copies first)
    churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    churn()
print(json.dumps({"state": state,
                  "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


@needs_glibc
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    """A 48 MB temporary allocated and freed again and again: glibc's default maps and unmaps
    it every time (about 11,700 page faults each), the tuning reuses heap blocks once the
    heap has settled."""
    default = _child(FAULTS, "0")
    kept = _child(FAULTS, "1")
    assert default["state"] == "off" and kept["state"] == "applied"
    assert default["faults"] > 10 * 10_000
    assert kept["faults"] < 1_000


TFN_RUN = r"""
import json, sys, tempfile
from msabench.progress import Progress
from msabench.runner import RunSpec, run
from msabench import allocator
overrides = json.loads(sys.argv[1]) if len(sys.argv) > 1 else []
with tempfile.TemporaryDirectory() as out:
    [o] = run(RunSpec(method="tfn", dataset="synthetic-mosi", seeds=[3], out=out, quiet=True,
                      threads=1, overrides=OVERRIDES), progress=Progress(quiet=True))
print(json.dumps({"state": allocator._applied, "test": o.test}))
"""


@needs_glibc
def test_run_keeps_freed_memory_and_the_numbers_do_not_change():
    """``run`` applies the tuning (``MSABENCH_MALLOC_TUNING=0`` turns it off), and a TFN run
    with MOSI's 140,481-wide fusion (18 MB temporaries per step) gives the same metrics, to
    the bit, either way."""
    overrides = [f"data.options.{k}={v}" for k, v in TINY_SYNTH.items()] + ["train.epochs=2"]
    code = TFN_RUN.replace("OVERRIDES", repr(overrides))
    default = _child(code, "0")
    kept = _child(code, "1")
    assert default["state"] == "off" and kept["state"] == "applied"
    assert kept["test"] == default["test"]


def test_the_tuning_is_a_no_op_when_switched_off(monkeypatch):
    from msabench import allocator

    monkeypatch.setattr(allocator, "_applied", None)
    monkeypatch.setenv(allocator.ENV, "off")
    assert allocator.keep_freed_memory() == "off"
    monkeypatch.setenv(allocator.ENV, "1")
    assert allocator.keep_freed_memory() == "off"   # decided once per process
