"""Kaplan-Meier, log-rank and Cox against lifelines and the published Freireich 6-MP example.

Data: Freireich et al., Blood 21:699-716, 1963 (remission times in weeks, 21 patients on 6-MP and
21 on placebo), the worked example of Kleinbaum & Klein, Survival Analysis: A Self-Learning Text
(3rd ed., Springer 2012), chapters 2-3: 6-MP Kaplan-Meier S(6) = 0.857, S(7) = 0.807, S(10) = 0.753,
S(13) = 0.690, S(16) = 0.627, S(22) = 0.538, S(23) = 0.448; medians 23 (6-MP) and 8 (placebo) weeks;
log-rank chi-square 16.79 (p = 4.17e-5). Cox model with Efron ties (R survival::coxph on the same
data): log hazard ratio placebo vs 6-MP 1.572, SE 0.412, HR 4.82. lifelines is the independent
implementation for random data sets with ties and censoring.
"""

import numpy as np
import pytest

from SeedBrachyLib.cohort import survival
from SeedBrachyLib.errors import InputError

lifelines = pytest.importorskip("lifelines", reason="lifelines is the oracle (test extra)")
from lifelines.statistics import logrank_test, multivariate_logrank_test  # noqa: E402

MP_TIME = [6, 6, 6, 7, 10, 13, 16, 22, 23, 6, 9, 10, 11, 17, 19, 20, 25, 32, 32, 34, 35]
MP_EVENT = [1] * 9 + [0] * 12
PLACEBO_TIME = [1, 1, 2, 2, 3, 4, 4, 5, 5, 8, 8, 8, 8, 11, 11, 12, 12, 15, 17, 22, 23]
PLACEBO_EVENT = [1] * 21


def _freireich():
    t = np.r_[MP_TIME, PLACEBO_TIME].astype(float)
    e = np.r_[MP_EVENT, PLACEBO_EVENT]
    return t, e, np.r_[np.zeros(21), np.ones(21)]


def test_freireich_kaplan_meier_published_values():
    km = survival.kaplan_meier(MP_TIME, MP_EVENT)
    assert km["time"] == [6, 7, 10, 13, 16, 22, 23]
    np.testing.assert_allclose(km["survival"], [0.857, 0.807, 0.753, 0.690, 0.627, 0.538, 0.448], atol=5e-4)
    assert km["median"] == 23
    assert survival.kaplan_meier(PLACEBO_TIME, PLACEBO_EVENT)["median"] == 8


def test_freireich_logrank_and_cox_published_values():
    t, e, g = _freireich()
    lr = survival.logrank(t, e, g)
    assert lr["chi2"] == pytest.approx(16.79, abs=0.005) and lr["p"] == pytest.approx(4.17e-5, rel=0.01)
    cox = survival.cox(t, e, g, ["placebo"])["terms"][0]
    assert cox["coef"] == pytest.approx(1.572, abs=5e-4) and cox["se"] == pytest.approx(0.412, abs=5e-4)
    assert cox["hazard_ratio"] == pytest.approx(4.82, abs=5e-3)


def _random_cohort(seed, n=60):
    rng = np.random.default_rng(seed)
    x = np.c_[rng.random(n) < 0.5, rng.normal(110, 20, n)]
    rate = 0.08 * np.exp(-0.8 * x[:, 0] - 0.02 * (x[:, 1] - 110))
    t_event = rng.exponential(1 / rate)
    follow = rng.uniform(6, 36, n)
    t = np.round(np.minimum(t_event, follow))   # whole months: many ties
    return np.maximum(t, 0.5), (t_event <= follow).astype(int), x


@pytest.mark.parametrize("seed", range(10))
def test_kaplan_meier_and_ci_match_lifelines(seed):
    t, e, _ = _random_cohort(seed)
    km = survival.kaplan_meier(t, e, at_months=(12,))
    ref = lifelines.KaplanMeierFitter().fit(t, e)
    sf = ref.survival_function_.iloc[:, 0]
    ci = ref.confidence_interval_
    for i, time in enumerate(km["time"]):
        assert km["survival"][i] == pytest.approx(sf.loc[time], abs=1e-12)
        assert km["ci_low"][i] == pytest.approx(ci.iloc[:, 0].loc[time], abs=1e-6)
        assert km["ci_high"][i] == pytest.approx(ci.iloc[:, 1].loc[time], abs=1e-6)
    assert km["at"][0]["survival"] == pytest.approx(float(ref.predict(12)), abs=1e-12)
    if km["median"] is not None:
        assert km["median"] == pytest.approx(ref.median_survival_time_)


@pytest.mark.parametrize("seed", range(10))
def test_logrank_and_cox_match_lifelines(seed):
    import pandas as pd

    t, e, x = _random_cohort(seed)
    lr = survival.logrank(t, e, x[:, 0])
    g = x[:, 0].astype(bool)
    ref = logrank_test(t[g], t[~g], e[g], e[~g])
    assert lr["chi2"] == pytest.approx(ref.test_statistic, rel=1e-8)
    three = np.digitize(x[:, 1], [100, 120])
    ref3 = multivariate_logrank_test(t, three, e)
    assert survival.logrank(t, e, three)["chi2"] == pytest.approx(ref3.test_statistic, rel=1e-8)
    res = survival.cox(t, e, x, ["group", "d90"])
    cph = lifelines.CoxPHFitter().fit(pd.DataFrame(dict(t=t, e=e, group=x[:, 0], d90=x[:, 1])), "t", "e",
                                      fit_options=dict(precision=1e-12))   # lifelines' default stops at 1e-7
    np.testing.assert_allclose([r["coef"] for r in res["terms"]], cph.params_.values, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose([r["se"] for r in res["terms"]], cph.standard_errors_.values, rtol=1e-4)
    np.testing.assert_allclose([r["p"] for r in res["terms"]], cph.summary["p"].values, rtol=1e-3, atol=1e-10)


def test_too_few_events_and_monotone_likelihood_are_refused_with_reasons():
    t = np.arange(1.0, 21.0)
    e = np.zeros(20, int)
    e[[2, 5, 9]] = 1
    with pytest.raises(InputError, match="3 events among 20 patients"):
        survival.cox(t, e, np.arange(20.0), ["d90"])
    e = np.zeros(20, int)
    e[:8] = 1
    group = np.r_[np.zeros(10), np.ones(10)]   # every event in group 0
    with pytest.raises(InputError, match="no events in the group high = 1.*monotone"):
        survival.cox(t, e, group, ["high"])
    with pytest.raises(InputError, match="no events"):
        survival.logrank(t, np.zeros(20), group)
    with pytest.raises(InputError, match="1 \\(event\\) or 0"):
        survival.kaplan_meier(t, np.full(20, 2))
    with pytest.raises(InputError, match=">= 0 months"):
        survival.kaplan_meier(-t, e)
