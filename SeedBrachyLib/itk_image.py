"""SimpleITK images <-> numpy arrays on a :class:`~SeedBrachyLib.grid.Grid` (RAS), and RAS <-> LPS.

SimpleITK (ITK) works in the LPS world frame; SeedBrachy works in RAS, like Slicer.
The two differ by the flip ``F = diag(-1, -1, 1)``: ``x_lps = F @ x_ras``. This module
is the only place where that flip is applied to images and transforms:

* image origin: ``origin_lps = F @ origin_ras``; direction: ``direction_lps = F @ direction_ras``
  (columns stay the I, J, K axes); spacing and the voxel array ``[k, j, i]`` are unchanged,
  so the same voxel sits at the same physical point in both frames.
* a 4x4 point transform ``M`` (RAS -> RAS) is ``F4 @ M @ F4`` in LPS, and back the same way.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .grid import Grid

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])
RAS_TO_LPS_4 = np.diag([-1.0, -1.0, 1.0, 1.0])


def grid_to_lps(grid):
    """(origin, spacing, direction) of ``grid`` in SimpleITK's LPS convention (mm; 3x3 direction)."""
    return RAS_TO_LPS @ grid.origin, grid.spacing.copy(), RAS_TO_LPS @ grid.direction


def grid_from_image(image):
    """The RAS :class:`Grid` of a 3D SimpleITK image (origin in mm, direction columns I, J, K)."""
    if image.GetDimension() != 3:
        raise InputError(f"image dimension {image.GetDimension()} invalid: a 3D image is needed")
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    return Grid(RAS_TO_LPS @ np.asarray(image.GetOrigin(), dtype=float), image.GetSpacing(),
                RAS_TO_LPS @ direction, image.GetSize())


def to_sitk(array, grid):
    """A SimpleITK image (LPS geometry) of ``array`` indexed [k, j, i] on the RAS ``grid``.

    Boolean arrays become sitkUInt8 (0/1); other dtypes keep their pixel type.
    """
    array = np.asarray(array)
    if array.shape != tuple(grid.shape):
        raise InputError(f"array shape {array.shape} does not match the grid shape {tuple(grid.shape)} "
                         "(an array on a grid is indexed [k, j, i])")
    if array.dtype == bool:
        array = array.astype(np.uint8)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    origin, spacing, direction = grid_to_lps(grid)
    image.SetOrigin(tuple(origin))
    image.SetSpacing(tuple(spacing))
    image.SetDirection(tuple(direction.ravel()))
    return image


def from_sitk(image):
    """(array [k, j, i], RAS Grid) of a 3D SimpleITK image; the array is a copy."""
    return sitk.GetArrayFromImage(image), grid_from_image(image)


def matrix_ras_to_lps(matrix_ras):
    """A 4x4 point transform acting in RAS, expressed in LPS (same physical mapping)."""
    return RAS_TO_LPS_4 @ np.asarray(matrix_ras, dtype=float) @ RAS_TO_LPS_4


def matrix_lps_to_ras(matrix_lps):
    """A 4x4 point transform acting in LPS, expressed in RAS (same physical mapping)."""
    return RAS_TO_LPS_4 @ np.asarray(matrix_lps, dtype=float) @ RAS_TO_LPS_4


def transform_to_matrix_lps(transform):
    """The 4x4 LPS matrix of a SimpleITK linear transform (Euler, affine, ... or a composite of them).

    ITK's ``TransformPoint`` maps ``p -> A (p - c) + c + t``; the matrix is that map.
    """
    transform = transform.Downcast() if hasattr(transform, "Downcast") else transform
    if isinstance(transform, sitk.CompositeTransform):
        matrix = np.eye(4)
        for n in range(transform.GetNumberOfTransforms()):
            # a composite applies its last-added transform first
            matrix = matrix @ transform_to_matrix_lps(transform.GetNthTransform(n))
        return matrix
    if isinstance(transform, sitk.TranslationTransform):
        matrix = np.eye(4)
        matrix[:3, 3] = transform.GetOffset()
        return matrix
    if not hasattr(transform, "GetMatrix"):
        raise InputError(f"transform {transform.GetName()} is not linear: only linear transforms "
                         "(translation, Euler, similarity, affine) have a 4x4 matrix")
    a = np.asarray(transform.GetMatrix(), dtype=float).reshape(3, 3)
    c = np.asarray(transform.GetCenter(), dtype=float)
    t = np.asarray(transform.GetTranslation(), dtype=float)
    matrix = np.eye(4)
    matrix[:3, :3] = a
    matrix[:3, 3] = t + c - a @ c
    return matrix


def affine_from_matrix_lps(matrix_lps):
    """A SimpleITK AffineTransform (centre 0) that maps LPS points by the 4x4 ``matrix_lps``."""
    m = np.asarray(matrix_lps, dtype=float)
    if m.shape != (4, 4) or not np.allclose(m[3], [0, 0, 0, 1]):
        raise InputError(f"matrix {m.tolist()} invalid: a 4x4 affine with last row (0, 0, 0, 1) is needed")
    affine = sitk.AffineTransform(3)
    affine.SetMatrix(tuple(m[:3, :3].ravel()))
    affine.SetTranslation(tuple(m[:3, 3]))
    return affine


def resample(array, grid, target_grid, matrix_target_to_source=None, interpolator="linear", default=0):
    """Resample ``array`` on ``grid`` onto ``target_grid`` (both RAS); returns an array [k, j, i].

    Args:
        array: values indexed [k, j, i] on ``grid``.
        grid, target_grid: source and target RAS grids (mm).
        matrix_target_to_source: optional 4x4 RAS matrix mapping a point of the target frame to the
            point of the source frame sampled there (the ITK resampling convention); identity if None.
        interpolator: "linear", "nearest" (labels, masks) or "bspline".
        default: value outside the source grid.
    Boolean input gives a boolean output: interpolated as 0/1 values, then thresholded at 0.5.
    """
    methods = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor, "bspline": sitk.sitkBSpline}
    if interpolator not in methods:
        raise InputError(f"interpolator {interpolator!r} invalid: use one of {sorted(methods)}")
    is_bool = np.asarray(array).dtype == bool
    source = to_sitk(np.asarray(array, dtype=np.float32) if is_bool else array, grid)
    reference = sitk.Image([int(d) for d in target_grid.dims], source.GetPixelID())
    origin, spacing, direction = grid_to_lps(target_grid)
    reference.SetOrigin(tuple(origin))
    reference.SetSpacing(tuple(spacing))
    reference.SetDirection(tuple(direction.ravel()))
    matrix = np.eye(4) if matrix_target_to_source is None else matrix_target_to_source
    transform = affine_from_matrix_lps(matrix_ras_to_lps(matrix))
    out = sitk.GetArrayFromImage(sitk.Resample(source, reference, transform, methods[interpolator],
                                               float(default), source.GetPixelID()))
    return out >= 0.5 if is_bool else out
