"""Registration of the post-implant CT to the pre-plan CT (SimpleITK), that says when it cannot be trusted.

Direction convention (all matrices 4x4, mm, RAS):

* ``post_to_pre`` maps a point given in the post-implant CT's frame to the same anatomical point
  in the pre-plan CT's frame. Detected seeds are brought onto the pre-plan with it, and it is the
  matrix-to-parent of a Slicer transform node that, applied to the post-implant CT (child), lays it
  over the pre-plan CT.
* ``pre_to_post`` is its inverse: pre-plan frame -> post-implant frame.

Method (rigid; "affine" makes the final optimisation a 12-parameter one):

1. Both CTs are checked (a blank image, or one not in HU, is an InputError naming what was seen).
2. Seed metal (voxels above ``metal_threshold_hu``, and the given seed positions) grown by
   ``metal_margin_mm`` is left out of every average and of the metric; an optional region of
   interest on the pre-plan (e.g. the target grown by a few cm) restricts the metric of the local
   optimisation and the quality checks (the start search sees the whole anatomy).
3. Images at physical resolutions (``schedule_mm``; :mod:`.registration_levels`): block averages and
   Gaussian smoothing, with the slice profiles of the two series matched at every level.
4. Global start search at the coarsest level (:mod:`.registration_search`): rotations within
   ``max_rotation_deg`` x every translation (masked NCC by FFT). The post-implant CT is the fixed
   image (it is usually the shorter scan, so its samples stay inside the pre-plan's range).
5. Local optimisation (Mattes mutual information or mean squares; conjugate gradients with a line
   search) from the starts in the search's order at the next level (a start that comes within
   ``AGREEMENT_MM`` of an answer already found stops and takes it; once ``CONFIDENT_STARTS`` starts
   reached the best answer and another a distinct one, the starts left are not run), then from the
   two best distinct answers at each finer level; the better one at the finest level is the result
   (for "affine", optimised once more there with 12 parameters; restarted from a better neighbour
   while a 2 mm / 2 deg move still improves an independently computed mutual information), the other
   its alternative, both scored on one set of samples. The metric's samples are drawn where the
   images (and the region of interest) overlap at the start of each optimisation. The metric runs on
   one thread: identical calls give identical results.
6. Quality (:mod:`.registration_quality`): bone-surface distance after registration, overlap,
   sharpness of the optimum, agreement of the independent starts, the best distinct alternative, and
   repeatability over the metric's samples (the final optimisation run again from the answer on
   ``SAMPLE_SETS - 1`` other independent sets of samples, seeded ``random_seed + 1``, ``+ 2``, ...; the
   result is the consensus of the ``SAMPLE_SETS`` answers, flagged when they spread about it at the
   target: the seeds' box, or the region of interest's centre, grown by ``TARGET_HALF_MM``); implausible
   results are flagged with the reasons (``result.quality``).

ITK works in LPS; the LPS -> RAS conversion is done once, in :mod:`SeedBrachyLib.itk_image`.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..grid import Grid
from ..itk_image import RAS_TO_LPS, matrix_lps_to_ras, resample, to_sitk, transform_to_matrix_lps
from ..progress import report
from ..seeds import Seed
from ..structures import expand_margin, mask_box
from . import registration_levels as levels
from .registration_quality import (
    BODY_HU,
    GAIN_LIMIT,
    Quality,
    assess,
    consensus,
    displacement_mm,
    sensitivity,
    spread_mm,
)
from .registration_search import search

KINDS = ("rigid", "affine")
METRICS = ("mattes", "meansquares")
SCHEDULE_MM = (8.0, 4.0, 2.0)  # search level, then the local optimisation levels (mm)
MAX_ROTATION_DEG = 30.0  # rotations searched (capture range); translations are searched in full
DEFAULT_ROI_MARGIN_MM = 30.0  # margin (mm) around the target when the metric is restricted to it
AGREEMENT_MM = 2.0  # two optima closer than this (mm, over the region) are the same answer
CONFIDENT_STARTS = 3  # starts reaching the best answer (with one distinct answer found) that end the start loop
TARGET_HALF_MM = 10.0  # the target: the seeds' box (or the region of interest's centre) grown by this (mm)
MAX_RESTARTS = 4  # restarts of the final optimisation when a 2 mm / 2 deg move still improves the fit
SAMPLE_SETS = 5  # independent sets of metric samples the final optimisation runs on (the answer: their consensus)


@dataclass(frozen=True)
class RegistrationResult:
    """A post-implant -> pre-plan registration.

    Attributes:
        post_to_pre: 4x4 RAS matrix, post-implant frame -> pre-plan frame (mm).
        kind: "rigid" (rotation + translation) or "affine".
        metric: "mattes" (Mattes mutual information) or "meansquares".
        metric_value: final metric value at the finest level (lower is better for both).
        iterations: optimiser iterations at the finest level.
        masked_cc: volume (cm^3) of the post-implant CT left out of the metric as seed metal / streaks.
        quality: :class:`~SeedBrachyLib.postimplant.registration_quality.Quality` (plausible or flagged).
        stop_condition: optimiser's stop reason at the finest level.
    """

    post_to_pre: np.ndarray
    kind: str
    metric: str
    metric_value: float
    iterations: int
    masked_cc: float
    quality: Quality
    stop_condition: str = ""

    @property
    def pre_to_post(self):
        """4x4 RAS matrix, pre-plan frame -> post-implant frame (inverse of ``post_to_pre``)."""
        return np.linalg.inv(self.post_to_pre)

    @property
    def plausible(self):
        """False when the quality checks flag the result (see ``quality.reasons``)."""
        return self.quality.plausible

    def rotation_deg(self):
        """Rotation angle (degrees) of the linear part (its closest rotation, for an affine)."""
        u, _, vt = np.linalg.svd(self.post_to_pre[:3, :3])
        rot = u @ vt
        return float(np.degrees(np.arccos(np.clip((np.trace(rot) - 1.0) / 2.0, -1.0, 1.0))))

    def describe(self):
        """One line with units: kind, metric, rotation, translation and the quality verdict."""
        t = self.post_to_pre[:3, 3]
        return (f"{self.kind} registration post-implant -> pre-plan ({self.metric}, seed metal masked: "
                f"{self.masked_cc:.1f} cc): rotation {self.rotation_deg():.2f} deg, translation "
                f"({t[0]:.1f}, {t[1]:.1f}, {t[2]:.1f}) mm RAS; {self.quality.describe()}")


def _grow(core, grid, margin_mm):
    """``core`` (bool [k, j, i] on ``grid``) grown by ``margin_mm`` (mm, Euclidean), inside its padded box."""
    if margin_mm == 0 or not core.any():
        return core
    pad = np.ceil(margin_mm / grid.spacing).astype(int)[::-1] + 1
    idx = np.argwhere(core)
    lo = np.maximum(idx.min(axis=0) - pad, 0)
    hi = np.minimum(idx.max(axis=0) + pad + 1, core.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    sub = Grid(grid.to_ras(lo[::-1]), grid.spacing, grid.direction, tuple((hi - lo)[::-1]))
    out = np.zeros_like(core)
    out[box] = expand_margin(core[box], sub, margin_mm, name="seed metal")
    return out


def _mark_points(core, grid, points):
    if points is not None and len(points):
        ijk = np.rint(grid.to_ijk(np.asarray(points, float).reshape(-1, 3))).astype(int)
        ok = np.all((ijk >= 0) & (ijk < np.asarray(grid.dims)), axis=1)
        core[ijk[ok, 2], ijk[ok, 1], ijk[ok, 0]] = True
    return core


def metal_mask(ct, grid, threshold_hu=1500.0, margin_mm=5.0, seed_points=None):
    """Boolean mask [k, j, i] of seed metal and its surroundings on ``grid``.

    Voxels of ``ct`` (HU) above ``threshold_hu``, plus the voxels of ``seed_points`` (n, 3) mm RAS
    when given, grown by ``margin_mm`` (mm, Euclidean, via ``structures.expand_margin``).
    """
    if margin_mm < 0:
        raise InputError(f"metal margin {margin_mm!r} mm invalid: must be >= 0")
    return _grow(_mark_points(np.asarray(ct) > threshold_hu, grid, seed_points), grid, margin_mm)


def target_region(target_mask, grid, margin_mm=DEFAULT_ROI_MARGIN_MM):
    """The region of interest around a target: ``target_mask`` (bool [k, j, i] on ``grid``) grown by ``margin_mm``."""
    if not margin_mm > 0:
        raise InputError(f"region margin {margin_mm!r} mm invalid: must be > 0 (about 20-50 mm around the target)")
    target_mask = np.asarray(target_mask, bool)
    if not target_mask.any():
        raise InputError("the target mask for the registration region is empty")
    return _grow(target_mask, grid, margin_mm)


def _levels(ct, grid, name, metal_threshold_hu, metal_margin_mm, seed_points, thickness_mm, schedule_mm):
    """{spacing: Level} of one CT with metal grown at the finest level; masked volume (cm^3) at that level."""
    levels.check_ct_content(ct, name)
    core = np.asarray(ct) > metal_threshold_hu
    finest, pooled = levels.finest_level(ct, grid, core, min(schedule_mm), thickness_mm)
    if core.any() or (seed_points is not None and len(seed_points)):
        # metal at the finest level: any metal voxel in the block, plus the given seeds, grown by the margin
        fine_grid = levels.level_grid(finest)
        metal = _grow(_mark_points(pooled, fine_grid, seed_points), fine_grid, metal_margin_mm)
        keep_fine = sitk.GetArrayFromImage(finest.keep).astype(bool) & ~metal
        finest = levels.Level(finest.image, to_sitk(keep_fine, fine_grid), finest.variance_mm2)
        masked_cc = float(metal.sum()) * fine_grid.voxel_volume_cc
    else:
        masked_cc = 0.0
    levels.kept_voxels(finest, name)
    return levels.pyramid(finest, schedule_mm), masked_cc


def _restricted(level, roi, grid):
    """``level`` (pre-plan) with its metric mask cut to ``roi`` (bool [k, j, i] on the RAS ``grid``)."""
    level_grid = levels.level_grid(level)
    keep = sitk.GetArrayFromImage(level.keep).astype(bool) & resample(np.asarray(roi, bool), grid, level_grid)
    out = levels.Level(level.image, to_sitk(keep, level_grid), level.variance_mm2)
    levels.kept_voxels(out, "pre-plan CT")
    return out


def register_post_to_pre(pre_ct, pre_grid, post_ct, post_grid, kind="rigid", metric="mattes",
                         metal_threshold_hu=1500.0, metal_margin_mm=5.0, post_seed_points=None, pre_roi=None,
                         pre_slice_thickness_mm=None, post_slice_thickness_mm=None,
                         max_rotation_deg=MAX_ROTATION_DEG, schedule_mm=SCHEDULE_MM, n_starts=8, samples=12000,
                         iterations=50, random_seed=7, progress=None):
    """Register the post-implant CT to the pre-plan CT; return a :class:`RegistrationResult`.

    Args:
        pre_ct, post_ct: CT arrays [k, j, i] in HU on the RAS grids ``pre_grid`` and ``post_grid``.
        kind: "rigid" (Euler 3D) or "affine" (rigid first, then a 12-parameter affine from it).
        metric: "mattes" (mutual information, 32 bins) or "meansquares" (same scanner and protocol).
        metal_threshold_hu: HU above which a voxel counts as seed metal (both images).
        metal_margin_mm: growth (mm) of the metal mask, to cover streaks next to the seeds.
        post_seed_points: optional detected seed positions (n, 3) mm RAS in the post-implant frame,
            masked too (thick slices smear seeds below the threshold).
        pre_roi: optional boolean mask on the pre-plan grid restricting the metric (see
            :func:`target_region`: the target grown by a few cm).
        pre_slice_thickness_mm, post_slice_thickness_mm: reconstructed slice thickness (mm) of each
            series along its K axis; default its K spacing.
        max_rotation_deg: rotations searched for starts (deg); translations are searched in full.
        schedule_mm: voxel sizes (mm): the first for the start search, the others for the local
            optimisation levels, the last being the finest.
        n_starts: distinct starts taken from the search (fewer are optimised once ``CONFIDENT_STARTS`` of
            them reached the best answer and another a distinct one).
        samples: metric sample points at the finest level, drawn where the images overlap (and inside
            ``pre_roi``) at the start of each optimisation; fewer in proportion to the voxel area at
            the coarser levels (a quarter at twice the voxel size). Random, seeded by ``random_seed`` (an
            integer >= 1; the other sample sets of the final optimisation by ``random_seed + 1``, ...): reproducible.
        iterations: maximum optimiser iterations per level and start.
        progress: callback(fraction, message); returning False cancels (raises Cancelled).
    """
    for name, value, allowed in (("kind", kind, KINDS), ("metric", metric, METRICS)):
        if value not in allowed:
            raise InputError(f"registration {name} {value!r} invalid: use one of {list(allowed)}")
    schedule_mm = tuple(float(s) for s in schedule_mm)
    if len(schedule_mm) < 2 or min(schedule_mm) <= 0 or list(schedule_mm) != sorted(schedule_mm, reverse=True):
        raise InputError(f"registration schedule {schedule_mm} mm invalid: need >= 2 voxel sizes > 0, coarse to fine")
    if n_starts < 1:
        raise InputError(f"number of starts {n_starts!r} invalid: must be >= 1")
    if not (isinstance(random_seed, (int, np.integer)) and random_seed >= 1):
        raise InputError(f"random seed {random_seed!r} invalid: must be an integer >= 1 (SimpleITK takes 0 as "
                         "'seed from the clock', which is not reproducible)")
    report(progress, 0.0, "registration: preparing images")
    if pre_roi is not None and np.shape(pre_roi) != tuple(pre_grid.shape):
        raise InputError(f"region-of-interest mask shape {np.shape(pre_roi)} does not match the pre-plan CT "
                         f"{tuple(pre_grid.shape)}")
    pre, _ = _levels(pre_ct, pre_grid, "pre-plan CT", metal_threshold_hu, metal_margin_mm, None,
                     pre_slice_thickness_mm, schedule_mm)
    post, masked_cc = _levels(post_ct, post_grid, "post-implant CT", metal_threshold_hu, metal_margin_mm,
                              post_seed_points, post_slice_thickness_mm, schedule_mm)
    pairs = {s: levels.match_blur(post[s], pre[s]) for s in schedule_mm}  # (fixed = post, moving = pre)

    report(progress, 0.1, "registration: searching starts (rotations x translations)")
    coarse = pairs[schedule_mm[0]]
    starts = search(coarse[0].image, coarse[0].keep, coarse[1].image, coarse[1].keep, spacing_mm=schedule_mm[0],
                    max_rotation_deg=max_rotation_deg, n_starts=n_starts)
    if not starts:
        raise InputError("the post-implant CT and the pre-plan CT do not overlap at any tried position: "
                         "check that both scans show the same region")
    center = starts[0].center
    region = _region_lps(post_seed_points, center)
    local = schedule_mm[1:]
    if pre_roi is not None:  # the search saw the whole anatomy; the fit and its checks see the region
        for spacing in local:
            pairs[spacing] = (pairs[spacing][0], _restricted(pairs[spacing][1], pre_roi, pre_grid))
    runs = [_Run(s.matrix, center) for s in starts]
    first = None
    for n_level, spacing in enumerate(local):
        if n_level:  # the two best distinct answers go on, so the finest level can tell them apart
            runs = _distinct(runs, region)[:2]
        fixed, moving = pairs[spacing]
        fixed = levels.crop(fixed, levels.body_corners(fixed.image, BODY_HU), 2 * spacing)
        for n_run, run in enumerate(runs):
            report(progress, 0.2 + 0.55 * (n_level + n_run / len(runs)) / len(local),
                   f"registration: level {spacing:g} mm, start {n_run + 1}/{len(runs)}")
            run.optimise(fixed, moving, metric, "rigid", spacing, int(samples * (local[-1] / spacing) ** 2), iterations,
                         random_seed, joinable=(runs[:n_run], region))
            if n_level == 0 and _settled(runs[:n_run + 1], region):
                del runs[n_run + 1:]  # the starts left (lower search scores) are not needed
                break
        runs.sort(key=lambda r: r.value)
        if n_level == len(local) - 1:
            runs = _compare(runs, fixed, moving, metric, "rigid", samples, random_seed)
        if n_level == 0:
            first = [r.matrix.copy() for r in runs]
    contenders = [(r.matrix.copy(), r.value) for r in runs]
    best = runs[0]
    affine = kind == "affine"
    if affine:  # a rigid answer is already optimised at the finest level
        report(progress, 0.8, f"registration: affine optimisation at {spacing:g} mm")
        best.optimise(fixed, moving, metric, kind, spacing, samples, iterations, random_seed)

    def check():  # an independent check of optimality (drops, gains, best move)
        return sensitivity(fixed, moving, best.matrix, region.mean(axis=0), np.random.default_rng(random_seed),
                           affine=affine)

    report(progress, 0.85, "registration: checking the optimum (2 mm / 2 deg moves)")
    moves = check()
    for _ in range(MAX_RESTARTS):  # restart from a better neighbour
        if moves[1].max() <= GAIN_LIMIT:
            break
        best.matrix = moves[2] @ best.matrix
        best.optimise(fixed, moving, metric, kind, spacing, samples, iterations, random_seed)
        moves = check()
    report(progress, 0.9, "registration: re-fitting on other sets of metric samples")
    at = region if pre_roi is None or post_seed_points is not None and len(post_seed_points) else \
        _region_lps(None, _roi_centre_lps(pre_roi, pre_grid, best.matrix), TARGET_HALF_MM)
    answers = [best.matrix]
    for n_set in range(1, SAMPLE_SETS):  # the same optimum, found again with other random samples
        refit = _Run(best.matrix, best.center)
        refit.optimise(fixed, moving, metric, kind, spacing, samples, iterations, random_seed + n_set)
        answers.append(refit.matrix if np.isfinite(refit.value) else None)
    if all(a is not None for a in answers):
        # the 2 mm / 2 deg checks stay those of the first answer, whose neighbours were tried: the consensus is not
        # an optimum of any one sample set (rechecked there, a held-out fit 0.08 mm off was flagged for a 0.8% gain)
        best.matrix = consensus(answers, at, rigid=not affine)
        spread = spread_mm(answers, best.matrix, at)
        best.value = _metric_value(best, fixed, moving, metric, kind, samples, random_seed)
    else:  # a fit failed: no consensus
        spread = np.inf
    report(progress, 0.95, "registration: checking the result")
    quality = assess(*pairs[local[-1]], best.matrix, first, contenders, region, AGREEMENT_MM, moves[:2],
                     (spread, SAMPLE_SETS), random_seed)
    report(progress, 1.0, "registration done")
    post_to_pre = matrix_lps_to_ras(best.matrix)
    return RegistrationResult(post_to_pre=post_to_pre, kind=kind, metric=metric, metric_value=best.value,
                              iterations=best.iterations, masked_cc=masked_cc, quality=quality,
                              stop_condition=best.stop_condition)


def _region_lps(post_seed_points, center, half_mm=50.0):
    """Points (LPS mm) where two answers are compared: the corners of the seeds' box grown by ``TARGET_HALF_MM``
    if given, else of the cube of ``half_mm`` (mm) around ``center`` (LPS mm)."""
    if post_seed_points is not None and len(post_seed_points):
        pts = np.asarray(post_seed_points, float).reshape(-1, 3) @ RAS_TO_LPS
        lo, hi = pts.min(axis=0) - TARGET_HALF_MM, pts.max(axis=0) + TARGET_HALF_MM
    else:
        lo, hi = center - half_mm, center + half_mm
    return np.stack(np.meshgrid(*zip(lo, hi), indexing="ij"), -1).reshape(-1, 3)


def _roi_centre_lps(roi, grid, matrix):
    """Centre (LPS mm) of the box of ``roi`` (bool [k, j, i] on the pre-plan's RAS ``grid``) in the fixed
    (post-implant) frame, brought there by the inverse of ``matrix`` (4x4 LPS, fixed -> moving)."""
    lo, hi = mask_box(roi)
    inverse = np.linalg.inv(matrix)
    return inverse[:3, :3] @ (grid.to_ras(0.5 * (lo + hi)) @ RAS_TO_LPS) + inverse[:3, 3]


def _settled(done, region):
    """Whether the starts optimised so far settle the answer: ``CONFIDENT_STARTS`` of them reached the best one,
    and at least one reached a distinct answer (the alternative weighed against it at the finer levels)."""
    live = [r for r in done if np.isfinite(r.value)]
    if not live:
        return False
    best = min(live, key=lambda r: r.value)
    agreeing = sum(displacement_mm(r.matrix, best.matrix, region) <= AGREEMENT_MM for r in live)
    return CONFIDENT_STARTS <= agreeing < len(live)


def _distinct(runs, region):
    """``runs`` (best first) without those that reached the same answer as a better one."""
    out = []
    for run in runs:
        if all(displacement_mm(run.matrix, other.matrix, region) > AGREEMENT_MM for other in out):
            out.append(run)
    return out


@contextmanager
def _one_thread():
    """ITK's metrics built inside run on one thread (the process-wide default is restored after).

    Mattes mutual information sums its joint histogram from all threads in the order they finish, so
    on several threads identical calls give different metric values in the last bits, which the
    optimiser and the choice between near-equal optima amplify (1 mm apart on the neck phantom).
    The registration method's own thread setting does not reach the metric's threader.
    """
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


def _transform(matrix, center, stage):
    """A SimpleITK Euler (``stage`` "rigid": the closest rotation) or affine transform of a 4x4 LPS matrix."""
    transform = sitk.Euler3DTransform() if stage == "rigid" else sitk.AffineTransform(3)
    transform.SetCenter(tuple(float(v) for v in center))
    a = matrix[:3, :3]
    if stage == "rigid":
        u, _, vt = np.linalg.svd(a)
        a = u @ vt
    transform.SetMatrix(tuple(a.ravel()))
    transform.SetTranslation(tuple(matrix[:3, 3] - center + a @ center))
    return transform


def _metric_method(metric, fixed_keep, moving_keep, transform, samples, random_seed):
    """An ImageRegistrationMethod with the metric, its masks and ``transform`` (modified in place by Execute).

    ``fixed_keep``: (uint8 mask image, its voxel count), see :func:`_overlap_keep`. The ``samples`` random
    samples (seeded) are drawn from that mask's voxels in the fixed frame: the same points whatever the
    transform.
    """
    fixed_keep, n_kept = fixed_keep
    method = sitk.ImageRegistrationMethod()
    if metric == "mattes":
        method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    else:
        method.SetMetricAsMeanSquares()
    method.SetMetricFixedMask(fixed_keep)
    if not sitk.GetArrayViewFromImage(moving_keep).all():  # (an all-ones mask costs a pass over it per call)
        method.SetMetricMovingMask(moving_keep)
    # gradients by central differences at the samples only: ITK's default gradient filter smooths the
    # whole moving image at every start (2/3 of the time at the finest level, and the images are smooth)
    method.SetMetricUseFixedImageGradientFilter(False)
    method.SetMetricUseMovingImageGradientFilter(False)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(min(1.0, samples / max(n_kept, 1)), int(random_seed))
    method.SetInterpolator(sitk.sitkLinear)
    method.SetInitialTransform(transform, inPlace=True)
    return method


def _overlap_keep(fixed, moving, transform):
    """(uint8 mask image, voxel count): the fixed metric voxels that ``transform`` maps onto the moving metric
    region; the whole fixed metric region when that is under ``MIN_KEPT_VOXELS`` (a start that barely overlaps)."""
    overlap = sitk.Resample(moving.keep, fixed.image, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    keep = sitk.And(fixed.keep, overlap)
    n_kept = int(np.count_nonzero(sitk.GetArrayViewFromImage(keep)))
    if n_kept < levels.MIN_KEPT_VOXELS:
        keep = fixed.keep
        n_kept = int(np.count_nonzero(sitk.GetArrayViewFromImage(keep)))
    return keep, n_kept


def _compare(runs, fixed, moving, metric, stage, samples, random_seed):
    """The runs best first, their metric values recomputed on one set of ``samples`` fixed voxels.

    Each optimisation drew its own samples on its own overlap, and values on different regions are not
    comparable (a wrong optimum's region can score 10% better): the values are recomputed on voxels
    drawn (seeded by ``random_seed``) from the best run's overlap, the same voxels for every run.
    """
    runs = sorted(runs, key=lambda r: r.value)
    live = [r for r in runs if np.isfinite(r.value)]
    if len({r.matrix.tobytes() for r in live}) < 2:  # one answer (the others joined it): nothing to compare
        return runs
    keep = _overlap_keep(fixed, moving, _transform(live[0].matrix, live[0].center, stage))
    for run in live:
        run.value = _metric_value(run, fixed, moving, metric, stage, samples, random_seed, keep)
    return sorted(runs, key=lambda r: r.value)


def _metric_value(run, fixed, moving, metric, stage, samples, random_seed, keep=None):
    """The metric at ``run``'s answer on ``samples`` voxels (seeded) of ``keep`` (see :func:`_overlap_keep`; default
    the fixed metric voxels that the answer maps onto the moving metric region); inf when too few land there."""
    transform = _transform(run.matrix, run.center, stage)
    method = _metric_method(metric, keep or _overlap_keep(fixed, moving, transform), moving.keep, transform, samples,
                            random_seed)
    # one step of length zero: the metric at the answer (MetricEvaluate would visit every fixed voxel)
    method.SetOptimizerAsGradientDescent(learningRate=0.0, numberOfIterations=1, estimateLearningRate=method.Never)
    try:
        with _one_thread():
            method.Execute(fixed.image, moving.image)
    except RuntimeError:  # too few of the samples land on the moving region
        return np.inf
    return float(method.GetMetricValue())


class _Run:
    """One start followed through the local levels (LPS matrix fixed = post -> moving = pre)."""

    def __init__(self, matrix, center):
        self.matrix = np.asarray(matrix, float)
        self.center = np.asarray(center, float)
        self.value = np.inf
        self.iterations = 0
        self.stop_condition = ""

    def optimise(self, fixed, moving, metric, stage, spacing, samples, iterations, random_seed, joinable=((), None)):
        """Local optimisation from the current matrix at one level (``spacing`` mm).

        Conjugate gradients with a line search (steps up to ``spacing``): it does not stop on a
        step-size rule, as the regular-step optimiser did (it halves its step at every turn and
        stalled 1-10 mm short of the optimum on thick-slice, short and S-invariant scans).
        ``joinable``: (runs already optimised at this level, region points LPS mm); once this run comes
        within ``AGREEMENT_MM`` of one of their answers over the region, it stops and takes that answer
        (the same optimum, reached again: the time of converging to it is saved); a run that failed (infinite
        value) is no answer to join.
        """
        transform = _transform(self.matrix, self.center, stage)
        # the moving image cut to where the fixed body can land (ITK's cost grows with the moving image's size),
        # the fixed image to what can land on the moving image's metric region (a region of interest)
        reach = levels.body_corners(fixed.image, BODY_HU) @ self.matrix[:3, :3].T + self.matrix[:3, 3]
        moving = levels.crop(moving, reach, 20.0 + 2 * spacing) or moving
        inverse = np.linalg.inv(self.matrix)
        back = levels.mask_corners(moving.keep) @ inverse[:3, :3].T + inverse[:3, 3]
        fixed = levels.crop(fixed, back, 2 * spacing) or fixed
        # the samples are drawn where the moving metric region lies at the start: all of them count
        method = _metric_method(metric, _overlap_keep(fixed, moving, transform), moving.keep, transform, samples,
                                random_seed)
        method.SetOptimizerAsConjugateGradientLineSearch(
            learningRate=1.0, numberOfIterations=int(iterations), convergenceMinimumValue=1e-5,
            convergenceWindowSize=5, lineSearchLowerLimit=0.0, lineSearchUpperLimit=4.0, lineSearchEpsilon=0.1,
            lineSearchMaximumIterations=4, estimateLearningRate=method.Once,
            maximumStepSizeInPhysicalUnits=float(spacing))
        method.SetOptimizerScalesFromPhysicalShift()
        others, region = joinable
        others = [o for o in others if np.isfinite(o.value)]  # a failed start has no answer, only its start
        joined = []

        def join():
            if others:
                current = sitk.Euler3DTransform(transform) if stage == "rigid" else sitk.AffineTransform(transform)
                current.SetParameters(method.GetOptimizerPosition())
                matrix = transform_to_matrix_lps(current)
                near = [o for o in others if displacement_mm(matrix, o.matrix, region) <= AGREEMENT_MM]
                if near:
                    joined.append(near[0])
                    method.StopRegistration()

        method.AddCommand(sitk.sitkIterationEvent, join)
        try:
            with _one_thread():
                method.Execute(fixed.image, moving.image)
        except RuntimeError:  # the start drove the images apart ("all samples map outside"): a failed start
            self.value = np.inf
            return
        self.iterations = int(method.GetOptimizerIteration())
        if joined:
            self.matrix, self.value = joined[0].matrix.copy(), joined[0].value
            self.stop_condition = f"joined another start's answer after {self.iterations} iterations"
            return
        self.matrix = transform_to_matrix_lps(transform)
        self.value = float(method.GetMetricValue())
        self.stop_condition = method.GetOptimizerStopConditionDescription()


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
