"""Synthetic post-implant CT: I-125 seed capsules rendered into the neck phantom, with their ground truth.

Physics of the rendering (all lengths mm, CT values HU):

* Each seed is a titanium capsule (``SEED_LENGTH_MM`` x ``SEED_DIAMETER_MM``, a cylinder with round
  ends) of effective CT number ``capsule_hu``. Its partial-volume occupancy is supersampled per voxel
  over the voxel's in-plane footprint and over the *slice thickness* along K (a rectangular slice
  profile, which may be thicker than the K spacing for overlapping/interpolated series), then the
  image is blurred in-plane by the scanner's point-spread function. Thin capsules therefore peak far
  below ``capsule_hu``: thick slices give seed peaks of only ~1500-2000 HU.
* Metal streaks: bright and dark rays radiating in each axial slice (the grid's I-J plane) from
  every seed that crosses the slice, weighted by the seed length inside the slab, decaying with distance.
* Optional cortical-bone fragments (ellipsoidal shells) placed a few mm from chosen seeds, and other
  metal (needle fragments 1.2 mm x 20 mm) away from the seeds.
* Gaussian image noise, then the stored range (``max_hu``, 3071 HU for 12-bit scanners) clips.

The anatomy comes from :func:`SeedBrachyLib.synthetic.phantom.neck_phantom`; the grid may be oblique.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..grid import Grid
from ..seeds import Seed
from ..vectors import perpendicular_basis, tilted, unit
from .phantom import neck_phantom

SEED_LENGTH_MM = 4.5
SEED_DIAMETER_MM = 0.8
NEEDLE_FRAGMENT = (20.0, 1.2)  # length, diameter (mm) of an 18G needle fragment ("other metal")
_SUBSTEP_MM = 0.16  # supersampling step of the occupancy (mm)


@dataclass
class PostImplantScan:
    """A synthetic post-implant CT and its ground truth.

    Attributes:
        ct: CT values (HU), int16, indexed [k, j, i] on ``grid``.
        grid: CT geometry (mm, RAS).
        seeds: the true seeds (centres mm RAS, unit axes, S_K in U).
        slice_thickness_mm: reconstructed slice thickness (mm) along the grid's K axis.
        masks: the phantom's boolean masks on ``grid`` plus "BoneFragments" (cortical fragments added).
        distractors: non-seed objects rendered, each a dict with "kind" ("bone" or "needle") and
            "center" (mm RAS).
        description: text summary.
    """

    ct: np.ndarray
    grid: Grid
    seeds: list
    slice_thickness_mm: float
    masks: dict = field(default_factory=dict)
    distractors: list = field(default_factory=list)
    description: str = ""


# ---------------------------------------------------------------- geometry helpers
def _tilted(u, max_tilt_deg, rng):
    """A unit vector within ``max_tilt_deg`` of ``u``, uniform over the spherical cap."""
    cos_max = math.cos(math.radians(max_tilt_deg))
    cos_t = 1.0 - rng.random() * (1.0 - cos_max)
    return tilted(u, math.acos(cos_t), rng.random() * 2 * math.pi)


def segment_distance(p1, q1, p2, q2):
    """Shortest distance (mm) between segments p1-q1 and p2-q2 (points mm)."""
    d1, d2, r = q1 - p1, q2 - p2, p1 - p2
    a, e, f = d1 @ d1, d2 @ d2, d2 @ r
    c, b = d1 @ r, d1 @ d2
    denom = a * e - b * b
    s = np.clip((b * f - c * e) / denom, 0.0, 1.0) if denom > 1e-12 else 0.0
    t = (b * s + f) / e
    if t < 0.0:
        t, s = 0.0, np.clip(-c / a, 0.0, 1.0)
    elif t > 1.0:
        t, s = 1.0, np.clip((b - c) / a, 0.0, 1.0)
    return float(np.linalg.norm(p1 + d1 * s - (p2 + d2 * t)))


def _point_segment_distance(x, p, q):
    """Distance (mm) from point ``x`` to segment p-q (mm)."""
    d = q - p
    t = np.clip(((x - p) @ d) / max(float(d @ d), 1e-12), 0.0, 1.0)
    return float(np.linalg.norm(x - (p + t * d)))


def _seed_ends(seed):
    h = (SEED_LENGTH_MM - SEED_DIAMETER_MM) / 2.0
    return seed.position - seed.axis * h, seed.position + seed.axis * h


def _surface_gap(s1, s2):
    """Gap (mm) between two seed capsules' surfaces (negative when they overlap)."""
    return segment_distance(*_seed_ends(s1), *_seed_ends(s2)) - SEED_DIAMETER_MM


# ---------------------------------------------------------------- random implant
def random_implant(n_seeds, center_ras, radius_mm, needle_direction=(-1.0, 0.0, 0.0), touching_pairs=0,
                   min_spacing_mm=6.0, max_tilt_deg=20.0, strength_u=0.5, random_seed=0, inside=None):
    """Random seed positions and axes for a synthetic implant, deterministic for ``random_seed``.

    Seeds lie inside the sphere (``center_ras`` mm, ``radius_mm``) and, when given, where
    ``inside(points (n, 3) mm RAS) -> bool (n,)`` holds. Axes follow ``needle_direction`` tilted by up
    to ``max_tilt_deg`` degrees. Separate seeds keep centres >= ``min_spacing_mm`` apart and capsule
    surfaces >= 1 mm apart; ``touching_pairs`` of the ``n_seeds`` seeds are touching pairs, alternately
    end to end along one axis and at an angle (30-90 deg) touching at the end.

    Args:
        n_seeds: total number of seeds (>= 1), pairs included.
        center_ras, radius_mm: implant region (mm).
        needle_direction: insertion direction (RAS).
        touching_pairs: number of touching pairs (0 <= 2 * pairs <= n_seeds).
        min_spacing_mm: minimum centre distance between seeds not in a pair (mm).
        max_tilt_deg: maximum deviation of a seed axis from the needle direction (degrees).
        strength_u: air-kerma strength of every seed (U).
        random_seed: seed of the random generator.
        inside: optional region test, see above.

    Returns:
        list of :class:`~SeedBrachyLib.seeds.Seed` labelled "S1".. (partners of a pair "Sib").
    """
    if isinstance(n_seeds, bool) or not isinstance(n_seeds, (int, np.integer)) or n_seeds < 1:
        raise InputError(f"n_seeds {n_seeds!r} invalid: need an integer >= 1")
    if not (isinstance(touching_pairs, (int, np.integer)) and 0 <= 2 * touching_pairs <= n_seeds):
        raise InputError(f"touching_pairs {touching_pairs!r} invalid: need 0 <= 2 * pairs <= n_seeds ({n_seeds})")
    if not radius_mm > 0:
        raise InputError(f"radius_mm {radius_mm!r} invalid: must be > 0 mm")
    center = np.asarray(center_ras, dtype=float).reshape(3)
    needle = unit(needle_direction)
    rng = np.random.default_rng(random_seed)

    def region_ok(p):
        return np.linalg.norm(p - center) <= radius_mm and (inside is None or bool(np.all(inside(p[None]))))

    def fits(candidate, placed, mate=None):
        for s in placed:
            if s is mate:
                continue
            if np.linalg.norm(s.position - candidate.position) < min_spacing_mm or _surface_gap(s, candidate) < 1.0:
                return False
        return True

    seeds = []
    n_singles = n_seeds - 2 * touching_pairs
    for index in range(touching_pairs + n_singles):
        pair = index < touching_pairs
        for _attempt in range(5000):
            p = center + radius_mm * rng.uniform(-1, 1, 3)
            if not region_ok(p):
                continue
            first = Seed(p, _tilted(needle, max_tilt_deg, rng), strength_u, f"S{len(seeds) + 1}")
            if not fits(first, seeds):
                continue
            if not pair:
                seeds.append(first)
                break
            partner = _touching_partner(first, end_to_end=index % 2 == 0, rng=rng)
            if region_ok(partner.position) and fits(partner, seeds) and fits(partner, [first], mate=first):
                seeds += [first, partner]
                break
        else:
            raise InputError(f"cannot place {n_seeds} seeds {min_spacing_mm:g} mm apart in a "
                             f"{radius_mm:g} mm sphere: enlarge the region or reduce the count")
    return seeds


def _touching_partner(seed, end_to_end, rng):
    """A seed touching ``seed``: end to end on the same line, or at 30-90 deg touching its end."""
    sign = 1.0 if rng.random() < 0.5 else -1.0
    tip = seed.position + sign * seed.axis * SEED_LENGTH_MM / 2.0
    if end_to_end:
        axis = sign * seed.axis
    else:
        a, b = perpendicular_basis(seed.axis)
        angle = math.radians(rng.uniform(30.0, 90.0))
        phi = rng.random() * 2 * math.pi
        axis = math.cos(angle) * sign * seed.axis + math.sin(angle) * (math.cos(phi) * a + math.sin(phi) * b)
    # slide the partner out along its axis until its capsule just touches ``seed`` (bisection on the gap)
    lo, hi = 0.0, SEED_LENGTH_MM + SEED_DIAMETER_MM
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if _surface_gap(seed, Seed(tip + axis * mid, axis, seed.strength_u)) < 0.0:
            lo = mid
        else:
            hi = mid
    return Seed(tip + axis * hi, axis, seed.strength_u, seed.label + "b")


# ---------------------------------------------------------------- rendering
def _box(grid, lo_ras, hi_ras, thickness_mm):
    """Voxel index slices (k, j, i) covering the RAS box corners plus the slab half-thickness."""
    corners = np.array([[x, y, z] for x in (lo_ras[0], hi_ras[0]) for y in (lo_ras[1], hi_ras[1])
                        for z in (lo_ras[2], hi_ras[2])])
    ijk = grid.to_ijk(corners)
    pad = np.array([1.0, 1.0, 1.0 + 0.5 * thickness_mm / grid.spacing[2]])
    lo = np.maximum(np.floor(ijk.min(axis=0) - pad).astype(int), 0)
    hi = np.minimum(np.ceil(ijk.max(axis=0) + pad).astype(int) + 1, np.asarray(grid.dims))
    if np.any(hi <= lo):
        return None
    return tuple(slice(lo[a], hi[a]) for a in (2, 1, 0))


def _subsample_offsets(grid, thickness_mm):
    """Offsets (m, 3) in voxel units sampling a voxel's footprint (I, J) and slab (K) uniformly."""
    n_i = max(3, math.ceil(grid.spacing[0] / _SUBSTEP_MM))
    n_j = max(3, math.ceil(grid.spacing[1] / _SUBSTEP_MM))
    n_k = max(3, math.ceil(thickness_mm / _SUBSTEP_MM))
    half_k = 0.5 * thickness_mm / grid.spacing[2]
    oi = (np.arange(n_i) + 0.5) / n_i - 0.5
    oj = (np.arange(n_j) + 0.5) / n_j - 0.5
    ok = ((np.arange(n_k) + 0.5) / n_k - 0.5) * 2 * half_k
    return np.stack(np.meshgrid(oi, oj, ok, indexing="ij"), axis=-1).reshape(-1, 3)


def _paint(values, grid, box, thickness_mm, hu_at):
    """Replace the box's values by partial-volume averages: ``hu_at(ras (n, m, 3))`` gives HU or NaN outside."""
    k, j, i = np.meshgrid(*(np.arange(s.start, s.stop) for s in box), indexing="ij")
    centres = np.stack([i, j, k], axis=-1).reshape(-1, 1, 3).astype(float)
    sub = _subsample_offsets(grid, thickness_mm)
    hu = hu_at(grid.to_ras(centres + sub[None]))
    inside = np.isfinite(hu)
    occupancy = inside.mean(axis=1)
    mean_hu = np.where(inside, hu, 0.0).sum(axis=1) / np.maximum(inside.sum(axis=1), 1)
    block = values[box].reshape(-1)
    values[box] = (block * (1.0 - occupancy) + mean_hu * occupancy).reshape(values[box].shape)
    return occupancy.reshape(values[box].shape)


def _capsule_hu(p, q, diameter, hu):
    d = q - p
    d2 = max(float(d @ d), 1e-12)

    def hu_at(x):
        t = np.clip(((x - p) @ d) / d2, 0.0, 1.0)
        dist = np.linalg.norm(x - (p + t[..., None] * d), axis=-1)
        return np.where(dist <= diameter / 2.0, float(hu), np.nan)

    return hu_at


def render_capsule(values, grid, center, axis, length_mm, diameter_mm, hu, slice_thickness_mm):
    """Paint one capsule (mm, RAS) of CT number ``hu`` into float ``values`` [k,j,i] with partial volume.

    Returns the occupancy (0-1) of the painted box and its index slices, or None when off the grid.
    """
    axis = unit(axis)
    h = (length_mm - diameter_mm) / 2.0
    p, q = np.asarray(center, float) - axis * h, np.asarray(center, float) + axis * h
    r = diameter_mm / 2.0
    box = _box(grid, np.minimum(p, q) - r, np.maximum(p, q) + r, slice_thickness_mm)
    if box is None:
        return None
    return _paint(values, grid, box, slice_thickness_mm, _capsule_hu(p, q, diameter_mm, hu)), box


def _bone_fragment(values, grid, center, rotation, semi_axes, cortex_mm, cortical_hu, marrow_hu, thickness_mm):
    """Paint an ellipsoidal bone fragment (cortical shell ``cortex_mm`` thick around marrow)."""
    semi = np.asarray(semi_axes, float)
    inner = np.maximum(semi - cortex_mm, 0.1)
    reach = float(semi.max())
    box = _box(grid, center - reach, center + reach, thickness_mm)
    if box is None:
        return None

    def hu_at(x):
        local = (x - center) @ rotation
        outer_r = np.sum((local / semi) ** 2, axis=-1)
        inner_r = np.sum((local / inner) ** 2, axis=-1)
        return np.where(outer_r > 1.0, np.nan, np.where(inner_r <= 1.0, float(marrow_hu), float(cortical_hu)))

    return _paint(values, grid, box, thickness_mm, hu_at), box


def _streaks(values, grid, seeds, thickness_mm, amplitude_hu, rng, reach_mm=30.0, decay_mm=15.0, width_mm=0.5):
    """Add bright/dark rays in each axial slice (I-J plane) crossed by a seed."""
    n_rays = 8
    for seed in seeds:
        angles = rng.uniform(0, math.pi, n_rays)
        signs = np.where(np.arange(n_rays) % 2 == 0, 1.0, -1.0) * rng.uniform(0.5, 1.0, n_rays)
        p, q = _seed_ends(seed)
        c_ijk = grid.to_ijk(seed.position)
        ends_k = grid.to_ijk(np.array([p, q]))[:, 2]
        half = 0.5 * (thickness_mm + SEED_DIAMETER_MM) / grid.spacing[2]
        k_lo = max(int(math.floor(ends_k.min() - half)), 0)
        k_hi = min(int(math.ceil(ends_k.max() + half)) + 1, grid.dims[2])
        ri = int(math.ceil(reach_mm / grid.spacing[0]))
        rj = int(math.ceil(reach_mm / grid.spacing[1]))
        i0, i1 = max(int(c_ijk[0]) - ri, 0), min(int(c_ijk[0]) + ri + 1, grid.dims[0])
        j0, j1 = max(int(c_ijk[1]) - rj, 0), min(int(c_ijk[1]) + rj + 1, grid.dims[1])
        if k_lo >= k_hi or i0 >= i1 or j0 >= j1:
            continue
        dx = (np.arange(i0, i1) - c_ijk[0]) * grid.spacing[0]
        dy = (np.arange(j0, j1) - c_ijk[1]) * grid.spacing[1]
        x, y = np.meshgrid(dx, dy, indexing="xy")  # (nj, ni) in-plane mm from the seed centre
        r = np.hypot(x, y)
        pattern = np.zeros_like(r)
        for angle, sign in zip(angles, signs):
            across = np.abs(-math.sin(angle) * x + math.cos(angle) * y)
            pattern += sign * np.exp(-0.5 * (across / width_mm) ** 2)
        pattern *= amplitude_hu * np.exp(-r / decay_mm) * (1.0 - np.exp(-(r / 2.0) ** 2)) * (r <= reach_mm)
        # weight per slice: fraction of the seed's K extent falling within the slice slab
        length_k = abs(ends_k[1] - ends_k[0]) + SEED_DIAMETER_MM / grid.spacing[2]
        for k in range(k_lo, k_hi):
            lo, hi = k - 0.5 * thickness_mm / grid.spacing[2], k + 0.5 * thickness_mm / grid.spacing[2]
            seg_lo = min(ends_k) - 0.5 * SEED_DIAMETER_MM / grid.spacing[2]
            overlap = max(0.0, min(hi, seg_lo + length_k) - max(lo, seg_lo))
            weight = min(1.0, overlap / max(min(length_k, hi - lo), 1e-9))
            if weight > 0:
                values[k, j0:j1, i0:i1] += weight * pattern


def _place_bone(seeds, rng, count):
    """Centres, rotations and semi-axes of ``count`` bone fragments 1.5-3 mm from chosen seeds."""
    fragments = []
    for _attempt in range(count * 200):
        if len(fragments) == count:
            break
        seed = seeds[rng.integers(len(seeds))]
        a, b = perpendicular_basis(seed.axis)
        phi = rng.random() * 2 * math.pi
        u = math.cos(phi) * a + math.sin(phi) * b
        semi = rng.uniform([2.0, 3.0, 3.0], [3.0, 6.0, 6.0])
        v = _tilted(perpendicular_basis(u)[0], 90.0, rng)
        v = v - (v @ u) * u
        v /= np.linalg.norm(v)
        rotation = np.stack([u, v, np.cross(u, v)], axis=1)
        center = seed.position + u * (SEED_DIAMETER_MM / 2 + rng.uniform(1.5, 3.0) + semi[0])
        clear = all(_point_segment_distance(center, *_seed_ends(s)) > semi.max() + 1.5
                    for s in seeds if s is not seed)
        if clear:
            fragments.append((center, rotation, semi))
    return fragments


def _place_needles(seeds, rng, count, center, radius_mm):
    """Centres and axes of ``count`` needle fragments >= 8 mm from every seed."""
    placed = []
    length, diameter = NEEDLE_FRAGMENT
    for _attempt in range(count * 500):
        if len(placed) == count:
            break
        c = center + (radius_mm + 10.0) * rng.uniform(-1, 1, 3)
        axis = unit(rng.normal(size=3))
        p, q = c - axis * length / 2, c + axis * length / 2
        if all(segment_distance(p, q, *_seed_ends(s)) > 8.0 for s in seeds):
            placed.append((c, axis))
    return placed


def post_implant_ct(seeds, spacing_mm=(0.8, 0.8, 1.0), slice_thickness_mm=None, direction=None,
                    noise_hu=12.0, streak_hu=300.0, bone_fragments=0, needle_fragments=0,
                    capsule_hu=16000.0, cortical_hu=1000.0, psf_sigma_mm=0.35, max_hu=3071,
                    random_seed=0, node_center=(40.0, 8.0, 0.0)):
    """Render ``seeds`` into the neck phantom's CT as a post-implant scan.

    Args:
        seeds: list of :class:`~SeedBrachyLib.seeds.Seed` (mm RAS); may be empty.
        spacing_mm: voxel size (mm) along I, J, K of the CT grid (K = between slices).
        slice_thickness_mm: reconstructed slice thickness (mm); default the K spacing. Larger than the
            spacing gives an overlapping (interpolated) series.
        direction: optional 3x3 IJK-to-RAS direction (oblique grids allowed).
        noise_hu: standard deviation of Gaussian noise (HU).
        streak_hu: peak amplitude of the metal streaks next to a seed (HU); 0 for none.
        bone_fragments: number of cortical bone fragments placed 1.5-3 mm from seeds.
        needle_fragments: number of 1.2 x 20 mm needle fragments placed >= 8 mm from seeds.
        capsule_hu: CT number (HU) of a voxel fully inside a capsule, before blur and clipping.
        cortical_hu: CT number (HU) of the fragments' cortical bone.
        psf_sigma_mm: in-plane Gaussian point-spread function (mm).
        max_hu: upper end of the stored range (HU); values above are clipped.
        random_seed: seed for placement, streaks and noise.
        node_center: phantom lymph-node centre (mm RAS).

    Returns:
        :class:`PostImplantScan` with the CT (int16 HU) and the true seeds.
    """
    spacing = np.broadcast_to(np.asarray(spacing_mm, dtype=float), (3,))
    thickness = float(spacing[2] if slice_thickness_mm is None else slice_thickness_mm)
    if not (math.isfinite(thickness) and thickness > 0):
        raise InputError(f"slice_thickness_mm {slice_thickness_mm!r} invalid: must be > 0 mm")
    if noise_hu < 0 or streak_hu < 0 or psf_sigma_mm < 0:
        raise InputError(f"noise_hu {noise_hu!r}, streak_hu {streak_hu!r} and psf_sigma_mm {psf_sigma_mm!r} "
                         "must be >= 0")
    if not -1024 < max_hu <= 32767:
        raise InputError(f"max_hu {max_hu!r} invalid: the stored range ends between -1024 and 32767 HU (int16)")
    if bone_fragments and not seeds:
        raise InputError(f"bone_fragments {bone_fragments} need seeds to be placed near")
    seeds = list(seeds)
    case = neck_phantom(spacing_mm=spacing, direction=direction, node_center=node_center)
    grid = case.grid
    rng = np.random.default_rng(random_seed)
    values = case.ct.astype(np.float32)

    distractors = []
    bone_mask = np.zeros(grid.shape, dtype=bool)
    for center, rotation, semi in _place_bone(seeds, rng, int(bone_fragments)):
        painted = _bone_fragment(values, grid, center, rotation, semi, 1.5, cortical_hu, 350.0, thickness)
        if painted is not None:
            occupancy, box = painted
            bone_mask[box] |= occupancy > 0.5
            distractors.append({"kind": "bone", "center": center})
    if needle_fragments:
        c = np.mean([s.position for s in seeds], axis=0) if seeds else np.asarray(node_center, float)
        for center, axis in _place_needles(seeds, rng, int(needle_fragments), c, 20.0):
            if render_capsule(values, grid, center, axis, *NEEDLE_FRAGMENT, capsule_hu, thickness) is not None:
                distractors.append({"kind": "needle", "center": center})
    for seed in seeds:
        render_capsule(values, grid, seed.position, seed.axis, SEED_LENGTH_MM, SEED_DIAMETER_MM, capsule_hu,
                       thickness)
    if psf_sigma_mm > 0:
        values = ndimage.gaussian_filter(values, sigma=(0.0, psf_sigma_mm / spacing[1], psf_sigma_mm / spacing[0]),
                                         truncate=3.0)
    if streak_hu > 0:
        _streaks(values, grid, seeds, thickness, streak_hu, rng)
    if noise_hu > 0:
        values += rng.normal(0.0, noise_hu, values.shape).astype(np.float32)
    ct = np.clip(np.rint(values), -1024, max_hu).astype(np.int16)
    masks = dict(case.masks)
    masks["BoneFragments"] = bone_mask
    return PostImplantScan(
        ct=ct, grid=grid, seeds=seeds, slice_thickness_mm=thickness, masks=masks, distractors=distractors,
        description=(f"synthetic post-implant CT, {len(seeds)} I-125 seeds, {thickness:g} mm slices, "
                     f"{grid.describe()}, noise {noise_hu:g} HU, streaks {streak_hu:g} HU, "
                     f"{len(distractors)} distractors"))
