"""The built-in synthetic case as a Slicer scene bundle (.mrb): CT, structures, seeds, needles, dose, DVH, checks.

Used by ``seedbrachy demo`` (``make demo``); open the bundle in Slicer (File > Add Data or drag
and drop). Everything is computed through the same bridge functions as the Slicer module.
"""

from __future__ import annotations

import numpy as np

from ..mrml import dosimetry, markups, parameters, segmentations, volumes
from ..mrml.scene import headless_application, save_bundle
from ..seeds import Needle

DEMO_INDICATIONS = ("lymph-node-metastases", "general")
SEGMENT_COLORS = {"GTV": (1.0, 0.0, 0.0), "Carotid": (0.8, 0.1, 0.6), "SpinalCord": (1.0, 0.9, 0.2),
                  "Trachea": (0.3, 0.7, 1.0), "Bone": (0.95, 0.95, 0.85), "Body": (0.9, 0.7, 0.6)}


def needles_through_seeds(seeds, body_mask, grid, step_mm=1.0):
    """One needle per line of collinear seeds (same axis): tip at the deepest seed, entry at the skin.

    Seeds are grouped by their line (position projected across their axis, to 0.1 mm); the entry
    is found by stepping back from the shallowest seed along the axis (``step_mm``) until the
    line leaves ``body_mask`` (bool ``[k, j, i]`` on ``grid``). Positions in mm RAS.
    """
    lines = {}
    for seed in seeds:
        across = seed.position - (seed.position @ seed.axis) * seed.axis
        key = (tuple(np.round(seed.axis, 6)), tuple(np.round(across, 1)))
        lines.setdefault(key, []).append(seed)
    needles = []
    for n, group in enumerate(lines.values()):
        axis = group[0].axis
        depths = [s.position @ axis for s in group]
        tip = group[int(np.argmax(depths))].position
        entry = group[int(np.argmin(depths))].position.copy()
        while grid.mask_at(body_mask, entry - step_mm * axis):
            entry = entry - step_mm * axis
        needles.append(Needle(entry - step_mm * axis, tip, f"Needle {n + 1}"))
    return needles


def write_case_scene(path, case, seeds, model_key, dose_spacing_mm=1.0, progress=None):
    """Build the case in a new headless scene, compute dose and DVH, save it as ``path`` (.mrb).

    Args:
        path: output .mrb file.
        case: :class:`~SeedBrachyLib.synthetic.phantom.SyntheticCase` (CT in HU, masks, prescription in Gy).
        seeds: the plan's seeds (mm RAS, unit axis, S_K in U).
        model_key: TG-43 source model key.
        dose_spacing_mm: dose voxel size (mm).
        progress: callback(fraction, message); returning False cancels.

    Returns:
        (absolute path of the bundle, :class:`~SeedBrachyLib.dvh.PlanEvaluation` of the scene's dose).
    """
    app = headless_application(set_global_scene=False)
    scene = app.scene
    ct = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Neck CT")
    volumes.update_volume_node(ct, case.ct, case.grid)
    ct.CreateDefaultDisplayNodes()
    ct.GetDisplayNode().SetAutoWindowLevel(False)
    ct.GetDisplayNode().SetWindowLevel(400.0, 40.0)  # soft-tissue window (HU)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Structures")
    segmentation.CreateDefaultDisplayNodes()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(ct)
    ids = {name: segmentations.add_mask_segment(segmentation, mask, case.grid, name, SEGMENT_COLORS.get(name))
           for name, mask in case.masks.items()}
    seeds_node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Seeds")
    seeds_node.CreateDefaultDisplayNodes()
    markups.write_seeds(seeds_node, seeds, model_key)
    markups.write_needles(seeds_node, needles_through_seeds(seeds, case.masks["Body"], case.grid))
    dose = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Dose")
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "DVH metrics")
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", "DVH")
    dosimetry.compute_dose(ct, segmentation, ids["GTV"], seeds_node, dose, case.prescription_gy, model_key=model_key,
                      spacing_mm=dose_spacing_mm, progress=progress)
    oars = [ids[name] for name in ids if name not in ("GTV", "Body")]
    evaluation = dosimetry.evaluate(dose, segmentation, ids["GTV"], case.prescription_gy, table, chart,
                               oar_segment_ids=oars, ct_node=ct)
    checks_table = scene.AddNewNodeByClass("vtkMRMLTableNode", "Checks")
    dosimetry.check(evaluation, checks_table, DEMO_INDICATIONS)
    parameters.write_settings(parameters.parameter_node(scene), ctVolume=ct, segmentation=segmentation,
                              targetSegmentID=ids["GTV"], sourceModel=model_key, seeds=seeds_node,
                              prescriptionGy=case.prescription_gy, doseSpacingMm=dose_spacing_mm, doseVolume=dose,
                              dvhTable=table, dvhChart=chart, checksTable=checks_table)
    return save_bundle(scene, path), evaluation
