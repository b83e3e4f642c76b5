"""The built-in synthetic case in a Slicer scene: CT, segments (GTV, CTV, organs at risk), seeds, needles, dose.

:func:`add_case_nodes` puts the case into any scene (the module's self-test, the test fixtures and the
demo bundle all use it); :func:`write_case_scene` computes dose, DVH and checks through the same bridge
functions as the Slicer module and saves a bundle (``seedbrachy demo``; open it in Slicer with File >
Add Data or drag and drop).
"""

from __future__ import annotations

from types import SimpleNamespace

from .. import settings
from ..mrml import dosimetry, markups, parameters, segmentations, volumes
from ..mrml.scene import headless_application, save_bundle
from ..sources import get_model
from ..synthetic.phantom import fixed_seed_arrangement, neck_phantom

SEGMENT_COLORS = {"GTV": (1.0, 0.0, 0.0), "Carotid": (0.8, 0.1, 0.6), "SpinalCord": (1.0, 0.9, 0.2),
                  "Trachea": (0.3, 0.7, 1.0), "Bone": (0.95, 0.95, 0.85), "Body": (0.9, 0.7, 0.6)}
#: Organs at risk evaluated in the demo (the case's other masks, Bone and Body, are planning aids).
DEMO_OARS = ("Carotid", "SpinalCord", "Trachea")


def add_case_nodes(scene, case=None, seeds=None, values=None, needles=None):
    """The case in ``scene``: CT volume, a segmentation with GTV, CTV (made from the GTV as the module makes
    it, :func:`SeedBrachyLib.mrml.segmentations.make_ctv`) and one segment per other mask, a seeds node
    (``seeds``, default :func:`~SeedBrachyLib.synthetic.phantom.fixed_seed_arrangement`; with ``needles``
    as line nodes) and an empty dose node.

    Returns a namespace: case, ct, segmentation, ids (segment name -> ID, "CTV" included), seeds,
    seedsNode, dose, model (the TG-43 model of ``values.sourceModel``), values.
    """
    case = case or neck_phantom()
    values = values or settings.resolve(prescriptionGy=case.prescription_gy)
    if seeds is None:
        seeds = fixed_seed_arrangement(case, values.seedActivityMci, u_per_mci=values.uPerMci)
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
    ids["CTV"] = segmentations.make_ctv(segmentation, ids["GTV"], ct, values)
    seeds_node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Seeds")
    seeds_node.CreateDefaultDisplayNodes()
    markups.write_seeds(seeds_node, seeds, values.sourceModel)
    if needles:
        markups.write_needles(seeds_node, needles)
    dose = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Dose")
    return SimpleNamespace(case=case, ct=ct, segmentation=segmentation, ids=ids, seeds=seeds, seedsNode=seeds_node,
                           dose=dose, model=get_model(values.sourceModel), values=values)


def write_case_scene(path, case, seeds, needles, values, progress=None):
    """Build the case in a new headless scene, compute dose, DVH and checks, save it as ``path`` (.mrb).

    Args:
        path: output .mrb file.
        case: :class:`~SeedBrachyLib.synthetic.phantom.SyntheticCase` (CT in HU, masks, prescription in Gy).
        seeds, needles: the plan's seeds (mm RAS, unit axis, S_K in U) and the planner's needles.
        values: the settings the demo ran with (:class:`SeedBrachyLib.settings.Values`).
        progress: callback(fraction, message); returning False cancels.

    Returns:
        (absolute path of the bundle, :class:`~SeedBrachyLib.dvh.PlanEvaluation` of the scene's dose, checks).
    """
    scene = headless_application(set_global_scene=False).scene
    c = add_case_nodes(scene, case, seeds, values, needles)
    evaluated = [c.ids[name] for name in DEMO_OARS]
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "DVH metrics")
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", "DVH")
    checks_table = scene.AddNewNodeByClass("vtkMRMLTableNode", "Checks")
    dosimetry.compute_dose(c.ct, c.segmentation, [c.ids["GTV"], c.ids["CTV"]], c.seedsNode, c.dose, values,
                           oar_segment_ids=evaluated, progress=progress)
    evaluation = dosimetry.evaluate(c.dose, c.segmentation, c.ids["GTV"], c.ids["CTV"], values, table, chart,
                                    oar_segment_ids=evaluated, ct_node=c.ct)
    results = dosimetry.check(evaluation, values, checks_table,
                              dosimetry.target_names(c.segmentation, c.ids["GTV"], c.ids["CTV"]), "Carotid")
    parameters.write_settings(parameters.parameter_node(scene), **values.as_dict(), ctVolume=c.ct,
                              segmentation=c.segmentation, gtvSegmentID=c.ids["GTV"], ctvSegmentID=c.ids["CTV"],
                              oarSegmentID=c.ids["Carotid"], seeds=c.seedsNode, doseVolume=c.dose, dvhTable=table,
                              dvhChart=chart, checksTable=checks_table)
    return save_bundle(scene, path), evaluation, results
