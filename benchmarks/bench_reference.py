"""Training speed of msabench's TFN and MulT against straightforward reference implementations.

    python benchmarks/bench_reference.py [--models tfn,mult] [--steps N] [--repeats 5]
                                         [--threads 2] [--mult-batch N] [--quick]

The references are the independent re-implementations the tests compare against (imported, not
copied): ``RefTFN`` (thuiar/MMSA TFN, ``tests/test_baselines_tfn_lmf.py``) and ``RefMULT``
(yaohungt/Multimodal-Transformer, ``tests/test_baselines_mult.py``). Both sides get the same
MOSI-shaped unaligned batches (text 50 x 768, audio 375 x 5, vision 500 x 20, zero-padded with
per-sample lengths), each method's MOSI default config (batch size included), the same
optimiser (Adam at the default lr) and gradient clipping, and the same step: zero_grad,
forward, L1 loss, backward, clip, optimiser step. Parameter counts must be equal.

What each side does per step, as written:

- tfn ours: LSTM over the valid text steps (packed), masked time means of audio/vision, dropout
  as configured. Reference: LSTM over all 50 padded steps, plain time means over the padded
  audio/vision (MMSA's ``need_normalized``, computed inside the timed step), same dropouts.
- mult ours: key padding masks, per-sample future-mask offsets, the last valid step, dropout
  as configured (CPU attention with dropout in batch chunks under activation checkpointing,
  so memory stays bounded at batch 128). Reference: yaohungt's forward as written (no padding
  masks, attention weights materialised and kept for the backward pass) with the same dropouts
  at the same places (text input, embeddings, attention weights by source modality, relu,
  residual, output). The reference starts from our weights (a strict state-dict load proves
  the same architecture).
- mult-nodrop: the same two models with every dropout 0 (ours then uses torch's fused
  attention kernel; the reference still materialises the weights).

Timing: one warm-up step per side, then ``--repeats`` rounds that alternate ours, reference,
ours, reference, ...; each round times ``--steps`` training steps; the table shows medians.
Seconds per epoch are EXTRAPOLATED: s/step x 1284 / batch (the MOSI training split). Peak
memory is the rise of the process's peak RSS (VmHWM, reset before each round) over the RSS at
the start of the round, max over rounds.

MulT at its MOSI default batch 128 does not fit a short CPU run: the reference keeps every
attention map for the backward pass (~0.13 GiB per sample at MOSI lengths, ~17 GiB at 128) and
one step takes over a minute per side on 2 cores. Unless ``--mult-batch`` is given, both sides
run the largest of 128, 64, 32, ... whose reference step fits ``--max-ref-gib`` (default half
of MemAvailable) and whose comparison fits ``--mult-seconds`` (default 150 s), estimated from a
probe step at batch 4; the table shows the batch used and the output says why.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODELS = ("tfn", "mult", "mult-nodrop")
MULT_DROPOUTS = ("text_dropout", "embed_dropout", "attn_dropout", "attn_dropout_audio",
                 "attn_dropout_vision", "relu_dropout", "res_dropout", "out_dropout")
DIMS = {"text": 768, "audio": 5, "vision": 20}
STEPS = {"text": 50, "audio": 375, "vision": 500}
LOW = {"text": 10, "audio": 101, "vision": 120}   # shortest valid lengths (synthetic-mosi)
TRAIN_SAMPLES = 1284                              # CMU-MOSI training split
DEFAULT_STEPS = {"tfn": 8, "mult": 1, "mult-nodrop": 1}
MULT_PROBE_BATCH = 4


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)
        return True
    except OSError:
        return False


def _mem_available_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


# ------------------------------------------------------------------------------- data
def make_batches(n_batches: int, batch_size: int, seed: int = 0):
    """MOSI-shaped unaligned batches: (msabench Batch, raw padded tensors, labels)."""
    import torch

    from msabench.api import Batch

    g = torch.Generator().manual_seed(seed)
    out = []
    for b in range(n_batches):
        duration = torch.distributions.Beta(2.0, 2.5).sample((batch_size,))
        feats, lengths = {}, {}
        for m, t in STEPS.items():
            frac = (duration + 0.08 * torch.randn(batch_size, generator=g)).clamp(0, 1)
            lens = (LOW[m] + torch.round(frac * (t - LOW[m]))).long()
            lens[0] = t  # one full-length row, as a real padded batch has
            x = torch.randn(batch_size, t, DIMS[m], generator=g)
            feats[m] = x * (torch.arange(t).unsqueeze(0) < lens.unsqueeze(1)).unsqueeze(-1)
            lengths[m] = lens
        label = torch.rand(batch_size, generator=g) * 6 - 3
        batch = Batch(ids=[f"{b}_{i}" for i in range(batch_size)], features=feats,
                      lengths=lengths, label=label,
                      labelled=torch.ones(batch_size, dtype=torch.bool))
        out.append(batch)
    return out


# ------------------------------------------------------------------------------- models
def _info():
    from msabench.api import DataInfo, DatasetMeta

    meta = DatasetMeta(name="mosi", title="MOSI-shaped (benchmark)", language="en",
                       label_range=(-3.0, 3.0), convention="mosi")
    return DataInfo(meta=meta, setting="unaligned", modalities=tuple(DIMS),
                    feature_dims=dict(DIMS), max_lengths=dict(STEPS), aligned=False,
                    has_unimodal_labels=False, has_texts=False)


def build(model: str):
    """(ours, reference, reference forward(batch) -> pred, train config) on MOSI defaults."""
    import torch

    from msabench import config as cfg
    from msabench.api import Components
    from msabench.plugins import get_registry

    registry = get_registry()
    nodrop = model == "mult-nodrop"
    cls = registry.load("method", "mult" if nodrop else model)
    over = {"model": {k: 0.0 for k in MULT_DROPOUTS}} if nodrop else {}
    config = cfg.resolve(cls, "mosi", over)
    torch.manual_seed(0)
    ours = cls(_info(), config["model"], Components(registry))
    torch.manual_seed(0)
    if model == "tfn":
        from tests.test_baselines_tfn_lmf import reference_tfn

        ref = reference_tfn("mosi")

        def ref_forward(batch):
            f = batch.features  # MMSA averages audio/vision over all (padded) steps
            return ref(f["text"], f["audio"].mean(1, keepdim=True),
                       f["vision"].mean(1, keepdim=True)).squeeze(-1)
    elif model in ("mult", "mult-nodrop"):
        from tests.test_baselines_mult import RefMULT, _our_name

        m = config["model"]
        ks = m["kernel_sizes"]
        ref = RefMULT(orig=tuple(DIMS.values()), d=m["dim"], heads=m["num_heads"],
                      layers=m["num_layers"], kernels=(ks["text"], ks["audio"], ks["vision"]),
                      dropout={k: float(m[k]) for k in MULT_DROPOUTS})
        theirs = {k: _our_name(k) for k in ref.state_dict()}
        ref.load_state_dict({k: ours.state_dict()[v] for k, v in theirs.items()}, strict=True)

        def ref_forward(batch):
            f = batch.features
            return ref(f["text"], f["audio"], f["vision"])
    else:
        raise SystemExit(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    return ours, ref, ref_forward, config["train"]


class Side:
    """One implementation: its model, optimiser and training step."""

    def __init__(self, name, module, loss, optimizer, clip):
        self.name, self.module, self.loss = name, module, loss
        self.optimizer, self.clip = optimizer, clip
        self.times: list[float] = []
        self.peak_mib = 0.0

    def step(self, batch):
        import torch

        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(batch)
        loss.backward()
        if self.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.clip)
        self.optimizer.step()
        return float(loss.detach())

    def round(self, batches):
        self.module.train()
        tracked = _reset_peak()
        base = _status_kib("VmRSS")
        start = time.perf_counter()
        for batch in batches:
            self.step(batch)
        self.times.append((time.perf_counter() - start) / len(batches))
        if tracked:
            self.peak_mib = max(self.peak_mib, (_status_kib("VmHWM") - base) / 1024)


def sides(model: str):
    import torch
    import torch.nn.functional as F

    ours, ref, ref_forward, train = build(model)
    lr, clip = float(train["lr"]), float(train.get("grad_clip", 0.0) or 0.0)
    # ours: the runner's step (Method.training_step: L1 on the labelled rows)
    a = Side("ours", ours, lambda b: ours.training_step(b)[0], ours.configure_optimizer(train),
             clip)
    r = Side("reference", ref, lambda b: F.l1_loss(ref_forward(b), b.label),
             torch.optim.Adam([p for p in ref.parameters() if p.requires_grad], lr=lr,
                              weight_decay=float(train.get("weight_decay", 0.0))), clip)
    return a, r, train


def mult_batch(model: str, default: int, budget_gib: float, budget_s: float, rounds: int,
               steps: int) -> tuple[int, str]:
    """The largest of default, default/2, ... whose reference step fits ``budget_gib`` and whose
    timed comparison (both sides, warm-up included) is expected to fit ``budget_s``.

    Both come from one probe step per side at batch ``MULT_PROBE_BATCH``, scaled linearly in
    the batch (time with a 1.5 safety factor: per-sample time grows at small batches)."""
    a, r, _ = sides(model)
    [probe] = make_batches(1, MULT_PROBE_BATCH, seed=99)
    a.round([probe])
    r.round([probe])
    gib = r.peak_mib / 1024 / MULT_PROBE_BATCH
    sec = 1.5 * (a.times[0] + r.times[0]) / MULT_PROBE_BATCH * (rounds * steps + 1)
    batch = default
    while batch > MULT_PROBE_BATCH and (gib * batch > budget_gib or sec * batch > budget_s):
        batch //= 2
    note = ""
    if batch != default:
        note = (f"{model}: batch {batch}, not the MOSI default {default}: at {default} the "
                f"reference step would need ~{gib * default:.0f} GiB (budget {budget_gib:.1f}) "
                f"and the comparison ~{sec * default / 60:.0f} min (budget {budget_s:.0f} s), "
                f"from a probe at batch {MULT_PROBE_BATCH}; --mult-batch {default} forces it")
    return batch, note


# ------------------------------------------------------------------------------- main
def bench(model: str, steps: int, repeats: int, batch_size: int | None):
    import torch

    ours, ref, train = sides(model)
    default_batch = int(train["batch_size"])
    batch_size = batch_size or default_batch
    batches = make_batches(steps, batch_size, seed=1)
    n_ours = ours.module.num_parameters()
    n_ref = sum(p.numel() for p in ref.module.parameters() if p.requires_grad)
    if n_ours != n_ref:
        raise SystemExit(f"{model}: parameter counts differ: ours {n_ours:,} vs reference "
                         f"{n_ref:,}")
    for side in (ours, ref):  # warm-up: one step each, not timed
        side.module.train()
        side.step(batches[0])
    for _ in range(repeats):
        ours.round(batches)
        ref.round(batches)
    med_ours, med_ref = statistics.median(ours.times), statistics.median(ref.times)
    per_epoch = TRAIN_SAMPLES / batch_size
    return {"model": model, "batch": batch_size, "default_batch": default_batch,
            "steps": steps, "repeats": repeats, "ours": med_ours, "ref": med_ref,
            "ratio": med_ours / med_ref, "epoch_ours": med_ours * per_epoch,
            "epoch_ref": med_ref * per_epoch, "params_ours": n_ours, "params_ref": n_ref,
            "peak_ours": ours.peak_mib, "peak_ref": ref.peak_mib,
            "spread_ours": (min(ours.times), max(ours.times)),
            "spread_ref": (min(ref.times), max(ref.times)), "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps timed per round and side (default: tfn "
                             f"{DEFAULT_STEPS['tfn']}, mult {DEFAULT_STEPS['mult']})")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--mult-batch", type=int, default=None,
                        help="MulT batch size for both sides (default: the MOSI default, "
                             "halved until --max-ref-gib and --mult-seconds fit)")
    parser.add_argument("--max-ref-gib", type=float, default=None,
                        help="memory budget of one reference MulT step (default: half of "
                             "MemAvailable)")
    parser.add_argument("--mult-seconds", type=float, default=150.0,
                        help="time budget of the MulT comparison used to pick its batch "
                             "(default 150)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run (~30 s): 2 repeats, 2 TFN steps, MulT at batch 4")
    args = parser.parse_args()
    if args.quick:
        args.repeats = min(args.repeats, 2)
        args.steps = args.steps or 2
        args.mult_batch = args.mult_batch or 4

    import torch
    from tabulate import tabulate

    torch.set_num_threads(args.threads)
    available = _mem_available_gib()
    budget = args.max_ref_gib or available / 2
    rows, notes = [], []
    started = time.perf_counter()
    for model in args.models.split(","):
        steps = args.steps or DEFAULT_STEPS.get(model, 2)
        batch = None
        if model.startswith("mult"):
            batch = args.mult_batch
            if batch is None:
                from msabench import config as cfg
                from msabench.plugins import get_registry

                default = int(cfg.resolve(get_registry().load("method", "mult"),
                                          "mosi")["train"]["batch_size"])
                batch, note = mult_batch(model, default, budget, args.mult_seconds, args.repeats,
                                         steps)
                if note:
                    notes.append(note)
        r = bench(model, steps, args.repeats, batch)
        batch_text = str(r["batch"]) + ("" if r["batch"] == r["default_batch"]
                                        else f" (default {r['default_batch']})")
        rows.append([r["model"], batch_text, f"{r['steps']} x {r['repeats']}",
                     f"{r['ours']:.3f}", f"{r['ref']:.3f}", f"{r['ratio']:.2f}",
                     f"{r['epoch_ours']:.1f}", f"{r['epoch_ref']:.1f}",
                     f"{r['params_ours']:,} / {r['params_ref']:,}",
                     f"{r['peak_ours']:.0f} / {r['peak_ref']:.0f}"])
        notes.append(f"{model}: s/step range over rounds: ours "
                     f"{r['spread_ours'][0]:.3f}-{r['spread_ours'][1]:.3f}, reference "
                     f"{r['spread_ref'][0]:.3f}-{r['spread_ref'][1]:.3f}")
    print(tabulate(rows, headers=["model", "batch", "steps x rounds", "s/step ours (median)",
                                  "s/step ref (median)", "ours/ref",
                                  "s/epoch ours (extrap.)", "s/epoch ref (extrap.)",
                                  "params ours / ref", "peak MiB ours / ref"],
                   tablefmt="github"))
    print(f"\ns/epoch is EXTRAPOLATED: median s/step x {TRAIN_SAMPLES} / batch (MOSI train "
          "split); one step = zero_grad, forward, L1 loss, backward, clip, optimiser step. "
          "Peak MiB: rise of peak RSS over the round's start, max over rounds.")
    for note in notes:
        print(note)
    print(f"torch threads {torch.get_num_threads()} (OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}), {os.cpu_count()} CPUs, torch "
          f"{torch.__version__}, MemAvailable at start {available:.1f} GiB; "
          f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
