"""Benchmark: loading patterns vs the optimiser on the synthetic neck cases (printed figures, not a test).

Cases (neck phantom, Rx 120 Gy, OncoSeed 6711, needles along -R through a 10 mm template,
candidates every 5 mm, CTV = GTV + 5 mm): a 2 cm and a 4 cm node near the skin and a 2.5 cm node
beside the carotid. Each plan is evaluated with ``dvh.evaluate_plan`` on a 1 mm dose grid
(D90 Gy, V100/V150/V200 %, CI, skin D2cc Gy); "s" is the time to make the plan (pattern:
loading; optimiser: dose matrices + optimisation). Then a ~40-seed plan: the optimiser (compiled search)
against two references timed in the same run: the same search on the numpy path (it must give the same plan),
and a simple exhaustive greedy that adds, at each step, the candidate giving the lowest objective (trying every
free candidate) until the goals hold. Wall and CPU seconds (CPU is the fairer figure on a busy machine).
Target: the 40-seed optimisation within 1 s (issue 11).
"""

import os
import time

import numpy as np

from SeedBrachyLib.planning import pipeline
from SeedBrachyLib.planning.loading import PATTERNS, load_pattern
from SeedBrachyLib.planning.optimize import Goals, OarLimit, Weights, _Problem, _State
from SeedBrachyLib.sources import mci_to_u
from SeedBrachyLib.synthetic.phantom import neck_planning_case

MODEL = "I125_OncoSeed6711"
RX = 120.0
CASES = {
    "2 cm node near skin": (20.0, (46.0, 8.0, 0.0), 100.0, 60.0),
    "4 cm node near skin": (40.0, (36.0, -12.0, 0.0), 140.0, 80.0),
    "2.5 cm node beside carotid": (25.0, (40.0, 8.0, 0.0), 100.0, 45.0),
}


def build(diameter, centre, skin, carotid):
    _, case, cands = neck_planning_case(diameter, centre, RX)
    goals = Goals(RX, oar_limits=(OarLimit("Skin", "D2cc", skin), OarLimit("Carotid", "D2cc", carotid)))
    return case, cands, goals


def row(label, plan, case, goals, seconds):
    ev, _, _ = pipeline.evaluate(case, plan.seeds(), MODEL)
    v = ev["CTV"].values
    skin = ev.value("Skin", "D2cc")[0]
    ok = (v["D90"] >= RX and v["V100"] >= goals.v100_min_pct and v["V150"] <= goals.v150_max_pct
          and all(ev.value(lim.name, lim.metric)[0] <= lim.limit_gy for lim in goals.oar_limits))
    print(f"  {label:<24} {plan.n_seeds:5d} {plan.n_needles:7d} {v['D90']:7.1f} {v['V100']:6.1f} {v['V150']:6.1f} "
          f"{v['V200']:6.1f} {v['CI']:5.2f} {skin:9.1f} {seconds:7.2f}  {'yes' if ok else 'no'}")


def exhaustive_greedy(cands, goals, matrices):
    """Reference: add the candidate with the lowest objective, trying all, until D90 and V100 hold."""
    problem = _Problem(cands, matrices, goals, Weights())
    state = _State(problem, [])
    while state.terms["V100"] < goals.v100_min_pct + goals.safety_pct or state.terms["D90"] < RX:
        free = np.flatnonzero(~state.x)
        trials = [state.trial(add=[j]) for j in free]
        k = int(np.argmin([t[0][0] for t in trials]))
        state.apply([free[k]], [], trials[k])
    return state


def main():
    header = (f"  {'plan':<24} {'seeds':>5} {'needles':>7} {'D90 Gy':>7} {'V100%':>6} {'V150%':>6} {'V200%':>6} "
              f"{'CI':>5} {'skin D2cc':>9} {'s':>7}  goals met")
    for name, (diameter, centre, skin, carotid) in CASES.items():
        case, cands, goals = build(diameter, centre, skin, carotid)
        strength = float(mci_to_u(0.5))
        print(f"\n{name}: CTV {case.ctv.sum() * case.grid.voxel_volume_cc:.1f} cc, {len(cands.needles)} needles, "
              f"{len(cands)} candidates, 0.5 mCi seeds; goals D90 >= {RX:g} Gy, V100 >= 95 %, V150 <= 60 %, "
              f"skin D2cc <= {skin:g} Gy, carotid D2cc <= {carotid:g} Gy")
        print(header)
        for pattern in PATTERNS:
            for spacing in (5.0, 10.0):
                t = time.perf_counter()
                plan = load_pattern(cands, pattern, strength, spacing)
                row(f"{pattern} {spacing:g} mm", plan, case, goals, time.perf_counter() - t)
        t = time.perf_counter()
        plan = pipeline.optimise_plan(case, cands, strength, MODEL, goals)
        row("optimiser", plan, case, goals, time.perf_counter() - t)

    diameter, centre, skin, carotid = CASES["4 cm node near skin"]
    case, cands, goals = build(diameter, centre, skin, carotid)
    strength = float(mci_to_u(0.8))
    print("\n~40-seed plan (4 cm node near the skin, 0.8 mCi seeds):")
    t = time.perf_counter()
    matrices = pipeline.dose_matrices(case, cands, strength, MODEL)
    t_matrices = time.perf_counter() - t
    pipeline.optimise_plan(case, cands, strength, MODEL, goals, matrices=matrices)  # compile or cache load
    plan, t_opt, c_opt = timed(lambda: pipeline.optimise_plan(case, cands, strength, MODEL, goals, matrices=matrices))
    os.environ["SEEDBRACHY_ENGINE"] = "numpy"
    try:
        same, t_np, c_np = timed(lambda: pipeline.optimise_plan(case, cands, strength, MODEL, goals,
                                                                matrices=matrices))
        ref, t_ref, c_ref = timed(lambda: exhaustive_greedy(cands, goals, matrices))
        value = _State(_Problem(cands, matrices, goals, Weights()), plan.chosen).value
    finally:
        del os.environ["SEEDBRACHY_ENGINE"]
    print(f"  dose matrices ({len(cands)} candidates): {t_matrices:.2f} s; load average {os.getloadavg()[0]:.1f}")
    print(f"  optimiser: {plan.n_seeds} seeds, {plan.n_needles} needles, objective {value:.4f}, D90 "
          f"{plan.terms['D90']:.2f} Gy, V100 {plan.terms['V100']:.2f} %, goals met (internal): "
          f"{plan.terms['violation'] == 0}; {t_opt:.2f} s wall, {c_opt:.2f} s CPU (target <= 1 s: "
          f"{'met' if t_opt <= 1 else 'NOT met'})")
    print(f"  the same search on the numpy path: {t_np:.2f} s wall, {c_np:.2f} s CPU, same plan: "
          f"{np.array_equal(same.chosen, plan.chosen) and same.terms == plan.terms}")
    print(f"  reference exhaustive greedy: {int(ref.x.sum())} seeds, {int((ref.per_needle > 0).sum())} needles, "
          f"objective {ref.value:.4f}, goals met (internal): {ref.terms['violation'] == 0}, {t_ref:.2f} s wall, "
          f"{c_ref:.2f} s CPU")


def timed(run):
    """(result, wall s, CPU s of this process, every thread) of run()."""
    t, c = time.perf_counter(), time.process_time()
    out = run()
    return out, time.perf_counter() - t, time.process_time() - c


if __name__ == "__main__":
    main()
