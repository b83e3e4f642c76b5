"""Benchmark: full plan metric set for a 50 cc CTV on a 1 mm dose grid (printed figures, not a test).

The CTV (a 22.9 mm radius sphere, 50 cc) comes from a 1 x 1 x 2 mm CT-like mask, so the DVH is
built from 8 sub-points per dose voxel (``dvh.DVH.of``); the dose is TG-43 from 64 seeds on a
80 mm cube of 1 mm voxels. Timed: ``evaluate_plan`` for the CTV (D90, D98, D100, Dmax, Dmean,
V90-V200, V100 cc, CI, EI, HI with Vref over the body) plus one OAR (D2cc, D1cc, D0.1cc, Dmax,
Dmean). Reference: a simple binned cumulative DVH (1 cGy bins, voxel centres inside the CTV, as
dicompyler-core does), reading D90 and V100 off the bins, timed in the same run.
Target: < 0.1 s for the full metric set.
"""

import time

import numpy as np

from SeedBrachyLib.dose import compute_dose
from SeedBrachyLib.dvh import evaluate_plan
from SeedBrachyLib.grid import Grid
from SeedBrachyLib.seeds import seeds_along
from SeedBrachyLib.sources import get_model
from SeedBrachyLib.structures import Structure, structure_on_grid

RX_GY = 160.0
REPEATS = 7


def binned_reference(dose, inside, rx):
    """Naive cumulative DVH: 1 cGy bins of voxel-centre doses; D90 = lower edge of the bin where V drops below 90%."""
    d = dose[inside]
    counts, edges = np.histogram(d, bins=int(np.ceil(d.max() * 100)) + 1, range=(0, (int(np.ceil(d.max() * 100)) + 1)
                                                                             / 100))
    cumulative = 100.0 * counts[::-1].cumsum()[::-1] / d.size  # % of volume with dose >= bin lower edge
    d90 = edges[np.flatnonzero(cumulative >= 90.0)[-1]]
    v100 = cumulative[int(np.searchsorted(edges, rx))]
    return d90, v100


def timed(fn):
    """(result, median wall seconds, median CPU seconds of this process) over REPEATS runs."""
    wall, cpu = [], []
    for _ in range(REPEATS):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return out, float(np.median(wall)), float(np.median(cpu))


def main():
    radius = (50.0 * 1000.0 * 3.0 / (4.0 * np.pi)) ** (1.0 / 3.0)
    center = np.array([0.3, -0.4, 0.6])
    ct = Grid.around([0, 0, 0], [90, 90, 90], (1.0, 1.0, 2.0))
    ctv_mask = np.linalg.norm(ct.points() - center, axis=-1) <= radius
    oar_mask = np.linalg.norm(ct.points() - (center + [0, 0, radius + 12]), axis=-1) <= 10.0
    grid = Grid.around([0, 0, 0], [80, 80, 80], 1.0)
    seeds = []
    for dy in np.arange(-15, 16, 10.0):
        for dz in np.arange(-15, 16, 10.0):
            seeds += seeds_along(center + [-15, dy, dz], center + [15, dy, dz], 10.0, 0.6)
    dose = compute_dose(grid, seeds, get_model("I125_OncoSeed6711"))

    ctv = structure_on_grid("CTV", ctv_mask, ct, grid, "target")
    oar = structure_on_grid("OAR", oar_mask, ct, grid, "oar")
    body = Structure("Body", np.ones(grid.shape, np.float32), grid)
    ev, t_full, cpu_full = timed(lambda: evaluate_plan(dose, [ctv, oar], RX_GY, body=body))
    voxel_ctv = Structure("CTV", ctv.weights, grid, "target")  # same weights, voxel-centre dose model
    ev_vox, t_vox, _ = timed(lambda: evaluate_plan(dose, [voxel_ctv], RX_GY, body=body))
    inside = np.linalg.norm(grid.points() - center, axis=-1) <= radius
    (d90_bin, v100_bin), t_bin, _ = timed(lambda: binned_reference(dose, inside, RX_GY))

    c = ev["CTV"].values
    n_sub = ctv.subvoxels[2] ** 3
    print(f"CTV {c['Volume']:.2f} cc on {grid.describe()}, {len(seeds)} seeds, Rx {RX_GY:g} Gy")
    print(f"full metric set (CTV: {len(c)} metrics incl. CI/EI/HI over {grid.n_voxels:,} voxels; OAR: 6), "
          f"sub-point DVH ({n_sub} per voxel): {1000 * t_full:.1f} ms wall, {1000 * cpu_full:.1f} ms CPU "
          f"(target < 100 ms; wall time grows when other jobs share the cores)")
    print(f"same, voxel-centre DVH: {1000 * t_vox:.1f} ms")
    print(f"reference binned DVH (1 cGy bins), D90 and V100 only: {1000 * t_bin:.1f} ms")
    print(f"D90: sub-point {c['D90']:.2f} Gy, voxel-centre {ev_vox['CTV'].values['D90']:.2f} Gy, "
          f"binned {d90_bin:.2f} Gy")
    print(f"V100: sub-point {c['V100']:.2f} %, voxel-centre {ev_vox['CTV'].values['V100']:.2f} %, "
          f"binned {v100_bin:.2f} %")
    print(f"CI {c['CI']:.3f}, EI {c['EI']:.3f}, HI {c['HI']:.3f}; OAR D2cc {ev['OAR'].values['D2cc']:.1f} Gy")
    verdict = "PASS" if cpu_full < 0.1 else "SLOWER THAN TARGET"
    print(f"{verdict}: {1000 * cpu_full:.1f} ms CPU ({1000 * t_full:.1f} ms wall) vs 100 ms")


if __name__ == "__main__":
    main()
