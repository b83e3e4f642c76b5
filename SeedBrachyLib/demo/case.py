"""The built-in synthetic case, end to end: phantom, CTV, needles and seeds, dose, evaluation, post-implant check.

Every setting is the default of :mod:`SeedBrachyLib.settings` except the demo's planning aims (user limits
for the synthetic case, not clinical guidance): skin D2cc <= 100 Gy and carotid D2cc <= 45 Gy, which the
optimiser also keeps to.
"""

from __future__ import annotations

import importlib.util
import os

from .. import RESEARCH_NOTICE, checks, settings
from ..checks import format_checks, run_checks
from ..dvh import format_evaluation
from ..planning import nomogram, pipeline
from ..planning.optimize import Goals, OarLimit
from ..planning.order import seed_order
from ..synthetic.phantom import neck_phantom
from . import beyond
from . import postimplant as postimplant_demo
from .scene import DEMO_OARS, write_case_scene

#: The demo's organ-at-risk aim: (structure, metric); its limit is the oarLimitGy setting of the demo.
DEMO_OAR_LIMIT = ("Carotid", "D2cc")
#: The demo's settings changed from the defaults (Gy).
DEMO_CHANGES = {"skinD2ccLimitGy": 100.0, "oarMetric": "D2cc", "oarLimitGy": 45.0}
SCENE_FILE = "SeedBrachyDemo.mrb"  # the scene bundle written into the output folder


def demo_settings(**changes):
    """The settings the demo runs with (:class:`SeedBrachyLib.settings.Values`): defaults, the case's
    prescription, :data:`DEMO_CHANGES` and ``changes`` (e.g. sourceModel, seedActivityMci, uPerMci)."""
    return settings.resolve(**{"prescriptionGy": neck_phantom().prescription_gy, **DEMO_CHANGES, **changes})


def run(out_dir=None, progress=None, print_fn=print, **changes):
    """Run the synthetic case and print the results (units with every number); return a dict.

    ``changes``: settings changed from :func:`demo_settings` (names of :data:`SeedBrachyLib.settings.SETTINGS`).
    """
    values = demo_settings(**changes)
    case = neck_phantom()
    rx = values.prescriptionGy
    print_fn(RESEARCH_NOTICE)
    print_fn(f"Case: {case.description}")
    ctv = pipeline.make_ctv(case.ct, case.grid, case.masks["GTV"], values.ctvMarginMm, values.bodyThresholdHu)
    planning = pipeline.prepare(case.ct, case.grid, ctv, rx, {name: case.masks[name] for name in DEMO_OARS},
                                nogo_names=["Carotid"], gtv_mask=case.masks["GTV"],
                                bone_threshold_hu=values.boneThresholdHu, skin_thickness_mm=values.skinThicknessMm)
    plan, needles = plan_case(case, planning, values, print_fn, progress)
    seeds = plan.seeds()
    evaluation, dose, grid = pipeline.evaluate(planning, seeds, values.sourceModel, progress=progress)
    print_fn(f"Seeds: {len(seeds)} x {values.strength_u:.3f} U ({evaluation.dose_description})")
    print_fn(f"Dose grid (covers every structure where the dose exceeds {values.doseGridThresholdPct:g} % of "
             f"{rx:g} Gy): {grid.describe()}, max {dose.max():.1f} Gy")
    limits = checks.user_limits(values.skinD2ccLimitGy, DEMO_OAR_LIMIT[0], values.oarMetric, values.oarLimitGy)
    results = run_checks(evaluation, checks.indications_to_check(values.indication), None, limits)
    print_fn("")
    print_fn(f"Structures: GTV from the case; CTV = GTV + {values.ctvMarginMm:g} mm clipped to the body (made once); "
             f"body from the CT (> {values.bodyThresholdHu:g} HU); skin = outer {values.skinThicknessMm:g} mm of "
             "the body; organs at risk from the case contours")
    print_fn(format_evaluation(evaluation).rstrip())
    print_fn("")
    print_fn(f"Checks ({values.indication} goal on the GTV; planning aim on the CTV; the demo's limits):")
    print_fn(format_checks(results).rstrip())
    d90, v100 = evaluation.value("GTV", "D90")[0], evaluation.value("GTV", "V100")[0]
    result = {"case": case, "values": values, "plan": plan, "seeds": seeds, "needles": needles, "grid": grid,
              "dose": dose, "evaluation": evaluation, "checks": results, "d90_gy": d90, "v100_pct": v100}
    result["post_implant"] = postimplant_demo.run(case, planning, seeds, values, grid, dose, limits, print_fn,
                                                  progress=progress)
    result["beyond"] = beyond.run(case, planning, plan, evaluation, values.sourceModel, limits, out_dir, print_fn,
                                  progress)
    if out_dir is not None:
        result["scene_path"] = write_slicer_scene(out_dir, case, seeds, needles, values, print_fn)
    return result


def plan_case(case, planning, values, print_fn=print, progress=None):
    """Pre-plan the case and print it: nomogram estimate, optimised needle/seed plan, seed order.

    ``planning`` is the :func:`~SeedBrachyLib.planning.pipeline.prepare` result. Needles through the
    template along the case's needle direction, clear of bone (CT threshold) and the carotid; the
    optimiser meets D90 >= Rx, V100 >= 95 %, V150 <= 60 % and the demo's limits.

    Returns (:class:`~SeedBrachyLib.planning.candidates.Plan`, the needles the plan uses).
    """
    rx = values.prescriptionGy
    print_fn("")
    print_fn("\n".join(nomogram.estimate(planning.ctv, case.grid, rx, values.seedActivityMci,
                                         values.uPerMci).lines()))
    _, needles, candidates = pipeline.generate_needles(planning, case.needle_direction, values.holeSpacingMm,
                                                       values.safetyMarginMm, values.candidateSpacingMm)
    limits = checks.user_limits(values.skinD2ccLimitGy, DEMO_OAR_LIMIT[0], values.oarMetric, values.oarLimitGy)
    goals = Goals(rx, oar_limits=tuple(OarLimit(g.structure, g.metric, g.limit) for g in limits))
    plan = pipeline.optimise_plan(planning, candidates, values.strength_u, values.sourceModel, goals,
                                  values.randomSeed, progress=progress)
    aims = ", ".join(f"{g.structure} {g.metric} <= {g.limit:g} Gy" for g in limits)
    print_fn(f"Planning: planning CTV = CTV minus bone and carotid; {len(needles.needles)} template needles kept "
             f"({len(needles.rejected)} rejected, safety margin {values.safetyMarginMm:g} mm), {len(candidates)} "
             f"candidate positions every {values.candidateSpacingMm:g} mm; optimiser goals D90 >= {rx:g} Gy, "
             f"V100 >= 95 %, V150 <= 60 %, {aims} (demo aims); {plan.seconds:.1f} s")
    print_fn("\n".join(plan.summary_lines(values.uPerMci)))
    order = seed_order(plan.n_seeds, activity_mci=values.seedActivityMci, u_per_mci=values.uPerMci,
                       model_name=values.sourceModel)
    print_fn("\n".join(order.lines()))
    print_fn("")
    return plan, [candidates.needles[n].needle for n in plan.needle_indices]


def write_slicer_scene(out_dir, case, seeds, needles, values, print_fn=print):
    """Write the case as a Slicer scene bundle ``<out_dir>/<SCENE_FILE>`` and print its path.

    Needs slicer-core (``pip install 'SeedBrachyLib[slicer]'``); without it, says so and returns None.
    """
    if importlib.util.find_spec("slicer") is None:
        print_fn("Slicer scene skipped: slicer-core is not installed (pip install 'SeedBrachyLib[slicer]').")
        return None
    path, evaluation, _ = write_case_scene(os.path.join(out_dir, SCENE_FILE), case, seeds, needles, values)
    d90, unit = evaluation.value("GTV", "D90")
    print_fn(f"Slicer scene (CT, GTV and CTV segments, organs at risk, seeds, the planner's needles, dose, DVH "
             f"table and plot, checks): {path}")
    print_fn(f"  the scene's dose and DVH are computed as the module computes them: GTV D90 = {d90:.1f} {unit}")
    return path
