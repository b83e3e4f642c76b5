"""Implanted seeds with their groupings, and the non-seed objects around them (mm RAS).

Every seed carries tags naming its condition: "single", "end-to-end", "side-by-side", "bundle",
"clump3", "migrated", "in-bone", "near-bone". Capsules never overlap (centre lines >= 0.8 mm apart);
seeds of different groups keep a surface gap of at least ``GROUP_GAP_MM``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .anatomy import bone_depth
from .physics import CAPSULE_DIAMETER_MM, CAPSULE_LENGTH_MM

GROUP_GAP_MM = 2.0
_HALF = (CAPSULE_LENGTH_MM - CAPSULE_DIAMETER_MM) / 2  # half length of the capsule's centre line


@dataclass
class TrueSeed:
    position: np.ndarray
    axis: np.ndarray
    tags: set = field(default_factory=set)


def _unit(v):
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def _random_axis(rng):
    return _unit(rng.normal(size=3))


def _tilt(u, max_deg, rng):
    u = _unit(u)
    helper = np.array([1.0, 0, 0]) if abs(u[0]) < 0.9 else np.array([0, 1.0, 0])
    a = _unit(np.cross(u, helper))
    b = np.cross(u, a)
    t = math.radians(max_deg) * math.sqrt(rng.random())
    phi = rng.uniform(0, 2 * math.pi)
    return _unit(math.cos(t) * u + math.sin(t) * (math.cos(phi) * a + math.sin(phi) * b))


def line_distance(p1, u1, p2, u2, n=61):
    """Shortest distance (mm) between two seed centre lines (brute force over samples)."""
    t = np.linspace(-_HALF, _HALF, n)
    a = p1 + t[:, None] * u1
    b = p2 + t[:, None] * u2
    return float(np.min(np.linalg.norm(a[:, None] - b[None], axis=-1)))


def _fits(new, placed, min_gap):
    for s in placed:
        if np.linalg.norm(new[0] - s.position) > CAPSULE_LENGTH_MM + min_gap + 1:
            continue
        if line_distance(new[0], new[1], s.position, s.axis) < CAPSULE_DIAMETER_MM + min_gap:
            return False
    return True


def _group(kind, center, rng):
    """Seeds (position, axis) of one grouping around ``center``."""
    u = _random_axis(rng)
    helper = np.array([1.0, 0, 0]) if abs(u[0]) < 0.9 else np.array([0, 1.0, 0])
    a = _unit(np.cross(u, helper))
    b = np.cross(u, a)
    if kind == "end-to-end":
        step = CAPSULE_LENGTH_MM + rng.uniform(0.0, 0.3)
        return [(center - u * step / 2, u), (center + u * step / 2, _tilt(u, 5, rng))]
    if kind == "side-by-side":
        d = rng.uniform(0.82, 1.0)
        shift = rng.uniform(-1.0, 1.0)
        return [(center - a * d / 2, u), (center + a * d / 2 + u * shift, u)]
    if kind == "bundle":
        n = int(rng.integers(3, 6))
        ring = [np.zeros(2)] + [0.9 * np.array([math.cos(t), math.sin(t)]) for t in np.arange(n - 1) * 2 * math.pi / 6]
        return [(center + p[0] * a + p[1] * b + u * rng.uniform(-0.6, 0.6), u) for p in ring[:n]]
    if kind == "clump3":
        seeds = [(center, u)]
        while len(seeds) < 3:
            anchor = seeds[int(rng.integers(len(seeds)))]
            v = _random_axis(rng)
            p = anchor[0] + _unit(rng.normal(size=3)) * rng.uniform(0.9, 3.0)
            dmin = min(line_distance(p, v, q, w) for q, w in seeds)
            if CAPSULE_DIAMETER_MM <= dmin <= CAPSULE_DIAMETER_MM + 0.3:
                seeds.append((p, v))
        return seeds
    raise ValueError(kind)


def implant(anatomy, rng, n_needle_seeds, groups, in_bone, near_bone, migrated, needle_direction):
    """Seeds along parallel needles through the target, then the groupings, the seeds in and touching bone
    and the migrated ones. ``groups``: {kind: count}. Returns a list of :class:`TrueSeed`."""
    center, radius = anatomy.target
    placed = []
    d = _unit(needle_direction)
    helper = np.array([1.0, 0, 0]) if abs(d[0]) < 0.9 else np.array([0, 1.0, 0])
    a = _unit(np.cross(d, helper))
    b = np.cross(d, a)
    offsets = [(x, y) for x in np.arange(-radius, radius + 1, 10.0) for y in np.arange(-radius, radius + 1, 10.0)
               if x * x + y * y <= radius * radius]
    rng.shuffle(offsets)
    for x, y in offsets:
        base = center + x * a + y * b + rng.normal(scale=1.5, size=3)
        half = math.sqrt(max(radius * radius - x * x - y * y, 0))
        for t in np.arange(-half, half, rng.uniform(6.0, 10.0)):
            if len(placed) >= n_needle_seeds:
                break
            pos = base + d * (t + rng.uniform(-1, 1))
            axis = _tilt(d, 20, rng)
            if _fits((pos, axis), placed, GROUP_GAP_MM):
                placed.append(TrueSeed(pos, axis, {"single"}))
    for kind, count in groups.items():
        for _ in range(count):
            for _try in range(500):
                c = center + _unit(rng.normal(size=3)) * radius * rng.uniform(0.2, 1.3)
                members = _group(kind, c, rng)
                if all(_fits(m, placed, GROUP_GAP_MM) for m in members) and \
                        np.all(bone_depth(anatomy, np.array([m[0] for m in members])) < -3):
                    placed += [TrueSeed(p, v, {kind}) for p, v in members]
                    break
    for kind, count in (("in-bone", in_bone), ("near-bone", near_bone)):
        for _ in range(count):
            seed = _bone_seed(anatomy, kind, rng, placed)
            if seed is not None:
                placed.append(seed)
    for _ in range(migrated):
        for _try in range(500):
            p = center + _unit(rng.normal(size=3)) * rng.uniform(radius + 15, radius + 45)
            v = _random_axis(rng)
            if bone_depth(anatomy, p[None])[0] < -3 and anatomy.hu(p[None])[0] > -200 and \
                    _fits((p, v), placed, GROUP_GAP_MM):
                placed.append(TrueSeed(p, v, {"migrated"}))
                break
    return placed


def _bone_seed(anatomy, kind, rng, placed):
    """A seed in cancellous bone ("in-bone") or lying on the cortex outside it ("near-bone"), near the target."""
    center, radius = anatomy.target
    for _try in range(4000):
        p = center + _unit(rng.normal(size=3)) * rng.uniform(radius, radius + 40)
        depth = bone_depth(anatomy, p[None])[0]
        if kind == "in-bone" and not 2.5 < depth < 12:
            continue
        if kind == "near-bone" and not -1.0 < depth < -0.45:
            continue
        h = 0.3
        grad = np.array([bone_depth(anatomy, (p + h * e)[None])[0] - bone_depth(anatomy, (p - h * e)[None])[0]
                         for e in np.eye(3)])
        if np.linalg.norm(grad) < 1e-6:
            continue
        n = _unit(grad)
        v = _unit(np.cross(n, rng.normal(size=3))) if kind == "near-bone" else _random_axis(rng)
        ends = np.array([p - v * CAPSULE_LENGTH_MM / 2, p + v * CAPSULE_LENGTH_MM / 2])
        end_depth = bone_depth(anatomy, ends)
        ok = np.all(end_depth > 1.5) if kind == "in-bone" else np.all((end_depth < -0.4) & (end_depth > -2.5))
        if ok and _fits((p, v), placed, GROUP_GAP_MM):
            return TrueSeed(p, v, {kind})
    return None


def distractors(anatomy, rng, seeds, clips, fiducials, calcifications):
    """Non-seed objects near the target: (kind, centre mm, direction, size parameters)."""
    center, radius = anatomy.target
    out = []
    wanted = [("clip", clips), ("fiducial", fiducials), ("calcification", calcifications)]
    for kind, count in wanted:
        for _ in range(count):
            for _try in range(500):
                p = center + _unit(rng.normal(size=3)) * rng.uniform(0, radius + 25)
                if bone_depth(anatomy, p[None])[0] > -4 or anatomy.hu(p[None])[0] < -300:
                    continue
                if any(np.linalg.norm(p - s.position) < 9 for s in seeds) or \
                        any(np.linalg.norm(p - o["center"]) < 9 for o in out):
                    continue
                item = {"kind": kind, "center": p, "direction": _random_axis(rng)}
                if kind == "clip":
                    item.update(length=rng.uniform(6.0, 9.0), opening=math.radians(rng.uniform(12, 35)),
                                hu=rng.uniform(5500, 7500))
                elif kind == "fiducial":
                    item.update(length=rng.choice([3.0, 5.0]), diameter=rng.choice([0.9, 1.2]),
                                hu=rng.uniform(100000, 170000))
                else:
                    item.update(semi=rng.uniform(0.4, 1.6, 3), hu=rng.uniform(400, 1800))
                out.append(item)
                break
    return out
