"""Synthetic post-implant CT: partial-volume conservation, geometry of the implant, streaks, bone, bad input."""

import math

import numpy as np
import pytest

from SeedBrachyLib.errors import InputError
from SeedBrachyLib.grid import Grid
from SeedBrachyLib.seeds import Seed
from SeedBrachyLib.synthetic.post_implant_ct import (
    SEED_DIAMETER_MM,
    SEED_LENGTH_MM,
    post_implant_ct,
    random_implant,
    render_capsule,
    segment_distance,
)

CAPSULE_VOLUME_MM3 = (math.pi * (SEED_DIAMETER_MM / 2) ** 2 * (SEED_LENGTH_MM - SEED_DIAMETER_MM)
                      + 4.0 / 3.0 * math.pi * (SEED_DIAMETER_MM / 2) ** 3)


def _rotation(deg_x, deg_z):
    ax, az = math.radians(deg_x), math.radians(deg_z)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ rx


@pytest.mark.parametrize("thickness, direction", [(1.0, None), (3.0, None), (5.0, _rotation(20, 35))])
def test_capsule_partial_volume_conserves_volume_and_centroid(thickness, direction):
    """Occupancy summed over voxels (x voxel in-plane area x slice thickness) = capsule volume; centroid = centre."""
    spacing = np.array([0.7, 0.9, thickness])
    grid = Grid.around([3.0, -2.0, 1.0], [20, 20, 30], spacing, direction)
    center = np.array([3.3, -1.7, 1.4])
    axis = np.array([0.3, 0.5, 0.8])
    values = np.zeros(grid.shape, dtype=np.float32)
    occupancy, box = render_capsule(values, grid, center, axis, SEED_LENGTH_MM, SEED_DIAMETER_MM, 1000.0, thickness)
    # each voxel samples a slab of the slice thickness along K: the slabs tile space once per K spacing
    volume = occupancy.sum() * spacing[0] * spacing[1] * thickness
    assert volume == pytest.approx(CAPSULE_VOLUME_MM3, rel=0.03)
    assert values.sum() * spacing.prod() == pytest.approx(1000.0 * CAPSULE_VOLUME_MM3, rel=0.03)
    pts = grid.points()
    centroid = (pts * values[..., None]).reshape(-1, 3).sum(axis=0) / values.sum()
    # in-plane the centroid is exact; along K, sampling a box slice profile once per slice biases it
    # by a fraction of the slice thickness (aliasing), as on real thick-slice scans
    err = grid.direction.T @ (centroid - center)
    assert np.all(np.abs(err[:2]) < 0.05) and abs(err[2]) < 0.06 * thickness, err


def test_thick_slices_lower_the_seed_peak():
    """An axial seed peaks far above 3071 HU with thin slices; thick slices give ~1500-2000 HU."""
    seed = [Seed([40.0, 8.0, 0.3], [1.0, 0.2, 0.0], 0.5)]
    peaks = {}
    for thickness in (1.0, 3.0, 5.0):
        scan = post_implant_ct(seed, spacing_mm=(0.8, 0.8, thickness), noise_hu=0, streak_hu=0, max_hu=32000)
        peaks[thickness] = int(scan.ct.max())
    assert peaks[1.0] > peaks[3.0] > peaks[5.0]
    assert 1200 <= peaks[5.0] <= 2500, peaks
    assert peaks[1.0] > 3071, peaks


def test_scan_geometry_clipping_and_truth():
    seeds = random_implant(6, (40, 8, 0), 12, random_seed=4)
    scan = post_implant_ct(seeds, spacing_mm=(1.0, 1.0, 2.0), direction=_rotation(10, -15), random_seed=4)
    assert scan.ct.dtype == np.int16 and scan.ct.shape == scan.grid.shape
    assert scan.ct.max() == 3071 and scan.ct.min() >= -1024
    assert scan.seeds == seeds and scan.slice_thickness_mm == 2.0
    for s in seeds:  # every seed's voxel neighbourhood is metal-bright
        i, j, k = np.rint(scan.grid.to_ijk(s.position)).astype(int)
        assert scan.ct[k - 1:k + 2, j - 2:j + 3, i - 2:i + 3].max() > 2000


def test_streaks_are_bright_and_dark_rays_that_fade():
    seed = [Seed([40.0, 8.0, 0.0], [1.0, 0.0, 0.0], 0.5)]
    kw = {"spacing_mm": (0.8, 0.8, 2.0), "noise_hu": 0, "random_seed": 7}
    diff = (post_implant_ct(seed, streak_hu=300, **kw).ct.astype(float)
            - post_implant_ct(seed, streak_hu=0, **kw).ct.astype(float))
    scan = post_implant_ct(seed, streak_hu=0, **kw)
    r = np.linalg.norm(scan.grid.points() - seed[0].position, axis=-1)
    ring = (r > 4) & (r < 15)
    assert diff[ring].max() > 60 and diff[ring].min() < -60
    assert np.abs(diff[r > 35]).max() == 0


def test_random_implant_spacing_pairs_and_determinism():
    kw = {"needle_direction": (-1, 0, 0), "touching_pairs": 5, "max_tilt_deg": 20.0, "random_seed": 11}
    seeds = random_implant(30, (40, 8, 0), 17, **kw)
    again = random_implant(30, (40, 8, 0), 17, **kw)
    assert len(seeds) == 30
    assert all(np.array_equal(a.position, b.position) and np.array_equal(a.axis, b.axis) for a, b in zip(seeds, again))
    partner = {s.label[:-1]: s for s in seeds if s.label.endswith("b")}
    assert len(partner) == 5
    for s in seeds:
        if not s.label.endswith("b"):
            assert np.linalg.norm(s.position - np.array([40, 8, 0])) <= 17
            assert math.degrees(math.acos(min(1.0, abs(s.axis @ np.array([-1.0, 0, 0]))))) <= 20.0 + 1e-9
    ends = {s.label: (s.position - s.axis * 1.85, s.position + s.axis * 1.85) for s in seeds}
    for a in seeds:
        for b in seeds:
            if a.label >= b.label:
                continue
            gap = segment_distance(*ends[a.label], *ends[b.label]) - SEED_DIAMETER_MM
            if b.label == a.label + "b":
                assert abs(gap) < 1e-3  # touching pair
            else:
                assert gap >= 1.0 - 1e-9 and np.linalg.norm(a.position - b.position) >= 6.0 - 1e-9


def test_bone_fragments_near_but_apart_from_seeds():
    seeds = random_implant(8, (40, 8, 0), 14, random_seed=2)
    scan = post_implant_ct(seeds, bone_fragments=3, noise_hu=0, streak_hu=0, random_seed=2)
    bones = [d["center"] for d in scan.distractors if d["kind"] == "bone"]
    assert len(bones) == 3 and scan.masks["BoneFragments"].any()
    ras = scan.grid.points()[scan.masks["BoneFragments"]]
    nearest = min(np.linalg.norm(ras - s.position, axis=1).min() for s in seeds)
    assert 0.4 + 1.0 < nearest < 12.0  # >= 1.5 mm gap minus half a voxel, a few mm away


@pytest.mark.parametrize("kwargs", [{"n_seeds": 0}, {"n_seeds": 4, "touching_pairs": 3}, {"radius_mm": -1},
                                    {"needle_direction": (0, 0, 0)}, {"n_seeds": 500, "radius_mm": 5}])
def test_random_implant_bad_input(kwargs):
    args = {"n_seeds": 4, "center_ras": (0, 0, 0), "radius_mm": 10} | kwargs
    with pytest.raises(InputError):
        random_implant(**args)


def test_post_implant_ct_bad_input():
    with pytest.raises(InputError):
        post_implant_ct([], slice_thickness_mm=0)
    with pytest.raises(InputError):
        post_implant_ct([], noise_hu=-1)
    with pytest.raises(InputError):
        post_implant_ct([], max_hu=40000)
