"""Validation study (printed figures, not a test): what the probability objective changes on synthetic cases.

For each neck case (node diameter mm, Rx Gy, seed activity mCi) the nominal optimiser's plans at CTV D90
aims of 100-130 % of Rx are sampled under the cited placement-error defaults (the same samples for every
plan) and the plan maximising P(GTV D90 > 102.7 Gy) is chosen, the demo's limits (skin D2cc <= 100 Gy,
carotid D2cc <= 45 Gy) holding at least as often as in the nominal plan (or in 95 % of the samples).
Prints every candidate and the choice against the nominal plan (aim 100 %), with CPU time.

Usage: python Testing/benchmarks/validate_probability_objective.py [samples=100]
"""

import sys
import time

from SeedBrachyLib import settings
from SeedBrachyLib.checks import goals_for, user_limit
from SeedBrachyLib.planning.robust_objective import maximise_probability
from SeedBrachyLib.synthetic.phantom import neck_planning_case

#: (node diameter mm, Rx Gy, seed activity mCi): the demo's case, then nodes and prescriptions nearer the goal
CASES = ((25.0, 120.0, 0.5), (30.0, 100.0, 0.5), (32.0, 100.0, 0.4))
AIMS_PCT = (100, 110, 120, 130)


def run_case(diameter_mm, rx_gy, activity_mci, n_samples):
    values = settings.resolve(prescriptionGy=rx_gy, seedActivityMci=activity_mci)
    case, planning, candidates = neck_planning_case(diameter_mm, prescription_gy=rx_gy)
    masks = {"GTV": (case.masks["GTV"], "target"), "Skin": (planning.skin, "oar"),
             "Carotid": (case.masks["Carotid"], "oar")}
    limits = [user_limit("Skin", "D2cc", 100.0), user_limit("Carotid", "D2cc", 45.0)]
    t0 = time.process_time()
    choice = maximise_probability(planning, candidates, values.strength_u, values.sourceModel, masks,
                                  goals_for("lymph-node-metastases")[0], limits, aims_pct=AIMS_PCT,
                                  n_samples=n_samples)
    print(f"Node {diameter_mm:g} mm, Rx {rx_gy:g} Gy, {activity_mci:g} mCi ({values.strength_u:.3f} U) seeds; "
          f"{n_samples} samples; {time.process_time() - t0:.0f} s CPU")
    print("\n".join(choice.lines()))
    print()
    return choice


def main(n_samples=100):
    for diameter, rx, activity in CASES:
        run_case(diameter, rx, activity, n_samples)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
