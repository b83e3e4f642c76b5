"""Automatic detection of I-125 seeds in a post-implant CT.

Method (CT values HU, lengths mm, positions RAS):

1. Adaptive threshold. Bright objects are the connected components above ``min_peak_hu``; the
   typical seed peak ``P`` is the median peak of the brighter half of them (seeds are the brightest
   objects; thin slices clip at the top of the stored range, thick or interpolated slices peak at only
   ~1500-2000 HU). The threshold is 60% of the way from soft tissue to ``P`` (50% when a quarter or
   more of the peaks are clipped, since clipping hides how much the peaks vary).
2. Objects: 26-connected voxels above the threshold, grown by one voxel into half the threshold so a
   faint seed stays in one piece. An object's *mass*, the sum of (HU - soft tissue) x voxel volume, is
   conserved by partial volume and slice blur; the median mass of seed-length objects is the
   single-seed mass and round(mass / single-seed mass) the number of seeds in an object. Touching
   seeds are split into that many parts by weighted k-means started along the principal axis; the
   count is lowered while a part does not reach the threshold or two parts are < 3 mm apart.
3. Each seed's position is the intensity-weighted centroid (sub-voxel), its axis the principal
   component of the weighted second moments after subtracting the blur of voxel, slice profile,
   sampling and scanner PSF (a thick slice smears every object along K).
4. Rejection by size and shape: too little mass (noise, streak or bone edge), too much (bone, other
   metal), too long for its seed count (needle or wire), plate-like (cortical bone). An object so
   rejected that holds no more than a few seeds' worth of metal above the threshold (a seed touching
   bone, not a needle) is looked at again at a level half-way to its peak.
5. A second look below the threshold, away from the objects found: a thin rod with one seed's mass
   is a seed (a seed lying between two thick slices peaks far below the others).
6. A confidence per seed (0-1) from how well its mass, peak and length match a single seed.
7. With an expected count from the plan: keep the n most confident, or split objects whose mass
   allows another seed (then take back the best small candidates) until n are found.

Limits: a seed lying exactly between two contiguous thick slices (e.g. 3 mm) can peak below bone and
be missed; side-by-side touching seeds (< 3 mm apart) count as one; with contiguous 5 mm slices the
position along K is known only to about the slice thickness.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from ..errors import InputError
from ..grid import Grid
from ..progress import report
from ..seeds import Seed

SEED_LENGTH_MM = 4.5
_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)
_MAX_SEEDS_PER_COMPONENT = 4
_MIN_MASS_FRACTION = 0.25  # components lighter than this fraction of one seed are not seeds
_LENGTH_TOLERANCE_MM = 2.5  # allowed excess of a part's length over a seed's
_PLATE_RATIO = 0.5  # second / first principal length above which a part is plate-like
_FAINT_MASS_TOLERANCE = 0.4  # a faint object (below the threshold) is a seed within +-40% of one seed mass
_MIN_PART_DISTANCE_MM = 3.0  # 2/3 of a seed: closer split parts are one seed cut in two (side-by-side pairs stay one)
_REFINE_DEPTH = 2  # times a non-seed-like component is looked at again at a higher level
_PSF_SIGMA_MM = 0.4  # typical in-plane point-spread of a CT scanner (mm), removed from the moments
_THRESHOLD_FRACTION = 0.6  # of the typical seed peak above soft tissue
_SATURATED_FRACTION = 0.5  # the same when >= 1/4 of the bright peaks are clipped at the top of the range


@dataclass(frozen=True)
class RejectedCandidate:
    """A bright object that was not taken as a seed.

    Attributes:
        position: intensity-weighted centroid (mm RAS).
        reason: why it was rejected (text with the measured values).
        peak_hu: highest CT value in it (HU).
        volume_mm3: volume above the threshold (mm^3).
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
        seeds: detected :class:`~SeedBrachyLib.seeds.Seed` (centres mm RAS, unit axes, S_K in U),
            most confident first, labelled "D1", "D2", ...
        confidences: per seed, 0-1.
        threshold_hu: intensity threshold used (HU).
        seed_peak_hu: typical seed peak found in the scan (HU).
        single_seed_mass: mass of one seed, sum of (HU - soft tissue) x voxel volume (HU mm^3).
        rejected: :class:`RejectedCandidate` list with reasons.
        expected_count: the count asked for (None when not given).
    """

    seeds: list
    confidences: np.ndarray
    threshold_hu: float
    seed_peak_hu: float
    single_seed_mass: float
    rejected: list = field(default_factory=list)
    expected_count: int | None = None

    def summary(self):
        """One line of text with units and the method."""
        expected = "" if self.expected_count is None else f" (expected {self.expected_count})"
        mean_conf = float(np.mean(self.confidences)) if len(self.confidences) else 0.0
        return (f"{len(self.seeds)} seeds detected{expected}, {len(self.rejected)} candidates rejected; "
                f"threshold {self.threshold_hu:.0f} HU (a fixed fraction of the typical seed "
                f"peak {self.seed_peak_hu:.0f} HU above soft tissue), mean confidence {mean_conf:.2f}")


@dataclass
class _Part:
    """One seed hypothesis: a set of voxels (RAS, weights) from one component."""

    points: np.ndarray
    weights: np.ndarray
    peak: float
    component: int
    centroid: np.ndarray = None
    axis: np.ndarray = None
    lengths: np.ndarray = None  # deblurred principal lengths (mm), descending

    def measure(self, blur_cov):
        w = self.weights / self.weights.sum()
        self.centroid = w @ self.points
        d = self.points - self.centroid
        cov = (d * w[:, None]).T @ d - blur_cov
        values, vectors = np.linalg.eigh(cov)
        order = np.argsort(values)[::-1]
        self.axis = vectors[:, order[0]]
        # a uniform segment of length L has variance L^2 / 12
        self.lengths = np.sqrt(12.0 * np.maximum(values[order], 0.0))
        return self


def _validate(ct, grid, expected_count, strength_u, slice_thickness_mm):
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
    if slice_thickness_mm is not None and not (slice_thickness_mm > 0 and math.isfinite(slice_thickness_mm)):
        raise InputError(f"slice_thickness_mm {slice_thickness_mm!r} invalid: must be > 0 mm")
    return ct


def _blur_covariance(grid, thickness_mm):
    """RAS covariance (mm^2) added to an object's moments by imaging: voxel footprint (in-plane) or
    slice profile (K), sampling on the voxel lattice (spacing^2 / 12 per axis) and the scanner PSF."""
    sampling = grid.spacing ** 2 / 12
    var = sampling + np.array([grid.spacing[0] ** 2 / 12 + _PSF_SIGMA_MM ** 2,
                               grid.spacing[1] ** 2 / 12 + _PSF_SIGMA_MM ** 2,
                               thickness_mm ** 2 / 12])
    return grid.direction @ np.diag(var) @ grid.direction.T


def _kmeans_split(points, weights, n, iterations=30):
    """Weighted k-means of ``points`` into ``n`` groups, started at quantiles of the principal axis."""
    w = weights / weights.sum()
    centroid = w @ points
    d = points - centroid
    axis = np.linalg.eigh((d * w[:, None]).T @ d)[1][:, -1]
    proj = d @ axis
    order = np.argsort(proj)
    cum = np.cumsum(w[order])
    centres = np.array([points[order[np.searchsorted(cum, (q + 0.5) / n)]] for q in range(n)], dtype=float)
    labels = np.zeros(len(points), dtype=int)
    for _ in range(iterations):
        dist = np.linalg.norm(points[:, None, :] - centres[None], axis=-1)
        labels = np.argmin(dist, axis=1)
        new = np.array([np.average(points[labels == c], axis=0, weights=weights[labels == c])
                        if np.any(labels == c) else centres[c] for c in range(n)])
        if np.allclose(new, centres, atol=1e-4):
            break
        centres = new
    return labels


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
    rows, cols = linear_sum_assignment(np.where(dist <= gate_mm, dist, 1e6))
    keep = dist[rows, cols] <= gate_mm
    return np.stack([rows[keep], cols[keep]], axis=1), dist[rows[keep], cols[keep]]


def detect_seeds(ct, grid, expected_count=None, strength_u=None, plan_seeds=None, slice_thickness_mm=None,
                 threshold_hu=None, min_peak_hu=1000.0, progress=None):
    """Find I-125 seeds in a post-implant CT.

    Args:
        ct: CT values (HU) indexed [k, j, i] on ``grid``.
        grid: the CT geometry (mm, RAS; may be oblique).
        expected_count: number of seeds implanted (from the plan), or None to trust the image alone.
        strength_u: air-kerma strength (U) given to every detected seed; default the median strength of
            ``plan_seeds``, else 1 U.
        plan_seeds: optional planned seeds; give the expected count and strength when those are None.
        slice_thickness_mm: reconstructed slice thickness (mm); default the K spacing.
        threshold_hu: fixed threshold (HU) instead of the adaptive one.
        min_peak_hu: lowest peak (HU) a seed can have; the floor of the bright-object search.
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
    ct = _validate(ct, grid, expected_count, strength_u, slice_thickness_mm)
    if threshold_hu is not None and not math.isfinite(threshold_hu):
        raise InputError(f"threshold_hu {threshold_hu!r} invalid: must be a finite HU value")
    strength = 1.0 if strength_u is None else float(strength_u)
    thickness = float(grid.spacing[2] if slice_thickness_mm is None else slice_thickness_mm)
    values = ct.astype(np.float32, copy=False)
    report(progress, 0.0, "seed detection: threshold")

    soft = values[(values > -200) & (values < 300)]
    background = float(np.median(soft)) if soft.size else 0.0
    bright, n_bright = ndimage.label(values >= min_peak_hu, _CONNECTIVITY)
    if n_bright == 0 and threshold_hu is None:
        return DetectionResult([], np.zeros(0), float(min_peak_hu), float("nan"), float("nan"),
                               expected_count=expected_count)
    if n_bright:
        peaks = np.asarray(ndimage.maximum(values, bright, np.arange(1, n_bright + 1)))
        seed_peak = float(np.median(peaks[peaks >= np.median(peaks)]))
    else:
        seed_peak = float(threshold_hu)
    # a clipped typical peak understates how much brighter the best-aligned seeds are than the faintest
    saturated = n_bright and np.mean(peaks >= float(values.max())) >= 0.25
    fraction = _SATURATED_FRACTION if saturated else _THRESHOLD_FRACTION
    threshold = float(threshold_hu) if threshold_hu is not None else background + fraction * (seed_peak - background)
    report(progress, 0.2, "seed detection: components")

    blur = _blur_covariance(grid, thickness)
    ids = itertools.count(1)
    comps, taken = _objects(values, values >= threshold, threshold, background, grid, ids)
    if not comps:
        return DetectionResult([], np.zeros(0), threshold, seed_peak, float("nan"), expected_count=expected_count)
    report(progress, 0.5, "seed detection: sizes")

    # single-seed mass: median over components whose length fits one seed
    single = [c["mass"] for c in comps
              if _Part(c["points"], c["weights"], c["peak"], c["id"]).measure(blur).lengths[0]
              <= SEED_LENGTH_MM + _LENGTH_TOLERANCE_MM and c["mass"] > 0]
    masses = np.array(single if single else [c["mass"] for c in comps])
    unit = float(np.median(masses[masses >= _MIN_MASS_FRACTION * np.median(masses)]))

    parts, rejected, small = [], [], []
    scene = _Scene(values, grid, background, unit, blur, ids)
    comps += _classify(scene, comps, parts, rejected, small,
                       lambda f: report(progress, 0.5 + 0.3 * f, "seed detection: splitting"))
    # second look, below the threshold: a seed lying between two thick slices peaks far lower than the
    # typical seed; a faint object away from the others is a seed only if it has one seed's mass and shape
    if threshold > min_peak_hu:
        faint_core = (values >= min_peak_hu) & ~ndimage.binary_dilation(taken, _CONNECTIVITY, iterations=2)
        faint, _ = _objects(values, faint_core, float(min_peak_hu), background, grid, ids)
        faint = [c for c in faint if 1.0 - _FAINT_MASS_TOLERANCE <= c["mass"] / unit <= 1.0 + _FAINT_MASS_TOLERANCE
                 and _is_thin_rod(_Part(c["points"], c["weights"], c["peak"], c["id"]).measure(blur))]
        comps += faint + _classify(scene, faint, parts, rejected, small,
                                   lambda f: report(progress, 0.8 + 0.1 * f, "seed detection: faint seeds"))

    parts = [(p, _confidence(p, r, seed_peak, threshold)) for p, r, _count in parts]
    if expected_count is not None:
        parts = _meet_count(parts, comps, small, rejected, unit, blur, expected_count, seed_peak, threshold)
    parts.sort(key=lambda pc: -pc[1])
    seeds = [Seed(p.centroid, p.axis, strength, f"D{i + 1}") for i, (p, _c) in enumerate(parts)]
    report(progress, 1.0, "seed detection: done")
    return DetectionResult(seeds, np.array([c for _p, c in parts]), threshold, seed_peak, unit, rejected,
                           expected_count)


@dataclass
class _Scene:
    """What classifying a component needs: the image, its geometry and the single-seed scale."""

    values: np.ndarray
    grid: Grid
    background: float
    unit: float  # single-seed mass (HU mm^3)
    blur: np.ndarray  # imaging covariance (mm^2)
    ids: itertools.count


def _objects(values, core, level_hu, background, grid, ids, offset=(0, 0, 0)):
    """Objects: ``core`` voxels grown by one voxel into the half-``level_hu`` level (above soft tissue).

    Growing keeps a faint seed in one piece and counts its partial-volume tails in its mass, while bone
    further than one voxel from the metal stays out. ``values`` may be a sub-block starting at voxel
    ``offset`` (k, j, i) of ``grid``. Returns (list of component dicts, object mask).
    """
    low = values >= background + 0.5 * (level_hu - background)
    labels, n = ndimage.label((ndimage.binary_dilation(core, _CONNECTIVITY) & low) | core, _CONNECTIVITY)
    voxel_mm3 = float(np.prod(grid.spacing))
    comps = []
    for c, box in enumerate(ndimage.find_objects(labels), start=1):
        local = labels[box] == c
        kji = np.argwhere(local) + np.array([s.start for s in box]) + np.asarray(offset)
        w = np.maximum(values[box][local] - background, 1e-3)
        comps.append({"id": next(ids), "points": grid.to_ras(kji[:, ::-1].astype(float)), "weights": w,
                      "peak": float(values[box][local].max()), "volume": local.sum() * voxel_mm3,
                      "mass": float(w.sum()) * voxel_mm3, "kji": kji, "level": float(level_hu)})
    return comps, labels > 0


def _classify(scene, comps, parts, rejected, small, progress, depth=0):
    """Count the seeds in each component by mass, split, and reject by size and shape (appends to the lists).

    A component rejected as too large, too long or plate-like is looked at again at a higher level (half-way
    to its peak), which separates a seed from bone or metal it touches. Returns the components so made.
    """
    unit, blur, made = scene.unit, scene.blur, []
    for k, c in enumerate(comps):
        progress(k / len(comps))
        ratio = c["mass"] / unit
        whole = _Part(c["points"], c["weights"], c["peak"], c["id"]).measure(blur)

        def reject(reason, comp=c, part=whole, r=ratio):
            rejected.append(RejectedCandidate(part.centroid, reason, comp["peak"], comp["volume"], r))

        if ratio < _MIN_MASS_FRACTION:
            small.append((ratio, c))
            reject(f"too small: {ratio:.2f} seed masses (< {_MIN_MASS_FRACTION:g}): noise, streak or bone edge")
            continue
        count = max(1, int(round(ratio)))
        reason = None
        if count > _MAX_SEEDS_PER_COMPONENT:
            reason = (f"too large: {ratio:.1f} seed masses, {c['volume']:.0f} mm3 (> {_MAX_SEEDS_PER_COMPONENT} "
                      "seeds): bone or other metal")
        else:
            split = _split(c, count, blur)
            # every seed in a component reaches its level; a part that does not is bone or tails counted
            # as a seed's worth of mass: one seed fewer
            # as are two parts closer than _MIN_PART_DISTANCE_MM (k-means cutting one seed across its length)
            while count > 1 and (any(p.peak < c["level"] for p in split) or _closest_pair_mm(split)
                                 < _MIN_PART_DISTANCE_MM):
                count -= 1
                split = _split(c, count, blur)
            bad = [p for p in split if p.lengths[0] > SEED_LENGTH_MM + _LENGTH_TOLERANCE_MM]
            plate = [p for p in split if p.lengths[1] > max(_PLATE_RATIO * p.lengths[0], 2.0)]
            if bad:
                reason = (f"too long: {bad[0].lengths[0]:.1f} mm for {count} seed(s) of {SEED_LENGTH_MM:g} mm: "
                          "needle, wire or bone")
            elif plate:
                reason = f"plate-like: {plate[0].lengths[0]:.1f} x {plate[0].lengths[1]:.1f} mm: bone"
        if reason is None:
            parts += [(p, ratio / count, count) for p in split]
            continue
        reject(reason)
        # metal above the component's own level: a seed touching bone has little (the bone is dimmer), a
        # needle or wire a lot; only the former is looked at again at a higher level
        above = c["weights"][scene.values[tuple(c["kji"].T)] >= c["level"]]
        metal = float(above.sum()) * float(np.prod(scene.grid.spacing)) / unit
        if depth < _REFINE_DEPTH and metal <= _MAX_SEEDS_PER_COMPONENT:
            inner = _raise_level(scene, c)
            made += inner + _classify(scene, inner, parts, rejected, small, lambda f: None, depth + 1)
    return made


def _raise_level(scene, comp):
    """The objects inside ``comp`` at the level half-way between its own level and its peak (HU)."""
    kji = comp["kji"]
    lo, hi = kji.min(axis=0), kji.max(axis=0) + 1
    block = np.full(tuple(hi - lo), -1024.0, dtype=np.float32)
    block[tuple((kji - lo).T)] = scene.values[tuple(kji.T)]
    level = comp["level"] + 0.5 * (comp["peak"] - comp["level"])
    return _objects(block, block >= level, level, scene.background, scene.grid, scene.ids, offset=lo)[0]


def _closest_pair_mm(parts):
    """Smallest distance (mm) between the centroids of ``parts`` (inf for fewer than two)."""
    c = np.array([p.centroid for p in parts])
    if len(c) < 2:
        return math.inf
    d = np.linalg.norm(c[:, None] - c[None], axis=-1)
    return float(d[np.triu_indices(len(c), 1)].min())


def _is_thin_rod(part):
    """A seed-like rod: at least 2.5 mm long and at most 1 mm wide after deblurring (a seed: 4.5 x 0.8 mm)."""
    return part.lengths[0] >= 2.5 and part.lengths[1] <= 1.0


def _split(comp, count, blur):
    """Split a component into ``count`` measured parts."""
    if count == 1:
        return [_Part(comp["points"], comp["weights"], comp["peak"], comp["id"]).measure(blur)]
    labels = _kmeans_split(comp["points"], comp["weights"], count)
    top = comp["weights"].max()
    return [_Part(comp["points"][labels == g], comp["weights"][labels == g],
                  comp["peak"] - (top - comp["weights"][labels == g].max()), comp["id"]).measure(blur)
            for g in range(count) if np.count_nonzero(labels == g) >= 2]


def _confidence(part, mass_ratio, seed_peak, threshold):
    """0-1: mass near one seed, length near a seed's, peak near the typical seed peak."""
    c_mass = math.exp(-0.5 * ((mass_ratio - 1.0) / 0.3) ** 2)
    c_length = 1.0 if part.lengths[0] <= SEED_LENGTH_MM + 1.0 else \
        math.exp(-0.5 * ((part.lengths[0] - SEED_LENGTH_MM - 1.0) / 1.0) ** 2)
    c_peak = min(1.0, max(0.0, (part.peak - threshold) / max(seed_peak - threshold, 1.0)) + 0.5)
    return float(c_mass * c_length * min(c_peak, 1.0))


def _meet_count(parts, comps, small, rejected, unit, blur, n, seed_peak, threshold):
    """Keep the ``n`` most confident parts, or split heavy components / take back small ones to reach ``n``."""
    parts = sorted(parts, key=lambda pc: -pc[1])
    for p, conf in parts[n:]:
        rejected.append(RejectedCandidate(p.centroid, f"beyond the expected count {n} (confidence {conf:.2f})",
                                          p.peak, 0.0, float("nan")))
    parts = parts[:n]
    by_id = {c["id"]: c for c in comps}
    exhausted = set()
    while len(parts) < n:
        counts = {}
        for p, _conf in parts:
            if p.component not in exhausted:
                counts[p.component] = counts.get(p.component, 0) + 1
        # the component with the most mass per seed left is split into one more seed
        best = max(counts, key=lambda cid: by_id[cid]["mass"] / unit / (counts[cid] + 1), default=None)
        if best is not None and by_id[best]["mass"] / unit / (counts[best] + 1) >= 0.6:
            m = counts[best] + 1
            ratio = by_id[best]["mass"] / unit / m
            split = _split(by_id[best], m, blur)
            if len(split) < m:
                exhausted.add(best)
                continue
            parts = [pc for pc in parts if pc[0].component != best]
            parts += [(p, _confidence(p, ratio, seed_peak, threshold)) for p in split]
            continue
        if not small:
            break
        small.sort(key=lambda rc: -rc[0])
        ratio, comp = small.pop(0)
        part = _Part(comp["points"], comp["weights"], comp["peak"], comp["id"]).measure(blur)
        parts.append((part, _confidence(part, ratio, seed_peak, threshold)))
        rejected[:] = [r for r in rejected if not np.allclose(r.position, part.centroid)]
    return parts
