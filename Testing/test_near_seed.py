"""Next to a seed: TG-43 down to the capsule surface, the capsule rule inside, no NaN on CT-like grids, and clear
errors for non-finite input."""

import math

import numpy as np
import pytest
import tg43_oracle
from scipy.spatial.transform import Rotation

from SeedBrachyLib import tg43
from SeedBrachyLib.dose import compute_dose, dose_at_points, dose_per_u_at_points
from SeedBrachyLib.errors import InputError
from SeedBrachyLib.grid import Grid
from SeedBrachyLib.seeds import Seed
from SeedBrachyLib.sources import get_model

M = get_model("I125_OncoSeed6711")


@pytest.mark.parametrize("rho_mm", [0.4, 0.5, 1.0, 1.5, 2.0])
def test_beside_the_seed_the_dose_is_the_tg43_formula_down_to_the_capsule(rho_mm):
    """On the transverse plane: Lambda G_L(r, 90)/G_L(r0, 90) g_L(r) F(r, 90), g_L held at g_L(1 mm) below 1 mm
    (TG-43U1 nearest neighbour), written out here from the closed-form geometry function."""
    length = M.active_length_mm
    geometry = 2 * math.atan(length / (2 * rho_mm)) / (length * rho_mm)
    g0 = 2 * math.atan(length / 20) / (length * 10)
    g_l = M.gl[0] if rho_mm <= M.gl_r_mm[0] else float(np.exp(np.interp(rho_mm, M.gl_r_mm, np.log(M.gl))))
    expected = M.dose_rate_constant * geometry / g0 * g_l
    assert tg43.dose_rate_per_u_cyl(M, rho_mm, 0.0) == pytest.approx(expected, rel=1e-12)
    raw = tg43_oracle.load(M.key)
    assert tg43_oracle.dose_rate(raw, [rho_mm / 10, 0, 0], [0, 0, 0], [0, 0, 1]) == pytest.approx(expected, rel=1e-9)


def test_inside_the_capsule_the_nearest_surface_value():
    radius, half = M.outer_radius_mm, M.outer_length_mm / 2
    assert (radius, half) == (0.4, 2.25)
    f = tg43.dose_rate_per_u_cyl
    # nearer the side wall: the value at rho = radius, same z; nearer the end face: |z| = half, same rho
    assert f(M, 0.1, 1.0) == f(M, radius, 1.0)
    assert f(M, 0.3, 2.2) == f(M, 0.3, half)
    assert f(M, 0.0, -2.0) == f(M, 0.0, -half)
    assert f(M, 0.0, 0.0) == f(M, radius, 0.0)
    # continuous across the surface, and nothing inside exceeds the surface maximum
    eps = 1e-9
    for z in (0.0, 1.0, 2.0):
        assert f(M, radius - eps, z) == pytest.approx(f(M, radius + eps, z), rel=1e-6)
    rho, z = np.meshgrid(np.linspace(0, radius, 41), np.linspace(-half, half, 91))
    side = f(M, np.full(9001, radius), np.linspace(-half, half, 9001)).max()
    assert np.all(np.isfinite(f(M, rho, z))) and f(M, rho, z).max() <= side * (1 + 1e-9)


def _ct_like_grid(rng):
    rot = Rotation.random(random_state=rng.integers(1 << 31)).as_matrix() if rng.random() < 0.7 else np.eye(3)
    spacing = rng.uniform(0.3, 3.0, 3)
    dims = tuple(int(n) for n in rng.integers(3, 9, 3))
    return Grid(rng.uniform(-200, 200, 3), spacing, rot, dims)


def test_seeds_on_voxel_centres_corners_and_between_on_hundreds_of_ct_like_grids(engine):
    """Non-integer origins and spacings, oblique directions: every dose finite and within the engine's bound of the
    exact point dose (the old engine raised IndexError on about one in five such grids)."""
    rng = np.random.default_rng(2026)
    worst = 0.0
    for _ in range(200):
        grid = _ct_like_grid(rng)
        centre = (np.asarray(grid.dims) - 1) // 2
        where = [centre, centre + 0.5, centre + rng.uniform(-0.5, 0.5, 3)]  # voxel centre, corner, between
        seeds = [Seed(grid.to_ras(ijk), rng.normal(size=3), 0.5) for ijk in where]
        dose = compute_dose(grid, seeds, M, engine=engine)
        assert np.all(np.isfinite(dose)) and np.all(dose > 0)
        exact = dose_at_points(grid.points(), seeds, M)
        worst = max(worst, float(np.max(np.abs(dose - exact) / exact)))
    assert worst <= {"compiled": 5e-4, "numpy": 2e-6}[engine], f"largest relative difference {worst:.2e}"


def test_points_on_a_seed_and_on_its_axis_are_finite():
    seed = Seed([1.3, -2.7, 0.9], [0.3, 0.4, 0.866], 1.0)
    pts = seed.position + np.outer([0.0, 1e-12, 0.5, 2.25, 2.3, 5.0], seed.axis)
    for engine in ("compiled", "numpy"):
        d = dose_at_points(pts, [seed], M, engine=engine)
        assert np.all(np.isfinite(d)) and np.all(d > 0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_are_refused_naming_the_value(bad):
    with pytest.raises(InputError, match="position"):
        Seed([0, bad, 0])
    with pytest.raises(InputError, match="axis"):
        Seed([0, 0, 0], [0, bad, 1])
    with pytest.raises(InputError, match="spacing"):
        Grid([0, 0, 0], [1, bad, 1], np.eye(3), (2, 2, 2))
    with pytest.raises(InputError, match="origin"):
        Grid([bad, 0, 0], [1, 1, 1], np.eye(3), (2, 2, 2))
    with pytest.raises(InputError, match="direction"):
        Grid([0, 0, 0], [1, 1, 1], [[1, 0, 0], [0, 1, 0], [0, 0, bad]], (2, 2, 2))
    pts = np.zeros((4, 3))
    pts[2, 1] = bad
    with pytest.raises(InputError, match=r"point \(2,\) = \[0.0, (nan|inf|-inf), 0.0\] mm is not finite"):
        dose_at_points(pts, [Seed([5, 0, 0])], M)
    with pytest.raises(InputError, match="seed axis"):
        dose_per_u_at_points(pts[:1], [0, 0, 0], [0, bad, 1], M)
