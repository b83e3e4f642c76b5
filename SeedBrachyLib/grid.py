"""Image grid geometry: origin + spacing + direction (IJK to RAS), as a Slicer volume.

Conventions
-----------
* Positions are in mm in the RAS world frame.
* ``dims`` is (ni, nj, nk), the number of voxels along the I, J and K axes.
* Arrays sampled on a grid are indexed ``[k, j, i]`` (shape ``(nk, nj, ni)``),
  the layout of ``slicer.util.arrayFromVolume``.
* ``direction`` is a 3x3 matrix whose columns are the unit RAS vectors of the
  I, J and K axes. It need not be axis-aligned; it must be orthonormal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError


@dataclass(frozen=True)
class Grid:
    """A voxel grid: ``ras = origin + direction @ (spacing * ijk)``.

    Attributes:
        origin: RAS position (mm) of the centre of voxel (0, 0, 0).
        spacing: voxel size (mm) along I, J, K.
        direction: 3x3 orthonormal matrix, columns = I, J, K unit vectors in RAS.
        dims: voxel count (ni, nj, nk).
    """

    origin: np.ndarray
    spacing: np.ndarray
    direction: np.ndarray
    dims: tuple

    def __post_init__(self):
        origin = np.asarray(self.origin, dtype=float).reshape(3)
        spacing = np.asarray(self.spacing, dtype=float).reshape(3)
        direction = np.asarray(self.direction, dtype=float).reshape(3, 3)
        try:
            dims = tuple(int(d) for d in self.dims)
        except (TypeError, ValueError) as error:
            raise InputError(f"grid dims {self.dims!r} invalid: need three whole voxel counts >= 1") from error
        if len(dims) != 3 or min(dims) < 1 or any(d != float(x) for d, x in zip(dims, self.dims)):
            raise InputError(f"grid dims {self.dims!r} invalid: need three whole voxel counts >= 1")
        if not np.all(np.isfinite(origin)):
            raise InputError(f"grid origin {origin.tolist()} must be finite (mm)")
        if not np.all(np.isfinite(spacing) & (spacing > 0)):
            raise InputError(f"grid spacing {spacing.tolist()} mm invalid: each must be a finite number > 0")
        if not np.all(np.isfinite(direction)):
            raise InputError(f"grid direction {direction.tolist()} must be finite (unit column vectors)")
        if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-5):
            raise InputError(
                f"grid direction {direction.tolist()} is not orthonormal: "
                "columns must be unit vectors at right angles"
            )
        object.__setattr__(self, "origin", origin)
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "direction", direction)
        object.__setattr__(self, "dims", dims)

    # ----------------------------------------------------------------- shape
    @property
    def shape(self):
        """Array shape ``(nk, nj, ni)`` of data sampled on this grid."""
        return self.dims[::-1]

    @property
    def n_voxels(self):
        """Number of voxels."""
        return int(np.prod(self.dims))

    @property
    def voxel_volume_cc(self):
        """Volume of one voxel in cm^3 (cc)."""
        return float(np.prod(self.spacing)) / 1000.0

    # ------------------------------------------------------------- matrices
    @property
    def ijk_to_ras(self):
        """4x4 homogeneous matrix mapping (i, j, k, 1) to RAS mm."""
        m = np.eye(4)
        m[:3, :3] = self.direction * self.spacing[None, :]
        m[:3, 3] = self.origin
        return m

    @property
    def ras_to_ijk(self):
        """4x4 homogeneous matrix mapping RAS mm to continuous (i, j, k, 1)."""
        return np.linalg.inv(self.ijk_to_ras)

    def to_ras(self, ijk):
        """Continuous voxel indices (..., 3) in (i, j, k) order to RAS mm (..., 3). A sum of per-axis products
        (einsum), not a matrix product: one of this shape runs on BLAS threads, which stall on a loaded machine
        (386k points: up to 290 ms, against 16 ms)."""
        step = self.direction * self.spacing[None, :]  # columns: one voxel along I, J, K (mm RAS)
        return np.einsum("...a,ba->...b", np.asarray(ijk, dtype=float), step) + self.origin

    def to_ijk(self, ras):
        """RAS mm (..., 3) to continuous voxel indices (..., 3) in (i, j, k) order."""
        ras = np.asarray(ras, dtype=float)
        return ((ras - self.origin) @ self.direction) / self.spacing

    def contains(self, ras, margin_voxels=0.5):
        """True for RAS points (..., 3) inside the grid's extent (voxel edges by default)."""
        ijk = self.to_ijk(ras)
        upper = np.asarray(self.dims) - 1 + margin_voxels
        return np.all((ijk >= -margin_voxels) & (ijk <= upper), axis=-1)

    def mask_at(self, mask, ras):
        """Nearest-voxel values of bool ``mask`` ``[k, j, i]`` (on this grid) at RAS points (..., 3) mm;
        False outside the grid."""
        ijk = np.rint(self.to_ijk(ras)).astype(np.int64)
        inside = np.all((ijk >= 0) & (ijk < np.asarray(self.dims)), axis=-1)
        out = np.zeros(inside.shape, dtype=bool)
        i, j, k = ijk[inside].T
        out[inside] = np.asarray(mask)[k, j, i]
        return out

    def axis_coordinates(self):
        """Per-axis offsets (mm) of voxel centres along I, J, K: three 1D arrays."""
        return [np.arange(n) * s for n, s in zip(self.dims, self.spacing)]

    def points(self, k_range=None):
        """RAS mm of voxel centres as an array ``(nk', nj, ni, 3)`` for slices ``k_range``."""
        k0, k1 = k_range if k_range is not None else (0, self.dims[2])
        k, j, i = np.meshgrid(np.arange(k0, k1), np.arange(self.dims[1]),
                              np.arange(self.dims[0]), indexing="ij")
        return self.to_ras(np.stack([i, j, k], axis=-1))

    # ---------------------------------------------------------- constructors
    @classmethod
    def around(cls, center_ras, size_mm, spacing_mm, direction=None):
        """A grid of physical size ``size_mm`` (3,) centred on ``center_ras`` (mm)."""
        spacing = _spacing(spacing_mm)
        size = np.broadcast_to(np.asarray(size_mm, dtype=float), (3,))
        if not np.all(np.isfinite(size) & (size > 0)):
            raise InputError(f"grid size {np.asarray(size_mm).tolist()} mm invalid: each must be finite and > 0")
        dims = np.maximum(1, np.ceil(size / spacing).astype(int))
        direction = np.eye(3) if direction is None else np.asarray(direction, dtype=float)
        half = direction @ (spacing * (dims - 1) / 2.0)
        return cls(np.asarray(center_ras, dtype=float) - half, spacing, direction, tuple(dims))

    @classmethod
    def covering(cls, points_ras, spacing_mm, direction=None, margin_mm=0.0):
        """The smallest grid in ``direction`` (3x3, default axis-aligned) with ``spacing_mm`` voxels whose
        voxel centres span every RAS point (N, 3) plus ``margin_mm`` (mm) on each side."""
        points = np.asarray(points_ras, dtype=float).reshape(-1, 3)
        if len(points) == 0:
            raise InputError("no points to cover: a dose grid needs at least a target or a seed")
        if not np.all(np.isfinite(points)):
            bad = points[~np.isfinite(points).all(axis=1)][0]
            raise InputError(f"point {bad.tolist()} to cover must be finite (mm)")
        if not (np.isfinite(margin_mm) and margin_mm >= 0):
            raise InputError(f"grid margin {margin_mm!r} mm invalid: must be finite and >= 0")
        direction = np.eye(3) if direction is None else np.asarray(direction, dtype=float)
        spacing = _spacing(spacing_mm)
        local = points @ direction  # coordinates along the grid axes (mm)
        lo, hi = local.min(axis=0) - margin_mm, local.max(axis=0) + margin_mm
        dims = np.floor((hi - lo) / spacing + 1e-9).astype(int) + 2
        size = (dims - 1) * spacing
        origin = direction @ ((lo + hi) / 2.0 - size / 2.0)
        return cls(origin, spacing, direction, tuple(dims))

    def with_spacing(self, spacing_mm):
        """A grid covering the same box with another spacing (mm), same direction."""
        spacing = np.broadcast_to(np.asarray(spacing_mm, dtype=float), (3,))
        size = np.asarray(self.dims) * self.spacing
        center = self.to_ras((np.asarray(self.dims) - 1) / 2.0)
        return Grid.around(center, size, spacing, self.direction)

    def describe(self):
        """Short human-readable summary with units."""
        sp = "x".join(f"{s:g}" for s in self.spacing)
        oblique = "" if np.allclose(np.abs(self.direction), np.eye(3)) else ", oblique"
        return f"{self.dims[0]}x{self.dims[1]}x{self.dims[2]} voxels of {sp} mm{oblique}"


def _spacing(spacing_mm):
    """``spacing_mm`` (a number or 3) as 3 voxel sizes (mm), each finite and > 0, else InputError."""
    spacing = np.broadcast_to(np.asarray(spacing_mm, dtype=float), (3,))
    if not np.all(np.isfinite(spacing) & (spacing > 0)):
        raise InputError(f"grid spacing {np.asarray(spacing_mm).tolist()} mm invalid: each must be finite and > 0")
    return spacing
