"""Benchmark: the TG-43 dose engines, incremental updates and the optimiser (printed figures, not a test).

Case (issue 11): 60 seeds, S_K 1 U, axis +z, a 4 x 3 x 5 lattice 10 mm apart, on a 100^3 grid of
1 mm voxels (6.0e7 voxel-seed pairs), OncoSeed 6711. Printed, each with wall-clock and CPU seconds
(the machine may be shared: CPU seconds / threads is the cost without waiting):

* the compiled engine (numba, table; on all cores and on one, with CPU ns per voxel-seed pair),
  the numpy fallback (exact), a plain vectorised numpy TG-43
  written here as a yardstick (law-of-cosines geometry, np.interp for g_L, scipy's
  RegularGridInterpolator for F), and the direct per-pair evaluation of the independent scalar
  oracle (Testing/tg43_oracle.py) on a sample of voxels, scaled to the grid; the largest relative
  difference of each from the direct evaluation on that sample (where dose > 1 % of the maximum,
  and everywhere);
* the compiled grid against SeedBrachy's exact point kernel at every voxel for every installed
  model: this case, and the same seeds with random axes on an oblique, anisotropic grid;
* one seed moved with :class:`SeedBrachyLib.incremental.LiveDose`: the grid dose alone, and the
  grid dose plus the exact DVH (D90/D2cc/V100..., the full evaluation's sample points and rules) of
  five structures drawn as 1 mm binary masks (voxel centres, as a Segment Editor labelmap), and the
  largest difference of those DVHs from a full evaluation (:class:`SeedBrachyLib.dvh.SeedDose`);
* the optimiser for a ~40-seed plan (the 4 cm node of Testing/benchmarks/bench_planning.py):
  dose matrices and optimisation, and the plan's seeds, needles and goals.

Targets: grid <= 0.15 s on 2 cores within 0.1 % of direct; one-seed update of dose + five DVHs
<= 20 ms; the 40-seed optimisation <= 1 s.
"""

import math
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy.interpolate import RegularGridInterpolator
from scipy.spatial.transform import Rotation

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]
import bench_planning  # noqa: E402
import tg43_oracle  # noqa: E402

from SeedBrachyLib import kernel  # noqa: E402
from SeedBrachyLib.dose import compute_dose, dose_at_points  # noqa: E402
from SeedBrachyLib.dvh import DVH, SeedDose  # noqa: E402
from SeedBrachyLib.grid import Grid  # noqa: E402
from SeedBrachyLib.incremental import LiveDose  # noqa: E402
from SeedBrachyLib.planning import pipeline  # noqa: E402
from SeedBrachyLib.seeds import Seed  # noqa: E402
from SeedBrachyLib.sources import available_models, get_model, mci_to_u  # noqa: E402
from SeedBrachyLib.structures import structure_from_mask  # noqa: E402

SAMPLE = 3000
MODEL = get_model("I125_OncoSeed6711")


def timed(fn, repeat=1):
    """(result, best wall s, CPU s of that run) over ``repeat`` runs."""
    best = None
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        run = (time.perf_counter() - t0, time.process_time() - c0)
        best = run if best is None or run[0] < best[0] else best
    return out, best[0], best[1]


def yardstick(grid, seeds, m):
    """Plain vectorised numpy TG-43 (2D line source), whole grid per seed; Gy float64."""
    raw = tg43_oracle.load(m.key)
    length = raw["active_length_cm"] * 10
    gl = raw["radial_dose_function"]
    r_gl, log_gl = np.array(gl["r_cm"]) * 10, np.log(gl["gL"])
    an = raw["anisotropy_function"]
    f = RegularGridInterpolator((np.array(an["theta_deg"]), np.array(an["r_cm"]) * 10), np.array(an["F"]))
    g0 = 2 * np.arctan(length / 20) / (length * 10)
    pts = grid.points().reshape(-1, 3)
    total = np.zeros(len(pts))
    for s in seeds:
        d = pts - s.position
        r = np.linalg.norm(d, axis=1)
        z = d @ s.axis
        theta = np.arccos(np.clip(z / r, -1, 1))
        a, b = np.hypot(r * np.sin(theta), z - length / 2), np.hypot(r * np.sin(theta), z + length / 2)
        beta = np.arccos(np.clip((a * a + b * b - length * length) / (2 * a * b), -1, 1))
        with np.errstate(divide="ignore", invalid="ignore"):
            geom = np.where(np.sin(theta) > 1e-9, beta / (length * r * np.sin(theta)), 1 / (r * r - length ** 2 / 4))
        slope = (log_gl[-1] - log_gl[-2]) / (r_gl[-1] - r_gl[-2])
        g = np.exp(np.where(r > r_gl[-1], log_gl[-1] + slope * (r - r_gl[-1]),
                            np.interp(r, r_gl, log_gl)))
        th = np.degrees(theta)
        th = np.where(th > 90, 180 - th, th)
        aniso = f(np.c_[th, np.clip(r, 10 * an["r_cm"][0], 10 * an["r_cm"][-1])])
        total += s.strength_u * m.dose_rate_constant * geom / g0 * g * aniso
    return (total * m.mean_life_h / 100).reshape(grid.shape)


def table_accuracy(grid, seeds):
    """Compiled grid vs SeedBrachy's exact point dose on every voxel, for every installed model: the benchmark
    case (axes +z), and the same seeds with random axes on an oblique grid (rotated, 0.9 x 1.1 x 1.3 mm)."""
    rng = np.random.default_rng(3)
    rot = Rotation.from_euler("xyz", rng.uniform(-180, 180, 3), degrees=True).as_matrix()
    oblique = Grid.around([0.0, 0.0, 0.0], [90.0, 100.0, 110.0], [0.9, 1.1, 1.3], rot)
    turned = [Seed(s.position, rng.normal(size=3), s.strength_u) for s in seeds]
    print("  compiled grid vs exact TG-43 (SeedBrachy's point kernel) at every voxel, largest relative difference "
          "where dose > 1 % of max / everywhere:")
    for key in available_models():
        parts = []
        for label, g, ss in (("axes +z, 1 mm grid", grid, seeds), ("random axes, oblique grid", oblique, turned)):
            got = compute_dose(g, ss, key, engine="compiled").reshape(-1)
            exact = dose_at_points(g.points().reshape(-1, 3), ss, key)
            rel = np.abs(got - exact) / exact
            parts.append(f"{label}: {100 * rel[exact > 0.01 * exact.max()].max():.4f} % / {100 * rel.max():.4f} %")
        print(f"    {key:<24} " + "; ".join(parts))


def structures_near(seeds):
    """Five structures around the seeds as 1 mm binary masks (their DVH counts voxel centres, as a labelmap's)."""
    c = np.mean([s.position for s in seeds], axis=0)
    grid = Grid.around(c, [90.0, 90.0, 90.0], 1.0)
    d = grid.points() - c
    x, y, z = d[..., 0], d[..., 1], d[..., 2]
    shapes = {
        "CTV": np.linalg.norm(d / [22, 17, 27], axis=-1) <= 1,
        "cord": (np.hypot(x - 30, y) <= 5) & (np.abs(z) <= 40),
        "trachea": (np.hypot(x + 30, y - 5) <= 8) & (np.abs(z) <= 40),
        "carotid": (np.hypot(x - 5, y - 25) <= 4) & (np.abs(z) <= 40),
        "skin": (np.abs(y + 38) <= 2) & (np.abs(x) <= 40) & (np.abs(z) <= 40),
    }
    return [structure_from_mask(k, v, grid, "target" if k == "CTV" else "oar") for k, v in shapes.items()]


def dvh_metrics(live, structure):
    dvh = DVH.of(live, structure)
    if structure.role == "target":
        return dvh.metric("D90", 145.0), dvh.metric("V100", 145.0), dvh.metric("V150", 145.0)
    return dvh.metric("D2cc", 145.0), dvh.metric("D0.1cc", 145.0), dvh.metric("Dmax", 145.0)


def main():
    workers = os.cpu_count()
    grid = Grid.around([0.0, 0.0, 0.0], [100.0, 100.0, 100.0], 1.0)
    seeds = [Seed([x, y, z], [0, 0, 1], 1.0) for x in (-15, -5, 5, 15) for y in (-10, 0, 10)
             for z in (-20, -10, 0, 10, 20)]
    pairs = grid.n_voxels * len(seeds)
    print(f"TG-43 dose: {len(seeds)} seeds (1 U, axis +z, 4x3x5 lattice 10 mm apart), {grid.describe()}, "
          f"{pairs:.2e} voxel-seed pairs, {workers} cores; load average {os.getloadavg()[0]:.1f}")
    print(f"  engine: {kernel.describe('compiled')}")

    _, t_first, _ = timed(lambda: compute_dose(grid, seeds, MODEL, engine="compiled"))
    compiled, t_c, c_c = timed(lambda: compute_dose(grid, seeds, MODEL, engine="compiled"), repeat=3)
    _, t_1, c_1 = timed(lambda: compute_dose(grid, seeds, MODEL, engine="compiled", workers=1), repeat=3)
    numpy_dose, t_n, c_n = timed(lambda: compute_dose(grid, seeds, MODEL, engine="numpy"))
    yard, t_y, c_y = timed(lambda: yardstick(grid, seeds, MODEL))

    raw = tg43_oracle.load(MODEL.key)
    rng = np.random.default_rng(7)
    idx = rng.choice(grid.n_voxels, SAMPLE, replace=False)
    points = grid.points().reshape(-1, 3)[idx]
    seed_list = [(s.position, s.axis, s.strength_u) for s in seeds]
    direct, t_d, c_d = timed(lambda: np.array([tg43_oracle.total_dose_gy(raw, p, seed_list) for p in points]))
    scale = grid.n_voxels / SAMPLE
    hot = direct > 0.01 * compiled.max()

    def line(label, seconds, cpu, dose):
        diff = np.abs(dose.reshape(-1)[idx] - direct) / direct
        print(f"  {label:<44} {seconds:8.3f} s wall {cpu:8.3f} s CPU {pairs / seconds:10.2e} pairs/s   "
              f"max rel. diff. from direct: {100 * diff[hot].max():.4f} % (dose > 1 % max), "
              f"{100 * diff.max():.4f} % (all)")

    print(f"  compiled first call (compile or cache load, table build): {t_first:.2f} s")
    line(f"compiled engine (best of 3, {workers} threads)", t_c, c_c, compiled)
    line("compiled engine (best of 3, 1 thread)", t_1, c_1, compiled)
    line(f"numpy fallback (exact, {workers} threads)", t_n, c_n, numpy_dose)
    line("plain vectorised numpy TG-43 (yardstick)", t_y, c_y, yard)
    print(f"  {'direct per-pair oracle (scalar, scaled)':<44} {t_d * scale:8.1f} s wall {c_d * scale:8.1f} s CPU "
          f"{SAMPLE * len(seeds) / t_d:10.2e} pairs/s   ({SAMPLE} voxels sampled, {hot.sum()} above 1 % of max)")
    ok_grid = t_c <= 0.15
    ok_acc = np.max(np.abs(compiled.reshape(-1)[idx] - direct)[hot] / direct[hot]) <= 1e-3
    print(f"  compiled CPU per voxel-seed pair: {1e9 * c_c / pairs:.2f} ns ({workers} threads), "
          f"{1e9 * c_1 / pairs:.2f} ns (1 thread); 1-thread CPU / {workers} cores = {c_1 / workers:.3f} s "
          f"(an idle machine's wall time if the threads scaled perfectly: an extrapolation)")
    print(f"  target: <= 0.15 s: {'met' if ok_grid else 'NOT met'} ({t_c:.3f} s wall at load "
          f"{os.getloadavg()[0]:.1f}, {c_c / workers:.3f} s CPU per core); <= 0.1 % from direct: "
          f"{'met' if ok_acc else 'NOT met'}")
    table_accuracy(grid, seeds)

    structures = structures_near(seeds)
    n_points = sum(len(st.sample_points(math.inf)[0]) for st in structures)
    print(f"\nOne seed moved (LiveDose; the exact DVH of five structures, {n_points} sample points, "
          f"{', '.join(f'{st.name} {st.volume_cc:.1f} cc' for st in structures)}):")
    grid_only = LiveDose(grid, seeds, MODEL, engine="compiled")
    both = LiveDose(grid, seeds, MODEL, structures, engine="compiled")
    moves = [(i, seeds[i].position + rng.uniform(-2, 2, 3)) for i in rng.choice(len(seeds), 10, replace=False)]

    def move_grid():
        for i, p in moves:
            grid_only.move(int(i), p)

    def move_all(live=both):
        for i, p in moves:
            live.move(int(i), p)
            for st in structures:
                dvh_metrics(live, st)

    t0 = time.perf_counter()
    grid_only.move(0, seeds[0].position)  # warm-up (compiled kernels loaded by the constructors already)
    both.move(0, seeds[0].position)
    print(f"  warm-up move: {1000 * (time.perf_counter() - t0):.1f} ms; load average {os.getloadavg()[0]:.1f}")
    _, t_g, c_g = timed(move_grid)
    _, t_a, c_a = timed(move_all)
    one = LiveDose(grid, seeds, MODEL, structures, engine="compiled", workers=1)
    _, t_1, c_1 = timed(lambda: move_all(one))
    final = compute_dose(grid, both.seeds, MODEL, engine="compiled")
    drift = np.max(np.abs(both.dose - final)) / final.max()
    print(f"  dose grid only:              {1000 * t_g / len(moves):7.1f} ms wall {1000 * c_g / len(moves):7.1f} ms "
          f"CPU per move")
    print(f"  dose grid + five DVHs:       {1000 * t_a / len(moves):7.1f} ms wall {1000 * c_a / len(moves):7.1f} ms "
          f"CPU per move (target <= 20 ms: {'met' if t_a / len(moves) <= 0.02 else 'NOT met'})")
    print(f"  dose grid + five DVHs, 1 thread: {1000 * t_1 / len(moves):5.1f} ms wall {1000 * c_1 / len(moves):7.1f} "
          "ms "
          f"CPU per move (CPU <= 20 ms: {'met' if c_1 / len(moves) <= 0.02 else 'NOT met'}; load average "
          f"{os.getloadavg()[0]:.1f})")
    print(f"  after {2 * len(moves)} moves vs a full recompute: largest difference {drift:.1e} of the maximum")
    exact = SeedDose(both.seeds, MODEL)
    gap = max(np.max(np.abs(DVH.of(both, st).doses - DVH.of(exact, st).doses)) / DVH.of(exact, st).dmax
              for st in structures)
    print(f"  live DVHs vs the full evaluation's exact DVHs (SeedDose): largest difference {gap:.1e} of Dmax")
    print("  CTV D90/V100/V150: " + ", ".join(f"{v:.1f} {u}" for v, u in dvh_metrics(both, structures[0])))

    diameter, centre, skin, carotid = bench_planning.CASES["4 cm node near skin"]
    case, cands, goals = bench_planning.build(diameter, centre, skin, carotid)
    strength = float(mci_to_u(0.8))
    _, t_w, c_w = timed(lambda: pipeline.optimise_plan(case, cands, strength, MODEL.key, goals))
    print(f"\n  (optimiser warm-up run, compile or cache load included: {t_w:.2f} s wall, {c_w:.2f} s CPU)")
    matrices, t_m, c_m = timed(lambda: pipeline.dose_matrices(case, cands, strength, MODEL.key))
    plan, t_o, c_o = timed(lambda: pipeline.optimise_plan(case, cands, strength, MODEL.key, goals,
                                                          matrices=matrices))
    print(f"\nOptimiser, ~40-seed plan (4 cm node near the skin, 0.8 mCi, {len(cands)} candidates; "
          f"load average {os.getloadavg()[0]:.1f}):")
    print(f"  dose matrices {t_m:.2f} s wall ({c_m:.2f} s CPU), optimisation {t_o:.2f} s wall ({c_o:.2f} s CPU) "
          f"(target <= 1 s: {'met' if t_o <= 1 else 'NOT met'}; bench_planning.py times it against the numpy "
          f"search and a simple greedy), total {t_m + t_o:.2f} s")
    print(f"  plan: {plan.n_seeds} seeds, {plan.n_needles} needles, "
          f"goals met (internal): {plan.terms['violation'] == 0}, D90 {plan.terms['D90']:.1f} Gy, "
          f"V100 {plan.terms['V100']:.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
