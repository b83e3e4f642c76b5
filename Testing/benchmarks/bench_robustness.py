"""Benchmark: placement robustness of a 40-seed plan, 1,000 simulated implants (printed figures, not a test).

Case: a 22.4 cc spherical GTV (radius 17.5 mm, from a 1 x 1 x 2 mm CT-like mask, sampled on a 2 mm grid),
40 seeds of 0.6 U on 9 parallel needles 10 mm apart, and a skin-like organ at risk (a 5 mm slab 12 mm beyond
the GTV, 2 mm points). Errors: the cited defaults (``PlacementErrors()``). Timed: ``evaluate_robustness``
with the target D90/V100, the organ's D2cc and the 102.7 Gy D90 goal. Reference in the same run: the plain
loop (every point of every structure evaluated exactly with ``dose_at_points`` for every sample, no far-point
bound), on the first samples with the same random seed; the figures agree to the compiled table's accuracy
(< 0.05 % of the dose; exactly with the numpy engine).
Target (issue 17): about 10 s for 1,000 samples. With the numpy engine (no numba) fewer samples are run and
the time for 1,000 is extrapolated (said in the output).
"""

import importlib.util
import os
import time

import numpy as np

from SeedBrachyLib.checks import goals_for
from SeedBrachyLib.dose import dose_at_points
from SeedBrachyLib.grid import Grid
from SeedBrachyLib.planning import robustness as rob
from SeedBrachyLib.seeds import Needle, Seed

N_TARGET = 1000


def engine_name():
    """Which dose engine dose_at_points uses (the compiled kernel when SeedBrachyLib.kernel and numba are there)."""
    if importlib.util.find_spec("SeedBrachyLib.kernel") is None:
        return "numpy (no compiled kernel in this tree)"
    from SeedBrachyLib import kernel
    return kernel.describe()


def case():
    """(geometry, structures): 40 seeds on 9 needles along +x through a 17.5 mm sphere; CTV and a skin slab."""
    radius = 17.5
    ct = Grid.around([0, 0, 0], [80, 80, 80], (1.0, 1.0, 2.0))
    pts = ct.points()
    ctv = np.linalg.norm(pts, axis=-1) <= radius
    slab = (pts[..., 1] > radius + 12) & (pts[..., 1] <= radius + 17) & (np.abs(pts[..., 0]) < 35) \
        & (np.abs(pts[..., 2]) < 35)
    needles, seeds = [], []
    for a in (-10.0, 0.0, 10.0):
        for b in (-10.0, 0.0, 10.0):
            needle = Needle([-60.0, a, b], [30.0, a, b], f"{'ABC'[int(a // 10) + 1]}{int(b // 10) + 2}")
            needles.append(needle)
            half = np.sqrt(max(radius ** 2 - a * a - b * b, 0.0)) - 2.5
            for x in np.arange(-half, half + 1e-6, 5.0 if a and b else 5.5):
                seeds.append(Seed([x, a, b], [1, 0, 0], 0.6))
    seeds = seeds[:40]
    geometry = rob.ImplantGeometry.from_seeds(seeds, needles)
    structures = [rob.points_from_mask("GTV", ctv, ct, 2.0, "target"), rob.points_from_mask("Skin", slab, ct, 2.0)]
    return geometry, structures


def reference(geometry, structures, n, random_seed):
    """Plain loop: all points of every structure, dose_at_points per sample; D90, V100 and D2cc per sample."""
    sampled = rob.sample_implants(geometry, rob.PlacementErrors(), n, random_seed)
    out = []
    for i in range(n):
        seeds = sampled.seeds(i, geometry.strengths_u)
        row = []
        for s in structures:
            dvh = s.dvh(dose_at_points(s.points, seeds, "I125_OncoSeed6711"))
            row += [dvh.metric("D90")[0], dvh.metric("V100", 120.0)[0]] if s.role == "target" else \
                [dvh.metric("D2cc")[0]]
        out.append(row)
    return np.array(out)


def main():
    geometry, structures = case()
    engine = engine_name()
    compiled = engine.lower().startswith("compiled")
    n = N_TARGET if compiled else 100
    n_points = sum(len(s.points) for s in structures)
    print(f"Robustness benchmark: {geometry.n_seeds} seeds on {len(geometry.entries)} needles, "
          f"{n_points} structure points ({', '.join(f'{s.name} {len(s.points)}' for s in structures)}); "
          f"dose engine: {engine}")
    goals = goals_for("lymph-node-metastases")
    t0, c0 = time.perf_counter(), time.process_time()
    rob.evaluate_robustness(geometry, "I125_OncoSeed6711", structures, goals, n_samples=2, prescription_gy=120.0)
    print(f"warm-up (compile or cache load, table build, 2 samples): {time.perf_counter() - t0:.2f} s wall, "
          f"{time.process_time() - c0:.2f} s CPU")
    load = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    result = rob.evaluate_robustness(geometry, "I125_OncoSeed6711", structures, goals, n_samples=n,
                                     prescription_gy=120.0, random_seed=1)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    per_1000 = seconds * N_TARGET / n
    print(f"evaluate_robustness: {n} samples in {seconds:.2f} s wall, {cpu:.2f} s CPU ({os.cpu_count()} cores, load "
          f"average {load:.1f} before, {os.getloadavg()[0]:.1f} after) -> {per_1000:.1f} s wall, "
          f"{cpu * N_TARGET / n:.1f} s CPU per 1,000 samples"
          + ("" if n == N_TARGET else " (extrapolated: numpy engine)") + "; target about 10 s")
    for line in result.summary_lines()[1:]:
        print(line)
    n_ref = 20
    t0 = time.perf_counter()
    ref = reference(geometry, structures, n_ref, random_seed=1)
    ref_seconds = time.perf_counter() - t0
    ours = np.column_stack([result.values[("GTV", "D90")][:n_ref], result.values[("GTV", "V100")][:n_ref],
                            result.values[("Skin", "D2cc")][:n_ref]])
    diff = float(np.max(np.abs(ours - ref)))
    print(f"reference (all points every sample): {n_ref} samples in {ref_seconds:.2f} s -> "
          f"{ref_seconds * N_TARGET / n_ref:.1f} s per 1,000; speed-up {ref_seconds / n_ref / (seconds / n):.1f}x; "
          f"largest difference of D90/V100/D2cc on those samples: {diff:.2e}")


if __name__ == "__main__":
    main()
