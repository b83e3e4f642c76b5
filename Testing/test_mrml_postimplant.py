"""Post-implant verification with real MRML nodes (slicer-core): detect, register, carry contours,
post-plan dose, compare -- on the synthetic neck case with a simulated implant and a known patient motion.

Oracles: the simulated implant's true seeds and the known motion (detection error, TRE), the pure
library on the same inputs (dose, D90), and identical seeds giving zero differences.
"""

import numpy as np
import pytest

pytest.importorskip("slicer")

from registration_phantoms import neck_landmarks  # noqa: E402

from SeedBrachyLib import dvh, settings, structures  # noqa: E402
from SeedBrachyLib.dose import compute_dose  # noqa: E402
from SeedBrachyLib.errors import InputError  # noqa: E402
from SeedBrachyLib.itk_image import resample  # noqa: E402
from SeedBrachyLib.mrml import dosimetry, markups, postimplant, segmentations, transforms, volumes  # noqa: E402
from SeedBrachyLib.postimplant.detection import match_seeds  # noqa: E402
from SeedBrachyLib.postimplant.registration import map_points  # noqa: E402
from SeedBrachyLib.synthetic.implant import patient_motion, rescanned_implant  # noqa: E402
from SeedBrachyLib.synthetic.phantom import needles_through_seeds  # noqa: E402

MODEL = "I125_OncoSeed6711"


@pytest.fixture
def planned(case_nodes):
    """The case's pre-plan dose computed (2 mm grid)."""
    c = case_nodes
    c.values = settings.resolve(c.values, doseSpacingMm=2.0)
    dosimetry.compute_dose(c.ct, c.segmentation, [c.ids["GTV"], c.ids["CTV"]], c.seeds_node, c.dose, c.values)
    return c


@pytest.fixture
def flow(planned):
    """Then the implant: a post-implant CT node of the simulated implant, patient moved.

    The neck phantom is invariant along S apart from the node, which the seeds fill (masked out of the
    metric): left so, the registration's S error is the chance of its metric samples (0.04-1.27 mm over
    five sample seeds on this pair; 0.62 mm with the detected seeds, 0.10 with the true ones; the result is now
    the consensus of fits on five sample sets, see test_postimplant_registration). Both CTs get
    the soft landmarks the registration tests give the neck (``registration_phantoms.neck_landmarks``), as a
    real neck changes along S, so that the flow's registration is plausible.
    """
    c = planned
    pre_ct = np.rint(neck_landmarks(c.case.ct, c.case.grid)).astype(np.int16)
    volumes.update_volume_node(c.ct, pre_ct, c.case.grid)
    motion = patient_motion((3.0, -2.0, 5.0), (8.0, -6.0, 10.0))  # post-implant frame -> pre-plan frame
    scan = rescanned_implant(c.seeds, c.case, random_seed=2, spacing_mm=(0.9, 0.9, 2.0), motion=motion)
    grid = scan.grid  # the post-implant frame's CT: the rendered scan with the landmarks, moved as the implant's
    moved = resample(neck_landmarks(scan.scan.ct, grid), grid, grid, scan.post_to_pre, "linear", -1000.0)
    post_ct = c.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Post-implant CT")
    volumes.update_volume_node(post_ct, np.rint(moved).astype(np.int16), grid)
    c.implant, c.truth, c.post_ct = scan.implant, scan.post_to_pre, post_ct
    return c


def test_whole_flow_detect_register_carry_dose_compare(flow):
    c = flow
    scene = c.scene
    # 1. detect: seed markups in the post-implant frame
    detected = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Post-implant seeds")
    result = postimplant.detect(c.post_ct, detected, plan_seeds_node=c.seeds_node)
    true_post = map_points(np.linalg.inv(c.truth), [s.position for s in c.implant.seeds])
    n = detected.GetNumberOfControlPoints()
    found = np.array([detected.GetNthControlPointPositionVector(i) for i in range(n)])
    review = np.array(result.review)
    # points to review: kept, labelled, unselected, said so in the description; the others are selected
    for i in range(n):
        text = detected.GetNthControlPointDescription(i)
        assert f"detection confidence {result.confidences[i]:.2f}" in text
        assert detected.GetNthControlPointLabel(i).endswith("(review)") == review[i] == text.startswith("to review")
        assert detected.GetNthControlPointSelected(i) != review[i]
    pairs, err = match_seeds(found, true_post)
    print(f"MRML detection: {n} points ({review.sum()} to review) for {len(c.implant.seeds)} implanted seeds, "
          f"{len(pairs)} matched, error mean {err.mean():.2f} mm, max {err.max():.2f} mm")
    # every implanted seed found; any other point is listed "to review"
    assert len(pairs) == len(c.implant.seeds) and err.max() < 1.0
    assert all(review[i] for i in set(range(n)) - set(pairs[:, 0].tolist()))
    assert markups.source_model_key(detected) == MODEL
    assert len(detected.GetAttribute(postimplant.CONFIDENCE_ATTRIBUTE).split()) == len(result.seeds)
    with pytest.raises(InputError, match="corrected by hand"):
        postimplant.detect(c.post_ct, detected, plan_seeds_node=c.seeds_node)

    # 2. register: transform node, matrix to parent = post -> pre
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "Post-implant to pre-plan")
    reg = postimplant.register(c.ct, c.post_ct, transform, seeds_node=detected)
    m = transforms.read_matrix_to_world(transform)
    np.testing.assert_allclose(m, reg.post_to_pre, atol=1e-9)
    gtv = c.case.grid.points()[c.case.masks["GTV"]]
    tre = np.linalg.norm(map_points(m, map_points(np.linalg.inv(c.truth), gtv)) - gtv, axis=1)
    print(f"MRML registration: TRE over the GTV mean {tre.mean():.3f} mm, max {tre.max():.3f} mm; {reg.describe()}")
    assert tre.max() <= 1.0
    assert reg.plausible, reg.quality.reasons  # (register refuses a flagged fit unless accepted: said here outright)
    assert "quality: plausible" in transform.GetDescription()  # what the user sees on the node

    # 3. contours carried onto the post-implant CT
    carried_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Contours on post-implant CT")
    (sid,) = postimplant.carry_contours(c.segmentation, [c.ids["GTV"]], transform, c.post_ct, carried_node)
    carried, grid = segmentations.segment_mask(carried_node, sid)
    pts = grid.points()[carried != 0]
    assert np.linalg.norm(map_points(c.truth, pts).mean(0) - gtv.mean(0)) < 0.5  # lands on the node
    with pytest.raises(InputError, match="already has a segment"):
        postimplant.carry_contours(c.segmentation, [c.ids["GTV"]], transform, c.post_ct, carried_node)

    # 4. post-plan dose on the pre-plan dose grid: the library's dose of the mapped seeds
    post_dose = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Post-plan dose")
    post = postimplant.compute_post_plan_dose(detected, transform, c.dose, post_dose, c.values,
                                              plan_seeds_node=c.seeds_node)
    with pytest.raises(InputError, match="output post-plan dose volume 'Dose' is also the pre-plan dose volume"):
        postimplant.compute_post_plan_dose(detected, transform, c.dose, c.dose, c.values)
    dose, dose_grid = volumes.array_from_volume_node(post_dose)
    assert dose_grid.dims == volumes.grid_from_volume_node(c.dose).dims
    np.testing.assert_allclose(dose, compute_dose(dose_grid, post.seeds, MODEL, allow_outside=True), rtol=1e-6)
    assert volumes.is_dose_volume(post_dose) and "seed axes from detection" in post_dose.GetDescription()
    implanted = [s.position for s in c.implant.seeds]
    _, err_pre = match_seeds([s.position for s in post.seeds], implanted)
    assert err_pre.max() < 1.5  # detection + registration, in the pre-plan frame

    # 5. comparison table
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "Pre vs post")
    oars = [c.ids["Carotid"]]
    comparison = postimplant.compare(c.dose, post_dose, c.segmentation, c.ids["GTV"], c.ids["CTV"], table,
                                     c.seeds_node, detected, c.values, oar_segment_ids=oars, ct_node=c.ct)
    print(comparison.format())
    t = table.GetTable()
    headers = [t.GetColumn(i).GetName() for i in range(t.GetNumberOfColumns())]
    assert headers == ["Structure", "Metric", "Unit", "Pre-plan", "Post-plan", "Difference (post - pre)",
                       "Difference [%]"]
    assert t.GetNumberOfRows() == len(comparison.rows)
    rows = {(t.GetValue(r, 0).ToString(), t.GetValue(r, 1).ToString()): r for r in range(t.GetNumberOfRows())}
    assert {("GTV", "D90"), ("GTV", "CI"), ("Carotid", "D2cc"), ("Skin", "D2cc"), ("Implant", "Seeds")} <= set(rows)
    # the post-plan dose node carries its (registered) seeds: D90 is TG-43 at the GTV's own sample points
    gtv_structure = structures.structure_from_mask("GTV", *segmentations.segment_mask(c.segmentation, c.ids["GTV"]),
                                                   role="target")
    recorded = dosimetry.dose_seeds(post_dose)
    assert len(recorded.seeds) == detected.GetNumberOfControlPoints()
    expected = dvh.DVH.of(recorded, gtv_structure).metric("D90")[0]
    r = rows[("GTV", "D90")]
    assert t.GetValue(r, 4).ToDouble() == pytest.approx(expected, rel=1e-9)
    assert t.GetValue(r, 5).ToDouble() == pytest.approx(t.GetValue(r, 4).ToDouble() - t.GetValue(r, 3).ToDouble())
    seeds_row = rows[("Implant", "Seeds")]
    assert t.GetValue(seeds_row, 5).ToDouble() == -len(c.implant.lost)
    assert "post-implant D90 > 102.7 Gy" in table.GetDescription()


def test_compare_identical_seeds_gives_zero_differences_and_point_source_option(planned):
    c = planned
    scene = c.scene
    same = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Same seeds dose")
    postimplant.compute_post_plan_dose(c.seeds_node, None, c.dose, same, c.values)
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "Pre vs same")
    comparison = postimplant.compare(c.dose, same, c.segmentation, c.ids["GTV"], c.ids["CTV"], table, c.seeds_node,
                                     c.seeds_node, c.values, oar_segment_ids=[c.ids["Carotid"]])
    assert all(r.difference == 0 or np.isnan(r.difference) for r in comparison.rows)
    point = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Point-source dose")
    postimplant.compute_post_plan_dose(c.seeds_node, None, c.dose, point,
                                       settings.resolve(c.values, postSeedAxis="unknown"))
    assert "1D point source" in point.GetDescription()
    grid = volumes.grid_from_volume_node(c.dose)
    np.testing.assert_allclose(volumes.array_from_volume_node(point)[0],
                               compute_dose(grid, c.seeds, MODEL, formalism="point", allow_outside=True), rtol=1e-6)
    # a seed added by hand (no stored axis): refused with axes "from detection", fine along the needles
    corrected = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Corrected seeds")
    markups.write_seeds(corrected, c.seeds[:-1])
    corrected.AddControlPoint(*c.seeds[-1].position, "added by hand")
    with pytest.raises(InputError, match="1D point source"):
        postimplant.compute_post_plan_dose(corrected, None, c.dose, point, c.values, plan_seeds_node=c.seeds_node)
    markups.write_needles(c.seeds_node, needles_through_seeds(c.seeds, c.case.masks["Body"], c.case.grid))
    by_needle = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Needle-axis dose")
    postimplant.compute_post_plan_dose(corrected, None, c.dose, by_needle,
                                       settings.resolve(c.values, postSeedAxis="needle"), plan_seeds_node=c.seeds_node)
    np.testing.assert_allclose(volumes.array_from_volume_node(by_needle)[0], volumes.array_from_volume_node(c.dose)[0],
                               rtol=1e-5)  # plan seeds lie along the needles: the same dose
    other_grid = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Other grid dose")
    coarse = grid.with_spacing(30.0)
    volumes.set_dose_volume(other_grid, np.ones(coarse.shape), coarse, c.values.prescriptionGy)
    with pytest.raises(InputError, match="different grids"):
        postimplant.compare(c.dose, other_grid, c.segmentation, c.ids["GTV"], c.ids["CTV"], table, c.seeds_node,
                            c.seeds_node, c.values)
