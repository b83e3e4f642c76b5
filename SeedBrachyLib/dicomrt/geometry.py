"""Patient coordinates at the DICOM boundary: LPS in the files, RAS everywhere else.

DICOM positions and direction cosines are LPS; SeedBrachy's are RAS (as Slicer). The flip
``x_lps = diag(-1, -1, 1) x_ras`` (:data:`~SeedBrachyLib.itk_image.RAS_TO_LPS`) is applied here only.

A stack of image planes (CT slices, RT Dose frames) maps to a :class:`~SeedBrachyLib.grid.Grid`:
I runs along a row (Image Orientation first triple, Pixel Spacing second value), J down the columns
(second triple, first Pixel Spacing value), K along the slice normal ``row x column``; the pixel array
of one plane is ``[j, i]`` (rows, columns), so the volume is ``[k, j, i]`` as everywhere in SeedBrachy.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..grid import Grid
from ..itk_image import RAS_TO_LPS
from .dataset import ds_number

#: Largest deviation from orthonormal accepted in Image Orientation (Patient) direction cosines.
ORIENTATION_TOLERANCE = 1e-4


def ras_to_lps(points):
    """RAS mm (..., 3) to LPS mm (..., 3) (also for directions)."""
    return np.asarray(points, dtype=float) @ RAS_TO_LPS


def lps_to_ras(points):
    """LPS mm (..., 3) to RAS mm (..., 3) (the same flip)."""
    return np.asarray(points, dtype=float) @ RAS_TO_LPS


def image_plane(grid):
    """(Image Orientation (Patient) 6 LPS cosines, Pixel Spacing [row, column] mm, normal LPS) of ``grid``'s slices."""
    d = RAS_TO_LPS @ grid.direction
    return (list(d[:, 0]) + list(d[:, 1]), [float(grid.spacing[1]), float(grid.spacing[0])],
            np.cross(d[:, 0], d[:, 1]))


def set_image_plane(ds, grid, position_lps, bits, signed):
    """Write the Image Plane and Image Pixel attributes (but Pixel Data) of ``grid``'s slices into ``ds``.

    ``position_lps``: Image Position (Patient) of the (first) plane; ``bits``: 16 or 32 allocated and stored.
    """
    iop, pixel_spacing, _ = image_plane(grid)
    ds.ImagePositionPatient = [ds_number(x) for x in position_lps]
    ds.ImageOrientationPatient = [ds_number(x) for x in iop]
    ds.PixelSpacing = [ds_number(x) for x in pixel_spacing]
    ds.SliceThickness = ds_number(grid.spacing[2])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = grid.dims[1], grid.dims[0]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, int(signed)


def slice_positions_lps(grid):
    """(nk, 3) LPS mm of the first voxel (i = j = 0) of each slice k: Image Position (Patient)."""
    k = np.arange(grid.dims[2], dtype=float)
    return ras_to_lps(grid.to_ras(np.stack([np.zeros_like(k), np.zeros_like(k), k], axis=1)))


def orientation(iop, where):
    """Row and column unit vectors and slice normal (LPS) from an Image Orientation (Patient) value."""
    iop = np.asarray(iop, dtype=float)
    row, col = iop[:3], iop[3:]
    if not (abs(np.linalg.norm(row) - 1) < ORIENTATION_TOLERANCE and abs(np.linalg.norm(col) - 1)
            < ORIENTATION_TOLERANCE and abs(row @ col) < ORIENTATION_TOLERANCE):
        raise InputError(f"{where}: ImageOrientationPatient {iop.tolist()} invalid: rows and columns must be unit "
                         "vectors at right angles")
    row, col = row / np.linalg.norm(row), col / np.linalg.norm(col)
    col = col - (col @ row) * row
    col /= np.linalg.norm(col)
    return row, col, np.cross(row, col)


def grid_from_planes(iop, pixel_spacing, first_position_lps, slice_spacing, dims, where):
    """The RAS Grid of ``dims`` = (columns, rows, planes) planes ``slice_spacing`` mm apart along the normal."""
    row, col, normal = orientation(iop, where)
    if not all(s > 0 for s in pixel_spacing) or not slice_spacing > 0:
        raise InputError(f"{where}: pixel spacing {list(pixel_spacing)} and slice spacing {slice_spacing!r} mm "
                         "must be > 0")
    direction_lps = np.stack([row, col, normal], axis=1)
    return Grid(lps_to_ras(first_position_lps), [pixel_spacing[1], pixel_spacing[0], slice_spacing],
                RAS_TO_LPS @ direction_lps, dims)
