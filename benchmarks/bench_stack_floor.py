"""The arithmetic floor of a vectorised run: what K stacked seeds cost per layer on this CPU.

    python benchmarks/bench_stack_floor.py [--seeds 5] [--batch 32] [--threads 1]

`--vectorize` (docs/vectorize.md) can only save the per-call overhead of running K small models
one after another; the arithmetic of K models remains. This script times, for the layer shapes
of the vectorised baselines on MOSI ``utt-bclstm`` (sf: 150 -> 128 -> 128; lmf's
subnetworks), one training step's worth of a layer (forward and backward) in three ways:

``solo``     one seed's layer (``F.linear`` / ``F.dropout``)
``K solo``   K seeds one after another (what K solo runs do)
``vmap``     K seeds in one ``torch.func.vmap`` call (what the stacked loop runs)
``bmm``      K seeds in one batched ``torch.baddbmm`` (a hand-grouped layer; linear only)

and prints medians in microseconds and ratios to ``solo``. When ``bmm / solo`` is near K the
layer is bound by its arithmetic, not by call overhead, and no stacking of K seeds can make
a step cheaper than about K solo steps on this machine: the issue's "five seeds at most 2x
one seed" is then out of reach for those shapes whatever the stacking code does (a GPU, where
such layers are bound by kernel launches, is where stacking pays).
"""

from __future__ import annotations

import argparse
import statistics
import time


def timed(fn, repeats: int = 7, inner: int = 200) -> float:
    for _ in range(20):
        fn()
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(inner):
            fn()
        runs.append((time.perf_counter() - started) / inner * 1e6)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F
    from torch.func import vmap

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    k, b = args.seeds, args.batch
    shapes = [("sf layer 1 (150 -> 128)", 150, 128), ("sf layer 2 (128 -> 128)", 128, 128),
              ("lmf text/vision subnet (50 -> 128)", 50, 128),
              ("lmf audio subnet (50 -> 16)", 50, 16)]
    rows = []
    for name, n_in, n_out in shapes:
        x = torch.randn(b, n_in)
        w = torch.randn(n_out, n_in, requires_grad=True)
        bias = torch.randn(n_out, requires_grad=True)
        xs = torch.randn(k, b, n_in)
        ws = torch.randn(k, n_out, n_in, requires_grad=True)
        bs = torch.randn(k, n_out, requires_grad=True)
        # K solo runs hold K separate weights (slicing one stacked tensor would make each
        # backward write a full K-sized gradient)
        xl = [x.clone() for x in xs]
        wl = [w.detach().clone().requires_grad_() for w in ws]
        bl = [v.detach().clone().requires_grad_() for v in bs]

        def solo():
            F.linear(x, w, bias).sum().backward()

        def k_solo():
            for i in range(k):
                F.linear(xl[i], wl[i], bl[i]).sum().backward()

        def stacked_vmap():
            vmap(F.linear)(xs, ws, bs).sum().backward()

        def stacked_bmm():
            torch.baddbmm(bs.unsqueeze(1), xs, ws.transpose(1, 2)).sum().backward()

        times = [timed(f) for f in (solo, k_solo, stacked_vmap, stacked_bmm)]
        rows.append((f"linear fwd+bwd, {name}", *times))
    h = torch.randn(b, 128)
    hs = torch.randn(k, b, 128)
    hl = [t.clone() for t in hs]
    times = [timed(lambda: F.dropout(h, 0.2, True)),
             timed(lambda: [F.dropout(t, 0.2, True) for t in hl]),
             timed(lambda: vmap(lambda t: F.dropout(t, 0.2, True), randomness="different")(hs)),
             float("nan")]
    rows.append(("dropout 0.2 (x 128)", *times))

    a, c = torch.randn(512, 512), torch.randn(512, 512)
    gflops = 2 * 512 ** 3 / timed(lambda: a @ c, inner=20) / 1e3
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {b}, K = {k} seeds; "
          f"medians of 7 x 200 calls, microseconds; a 512^3 float32 matmul runs at "
          f"{gflops:.0f} GFLOP/s here")
    print(f"| layer | solo us | {k} solo us | vmap {k} us | bmm {k} us | {k} solo / solo | "
          f"vmap / solo | bmm / solo |")
    print("|---|---|---|---|---|---|---|---|")
    for name, s, ks, v, bm in rows:
        print(f"| {name} | {s:.0f} | {ks:.0f} | {v:.0f} | "
              + ("n/a" if bm != bm else f"{bm:.0f}")
              + f" | {ks / s:.2f} | {v / s:.2f} | "
              + ("n/a" if bm != bm else f"{bm / s:.2f}") + " |")


if __name__ == "__main__":
    main()
