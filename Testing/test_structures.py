"""Structures: partial-volume resampling, margins, body and skin against analytic volumes."""

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from SeedBrachyLib.errors import Cancelled, InputError
from SeedBrachyLib.grid import Grid
from SeedBrachyLib.structures import (
    Structure,
    body_from_ct,
    default_supersampling,
    dvh_subdivision,
    expand_margin,
    resample_mask,
    skin_rind,
    structure_from_mask,
    structure_on_grid,
    subpoint_offsets,
)
from SeedBrachyLib.synthetic.phantom import neck_phantom

OBLIQUE = Rotation.from_euler("zyx", [25, -15, 35], degrees=True).as_matrix()
CENTER = np.array([1.3, -0.7, 0.4])


def _ball(grid, radius, center=CENTER):
    return np.linalg.norm(grid.points() - center, axis=-1) <= radius


def _ball_cc(radius):
    return 4.0 / 3.0 * math.pi * radius**3 / 1000.0


@pytest.mark.parametrize("spacing", [1.0, 2.0, (1.0, 1.5, 2.5)])
@pytest.mark.parametrize("direction", [None, OBLIQUE])
def test_resampled_sphere_volume_and_partial_voxels(spacing, direction):
    source = Grid.around(CENTER, 30, 0.25)
    mask = _ball(source, 12.0)
    target = Grid.around([0.0, 0.0, 0.0], 40, spacing, direction)
    w = resample_mask(mask, source, target, supersampling=4)
    assert w.dtype == np.float32 and w.min() >= 0 and w.max() <= 1
    assert float(w.sum()) * target.voxel_volume_cc == pytest.approx(_ball_cc(12.0), rel=0.01)
    partial = (w > 0) & (w < 1)
    assert partial.any()
    # partial voxels sit on the surface: their centres within a voxel diagonal of r = 12 mm
    r = np.linalg.norm(target.points()[partial] - CENTER, axis=-1)
    half_diag = 0.5 * float(np.linalg.norm(target.spacing))
    assert np.all(np.abs(r - 12.0) <= half_diag + 0.25)
    # voxels whose every corner is inside are full
    centres = target.points()
    assert np.all(w[np.linalg.norm(centres - CENTER, axis=-1) <= 12.0 - half_diag - 0.25] == 1.0)


def test_resample_from_oblique_anisotropic_ct_onto_axis_aligned_grid():
    source = Grid.around([0, 0, 0], 40, (0.8, 0.8, 1.5), OBLIQUE)
    target = Grid.around([0, 0, 0], 40, 1.0)
    w = resample_mask(_ball(source, 10.0), source, target)
    assert float(w.sum()) * target.voxel_volume_cc == pytest.approx(_ball_cc(10.0), rel=0.02)


def test_identity_resampling_reproduces_mask():
    grid = Grid.around([0, 0, 0], 20, (1.0, 1.0, 2.0))
    mask = _ball(grid, 6.0)
    for n in (1, 3):
        assert np.array_equal(resample_mask(mask, grid, grid, supersampling=n), mask.astype(np.float32))


def test_labelmap_and_default_supersampling():
    source = Grid.around([0, 0, 0], 30, 0.5)
    labels = np.zeros(source.shape, np.uint8)
    labels[_ball(source, 8.0)] = 3
    labels[_ball(source, 4.0, center=np.array([9.0, 9.0, 9.0]))] = 5
    target = Grid.around([0, 0, 0], 30, 2.0)
    s = structure_on_grid("GTV", labels, source, target, "target", label=3)
    assert s.volume_cc == pytest.approx(_ball_cc(8.0), rel=0.01)
    assert s.source_volume_cc == pytest.approx(float(np.sum(labels == 3)) * source.voxel_volume_cc)
    assert s.truncation_note() is None
    assert default_supersampling(source, target) == 8  # 2 mm over 0.5 mm: sub-points every 0.25 mm
    assert default_supersampling(target, source) == 2
    with pytest.raises(InputError, match="label 7 does not occur"):
        structure_on_grid("GTV", labels, source, target, label=7)


def test_dvh_subpoints_are_capped():
    assert dvh_subdivision(2, 50_000) == 2
    assert dvh_subdivision(8, 30_000) == 8
    assert dvh_subdivision(4, 2**24) == 1  # beyond 2^24 sub-points: one per voxel (its centre)
    source = Grid.around([0, 0, 0], 30, 0.5)
    s = structure_on_grid("GTV", _ball(source, 8.0), source, Grid.around([0, 0, 0], 30, 2.0))
    flat, inside, n = s.subvoxels
    assert n == 8 and inside.shape == (flat.size, 512)
    assert np.allclose(inside.mean(axis=1), s.weights.ravel()[flat], atol=1e-6)  # the same sub-points
    points, volumes = s.sample_points()  # grouped 2 x 2 x 2: at most 64 points per partial voxel
    assert len(points) <= 64 * flat.size + np.count_nonzero(s.weights >= 1) * 64
    assert np.all((s.weights.ravel()[flat] > 0) & (s.weights.ravel()[flat] < 1))


def test_progress_and_cancel():
    source = Grid.around([0, 0, 0], 30, 0.5)
    seen = []
    resample_mask(_ball(source, 8.0), source, Grid.around([0, 0, 0], 30, 1.0),
                  progress=lambda f, msg: seen.append((f, msg)))
    assert seen[-1][0] == pytest.approx(1.0) and "resampling" in seen[-1][1]
    with pytest.raises(Cancelled):
        resample_mask(_ball(source, 8.0), source, Grid.around([0, 0, 0], 30, 1.0), progress=lambda f, m: False)


def test_truncated_structure_is_reported():
    source = Grid.around([0, 0, 0], 40, 1.0)
    small = Grid.around([20, 0, 0], 20, 1.0)
    s = structure_on_grid("Carotid", _ball(source, 8.0, center=np.array([8.0, 0, 0])), source, small)
    assert s.volume_cc < s.source_volume_cc
    assert "Carotid" in s.truncation_note()


@pytest.mark.parametrize("spacing,margin", [(1.0, 3.0), (1.0, 5.0), ((1.0, 1.0, 2.0), 5.0), ((0.8, 0.8, 1.5), 3.0),
                                            ((0.8, 0.8, 1.5), 5.0), ((1.0, 0.7, 1.25), 5.0)])
def test_margin_volume_of_sphere(spacing, margin):
    """Binary margins are realised to about a voxel's spacing / 2 along each axis: 2 mm slices and a
    3 mm margin give -2.5%, so that combination is not asserted at 2%."""
    grid = Grid.around([0, 0, 0], 60, spacing)
    radius = 12.5
    ctv = expand_margin(_ball(grid, radius), grid, margin)
    assert float(ctv.sum()) * grid.voxel_volume_cc == pytest.approx(_ball_cc(radius + margin), rel=0.02)


def test_isotropic_margin_on_oblique_grid():
    grid = Grid.around([0, 0, 0], 60, 1.0, OBLIQUE)
    ctv = expand_margin(_ball(grid, 12.5), grid, 5.0)
    assert float(ctv.sum()) * grid.voxel_volume_cc == pytest.approx(_ball_cc(17.5), rel=0.02)


def _box_expanded_cc(a, b, c, mx, my, mz):
    """Volume (cc) of an a x b x c box grown by an ellipsoid with semi-axes mx, my, mz (mm).

    Steiner's formula in coordinates scaled by 1/m per axis, scaled back.
    """
    v = (a * b * c + 2 * (a * b * mz + b * c * mx + a * c * my) + math.pi * (a * my * mz + b * mx * mz + c * mx * my)
         + 4.0 / 3.0 * math.pi * mx * my * mz)
    return v / 1000.0


@pytest.mark.parametrize("direction", [None, np.array([[0.0, 1, 0], [-1, 0, 0], [0, 0, 1]])])
def test_per_axis_margin_on_a_box(direction):
    """A 20 x 16 x 12 mm box (whole voxels) grown by (6, 3, 0) mm along R, A, S."""
    grid = Grid.around([0, 0, 0], 50, 1.0, direction)
    ras = grid.points()
    box = (np.abs(ras[..., 0]) < 10) & (np.abs(ras[..., 1]) < 8) & (np.abs(ras[..., 2]) < 6)
    assert float(box.sum()) == pytest.approx(20 * 16 * 12)
    ctv = expand_margin(box, grid, (6.0, 3.0, 0.0))
    extent = ras[ctv]
    assert extent[:, 2].min() == pytest.approx(ras[box][:, 2].min())  # no growth along S
    assert extent[:, 0].max() == pytest.approx(ras[box][:, 0].max() + 6.0)
    assert extent[:, 1].max() == pytest.approx(ras[box][:, 1].max() + 3.0)
    expected = _box_expanded_cc(20, 16, 12, 6.0, 3.0, 1e-9)
    assert float(ctv.sum()) * grid.voxel_volume_cc == pytest.approx(expected, rel=0.02)


def test_margin_clipped_to_body():
    grid = Grid.around([0, 0, 0], 50, 1.0)
    body = grid.points()[..., 0] < 5.0
    ctv = expand_margin(_ball(grid, 8.0), grid, 5.0, clip_to=body)
    assert ctv.any() and not np.any(ctv & ~body)
    assert np.all(ctv[_ball(grid, 8.0) & body])


def test_body_from_phantom_ct():
    case = neck_phantom(noise_hu=15.0)
    ct = case.ct.copy()
    ct[2:6, 2:6, 2:6] = 40  # a separate object (couch, marker) outside the body
    body = body_from_ct(ct, case.grid)
    expected = case.masks["Body"]
    assert not body[3, 3, 3]
    assert np.all(body[case.masks["Trachea"] & expected])  # the airway is inside the body
    mismatch = np.count_nonzero(body ^ expected) / np.count_nonzero(expected)
    assert mismatch < 0.001


@pytest.mark.parametrize("spacing", [1.0, (0.8, 0.8, 3.0)])
@pytest.mark.parametrize("thickness", [3.0, 5.0, 8.0])
def test_skin_rind_of_cylinder(spacing, thickness):
    """Cylinder R = 50 mm through the whole scan: rind volume pi (R^2 - (R - t)^2) H, no end caps."""
    grid = Grid.around([0.3, -0.2, 0], [130, 130, 30], spacing)
    ras = grid.points()
    body = ras[..., 0] ** 2 + ras[..., 1] ** 2 <= 50.0**2
    skin = skin_rind(body, grid, thickness)
    height = grid.dims[2] * grid.spacing[2]
    expected_cc = math.pi * (50.0**2 - (50.0 - thickness) ** 2) * height / 1000.0
    measured_cc = float(skin.sum()) * grid.voxel_volume_cc
    # within a tenth of a millimetre of rind thickness (and 3% of the volume)
    assert abs(measured_cc - expected_cc) <= 2 * math.pi * 50.0 * height * 0.1 / 1000.0
    assert measured_cc == pytest.approx(expected_cc, rel=0.03)
    r = np.hypot(ras[..., 0], ras[..., 1])
    assert r[skin].min() >= 50.0 - thickness - 1.0 and not np.any(skin & ~body)


def test_skin_default_thickness_is_5_mm():
    grid = Grid.around([0, 0, 0], [110, 110, 10], 1.0)
    ras = grid.points()
    body = ras[..., 0] ** 2 + ras[..., 1] ** 2 <= 40.0**2
    assert np.array_equal(skin_rind(body, grid), skin_rind(body, grid, 5.0))


def test_bad_inputs():
    grid = Grid.around([0, 0, 0], 20, 1.0)
    empty = np.zeros(grid.shape, bool)
    with pytest.raises(InputError, match="structure 'GTV' is empty"):
        expand_margin(empty, grid, 5.0, name="GTV")
    with pytest.raises(InputError, match="structure 'Cord' is empty"):
        resample_mask(empty, grid, grid, name="Cord")
    with pytest.raises(InputError, match="structure 'Body' is empty"):
        skin_rind(empty, grid)
    with pytest.raises(InputError, match="no CT voxel above -300 HU"):
        body_from_ct(np.full(grid.shape, -1000), grid)
    ball = _ball(grid, 5.0, np.zeros(3))
    with pytest.raises(InputError, match="margin"):
        expand_margin(ball, grid, -1.0)
    with pytest.raises(InputError, match="oblique"):
        expand_margin(ball, Grid.around([0, 0, 0], 20, 1.0, OBLIQUE), (5.0, 5.0, 2.0))
    with pytest.raises(InputError, match="thickness"):
        skin_rind(ball, grid, 0.0)
    with pytest.raises(InputError, match="fills the whole grid"):
        skin_rind(np.ones(grid.shape, bool), grid)
    with pytest.raises(InputError, match="shape"):
        resample_mask(np.ones((3, 3, 3), bool), grid, grid)
    with pytest.raises(InputError, match="supersampling"):
        resample_mask(ball, grid, grid, supersampling=0)
    far = Grid.around([500, 0, 0], 20, 1.0)
    with pytest.raises(InputError, match="outside the target grid"):
        resample_mask(ball, grid, far, name="GTV")
    with pytest.raises(InputError, match="role"):
        Structure("X", ball.astype(np.float32), grid, role="organ")
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        Structure("X", ball * 2.0, grid)
    with pytest.raises(InputError, match="structure 'X' is empty"):
        Structure("X", empty.astype(np.float32), grid)
    with pytest.raises(InputError, match="subvoxels invalid"):
        Structure("X", ball.astype(np.float32), grid, subvoxels=(np.array([0]), np.zeros((1, 7), bool), 2))


@pytest.mark.parametrize("spacing", [0.25, 0.5, 1.0, (1.0, 1.0, 3.0), (0.4, 0.4, 2.0)])
def test_sample_points_of_own_geometry(spacing):
    """structure_from_mask: cells of about 1 mm on the mask's own grid; sample volumes add up to the mask's."""
    grid = Grid.around([0.3, -0.2, 0.1], 24, spacing, OBLIQUE)
    mask = _ball(grid, 9.0, center=np.array([0.3, -0.2, 0.1]))
    s = structure_from_mask("Node", mask, grid, "target")
    points, volumes = s.sample_points()
    assert np.all(s.grid.spacing < 2 * np.maximum(grid.spacing, 1.0)) and np.all(s.grid.spacing > 0.49)
    assert np.allclose(s.grid.direction, grid.direction)
    # inside, a cell split at <= 0.5 mm, the even half of the nodes (test_split_nodes_give_...): 4 points per mm^3
    # there, fewer in the edge cells of a mask at its own resolution (one each)
    assert len(points) >= 0.5 * volumes.sum() * 1e3 / (2 * 0.5 ** 3)
    assert volumes.sum() == pytest.approx(mask.sum() * grid.voxel_volume_cc, rel=1e-6)
    assert s.volume_cc == pytest.approx(volumes.sum(), rel=1e-6)
    # every point lies in a mask voxel (centroids of inside sub-points lie inside for a convex shape)
    ijk = np.rint(grid.to_ijk(points)).astype(int)
    assert mask[ijk[:, 2], ijk[:, 1], ijk[:, 0]].all()
    # the volume-weighted centroid is the ball's centre
    assert np.allclose(volumes @ points / volumes.sum(), [0.3, -0.2, 0.1], atol=0.05)


def test_binary_mask_edge_voxels_are_counted_by_their_centres():
    """A binary 1 mm mask: edge voxels (an outside 6-neighbour) give their centre, interior voxels of a
    target 4 points (0.5 mm Gauss-Legendre nodes, the even half), of an organ at risk one."""
    from scipy import ndimage

    grid = Grid.around([0, 0, 0], 30, 1.0)
    mask = _ball(grid, 8.0)
    s = structure_from_mask("GTV", mask, grid, "target")
    points, volumes = s.sample_points()
    edge = mask & ~ndimage.binary_erosion(mask)
    k, j, i = np.nonzero(edge)
    centres = points[np.isclose(volumes, grid.voxel_volume_cc)]
    assert np.allclose(np.sort(centres, axis=0), np.sort(grid.to_ras(np.stack([i, j, k], 1)), axis=0))
    assert len(points) == edge.sum() + 4 * (mask.sum() - edge.sum())
    assert volumes.sum() == pytest.approx(mask.sum() * grid.voxel_volume_cc)
    one_per_voxel, _ = s.sample_points(math.inf)
    assert len(one_per_voxel) == mask.sum()
    interior = s.interior_voxels()  # their centres come first
    assert interior.size == mask.sum() - edge.sum()
    assert np.allclose(one_per_voxel[:interior.size], s.grid.to_ras(
        np.stack(np.unravel_index(interior, s.grid.shape)[::-1], axis=1)))
    # and it maps back onto its own mask grid exactly
    assert np.array_equal(s.on_grid(grid).weights, mask.astype(np.float32))


def test_partial_voxel_sub_points_by_hand():
    """A 2 mm voxel whose lower half (in I) is inside: its 32 inside sub-points share half the voxel's volume."""
    grid = Grid.around([0, 0, 0], [2, 2, 2], 2.0)
    inside = np.zeros((1, 64), bool)
    offsets = subpoint_offsets(4)
    inside[0] = offsets[:, 0] < 0
    s = Structure("half", np.array([[[0.5]]], np.float32), grid, subvoxels=(np.array([0]), inside, 4))
    points, volumes = s.sample_points()
    assert len(points) == 32 and volumes == pytest.approx(np.full(32, 0.5 * grid.voxel_volume_cc / 32))
    assert np.allclose(np.unique(points[:, 0]), [-0.75, -0.25])
    assert np.allclose(np.unique(np.abs(points[:, 1:])), [0.25, 0.75])


def test_on_grid_needs_a_source():
    grid = Grid.around([0, 0, 0], 10, 1.0)
    s = Structure("W", np.ones(grid.shape, np.float32), grid)
    assert s.on_grid(grid) is s
    with pytest.raises(InputError, match="no source mask"):
        s.on_grid(Grid.around([0, 0, 0], 10, 2.0))
    with pytest.raises(InputError, match="sample spacing"):
        structure_from_mask("W", np.ones(grid.shape, bool), grid, sample_spacing_mm=0.0)


@pytest.mark.parametrize("spacing, direction, n", [((0.37, 0.52, 0.9), None, 3), ((0.3, 0.45, 0.7), None, 5),
                                                   ((0.5, 0.5, 1.0), np.eye(3)[[1, 2, 0]] * [1, -1, 1], 2)])
def test_aligned_resampling_is_sub_point_by_sub_point(spacing, direction, n):
    """Grids of one axis-aligned direction (a mask and its own sampling grid) take the axis-by-axis path: the same
    weights and inside sub-points as looking up each sub-point's RAS position in the mask (Grid.to_ijk)."""
    source = Grid.around(CENTER, [13.0, 11.0, 12.0], spacing, direction)
    mask = _ball(source, 4.5, center=CENTER + [0.2, -0.3, 0.1])
    target = Grid(source.to_ras([3.37, 2.13, 1.71]), np.asarray(spacing) * [2.0, 2.0, 1.0], source.direction,
                  (13, 11, 14))
    s = structure_on_grid("N", mask, source, target, supersampling=n)
    ijk = np.stack(np.unravel_index(np.arange(target.n_voxels), target.shape)[::-1], axis=1)
    src = np.rint(source.to_ijk(target.to_ras(ijk[:, None, :] + subpoint_offsets(n)[None]))).astype(int)
    inside = np.all((src >= 0) & (src < source.dims), axis=-1)
    inside[inside] = mask[src[inside][:, 2], src[inside][:, 1], src[inside][:, 0]]
    assert np.array_equal(s.weights.ravel(), (inside.sum(axis=1) / n ** 3).astype(np.float32))
    flat, sub, _ = s.subvoxels
    assert flat.size > 50 and np.array_equal(sub, inside[flat])


def _reference_boundary_points(structure):
    """The boundary sample points as before the single-sub-point groups were taken directly (15c87fb): every
    partial voxel's sub-points grouped by the einsums of ``_group_members``, for any n (the reference)."""
    from SeedBrachyLib.structures import _group_members

    w, grid, vv = structure.weights.ravel(), structure.grid, structure.grid.voxel_volume_cc
    edge = np.setdiff1d(np.flatnonzero(w >= 1.0), structure.interior_voxels(), assume_unique=True)
    ijk, vol = [np.stack(np.unravel_index(edge, grid.shape)[::-1], axis=1).astype(float)], [np.full(edge.size, vv)]
    partial = np.flatnonzero((w > 0) & (w < 1))
    if structure.subvoxels is not None and partial.size:
        flat, inside, n = structure.subvoxels
        members, inside = _group_members(n), inside.astype(np.float32)
        counts = np.einsum("vs,sg->vg", inside, members)
        offsets = subpoint_offsets(n)
        centroid = np.stack([np.einsum("vs,sg->vg", inside, members * offsets[:, a:a + 1]) for a in range(3)], -1)
        total = counts.sum(axis=1)
        row, group = np.nonzero(counts)
        voxels = flat[row]
        ijk.append(np.stack(np.unravel_index(voxels, grid.shape)[::-1], axis=1)
                   + centroid[row, group] / counts[row, group, None])
        vol.append(w[voxels] * vv * counts[row, group] / total[row])
        partial = np.setdiff1d(partial, flat[total > 0], assume_unique=True)
    ijk.append(np.stack(np.unravel_index(partial, grid.shape)[::-1], axis=1).astype(float))
    vol.append(w[partial].astype(np.float64) * vv)
    return grid.to_ras(np.concatenate(ijk)), np.concatenate(vol)


def _random_direction(rng):
    """A random oblique rotation, or a random signed permutation of the axes (with or without a 1e-17 tilt)."""
    kind = rng.integers(3)
    if kind == 0:
        return Rotation.random(random_state=rng).as_matrix()
    direction = np.eye(3)[rng.permutation(3)] * rng.choice([-1.0, 1.0], 3)
    return direction if kind == 1 else Rotation.from_rotvec(rng.normal(size=3) * 1e-17).as_matrix() @ direction


def test_mask_box_and_sample_points_match_the_references_on_random_grids(monkeypatch):
    """mask_box (slices read from each end inward) is the box of np.nonzero, empty masks refused by name; the sample
    points and volumes of structures made from masks on 60 random grids (oblique, permuted, tilted by 1e-17; 0.12 to
    1.3 mm voxels, so 1 to 8 sub-points per axis) are bit for bit those of the reference grouping."""
    from SeedBrachyLib import structures
    from SeedBrachyLib.structures import mask_box

    rng = np.random.default_rng(1234)
    seen = set()
    for case in range(60):
        spacing = rng.uniform(0.12, 1.3, 3)
        direction = _random_direction(rng)
        dims = np.maximum(3, np.rint(rng.uniform(8.0, 14.0, 3) / spacing)).astype(int)
        grid = Grid(rng.uniform(-50, 50, 3), spacing, direction, tuple(int(d) for d in dims))
        centre = grid.to_ras((dims - 1) * rng.uniform(0.3, 0.7, 3))
        mask = _ball(grid, rng.uniform(1.5, 4.0), centre) | (rng.random(grid.shape) < 0.002)
        if case % 5 == 0:
            mask = mask.astype(np.uint8) * 3  # a labelmap's values
        k, j, i = np.nonzero(mask)
        for scan_bytes in (1, 3 * mask[0].nbytes, structures.MASK_SCAN_BYTES):  # one slice, three, all at a time
            monkeypatch.setattr(structures, "MASK_SCAN_BYTES", scan_bytes)
            lo, hi = mask_box(mask)
            assert lo.tolist() == [i.min(), j.min(), k.min()] and hi.tolist() == [i.max(), j.max(), k.max()], case
        s = structure_from_mask("R", mask, grid, "target" if case % 2 else "oar")
        seen.add(int(s.subvoxels[2]))
        points, volumes = s.boundary_points()
        ref_points, ref_volumes = _reference_boundary_points(s)
        assert np.array_equal(points, ref_points) and np.array_equal(volumes, ref_volumes), case
        assert math.isclose(float(np.sum(s.sample_points()[1])), s.volume_cc, rel_tol=1e-6)
    assert {1, 2, 3, 4, 5, 6} <= seen, seen  # single sub-point groups (n <= 4) and grouped ones (n > 4)
    empty = np.zeros((7, 5, 6), bool)
    with pytest.raises(InputError, match="structure 'Nerve' is empty"):
        structure_from_mask("Nerve", empty, Grid.around([0, 0, 0], [6.0, 5.0, 7.0], 1.0))
    empty[6, 4, 0] = True
    assert [a.tolist() for a in mask_box(empty)] == [[0, 4, 6], [0, 4, 6]]


@pytest.mark.parametrize("spacing, count", [((1.0, 1.0, 1.0), 4), ((1.0, 1.0, 2.0), 8), ((0.9, 1.7, 2.0), 16),
                                            ((1.0, 1.0, 1.5), 12), ((0.5, 1.0, 1.0), 4)])
def test_split_nodes_give_a_linear_fields_mean_and_spread_in_the_voxel(spacing, count):
    """An interior voxel's split points (0.5 mm): for any linear dose their weighted mean is the voxel's and their
    variance the voxel's along every split axis (sum (g_a h_a)^2 / 12 over the axes of m_a >= 2; a 0.5 mm axis is not
    split), with the even half of the Gauss-Legendre product nodes when every axis splits evenly and all of them
    otherwise (a 1.5 mm axis splits in 3); the test fails on a half taken when an axis splits in an odd number or in
    1 (the cross terms stay)."""
    from SeedBrachyLib.structures import _split_offsets

    offsets, shares = _split_offsets(spacing, 0.5)
    assert len(offsets) == count and shares.sum() == pytest.approx(1.0)
    split = np.asarray(spacing) > 0.5
    for g in np.random.default_rng(5).normal(size=(50, 3)):
        value = offsets @ g  # voxel units
        assert shares @ value == pytest.approx(0.0, abs=1e-12)
        assert shares @ value ** 2 == pytest.approx(np.sum(g[split] ** 2) / 12.0, rel=1e-12)


def test_boundary_points_per_voxel_are_the_centroids_of_their_inside_sub_points():
    """boundary_points(per_voxel=True): one row per boundary voxel (ascending flat index) at the centroid of its
    inside sub-points (n = 8, grouped 4 per axis, so groups hold unequal counts) with its weight x voxel volume; an
    edge voxel of a full mask at its centre; boundary_split_points gives back each chosen voxel's own points."""
    grid = Grid.around([0.3, -0.2, 0.1], 12, 1.0, OBLIQUE)
    fine = Grid.around([0.3, -0.2, 0.1], 12, 0.125, OBLIQUE)
    mask = _ball(fine, 4.3, center=np.array([0.7, -0.5, 0.4]))
    s = structure_on_grid("Node", mask, fine, grid, "oar", supersampling=8)
    points, volumes = s.boundary_points()
    centroids, totals = s.boundary_points(per_voxel=True)
    flat, inside, n = s.subvoxels
    assert n == 8
    offsets = subpoint_offsets(n)
    w = s.weights.ravel()
    boundary = np.setdiff1d(np.flatnonzero(w > 0), s.interior_voxels())
    assert len(centroids) == boundary.size and totals.sum() == pytest.approx(volumes.sum(), rel=1e-12)
    row_of = {v: r for r, v in enumerate(flat)}
    for b, (c, t) in enumerate(zip(centroids, totals)):
        v = boundary[b]
        ijk = np.array(np.unravel_index(v, s.grid.shape)[::-1], float)
        want = ijk + (offsets[inside[row_of[v]]].mean(axis=0) if v in row_of and inside[row_of[v]].any() else 0.0)
        assert np.allclose(c, s.grid.to_ras(want), atol=1e-9)
        assert t == pytest.approx(w[v] * s.grid.voxel_volume_cc, rel=1e-6)
    rows = np.array([0, 3, len(centroids) - 1])
    got, got_volumes = s.boundary_split_points(rows)
    for r in rows:
        near = np.linalg.norm(got - centroids[r], axis=1) < 0.9 * math.sqrt(3)
        assert got_volumes[near].sum() >= totals[r] * (1 - 1e-6)
    assert got_volumes.sum() == pytest.approx(totals[rows].sum(), rel=1e-9)
