"""Registration image levels (SeedBrachyLib/postimplant/registration_levels.py), against direct numpy sums.

The finest level is ITK's block means corrected for the excluded (metal) voxels; the oracle here is
the masked mean of every block written out in numpy, on an oblique, anisotropic grid whose size the
factors do not divide (the last partial blocks are dropped, as ITK's BinShrink does).
"""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from SeedBrachyLib.errors import InputError
from SeedBrachyLib.grid import Grid
from SeedBrachyLib.itk_image import grid_from_image
from SeedBrachyLib.postimplant import registration_levels as levels


def _case(seed=0):
    rng = np.random.default_rng(seed)
    direction = Rotation.from_rotvec([0.2, -0.1, 0.3]).as_matrix()
    grid = Grid([5.0, -3.0, 2.0], [0.7, 0.9, 1.25], direction, (23, 17, 11))
    ct = rng.uniform(-1500.0, 2500.0, grid.shape).astype(np.float32)  # beyond CLIP_HU both ways
    excluded = rng.random(grid.shape) < 0.15
    excluded[0:2, 0:3, 0:3] = True  # one block entirely excluded (factors K 2, J 2, I 3 at 2 mm)
    return ct, grid, excluded


def _oracle(ct, excluded, factors_kji):
    values = np.clip(ct, *levels.CLIP_HU).astype(np.float64)
    shape = [n // f for n, f in zip(ct.shape, factors_kji)]
    mean = np.zeros(shape)
    kept = np.zeros(shape)
    touched = np.zeros(shape, bool)
    for index in np.ndindex(*shape):
        block = tuple(slice(i * f, (i + 1) * f) for i, f in zip(index, factors_kji))
        inside = ~excluded[block]
        kept[index] = inside.mean()
        touched[index] = not inside.all()
        mean[index] = values[block][inside].mean() if inside.any() else 0.0
    return mean, kept >= 0.5, touched


def test_finest_level_is_the_masked_block_mean_with_its_geometry_and_blur():
    import SimpleITK as sitk

    ct, grid, excluded = _case()
    level, touched = levels.finest_level(ct, grid, excluded, 2.0, slice_thickness_mm=2.0)
    factors_ijk = np.maximum(1, np.rint(2.0 / grid.spacing)).astype(int)
    assert list(factors_ijk) == [3, 2, 2]
    mean, keep, expected_touched = _oracle(ct, excluded, factors_ijk[::-1])
    np.testing.assert_allclose(sitk.GetArrayFromImage(level.image), mean, atol=2e-3)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(level.keep) > 0, keep)
    np.testing.assert_array_equal(touched, expected_touched)
    assert not keep[0, 0, 0] and mean[0, 0, 0] == 0.0
    # the level's voxel (0, 0, 0) is centred on its block's centre, on the same oblique axes
    level_grid = grid_from_image(level.image)
    np.testing.assert_allclose(level_grid.spacing, grid.spacing * factors_ijk)
    np.testing.assert_allclose(level_grid.direction, grid.direction, atol=1e-12)
    np.testing.assert_allclose(level_grid.to_ras([0, 0, 0]), grid.to_ras((factors_ijk - 1) / 2.0), atol=1e-9)
    # blur: the voxel box (the slice profile along K) plus the block, as variances (mm^2)
    block = grid.spacing * factors_ijk
    expected = (np.array([0.7, 0.9, 2.0]) ** 2 + block ** 2 - grid.spacing ** 2) / 12.0
    np.testing.assert_allclose(level.variance_mm2, expected)


def test_finest_level_without_excluded_voxels_and_bad_thickness():
    import SimpleITK as sitk

    ct, grid, _ = _case(1)
    none = np.zeros(grid.shape, bool)
    level, touched = levels.finest_level(ct, grid, none, 2.0)
    mean, _, _ = _oracle(ct, none, [2, 2, 3])
    np.testing.assert_allclose(sitk.GetArrayFromImage(level.image), mean, atol=2e-3)
    assert sitk.GetArrayFromImage(level.keep).all() and not touched.any()
    with pytest.raises(InputError, match="slice thickness"):
        levels.finest_level(ct, grid, none, 2.0, slice_thickness_mm=0.0)


def test_mask_corners_are_the_box_of_the_set_voxels_one_voxel_wider():
    import SimpleITK as sitk

    rng = np.random.default_rng(2)
    for _ in range(5):
        mask = np.zeros((14, 17, 19), bool)
        lo = rng.integers(0, 8, 3)
        hi = lo + rng.integers(1, 7, 3)
        mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = rng.random(tuple(hi - lo)) > 0.3
        mask[tuple(lo)] = mask[tuple(hi - 1)] = True
        image = sitk.GetImageFromArray(mask.astype(np.uint8))
        image.SetSpacing((0.7, 1.1, 2.0))
        image.SetOrigin((3.0, -4.0, 5.0))
        first = np.maximum(lo[::-1] - 1, 0)  # I, J, K
        last = np.minimum(hi[::-1], np.array(image.GetSize()) - 1)
        expected = {tuple(image.TransformContinuousIndexToPhysicalPoint([float(v) for v in corner]))
                    for corner in np.stack(np.meshgrid(*zip(first, last), indexing="ij"), -1).reshape(-1, 3)}
        assert {tuple(p) for p in levels.mask_corners(image)} == expected
    empty = sitk.Image(5, 6, 7, sitk.sitkUInt8)
    np.testing.assert_allclose(np.ptp(levels.mask_corners(empty), axis=0), [4.0, 5.0, 6.0])
