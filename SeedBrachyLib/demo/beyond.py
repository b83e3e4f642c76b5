"""The demo's closing sections: placement robustness, radiobiology with a prior course, the printed template.

Called by :func:`SeedBrachyLib.demo.case.run` after the pre-plan (prints; returns a dict).
"""

from __future__ import annotations

import os

from .. import radiobiology
from ..checks import goals_for
from ..planning import printed_template, robustness
from ..progress import report
from ..sources import get_model

#: Prior external-beam course for the demo: the median prior dose of the nodal-recurrence cohort (60 Gy,
#: 2 Gy fractions), assumed to have reached every structure in full (the conservative sum).
PRIOR_DOSE_GY, PRIOR_FRACTIONS = 60.0, 30
#: Demo cumulative limits (EQD2, Gy): illustration only, not clinical guidance.
CUMULATIVE_LIMITS = (("Skin", "D2cc", 120.0), ("Carotid", "D2cc", 120.0))
ROBUSTNESS_SAMPLES = 100


def run(case, planning, plan, evaluation, model, limits, out_dir=None, print_fn=print, progress=None,
        n_samples=ROBUSTNESS_SAMPLES):
    """Print the three sections for the planned case; the template STL goes to ``out_dir`` (if given).

    ``model``: seed model or key; ``limits``: the demo's user limits (:class:`~SeedBrachyLib.checks.Goal`).
    """
    model = get_model(model)
    report(progress, 0.0, "robustness")
    masks = {"GTV": (case.masks["GTV"], "target"), "Skin": (planning.skin, "oar"),
             "Carotid": (case.masks["Carotid"], "oar")}
    goals = list(goals_for("lymph-node-metastases")) + [g for g in limits if g.structure in masks]
    rob = robustness.plan_robustness(plan, model, masks, case.grid, goals, case.prescription_gy,
                                     n_samples=n_samples, progress=progress)
    print_fn("")
    print_fn("\n".join(rob.summary_lines()))
    print_fn("  (defaults: " + "; ".join(f"{k}: {v}" for k, v in robustness.ERROR_SOURCES.items()) + ")")

    prior = radiobiology.PriorCourse(PRIOR_FRACTIONS, {name: PRIOR_DOSE_GY for name in evaluation.structures},
                                     f"{PRIOR_DOSE_GY:g} Gy external beam to every structure (demo)")
    print_fn("")
    print_fn("\n".join(radiobiology.summary_lines(evaluation, model.half_life_days, prior, CUMULATIVE_LIMITS)))

    report(progress, 0.7, "printed template")
    needles = [plan.candidates.needles[i] for i in plan.needle_indices]
    template = printed_template.build_template(needles, planning.body, case.grid, progress=progress)
    check = printed_template.mesh_check(template.mesh)
    print_fn("")
    print_fn("\n".join(printed_template.table_lines(template)))
    print_fn(f"  mesh: {check['triangles']} triangles, {check['boundary_edges']} boundary and "
             f"{check['non_manifold_edges']} non-manifold edges, {check['regions']} piece; {'; '.join(template.notes)}")
    path = None
    if out_dir is not None:
        path = template.write_stl(os.path.join(out_dir, "SeedBrachyTemplate.stl"), force=True)
        print_fn(f"  STL: {path}")
    return {"robustness": rob, "prior": prior, "template": template, "template_check": check, "stl_path": path}
