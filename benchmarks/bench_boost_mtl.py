"""Seconds per epoch and peak memory of ``boost-mtl`` (issue 10 targets), and the frozen path's
feature cache.

    python benchmarks/bench_boost_mtl.py [--repeats 3] [--threads 2] [--skip-mosi]
                                         [--cases raw-tiny,mosi-minilm,frozen]
                                         [--data-dir ../shared/data]

Cases (each repeat of each case runs in a fresh child process, so ``ru_maxrss`` is its own
peak resident memory):

``raw-tiny``     one ``joint`` epoch (fine-tuning every encoder) on SYNTHETIC ``synthetic-sims2``
                 raw media (64 train clips, .wav + .mp4 decoded every batch) with tiny random
                 BERT / HuBERT / VideoMAE saved by ``save_pretrained`` (face crops on);
``mosi-minilm``  one ``joint`` epoch on real MOSI ``utt-clean`` (1284 train transcripts) with the
                 real MiniLM text encoder fine-tuned and the openSMILE audio / vision features
                 through adapters;
``frozen-1st`` / ``frozen-2nd``  ``finetune=false`` on the raw media: the setup (every clip
                 decoded and encoded once, written to the feature cache) plus one epoch, then the
                 same again in a new process reading the cache. The ratio is the target (>= 5x).

The table gives medians over repeats: setup seconds (frozen-feature caching), epoch seconds
(the shared loop, validation included), total and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time, torch
from pathlib import Path
sys.path.insert(0, {root!r})
case, workdir, threads, data_dir = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(threads)
from msabench.api import Components
from msabench.config import TRAIN_DEFAULTS
from msabench.plugins import get_registry
from msabench.runner import metric_classes
from msabench.training import LoopContext, fit_method, seed_everything
reg = get_registry()
if case == "mosi-minilm":
    data = reg.load("dataset", "mosi")(setting="utt-clean", data_dir=data_dir).load()
    enc = {{"text": {{"extractor": "hf-text", "options": {{
        "model": "sentence-transformers/all-MiniLM-L6-v2", "max_length": 50}}}}}}
else:
    opts = {{"n_train": 64, "n_valid": 16, "n_test": 16, "label_source": "builtin"}}
    data = reg.load("dataset", "synthetic-sims2")(setting="raw", options=opts).load()
    models = json.loads((workdir / "models.json").read_text())
    enc = {{"text": {{"extractor": "hf-text", "options": {{"model": models["text"],
                                                        "max_length": 16}}}},
           "audio": {{"extractor": "hf-audio", "options": {{"model": models["audio"]}}}},
           "vision": {{"extractor": "hf-video", "options": {{"model": models["vision"],
                       "size": 32, "face": "opencv"}}}}}}
cls = reg.load("method", "boost-mtl")
config = {{**cls.defaults["model"], "mode": "joint", "encoders": enc,
          "finetune": not case.startswith("frozen")}}
train = {{**TRAIN_DEFAULTS, **cls.defaults["train"], "epochs": 1}}
seed_everything(0)
model = cls(data.info(), config, Components(reg))
model.context = LoopContext(device=torch.device("cpu"), seed=0, train=train,
                            metric_classes=metric_classes(reg, data.meta.convention))
t0 = time.perf_counter()
model.setup(data)
t1 = time.perf_counter()
fit_method(model, data["train"], data["valid"], model.context)
t2 = time.perf_counter()
print(json.dumps({{"setup_s": t1 - t0, "epoch_s": t2 - t1,
                  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def tiny_models(workdir: Path) -> None:
    """Tiny random BERT / HuBERT / VideoMAE directories (``save_pretrained``)."""
    import torch
    from transformers import (BertConfig, BertModel, BertTokenizerFast, HubertConfig,
                              HubertModel, VideoMAEConfig, VideoMAEImageProcessor, VideoMAEModel,
                              Wav2Vec2FeatureExtractor)

    torch.manual_seed(0)
    words = ["the", "a", "was", "is", "okay", "good", "bad", "great", "terrible", "fine"]
    vocab = workdir / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words) + "\n")
    BertModel(BertConfig(vocab_size=15, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=37)).save_pretrained(
        workdir / "bert")
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(workdir / "bert")
    HubertModel(HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=37, conv_dim=(16, 16, 16),
                             conv_stride=(5, 4, 4), conv_kernel=(10, 4, 4),
                             num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
                ).save_pretrained(workdir / "hubert")
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000).save_pretrained(
        workdir / "hubert")
    VideoMAEModel(VideoMAEConfig(image_size=32, patch_size=16, num_frames=4, tubelet_size=2,
                                 hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=37)).save_pretrained(workdir / "videomae")
    VideoMAEImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
                           ).save_pretrained(workdir / "videomae")
    (workdir / "models.json").write_text(json.dumps({
        "text": str(workdir / "bert"), "audio": str(workdir / "hubert"),
        "vision": str(workdir / "videomae")}))


def run_case(case: str, workdir: Path, cache: Path, args: argparse.Namespace) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MSABENCH_CACHE_DIR": str(cache),
           "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT)), case,
                           str(workdir), str(args.threads), str(args.data_dir)],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"case {case} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-mosi", action="store_true")
    parser.add_argument("--cases", default="raw-tiny,mosi-minilm,frozen",
                        help="comma-separated subset of raw-tiny, mosi-minilm, frozen")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    wanted = {c.strip() for c in args.cases.split(",") if c.strip()}
    unknown = wanted - {"raw-tiny", "mosi-minilm", "frozen"}
    if unknown:
        parser.error(f"unknown case(s) {sorted(unknown)}: choose from raw-tiny, mosi-minilm, frozen")
    from tabulate import tabulate

    rows, medians = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        tiny_models(workdir)
        cases = ["raw-tiny"] if "raw-tiny" in wanted else []
        if ("mosi-minilm" in wanted and not args.skip_mosi
                and (args.data_dir / "mosi" / "mosi_utt.npz").is_file()):
            cases.append("mosi-minilm")
        # the media and the MOSI text features are generated/cached once before timing
        warm = workdir / "warm-cache"
        warm_cases = cases + (["raw-tiny"] if "frozen" in wanted and "raw-tiny" not in cases
                              else [])  # the frozen cases read the media raw-tiny generates
        for case in warm_cases:
            run_case(case, workdir, warm, argparse.Namespace(**{**vars(args), "threads": 2}))
        for case in cases:
            got = [run_case(case, workdir, warm, args) for _ in range(args.repeats)]
            medians[case] = {k: statistics.median(g[k] for g in got) for k in got[0]}
        first, second = [], []
        for r in range(args.repeats if "frozen" in wanted else 0):  # a fresh feature cache each repeat (media kept)
            cache = workdir / f"frozen-{r}"
            cache.mkdir()
            os.symlink(warm / "synthetic", cache / "synthetic")
            first.append(run_case("frozen-1st", workdir, cache, args))
            second.append(run_case("frozen-2nd", workdir, cache, args))
        for name, got in (("frozen-1st", first), ("frozen-2nd", second)):
            if not got:
                continue
            medians[name] = {k: statistics.median(g[k] for g in got) for k in got[0]}
    for case, m in medians.items():
        rows.append([case, f"{m['setup_s']:.2f}", f"{m['epoch_s']:.2f}",
                     f"{m['setup_s'] + m['epoch_s']:.2f}", f"{m['rss_mib']:.0f}"])
    print(f"boost-mtl, joint mode, one epoch; medians of {args.repeats} repeats, "
          f"{args.threads} torch thread(s)")
    print(tabulate(rows, headers=["case", "setup s", "epoch s", "total s", "peak RSS MiB"],
                   tablefmt="github"))
    if "frozen-1st" not in medians:
        return
    a, b = medians["frozen-1st"], medians["frozen-2nd"]
    print(f"\nfrozen path: second run {(a['setup_s'] + a['epoch_s']) / (b['setup_s'] + b['epoch_s']):.1f}x "
          f"faster in total, setup {a['setup_s'] / max(b['setup_s'], 1e-9):.1f}x (target >= 5x)")


if __name__ == "__main__":
    main()
