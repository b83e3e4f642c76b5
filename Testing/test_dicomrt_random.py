"""Random geometries by the hundred: RT Plan, RT Structure Set and contour filling on random oblique grids."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from SeedBrachyLib import dicomrt
from SeedBrachyLib.dicomrt.contours import fill_fraction, polygon_area
from SeedBrachyLib.grid import Grid
from SeedBrachyLib.seeds import Seed


def _random_grid(rng, dims):
    return Grid(rng.uniform(-150, 150, 3), rng.uniform(0.6, 3.5, 3), Rotation.random(random_state=rng).as_matrix(),
                dims)


@pytest.mark.slow
def test_random_plans_round_trip(tmp_path):
    """100 plans of 1-12 seeds anywhere within 300 mm, any axis: positions to 0.01 mm, axes to 0.1 deg, S_K exact
    (6 decimals, i.e. any certificate value; an arbitrary float keeps 14 significant digits)."""
    rng = np.random.default_rng(13)
    worst_mm = worst_deg = worst_rel = 0.0
    for n in range(100):
        seeds = [Seed(rng.uniform(-300, 300, 3), rng.normal(size=3),
                      round(float(rng.uniform(0.1, 2.0)), 6) if n % 2 else float(rng.uniform(0.1, 2.0)), f"S{m}")
                 for m in range(int(rng.integers(1, 13)))]
        path = tmp_path / f"RP{n}.dcm"
        dicomrt.write_rtplan(path, seeds, "I125_OncoSeed6711", dicomrt.Study(), float(rng.uniform(40, 160)))
        back = dicomrt.read_rtplan(path).seeds
        assert len(back) == len(seeds)
        for a, b in zip(seeds, back):
            worst_mm = max(worst_mm, float(np.linalg.norm(a.position - b.position)))
            worst_deg = max(worst_deg, math.degrees(math.acos(min(1.0, float(a.axis @ b.axis)))))
            if n % 2:
                assert b.strength_u == a.strength_u
            worst_rel = max(worst_rel, abs(b.strength_u / a.strength_u - 1))
    print(f"random plans: worst position {worst_mm:.2e} mm, axis {worst_deg:.2e} deg, S_K relative {worst_rel:.1e}")
    assert worst_mm < 0.01 and worst_deg < 0.1 and worst_rel < 1e-13


def _blob(rng, grid):
    """Union of 1-3 random ellipsoids minus a random inner ellipsoid (a hole in some slices)."""
    p = grid.points()
    centre = grid.to_ras((np.asarray(grid.dims) - 1) / 2.0)
    mask = np.zeros(grid.shape, dtype=bool)
    for _ in range(int(rng.integers(1, 4))):
        c = centre + rng.normal(scale=4.0, size=3)
        axes = rng.uniform(2.0, 10.0, 3)
        rot = Rotation.random(random_state=rng).as_matrix()
        mask |= np.sum(((p - c) @ rot / axes) ** 2, axis=-1) <= 1.0
    if rng.random() < 0.5:
        mask &= np.sum(((p - centre) / rng.uniform(1.5, 4.0, 3)) ** 2, axis=-1) > 1.0
    return mask


@pytest.mark.slow
def test_random_masks_round_trip_voxel_for_voxel(tmp_path):
    """25 random blobs (thin parts, holes, several islands per slice) on random oblique anisotropic CT grids."""
    rng = np.random.default_rng(5)
    for n in range(25):
        grid = _random_grid(rng, tuple(int(d) for d in rng.integers(16, 28, 3)))
        mask = _blob(rng, grid)
        if not mask.any():
            continue
        series = dicomrt.write_ct_series(tmp_path / f"CT{n}", np.zeros(grid.shape, np.int16), grid)
        dicomrt.write_rtstruct(tmp_path / f"RS{n}.dcm", [dicomrt.Roi("X", mask.astype(np.float32))], grid, series)
        roi = dicomrt.read_rtstruct(tmp_path / f"RS{n}.dcm", grid)[0]
        assert np.array_equal(roi.fraction >= 0.5, mask), n


def test_random_polygons_fill_to_their_area():
    """200 random star polygons with holes: filled area (9 x 9 sub-points per pixel) vs the exact shoelace area."""
    rng = np.random.default_rng(7)
    for _ in range(200):
        c = rng.uniform(20, 40, 2)
        m = int(rng.integers(3, 60))  # jittered angles: every gap < pi, so the polygon surrounds its centre
        phi = (np.arange(m) + rng.uniform(0, 0.9, m)) * 2 * np.pi / m
        outer = c + rng.uniform(4, 18, phi.size)[:, None] * np.stack([np.cos(phi), np.sin(phi)], 1)
        polygons = [outer]
        if rng.random() < 0.5:  # a hole well inside: radius below the centre's distance to the outer edges
            a, b = outer, np.roll(outer, -1, axis=0)
            t = np.clip(np.sum((c - a) * (b - a), 1) / np.sum((b - a) ** 2, 1), 0, 1)
            clearance = np.min(np.linalg.norm(a + t[:, None] * (b - a) - c, axis=1))
            psi = np.linspace(0, 2 * np.pi, 24, endpoint=False)
            polygons.append(c + rng.uniform(0.2, 0.8) * clearance * np.stack([np.cos(psi), np.sin(psi)], 1))
        exact = abs(polygon_area(polygons[0])) - sum(abs(polygon_area(p)) for p in polygons[1:])
        filled = float(fill_fraction(polygons, (64, 64)).sum())
        perimeter = sum(np.linalg.norm(np.diff(np.vstack([p, p[:1]]), axis=0), axis=1).sum() for p in polygons)
        assert filled == pytest.approx(exact, abs=0.02 * perimeter + 0.05)


def test_random_doses_round_trip(tmp_path):
    """30 random oblique, anisotropic (also left-handed) dose grids, steep gradients: within the stored precision."""
    rng = np.random.default_rng(11)
    for n in range(30):
        direction = Rotation.random(random_state=rng).as_matrix() @ np.diag([1, 1, rng.choice([-1.0, 1.0])])
        grid = Grid(rng.uniform(-100, 100, 3), rng.uniform(0.5, 4.0, 3), direction,
                    tuple(int(d) for d in rng.integers(2, 14, 3)))
        dose = 10.0 ** rng.uniform(-2, 5, grid.shape)  # 0.01 to 100000 Gy side by side
        dicomrt.write_rtdose(tmp_path / f"RD{n}.dcm", dose, grid, dicomrt.Study(), "1.2.3.4")
        back, back_grid, info = dicomrt.read_rtdose(tmp_path / f"RD{n}.dcm")
        if np.linalg.det(direction) < 0:
            back, points = back[::-1], back_grid.points()[::-1]
        else:
            points = back_grid.points()
        assert np.allclose(points, grid.points(), atol=1e-6)
        assert np.max(np.abs(back - dose)) <= 0.5 * info.scaling * (1 + 1e-9)
