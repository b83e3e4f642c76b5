"""The built-in synthetic case as a DICOM folder (``seedbrachy dicom export --demo``): a worked example.

CT series of the neck phantom, RT Structure Set (GTV, CTV, organs at risk, body, skin), the optimised
seed plan as RT Plan and its TG-43 dose as RT Dose, all in one frame of reference, linked by UIDs.
"""

from __future__ import annotations

import numpy as np

from ..dicomrt import Roi, write_dicom_case
from ..dose import compute_dose
from ..grid import Grid
from ..planning import pipeline
from ..sources import DEFAULT_U_PER_MCI
from ..synthetic.phantom import neck_phantom
from .case import CTV_MARGIN_MM, DEMO_ACTIVITY_MCI, DEMO_OARS, plan_case

#: RT ROI Interpreted Type of each demo structure.
ROI_TYPES = {"GTV": "GTV", "CTV": "CTV", "Body": "EXTERNAL"}


def export_demo(folder, model_key="I125_OncoSeed6711", activity_mci=DEMO_ACTIVITY_MCI, u_per_mci=DEFAULT_U_PER_MCI,
                implant_datetime=None, dose_spacing_mm=1.0, print_fn=print, progress=None, overwrite=False):
    """Plan the synthetic neck case and write it to ``folder`` as CT/, RS.dcm, RP.dcm, RD.dcm; return the paths.

    Seeds of ``activity_mci`` (mCi, converted with ``u_per_mci`` U/mCi) of ``model_key``, strengths referenced
    to ``implant_datetime`` (default now); dose on a ``dose_spacing_mm`` grid in the CT's direction.
    """
    case = neck_phantom()
    planning = pipeline.prepare(case.ct, case.grid, case.masks["GTV"], case.prescription_gy, CTV_MARGIN_MM,
                                oar_masks={"Carotid": case.masks["Carotid"]}, nogo_names=["Carotid"])
    seeds = plan_case(case, planning, model_key, lambda *a: None, progress, activity_mci, u_per_mci)
    masks = {"GTV": case.masks["GTV"], "CTV": planning.ctv, **{n: case.masks[n] for n in DEMO_OARS},
             "Body": planning.body, "Skin": planning.skin}
    rois = [Roi(name, np.asarray(mask, dtype=np.float32), interpreted_type=ROI_TYPES.get(name, "ORGAN"))
            for name, mask in masks.items()]
    dose_grid = Grid.around(case.node_center, [70.0, 70.0, 70.0], dose_spacing_mm, case.grid.direction)
    dose = compute_dose(dose_grid, seeds, model_key, progress=progress)
    paths = write_dicom_case(folder, case.ct, case.grid, rois, seeds, model_key, case.prescription_gy, dose,
                             dose_grid, implant_datetime, target_roi_number=2, overwrite=overwrite,
                             progress=progress).paths
    print_fn(f"Synthetic neck case written as DICOM to {folder}: CT {case.grid.describe()}, {len(rois)} ROIs, "
             f"{len(seeds)} seeds x {seeds[0].strength_u:.3f} U ({model_key}), prescription "
             f"{case.prescription_gy:g} Gy to the CTV, dose {dose_grid.describe()} (max {dose.max():.0f} Gy)")
    return paths
