"""Planning on MRML nodes (slicer-core): plans land as seed and needle markups; hand edits are never overwritten."""

import numpy as np
import pytest

pytest.importorskip("slicer")

import vtk  # noqa: E402

from SeedBrachyLib import settings  # noqa: E402
from SeedBrachyLib.errors import InputError  # noqa: E402
from SeedBrachyLib.mrml import dosimetry, markups, planning  # noqa: E402


def test_plan_into_markups_and_hand_edits_protected(case_nodes):
    c = case_nodes
    uniform = settings.resolve(c.values, planningMethod="uniform")
    # the fixture's seeds node holds seeds the planner did not make: refused without overwrite
    assert planning.edited_by_hand(c.seeds_node)
    with pytest.raises(InputError, match="edited by hand"):
        planning.plan_seeds(c.ct, c.segmentation, c.ids["CTV"], c.seeds_node, uniform)
    node = c.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Planned seeds")
    result = planning.plan_seeds(c.ct, c.segmentation, c.ids["CTV"], node, uniform, nogo_segment_ids=[c.ids["Carotid"]])
    seeds = markups.read_seeds(node)
    assert len(seeds) == result.n_seeds == node.GetNumberOfControlPoints()
    np.testing.assert_allclose([s.position for s in seeds], [s.position for s in result.seeds()], atol=1e-4)
    needles = markups.read_needles(node)
    assert len(needles) == result.n_needles
    for needle in needles:  # every seed's needle exists, seeds lie on their needle between entry and tip
        on = [s for s in seeds if s.label.rsplit("-", 1)[0] == needle.label]
        for s in on:
            t = (s.position - needle.entry) @ needle.direction
            assert 0 <= t <= needle.depth_mm + 1e-6
            assert np.linalg.norm(needle.entry + t * needle.direction - s.position) < 1e-3
    assert not planning.edited_by_hand(node)
    # unchanged plan: re-running replaces it without asking
    peripheral = settings.resolve(c.values, planningMethod="peripheral")
    planning.plan_seeds(c.ct, c.segmentation, c.ids["CTV"], node, peripheral)
    # the user moves a seed by hand: the dose follows, and re-planning refuses to overwrite
    coarse = settings.resolve(c.values, doseSpacingMm=2.0)
    dose_before, _ = dosimetry.compute_dose(c.ct, c.segmentation, [c.ids["CTV"]], node, c.dose, coarse)
    p = np.array(node.GetNthControlPointPositionVector(0)) + [0.0, 0.0, 4.0]
    node.SetNthControlPointPosition(0, vtk.vtkVector3d(*p))
    assert planning.edited_by_hand(node)
    dose_after, _ = dosimetry.compute_dose(c.ct, c.segmentation, [c.ids["CTV"]], node, c.dose, coarse)
    assert dose_before.shape != dose_after.shape or not np.allclose(dose_before, dose_after)
    with pytest.raises(InputError, match="edited by hand"):
        planning.plan_seeds(c.ct, c.segmentation, c.ids["CTV"], node, uniform)
    again = planning.plan_seeds(c.ct, c.segmentation, c.ids["CTV"], node, uniform, overwrite=True)
    assert node.GetNumberOfControlPoints() == again.n_seeds and not planning.edited_by_hand(node)


def test_optimised_plan_into_markups(case_nodes):
    c = case_nodes
    node = c.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Optimised seeds")
    result = planning.plan_seeds(c.ct, c.segmentation, c.ids["CTV"], node, settings.resolve(c.values,
                                 skinD2ccLimitGy=100.0), nogo_segment_ids=[c.ids["Carotid"]])
    assert result.name == "optimised" and result.terms["violation"] == 0
    assert node.GetNumberOfControlPoints() == result.n_seeds
    assert len(markups.needle_nodes(node)) == result.n_needles
    with pytest.raises(InputError, match="planningMethod = 'random' invalid: allowed are optimise, uniform"):
        planning.plan_seeds(c.ct, c.segmentation, c.ids["CTV"], node, settings.resolve(planningMethod="random"))
