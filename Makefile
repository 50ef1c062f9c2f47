# The README's two commands: `make demo` (main job + leaderboard) and `make test` (whole suite).
# Both set up a virtualenv from nothing; torch is pinned to the CPU build 2.13.0 first so that
# no CUDA wheels are pulled in.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PIN ?= torch==2.13.0
SEEDS ?= 1111,1112,1113,1114,1115

.PHONY: setup demo test leaderboard bench real-mosi real-mosi-baselines real-mosi-dec clean \
	boost-mtl-synthetic boost-mtl-mosi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q "$(TORCH_PIN)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

setup: $(VENV)/.installed

# main job: the sf baseline on the embedded SYNTHETIC dataset, 5 seeds, trained every time
# (--force) into a scratch results directory that git ignores, then its leaderboard printed.
# The committed leaderboards/ stay untouched.
DEMO_RESULTS ?= .demo/results
demo: setup
	$(BIN)/msabench run --method sf --dataset synthetic-mosi --seeds $(SEEDS) --out $(DEMO_RESULTS) --force
	$(BIN)/msabench leaderboard --results $(DEMO_RESULTS) --print

test: setup
	$(BIN)/python -m pytest -q -ra
	$(BIN)/msabench leaderboard --check

leaderboard: setup
	$(BIN)/msabench leaderboard

# real CMU-MOSI benchmarks from ../shared/data/mosi/mosi_utt.npz (docs/datasets.md)
DATA_DIR ?= ../shared/data
real-mosi: setup
	HF_HUB_OFFLINE=1 MSABENCH_DATA_DIR=$(DATA_DIR) $(BIN)/msabench run --method sf --dataset mosi --setting utt-bclstm --seeds $(SEEDS)
	HF_HUB_OFFLINE=1 MSABENCH_DATA_DIR=$(DATA_DIR) $(BIN)/msabench run --method sf --dataset mosi --setting utt-clean --seeds $(SEEDS)
	$(BIN)/msabench leaderboard

# every baseline on both real mosi settings, 5 seeds, with the tags of leaderboards/mosi.md
# (docs/baselines.md). mag-bert fine-tunes MiniLM for 40 epochs: ~22 min per seed (est.) on 2 CPU
# cores, minutes on a GPU (train.device=auto picks it).
MOSI_RUN = HF_HUB_OFFLINE=1 MSABENCH_DATA_DIR=$(DATA_DIR) $(BIN)/msabench run --dataset mosi --seeds $(SEEDS)
real-mosi-baselines: setup
	for st in utt-bclstm utt-clean; do \
	  for m in sf tfn lmf mult ef-lstm; do $(MOSI_RUN) --setting $$st --method $$m || exit 1; done; \
	  $(MOSI_RUN) --setting $$st --method ef-lstm --set train.weight_decay=0.0 --tag wd0 || exit 1; \
	  $(MOSI_RUN) --setting $$st --method mag-bert --set model.model=sentence-transformers/all-MiniLM-L6-v2 --tag minilm || exit 1; \
	done
	$(BIN)/msabench leaderboard

# dec-semi vs its transformer baseline at label fractions 0.4 and 1.0 (docs/dec-semi.md)
real-mosi-dec: setup
	for st in utt-bclstm utt-clean; do \
	  for m in transformer dec-semi; do for f in 0.4 1.0; do \
	    HF_HUB_OFFLINE=1 MSABENCH_DATA_DIR=$(DATA_DIR) $(BIN)/msabench run --method $$m --dataset mosi --setting $$st --label-fraction $$f --seeds $(SEEDS) || exit 1; \
	  done; done; \
	done
	$(BIN)/msabench leaderboard

# boost-mtl (docs/boost-mtl.md): three modes x three fusions, 5 seeds, on SYNTHETIC
# synthetic-sims2 (unimodal labels; fine-tuned MiniLM text + the synthetic audio/vision features
# through adapters) and on real MOSI utt-clean (fine-tuned MiniLM + openSMILE audio; no unimodal
# labels, so joint = single there and is not re-run). CPU budget (2 cores): only MiniLM's top
# layer is fine-tuned (finetune_layers=1), learning rates raised and epochs capped (the paper's
# 1e-4 / 1e-5 barely move the heads in so few epochs): see docs/boost-mtl.md.
BOOST_COMMON = --set model.encoders.text.options.model=sentence-transformers/all-MiniLM-L6-v2 \
  --set model.encoders.text.finetune_layers=1 --set train.lr=1e-3 --set model.encoder_lr=5e-5 \
  --threads 1
BOOST_SYN = --set data.options.n_train=160 --set data.options.n_valid=48 \
  --set data.options.n_test=96 --set data.options.audio_len=100 --set data.options.vision_len=50 \
  --set train.epochs=8 --set train.patience=3 --set pretrain.unimodal.epochs=5
BOOST_MOSI = --setting utt-clean --set train.epochs=6 --set train.patience=2 \
  --set pretrain.unimodal.epochs=6 --set pretrain.unimodal.patience=2
boost-mtl-synthetic: setup
	for f in concat tfn mult; do for mode in two-step single joint; do \
	  HF_HUB_OFFLINE=1 $(BIN)/msabench run --method boost-mtl --dataset synthetic-sims2 --seeds $(SEEDS) \
	    $(BOOST_COMMON) $(BOOST_SYN) --set model.mode=$$mode --set model.fusion=$$f --tag $$mode-$$f || exit 1; \
	done; done
	$(BIN)/msabench leaderboard
boost-mtl-mosi: setup
	for f in concat tfn mult; do for mode in two-step single; do \
	  HF_HUB_OFFLINE=1 MSABENCH_DATA_DIR=$(DATA_DIR) $(BIN)/msabench run --method boost-mtl --dataset mosi --seeds $(SEEDS) \
	    $(BOOST_COMMON) $(BOOST_MOSI) --set model.mode=$$mode --set model.fusion=$$f --tag $$mode-$$f || exit 1; \
	done; done
	$(BIN)/msabench leaderboard

bench: setup
	$(BIN)/python benchmarks/bench_core.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
