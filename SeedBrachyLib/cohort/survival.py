"""Survival: Kaplan-Meier with Greenwood CIs, log-rank tests, Cox proportional hazards (statsmodels).

Times in months, events 1 (event: local progression or death) or 0 (censored). Kaplan-Meier
survival with Greenwood's variance; pointwise 95% CIs on the log(-log S) scale; median survival
with the Brookmeyer-Crowley CI (statsmodels ``SurvfuncRight``). Log-rank test (Mantel-Haenszel,
statsmodels ``survdiff``). Cox model by partial likelihood with Efron's handling of ties
(statsmodels ``PHReg``), hazard ratios with Wald 95% CIs and p-values.
A binary covariate with no events in one of its groups makes the Cox likelihood monotone (the hazard
ratio is 0 or infinite); such a model is refused with that reason rather than reported.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

from ..errors import InputError

MIN_EVENTS = 5
KM_METHOD = "Kaplan-Meier, Greenwood variance, log(-log) 95% CI; median with Brookmeyer-Crowley CI"
LOGRANK_METHOD = "log-rank test (statsmodels survdiff)"
COX_METHOD = "Cox proportional hazards, Efron ties (statsmodels PHReg), Wald 95% CI and p"


def _check(time, event, label):
    t = np.asarray(time, float)
    e = np.asarray(event, float)
    if t.shape != e.shape or t.ndim != 1:
        raise InputError(f"{label}: time and event must be 1-D of equal length; got {t.shape} and {e.shape}")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise InputError(f"{label}: follow-up times must be finite and >= 0 months")
    if not np.all(np.isin(e, (0, 1))):
        raise InputError(f"{label}: event must be 1 (event) or 0 (censored); got {sorted(set(e.tolist()) - {0, 1})}")
    return t, e.astype(int)


def kaplan_meier(time, event, at_months=(), label="survival", level=0.95):
    """Kaplan-Meier estimate: dict(time, survival, ci_low, ci_high, at_risk, median, median_ci, at, n, events)."""
    from statsmodels.duration.survfunc import SurvfuncRight

    t, e = _check(time, event, label)
    if t.size == 0:
        raise InputError(f"{label}: no patients")
    sf = SurvfuncRight(t, e)
    s, se = np.asarray(sf.surv_prob), np.asarray(sf.surv_prob_se)
    z = stats.norm.ppf(0.5 + level / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_s = np.log(s)
        half = z * se / (s * np.abs(log_s))
        lo = np.where((s > 0) & (s < 1), s ** np.exp(half), np.where(s >= 1, 1.0, 0.0))
        hi = np.where((s > 0) & (s < 1), s ** np.exp(-half), np.where(s >= 1, 1.0, 0.0))
    times = np.asarray(sf.surv_times)

    def at(month):
        i = np.searchsorted(times, month, side="right") - 1
        if month > t.max():
            return None
        return dict(month=float(month), survival=1.0 if i < 0 else float(s[i]),
                    ci_low=1.0 if i < 0 else float(lo[i]), ci_high=1.0 if i < 0 else float(hi[i]))

    median = float(sf.quantile(0.5)) if np.any(s <= 0.5) else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            mci = [float(v) if np.isfinite(v) else None for v in sf.quantile_ci(0.5, alpha=1 - level)]
        except (ValueError, IndexError):
            mci = [None, None]
    return dict(time=times.tolist(), survival=s.tolist(), ci_low=lo.tolist(), ci_high=hi.tolist(),
                at_risk=np.asarray(sf.n_risk).astype(int).tolist(), median=median, median_ci=mci,
                at=[a for a in (at(m) for m in at_months) if a is not None], n=int(t.size), events=int(e.sum()),
                method=KM_METHOD)


def logrank(time, event, group, label="survival"):
    """Log-rank test between the groups (any labels): dict(chi2, df, p, groups: {label: (n, events)})."""
    from statsmodels.duration.survfunc import survdiff

    t, e = _check(time, event, label)
    g = np.asarray(group)
    levels = sorted(set(g.tolist()), key=str)
    if len(levels) < 2:
        raise InputError(f"{label}: log-rank needs at least two groups; all patients are in {levels}")
    if e.sum() < 1:
        raise InputError(f"{label}: no events; the log-rank test is undefined")
    chi2, p = survdiff(t, e, g)
    return dict(chi2=float(chi2), df=len(levels) - 1, p=float(p), method=LOGRANK_METHOD,
                groups={str(v): dict(n=int((g == v).sum()), events=int(e[g == v].sum())) for v in levels})


def cox(time, event, X, terms, label="survival"):
    """Cox model: rows (term, HR, CI, p, coef, se) per column of X; refuses monotone likelihood and too few events."""
    from statsmodels.duration.hazard_regression import PHReg

    t, e = _check(time, event, label)
    X = np.asarray(X, float)
    if X.ndim == 1:
        X = X[:, None]
    if e.sum() < MIN_EVENTS:
        raise InputError(f"{label}: {int(e.sum())} events among {t.size} patients; a Cox model needs at least "
                         f"{MIN_EVENTS}")
    notes = []
    for j, name in enumerate(terms):
        levels = np.unique(X[:, j])
        if levels.size == 2:
            empty = [float(v) for v in levels if e[X[:, j] == v].sum() == 0]
            if empty:
                raise InputError(f"{label}: no events in the group {name} = {empty[0]:g}; the Cox likelihood is "
                                 "monotone (hazard ratio 0 or infinite), so no hazard ratio is reported; see the "
                                 "log-rank test")
    if e.sum() < 10 * len(terms):
        notes.append(f"{int(e.sum())} events for {len(terms)} variables (< 10 per variable): estimates may be unstable")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = PHReg(t, X, status=e, ties="efron").fit()
    coef, se = np.asarray(res.params), np.asarray(res.bse)
    z = stats.norm.ppf(0.975)
    rows = [dict(term=name, hazard_ratio=float(np.exp(b)), ci_low=float(np.exp(b - z * s)),
                 ci_high=float(np.exp(b + z * s)), p=float(2 * stats.norm.sf(abs(b / s))), coef=float(b), se=float(s))
            for name, b, s in zip(terms, coef, se)]
    return dict(terms=rows, n=int(t.size), events=int(e.sum()), method=COX_METHOD, notes=notes)
