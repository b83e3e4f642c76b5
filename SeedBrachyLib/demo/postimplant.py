"""The post-implant part of the built-in demo: simulated implant, post-implant CT, detection, registration, comparison.

Called by :func:`SeedBrachyLib.demo.case.run` after the pre-plan. The patient lies differently on the
post-implant scan (a known rigid motion), so the registration has something to find and its
target registration error (TRE) can be printed against the truth.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from ..itk_image import resample
from ..postimplant.comparison import compare_implant
from ..postimplant.detection import detect_seeds, match_seeds
from ..postimplant.registration import map_points, map_seeds, register_post_to_pre
from ..progress import report
from ..synthetic import post_implant_ct as synthetic_ct
from ..synthetic.implant import simulate_implant

PATIENT_MOTION_DEG = (0.0, 0.0, 4.0)  # rotation vector (deg) of the post-implant frame
PATIENT_MOTION_MM = (6.0, -4.0, 9.0)
POST_CHECKS = (("lymph-node-metastases", "GTV"), ("general", "CTV"))  # as the pre-plan's checks


def patient_motion(rotvec_deg=PATIENT_MOTION_DEG, shift_mm=PATIENT_MOTION_MM):
    """4x4 RAS matrix post-implant frame -> pre-plan frame for a rotation vector (deg) and a shift (mm)."""
    m = np.eye(4)
    m[:3, :3] = Rotation.from_rotvec(np.radians(rotvec_deg)).as_matrix()
    m[:3, 3] = shift_mm
    return m


def run(case, plan_seeds, model, grid, structures, body, pre_dose, print_fn=print, random_seed=1, progress=None):
    """Simulate the implant of ``plan_seeds``, scan it, find the seeds, register, compare; print and return a dict.

    ``grid``, ``structures``, ``body`` and ``pre_dose`` (Gy) are the pre-plan's dose grid, structures
    on it and dose; the post-plan is evaluated on the same grid and structures.
    """
    report(progress, 0.0, "post-implant: simulating the implant")
    implant = simulate_implant(plan_seeds, random_seed=random_seed, needle_direction=case.needle_direction)
    truth = patient_motion()
    scan = synthetic_ct.post_implant_ct(implant.seeds, spacing_mm=(0.8, 0.8, 1.0), random_seed=random_seed,
                                        node_center=case.node_center)
    post_ct = resample(scan.ct.astype(np.float32), scan.grid, scan.grid, truth, "linear", -1000.0)
    true_post = map_points(np.linalg.inv(truth), [s.position for s in implant.seeds])

    report(progress, 0.2, "post-implant: detecting seeds")
    detection = detect_seeds(post_ct, scan.grid, strength_u=float(np.median([s.strength_u for s in plan_seeds])))
    pairs, err = match_seeds([s.position for s in detection.seeds], true_post)
    report(progress, 0.3, "post-implant: registering to the pre-plan CT")
    reg = register_post_to_pre(case.ct, case.grid, post_ct, scan.grid,
                               post_seed_points=[s.position for s in detection.seeds])
    gtv = case.grid.points()[case.masks["GTV"]]
    tre = np.linalg.norm(map_points(reg.post_to_pre, map_points(np.linalg.inv(truth), gtv)) - gtv, axis=1)

    report(progress, 0.7, "post-implant: post-plan dose and comparison")
    seeds_pre_frame = map_seeds(detection.seeds, reg.post_to_pre)
    comparison, post = compare_implant(grid, structures, case.prescription_gy, plan_seeds, seeds_pre_frame,
                                       model, axis_source="detection", body=body, pre_dose=pre_dose,
                                       indications=POST_CHECKS)
    report(progress, 1.0, "post-implant done")

    print_fn("")
    print_fn("Post-implant verification (simulated)")
    print_fn(f"  {implant.describe()}")
    print_fn(f"  {scan.description}; patient moved by {np.linalg.norm(PATIENT_MOTION_DEG):.1f} deg and "
             f"{np.linalg.norm(PATIENT_MOTION_MM):.1f} mm")
    print_fn(f"  detection: {detection.summary()}; {len(pairs)}/{len(implant.seeds)} implanted seeds found, "
             f"position error mean {err.mean():.2f} mm, max {err.max():.2f} mm")
    print_fn(f"  {reg.describe()}; TRE over the GTV mean {tre.mean():.2f} mm, max {tre.max():.2f} mm")
    print_fn("")
    print_fn(comparison.format())
    return {"implant": implant, "scan": scan, "detection": detection, "registration": reg,
            "tre_mm": tre, "comparison": comparison, "post_dose": post}
