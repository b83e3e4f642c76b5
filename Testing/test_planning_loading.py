"""Candidate spacing and loading patterns on a spherical CTV; nomogram formula; seed order arithmetic."""

import math

import numpy as np
import pytest

from SeedBrachyLib.errors import InputError
from SeedBrachyLib.grid import Grid
from SeedBrachyLib.planning import nomogram
from SeedBrachyLib.planning.candidates import candidate_positions
from SeedBrachyLib.planning.loading import load_pattern
from SeedBrachyLib.planning.order import seed_order
from SeedBrachyLib.planning.template import plan_needles, template_for_target


@pytest.fixture(scope="module")
def sphere():
    grid = Grid.around([0, 0, 0], [90, 90, 90], 1.0)
    p = grid.points()
    body = np.linalg.norm(p[..., :2], axis=-1) <= 44
    ctv = np.linalg.norm(p, axis=-1) <= 20.0
    t = template_for_target(ctv, grid, [1.0, 0.0, 0.0], body, spacing_mm=10.0)
    ns = plan_needles(t.paths(), ctv, body, grid)
    return grid, ctv, ns.needles


@pytest.mark.parametrize("spacing", [5.0, 7.0, 10.0])
def test_candidates_every_spacing_inside_ctv(sphere, spacing):
    grid, ctv, needles = sphere
    c = candidate_positions(needles, ctv, grid, spacing)
    assert np.all(np.linalg.norm(c.positions, axis=1) <= 20.5)
    for n, pn in enumerate(needles):
        on = c.on_needle(n)
        d = c.depth_mm[on]
        np.testing.assert_allclose(-np.diff(d), spacing, atol=1e-9)  # tip first, one spacing apart
        np.testing.assert_allclose(c.positions[on], pn.point_at(d), atol=1e-9)  # on the needle
        # centred on the needle's CTV chord
        assert 0.5 * (d.max() + d.min()) == pytest.approx(0.5 * (pn.ctv_start_mm + pn.ctv_end_mm), abs=1e-6)
    # surface distance: 20 mm sphere, so depth under the surface = 20 - |p| within a voxel
    np.testing.assert_allclose(c.surface_mm, 20.0 - np.linalg.norm(c.positions, axis=1), atol=1.0)


@pytest.mark.parametrize("spacing", [4.0, 11.0])
def test_candidate_spacing_range(sphere, spacing):
    grid, ctv, needles = sphere
    with pytest.raises(InputError, match="5..10 mm"):
        candidate_positions(needles, ctv, grid, spacing)


def _gaps(plan, subset=None):
    c = plan.candidates
    chosen = set(plan.chosen.tolist()) if subset is None else subset
    out = []
    for n in range(len(c.needles)):
        d = [c.depth_mm[i] for i in c.on_needle(n) if i in chosen]
        out += list(-np.diff(d))
    return np.array(out)


def test_patterns(sphere):
    grid, ctv, needles = sphere
    c = candidate_positions(needles, ctv, grid, 5.0)
    rim = 7.5
    uni = load_pattern(c, "uniform", 0.6, seed_spacing_mm=10.0)
    per = load_pattern(c, "peripheral", 0.6, seed_spacing_mm=10.0, rim_mm=rim)
    mod = load_pattern(c, "modified_peripheral", 0.6, seed_spacing_mm=10.0, rim_mm=rim)
    # uniform: every needle loaded, seeds exactly 10 mm apart, neighbouring holes staggered by one 5 mm step
    assert uni.n_needles == len(needles)
    np.testing.assert_allclose(_gaps(uni), 10.0, atol=1e-9)
    first = {}
    for n, pn in enumerate(c.needles):
        on = list(c.on_needle(n))
        first[pn.label] = min(on.index(i) for i in uni.chosen if c.needle_index[i] == n)
    assert first["D4"] != first["D5"] and first["D4"] != first["E4"] and first["D4"] == first["E5"]
    # peripheral: only rim positions; the centre stays empty
    assert np.all(c.surface_mm[per.chosen] <= rim)
    assert np.all(_gaps(per) >= 10.0 - 1e-9)
    central = np.flatnonzero(c.surface_mm > rim)
    assert central.size > 0
    # modified peripheral: the same rim seeds plus some (fewer) central seeds, 20 mm apart on a needle
    mod_central = [i for i in mod.chosen if c.surface_mm[i] > rim]
    assert set(per.chosen.tolist()) <= set(mod.chosen.tolist())
    assert 0 < len(mod_central) < central.size
    assert np.all(_gaps(mod, set(mod_central)) >= 20.0 - 1e-9)
    assert np.all(_gaps(mod) >= 10.0 - 1e-9)
    seeds = mod.seeds()
    assert len(seeds) == mod.n_seeds and all(s.strength_u == 0.6 for s in seeds)
    with pytest.raises(InputError, match="pattern"):
        load_pattern(c, "random", 0.6)
    with pytest.raises(InputError, match="candidate spacing"):
        load_pattern(c, "uniform", 0.6, seed_spacing_mm=3.0)


@pytest.mark.parametrize("da, expected", [(1.0, 5.0), (2.0, 10.0), (3.0, 15.0),
                                          (4.0, 1.525 * 4.0 ** 2.2), (5.0, 1.525 * 5.0 ** 2.2)])
def test_anderson_formula(da, expected):
    assert nomogram.anderson_total_activity_mci(da) == pytest.approx(expected, rel=1e-12)
    assert nomogram.anderson_total_activity_mci(da, 120.0) == pytest.approx(expected * 120.0 / 145.0, rel=1e-12)


def test_nomogram_estimate_box_any_orientation():
    for angle in (0.0, 0.5):
        rot = np.array([[1, 0, 0], [0, math.cos(angle), -math.sin(angle)], [0, math.sin(angle), math.cos(angle)]])
        grid = Grid.around([0, 0, 0], [60, 60, 60], 0.5, rot)
        p = grid.points() @ rot  # coordinates in the box's own frame
        box = (np.abs(p[..., 0]) < 20) & (np.abs(p[..., 1]) < 15) & (np.abs(p[..., 2]) < 10)
        e = nomogram.estimate(box, grid, 145.0, 0.5)
        np.testing.assert_allclose(e.dimensions_mm, [40, 30, 20], atol=0.6)
        assert e.average_dimension_cm == pytest.approx(3.0, abs=0.02)
        assert e.total_activity_mci == pytest.approx(nomogram.anderson_total_activity_mci(e.average_dimension_cm))
        assert e.n_seeds == math.ceil(e.total_activity_mci / 0.5)
    with pytest.raises(InputError, match="mCi"):
        nomogram.estimate(box, grid, 145.0, 0.0)
    with pytest.raises(InputError, match="average dimension"):
        nomogram.anderson_total_activity_mci(-1.0)


def test_seed_order_arithmetic():
    o = seed_order(27, activity_mci=0.6)
    assert (o.n_planned, o.n_spares, o.n_order) == (27, 3, 30)
    assert o.strength_u == pytest.approx(0.6 * 1.270)
    assert o.total_planned_mci == pytest.approx(16.2) and o.total_planned_u == pytest.approx(27 * 0.762)
    assert o.total_order_mci == pytest.approx(18.0)
    assert "1.270 U/mCi" in "\n".join(o.lines())
    small = seed_order(5, strength_u=1.0, u_per_mci=1.27)
    assert small.n_spares == 2 and small.activity_mci == pytest.approx(1.0 / 1.27)
    assert seed_order(40, activity_mci=0.5, spare_fraction=0.0, min_spares=0).n_order == 40
    with pytest.raises(InputError, match="not both"):
        seed_order(10, activity_mci=0.5, strength_u=0.6)
    with pytest.raises(InputError, match="seed count"):
        seed_order(0, activity_mci=0.5)
