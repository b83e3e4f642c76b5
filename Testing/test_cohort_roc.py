"""ROC, AUC with DeLong CI, and the Youden cut-off against independent implementations and a published example.

Oracles: scikit-learn's roc_auc_score and roc_curve; DeLong's variance from placement values written
here as a plain double loop; the bootstrap standard error of the AUC; exact enumeration of every
cut-off (plain loops) for the Youden index, on hundreds of random samples with ties. Published:
Hanley & McNeil, Radiology 143:29-36, 1982 (Table 1: 109 CT images rated 1-5; AUC 0.893, SE 0.032).
"""

import numpy as np
import pytest
from scipy import stats

from SeedBrachyLib.cohort import roc
from SeedBrachyLib.errors import InputError

metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn is the oracle (test extra)")

#: Hanley & McNeil 1982, Table 1: counts of ratings 1 (definitely normal) .. 5 (definitely abnormal).
HM_NORMAL = (33, 6, 6, 11, 2)
HM_ABNORMAL = (3, 2, 2, 11, 33)


def _hanley_mcneil():
    x = np.r_[np.repeat(np.arange(1, 6), HM_ABNORMAL), np.repeat(np.arange(1, 6), HM_NORMAL)]
    y = np.r_[np.ones(sum(HM_ABNORMAL)), np.zeros(sum(HM_NORMAL))]
    return x.astype(float), y


def _delong_by_loops(x, y):
    pos, neg = x[y == 1], x[y == 0]
    psi = lambda a, b: 1.0 if a > b else 0.5 if a == b else 0.0  # noqa: E731
    v10 = [np.mean([psi(a, b) for b in neg]) for a in pos]
    v01 = [np.mean([psi(a, b) for a in pos]) for b in neg]
    return np.mean(v10), np.sqrt(np.var(v10, ddof=1) / len(pos) + np.var(v01, ddof=1) / len(neg))


def test_hanley_mcneil_published_example():
    x, y = _hanley_mcneil()
    res = roc.auc_delong(x, y)
    assert res["auc"] == pytest.approx(0.893, abs=5e-4)
    assert res["se"] == pytest.approx(0.032, abs=0.002)   # Hanley-McNeil's SE; DeLong's is another estimator
    assert res["ci_low"] == pytest.approx(res["auc"] - 1.959964 * res["se"])


@pytest.mark.parametrize("seed", range(40))
def test_auc_and_delong_against_sklearn_and_loops(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(12, 60))
    y = rng.random(n) < 0.6
    y[:2] = [True, False]
    x = np.round(rng.normal(100, 20, n) + 15 * y, int(rng.integers(-1, 2)))   # coarse rounding makes ties
    res = roc.auc_delong(x, y)
    assert res["auc"] == pytest.approx(metrics.roc_auc_score(y, x), abs=1e-12)
    auc, se = _delong_by_loops(x, y.astype(int))
    assert res["auc"] == pytest.approx(auc) and res["se"] == pytest.approx(se, rel=1e-9)
    fpr, tpr, thr = roc.roc_curve(x, y)
    sk_fpr, sk_tpr, _ = metrics.roc_curve(y, x, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)


def test_delong_se_agrees_with_the_bootstrap_se():
    rng = np.random.default_rng(11)
    y = np.r_[np.ones(60, bool), np.zeros(40, bool)]
    x = rng.normal(100, 20, 100) + 18 * y
    se = roc.auc_delong(x, y)["se"]
    pos = rng.choice(x[y], (4000, 60))
    neg = rng.choice(x[~y], (4000, 40))
    aucs = stats.mannwhitneyu(pos, neg, axis=1).statistic / (60 * 40)   # the AUC by scipy's U statistic
    assert se == pytest.approx(np.std(aucs, ddof=1), rel=0.08)


def _youden_by_enumeration(x, y):
    values = np.unique(x)
    best = (-np.inf, None)
    for lo, hi in zip(values[:-1], values[1:]):
        c = (lo + hi) / 2
        sens = sum(1 for a, b in zip(x, y) if b and a >= c) / sum(y)
        spec = sum(1 for a, b in zip(x, y) if not b and a < c) / (len(y) - sum(y))
        if sens + spec - 1 > best[0] + 1e-12:
            best = (sens + spec - 1, c, sens, spec)
    return best


@pytest.mark.parametrize("seed", range(300))
def test_youden_cutoff_equals_exact_enumeration(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(6, 50))
    y = rng.random(n) < rng.uniform(0.2, 0.8)
    y[:2] = [True, False]
    x = np.round(rng.normal(100, 15, n) + rng.uniform(0, 20) * y, int(rng.integers(-1, 2)))
    if np.unique(x).size < 2:
        x[0] += 1
    j, c, sens, spec = _youden_by_enumeration(list(x), list(y))
    got = roc.youden(x, y)
    assert got["youden_j"] == pytest.approx(j, abs=1e-12)
    assert got["cutoff"] == pytest.approx(c) and got["sensitivity"] == pytest.approx(sens)
    assert got["specificity"] == pytest.approx(spec)


def test_youden_batch_handles_many_rows_and_degenerate_rows():
    rng = np.random.default_rng(2)
    x = rng.normal(100, 15, (50, 30))
    y = rng.random((50, 30)) < 0.5
    y[:, :2] = [True, False]
    x[7] = 5.0   # one distinct value: no cut-off
    cut, j, _, _ = roc.youden_batch(x, y)
    assert np.isnan(cut[7]) and np.isnan(j[7])
    for i in (0, 1, 20, 49):
        assert cut[i] == pytest.approx(roc.youden(x[i], y[i])["cutoff"])


def test_bootstrap_cutoff_ci_contains_the_estimate_and_is_reproducible():
    rng = np.random.default_rng(4)
    y = rng.random(81) < 0.7
    x = rng.normal(100, 15, 81) + 20 * y
    a = roc.bootstrap(x, y, replicates=300, seed=1)
    assert a == roc.bootstrap(x, y, replicates=300, seed=1)
    assert a["cutoff_ci"][0] <= roc.youden(x, y)["cutoff"] <= a["cutoff_ci"][1]
    assert a["auc_ci"][0] < roc.auc_delong(x, y)["auc"] < a["auc_ci"][1]
    with pytest.raises(InputError, match="at least 100"):
        roc.bootstrap(x, y, replicates=10)


def test_rates_by_cutoff_counts_and_fisher():
    x = np.r_[np.full(65, 120.0), np.full(16, 90.0)]
    y = np.r_[np.ones(53), np.zeros(12), np.ones(5), np.zeros(11)].astype(bool)
    r = roc.rates_by_cutoff(x, y, 102.7)
    assert (r["n_above"], r["responders_above"], r["n_below"], r["responders_below"]) == (65, 53, 16, 5)
    assert r["rate_above"] == pytest.approx(0.8154, abs=1e-4) and r["rate_below"] == pytest.approx(0.3125)
    assert r["fisher_p"] == pytest.approx(stats.fisher_exact([[53, 12], [5, 11]])[1])


def test_roc_input_errors():
    with pytest.raises(InputError, match="responders and non-responders"):
        roc.auc_delong([1.0, 2.0], [1, 1])
    with pytest.raises(InputError, match="finite"):
        roc.youden([1.0, np.nan, 3.0], [1, 0, 1])
