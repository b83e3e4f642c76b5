"""The post-implant part of the built-in demo: simulated implant, post-implant CT, detection, registration, comparison.

Called by :func:`SeedBrachyLib.demo.case.run` after the pre-plan. The patient lies differently on the
post-implant scan (a known rigid motion), so the registration has something to find and its
target registration error (TRE) can be printed against the truth.
"""

from __future__ import annotations

import numpy as np

from .. import checks
from ..postimplant.comparison import compare_implant
from ..postimplant.detection import detect_seeds, match_seeds
from ..postimplant.registration import map_points, map_seeds, register_post_to_pre
from ..progress import report, scaled
from ..structures import structure_on_grid, structures_from_masks
from ..synthetic.implant import PATIENT_MOTION_DEG, PATIENT_MOTION_MM, rescanned_implant


def run(case, planning, plan_seeds, values, grid, pre_dose, user_limits=(), print_fn=print, random_seed=1,
        progress=None):
    """Simulate the implant of ``plan_seeds``, scan it, find the seeds, register, compare; print and return a dict.

    ``planning`` is the pre-plan's :class:`~SeedBrachyLib.planning.pipeline.PlanningCase`; ``grid`` and
    ``pre_dose`` (Gy) its dose grid and dose. The post-plan is evaluated on the same grid and structures and
    checked with the same indication and ``user_limits`` as the pre-plan.
    """
    report(progress, 0.0, "post-implant: simulating the implant")
    scan = rescanned_implant(plan_seeds, case, random_seed=random_seed)

    report(progress, 0.2, "post-implant: detecting seeds")
    detection = detect_seeds(scan.ct, scan.grid, strength_u=values.strength_u)
    pairs, err = match_seeds([s.position for s in detection.seeds], scan.true_positions_post)
    report(progress, 0.3, "post-implant: registering to the pre-plan CT")
    reg = register_post_to_pre(case.ct, case.grid, scan.ct, scan.grid,
                               post_seed_points=[s.position for s in detection.seeds])
    gtv = case.grid.points()[case.masks["GTV"]]
    tre = np.linalg.norm(map_points(reg.post_to_pre, map_points(np.linalg.inv(scan.post_to_pre), gtv)) - gtv, axis=1)

    report(progress, 0.7, "post-implant: post-plan dose and comparison")
    structures = structures_from_masks(planning.targets, planning.oars, case.grid)
    body = structure_on_grid("Body", planning.body, case.grid, grid)
    comparison, post = compare_implant(grid, structures, values.prescriptionGy, plan_seeds,
                                       map_seeds(detection.seeds, reg.post_to_pre), values.sourceModel,
                                       axis_source=values.postSeedAxis, body=body, pre_dose=pre_dose,
                                       progress=scaled(progress, 0.7, 1.0),
                                       indications=checks.indications_to_check(values.indication),
                                       user_limits=user_limits)
    report(progress, 1.0, "post-implant done")

    print_fn("")
    print_fn("Post-implant verification (simulated)")
    print_fn(f"  {scan.implant.describe()}")
    print_fn(f"  {scan.scan.description}; patient moved by {np.linalg.norm(PATIENT_MOTION_DEG):.1f} deg and "
             f"{np.linalg.norm(PATIENT_MOTION_MM):.1f} mm")
    print_fn(f"  detection: {detection.summary()}; {len(pairs)}/{len(scan.implant.seeds)} implanted seeds found, "
             f"position error mean {err.mean():.2f} mm, max {err.max():.2f} mm")
    print_fn(f"  {reg.describe()}; TRE over the GTV mean {tre.mean():.2f} mm, max {tre.max():.2f} mm")
    print_fn("")
    print_fn(comparison.format())
    return {"implant": scan.implant, "scan": scan, "detection": detection, "registration": reg,
            "tre_mm": tre, "comparison": comparison, "post_dose": post}
