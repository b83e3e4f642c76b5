"""Incremental dose: after any sequence of moves, additions and removals the grid dose equals a full recompute to
float32 precision and the structure-point doses equal the exact point dose."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from SeedBrachyLib.dose import compute_dose, dose_at_points
from SeedBrachyLib.errors import InputError
from SeedBrachyLib.grid import Grid
from SeedBrachyLib.incremental import LiveDose
from SeedBrachyLib.seeds import Seed
from SeedBrachyLib.sources import get_model

M = get_model("I125_OncoSeed6711")


def _case(rng):
    grid = Grid.around([1.3, -2.1, 0.7], [40.0, 36.0, 30.0], [1.2, 0.9, 1.5],
                       Rotation.from_euler("xyz", [12, -25, 40], degrees=True).as_matrix())
    seeds = [Seed(rng.uniform(-10, 10, 3), rng.normal(size=3), rng.uniform(0.4, 0.8)) for _ in range(8)]
    structures = {"CTV": rng.uniform(-8, 8, (3000, 3)), "skin": rng.uniform(-25, 25, (2000, 3)),
                  "cord": np.c_[np.zeros(500), np.full(500, 12.0), np.linspace(-15, 15, 500)]}
    return grid, seeds, structures


def test_any_sequence_of_edits_matches_a_full_recompute(engine):
    rng = np.random.default_rng(8)
    grid, seeds, structures = _case(rng)
    live = LiveDose(grid, seeds, M, structures, engine=engine)
    for step in range(24):
        action = step % 4
        if action in (0, 1):
            live.move(int(rng.integers(len(live.seeds))), rng.uniform(-12, 12, 3))
        elif action == 2:
            live.add(Seed(rng.uniform(-12, 12, 3), rng.normal(size=3), 0.6))
        else:
            live.remove(int(rng.integers(len(live.seeds))))
    full = compute_dose(grid, live.seeds, M, engine=engine, allow_outside=True)
    scale = float(full.max())
    assert np.max(np.abs(live.dose - full)) <= 2 * np.finfo(np.float32).eps * scale  # float32 precision
    assert np.max(np.abs(live.dose - full) / full) < 1e-6
    for name, pts in structures.items():
        assert np.allclose(live.point_dose(name), dose_at_points(pts, live.seeds, M, engine="numpy"), rtol=1e-10)


def test_replace_changes_strength_and_axis_and_points_only_mode():
    rng = np.random.default_rng(2)
    grid, seeds, structures = _case(rng)
    live = LiveDose(None, seeds, M, structures)
    live.replace(3, Seed(seeds[3].position, [1, 0, 0], 2.0))
    seeds[3] = Seed(seeds[3].position, [1, 0, 0], 2.0)
    for name, pts in structures.items():
        assert np.allclose(live.point_dose(name), dose_at_points(pts, seeds, M), rtol=1e-10)
    with pytest.raises(InputError, match="no grid"):
        live.dose  # noqa: B018
    with pytest.raises(InputError, match=r"seed index 8 invalid: 8 seeds \(0..7\)"):
        live.move(8, [0, 0, 0])
    with pytest.raises(InputError, match="unknown"):
        live.point_dose("bladder")
    with pytest.raises(InputError, match="not a Seed"):
        live.add([0, 0, 0])


def test_all_seeds_removed_gives_zero_and_they_can_come_back():
    rng = np.random.default_rng(4)
    grid, seeds, structures = _case(rng)
    live = LiveDose(grid, seeds[:2], M, structures)
    live.remove(0)
    live.remove(0)
    assert np.max(np.abs(live.dose)) <= 1e-9 * compute_dose(grid, seeds[:2], M).max()
    live.add(seeds[5])
    assert np.allclose(live.dose, compute_dose(grid, [seeds[5]], M), rtol=1e-6, atol=1e-6)


def test_sync_follows_a_seed_list_with_single_seed_edits():
    rng = np.random.default_rng(9)
    grid, seeds, structures = _case(rng)
    live = LiveDose(grid, seeds, M, structures)
    edited = list(seeds)
    edited[2] = Seed(edited[2].position + [1.0, 0, 0], edited[2].axis, edited[2].strength_u)  # dragged
    assert live.sync(edited) == 1
    edited.insert(4, Seed([3.0, 3.0, 3.0], [0, 0, 1], 0.5))  # placed by hand
    assert live.sync(edited) == 1
    del edited[0]  # deleted
    assert live.sync(edited) == 1
    assert live.sync(edited) == 0
    for current in (list(edited), edited[:3]):
        if len(current) == 3:
            assert live.sync(current) == 3  # several at once: full recompute
        assert np.allclose(live.dose, compute_dose(grid, current, M, allow_outside=True), rtol=1e-6, atol=1e-6)
        for name, pts in structures.items():
            assert np.allclose(live.point_dose(name), dose_at_points(pts, current, M), rtol=1e-10)
