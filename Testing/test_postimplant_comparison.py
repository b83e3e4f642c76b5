"""Post-plan dosimetry and the pre vs post comparison; the simulated implant.

Oracles: identical seeds give identical doses (zero differences); removing seeds lowers the dose
everywhere, so every dose and coverage metric can only fall; the needle axis equals the plan axis
for seeds planned along the needles; the 1D point source is the TG-43 point formalism.
"""

import math

import numpy as np
import pytest

from SeedBrachyLib.dose import compute_dose
from SeedBrachyLib.errors import InputError
from SeedBrachyLib.grid import Grid
from SeedBrachyLib.postimplant.comparison import compare_implant, oriented_seeds, post_plan_dose
from SeedBrachyLib.seeds import Needle, Seed
from SeedBrachyLib.structures import skin_rind, structure_on_grid
from SeedBrachyLib.synthetic.implant import needle_tracks, simulate_implant
from SeedBrachyLib.synthetic.phantom import fixed_seed_arrangement, neck_phantom

MODEL = "I125_OncoSeed6711"


@pytest.fixture(scope="module")
def plan():
    case = neck_phantom()
    grid = Grid.around(case.node_center, [64.0, 64.0, 64.0], 2.0)
    masks = dict(case.masks, Skin=skin_rind(case.masks["Body"], case.grid))
    structures = [structure_on_grid("GTV", masks["GTV"], case.grid, grid, role="target", supersampling=2)]
    structures += [structure_on_grid(n, masks[n], case.grid, grid, role="oar", supersampling=2)
                   for n in ("Carotid", "Skin")]
    body = structure_on_grid("Body", masks["Body"], case.grid, grid, role="oar", supersampling=2)
    seeds = fixed_seed_arrangement(case)
    return {"case": case, "grid": grid, "structures": structures, "body": body, "seeds": seeds,
            "dose": compute_dose(grid, seeds, MODEL)}


#: This plan has one target, the GTV; the planning aim (on the CTV) is read on it where a test says so.
ON_GTV = {"CTV": "GTV"}


def _compare(plan, implanted, **kw):
    return compare_implant(plan["grid"], plan["structures"], plan["case"].prescription_gy, plan["seeds"],
                           implanted, MODEL, body=plan["body"], pre_dose=plan["dose"], **kw)


def test_identical_seeds_reproduce_the_pre_plan_exactly(plan):
    comparison, post = _compare(plan, plan["seeds"])
    np.testing.assert_array_equal(post.dose, plan["dose"])
    print(comparison.format())
    metrics = {(r.structure, r.metric) for r in comparison.rows}
    for m in ("D90", "D100", "V90", "V100", "V150", "V200", "CI", "EI", "HI"):
        assert ("GTV", m) in metrics
    assert {("Carotid", "D2cc"), ("Skin", "D2cc"), ("Implant", "Seeds")} <= metrics
    for r in comparison.rows:
        assert r.difference == 0.0 or (math.isnan(r.pre) and math.isnan(r.post)), r
    d90 = comparison.row("GTV", "D90")
    assert 60.0 < d90.pre < 400.0  # a real plan, not an empty table
    assert "line source" in comparison.post_description and "from detection" in comparison.post_description


def test_removing_seeds_lowers_every_dose_and_coverage_metric(plan):
    implanted = plan["seeds"][3:]
    comparison, post = _compare(plan, implanted)
    assert np.all(post.dose <= plan["dose"] + 1e-4)
    print(comparison.format())
    for r in comparison.rows:
        if r.metric in ("D90", "D100", "V90", "V100", "V150", "V200", "D2cc"):
            assert r.difference <= 1e-6 or math.isnan(r.difference), r
    assert comparison.row("GTV", "D90").difference < -1.0
    assert comparison.row("GTV", "V100").difference < 0.0
    assert comparison.row("Implant", "Seeds").difference == -3
    assert comparison.row("GTV", "D90").relative_pct < 0.0


def test_axis_choices(plan):
    seeds = plan["seeds"]
    direction = plan["case"].needle_direction
    # plan seeds lie along the needle direction: "needle" reproduces "detection" exactly
    tilted = [Seed(s.position, s.axis + [0.0, 0.5, 0.3], s.strength_u, s.label) for s in seeds]
    by_needle = post_plan_dose(plan["grid"], tilted, MODEL, "needle", needle_direction=direction)
    np.testing.assert_allclose(by_needle.dose, plan["dose"], rtol=1e-6)
    by_detection = post_plan_dose(plan["grid"], tilted, MODEL, "detection")
    assert np.abs(by_detection.dose - plan["dose"]).max() > 1.0  # tilted axes do change the dose
    point = post_plan_dose(plan["grid"], seeds, MODEL, "unknown")
    np.testing.assert_array_equal(point.dose, compute_dose(plan["grid"], seeds, MODEL, formalism="point"))
    assert point.formalism == "point" and "1D point source" in point.description
    comparison, _ = _compare(plan, seeds, axis_source="unknown")
    d90 = comparison.row("GTV", "D90")
    print(f"GTV D90: line {d90.pre:.1f} Gy, point {d90.post:.1f} Gy ({d90.relative_pct:+.2f} %)")
    assert d90.difference != 0.0 and abs(d90.relative_pct) < 5.0
    assert "1D point source" in comparison.format()


def test_needle_axis_comes_from_the_nearest_needle():
    needles = [Needle([0.0, 0.0, 0.0], [0.0, 0.0, 50.0]), Needle([20.0, 0.0, 0.0], [20.0, 50.0, 0.0])]
    seeds = [Seed([0.5, 0.0, 10.0], [1.0, 0.0, 0.0]), Seed([20.0, 10.0, 0.4], [1.0, 0.0, 0.0])]
    oriented, formalism = oriented_seeds(seeds, "needle", needles=needles)
    assert formalism == "line"
    np.testing.assert_allclose(oriented[0].axis, [0.0, 0.0, 1.0])
    np.testing.assert_allclose(oriented[1].axis, [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(oriented[1].position, seeds[1].position)
    with pytest.raises(InputError, match="needs the needles"):
        oriented_seeds(seeds, "needle")
    with pytest.raises(InputError, match="axis source"):
        oriented_seeds(seeds, "guess")
    with pytest.raises(InputError, match="no seeds"):
        oriented_seeds([], "detection")


# ------------------------------------------------------------------ simulated implant
def test_simulated_implant_is_deterministic_and_realistic(plan):
    seeds = plan["seeds"]
    a, b = simulate_implant(seeds, random_seed=4), simulate_implant(seeds, random_seed=4)
    c = simulate_implant(seeds, random_seed=5)
    np.testing.assert_array_equal([s.position for s in a.seeds], [s.position for s in b.seeds])
    assert not np.allclose([s.position for s in a.seeds][:5], [s.position for s in c.seeds][:5])
    assert len(a.seeds) == len(seeds) - 1 and len(a.lost) == 1 and len(a.migrated) == 1
    assert a.needle_count == len(set(needle_tracks(np.array([s.position for s in seeds]),
                                                   plan["case"].needle_direction)))
    labels = [s.label for s in a.seeds]
    moved = a.displacement_mm[labels.index(a.migrated[0])]
    assert moved >= 8.0 - 3 * 3.0  # 8-15 mm slide plus a few mm of placement error
    for s in a.seeds:
        assert abs(np.linalg.norm(s.axis) - 1.0) < 1e-12
    print(a.describe())


def test_simulated_displacements_match_the_error_model():
    """Many seeds, no lost/migrated: the 3D displacement RMS is sqrt(3 sp^2 + depth^2 + 2 lateral^2)."""
    seeds = [Seed([x, y, z], [-1.0, 0.0, 0.0], 0.6) for x in np.arange(0, 40, 10.0)
             for y in np.arange(0, 100, 10.0) for z in np.arange(0, 100, 10.0)]
    im = simulate_implant(seeds, random_seed=1, placement_sd_mm=1.5, depth_sd_mm=2.0, lateral_sd_mm=1.0,
                          n_lost=0, n_migrated=0)
    rms = float(np.sqrt(np.mean(im.displacement_mm ** 2)))
    expected = math.sqrt(3 * 1.5 ** 2 + 2.0 ** 2 + 2 * 1.0 ** 2)
    print(f"simulated implant, {len(seeds)} seeds on {im.needle_count} needles: displacement RMS {rms:.2f} mm "
          f"(model {expected:.2f} mm), mean {im.displacement_mm.mean():.2f} mm")
    assert im.needle_count == 100
    assert rms == pytest.approx(expected, rel=0.1)
    # without per-seed error, seeds on one needle share its shift
    rigid = simulate_implant(seeds, random_seed=1, placement_sd_mm=0.0, n_lost=0, n_migrated=0)
    shift = np.array([s.position for s in rigid.seeds]) - np.array([s.position for s in seeds])
    track = needle_tracks(np.array([s.position for s in seeds]), [-1.0, 0.0, 0.0])
    for t in range(rigid.needle_count):
        np.testing.assert_allclose(shift[track == t], shift[track == t][:1].repeat((track == t).sum(), 0),
                                   atol=1e-12)
    assert np.ptp(shift[:, 0]) > 1.0  # ... and needles differ
    with pytest.raises(InputError, match="n_lost"):
        simulate_implant(seeds[:3], n_lost=2, n_migrated=1)


def test_thresholds_are_checked_on_the_post_plan_values(plan):
    implanted = plan["seeds"][::2]
    comparison, _ = _compare(plan, implanted, user_limits=[("Skin", "D2cc", 45.0)], targets=ON_GTV)
    d90 = comparison.row("GTV", "D90")
    skin = comparison.row("Skin", "D2cc")
    print(f"half the seeds: D90 {d90.pre:.1f} -> {d90.post:.1f} Gy, skin D2cc {skin.pre:.1f} -> {skin.post:.1f} Gy")
    by_goal = {c.goal: c for c in comparison.checks}
    huang = by_goal["post-implant D90 > 102.7 Gy"]
    assert huang.measured == d90.post and huang.passed == (d90.post > 102.7)
    assert by_goal["V100 >= 90% of the CTV"].measured == comparison.row("GTV", "V100").post
    user = by_goal["Skin D2cc <= 45 Gy"]
    # this fixed 64 mm grid holds a tenth of the skin and nothing bounds the dose beyond it: the limit,
    # which the part inside meets, is not passed on that fragment
    assert user.measured == skin.post <= 45.0 and user.status == "NOT EVALUATED"
    assert "of Skin was evaluated" in user.note
    assert d90.pre > 102.7 > d90.post  # the pre-plan would pass, the post-plan fails
    assert not huang.passed
    assert "FAIL  GTV D90" in comparison.format()


def test_each_published_goal_is_read_on_the_target_its_source_uses(plan):
    """The lymph-node goal is read on the GTV; the planning aim on the CTV, which this plan does not have, so it
    is NOT EVALUATED rather than read on the GTV; a structure named for the CTV is used when given."""
    comparison, _ = _compare(plan, plan["seeds"][::2], indications=("lymph-node-metastases", "general"))
    assert [(c.goal, c.structure, c.status == "NOT EVALUATED") for c in comparison.checks] == [
        ("post-implant D90 > 102.7 Gy", "GTV", False), ("D90 >= prescription", "CTV", True),
        ("V100 >= 90% of the CTV", "CTV", True)]
    named = _compare(plan, plan["seeds"][::2], indications=("general",), targets=ON_GTV)[0]
    assert [c.structure for c in named.checks] == ["GTV", "GTV"] and all(c.status != "NOT EVALUATED"
                                                                        for c in named.checks)
    with pytest.raises(InputError, match="indication"):
        _compare(plan, plan["seeds"], indications=("prostate",))
