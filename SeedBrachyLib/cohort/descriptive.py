"""Descriptive tables by group, each row with the summary and the test chosen for it.

Continuous variables: when both groups look normal (Shapiro-Wilk p > 0.05, n >= 3 each) the
summary is mean +- SD and the test Welch's t-test; otherwise median (Q1, Q3) and the Wilcoxon
rank-sum (Mann-Whitney U, two-sided) test. Categorical variables: counts (%) per group; Pearson's
chi-square test (no continuity correction) when every expected count is >= 5, otherwise Fisher's
exact test: for a 2 x 2 table scipy's, for more levels the Freeman-Halton extension
(:func:`freeman_halton`, every table with the observed margins enumerated); a table with more than
:data:`MAX_EXACT_TABLES` such tables keeps the chi-square test and says that it is approximate.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

NORMALITY_ALPHA = 0.05
MAX_EXACT_TABLES = 1_000_000   # partial tables the exact test may enumerate
EXACT_TOLERANCE = 1e-7         # relative: a table counts as extreme when P <= P(observed) * (1 + tolerance)


def _normal(a):
    return a.size >= 3 and np.ptp(a) > 0 and stats.shapiro(a).pvalue > NORMALITY_ALPHA


def continuous_row(name, values, group, unit=""):
    """Summary and test of one continuous variable between group True and group False."""
    x = np.asarray(values, float)
    g = np.asarray(group).astype(bool)
    keep = np.isfinite(x)
    a, b = x[keep & g], x[keep & ~g]
    if a.size < 2 or b.size < 2:
        return dict(variable=name, unit=unit, kind="continuous", summary=None, test=None, p=None,
                    note=f"too few values ({a.size} and {b.size})")
    if _normal(a) and _normal(b):
        p = stats.ttest_ind(a, b, equal_var=False).pvalue
        fmt = lambda v: f"{v.mean():.1f} +- {v.std(ddof=1):.1f}"  # noqa: E731
        summary, test, stat = "mean +- SD", "Welch's t-test", dict(mean=[a.mean(), b.mean()],
                                                                    sd=[a.std(ddof=1), b.std(ddof=1)])
    else:
        p = stats.mannwhitneyu(a, b, alternative="two-sided").pvalue
        fmt = lambda v: "{:.1f} ({:.1f}, {:.1f})".format(*np.percentile(v, [50, 25, 75]))  # noqa: E731
        summary, test = "median (Q1, Q3)", "Wilcoxon rank-sum (Mann-Whitney U)"
        stat = dict(median=[np.median(a), np.median(b)], q1=[np.percentile(a, 25), np.percentile(b, 25)],
                    q3=[np.percentile(a, 75), np.percentile(b, 75)])
    return dict(variable=name, unit=unit, kind="continuous", summary=summary, text=[fmt(a), fmt(b)],
                n=[int(a.size), int(b.size)], test=test, p=float(p),
                values={k: [float(v) for v in vs] for k, vs in stat.items()})


def freeman_halton(table, max_tables=MAX_EXACT_TABLES):
    """Two-sided exact p of independence in an r x 2 table of counts (Freeman & Halton, Biometrika 1951).

    Given the row and column sums, the first column is multivariate hypergeometric:
    P(a) = prod_i C(r_i, a_i) / C(N, c_1). p is the sum of P over every table with
    P <= P(observed) (relative tolerance :data:`EXACT_TOLERANCE`, as R's ``fisher.test``). For 2 x 2 it
    is Fisher's exact test. Returns None when more than ``max_tables`` partial tables would be kept.
    """
    from scipy.special import gammaln

    t = np.asarray(table, dtype=np.int64)
    if t.ndim != 2 or t.shape[1] != 2 or (t < 0).any():
        raise ValueError(f"freeman_halton needs an r x 2 table of counts >= 0; got shape {t.shape}")
    rows = t.sum(axis=1)
    order = np.argsort(rows, kind="stable")           # the largest row last: it is set by the others
    rows, first = rows[order], t[order, 0]
    n1 = int(first.sum())

    def log_choose(n, k):
        return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)

    observed = float(sum(log_choose(r, a) for r, a in zip(rows, first)))
    sums, logp = np.zeros(1, np.int64), np.zeros(1)
    reach = np.cumsum(rows[::-1])[::-1]               # reach[i]: the most rows i.. can still hold
    for i, r in enumerate(rows[:-1]):
        if len(sums) * (r + 1) > 4 * max_tables:
            return None
        a = np.arange(r + 1)
        sums = (sums[:, None] + a[None]).ravel()
        logp = (logp[:, None] + log_choose(r, a)[None]).ravel()
        ok = (sums <= n1) & (sums + reach[i + 1] >= n1)
        sums, logp = sums[ok], logp[ok]
        if len(sums) > max_tables:
            return None
    last = n1 - sums
    logp = logp + log_choose(rows[-1], last)
    total = log_choose(rows.sum(), n1)
    p = np.exp(logp - total)
    return float(min(1.0, p[logp <= observed + np.log1p(EXACT_TOLERANCE)].sum()))


def categorical_row(name, values, group):
    """Counts (%) per level and group and the test of association."""
    v = np.asarray(values, object)
    g = np.asarray(group).astype(bool)
    keep = np.array([x is not None and x == x for x in v])  # drop None and NaN
    v, g = v[keep].astype(str), g[keep]
    levels = sorted(set(v.tolist()))
    table = np.array([[int(((v == lev) & g).sum()), int(((v == lev) & ~g).sum())] for lev in levels])
    counts = {lev: table[i].tolist() for i, lev in enumerate(levels)}
    text = {lev: [f"{table[i, c]} ({100 * table[i, c] / max(table[:, c].sum(), 1):.0f}%)" for c in (0, 1)]
            for i, lev in enumerate(levels)}
    row = dict(variable=name, kind="categorical", summary="n (%)", counts=counts, text=text, note=None)
    if len(levels) < 2 or (table.sum(0) == 0).any():
        return dict(row, test=None, p=None, note="a single level or an empty group: no test")
    expected = stats.contingency.expected_freq(table)
    if (expected >= 5).all():
        p, test = stats.chi2_contingency(table, correction=False)[1], "Pearson chi-square"
    elif table.shape == (2, 2):
        p, test = stats.fisher_exact(table)[1], "Fisher's exact test"
    elif (p := freeman_halton(table)) is not None:
        test = f"Fisher's exact test (Freeman-Halton, {len(levels)} x 2)"
    else:
        p, test = stats.chi2_contingency(table, correction=False)[1], "Pearson chi-square"
        row["note"] = (f"expected counts < 5, and more than {MAX_EXACT_TABLES:,} tables for the exact test: "
                       "the chi-square p is approximate")
    return dict(row, test=test, p=float(p))
