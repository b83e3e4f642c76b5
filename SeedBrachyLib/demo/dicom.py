"""The built-in synthetic case as a DICOM folder (``seedbrachy dicom export --demo``): a worked example.

CT series of the neck phantom, RT Structure Set (GTV, CTV, organs at risk, body, skin), the optimised
seed plan as RT Plan and its TG-43 dose as RT Dose, all in one frame of reference, linked by UIDs.
"""

from __future__ import annotations

import numpy as np

from ..dicomrt import Roi, write_dicom_case
from ..planning import pipeline
from ..synthetic.phantom import neck_phantom
from .case import demo_settings, plan_case
from .scene import DEMO_OARS

#: RT ROI Interpreted Type of each demo structure.
ROI_TYPES = {"GTV": "GTV", "CTV": "CTV", "Body": "EXTERNAL"}


def export_demo(folder, implant_datetime=None, print_fn=print, progress=None, overwrite=False, **changes):
    """Plan the synthetic neck case as ``seedbrachy demo`` does and write it to ``folder`` as CT/, RS.dcm, RP.dcm,
    RD.dcm; return the paths.

    ``changes``: settings changed from the demo's (e.g. sourceModel, seedActivityMci, uPerMci); the strengths are
    referenced to ``implant_datetime`` (default now); the dose is on the one dose-grid policy's grid.
    """
    values = demo_settings(**changes)
    case = neck_phantom()
    ctv = pipeline.make_ctv(case.ct, case.grid, case.masks["GTV"], values.ctvMarginMm, values.bodyThresholdHu)
    planning = pipeline.prepare(case.ct, case.grid, ctv, values.prescriptionGy,
                                {name: case.masks[name] for name in DEMO_OARS}, nogo_names=["Carotid"],
                                gtv_mask=case.masks["GTV"], bone_threshold_hu=values.boneThresholdHu,
                                skin_thickness_mm=values.skinThicknessMm)
    plan, _ = plan_case(case, planning, values, lambda *a: None, progress)
    seeds = plan.seeds()
    _, dose, dose_grid = pipeline.evaluate(planning, seeds, values.sourceModel, progress=progress)
    masks = {"GTV": case.masks["GTV"], "CTV": ctv, **{n: case.masks[n] for n in DEMO_OARS},
             "Body": planning.body, "Skin": planning.skin}
    rois = [Roi(name, np.asarray(mask, dtype=np.float32), interpreted_type=ROI_TYPES.get(name, "ORGAN"))
            for name, mask in masks.items()]
    paths = write_dicom_case(folder, case.ct, case.grid, rois, seeds, values.sourceModel, values.prescriptionGy,
                             dose, dose_grid, implant_datetime, target_roi_number=2, overwrite=overwrite,
                             progress=progress).paths
    print_fn(f"Synthetic neck case written as DICOM to {folder}: CT {case.grid.describe()}, {len(rois)} ROIs, "
             f"{len(seeds)} seeds x {seeds[0].strength_u:.3f} U ({values.sourceModel}), prescription "
             f"{values.prescriptionGy:g} Gy to the CTV, dose {dose_grid.describe()} (max {dose.max():.0f} Gy)")
    return paths
