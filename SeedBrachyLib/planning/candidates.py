"""Candidate seed positions along needles and a plan (a chosen subset of them); positions in mm RAS."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..seeds import Seed
from ..sources import DEFAULT_U_PER_MCI, u_to_mci

MIN_CANDIDATE_SPACING_MM = 5.0
MAX_CANDIDATE_SPACING_MM = 10.0


@dataclass
class Candidates:
    """Possible seed positions on the needles.

    Attributes:
        needles: list of :class:`~SeedBrachyLib.planning.template.PlannedNeedle`.
        positions: (n, 3) RAS mm.
        needle_index: (n,) index into ``needles``.
        depth_mm: (n,) distance (mm) from the needle's skin entry.
        surface_mm: (n,) distance (mm) from the position to the CTV surface (inside the CTV).
        spacing_mm: spacing (mm) between positions along a needle.
    """

    needles: list
    positions: np.ndarray
    needle_index: np.ndarray
    depth_mm: np.ndarray
    surface_mm: np.ndarray
    spacing_mm: float

    def __len__(self):
        return len(self.positions)

    @property
    def axes(self):
        """(n, 3) unit seed axes: along each candidate's needle."""
        return np.array([self.needles[i].needle.direction for i in self.needle_index]).reshape(-1, 3)

    def on_needle(self, n):
        """Candidate indices on needle ``n``, from the tip (deepest) outwards."""
        idx = np.flatnonzero(self.needle_index == n)
        return idx[np.argsort(-self.depth_mm[idx])]


def candidate_positions(needles, ctv_mask, grid, spacing_mm=MIN_CANDIDATE_SPACING_MM):
    """Candidate seed positions every ``spacing_mm`` (5-10 mm) along each needle inside the CTV.

    On each needle the positions are centred on its CTV chord (entry to tip); positions whose
    nearest voxel is outside the CTV (non-convex targets) are dropped.

    Args:
        needles: list of PlannedNeedle (``plan_needles(...).needles``).
        ctv_mask: bool ``[k, j, i]`` on ``grid``.
        grid: :class:`Grid` of the mask.
        spacing_mm: spacing along the needle (mm), 5..10.
    """
    s = float(spacing_mm)
    if not MIN_CANDIDATE_SPACING_MM <= s <= MAX_CANDIDATE_SPACING_MM:
        raise InputError(f"candidate seed spacing {spacing_mm!r} mm invalid: allowed "
                         f"{MIN_CANDIDATE_SPACING_MM:g}..{MAX_CANDIDATE_SPACING_MM:g} mm")
    if not needles:
        raise InputError("no needles given: generate needles that cross the CTV first")
    ctv = np.asarray(ctv_mask, dtype=bool)
    pos, idx, depth = [], [], []
    for n, pn in enumerate(needles):
        a, b = pn.ctv_start_mm, pn.ctv_end_mm
        count = int(np.floor((b - a) / s + 1e-9)) + 1
        t = 0.5 * (a + b) + (np.arange(count) - 0.5 * (count - 1)) * s
        p = pn.point_at(t)
        keep = grid.mask_at(ctv, p)
        pos.append(p[keep])
        depth.append(t[keep])
        idx.append(np.full(int(keep.sum()), n))
    positions = np.concatenate(pos)
    if len(positions) == 0:
        raise InputError("no candidate seed position falls inside the CTV: check the needles and the CTV")
    inside_dist = ndimage.distance_transform_edt(ctv, sampling=grid.spacing[::-1])
    surface = ndimage.map_coordinates(inside_dist, grid.to_ijk(positions)[:, ::-1].T, order=1, mode="nearest")
    return Candidates(list(needles), positions, np.concatenate(idx), np.concatenate(depth), surface, s)


@dataclass
class Plan:
    """A seed plan: a subset of the candidates, all seeds of one strength.

    Attributes:
        name: e.g. "uniform", "optimised".
        candidates: the :class:`Candidates` chosen from.
        chosen: sorted candidate indices (int array).
        strength_u: air-kerma strength per seed (U).
        seconds: time taken to make the plan (s).
        terms: the optimiser's internal metrics (D90 Gy, V100/V150/V200 %, OAR metrics Gy,
            violation) or None; reported plan metrics come from :mod:`SeedBrachyLib.dvh`.
    """

    name: str
    candidates: Candidates
    chosen: np.ndarray
    strength_u: float
    seconds: float = 0.0
    terms: dict | None = None

    def __post_init__(self):
        self.chosen = np.unique(np.asarray(self.chosen, dtype=int))
        if not (np.isfinite(self.strength_u) and self.strength_u > 0):
            raise InputError(f"seed strength {self.strength_u!r} U invalid: must be > 0 U")

    @property
    def n_seeds(self):
        return int(len(self.chosen))

    @property
    def needle_indices(self):
        """Indices (into ``candidates.needles``) of the needles that carry at least one seed."""
        return np.unique(self.candidates.needle_index[self.chosen])

    @property
    def n_needles(self):
        return int(len(self.needle_indices))

    def _loaded_needles(self):
        """(planned needle, indices of its chosen candidates, tip first) for each needle in use."""
        c = self.candidates
        chosen = set(self.chosen.tolist())
        return [(c.needles[n], [i for i in c.on_needle(n) if i in chosen]) for n in self.needle_indices]

    def seeds(self):
        """The plan's seeds, labelled "<needle>-<k>" with k = 1 at the tip."""
        c = self.candidates
        return [Seed(c.positions[i], pn.needle.direction, self.strength_u, f"{pn.label}-{k + 1}")
                for pn, on in self._loaded_needles() for k, i in enumerate(on)]

    def needle_table(self):
        """Per needle: label, hole, entry, tip, depth (mm), and seed depths from the entry (mm)."""
        c = self.candidates
        rows = []
        for pn, seeds in self._loaded_needles():
            rows.append({"needle": pn.label, "hole": None if pn.hole is None else pn.hole.copy(),
                         "entry_mm": pn.needle.entry.copy(), "tip_mm": pn.needle.tip.copy(),
                         "depth_mm": pn.needle.depth_mm, "clearance_mm": pn.clearance_mm,
                         "seed_depths_mm": [float(c.depth_mm[i]) for i in seeds],
                         "seed_positions_mm": [c.positions[i].copy() for i in seeds]})
        return rows

    def summary_lines(self, u_per_mci=DEFAULT_U_PER_MCI):
        """Human-readable needle/seed plan (mm RAS, depths from the skin entry, U and mCi)."""
        mci = float(u_to_mci(self.strength_u, u_per_mci))
        lines = [f"Plan '{self.name}': {self.n_seeds} seeds x {self.strength_u:.3f} U ({mci:.3f} mCi at "
                 f"{u_per_mci:.3f} U/mCi) on {self.n_needles} needles"]
        for row in self.needle_table():
            e, t = row["entry_mm"], row["tip_mm"]
            clear = "" if not np.isfinite(row["clearance_mm"]) else f", clearance {row['clearance_mm']:.1f} mm"
            depths = ", ".join(f"{d:.1f}" for d in row["seed_depths_mm"])
            lines.append(f"  needle {row['needle']:>4}: entry ({e[0]:.1f}, {e[1]:.1f}, {e[2]:.1f}) "
                         f"tip ({t[0]:.1f}, {t[1]:.1f}, {t[2]:.1f}) mm RAS, depth {row['depth_mm']:.1f} mm"
                         f"{clear}; {len(row['seed_depths_mm'])} seeds at {depths} mm from the skin")
        unmet = (self.terms or {}).get("unmet")
        if unmet:
            lines.append(f"WARNING: the optimiser could not meet {len(unmet)} goal(s): {'; '.join(unmet)}")
        return lines
