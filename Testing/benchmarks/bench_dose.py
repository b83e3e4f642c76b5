"""Benchmark: TG-43 grid dose engine vs a direct per-pair evaluation (printed figures, not a test).

60 seeds on a 100 x 100 x 100 grid of 1 mm voxels. The reference is the
independent scalar implementation (Testing/tg43_oracle.py), evaluated pair by
pair on a random sample of voxels; its time is scaled to the full grid, and the
two doses are compared on that sample where dose > 1% of the maximum.
Targets: largest relative difference <= 0.5%, engine >= 10x faster.
"""

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tg43_oracle  # noqa: E402

from SeedBrachyLib.dose import compute_dose  # noqa: E402
from SeedBrachyLib.grid import Grid  # noqa: E402
from SeedBrachyLib.seeds import Seed  # noqa: E402
from SeedBrachyLib.sources import get_model  # noqa: E402

N_SEEDS, SAMPLE = 60, 4000


def main():
    model = get_model("I125_OncoSeed6711")
    grid = Grid.around([0.0, 0.0, 0.0], [100.0, 100.0, 100.0], 1.0)
    rng = np.random.default_rng(7)
    axes = rng.normal([0, 0, 1], 0.2, (N_SEEDS, 3))
    seeds = [Seed(p, a, 0.635) for p, a in zip(rng.uniform(-20, 20, (N_SEEDS, 3)), axes)]
    pairs = grid.n_voxels * N_SEEDS

    t0 = time.perf_counter()
    dose = compute_dose(grid, seeds, model)
    t_engine = time.perf_counter() - t0

    raw = tg43_oracle.load(model.key)
    idx = rng.choice(grid.n_voxels, SAMPLE, replace=False)
    points = grid.points().reshape(-1, 3)[idx]
    seed_list = [(s.position, s.axis, s.strength_u) for s in seeds]
    t0 = time.perf_counter()
    ref = np.array([tg43_oracle.total_dose_gy(raw, p, seed_list) for p in points])
    t_ref_sample = time.perf_counter() - t0
    t_ref = t_ref_sample * grid.n_voxels / SAMPLE

    got = dose.reshape(-1)[idx].astype(float)
    mask = ref > 0.01 * dose.max()
    max_rel = float(np.max(np.abs(got[mask] - ref[mask]) / ref[mask]))

    print(f"TG-43 dose engine: {N_SEEDS} seeds on {grid.describe()} ({pairs:.2e} voxel-seed pairs)")
    print(f"  engine (vectorised, {dose.dtype}, threads): {t_engine:8.2f} s  {pairs / t_engine:12.3e} pairs/s")
    print(f"  direct per-pair reference (scalar, {SAMPLE} sampled voxels x {N_SEEDS} seeds in "
          f"{t_ref_sample:.1f} s): {t_ref:8.1f} s for the full grid (scaled)  "
          f"{SAMPLE * N_SEEDS / t_ref_sample:12.3e} pairs/s")
    print(f"  speed-up: {t_ref / t_engine:.0f}x (target >= 10x)")
    print(f"  largest relative difference where dose > 1% of max ({mask.sum()} voxels): "
          f"{100 * max_rel:.2e} % (target <= 0.5 %)")
    ok = max_rel <= 0.005 and t_ref / t_engine >= 10
    print("  PASS" if ok else "  FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
