"""How far a registration can be trusted, from evidence other than its own metric value.

* Surface distance: points on the post-implant CT's bone surfaces (the ``BONE_HU`` iso-surface, to
  sub-voxel precision; the body outline at ``BODY_HU`` when the scan holds too little bone), mapped
  into the pre-plan CT, and their distance (mm) to the pre-plan's iso-surface there, estimated to
  first order as ``|I - level| / |grad I|`` (capped at ``CAP_MM``). Bone is rigid: after a correct
  rigid fit its surfaces coincide to a fraction of a millimetre; an unrelated image, or the wrong
  vertebra, leaves them millimetres apart.
* Overlap: the fraction of the post-implant CT's body (voxels above ``BODY_HU``) that lands inside the
  pre-plan CT.
* Agreement of independent starts: how many of the search's distinct starts converged to the best
  answer at the first local level.
* Sharpness and optimality: the optimiser's answer (before the consensus below) moved by 2 mm and
  2 degrees each way along and about each axis, scored with a mutual information computed here
  (not ITK's): every move must lower it
  (else the optimiser stopped short) and by a clear amount (else the images do not fix that motion,
  e.g. a scan that hardly changes along S).
* Repeatability over the metric's samples: the final optimisation run again from the answer on other
  independent sets of random samples; where the images weakly fix a motion (a scan that hardly changes
  along S), the optimum moves with the draw of the samples. The answer returned is the consensus of
  all of them (:func:`consensus`: the mean of their images of the target), and their spread about it
  (:func:`spread_mm`: root mean square, at the target) above ``SPREAD_LIMIT_MM`` flags the result.
  Measured on the bare neck phantom and the module self-test's scan (80 registrations, sampling seeds
  0-39, five sample sets): the first answer was 0.8-1.3 mm off in 18 of them (chosen among contenders
  on its own samples, it gains from their noise) where the consensus was 0.2-0.4 mm off (nearer the
  truth in 16 of the 18); spreads 0.07-0.56 mm, the two above 0.5 mm flagged for other reasons too.
* Alternative: the best distinct local optimum (more than ``AMBIGUITY_MM`` away over the region)
  and its metric gap; a near tie means the images cannot decide (e.g. repeating vertebrae).

Limits (mm, fractions) were set on tuning phantoms (Testing/benchmarks/bench_registration.py)
and are checked on separate test phantoms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial.transform import Rotation

BONE_HU = 250.0
BODY_HU = -500.0
MIN_SURFACE_POINTS = 200
MAX_SURFACE_POINTS = 20000
CAP_MM = 10.0
MIN_GRADIENT_HU_PER_MM = 30.0
SURFACE_LIMIT_MM = 1.0  # median surface distance above this: implausible
MIN_OVERLAP = 0.5  # fraction of the post-implant CT inside the pre-plan CT
AMBIGUITY_GAP = 0.02  # relative metric gap under which a distinct alternative is a tie
GAIN_LIMIT = 0.005  # a 2 mm / 2 deg move improving the fit by more than this: the optimum was not reached
DROP_MIN = 0.01  # a 2 mm / 2 deg move changing the fit by less than this (both ways): not constrained
SPREAD_LIMIT_MM = 0.5  # RMS distance (mm, at the target) of the answers on independent metric samples from their
# consensus above which the result is implausible (the consensus's own standard error is then ~0.25 mm for 5 sets)
AMBIGUITY_MM = 5.0  # an alternative optimum this far (mm, over the region) from the answer is a different fit


@dataclass(frozen=True)
class Quality:
    """Evidence about a registration (see the module docstring).

    Attributes:
        plausible: False when any check fails (``reasons`` say which, in words).
        surface: "bone" or "body outline" (the surfaces compared).
        surface_median_mm: median post -> pre surface distance (mm) after registration.
        surface_within_1mm: fraction of surface points within 1 mm.
        n_surface_points: surface points compared.
        overlap: fraction of the post-implant CT's body (metric voxels above ``BODY_HU``) inside the pre-plan CT.
        correlation: normalised cross-correlation of the body's intensities over the overlap (-1 to 1).
        starts_agreeing, n_starts: independent starts that reached the best answer of the first local
            level (within ``agreement_mm`` there), of all starts.
        alternative_mm: distance (mm, over the region) to the best distinct alternative optimum (0: none).
        alternative_gap: its relative metric gap (metric difference / |best metric|; inf: none).
        sharpness: smallest relative drop of the fit for a 2 mm / 2 deg move (see :func:`sensitivity`).
        best_move_gain: largest relative gain of the fit for such a move (<= 0 at an optimum).
        sample_spread_mm: spread (mm, RMS at the target, :func:`spread_mm`) of the answers of the final
            optimisation on independent sets of metric samples about their consensus (the result; inf: a fit failed).
        n_sample_sets: number of those sample sets.
        reasons: why it is implausible (empty when plausible).
    """

    plausible: bool
    surface: str
    surface_median_mm: float
    surface_within_1mm: float
    n_surface_points: int
    overlap: float
    correlation: float
    starts_agreeing: int
    n_starts: int
    alternative_mm: float
    alternative_gap: float
    sharpness: float = 0.0
    best_move_gain: float = 0.0
    sample_spread_mm: float = 0.0
    n_sample_sets: int = 1
    reasons: tuple = ()

    def describe(self):
        """One line: the verdict, then the figures (mm, fractions)."""
        figures = (f"{self.surface} surfaces {self.surface_median_mm:.2f} mm apart (median, "
                   f"{100 * self.surface_within_1mm:.0f}% within 1 mm, {self.n_surface_points} points), "
                   f"overlap {100 * self.overlap:.0f}%, correlation {self.correlation:.2f}, "
                   f"{self.starts_agreeing}/{self.n_starts} starts agree, 2 mm / 2 deg moves lower the fit by >= "
                   f"{100 * self.sharpness:.1f}%, {self.n_sample_sets} fits on independent metric samples "
                   f"within {self.sample_spread_mm:.2f} mm of their consensus (RMS at the target)")
        if self.alternative_mm > 0:
            figures += (f", next-best optimum {self.alternative_mm:.0f} mm away "
                        f"(metric gap {100 * self.alternative_gap:.1f}%)")
        if self.plausible:
            return f"quality: plausible ({figures})"
        return f"quality: IMPLAUSIBLE - {'; '.join(self.reasons)} ({figures})"


def displacement_mm(a, b, points):
    """Largest distance (mm) between the images of ``points`` (n, 3) under two 4x4 maps."""
    return float(np.max(np.linalg.norm((points @ a[:3, :3].T + a[:3, 3]) - (points @ b[:3, :3].T + b[:3, 3]),
                                       axis=1)))


def consensus(matrices, points, rigid=True):
    """The 4x4 map that takes ``points`` (n, 3 mm, not coplanar) to the mean of their images under ``matrices``
    (4x4 maps): for affine maps the mean matrix; with ``rigid``, the rotation and translation that fit those
    mean images best in the least-squares sense (Kabsch)."""
    mean = np.mean(np.asarray(matrices, float), axis=0)
    if not rigid:
        return mean
    target = points @ mean[:3, :3].T + mean[:3, 3]
    p0, t0 = points.mean(axis=0), target.mean(axis=0)
    u, _, vt = np.linalg.svd((target - t0).T @ (points - p0))
    rotation = u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = rotation, t0 - rotation @ p0
    return out


def spread_mm(matrices, centre, points):
    """Root mean square over ``matrices`` (4x4 maps) of their :func:`displacement_mm` (mm) from ``centre`` at
    ``points``."""
    return float(np.sqrt(np.mean([displacement_mm(m, centre, points) ** 2 for m in matrices])))


class _Sampler:
    """Linear interpolation of a SimpleITK image's array at physical (LPS mm) points, with its gradient."""

    def __init__(self, image, keep):
        self.values = sitk.GetArrayFromImage(image).astype(np.float32)
        self.keep = sitk.GetArrayFromImage(keep) > 0
        self.origin = np.asarray(image.GetOrigin())
        self.spacing = np.asarray(image.GetSpacing())
        self.direction = np.asarray(image.GetDirection()).reshape(3, 3)

    def index(self, points):
        """Continuous [k, j, i] indices of LPS points (n, 3)."""
        ijk = (points - self.origin) @ self.direction / self.spacing
        return ijk[:, ::-1].T

    def inside(self, points, use_keep=True):
        """Whether LPS points (n, 3) fall inside the image (and on its kept voxels, with ``use_keep``)."""
        kji = self.index(points)
        shape = np.array(self.values.shape)[:, None]
        ok = np.all((kji >= 0) & (kji <= shape - 1), axis=0)
        near = np.clip(np.rint(kji).astype(int), 0, shape - 1)
        return ok & self.keep[near[0], near[1], near[2]] if use_keep else ok

    def value(self, points):
        return ndimage.map_coordinates(self.values, self.index(points), order=1, mode="nearest")

    def gradient(self, points):
        """Gradient (HU/mm, LPS) by central differences of half a voxel along the world axes."""
        h = 0.5 * float(self.spacing.min())
        return np.stack([(self.value(points + h * e) - self.value(points - h * e)) / (2 * h)
                         for e in np.eye(3)], axis=1)

    def voxel_points(self, kji):
        """LPS points (n, 3) of voxel indices [k, j, i] (n, 3)."""
        return self.origin + (kji[:, ::-1] * self.spacing) @ self.direction.T


def _some_voxels(selected, n, rng):
    """Indices [k, j, i] (m, 3) of the voxels of bool ``selected``; ``n`` drawn at random when there are more."""
    flat = np.flatnonzero(selected)
    if len(flat) > n:
        flat = flat[rng.choice(len(flat), n, replace=False)]
    return np.stack(np.unravel_index(flat, selected.shape), axis=1)


def _surface_points(sampler, level, rng):
    """Sub-voxel points (LPS mm) on the ``level`` iso-surface of a sampler's image, inside its kept voxels."""
    v, keep = sampler.values, ndimage.binary_erosion(sampler.keep)
    above = v >= level
    cross = np.zeros_like(above)
    for axis in range(3):
        diff = np.diff(above, axis=axis)
        lo = [slice(None)] * 3
        lo[axis] = slice(0, -1)
        cross[tuple(lo)] |= diff
    kji = _some_voxels(cross & keep, MAX_SURFACE_POINTS, rng)
    points = sampler.voxel_points(kji.astype(float))
    if not len(points):
        return points
    g = sampler.gradient(points)
    g2 = np.sum(g * g, axis=1)
    ok = g2 >= MIN_GRADIENT_HU_PER_MM ** 2
    step = (sampler.value(points) - level)[ok] / g2[ok]
    return points[ok] - step[:, None] * g[ok]


def surface_distances(fixed, moving, matrix, level, rng):
    """Distances (mm) from the fixed image's ``level`` iso-surface, mapped by ``matrix`` (4x4 LPS, fixed ->
    moving), to the moving image's iso-surface (first order, capped at ``CAP_MM``)."""
    fixed_s, moving_s = _Sampler(fixed.image, fixed.keep), _Sampler(moving.image, moving.keep)
    points = _surface_points(fixed_s, level, rng)
    if not len(points):
        return np.zeros(0)
    mapped = points @ matrix[:3, :3].T + matrix[:3, 3]
    mapped = mapped[moving_s.inside(mapped)]
    if not len(mapped):
        return np.zeros(0)
    g = np.linalg.norm(moving_s.gradient(mapped), axis=1)
    d = np.abs(moving_s.value(mapped) - level) / np.maximum(g, MIN_GRADIENT_HU_PER_MM)
    return np.minimum(d, CAP_MM)


def _overlap_and_correlation(fixed, moving, matrix, rng, n=20000):
    fixed_s, moving_s = _Sampler(fixed.image, fixed.keep), _Sampler(moving.image, moving.keep)
    kji = _some_voxels(fixed_s.keep & (fixed_s.values > BODY_HU), n, rng)
    points = fixed_s.voxel_points(kji.astype(float))
    mapped = points @ matrix[:3, :3].T + matrix[:3, 3]
    inside = moving_s.inside(mapped, use_keep=False)
    overlap = float(inside.mean()) if len(inside) else 0.0
    if inside.sum() < 10:
        return overlap, 0.0
    a = fixed_s.values[tuple(kji[inside].T)]
    b = moving_s.value(mapped[inside])
    sa, sb = a.std(), b.std()
    correlation = float(np.mean((a - a.mean()) * (b - b.mean())) / (sa * sb)) if sa > 0 and sb > 0 else 0.0
    return overlap, correlation


def _mutual_information(a, b, bins=48):
    """Mutual information (nats) of paired samples (HU), joint histogram on fixed HU edges."""
    edges = np.linspace(-1000.0, 2000.0, bins + 1)
    joint, _, _ = np.histogram2d(np.clip(a, -1000, 2000), np.clip(b, -1000, 2000), bins=(edges, edges))
    p = joint / max(joint.sum(), 1.0)
    pa, pb = p.sum(axis=1, keepdims=True), p.sum(axis=0, keepdims=True)
    nz = p > 0
    return float(np.sum(p[nz] * np.log(p[nz] / (pa @ pb)[nz])))


MOVES = ("shift along R-L", "shift along A-P", "shift along S-I", "rotation about R-L", "rotation about A-P",
         "rotation about S-I", "scaling along R-L", "scaling along A-P", "scaling along S-I")
SCALE_STEP = 0.02  # relative scaling of the affine checks


def _moves(center, shift_mm, angle_deg, affine):
    """Perturbations (4x4 LPS maps of the moving frame) in MOVES order, each as (plus, minus): +-shift along
    x, y, z; +-rotation about them at ``center``; with ``affine`` also +-``SCALE_STEP`` scalings at ``center``."""
    out = []
    for kind in ("shift", "rotation", "scaling") if affine else ("shift", "rotation"):
        for axis in np.eye(3):
            pair = []
            for sign in (1.0, -1.0):
                m = np.eye(4)
                if kind == "shift":
                    m[:3, 3] = sign * shift_mm * axis
                elif kind == "scaling":
                    m[:3, :3] = np.diag(1.0 + sign * SCALE_STEP * axis)
                    m[:3, 3] = center - m[:3, :3] @ center
                else:
                    m[:3, :3] = Rotation.from_rotvec(sign * np.radians(angle_deg) * axis).as_matrix()
                    m[:3, 3] = center - m[:3, :3] @ center
                pair.append(m)
            out.append(pair)
    return out


def sensitivity(fixed, moving, matrix, center, rng, n=20000, shift_mm=2.0, angle_deg=2.0, affine=False):
    """How sharply the fit is defined, checked with a mutual information computed here (numpy, 48 bins).

    The answer ``matrix`` (4x4 LPS, fixed -> moving) is moved by each of :data:`MOVES` (``shift_mm``,
    ``angle_deg`` about ``center``, LPS mm; with ``affine`` also scalings), both ways. Returns (drops,
    gains, best move), one drop and gain per move:
    drop = (MI(0) - mean(MI(+), MI(-))) / MI(0), small when the images barely constrain that motion;
    gain = (max(MI(+), MI(-)) - MI(0)) / MI(0), positive when a move improves the fit (the optimiser
    stopped short); best move = the 4x4 perturbation with the largest gain (apply as ``move @ matrix``).
    """
    fixed_s, moving_s = _Sampler(fixed.image, fixed.keep), _Sampler(moving.image, moving.keep)
    kji = _some_voxels(fixed_s.keep & (fixed_s.values > BODY_HU), n, rng)
    points = fixed_s.voxel_points(kji.astype(float))
    values = fixed_s.values[tuple(kji.T)]
    mapped = points @ matrix[:3, :3].T + matrix[:3, 3]
    ok = moving_s.inside(mapped)
    values, mapped = values[ok], mapped[ok]
    if len(values) < 100:
        return np.zeros(9 if affine else 6), np.zeros(9 if affine else 6), np.eye(4)
    base = max(_mutual_information(values, moving_s.value(mapped)), 1e-12)
    drops, gains, best = [], [], (0.0, np.eye(4))
    for pair in _moves(center, shift_mm, angle_deg, affine):
        moved = [_mutual_information(values, moving_s.value(mapped @ m[:3, :3].T + m[:3, 3])) for m in pair]
        drops.append((base - 0.5 * sum(moved)) / base)
        gains.append((max(moved) - base) / base)
        if gains[-1] > best[0]:
            best = (gains[-1], pair[int(np.argmax(moved))])
    return np.array(drops), np.array(gains), best[1]


def assess(fixed, moving, matrix, first, contenders, region, agreement_mm, moves, sampling, random_seed=0):
    """The :class:`Quality` of ``matrix`` (4x4 LPS, fixed = post-implant -> moving = pre-plan).

    Args:
        fixed, moving: the finest registration levels (blur-matched), see :mod:`.registration_levels`.
        first: matrices reached from every start at the first local level, best first.
        contenders: (matrix, metric value) of the distinct answers compared at one level, best first.
        region: points (LPS mm) over which two answers are compared (see :func:`displacement_mm`).
        agreement_mm: two answers closer than this (mm) are the same.
        moves: (drops, gains) of :func:`sensitivity` at ``matrix`` (relative; with the scalings for an affine).
        sampling: (spread (mm), number of sample sets): the answers of the final optimisation on independent
            sets of metric samples about their consensus ``matrix``, see :func:`spread_mm` (inf: a fit failed).
    """
    rng = np.random.default_rng(random_seed)
    drops, gains = moves
    spread, n_sets = sampling
    surface = "bone"
    d = surface_distances(fixed, moving, matrix, BONE_HU, rng)
    if len(d) < MIN_SURFACE_POINTS:
        surface = "body outline"
        d = surface_distances(fixed, moving, matrix, BODY_HU, rng)
    overlap, correlation = _overlap_and_correlation(fixed, moving, matrix, rng)
    agreeing = sum(displacement_mm(m, first[0], region) <= agreement_mm for m in first)
    same = [value for m, value in contenders if displacement_mm(m, contenders[0][0], region) <= agreement_mm]
    others = [(m, value) for m, value in contenders if displacement_mm(m, contenders[0][0], region) > AMBIGUITY_MM]
    alternative_mm, gap = 0.0, float("inf")
    if others:
        best_value = min(same)
        alternative_mm = displacement_mm(others[0][0], contenders[0][0], region)
        gap = (others[0][1] - best_value) / max(abs(best_value), 1e-12)
    reasons = []
    median = float(np.median(d)) if len(d) else float("inf")
    if len(d) < MIN_SURFACE_POINTS:
        reasons.append(f"only {len(d)} bone or body-outline surface points to check the fit "
                       f"(>= {MIN_SURFACE_POINTS} needed): the images show too little common anatomy")
    elif median > SURFACE_LIMIT_MM:
        reasons.append(f"{surface} surfaces are {median:.1f} mm apart after registration (median; a correct fit "
                       f"gives <= {SURFACE_LIMIT_MM:g} mm): the images may not show the same anatomy, or the fit "
                       "is wrong")
    if gains.max() > GAIN_LIMIT:
        reasons.append(f"not at the best fit: a {MOVES[int(np.argmax(gains))]} by 2 mm / 2 deg / 2% improves it by "
                       f"{100 * gains.max():.1f}% (> {100 * GAIN_LIMIT:g}%)")
    if drops.min() < DROP_MIN:
        reasons.append(f"the images barely fix the {MOVES[int(np.argmin(drops))]}: 2 mm / 2 deg / 2% change the fit by "
                       f"{100 * drops.min():.1f}% (< {100 * DROP_MIN:g}%)")
    if not spread <= SPREAD_LIMIT_MM:
        reasons.append(f"the fit depends on the metric's random samples: on {n_sets} independent sets the answers lie "
                       f"{spread:.1f} mm from their consensus at the target (RMS; > {SPREAD_LIMIT_MM:g} mm: the images "
                       "weakly fix some motion): check it by eye, or restrict the registration to the region around "
                       "the target")
    if overlap < MIN_OVERLAP:
        reasons.append(f"only {100 * overlap:.0f}% of the post-implant CT lies inside the pre-plan CT "
                       f"(>= {100 * MIN_OVERLAP:.0f}% needed)")
    if others and gap < AMBIGUITY_GAP:
        reasons.append(f"a different alignment {alternative_mm:.0f} mm away fits almost as well (metric gap "
                       f"{100 * gap:.1f}% < {100 * AMBIGUITY_GAP:g}%; e.g. a neighbouring vertebra): restrict the "
                       "registration to the region around the target, or check it by eye")
    return Quality(plausible=not reasons, surface=surface, surface_median_mm=median,
                   surface_within_1mm=float(np.mean(d <= 1.0)) if len(d) else 0.0, n_surface_points=len(d),
                   overlap=overlap, correlation=correlation, starts_agreeing=int(agreeing), n_starts=len(first),
                   alternative_mm=alternative_mm, alternative_gap=gap, sharpness=float(drops.min()),
                   best_move_gain=float(gains.max()), sample_spread_mm=float(spread), n_sample_sets=int(n_sets),
                   reasons=tuple(reasons))
