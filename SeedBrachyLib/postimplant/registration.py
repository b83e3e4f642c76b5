"""Registration of the post-implant CT to the pre-plan CT (SimpleITK), with the seeds' metal masked out.

Direction convention (all matrices 4x4, mm, RAS):

* ``post_to_pre`` maps a point given in the post-implant CT's frame to the same anatomical point
  in the pre-plan CT's frame. Detected seeds are brought onto the pre-plan with it, and it is the
  matrix-to-parent of a Slicer transform node that, applied to the post-implant CT (child), lays it
  over the pre-plan CT.
* ``pre_to_post`` is its inverse: pre-plan frame -> post-implant frame. It is also the resampling
  transform of the post-implant CT onto the pre-plan grid (ITK's fixed -> moving convention).

ITK registers the pre-plan CT (fixed) and the post-implant CT (moving) in LPS; its transform maps
fixed points to moving points (``pre_to_post`` in LPS). The LPS -> RAS conversion is done once, in
:mod:`SeedBrachyLib.itk_image`.

The metric ignores voxels near seeds: voxels above ``metal_threshold_hu`` (or balls around given
seed positions), dilated by ``metal_margin_mm``, are left out of both images' metric masks, so
streaks next to the seeds do not pull the alignment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..errors import Cancelled, InputError
from ..grid import Grid
from ..itk_image import matrix_lps_to_ras, resample, to_sitk, transform_to_matrix_lps
from ..progress import report
from ..seeds import Seed
from ..structures import expand_margin

KINDS = ("rigid", "affine")
METRICS = ("mattes", "meansquares")
INITIALIZERS = ("geometry", "moments")


@dataclass(frozen=True)
class RegistrationResult:
    """A post-implant -> pre-plan registration.

    Attributes:
        post_to_pre: 4x4 RAS matrix, post-implant frame -> pre-plan frame (mm).
        kind: "rigid" (rotation + translation) or "affine".
        metric: "mattes" (Mattes mutual information) or "meansquares".
        metric_value: final metric value (lower is better for both).
        iterations: optimiser iterations at the last level.
        masked_voxels: post-implant CT voxels left out of the metric as seed metal / streaks.
        stop_condition: optimiser's stop reason.
    """

    post_to_pre: np.ndarray
    kind: str
    metric: str
    metric_value: float
    iterations: int
    masked_voxels: int
    stop_condition: str = ""

    @property
    def pre_to_post(self):
        """4x4 RAS matrix, pre-plan frame -> post-implant frame (inverse of ``post_to_pre``)."""
        return np.linalg.inv(self.post_to_pre)

    def rotation_deg(self):
        """Rotation angle (degrees) of the linear part (its closest rotation, for an affine)."""
        u, _, vt = np.linalg.svd(self.post_to_pre[:3, :3])
        rot = u @ vt
        return float(np.degrees(np.arccos(np.clip((np.trace(rot) - 1.0) / 2.0, -1.0, 1.0))))

    def describe(self):
        """One line with units: kind, metric, rotation and translation."""
        t = self.post_to_pre[:3, 3]
        return (f"{self.kind} registration post-implant -> pre-plan ({self.metric}, seed metal masked: "
                f"{self.masked_voxels} voxels): rotation {self.rotation_deg():.2f} deg, translation "
                f"({t[0]:.1f}, {t[1]:.1f}, {t[2]:.1f}) mm RAS")


def metal_mask(ct, grid, threshold_hu=1500.0, margin_mm=5.0, seed_points=None):
    """Boolean mask [k, j, i] of seed metal and its surroundings on ``grid``.

    Voxels of ``ct`` (HU) above ``threshold_hu``, plus balls of ``margin_mm`` around ``seed_points``
    (n, 3) mm RAS when given, grown by ``margin_mm`` (mm, Euclidean, via ``structures.expand_margin``).
    """
    if margin_mm < 0:
        raise InputError(f"metal margin {margin_mm!r} mm invalid: must be >= 0")
    core = np.asarray(ct) > threshold_hu
    if seed_points is not None and len(seed_points):
        ijk = np.rint(grid.to_ijk(np.asarray(seed_points, float).reshape(-1, 3))).astype(int)
        ok = np.all((ijk >= 0) & (ijk < np.asarray(grid.dims)), axis=1)
        core[ijk[ok, 2], ijk[ok, 1], ijk[ok, 0]] = True
    if margin_mm == 0 or not core.any():
        return core
    # grow inside the bounding box of the metal only (padded by the margin): same result, less work
    pad = np.ceil(margin_mm / grid.spacing).astype(int)[::-1] + 1
    idx = np.argwhere(core)
    lo = np.maximum(idx.min(axis=0) - pad, 0)
    hi = np.minimum(idx.max(axis=0) + pad + 1, core.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    sub = Grid(grid.to_ras(lo[::-1]), grid.spacing, grid.direction, tuple((hi - lo)[::-1]))
    out = np.zeros_like(core)
    out[box] = expand_margin(core[box], sub, margin_mm, name="seed metal")
    return out


def _metric_mask(ct, grid, roi, threshold_hu, margin_mm, seed_points):
    keep = ~metal_mask(ct, grid, threshold_hu, margin_mm, seed_points)
    if roi is not None:
        roi = np.asarray(roi, dtype=bool)
        if roi.shape != keep.shape:
            raise InputError(f"region-of-interest mask shape {roi.shape} does not match the CT {keep.shape}")
        keep &= roi
    if keep.sum() < 1000:
        raise InputError(f"only {int(keep.sum())} voxels left for the registration metric after masking "
                         "metal and the region of interest; enlarge the region or raise the metal threshold")
    return keep


def register_post_to_pre(pre_ct, pre_grid, post_ct, post_grid, kind="rigid", metric="mattes",
                         metal_threshold_hu=1500.0, metal_margin_mm=5.0, post_seed_points=None,
                         pre_roi=None, initializer="geometry", shrink_factors=(4, 2, 1),
                         smoothing_mm=(2.0, 1.0, 0.0), sampling_fraction=0.1, iterations=200,
                         random_seed=7, progress=None):
    """Register the post-implant CT (moving) to the pre-plan CT (fixed); return a RegistrationResult.

    Args:
        pre_ct, post_ct: CT arrays [k, j, i] in HU on the RAS grids ``pre_grid`` and ``post_grid``.
        kind: "rigid" (Euler 3D) or "affine" (rigid first, then a 12-parameter affine from it).
        metric: "mattes" (mutual information, 50 bins) or "meansquares" (same scanner and protocol).
        metal_threshold_hu: HU above which a voxel counts as seed metal (both images). Seed peaks in
            thick (5 mm) slices may fall below it: pass the detected seeds as ``post_seed_points``.
        metal_margin_mm: dilation (mm) of the metal mask, to cover streaks next to the seeds.
        post_seed_points: optional detected seed positions (n, 3) mm RAS in the post-implant frame,
            masked too (useful when thick slices smear the seeds below the threshold).
        pre_roi: optional boolean mask on the pre-plan grid restricting the metric (e.g. the body, or
            the target region enlarged by a few cm).
        initializer: starting translation and rotation centre: "geometry" (image centres) or
            "moments" (centres of mass of the body, HU > -400: for scans with different fields of view).
        shrink_factors, smoothing_mm: multi-resolution schedule (voxel shrink factors; Gaussian
            sigma in mm per level).
        sampling_fraction: fraction of voxels sampled by the metric (random, seeded by ``random_seed``
            so results are reproducible).
        iterations: maximum optimiser iterations per level.
        progress: callback(fraction, message); returning False cancels (raises Cancelled).
    """
    for name, value, allowed in (("kind", kind, KINDS), ("metric", metric, METRICS),
                                 ("initializer", initializer, INITIALIZERS)):
        if value not in allowed:
            raise InputError(f"registration {name} {value!r} invalid: use one of {list(allowed)}")
    if len(shrink_factors) != len(smoothing_mm) or not shrink_factors:
        raise InputError(f"shrink factors {shrink_factors} and smoothing {smoothing_mm} mm need the same "
                         "number (>= 1) of levels")
    if not 0 < sampling_fraction <= 1:
        raise InputError(f"sampling fraction {sampling_fraction!r} invalid: must be in (0, 1]")
    fixed = to_sitk(np.asarray(pre_ct, dtype=np.float32), pre_grid)
    moving = to_sitk(np.asarray(post_ct, dtype=np.float32), post_grid)
    fixed_keep = _metric_mask(pre_ct, pre_grid, pre_roi, metal_threshold_hu, metal_margin_mm, None)
    moving_keep = _metric_mask(post_ct, post_grid, None, metal_threshold_hu, metal_margin_mm, post_seed_points)

    if initializer == "geometry":
        images = (fixed, moving)
        mode = sitk.CenteredTransformInitializerFilter.GEOMETRY
    else:
        images = [sitk.Cast(image > -400.0, sitk.sitkFloat32) for image in (fixed, moving)]
        mode = sitk.CenteredTransformInitializerFilter.MOMENTS
    transform = sitk.Euler3DTransform(sitk.CenteredTransformInitializer(*images, sitk.Euler3DTransform(), mode))
    n_stages = 2 if kind == "affine" else 1
    method = _optimise(fixed, moving, transform, "rigid", 0, n_stages, metric, fixed_keep, moving_keep, pre_grid,
                       post_grid, shrink_factors, smoothing_mm, sampling_fraction, iterations, random_seed, progress)
    if kind == "affine":
        rigid, transform = transform, sitk.AffineTransform(3)
        transform.SetCenter(rigid.GetCenter())
        transform.SetMatrix(rigid.GetMatrix())
        transform.SetTranslation(rigid.GetTranslation())
        method = _optimise(fixed, moving, transform, "affine", 1, n_stages, metric, fixed_keep, moving_keep,
                           pre_grid, post_grid, shrink_factors, smoothing_mm, sampling_fraction, iterations,
                           random_seed, progress)
    report(progress, 1.0, "registration done")
    pre_to_post = matrix_lps_to_ras(transform_to_matrix_lps(transform))
    return RegistrationResult(post_to_pre=np.linalg.inv(pre_to_post), kind=kind, metric=metric,
                              metric_value=float(method.GetMetricValue()),
                              iterations=int(method.GetOptimizerIteration()),
                              masked_voxels=int((~moving_keep).sum()),
                              stop_condition=method.GetOptimizerStopConditionDescription())


def _optimise(fixed, moving, transform, stage, n_stage, n_stages, metric, fixed_keep, moving_keep, pre_grid,
              post_grid, shrink_factors, smoothing_mm, sampling_fraction, iterations, random_seed, progress):
    """Optimise ``transform`` in place (one stage); return the finished registration method."""
    method = _method(metric, fixed_keep, moving_keep, pre_grid, post_grid, shrink_factors, smoothing_mm,
                     sampling_fraction, iterations, random_seed)
    method.SetInitialTransform(transform, inPlace=True)
    state = _watch(method, progress, n_stage, n_stages, len(shrink_factors))
    method.Execute(fixed, moving)
    if state["cancelled"]:
        raise Cancelled(f"registration cancelled during the {stage} stage")
    return method


def _method(metric, fixed_keep, moving_keep, pre_grid, post_grid, shrink_factors, smoothing_mm,
            sampling_fraction, iterations, random_seed):
    method = sitk.ImageRegistrationMethod()
    if metric == "mattes":
        method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    else:
        method.SetMetricAsMeanSquares()
    method.SetMetricFixedMask(to_sitk(fixed_keep, pre_grid))
    method.SetMetricMovingMask(to_sitk(moving_keep, post_grid))
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(float(sampling_fraction), int(random_seed))
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-3,
                                                    numberOfIterations=int(iterations),
                                                    relaxationFactor=0.6, gradientMagnitudeTolerance=1e-8)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([int(s) for s in shrink_factors])
    method.SetSmoothingSigmasPerLevel([float(s) for s in smoothing_mm])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return method


def _watch(method, progress, n_stage, n_stages, n_levels):
    """Report each resolution level to ``progress``; stop the optimiser if it asks to cancel."""
    state = {"level": 0, "cancelled": False}
    if progress is None:
        return state

    def on_level():
        fraction = (n_stage + state["level"] / n_levels) / n_stages
        state["level"] += 1
        if progress(fraction, f"registration level {state['level']}/{n_levels}") is False:
            state["cancelled"] = True
            method.StopRegistration()

    def on_iteration():
        if state["cancelled"]:
            method.StopRegistration()

    method.AddCommand(sitk.sitkMultiResolutionIterationEvent, on_level)
    method.AddCommand(sitk.sitkIterationEvent, on_iteration)
    return state


def map_points(matrix, points):
    """Apply a 4x4 matrix to points (..., 3) mm; returns (..., 3)."""
    m = np.asarray(matrix, dtype=float)
    return np.asarray(points, dtype=float) @ m[:3, :3].T + m[:3, 3]


def map_seeds(seeds, matrix):
    """Seeds moved by the 4x4 RAS ``matrix`` (positions mapped, axes turned by its linear part)."""
    m = np.asarray(matrix, dtype=float)
    return [Seed(map_points(m, s.position), m[:3, :3] @ s.axis, s.strength_u, s.label) for s in seeds]


def carry_mask(mask, pre_grid, post_grid, post_to_pre):
    """A pre-plan mask (bool [k, j, i] on ``pre_grid``) carried onto ``post_grid`` (bool [k, j, i]).

    ``post_to_pre`` is the registration's 4x4 RAS matrix (``RegistrationResult.post_to_pre``): each
    post-implant voxel samples the pre-plan mask at its mapped point (linear interpolation of 0/1,
    then a 0.5 threshold).
    """
    return resample(np.asarray(mask) != 0, pre_grid, post_grid, post_to_pre, "linear", 0)
