"""Dose on grids: geometry independence, superposition, linearity, symmetry, time integration, errors."""

import math

import numpy as np
import pytest
import tg43_oracle
from scipy.spatial.transform import Rotation

from SeedBrachyLib.dose import compute_dose, dose_at_points, time_factor_h
from SeedBrachyLib.errors import Cancelled, InputError
from SeedBrachyLib.grid import Grid
from SeedBrachyLib.seeds import Seed
from SeedBrachyLib.sources import get_model

M = get_model("I125_OncoSeed6711")
#: Largest relative difference from exact TG-43 allowed for each engine's grid dose (compiled: its table).
RTOL = {"compiled": 5e-4, "numpy": 2e-6}


def small_grid(direction=None, spacing=(1.5, 1.0, 2.0), center=(0.0, 0.0, 0.0)):
    return Grid.around(center, [40.0, 36.0, 44.0], spacing, direction)


def test_grid_matches_point_evaluation_and_oracle(engine):
    grid = small_grid(Rotation.from_euler("xyz", [20, -35, 50], degrees=True).as_matrix())
    seeds = [Seed([3.0, -2.0, 4.0], [1, 1, 0], 0.8), Seed([-6.0, 5.0, -3.0], [0, 0.2, 1], 0.5)]
    dose = compute_dose(grid, seeds, M, engine=engine)
    assert dose.dtype == np.float32 and dose.shape == grid.shape
    pts = grid.points()
    exact = dose_at_points(pts, seeds, M, engine=engine)
    assert np.allclose(exact, dose_at_points(pts, seeds, M, engine="numpy"), rtol=1e-12)  # points: exact on both
    assert np.max(np.abs(dose - exact) / exact) <= RTOL[engine]
    raw = tg43_oracle.load(M.key)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, grid.n_voxels, 200)
    flat_pts = pts.reshape(-1, 3)[idx]
    want = [tg43_oracle.total_dose_gy(raw, p, [(s.position, s.axis, s.strength_u) for s in seeds]) for p in flat_pts]
    assert np.allclose(dose.reshape(-1)[idx], want, rtol=max(1e-5, RTOL[engine]))


def test_oblique_grid_and_rotated_seed_give_same_physical_dose(engine):
    seed = Seed([0.7, -0.3, 0.2], [0, 0, 1], 1.0)
    ref = compute_dose(small_grid(), [seed], M, engine=engine)
    rot = Rotation.from_euler("zyx", [30, 15, -40], degrees=True).as_matrix()
    center = np.array([5.0, -7.0, 11.0])
    rotated_seed = Seed(center + rot @ seed.position, rot @ seed.axis, 1.0)
    rotated = compute_dose(small_grid(rot, center=center), [rotated_seed], M, engine=engine)
    assert np.allclose(rotated, ref, rtol=max(2e-5, 2 * RTOL[engine]), atol=1e-6)


def test_symmetry_about_transverse_plane(engine):
    grid = Grid.around([0, 0, 0], [30, 30, 31], 1.0)  # odd K count: voxel centres symmetric about z = 0
    dose = compute_dose(grid, [Seed([0, 0, 0], [0, 0, 1], 1.0)], M, engine=engine)
    assert np.allclose(dose, dose[::-1], rtol=1e-6)
    assert np.allclose(dose, dose[:, :, ::-1], rtol=1e-6)  # and about the seed axis


def test_superposition_and_linearity_in_strength(engine):
    grid = small_grid()
    a, b = Seed([2, 3, -4], [0, 1, 0], 0.6), Seed([-5, 1, 6], [1, 0, 1], 0.9)
    both = compute_dose(grid, [a, b], M, engine=engine)
    sep = compute_dose(grid, [a], M, engine=engine) + compute_dose(grid, [b], M, engine=engine)
    assert np.allclose(both, sep, rtol=1e-5)
    tripled = compute_dose(grid, [Seed(a.position, a.axis, 3 * a.strength_u)], M, engine=engine)
    assert np.allclose(tripled, 3 * compute_dose(grid, [a], M, engine=engine), rtol=1e-6)


def test_total_dose_and_time_windows():
    one_u = [Seed([0, 0, 0], [0, 0, 1], 1.0)]
    point = np.array([[10.0, 0.0, 0.0]])
    assert dose_at_points(point, one_u, M)[0] == pytest.approx(19.847213385, rel=1e-9)  # Gy per U
    first = dose_at_points(point, one_u, M, time_window_days=(0, 30))[0]
    rest = dose_at_points(point, one_u, M, time_window_days=(30, math.inf))[0]
    assert first + rest == pytest.approx(19.847213385, rel=1e-9)
    assert first == pytest.approx(19.847213385 * (1 - 0.5 ** (30 / 59.4)), rel=1e-9)
    assert time_factor_h(M, (0, math.inf)) == pytest.approx(M.mean_life_h)
    with pytest.raises(InputError, match="time window"):
        time_factor_h(M, (10, 5))


def test_point_formalism_on_grid_is_isotropic(engine):
    grid = Grid.around([0, 0, 0], [31, 31, 31], 1.0)  # voxel (15, 15, 15) is at the origin
    dose = compute_dose(grid, [Seed([0, 0, 0], [0, 0, 1], 1.0)], M, formalism="point", engine=engine)
    assert dose[15, 15, 25] == pytest.approx(dose[25, 15, 15], rel=max(1e-6, RTOL[engine]))  # 10 mm: x vs z
    assert dose[15, 15, 25] == pytest.approx(19.847213385 * 0.944, rel=max(1e-6, RTOL[engine]))  # phi_an(1 cm)


def test_progress_and_cancel(engine):
    grid = Grid.around([0, 0, 0], [60, 60, 160], 1.0)
    calls = []
    compute_dose(grid, [Seed([0, 0, 0], [0, 0, 1], 1.0)], M, progress=lambda f, m: calls.append(f), engine=engine)
    assert calls[0] == 0.0 and calls[-1] == pytest.approx(1.0) and calls == sorted(calls) and len(calls) > 2
    with pytest.raises(Cancelled):
        compute_dose(grid, [Seed([0, 0, 0], [0, 0, 1], 1.0)], M, progress=lambda f, m: f < 0.3, engine=engine)


@pytest.mark.parametrize("kwargs,match", [
    ({"strength_u": 0.0}, "strength"),
    ({"strength_u": -1.0}, "strength"),
    ({"axis": [0, 0, 0]}, "axis"),
    ({"position": [np.nan, 0, 0]}, "position"),
])
def test_bad_seeds(kwargs, match):
    args = {"position": [0, 0, 0], "axis": [0, 0, 1], "strength_u": 1.0} | kwargs
    with pytest.raises(InputError, match=match):
        Seed(**args)


def test_errors_name_the_bad_value(engine):
    grid = small_grid()
    with pytest.raises(InputError, match=r"outside the dose grid"):
        compute_dose(grid, [Seed([100, 0, 0], [0, 0, 1], 1.0)], M)
    assert compute_dose(grid, [Seed([100, 0, 0], [0, 0, 1], 1.0)], M, allow_outside=True).max() > 0
    with pytest.raises(InputError, match="no seeds"):
        compute_dose(grid, [], M)
    with pytest.raises(InputError, match="not a known seed model"):
        compute_dose(grid, [Seed([0, 0, 0], [0, 0, 1], 1.0)], "Pd103_unknown")
    with pytest.raises(InputError, match="formalism"):
        compute_dose(grid, [Seed([0, 0, 0], [0, 0, 1], 1.0)], M, formalism="3d")
    huge = Grid.around([0, 0, 0], [2000, 2000, 2000], 0.5)
    with pytest.raises(InputError, match=r"GiB"):
        compute_dose(huge, [Seed([0, 0, 0], [0, 0, 1], 1.0)], M, engine=engine)
    with pytest.raises(InputError, match=r"GiB"):
        compute_dose(grid, [Seed([0, 0, 0], [0, 0, 1], 1.0)], M, max_bytes=1000, engine=engine)


def test_grid_geometry_roundtrip_and_validation():
    rot = Rotation.from_euler("xyz", [10, 20, 30], degrees=True).as_matrix()
    g = Grid([1, 2, 3], [0.5, 0.8, 2.5], rot, (4, 5, 6))
    ijk = np.array([[0, 0, 0], [3, 4, 5], [1.5, 2.25, 0.5]])
    assert np.allclose(g.to_ijk(g.to_ras(ijk)), ijk)
    assert np.allclose((g.ijk_to_ras @ np.r_[3, 4, 5, 1])[:3], g.to_ras([3, 4, 5]))
    assert g.points()[5, 4, 3] == pytest.approx(g.to_ras([3, 4, 5]))
    assert g.voxel_volume_cc == pytest.approx(0.5 * 0.8 * 2.5 / 1000)
    with pytest.raises(InputError, match="orthonormal"):
        Grid([0, 0, 0], [1, 1, 1], [[1, 0, 0], [1, 1, 0], [0, 0, 1]], (2, 2, 2))
    with pytest.raises(InputError, match="spacing"):
        Grid([0, 0, 0], [1, 0, 1], np.eye(3), (2, 2, 2))


def test_covering_grid_spans_the_points_with_margin_in_the_given_direction():
    """Grid.covering (the dose-grid policy's box): every point moved by the margin along any axis is inside, the
    box is at most about a voxel larger than needed per side, and the direction is the one given."""
    rot = Rotation.from_euler("xyz", [10, 20, 30], degrees=True).as_matrix()
    points = np.array([[0.0, 0.0, 0.0], [30.0, -10.0, 12.0], [5.0, 20.0, -7.0]])
    grid = Grid.covering(points, 1.5, rot, margin_mm=5.0)
    assert np.allclose(grid.direction, rot) and np.allclose(grid.spacing, 1.5)
    shifts = np.vstack([np.eye(3), -np.eye(3)]) * 5.0
    shifted = (points[:, None, :] + (shifts @ rot.T)[None]).reshape(-1, 3)
    assert np.all(grid.contains(shifted))
    local = points @ rot
    extent = local.max(axis=0) - local.min(axis=0) + 10.0
    assert np.all(np.asarray(grid.dims) * 1.5 <= extent + 3 * 1.5)
