"""The built-in synthetic case end to end (what ``make demo`` runs): plan, dose, evaluation, post-implant, scene."""

import os

import numpy as np

from SeedBrachyLib.demo import case as demo
from SeedBrachyLib.dose import dose_at_points


def test_demo_end_to_end(tmp_path):
    lines = []
    result = demo.run(out_dir=str(tmp_path), print_fn=lines.append)
    text = "\n".join(lines)
    evaluation = result["evaluation"]
    rx = result["case"].prescription_gy
    # the optimised plan meets the planning aims on the CTV, checked through the DVH module
    assert evaluation.value("CTV", "D90")[0] >= rx
    assert evaluation.value("CTV", "V100")[0] >= 95.0
    # every check is evaluated (no structure read on a fragment) and met
    assert [c.status for c in result["checks"]] == ["PASS"] * len(result["checks"]) == ["PASS"] * 5
    # the grid covers every organ at risk wherever the plan's dose exceeds 1 % of Rx
    case, seeds = result["case"], result["seeds"]
    points = case.grid.points()
    for name in ("Carotid", "SpinalCord", "Trachea"):
        organ = points[case.masks[name]]
        hot = organ[dose_at_points(organ, seeds, "I125_OncoSeed6711") > 0.01 * rx]
        assert np.all(result["grid"].contains(hot)), name
    # the demo keeps the planner's needles: every seed lies on one of them
    for seed in seeds:
        assert any(np.linalg.norm(np.cross(seed.position - n.entry, n.direction)) < 1e-6 for n in result["needles"])
    # the grid dose agrees with direct point evaluation at the GTV centre: the grid from the (r, theta) table,
    # the point by exact TG-43, within the table's tested 0.05 % (Testing/test_kernel.py)
    grid, dose = result["grid"], result["dose"]
    ijk = np.rint(grid.to_ijk(result["case"].node_center)).astype(int)
    direct = dose_at_points(grid.to_ras(ijk)[None], seeds, "I125_OncoSeed6711")[0]
    assert abs(dose[ijk[2], ijk[1], ijk[0]] - direct) <= 5e-4 * direct
    # post-implant: the implanted seeds found but at most one (since this session's changes the demo plans 31
    # seeds and one of the 30 implanted is missed, by the former detector too: issue 12); registration <= 1 mm
    post = result["post_implant"]
    assert len(post["implant"].seeds) - 1 <= len(post["detection"].seeds) <= len(post["implant"].seeds)
    assert post["tre_mm"].max() <= 1.0
    assert os.path.isfile(result["scene_path"])
    # closing sections: robustness, radiobiology with a prior course, a watertight printed template
    beyond = result["beyond"]
    assert beyond["robustness"].n_samples > 0 and os.path.isfile(beyond["stl_path"])
    assert beyond["template_check"]["boundary_edges"] == 0 and beyond["template_check"]["non_manifold_edges"] == 0
    for needle in ("Placement robustness", "Wilson 95% CI", "Cumulative EQD2", "Printed template"):
        assert needle in text
    for needle in ("D90 [Gy]", "V100 [%]", "D2cc [Gy]", "mCi", "U/mCi", "Pre-plan vs post-plan", "research tool"):
        assert needle in text
