"""Several seeds in one pass: wall time of 5 vectorised seeds against 1 and 5 solo seeds.

    python benchmarks/bench_vectorize.py [--methods sf,lmf,ef-lstm] [--repeats 3]
                                         [--seeds 1111,1112,1113,1114,1115] [--threads 1]

Each method trains with its documented defaults (dropout and early stopping included) on
CMU-MOSI ``utt-bclstm`` (real data from ``--data-dir``, default ``../shared/data``); when that
file is absent, on ``synthetic-mosi`` (aligned) with the same shapes (1157/290/752 samples,
50-d text, one step per modality; audio and vision keep synthetic-mosi's 5 / 20 dimensions).
One untimed warm-up run per method loads torch's lazy modules and fills the OS cache; then, per
repeat, three timed runs of ``msabench.runner.run`` in this process, each into a fresh folder:
the first seed alone, the five seeds one after another, and the five seeds with
``train.vectorize``. Times are wall seconds of the whole run (data loading, training, per-epoch
validation, test evaluation, writing results); the table shows medians over the repeats.
The issue's target: vectorised 5 seeds at most 2x one solo seed for sf, lmf and ef-lstm.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

SYNTHETIC_UTT = {"n_train": 1157, "n_valid": 290, "n_test": 752, "text_dim": 50,
                 "text_len": 1, "audio_len": 1, "vision_len": 1}


def _spec(method: str, seeds: list[int], out: Path, data_dir: Path | None, vectorize: bool,
          threads: int, extra: list[str]):
    from msabench.config import parse_overrides
    from msabench.runner import RunSpec

    if data_dir is not None:
        sets = ['data.setting="utt-bclstm"']
        dataset = "mosi"
    else:
        sets = ['data.setting="aligned"'] + [f"data.options.{k}={v}"
                                             for k, v in SYNTHETIC_UTT.items()]
        dataset = "synthetic-mosi"
    sets += extra + (["train.vectorize=true"] if vectorize else [])
    return RunSpec(method=method, dataset=dataset, seeds=seeds, out=out, force=True,
                   quiet=True, data_dir=data_dir, overrides=parse_overrides(sets),
                   threads=threads)


def _timed(spec) -> tuple[float, list[int]]:
    import json

    from msabench.runner import run

    started = time.perf_counter()
    outcomes = run(spec)
    wall = time.perf_counter() - started
    epochs = [json.loads(o.path.read_text())["epochs_run"] for o in outcomes]
    return wall, epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default="sf,lmf,ef-lstm")
    parser.add_argument("--seeds", default="1111,1112,1113,1114,1115")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--set", action="append", default=[], dest="sets",
                        help="extra --set override for every run, e.g. train.epochs=10")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    data_dir = args.data_dir if (args.data_dir / "mosi" / "mosi_utt.npz").exists() else None
    where = (f"mosi/utt-bclstm ({data_dir})" if data_dir else
             "synthetic-mosi with utt-bclstm shapes (real file absent)")
    print(f"data: {where}; seeds {seeds}; {args.repeats} repeat(s); {args.threads} thread(s)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods.split(","):
            def go(seed_list, vectorize, tag):
                out = Path(tmp) / f"{method}-{tag}-{time.monotonic_ns()}"
                return _timed(_spec(method, seed_list, out, data_dir, vectorize,
                                    args.threads, args.sets))

            go(seeds[:1], False, "warm")
            solo1, solo5, vec5 = [], [], []
            epochs = {}
            for _ in range(args.repeats):
                wall, ep = go(seeds[:1], False, "solo1")
                solo1.append(wall)
                wall, ep = go(seeds, False, "solo5")
                solo5.append(wall)
                epochs["solo"] = ep
                wall, ep = go(seeds, True, "vec5")
                vec5.append(wall)
                epochs["vec"] = ep
                print(f"  {method}: solo1 {solo1[-1]:.1f}s solo5 {solo5[-1]:.1f}s "
                      f"vec5 {vec5[-1]:.1f}s epochs {epochs['vec']}", flush=True)
            m1, m5, v5 = (statistics.median(x) for x in (solo1, solo5, vec5))
            rows.append((method, len(seeds), m1, m5, v5, v5 / m1, v5 / m5,
                         epochs["vec"], epochs["solo"] == epochs["vec"]))
    print()
    print("| method | seeds | solo 1 seed s | solo 5 seeds s | vectorised 5 seeds s | "
          "vec5 / solo1 | vec5 / solo5 | epochs run per seed | same epochs as solo |")
    print("|---|---|---|---|---|---|---|---|---|")
    for method, n, m1, m5, v5, r1, r5, ep, same in rows:
        print(f"| {method} | {n} | {m1:.1f} | {m5:.1f} | {v5:.1f} | {r1:.2f} | {r5:.2f} | "
              f"{', '.join(map(str, ep))} | {'yes' if same else 'no (dropout draws)'} |")


if __name__ == "__main__":
    main()
