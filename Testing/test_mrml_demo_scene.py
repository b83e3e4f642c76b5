"""The demo's Slicer scene: a bundle that reopens with CT, GTV and CTV segments, organs at risk, seeds, the planner's
needles, dose, DVH table and plot, checks and the settings it was made with."""

import numpy as np
import pytest

pytest.importorskip("slicer")

from SeedBrachyLib import settings  # noqa: E402
from SeedBrachyLib.demo import case as demo  # noqa: E402
from SeedBrachyLib.demo.scene import write_case_scene  # noqa: E402
from SeedBrachyLib.mrml import markups, parameters, segmentations, tables, volumes  # noqa: E402
from SeedBrachyLib.mrml.scene import load_bundle  # noqa: E402
from SeedBrachyLib.synthetic.phantom import fixed_seed_arrangement, needles_through_seeds  # noqa: E402


def test_demo_bundle_reopens_with_everything(neck_case, tmp_path):
    seeds = fixed_seed_arrangement(neck_case)
    needles = needles_through_seeds(seeds, neck_case.masks["Body"], neck_case.grid)
    values = demo.demo_settings(doseSpacingMm=2.0)
    path, evaluation, results = write_case_scene(tmp_path / "demo.mrb", neck_case, seeds, needles, values)
    scene = load_bundle(path).scene
    stored = parameters.read_settings(parameters.parameter_node(scene, create=False))
    assert settings.resolve({name: stored[name] for name in settings.SETTINGS}) == values
    ct, grid = volumes.array_from_volume_node(stored["ctVolume"])
    assert np.array_equal(ct, neck_case.ct) and np.allclose(grid.ijk_to_ras, neck_case.grid.ijk_to_ras)
    seg = stored["segmentation"]
    names = {seg.GetSegmentation().GetSegment(s).GetName() for s in segmentations.segment_ids(seg)}
    assert names == set(neck_case.masks) | {"CTV"}
    assert segmentations.segment_name(seg, stored["ctvSegmentID"]) == "CTV"
    assert len(markups.read_seeds(stored["seeds"])) == len(seeds)
    assert len(markups.read_needles(stored["seeds"])) == len(needles)
    assert volumes.is_dose_volume(stored["doseVolume"])
    d90, unit = tables.read_dvh_metric(stored["dvhTable"], "GTV", "D90")
    assert unit == "Gy" and d90 == pytest.approx(evaluation.value("GTV", "D90")[0], rel=1e-5)
    chart = stored["dvhChart"]
    assert chart.GetNumberOfPlotSeriesNodes() == len(evaluation.structures)
    checks = stored["checksTable"].GetTable()
    # lymph-node D90 > 102.7 Gy (GTV); D90 >= Rx, V100 >= 90 % (CTV); the demo's skin and carotid limits
    assert checks.GetNumberOfRows() == len(results) == 5
    result = {checks.GetColumnByName("Check").GetValue(r): checks.GetColumnByName("Result").GetValue(r)
              for r in range(5)}
    assert result["post-implant D90 > 102.7 Gy"] == ("PASS" if d90 > 102.7 else "FAIL")


def test_needles_run_from_the_skin_through_their_seeds(neck_case):
    seeds = fixed_seed_arrangement(neck_case)
    body = neck_case.masks["Body"]
    needles = needles_through_seeds(seeds, body, neck_case.grid)
    covered = 0
    for needle in needles:
        on_line = [s for s in seeds if np.linalg.norm(np.cross(s.position - needle.entry, needle.direction)) < 1e-6]
        assert on_line, needle.label
        covered += len(on_line)
        depths = [(s.position - needle.entry) @ needle.direction for s in on_line]
        assert min(depths) > 0 and max(depths) == pytest.approx(needle.depth_mm)  # tip at the deepest seed
        # the entry is just outside the body, the point 2 mm deeper is inside
        for point, inside in ((needle.entry, False), (needle.entry + 2.0 * needle.direction, True)):
            i, j, k = np.rint(neck_case.grid.to_ijk(point)).astype(int)
            assert bool(body[k, j, i]) is inside, needle.label
    assert covered == len(seeds)


def test_demo_says_so_and_skips_the_scene_without_slicer(neck_case, tmp_path, monkeypatch):
    real = demo.importlib.util.find_spec
    monkeypatch.setattr(demo.importlib.util, "find_spec", lambda name, *a: None if name == "slicer" else real(name, *a))
    printed = []
    assert demo.write_slicer_scene(str(tmp_path), neck_case, [], [], demo.demo_settings(), printed.append) is None
    assert "slicer-core is not installed" in printed[0]
    assert not list(tmp_path.iterdir())
