"""Training speed and memory of msabench's TFN and MulT against reference implementations.

    python benchmarks/bench_reference.py [--models tfn,mult] [--mult-batch 16]
                                         [--recipe-steps 1] [--repeats 3] [--threads 2]
                                         [--quick] [--glibc-malloc]

Side by side in one run, on identical MOSI-shaped unaligned batches (text 50 x 768, audio
375 x 5, vision 500 x 20, zero-padded with per-sample lengths, one full-length row per batch),
each method's MOSI default config, the same optimiser (Adam at the default lr), gradient clip
and step (zero_grad, forward, L1 loss, backward, clip, optimiser step):

- **msabench**: the method as the runner trains it (``Method.training_step``);
- **reference**: the independent re-implementations the tests compare against (imported, not
  copied): ``RefTFN`` (thuiar/MMSA TFN, ``tests/test_baselines_tfn_lmf.py``) and ``RefMULT``
  (yaohungt/Multimodal-Transformer, ``tests/test_baselines_mult.py``) with the same dropouts
  at the same places, starting from msabench's weights (strict state-dict load for MulT;
  parameter counts must be equal);
- **MMSA**: when the ``MMSA`` package is installed (``import MMSA``), its TFN and MULT built
  from the same config; otherwise one line says it was skipped.

What each side does per step, as written:

- tfn msabench: LSTM over the valid text steps (packed), masked time means of audio/vision.
  Reference/MMSA: LSTM over all 50 padded steps, plain time means over the padded audio/vision
  (MMSA's ``need_normalized``, computed inside the timed step).
- mult msabench: key padding masks, per-sample future-mask offsets, the last valid step; the
  batch runs in length groups cut to their valid steps (``fusions/mult.py``); CPU attention in
  blocks over the visible keys only, torch's flash kernel without dropout, a recomputing
  dropout kernel with it (``fusions/_transformer.py``). Reference: yaohungt's forward as
  written (no padding masks, every attention map materialised and kept for the backward pass).

Each (model, side, batch) runs in a fresh child process, with freed memory kept in the process
as ``msabench run`` does (``msabench/allocator.py``; ``--glibc-malloc``: glibc's defaults, for
every side alike): one warm-up step, whose peak memory
is reported -- the rise of the process's peak resident set over its resident set just before
the step (VmHWM - VmRSS, Linux ``/proc/self/status``; it counts every allocation, torch's
included) -- then ``--repeats`` rounds of ``--steps`` timed steps; the table shows the median
seconds per step. Seconds per epoch are EXTRAPOLATED from that fraction of an epoch:
s/step x 1284 / batch (the MOSI training split); samples/s = batch / s/step.

MulT at its recipe batch (128): the reference keeps every attention map for the backward pass
(~0.25 GiB per sample at these lengths, ~31 GiB at 128) and cannot run at 128 on a 24 GiB
machine, so both sides first run at ``--mult-batch`` (default 16); then msabench runs at 128
for ``--recipe-steps`` steps (one step = 1/10 of an epoch; by default the first step of the
process is the timed one, which includes first-step costs), and the reference's 128 row is
EXTRAPOLATED linearly from its ``--mult-batch`` run (time and memory per sample), marked "est.".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODELS = ("tfn", "mult", "mult-nodrop")
SIDES = ("msabench", "reference", "mmsa")
MULT_DROPOUTS = ("text_dropout", "embed_dropout", "attn_dropout", "attn_dropout_audio",
                 "attn_dropout_vision", "relu_dropout", "res_dropout", "out_dropout")
DIMS = {"text": 768, "audio": 5, "vision": 20}
STEPS = {"text": 50, "audio": 375, "vision": 500}
LOW = {"text": 10, "audio": 101, "vision": 120}   # shortest valid lengths (synthetic-mosi)
TRAIN_SAMPLES = 1284                              # CMU-MOSI training split
DEFAULT_STEPS = {"tfn": 8, "mult": 1, "mult-nodrop": 1}
RECIPE_BATCH = {"mult": 128, "mult-nodrop": 128}


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

    def step(self, batch):
        import torch

        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(batch)
        loss.backward()
        if self.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.clip)
        self.optimizer.step()
        return float(loss.detach())


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




# ------------------------------------------------------------------------------- MMSA
def mmsa_model(model: str, config: dict):
    """(MMSA module, forward(batch) -> pred) or (None, why it is skipped)."""
    try:
        import MMSA  # noqa: F401
    except ImportError:
        return None, "MMSA is not installed (pip install MMSA adds it to this table): skipped"
    try:
        from easydict import EasyDict

        from MMSA.models.singleTask import MULT as MMSAMult
        from MMSA.models.singleTask import TFN as MMSATfn

        m = config["model"]
        common = dict(feature_dims=list(DIMS.values()), need_data_aligned=False,
                      use_bert=False, train_mode="regression", num_classes=1)
        if model == "tfn":
            from tests.test_baselines_tfn_lmf import MMSA_CONFIG

            c = MMSA_CONFIG["tfn"]["mosi"]
            net = MMSATfn(EasyDict(common, hidden_dims=c["hidden_dims"],
                                   text_out=c["text_out"], dropouts=c["dropouts"],
                                   post_fusion_dim=c["post_fusion_dim"]))

            def forward(batch):
                f = batch.features
                return net(f["text"], f["audio"].mean(1, keepdim=True),
                           f["vision"].mean(1, keepdim=True))["M"].view(-1)
        else:
            ks = m["kernel_sizes"]
            net = MMSAMult(EasyDict(
                common, dst_feature_dim_nheads=[m["dim"], m["num_heads"]],
                nlevels=m["num_layers"], attn_dropout=m["attn_dropout"],
                attn_dropout_a=m["attn_dropout_audio"], attn_dropout_v=m["attn_dropout_vision"],
                relu_dropout=m["relu_dropout"], embed_dropout=m["embed_dropout"],
                res_dropout=m["res_dropout"], output_dropout=m["out_dropout"],
                text_dropout=m["text_dropout"], conv1d_kernel_size_l=ks["text"],
                conv1d_kernel_size_a=ks["audio"], conv1d_kernel_size_v=ks["vision"],
                attn_mask=m["attn_mask"]))

            def forward(batch):
                f = batch.features
                return net(f["text"], f["audio"], f["vision"])["M"].view(-1)
        return net, forward
    except Exception as exc:  # noqa: BLE001 -- any API drift: say so, do not fail the table
        version = getattr(sys.modules.get("MMSA"), "__version__", "?")
        return None, (f"MMSA {version} is installed but its {model.upper()} could not be built "
                      f"here ({type(exc).__name__}: {exc}): skipped")


# ------------------------------------------------------------------------------- one run
def one(model: str, side: str, batch_size: int, steps: int, repeats: int) -> dict:
    """Runs in a child process: build, warm-up step (peak memory), timed rounds."""
    import torch
    import torch.nn.functional as F

    ours, ref, train = sides(model)
    if side == "msabench":
        runner = ours
    elif side == "reference":
        runner = ref
    else:
        from msabench import config as cfg
        from msabench.plugins import get_registry

        cls = get_registry().load("method", "mult" if model.startswith("mult") else model)
        over = {"model": {k: 0.0 for k in MULT_DROPOUTS}} if model == "mult-nodrop" else {}
        net, forward = mmsa_model(model.split("-")[0], cfg.resolve(cls, "mosi", over))
        if net is None:
            return {"skipped": forward}
        clip = float(train.get("grad_clip", 0.0) or 0.0)
        runner = Side("mmsa", net, lambda b: F.l1_loss(forward(b), b.label),
                      torch.optim.Adam([p for p in net.parameters() if p.requires_grad],
                                       lr=float(train["lr"])), clip)
    params = sum(p.numel() for p in runner.module.parameters() if p.requires_grad)
    batches = make_batches(steps, batch_size, seed=1)
    runner.module.train()
    tracked = _reset_peak()
    base = _status_kib("VmRSS")
    start = time.perf_counter()
    runner.step(batches[0])
    warm = time.perf_counter() - start
    peak = (_status_kib("VmHWM") - base) / 1024 if tracked else float("nan")
    times = []  # repeats 0: the warm-up step is the timed one (first-step costs included)
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in batches:
            runner.step(batch)
        times.append((time.perf_counter() - start) / len(batches))
    return {"model": model, "side": side, "batch": batch_size, "steps": steps,
            "repeats": repeats, "s_step": statistics.median(times) if times else warm,
            "spread": [min(times or [warm]), max(times or [warm])], "warmup_s": warm,
            "peak_mib": peak, "params": params, "threads": torch.get_num_threads()}


def child(args, model: str, side: str, batch: int, steps: int, repeats: int) -> dict:
    cmd = [sys.executable, __file__, "--one", f"{model},{side},{batch},{steps},{repeats}",
           "--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"skipped": f"{model} {side} batch {batch} FAILED: {tail[:160]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tfn,mult",
                        help=f"comma-separated, from {', '.join(MODELS)}")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per round (default: tfn "
                             f"{DEFAULT_STEPS['tfn']}, mult {DEFAULT_STEPS['mult']})")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--mult-batch", type=int, default=16,
                        help="MulT batch run by every side (default 16)")
    parser.add_argument("--recipe-steps", type=int, default=1,
                        help="msabench MulT steps at the recipe batch 128 (0: skip)")
    parser.add_argument("--recipe-repeat", action="store_true",
                        help="time the 128 steps after a warm-up step (default: the first "
                             "step is timed and gives the memory, to halve the run)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 repeat, 2 TFN steps, MulT at batch 4, no 128 row")
    parser.add_argument("--glibc-malloc", action="store_true",
                        help="leave glibc's allocator at its defaults in every child (default: "
                             "every side keeps freed memory, as msabench run does; "
                             "msabench/allocator.py)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.glibc_malloc:
        os.environ["MSABENCH_MALLOC_TUNING"] = "0"   # inherited by the children
    if args.one:
        import torch

        from msabench.allocator import keep_freed_memory

        keep_freed_memory()   # every side alike (MSABENCH_MALLOC_TUNING=0: glibc defaults)
        torch.set_num_threads(args.threads)
        model, side, batch, steps, repeats = args.one.split(",")
        print(json.dumps(one(model, side, int(batch), int(steps), int(repeats))))
        return
    if args.quick:
        args.repeats, args.steps = 1, args.steps or 2
        args.mult_batch, args.recipe_steps = 4, 0

    from tabulate import tabulate

    rows, notes = [], []
    started = time.perf_counter()
    for model in args.models.split(","):
        if model not in MODELS:
            raise SystemExit(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
        steps = args.steps or DEFAULT_STEPS[model]
        batch = args.mult_batch if model.startswith("mult") else 32
        results = {}
        for side in SIDES:
            r = child(args, model, side, batch, steps, args.repeats)
            if "skipped" in r:
                notes.append(f"{model} {side}: {r['skipped']}")
                continue
            results[side] = r
        if "msabench" in results and "reference" in results and (
                results["msabench"]["params"] != results["reference"]["params"]):
            raise SystemExit(f"{model}: parameter counts differ: {results['msabench']['params']}"
                             f" vs {results['reference']['params']}")
        ref = results.get("reference")
        for side, r in results.items():
            rows.append(_row(r, ref, side, est=False))
        recipe = RECIPE_BATCH.get(model)
        if recipe and args.recipe_steps > 0 and recipe != batch:
            r = child(args, model, "msabench", recipe, args.recipe_steps,
                      1 if args.recipe_repeat else 0)
            if "skipped" in r:
                notes.append(r["skipped"])
            else:
                est = None
                if ref is not None:  # linear in the batch: per-sample time and memory
                    scale = recipe / ref["batch"]
                    est = dict(ref, batch=recipe, s_step=ref["s_step"] * scale,
                               peak_mib=ref["peak_mib"] * scale)
                rows.append(_row(r, est, "msabench", est=False))
                if est is not None:
                    rows.append(_row(est, est, "reference", est=True))
                    notes.append(f"{model} reference at batch {recipe}: EXTRAPOLATED linearly "
                                 f"from its batch-{ref['batch']} run (time and memory x "
                                 f"{recipe / ref['batch']:g}); it does not fit this machine")
        for side, r in results.items():
            notes.append(f"{model} {side} batch {r['batch']}: s/step over rounds "
                         f"{r['spread'][0]:.3f}-{r['spread'][1]:.3f}, warm-up step "
                         f"{r['warmup_s']:.2f} s, {r['params']:,} trainable parameters")
    print(tabulate(rows, headers=["model", "implementation", "batch", "steps x rounds",
                                  "s/step (median)", "s/epoch (extrap.)", "samples/s",
                                  "peak MiB", "time / reference", "memory / reference"],
                   tablefmt="github"))
    print(f"\ns/epoch is EXTRAPOLATED: median s/step x {TRAIN_SAMPLES} / batch (MOSI train "
          "split); one step = zero_grad, forward, L1 loss, backward, clip, optimiser step. "
          "Peak MiB: rise of the peak resident set (VmHWM) over the resident set before the "
          "first training step of a fresh process.")
    for note in notes:
        print(note)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    import torch

    print(f"torch threads {args.threads} (OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}), freed memory "
          f"{'returned (glibc defaults)' if args.glibc_malloc else 'kept (msabench run)'}, "
          f"{os.cpu_count()} CPUs, torch "
          f"{torch.__version__}, load average at the end {load:.1f}; "
          f"total {time.perf_counter() - started:.0f} s")


def _row(r: dict, ref: dict | None, side: str, est: bool) -> list:
    mark = " (est.)" if est else ""
    per_epoch = r["s_step"] * TRAIN_SAMPLES / r["batch"]
    name = {"msabench": "msabench", "reference": "reference (tests)", "mmsa": "MMSA"}[side]
    ratio_t = ratio_m = "-"
    if ref is not None and side != "reference":
        ratio_t = f"{r['s_step'] / ref['s_step']:.2f}"
        ratio_m = f"{r['peak_mib'] / ref['peak_mib']:.2f}" if ref["peak_mib"] > 0 else "-"
    steps = "-" if est else (f"{r['steps']} x {r['repeats']}" if r["repeats"]
                             else "first step")
    return [r["model"], name + mark, r["batch"], steps, f"{r['s_step']:.3f}{mark}",
            f"{per_epoch:.1f}{mark}", f"{r['batch'] / r['s_step']:.1f}{mark}",
            f"{r['peak_mib']:.0f}{mark}", ratio_t, ratio_m]


if __name__ == "__main__":
    main()
