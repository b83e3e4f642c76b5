"""The one dose-grid policy, used by the module, the command line, the demo and planning.

The dose grid takes the CT's direction and the stated spacing (setting ``doseSpacingMm``) and covers

* every seed and every target voxel (GTV, CTV), and
* every voxel of every evaluated structure where the plan's dose can exceed ``doseGridThresholdPct``
  (default 1 %) of the prescription.

"Can exceed" is decided with the plan itself, not with a guessed margin: the TG-43 dose of the seeds is
evaluated at the structure's voxel centres, on a sub-lattice of every s-th voxel along each axis (s
chosen so that at most about :data:`SCREEN_POINTS` points are evaluated per structure); the box of
the points that pass is widened by s voxels, so no voxel between them is lost. A structure whose
dose matters nowhere contributes nothing. The grid is limited to :data:`MAX_GRID_VOXELS` voxels;
beyond that it is refused with the size it would need.

Seed-based DVH metrics do not depend on this grid: they are evaluated with TG-43 at each structure's
own sample points (:mod:`SeedBrachyLib.dvh`), so a structure is always evaluated whole. The grid is
the dose *volume* for display, isodose lines and export; a dose grid given from elsewhere is evaluated
as it is, and :func:`coverage` says which structures it does not cover.
"""

from __future__ import annotations

import math

import numpy as np

from .dose import dose_at_points
from .errors import InputError
from .grid import Grid
from .seeds import seed_arrays

DEFAULT_SPACING_MM = 1.0
DEFAULT_THRESHOLD_PCT = 1.0
SCREEN_POINTS = 20000
MAX_GRID_VOXELS = 400 ** 3


def _mask_points(mask, grid, stride=1):
    """RAS mm (N, 3) of the voxel centres of bool ``mask`` on ``grid``, every ``stride``-th voxel per axis."""
    k, j, i = np.nonzero(np.asarray(mask, dtype=bool)[::stride, ::stride, ::stride])
    return grid.to_ras(np.stack([i, j, k], axis=-1) * stride)


def relevant_box(mask, grid, seeds, model, prescription_gy, threshold_pct=None):
    """Corners (2, 3 mm, in ``grid``'s axes as RAS points) of the part of a structure where the plan's dose
    (TG-43 line source, Gy) exceeds ``threshold_pct`` % of the prescription; None if nowhere."""
    pct = DEFAULT_THRESHOLD_PCT if threshold_pct is None else float(threshold_pct)
    n = int(np.count_nonzero(mask))
    if n == 0 or not seeds:
        return None
    stride = max(1, int(np.ceil((n / SCREEN_POINTS) ** (1.0 / 3.0))))
    points = _mask_points(mask, grid, stride)
    passing = points[dose_at_points(points, seeds, model) > 0.01 * pct * prescription_gy]
    if len(passing) == 0:
        return None
    local = passing @ grid.direction
    pad = stride * grid.spacing
    return np.array([local.min(axis=0) - pad, local.max(axis=0) + pad]) @ grid.direction.T


def policy_grid(reference_grid, seeds, model, prescription_gy, targets, structures=(), spacing_mm=None,
                threshold_pct=None):
    """The dose grid of the policy (module docstring).

    Args:
        reference_grid: the CT grid (its direction is taken).
        seeds: the plan's seeds (mm RAS, S_K in U).
        model: TG-43 :class:`~SeedBrachyLib.sources.SourceModel`.
        prescription_gy: prescription (Gy).
        targets: (bool mask ``[k, j, i]``, Grid) of each target (always covered whole).
        structures: (bool mask, Grid) of the other evaluated structures (covered where their dose matters).
        spacing_mm: dose voxel size (mm); default :data:`DEFAULT_SPACING_MM` (setting ``doseSpacingMm``).
        threshold_pct: % of Rx; default :data:`DEFAULT_THRESHOLD_PCT` (setting ``doseGridThresholdPct``).

    Returns:
        :class:`~SeedBrachyLib.grid.Grid` in the CT's direction.
    """
    spacing = DEFAULT_SPACING_MM if spacing_mm is None else float(spacing_mm)
    if not (math.isfinite(spacing) and spacing > 0):
        raise InputError(f"dose grid spacing {spacing_mm!r} mm invalid: need a finite value > 0 mm")
    cover = [_mask_points(mask, grid) for mask, grid in targets]
    if seeds:
        cover.append(seed_arrays(seeds)[0])
    for mask, grid in structures:
        box = relevant_box(mask, grid, seeds, model, prescription_gy, threshold_pct)
        if box is not None:
            cover.append(box)
    points = np.vstack(cover) if cover else np.zeros((0, 3))
    if len(points) == 0:
        raise InputError("the dose grid needs a target or seeds to cover: both are empty")
    # half a voxel beyond the outermost centres, so the targets' voxel corners are inside
    grid = Grid.covering(points, spacing, reference_grid.direction, margin_mm=0.5 * spacing)
    if grid.n_voxels > MAX_GRID_VOXELS:
        raise InputError(f"the dose grid the plan needs ({grid.describe()}, {grid.n_voxels:,} voxels) exceeds "
                         f"{MAX_GRID_VOXELS:,} voxels: use a coarser doseSpacingMm or a higher "
                         "doseGridThresholdPct")
    return grid


def coverage(grid, name, points_ras):
    """Fraction (0-1) of a structure's voxel centres (N, 3 mm RAS) inside ``grid``, and a note if not whole.

    Returns (fraction, note or ""), e.g. (0.4, "Skin: 40% inside the dose grid").
    """
    points = np.asarray(points_ras, dtype=float).reshape(-1, 3)
    if len(points) == 0:
        return 0.0, f"{name}: empty"
    fraction = float(np.mean(grid.contains(points)))
    note = "" if fraction >= 0.999 else f"{name}: only {100 * fraction:.1f}% lies inside the dose grid"
    return fraction, note
