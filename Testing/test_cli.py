"""The seedbrachy command: version, outputs refused before any computation, exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from SeedBrachyLib import __version__
from SeedBrachyLib.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"seedbrachy {__version__}"


def test_demo_out_naming_a_file_fails_at_once(tmp_path, capsys, monkeypatch):
    from SeedBrachyLib.demo import case

    monkeypatch.setattr(case, "run", lambda *a, **k: pytest.fail("the case was computed before the check"))
    target = tmp_path / "scene.mrb"
    target.write_text("mine")
    assert main(["demo", "--quiet", "--out", str(target)]) == 2
    assert "a folder is to be written there" in capsys.readouterr().err
    assert target.read_text() == "mine"


def test_demo_refuses_an_existing_scene_without_force(tmp_path, capsys):
    (tmp_path / "SeedBrachyDemo.mrb").write_text("an earlier scene")
    assert main(["demo", "--quiet", "--out", str(tmp_path)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (tmp_path / "SeedBrachyDemo.mrb").read_text() == "an earlier scene"


@pytest.mark.slow
def test_detect_passes_the_header_slice_thickness_or_the_option(tmp_path, monkeypatch, capsys):
    """``seedbrachy detect`` on a DICOM folder gives detection the header's SliceThickness (here edited to 3 mm
    on 2 mm slices: an overlapping series); ``--slice-thickness`` overrides it; a volume file gives None."""
    import pydicom

    from SeedBrachyLib.dicomrt import write_ct_series
    from SeedBrachyLib.postimplant import detection
    from SeedBrachyLib.synthetic.post_implant_ct import post_implant_ct, random_implant

    scan = post_implant_ct(random_implant(3, (40.0, 8.0, 0.0), 8.0, random_seed=2), spacing_mm=(1.0, 1.0, 2.0),
                           random_seed=2)
    write_ct_series(tmp_path / "ct", scan.ct, scan.grid)
    for path in (tmp_path / "ct").iterdir():
        ds = pydicom.dcmread(path)
        ds.SliceThickness = "3.0"
        ds.save_as(path)
    seen = []
    real = detection.detect_seeds
    monkeypatch.setattr(detection, "detect_seeds",
                        lambda *a, **k: seen.append(k["slice_thickness_mm"]) or real(*a, **k))
    assert main(["detect", str(tmp_path / "ct"), "--quiet"]) == 0
    assert main(["detect", str(tmp_path / "ct"), "--slice-thickness", "2.5", "--quiet"]) == 0
    assert seen == [pytest.approx(3.0), pytest.approx(2.5)]
    assert "slice thickness 3.00 mm (given)" in capsys.readouterr().out


def test_detect_on_a_volume_file_finds_the_simulated_seeds(tmp_path):
    """The seeds JSON (stable names) against the seeds rendered into a synthetic post-implant CT (NRRD, oblique)."""
    import SimpleITK as sitk
    from scipy.spatial.transform import Rotation

    from SeedBrachyLib.itk_image import to_sitk
    from SeedBrachyLib.postimplant.detection import match_seeds
    from SeedBrachyLib.synthetic.post_implant_ct import post_implant_ct, random_implant

    truth = random_implant(7, (40.0, 8.0, 0.0), 12.0, random_seed=4)
    direction = Rotation.from_euler("xz", [12.0, -8.0], degrees=True).as_matrix()
    scan = post_implant_ct(truth, spacing_mm=(0.8, 0.8, 1.5), direction=direction, random_seed=4)
    path = tmp_path / "post.nrrd"
    sitk.WriteImage(to_sitk(scan.ct, scan.grid), str(path))
    out = tmp_path / "seeds.json"
    assert main(["detect", str(path), "--count", "7", "--quiet", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["space"] == "RAS" and len(data["seeds"]) == 7
    found = [s["center_ras_mm"] for s in data["seeds"]]
    pairs, err = match_seeds(found, [s.position for s in truth])
    assert len(pairs) == 7 and err.max() < 1.0  # mm
    for s in data["seeds"]:
        assert set(s) >= {"center_ras_mm", "axis_ras", "confidence"}
        assert abs(np.linalg.norm(s["axis_ras"]) - 1.0) < 1e-6 and 0.0 <= s["confidence"] <= 1.0
    assert main(["detect", str(path), "--quiet", "--json", str(out)]) == 2  # exists: refused without --force
