"""Pelvis- and thorax-like anatomy as analytic shapes (mm RAS, HU), with cortical and cancellous bone.

Each shape gives a depth (mm, > 0 inside, approximately the distance to its surface). A bone is a shape
with a cortical shell of given thickness and HU and a cancellous interior with trabecular texture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree


@dataclass
class Ellipsoid:
    center: np.ndarray
    semi: np.ndarray
    rot: np.ndarray = field(default_factory=lambda: np.eye(3))

    def depth(self, p):
        q = ((p - self.center) @ self.rot) / self.semi
        return (1 - np.sqrt((q * q).sum(-1))) * float(np.min(self.semi))

    def bounds(self):
        r = float(np.max(self.semi))
        return self.center - r, self.center + r

    def nearest_surface(self, direction):
        """Surface point (mm) along ``direction`` from the centre and the outward normal there."""
        d = self.rot.T @ direction
        t = 1 / math.sqrt(float(((d / self.semi) ** 2).sum()))
        local = t * d
        normal = self.rot @ (local / self.semi ** 2)
        return self.center + self.rot @ local, normal / np.linalg.norm(normal)


@dataclass
class Cylinder:
    """Elliptic cylinder along z: centre, radii (x, y), half height (mm)."""

    center: np.ndarray
    radii: np.ndarray
    half_height: float

    def depth(self, p):
        d = p - self.center
        q = np.sqrt((d[..., 0] / self.radii[0]) ** 2 + (d[..., 1] / self.radii[1]) ** 2)
        return np.minimum((1 - q) * float(np.min(self.radii)), self.half_height - np.abs(d[..., 2]))

    def bounds(self):
        r = np.array([self.radii[0], self.radii[1], self.half_height])
        return self.center - r, self.center + r


@dataclass
class Tube:
    """A curved tube of ``radius`` (mm) around a polyline ``path`` (mm RAS, sampled densely)."""

    path: np.ndarray
    radius: float

    def __post_init__(self):
        self.tree = cKDTree(self.path)

    def depth(self, p):
        flat = p.reshape(-1, 3)
        lo, hi = self.bounds()
        out = np.full(len(flat), -1e3)
        near = np.all((flat >= lo) & (flat <= hi), axis=1)
        if near.any():
            out[near] = self.radius - self.tree.query(flat[near])[0]
        return out.reshape(p.shape[:-1])

    def bounds(self):
        return self.path.min(0) - self.radius - 1, self.path.max(0) + self.radius + 1


@dataclass
class Bone:
    shape: object
    cortex_mm: float
    cortical_hu: float
    cancellous_hu: float


@dataclass
class Anatomy:
    """Soft-tissue layers painted in order over air, then bones (the denser wins)."""

    name: str
    layers: list  # (shape, HU, minimum depth mm)
    bones: list
    target: tuple  # (centre mm RAS, radius mm) of the implanted region
    texture_seed: int = 0

    def hu(self, p):
        out = np.full(p.shape[:-1], -1000.0, np.float32)
        lo, hi = p.reshape(-1, 3).min(0), p.reshape(-1, 3).max(0)
        for shape, value, min_depth in self.layers:
            out[shape.depth(p) > min_depth] = value
        rng = np.random.default_rng(self.texture_seed)
        k = rng.normal(size=(10, 3))
        k *= (2 * math.pi / rng.uniform(1.5, 3.5, 10))[:, None] / np.linalg.norm(k, axis=1)[:, None]
        phase = rng.uniform(0, 2 * math.pi, 10)
        for bone in self.bones:
            b_lo, b_hi = bone.shape.bounds()
            if np.any(b_hi < lo) or np.any(b_lo > hi):
                continue
            d = bone.shape.depth(p)
            cortex = (d > 0) & (d <= bone.cortex_mm)
            inner = d > bone.cortex_mm
            out[cortex] = np.maximum(out[cortex], bone.cortical_hu)
            if inner.any():
                q = p[inner]
                texture = np.cos(q @ k.T + phase).sum(1) * 25.0
                out[inner] = np.maximum(out[inner], bone.cancellous_hu + texture)
        return out


def _ellipse_path(center, rx, ry, z0, theta0, theta1, rise, step=0.3):
    n = max(int(abs(theta1 - theta0) * max(rx, ry) / step), 2)
    t = np.linspace(theta0, theta1, n)
    return np.stack([center[0] + rx * np.cos(t), center[1] + ry * np.sin(t), z0 + rise * (t - theta0)], 1)


def pelvis(rng):
    """Prostate region: body, fat, bladder, rectum, pubic bones, femoral heads and necks, sacrum."""
    cort = rng.uniform(1150, 1650)
    layers = [(Cylinder(np.zeros(3), np.array([170.0, 115.0]), 500), -100.0, 0.0),
              (Cylinder(np.zeros(3), np.array([170.0, 115.0]), 500), 48.0, 14.0),
              (Ellipsoid(np.array([0, 45.0, 25]), np.array([38.0, 30, 30])), 8.0, 0.0),
              (Ellipsoid(np.array([0, 2.0, 0]), np.array([22.0, 18, 20])), 38.0, 0.0),
              (Ellipsoid(np.array([0, -32.0, 0]), np.array([14.0, 12, 40])), 30.0, 0.0),
              (Ellipsoid(np.array([0, -33.0, 5]), np.array([6.0, 5, 12])), -900.0, 0.0)]
    bones = [Bone(Ellipsoid(np.array([s * 16.0, 44, -8]), np.array([20.0, 9, 14]),
                            _rot_z(s * 35)), 1.6, cort, 280.0) for s in (-1, 1)]
    bones += [Bone(Ellipsoid(np.array([s * 92.0, 5, 5]), np.array([24.0, 24, 24])), 2.5, cort + 100, 300.0)
              for s in (-1, 1)]
    bones += [Bone(Ellipsoid(np.array([s * 60.0, -25, -30]), np.array([14.0, 20, 30])), 2.0, cort, 260.0)
              for s in (-1, 1)]
    bones += [Bone(Ellipsoid(np.array([0, -85.0, 15]), np.array([42.0, 14, 45])), 1.5, cort - 200, 240.0)]
    return Anatomy("pelvis", layers, bones, (np.array([0.0, 2.0, 0.0]), 20.0), int(rng.integers(1 << 30)))


def thorax(rng):
    """Paravertebral region: body, lungs, mediastinum, vertebrae with discs, ribs, sternum."""
    cort = rng.uniform(1100, 1600)
    layers = [(Cylinder(np.zeros(3), np.array([160.0, 110.0]), 500), -100.0, 0.0),
              (Cylinder(np.zeros(3), np.array([160.0, 110.0]), 500), 45.0, 10.0)]
    layers += [(Ellipsoid(np.array([s * 72.0, 10, 0]), np.array([58.0, 75, 150])), -850.0, 0.0) for s in (-1, 1)]
    layers += [(Ellipsoid(np.array([0, 25.0, 0]), np.array([35.0, 40, 150])), 40.0, 0.0)]
    bones = []
    for z in np.arange(-84.0, 85.0, 28.0):
        bones.append(Bone(Cylinder(np.array([0, -55.0, z]), np.array([21.0, 17]), 11.0), 1.2, cort, 230.0))
        bones.append(Bone(Ellipsoid(np.array([0, -92.0, z - 4]), np.array([5.0, 16, 9])), 1.2, cort, 250.0))
        bones.append(Bone(Tube(_ellipse_path((0, -72), 18, 10, z, -0.2 * math.pi, -0.8 * math.pi, 0.0), 4.0),
                          1.2, cort, 250.0))
        for s in (-1, 1):
            arc = _ellipse_path((0, -5), 135, 95, z + 4, math.radians(-75), math.radians(55), -4.0)
            arc[:, 0] *= s
            neck = np.linspace((s * 22.0, -62.0, z + 4), arc[0], 40)
            bones.append(Bone(Tube(np.concatenate([neck, arc]), 5.0), 1.3, cort, 300.0))
    bones.append(Bone(Ellipsoid(np.array([0, 98.0, 0]), np.array([16.0, 6, 80])), 1.2, cort, 250.0))
    return Anatomy("thorax", layers, bones, (np.array([34.0, -48.0, 0.0]), 16.0), int(rng.integers(1 << 30)))


def _rot_z(deg):
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def bone_depth(anatomy, p):
    """Largest depth (mm) inside any bone at points ``p`` (mm RAS); negative outside all bones."""
    return np.max([b.shape.depth(p) for b in anatomy.bones], axis=0)
