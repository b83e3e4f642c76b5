"""Incremental dose: after any sequence of moves, additions and removals the grid dose equals a full recompute to
float32 precision, and every structure's DVH equals the exact DVH a full evaluation reports (same sample points,
same reading rules, :class:`SeedBrachyLib.dvh.SeedDose` with ``exact=True``), for targets and organs at risk."""

import functools
import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from SeedBrachyLib.dose import compute_dose
from SeedBrachyLib.dvh import DVH, GridDose, SeedDose, evaluate_plan
from SeedBrachyLib.errors import InputError
from SeedBrachyLib.grid import Grid
from SeedBrachyLib.incremental import LiveDose
from SeedBrachyLib.seeds import Seed
from SeedBrachyLib.sources import get_model
from SeedBrachyLib.structures import structure_from_mask

M = get_model("I125_OncoSeed6711")
F32 = float(np.finfo(np.float32).eps)


def _grid():
    return Grid.around([1.3, -2.1, 0.7], [40.0, 36.0, 30.0], [1.2, 0.9, 1.5],
                       Rotation.from_euler("xyz", [12, -25, 40], degrees=True).as_matrix())


@functools.cache
def _structures():
    """A fine target (0.5 mm mask: split 0.5 mm sample points), a fine 9.6 cc slab organ at risk beside the seeds
    (its hottest 4 cc split, a set that changes as seeds move) and a 1 mm binary mask (voxel centres)."""
    fine = Grid.around([0.0, 0.0, 0.0], [50.0, 50.0, 40.0], 0.5,
                       Rotation.from_euler("z", 20, degrees=True).as_matrix())
    p = fine.points()
    ctv = np.linalg.norm((p - [0.0, 0.0, 0.0]) / [9.0, 8.0, 7.0], axis=-1) <= 1
    slab = (np.abs(p[..., 0] - 13.0) <= 3.0) & (np.abs(p[..., 1]) <= 20.0) & (np.abs(p[..., 2]) <= 20.0)
    coarse = Grid.around([0.0, 0.0, 0.0], [50.0, 50.0, 40.0], 1.0)
    q = coarse.points()
    cord = (np.hypot(q[..., 0] + 12.0, q[..., 1]) <= 3.0) & (np.abs(q[..., 2]) <= 15.0)
    out = [structure_from_mask("CTV", ctv, fine, "target"), structure_from_mask("Slab", slab, fine, "oar"),
           structure_from_mask("Cord", cord, coarse, "oar")]
    assert [s.voxel_centres_only for s in out] == [False, False, True]  # every branch of the rule
    return out


def _seeds(rng, n=8):
    return [Seed(rng.uniform(-6, 6, 3), rng.normal(size=3), rng.uniform(0.4, 0.8)) for _ in range(n)]


def _same_dvh(live, exact):
    """The live DVH is the full evaluation's: same samples (count, volumes), doses to float32 precision."""
    assert live.doses.size == exact.doses.size
    assert np.array_equal(live.volumes, exact.volumes)
    assert np.max(np.abs(live.doses - exact.doses)) <= 2 * F32 * exact.dmax


def test_dvhs_and_dose_follow_any_sequence_of_edits_exactly(engine):
    rng = np.random.default_rng(8)
    grid, structures = _grid(), _structures()
    live = LiveDose(grid, _seeds(rng), M, structures, engine=engine)
    slab_samples = set()
    for step in range(9):
        action = step % 4
        if action in (0, 1):
            live.move(int(rng.integers(len(live.seeds))), rng.uniform(-8, 8, 3))
        elif action == 2:
            live.add(Seed(rng.uniform(-8, 8, 3), rng.normal(size=3), 0.6))
        else:
            live.remove(int(rng.integers(len(live.seeds))))
        exact = SeedDose(live.seeds, M, exact=True)
        for s in structures:
            _same_dvh(DVH.of(live, s), DVH.of(exact, s))
        slab_samples.add(DVH.of(exact, structures[1]).doses.size)
    assert len(slab_samples) > 2, "test geometry: the slab's split voxels must change along the sequence"
    full = compute_dose(grid, live.seeds, M, engine=engine, allow_outside=True)
    assert np.max(np.abs(live.dose - full)) <= 2 * F32 * float(full.max())  # float32 precision
    assert np.max(np.abs(live.dose - full) / full) < 1e-6
    # the evaluation tables: every metric as the full evaluation reports it
    rx = 100.0
    got = evaluate_plan(live, structures, rx, dose_volume=GridDose(live.dose, grid))
    want = evaluate_plan(exact, structures, rx, dose_volume=GridDose(full, grid))
    assert got.dose_description == want.dose_description
    for s in structures:
        for metric, value in want[s.name].values.items():
            assert got[s.name].values[metric] == pytest.approx(value, rel=4 * F32, abs=1e-9, nan_ok=True), metric


def test_the_comparison_fails_on_other_sample_points():
    """The check above has power: the target at one point per voxel, or the organ at risk without its split
    hottest voxels, reads metrics that differ by far more than its tolerance."""
    rng = np.random.default_rng(3)
    structures = _structures()
    exact = SeedDose(_seeds(rng), M, exact=True)
    for s in structures[:2]:
        coarse = DVH.from_samples(exact._dose(s.sample_points(math.inf)[0]), s.sample_points(math.inf)[1])
        full = DVH.of(exact, s)
        metric = "D90" if s.role == "target" else "D2cc"
        assert abs(coarse.metric(metric)[0] / full.metric(metric)[0] - 1) > 100 * F32, s.name


def test_sync_follows_a_seed_list_with_single_seed_edits():
    rng = np.random.default_rng(9)
    grid, structures = _grid(), _structures()
    seeds = _seeds(rng)
    live = LiveDose(grid, seeds, M, structures[2:])
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
        for s in structures:  # the cord kept since the start, the others taken in now
            _same_dvh(DVH.of(live, s), DVH.of(SeedDose(current, M, exact=True), s))


def test_points_only_mode_all_seeds_removed_and_bad_edits():
    rng = np.random.default_rng(2)
    structures = _structures()
    seeds = _seeds(rng, 2)
    live = LiveDose(None, seeds, M, structures)
    live.replace(1, Seed(seeds[1].position, [1, 0, 0], 2.0))
    seeds[1] = Seed(seeds[1].position, [1, 0, 0], 2.0)
    _same_dvh(DVH.of(live, structures[0]), DVH.of(SeedDose(seeds, M, exact=True), structures[0]))
    live.remove(0)
    live.remove(0)
    assert np.max(np.abs(DVH.of(live, structures[1]).doses)) <= 1e-12
    live.add(seeds[0])
    for s in structures:
        _same_dvh(DVH.of(live, s), DVH.of(SeedDose(seeds[:1], M, exact=True), s))
    with pytest.raises(InputError, match="no grid"):
        live.dose  # noqa: B018
    with pytest.raises(InputError, match=r"seed index 1 invalid: 1 seeds \(0..0\)"):
        live.move(1, [0, 0, 0])
    with pytest.raises(InputError, match="not a Seed"):
        live.add([0, 0, 0])
