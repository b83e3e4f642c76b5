"""Template geometry and labels; needle paths with obstacle avoidance (analytic box geometry)."""

import numpy as np
import pytest

from SeedBrachyLib.errors import InputError
from SeedBrachyLib.grid import Grid
from SeedBrachyLib.planning.template import (
    NeedlePath,
    Template,
    paths_from_points,
    plan_needles,
    template_for_target,
)


def test_template_holes_spacing_labels_and_plane():
    t = Template(center=[5.0, 0.0, 0.0], normal=[2.0, 0.0, 0.0], col_axis=[0.5, 0.0, 1.0], spacing_mm=7.5,
                 n_rows=3, n_cols=9)
    holes = dict(t.holes())
    assert len(holes) == 27
    assert [Template.label(0, c) for c in range(9)] == ["A1", "B1", "C1", "D1", "E1", "F1", "G1", "H1", "J1"]
    np.testing.assert_allclose(holes["E2"], [5.0, 0.0, 0.0], atol=1e-12)  # middle hole at the centre
    np.testing.assert_allclose(np.linalg.norm(holes["F2"] - holes["E2"]), 7.5)
    np.testing.assert_allclose(np.linalg.norm(holes["E3"] - holes["E2"]), 7.5)
    np.testing.assert_allclose(t.col_axis, [0.0, 0.0, 1.0], atol=1e-12)  # made orthogonal to the normal
    for pos in holes.values():
        assert abs((pos - t.center) @ t.normal) < 1e-9  # all holes in the plane
    for p in t.paths():
        np.testing.assert_allclose(p.direction, [1.0, 0.0, 0.0])


def test_template_rejects_bad_input():
    with pytest.raises(InputError, match="spacing"):
        Template([0, 0, 0], [1, 0, 0], [0, 0, 1], spacing_mm=0)
    with pytest.raises(InputError, match="column axis"):
        Template([0, 0, 0], [1, 0, 0], [2, 0, 0])


def _box(grid, lo, hi):
    p = grid.points()
    return np.all((p >= np.asarray(lo)) & (p <= np.asarray(hi)), axis=-1)


@pytest.fixture(scope="module")
def scene():
    """Anisotropic grid (1 x 1 x 2 mm): body x >= 10, CTV box, bone block before it, vessel beyond it."""
    grid = Grid([0.0, 0.0, 0.0], [1.0, 1.0, 2.0], np.eye(3), (80, 60, 30))
    body = _box(grid, [10, -1, -1], [100, 100, 100])
    ctv = _box(grid, [40, 20, 20], [60, 40, 40])
    bone = _box(grid, [25, 20, 0], [30, 26, 26])  # y 20..26 mm, z 0..26 mm (voxel edges y 26.5, z 27)
    vessel = _box(grid, [62, 38, 0], [66, 42, 58])
    return grid, body, ctv, {"Bone": bone, "Vessel": vessel}


def test_template_for_target_faces_the_body(scene):
    grid, body, ctv, _ = scene
    t = template_for_target(ctv, grid, [1.0, 0.0, 0.0], body, spacing_mm=10.0, standoff_mm=5.0)
    np.testing.assert_allclose(t.normal, [1, 0, 0])
    assert t.center[0] == pytest.approx(10.0 - 5.0)  # 5 mm before the body's first voxel centre
    np.testing.assert_allclose(t.center[1:], [30.0, 30.0], atol=1e-9)  # on the CTV centroid
    spans = np.array([pos for _, pos in t.holes()])
    assert spans[:, 1].min() <= 20 and spans[:, 1].max() >= 40  # the holes cover the CTV's projection


def test_obstacle_avoidance_rejects_within_margin_keeps_clear(scene):
    grid, body, ctv, nogo = scene
    x = [1.0, 0.0, 0.0]
    paths = [NeedlePath("through", [0, 23, 24], x),      # through the bone
             NeedlePath("near", [0, 28, 24], x),         # 1.5 mm from the bone edge (y = 26.5)
             NeedlePath("clear", [0, 32, 24], x),        # 5.5 mm from the bone edge
             NeedlePath("z_near", [0, 23, 29], x),       # 2 mm above the bone's top edge (z = 27), 2 mm voxels
             NeedlePath("z_clear", [0, 23, 33], x),      # 6 mm above it
             NeedlePath("vessel", [0, 40, 30], x),       # crosses the CTV, then meets the vessel at x = 61.5
             NeedlePath("miss", [0, 50, 30], x)]
    ns = plan_needles(paths, ctv, body, grid, nogo, margin_mm=3.0)
    rejected = dict(ns.rejected)
    assert set(rejected) == {"through", "near", "z_near"}
    assert "Bone" in rejected["near"] and "3 mm" in rejected["near"]
    assert ns.missed == ["miss"]
    kept = {n.label: n for n in ns.needles}
    assert set(kept) == {"clear", "z_clear", "vessel"}
    # clearance is never overestimated and within half the largest voxel (1 mm) of the truth
    assert 5.5 - 1.0 <= kept["clear"].clearance_mm <= 5.5
    assert 6.0 - 1.0 <= kept["z_clear"].clearance_mm <= 6.0
    # entry on the skin (body surface x = 9.5..10), tip at the CTV's far side (x = 60), depth = |tip - entry|
    n = kept["clear"]
    assert 9.5 <= n.needle.entry[0] <= 10.5 and n.needle.tip[0] == pytest.approx(60.0, abs=0.5)
    assert n.needle.depth_mm == pytest.approx(n.needle.tip[0] - n.needle.entry[0])
    assert n.ctv_start_mm == pytest.approx(40.0 - n.needle.entry[0], abs=0.5)
    assert not n.shortened
    # the needle towards the vessel stops short of its margin, still inside the CTV
    v = kept["vessel"]
    assert v.shortened and v.needle.tip[0] <= 61.5 - 3.0 + 1e-6 and v.needle.tip[0] >= 40.0
    assert v.clearance_mm >= 3.0


def test_margin_zero_keeps_near_needle_and_user_paths(scene):
    grid, body, ctv, nogo = scene
    ns = plan_needles(paths_from_points([[0, 28, 24]], [[50, 28, 24]]), ctv, body, grid, nogo, margin_mm=0.0)
    assert [n.label for n in ns.needles] == ["N1"]
    with pytest.raises(InputError, match="margin"):
        plan_needles([], ctv, body, grid, nogo, margin_mm=-1)
    with pytest.raises(InputError, match="one each"):
        paths_from_points([[0, 0, 0]], [[1, 0, 0], [2, 0, 0]])


def test_oblique_needles_avoid_an_oblique_obstacle():
    rot = np.array([[np.cos(0.4), -np.sin(0.4), 0], [np.sin(0.4), np.cos(0.4), 0], [0, 0, 1.0]])
    grid = Grid.around([0, 0, 0], [80, 80, 40], [1.0, 1.0, 1.5], rot)
    p = grid.points()
    body = np.linalg.norm(p[..., :2], axis=-1) <= 38
    ctv = np.linalg.norm(p, axis=-1) <= 10
    rod = (np.abs(p[..., 1] - 8.0) <= 2.0) & (np.abs(p[..., 0] + 20) <= 3)  # a rod along S at y = 8
    direction = [1.0, 0.0, 0.0]
    paths = [NeedlePath("hit", [-50, 8, 0], direction), NeedlePath("ok", [-50, 0, 0], direction)]
    ns = plan_needles(paths, ctv, body, grid, {"Rod": rod}, margin_mm=3.0)
    assert [n.label for n in ns.needles] == ["ok"] and [r[0] for r in ns.rejected] == ["hit"]
    assert 6.0 - 1.5 <= ns.needles[0].clearance_mm <= 6.0 + 0.5
