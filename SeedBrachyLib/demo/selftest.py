"""The Slicer module's self-test: the synthetic neck case through the module's Logic, step by step.

``SeedBrachyTest`` (``SeedBrachy/SeedBrachy.py``) calls :data:`STEPS` with itself (a
``unittest.TestCase`` with ``delayDisplay``), the module's Logic and ``slicer.mrmlScene``; the
headless tests run the same steps on slicer-core (``Testing/test_module_ui.py``). The oracles are
independent of the code under test: D90 from an exact TG-43 point evaluation at the GTV's voxel
centres, the needles' clearance from the no-go segment, the registration error at the target
against the known patient motion, the number of seeds the simulated implant lost.
"""

from __future__ import annotations

import numpy as np

from .. import dose, dvh, settings
from ..errors import InputError
from ..mrml import tables, transforms, volumes
from ..postimplant.detection import match_seeds
from ..postimplant.registration import map_points
from ..synthetic.implant import rescanned_implant
from .scene import add_case_nodes


def dose_and_checks(test, logic, scene):
    """Dose on the policy grid; D90 in the table equals an exact TG-43 point evaluation at the GTV's voxel
    centres within the voxelisation (2 %); the published goal is read on the GTV; bad inputs are refused."""
    test.delayDisplay("Building the synthetic neck case")
    c = add_case_nodes(scene)
    values = settings.resolve(prescriptionGy=c.case.prescription_gy)
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "DVH")
    checks_table = scene.AddNewNodeByClass("vtkMRMLTableNode", "Checks")
    test.delayDisplay("Computing dose")
    logic.computeDose(c.ct, c.segmentation, [c.ids["GTV"], c.ids["CTV"]], c.seedsNode, c.dose, values)
    _, results = logic.evaluate(c.dose, c.segmentation, c.ids["GTV"], c.ids["CTV"], values, table,
                                checks_table=checks_table)
    points = c.case.grid.points()[c.case.masks["GTV"]]
    exact = dvh.DVH(dose.dose_at_points(points, c.seeds, c.model), np.ones(len(points)),
                    c.case.grid.voxel_volume_cc).metric("D90")[0]
    d90, unit = tables.read_dvh_metric(table, "GTV", "D90")
    test.assertEqual(unit, "Gy")
    test.assertLess(abs(d90 - exact), 0.02 * exact, f"D90 {d90} Gy vs exact TG-43 {exact} Gy")
    test.assertEqual([r.structure for r in results[:1]], ["GTV"])
    with test.assertRaises(InputError):
        logic.computeDose(c.ct, c.segmentation, ["", ""], c.seedsNode, c.dose, values)
    with test.assertRaises(InputError):  # the CT is never the output
        logic.computeDose(c.ct, c.segmentation, [c.ids["CTV"]], c.seedsNode, c.ct, values)
    test.delayDisplay("Test passed")


def planning(test, logic, scene):
    """Optimised plan into a seeds node, needles clear of the carotid (no-go); a seed moved by hand is
    protected from re-planning."""
    c = add_case_nodes(scene)
    seeds_node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Planned seeds")
    values = settings.resolve(prescriptionGy=c.case.prescription_gy)
    test.delayDisplay("Planning needles and seeds")
    result = logic.planSeeds(c.ct, c.segmentation, c.ids["CTV"], seeds_node, values, (c.ids["Carotid"],))
    test.assertEqual(seeds_node.GetNumberOfControlPoints(), result.n_seeds)
    test.assertEqual(result.terms["violation"], 0)
    test.assertFalse(logic.seedsEditedByHand(seeds_node))
    p = seeds_node.GetNthControlPointPositionVector(0)
    seeds_node.SetNthControlPointPosition(0, p[0], p[1], p[2] + 3.0)
    test.assertTrue(logic.seedsEditedByHand(seeds_node))
    with test.assertRaises(InputError):
        logic.planSeeds(c.ct, c.segmentation, c.ids["CTV"], seeds_node, settings.resolve(planningMethod="uniform"))
    test.delayDisplay("Test passed")


def post_implant(test, logic, scene):
    """Simulated implant, patient moved: detect, register (TRE at the target <= 1 mm), dose, compare."""
    c = add_case_nodes(scene)
    values = settings.resolve(prescriptionGy=c.case.prescription_gy, doseSpacingMm=2.0)
    logic.computeDose(c.ct, c.segmentation, [c.ids["GTV"], c.ids["CTV"]], c.seedsNode, c.dose, values)
    scan = rescanned_implant(c.seeds, c.case, random_seed=2, spacing_mm=(0.9, 0.9, 2.0))
    post_ct = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Post-implant CT")
    volumes.update_volume_node(post_ct, scan.ct, scan.grid)

    test.delayDisplay("Detecting and registering")
    post_seeds = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Implanted seeds")
    result = logic.detectSeeds(post_ct, post_seeds, c.seedsNode)
    # every implanted seed found; any other point is listed "to review" (and the reviewer removes it)
    pairs, _err = match_seeds([s.position for s in result.seeds], scan.true_positions_post)
    test.assertEqual(len(pairs), len(scan.implant.seeds))
    matched = set(pairs[:, 0].tolist())
    extra = [i for i in range(len(result.seeds)) if i not in matched]
    test.assertTrue(all(result.review[i] for i in extra))
    for i in sorted(extra, reverse=True):
        post_seeds.RemoveNthControlPoint(i)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "Post-implant to pre-plan")
    # a flagged registration is refused (InputError): the self-test fails
    logic.registerPostImplant(c.ct, post_ct, transform, seeds_node=post_seeds)
    points = c.case.grid.points()[c.case.masks["GTV"]]
    mapped = map_points(transforms.read_matrix_to_world(transform),
                        map_points(np.linalg.inv(scan.post_to_pre), points))
    test.assertLessEqual(float(np.linalg.norm(mapped - points, axis=1).max()), 1.0)

    test.delayDisplay("Post-plan dose and comparison")
    post_dose = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Post-plan dose")
    logic.computePostPlanDose(post_seeds, transform, c.dose, post_dose, values, c.seedsNode)
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "Pre vs post")
    comparison = logic.comparePlans(c.dose, post_dose, c.segmentation, c.ids["GTV"], c.ids["CTV"], table,
                                    c.seedsNode, post_seeds, values)
    test.assertEqual(table.GetNumberOfRows(), len(comparison.rows))
    test.assertEqual(comparison.row("Implant", "Seeds").difference, -len(scan.implant.lost))
    test.delayDisplay("Test passed")


#: The self-test's steps, in order; each starts from an empty scene.
STEPS = (dose_and_checks, planning, post_implant)
