"""ROC analysis of a dose metric for a binary response: AUC with DeLong CI, Youden cut-off with bootstrap CI.

Direction is fixed: a higher value (e.g. D90 in Gy) predicts response; a patient is called positive
when value >= cut-off. The AUC is the Mann-Whitney probability P(X_responder > X_non-responder)
+ 0.5 P(tie). Its 95% CI is DeLong's (DeLong, DeLong & Clarke-Pearson, Biometrics 44:837, 1988;
normal approximation on the AUC scale, clipped to [0, 1], as R's pROC). The Youden-optimal cut-off
maximises sensitivity + specificity - 1 over the midpoints between consecutive distinct values
(the convention of SPSS and pROC); among equal maxima the lowest cut-off is taken. Its CI is the
percentile interval of a stratified bootstrap (responders and non-responders resampled separately,
so every replicate has both; pROC's default), which also gives a bootstrap AUC CI for comparison.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from ..errors import InputError
from ..progress import report

AUC_METHOD = "Mann-Whitney AUC; 95% CI by DeLong (normal approximation)"
YOUDEN_METHOD = ("Youden index J = sensitivity + specificity - 1 maximised over midpoints between consecutive "
                 "distinct values (positive if value >= cut-off); 95% CI by stratified percentile bootstrap")


def _split(values, response):
    x = np.asarray(values, float)
    y = np.asarray(response).astype(bool)
    if x.shape != y.shape or x.ndim != 1:
        raise InputError(f"values and response must be 1-D of equal length; got {x.shape} and {y.shape}")
    if not np.all(np.isfinite(x)):
        raise InputError("ROC values must be finite (remove or fill missing values first)")
    if y.all() or not y.any():
        raise InputError(f"ROC needs responders and non-responders; got {int(y.sum())} of {y.size}")
    return x[y], x[~y]


def _placements(pos, neg):
    """DeLong placement values: V10[i] for each positive, V01[j] for each negative (ties count 1/2)."""
    neg_sorted, pos_sorted = np.sort(neg), np.sort(pos)
    v10 = (np.searchsorted(neg_sorted, pos, "left") + np.searchsorted(neg_sorted, pos, "right")) / (2.0 * neg.size)
    v01 = 1.0 - (np.searchsorted(pos_sorted, neg, "left") + np.searchsorted(pos_sorted, neg, "right")) / (
        2.0 * pos.size)
    return v10, v01


def auc_delong(values, response, level=0.95):
    """AUC, its DeLong standard error and CI: dict(auc, se, ci_low, ci_high, method)."""
    pos, neg = _split(values, response)
    v10, v01 = _placements(pos, neg)
    auc = float(v10.mean())
    var = (v10.var(ddof=1) / pos.size if pos.size > 1 else 0.0) + (v01.var(ddof=1) / neg.size if neg.size > 1 else 0.0)
    se = float(np.sqrt(var))
    z = stats.norm.ppf(0.5 + level / 2)
    return dict(auc=auc, se=se, ci_low=max(0.0, auc - z * se), ci_high=min(1.0, auc + z * se), method=AUC_METHOD)


def roc_curve(values, response):
    """ROC points (fpr, tpr, threshold) for thresholds from +inf down to the lowest value (positive if >= t)."""
    pos, neg = _split(values, response)
    thresholds = np.concatenate([[np.inf], np.unique(np.concatenate([pos, neg]))[::-1]])
    tpr = np.array([(pos >= t).mean() for t in thresholds])
    fpr = np.array([(neg >= t).mean() for t in thresholds])
    return fpr, tpr, thresholds


def youden_batch(x, y):
    """Youden-optimal cut-offs of many samples at once: x, y (B, n) -> (cut-off, J, sensitivity, specificity) each (B,).

    Each row needs both classes; rows with a single distinct value give NaN.
    """
    x = np.asarray(x, float)
    y = np.asarray(y).astype(bool)
    order = np.argsort(x, axis=1, kind="stable")
    xs = np.take_along_axis(x, order, 1)
    ys = np.take_along_axis(y, order, 1)
    n1 = ys.sum(1, keepdims=True)
    n0 = ys.shape[1] - n1
    # cut between sorted positions k-1 and k (k = 1..n-1): positives are k..n-1
    neg_below = np.cumsum(~ys, 1)[:, :-1]                 # non-responders among 0..k-1
    pos_above = n1 - np.cumsum(ys, 1)[:, :-1]             # responders among k..n-1
    sens, spec = pos_above / n1, neg_below / n0
    # J * n1 * n0 in integers, so that equal maxima are equal and the lowest cut-off wins exactly
    j_scaled = np.where(xs[:, 1:] > xs[:, :-1], pos_above * n0 + neg_below * n1, -1)
    k = np.argmax(j_scaled, axis=1)
    rows = np.arange(len(x))
    cut = 0.5 * (xs[rows, k] + xs[rows, k + 1])
    j = sens + spec - 1.0
    best = j[rows, k]
    bad = j_scaled[rows, k] < 0
    pick = lambda a: np.where(bad, np.nan, a[rows, k])  # noqa: E731
    return np.where(bad, np.nan, cut), np.where(bad, np.nan, best), pick(sens), pick(spec)


def youden(values, response):
    """Youden-optimal cut-off of one sample: dict(cutoff, youden_j, sensitivity, specificity)."""
    _split(values, response)
    cut, j, sens, spec = youden_batch(np.asarray(values, float)[None], np.asarray(response)[None])
    return dict(cutoff=float(cut[0]), youden_j=float(j[0]), sensitivity=float(sens[0]), specificity=float(spec[0]))


def stratified_resample(values, response, replicates, rng):
    """(B, n) bootstrap samples with the responders and non-responders each resampled within their class."""
    pos, neg = _split(values, response)
    xb = np.concatenate([rng.choice(pos, (replicates, pos.size)), rng.choice(neg, (replicates, neg.size))], 1)
    yb = np.concatenate([np.ones((replicates, pos.size), bool), np.zeros((replicates, neg.size), bool)], 1)
    return xb, yb


def bootstrap(values, response, replicates=2000, level=0.95, seed=0, progress=None):
    """Percentile bootstrap CIs of the Youden cut-off and of the AUC (stratified resampling).

    Returns dict(cutoff_ci, auc_ci, replicates, seed); cut-offs in the unit of ``values``.
    """
    if replicates < 100:
        raise InputError(f"bootstrap replicates {replicates}: use at least 100")
    rng = np.random.default_rng(seed)
    cuts, aucs = [], []
    chunk = 500
    for start in range(0, replicates, chunk):
        xb, yb = stratified_resample(values, response, min(chunk, replicates - start), rng)
        cuts.append(youden_batch(xb, yb)[0])
        n1 = yb[0].sum()
        ranks = stats.rankdata(xb, axis=1)
        aucs.append((ranks[:, :n1].sum(1) - n1 * (n1 + 1) / 2) / (n1 * (yb.shape[1] - n1)))
        report(progress, min(1.0, (start + chunk) / replicates), "bootstrap")
    cuts, aucs = np.concatenate(cuts), np.concatenate(aucs)
    q = [50 * (1 - level), 50 * (1 + level)]
    return dict(cutoff_ci=[float(v) for v in np.nanpercentile(cuts, q)],
                auc_ci=[float(v) for v in np.percentile(aucs, q)],
                cutoff_median=float(np.nanmedian(cuts)), replicates=int(replicates), seed=int(seed),
                method="stratified percentile bootstrap")


def rates_by_cutoff(values, response, cutoff):
    """Response rate at or above vs below a cut-off, with counts, Fisher's exact p and the odds ratio."""
    x = np.asarray(values, float)
    y = np.asarray(response).astype(bool)
    above = x >= cutoff
    table = [[int((y & above).sum()), int((~y & above).sum())], [int((y & ~above).sum()), int((~y & ~above).sum())]]
    odds_ratio, p = stats.fisher_exact(table)
    n_above, n_below = int(above.sum()), int((~above).sum())
    return dict(cutoff=float(cutoff), n_above=n_above, responders_above=table[0][0],
                rate_above=table[0][0] / n_above if n_above else None, n_below=n_below,
                responders_below=table[1][0], rate_below=table[1][0] / n_below if n_below else None,
                fisher_p=float(p), odds_ratio=float(odds_ratio), test="Fisher's exact test (two-sided)")
