"""Seeds and needles: positions in mm (RAS), unit axes, air-kerma strength S_K in U."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError
from .vectors import point, unit


@dataclass(frozen=True)
class Seed:
    """One implanted seed.

    Attributes:
        position: centre in RAS (mm).
        axis: unit vector along the seed (RAS); normalised on creation.
        strength_u: air-kerma strength S_K (U), > 0.
        label: free text (e.g. "N3-2" for needle N3, second seed).
    """

    position: np.ndarray
    axis: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 1.0]))
    strength_u: float = 1.0
    label: str = ""

    def __post_init__(self):
        pos = point(self.position, f"seed {self.label} position".replace("  ", " "))
        axis = unit(self.axis, f"seed {self.label} axis".replace("  ", " "))
        s = self.strength_u
        if isinstance(s, bool) or not isinstance(s, (int, float, np.floating, np.integer)) \
                or not math.isfinite(s) or s <= 0:
            raise InputError(f"seed {self.label} strength {s!r} U invalid: air-kerma strength must be > 0 U")
        object.__setattr__(self, "position", pos)
        object.__setattr__(self, "axis", axis)
        object.__setattr__(self, "strength_u", float(s))


@dataclass(frozen=True)
class Needle:
    """A straight needle from ``entry`` (skin, mm RAS) to ``tip`` (mm RAS)."""

    entry: np.ndarray
    tip: np.ndarray
    label: str = ""

    def __post_init__(self):
        entry = point(self.entry, f"needle {self.label} entry")
        tip = point(self.tip, f"needle {self.label} tip")
        if np.linalg.norm(tip - entry) < 1e-6:
            raise InputError(f"needle {self.label} entry and tip coincide at {entry.tolist()} mm")
        object.__setattr__(self, "entry", entry)
        object.__setattr__(self, "tip", tip)

    @property
    def direction(self):
        """Unit vector from entry to tip."""
        d = self.tip - self.entry
        return d / np.linalg.norm(d)

    @property
    def depth_mm(self):
        """Insertion depth, entry to tip (mm)."""
        return float(np.linalg.norm(self.tip - self.entry))


def seed_arrays(seeds):
    """Positions (n, 3) mm, unit axes (n, 3) and strengths (n,) U of a list of seeds."""
    if len(seeds) == 0:
        raise InputError("no seeds given: a plan needs at least one seed")
    return (np.array([s.position for s in seeds]), np.array([s.axis for s in seeds]),
            np.array([s.strength_u for s in seeds]))


def seeds_along(start, end, spacing_mm, strength_u, label=""):
    """Seeds every ``spacing_mm`` from ``start`` to ``end`` (mm RAS), axes along the line."""
    start, end = np.asarray(start, float), np.asarray(end, float)
    length = float(np.linalg.norm(end - start))
    if spacing_mm <= 0:
        raise InputError(f"seed spacing {spacing_mm!r} mm invalid: must be > 0")
    n = int(math.floor(length / spacing_mm + 1e-9)) + 1
    axis = (end - start) / length if length > 0 else np.array([0.0, 0.0, 1.0])
    return [Seed(start + axis * spacing_mm * i, axis, strength_u, f"{label}-{i + 1}" if label else "")
            for i in range(n)]
