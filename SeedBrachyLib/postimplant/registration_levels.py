"""Images for registration at physical resolutions (mm), with seed metal left out and slice profiles matched.

A :class:`Level` is one CT at one resolution: HU clipped to ``CLIP_HU``, block-averaged to about
``spacing_mm`` along each of its own grid axes (never finer than the scan), then Gaussian-smoothed.
Averages are masked: voxels flagged as metal (seeds, their streaks) do not enter any average, and a
coarse voxel that is mostly metal is left out of the metric (``keep`` mask).

Each level tracks the blur it carries along its I, J, K axes as a variance (mm^2): a voxel of size
``w`` (or a slice of thickness ``w``) counts ``w^2 / 12`` (a box profile), a Gaussian of sigma ``s``
counts ``s^2``. :func:`match_blur` smooths the sharper of two images along each axis to the blur of
the other, so that a 1 mm pre-plan and a 5 mm post-implant series are compared at the same
effective slice profile (otherwise the optimum is biased and the optimiser stalls).

All geometry is SimpleITK's (LPS, mm); the RAS <-> LPS flip stays in :mod:`SeedBrachyLib.itk_image`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..grid import Grid
from ..itk_image import grid_from_image, to_sitk
from ..structures import mask_box

CLIP_HU = (-1000.0, 2000.0)
SOFT_TISSUE_HU = (-200.0, 300.0)  # fat to enhanced soft tissue: a CT in HU has plenty of these
FAT_HU = -60.0  # fat, lung and air lie below: a CT in HU has some
MIN_TISSUE_FRACTION = 0.005
MIN_SPAN_HU = 500.0
MIN_KEPT_VOXELS = 1000


@dataclass
class Level:
    """One CT at one resolution (SimpleITK, LPS mm).

    Attributes:
        image: float32 HU (clipped, masked averages).
        keep: uint8 mask, 1 where the voxel enters the metric (not metal, inside the region of interest).
        variance_mm2: blur variance (mm^2) along the image's I, J, K axes.
    """

    image: sitk.Image
    keep: sitk.Image
    variance_mm2: np.ndarray

    @property
    def direction(self):
        """3x3 direction (columns = I, J, K unit vectors, LPS)."""
        return np.asarray(self.image.GetDirection(), float).reshape(3, 3)


def check_ct_content(ct, name):
    """Refuse a CT that cannot be registered: blank, not finite, or not in HU (InputError naming what was seen)."""
    ct = np.asarray(ct)
    if ct.size == 0:
        raise InputError(f"{name} is empty (shape {ct.shape})")
    lo, hi = float(np.min(ct)), float(np.max(ct))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise InputError(f"{name} holds non-finite values (NaN or infinity): a CT in HU is needed")
    if hi - lo < 1.0:
        raise InputError(f"{name} is blank: every voxel is {lo:g} (no anatomy to register)")
    step = max(1, ct.size // 2_000_000)
    sample = ct.reshape(-1)[::step]
    soft = float(np.mean((sample >= SOFT_TISSUE_HU[0]) & (sample <= SOFT_TISSUE_HU[1])))
    below = float(np.mean(sample < FAT_HU))
    problem = None
    if hi - lo < MIN_SPAN_HU:
        problem = f"they span only {hi - lo:g} (a CT in HU spans air or fat to soft tissue, >= {MIN_SPAN_HU:g})"
    elif below < MIN_TISSUE_FRACTION:
        problem = f"{100 * below:.2f}% of voxels are below {FAT_HU:g} HU (air, lung and fat are; a scan has them)"
    elif soft < MIN_TISSUE_FRACTION:
        problem = (f"only {100 * soft:.2f}% of voxels are in the soft-tissue range {SOFT_TISSUE_HU[0]:g} to "
                   f"{SOFT_TISSUE_HU[1]:g} HU")
    if problem:
        raise InputError(f"{name} does not look like a CT in HU: values {lo:g} to {hi:g} (median "
                         f"{float(np.median(sample)):g}); {problem}: apply the rescale slope and intercept, or "
                         "check that this is the right image")


def finest_level(ct, grid, excluded, spacing_mm, slice_thickness_mm=None):
    """The :class:`Level` of a CT block-averaged to about ``spacing_mm`` (mm) per axis, and the blocks touched.

    ``ct``: HU [k, j, i] on the RAS ``grid``; ``excluded``: bool [k, j, i], the few voxels (seed metal)
    left out of every average (a block more than half excluded is left out of the metric);
    ``slice_thickness_mm``: reconstructed slice thickness along K (mm), default the K spacing.
    Returns (level, touched): ``touched`` is bool [k, j, i] on the level's grid, True on blocks holding
    an excluded voxel. Blocks of whole voxels from index 0 (a last partial block is dropped, as ITK's
    BinShrink does); one pass over the full-resolution image, one slab of blocks at a time (no
    full-size float copy).
    """
    thickness = float(grid.spacing[2] if slice_thickness_mm is None else slice_thickness_mm)
    if not thickness > 0:
        raise InputError(f"slice thickness {slice_thickness_mm!r} mm invalid: must be > 0")
    ct = np.asarray(ct)
    excluded = np.asarray(excluded, bool)
    factors = np.clip(np.rint(spacing_mm / np.asarray(grid.spacing, float)), 1, grid.dims).astype(int)  # I, J, K
    fk, fj, fi = factors[::-1]
    shape = np.asarray(ct.shape) // factors[::-1]
    nj, ni = shape[1] * fj, shape[2] * fi
    sums = np.empty(shape, np.float32)
    n_out = np.zeros(shape, np.int32)
    slab = np.empty((fk, nj, ni), np.float32)
    for kb in range(shape[0]):
        rows = slice(kb * fk, (kb + 1) * fk)
        np.clip(ct[rows, :nj, :ni], *CLIP_HU, out=slab)
        out = excluded[rows, :nj, :ni]
        if out.any():
            slab[out] = 0.0
            n_out[kb] = _block_sum(out.astype(np.int32), fj, fi)
        sums[kb] = _block_sum(slab, fj, fi)
    n_block = int(np.prod(factors))
    left = n_block - n_out
    mean = sums / np.maximum(left, 1).astype(np.float32)
    mean[left == 0] = 0.0
    fine_grid = Grid(grid.to_ras((factors - 1) / 2.0), grid.spacing * factors, grid.direction, tuple(shape[::-1]))
    voxel = np.array([grid.spacing[0], grid.spacing[1], thickness])
    variance = (voxel ** 2 + (np.asarray(grid.spacing) * factors) ** 2 - np.asarray(grid.spacing) ** 2) / 12.0
    return Level(to_sitk(mean, fine_grid), to_sitk(left >= 0.5 * n_block, fine_grid), variance), n_out > 0


def _block_sum(slab, fj, fi):
    """Sums [j, i] of a slab (fk, nj, ni) over its fk slices and over blocks of fj x fi voxels."""
    plane = slab.sum(axis=0, dtype=slab.dtype)
    plane = plane.reshape(-1, fj, plane.shape[1]).sum(axis=1, dtype=slab.dtype)
    out = plane[:, 0::fi].copy()
    for r in range(1, fi):
        out += plane[:, r::fi]
    return out


def _masked_shrink(level, factors):
    """Block averages over ``factors`` voxels (I, J, K) of the kept voxels; keep where half are kept."""
    factors = [int(f) for f in factors]
    if max(factors) == 1:
        return level
    keep = sitk.Cast(level.keep, sitk.sitkFloat32)
    weight = sitk.BinShrink(keep, factors)
    total = sitk.BinShrink(level.image * keep, factors)
    w = sitk.GetArrayViewFromImage(weight)
    mean = sitk.GetArrayFromImage(total) / np.maximum(w, 1e-6)
    mean[w < 1e-6] = 0.0
    image = sitk.GetImageFromArray(mean.astype(np.float32))
    image.CopyInformation(weight)
    new_keep = sitk.Cast(weight >= 0.5, sitk.sitkUInt8)
    spacing = np.asarray(level.image.GetSpacing())
    variance = level.variance_mm2 + ((spacing * factors) ** 2 - spacing ** 2) / 12.0
    return Level(image, new_keep, variance)


def smooth(level, variance_mm2):
    """Gaussian smoothing with ``variance_mm2`` (mm^2) along I, J, K, normalised over the kept voxels."""
    variance_mm2 = np.maximum(np.asarray(variance_mm2, float), 0.0)
    spacing = np.asarray(level.image.GetSpacing())
    if np.all(variance_mm2 < (0.05 * spacing) ** 2):
        return level
    keep = sitk.Cast(level.keep, sitk.sitkFloat32)

    def blur(image):
        return sitk.DiscreteGaussian(image, [float(v) for v in variance_mm2], 64, 0.01, True)

    weight = blur(keep)
    w = sitk.GetArrayViewFromImage(weight)
    mean = sitk.GetArrayFromImage(blur(level.image * keep)) / np.maximum(w, 1e-6)
    mean[w < 1e-6] = 0.0
    image = sitk.GetImageFromArray(mean.astype(np.float32))
    image.CopyInformation(level.image)
    return Level(image, level.keep, level.variance_mm2 + variance_mm2)


def shrink_to(level, spacing_mm):
    """``level`` block-averaged (masked) to about ``spacing_mm`` (mm) per axis; axes already coarser stay."""
    spacing = np.asarray(level.image.GetSpacing())
    return _masked_shrink(level, np.maximum(1, np.rint(spacing_mm / spacing)).astype(int))


def anti_alias(level, spacing_mm, sigma_fraction=0.5):
    """``level`` smoothed to a Gaussian blur of sigma ``sigma_fraction * spacing_mm`` (mm) on top of its voxels."""
    target = (sigma_fraction * spacing_mm) ** 2 + np.asarray(level.image.GetSpacing()) ** 2 / 12.0
    return smooth(level, target - level.variance_mm2)


def match_blur(fixed, moving):
    """(fixed, moving) smoothed so that along each axis both carry the larger of their blur variances.

    Axes are paired by direction (each fixed axis with the most parallel moving axis), so oblique
    series pair their slice axes as well as they can.
    """
    pairing = np.argmax(np.abs(fixed.direction.T @ moving.direction), axis=1)
    target = np.maximum(fixed.variance_mm2, moving.variance_mm2[pairing])
    inverse = np.argsort(pairing)
    return (smooth(fixed, target - fixed.variance_mm2),
            smooth(moving, target[inverse] - moving.variance_mm2))


def pyramid(base, spacings_mm, sigma_fraction=0.5):
    """{spacing (mm): Level} of ``base``; each level is block-averaged from the next finer one, and all
    but the finest are anti-aliased (Gaussian sigma ``sigma_fraction`` x spacing)."""
    levels, current = {}, base
    finest = min(spacings_mm)
    for spacing in sorted(spacings_mm):
        current = shrink_to(current, spacing)
        levels[spacing] = current if spacing == finest else anti_alias(current, spacing, sigma_fraction)
    return levels


def body_corners(image, body_hu):
    """LPS corners (8, 3) of the box of voxels above ``body_hu`` (the whole image if none), one voxel wider."""
    return _box_corners(image, sitk.GetArrayViewFromImage(image) > body_hu)


def mask_corners(mask):
    """LPS corners (8, 3) of the box of a uint8 mask image's set voxels (the whole image if none), one voxel wider."""
    return _box_corners(mask, sitk.GetArrayViewFromImage(mask) > 0)


def _box_corners(image, selected):
    size = np.asarray(image.GetSize()) - 1
    if selected.any():  # the selected index range (I, J, K), one voxel wider
        lo, hi = mask_box(selected)
        lo, hi = np.maximum(lo - 1, 0), np.minimum(hi + 1, size)
    else:
        lo, hi = 0 * size, size
    idx = np.stack(np.meshgrid(*zip(lo, hi), indexing="ij"), -1).reshape(-1, 3)
    return np.array([image.TransformContinuousIndexToPhysicalPoint([float(v) for v in i]) for i in idx])


def crop(level, corners_lps, margin_mm):
    """``level`` cut to the voxels inside the box of ``corners_lps`` (n, 3) grown by ``margin_mm`` (None if empty)."""
    corners = np.asarray(corners_lps, float)
    grown = np.stack(np.meshgrid(*[(c.min() - margin_mm, c.max() + margin_mm) for c in corners.T], indexing="ij"),
                     -1).reshape(-1, 3)
    image = level.image
    idx = np.array([image.TransformPhysicalPointToContinuousIndex([float(v) for v in p]) for p in grown])
    size = np.asarray(image.GetSize())
    lo = np.clip(np.floor(idx.min(axis=0)).astype(int), 0, size)
    hi = np.clip(np.ceil(idx.max(axis=0)).astype(int) + 1, 0, size)
    if np.any(hi - lo < 2):
        return None
    if np.all(lo == 0) and np.all(hi == size):
        return level
    box = [int(v) for v in hi - lo], [int(v) for v in lo]
    return Level(sitk.RegionOfInterest(image, *box), sitk.RegionOfInterest(level.keep, *box), level.variance_mm2)


def kept_voxels(level, name):
    """Number of voxels of ``level`` that enter the metric; InputError when too few (names ``name``)."""
    n = int(np.count_nonzero(sitk.GetArrayViewFromImage(level.keep)))
    if n < MIN_KEPT_VOXELS:
        raise InputError(f"only {n} voxels of the {name} left for the registration metric after masking "
                         f"metal and the region of interest (>= {MIN_KEPT_VOXELS} needed): enlarge the region "
                         "or raise the metal threshold")
    return n


def level_grid(level):
    """The RAS :class:`~SeedBrachyLib.grid.Grid` of a level."""
    return grid_from_image(level.image)
