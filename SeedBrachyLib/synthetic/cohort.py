"""Simulated cohorts with the structure of the two seed studies, generated from a known truth.

**Lymph-node metastases** (after Huang, Zhong, Zhang & Lin, J Cancer 2026, doi:10.7150/jca.126692:
81 patients, CT-guided I-125 seeds, RECIST 1.1 at 6 months, ORR 71.6%, LCR 96.3%, D90 cut-off
102.7 Gy by ROC/Youden with ORR 81.54% above vs 31.25% below, tumour size an independent factor).
The published rates fix the split: 53/65 responders at or above 102.7 Gy and 5/16 below; 3 of 81
progress (LCR 96.3%). Chosen, not published (labelled in :data:`LYMPH_NODE_CHOICES`): D90 normal
with SD 20 Gy (its mean then follows from 65/81 at or above 102.7 Gy), tumour size normal 30 +- 8 mm
(15-50 mm) independent of D90, an odds ratio 0.5 per 10 mm of size, CR share 35% of responders, the
other dosimetry from a log-normal dose distribution in the target, and the clinical variables
(age, sex, primary, prior radiotherapy: no effect). Truth:

    P(objective response | D90, size) = p_max * expit(b0 + b1 (D90 - 102.7 Gy) + b2 (size - 30 mm))

with p_max, b0, b1 solved so that the expected rates above/below 102.7 Gy are 53/65 and 5/16 and the
population Youden-optimal cut-off is exactly 102.7 Gy. (For any response curve p(D) the population
Youden index is maximal where p(D) equals the overall response rate, here 58/81.) A plain logistic
cannot meet all three targets, hence the plateau p_max.

**Esophageal SCC cervical nodal recurrence** (after Zhang et al., J Contemp Brachytherapy
12:579-585, 2020: 36 patients after 20-66 Gy external beam radiotherapy; D90 >= 110 Gy and
short-term response independent for local control and survival). Chosen: D90 normal 112 +- 18 Gy,
objective response 75% at D90 >= 110 Gy vs 45% below, exponential local-progression time with
median 8 months (D90 < 110 Gy, no response) and hazard ratios 0.40 (D90 >= 110 Gy) and 0.45
(response); death with median 14 months, hazard ratios 0.50 and 0.50; follow-up 12-48 months
(uniform); local control censored at death.

Everything here is simulated: no patient data.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import optimize, stats
from scipy.special import expit

LN_N, LN_ABOVE, LN_RESP_ABOVE, LN_RESP_BELOW, LN_PD = 81, 65, 53, 5, 3
LN_THRESHOLD_GY = 102.7
LYMPH_NODE_CHOICES = dict(d90_sd_gy=20.0, size_mean_mm=30.0, size_sd_mm=8.0, size_range_mm=(15.0, 50.0),
                          size_odds_ratio_per_10mm=0.5, cr_share_of_responders=0.35,
                          prescription_gy=(100.0, 110.0, 120.0, 130.0), visits_months=(0.0, 2.0, 6.0))
ESCC_N, ESCC_THRESHOLD_GY = 36, 110.0
ESCC_CHOICES = dict(d90_mean_gy=112.0, d90_sd_gy=18.0, response_above=0.75, response_below=0.45,
                    lc_median_months=8.0, lc_hr_dose=0.40, lc_hr_response=0.45,
                    os_median_months=14.0, os_hr_dose=0.50, os_hr_response=0.50, follow_up_months=(12.0, 48.0),
                    ebrt_gy=(20.0, 66.0))


@dataclass(frozen=True)
class LymphNodeTruth:
    """Generating parameters of the lymph-node cohort (Gy, mm)."""

    d90_mean_gy: float
    d90_sd_gy: float
    p_max: float
    b0: float
    b1_per_gy: float
    b2_per_mm: float
    threshold_gy: float = LN_THRESHOLD_GY

    def probability(self, d90_gy, size_mm):
        """P(objective response) at D90 (Gy) and tumour size (mm)."""
        return self.p_max * expit(self.b0 + self.b1_per_gy * (np.asarray(d90_gy) - self.threshold_gy)
                                  + self.b2_per_mm * (np.asarray(size_mm) - LYMPH_NODE_CHOICES["size_mean_mm"]))


def _size_quadrature():
    c = LYMPH_NODE_CHOICES
    s = np.linspace(*c["size_range_mm"], 141)
    w = stats.norm.pdf(s, c["size_mean_mm"], c["size_sd_mm"])
    return s, w / w.sum()


@lru_cache(maxsize=1)
def lymph_node_truth():
    """Solve the truth's p_max, b0, b1 for the published marginals (see the module docstring)."""
    c = LYMPH_NODE_CHOICES
    sd = c["d90_sd_gy"]
    mean = LN_THRESHOLD_GY - stats.norm.ppf((LN_N - LN_ABOVE) / LN_N) * sd
    b2 = np.log(c["size_odds_ratio_per_10mm"]) / 10.0
    sizes, ws = _size_quadrature()
    d = np.linspace(mean - 7 * sd, mean + 7 * sd, 1401)
    wd = stats.norm.pdf(d, mean, sd)
    above = d >= LN_THRESHOLD_GY

    def residuals(p):
        truth = LymphNodeTruth(mean, sd, p[0], p[1], p[2], b2)
        marginal = truth.probability(d[:, None], sizes[None]) @ ws
        at = truth.probability(LN_THRESHOLD_GY, sizes) @ ws
        return [(marginal * wd)[above].sum() / wd[above].sum() - LN_RESP_ABOVE / LN_ABOVE,
                (marginal * wd)[~above].sum() / wd[~above].sum() - LN_RESP_BELOW / (LN_N - LN_ABOVE),
                at - (LN_RESP_ABOVE + LN_RESP_BELOW) / LN_N]

    sol = optimize.least_squares(residuals, [0.85, 1.0, 0.1], bounds=([0.5, -5, 1e-3], [1, 10, 3]),
                                 xtol=1e-14, ftol=1e-14, gtol=1e-14)
    return LymphNodeTruth(float(mean), sd, *map(float, sol.x), float(b2))


def _dosimetry(rng, d90, rx, size_mm):
    """Target DVH metrics from a log-normal dose distribution with the given D90 (Gy), Rx (Gy) and size (mm)."""
    n = len(d90)
    spread = rng.uniform(0.25, 0.40, n)                  # SD of log dose in the target
    m = np.log(d90) + stats.norm.ppf(0.90) * spread      # log of D50
    dose_at = lambda q: np.exp(m + stats.norm.ppf(1 - q) * spread)  # noqa: E731  D_q (q = volume fraction)
    v = lambda pct: 100 * stats.norm.sf((np.log(pct / 100 * rx) - m) / spread)  # noqa: E731
    return dict(volume_cc=np.pi / 6 * (size_mm / 10.0) ** 3, D98=dose_at(0.98), D90=d90, D50=np.exp(m),
                D100=dose_at(0.999), Dmean=np.exp(m + spread ** 2 / 2), V90=v(90), V100=v(100), V150=v(150),
                V200=v(200))


def _clinical(rng, n):
    return dict(age=np.clip(np.round(rng.normal(58, 11, n)), 25, 85),
                sex=rng.choice(["male", "female"], n, p=[0.62, 0.38]),
                primary=rng.choice(["lung", "esophageal", "cervical", "colorectal", "other"], n,
                                   p=[0.30, 0.20, 0.15, 0.10, 0.25]),
                prior_radiotherapy=(rng.random(n) < 0.4).astype(int))


def _lesion_rows(rng, pid, category, baseline_mm):
    """One nodal target measured at the visits, its path consistent with the 6-month category (mm)."""
    if category == "CR":
        final = rng.uniform(4.0, 9.5)
    elif category == "PR":
        final = max(baseline_mm * rng.uniform(0.35, 0.68), 10.0)   # a node < 10 mm would be CR
    elif category == "SD":
        final = baseline_mm * rng.uniform(0.76, 1.12)
    else:  # PD: >= 20% and >= 5 mm above the nadir (the baseline, as the path is monotone)
        final = max(baseline_mm * rng.uniform(1.25, 1.6), baseline_mm + 6.0)
    middle = baseline_mm + (final - baseline_mm) * rng.uniform(0.3, 0.7)
    if category == "PD":
        middle = baseline_mm * rng.uniform(1.0, 1.1)
    return [dict(patient_id=pid, month=month, lesion="node1", role="target", nodal=1, diameter_mm=round(v, 1),
                 status="") for month, v in zip(LYMPH_NODE_CHOICES["visits_months"], (baseline_mm, middle, final))]


def _categories(rng, truth, d90, size):
    """RECIST category at 6 months (CR, PR, SD, PD) of each patient, drawn from the truth at D90 (Gy), size (mm)."""
    c = LYMPH_NODE_CHOICES
    n = len(d90)
    responds = rng.random(n) < truth.probability(d90, size)
    p_pd = LN_PD / (LN_N - LN_RESP_ABOVE - LN_RESP_BELOW)
    return np.where(responds, np.where(rng.random(n) < c["cr_share_of_responders"], "CR", "PR"),
                    np.where(rng.random(n) < p_pd, "PD", "SD"))


def _lesion_table(rng, ids, category, size):
    """The lesion table (one nodal target, short axis 60-90% of the size, >= 15 mm) at the visits."""
    import pandas as pd

    short_axis = np.clip(size * rng.uniform(0.6, 0.9, len(ids)), 15.0, None)
    return pd.DataFrame([row for pid, cat, s in zip(ids, category, short_axis)
                         for row in _lesion_rows(rng, pid, cat, s)])


def lymph_node_outcomes(patient_ids, d90_gy, size_mm, seed=0):
    """Outcomes of given patients under the lymph-node truth -> (clinical DataFrame, lesion DataFrame, categories).

    For patients whose dose is known elsewhere (e.g. the true delivered GTV D90 of simulated implants, Gy) and
    tumour size (mm): the response drawn from :func:`lymph_node_truth` and written as RECIST lesion
    measurements (baseline, 2 and 6 months); the clinical table has ``patient_id``, ``tumor_size_mm`` and the
    simulated clinical variables (no effect).
    """
    import pandas as pd

    ids = [str(i) for i in patient_ids]
    d90, size = np.asarray(d90_gy, float), np.asarray(size_mm, float)
    if not (len(ids) == len(d90) == len(size)) or not len(ids):
        raise ValueError(f"need one D90 and one size per patient: {len(ids)} ids, {len(d90)} D90, {len(size)} sizes")
    rng = np.random.default_rng(seed)
    category = _categories(rng, lymph_node_truth(), d90, size)
    clinical = pd.DataFrame(dict(patient_id=ids, tumor_size_mm=np.round(size, 1), **_clinical(rng, len(ids))))
    return clinical, _lesion_table(rng, ids, category, size), dict(zip(ids, category))


def lymph_node_cohort(seed=0, n=LN_N):
    """Simulated lymph-node cohort -> (cohort DataFrame, lesion DataFrame, truth).

    The cohort table has the batch dosimetry names (Gy, %, cc), clinical columns and no response
    column: the response comes from the lesion table by RECIST 1.1 (6-month visit).
    """
    import pandas as pd

    truth = lymph_node_truth()
    c = LYMPH_NODE_CHOICES
    rng = np.random.default_rng(seed)
    d90 = np.maximum(rng.normal(truth.d90_mean_gy, truth.d90_sd_gy, n), 20.0)
    size = np.clip(rng.normal(c["size_mean_mm"], c["size_sd_mm"], n), *c["size_range_mm"])
    category = _categories(rng, truth, d90, size)
    rx = rng.choice(c["prescription_gy"], n)
    ids = [f"LN{i + 1:03d}" for i in range(n)]
    cohort = pd.DataFrame(dict(patient_id=ids, prescription_gy=rx, **_dosimetry(rng, d90, rx, size),
                               tumor_size_mm=np.round(size, 1), **_clinical(rng, n)))
    for col in ("volume_cc", "D98", "D90", "D50", "D100", "Dmean", "V90", "V100", "V150", "V200"):
        cohort[col] = cohort[col].round(2)
    lesions = _lesion_table(rng, ids, category, size)
    return cohort, lesions, dict(truth=truth, category=dict(zip(ids, category)))


def escc_cohort(seed=0, n=ESCC_N):
    """Simulated ESCC nodal-recurrence cohort -> (cohort DataFrame with response and lc/os follow-up, truth)."""
    import pandas as pd

    c = ESCC_CHOICES
    rng = np.random.default_rng(seed)
    d90 = np.maximum(rng.normal(c["d90_mean_gy"], c["d90_sd_gy"], n), 30.0)
    high = d90 >= ESCC_THRESHOLD_GY
    responds = rng.random(n) < np.where(high, c["response_above"], c["response_below"])
    response = np.where(responds, np.where(rng.random(n) < 0.4, "CR", "PR"), np.where(rng.random(n) < 0.6, "SD", "PD"))

    def times(median, hr_dose, hr_resp):
        rate = np.log(2) / median * np.where(high, hr_dose, 1.0) * np.where(responds, hr_resp, 1.0)
        return rng.exponential(1.0 / rate)

    t_prog = times(c["lc_median_months"], c["lc_hr_dose"], c["lc_hr_response"])
    t_death = times(c["os_median_months"], c["os_hr_dose"], c["os_hr_response"])
    follow = rng.uniform(*c["follow_up_months"], n)
    size = np.clip(rng.normal(28, 8, n), 15, 50)
    rx = np.full(n, 110.0)
    clinical = _clinical(rng, n)
    del clinical["primary"], clinical["prior_radiotherapy"]
    cohort = pd.DataFrame(dict(
        patient_id=[f"EC{i + 1:03d}" for i in range(n)], **_dosimetry(rng, d90, rx, size),
        tumor_size_mm=np.round(size, 1), ebrt_dose_gy=np.round(rng.uniform(*c["ebrt_gy"], n)), **clinical,
        response=response,
        lc_time=np.round(np.minimum.reduce([t_prog, t_death, follow]), 2),
        lc_event=((t_prog <= t_death) & (t_prog <= follow)).astype(int),
        os_time=np.round(np.minimum(t_death, follow), 2), os_event=(t_death <= follow).astype(int)))
    for col in ("volume_cc", "D98", "D90", "D50", "D100", "Dmean", "V90", "V100", "V150", "V200"):
        cohort[col] = cohort[col].round(2)
    return cohort, dict(lc_log_hr=[np.log(c["lc_hr_dose"]), np.log(c["lc_hr_response"])],
                        os_log_hr=[np.log(c["os_hr_dose"]), np.log(c["os_hr_response"])])
