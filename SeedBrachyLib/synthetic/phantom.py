"""Synthetic CT-like neck phantom with a lymph-node metastasis (the built-in demo case).

Geometry (RAS, mm; the neck axis is S): an elliptic neck (semi-axes 65 mm R-L,
50 mm A-P) with a subcutaneous fat layer, a vertebral body, the spinal cord,
the trachea (air), a contrast-enhanced carotid artery, and a 25 mm lymph node
(GTV) on the patient's right, 12 mm under the skin and 2.5 mm from the carotid.
CT values in HU (int16), array indexed [k, j, i] like a Slicer volume.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..grid import Grid
from ..seeds import Needle, Seed
from ..sources import DEFAULT_U_PER_MCI, mci_to_u

HU = {"air": -1000, "fat": -90, "soft": 40, "node": 60, "bone": 700, "cord": 35, "vessel": 250}


@dataclass
class SyntheticCase:
    """A CT volume with its grid and named boolean masks (on the CT grid), plus plan hints."""

    ct: np.ndarray
    grid: Grid
    masks: dict
    prescription_gy: float = 120.0
    needle_direction: np.ndarray = field(default_factory=lambda: np.array([-1.0, 0.0, 0.0]))
    node_center: np.ndarray = field(default_factory=lambda: np.zeros(3))
    description: str = ""


def _ellipse(x, y, cx, cy, ax, ay):
    return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 <= 1.0


def neck_phantom(spacing_mm=(1.0, 1.0, 2.0), node_diameter_mm=25.0, node_center=(40.0, 8.0, 0.0),
                 direction=None, noise_hu=0.0, seed=0):
    """Build the neck phantom CT (HU) and its masks.

    Args:
        spacing_mm: CT voxel size (mm) along I, J, K.
        node_diameter_mm: lymph-node (GTV) diameter (mm).
        node_center: node centre (mm RAS).
        direction: optional 3x3 IJK-to-RAS direction (default axis-aligned).
        noise_hu: standard deviation of Gaussian image noise (HU).
        seed: random seed for the noise.
    """
    grid = Grid.around([0.0, 0.0, 0.0], [150.0, 120.0, 100.0], spacing_mm, direction)
    ras = grid.points()
    x, y, z = ras[..., 0], ras[..., 1], ras[..., 2]
    in_slab = np.abs(z) <= 48.0
    body = _ellipse(x, y, 0, 0, 65, 50) & in_slab
    inner = _ellipse(x, y, 0, 0, 59, 44) & in_slab
    bone = _ellipse(x, y, 0, -20, 13, 11) & in_slab
    cord = _ellipse(x, y, 0, -36, 5, 5) & in_slab
    trachea = _ellipse(x, y, 0, 24, 8, 7) & in_slab
    carotid = _ellipse(x, y, 21, 6, 4, 4) & in_slab
    c = np.asarray(node_center, dtype=float)
    r = node_diameter_mm / 2.0
    node = ((x - c[0]) ** 2 + (y - c[1]) ** 2 + ((z - c[2]) / 1.1) ** 2) <= r * r

    ct = np.full(grid.shape, HU["air"], dtype=np.int16)
    ct[body] = HU["fat"]
    ct[inner] = HU["soft"]
    for mask, key in ((bone, "bone"), (cord, "cord"), (trachea, "air"), (carotid, "vessel"), (node, "node")):
        ct[mask & body] = HU[key]
    if noise_hu > 0:
        rng = np.random.default_rng(seed)
        ct = np.clip(ct + rng.normal(0, noise_hu, ct.shape), -1024, 3071).astype(np.int16)
    masks = {"GTV": node & body, "Carotid": carotid, "SpinalCord": cord, "Trachea": trachea,
             "Bone": bone, "Body": body}
    return SyntheticCase(
        ct=ct, grid=grid, masks=masks, node_center=c,
        description=(f"synthetic neck phantom, {node_diameter_mm:g} mm right cervical node, "
                     f"CT {grid.describe()}"))


def fixed_seed_arrangement(case, activity_mci=0.5, needle_spacing_mm=10.0, seed_spacing_mm=10.0,
                           margin_mm=3.0, u_per_mci=DEFAULT_U_PER_MCI):
    """Seeds on parallel needles (along the case's needle direction) every ``needle_spacing_mm``.

    Seed positions on neighbouring needles are staggered by half the seed spacing.

    Seeds sit every ``seed_spacing_mm`` along each needle wherever they fall inside the
    node enlarged by ``margin_mm``; strength from ``activity_mci`` (mCi) with ``u_per_mci``.
    """
    c = case.node_center
    gtv_ras = case.grid.points()[case.masks["GTV"]]
    radius = np.linalg.norm(gtv_ras - c, axis=1).max() + margin_mm
    axis = np.asarray(case.needle_direction, float)
    u = np.cross(axis, [0.0, 0.0, 1.0])
    u /= np.linalg.norm(u)
    v = np.cross(axis, u)
    strength = float(mci_to_u(activity_mci, u_per_mci))
    seeds = []
    offsets = np.arange(-2, 3) * needle_spacing_mm
    for a in offsets:
        for b in offsets:
            base = c + a * u + b * v
            stagger = 0.5 * seed_spacing_mm * (round((a + b) / needle_spacing_mm) % 2)
            for t in np.arange(-radius, radius, seed_spacing_mm) + stagger:
                p = base + t * axis
                if np.linalg.norm(p - c) <= radius:
                    seeds.append(Seed(p, axis, strength, f"N{len(seeds)}"))
    return seeds


def needles_through_seeds(seeds, body_mask, grid, step_mm=1.0):
    """One needle per line of collinear seeds (same axis): tip at the deepest seed, entry at the skin.

    Seeds are grouped by their line (position projected across their axis, to 0.1 mm); the entry
    is found by stepping back from the shallowest seed along the axis (``step_mm``) until the
    line leaves ``body_mask`` (bool ``[k, j, i]`` on ``grid``). Positions in mm RAS.
    """
    lines = {}
    for seed in seeds:
        across = seed.position - (seed.position @ seed.axis) * seed.axis
        key = (tuple(np.round(seed.axis, 6)), tuple(np.round(across, 1)))
        lines.setdefault(key, []).append(seed)
    needles = []
    for n, group in enumerate(lines.values()):
        axis = group[0].axis
        depths = [s.position @ axis for s in group]
        tip = group[int(np.argmax(depths))].position
        entry = group[int(np.argmin(depths))].position.copy()
        while grid.mask_at(body_mask, entry - step_mm * axis):
            entry = entry - step_mm * axis
        needles.append(Needle(entry - step_mm * axis, tip, f"Needle {n + 1}"))
    return needles


def neck_planning_case(node_diameter_mm=25.0, node_center=(40.0, 8.0, 0.0), prescription_gy=120.0):
    """A neck phantom ready to plan (tests and benchmarks): the planning case (CTV = GTV + 5 mm, the carotid a
    no-go organ at risk) and the candidates on its template needles; returns (SyntheticCase, PlanningCase,
    Candidates)."""
    from ..planning import pipeline

    case = neck_phantom(node_diameter_mm=node_diameter_mm, node_center=node_center)
    ctv = pipeline.make_ctv(case.ct, case.grid, case.masks["GTV"])
    planning = pipeline.prepare(case.ct, case.grid, ctv, prescription_gy, oar_masks={"Carotid": case.masks["Carotid"]},
                                nogo_names=["Carotid"], gtv_mask=case.masks["GTV"])
    _, _, candidates = pipeline.generate_needles(planning, case.needle_direction)
    return case, planning, candidates
