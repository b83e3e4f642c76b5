"""Validation study (printed figures, not a test): does the pipeline recover the generating D90 threshold?

Replicates the simulated lymph-node cohort (81 patients, structure of Huang et al., J Cancer 2026;
truth in SeedBrachyLib.synthetic.cohort: population Youden cut-off 102.7 Gy by construction).
For each replicate: response at 6 months by RECIST 1.1 from the lesion table, then the Youden
cut-off of D90 and its stratified percentile bootstrap 95% CI (the same functions
``seedbrachy cohort`` uses). Prints the recovered cut-off (mean, median, SD, 5-95% range), how often
the CI covers 102.7 Gy, the median CI width, and the ORR above/below the recovered cut-off.

Usage: python Testing/benchmarks/validate_cohort_cutoff.py [replicates=200] [bootstrap=1000]
"""

import sys
import time

import numpy as np

from SeedBrachyLib.cohort import recist, roc, table
from SeedBrachyLib.synthetic import cohort as simulated


def replicate(seed, bootstrap):
    cohort, lesions, _ = simulated.lymph_node_cohort(seed=seed)
    response, _ = table.responses_from_lesions(lesions, response_month=6)
    y = np.array([response[p] in recist.OBJECTIVE for p in cohort.patient_id])
    x = cohort.D90.to_numpy(float)
    cut = roc.youden(x, y)["cutoff"]
    ci = roc.bootstrap(x, y, replicates=bootstrap, seed=seed)["cutoff_ci"]
    rates = roc.rates_by_cutoff(x, y, cut)
    return cut, ci, rates["rate_above"], rates["rate_below"], y.mean()


def main(replicates=200, bootstrap=1000):
    truth = simulated.lymph_node_truth()
    t0 = time.perf_counter()
    rows = [replicate(10_000 + r, bootstrap) for r in range(replicates)]
    seconds = time.perf_counter() - t0
    cuts = np.array([r[0] for r in rows])
    lo, hi = np.array([r[1][0] for r in rows]), np.array([r[1][1] for r in rows])
    covered = (lo <= truth.threshold_gy) & (truth.threshold_gy <= hi)
    k = covered.sum()
    # Wilson 95% interval of the coverage itself
    p, z = k / replicates, 1.959964
    centre = (p + z * z / (2 * replicates)) / (1 + z * z / replicates)
    half = z * np.sqrt(p * (1 - p) / replicates + z * z / (4 * replicates ** 2)) / (1 + z * z / replicates)
    print(f"simulated lymph-node cohort: {replicates} replicates x 81 patients, {bootstrap} bootstrap replicates each")
    print(f"generating threshold (population Youden cut-off): {truth.threshold_gy:.1f} Gy; truth "
          f"P(OR) = {truth.p_max:.3f} * expit({truth.b0:.3f} + {truth.b1_per_gy:.3f}/Gy (D90 - 102.7) "
          f"{truth.b2_per_mm:+.4f}/mm (size - 30)); D90 ~ N({truth.d90_mean_gy:.1f}, {truth.d90_sd_gy:.0f}) Gy")
    print(f"recovered cut-off: mean {cuts.mean():.1f} Gy, median {np.median(cuts):.1f} Gy, "
          f"SD {cuts.std(ddof=1):.1f} Gy, 5-95% {np.percentile(cuts, 5):.1f}-{np.percentile(cuts, 95):.1f} Gy")
    print(f"bootstrap 95% CI covers {truth.threshold_gy} Gy in {k}/{replicates} = {100 * p:.1f}% of replicates "
          f"(Wilson 95% {100 * (centre - half):.1f}-{100 * (centre + half):.1f}%); "
          f"misses below {int((hi < truth.threshold_gy).sum())}, above {int((lo > truth.threshold_gy).sum())}")
    print(f"median CI width {np.median(hi - lo):.1f} Gy")
    print(f"ORR at or above the recovered cut-off: mean {100 * np.nanmean([r[2] for r in rows]):.1f}% "
          f"(study 81.5%); below: mean {100 * np.nanmean([r[3] for r in rows]):.1f}% (study 31.3%); "
          f"overall {100 * np.mean([r[4] for r in rows]):.1f}% (study 71.6%)")
    print(f"{seconds:.1f} s ({seconds / replicates:.2f} s per replicate; machine shared, timings indicative)")
    return p


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
