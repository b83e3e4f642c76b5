"""The built-in synthetic case, end to end: phantom, seeds on parallel needles, dose, evaluation, post-implant check."""

from __future__ import annotations

import importlib.util
import os

from .. import RESEARCH_NOTICE
from ..checks import format_checks, run_checks
from ..dose import compute_dose
from ..dvh import evaluate_plan, format_evaluation
from ..grid import Grid
from ..planning import nomogram, pipeline
from ..planning.optimize import Goals, OarLimit
from ..planning.order import seed_order
from ..sources import DEFAULT_U_PER_MCI, get_model, mci_to_u
from ..structures import structure_on_grid
from ..synthetic.phantom import neck_phantom
from . import postimplant as postimplant_demo

CTV_MARGIN_MM = 5.0
DEMO_OARS = ("Carotid", "SpinalCord", "Trachea")
DEMO_ACTIVITY_MCI = 0.5
#: Demo planning aims (user limits for the synthetic case, not clinical guidance): (structure, metric, Gy).
DEMO_LIMITS = (("Skin", "D2cc", 100.0), ("Carotid", "D2cc", 45.0))
SCENE_FILE = "SeedBrachyDemo.mrb"  # the scene bundle written into the output folder


def run(out_dir=None, progress=None, model_key="I125_OncoSeed6711", print_fn=print,
        activity_mci=DEMO_ACTIVITY_MCI, u_per_mci=DEFAULT_U_PER_MCI):
    """Run the synthetic case and print the results (units with every number); return a dict.

    Seeds of ``activity_mci`` (mCi) converted to S_K with ``u_per_mci`` (U/mCi); ``model_key`` the seed model.
    """
    case = neck_phantom()
    model = get_model(model_key)
    rx = case.prescription_gy
    print_fn(RESEARCH_NOTICE)
    print_fn(f"Case: {case.description}")
    planning = pipeline.prepare(case.ct, case.grid, case.masks["GTV"], rx, CTV_MARGIN_MM,
                                oar_masks={"Carotid": case.masks["Carotid"]}, nogo_names=["Carotid"])
    seeds = plan_case(case, planning, model_key, print_fn, progress, activity_mci, u_per_mci)
    grid = Grid.around(case.node_center, [70.0, 70.0, 70.0], 1.0)
    dose = compute_dose(grid, seeds, model, progress=progress)
    print_fn(f"Seeds: {len(seeds)} x {seeds[0].strength_u:.3f} U ({model.name}), optimised on parallel needles")
    print_fn(f"Dose grid: {grid.describe()}, max {dose.max():.1f} Gy")
    structures, body = case_structures(case, planning, grid)
    evaluation = evaluate_plan(dose, structures, rx, body=body, dose_description=(
        f"TG-43 line source, permanent implant, {grid.describe()}, partial-volume DVH"))
    checks = (run_checks(evaluation, "lymph-node-metastases", target="GTV")
              + run_checks(evaluation, "general", target="CTV"))
    print_fn("")
    print_fn(f"Structures: CTV = GTV + {CTV_MARGIN_MM:g} mm (clipped to the body, minus bone and carotid); body "
             f"from the CT (> -300 HU); skin = outer 5 mm of the body; organs at risk from the case contours")
    print_fn(format_evaluation(evaluation).rstrip())
    print_fn("")
    print_fn("Checks (lymph-node metastases on the GTV; general planning aim on the CTV):")
    print_fn(format_checks(checks).rstrip())
    d90, v100 = evaluation.value("GTV", "D90")[0], evaluation.value("GTV", "V100")[0]
    result = {"case": case, "seeds": seeds, "grid": grid, "dose": dose, "evaluation": evaluation,
              "checks": checks, "d90_gy": d90, "v100_pct": v100}
    result["post_implant"] = postimplant_demo.run(case, seeds, model, grid, structures, body, dose, print_fn,
                                                  progress=progress)
    if out_dir is not None:
        result["scene_path"] = write_slicer_scene(out_dir, case, seeds, model_key, print_fn)
    return result


def plan_case(case, planning, model_key, print_fn=print, progress=None, activity_mci=DEMO_ACTIVITY_MCI,
              u_per_mci=DEFAULT_U_PER_MCI):
    """Pre-plan the case and print it: nomogram estimate, optimised needle/seed plan, seed order; return the seeds.

    ``planning`` is the :func:`~.planning.pipeline.prepare` result (CTV, body, skin, no-go structures).

    Needles through a 10 mm template along the case's needle direction, 3 mm clear of bone (CT
    threshold) and the carotid; candidates every 5 mm; the optimiser meets D90 >= Rx, V100 >= 95 %,
    V150 <= 60 % and :data:`DEMO_LIMITS` with seeds of ``activity_mci`` (mCi).
    """
    rx = case.prescription_gy
    print_fn("")
    print_fn("\n".join(nomogram.estimate(planning.ctv, case.grid, rx, activity_mci, u_per_mci).lines()))
    _, needles, candidates = pipeline.generate_needles(planning, case.needle_direction)
    goals = Goals(rx, oar_limits=tuple(OarLimit(*limit) for limit in DEMO_LIMITS))
    plan = pipeline.optimise_plan(planning, candidates, float(mci_to_u(activity_mci, u_per_mci)), model_key, goals,
                                  progress=progress)
    aims = ", ".join(f"{n} {m} <= {v:g} Gy" for n, m, v in DEMO_LIMITS)
    print_fn(f"Planning: CTV = GTV + {CTV_MARGIN_MM:g} mm minus bone and carotid; {len(needles.needles)} template "
             f"needles kept ({len(needles.rejected)} rejected, safety margin 3 mm), {len(candidates)} candidate "
             f"positions every 5 mm; optimiser goals D90 >= {rx:g} Gy, V100 >= 95 %, V150 <= 60 %, {aims} "
             f"(demo aims); {plan.seconds:.1f} s")
    print_fn("\n".join(plan.summary_lines(u_per_mci)))
    order = seed_order(plan.n_seeds, activity_mci=activity_mci, u_per_mci=u_per_mci, model_name=model_key)
    print_fn("\n".join(order.lines()))
    print_fn("")
    return plan.seeds()


def case_structures(case, planning, grid, oars=DEMO_OARS):
    """GTV and CTV (targets), the organs at risk and skin that reach ``grid`` (dose grid), and the body.

    CTV, body and skin come from ``planning`` (:func:`~.planning.pipeline.prepare`, on the CT grid);
    all are mapped onto ``grid`` with partial volumes. Returns (list of Structure, body Structure).
    """
    masks = {"GTV": case.masks["GTV"], "CTV": planning.ctv}
    masks.update({name: case.masks[name] for name in oars})
    masks["Skin"] = planning.skin
    points = case.grid.points()
    out = []
    for name, mask in masks.items():
        role = "target" if name in ("GTV", "CTV") else "oar"
        if role == "target" or grid.contains(points[mask]).any():
            out.append(structure_on_grid(name, mask, case.grid, grid, role))
    return out, structure_on_grid("Body", planning.body, case.grid, grid)


def write_slicer_scene(out_dir, case, seeds, model_key, print_fn=print):
    """Write the case as a Slicer scene bundle ``<out_dir>/<SCENE_FILE>`` and print its path.

    Needs slicer-core (``pip install 'SeedBrachyLib[slicer]'``); without it, says so and returns None.
    """
    if importlib.util.find_spec("slicer") is None:
        print_fn("Slicer scene skipped: slicer-core is not installed (pip install 'SeedBrachyLib[slicer]').")
        return None
    from .scene import write_case_scene

    path, evaluation = write_case_scene(os.path.join(out_dir, SCENE_FILE), case, seeds, model_key)
    d90, unit = evaluation.value("GTV", "D90")
    print_fn(f"Slicer scene (CT, structures, seeds, needles, dose, DVH table and plot): {path}")
    print_fn(f"  the scene's dose is recomputed as the module does it (grid = GTV and seeds + 10 mm, CT direction, "
             f"1 mm): GTV D90 = {d90:.1f} {unit}")
    return path
