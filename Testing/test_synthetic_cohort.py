"""The simulated cohorts: the generating truth reproduces the published marginals, and the pipeline recovers it.

Checked by Monte Carlo on large samples (independent of the quadrature the generator solves with):
the lymph-node truth gives 53/65 responders at or above 102.7 Gy and 5/16 below, 65/81 patients at
or above, and its population Youden cut-off (the cut-off of a 400,000-patient sample) is 102.7 Gy.
The lesion table gives, by RECIST 1.1, exactly the response category drawn for each patient.
The ESCC cohort's Cox model on a large sample recovers the generating hazard ratios.
"""

import numpy as np
import pytest

from SeedBrachyLib.cohort import recist, roc, survival, table
from SeedBrachyLib.synthetic import cohort as simulated


@pytest.mark.slow
def test_lymph_node_truth_reproduces_the_published_marginals():
    truth = simulated.lymph_node_truth()
    rng = np.random.default_rng(7)
    n = 400_000
    c = simulated.LYMPH_NODE_CHOICES
    d90 = rng.normal(truth.d90_mean_gy, truth.d90_sd_gy, n)
    size = np.clip(rng.normal(c["size_mean_mm"], c["size_sd_mm"], n), *c["size_range_mm"])
    r = rng.random(n) < truth.probability(d90, size)
    above = d90 >= 102.7
    assert above.mean() == pytest.approx(65 / 81, abs=0.003)
    assert r[above].mean() == pytest.approx(53 / 65, abs=0.004)
    assert r[~above].mean() == pytest.approx(5 / 16, abs=0.006)
    assert r.mean() == pytest.approx(58 / 81, abs=0.003)
    assert roc.youden(d90[:200_000], r[:200_000])["cutoff"] == pytest.approx(102.7, abs=1.5)


def test_lymph_node_lesions_give_the_drawn_categories_by_recist(tmp_path):
    cohort, lesions, info = simulated.lymph_node_cohort(seed=3)
    assert len(cohort) == 81 and cohort["patient_id"].is_unique
    by_patient, _ = table.responses_from_lesions(lesions, response_month=6)
    assert by_patient == info["category"]
    cohort.to_csv(tmp_path / "c.csv", index=False)
    lesions.to_csv(tmp_path / "l.csv", index=False)
    t = table.load(tmp_path / "c.csv", lesions=tmp_path / "l.csv", response_month=6)
    assert set(t.dosimetry) >= {"D90", "D100", "V100", "V200", "volume_cc"}
    assert t.clinical["sex"] == "categorical" and t.clinical["age"] == "continuous"
    assert (t.response == recist.NE).sum() == 0
    # DVH metrics are consistent with one dose distribution: D100 <= D98 <= D90 <= D50; V100 <= V90
    assert (cohort.D100 <= cohort.D98).all() and (cohort.D98 <= cohort.D90).all() and (cohort.D90 <= cohort.D50).all()
    assert (cohort.V100 <= cohort.V90).all() and (cohort.V200 <= cohort.V150).all()


@pytest.mark.slow
def test_escc_cox_recovers_the_generating_hazard_ratios_on_a_large_sample():
    cohort, truth = simulated.escc_cohort(seed=1, n=1200)
    high = (cohort.D90 >= 110).to_numpy(float)
    resp = cohort.response.isin(["CR", "PR"]).to_numpy(float)
    for endpoint in ("lc", "os"):
        res = survival.cox(cohort[f"{endpoint}_time"], cohort[f"{endpoint}_event"], np.c_[high, resp],
                           ["high", "response"])
        for row, log_hr in zip(res["terms"], truth[f"{endpoint}_log_hr"]):
            assert row["coef"] == pytest.approx(log_hr, abs=3.5 * row["se"])
