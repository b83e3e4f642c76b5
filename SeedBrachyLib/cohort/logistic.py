"""Logistic regression of a binary outcome: odds ratios with 95% CIs, separation handled by Firth's method.

Ordinary fits are maximum likelihood (statsmodels ``Logit``) with Wald CIs and p-values. Before
fitting, the data are tested for complete or quasi-complete separation by linear programming
(Konis 2007: separation exists iff some direction b has s_i x_i.b >= 0 for every patient and > 0 for
one, with s_i = +1 for an event and -1 otherwise). Under separation the maximum-likelihood estimate
does not exist (an odds ratio of infinity); the fit is then Firth's penalised likelihood
(Firth, Biometrika 80:27, 1993; Heinze & Schemper, Stat Med 21:2409, 2002) with profile
penalised-likelihood CIs and penalised likelihood-ratio p-values, as R's logistf does, and the
result says so. Coefficients are per unit of each variable (e.g. per Gy of D90).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, stats
from scipy.special import expit

from ..errors import InputError

CHI2_95 = float(stats.chi2.ppf(0.95, 1))
MIN_PER_CLASS = 5          # fewest events (and non-events) for a logistic fit
EVENTS_PER_VARIABLE = 10   # rule of thumb for multivariable models (Peduzzi et al. 1996)
ML_METHOD = "maximum likelihood (statsmodels Logit), Wald 95% CI and p"
FIRTH_METHOD = "Firth penalised likelihood, profile penalised-likelihood 95% CI and penalised LR p"


@dataclass
class LogisticFit:
    """One fitted model: per-term coefficient (log odds per unit), OR, 95% CI, p; and how it was fitted."""

    terms: list[str]
    coef: np.ndarray           # includes the intercept first
    cov: np.ndarray
    ci: np.ndarray             # (k, 2) on the log-odds scale
    p: np.ndarray
    n: int
    events: int
    method: str
    notes: list[str] = field(default_factory=list)

    def odds_ratios(self):
        """Rows (term, OR, CI low, CI high, p) for the terms except the intercept."""
        return [dict(term=t, odds_ratio=float(np.exp(b)), ci_low=float(np.exp(lo)), ci_high=float(np.exp(hi)),
                     p=float(p), coef=float(b))
                for t, b, (lo, hi), p in zip(self.terms[1:], self.coef[1:], self.ci[1:], self.p[1:])]

    def predict(self, X, level=0.95):
        """Probability and pointwise CI (Wald on the linear predictor) at rows of X (without intercept column)."""
        A = np.column_stack([np.ones(len(X)), np.asarray(X, float)])
        eta = A @ self.coef
        se = np.sqrt(np.einsum("ij,jk,ik->i", A, self.cov, A))
        z = stats.norm.ppf(0.5 + level / 2)
        return expit(eta), expit(eta - z * se), expit(eta + z * se)

    def as_dict(self):
        return dict(method=self.method, n=self.n, events=self.events, notes=self.notes,
                    intercept=float(self.coef[0]), terms=self.odds_ratios())


def _design(X):
    X = np.asarray(X, float)
    if X.ndim == 1:
        X = X[:, None]
    return np.column_stack([np.ones(len(X)), X])


def separated(X, y):
    """True if the outcome is completely or quasi-completely separated by the columns of X (linear programme)."""
    A = _design(X)
    s = np.where(np.asarray(y) > 0, 1.0, -1.0)
    S = s[:, None] * A
    res = optimize.linprog(-S.sum(axis=0), A_ub=-S, b_ub=np.zeros(len(S)), bounds=[(-1, 1)] * A.shape[1],
                           method="highs")
    return bool(res.status == 0 and -res.fun > 1e-7 * len(S))


def check_counts(y, label):
    """Number of events in y (0/1); InputError when either class has fewer than MIN_PER_CLASS patients."""
    y = np.asarray(y)
    events, n = int(y.sum()), len(y)
    if min(events, n - events) < MIN_PER_CLASS:
        raise InputError(f"{label}: {events} events and {n - events} non-events among {n} patients; "
                         f"a logistic fit needs at least {MIN_PER_CLASS} of each")
    return events


def _penalised_loglik(A, y, beta):
    p = expit(A @ beta)
    w = p * (1 - p)
    loglik = float(np.sum(y * np.log(p + 1e-300) + (1 - y) * np.log(1 - p + 1e-300)))
    sign, logdet = np.linalg.slogdet(A.T @ (w[:, None] * A))
    return loglik + 0.5 * logdet


def _firth_newton(A, y, beta, free, tol=1e-10, max_iter=200):
    """Maximise the penalised log-likelihood over the ``free`` coefficients (boolean mask), others fixed."""
    beta = beta.copy()
    current = _penalised_loglik(A, y, beta)
    for _ in range(max_iter):
        p = expit(A @ beta)
        w = p * (1 - p)
        info = A.T @ (w[:, None] * A)
        try:
            h = w * np.einsum("ij,jk,ik->i", A, np.linalg.inv(info), A)
            score = A.T @ (y - p + h * (0.5 - p))   # the exact gradient of the penalised log-likelihood
            step = np.zeros_like(beta)
            step[free] = np.linalg.solve(info[np.ix_(free, free)], score[free])
        except np.linalg.LinAlgError:   # fitted probabilities all 0/1 numerically: far outside any CI
            return beta, -np.inf
        t = 1.0
        while t > 1e-8:
            trial = beta + t * step
            value = _penalised_loglik(A, y, trial)
            if value >= current - 1e-12:
                break
            t /= 2
        beta, gained, current = trial, value - current, value
        if np.max(np.abs(t * step)) < tol or abs(gained) < 1e-14:
            break
    return beta, current


def firth_fit(X, y):
    """Firth-penalised logistic fit -> (coef incl. intercept, covariance, 95% CI, p) on the scale of X.

    Slopes have profile penalised-likelihood CIs and penalised likelihood-ratio p-values; the
    intercept (not reported) a Wald CI and p. Fitted on standardised columns (the penalised
    likelihood is invariant to that, up to a constant) and transformed back.
    """
    X = np.asarray(X, float)
    X = X[:, None] if X.ndim == 1 else X
    y = np.asarray(y, float)
    mu, sd = X.mean(0), X.std(0)
    sd[sd == 0] = 1.0
    A = _design((X - mu) / sd)
    k = A.shape[1]
    gamma, top = _firth_newton(A, y, np.zeros(k), np.ones(k, bool))
    M = np.eye(k)
    M[0, 1:], M[1:, 1:] = -mu / sd, np.diag(1.0 / sd)
    p = expit(A @ gamma)
    cov = M @ np.linalg.inv(A.T @ ((p * (1 - p))[:, None] * A)) @ M.T
    beta = M @ gamma
    z = stats.norm.ppf(0.975)
    ci = np.column_stack([beta - z * np.sqrt(np.diag(cov)), beta + z * np.sqrt(np.diag(cov))])
    pvals = 2 * stats.norm.sf(np.abs(beta) / np.sqrt(np.diag(cov)))
    for j in range(1, k):
        free = np.ones(k, bool)
        free[j] = False
        state = dict(start=gamma)

        def deviance(g, j=j, free=free, state=state):
            start = state["start"].copy()
            start[j] = g
            solved, value = _firth_newton(A, y, start, free)
            if np.isfinite(value):
                state["start"] = solved   # continuation: the next evaluation starts from here
            return 2.0 * (top - value)

        pvals[j] = float(stats.chi2.sf(max(deviance(0.0), 0.0), 1))
        se = np.sqrt(cov[j, j]) * sd[j - 1]
        for side, sign in enumerate((-1.0, 1.0)):
            state["start"] = gamma
            step, near, far = se, gamma[j], gamma[j]
            for _ in range(100):
                near, far = far, gamma[j] + sign * step
                if deviance(far) > CHI2_95:
                    break
                step *= 1.5
            ci[j, side] = optimize.brentq(lambda g: deviance(g) - CHI2_95, *sorted((near, far)), xtol=1e-10) / sd[j - 1]
    return beta, cov, ci, pvals


def fit(X, y, terms, label="outcome"):
    """Logistic fit of y (0/1) on the columns of X (n x k, named by ``terms``); Firth when separated."""
    X = np.asarray(X, float)
    if X.ndim == 1:
        X = X[:, None]
    y = np.asarray(y, float)
    events = check_counts(y, label)
    names = ["intercept", *terms]
    notes = []
    smaller = min(events, len(y) - events)
    if smaller < EVENTS_PER_VARIABLE * len(terms):
        notes.append(f"{smaller} patients in the smaller outcome class for {len(terms)} "
                     f"variables (< {EVENTS_PER_VARIABLE} per variable): estimates may be unstable")
    if separated(X, y):
        coef, cov, ci, p = firth_fit(X, y)
        notes.append(f"{label} is perfectly separated by {', '.join(terms)} (linear-programming check): "
                     "the maximum-likelihood odds ratio is infinite, so Firth's penalised fit is reported")
        return LogisticFit(names, coef, cov, ci, p, len(y), events, FIRTH_METHOD, notes)
    import statsmodels.api as sm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sm.Logit(y, _design(X)).fit(disp=0, maxiter=200, method="newton")
    if not res.mle_retvals.get("converged", True):
        raise InputError(f"{label}: the logistic fit on {', '.join(terms)} did not converge")
    return LogisticFit(names, np.asarray(res.params), np.asarray(res.cov_params()), np.asarray(res.conf_int()),
                       np.asarray(res.pvalues), len(y), events, ML_METHOD, notes)
