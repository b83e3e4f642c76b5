"""Example data on disk for the README and the commands: the built-in cases as DICOM (or NRRD), their
post-implant CTs, and a simulated cohort (``seedbrachy example``).

* :data:`CASES`: "neck" (the built-in demo: right cervical node, axis-aligned CT, OncoSeed 6711) and
  "paraaortic" (abdomen, oblique anisotropic CT, needles from the back, IsoAid IAI-125A).
* :func:`write_case` -- CT series + RT Structure Set (or ``ct.nrrd`` + one labelmap per structure).
* :func:`write_post_implant` -- the implant of a plan simulated (placement errors, a lost and a
  migrated seed), the seeds rendered into the case's CT as metal capsules with blur and noise, the
  patient moved by a known rigid motion; written as a new series of the same patient.
* :func:`write_cohort` -- N simulated patients (node size and position varied), each with its CT,
  structures, pre-plan (RT Plan) and post-implant CT: the input of ``seedbrachy batch``; with their
  outcomes (clinical and RECIST lesion tables) drawn from the lymph-node truth at the true delivered dose.
Positions mm RAS; the files are LPS (converted by :mod:`SeedBrachyLib.dicomrt`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..itk_image import resample
from ..synthetic.abdomen import paraaortic_phantom
from ..synthetic.implant import patient_motion, simulate_implant
from ..synthetic.phantom import neck_phantom
from ..synthetic.post_implant_ct import SEED_DIAMETER_MM, SEED_LENGTH_MM, render_capsule

#: case name -> (phantom factory, seed model, activity mCi, needle entry side, patient name)
CASES = {
    "neck": (neck_phantom, "I125_OncoSeed6711", 0.5, "right", "Neck^Demo"),
    "paraaortic": (paraaortic_phantom, "I125_IsoAid_IAI-125A", 0.6, "posterior", "Abdomen^Demo"),
}
STRUCTURE_TYPES = {"GTV": "GTV", "Body": "EXTERNAL"}


def make_case(name, **changes):
    """The synthetic case ``name`` (see :data:`CASES`); ``changes`` go to the phantom factory."""
    if name not in CASES:
        raise InputError(f"example case {name!r} unknown: use one of {', '.join(CASES)}")
    return CASES[name][0](**changes)


def _study(name, patient_id):
    from ..dicomrt import Study
    return Study(patient_name=CASES[name][4] if name in CASES else name, patient_id=patient_id,
                 study_description=f"SeedBrachy example: {name} (synthetic, research use)")


def write_case(case, out, fmt="dicom", study=None, overwrite=False):
    """Write the CT and structures of ``case`` into folder ``out``; returns the paths written (dict)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "nrrd":
        import SimpleITK as sitk

        from ..itk_image import to_sitk
        sitk.WriteImage(to_sitk(case.ct, case.grid), str(out / "ct.nrrd"))
        (out / "structures").mkdir(exist_ok=True)
        for n, m in case.masks.items():
            sitk.WriteImage(to_sitk(m.astype(np.uint8), case.grid), str(out / "structures" / f"{n}.nrrd"))
        return {"ct": out / "ct.nrrd", "structures": out / "structures"}
    if fmt != "dicom":
        raise InputError(f"example format {fmt!r} unknown: use dicom or nrrd")
    from ..dicomrt import Roi, write_ct_series, write_rtstruct
    series = write_ct_series(out / "ct", case.ct, case.grid, study=study, description="planning CT (synthetic)",
                             overwrite=overwrite)
    rois = [Roi(n, m.astype(np.float32), interpreted_type=STRUCTURE_TYPES.get(n, "ORGAN"))
            for n, m in case.masks.items()]
    write_rtstruct(out / "structures.dcm", rois, case.grid, series, overwrite=overwrite)
    return {"ct": out / "ct", "structures": out / "structures.dcm", "series": series}


def post_implant_scan(case, seeds, random_seed=0, motion=None, noise_hu=12.0, psf_sigma_mm=0.35):
    """The case's CT with ``seeds`` rendered as capsules (blur, noise), moved by ``motion`` (4x4 RAS, post -> pre).

    Returns (CT int16 HU, Grid) of the post-implant scan (the case's geometry).
    """
    values = case.ct.astype(np.float32)
    thickness = float(case.grid.spacing[2])
    for seed in seeds:
        render_capsule(values, case.grid, seed.position, seed.axis, SEED_LENGTH_MM, SEED_DIAMETER_MM, 16000.0,
                       thickness)
    if psf_sigma_mm > 0:
        values = ndimage.gaussian_filter(values, sigma=(0.0, psf_sigma_mm / case.grid.spacing[1],
                                                        psf_sigma_mm / case.grid.spacing[0]), truncate=3.0)
    values += np.random.default_rng(random_seed).normal(0.0, noise_hu, values.shape).astype(np.float32)
    matrix = patient_motion() if motion is None else motion
    moved = resample(values, case.grid, case.grid, matrix, "linear", -1000.0)
    return np.clip(np.rint(moved), -1024, 3071).astype(np.int16), case.grid


def write_post_implant(case, plan_seeds, out, fmt="dicom", study=None, random_seed=1, overwrite=False):
    """Simulate the implant of ``plan_seeds``, scan it and write the post-implant CT to ``out`` (folder or .nrrd).

    Returns the :class:`~SeedBrachyLib.synthetic.implant.SimulatedImplant` (the truth, planning frame).
    """
    direction = np.mean([s.axis for s in plan_seeds], axis=0)
    implant = simulate_implant(plan_seeds, random_seed=random_seed, needle_direction=direction)
    ct, grid = post_implant_scan(case, implant.seeds, random_seed)
    if fmt == "nrrd":
        import SimpleITK as sitk

        from ..itk_image import to_sitk
        sitk.WriteImage(to_sitk(ct, grid), str(out))
        return implant
    from ..dicomrt import Study, write_ct_series
    from ..dicomrt.dataset import generate_uid
    post_study = dataclasses.replace(study, frame_of_reference_uid=generate_uid()) if study else Study()
    write_ct_series(out, ct, grid, study=post_study, description="post-implant CT (synthetic)", overwrite=overwrite)
    return implant


def quick_plan(case, model_key, activity_mci, entry, method="optimise"):
    """A pre-plan of the case with the default settings (mm RAS seeds): what ``seedbrachy plan`` does."""
    from .. import settings
    from ..commands.case import Case
    from ..commands.plan import make_plan
    from ..structures import body_from_ct, expand_margin

    values = settings.resolve(sourceModel=model_key, seedActivityMci=activity_mci, needleEntry=entry,
                              prescriptionGy=case.prescription_gy, planningMethod=method)
    ctv = expand_margin(case.masks["GTV"], case.grid, values.ctvMarginMm, clip_to=body_from_ct(case.ct, case.grid))
    from ..commands.inputs import Image
    oars = {n: m for n, m in case.masks.items() if n not in ("GTV", "Body")}
    c = Case(case.grid, "GTV", case.masks["GTV"], ctv, "CTV", oars, Image(case.ct, case.grid, "synthetic"))
    return make_plan(c, values)


#: the tables :func:`write_cohort` writes beside the patient folders
COHORT_TABLES = {"outcomes": "outcomes.csv", "lesions": "lesions.csv", "truth": "truth.csv"}


def true_gtv_d90(case, seeds, model, spacing_mm=1.0):
    """GTV D90 (Gy) of ``seeds`` (mm RAS, U) by exact TG-43 at the GTV's points (``spacing_mm`` grid, partial
    volumes), independent of the post-implant chain (no detection, no registration)."""
    from ..dose import dose_at_points
    from ..planning.robustness import points_from_mask
    points = points_from_mask("GTV", case.masks["GTV"], case.grid, spacing_mm, role="target")
    value, _ = points.dvh(dose_at_points(points.points, seeds, model)).metric("D90", case.prescription_gy)
    return float(value)


def write_cohort(out, n_patients, random_seed=0, progress=None):
    """``n_patients`` simulated lymph-node patients (neck), each a folder with ct/, structures.dcm, plan.dcm and
    post_ct/ (the implant of its plan with random errors and patient motion); returns the folder names.

    Beside the folders (:data:`COHORT_TABLES`): ``outcomes.csv`` (patient_id, tumor_size_mm = node diameter,
    simulated clinical variables) and ``lesions.csv`` (RECIST measurements at 0, 2 and 6 months), the response
    drawn from the lymph-node truth (:func:`SeedBrachyLib.synthetic.cohort.lymph_node_outcomes`) at the *true*
    delivered GTV D90 of each simulated implant; and ``truth.csv`` (that D90, the planned D90, the implanted and
    planned seed counts, the 6-month category), which the analysis does not read: ``seedbrachy batch`` measures
    the D90 again from the post-implant CT."""
    import csv

    from ..dicomrt import write_rtplan
    from ..progress import report
    from ..synthetic.cohort import lymph_node_outcomes
    rng = np.random.default_rng(random_seed)
    names, truth = [], []
    for n in range(int(n_patients)):
        pid = f"P{n + 1:03d}"
        diameter = float(rng.uniform(15.0, 32.0))
        center = (float(rng.uniform(36.0, 44.0)), float(rng.uniform(4.0, 12.0)), float(rng.uniform(-6.0, 6.0)))
        case = neck_phantom(node_diameter_mm=diameter, node_center=center)
        folder = Path(out) / pid
        study = _study("neck", pid)
        written = write_case(case, folder, study=study)
        activity = float(rng.choice([0.4, 0.5, 0.6, 0.7]))
        result = quick_plan(case, "I125_OncoSeed6711", activity, "right", method="modified_peripheral")
        seeds = result.plan.seeds()
        write_rtplan(folder / "plan.dcm", seeds, result.model, written["series"].study, case.prescription_gy)
        implant = write_post_implant(case, seeds, folder / "post_ct", study=written["series"].study,
                                     random_seed=random_seed * 1000 + n + 1)
        names.append(pid)
        truth.append(dict(patient_id=pid, node_diameter_mm=round(diameter, 1),
                          true_gtv_d90_gy=round(true_gtv_d90(case, implant.seeds, result.model), 2),
                          planned_gtv_d90_gy=round(true_gtv_d90(case, seeds, result.model), 2),
                          implanted_seeds=len(implant.seeds), planned_seeds=len(seeds)))
        report(progress, (n + 1) / n_patients, f"cohort: {pid} written")
    clinical, lesions, category = lymph_node_outcomes(names, [t["true_gtv_d90_gy"] for t in truth],
                                                      [t["node_diameter_mm"] for t in truth], seed=random_seed)
    clinical.to_csv(Path(out) / COHORT_TABLES["outcomes"], index=False)
    lesions.to_csv(Path(out) / COHORT_TABLES["lesions"], index=False)
    with open(Path(out) / COHORT_TABLES["truth"], "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=[*truth[0], "category_6_months"], lineterminator="\n")
        writer.writeheader()
        writer.writerows({**t, "category_6_months": category[t["patient_id"]]} for t in truth)
    return names
