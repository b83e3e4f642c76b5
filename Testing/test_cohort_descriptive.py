"""Descriptive tables: the test chosen for each variable, and its p against a second implementation.

Oracles: statsmodels' ttest_ind (unequal variances) for Welch's test; the Mann-Whitney normal
approximation with tie and continuity correction written out here; statsmodels' contingency Table
for Pearson's chi-square; Fisher's exact p by enumerating the hypergeometric distribution; the
Freeman-Halton r x 2 test against a brute-force listing (itertools, scipy's multivariate
hypergeometric pmf) and scipy's Monte Carlo r x c Fisher test.
"""

import numpy as np
import pytest
from scipy import stats

from SeedBrachyLib.cohort import descriptive


def test_normal_groups_get_mean_sd_and_welch():
    from statsmodels.stats.weightstats import ttest_ind

    rng = np.random.default_rng(0)
    a, b = rng.normal(120, 15, 58), rng.normal(100, 25, 23)
    row = descriptive.continuous_row("D90", np.r_[a, b], np.r_[np.ones(58), np.zeros(23)], "Gy")
    assert row["summary"] == "mean +- SD" and row["test"] == "Welch's t-test"
    assert row["p"] == pytest.approx(ttest_ind(a, b, usevar="unequal")[1], rel=1e-10)
    assert row["text"][0] == f"{a.mean():.1f} +- {a.std(ddof=1):.1f}"


def test_skewed_groups_get_median_iqr_and_rank_sum():
    rng = np.random.default_rng(1)
    a, b = np.round(rng.lognormal(3, 0.8, 60)), np.round(rng.lognormal(2.6, 0.8, 40))   # ties
    row = descriptive.continuous_row("volume", np.r_[a, b], np.r_[np.ones(60), np.zeros(40)], "cc")
    assert row["summary"] == "median (Q1, Q3)" and row["test"].startswith("Wilcoxon rank-sum")
    ranks = stats.rankdata(np.r_[a, b])
    u = ranks[:60].sum() - 60 * 61 / 2
    _, counts = np.unique(np.r_[a, b], return_counts=True)
    n = 100
    sigma = np.sqrt(60 * 40 / 12 * ((n + 1) - (counts ** 3 - counts).sum() / (n * (n - 1))))
    z = (abs(u - 60 * 40 / 2) - 0.5) / sigma
    assert row["p"] == pytest.approx(2 * stats.norm.sf(z), rel=1e-9)


def test_categorical_chi_square_when_expected_counts_are_large():
    from statsmodels.stats.contingency_tables import Table

    values = np.r_[["male"] * 30, ["female"] * 28, ["male"] * 12, ["female"] * 11]
    group = np.r_[np.ones(58), np.zeros(23)]
    row = descriptive.categorical_row("sex", values, group)
    assert row["test"] == "Pearson chi-square"
    table = np.array([[28, 11], [30, 12]])   # rows female, male; columns group yes, no
    assert row["counts"] == {"female": [28, 11], "male": [30, 12]}
    assert row["p"] == pytest.approx(Table(table).test_nominal_association().pvalue, rel=1e-9)


def test_categorical_fisher_when_a_cell_is_small():
    values = np.r_[["yes"] * 2, ["no"] * 56, ["yes"] * 5, ["no"] * 18]
    group = np.r_[np.ones(58), np.zeros(23)]
    row = descriptive.categorical_row("prior_rt", values, group)
    assert row["test"] == "Fisher's exact test"
    # two-sided Fisher: sum of hypergeometric probabilities not above that of the observed table
    a_obs, rows, col = 5, 7, 23   # 'yes' count in group no; 'yes' total; group-no total
    dist = stats.hypergeom(81, rows, col)
    probs = dist.pmf(np.arange(0, rows + 1))
    assert row["p"] == pytest.approx(probs[probs <= dist.pmf(a_obs) * (1 + 1e-7)].sum(), rel=1e-9)


def _exact_by_brute_force(table):
    """Freeman-Halton p by listing every first column with the margins (itertools) and scipy's pmf."""
    import itertools

    t = np.asarray(table)
    rows, n1 = t.sum(axis=1), int(t[:, 0].sum())
    dist = stats.multivariate_hypergeom(rows, n1)
    tables = [a for a in itertools.product(*(range(r + 1) for r in rows)) if sum(a) == n1]
    probs = np.array([dist.pmf(a) for a in tables])
    return probs[probs <= dist.pmf(t[:, 0]) * (1 + 1e-7)].sum()


@pytest.mark.parametrize("seed", range(6))
def test_freeman_halton_against_brute_force_enumeration(seed):
    rng = np.random.default_rng(seed)
    table = rng.integers(0, 7, size=(int(rng.integers(2, 6)), 2))
    table[0] += 1   # no empty table
    assert descriptive.freeman_halton(table) == pytest.approx(_exact_by_brute_force(table), rel=1e-9)


def test_freeman_halton_is_fisher_for_2x2_and_agrees_with_scipy_monte_carlo():
    assert descriptive.freeman_halton([[5, 2], [56, 18]]) == pytest.approx(
        stats.fisher_exact([[5, 2], [56, 18]]).pvalue, rel=1e-12)
    assert descriptive.freeman_halton([[9, 0], [0, 9]]) == pytest.approx(stats.fisher_exact([[9, 0], [0, 9]]).pvalue)
    table = np.array([[9, 1], [5, 5], [3, 6], [1, 8], [0, 4], [2, 2]])
    mc = stats.fisher_exact(table, method=stats.MonteCarloMethod(n_resamples=40000, rng=np.random.default_rng(0)))
    p = descriptive.freeman_halton(table)
    assert abs(p - mc.pvalue) < 4 * np.sqrt(p * (1 - p) / 40000) + 1e-4


def test_larger_table_with_small_counts_gets_the_freeman_halton_test():
    values = np.r_[["lung"] * 20, ["other"] * 35, ["rare"] * 3, ["lung"] * 8, ["other"] * 14, ["rare"] * 1]
    row = descriptive.categorical_row("primary", values, np.r_[np.ones(58), np.zeros(23)])
    assert row["test"] == "Fisher's exact test (Freeman-Halton, 3 x 2)" and row["note"] is None
    assert row["p"] == pytest.approx(_exact_by_brute_force([[20, 8], [35, 14], [3, 1]]), rel=1e-9)


def test_too_many_tables_for_the_exact_test_keep_an_approximate_chi_square(monkeypatch):
    assert descriptive.freeman_halton(np.full((10, 2), 8), max_tables=1000) is None
    monkeypatch.setattr(descriptive, "MAX_EXACT_TABLES", 10)
    monkeypatch.setattr(descriptive.freeman_halton, "__defaults__", (10,))
    values = np.r_[["lung"] * 20, ["other"] * 35, ["rare"] * 3, ["lung"] * 8, ["other"] * 14, ["rare"] * 1]
    row = descriptive.categorical_row("primary", values, np.r_[np.ones(58), np.zeros(23)])
    assert row["test"] == "Pearson chi-square" and "approximate" in row["note"]


def test_missing_values_are_dropped_and_tiny_groups_are_said():
    row = descriptive.continuous_row("age", [50, np.nan, 60, 70], [1, 1, 0, 0])
    assert row["test"] is None and "too few" in row["note"]
    row = descriptive.categorical_row("sex", np.array(["m", None, "f", np.nan, "m"], object), [1, 1, 0, 0, 0])
    assert sum(sum(v) for v in row["counts"].values()) == 3
