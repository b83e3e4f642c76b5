"""Benchmark: full evaluation of a 50 cc CTV and five organs at risk from seeds (printed figures, not a test).

Structures come from 1 x 1 x 2 mm CT-like binary masks (as drawn in the Segment Editor): CTV (a
22.9 mm sphere, 50 cc) with 60 I-125 seeds on a 10 mm lattice, carotid (6 mm tube), cord (10 mm
tube), esophagus (12 mm tube), trachea (18 mm tube) and a 5 mm skin rind patch.

Timed, each the median of a few runs (wall and CPU seconds of this process, all threads):

* new: ``evaluate_plan(SeedDose(...))`` -- TG-43 at each structure's own sample points (compiled
  engine: from the (r, theta) table within 0.1 % of the formula, the interior points along runs of
  voxels; the formula itself, ``SeedDose(..., exact=True)``, is timed too, with cached samples),
  (a) with the sample points already made (they are cached per structure: a plan's structures are
  evaluated many times) and (b) from the masks, i.e. ``structure_from_mask`` + sampling + evaluation;
  the sample points as the DVH uses them (binary masks at their own resolution: voxel centres) and,
  for the finer geometry of a Slicer segment rasterised from its closed surface (the same shapes on a
  0.5 x 0.5 x 1 mm mask: targets split at 0.5 mm inside, organs at risk one point per cell, a boundary
  cell at the centroid of its inside part, and their hottest max(4 cc, 25 %) at their own points), the
  same timings;
* old (reference, in the same run): the path before issue 10 -- TG-43 on a 1 mm dose grid, each
  structure mapped onto it with 8 sub-points per voxel, the dose interpolated trilinearly at every
  sub-point (a plain reimplementation here, ``old_interpolating_dvh``).

The target is 0.2 s for the full evaluation. The dose at the points is the cost (points x seeds):
it is printed per point and seed for the exact compiled kernel (``dose.dose_at_points``), the
table along runs (``dose.dose_at_lattice``) and the numpy fallback. Wall times grow when other
jobs share the cores; CPU times (all threads of this process) less so.
"""

import math
import os
import time

import numpy as np
from scipy import ndimage

from SeedBrachyLib import kernel
from SeedBrachyLib.dose import compute_dose, dose_at_lattice, dose_at_points
from SeedBrachyLib.dvh import DVH, GridDose, SeedDose, evaluate_plan
from SeedBrachyLib.grid import Grid
from SeedBrachyLib.seeds import seeds_along
from SeedBrachyLib.sources import get_model
from SeedBrachyLib.structures import structure_from_mask, structure_on_grid, subpoint_offsets

RX_GY = 160.0
REPEATS = 3
CENTER = np.array([0.3, -0.4, 0.6])


CPU = {}  # label -> median CPU seconds (all threads of this process), printed with the wall times


def timed(fn, repeats=REPEATS, label=None):
    """(result, median wall seconds) over ``repeats`` runs; the median CPU seconds go to ``CPU[label]``."""
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    if label:
        CPU[label] = float(np.median(cpu))
    return out, float(np.median(wall))


def tube(points, a, b, diameter):
    ab = np.asarray(b, float) - a
    t = np.clip(((points - a) @ ab) / (ab @ ab), 0.0, 1.0)
    return np.linalg.norm(points - a - t[..., None] * ab, axis=-1) <= diameter / 2.0


def case(spacing=(1.0, 1.0, 2.0)):
    spacing = np.asarray(spacing, float)
    ct = Grid.around(CENTER, np.rint(110.0 * np.array([1.0, 1.0, 2.0]) / spacing).astype(int), spacing)
    p = ct.points()
    radius = (50.0 * 1000.0 * 3.0 / (4.0 * np.pi)) ** (1.0 / 3.0)
    r_body = np.linalg.norm((p - (CENTER + [0, -20, 0]))[..., :2], axis=-1)
    masks = {
        "CTV": np.linalg.norm(p - CENTER, axis=-1) <= radius,
        "Carotid": tube(p, CENTER + [28, 0, -40], CENTER + [28, 0, 40], 6.0),
        "Cord": tube(p, CENTER + [0, -38, -50], CENTER + [0, -38, 50], 10.0),
        "Esophagus": tube(p, CENTER + [-12, -30, -50], CENTER + [-12, -30, 50], 12.0),
        "Trachea": tube(p, CENTER + [-30, 0, -50], CENTER + [-30, 0, 50], 18.0),
        "Skin": (r_body <= 52.0) & (r_body > 47.0) & (p[..., 1] > CENTER[1]) & (np.abs(p[..., 2] - CENTER[2]) < 20),
    }
    seeds = []
    for dy in np.arange(-15, 16, 10.0):
        for dz in np.arange(-15, 16, 10.0):
            seeds += seeds_along(CENTER + [-15, dy, dz], CENTER + [15, dy, dz], 10.0, 0.6)
    return ct, masks, seeds[:60]


def from_masks(masks, ct):
    return [structure_from_mask(name, m, ct, "target" if name == "CTV" else "oar") for name, m in masks.items()]


def dvh_points(structures):
    """Sample points the DVH from seeds evaluates (dvh.PointDose) before an organ at risk's hot end is read at its
    own points."""
    n = 0
    for s in structures:
        if s.voxel_centres_only or s.role == "target":
            n += len(s.sample_points(math.inf if s.voxel_centres_only else 0.5)[0])
        else:
            n += len(s.sample_points(math.inf, per_voxel_boundary=True)[0])
    return n


def evaluation(label, masks, ct, seeds, model):
    """Print evaluate_plan's time with cached sample points and from the masks (sampling included)."""
    structures = from_masks(masks, ct)
    evaluate_plan(SeedDose(seeds, model), structures, RX_GY)  # sample points made and cached
    ev, t_cached = timed(lambda: evaluate_plan(SeedDose(seeds, model), structures, RX_GY), label="cached")
    _, t_exact = timed(lambda: evaluate_plan(SeedDose(seeds, model, exact=True), structures, RX_GY), label="exact")
    _, t_whole = timed(lambda: evaluate_plan(SeedDose(seeds, model), from_masks(masks, ct), RX_GY), label="whole")
    verdict = "PASS" if t_whole < 0.2 else "SLOWER THAN"
    print(f"new, evaluate_plan, {label} ({dvh_points(structures):,} points before the organs' hot end): "
          f"from the masks (structures and sample points made; the full evaluation the target is about): "
          f"{1000 * t_whole:.0f} ms wall, {1000 * CPU['whole']:.0f} ms CPU ({verdict} the 200 ms target); "
          f"with the sample points cached: {1000 * t_cached:.0f} ms wall, {1000 * CPU['cached']:.0f} ms CPU; "
          f"the formula at every point "
          f"(exact=True), cached: {1000 * t_exact:.0f} ms wall, {1000 * CPU['exact']:.0f} ms CPU -> CTV D90 "
          f"{ev['CTV'].dvh.metric('D90')[0]:.2f} Gy, Skin D2cc {ev['Skin'].dvh.metric('D2cc')[0]:.2f} Gy")
    return ev


def old_interpolating_dvh(dose, structure):
    """The pre-issue-10 DVH: every inside sub-point of every voxel at the trilinearly interpolated dose."""
    flat, inside, n = structure.subvoxels
    full = np.flatnonzero(structure.weights.ravel() >= 1.0)
    offsets = subpoint_offsets(n)
    point, sub = np.nonzero(inside)
    voxel = np.concatenate([np.repeat(full, n ** 3), flat[point]])
    sub = np.concatenate([np.tile(np.arange(n ** 3), full.size), sub])
    ijk = np.stack(np.unravel_index(voxel, dose.shape)[::-1], axis=1) + offsets[sub]
    values = ndimage.map_coordinates(dose, ijk[:, ::-1].T, order=1, mode="nearest")
    return DVH.from_samples(values, np.full(values.size, structure.grid.voxel_volume_cc / n ** 3), structure.name)


def main():
    ct, masks, seeds = case()
    model = get_model("I125_OncoSeed6711")
    grid = Grid.around(CENTER, [80, 80, 80], 1.0)
    structures = from_masks(masks, ct)
    volumes = {s.name: s.volume_cc for s in structures}
    print(f"{len(seeds)} seeds; structures from {ct.describe()} masks: "
          + ", ".join(f"{n} {v:.1f} cc" for n, v in volumes.items()))
    probe = np.random.default_rng(0).uniform(-30, 30, (20000, 3))
    for engine in ("compiled", "numpy"):
        dose_at_points(probe[:10], seeds, model, engine=engine)  # compile once
        _, t_probe = timed(lambda engine=engine: dose_at_points(probe, seeds, model, engine=engine), 1)
        print(f"dose_at_points ({engine}): {1e9 * t_probe / (len(probe) * len(seeds)):.1f} ns per point and seed")
    ctv = structures[0]
    voxels, (offsets, _) = ctv.interior_voxels(), ctv.split_offsets()
    dose_at_lattice(ctv.grid, voxels[:10], offsets, seeds, model)  # compile once
    _, t_lattice = timed(lambda: dose_at_lattice(ctv.grid, voxels, offsets, seeds, model), 1, label="lattice")
    pairs = voxels.size * len(offsets) * len(seeds)
    print(f"dose_at_lattice (table; the 1 x 1 x 2 mm CTV's interior voxels split at 0.5 mm): "
          f"{1e9 * t_lattice / pairs:.1f} ns wall, {1e9 * CPU['lattice'] / pairs:.1f} ns CPU per point and seed")

    ev = evaluation("binary masks at their own 1 x 1 x 2 mm (voxel centres)", masks, ct, seeds, model)
    fine_ct, fine_masks, _ = case((0.5, 0.5, 1.0))
    evaluation("the same shapes on 0.5 x 0.5 x 1 mm masks (sub-voxel geometry)", fine_masks, fine_ct, seeds, model)
    print(f"({kernel.describe()}; load average {os.getloadavg()[0]:.1f})")

    dose, t_grid = timed(lambda: compute_dose(grid, seeds, model), 1)
    on_grid = [structure_on_grid(s.name, masks[s.name], ct, grid, s.role) for s in structures]
    old, t_old = timed(lambda: {s.name: old_interpolating_dvh(dose, s) for s in on_grid})
    grid_dvh = {s.name: GridDose(dose, grid).dvh(s) for s in on_grid}
    print(f"old interpolating path: dose grid {grid.describe()} {1000 * t_grid:.0f} ms + DVH {1000 * t_old:.0f} ms"
          f" -> CTV D90 {old['CTV'].metric('D90')[0]:.2f} Gy, V100 {old['CTV'].metric('V100', RX_GY)[0]:.2f} %,"
          f" Skin D2cc {old['Skin'].metric('D2cc')[0]:.2f} Gy")
    print(f"grid path (dose volume, voxels inside unsmoothed): CTV D90 {grid_dvh['CTV'].metric('D90')[0]:.2f} Gy,"
          f" Skin D2cc {grid_dvh['Skin'].metric('D2cc')[0]:.2f} Gy; CTV D0.1cc new "
          f"{ev['CTV'].dvh.metric('D0.1cc')[0]:.0f} Gy vs old {old['CTV'].metric('D0.1cc')[0]:.0f} Gy")


if __name__ == "__main__":
    main()
