"""A case as a DICOM folder, and the ``seedbrachy dicom`` commands: the worked example and a headless export."""

from __future__ import annotations

import datetime
import json

import numpy as np
import pydicom
import pytest
from dicom_tools import assert_conformant

from SeedBrachyLib.cli import main
from SeedBrachyLib.dicomrt import Roi, read_dicom_folder, write_ct_series, write_dicom_case
from SeedBrachyLib.errors import InputError
from SeedBrachyLib.grid import Grid
from SeedBrachyLib.seeds import Seed
from SeedBrachyLib.synthetic.phantom import neck_phantom


@pytest.fixture(scope="module")
def small():
    case = neck_phantom(spacing_mm=(3.0, 3.0, 3.0))
    seeds = [Seed(case.node_center + [0.0, 0.0, z], [0.0, 0.0, 1.0], 0.5, f"N1-{n}") for n, z in
             enumerate((-5.0, 0.0, 5.0))]
    return case, seeds


def test_folder_round_trip_links_every_object(tmp_path, small):
    case, seeds = small
    rois = [Roi(n, case.masks[n].astype(np.float32)) for n in ("GTV", "Carotid")]
    dose_grid = Grid.around(case.node_center, 30.0, 2.0)
    dose = np.full(dose_grid.shape, 7.0)
    when = datetime.datetime(2026, 1, 5, 8, 0)
    paths = write_dicom_case(tmp_path / "case", case.ct, case.grid, rois, seeds, "I125_OncoSeed6711", 110.0, dose,
                             dose_grid, when, target_roi_number=1).paths
    (tmp_path / "case" / "notes.txt").write_text("not DICOM")
    got = read_dicom_folder(tmp_path / "case", implant_datetime=when + datetime.timedelta(days=59.4))
    assert [r.name for r in got.rois] == ["GTV", "Carotid"]
    assert np.array_equal(got.hu, case.ct) and len(got.plan.seeds) == 3
    assert got.plan.seeds[0].strength_u == pytest.approx(0.25, rel=1e-12)  # one half-life later
    assert np.allclose(got.dose_gy, 7.0, atol=got.dose_info.scaling)
    rs, rp, rd = (pydicom.dcmread(paths[k]) for k in ("RTSTRUCT", "RTPLAN", "RTDOSE"))
    ct_uids = set(got.series.sop_instance_uids)
    referenced = {c.ContourImageSequence[0].ReferencedSOPInstanceUID for item in rs.ROIContourSequence
                  for c in item.ContourSequence}
    assert referenced <= ct_uids
    assert rp.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID == rs.SOPInstanceUID
    assert rd.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == rp.SOPInstanceUID
    assert rp.DoseReferenceSequence[0].ReferencedROINumber == 1
    assert len({ds.FrameOfReferenceUID for ds in (rs, rp, rd)}) == 1
    write_dicom_case(tmp_path / "case" / "second", case.ct, case.grid, rois, seeds, "I125_OncoSeed6711", 110.0)
    with pytest.raises(InputError, match="2 image series"):
        read_dicom_folder(tmp_path / "case")


def test_export_of_a_headless_case_references_the_input_ct(tmp_path, small, capsys):
    case, seeds = small
    series = write_ct_series(tmp_path / "ct", case.ct, case.grid)
    (tmp_path / "seeds.json").write_text(json.dumps({"space": "RAS", "seeds": [
        {"center_ras_mm": list(s.position), "axis_ras": list(s.axis), "strength_u": s.strength_u} for s in seeds]}))
    code = main(["dicom", "export", str(tmp_path / "out"), "--ct", str(tmp_path / "ct"), "--plan",
                 str(tmp_path / "seeds.json"), "--prescription-gy", "120", "--implant-date", "2026-02-01T10:00",
                 "--quiet"])
    assert code == 0 and "referenced" in capsys.readouterr().out
    assert not (tmp_path / "out" / "CT").exists()
    plan = pydicom.dcmread(tmp_path / "out" / "RP.dcm")
    assert plan.StudyInstanceUID == series.study.study_instance_uid
    assert plan.FrameOfReferenceUID == series.study.frame_of_reference_uid
    assert main(["dicom", "export", str(tmp_path / "out"), "--ct", str(tmp_path / "ct"), "--plan",
                 str(tmp_path / "seeds.json"), "--prescription-gy", "120", "--quiet"]) == 2  # exists, no --force


def test_a_structure_set_passed_on_keeps_its_partial_volumes(tmp_path, small):
    """RT Structure Set -> ``dicom export --structures`` -> read: the contours keep their sub-voxel course.

    A disk of radius 10.3 mm on 3 mm voxels: the re-exported ROI's voxel fractions stay within 0.2 of the first
    reading's (contouring a mask cut at half a voxel instead moves them by up to 0.37).
    """
    from SeedBrachyLib.dicomrt import read_rtstruct, write_rtstruct
    from SeedBrachyLib.dicomrt.contours import fill_fraction

    case, seeds = small
    grid = case.grid
    series = write_ct_series(tmp_path / "ct", case.ct, grid)
    centre = grid.to_ijk(case.node_center)
    theta = np.linspace(0.0, 2.0 * np.pi, 200, endpoint=False)
    disk = np.column_stack([centre[0] + 10.3 / 3.0 * np.cos(theta), centre[1] + 10.3 / 3.0 * np.sin(theta)])
    fraction = np.zeros(grid.shape, np.float32)
    k0 = int(round(centre[2]))
    fraction[k0 - 2:k0 + 3] = fill_fraction([disk], grid.shape[1:], 9)
    write_rtstruct(tmp_path / "RS.dcm", [Roi("Disk", fraction, interpreted_type="GTV")], grid, series)
    (tmp_path / "seeds.json").write_text(json.dumps({"space": "RAS", "seeds": [
        {"center_ras_mm": list(seeds[0].position), "strength_u": 0.5}]}))
    assert main(["dicom", "export", str(tmp_path / "out"), "--ct", str(tmp_path / "ct"), "--structures",
                 str(tmp_path / "RS.dcm"), "--plan", str(tmp_path / "seeds.json"), "--prescription-gy", "120",
                 "--quiet"]) == 0
    first = read_rtstruct(tmp_path / "RS.dcm", grid)[0].fraction
    again = read_rtstruct(tmp_path / "out" / "RS.dcm", grid)[0].fraction
    assert 0 < np.abs(again - first).max() < 0.2


@pytest.mark.slow
def test_worked_example_exports_and_imports(tmp_path, capsys):
    """``seedbrachy dicom export --demo``: every file conformant, and ``dicom import`` reads the case back,
    planned to the --prescription-gy given (not the demo's 120 Gy)."""
    out = tmp_path / "demo"
    assert main(["dicom", "export", str(out), "--demo", "--implant-date", "2026-03-01T09:00", "--prescription-gy",
                 "125", "--quiet"]) == 0
    for path in (out / "CT" / "CT_0001.dcm", out / "RS.dcm", out / "RP.dcm", out / "RD.dcm"):
        assert_conformant(path)
    assert main(["dicom", "import", str(out), "--implant-date", "2026-03-01T09:00", "--json",
                 str(tmp_path / "case.json"), "--quiet"]) == 0
    data = json.loads((tmp_path / "case.json").read_text())
    assert [r["name"] for r in data["rois"]][:2] == ["GTV", "CTV"] and data["plan"]["prescription_gy"] == 125.0
    assert len(data["plan"]["seeds"]) > 10 and data["dose"]["max_gy"] > 125.0
    assert "decayed 0.00 d" in data["plan"]["decay"][0]
