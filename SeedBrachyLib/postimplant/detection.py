"""Automatic detection of I-125 seeds in a post-implant CT, from a forward model of the series.

Method (CT values HU, lengths mm, positions RAS):

1. The series: pixel spacing and orientation from the grid; slice thickness from the caller (DICOM
   SliceThickness) or the one (1-2.5 increments) whose seed images fit the series' seed-sized objects best,
   started from how much noise neighbouring slices share (overlapping and interpolated series share it, but so
   does a series resampled after acquisition, whose seed images are hardly wider); the top of the stored range
   from a plateau at 3071/4095 HU; the in-plane blur from the caller or, with the shape of the slice sensitivity
   profile, the one whose seed images fit the series' own seed-sized objects best (0.3-0.6 mm; profiles of FWHM
   about the thickness with sharp or soft edges). :mod:`.seed_model` turns these into the image one seed makes.
2. One seed's mass (HU mm^3, the integral of CT number above the surroundings, conserved by blur and
   partial volume) is the most common fitted mass of the seed-sized objects that one seed explains well,
   gathered at 2000 HU (bone does not reach it) and lower levels; the faintest a seed of that mass can
   look in this series (worst orientation and sub-voxel position) sets the level at which objects are
   cut: half of it above soft tissue.
3. Every object is examined with the forward model: k seeds (positions, axes, masses) and a constant
   background are fitted for k around its mass in seeds, and k is chosen by residual (a penalty per
   seed). The fit is accepted when it explains the object (relative residual) with masses of one seed
   each; an object that is not explained (bone, a seed touching bone, other metal), or that the most seeds
   tried (``_MAX_SEEDS``) fit best (a seed beside a gold fiducial), is looked at again at a level half-way to
   its peak, which separates a seed from the bone or metal it touches. A part cut there that is
   no brighter than bone can be (under BONE_MAX_HU) is kept only when its peak stands well above the rest
   of the object beside it (``_ABOVE_BONE`` of the faintest seed's contrast): a vertebra's cortex does not.
   An object that k >= 2 seeds explain is also fitted as one uniform dense rod of free mass (3-6 mm long): when
   the rod explains it better (same residual score) with more mass than any group of seeds holds, or clearly
   better (half the residual sum of squares) with more mass than one seed holds, it is a gold fiducial or other
   dense metal (on a clipped scale such a rod and a bundle of seeds both look flat-topped; their unclipped masses
   differ); so is it on slices up to 3 mm when the rod fits better than the seeds and holds more mass than they
   do. The level under an object is carried in from around it; on an edge (skin, lung, bone: that level varies by
   more than 200 HU over the object) it is carried in again from every voxel where one seed fitted to the object
   leaves the image, less that seed. Objects too faint, too heavy for their length, too long for the one seed
   that explains them best (a clip, a needle; first looked at again higher up, where two seeds end to end on
   thick slices part) or not explained by seeds (cortex, calcifications) are rejected with the reason; so is an
   object cut by the in-plane edge of the image (a rib at the field of view's edge), unless a part of it inside
   stands alone. An object whose surroundings lie mostly at the bottom of the stored range (seeds in lung under
   the dark bands between seeds, where the level under them is below -1024 HU and the floor cuts their image) is
   first fitted with the level free per group of slices and the voxels at the floor censored (they say only that
   the image there is at or under the floor), k = 1, 2, ... seeds while the score improves (twice the penalty
   per seed: under the floor a seed more hides at little cost); when seeds of one seed's mass explain it, and
   are seen as any seed is (the object's peak stands above its own slice's level as the faintest seed does, and
   each seed's image reaches half that on the object: beside a slice at the floor a seed can always be hidden
   under it, next to a noise blob), they are taken, else it is examined as above.
4. A confidence per seed, 0-1 (:mod:`.detection_confidence`: the fraction of true seeds among the TUNING
   phantoms' detections with its score features); seeds under ``review_below``, and seeds placed only to
   meet a count, are kept and marked "to review".
5. A known count changes k only where the residuals support k and k + 1 alike; it never splits a seed
   of one seed's mass nor takes a rejected object; the result says how many are still unresolved.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..grid import Grid
from ..progress import report
from ..seeds import Seed
from . import detection_confidence, hu_scale
from .detection_candidates import enclosed_objects, low_region
from .detection_candidates import objects as _objects
from .seed_model import SeriesModel, fit_seeds, min_peak_per_mass, render, rod_model

SEED_LENGTH_MM = 4.5
DEFAULT_PSF_MM = 0.45  # in-plane sigma of a standard soft-tissue kernel (mm)
DEFAULT_SEED_MASS = 35000.0  # HU mm^3, a silver-marker seed at 120 kVp; used only when no seed calibrates it
BONE_MAX_HU = 2000.0  # cortical bone stays below this (HU)
REVIEW_BELOW = 0.5  # default confidence under which a seed is listed "to review"
_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)
_MAX_SEEDS = 6  # per object
# brightest voxels at least this far apart (mm) start k seeds in a row: more than a capsule and its blur across
# (0.8 + 2 x 1 mm), less than a seed's length
_PEAK_APART_MM = 3.0
_FAR_MM = 10.0  # seed centres further apart along an axis: their lines (+-1.5 mm) are > 7 mm apart
_CALIBRATION_OBJECTS = 16  # objects fitted to find one seed's mass
_CALIBRATION_LEVELS = (BONE_MAX_HU, 1600.0, 1300.0)  # HU at which objects are gathered for it
_MODE_BANDWIDTH = 0.1  # of the log masses whose mode is one seed's
_THICKNESS_FACTORS = (1.0, 1.5, 2.0, 2.5)  # slice thickness / increment tried when the thickness is not given
# (marker length mm, share of the mass in it) tried: silver rod 3 mm, tungsten or gold 3.7-4 mm, no dense marker
_SEED_PROFILES = ((3.0, 0.75), (4.0, 0.75), (4.5, 0.0))
_SERIES_OBJECTS = 4  # objects fitted per thickness and marker length tried
_PSF_CHOICES = (0.3, 0.375, 0.525, 0.6)  # in-plane blur sigma (mm) tried besides DEFAULT_PSF_MM when not given
# slice sensitivity profile (rectangle width, Gaussian edge sigma), fractions of the thickness, tried besides
# the default (0.9, 0.25): a sharp-edged profile of FWHM the thickness, a narrower one, a wider soft one
_SSP_SHAPES = ((1.0, 0.12), (0.8, 0.15), (1.0, 0.3))
_RESPONSE_OBJECTS = 8  # objects fitted per blur and profile tried
_POOL_FRACTION = 0.75  # of the faintest peak of a default seed (above soft tissue): lowest level objects are pooled
_MASS_OBJECTS = 40  # pooled objects fitted for one seed's mass
_PEAK_FRACTION = 0.8  # of the faintest seed's peak (above soft tissue): dimmer objects are not seeds
_MAX_DEPTH = 3  # times an unexplained object is looked at again at a higher level
# of the faintest seed's contrast: a part of an unexplained object with a peak under BONE_MAX_HU (bone could make
# it) is a seed only when its peak stands this far above the rest of the object within two voxels (the bone it
# touches); on TUNING cortex humps stood 0.22-0.48, seeds touching bone 0.68 or more
_ABOVE_BONE = 0.6
_MIN_MASS = 0.35  # objects lighter than this many seed masses are not seeds
_MASS_RANGE = (0.45, 1.8)  # fitted mass of each seed, in seed masses
_MAX_RESIDUAL = 0.16  # rms residual / object contrast of an accepted fit
_PENALTY = 6.0  # score per extra seed, in units of log(n) (the choice of k)
_PRIOR_FRACTION = 0.05  # rms residual (of the contrast) that a 20% deviation from one seed's mass costs
_SUPPORT = (0.7, 1.8)  # signal in the data / signal of the fitted seeds at one seed's mass
_SUPPORT_MARGINAL = 0.4  # a single seed with this much of the signal may be taken when a count says so
_MIN_SEPARATION_MM = 0.55  # seed centre lines closer than this are one seed fitted twice
_SINGLE_DATA_MASS = (0.7, 1.3)  # mass in the data (of one seed's) of an object plainly one seed
_SINGLE_LENGTH = (2.5, 6.0)  # its deblurred length (mm)
_SINGLE_WIDTH = 1.6  # its deblurred width (mm)
_SINGLE_PEAK = (0.7, 1.4)  # its peak / the peak one seed makes there
_AMBIGUOUS_MARGIN = 0.05  # score margin (per voxel) under which k and k + 1 are both supported
# one dense rod (a gold fiducial 3-5 mm, a wire stub; longer ones are "too long") tried against k >= 2 seeds
_ROD_LENGTHS = (3.0, 4.0, 5.0, 6.0)  # mm
_ROD_RADII = (0.4, 0.6)  # mm
_ROD_MASS_STARTS = (1.0, 4.0)  # times the mass in the data
_ROD_CLEARLY = 0.5  # a rod whose residual sum of squares is under this share of the k seeds' explains it clearly
_BRIGHTER = 1.5  # an object's peak more than this times that of the seeds fitted to it: not seeds
# a rod that fits better than the k seeds, with more mass than they hold, is dense metal on slices up to this
# thickness (mm); on thicker slices a group of seeds, its length hidden by the slice profile, can fit a rod as well
_ROD_THIN_MM = 3.0
_EDGE_HU = 200.0  # range of the carried-in background over an object beyond which it lies on an edge (HU)
_CLEAN_FRACTION = 0.05  # of an object's contrast: voxels where one fitted seed's image is under it show the level
_FLOORED = 0.3  # share of an object's surroundings at the floor of the stored range beyond which it is censored
# score per extra seed there: a seed more with the level lower hides its image under the floor at little cost
# (before the checks that each seed is seen, single seeds came out as 3-4 seeds at _PENALTY on TUNING; with them,
# T10, T12 and own series 7401-7404: 174 found, 23 false at _PENALTY; 173, 21 at twice it)
_CENSORED_PENALTY = 2 * _PENALTY
_LOW_HU = 400.0  # surroundings this far under soft tissue (lung, gas; HU) are low: objects there are cut on their own


@dataclass(frozen=True)
class RejectedCandidate:
    """A bright object that was not taken as a seed.

    Attributes:
        position: intensity-weighted centroid (mm RAS).
        reason: why it was rejected (text with the measured values).
        peak_hu: highest CT value in it (HU).
        volume_mm3: volume above its level (mm^3).
        seed_equivalents: its mass in units of one seed's mass.
    """

    position: np.ndarray
    reason: str
    peak_hu: float
    volume_mm3: float
    seed_equivalents: float


@dataclass
class DetectionResult:
    """Detected seeds and how they were found.

    Attributes:
        seeds: detected :class:`~SeedBrachyLib.seeds.Seed` (centres mm RAS, unit axes, S_K in U), most
            confident first, labelled "D1", "D2", ...
        confidences: per seed, 0-1 (:func:`.detection_confidence.confidence` of its ``features``).
        review: per seed, True when its confidence is under ``review_below`` or it was placed only because
            ``expected_count`` asked for more seeds (listed "to review").
        threshold_hu: level at which objects were cut (HU).
        seed_peak_hu: the faintest peak one seed can have in this series (HU).
        single_seed_mass: one seed's mass, sum of (HU - surroundings) x voxel volume (HU mm^3).
        series: text: slice thickness, blur, clipping as used (given or estimated).
        rejected: :class:`RejectedCandidate` list with reasons.
        expected_count: the count asked for (None when not given).
        unresolved: positions (mm RAS) of objects where one more seed was possible but not taken.
        scores: per seed, the raw fit score (0-1), one of the features.
        features: per seed, the score features (n, len(detection_confidence.FEATURES)) the confidence reads.
    """

    seeds: list
    confidences: np.ndarray
    threshold_hu: float
    seed_peak_hu: float
    single_seed_mass: float
    rejected: list = field(default_factory=list)
    expected_count: int | None = None
    review: np.ndarray = None
    review_below: float = REVIEW_BELOW
    series: str = ""
    unresolved: list = field(default_factory=list)
    scores: np.ndarray = None  # raw fit scores (0-1), same order
    features: np.ndarray = None  # score features behind the confidences, same order

    def __post_init__(self):
        if self.review is None:
            self.review = np.asarray(self.confidences) < self.review_below

    def summary(self):
        """One line of text with units and the method."""
        n = len(self.seeds)
        n_review = int(np.sum(self.review))
        if self.expected_count is None:
            found = f"{n} seeds detected"
        else:
            missing = self.expected_count - n
            found = f"found {n} of {self.expected_count} expected"
            if missing > 0:
                where = "; ".join(f"({p[0]:.1f}, {p[1]:.1f}, {p[2]:.1f})" for p in self.unresolved[:5])
                found += f": {missing} unresolved" + (f" (looked at {where} mm RAS)" if where else "")
            elif missing < 0:
                found += f": {-missing} more than expected"
        why = f"confidence < {self.review_below:g}" + (", or placed to meet the count"
                                                        if self.expected_count is not None else "")
        return (f"{found}, {n_review} to review ({why}), {len(self.rejected)} "
                f"candidates rejected; objects cut at {self.threshold_hu:.0f} HU (half the faintest seed, "
                f"{self.seed_peak_hu:.0f} HU, above soft tissue); one seed {self.single_seed_mass:.0f} HU mm3; "
                f"{self.series}")


def match_seeds(detected_mm, true_mm, gate_mm=2.5):
    """Match detected to true seed centres (mm RAS) by Hungarian assignment within ``gate_mm`` (mm).

    Returns ``(pairs, distances)``: pairs (m, 2) of (detected index, true index) and their distances (mm).
    """
    detected = np.asarray(detected_mm, dtype=float).reshape(-1, 3)
    truth = np.asarray(true_mm, dtype=float).reshape(-1, 3)
    if not gate_mm > 0:
        raise InputError(f"gate_mm {gate_mm!r} invalid: must be > 0 mm")
    if len(detected) == 0 or len(truth) == 0:
        return np.zeros((0, 2), dtype=int), np.zeros(0)
    dist = np.linalg.norm(detected[:, None] - truth[None], axis=-1)
    from scipy.optimize import linear_sum_assignment  # here: scipy.optimize would load with the settings

    rows, cols = linear_sum_assignment(np.where(dist <= gate_mm, dist, 1e6))
    keep = dist[rows, cols] <= gate_mm
    return np.stack([rows[keep], cols[keep]], axis=1), dist[rows[keep], cols[keep]]


def _validate(ct, grid, expected_count, strength_u, slice_thickness_mm, psf_mm, review_below):
    if not isinstance(grid, Grid):
        raise InputError(f"grid {grid!r} invalid: need a SeedBrachyLib.grid.Grid")
    ct = np.asarray(ct)
    if ct.ndim != 3 or ct.size == 0:
        raise InputError(f"CT array of shape {ct.shape} invalid: need a non-empty 3D array [k, j, i]")
    if tuple(ct.shape) != tuple(grid.shape):
        raise InputError(f"CT array shape {ct.shape} does not match the grid shape {grid.shape} (nk, nj, ni)")
    if not np.issubdtype(ct.dtype, np.number) or np.issubdtype(ct.dtype, np.complexfloating):
        raise InputError(f"CT array dtype {ct.dtype} invalid: need real CT numbers (HU)")
    if np.issubdtype(ct.dtype, np.floating) and not np.all(np.isfinite(ct)):
        raise InputError("CT array holds NaN or infinite values: need finite CT numbers (HU)")
    if expected_count is not None and (isinstance(expected_count, bool)
                                       or not isinstance(expected_count, (int, np.integer)) or expected_count < 1):
        raise InputError(f"expected_count {expected_count!r} invalid: need an integer >= 1 or None")
    if strength_u is not None and not (isinstance(strength_u, (int, float, np.number)) and strength_u > 0):
        raise InputError(f"strength_u {strength_u!r} U invalid: need an air-kerma strength > 0 U")
    for name, value, upper in (("slice_thickness_mm", slice_thickness_mm, 20.0), ("psf_mm", psf_mm, 5.0)):
        if value is not None and not (isinstance(value, (int, float, np.number)) and 0 < value <= upper):
            raise InputError(f"{name} {value!r} invalid: must be > 0 and <= {upper:g} mm")
    if not (isinstance(review_below, (int, float, np.number)) and 0 <= review_below <= 1):
        raise InputError(f"review_below {review_below!r} invalid: a confidence from 0 to 1")
    hu_scale.require_hu(ct)
    return ct


def estimate_thickness(values, spacing_k, soft_hu):
    """Slice thickness (mm) from the noise shared by neighbouring slices in soft tissue.

    With a rectangular slice profile of width T sampled every d <= T, neighbouring slices share a fraction
    1 - d / T of their noise, so T = d / (1 - rho); contiguous slices (rho ~ 0) give T = d.
    """
    nk = values.shape[0]
    if nk < 3:
        return float(spacing_k)
    ks = np.linspace(0, nk - 2, min(nk - 1, 12)).astype(int)
    a_all, b_all = [], []
    for k in ks:
        a, b = values[k].astype(np.float32), values[k + 1].astype(np.float32)
        mask = (np.abs(a - soft_hu) < 150) & (np.abs(b - soft_hu) < 150)
        mask = ndimage.binary_erosion(mask, iterations=3)
        if mask.sum() < 200:
            continue
        # in-plane high pass: anatomy varies slowly, noise does not
        ha = a - ndimage.uniform_filter(a, 5)
        hb = b - ndimage.uniform_filter(b, 5)
        a_all.append(ha[mask])
        b_all.append(hb[mask])
    if not a_all:
        return float(spacing_k)
    a, b = np.concatenate(a_all), np.concatenate(b_all)
    rho = float(np.corrcoef(a, b)[0, 1])
    return float(spacing_k / (1 - min(max(rho, 0.0), 0.8)))


@dataclass
class _Context:
    values: np.ndarray
    grid: Grid
    model: SeriesModel
    soft: float
    noise: float
    mass: float  # one seed (HU mm^3)
    data_mass: float  # what of it shows in the data, after clipping (HU mm^3)
    faint: float  # faintest peak of one seed above the surroundings (HU)
    voxel_mm3: float
    floor: float | None = None  # bottom of the stored range (HU) when the image is cut there


@dataclass
class _Hypothesis:
    """Seeds fitted to one object: grid-frame centres and axes, per-seed mass ratios, and the fit's figures."""

    centres: np.ndarray
    axes: np.ndarray
    ratios: np.ndarray
    residual: float  # rms residual / object contrast
    margin: float  # score gap to the next-best k (larger: k clearer)
    alternative: int  # the next-best k
    position: np.ndarray  # object centroid (mm RAS)
    more: object = None  # the fit with one seed more (seed_model.Fit), when it was tried
    by_count: bool = False  # taken, or given k + 1 seeds, only because the expected count asked for more


def detect_seeds(ct, grid, expected_count=None, strength_u=None, plan_seeds=None, slice_thickness_mm=None,
                 threshold_hu=None, psf_mm=None, review_below=REVIEW_BELOW, progress=None):
    """Find I-125 seeds in a post-implant CT.

    Args:
        ct: CT values (HU) indexed [k, j, i] on ``grid``.
        grid: the CT geometry (mm, RAS; may be oblique, pixels may be anisotropic).
        expected_count: number of seeds implanted (from the plan), or None to trust the image alone.
        strength_u: air-kerma strength (U) given to every detected seed; default the median strength of
            ``plan_seeds``, else 1 U.
        plan_seeds: optional planned seeds; give the expected count and strength when those are None.
        slice_thickness_mm: reconstructed slice thickness (mm, DICOM SliceThickness); default the one whose
            seed images fit the series best (the noise shared by neighbouring slices where no seed is fitted).
        threshold_hu: level (HU) at which objects are cut instead of the one from the seed model.
        psf_mm: in-plane blur of the reconstruction (Gaussian sigma, mm); default 0.45 mm.
        review_below: confidence (0-1) under which a seed is marked "to review".
        progress: optional callback ``(fraction, message)``; returning False cancels.

    Returns:
        :class:`DetectionResult`.
    """
    if plan_seeds is not None:
        if len(plan_seeds) == 0:
            raise InputError("plan_seeds is empty: give the planned seeds or None")
        expected_count = len(plan_seeds) if expected_count is None else expected_count
        if strength_u is None:
            strength_u = float(np.median([s.strength_u for s in plan_seeds]))
    ct = _validate(ct, grid, expected_count, strength_u, slice_thickness_mm, psf_mm, review_below)
    if threshold_hu is not None and not math.isfinite(threshold_hu):
        raise InputError(f"threshold_hu {threshold_hu!r} invalid: must be a finite HU value")
    strength = 1.0 if strength_u is None else float(strength_u)
    values = ct if ct.dtype == np.int16 else ct.astype(np.float32, copy=False)  # int16: crops made float32 (_block)
    report(progress, 0.0, "seed detection: series")
    ctx, series_text = _context(values, grid, slice_thickness_mm, psf_mm)
    report(progress, 0.1, "seed detection: one seed's mass")
    initial = ctx.model
    n_calibrated = _calibrate(ctx, slice_thickness_mm is not None, psf_mm is not None)
    fitted = ctx.model is not initial  # seed-sized objects were found and the seed image fitted to them
    if slice_thickness_mm is None:
        # a resampled or interpolated series shares noise between slices beyond its slice profile: the seed
        # images tell the thickness, the noise only where no seed was fitted
        series_text += (f"; slice thickness {ctx.model.thickness_mm:.2f} mm fits the seed images best (noise "
                        f"shared by neighbouring slices suggested {initial.thickness_mm:.2f} mm)" if fitted else
                        f"; slice thickness {initial.thickness_mm:.2f} mm from the noise shared by neighbouring slices "
                        "(no seed image to fit)")
    if psf_mm is None and fitted:
        series_text += f", in-plane blur {ctx.model.psf_mm:.2f} mm fits the seed images best"
    series_text += f"; slice profile {ctx.model.ssp[0]:.2f} mm wide, edges sigma {ctx.model.ssp[1]:.2f} mm"
    series_text += (f"; seed marker {ctx.model.length_mm:.1f} mm" if ctx.model.marker_fraction else
                    "; seed without a dense marker")
    level = float(threshold_hu) if threshold_hu is not None else ctx.soft + 0.5 * _faintest_seen(ctx)
    series_text += (f"; seed mass from {n_calibrated} seed fits" if n_calibrated >= 3 else
                    "; seed mass: the default (too few seeds to fit)")
    report(progress, 0.2, "seed detection: objects")

    hypotheses, rejected, marginal = [], [], []
    objects = [(kji, level, ctx.soft) for kji in _objects(values, level)]
    if threshold_hu is None:
        objects = _in_low_surroundings(ctx, objects)
    for n, (kji, cut, base) in enumerate(objects):
        if n % 16 == 0:
            report(progress, 0.2 + 0.7 * n / max(len(objects), 1), "seed detection: fitting seeds")
        _examine(ctx, kji, cut, base, 0, hypotheses, rejected, marginal)

    unresolved = []
    if expected_count is not None:
        unresolved = _meet_count(ctx, hypotheses, expected_count)
        unresolved += _take_marginal(hypotheses, rejected, marginal, expected_count)
    fitted = [(h, q, _confidence(h, q)) for h in hypotheses for q in range(len(h.centres))]
    rows = detection_confidence.features(ctx, fitted)
    conf = detection_confidence.confidence(rows)
    order = np.argsort(-conf, kind="stable")
    out = [Seed(grid.origin + grid.direction @ fitted[i][0].centres[fitted[i][1]],
                grid.direction @ fitted[i][0].axes[fitted[i][1]], strength, f"D{r + 1}") for r, i in enumerate(order)]
    by_count = np.array([h.by_count for h, _q, _s in fitted], bool).reshape(-1)
    review = (conf[order] < review_below) | by_count[order]
    report(progress, 1.0, "seed detection: done")
    return DetectionResult(out, conf[order], level, ctx.soft + ctx.faint, ctx.mass, rejected, expected_count,
                           review, float(review_below), series_text, unresolved,
                           np.array([s for _h, _q, s in fitted]).reshape(-1)[order], rows[order])


def _context(values, grid, thickness, psf):
    step = max(1, values.size // 400_000)
    sample = values.reshape(-1)[::step]
    soft_sample = sample[(sample > -200) & (sample < 300)]
    soft = float(np.median(soft_sample)) if soft_sample.size else 0.0
    mid = values[values.shape[0] // 2]
    diff = np.diff(mid, axis=1)[(np.abs(mid[:, 1:] - soft) < 150) & (np.abs(mid[:, :-1] - soft) < 150)]
    noise = float(1.4826 * np.median(np.abs(diff)) / math.sqrt(2)) if diff.size > 100 else 20.0
    given = thickness is not None
    if thickness is None:
        thickness = estimate_thickness(values, grid.spacing[2], soft)
    thickness = max(float(thickness), float(grid.spacing[2]) * 0.5)
    clip = hu_scale.clip_level(values)
    model = SeriesModel(grid.spacing.copy(), thickness, DEFAULT_PSF_MM if psf is None else float(psf), clip)
    text = ((f"slice thickness {thickness:.2f} mm (given), " if given else "slice thickness not given, ")
            + f"increment {grid.spacing[2]:.2f} mm, in-plane blur {model.psf_mm:.2f} mm, "
            + (f"clipped at {clip:.0f} HU" if clip is not None else "not clipped"))
    ctx = _Context(values, grid, model, soft, max(noise, 1.0), DEFAULT_SEED_MASS, DEFAULT_SEED_MASS, 0.0,
                   float(np.prod(grid.spacing)), hu_scale.floor_level(values))
    ctx.faint = ctx.mass * min_peak_per_mass(model)
    return ctx, text


def _calibrate(ctx, thickness_given, psf_given):
    """The series' seed image and one seed's mass (HU mm^3), from the objects of a seed's size. Objects are
    gathered at 2000 HU (no bone reaches it) and lower levels (thick slices bring single seeds under 2000 HU,
    down to ``_POOL_FRACTION`` of the faintest peak a seed of the default mass has in this series). Seed
    image: the seed's marker and, without a given slice thickness, the thickness whose seed images fit best
    the brightest objects of the most common data mass (touching pairs and bundles are brighter, so the
    brightest objects would be groups); then the in-plane blur (when not given) and the slice profile's
    shape, one at a time. Mass: the most common (the mode of the log) fitted mass of the pooled objects that
    one seed fits well: a fitted mass, unlike a sum over voxels, is little moved by metal streaks."""
    top = float(ctx.values.max())
    pooled, centres = [], []
    levels = sorted({*_CALIBRATION_LEVELS, min(_CALIBRATION_LEVELS[-1], ctx.soft + _POOL_FRACTION * ctx.faint)},
                    reverse=True)
    for level in levels:
        if level >= top - 100:
            continue
        for kji in _objects(ctx.values, level):
            centre = kji.mean(0) * ctx.grid.spacing[::-1]
            if len(kji) < 3 or any(np.linalg.norm(centre - c) < SEED_LENGTH_MM for c in centres):
                continue
            block, mask, coords, lo = _block(ctx, kji)
            if block is None:
                continue
            bg = _background(ctx, block, mask)
            data_mass = _data_mass(ctx, block, mask, bg)
            if 0.2 * DEFAULT_SEED_MASS <= data_mass <= 4 * DEFAULT_SEED_MASS \
                    and _extent(ctx, block, mask, coords, bg) <= SEED_LENGTH_MM + 2.0:
                pooled.append((block, mask, coords, bg, data_mass, float(block[mask].max())))
                centres.append(centre)
    if not pooled:
        ctx.faint = ctx.mass * min_peak_per_mass(ctx.model)
        return 0
    logs = np.log([c[4] for c in pooled])
    mode = _mode(logs)
    near = [c for c, v in zip(pooled, logs) if abs(v - mode) < 2 * _MODE_BANDWIDTH]
    chosen = [c[:5] for c in sorted(near, key=lambda c: -c[5])[:_CALIBRATION_OBJECTS]]
    # the seed's marker length (seed models differ) and, when not given, the slice thickness
    thicknesses = [ctx.model.thickness_mm] if thickness_given else \
        [f * ctx.grid.spacing[2] for f in _THICKNESS_FACTORS]
    candidates = [dataclasses.replace(ctx.model, thickness_mm=thickness, length_mm=length, marker_fraction=fraction)
                  for thickness in thicknesses for length, fraction in _SEED_PROFILES]
    best = _best_response(ctx, candidates, chosen[:_SERIES_OBJECTS])
    # then the system response: the in-plane blur (when not given), then the slice sensitivity profile's shape
    if not psf_given:
        best = _best_response(ctx, [best] + [dataclasses.replace(best, psf_mm=p) for p in _PSF_CHOICES],
                              chosen[:_RESPONSE_OBJECTS])
    ctx.model = _best_response(ctx, [best] + [dataclasses.replace(best, ssp_width=w, ssp_edge=e)
                                              for w, e in _SSP_SHAPES], chosen[:_RESPONSE_OBJECTS])
    masses = []
    for c in pooled[:_MASS_OBJECTS]:
        fit, residual, _k = _calibration_fit(ctx, *c[:5])
        if residual <= _MAX_RESIDUAL:
            masses.append((float(fit.masses[0]), c[4]))
    if len(masses) >= 3:
        masses = np.array(masses)
        logs = np.log(masses[:, 0])
        near = np.abs(logs - _mode(logs)) < 2 * _MODE_BANDWIDTH
        ctx.mass = float(np.median(masses[near, 0]))
        ctx.data_mass = float(np.median(masses[near, 1]))
    ctx.faint = ctx.mass * min_peak_per_mass(ctx.model)
    return len(masses)


def _mode(logs):
    """The mode of a sample (Gaussian kernel density of bandwidth ``_MODE_BANDWIDTH``)."""
    grid = np.linspace(logs.min(), logs.max(), 200)
    density = np.exp(-0.5 * ((grid[:, None] - logs[None]) / _MODE_BANDWIDTH) ** 2).sum(1)
    return float(grid[int(np.argmax(density))])


def _best_response(ctx, models, objects):
    """Of the seed image ``models``, the one whose one-seed fits to ``objects`` have the smallest median
    relative residual (ties: the first)."""
    costs = []
    for model in models:
        ctx.model = model
        costs.append(float(np.median([_calibration_fit(ctx, *c)[1] for c in objects])))
    return models[int(np.argmin(costs))]


def _calibration_fit(ctx, block, mask, coords, bg, data_mass):
    """Free-mass fit of one seed; returns (fit, relative residual, 1)."""
    contrast = float(np.max(block[mask] - bg[mask]))
    fit = _fit(ctx, block, mask, coords, 1, bg, float(block[mask].max()), prior_fraction=0.0)
    return fit, math.sqrt(fit.rss / fit.n) / max(contrast, 1.0), 1


def _block(ctx, kji):
    """The voxels around an object: values, object mask, grid-frame coordinates (mm), lower corner (k, j, i)."""
    sp = ctx.grid.spacing
    margin = np.array([1 + int(ctx.model.thickness_mm > 1.5 * sp[2]), 3, 3])
    lo = np.maximum(kji.min(0) - margin, 0)
    hi = np.minimum(kji.max(0) + margin + 1, np.array(ctx.values.shape))
    if np.prod(hi - lo) > 60000:
        return None, None, None, None
    block = ctx.values[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].astype(np.float32, copy=False)
    mask = np.zeros(block.shape, bool)
    mask[tuple((kji - lo).T)] = True
    coords = [np.arange(lo[2], hi[2]) * sp[0], np.arange(lo[1], hi[1]) * sp[1], np.arange(lo[0], hi[0]) * sp[2]]
    return block, mask, coords, lo


def _background(ctx, block, mask):
    """The level (HU) under an object, per voxel of its block: the block outside the object grown by two
    voxels, carried inside by normalised Gaussian smoothing in-plane (2 mm; bone beside a seed continues
    under it); where nothing is near, the median outside."""
    outside = ~ndimage.binary_dilation(mask, _CONNECTIVITY, iterations=2)
    return _carry_in(ctx, block, outside, _surroundings(ctx, block, mask, outside))


def _surroundings(ctx, block, mask, outside=None):
    """The median (HU) of an object's block outside the object grown by two voxels (``outside``); soft tissue
    when fewer than 10 voxels are."""
    if outside is None:
        outside = ~ndimage.binary_dilation(mask, _CONNECTIVITY, iterations=2)
    return float(np.median(block[outside])) if outside.sum() >= 10 else ctx.soft


def _carry_in(ctx, values, outside, fallback):
    """``values`` (HU) where ``outside`` is set, carried across the rest by normalised Gaussian smoothing
    (2 mm in-plane, half a slice across); ``fallback`` (HU, scalar or per voxel) where nothing is near."""
    sigma = (0.5, 2.0 / ctx.grid.spacing[1], 2.0 / ctx.grid.spacing[0])
    weight = ndimage.gaussian_filter(outside.astype(np.float32), sigma, mode="constant")
    total = ndimage.gaussian_filter(np.where(outside, values, 0).astype(np.float32), sigma, mode="constant")
    return np.where(weight > 0.05, total / np.maximum(weight, 1e-6), fallback).astype(np.float32)


def _seed_background(ctx, block, mask, coords, bg, peak):
    """The level (HU per voxel) under an object on an edge (skin, lung, bone): the block less the image of one
    seed fitted to it (free mass), carried in (:func:`_carry_in`) from every voxel outside the object
    where that image is under ``_CLEAN_FRACTION`` of the object's contrast, not only from beyond the object
    grown by two voxels; ``bg`` where the fit fails."""
    fit = _fit(ctx, block, mask, coords, 1, bg, peak, prior_fraction=0.0)
    if not math.isfinite(fit.rss):
        return bg
    image = render(ctx.model, coords, fit.centres, fit.axes, fit.masses)
    outside = (image < _CLEAN_FRACTION * max(peak - float(np.median(bg[mask])), 1.0)) & ~mask
    return _carry_in(ctx, block - image, outside, bg)


def _lower_background(ctx, block, mask, bg):
    """A lower level (HU per voxel) under an object than ``bg``: capped at the lower quartile of the block
    outside the object (the cancellous bone or tissue a seed lies in, not the cortex beside it); None when
    that lowers it by less than 3 noise SDs on average over the object."""
    outside = ~ndimage.binary_dilation(mask, _CONNECTIVITY, iterations=2)
    if outside.sum() < 10:
        return None
    low = np.minimum(bg, np.float32(np.percentile(block[outside], 25)))
    if float(np.mean((bg - low)[mask])) < 3 * ctx.noise:
        return None
    return low


def _data_mass(ctx, block, mask, bg):
    grown = ndimage.binary_dilation(mask, _CONNECTIVITY)
    return float(np.sum(block[grown] - bg[grown])) * ctx.voxel_mm3


def _starts(ctx, block, mask, coords, k, bg):
    """Initial (centre, axis) of k seeds: weighted k-means of the object's voxels along its principal axis."""
    kk, jj, ii = np.nonzero(mask)
    pts = np.stack([coords[0][ii], coords[1][jj], coords[2][kk]], 1)
    w = np.maximum(block[mask] - bg[mask], 1.0)
    labels = _kmeans(pts, w, k)
    blur = ctx.model.blur_covariance()
    out = []
    for g in range(k):
        sel = labels == g
        if sel.sum() < 1:
            sel = np.ones(len(pts), bool)
        ww = w[sel] / w[sel].sum()
        c = ww @ pts[sel]
        d = pts[sel] - c
        cov = (d * ww[:, None]).T @ d - blur
        axis = np.linalg.eigh(cov)[1][:, -1]
        out.append((c, axis))
    return out


def _kmeans(points, weights, n, iterations=20):
    """Weighted k-means labels of ``points`` into ``n`` groups, started at quantiles of the principal axis."""
    if n == 1:
        return np.zeros(len(points), int)
    w = weights / weights.sum()
    centroid = w @ points
    d = points - centroid
    axis = np.linalg.eigh((d * w[:, None]).T @ d)[1][:, -1]
    order = np.argsort(d @ axis)
    cum = np.cumsum(w[order])
    centres = np.array([points[order[min(np.searchsorted(cum, (q + 0.5) / n), len(order) - 1)]]
                        for q in range(n)], float)
    labels = np.zeros(len(points), int)
    for _ in range(iterations):
        labels = np.argmin(np.linalg.norm(points[:, None] - centres[None], axis=-1), axis=1)
        new = np.array([np.average(points[labels == c], axis=0, weights=weights[labels == c])
                        if np.any(labels == c) else centres[c] for c in range(n)])
        if np.allclose(new, centres, atol=1e-3):
            break
        centres = new
    return labels


def _fit(ctx, block, mask, coords, k, bg, peak, prior_fraction=_PRIOR_FRACTION, previous=None, start=None,
         floor=None, weights=None):
    """The best of the fits of k seeds started one after another along the object's principal axis, side by
    side across it (k > 1: parallel seeds packed as in a bundle), at its k brightest voxels apart from one
    another (k > 1: seeds in a row, as along a needle on thick slices), and from ``previous`` (a fit of k - 1
    seeds) with one seed added where it leaves the most signal unexplained; or the fit from ``start`` alone
    (k (centre, axis) pairs, grid frame) when given. ``floor``, as :func:`.seed_model.fit_seeds` takes it: the
    level fitted and the floor censored; ``weights``: the voxels fitted (default the object grown by one)."""
    if weights is None:
        weights = ndimage.binary_dilation(mask, _CONNECTIVITY).astype(float)
    prior = prior_fraction * max(peak - float(np.median(bg[mask])), 1.0)
    if start is not None:
        return fit_seeds(ctx.model, coords, block, weights, start, ctx.mass, bg, prior, floor)
    along = _starts(ctx, block, mask, coords, k, bg)
    tries = [along]
    if k > 1:
        centre = np.mean([c for c, _a in along], axis=0)
        whole = _starts(ctx, block, mask, coords, 1, bg)[0][1]
        helper = np.array([1.0, 0, 0]) if abs(whole[0]) < 0.9 else np.array([0, 1.0, 0])
        e1 = np.cross(whole, helper)
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(whole, e1)
        ring_n = k if k <= 4 else k - 1
        radius = 0.9 / (2 * math.sin(math.pi / ring_n)) if k <= 4 else 0.9
        ring = [centre + radius * (math.cos(a) * e1 + math.sin(a) * e2) for a in np.arange(ring_n) * 2 * math.pi
                / ring_n] + ([centre] if k > 4 else [])
        tries.append([(c, whole) for c in ring])
        peaks = _peak_starts(block - bg, mask, coords, k)
        if peaks is not None:  # seeds in a row (a needle) on thick slices, where k-means along the axis fails
            tries.append([(c, whole) for c in peaks])
        if previous is not None:
            model_img = render(ctx.model, coords, previous.centres, previous.axes, previous.masses) + bg
            if ctx.model.clip_hu is not None:
                model_img = np.minimum(model_img, ctx.model.clip_hu)
            left = np.where(weights > 0, block - model_img, -np.inf)
            kk, jj, ii = np.unravel_index(np.argmax(left), left.shape)
            spot = np.array([coords[0][ii], coords[1][jj], coords[2][kk]])
            tries.append(list(zip(previous.centres, previous.axes)) + [(spot, whole)])
    if k == 1:  # thick slices: the seed may lie anywhere across the slice profile
        shift = 0.3 * ctx.model.thickness_mm
        if ctx.model.thickness_mm > 2.0:
            tries += [[(along[0][0] + np.array([0, 0, s]), along[0][1])] for s in (-shift, shift)]
    fits = [fit_seeds(ctx.model, coords, block, weights, t, ctx.mass, bg, prior, floor) for t in tries]
    return min(fits, key=lambda f: f.rss + f.prior)


def _peak_starts(signal, mask, coords, k):
    """Centres (grid frame, mm) of the k brightest voxels of ``signal`` (HU) in ``mask``, each at least
    ``_PEAK_APART_MM`` from the others, or None when there are fewer than k such voxels."""
    kk, jj, ii = np.nonzero(mask)
    pts = np.stack([coords[0][ii], coords[1][jj], coords[2][kk]], 1)
    chosen = []
    for n in np.argsort(-signal[mask], kind="stable"):
        if all(np.linalg.norm(pts[n] - c) >= _PEAK_APART_MM for c in chosen):
            chosen.append(pts[n])
            if len(chosen) == k:
                return chosen
    return None


def _min_separation(fit):
    """The smallest distance (mm) between the centre lines (+-1.5 mm) of two fitted seeds; inf for one seed, or
    when every pair's centres lie more than ``_FAR_MM`` apart along some axis (a seed that ran off to 1e200 mm
    would overflow the squares)."""
    k = len(fit.centres)
    if k < 2:
        return math.inf
    t = np.linspace(-1.5, 1.5, 13)
    lines = fit.centres[:, None] + t[None, :, None] * fit.axes[:, None]
    best = math.inf
    for a in range(k):
        for b in range(a + 1, k):
            if np.max(np.abs(fit.centres[a] - fit.centres[b])) <= _FAR_MM:
                best = min(best, float(np.min(np.linalg.norm(lines[a][:, None] - lines[b][None], axis=-1))))
    return best


def _faintest_seen(ctx, base=None):
    """The faintest peak (HU above ``base``, the surroundings; default soft tissue) of one seed in this series, as
    stored (clipped)."""
    if ctx.model.clip_hu is None:
        return ctx.faint
    return min(ctx.faint, ctx.model.clip_hu - (ctx.soft if base is None else base))


def _in_low_surroundings(ctx, objects):
    """``objects`` ((voxels k, j, i; level HU; surroundings HU) each) with those in low surroundings (lung, gas:
    ``_LOW_HU`` under soft tissue) cut again at half the faintest seed above those surroundings: where a seed's
    image stands above lung, not above soft tissue, a level set from soft tissue cuts only its top (or nothing).
    An object at that level that stands alone in the low region (:func:`.detection_candidates.enclosed_objects`)
    replaces the object it holds (or is added when it holds none); its surroundings are the median of its block
    outside it."""
    below = ctx.soft - _LOW_HU
    sample = ctx.values.reshape(-1)[::max(1, ctx.values.size // 400_000)]
    low = sample[sample < below]
    if low.size < 100:
        return objects
    level = float(np.median(low)) + 0.5 * _faintest_seen(ctx, float(np.median(low)))
    found = enclosed_objects(ctx.values, level, low_region(ctx.values, below))
    if not found:
        return objects
    shape = ctx.values.shape
    owner = {key: n for n, kji in enumerate(found) for key in np.ravel_multi_index(tuple(kji.T), shape).tolist()}
    inside = [owner.get(int(np.ravel_multi_index(tuple(o[0][0]), shape))) for o in objects]
    # one that holds two or more objects merged neighbours that the level above soft tissue kept apart: they stay
    held = {n for n in set(inside) - {None} if inside.count(n) == 1} | (set(range(len(found))) - set(inside))
    kept = [o for o, n in zip(objects, inside) if n not in held]
    for n in sorted(held):
        block, mask, _coords, _lo = _block(ctx, found[n])
        base = _surroundings(ctx, block, mask) if block is not None else ctx.soft
        kept.append((found[n], level, base))
    return sorted(kept, key=lambda o: tuple(o[0][0]))


def _examine(ctx, kji, level, base, depth, hypotheses, rejected, marginal):
    """Seeds in one object cut at ``level`` (HU) in surroundings ``base`` (HU: soft tissue, or lung), whose peak
    a seed's must pass (appends to ``hypotheses`` / ``rejected``; a rejected object that one seed explains but for a
    signal somewhat under one seed's goes to ``marginal`` as well, for a count).
    An object brighter than bone (BONE_MAX_HU) in which no seed is found over the background carried in
    from around it is looked at again over a lower one (:func:`_lower_background`: a seed in cancellous
    bone beside brighter cortex); the second look is kept when it finds seeds."""
    censored = _censored(ctx, kji)
    if censored is not None:
        hypotheses.append(censored)
        return
    looks = [_look(ctx, kji, level, base, depth, False)]
    if not looks[0][0] and looks[0][3]:
        looks.append(_look(ctx, kji, level, base, depth, True))
    found, refused, kept, _lower = looks[-1] if looks[-1][0] else looks[0]
    offset = len(rejected)
    hypotheses += found
    rejected += refused
    marginal += [(support, index + offset, h) for support, index, h in kept]


def _censored(ctx, kji):
    """Seeds in an object whose surroundings lie mostly at the bottom of the stored range (seeds in lung under the
    dark bands between seeds: the level under them is below the floor and the floor cuts their image), fitted with
    the level free per group of slices and the voxels at the floor censored (:func:`.seed_model.fit_seeds`), for
    k = 1, 2, ... seeds while the score improves; a :class:`_Hypothesis` when the best k explains the object with
    seeds of about one seed's mass, else None."""
    if ctx.floor is None:
        return None
    block, mask, coords, _lo = _block(ctx, kji)
    if block is None:
        return None
    near = ndimage.binary_dilation(mask, _CONNECTIVITY, iterations=2)
    floored = block <= ctx.floor
    around = near & ~mask  # the object's surroundings
    if not around.any() or float(np.mean(floored[around])) < _FLOORED:
        return None
    # slices whose surroundings are mostly at the floor share one level (nothing there tells them apart); each
    # other slice has its own, started at the median of its surroundings off the floor
    shut = [float(np.mean(fl[ar])) >= 0.5 if ar.any() else True for fl, ar in zip(floored, around)]
    groups = np.cumsum([not q for q in shut]) * np.logical_not(shut)
    levels = [ctx.floor] + [float(np.median(sl[ar & ~fl])) for sl, fl, ar, q in zip(block, floored, around, shut)
                            if not q]
    top = np.unravel_index(np.argmax(np.where(mask, block, -np.inf)), block.shape)  # the object's peak voxel
    peak, top_slice = float(block[top]), int(top[0])

    def dim(level):
        """Whether the peak stands above ``level`` (HU, its slice's) less than the faintest seed's does."""
        return peak - level < _PEAK_FRACTION * _faintest_seen(ctx, level)

    # seen as any seed is: a seed can always be hidden under the floor beside a noise blob, which stands only the
    # noise above its slice's level (known before the fit where that slice is off the floor)
    if not shut[top_slice] and dim(levels[groups[top_slice]]):
        return None
    flat = np.full(block.shape, ctx.floor, np.float32)
    fits, scores = {}, {}
    centre, axis = _starts(ctx, block, mask, coords, 1, flat)[0]
    # one seed: started along the object's axis and across the slices, at the floor and under it, and (thick
    # slices: the seed may lie anywhere across the slice profile) off the object's centre across the slice
    shifts = (0.0, -0.3, 0.3) if ctx.model.thickness_mm > 2.0 else (0.0,)
    singles = [([(centre + [0.0, 0.0, s * ctx.model.thickness_mm], a)], np.asarray(levels) - drop)
               for a in (axis, np.array([0.0, 0.0, 1.0])) for drop in (0.0, 0.5 * ctx.faint) for s in shifts]
    weights = near.astype(float)
    for k in range(1, _MAX_SEEDS + 1):
        if k == 1:
            fit = min((_fit(ctx, block, mask, coords, 1, flat, peak, start=start, floor=(ctx.floor, groups, lv),
                            weights=weights) for start, lv in singles), key=lambda f: f.rss + f.prior)
        else:  # the levels started where k - 1 seeds left them
            fit = _fit(ctx, block, mask, coords, k, flat, peak, previous=fits[k - 1],
                       floor=(ctx.floor, groups, fits[k - 1].levels), weights=weights)
        fits[k] = fit
        scores[k] = fit.n * math.log(max(fit.rss + fit.prior, 1e-9) / fit.n) + _CENSORED_PENALTY * k * math.log(fit.n)
        if k > 1 and scores[k] >= scores[k - 1]:
            break
    k = min(scores, key=scores.get)
    fit = fits[k]
    if not (math.isfinite(fit.rss) and np.all(np.isfinite(fit.centres))):
        return None
    residual = math.sqrt(fit.rss / fit.n) / max(peak - fit.background, 1.0)
    ratios = fit.masses / ctx.mass
    grown = ndimage.binary_dilation(mask, _CONNECTIVITY)
    level = fit.levels[groups][:, None, None]
    top_level = float(level[top_slice, 0, 0])
    if dim(top_level):
        return None
    # and every seed is seen: its image on the object's voxels reaches half the faintest seed's peak (a seed more
    # can hide under the floor beside the object)
    for c, a, m in zip(fit.centres, fit.axes, fit.masses):
        if float(np.max(render(ctx.model, coords, [c], [a], [m])[mask])) < 0.5 * _faintest_seen(ctx, top_level):
            return None
    if residual > _MAX_RESIDUAL or np.any(ratios < _MASS_RANGE[0]) or np.any(ratios > _MASS_RANGE[1]) \
            or _min_separation(fit) < _MIN_SEPARATION_MM or _outside(ctx, fit.centres, grown, coords) \
            or (k == 1 and _extent(ctx, block, mask, coords, flat) > SEED_LENGTH_MM + 3.0) \
            or _brighter(ctx, fit, block, grown, coords, level) is not None:
        return None  # not seeds (a clip, a fiducial, bone), or not seen well enough: examined as any other object
    others = {q: v for q, v in scores.items() if q != k}
    alt = min(others, key=others.get) if others else k
    margin = (others[alt] - scores[k]) / max(fit.n, 1) if others else 1.0
    return _Hypothesis(fit.centres, fit.axes, ratios, residual, margin, alt, ctx.grid.to_ras(kji.mean(0)[::-1]),
                       fits.get(k + 1))


def _look(ctx, kji, level, base, depth, lower):
    """(hypotheses, rejected, marginal, whether a lower background differs) of :func:`_examine_at`."""
    found, refused, kept = [], [], []
    differs = _examine_at(ctx, kji, level, base, depth, found, refused, kept, lower)
    return found, refused, kept, bool(differs)


def _examine_at(ctx, kji, level, base, depth, hypotheses, rejected, marginal, lower):
    """:func:`_examine` over the background carried in from around the object, or the ``lower`` one; returns
    True when the lower background differs from the carried one (a second look may differ), else None."""
    grid = ctx.grid
    block, mask, coords, lo = _block(ctx, kji)
    peak = float(ctx.values[tuple(kji.T)].max())
    centroid = grid.to_ras(kji.mean(0)[::-1])
    volume = len(kji) * ctx.voxel_mm3

    def reject(reason, ratio=float("nan")):
        rejected.append(RejectedCandidate(centroid, reason, peak, volume, ratio))

    floor = base + _PEAK_FRACTION * _faintest_seen(ctx, base)
    if peak < floor:
        reject(f"peak {peak:.0f} HU under {floor:.0f} HU, {_PEAK_FRACTION:g} of the faintest seed: bone, "
               "calcification or streak")
        return

    def deeper(reason, ratio=float("nan")):
        # a seed touching bone or metal: at a level half-way to the peak it stands alone
        if depth < _MAX_DEPTH and peak - level > 0.25 * ctx.faint:
            sub = level + 0.5 * (peak - level)
            block_values = ctx.values[tuple(kji.T)].astype(np.float32)
            inner = kji[block_values >= sub]
            for part in _split_components(inner):
                part_peak, bone = _bone_beside(ctx, kji, part)
                if part_peak < BONE_MAX_HU and part_peak - bone < _ABOVE_BONE * ctx.faint:
                    rejected.append(RejectedCandidate(
                        grid.to_ras(part.mean(0)[::-1]), f"peak {part_peak:.0f} HU only {part_peak - bone:.0f} HU "
                        f"above the bone beside it ({bone:.0f} HU; a seed stands >= "
                        f"{_ABOVE_BONE * ctx.faint:.0f} HU above): a cortex fragment",
                        part_peak, len(part) * ctx.voxel_mm3, float("nan")))
                    continue
                _examine(ctx, part, sub, base, depth + 1, hypotheses, rejected, marginal)
        else:
            reject(reason, ratio)

    if block is None:
        deeper(f"too large: {volume:.0f} mm3 above {level:.0f} HU: bone or other metal")
        return
    if np.any(kji[:, 1:] == 0) or np.any(kji[:, 1:] == np.array(ctx.values.shape[1:]) - 1):
        # the forward model needs the whole image of an object: one cut by the field of view is not all seen
        deeper("cut by the in-plane edge of the image: not all of it is seen (bone or metal at the edge of the "
               "field of view)")
        return
    bg = _background(ctx, block, mask)
    if np.ptp(bg[ndimage.binary_dilation(mask, _CONNECTIVITY)]) > _EDGE_HU:
        bg = _seed_background(ctx, block, mask, coords, bg, peak)
    # a second look over a lower background only where the object is brighter than any bone (it holds metal)
    low = _lower_background(ctx, block, mask, bg) if peak >= BONE_MAX_HU else None
    differs = True if low is not None else None
    if lower:
        bg = low
    ratio = _data_mass(ctx, block, mask, bg) / ctx.mass
    if ratio < _MIN_MASS:
        reject(f"too faint: {ratio:.2f} seed masses (< {_MIN_MASS:g}): noise, streak, bone edge or calcification",
               ratio)
        return differs
    if ratio > _MAX_SEEDS + 0.5:
        deeper(f"too heavy: {ratio:.1f} seed masses: bone or other metal", ratio)
        return
    length = _extent(ctx, block, mask, coords, bg)
    k0 = min(_MAX_SEEDS, max(1, int(round(ratio)), int(round(length / (SEED_LENGTH_MM + 1.0)))))
    scores, fits, problems = {}, {}, {}
    single = _clear_single(ctx, block, mask, coords, bg)
    if single is not None:
        # plainly one seed: its position and axis from the forward model started at its moments (which clipping
        # and the slice profile bias), the moments' where that fit fails (not finite, or off the object's voxels)
        fit = _fit(ctx, block, mask, coords, 1, bg, peak, start=[single[:2]])
        failed = not all(np.all(np.isfinite(v)) for v in (fit.rss, fit.axes)) \
            or _outside(ctx, fit.centres, ndimage.binary_dilation(mask, _CONNECTIVITY), coords)
        centre, axis = single[:2] if failed else (fit.centres[0], fit.axes[0])
        hypotheses.append(_Hypothesis(centre[None], axis[None], np.array([single[2]]), 0.0, 1.0, 1, centroid))
        return
    ks = sorted({max(1, k0 - 1), k0, min(_MAX_SEEDS, k0 + 1)})
    while ks:
        for k in ks:
            fit = _fit(ctx, block, mask, coords, k, bg, peak, previous=fits.get(k - 1))
            fits[k] = fit
            scores[k] = fit.n * math.log(max(fit.rss + fit.prior, 1e-9) / fit.n) + _PENALTY * k * math.log(fit.n)
            problems[k] = _problem(ctx, fit, peak, block, mask, coords, bg)
        valid = [q for q in fits if problems[q] is None]
        best = min(valid, key=scores.get) if valid else None
        # the best fit at the top of the range tried, or seeds too heavy: one seed more may be better still
        top = max(fits)
        heavy = np.mean(fits[top].masses) / ctx.mass > _MASS_RANGE[1] * 0.8
        ks = [top + 1] if top < _MAX_SEEDS and ((best is not None and best == top) or (best is None and heavy)) \
            else []
    if best == _MAX_SEEDS:
        # the most seeds an object is fitted with fit it best, and more might fit better still: not a group of
        # seeds (a seed beside a gold fiducial); a part of it may stand alone at a higher level
        deeper(f"{_MAX_SEEDS} seeds fit best, the most tried: more metal than a group of seeds", ratio)
        return
    if best is None:
        k = min(scores, key=scores.get)
        counts = len(hypotheses), len(rejected), len(marginal)
        deeper(f"not {k} seed(s): {problems[k]}", ratio)
        # rejected as a whole (nothing found deeper): one seed with somewhat less signal is kept in mind
        if 1 in fits and (len(hypotheses), len(rejected) - 1, len(marginal)) == counts \
                and length <= SEED_LENGTH_MM + 3.0 and \
                _problem(ctx, fits[1], peak, block, mask, coords, bg, (_SUPPORT_MARGINAL, _SUPPORT[1])) is None:
            fit = fits[1]
            residual = math.sqrt(fit.rss / fit.n) / max(peak - fit.background, 1.0)
            marginal.append((_support(ctx, fit, block, mask, coords, bg), len(rejected) - 1,
                             _Hypothesis(fit.centres, fit.axes, fit.masses / ctx.mass, residual, -1.0, 0, centroid)))
        return differs
    k, fit = best, fits[best]
    others = {q: scores[q] for q in valid if q != k}
    alt = min(others, key=others.get) if others else k
    margin = (others[alt] - scores[k]) / max(fit.n, 1) if others else 1.0
    ratios = fit.masses / ctx.mass
    residual = math.sqrt(fit.rss / fit.n) / max(peak - fit.background, 1.0)
    if k == 1 and length > SEED_LENGTH_MM + 3.0:
        deeper(f"too long: {length:.1f} mm for one seed of {SEED_LENGTH_MM:g} mm: clip, wire or needle", ratio)
        return
    if k >= 2:
        rod = _rod(ctx, block, mask, coords, bg)
        rod_mass = float(rod.masses[0]) / ctx.mass
        rod_score = rod.n * math.log(max(rod.rss, 1e-9) / rod.n) + _PENALTY * math.log(rod.n)
        # more mass than any group of seeds holds, or clearly better than the seeds and more than one seed's, or
        # (thin slices) better than the seeds and more than theirs
        if (rod_score < scores[k] and rod_mass > _MAX_SEEDS + 0.5) or \
                (rod.rss < _ROD_CLEARLY * (fit.rss + fit.prior) and rod_mass > _MASS_RANGE[1]) or \
                (ctx.model.thickness_mm <= _ROD_THIN_MM and rod.rss < fit.rss + fit.prior
                 and rod_mass > ratios.sum()):
            reject(f"one dense rod of {rod_mass:.1f} seed masses explains it better than {k} seeds: gold fiducial "
                   "or other dense metal", ratio)
            return
    hypotheses.append(_Hypothesis(fit.centres, fit.axes, ratios, residual, margin, alt, centroid, fits.get(k + 1)))


def _rod(ctx, block, mask, coords, bg):
    """The best fit (:class:`~.seed_model.Fit`) of one uniform dense rod of free mass (no mass prior) to an
    object, over the rod lengths and radii tried."""
    weights = ndimage.binary_dilation(mask, _CONNECTIVITY).astype(float)
    start = _starts(ctx, block, mask, coords, 1, bg)
    mass = _data_mass(ctx, block, mask, bg)
    # started at the mass in the data and above it: a clipped top hides most of a dense rod's mass
    fits = [fit_seeds(rod_model(ctx.model, length, radius), coords, block, weights, start, mass * more, bg, 0.0)
            for length in _ROD_LENGTHS for radius in _ROD_RADII for more in _ROD_MASS_STARTS]
    return min(fits, key=lambda f: f.rss)


def _clear_single(ctx, block, mask, coords, bg):
    """(centre, axis, mass ratio) from the intensity moments of an object that is plainly one seed: the mass
    of one seed as it shows in the data (clipping included), a seed's length and width after the blur is
    taken off; else None (the object is fitted)."""
    grown = ndimage.binary_dilation(mask, _CONNECTIVITY)
    kk, jj, ii = np.nonzero(grown)
    w = block[grown] - bg[grown]
    ratio = float(w.sum()) * ctx.voxel_mm3 / ctx.data_mass
    if not _SINGLE_DATA_MASS[0] <= ratio <= _SINGLE_DATA_MASS[1]:
        return None
    w = np.maximum(w, 0.0)
    pts = np.stack([coords[0][ii], coords[1][jj], coords[2][kk]], 1)
    c = (w / w.sum()) @ pts
    d = pts - c
    cov = (d * (w / w.sum())[:, None]).T @ d - ctx.model.blur_covariance()
    values, vectors = np.linalg.eigh(cov)
    length = math.sqrt(12 * max(values[-1], 0.0))
    width = math.sqrt(12 * max(values[-2], 0.0))
    if not (_SINGLE_LENGTH[0] <= length <= _SINGLE_LENGTH[1] and width <= _SINGLE_WIDTH):
        return None
    # the peak one seed makes there, as seen (clipped), against the object's own: streaks and bone are dimmer
    image = render(ctx.model, coords, [c], [vectors[:, -1]], [ctx.mass]) + bg
    if ctx.model.clip_hu is not None:
        image = np.minimum(image, ctx.model.clip_hu)
    seen = float(np.max(block[grown] - bg[grown]))
    expected = float(np.max((image - bg)[grown]))
    if not _SINGLE_PEAK[0] <= seen / max(expected, 1.0) <= _SINGLE_PEAK[1]:
        return None
    return c, vectors[:, -1], ratio * ctx.data_mass / ctx.mass


def _problem(ctx, fit, peak, block, mask, coords, bg, support_range=_SUPPORT):
    """Why a fit of k seeds does not describe seeds (None when it does): a residual too large for its
    contrast; seed masses not one seed's; seeds overlapping; a signal in the data outside
    ``support_range`` of what k seeds of one seed's mass make (less: bone, a calcification, which the mass
    prior would otherwise lift to a seed); or a peak far brighter than the fitted seeds make (denser metal
    whose mass sits in a small volume)."""
    if not all(np.all(np.isfinite(v)) for v in (fit.rss, fit.background, fit.centres, fit.axes, fit.masses)):
        return "the fit diverged (non-finite positions, axes or masses)"
    residual = math.sqrt(fit.rss / fit.n) / max(peak - fit.background, 1.0)
    if residual > _MAX_RESIDUAL:
        return f"residual {100 * residual:.0f}% of its contrast (bone, clip or calcification)"
    ratios = fit.masses / ctx.mass
    if np.any(ratios < _MASS_RANGE[0]) or np.any(ratios > _MASS_RANGE[1]):
        return f"seed masses {np.round(ratios, 2).tolist()} outside {_MASS_RANGE}"
    if _min_separation(fit) < _MIN_SEPARATION_MM:
        return f"seeds would overlap (centre lines < {_MIN_SEPARATION_MM} mm): dense metal such as a gold fiducial"
    grown = ndimage.binary_dilation(mask, _CONNECTIVITY)
    if _outside(ctx, fit.centres, grown, coords):
        return "a seed fitted outside the object"
    support = _support(ctx, fit, block, mask, coords, bg)
    if not support_range[0] <= support <= support_range[1]:
        return f"{support:.2f} of the signal {len(fit.centres)} seed(s) make (outside {support_range})"
    return _brighter(ctx, fit, block, grown, coords, bg)


def _brighter(ctx, fit, block, grown, coords, bg):
    """Why an object's peak above ``bg`` (HU) is not the fitted seeds' (it is far brighter than they make, as
    stored: denser metal whose mass sits in a small volume), or None."""
    image = render(ctx.model, coords, fit.centres, fit.axes, fit.masses)
    if ctx.model.clip_hu is not None:
        image = np.minimum(image, ctx.model.clip_hu - bg)
    seen, made = float(np.max((block - bg)[grown])), float(np.max(image[grown]))
    if seen > _BRIGHTER * made + 5 * ctx.noise:
        return f"peak {seen:.0f} HU above its surroundings, {seen / max(made, 1.0):.1f} times what the fitted seeds " \
               "make: denser metal (a gold fiducial)"
    return None


def _outside(ctx, centres, grown, coords):
    """True when a fitted seed centre (``centres``, (k, 3) mm in the block's frame) is not finite, or its nearest
    voxel is off the block or not one of the object's voxels grown by one (``grown``, the block's mask dilated).
    A seed that saw no voxel has no gradient and may run off to 1e20 mm: checked as floats before any cast."""
    first = np.array([coords[0][0], coords[1][0], coords[2][0]])
    where = np.rint((np.asarray(centres, float) - first) / ctx.grid.spacing)  # nearest voxel (i, j, k) in the block
    if not np.all(np.isfinite(where) & (where >= 0) & (where < np.array(grown.shape[::-1]))):
        return True
    ijk = where.astype(int)
    return not np.all(grown[ijk[:, 2], ijk[:, 1], ijk[:, 0]])


def _support(ctx, fit, block, mask, coords, bg):
    """The signal in the object (its voxels grown by one) over the signal of its fitted seeds at one seed's
    mass over the whole block: a seed fitted outside the object's voxels counts against it."""
    grown = ndimage.binary_dilation(mask, _CONNECTIVITY)
    image = render(ctx.model, coords, fit.centres, fit.axes, np.full(len(fit.centres), ctx.mass))
    if ctx.model.clip_hu is not None:
        image = np.minimum(image, ctx.model.clip_hu - bg)
    return float(np.sum(block[grown] - bg[grown])) / max(float(np.sum(image)), 1e-6)


def _extent(ctx, block, mask, coords, bg):
    """Deblurred length (mm) of an object: sqrt(12 x largest variance) of its intensity above ``bg``."""
    kk, jj, ii = np.nonzero(mask)
    pts = np.stack([coords[0][ii], coords[1][jj], coords[2][kk]], 1)
    w = np.maximum(block[mask] - bg[mask], 0.0) + 1e-6
    w /= w.sum()
    d = pts - w @ pts
    cov = (d * w[:, None]).T @ d - ctx.model.blur_covariance()
    return float(math.sqrt(12 * max(np.linalg.eigvalsh(cov)[-1], 0.0)))


def _bone_beside(ctx, kji, part):
    """(peak HU of ``part``, the level HU of what it touches: the 90th percentile of the voxels of ``kji``, the
    object it was cut from, within two voxels of it; -inf when none are)."""
    lo = np.maximum(part.min(0) - 2, 0)
    hi = part.max(0) + 3
    near = kji[np.all((kji >= lo) & (kji < hi), axis=1)] - lo
    own = np.zeros(tuple(hi - lo), bool)
    own[tuple((part - lo).T)] = True
    ring = ndimage.binary_dilation(own, _CONNECTIVITY, iterations=2) & ~own
    near = near[ring[tuple(near.T)]] + lo
    peak = float(ctx.values[tuple(part.T)].max())
    return peak, float(np.percentile(ctx.values[tuple(near.T)], 90)) if len(near) else -math.inf


def _split_components(kji):
    """26-connected parts of a voxel set (k, j, i)."""
    if len(kji) == 0:
        return []
    lo = kji.min(0)
    mask = np.zeros(tuple(kji.max(0) - lo + 1), bool)
    mask[tuple((kji - lo).T)] = True
    labels, n = ndimage.label(mask, _CONNECTIVITY)
    return [np.argwhere(labels == c) + lo for c in range(1, n + 1)]


def _confidence(h, q):
    """Raw confidence 0-1 of seed ``q`` of hypothesis ``h``: mass near one seed, small residual, clear k."""
    r = h.ratios[q]
    c_mass = math.exp(-0.5 * ((r - 1.0) / 0.35) ** 2)
    c_fit = math.exp(-0.5 * (h.residual / 0.08) ** 2)
    c_k = 1.0 / (1.0 + math.exp(-h.margin * 40.0))
    return float(c_mass * c_fit * c_k)


def _meet_count(ctx, hypotheses, n):
    """Where fewer seeds than ``n`` were found, take k + 1 seeds in the objects whose residuals support it
    nearly as well (smallest score margins first) and whose k + 1 fitted masses are each a seed's; never in
    an object of one seed's mass. Returns the positions (mm RAS) of objects where one more seed was
    possible but not taken."""
    found = sum(len(h.centres) for h in hypotheses)
    candidates = sorted((h for h in hypotheses if h.more is not None and h.alternative == len(h.centres) + 1),
                        key=lambda h: h.margin)
    unresolved = []
    for h in candidates:
        ratios = h.more.masses / ctx.mass
        plausible = (h.margin < _AMBIGUOUS_MARGIN and h.ratios.sum() >= len(h.centres) + 0.4
                     and np.all(ratios >= _MASS_RANGE[0]) and _min_separation(h.more) >= _MIN_SEPARATION_MM)
        if not plausible:
            continue
        if found >= n:
            unresolved.append(h.position)
            continue
        h.centres, h.axes, h.ratios = h.more.centres, h.more.axes, ratios
        h.margin = -h.margin
        h.by_count = True
        found += 1
    return unresolved


def _take_marginal(hypotheses, rejected, marginal, n):
    """Where fewer seeds than ``n`` were found, take the objects that one seed explains but for a signal
    somewhat under one seed's (a seed at the skin or a lung boundary, over a background the estimate puts too
    high), most signal first, as seeds to review; never more than ``n``. Returns the positions (mm RAS) of
    those left out."""
    found = sum(len(h.centres) for h in hypotheses)
    taken, left = [], []
    for _support_ratio, index, h in sorted(marginal, key=lambda m: -m[0]):
        if found < n:
            h.by_count = True
            hypotheses.append(h)
            taken.append(index)
            found += 1
        else:
            left.append(h.position)
    for index in sorted(taken, reverse=True):
        del rejected[index]
    return left
