"""Axial, coronal and sagittal planes through a target, sampled from volumes on any grid (mm RAS).

A :class:`SlicePlane` is a patient-frame plane (not a grid slice): it is sampled from each
volume through that volume's own IJK-to-RAS geometry, so oblique and anisotropic grids show
in the right place. Screen axes follow the radiological convention: axial and coronal views
have the patient's right on the left of the image; the sagittal view has anterior on the left;
up is anterior (axial) or superior (coronal, sagittal).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import InputError

#: plane name -> (screen-right unit vector, screen-up unit vector) in RAS, and the letters on the
#: left, right, bottom and top edges of the image.
VIEWS = {
    "axial": (np.array([-1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]), ("R", "L", "P", "A")),
    "coronal": (np.array([-1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0]), ("R", "L", "I", "S")),
    "sagittal": (np.array([0.0, -1.0, 0.0]), np.array([0.0, 0.0, 1.0]), ("A", "P", "I", "S")),
}


@dataclass(frozen=True)
class SlicePlane:
    """A square patient-frame plane: pixel (row r, column c) is at ``center + u[c] * right + v[r] * up`` (mm RAS).

    Attributes:
        name: "axial", "coronal" or "sagittal".
        center: RAS (mm) of the plane centre.
        right, up: unit RAS vectors of the screen axes; ``normal = right x up``.
        u, v: pixel-centre offsets (mm) along ``right`` (columns) and ``up`` (rows, increasing upwards).
        edges: letters of the patient directions at the left, right, bottom and top image edges.
    """

    name: str
    center: np.ndarray
    right: np.ndarray
    up: np.ndarray
    u: np.ndarray
    v: np.ndarray
    edges: tuple

    @property
    def normal(self):
        return np.cross(self.right, self.up)

    def points(self):
        """RAS (mm) of the pixel centres, shape (len(v), len(u), 3)."""
        return (self.center + self.u[None, :, None] * self.right + self.v[:, None, None] * self.up)

    def project(self, ras):
        """(u, v, distance from the plane) in mm for RAS points (n, 3)."""
        d = np.asarray(ras, dtype=float).reshape(-1, 3) - self.center
        return d @ self.right, d @ self.up, d @ self.normal


def plane_through(name, center_ras, half_size_mm, pixel_mm=0.5):
    """The ``name`` plane ("axial", "coronal", "sagittal") centred on ``center_ras`` (mm), 2 x ``half_size_mm`` wide."""
    if name not in VIEWS:
        raise InputError(f"slice plane {name!r} unknown: use one of {', '.join(VIEWS)}")
    if not (np.isfinite(half_size_mm) and half_size_mm > 0 and pixel_mm > 0):
        raise InputError(f"slice size {half_size_mm!r} mm / pixel {pixel_mm!r} mm invalid: both must be > 0")
    right, up, edges = VIEWS[name]
    n = int(np.ceil(2 * half_size_mm / pixel_mm))
    offsets = (np.arange(n) - (n - 1) / 2.0) * pixel_mm
    return SlicePlane(name, np.asarray(center_ras, dtype=float).reshape(3), right, up, offsets, offsets, edges)


def sample(array, grid, plane, order=1, fill=np.nan):
    """Values of ``array`` ([k, j, i] on ``grid``) at the plane's pixels (rows bottom to top); ``fill`` outside."""
    values = np.asarray(array)
    if values.shape != tuple(grid.shape):
        raise InputError(f"array shape {values.shape} does not match its grid {tuple(grid.shape)} ([k, j, i])")
    ijk = grid.to_ijk(plane.points())
    inside = np.all((ijk >= -0.5) & (ijk <= np.asarray(grid.dims) - 0.5), axis=-1)
    out = ndimage.map_coordinates(values.astype(np.float32, copy=False), ijk[..., ::-1].reshape(-1, 3).T,
                                  order=order, mode="nearest").reshape(inside.shape)
    return np.where(inside, out, fill)


def target_view(weights, grid, margin_mm=20.0, min_half_mm=25.0):
    """Centre (RAS mm, volume-weighted centroid) and half size (mm) of a view showing the target plus ``margin_mm``.

    ``weights`` is the target's voxel fraction (or mask) ``[k, j, i]`` on ``grid``.
    """
    w = np.asarray(weights, dtype=float)
    idx = np.argwhere(w > 0)
    if idx.size == 0:
        raise InputError("target is empty: cannot place the report's slices")
    ras = grid.to_ras(idx[:, ::-1])
    center = (ras * w[tuple(idx.T)][:, None]).sum(axis=0) / w[tuple(idx.T)].sum()
    half = float(np.abs(ras - center).max()) + float(grid.spacing.max()) / 2 + margin_mm
    return center, max(half, min_half_mm)


def seeds_near(seeds, plane, within_mm):
    """Seeds whose centre lies within ``within_mm`` (mm) of the plane: list of (u, v, axis_u, axis_v, seed)."""
    if not seeds:
        return []
    pos = np.array([s.position for s in seeds])
    u, v, d = plane.project(pos)
    axes = np.array([s.axis for s in seeds])
    au, av = axes @ plane.right, axes @ plane.up
    return [(u[i], v[i], au[i], av[i], seeds[i]) for i in np.flatnonzero(np.abs(d) <= within_mm)]
