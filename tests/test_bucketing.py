"""Length-aware batching: ``train.bucket_by_length`` in the shared loop, MAG-BERT's dynamic
padding against fixed ``model.pad_to`` padding, and the order without bucketing."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from msabench import config as cfg
from msabench.api import Recipe, SplitData
from msabench.bucketing import bucketed_order, default_lengths, sample_lengths
from msabench.errors import ConfigError
from msabench.runner import Progress, RunSpec, run
from msabench.training import epoch_order, fit
from tests.test_baselines_mag import _data as mag_data
from tests.test_baselines_mag import _method as mag_method
from tests.test_baselines_mag import tiny_bert  # noqa: F401  (fixture)

QUIET = Progress(quiet=True)


def _split(lengths: list[int]) -> SplitData:
    n = len(lengths)
    texts = [" ".join(["w"] * k) for k in lengths]
    return SplitData(ids=[f"s{i}" for i in range(n)], features={"text": torch.randn(n, 1, 3)},
                     lengths={"text": torch.ones(n, dtype=torch.long)},
                     labels=torch.linspace(-2, 2, n), texts=texts)


def _order_seen(split: SplitData, recipe: Recipe, seed: int = 7, module=None) -> list[list[str]]:
    """The sample ids of every training batch, in the order the loop draws them."""
    module = module if module is not None else nn.Linear(3, 1)
    seen: list[list[str]] = []

    def step(batch):
        seen.append(list(batch.ids))
        return module(batch.features["text"][:, 0]).sum() * 0.0, {}

    fit(module, split, step=step, optimizer=torch.optim.SGD(module.parameters(), lr=0.0),
        recipe=recipe, device=torch.device("cpu"), seed=seed)
    return seen


LENGTHS = [(7 * i) % 23 + 1 for i in range(100)]


def test_without_bucketing_the_loop_draws_todays_order():
    split = _split(LENGTHS)
    got = _order_seen(split, Recipe(epochs=2, batch_size=16, select=None))
    # the order before bucketing existed: one seeded permutation per epoch, cut in batches
    g = torch.Generator().manual_seed(7)
    want = []
    for _ in range(2):
        perm = torch.randperm(100, generator=g).tolist()
        want += [[f"s{i}" for i in perm[s:s + 16]] for s in range(0, 100, 16)]
    assert got == want
    explicit = _order_seen(split, Recipe(epochs=2, batch_size=16, select=None,
                                         bucket_by_length=False))
    assert explicit == want


def test_bucketing_sees_every_sample_once_in_length_homogeneous_seeded_batches():
    split = _split(LENGTHS)
    recipe = Recipe(epochs=3, batch_size=16, select=None, bucket_by_length=True)
    got = _order_seen(split, recipe)
    length = {f"s{i}": k for i, k in enumerate(LENGTHS)}
    per_epoch = len(got) // 3
    assert per_epoch == 7
    for e in range(3):
        batches = got[e * per_epoch:(e + 1) * per_epoch]
        ids = [i for b in batches for i in b]
        assert sorted(ids) == sorted(split.ids)          # every sample exactly once
        assert sorted(len(b) for b in batches) == [4] + [16] * 6
        padded = sum(len(b) * max(length[i] for i in b) for b in batches)
        assert padded < 1.25 * sum(LENGTHS)              # little padding (unbucketed: ~1.8x)
        spans = [max(length[i] for i in b) - min(length[i] for i in b) for b in batches]
        assert max(spans) <= 5
    # batches are not drawn shortest first, epochs differ, and the seed decides all of it
    first = [max(length[i] for i in b) for b in got[:per_epoch]]
    assert first != sorted(first)
    assert got[:per_epoch] != got[per_epoch:2 * per_epoch]
    assert _order_seen(split, recipe) == got
    assert _order_seen(split, recipe, seed=8) != got
    unbucketed = _order_seen(split, Recipe(epochs=1, batch_size=16, select=None))
    padded = sum(len(b) * max(length[i] for i in b) for b in unbucketed)
    assert padded > 1.5 * sum(LENGTHS)


def test_bucketed_order_pools_and_leftover():
    lengths = torch.tensor(LENGTHS)
    g = torch.Generator().manual_seed(0)
    batches = bucketed_order(lengths, 8, g, pool_batches=2)   # pools of 16 samples
    assert sorted(torch.cat(batches).tolist()) == list(range(100))
    assert sorted(len(b) for b in batches) == [4] + [8] * 12  # one short batch, not one per pool
    # each batch is sorted out of one pool: its samples lie in one 16-sample slice of the
    # epoch's permutation (the same generator state draws it)
    perm = torch.randperm(100, generator=torch.Generator().manual_seed(0)).tolist()
    pool_of = {i: perm.index(i) // 16 for i in range(100)}
    assert all(len({pool_of[i] for i in b.tolist()}) == 1 for b in batches)
    whole = bucketed_order(lengths, 8, torch.Generator().manual_seed(0), pool_batches=50)
    assert any(len({pool_of[i] for i in b.tolist()}) > 1 for b in whole)


def test_lengths_come_from_the_module_hook_else_the_transcripts():
    split = _split([3, 1, 2])
    assert default_lengths(split).tolist() == [3, 1, 2]
    no_texts = SplitData(ids=["a", "b"], features={"audio": torch.zeros(2, 5, 1)},
                         lengths={"audio": torch.tensor([5, 2])}, labels=torch.zeros(2))
    assert default_lengths(no_texts).tolist() == [5, 2]

    class Hooked(nn.Linear):
        def sample_lengths(self, split):
            return torch.tensor([9, 8, 7])

    assert sample_lengths(Hooked(1, 1), split).tolist() == [9, 8, 7]
    assert sample_lengths(nn.Linear(1, 1), split).tolist() == [3, 1, 2]

    class Wrong(nn.Linear):
        def sample_lengths(self, split):
            return torch.tensor([1])

    with pytest.raises(ValueError, match="1 lengths for a split of 3"):
        sample_lengths(Wrong(1, 1), split)



def test_the_loop_buckets_by_the_modules_own_lengths():
    """``fit`` asks the trained module for its lengths (MAG-BERT: word pieces), not the word
    counts: batches are homogeneous in the hook's lengths, which disagree with the words."""
    split = _split(LENGTHS)
    hooked_lengths = [(13 * i) % 29 + 1 for i in range(100)]   # unrelated to LENGTHS

    class Hooked(nn.Linear):
        def sample_lengths(self, split):
            return torch.tensor(hooked_lengths)

    recipe = Recipe(epochs=1, batch_size=16, select=None, bucket_by_length=True)
    got = _order_seen(split, recipe, module=Hooked(3, 1))
    hook = {f"s{i}": k for i, k in enumerate(hooked_lengths)}
    words = {f"s{i}": k for i, k in enumerate(LENGTHS)}

    def widest(lengths):
        return max(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in got)

    assert widest(hook) <= 5
    assert widest(words) > 10


@pytest.mark.parametrize("bucket", [False, True])
def test_epoch_order_is_the_loops_own_order(bucket):
    """``epoch_order`` (what benchmarks replay) gives exactly the batches ``fit`` trains, in
    order, epoch after epoch, with and without bucketing."""
    split = _split(LENGTHS)
    recipe = Recipe(epochs=3, batch_size=16, select=None, bucket_by_length=bucket)
    got = _order_seen(split, recipe)
    g = torch.Generator().manual_seed(7)
    lengths = sample_lengths(nn.Linear(3, 1), split) if bucket else None
    want = [[f"s{int(i)}" for i in index] for _ in range(3)
            for index in epoch_order(split, 16, g, lengths)]
    assert got == want and len(want) == 3 * 7


# ---------------------------------------------------------------- mag-bert padding
TEXTS = ["the movie was unbelievable", "not fun", "i liked it very very very much the movie",
         "great", "bad movie", "the fun was not great"]


def _mag(tiny_bert, **model):
    data = mag_data(TEXTS, {"audio": torch.randn(len(TEXTS), 1, 4),
                            "text": torch.randn(len(TEXTS), 1, 5)})
    return data, mag_method(data, tiny_bert, **model).eval()


def test_mag_bert_fixed_padding_gives_the_same_outputs(tiny_bert):  # noqa: F811
    data, dynamic = _mag(tiny_bert)
    _, fixed = _mag(tiny_bert, pad_to=50)
    fixed.load_state_dict(dynamic.state_dict())
    batch = data["train"].batch(torch.arange(len(TEXTS)))
    tokens_d, _ = dynamic.prepare_inputs(batch)
    tokens_f, mods_f = fixed.prepare_inputs(batch)
    assert tokens_d.shape[-1] < 50 and tokens_f.shape[-1] == 50 == mods_f["audio"].shape[1]
    assert torch.equal(tokens_f[:, :, :tokens_d.shape[-1]], tokens_d)
    assert int(tokens_f[:, 1, tokens_d.shape[-1]:].sum()) == 0    # only masked padding added
    with torch.no_grad():
        a, b = dynamic(batch)["pred"], fixed(batch)["pred"]
    assert (a - b).abs().max() < 1e-5
    # the hook bucketing sorts by: the word pieces of each transcript
    assert dynamic.sample_lengths(data["train"]).tolist() == tokens_d[:, 1].sum(-1).tolist()


def test_mag_bert_bad_pad_to_is_refused(tiny_bert):  # noqa: F811
    for bad in (0, "50", True):
        with pytest.raises(ConfigError, match=f"model.pad_to must be a positive integer.*"
                                              f"got {bad!r}"):
            _mag(tiny_bert, pad_to=bad)


# ---------------------------------------------------------------- runs
def test_a_run_with_bucketing_off_is_today_s_run(registry, tmp_path):
    spec = dict(method="sf", dataset="toy-data", quiet=True, epochs=3, seeds=[5])
    [base] = run(RunSpec(out=tmp_path / "a", **spec), registry=registry, progress=QUIET)
    [off] = run(RunSpec(out=tmp_path / "b", overrides=["train.bucket_by_length=false"], **spec),
                registry=registry, progress=QUIET)
    [on] = run(RunSpec(out=tmp_path / "c", overrides=["train.bucket_by_length=true"], **spec),
               registry=registry, progress=QUIET)
    a, b, c = (json.loads(o.path.read_text()) for o in (base, off, on))
    assert a["metrics"] == b["metrics"] and a["history"] == b["history"]
    assert a["config_hash"] == b["config_hash"] and c["config_hash"] != a["config_hash"]
    assert c["config"]["train"]["bucket_by_length"] is True
    assert c["history"] != a["history"]                 # other batches, other training
    # the default is out of the identity: a config written before the key has the same hash
    old = json.loads(json.dumps(a["config"]))
    del old["train"]["bucket_by_length"]
    assert cfg.config_hash(old) == a["config_hash"]
    with pytest.raises(ConfigError, match="train.bucket_by_length='yes' must be true or false"):
        run(RunSpec(out=tmp_path / "d", overrides={"train": {"bucket_by_length": "yes"}},
                    **spec), registry=registry, progress=QUIET)


def test_mag_bert_pad_to_default_keeps_the_config_hash():
    from msabench_builtins.methods.mag_bert import MAGBert

    config = cfg.resolve(MAGBert, "mosi")
    before = json.loads(json.dumps(config))
    del before["model"]["pad_to"]
    assert cfg.config_hash(before) == cfg.config_hash(config)
    assert cfg.config_hash(cfg.resolve(MAGBert, "mosi", {"model": {"pad_to": 50}})) \
        != cfg.config_hash(config)


def test_boost_mtl_buckets_by_its_text_encoder_word_pieces(tiny_bert):  # noqa: F811
    pytest.importorskip("av", reason="the boost-mtl test helpers generate media with PyAV")
    from tests.test_boost_mtl import FEATURES, _context, _data, _method

    data = _data()
    model = _method(data, mode="joint", encoders={
        **FEATURES, "text": {"extractor": "hf-text", "options": {"model": str(tiny_bert),
                                                                 "max_length": 12}}})
    train = data["train"]
    lengths = model.sample_lengths(train)
    mask = model.branches["text"].extractor.prepare(list(train.texts))["attention_mask"]
    assert lengths.tolist() == mask.sum(-1).tolist()
    assert _method(data, mode="joint").sample_lengths(train) is None   # no hf-text: default
    from msabench.training import fit_method

    context = _context(data, epochs=1, bucket_by_length=True)
    model.context = context
    fitted = fit_method(model, train, data["valid"], context)
    assert fitted.epochs_run == 1
