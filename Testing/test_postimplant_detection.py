"""Seed detection: the forward model, CTs not in HU, bone/clips/fiducials/calcifications, groupings, a known
count, review marking, and sensitivity/precision on the independent phantoms of Testing/ct_phantoms
(written from the imaging physics, not from the detector; the SCORING sample is marked slow).

Detected and true seeds are matched by Hungarian assignment within 2.5 mm. Run with ``-s`` for figures.
"""

import dataclasses
import math

import numpy as np
import pytest
from ct_phantoms import anatomy as anatomy_lib
from ct_phantoms import cases, physics, scoring

from SeedBrachyLib.errors import Cancelled, InputError
from SeedBrachyLib.grid import Grid
from SeedBrachyLib.postimplant import seed_model
from SeedBrachyLib.postimplant.detection import detect_seeds, estimate_thickness, match_seeds

# small series for the fast lane: own random seeds, neither TUNING nor SCORING
FAST = cases.Case("fast pelvis 2 mm", "pelvis", 7001, thickness=2.0, increment=2.0, fov=(110.0, 90.0),
                  length=40.0, needle_seeds=14, groups={"end-to-end": 1, "side-by-side": 1, "clump3": 0,
                                                        "bundle": 0}, in_bone=1, near_bone=1, migrated=1)


@pytest.fixture(scope="module")
def fast_phantom():
    return cases.build(FAST)


def _detect(ph, **kw):
    return detect_seeds(ph.ct, scoring.grid_of(ph.series), slice_thickness_mm=ph.slice_thickness_mm, **kw)


def _found_tagged(ph, result, tag):
    """(matched (found, true) pairs, how many of the seeds tagged ``tag`` were found)."""
    pairs, _ = scoring.match([s.position for s in result.seeds], [s.position for s in ph.seeds])
    hit = {t for _f, t in pairs}
    return pairs, sum(t in hit for t, s in enumerate(ph.seeds) if tag in s.tags)


def _score(ph, result):
    pairs, dist = scoring.match([s.position for s in result.seeds], [s.position for s in ph.seeds])
    return len(pairs) / len(ph.seeds), len(pairs) / max(len(result.seeds), 1), dist


# ------------------------------------------------------------------ forward model
def test_seed_image_conserves_mass_and_peaks_lower_on_thick_slices():
    axis = seed_model._axis(1.2, 0.4)
    g = np.arange(-60, 61) * 0.2
    thin = seed_model.SeriesModel(np.array([0.2, 0.2, 0.2]), 1.0, 0.45)
    assert seed_model.render(thin, [g, g, g], [np.zeros(3)], [axis], [1.0]).sum() * 0.008 == pytest.approx(1, abs=2e-3)
    peaks = [seed_model.peak_per_mass(seed_model.SeriesModel(np.array([0.8, 0.8, t]), t, 0.45),
                                      np.array([1.0, 0, 0])) for t in (0.625, 1.0, 2.0, 5.0)]
    assert all(a > b for a, b in zip(peaks, peaks[1:]))
    # a seed lying in the slice plane spreads over the slice: peak ~ 1 / thickness for thick slices
    assert peaks[2] / peaks[3] == pytest.approx(2.5, rel=0.15)


def test_jacobian_matches_finite_differences():
    model = seed_model.SeriesModel(np.array([0.7, 0.9, 2.0]), 3.0, 0.4, None)
    coords = [np.arange(-5, 6) * 0.7, np.arange(-4, 5) * 0.9, np.arange(-3, 4) * 2.0]
    kk, jj, ii = np.nonzero(np.ones((7, 9, 11), bool))
    p = np.array([0.1, -0.2, 0.3, 0.8, 0.5, math.log(4e4), 0.9, 0.4, -0.5, 1.9, -1.0, math.log(3e4)])

    def value(q):
        c = [q[0:3], q[6:9]]
        a = [seed_model._axis(q[3], q[4]), seed_model._axis(q[9], q[10])]
        return seed_model.render_at(model, coords, (ii, jj, kk), c, a, [math.exp(q[5]), math.exp(q[11])],
                                    jacobian=True)

    _v, jac = value(p)
    numeric = np.stack([(value(p + 1e-6 * e)[0] - value(p - 1e-6 * e)[0]) / 2e-6 for e in np.eye(12)], 1)
    np.testing.assert_allclose(jac, numeric, atol=1e-4 * np.abs(numeric).max())


def test_fit_recovers_a_clipped_seed_rendered_by_the_independent_generator():
    series = physics.series_around(np.zeros(3), (24.0, 24.0), (0.8, 0.8), 1.0, 1.0, 14.0, (0.45, 0.45), 3071.0)
    truth = np.array([0.23, -0.31, 0.42])
    axis = np.array([0.6, 0.3, 0.74]) / np.linalg.norm([0.6, 0.3, 0.74])
    image = np.zeros(series.shape, np.float32) + 40.0
    physics.splat(image, series, *physics.seed_points(truth, axis, "Ag rod", 70000.0, 5500.0))
    ct = physics.store(image, 3071.0)
    result = detect_seeds(ct, scoring.grid_of(series), slice_thickness_mm=1.0)
    assert len(result.seeds) == 1
    assert np.linalg.norm(result.seeds[0].position - truth) < 0.15
    assert math.degrees(math.acos(abs(result.seeds[0].axis @ axis))) < 5


@pytest.mark.parametrize("psf_sigma, within", [(0.3, 0.2), (0.6, 0.05)])
def test_in_plane_blur_and_one_seeds_mass_are_fitted_from_the_seeds(psf_sigma, within):
    """Six seeds from the independent generator through a sharp (0.3 mm) or a soft (0.6 mm) kernel, 1.25 mm
    slices clipped at 3071 HU: the blur whose seed images fit best is reported, and one seed's mass (HU mm^3)
    comes out within ``within`` of the generator's (with the blur fixed at 0.45 mm: 0.64 and 1.10 of it; the
    sharp kernel's clipped peak hides most of the mass, 0.81 with the right blur)."""
    series = physics.series_around(np.zeros(3), (60.0, 60.0), (0.8, 0.8), 1.25, 1.25, 24.0, (psf_sigma,) * 2,
                                   3071.0)
    image = np.full(series.shape, 40.0, np.float32)
    rng = np.random.default_rng(31)
    mass = 0.0
    for c in ([-18, -18, 0], [0, -18, 3], [18, -18, -3], [-18, 18, 2], [0, 18, -2], [18, 18, 1]):
        points, weights = physics.seed_points(np.array(c, float) + rng.uniform(-0.5, 0.5, 3), _unit_axis(rng),
                                              "Ag rod", 70000.0, 5500.0)
        physics.splat(image, series, points, weights)
        mass = float(weights.sum())
    image += physics.textured_noise(series, 15.0, rng)
    result = detect_seeds(physics.store(image, 3071.0), scoring.grid_of(series), slice_thickness_mm=1.25)
    assert len(result.seeds) == 6
    fitted = float(result.series.split("in-plane blur ")[2].split(" mm")[0])
    assert abs(fitted - psf_sigma) <= 0.08
    assert result.single_seed_mass == pytest.approx(mass, rel=within)


# ------------------------------------------------------------------ not HU
def _plain_grid(shape=(20, 30, 30)):
    return Grid(np.zeros(3), (1.0, 1.0, 2.0), np.eye(3), shape[::-1])


@pytest.mark.parametrize("make, seen", [
    (lambda a: a.astype(np.int8), "8-bit"),
    (lambda a: (a + 1024).astype(np.uint16), "rescale intercept"),
    (lambda a: np.full(a.shape, 40, np.int16), "single value 40"),
])
def test_ct_not_in_hu_is_refused_naming_what_was_seen(make, seen):
    rng = np.random.default_rng(0)
    hu = np.where(rng.random((20, 30, 30)) < 0.2, -1000, 40 + rng.normal(0, 15, (20, 30, 30))).astype(np.int16)
    hu[10, 15, 10:16] = 3071
    with pytest.raises(InputError, match=seen):
        detect_seeds(make(hu), _plain_grid())


# ------------------------------------------------------------------ not seeds
def test_clip_level_of_12_and_16_bit_ranges():
    """The top of the stored range is a clip level when voxels sit exactly at the top of a 12-bit (3071, 4095
    HU) or 16-bit (31743, 32767 HU) range, or on a plateau under 4096 HU; a few bright voxels elsewhere are not."""
    from SeedBrachyLib.postimplant import hu_scale

    for top, count, expected in ((3071, 4, 3071.0), (4095, 4, 4095.0), (32767, 4, 32767.0), (31743, 5, 31743.0),
                                 (2900, 25, 2900.0), (2900, 5, None), (9000, 30, None), (32767, 2, None)):
        ct = np.full((4, 10, 10), 40, np.int16)
        ct.reshape(-1)[:count] = top
        assert hu_scale.clip_level(ct) == expected, (top, count)


def test_hot_voxel_and_calcifications_alone_give_no_seeds():
    series = physics.series_around(np.zeros(3), (60.0, 60.0), (0.8, 0.8), 1.0, 1.0, 30.0, (0.45, 0.45), 3071.0)
    rng = np.random.default_rng(3)
    image = np.full(series.shape, 40.0, np.float32)
    for c in rng.uniform(-20, 20, (5, 3)) * (1, 1, 0.5):
        physics.splat(image, series, *physics.ball_points(c, 0, 1500.0, semi=rng.uniform(0.6, 1.6, 3)))
    image += physics.textured_noise(series, 20.0, rng)
    ct = physics.store(image, 3071.0)
    ct[5, 40, 40] = 3071  # a single hot voxel
    assert detect_seeds(ct, scoring.grid_of(series), slice_thickness_mm=1.0).seeds == []


@pytest.mark.slow
def test_clipped_gold_fiducial_is_a_dense_rod_and_a_bundle_of_four_is_four_seeds():
    """On a series clipped at 3071 HU a gold fiducial (5 x 1.2 mm) and a bundle of four parallel seeds both
    look like a flat-topped 5 mm object; only the fiducial is explained better by one rod far heavier than any
    group of seeds (it was taken as four seeds before)."""
    series = physics.series_around(np.zeros(3), (60.0, 60.0), (0.8, 0.8), 1.0, 1.0, 30.0, (0.4, 0.4), 3071.0)
    rng = np.random.default_rng(11)
    image = np.full(series.shape, 40.0, np.float32)
    axis = np.array([0.3, 0.2, 0.93]) / np.linalg.norm([0.3, 0.2, 0.93])
    physics.splat(image, series, *physics.rod_points(np.array([-12.0, 5.0, 1.0]), axis, 5.0, 1.2, 112000.0))
    side = np.cross(axis, [1.0, 0, 0])
    side /= np.linalg.norm(side)
    other = np.cross(axis, side)
    bundle = [np.array([10.0, -4.0, -2.0]) + 0.9 * (a * side + b * other) for a, b in ((0, 0), (1, 0), (0, 1), (1, 1))]
    for c in bundle:
        physics.splat(image, series, *physics.seed_points(c, axis, "Ag rod", 70000.0, 5500.0))
    singles = [np.array([x, y, z]) for x, y, z in ((-15, -15, -6), (15, 15, 6), (0, 18, 0), (-18, 0, 5))]
    for c in singles:  # single seeds, from which the detector learns one seed's mass
        physics.splat(image, series, *physics.seed_points(c, _unit_axis(rng), "Ag rod", 70000.0, 5500.0))
    image += physics.textured_noise(series, 15.0, rng)
    result = detect_seeds(physics.store(image, 3071.0), scoring.grid_of(series), slice_thickness_mm=1.0)
    pairs, _ = match_seeds([s.position for s in result.seeds], bundle + singles)
    assert len(result.seeds) == len(pairs) == 8, result.summary()
    rods = [r for r in result.rejected if "dense rod" in r.reason]
    assert len(rods) == 1 and np.linalg.norm(rods[0].position - [-12.0, 5.0, 1.0]) < 1.0, result.rejected


# the reviewer's phantom (session 11): with the fitted blur and slice profile the gold fiducial was taken as
# two seeds (8 detections for 6 seeds); own random seed, neither TUNING nor SCORING
REVIEWED = cases.Case("clipped 1 mm pelvis", "pelvis", 7203, thickness=1.0, increment=1.0, clip_hu=3071.0,
                      fov=(90.0, 80.0), length=30.0, needle_seeds=8, groups={"end-to-end": 1, "side-by-side": 1,
                                                                             "clump3": 0, "bundle": 0},
                      in_bone=1, near_bone=1, migrated=0)


def test_gold_fiducial_on_thin_slices_is_a_rod_not_two_seeds():
    """A 3 x 0.9 mm gold fiducial on 1 mm slices clipped at 3071 HU: two seeds fit it worse than one rod
    holding more mass than both, so it is rejected as dense metal, and every seed is found."""
    ph = cases.build(REVIEWED)
    result = _detect(ph)
    sens, prec, _ = _score(ph, result)
    assert (sens, prec) == (1.0, 1.0), result.summary()
    (fiducial,) = [o["center"] for o in ph.others if o["kind"] == "fiducial"]
    assert any("dense rod" in r.reason and np.linalg.norm(r.position - fiducial) < 1.0 for r in result.rejected)


def test_seed_at_the_skin_is_one_seed_not_two():
    """The MRML flow's post-implant scan (neck phantom, patient moved): a seed whose end lies at the skin, air
    a voxel beyond it. The level carried in from around it mixes in the air, so that the seed looked heavy
    and was fitted as two (23 detections for 22 seeds); carried in again around the seed's own image, it is
    one seed, and every detection lies on a true seed."""
    from SeedBrachyLib import settings
    from SeedBrachyLib.synthetic.implant import patient_motion, rescanned_implant
    from SeedBrachyLib.synthetic.phantom import fixed_seed_arrangement, neck_phantom

    case = neck_phantom()
    values = settings.resolve(prescriptionGy=case.prescription_gy)
    plan = fixed_seed_arrangement(case, values.seedActivityMci, u_per_mci=values.uPerMci)
    scan = rescanned_implant(plan, case, random_seed=2, spacing_mm=(0.9, 0.9, 2.0),
                             motion=patient_motion((3.0, -2.0, 5.0), (8.0, -6.0, 10.0)))
    result = detect_seeds(scan.ct, scan.grid)
    pairs, dist = match_seeds([s.position for s in result.seeds], scan.true_positions_post)
    assert len(result.seeds) == len(pairs) == len(scan.true_positions_post), result.summary()
    assert dist.max() < 1.0


def _unit_axis(rng):
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def test_bone_clips_and_fiducial_are_not_seeds_and_seeds_by_bone_are_found(fast_phantom):
    ph = fast_phantom
    result = _detect(ph)
    sens, prec, dist = _score(ph, result)
    print(f"\nfast phantom: {len(ph.seeds)} seeds, sensitivity {sens:.3f}, precision {prec:.3f}, "
          f"mean error {dist.mean():.2f} mm; {result.summary()}")
    truth = np.array([s.position for s in ph.seeds])
    for seed in result.seeds:  # every detection lies on a true seed, none on bone, a clip or the fiducial
        assert np.linalg.norm(truth - seed.position, axis=1).min() < 2.5, seed
    assert sens >= 0.9 and dist.mean() < 0.3
    others = [o for o in ph.others if o["kind"] in ("clip", "fiducial")]
    assert others and all(np.linalg.norm(s.position - o["center"]) > 3 for s in result.seeds for o in others)
    for tag in ("in-bone", "near-bone"):
        for t in (s for s in ph.seeds if tag in s.tags):
            assert min(np.linalg.norm(d.position - t.position) for d in result.seeds) < 1.0, tag


@pytest.mark.parametrize("seed, most_false", [(7012, 3), (7011, 4)])
def test_vertebral_cortex_on_5_mm_slices_is_not_taken_for_seeds(seed, most_false):
    """A thorax on 5 mm slices (own random seeds, neither TUNING nor SCORING): the vertebrae's cortex, cut at the
    level a faint seed needs, looked into at higher levels, leaves humps of bone that k seeds fit; they do not
    stand out of the bone beside them as a seed would (before that test, seed 7012: 27 false detections in
    bone). Ribs cut by the edge of the field of view are not seeds either (before, seed 7011: 8 false)."""
    case = cases.Case("cortex thorax 5 mm W", "thorax", seed, pixel=(0.75, 0.75), thickness=5.0, increment=5.0,
                      length=60.0, model="W rod", psf_sigma=(0.55, 0.55), noise_hu=22, needle_seeds=20,
                      groups={"end-to-end": 0, "side-by-side": 0, "bundle": 0, "clump3": 0})
    ph = cases.build(case)
    result = _detect(ph)
    anatomy = anatomy_lib.thorax(np.random.default_rng(seed))  # build draws the anatomy first from this seed
    truth = np.array([s.position for s in ph.seeds])
    found = np.array([s.position for s in result.seeds]).reshape(-1, 3)
    false = np.linalg.norm(found[:, None] - truth[None], axis=-1).min(1) > scoring.GATE_MM
    in_bone = anatomy_lib.bone_depth(anatomy, found) > 0
    sens, prec, _dist = _score(ph, result)
    print(f"\n5 mm thorax: {len(truth)} seeds, sensitivity {sens:.3f}, precision {prec:.3f}, "
          f"{int((false & in_bone).sum())} false detections in bone")
    assert (false & in_bone).sum() <= 3 and false.sum() <= most_false
    assert sens >= 0.7


@pytest.mark.parametrize("anatomy, thickness, seed, most_deg",
                         [("thorax", 2.0, 7302, 4.0), ("pelvis", 1.25, 7303, 1.5)])
def test_a_plain_single_seed_gets_its_axis_from_the_forward_model(anatomy, thickness, seed, most_deg):
    """Single seeds on thin clipped slices (own random seeds, neither TUNING nor SCORING), each plainly one seed:
    their axes from intensity moments, which the clipped top and the slice profile bias, were 6.4 deg off on
    average (2 mm thorax) and 2.2 deg (1.25 mm pelvis); from the forward model started there, 2.5 and 0.7 deg."""
    case = cases.Case("singles", anatomy, seed, pixel=(0.75, 0.75), thickness=thickness, increment=thickness,
                      fov=(100.0, 90.0), length=35.0, needle_seeds=14, groups={}, in_bone=0, near_bone=0, migrated=1,
                      clips=0, fiducials=0, calcifications=1)
    ph = cases.build(case)
    result = _detect(ph)
    pairs, dist = scoring.match([s.position for s in result.seeds], [s.position for s in ph.seeds])
    assert len(pairs) == len(ph.seeds) == len(result.seeds), result.summary()
    degrees = [math.degrees(math.acos(min(1.0, abs(float(result.seeds[f].axis @ ph.seeds[t].axis)))))
               for f, t in pairs]
    print(f"\n{anatomy} {thickness:g} mm singles: axis error mean {np.mean(degrees):.1f} deg, max "
          f"{np.max(degrees):.1f}; position error mean {dist.mean():.3f} mm")
    assert np.mean(degrees) <= most_deg


def test_known_count_never_invents_and_says_what_is_unresolved(fast_phantom):
    ph = fast_phantom
    free = _detect(ph)
    more = _detect(ph, expected_count=len(free.seeds) + 5)
    assert len(free.seeds) <= len(more.seeds) <= len(free.seeds) + 5
    sens, prec, _ = _score(ph, more)
    assert prec >= _score(ph, free)[1] - 0.05  # no bone promoted, no seed split to reach the count
    missing = more.expected_count - len(more.seeds)
    assert f"found {len(more.seeds)} of {more.expected_count} expected" in more.summary()
    assert missing == 0 or f"{missing} unresolved" in more.summary()


def test_a_seed_placed_to_meet_the_count_is_listed_to_review():
    """Four seeds and one with half a seed's mass: the image alone gives four; a count of five takes the faint
    one, and lists it to review whatever its calibrated confidence (the count placed it, not the image)."""
    series = physics.series_around(np.zeros(3), (60.0, 60.0), (0.8, 0.8), 1.0, 1.0, 24.0, (0.45, 0.45), 3071.0)
    image = np.full(series.shape, 40.0, np.float32)
    axis = np.array([0.0, 0.3, 0.95]) / np.linalg.norm([0.0, 0.3, 0.95])
    for c, mass in (([-15, -15, 0], 1.0), ([15, -15, 2], 1.0), ([-15, 15, -2], 1.0), ([15, 15, 1], 1.0),
                    ([0, 0, 0], 0.5)):
        physics.splat(image, series, *physics.seed_points(np.array(c, float), axis, "Ag rod", 70000.0 * mass,
                                                          5500.0 * mass))
    image += physics.textured_noise(series, 15.0, np.random.default_rng(11))
    ct, grid = physics.store(image, 3071.0), scoring.grid_of(series)
    alone = detect_seeds(ct, grid, slice_thickness_mm=1.0)
    counted = detect_seeds(ct, grid, slice_thickness_mm=1.0, expected_count=5)
    assert len(alone.seeds) == 4 and not alone.review.any()
    assert len(counted.seeds) == 5
    faint = int(np.argmin([np.linalg.norm(s.position) for s in counted.seeds]))
    assert np.linalg.norm(counted.seeds[faint].position) < 1.0
    assert counted.review[faint] and counted.review.sum() == 1
    assert "1 to review (confidence < 0.5, or placed to meet the count)" in counted.summary()


def test_confidence_and_review_marking(fast_phantom):
    result = _detect(fast_phantom, review_below=0.9)
    c = result.confidences
    assert np.all((c >= 0) & (c <= 1)) and np.all(np.diff(c) <= 0)
    np.testing.assert_array_equal(result.review, c < 0.9)
    assert f"{int(np.sum(c < 0.9))} to review" in result.summary()


def test_slice_thickness_estimated_from_shared_noise():
    for thickness, increment in ((1.0, 1.0), (2.0, 1.0), (5.0, 2.5)):
        series = physics.series_around(np.zeros(3), (80.0, 80.0), (0.8, 0.8), increment, thickness, 30.0,
                                       (0.45, 0.45), 3071.0)
        noise = physics.textured_noise(series, 20.0, np.random.default_rng(5)) + 40.0
        estimate = estimate_thickness(noise, increment, 40.0)
        assert estimate == pytest.approx(thickness, rel=0.25), (thickness, increment, estimate)


def test_progress_and_cancel(fast_phantom):
    calls = []
    _detect(fast_phantom, progress=lambda f, m: calls.append(f))
    assert calls[0] == 0.0 and calls[-1] == 1.0 and calls == sorted(calls)
    with pytest.raises(Cancelled):
        _detect(fast_phantom, progress=lambda f, m: False)


def test_match_seeds_gate_and_assignment():
    truth = np.array([[0.0, 0, 0], [5.0, 0, 0], [20.0, 0, 0]])
    detected = np.array([[4.0, 0, 0], [0.5, 0, 0], [30.0, 0, 0]])
    pairs, dist = match_seeds(detected, truth, gate_mm=2.0)
    assert sorted(map(tuple, pairs.tolist())) == [(0, 1), (1, 0)] and np.allclose(sorted(dist), [0.5, 1.0])


@pytest.mark.parametrize("ct_shape, kwargs", [((0, 4, 4), {}), ((4, 4), {}), ((5, 6, 7), {}),
                                              (None, {"expected_count": 0}), (None, {"expected_count": -3}),
                                              (None, {"strength_u": 0}), (None, {"slice_thickness_mm": 0}),
                                              (None, {"psf_mm": -1}), (None, {"review_below": 1.5}),
                                              (None, {"plan_seeds": []}), ("nan", {})])
def test_bad_input(ct_shape, kwargs):
    grid = _plain_grid()
    ct = np.where(np.random.default_rng(0).random((20, 30, 30)) < 0.3, -1000, 40).astype(np.int16)
    if ct_shape == "nan":
        ct = ct.astype(float)
        ct[0, 0, 0] = np.nan
    elif ct_shape is not None:
        ct = np.zeros(ct_shape, dtype=np.int16)
    with pytest.raises(InputError):
        detect_seeds(ct, grid, **kwargs)


# ------------------------------------------------------------------ the SCORING sample (slow)
SCORING_SAMPLE = ("S7 pelvis extended 1 mm",)  # the full SCORING set: Testing/benchmarks/bench_detection.py


@pytest.mark.slow
@pytest.mark.parametrize("name", SCORING_SAMPLE)
def test_scoring_sample(name):
    case = next(c for c in cases.SCORING if c.name == name)
    ph = cases.build(dataclasses.replace(case, length=min(case.length, 30.0)))
    result = _detect(ph)
    sens, prec, dist = _score(ph, result)
    base = scoring.threshold_baseline(ph.ct, ph.series)
    b_sens = len(scoring.match(base, [s.position for s in ph.seeds])[0]) / len(ph.seeds)
    print(f"\n{name}: {len(ph.seeds)} seeds, sensitivity {sens:.3f} (2000 HU baseline {b_sens:.3f}), "
          f"precision {prec:.3f}, mean error {dist.mean():.2f} mm")
    # a regression guard at what the detector reaches here, not the 0.99 targets (see the benchmark)
    assert sens >= max(b_sens, 0.9) and prec >= 0.85 and dist.mean() <= 0.3



def test_a_diverged_fit_is_rejected_with_its_reason():
    """A fit that returns non-finite centres (seen on a 5 mm thorax series) is rejected as diverged before any of
    its values is cast to a voxel index (the cast of NaN gave an arbitrary index and a numpy warning)."""
    from SeedBrachyLib.postimplant.detection import _problem
    from SeedBrachyLib.postimplant.seed_model import Fit
    for bad in ("centres", "masses"):
        parts = {"centres": np.array([[1.0, 2.0, 3.0]]), "masses": np.array([1000.0])}
        parts[bad] = parts[bad] * np.nan
        fit = Fit(parts["centres"], np.array([[0.0, 0.0, 1.0]]), parts["masses"], 0.0, 1.0, 10)
        assert "diverged" in _problem(None, fit, 1000.0, None, None, None, None)


def test_a_seed_run_off_to_infinity_is_outside_the_object_without_a_cast_warning():
    """A seed that sees no voxel of its block has no gradient, and the least-squares step can carry it to finite
    but enormous coordinates (1e12-1e22 mm, seen on 5 mm pelvis and thorax series); it lies outside the object, and
    is found so before its centre is cast to a voxel index (the cast of 1e20 / spacing gave an arbitrary index and
    a numpy 'invalid value encountered in cast' warning)."""
    import types
    import warnings

    from SeedBrachyLib.postimplant.detection import _problem
    from SeedBrachyLib.postimplant.seed_model import Fit
    spacing = np.array([0.95, 0.95, 5.0])
    ctx = types.SimpleNamespace(mass=1000.0, grid=types.SimpleNamespace(spacing=spacing))
    block = np.full((3, 5, 5), 40.0, np.float32)
    mask = np.zeros(block.shape, bool)
    mask[1, 2, 2] = True
    coords = [np.arange(5) * spacing[0], np.arange(5) * spacing[1], np.arange(3) * spacing[2]]
    for far in (3e13, -2.5e22, 1e20):
        centres = np.array([[1.9, 1.9, 5.0], [far, 1.7e12, -6.2e14]])
        fit = Fit(centres, np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]), np.array([1000.0, 1000.0]), 40.0, 1.0, 10)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert _problem(ctx, fit, 3000.0, block, mask, coords, np.full(block.shape, 40.0)) == \
                "a seed fitted outside the object"


def test_outside_is_off_the_object_grown_by_one_voxel_or_not_finite():
    """_outside: a centre whose nearest voxel is the object's or touches it is inside; one voxel further, off the
    block (a centre half a voxel or more before the first voxel rounds to -1), or not finite is outside."""
    import types

    from SeedBrachyLib.postimplant.detection import _outside
    spacing = np.array([0.8, 0.9, 2.5])
    ctx = types.SimpleNamespace(grid=types.SimpleNamespace(spacing=spacing))
    grown = np.zeros((4, 6, 7), bool)  # (k, j, i)
    grown[1:3, 2:4, 0:3] = True
    coords = [10.0 + np.arange(7) * spacing[0], -5.0 + np.arange(6) * spacing[1], 30.0 + np.arange(4) * spacing[2]]
    at = lambda i, j, k: np.array([[coords[0][0] + i * spacing[0], coords[1][0] + j * spacing[1],  # noqa: E731
                                    coords[2][0] + k * spacing[2]]])
    assert not _outside(ctx, at(0, 2, 1), grown, coords)
    assert not _outside(ctx, at(2.4, 3.4, 2.4), grown, coords)
    assert not _outside(ctx, at(-0.4, 2, 1), grown, coords)  # nearest voxel i = 0, the object's
    assert _outside(ctx, at(-0.6, 2, 1), grown, coords)  # nearest voxel i = -1: off the block
    assert _outside(ctx, at(3, 2, 1), grown, coords)  # in the block, one voxel off the object
    assert _outside(ctx, at(0, 2, 4), grown, coords)  # past the block's last slice
    assert _outside(ctx, np.vstack([at(0, 2, 1), at(np.nan, 2, 1)]), grown, coords)
    assert _outside(ctx, at(np.inf, 2, 1), grown, coords)
    assert _outside(ctx, at(1e300, 2, 1), grown, coords)


def test_a_single_seed_fitted_off_its_object_keeps_its_moments(fast_phantom, monkeypatch):
    """A plainly single seed whose one-seed fit runs off its object (moved 30 mm here) is placed at its moments,
    as when that fit is not finite, and not where the fit went; unpatched, the fit moves some of them."""
    from SeedBrachyLib.postimplant import detection

    original = detection._fit

    def moved(offset):
        def fit(*args, start=None, **kw):
            result = original(*args, start=start, **kw)
            if start is None:
                return result
            return dataclasses.replace(result, centres=result.centres + offset)
        return fit

    positions = {}
    for name, offset in (("far", np.array([30.0, 0.0, 0.0])), ("nan", np.full(3, np.nan)), ("none", None)):
        if offset is None:
            monkeypatch.setattr(detection, "_fit", original)
        else:
            monkeypatch.setattr(detection, "_fit", moved(offset))
        positions[name] = np.array(sorted(tuple(np.round(s.position, 6)) for s in _detect(fast_phantom).seeds))
    assert positions["far"].shape == positions["nan"].shape
    np.testing.assert_allclose(positions["far"], positions["nan"], atol=1e-6)
    assert positions["none"].shape == positions["nan"].shape
    assert np.abs(positions["none"] - positions["nan"]).max() > 0.01
    _pairs, dist = scoring.match(list(positions["far"]), [s.position for s in fast_phantom.seeds])
    assert dist.max() < 1.5


def _lung_and_tissue_series(seed):
    """A 5 mm series (0.75 mm pixels, W seeds, clipped at 3071 HU; own random seeds, neither TUNING nor SCORING):
    soft tissue (40 HU) for x < 5 mm with eight seeds, lung (-850 HU) beyond with six seeds at random positions
    and axes. Returns (CT, series, true centres mm RAS, how many are in lung: the last ones)."""
    rng = np.random.default_rng(seed)
    series = physics.series_around(np.zeros(3), (100.0, 100.0), (0.75, 0.75), 5.0, 5.0, 60.0, (0.5, 0.5), 3071.0)
    image = np.full(series.shape, 40.0, np.float32)
    ni, nj, _nk = series.dims
    x = series.to_ras(np.stack(np.meshgrid(np.arange(ni), np.arange(nj), [0], indexing="xy"), -1).reshape(-1, 3))[:, 0]
    image[:, (x > 5.0).reshape(nj, ni)] = -850.0
    image = physics.blur_continuous(image, series)
    marker, titanium = rng.uniform(150000.0, 250000.0), rng.uniform(4500.0, 6500.0)
    tissue = [(-30.0, y, z) for y in (-30.0, -10.0, 10.0, 30.0) for z in (-15.0, 15.0)]
    lung = list(zip(rng.uniform(15, 40, 6), rng.uniform(-35, 35, 6), rng.uniform(-18, 18, 6)))
    for c in tissue + lung:
        axis = rng.normal(size=3)
        physics.splat(image, series, *physics.seed_points(np.array(c), axis / np.linalg.norm(axis), "W rod", marker,
                                                          titanium))
    image += physics.textured_noise(series, 20.0, rng)
    return physics.store(image, 3071.0), series, np.array(tissue + lung), len(lung)


@pytest.mark.parametrize("seed", [7101, 7102])
def test_seeds_in_lung_on_5_mm_slices_are_cut_above_the_lung(seed):
    """A seed in lung on 5 mm slices stands above the lung (-850 HU), not above soft tissue: the level set from
    soft tissue (half the faintest seed above it) cut only its top or nothing, and its fit saw a part of its
    image (before: 3 of the 6 lung seeds missed at both seeds). Cut at half the faintest seed above the lung,
    each is an object of its own with its whole image."""
    ct, series, truth, n_lung = _lung_and_tissue_series(seed)
    result = detect_seeds(ct, scoring.grid_of(series), slice_thickness_mm=5.0)
    pairs, dist = scoring.match([s.position for s in result.seeds], truth)
    found = {t for _f, t in pairs}
    in_lung = len(found & set(range(len(truth) - n_lung, len(truth))))
    print(f"\nlung phantom {seed}: {len(pairs)} of {len(truth)} seeds ({in_lung} of {n_lung} in lung), "
          f"{len(result.seeds) - len(pairs)} false, mean error {dist.mean():.2f} mm")
    assert found == set(range(len(truth))) and len(result.seeds) == len(truth)


@pytest.mark.parametrize("seed", [7205, 7207])
def test_a_gold_fiducial_beside_a_seed_on_5_mm_slices_is_not_six_seeds(seed):
    """A gold fiducial (3 x 1.2 mm, 1e5-1.7e5 HU: some nine seeds' mass) 4.5-5 mm from a seed, on 5 mm slices
    (W seeds, own random seeds, neither TUNING nor SCORING): cut at the seeds' level they are one object, which
    the most seeds tried (six) fit best; the rod test cannot take it (a rod does not explain the seed beside
    it), and it was six seeds, five of them false. Six seeds fitting best, with more possibly better, is not a
    group of seeds: at a higher level the seed stands alone and the fiducial is one dense rod. (With the seed
    closer, at 7202 and 7204, four or five seeds fit best and four false ones remain: not covered.)"""
    rng = np.random.default_rng(seed)
    series = physics.series_around(np.zeros(3), (100.0, 100.0), (0.75, 0.75), 5.0, 5.0, 60.0, (0.5, 0.5), 3071.0)
    image = np.full(series.shape, 40.0, np.float32)
    marker, titanium = rng.uniform(150000.0, 250000.0), rng.uniform(4500.0, 6500.0)

    def axis():
        a = rng.normal(size=3)
        return a / np.linalg.norm(a)

    fiducial = rng.uniform(-5, 5, 3)
    spots = [np.array([x, y, z]) for x in (-30.0, 30.0) for y in (-30.0, 0.0, 30.0) for z in (-15.0, 15.0)]
    spots.append(fiducial + axis() * rng.uniform(3.5, 5.0))
    for c in spots:
        physics.splat(image, series, *physics.seed_points(c, axis(), "W rod", marker, titanium))
    physics.splat(image, series, *physics.rod_points(fiducial, axis(), 3.0, 1.2, rng.uniform(100000, 170000)))
    image += physics.textured_noise(series, 20.0, rng)
    result = detect_seeds(physics.store(image, 3071.0), scoring.grid_of(series), slice_thickness_mm=5.0)
    found = np.array([s.position for s in result.seeds])
    pairs, _dist = scoring.match(found, np.array(spots))
    on_fiducial = int((np.linalg.norm(found - fiducial, axis=1) < scoring.GATE_MM).sum())
    print(f"\nfiducial beside a seed {seed}: {len(pairs)} of {len(spots)} seeds, {len(found) - len(pairs)} false, "
          f"{on_fiducial} on the fiducial")
    assert len(pairs) == len(spots) and len(found) == len(spots) and on_fiducial == 0


def test_separation_of_a_seed_run_off_to_1e200_mm_is_far_without_an_overflow():
    """The separation of fitted seeds' centre lines (checked against overlapping capsules, and when a count asks for
    one seed more) with one seed run off to 1e160-1e200 mm (a seed that saw no voxel: own 5 mm needle-chain
    phantom) is far, not an overflow warning of the squared distance; near seeds are still measured."""
    import warnings

    from SeedBrachyLib.postimplant.detection import _min_separation
    from SeedBrachyLib.postimplant.seed_model import Fit
    axes = np.array([[0.0, 0.0, 1.0]] * 3)
    for far in (1e160, -3e200):
        centres = np.array([[1.0, 2.0, 3.0], [1.9, 2.0, 3.0], [far, 4e170, 2.0]])
        fit = Fit(centres, axes, np.full(3, 1000.0), 0.0, 1.0, 10)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert _min_separation(fit) == pytest.approx(0.9)
            assert _min_separation(Fit(centres[::2], axes[:2], np.full(2, 1000.0), 0.0, 1.0, 10)) == math.inf


def _needle_chains(seed):
    """A 5 mm series (0.95 mm pixels, 0.4 mm blur, clipped at 3071 HU, gold-bead seeds; own random seeds, neither
    TUNING nor SCORING) with six needles along z (tilted up to ~10 deg), seeds 7.5-9.5 mm apart along each, axes
    within ~10 deg of the needle: on 5 mm slices the clipped tops of neighbouring seeds touch, and a needle is one
    object. Returns (CT, series, true centres mm RAS)."""
    rng = np.random.default_rng(seed)
    series = physics.series_around(np.zeros(3), (100.0, 100.0), (0.95, 0.95), 5.0, 5.0, 80.0, (0.4, 0.4), 3071.0)
    image = np.full(series.shape, 45.0, np.float32)
    marker, titanium = rng.uniform(100000.0, 170000.0), rng.uniform(4500.0, 6500.0)
    truth = []
    for x in (-30.0, 0.0, 30.0):
        for y in (-25.0, 25.0):
            d = np.array([rng.normal(0, 0.15), rng.normal(0, 0.15), 1.0])
            d /= np.linalg.norm(d)
            z0, t = rng.uniform(-30, -20), 0.0
            while z0 + t < 25:
                c = np.array([x, y, z0]) + d * t
                axis = d + rng.normal(0, 0.15, 3)
                physics.splat(image, series, *physics.seed_points(c, axis / np.linalg.norm(axis), "Au beads", marker,
                                                                  titanium))
                truth.append(c)
                t += rng.uniform(7.5, 9.5)
    image += physics.textured_noise(series, 20.0, rng)
    return physics.store(image, 3071.0), series, np.array(truth)


@pytest.mark.parametrize("seed, at_least", [(7301, 33), (7306, 33)])
def test_seeds_in_a_row_along_a_needle_on_5_mm_slices(seed, at_least):
    """Needles of seeds on 5 mm slices are objects of 3-6 seeds in a row, whose k-seed fits started by k-means along
    the object's axis ended in poor local minima (started at the true seeds, the residual was 2-8 times lower):
    seeds were missed or placed 3-4 mm off along the needle (before: 28 of 36 and 31 of 38 found, 4 false at each).
    The fit is also started at the object's k brightest voxels, 3 mm or more apart (after: 34 of 36, 3 false, and
    34 of 38, 4 false; over own seeds 7301-7306, 167 -> 182 of 232)."""
    ct, series, truth = _needle_chains(seed)
    result = detect_seeds(ct, scoring.grid_of(series), slice_thickness_mm=5.0)
    pairs, dist = scoring.match([s.position for s in result.seeds], truth)
    print(f"\nneedles {seed}: {len(pairs)} of {len(truth)} seeds, {len(result.seeds) - len(pairs)} false, mean error "
          f"{dist.mean():.2f} mm")
    assert len(pairs) >= at_least and len(result.seeds) - len(pairs) <= 4


# seeds end to end on 5 mm slices of 0.95 mm pixels (own random seed, neither TUNING nor SCORING)
END_TO_END = cases.Case("end to end 5 mm", "pelvis", 7301, pixel=(0.95, 0.95), thickness=5.0, increment=5.0,
                        fov=(110.0, 90.0), length=60.0, noise_hu=20, model="Au beads", needle_seeds=10,
                        groups={"end-to-end": 4, "side-by-side": 0, "bundle": 0, "clump3": 0}, in_bone=0,
                        near_bone=0, migrated=0, clips=2, fiducials=0, calcifications=2)


def test_a_long_object_is_looked_at_closer_before_it_is_called_a_clip():
    """Two seeds end to end on 5 mm slices can be cut as one 7.7 mm object whose mass one seed explains best: it
    was rejected as too long for one seed (a clip), and both seeds were missed (5 of the 8 seeds end to end found).
    Looked at again at a level half-way to its peak, it is two seeds (7 of 8), and the clips stay rejected (over
    own seeds 7301-7310: 162 -> 164 of 178 seeds found, 12 false detections either way)."""
    ph = cases.build(END_TO_END)
    result = _detect(ph)
    assert _found_tagged(ph, result, "end-to-end")[1] >= 7, result.summary()
    assert not [r for r in result.rejected if "too long" in r.reason]
    clips = [o["center"] for o in ph.others if o["kind"] == "clip"]
    assert clips and not [s for s in result.seeds for c in clips if np.linalg.norm(s.position - c) < 5.0]


def test_floor_level_of_a_stored_range():
    """The bottom of the stored range is a floor when many voxels sit exactly at a minimum of -1000 HU or lower
    (air, lung and dark streaks cut there); a few dark voxels, or a minimum above -1000 HU, are not."""
    from SeedBrachyLib.postimplant import hu_scale

    for low, count, expected in ((-1024, 25, -1024.0), (-2048, 400, -2048.0), (-1024, 5, None), (-990, 400, None)):
        ct = np.full((4, 50, 50), 40, np.int16)
        ct.reshape(-1)[:count] = low
        ct.reshape(-1)[-1] = low + 30  # one voxel just above: the floor is the minimum, not a value
        assert hu_scale.floor_level(ct) == expected, (low, count)
    # padded outside the reconstruction circle at -3024 HU: the floor is the plateau above the padding, if any
    ct = np.full((4, 50, 50), 40, np.int16)
    ct[:, :5] = -3024
    ct[:, 10:12] = -1024
    assert hu_scale.floor_level(ct) == -1024.0
    ct[:, 10:12] = -1100 + np.arange(100).reshape(1, 2, 50)  # no plateau above the padding: the padding
    assert hu_scale.floor_level(ct) == -3024.0


def test_censored_fit_finds_a_seed_whose_image_the_floor_cuts():
    """A seed on 5 mm slices in lung where dark streaks take the level to -1900 HU, stored from -1024 HU: only
    its top shows, and a fit over the floor as background sees a fraction of a seed. With the level free per slice
    and the voxels at the floor censored it is one seed of one seed's mass where it lies (measured: 0.40 seed masses
    over the floor; censored 1.000 seed masses, centre 0.13 mm off, axis within 1 degree, level -1937 HU, -1900 HU
    in the phantom)."""
    model = seed_model.SeriesModel(np.array([0.75, 0.75, 5.0]), 5.0, psf_mm=0.5)
    coords = [np.arange(15) * 0.75, np.arange(15) * 0.75, np.arange(3) * 5.0]
    centre, axis, mass = np.array([5.4, 5.1, 5.9]), np.array([0.6, 0.5, 0.62]) / np.linalg.norm([0.6, 0.5, 0.62]), 5e4
    truth = seed_model.render(model, coords, [centre], [axis], [mass])
    level = np.array([-1500.0, -1900.0, -1400.0])[:, None, None]
    rng = np.random.default_rng(5)
    ct = np.maximum(np.rint(level + truth + rng.normal(0, 20, truth.shape)), -1024.0)
    assert np.mean(ct == -1024) > 0.8  # the image is mostly at the floor
    weights = np.ones(ct.shape)
    plain = seed_model.fit_seeds(model, coords, ct, weights, [(centre + 0.5, axis)], mass, -1024.0, 0.0)
    fit = seed_model.fit_seeds(model, coords, ct, weights, [(centre + 0.5, np.array([0.0, 0.0, 1.0]))], mass, 0.0,
                               0.05 * 1000, floor=(-1024.0, np.arange(3), [-1024.0] * 3))
    with pytest.raises(ValueError, match="slice groups"):  # each slice needs one of the levels
        seed_model.fit_seeds(model, coords, ct, weights, [(centre, axis)], mass, 0.0, 50.0,
                             floor=(-1024.0, np.array([0, 1, 2]), [-1024.0] * 2))
    assert plain.masses[0] < 0.5 * mass  # the floor as the level: a fraction of a seed
    print(f"\nplain {plain.masses[0] / mass:.2f} seed masses; censored {fit.masses[0] / mass:.3f}, centre off "
          f"{np.linalg.norm(fit.centres[0] - centre):.2f} mm, axis {abs(fit.axes[0] @ axis):.3f}, "
          f"level {fit.background:.0f} HU")
    assert abs(fit.masses[0] / mass - 1) < 0.15
    assert np.linalg.norm(fit.centres[0] - centre) < 0.6 and abs(fit.axes[0] @ axis) > 0.9
    assert abs(fit.background + 1900) < 150, (fit, plain.masses)  # the level of the seed's slice (k = 1)


# single seeds in lung on 5 mm slices of tungsten-marker seeds, streaks cut at -1024 HU (own random seed)
LUNG_FLOOR = cases.Case("thorax 5 mm W", "thorax", 7402, pixel=(0.75, 0.75), thickness=5.0, increment=5.0,
                        groups=cases._THORAX_GROUPS, length=85.0, model="W rod", psf_sigma=(0.55, 0.55), noise_hu=22)


def test_seeds_in_lung_whose_streaks_the_floor_cuts_are_found():
    """Seeds in lung on 5 mm slices where the dark bands between tungsten-marker seeds take the level below -1024 HU
    were rejected as too faint (a fraction of a seed above the floor) or not seeds, or groups under-counted: 23 of
    43 found (13 of 24 single seeds), 1 false. Fitted with the level free and the floored voxels censored: 30 of 43
    (18 of 24 single), 3 false (own series 7401-7404: 86 -> 102 of 164 seeds found, 13 -> 15 false; single seeds
    53 -> 63 of 91, in groups 33 -> 39 of 73)."""
    ph = cases.build(LUNG_FLOOR)
    result = _detect(ph)
    pairs, singles = _found_tagged(ph, result, "single")
    assert singles >= 17, result.summary()
    assert len(pairs) >= 28 and len(result.seeds) - len(pairs) <= 3


def _lung_needles_under_bands(rng):
    """5 needles of 4 tungsten-marker seeds 1 cm apart in lung (-850 HU) on 5 mm slices, dark bands taking every
    other slice's lung 650-1150 HU lower, stored from -1024 HU: (ct, series, true positions)."""
    series = physics.series_around(np.zeros(3), (100.0, 100.0), (0.75, 0.75), 5.0, 5.0, 80.0, (0.55, 0.55), 3071.0)
    image = np.full(series.shape, 40.0, np.float32)
    image[:, 10:125, 10:125] = -850.0
    truth = []
    for n in range(5):
        base = np.array([-30.0 + 15 * n, rng.uniform(-20, 20), -20.0])
        axis = np.array([rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3), 1.0])
        axis /= np.linalg.norm(axis)
        for q in range(4):
            c = base + axis * 10.0 * q + rng.uniform(-0.5, 0.5, 3)
            physics.splat(image, series, *physics.seed_points(c, axis, "W rod", 200000.0, 5000.0))
            truth.append(c)
    drop = np.where(np.arange(series.shape[0]) % 2 == 0, rng.uniform(650, 1150, series.shape[0]), 0.0)
    image[:, 10:125, 10:125] -= drop[:, None, None].astype(np.float32)
    image += physics.textured_noise(series, 20.0, rng)
    return physics.store(image, 3071.0), series, truth


def test_noise_in_lung_beside_slices_at_the_floor_is_not_a_seed():
    """Beside a slice at the floor a seed can always be hidden under it: a censored fit explained single noise
    voxels of the lung (-845 HU) as seeds under the floor, 375 false seeds in one series (1486 in three). A
    censored seed is taken only when the object's peak stands above its own slice's level as the faintest seed
    does and every seed's image reaches half that on the object (measured: 18 of 20 found, 4 false; the regular
    examination alone: 6 false over the three series 950-952, 11 with the censored fit)."""
    ct, series, truth = _lung_needles_under_bands(np.random.default_rng(950))
    result = detect_seeds(ct, scoring.grid_of(series), slice_thickness_mm=5.0)
    pairs, _ = scoring.match([s.position for s in result.seeds], truth)
    assert len(pairs) >= 17 and len(result.seeds) - len(pairs) <= 5, result.summary()
