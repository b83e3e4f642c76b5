"""Logistic regression against independent implementations; separation and Firth's fit against closed forms.

Oracles: scikit-learn's unpenalised LogisticRegression (lbfgs) for the coefficients, statsmodels'
GLM (Binomial, IRLS: another code path than Logit's Newton) for the standard errors, a generic
optimiser on Firth's penalised log-likelihood written out here, and the closed form of Firth's
estimate for one binary covariate: the log odds ratio of the 2 x 2 table with 0.5 added to every
cell (the Haldane-Anscombe correction; Firth 1993, Heinze & Schemper 2002).
"""

import warnings

import numpy as np
import pytest
from scipy import optimize, stats
from scipy.special import expit

from SeedBrachyLib.cohort import logistic
from SeedBrachyLib.errors import InputError

sklearn = pytest.importorskip("sklearn.linear_model", reason="scikit-learn is the oracle (test extra)")


def _data(rng, n=120, k=3):
    X = rng.normal(size=(n, k)) * [20, 1, 5][:k] + [110, 0, 30][:k]
    eta = -0.5 + 0.08 * (X[:, 0] - 110) + (0.6 * X[:, 1] if k > 1 else 0)
    return X, (rng.random(n) < expit(eta)).astype(int)


@pytest.mark.parametrize("seed", range(8))
def test_ml_fit_matches_scikit_learn_and_glm(seed):
    import statsmodels.api as sm

    X, y = _data(np.random.default_rng(seed))
    fit = logistic.fit(X, y, ["d90", "x", "size"])
    assert fit.method == logistic.ML_METHOD and not logistic.separated(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)   # penalty=None: the plain likelihood
        sk = sklearn.LogisticRegression(penalty=None, tol=1e-12, max_iter=10000).fit(X, y)
    np.testing.assert_allclose(fit.coef, np.r_[sk.intercept_, sk.coef_[0]], rtol=1e-4, atol=1e-5)
    glm = sm.GLM(y, sm.add_constant(X), family=sm.families.Binomial()).fit()
    np.testing.assert_allclose(np.sqrt(np.diag(fit.cov)), glm.bse, rtol=1e-4)
    z = stats.norm.ppf(0.975)
    row = fit.odds_ratios()[0]
    assert row["odds_ratio"] == pytest.approx(np.exp(glm.params[1]), rel=1e-5)
    assert row["ci_low"] == pytest.approx(np.exp(glm.params[1] - z * glm.bse[1]), rel=1e-4)
    assert row["p"] == pytest.approx(glm.pvalues[1], rel=1e-3)


def test_prediction_band_is_the_delta_method_on_the_linear_predictor():
    X, y = _data(np.random.default_rng(3), k=1)
    fit = logistic.fit(X, y, ["d90"])
    grid = np.array([[90.0], [110.0], [140.0]])
    p, lo, hi = fit.predict(grid)
    A = np.c_[np.ones(3), grid]
    se = np.sqrt(np.sum(A @ fit.cov * A, axis=1))
    np.testing.assert_allclose(p, expit(A @ fit.coef))
    np.testing.assert_allclose(lo, expit(A @ fit.coef - 1.959964 * se), rtol=1e-6)
    assert np.all(lo < p) and np.all(p < hi)


def test_separation_detection_complete_quasi_and_none():
    x = np.arange(10.0)
    assert logistic.separated(x, x >= 5)                                     # complete
    assert logistic.separated(np.r_[x, 4.0], np.r_[x >= 5, True])          # quasi-complete: a tie at 4
    assert not logistic.separated(x, np.r_[0, 0, 1, 0, 0, 1, 0, 1, 1, 1])
    # separation only by a combination of two variables
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    assert logistic.separated(X, X[:, 0] + X[:, 1] > 0) and not logistic.separated(X[:, :1], X[:, 0] + X[:, 1] > 0)


@pytest.mark.parametrize("table", [((12, 0), (5, 9)), ((7, 3), (0, 10)), ((15, 1), (6, 6))])
def test_firth_one_binary_covariate_equals_the_haldane_corrected_log_odds_ratio(table):
    (a, b), (c, d) = table   # rows x = 1 / x = 0; columns event / no event
    x = np.r_[np.ones(a + b), np.zeros(c + d)]
    y = np.r_[np.ones(a), np.zeros(b), np.ones(c), np.zeros(d)]
    coef, cov, ci, p = logistic.firth_fit(x, y)
    assert coef[1] == pytest.approx(np.log((a + 0.5) * (d + 0.5) / ((b + 0.5) * (c + 0.5))), abs=1e-7)
    assert coef[0] == pytest.approx(np.log((c + 0.5) / (d + 0.5)), abs=1e-7)
    assert ci[1, 0] < coef[1] < ci[1, 1]


def test_firth_matches_a_generic_optimiser_and_its_ci_ends_are_at_the_chi2_quantile():
    """Penalised likelihood written out here (on standardised columns, an equivalent parametrisation) and
    maximised by BFGS: the estimate agrees, and at each profile CI end the re-maximised deviance is chi2(1, 0.95)."""
    rng = np.random.default_rng(5)
    X = np.c_[np.r_[rng.normal(90, 8, 10), rng.normal(125, 8, 20)], rng.normal(30, 8, 30)]
    y = np.r_[np.zeros(10), np.ones(20)]
    X[:10, 0] = np.minimum(X[:10, 0], 104)
    X[10:, 0] = np.maximum(X[10:, 0], 105)   # completely separated by D90
    mu, sd = X.mean(0), X.std(0)
    A = np.c_[np.ones(30), (X - mu) / sd]

    def neg_penalised(g):
        eta = A @ g
        p = expit(eta)
        penalty = 0.5 * np.linalg.slogdet(A.T @ ((p * (1 - p))[:, None] * A))[1]
        return -(np.sum(y * eta - np.logaddexp(0, eta)) + penalty)

    coef, cov, ci, pvals = logistic.firth_fit(X, y)
    ref = optimize.minimize(neg_penalised, np.zeros(3), method="BFGS", options=dict(gtol=1e-9))
    np.testing.assert_allclose(coef[1:], ref.x[1:] / sd, rtol=1e-5)
    for j in (1, 2):
        for end in ci[j]:
            best = min(optimize.minimize(lambda b, j=j, end=end: neg_penalised(np.insert(b, j, end * sd[j - 1])),
                                         start, method="BFGS", options=dict(gtol=1e-9)).fun
                       for start in (np.delete(ref.x, j), np.zeros(2)))
            assert 2 * (best - ref.fun) == pytest.approx(stats.chi2.ppf(0.95, 1), abs=1e-4)
        free = 2 * (optimize.minimize(lambda b, j=j: neg_penalised(np.insert(b, j, 0.0)), np.delete(ref.x, j),
                                      method="BFGS").fun - ref.fun)
        assert pvals[j] == pytest.approx(stats.chi2.sf(free, 1), rel=1e-3)


def test_separated_outcome_is_fitted_by_firth_and_says_so():
    x = np.r_[np.linspace(70, 100, 12), np.linspace(101, 150, 20)]
    y = np.r_[np.zeros(12), np.ones(20)]
    fit = logistic.fit(x, y, ["D90"], label="objective response")
    assert fit.method == logistic.FIRTH_METHOD
    assert any("perfectly separated" in n and "Firth" in n for n in fit.notes)
    row = fit.odds_ratios()[0]
    assert np.isfinite(row["odds_ratio"]) and row["odds_ratio"] > 1 and row["ci_low"] > 1


def test_too_few_events_is_a_clear_error():
    x = np.arange(30.0)
    y = np.zeros(30)
    y[[3, 17, 25, 28]] = 1
    with pytest.raises(InputError, match="4 events and 26 non-events"):
        logistic.fit(x, y, ["D90"], label="objective response")


def test_events_per_variable_note():
    X, y = _data(np.random.default_rng(1), n=60)
    assert any("per variable" in n for n in logistic.fit(X, y, ["a", "b", "c"]).notes)
