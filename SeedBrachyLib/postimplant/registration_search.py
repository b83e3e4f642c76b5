"""Global start search for rigid registration: sampled rotations x every translation (masked correlation by FFT).

A local optimiser only converges from starts within about 10-15 degrees and a few centimetres of the
answer. This search gives it starts that cover real set-ups: for each rotation of a sampled set (all
rotation vectors on a grid of ``step_deg`` within ``max_rotation_deg``, plus the centres of the grid's
cells), the normalised cross-correlation of the two images is computed at every translation at once
(Padfield's masked NCC, with FFTs), so any shift and any partial overlap along the scan axis is
searched. Every rotation is first ranked on grids twice as coarse; the best few are searched at full
resolution and their best distinct peaks become the starts. HU are clipped to ``SEARCH_HU`` so that
bone weighs as much as the lungs' edges (the S position of a short scan is fixed by the vertebrae).

Conventions: images are SimpleITK (LPS, mm); a start is a 4x4 LPS matrix mapping a point of the
fixed image to the moving image (ITK's convention), ``x_moving = R (x_fixed - c) + c + t``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import fft, ndimage
from scipy.spatial.transform import Rotation

from ..errors import InputError
from .registration_levels import body_corners

SEARCH_HU = (-300.0, 1200.0)


@dataclass(frozen=True)
class Start:
    """A start of the local optimiser.

    Attributes:
        matrix: 4x4 LPS matrix, fixed -> moving (mm).
        center: rotation centre (LPS mm) of the fixed image used by the search.
        score: masked normalised cross-correlation at that start (-1 to 1).
    """

    matrix: np.ndarray
    center: np.ndarray
    score: float


def rotation_samples(max_rotation_deg, step_deg):
    """Rotation matrices whose rotation vectors (deg) lie on a body-centred cubic grid of ``step_deg`` within
    a ball of ``max_rotation_deg`` (plus a half step, so the ball's edge is covered); the identity first."""
    if not 0 <= max_rotation_deg <= 90:
        raise InputError(f"search rotation {max_rotation_deg!r} deg invalid: must be in [0, 90]")
    if not step_deg > 0:
        raise InputError(f"rotation step {step_deg!r} deg invalid: must be > 0")
    n = int(np.floor(max_rotation_deg / step_deg + 0.5))
    axis = np.arange(-n, n + 1) * step_deg
    cube = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    half = axis[:-1] + step_deg / 2
    centres = np.stack(np.meshgrid(half, half, half, indexing="ij"), -1).reshape(-1, 3)
    vectors = np.concatenate([cube, centres]) if len(half) else cube
    vectors = vectors[np.linalg.norm(vectors, axis=1) <= max_rotation_deg + step_deg / 2 + 1e-9]
    vectors = vectors[np.argsort(np.linalg.norm(vectors, axis=1), kind="stable")]
    return Rotation.from_rotvec(np.radians(vectors)).as_matrix()


def _axis_aligned(image, keep, corners, spacing_mm, transform=None):
    """(values, mask) arrays [z, y, x] of ``image`` resampled on the axis-aligned LPS box around ``corners``."""
    lo = corners.min(axis=0)
    size = np.maximum(1, np.ceil((corners.max(axis=0) - lo) / spacing_mm).astype(int) + 1)
    reference = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    reference.SetOrigin(tuple(float(v) for v in lo))
    reference.SetSpacing((float(spacing_mm),) * 3)
    transform = transform or sitk.Transform(3, sitk.sitkIdentity)
    values = sitk.GetArrayFromImage(sitk.Resample(image, reference, transform, sitk.sitkLinear, 0.0))
    mask = sitk.GetArrayFromImage(sitk.Resample(sitk.Cast(keep, sitk.sitkFloat32), reference, transform,
                                                sitk.sitkLinear, 0.0)) >= 0.5
    return values.astype(np.float32), mask.astype(np.float32), lo


def _centred(values, mask):
    """Values (HU clipped to SEARCH_HU, / 1000) minus their masked mean, zero outside the mask (accurate FFT sums)."""
    values = np.clip(values, *SEARCH_HU) / np.float32(1000.0)
    mean = values[mask > 0].mean() if mask.any() else 0.0
    return (values - mean) * mask


class _Correlator:
    """Masked NCC of a fixed moving-side array against many fixed-side arrays, at every integer shift."""

    def __init__(self, values, mask, shape):
        self.shape = shape
        v = _centred(values, mask)
        self.count = float(mask.sum())
        self.spectra = [fft.rfftn(a, shape, workers=-1) for a in (mask, v, v * v)]

    def ncc(self, values, mask):
        """(NCC, overlap count) for every shift n: fixed index i against moving index i + n (circular)."""
        v = _centred(values, mask)
        fa, fv, fvv = (np.conj(fft.rfftn(a, self.shape, workers=-1)) for a in (mask, v, v * v))
        ma, mv, mvv = self.spectra

        def corr(a, b):
            return fft.irfftn(a * b, self.shape, workers=-1)

        n = corr(ma, fa)
        sm, sf = corr(mv, fa), corr(ma, fv)
        smm, sff, smf = corr(mvv, fa), corr(ma, fvv), corr(mv, fv)
        n_safe = np.maximum(n, 1.0)
        cov = smf - sm * sf / n_safe
        var = (smm - sm * sm / n_safe) * (sff - sf * sf / n_safe)
        out = np.where(var > 1e-6 * n_safe ** 2, cov / np.sqrt(np.maximum(var, 1e-12)), 0.0)
        return out, n


def _candidates(fixed, fixed_keep, moving, moving_keep, fixed_corners, moving_corners, spacing_mm, rotations,
                min_overlap, peaks_per_rotation, separation_mm):
    """Starts (unsorted) at the ``peaks_per_rotation`` best local NCC maxima of each rotation (``spacing_mm`` grids)."""
    moving_values, moving_mask, moving_lo = _axis_aligned(moving, moving_keep, moving_corners, spacing_mm)
    center = fixed_corners.mean(axis=0)
    radius = np.max(np.linalg.norm(fixed_corners - center, axis=1))
    # every rotated fixed image fits a cube of the bounding sphere's size: one FFT shape for all rotations
    sphere = center + np.array([[-radius] * 3, [radius] * 3])
    size_f = np.ceil(2 * radius / spacing_mm).astype(int) + 1
    shape = [fft.next_fast_len(int(m + size_f), real=True) for m in moving_values.shape]
    correlator = _Correlator(moving_values, moving_mask, shape)
    window = max(3, int(2 * separation_mm / spacing_mm) | 1)
    candidates = []
    for rot in rotations:
        # the fixed image rotated by rot about its centre: y = rot (x - c) + c
        inverse = sitk.AffineTransform(3)
        inverse.SetCenter(tuple(float(v) for v in center))
        inverse.SetMatrix(tuple(rot.T.ravel()))
        values, mask, lo = _axis_aligned(fixed, fixed_keep, sphere, spacing_mm, inverse)
        need = min(float(mask.sum()), correlator.count)
        ncc, count = correlator.ncc(values, mask)
        ncc = np.where(count >= min_overlap * need, ncc, -1.0)
        peaks = ncc == ndimage.maximum_filter(ncc, size=window, mode="wrap")
        flat = np.flatnonzero(peaks & (ncc > -1.0))
        for index in flat[np.argsort(ncc.ravel()[flat])[::-1][:peaks_per_rotation]]:
            shift = np.array(np.unravel_index(index, ncc.shape))
            shift = np.where(shift >= moving_values.shape, shift - np.array(ncc.shape), shift)
            # fixed voxel z,y,x of the rotated grid meets moving voxel z,y,x + shift
            t = moving_lo + shift[::-1] * spacing_mm - lo
            matrix = np.eye(4)
            matrix[:3, :3] = rot
            matrix[:3, 3] = center - rot @ center + t
            candidates.append(Start(matrix, center, float(ncc.ravel()[index])))
    return candidates


def search(fixed, fixed_keep, moving, moving_keep, spacing_mm=8.0, max_rotation_deg=30.0, step_deg=20.0,
           min_overlap=0.5, n_starts=5, n_rotations=6, peaks_per_rotation=3, separation_mm=12.0,
           max_voxels=40 ** 3, body_hu=-500.0):
    """The ``n_starts`` best distinct starts (list of :class:`Start`, best first).

    Two passes: every sampled rotation at twice the voxel size (its best peak ranks it), then the
    ``n_rotations`` best rotations at ``spacing_mm``, ``peaks_per_rotation`` local maxima each.

    Args:
        fixed, moving: SimpleITK float images (LPS, mm) at about ``spacing_mm`` resolution or coarser;
            ``fixed_keep``, ``moving_keep``: their uint8 metric masks.
        spacing_mm: voxel size (mm) of the search grids; coarser when the fixed image's body would need
            more than ``max_voxels`` voxels (its rotations fill a cube around the body's bounding sphere).
        max_rotation_deg, step_deg: sampled rotations (see :func:`rotation_samples`).
        min_overlap: a shift counts only where this fraction of the smaller image's kept voxels
            overlaps the other image.
        separation_mm: peaks of one rotation closer than this (mm) are one peak; starts are distinct
            when they move the fixed image's body differently by more than this.
        body_hu: the searched boxes are those of the voxels above this (HU): the bodies.
    """
    fixed_corners, moving_corners = body_corners(fixed, body_hu), body_corners(moving, body_hu)
    center = fixed_corners.mean(axis=0)
    radius = np.max(np.linalg.norm(fixed_corners - center, axis=1))
    spacing_mm = max(spacing_mm, 2 * radius / max_voxels ** (1 / 3))
    args = (fixed, fixed_keep, moving, moving_keep, fixed_corners, moving_corners)
    rotations = rotation_samples(max_rotation_deg, step_deg)
    ranked = _candidates(*args, 2 * spacing_mm, rotations, min_overlap, 1, separation_mm)
    ranked.sort(key=lambda s: -s.score)
    best_rotations = [s.matrix[:3, :3] for s in ranked[:n_rotations]]
    candidates = _candidates(*args, spacing_mm, best_rotations, min_overlap, peaks_per_rotation, separation_mm)
    candidates.sort(key=lambda s: -s.score)
    chosen = []
    for start in candidates:
        if all(_distance_mm(start.matrix, other.matrix, center, radius) > separation_mm for other in chosen):
            chosen.append(start)
        if len(chosen) == n_starts:
            break
    return chosen


def _distance_mm(a, b, center, radius):
    """Largest displacement (mm) between two 4x4 maps over points at ``radius / 2`` around ``center``."""
    offsets = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1], [0, 0, 0]])
    points = center + 0.5 * radius * offsets
    return float(np.max(np.linalg.norm((points @ a[:3, :3].T + a[:3, 3]) - (points @ b[:3, :3].T + b[:3, 3]),
                                       axis=1)))
