"""The built-in metric plugins against an independent numpy / scipy / scikit-learn reference.

The references below re-state the conventions of ``docs/metrics.md`` the way the reference code
(thuiar/MMSA, thuiar/ch-sims-v2) computes them: on float32 arrays (MMSA casts its labels to
float32 and models emit float32), with ``np.clip``, ``np.round`` (half to even), ``np.digitize``
for the (lo, hi] bins, ``accuracy_score`` / ``f1_score(average="weighted")`` / ``r2_score`` and
``scipy.stats.pearsonr``. The metrics receive the same values widened to float64, which is what
``Metric.update`` hands them.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, r2_score

from msabench.api import ComponentMeta, Metric
from msabench.plugins import get_registry
from msabench_builtins import MOSI_METRICS, SIMS_METRICS
from msabench_builtins.metrics import functional as F
from msabench_builtins.metrics import mosi, sims
from msabench_builtins.metrics.functional import MetricWarning

MOSI_KEYS = ["acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc7", "acc5", "acc3", "mae",
             "corr"]
SIMS_KEYS = ["acc2", "acc3", "acc5", "f1", "acc2_weak", "mae", "corr", "r2"]

MOSI_FN = {
    "acc2_has0": F.mosi_acc2_has0, "f1_has0": F.mosi_f1_has0, "acc2_non0": F.mosi_acc2_non0,
    "f1_non0": F.mosi_f1_non0, "acc7": F.mosi_acc7, "acc5": F.mosi_acc5, "acc3": F.mosi_acc3,
    "mae": F.mosi_mae, "corr": F.mosi_corr,
}
SIMS_FN = {
    "acc2": F.sims_acc2, "acc3": F.sims_acc3, "acc5": F.sims_acc5, "f1": F.sims_f1,
    "acc2_weak": F.sims_acc2_weak, "mae": F.sims_mae, "corr": F.sims_corr, "r2": F.sims_r2,
}

# real label grids: MOSI labels are means of integer ratings in [-3, 3] (steps 0.2, 0.25, 1/3),
# CH-SIMS labels are means of 5 ratings in {-1, 0, 1} (steps of 0.2)
MOSI_GRID = np.unique(np.concatenate([
    np.arange(-15, 16) * 0.2, np.arange(-12, 13) * 0.25, np.arange(-9, 10) / 3.0,
]).astype(np.float32))
SIMS_GRID = (np.arange(-5, 6) * 0.2).astype(np.float32)
SIMS_EDGES = [-0.7, -0.4, -0.1, 0.0, 0.1, 0.4, 0.7]


# ---------------------------------------------------------------------------------------------
# independent references (numpy / scipy / scikit-learn)


def _pearson_ref(p: np.ndarray, t: np.ndarray) -> float:
    p, t = np.asarray(p, np.float64), np.asarray(t, np.float64)
    if len(t) < 2 or np.all(p == p[0]) or np.all(t == t[0]):
        return 0.0  # the convention: undefined correlation is reported as 0.0
    return float(stats.pearsonr(p, t).statistic)


def ref_mosi(p: np.ndarray, t: np.ndarray, dt=np.float32) -> dict[str, float]:
    # dt: the precision of the discrete decisions (the reference code's arrays are float32)
    p32, t32 = p.astype(dt), t.astype(dt)
    out = {}
    for key, bound in (("acc7", 3.0), ("acc5", 2.0), ("acc3", 1.0)):
        pr = np.round(np.clip(p32, -bound, bound))
        tr = np.round(np.clip(t32, -bound, bound))
        out[key] = float(np.mean(pr == tr))
    out["mae"] = float(np.mean(np.abs(p.astype(np.float64) - t.astype(np.float64))))
    out["corr"] = _pearson_ref(p, t)
    out["acc2_has0"] = float(accuracy_score(t32 >= 0, p32 >= 0))
    out["f1_has0"] = float(f1_score(t32 >= 0, p32 >= 0, average="weighted"))
    nz = t32 != 0
    if nz.any():
        out["acc2_non0"] = float(accuracy_score(t32[nz] > 0, p32[nz] > 0))
        out["f1_non0"] = float(f1_score(t32[nz] > 0, p32[nz] > 0, average="weighted"))
    else:
        out["acc2_non0"] = out["f1_non0"] = math.nan
    return out


def _digitize(x32: np.ndarray, inner_edges) -> np.ndarray:
    # (lo, hi] bins, compared in the array's precision (float32 in the reference code)
    return np.digitize(x32, np.asarray(inner_edges, dtype=x32.dtype), right=True)


def ref_sims(p: np.ndarray, t: np.ndarray, dt=np.float32) -> dict[str, float]:
    p32 = np.clip(p.astype(dt), -1.0, 1.0)
    t32 = np.clip(t.astype(dt), -1.0, 1.0)
    p64 = np.clip(p.astype(np.float64), -1.0, 1.0)
    t64 = np.clip(t.astype(np.float64), -1.0, 1.0)
    out = {}
    for key, edges in (("acc2", [0.0]), ("acc3", [-0.1, 0.1]),
                       ("acc5", [-0.7, -0.1, 0.1, 0.7])):
        out[key] = float(accuracy_score(_digitize(t32, edges), _digitize(p32, edges)))
    out["f1"] = float(f1_score(_digitize(t32, [0.0]), _digitize(p32, [0.0]), average="weighted"))
    weak = (t32 >= dt(-0.4)) & (t32 <= dt(0.4))
    out["acc2_weak"] = (float(accuracy_score(_digitize(t32[weak], [0.0]),
                                             _digitize(p32[weak], [0.0])))
                        if weak.any() else math.nan)
    out["mae"] = float(np.mean(np.abs(p64 - t64)))
    out["corr"] = _pearson_ref(p64, t64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["r2"] = float(r2_score(t64, p64))
    return out


def ours(fns: dict, p: np.ndarray, t: np.ndarray) -> dict[str, float]:
    pt = torch.from_numpy(np.asarray(p, dtype=np.float64))
    tt = torch.from_numpy(np.asarray(t, dtype=np.float64))
    out = {}
    for key, fn in fns.items():
        value = fn(pt, tt)
        assert isinstance(value, torch.Tensor) and value.dtype == torch.float64
        assert value.dim() == 0
        out[key] = float(value)
    return out


def assert_same(got: dict[str, float], want: dict[str, float], keys=None) -> None:
    for key in keys or want:
        g, w = got[key], want[key]
        if math.isnan(w):
            assert math.isnan(g), f"{key}: got {g}, want NaN"
        else:
            assert g == pytest.approx(w, rel=1e-12, abs=1e-12), f"{key}: got {g}, want {w}"


# ---------------------------------------------------------------------------------------------
# random inputs on the real label grids


def mosi_sample(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = rng.choice(MOSI_GRID, size=n)
    p = rng.uniform(-4.5, 4.5, size=n).astype(np.float32)
    # sprinkle exact ties: zero predictions, predictions equal to the label, exact halves
    # (round-half-to-even ties), values far outside the clip range
    k = max(1, n // 10)
    p[rng.choice(n, k)] = 0.0
    idx = rng.choice(n, k)
    p[idx] = t[idx]
    p[rng.choice(n, k)] = rng.choice(np.float32([-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5]), k)
    p[rng.choice(n, k)] = rng.choice(np.float32([-7.0, -3.0001, 3.0001, 9.0]), k)
    return p, t


def sims_sample(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = rng.choice(SIMS_GRID, size=n)
    p = rng.uniform(-1.5, 1.5, size=n).astype(np.float32)
    k = max(1, n // 8)
    p[rng.choice(n, k)] = rng.choice(np.float32(SIMS_EDGES + [-1.0, 1.0]), k)
    idx = rng.choice(n, k)
    p[idx] = t[idx]
    p[rng.choice(n, k)] = rng.choice(np.float32([-3.0, -1.01, 1.01, 2.5]), k)
    # a few labels outside [-1, 1] too (clipped before everything)
    t[rng.choice(n, max(1, n // 50))] = np.float32(1.3)
    return p, t


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("n", [5, 37, 400])
def test_mosi_random_matches_reference(seed, n):
    p, t = mosi_sample(seed, n)
    want = ref_mosi(p, t)
    degenerate = np.all(t == t[0]) or np.all(p == p[0]) or not np.any(t != 0)
    with warnings.catch_warnings():
        if not degenerate:
            warnings.simplefilter("error", MetricWarning)
        else:
            warnings.simplefilter("ignore", MetricWarning)
        got = ours(MOSI_FN, p, t)
    assert_same(got, want)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("n", [5, 37, 400])
def test_sims_random_matches_reference(seed, n):
    p, t = sims_sample(seed, n)
    want = ref_sims(p, t)
    pc, tc = np.clip(p, -1, 1), np.clip(t, -1, 1)
    degenerate = (np.all(tc == tc[0]) or np.all(pc == pc[0])
                  or not np.any(np.abs(tc) <= np.float32(0.4)))
    with warnings.catch_warnings():
        if not degenerate:
            warnings.simplefilter("error", MetricWarning)
        else:
            warnings.simplefilter("ignore", MetricWarning)
        got = ours(SIMS_FN, p, t)
    assert_same(got, want)


@pytest.mark.parametrize("seed", range(4))
def test_float64_inputs_off_the_grid(seed):
    """Continuous float64 values (no float32 origin) agree with an all-float64 reference: the
    float32 decisions only matter for values within float32 rounding of a tie or an edge."""
    rng = np.random.default_rng(100 + seed)
    p = rng.uniform(-4.5, 4.5, 300)
    t = rng.uniform(-3.5, 3.5, 300)
    assert_same(ours(MOSI_FN, p, t), ref_mosi(p, t, dt=np.float64))
    assert_same(ours(SIMS_FN, p / 3, t / 3), ref_sims(p / 3, t / 3, dt=np.float64))


# ---------------------------------------------------------------------------------------------
# exact conventions on hand-made cases


def t64(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_torch_round_is_half_to_even_like_numpy():
    x = np.array([-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 0.49999997, 2.5000002])
    assert np.array_equal(torch.round(torch.from_numpy(x)).numpy(), np.round(x))
    assert np.array_equal(torch.round(torch.from_numpy(x.astype(np.float32))).numpy(),
                          np.round(x.astype(np.float32)))


def test_mosi_rounding_ties_and_clipping():
    # 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> 0, -2.5 -> -2 (half to even)
    p = t64(0.5, 1.5, 2.5, -0.5, -2.5, -1.5)
    t = t64(0.0, 2.0, 2.0, 0.0, -2.0, -2.0)
    assert float(F.mosi_acc7(p, t)) == 1.0
    # half-away-from-zero would get 2.5 -> 3, 0.5 -> 1: check those are counted wrong
    assert float(F.mosi_acc7(t64(0.5, 2.5), t64(1.0, 3.0))) == 0.0
    # clipping: 4.2 -> 3 matches 3 under acc7; 2.7 -> 2 under acc5, 1.4 -> 1 under acc3
    assert float(F.mosi_acc7(t64(4.2, -9.0), t64(3.0, -3.0))) == 1.0
    assert float(F.mosi_acc5(t64(2.7, -2.6), t64(3.0, -2.2))) == 1.0
    assert float(F.mosi_acc3(t64(1.4, -0.6, 0.4), t64(2.8, -2.0, -0.4))) == 1.0
    # but MAE and Corr use unclipped values
    assert float(F.mosi_mae(t64(4.0, -4.0), t64(3.0, -3.0))) == 1.0


def test_mosi_ties_at_zero():
    # pred == 0 and label == 0: has0 -> both non-negative (correct); non0 drops the sample
    p = t64(0.0, 0.0, -0.2, 0.3)
    t = t64(0.0, 1.0, 0.0, -1.0)
    assert float(F.mosi_acc2_has0(p, t)) == pytest.approx(2 / 4)  # samples 0, 1 right
    # non0 keeps samples 1 and 3: pred 0 is not > 0 -> negative (wrong), 0.3 vs -1 wrong
    assert float(F.mosi_acc2_non0(p, t)) == 0.0
    assert_same(ours(MOSI_FN, p.numpy(), t.numpy()), ref_mosi(p.numpy(), t.numpy()))


def test_mosi_all_zero_labels_give_nan_non0_with_warning():
    p = t64(0.5, -0.5, 0.0, 2.0)
    t = t64(0.0, 0.0, 0.0, 0.0)
    for fn in (F.mosi_acc2_non0, F.mosi_f1_non0):
        with pytest.warns(MetricWarning, match="every label is 0"):
            assert math.isnan(float(fn(p, t)))
    with pytest.warns(MetricWarning) as record:
        got = ours(MOSI_FN, p.numpy(), t.numpy())
    messages = " ".join(str(w.message) for w in record)
    assert "constant" in messages and "every label is 0" in messages
    assert_same(got, ref_mosi(p.numpy(), t.numpy()))
    assert got["acc2_has0"] == 0.75 and got["corr"] == 0.0


@pytest.mark.parametrize("const", [0.0, 1.7, -3.0])
def test_constant_predictions_corr_is_zero_with_warning(const):
    p, t = mosi_sample(3, 50)
    p[:] = const
    with pytest.warns(MetricWarning, match="constant"):
        assert float(F.mosi_corr(torch.from_numpy(p).double(), torch.from_numpy(t).double())) == 0.0
    with pytest.warns(MetricWarning):
        got = ours(MOSI_FN, p, t)
    assert_same(got, ref_mosi(p, t))
    # and for SIMS: predictions that are all clipped to the same value are constant too
    sp, st = sims_sample(3, 50)
    sp[:] = 5.0
    with pytest.warns(MetricWarning, match="constant"):
        got = ours(SIMS_FN, sp, st)
    assert got["corr"] == 0.0
    assert_same(got, ref_sims(sp, st))


def test_corr_constant_labels_and_tiny_inputs():
    with pytest.warns(MetricWarning, match="constant"):
        assert float(F.mosi_corr(t64(0.1, 0.2, 0.3), t64(0.2, 0.2, 0.2))) == 0.0
    with pytest.warns(MetricWarning, match="constant"):
        assert float(F.mosi_corr(t64(0.1), t64(0.2))) == 0.0
    # an inexact mean of identical values must not produce a spurious +-1
    with pytest.warns(MetricWarning):
        assert float(F.sims_corr(t64(0.1, 0.1, 0.1), t64(0.2, 0.4, 0.6))) == 0.0


def test_weighted_f1_single_class_cases_match_sklearn():
    cases = [
        ([True] * 5, [True] * 5),
        ([True] * 5, [False] * 5),
        ([True] * 4 + [False], [True] * 5),
        ([False] * 5, [True, False, True, False, False]),
        ([True, False, True], [False, True, False]),
    ]
    for y_true, y_pred in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = f1_score(y_true, y_pred, average="weighted")
        got = float(F.weighted_f1(torch.tensor(y_true), torch.tensor(y_pred)))
        assert got == pytest.approx(want, rel=1e-15, abs=0), (y_true, y_pred)
    # multi-class integer labels, including a class only predicted and one never predicted
    rng = np.random.default_rng(7)
    for _ in range(20):
        y_true = rng.integers(0, 4, 30)
        y_pred = rng.integers(1, 6, 30)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = f1_score(y_true, y_pred, average="weighted")
        got = float(F.weighted_f1(torch.from_numpy(y_true), torch.from_numpy(y_pred)))
        assert got == pytest.approx(want, rel=1e-14, abs=1e-15)


def test_mosi_f1_one_class_in_truth_or_predictions():
    p = t64(0.5, 1.0, 2.0, -1.0)
    t = t64(1.0, 2.0, 0.4, 3.0)  # all positive
    assert_same(ours(MOSI_FN, p.numpy(), t.numpy()), ref_mosi(p.numpy(), t.numpy()))
    p = t64(-0.5, -1.0, -2.0, -1.0)  # all predicted negative
    t = t64(1.0, -2.0, 0.4, 3.0)
    got = ours(MOSI_FN, p.numpy(), t.numpy())
    assert_same(got, ref_mosi(p.numpy(), t.numpy()))
    assert got["f1_has0"] == pytest.approx(0.25 * (2 * 1 / (1 + 4)))


def mmsa_bins(x32: np.ndarray, ms: list[float]) -> np.ndarray:
    """The reference code's own loop (MMSA __eval_sims_regression), for the edge cases."""
    out = x32.copy()
    for i in range(len(ms) - 1):
        out[np.logical_and(x32 > np.float32(ms[i]), x32 <= np.float32(ms[i + 1]))] = i
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sims_bin_edges_are_lo_exclusive_hi_inclusive(dtype):
    edges_values = [-1.0, -0.7, -0.4, -0.1, 0.0, 0.1, 0.4, 0.7, 1.0]
    x = np.array(edges_values, dtype=dtype)
    xt = torch.from_numpy(x.astype(np.float64))
    # each edge value belongs to the bin it closes: (lo, hi]
    want3 = [0, 0, 0, 0, 1, 1, 2, 2, 2]
    want5 = [0, 0, 1, 1, 2, 2, 3, 3, 4]
    want2 = [0, 0, 0, 0, 0, 1, 1, 1, 1]
    for n, want in ((2, want2), (3, want3), (5, want5)):
        got = F._sims_bin(xt, F.SIMS_BINS[n], -1).tolist()
        assert got == want, (n, got)
        ms = [-1.01, *F.SIMS_BINS[n], 1.01]
        assert mmsa_bins(x.astype(np.float32), ms).astype(int).tolist() == want
    # predictions exactly on the edges vs labels on the SIMS grid
    p = np.array([-0.7, -0.1, 0.1, 0.7, 0.0, -0.4, 0.4, -0.7], dtype=dtype)
    t = np.array([-0.8, -0.2, 0.0, 0.6, 0.0, -0.4, 0.4, -0.6], dtype=dtype)
    p, t = torch.from_numpy(p).double(), torch.from_numpy(t).double()
    assert float(F.sims_acc5(p, t)) == 7 / 8  # -0.7 is in [-1, -0.7], -0.6 in (-0.7, -0.1]
    assert float(F.sims_acc3(p, t)) == 1.0
    assert float(F.sims_acc2(p, t)) == 7 / 8  # 0.1 is positive, 0.0 is not
    assert_same(ours(SIMS_FN, p.numpy(), t.numpy()), ref_sims(p.numpy(), t.numpy()))


def test_sims_float32_and_float64_spellings_agree():
    """0.4 stored as float32 is 0.40000000596 in float64; both must land in the same bins."""
    rng = np.random.default_rng(11)
    p32 = rng.choice(np.float32(SIMS_EDGES + [0.2, -0.2, 0.6, 1.0]), 300)
    t32 = rng.choice(SIMS_GRID, 300)
    from_f32 = ours(SIMS_FN, p32.astype(np.float64), t32.astype(np.float64))
    # the same decimal values, spelled in float64 directly
    p64 = np.array([float(f"{v:.6g}") for v in p32])
    t64_ = np.array([float(f"{v:.6g}") for v in t32])
    from_f64 = ours(SIMS_FN, p64, t64_)
    for key in ("acc2", "acc3", "acc5", "f1", "acc2_weak"):
        assert from_f32[key] == from_f64[key], key
    assert_same(from_f32, ref_sims(p32, t32))


def test_sims_acc2_weak_subset():
    # labels +-0.4 are weak (closed interval), +-0.6 are not; zero counts as negative
    p = t64(0.3, -0.1, 0.0, 0.5, 0.9, -0.9)
    t = t64(0.4, -0.4, 0.0, 0.2, 0.6, -0.6)
    # weak samples: 0..3 -> preds bins 1,0,0,1 vs labels 1,0,0,1
    assert float(F.sims_acc2_weak(p, t)) == 1.0
    assert float(F.sims_acc2_weak(-p, t)) == pytest.approx(1 / 4)  # only 0.0 vs 0.0 right
    # no label in [-0.4, 0.4] -> NaN with a warning
    with pytest.warns(MetricWarning, match="weak subset is empty"):
        assert math.isnan(float(F.sims_acc2_weak(t64(0.1, 0.2), t64(0.6, -1.0))))
    # labels outside [-1, 1] are clipped first: -3 -> -1 (not weak)
    assert float(F.sims_acc2_weak(t64(0.1, 0.1), t64(-3.0, 0.2))) == 1.0


def test_sims_zero_counts_as_negative():
    assert float(F.sims_acc2(t64(0.0, -0.3), t64(-0.2, 0.0))) == 1.0
    assert float(F.sims_acc2(t64(0.0), t64(0.2))) == 0.0
    # while MOSI has0 counts zero as non-negative
    assert float(F.mosi_acc2_has0(t64(0.0), t64(0.2))) == 1.0


def test_sims_clipping_before_mae_corr_r2():
    p = t64(2.0, -3.0, 0.5)
    t = t64(1.0, -1.0, 0.0)
    assert float(F.sims_mae(p, t)) == pytest.approx(0.5 / 3)
    assert float(F.mosi_mae(p, t)) == pytest.approx((1.0 + 2.0 + 0.5) / 3)
    assert float(F.sims_r2(p, t)) == pytest.approx(1 - 0.25 / 2.0)
    assert_same(ours(SIMS_FN, p.numpy(), t.numpy()), ref_sims(p.numpy(), t.numpy()))


@pytest.mark.parametrize("label", [0.0, 1.0, -1.0, 0.5, 3.0])
def test_r2_constant_labels_follow_sklearn_force_finite(label):
    t = np.full(6, label)
    for p in (np.full(6, np.clip(label, -1, 1)), np.linspace(-0.5, 0.5, 6)):
        want = r2_score(np.clip(t, -1, 1), np.clip(p, -1, 1))  # force_finite=True default
        with pytest.warns(MetricWarning, match="labels are constant"):
            got = float(F.sims_r2(torch.from_numpy(p), torch.from_numpy(t)))
        assert got == want


def test_r2_constant_labels_inexact_mean():
    # 0.2 repeated: sklearn's mean is inexact, SS_tot is ~1e-33 and it returns ~-1e31;
    # msabench applies the force_finite rule to every exactly constant label vector
    t = torch.full((7,), 0.2, dtype=torch.float64)
    with pytest.warns(MetricWarning):
        assert float(F.sims_r2(t.clone(), t)) == 1.0
    with pytest.warns(MetricWarning):
        assert float(F.sims_r2(t + 0.1, t)) == 0.0


def test_r2_single_sample_is_nan():
    with pytest.warns(MetricWarning, match="fewer than two"):
        assert math.isnan(float(F.sims_r2(t64(0.3), t64(0.2))))


@pytest.mark.parametrize("fn", list(MOSI_FN.values()) + list(SIMS_FN.values()))
def test_empty_input_is_nan_with_warning(fn):
    with pytest.warns(MetricWarning):
        value = fn(torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.float64))
    assert value.dtype == torch.float64 and value.dim() == 0 and math.isnan(float(value))


@pytest.mark.parametrize("fn", list(MOSI_FN.values()) + list(SIMS_FN.values()))
def test_shape_mismatch_raises(fn):
    with pytest.raises(ValueError):
        fn(torch.zeros(3, dtype=torch.float64), torch.zeros(4, dtype=torch.float64))


def test_nan_prediction_is_never_correct():
    p = t64(math.nan, 0.2)
    t = t64(0.0, 0.2)
    for fn in (F.mosi_acc7, F.mosi_acc5, F.mosi_acc3, F.sims_acc2, F.sims_acc3, F.sims_acc5):
        assert float(fn(p, t)) == 0.5
    # even where the reference code would call NaN "negative" (NaN >= 0 is false)
    p, t = t64(math.nan, 0.2), t64(-0.2, 0.4)
    for fn in (F.mosi_acc2_has0, F.mosi_acc2_non0, F.sims_acc2_weak):
        assert float(fn(p, t)) == 0.5
    # for F1 the NaN prediction is a class of its own with no labels: only the 0.2 counts
    assert float(F.mosi_f1_has0(p, t)) == pytest.approx(0.5 * 1.0 + 0.5 * 0.0)
    assert float(F.sims_f1(t64(math.nan, 0.2), t64(-0.2, 0.4))) == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------------
# the plugin classes: registry, attributes, torchmetrics state


EXPECTED = {
    "mosi": {
        "mosi-acc2-has0": ("acc2_has0", True, False, True),
        "mosi-acc2-non0": ("acc2_non0", True, False, True),
        "mosi-f1-has0": ("f1_has0", True, False, True),
        "mosi-f1-non0": ("f1_non0", True, False, True),
        "mosi-acc7": ("acc7", True, True, True),
        "mosi-acc5": ("acc5", True, True, True),
        "mosi-acc3": ("acc3", True, True, True),
        "mosi-mae": ("mae", False, True, False),
        "mosi-corr": ("corr", False, True, True),
    },
    "sims": {
        "sims-acc2": ("acc2", True, False, True),
        "sims-acc2-weak": ("acc2_weak", True, False, True),
        "sims-f1": ("f1", True, False, True),
        "sims-acc3": ("acc3", True, True, True),
        "sims-acc5": ("acc5", True, True, True),
        "sims-mae": ("mae", False, True, False),
        "sims-corr": ("corr", False, True, True),
        "sims-r2": ("r2", False, True, True),
    },
}  # name -> (key, percent, needs_regression, higher_is_better)


def _all_metric_classes():
    classes = []
    for mod, table in ((mosi, MOSI_METRICS), (sims, SIMS_METRICS)):
        classes += [getattr(mod, cls_name) for cls_name in table.values()]
    return classes


def test_registry_names_match_classes_and_keys_are_unique_per_convention():
    registry = get_registry()
    names = set(registry.names("metric"))
    assert set(MOSI_METRICS) | set(SIMS_METRICS) <= names
    by_convention: dict[str, list[str]] = {}
    for name in sorted(names):
        cls = registry.load("metric", name)
        assert cls.name == name
        assert issubclass(cls, Metric)
        for conv in cls.conventions:
            by_convention.setdefault(conv, []).append(cls.key)
    for conv, keys in by_convention.items():
        assert len(keys) == len(set(keys)), (conv, keys)
    assert sorted(by_convention["mosi"]) == sorted(MOSI_KEYS)
    assert sorted(by_convention["sims"]) == sorted(SIMS_KEYS)


@pytest.mark.parametrize("conv", ["mosi", "sims"])
def test_class_attributes(conv):
    registry = get_registry()
    orders = []
    for name, (key, percent, needs_reg, hib) in EXPECTED[conv].items():
        cls = registry.load("metric", name)
        assert cls.conventions == (conv,)
        assert (cls.key, cls.percent, cls.needs_regression, cls.higher_is_better) == \
            (key, percent, needs_reg, hib), name
        assert isinstance(cls.display, str) and cls.display
        assert isinstance(cls.meta, ComponentMeta) and cls.meta.summary
        info = cls.info()
        assert info["metric"] == name and info["display"] == cls.display
        orders.append(cls.order)
    # the dict above is in leaderboard column order
    assert orders == sorted(orders) and len(set(orders)) == len(orders)
    displays = {registry.load("metric", n).display for n in EXPECTED[conv]}
    assert len(displays) == len(EXPECTED[conv])


def test_display_titles():
    assert mosi.Acc2Has0.display == "Acc2-has0" and mosi.F1Non0.display == "F1-non0"
    assert sims.Acc2Weak.display == "Acc2-weak" and sims.R2.display == "R2"
    assert mosi.MAE.display == "MAE" and sims.Corr.display == "Corr"


@pytest.mark.parametrize("cls", _all_metric_classes(), ids=lambda c: c.name)
@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric:UserWarning")
def test_stateful_batches_equal_functional_on_concatenation(cls):
    if "mosi" in cls.conventions:
        p, t = mosi_sample(21, 90)
    else:
        p, t = sims_sample(21, 90)
    metric = cls()
    with pytest.raises(ValueError):
        metric.compute()
    # uneven batches, float32 and 2-D (N, 1) inputs as a model would emit them
    for lo, hi in ((0, 7), (7, 50), (50, 51), (51, 90)):
        metric.update(torch.from_numpy(p[lo:hi]).reshape(-1, 1), torch.from_numpy(t[lo:hi]))
    value = metric.compute()
    want = cls.functional(torch.from_numpy(p).double(), torch.from_numpy(t).double())
    assert value.dtype == torch.float64 and value.dim() == 0
    assert torch.equal(value, want)
    # reset, then a different stream
    metric.reset()
    with pytest.raises(ValueError):
        metric.compute()
    p2, t2 = p[::-1][:40].copy(), t[:40].copy()
    metric.update(torch.from_numpy(p2[:15]), torch.from_numpy(t2[:15]))
    metric.update(torch.from_numpy(p2[15:]), torch.from_numpy(t2[15:]))
    assert torch.equal(metric.compute(),
                       cls.functional(torch.from_numpy(p2).double(), torch.from_numpy(t2).double()))


@pytest.mark.parametrize("cls", [mosi.Acc7, mosi.Corr, sims.R2, sims.Acc2Weak],
                         ids=lambda c: c.name)
def test_forward_returns_batch_value_and_accumulates(cls):
    rng = np.random.default_rng(5)
    grid = MOSI_GRID if "mosi" in cls.conventions else SIMS_GRID
    t = torch.from_numpy(rng.choice(grid, 60)).double()
    p = t + torch.from_numpy(rng.normal(0, 0.5, 60))
    metric = cls()
    first = metric(p[:30], t[:30])
    assert torch.equal(first, cls.functional(p[:30], t[:30]))
    metric(p[30:], t[30:])
    assert torch.equal(metric.compute(), cls.functional(p, t))


def test_update_shape_mismatch_raises():
    metric = mosi.MAE()
    with pytest.raises(ValueError):
        metric.update(torch.zeros(3), torch.zeros(4))
