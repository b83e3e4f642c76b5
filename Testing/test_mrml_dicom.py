"""MRML bridge, DICOM: nodes -> DICOM RT -> nodes, every node linked to its object by SOP Instance UIDs."""

import numpy as np
import pydicom
import pytest
from dicom_tools import assert_conformant

pytest.importorskip("slicer")

from SeedBrachyLib.dose import compute_dose  # noqa: E402
from SeedBrachyLib.grid import Grid  # noqa: E402
from SeedBrachyLib.mrml import dicom, markups, segmentations, volumes  # noqa: E402


@pytest.mark.slow
def test_export_import_round_trip_keeps_the_links(case_nodes, tmp_path):
    c = case_nodes
    dose_grid = Grid.around(c.case.node_center, 40.0, 2.0)
    dose = compute_dose(dose_grid, c.seeds, "I125_OncoSeed6711")
    volumes.set_dose_volume(c.dose, dose, dose_grid, 120.0)
    target = c.ids["GTV"]
    paths = dicom.export_case(tmp_path / "out", c.ct, c.seeds_node, segmentation_node=c.segmentation,
                              dose_node=c.dose, target_segment_id=target)
    for role in ("RTSTRUCT", "RTPLAN", "RTDOSE"):
        assert_conformant(paths[role])
    ct_uids = c.ct.GetAttribute(dicom.INSTANCE_UIDS).split()
    assert len(ct_uids) == c.case.grid.dims[2]
    for node, role in ((c.seeds_node, "RTPLAN"), (c.segmentation, "RTSTRUCT"), (c.dose, "RTDOSE")):
        assert node.GetAttribute(dicom.INSTANCE_UIDS) == str(pydicom.dcmread(paths[role]).SOPInstanceUID)
    plan = pydicom.dcmread(paths["RTPLAN"])
    assert float(plan.FractionGroupSequence[0].ReferencedBrachyApplicationSetupSequence[0]
                 .BrachyApplicationSetupDose) == 120.0  # from the dose node's prescription
    assert plan.DoseReferenceSequence[0].ReferencedROINumber == segmentations.segment_ids(c.segmentation).index(
        target) + 1

    nodes = dicom.import_folder(c.scene, tmp_path / "out", name="Back")
    hu, grid = volumes.array_from_volume_node(nodes["ct"])
    assert np.array_equal(hu, c.case.ct) and np.allclose(grid.ijk_to_ras, c.case.grid.ijk_to_ras)
    back = markups.read_seeds(nodes["seeds"])
    assert max(np.linalg.norm(a.position - b.position) for a, b in zip(c.seeds, back)) < 0.01
    assert [b.strength_u for b in back] == [a.strength_u for a in c.seeds]
    assert markups.source_model_key(nodes["seeds"]) == "I125_OncoSeed6711"
    for name, mask in c.case.masks.items():
        segment_id = nodes["segmentation"].GetSegmentation().GetSegmentIdBySegmentName(name)
        got, got_grid = segmentations.segment_mask(nodes["segmentation"], segment_id)
        assert got.sum() == mask.sum(), name  # binary masks on the CT grid come back voxel for voxel
    dose_back, _ = volumes.array_from_volume_node(nodes["dose"])
    assert np.max(np.abs(dose_back - dose)) <= 1e-3 * dose.max() / 2 ** 20 + 1e-6 * dose.max()
    assert volumes.is_dose_volume(nodes["dose"])
    assert nodes["ct"].GetAttribute(dicom.SERIES_UID) == c.ct.GetAttribute(dicom.SERIES_UID)

    # the CT is now linked: exporting again references its slices instead of writing a second CT series
    again = dicom.export_case(tmp_path / "again", c.ct, c.seeds_node, 120.0, c.segmentation)
    assert "CT" not in again and not (tmp_path / "again" / "CT").exists()
    rs = pydicom.dcmread(again["RTSTRUCT"])
    referenced = {ci.ReferencedSOPInstanceUID for item in rs.ROIContourSequence for contour in item.ContourSequence
                  for ci in contour.ContourImageSequence}
    assert referenced <= set(ct_uids)


@pytest.mark.slow
def test_a_ct_loaded_elsewhere_is_linked_to_its_files(case_nodes, tmp_path):
    """As for a volume from Slicer's DICOM browser: the files of its instance UIDs give the series to reference."""
    from SeedBrachyLib.dicomrt import write_ct_series
    from SeedBrachyLib.errors import InputError

    c = case_nodes
    series = write_ct_series(tmp_path / "ct", c.case.ct, c.case.grid)
    got = dicom.link_ct_to_files(c.ct, sorted((tmp_path / "ct").iterdir()))
    assert got.sop_instance_uids == series.sop_instance_uids
    assert dicom.linked_series(c.ct).series_instance_uid == series.series_instance_uid
    other = c.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "cropped")
    volumes.update_volume_node(other, c.case.ct[1:], Grid(c.case.grid.to_ras([0, 0, 1]), c.case.grid.spacing,
                                                           c.case.grid.direction, c.case.grid.dims[:2] + (
                                                               c.case.grid.dims[2] - 1,)))
    with pytest.raises(InputError, match="cropped or resampled"):
        dicom.link_ct_to_files(other, sorted((tmp_path / "ct").iterdir()))


def test_a_structure_set_imports_as_closed_surfaces_that_the_dvh_reads_finer(mrml_app, tmp_path):
    """As Slicer's RT Structure Set import: closed-surface segments (from the contours filled finer than the CT),
    so the module's DVH rasterises them finer: volume and D90 against the closed forms of
    ``test_dvh.slab_sphere_case`` on a 2 mm CT. The voxels at least half inside (the import before) miss both."""
    from test_dvh import SLAB_SPHERE, slab_sphere_case

    from SeedBrachyLib.dicomrt.ct import write_ct_series
    from SeedBrachyLib.dvh import PointDose
    from SeedBrachyLib.structures import structure_from_mask

    grid = Grid.around([0.0, 0.0, 0.0], 2 * SLAB_SPHERE[0] + 8, 2.0, np.diag([-1.0, -1.0, 1.0]))
    series = write_ct_series(tmp_path / "case", np.zeros(grid.shape), grid)
    rs, volume, d90, field = slab_sphere_case(grid, series.study.frame_of_reference_uid)
    rs.save_as(tmp_path / "case" / "rs.dcm", enforce_file_format=True)
    nodes = dicom.import_folder(mrml_app.scene, tmp_path / "case")
    seg = nodes["segmentation"]
    assert segmentations.has_closed_surface_source(seg)
    got = segmentations.structure_from_segment(seg, seg.GetSegmentation().GetSegmentIdBySegmentName("GTV"), "target")
    half = structure_from_mask("GTV", nodes["case"].rois[0].fraction >= 0.5, grid, "target")
    assert got.volume_cc == pytest.approx(volume, rel=0.002)  # 0.08 % measured
    assert abs(half.volume_cc / volume - 1) > 0.005  # 0.8 % low
    assert abs(PointDose(field).dvh(got).metric("D90")[0] / d90 - 1) < 0.003  # 0.14 % measured
    assert abs(PointDose(field).dvh(half).metric("D90")[0] / d90 - 1) > 0.003  # 0.38 % low
