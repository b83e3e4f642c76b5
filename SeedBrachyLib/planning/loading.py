"""Seed loading patterns: each gives a complete plan from the candidate positions.

* ``uniform``: every needle loaded every ``seed_spacing_mm`` (mm) from its deepest
  candidate, neighbouring needles staggered by one candidate step (checkerboard on
  the template's column + row).
* ``peripheral``: only positions within ``rim_mm`` (mm) of the CTV surface, every
  ``seed_spacing_mm`` along each needle; the centre is left empty.
* ``modified_peripheral``: the peripheral loading plus central positions at twice
  the seed spacing (fewer central seeds, more peripheral), as in the
  "modified peripheral" loading used for lymph-node implants.
"""

from __future__ import annotations

import re
import time

import numpy as np

from ..errors import InputError
from .candidates import Plan

PATTERNS = ("uniform", "peripheral", "modified_peripheral")
DEFAULT_SEED_SPACING_MM = 10.0
DEFAULT_RIM_MM = 7.5


def _stagger(label, n, k):
    """Phase (0..k-1) of needle ``n``: (column + row) mod k for template labels like "C4", else n mod k."""
    m = re.fullmatch(r"([A-Z])(\d+)", label)
    return (ord(m.group(1)) + int(m.group(2))) % k if m else n % k


def _thin(indices, depths, spacing_mm):
    """Greedy from the tip: keep a position when it is >= spacing_mm (mm) from the last kept one."""
    kept, last = [], None
    for i in indices:
        if last is None or abs(last - depths[i]) >= spacing_mm - 1e-6:
            kept.append(i)
            last = depths[i]
    return kept


def load_pattern(candidates, pattern, strength_u, seed_spacing_mm=DEFAULT_SEED_SPACING_MM, rim_mm=DEFAULT_RIM_MM):
    """A complete plan loading ``candidates`` with ``pattern`` (one of :data:`PATTERNS`).

    Args:
        candidates: :class:`~SeedBrachyLib.planning.candidates.Candidates`.
        pattern: "uniform", "peripheral" or "modified_peripheral".
        strength_u: air-kerma strength per seed (U).
        seed_spacing_mm: spacing (mm) between seeds on a needle, >= the candidate spacing.
        rim_mm: depth (mm) under the CTV surface counted as peripheral.
    """
    t0 = time.perf_counter()
    if pattern not in PATTERNS:
        raise InputError(f"loading pattern {pattern!r} unknown: use one of {PATTERNS}")
    s = float(seed_spacing_mm)
    if not (np.isfinite(s) and s >= candidates.spacing_mm - 1e-6):
        raise InputError(f"seed spacing {seed_spacing_mm!r} mm invalid: must be >= the candidate spacing "
                         f"{candidates.spacing_mm:g} mm")
    if not (np.isfinite(rim_mm) and rim_mm > 0):
        raise InputError(f"peripheral rim {rim_mm!r} mm invalid: must be > 0 mm")
    k = max(1, int(round(s / candidates.spacing_mm)))
    depth, rim = candidates.depth_mm, candidates.surface_mm <= rim_mm
    chosen = []
    for n, pn in enumerate(candidates.needles):
        on = list(candidates.on_needle(n))
        if pattern == "uniform":
            chosen += on[_stagger(pn.label, n, k)::k] or on[:1]
            continue
        peripheral = _thin([i for i in on if rim[i]], depth, s)
        chosen += peripheral
        if pattern == "modified_peripheral":
            clear = [i for i in on if not rim[i] and all(abs(depth[i] - depth[j]) >= s - 1e-6 for j in peripheral)]
            chosen += _thin(clear, depth, 2.0 * s)
    if not chosen:
        raise InputError(f"pattern {pattern!r} with rim {rim_mm:g} mm selects no seed: no candidate lies within "
                         "the rim; use a larger rim or the uniform pattern")
    return Plan(pattern, candidates, np.array(chosen), strength_u, time.perf_counter() - t0)
