"""MRML bridge, segmentations: segments map onto a dose grid exactly as the pure library maps the masks."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

pytest.importorskip("slicer")

from SeedBrachyLib import structures  # noqa: E402
from SeedBrachyLib.errors import InputError  # noqa: E402
from SeedBrachyLib.grid import Grid  # noqa: E402
from SeedBrachyLib.mrml import segmentations, volumes  # noqa: E402


def _rotation(axis, degrees):
    axis = np.asarray(axis, float)
    return Rotation.from_rotvec(np.radians(degrees) * axis / np.linalg.norm(axis)).as_matrix()


CENTER = np.array([12.0, -4.0, 7.0])
RADIUS = 9.0


def _sphere_on(grid):
    return np.linalg.norm(grid.points() - CENTER, axis=-1) <= RADIUS


@pytest.fixture
def segmentation(mrml_app):
    node = mrml_app.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Structures")
    node.CreateDefaultDisplayNodes()
    return node


def test_masks_round_trip_through_segments_exactly(case_nodes):
    case = case_nodes.case
    for name, sid in case_nodes.ids.items():
        if name == "CTV":  # made by the bridge from the GTV (test_ctv_is_made_once_from_the_gtv)
            continue
        mask, grid = segmentations.segment_mask(case_nodes.segmentation, sid)
        # the exported labelmap is cropped to the segment: put it back on the CT grid
        back = np.zeros(case.grid.shape, bool)
        k, j, i = np.nonzero(mask)
        ijk = np.rint(case.grid.to_ijk(grid.to_ras(np.stack([i, j, k], axis=-1)))).astype(int)
        back[ijk[:, 2], ijk[:, 1], ijk[:, 0]] = True
        assert np.array_equal(back, case.masks[name]), name
        assert segmentations.segment_name(case_nodes.segmentation, sid) == name


def test_oblique_segmentation_maps_like_the_library_on_another_grid(segmentation):
    seg_grid = Grid.around(CENTER + [1.0, 0.5, -0.5], [26.0, 26.0, 26.0], [0.7, 0.9, 1.3], _rotation([1, 2, 3], 30.0))
    mask = _sphere_on(seg_grid)
    sid = segmentations.add_mask_segment(segmentation, mask, seg_grid, "Node")
    dose_grid = Grid.around(CENTER, [30.0, 30.0, 30.0], 1.0)
    structure = segmentations.structure_from_segment(segmentation, sid, role="target")
    expected = structures.structure_from_mask("Node", mask, seg_grid, role="target")
    assert structure.name == "Node" and structure.role == "target"
    assert np.array_equal(structure.weights, expected.weights)
    on_dose_grid = structure.on_grid(dose_grid)
    assert np.array_equal(on_dose_grid.weights, structures.structure_on_grid("Node", mask, seg_grid, dose_grid).weights)
    # and the volume is the sphere's (partial volumes, so within a few % on these voxels)
    assert structure.volume_cc == pytest.approx(4.0 / 3.0 * np.pi * RADIUS ** 3 / 1000.0, rel=0.03)
    # the segment keeps its own oblique geometry when exported
    exported, exported_grid = segmentations.segment_mask(segmentation, sid)
    assert np.allclose(exported_grid.direction, seg_grid.direction, atol=1e-6)
    assert np.allclose(exported_grid.spacing, seg_grid.spacing)
    assert exported.sum() == mask.sum()


def test_structures_from_segments_target_first_and_skips_segments_off_the_grid(segmentation):
    grid = Grid.around(CENTER, [40.0, 40.0, 40.0], 1.0)
    target = segmentations.add_mask_segment(segmentation, _sphere_on(grid), grid, "CTV")
    near = np.zeros(grid.shape, bool)
    near[5:10, 5:10, 5:10] = True
    segmentations.add_mask_segment(segmentation, near, grid, "OAR near")
    far_grid = Grid.around(CENTER + 200.0, [10.0, 10.0, 10.0], 1.0)
    segmentations.add_mask_segment(segmentation, np.ones(far_grid.shape, bool), far_grid, "Far away")
    dose_grid = Grid.around(CENTER, [36.0, 36.0, 36.0], 2.0)
    result, notes = segmentations.structures_from_segments(segmentation, target, dose_grid)
    assert [s.name for s in result] == ["CTV", "OAR near"]
    assert len(notes) == 1 and notes[0].startswith("Far away lies wholly outside the dose grid")
    assert [s.role for s in result] == ["target", "oar"]
    assert result[1].volume_cc == pytest.approx(125 * grid.voxel_volume_cc, rel=1e-6)
    # from seeds (no dose grid) every structure is evaluated whole, wherever it lies
    whole, notes = segmentations.structures_from_segments(segmentation, target)
    assert [s.name for s in whole] == ["CTV", "OAR near", "Far away"] and notes == []


def test_no_segment_missing_segment_and_empty_segment_are_input_errors(segmentation):
    grid = Grid.around(CENTER, [20.0, 20.0, 20.0], 1.0)
    sid = segmentations.add_mask_segment(segmentation, _sphere_on(grid), grid, "CTV")
    with pytest.raises(InputError, match="no segment chosen"):
        segmentations.segment_mask(segmentation, "")
    with pytest.raises(InputError, match="not found.*CTV"):
        segmentations.segment_mask(segmentation, "NoSuchSegment")
    empty = segmentation.GetSegmentation().AddEmptySegment("", "Empty CTV")
    with pytest.raises(InputError, match="empty"):
        segmentations.structure_from_segment(segmentation, empty, role="target")
    with pytest.raises(InputError, match="no segmentation given"):
        segmentations.segment_ids(None)
    assert sid in segmentations.segment_ids(segmentation)


def test_existing_segment_is_not_replaced_without_asking(segmentation):
    grid = Grid.around(CENTER, [20.0, 20.0, 20.0], 1.0)
    first = _sphere_on(grid)
    segmentations.add_mask_segment(segmentation, first, grid, "CTV")
    smaller = np.zeros(grid.shape, bool)
    smaller[8:12, 8:12, 8:12] = True
    with pytest.raises(InputError, match="already has a segment 'CTV'"):
        segmentations.add_mask_segment(segmentation, smaller, grid, "CTV")
    sid = segmentations.add_mask_segment(segmentation, smaller, grid, "CTV", overwrite=True)
    mask, _ = segmentations.segment_mask(segmentation, sid)
    assert mask.sum() == smaller.sum()
    assert len(segmentations.segment_ids(segmentation)) == 1
    with pytest.raises(InputError, match="empty"):
        segmentations.add_mask_segment(segmentation, np.zeros(grid.shape, bool), grid, "Nothing")


def test_body_and_skin_from_ct_node_equal_the_library(case_nodes):
    case = case_nodes.case
    dose_grid = Grid.around(case.node_center, [60.0, 60.0, 60.0], 2.0)
    body, skin = segmentations.body_and_skin(case_nodes.ct, dose_grid)
    ct, ct_grid = volumes.array_from_volume_node(case_nodes.ct)
    expected_body = structures.body_from_ct(ct, ct_grid)
    expected_skin = structures.skin_rind(expected_body, ct_grid)
    assert np.array_equal(body.weights,
                          structures.structure_on_grid("Body", expected_body, ct_grid, dose_grid).weights)
    assert np.array_equal(skin.weights, structures.structure_from_mask("Skin", expected_skin, ct_grid).weights)
    # the phantom's body is its "Body" mask: the CT threshold finds it
    assert np.array_equal(expected_body, case.masks["Body"])


def test_closed_surface_segment_is_rasterised_by_slicer_on_its_reference_geometry(mrml_app, segmentation):
    import vtk

    reference = mrml_app.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "reference")
    ref_grid = Grid.around(CENTER, [30.0, 30.0, 30.0], [0.5, 0.5, 1.0])
    volumes.update_volume_node(reference, np.zeros(ref_grid.shape, np.int16), ref_grid)
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(reference)
    segmentation.GetSegmentation().SetSourceRepresentationName("Closed surface")
    sphere = vtk.vtkSphereSource()
    sphere.SetCenter(*CENTER)
    sphere.SetRadius(RADIUS)
    sphere.SetThetaResolution(96)
    sphere.SetPhiResolution(96)
    sphere.Update()
    sid = segmentation.AddSegmentFromClosedSurfaceRepresentation(sphere.GetOutput(), "RT contour", (0, 1, 0))
    mask, grid = segmentations.segment_mask(segmentation, sid)
    assert np.allclose(grid.spacing, ref_grid.spacing)  # Slicer's own labelmap representation
    # for the DVH: rasterised with oversampling on the reference geometry, in a copy (the user's segment untouched)
    assert segmentations.oversampling_for(segmentation, sid) == 8
    fine, fine_grid = segmentations.segment_mask(segmentation, sid, oversampling=None)
    assert np.allclose(fine_grid.spacing, ref_grid.spacing / 8) and np.allclose(fine_grid.direction, ref_grid.direction)
    assert segmentation.GetSegmentation().GetConversionParameter("Oversampling factor") in ("", "1")
    structure = segmentations.structure_from_segment(segmentation, sid)
    truth_cc = 4.0 / 3.0 * np.pi * RADIUS ** 3 / 1000.0
    assert structure.volume_cc == pytest.approx(truth_cc, rel=0.01)
    assert structure.on_grid(Grid.around(CENTER, [24.0] * 3, 1.0)).volume_cc == pytest.approx(truth_cc, rel=0.01)


def test_ctv_is_made_once_from_the_gtv(case_nodes):
    """The CTV segment = GTV + margin clipped to the body, on the CT grid (not cropped at the GTV's extent):
    compared with an independent brute-force distance computation on the case's own masks."""
    c = case_nodes
    ctv, grid = segmentations.segment_mask(c.segmentation, c.ids["CTV"])
    points = grid.points()[ctv]
    gtv_points = c.case.grid.points()[c.case.masks["GTV"]]
    body = c.case.grid.mask_at(c.case.masks["Body"], points)
    # every CTV voxel lies in the body and within margin + half a voxel diagonal of a GTV voxel centre
    from scipy.spatial import cKDTree

    distance, _ = cKDTree(gtv_points).query(points)
    half_diagonal = 0.5 * float(np.linalg.norm(c.case.grid.spacing))
    assert body.all() and distance.max() <= c.values.ctvMarginMm + half_diagonal
    # and it reaches the full margin somewhere in the body (not cropped at the GTV's bounding box)
    assert distance.max() >= c.values.ctvMarginMm - half_diagonal
    assert ctv.sum() > 1.5 * c.case.masks["GTV"].sum()
    with pytest.raises(InputError, match="already has a segment 'CTV'"):
        segmentations.make_ctv(c.segmentation, c.ids["GTV"], c.ct)
