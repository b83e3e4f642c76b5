"""Post-implant registration: LPS/RAS conversion, resampling, target registration error (TRE), and the
cases where registration used to fail silently.

Neck phantom: known rigid misalignments (rotations up to 10 deg, shifts up to 20 mm); the post-implant
CT is the phantom moved by that transform, with seeds (and streaks); TRE at points of the GTV.
Thorax phantoms (Testing/registration_phantoms.py): vertebrae repeating along S, contrast only in the
pre-plan, 30 degrees about a distant point with 60 mm, 1 mm vs 5 mm slices, a short post-implant scan
far along S, the metric restricted to the target region, an unrelated image; TRE at the seeds. Every
result that is not flagged must have TRE <= 1 mm; the unrelated image must be flagged.
"""

import numpy as np
import pytest
import registration_phantoms as phantoms
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from SeedBrachyLib.errors import InputError
from SeedBrachyLib.grid import Grid
from SeedBrachyLib.itk_image import (
    from_sitk,
    grid_from_image,
    matrix_lps_to_ras,
    matrix_ras_to_lps,
    resample,
    to_sitk,
    transform_to_matrix_lps,
)
from SeedBrachyLib.postimplant.registration import (
    SAMPLE_SETS,
    carry_mask,
    map_points,
    map_seeds,
    metal_mask,
    register_post_to_pre,
    target_region,
)
from SeedBrachyLib.postimplant.registration_quality import consensus, spread_mm
from SeedBrachyLib.seeds import Seed
from SeedBrachyLib.synthetic import post_implant_ct as synthetic_ct
from SeedBrachyLib.synthetic.phantom import neck_phantom


def _oblique_direction(seed=0):
    return Rotation.from_rotvec(np.random.default_rng(seed).normal(0, 0.5, 3)).as_matrix()


def _rigid(rotvec_deg, shift_mm):
    m = np.eye(4)
    m[:3, :3] = Rotation.from_rotvec(np.radians(rotvec_deg)).as_matrix()
    m[:3, 3] = shift_mm
    return m


# ------------------------------------------------------------------ LPS <-> RAS, images
def test_image_round_trip_oblique_keeps_geometry_and_voxels():
    grid = Grid([10.0, -20.0, 5.0], [0.8, 1.1, 2.5], _oblique_direction(1), (7, 5, 4))
    array = np.random.default_rng(0).normal(size=grid.shape).astype(np.float32)
    image = to_sitk(array, grid)
    back, grid2 = from_sitk(image)
    np.testing.assert_array_equal(back, array)
    np.testing.assert_allclose(grid2.origin, grid.origin, atol=1e-9)
    np.testing.assert_allclose(grid2.direction, grid.direction, atol=1e-9)
    np.testing.assert_allclose(grid2.spacing, grid.spacing)
    assert grid2.dims == grid.dims
    # the same voxel is at the same physical point: ITK (LPS) = flip of ours (RAS)
    for ijk in [(0, 0, 0), (6, 4, 3), (3, 1, 2)]:
        lps = np.array(image.TransformIndexToPhysicalPoint(ijk))
        ras = grid.to_ras(ijk)
        np.testing.assert_allclose(lps, [-ras[0], -ras[1], ras[2]], atol=1e-9)


def test_itk_sees_an_ras_axis_aligned_grid_as_lps_flipped():
    grid = Grid([1.0, 2.0, 3.0], [1.0, 1.0, 1.0], np.eye(3), (2, 2, 2))
    image = to_sitk(np.zeros(grid.shape, np.int16), grid)
    assert image.GetOrigin() == (-1.0, -2.0, 3.0)
    assert image.GetDirection() == (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
    assert grid_from_image(image).dims == (2, 2, 2)


def test_matrix_conversion_round_trip_and_physical_equivalence():
    m_ras = _rigid([3.0, -7.0, 5.0], [4.0, -12.0, 9.0])
    m_lps = matrix_ras_to_lps(m_ras)
    np.testing.assert_allclose(matrix_lps_to_ras(m_lps), m_ras, atol=1e-12)
    p_ras = np.array([12.0, -33.0, 7.5])
    flip = np.array([-1.0, -1.0, 1.0])
    np.testing.assert_allclose((m_lps @ np.r_[p_ras * flip, 1])[:3], map_points(m_ras, p_ras) * flip, atol=1e-9)


def test_transform_matrix_matches_itk_transform_point_including_composites():
    euler = sitk.Euler3DTransform((5.0, -3.0, 2.0), 0.1, -0.05, 0.2, (1.0, 2.0, -4.0))
    composite = sitk.CompositeTransform([euler, sitk.TranslationTransform(3, (2.0, 0.0, -1.0))])
    for tx in (euler, composite, sitk.Transform(euler)):
        m = transform_to_matrix_lps(tx)
        for p in ([0.0, 0.0, 0.0], [10.0, -20.0, 30.0]):
            np.testing.assert_allclose(m @ np.r_[p, 1.0], np.r_[tx.TransformPoint(p), 1.0], atol=1e-9)
    with pytest.raises(InputError, match="not linear"):
        transform_to_matrix_lps(sitk.DisplacementFieldTransform(3))


def test_resample_follows_the_target_to_source_convention_on_oblique_grids():
    grid = Grid.around([0.0, 0.0, 0.0], [60.0, 60.0, 60.0], 2.0, _oblique_direction(2))
    ras = grid.points()
    values = (ras @ np.array([1.0, 2.0, -0.5])).astype(np.float32)  # linear field: exact under linear interp
    target = Grid.around([3.0, -2.0, 1.0], [30.0, 30.0, 30.0], [1.5, 1.0, 2.0], _oblique_direction(3))
    m = _rigid([4.0, 2.0, -6.0], [2.0, 1.0, -3.0])
    out = resample(values, grid, target, m, "linear", np.nan)
    expected = map_points(m, target.points()) @ np.array([1.0, 2.0, -0.5])
    np.testing.assert_allclose(out, expected, atol=1e-3)
    with pytest.raises(InputError, match="interpolator"):
        resample(values, grid, target, m, "cubic")


def test_map_seeds_moves_positions_and_turns_axes():
    m = _rigid([0.0, 0.0, 90.0], [1.0, 2.0, 3.0])
    (s,) = map_seeds([Seed([10.0, 0.0, 0.0], [1.0, 0.0, 0.0], 0.6, "A")], m)
    np.testing.assert_allclose(s.position, [1.0, 12.0, 3.0], atol=1e-12)
    np.testing.assert_allclose(s.axis, [0.0, 1.0, 0.0], atol=1e-12)
    assert s.strength_u == 0.6 and s.label == "A"


def test_metal_mask_covers_the_margin_in_mm():
    grid = Grid.around([0.0, 0.0, 0.0], [41.0, 41.0, 41.0], [1.0, 1.0, 2.0])
    ct = np.zeros(grid.shape, np.float32)
    centre = np.rint(grid.to_ijk([0.0, 0.0, 0.0])).astype(int)
    ct[centre[2], centre[1], centre[0]] = 3000.0
    mask = metal_mask(ct, grid, threshold_hu=2000.0, margin_mm=6.0)
    d = np.linalg.norm(grid.points() - grid.to_ras(centre), axis=-1)
    assert mask[d <= 6.0].all() and not mask[d > 6.0 + 2.0].any()
    assert not metal_mask(ct, grid, 5000.0, 6.0).any()


# ------------------------------------------------------------------ registration accuracy
@pytest.fixture(scope="module")
def case():
    case = neck_phantom(noise_hu=10.0, seed=1)
    case.ct = phantoms.neck_landmarks(case.ct, case.grid)
    return case


def _post_ct(post_to_pre, random_seed, direction=None):
    """A post-implant CT whose frame relates to the pre-plan frame by ``post_to_pre`` (4x4 RAS).

    The synthetic generator renders 20 seeds (with streaks, noise, 0.9 x 0.9 x 2 mm voxels) into the
    phantom in the pre-plan frame (landmarks added); the whole image is then moved:
    post(x) = rendered(post_to_pre(x)).
    Returns (CT HU, grid, true seed positions in the post-implant frame (mm)).
    """
    seeds = synthetic_ct.random_implant(20, (40.0, 8.0, 0.0), 12.0, min_spacing_mm=5.0,
                                         random_seed=random_seed)
    scan = synthetic_ct.post_implant_ct(seeds, spacing_mm=(0.9, 0.9, 2.0), direction=direction,
                                        random_seed=random_seed)
    rendered = phantoms.neck_landmarks(scan.ct, scan.grid)
    post = resample(rendered, scan.grid, scan.grid, post_to_pre, "linear", -1000.0)
    return post, scan.grid, map_points(np.linalg.inv(post_to_pre), [s.position for s in seeds])


MISALIGNMENTS = [  # rotation vector (deg), shift (mm), oblique post-implant grid
    ([10.0, 0.0, 0.0], [20.0, 0.0, 0.0], False),
    ([0.0, -10.0, 0.0], [0.0, 20.0, 0.0], False),
    ([0.0, 0.0, 10.0], [0.0, 0.0, -20.0], False),
    ([5.8, -5.8, 5.8], [11.5, 11.5, -11.5], False),
    ([-4.0, 6.0, -7.0], [-12.0, -8.0, 13.0], True),
]


def _tre(case, post_to_pre_true, result):
    pts = case.grid.points()[case.masks["GTV"]][::20]  # target region, pre-plan frame
    post = map_points(np.linalg.inv(post_to_pre_true), pts)
    return np.linalg.norm(map_points(result.post_to_pre, post) - pts, axis=1)


@pytest.mark.parametrize("rotvec_deg, shift_mm, oblique", [
    pytest.param(*m, marks=() if m[2] else pytest.mark.slow) for m in MISALIGNMENTS])
def test_rigid_registration_tre_below_1mm(case, rotvec_deg, shift_mm, oblique):
    truth = _rigid(rotvec_deg, shift_mm)
    direction = _oblique_direction(4) if oblique else None
    post_ct, post_grid, _ = _post_ct(truth, int(abs(sum(shift_mm))), direction)
    result = register_post_to_pre(case.ct, case.grid, post_ct, post_grid)
    tre = _tre(case, truth, result)
    print(f"rigid, rotation {np.linalg.norm(rotvec_deg):.1f} deg, shift {np.linalg.norm(shift_mm):.1f} mm"
          f"{', oblique post grid' if oblique else ''}: TRE mean {tre.mean():.3f} mm, max {tre.max():.3f} mm; "
          f"{result.describe()}")
    assert result.masked_cc > 0
    assert result.plausible
    assert tre.max() <= 1.0



@pytest.fixture(scope="module")
def bare_neck_scan():
    """(the built-in neck phantom without landmarks, its implant rescanned after the MRML flow's motion)."""
    from SeedBrachyLib.synthetic.implant import patient_motion, rescanned_implant
    from SeedBrachyLib.synthetic.phantom import fixed_seed_arrangement

    bare = neck_phantom()
    return bare, rescanned_implant(fixed_seed_arrangement(bare), bare, random_seed=2, spacing_mm=(0.9, 0.9, 2.0),
                                   motion=patient_motion((3.0, -2.0, 5.0), (8.0, -6.0, 10.0)))


def test_a_weakly_fixed_motion_is_within_1mm_and_not_flagged_whatever_the_metric_samples(bare_neck_scan):
    """The bare neck phantom hardly changes along S but for the node, which the seeds fill (masked): the S
    position rests on few voxels and moves with the draw of the metric's random samples. This pair (the MRML
    flow's motion, seeds given) at sampling seeds 1 and 2: the first answer was 1.09 and 0.99 mm off (chosen
    among contenders on its own samples), flagged by one re-fit on other samples 0.98 and 1.28 mm away; the
    consensus of five sample sets is 0.34 and 0.22 mm off, their spread 0.41 and 0.45 mm RMS (limit 0.5)."""
    bare, scan = bare_neck_scan
    for sampling_seed in (1, 2, 3):
        result = register_post_to_pre(bare.ct, bare.grid, scan.ct, scan.grid,
                                      post_seed_points=scan.true_positions_post, random_seed=sampling_seed)
        tre = _tre(bare, scan.post_to_pre, result)
        print(f"bare neck, sampling seed {sampling_seed}: TRE max {tre.max():.2f} mm; {result.quality.describe()}")
        assert result.quality.n_sample_sets == SAMPLE_SETS
        assert tre.max() <= 0.5
        assert result.plausible, result.quality.reasons


def test_a_neck_with_vertebrae_along_s_registers_quietly_whatever_the_metric_samples(bare_neck_scan):
    """The same pair with a cervical spine (``registration_phantoms.neck_vertebrae``: discs cut the vertebral
    body into vertebrae of unequal heights, spinous processes) painted into both CTs: the anatomy fixes S, so
    the fits on independent metric samples agree (0.07-0.13 mm RMS at sampling seeds 1-3, TRE 0.06-0.08 mm)
    and nothing is flagged; a check that fired on any spread of a few tenths of a millimetre would fail here."""
    bare, scan = bare_neck_scan
    pre = phantoms.neck_vertebrae(bare.ct, bare.grid)
    post = resample(phantoms.neck_vertebrae(scan.scan.ct, scan.grid), scan.grid, scan.grid, scan.post_to_pre,
                    "linear", -1000.0)
    for sampling_seed in (1, 2, 3):
        result = register_post_to_pre(pre, bare.grid, post, scan.grid, post_seed_points=scan.true_positions_post,
                                      random_seed=sampling_seed)
        tre = _tre(bare, scan.post_to_pre, result)
        print(f"neck with vertebrae, sampling seed {sampling_seed}: TRE max {tre.max():.2f} mm; "
              f"{result.quality.describe()}")
        assert result.plausible, result.quality.reasons
        assert result.quality.sample_spread_mm <= 0.25 and tre.max() <= 0.3


@pytest.mark.parametrize("sampling_seed", [3, 4, 14, 15])
def test_too_few_metric_samples_are_flagged_never_a_silent_error(bare_neck_scan, sampling_seed):
    """1000 metric samples (12 times fewer than the default) on the bare neck: at these sampling seeds the fit
    ended 1.4-8.1 mm off at the GTV. Every result that is not flagged must be within 1 mm."""
    bare, scan = bare_neck_scan
    result = register_post_to_pre(bare.ct, bare.grid, scan.ct, scan.grid, post_seed_points=scan.true_positions_post,
                                  random_seed=sampling_seed, samples=1000)
    tre = _tre(bare, scan.post_to_pre, result)
    print(f"bare neck, 1000 samples, sampling seed {sampling_seed}: TRE max {tre.max():.2f} mm; "
          f"{result.quality.describe()}")
    assert tre.max() <= 1.0 or not result.plausible


def test_consensus_of_answers_is_the_mean_motion_and_spread_its_rms_distance():
    """Closed forms: translations average to their mean; rotations of +-a about one axis to no rotation; an
    affine consensus is the mean matrix; the spread is the RMS of the largest distances over the points."""
    points = np.array([[x, y, z] for x in (-10.0, 10.0) for y in (-20.0, 20.0) for z in (-5.0, 5.0)])
    shifts = [_rigid([0.0, 0.0, 0.0], t) for t in ([1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [2.0, 1.0, 3.0])]
    np.testing.assert_allclose(consensus(shifts, points), _rigid([0.0, 0.0, 0.0], [1.0, 1.0, 1.0]), atol=1e-12)
    assert spread_mm(shifts, np.eye(4), points) == pytest.approx(np.sqrt((1.0 + 4.0 + 14.0) / 3.0))
    turns = [_rigid([0.0, 0.0, a], [0.0, 0.0, 0.0]) for a in (3.0, -3.0)]
    np.testing.assert_allclose(consensus(turns, points), np.eye(4), atol=1e-12)
    affine = [np.diag([1.1, 1.0, 0.9, 1.0]), np.diag([0.9, 1.2, 1.1, 1.0])]
    np.testing.assert_allclose(consensus(affine, points, rigid=False), np.diag([1.0, 1.1, 1.0, 1.0]), atol=1e-12)


def test_a_clock_seeded_sampling_is_refused(case):
    """SimpleITK draws the metric's samples from the clock when the seed is 0 (four identical optimisations gave
    four answers); the registration must be reproducible."""
    with pytest.raises(InputError, match="random seed 0 invalid: must be an integer >= 1"):
        register_post_to_pre(case.ct, case.grid, case.ct, case.grid, random_seed=0)

@pytest.mark.slow
def test_affine_and_mean_squares_options_register_or_say_they_cannot(case):
    """Mean squares registers this pair; an affine fit of a neck that hardly changes along S is not fixed
    along S (its scaling there is free): it must then be flagged, never a silent error above 1 mm."""
    truth = _rigid([6.0, 4.0, -5.0], [-15.0, 10.0, 8.0])
    post_ct, post_grid, seeds = _post_ct(truth, 5)
    for kind, metric in (("affine", "mattes"), ("rigid", "meansquares")):
        result = register_post_to_pre(case.ct, case.grid, post_ct, post_grid, kind=kind, metric=metric,
                                      post_seed_points=seeds)
        tre = _tre(case, truth, result)
        print(f"{kind}/{metric}: TRE mean {tre.mean():.3f} mm, max {tre.max():.3f} mm; {result.quality.describe()}")
        assert tre.max() <= 1.0 or not result.plausible
        if kind == "rigid":
            assert tre.max() <= 1.0 and result.plausible


@pytest.mark.parametrize("thickness_mm", [1.0, 5.0])
def test_metal_mask_covers_every_seed_and_spares_the_vertebra(thickness_mm):
    """Thin slices: the threshold alone finds every seed; 5 mm slices (peaks ~1400-1800 HU): with the
    detected positions. Bone (cortex ~700 HU here) stays in the metric."""
    seeds = synthetic_ct.random_implant(20, (40.0, 8.0, 0.0), 12.0, min_spacing_mm=5.0, random_seed=3)
    scan = synthetic_ct.post_implant_ct(seeds, spacing_mm=(0.8, 0.8, min(thickness_mm, 2.5)),
                                        slice_thickness_mm=thickness_mm, random_seed=3)
    points = [s.position for s in seeds] if thickness_mm > 3 else None
    mask = metal_mask(scan.ct, scan.grid, margin_mm=5.0, seed_points=points)
    cube = np.array([[x, y, z] for x in (-3.5, 3.5) for y in (-3.5, 3.5) for z in (-3.5, 3.5)])
    for s in seeds:  # the voxels within 3 mm, looked for in the index box of the 7 mm cube around the seed
        ijk = scan.grid.to_ijk(s.position + cube)
        lo = np.maximum(np.floor(ijk.min(axis=0)).astype(int), 0)
        hi = np.minimum(np.ceil(ijk.max(axis=0)).astype(int) + 1, scan.grid.dims)
        box = tuple(slice(a, b) for a, b in zip(lo[::-1], hi[::-1]))
        sub = Grid(scan.grid.to_ras(lo), scan.grid.spacing, scan.grid.direction, tuple(hi - lo))
        near = np.linalg.norm(sub.points() - s.position, axis=-1) <= 3.0
        assert near.any() and mask[box][near].all(), f"seed {s.label} not fully masked"
    assert mask[scan.masks["Bone"]].mean() < 0.01


@pytest.fixture(scope="module")
def moved():
    """(post_to_pre truth, post-implant CT, its grid): one pair for the carried-contour and repeatability tests."""
    truth = _rigid([0.0, 8.0, 0.0], [10.0, -5.0, 15.0])
    post_ct, post_grid, _ = _post_ct(truth, 2)
    return truth, post_ct, post_grid


def test_carried_contours_land_on_the_target_in_the_post_implant_ct(case, moved):
    truth, post_ct, post_grid = moved
    result = register_post_to_pre(case.ct, case.grid, post_ct, post_grid)
    carried = carry_mask(case.masks["GTV"], case.grid, post_grid, result.post_to_pre)
    exact = resample(case.masks["GTV"], case.grid, post_grid, truth, "linear")
    dice = 2 * (carried & exact).sum() / (carried.sum() + exact.sum())
    pts = post_grid.points()
    centroid_error = np.linalg.norm(pts[carried].mean(0) - pts[exact].mean(0))
    print(f"carried GTV: Dice {dice:.4f}, centroid error {centroid_error:.3f} mm")
    assert dice > 0.97 and centroid_error < 0.5


def test_identical_calls_give_identical_transforms_and_leave_the_thread_setting(case, moved):
    """The metric's samples are seeded, and its threaded sums (Mattes' joint histogram) must not depend on
    which thread finishes first: two identical calls in one process give the same matrix to the last bit
    (on several threads they differed, up to 1 mm, before the metric ran on one thread)."""
    _, post_ct, post_grid = moved
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    first, second = (register_post_to_pre(case.ct, case.grid, post_ct, post_grid, schedule_mm=(8.0, 4.0), n_starts=2)
                     for _ in range(2))
    assert np.array_equal(first.post_to_pre, second.post_to_pre)
    assert first.metric_value == second.metric_value
    assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == threads


def test_registration_rejects_bad_options_and_can_be_cancelled(case):
    with pytest.raises(InputError, match="kind"):
        register_post_to_pre(case.ct, case.grid, case.ct, case.grid, kind="bspline")
    with pytest.raises(InputError, match="metric"):
        register_post_to_pre(case.ct, case.grid, case.ct, case.grid, metric="ncc")
    with pytest.raises(InputError, match="voxels of the pre-plan CT left"):
        register_post_to_pre(case.ct, case.grid, case.ct, case.grid,
                             pre_roi=np.zeros(case.grid.shape, bool))
    with pytest.raises(InputError, match="schedule"):
        register_post_to_pre(case.ct, case.grid, case.ct, case.grid, schedule_mm=(2.0, 4.0))
    from SeedBrachyLib.errors import Cancelled
    with pytest.raises(Cancelled):
        register_post_to_pre(case.ct, case.grid, case.ct, case.grid, progress=lambda f, m: False)


# ------------------------------------------------------------------ failure modes (thorax phantoms)
# Testing/registration_phantoms.py paints a thorax whose vertebrae (and ribs) repeat every 27 mm along S,
# scanned in any frame with its own slice profile; the post-implant CT holds 20 seeds at a lung node,
# with streaks, and no contrast (the pre-plan has contrast). TRE is measured at the seeds.
@pytest.fixture(scope="module")
def thorax():
    pre = phantoms.canvas_for("thorax", 2.0, z_range=(-110.0, 130.0))
    post = phantoms.canvas_for("thorax", 2.0, contrast=False, z_range=(-110.0, 130.0))
    return pre, post


def _register(pair, **options):
    result = register_post_to_pre(pair.pre_ct, pair.pre_grid, pair.post_ct, pair.post_grid, **options)
    tre = pair.tre(result.post_to_pre)
    print(f"{pair.description}: TRE mean {tre.mean():.2f} mm, max {tre.max():.2f} mm; {result.describe()}")
    return result, tre


SET_UPS = {  # name: (post_to_pre truth, make_pair options)
    # 30 degrees about a point 180 mm behind the spine (rolled on the table), and 60 mm off
    "30 deg about a distant point + 60 mm": (phantoms.rigid([0.0, 10.0, 28.0], [40.0, -35.0, 25.0],
                                                            about=(0.0, -180.0, 0.0)), {}),
    # 1 mm pre-plan, 5 mm post-implant slices
    "1 mm pre-plan vs 5 mm post-implant": (phantoms.rigid([5.0, -4.0, 6.0], [12.0, -9.0, 14.0]),
                                           {"pre_spacing": (2.0, 2.0, 1.0), "post_spacing": (2.0, 2.0, 5.0)}),
    # a 50 mm post-implant scan, 40 mm head-foot from the pre-plan's centre (neighbouring vertebrae fit locally)
    "50 mm of the pre-plan's 220 mm, 40 mm head-foot": (phantoms.rigid([3.0, 2.0, -4.0], [6.0, -5.0, 40.0]),
                                                         {"post_z_half": 25.0}),
}


@pytest.mark.parametrize("name", list(SET_UPS))
def test_real_set_ups_converge_within_1mm_and_are_not_flagged(thorax, name):
    truth, options = SET_UPS[name]
    options = {"pre_spacing": (2.0, 2.0, 2.0), "post_spacing": (2.0, 2.0, 2.0), "pre_z": (-100.0, 120.0), **options}
    pair = phantoms.make_pair(truth, *thorax, random_seed=len(name), description=name, **options)
    result, tre = _register(pair)
    assert tre.max() <= 1.0
    assert result.plausible, result.quality.reasons


def test_an_unrelated_image_is_flagged(thorax):
    pelvis = phantoms.canvas_for("pelvis", 2.0, z_range=(-110.0, 130.0))
    pair = phantoms.make_pair(phantoms.rigid([2.0, -3.0, 4.0], [5.0, 5.0, 5.0]), thorax[0], pelvis,
                              pre_spacing=(2.0, 2.0, 2.0), post_spacing=(2.0, 2.0, 2.0), pre_z=(-100.0, 120.0),
                              description="pelvis post-implant CT vs thorax pre-plan")
    result, _ = _register(pair)
    assert not result.plausible
    assert "apart after registration" in " ".join(result.quality.reasons)


def test_blank_or_non_hu_images_are_refused_naming_what_was_seen(case):
    blank = np.zeros(case.grid.shape, np.int16)
    with pytest.raises(InputError, match="post-implant CT is blank: every voxel is 0"):
        register_post_to_pre(case.ct, case.grid, blank, case.grid)
    with pytest.raises(InputError, match="pre-plan CT is blank"):
        register_post_to_pre(np.full(case.grid.shape, -1000.0), case.grid, case.ct, case.grid)
    offset = (case.ct.astype(np.int32) + 1024).clip(0, None).astype(np.uint16)  # rescale intercept not applied
    with pytest.raises(InputError, match=r"not look like a CT in HU: values 0 to \d+"):
        register_post_to_pre(case.ct, case.grid, offset, case.grid)
    with pytest.raises(InputError, match="non-finite"):
        register_post_to_pre(np.where(case.masks["Body"], np.nan, case.ct), case.grid, case.ct, case.grid)


def test_restriction_to_the_target_region_registers_within_1mm(thorax):
    """The metric restricted to the node grown by 40 mm (the user's choice for a local fit)."""
    truth = phantoms.rigid([4.0, -3.0, 12.0], [20.0, 15.0, -35.0])
    pair = phantoms.make_pair(truth, *thorax, pre_spacing=(2.0, 2.0, 2.0), post_spacing=(2.0, 2.0, 2.0),
                              pre_z=(-100.0, 120.0), random_seed=3, description="metric within 40 mm of the node")
    node = np.linalg.norm((pair.pre_grid.points() - phantoms.TARGET) / [12.0, 11.0, 13.0], axis=-1) <= 1.0
    roi = target_region(node, pair.pre_grid, 40.0)
    assert 0.02 < roi.mean() < 0.2
    result, tre = _register(pair, pre_roi=roi)
    assert tre.max() <= 1.0 and result.plausible
    with pytest.raises(InputError, match="margin"):
        target_region(node, pair.pre_grid, 0.0)
    with pytest.raises(InputError, match="empty"):
        target_region(np.zeros_like(node), pair.pre_grid)


# Held-out pairs: random motions drawn here (random seeds 500+; the benchmark's tuning cases use 100-300,
# the set-ups above are fixed), one of each situation the registration once failed in silently.
def _held_out(situation, seed):
    """(post_to_pre truth, make_pair options) of one situation, drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    unit = rng.normal(size=3)
    unit /= np.linalg.norm(unit)
    if situation == "30 deg about a point 150-250 mm from the node, 0-30 mm":
        axis = rng.normal(size=3)
        about = phantoms.TARGET + unit * rng.uniform(150.0, 250.0)
        return phantoms.rigid(axis / np.linalg.norm(axis) * 30.0, rng.normal(0, 15, 3), about=about), {}
    if situation == "60 mm shift":
        return phantoms.rigid(rng.normal(0, 4, 3), unit * 60.0), {}
    if situation == "1 mm pre-plan vs 5 mm post-implant":
        return phantoms.rigid(rng.normal(0, 5, 3), rng.normal(0, 12, 3)), {
            "pre_spacing": (2.0, 2.0, 1.0), "post_spacing": (2.0, 2.0, 5.0)}
    if situation == "80 mm head-foot (3 vertebrae)":
        return phantoms.rigid(rng.normal(0, 3, 3), [*rng.normal(0, 8, 2), rng.choice([-1, 1]) * 80.0]), {}
    if situation == "50 mm post scan, 25-30 mm head-foot (one vertebra)":
        return phantoms.rigid(rng.normal(0, 3, 3), [*rng.normal(0, 8, 2), rng.choice([-1, 1]) * rng.uniform(25, 30)]), {
            "post_z_half": 25.0}
    raise AssertionError(situation)


HELD_OUT = ["30 deg about a point 150-250 mm from the node, 0-30 mm", "60 mm shift",
            "1 mm pre-plan vs 5 mm post-implant", "80 mm head-foot (3 vertebrae)",
            "50 mm post scan, 25-30 mm head-foot (one vertebra)"]


@pytest.mark.parametrize("seed", [501])
@pytest.mark.parametrize("situation", HELD_OUT)
def test_held_out_set_ups_converge_within_1mm_and_are_not_flagged(thorax, situation, seed):
    truth, options = _held_out(situation, seed)
    options = {"pre_spacing": (2.0, 2.0, 2.0), "post_spacing": (2.0, 2.0, 2.0), "pre_z": (-100.0, 120.0), **options}
    pair = phantoms.make_pair(truth, *thorax, random_seed=seed, description=f"held out: {situation}", **options)
    result, tre = _register(pair)
    assert tre.max() <= 1.0
    assert result.plausible, result.quality.reasons


def test_another_patients_thorax_is_flagged(thorax):
    """The hard unrelated image: the same kind of anatomy (another thorax, different spine and organs)."""
    other = phantoms.canvas_for("thorax", 2.0, patient=phantoms.Thorax.patient(503), contrast=False,
                                z_range=(-110.0, 130.0))
    pair = phantoms.make_pair(phantoms.rigid([3.0, -2.0, 2.0], [4.0, -6.0, 5.0]), thorax[0], other,
                              pre_spacing=(2.0, 2.0, 2.0), post_spacing=(2.0, 2.0, 2.0), pre_z=(-100.0, 120.0),
                              random_seed=503, description="another patient's thorax vs the pre-plan")
    result, tre = _register(pair)
    assert not result.plausible


# ------------------------------------------------------------------ the start search's building blocks
def test_masked_ncc_by_fft_matches_a_direct_sum_at_every_shift():
    from SeedBrachyLib.postimplant.registration_search import _Correlator

    rng = np.random.default_rng(5)
    moving = rng.uniform(-300, 1200, (7, 6, 8)).astype(np.float32)
    fixed = rng.uniform(-300, 1200, (5, 4, 6)).astype(np.float32)
    moving_mask = (rng.random(moving.shape) > 0.2).astype(np.float32)
    fixed_mask = (rng.random(fixed.shape) > 0.3).astype(np.float32)
    shape = [m + f for m, f in zip(moving.shape, fixed.shape)]
    ncc, count = _Correlator(moving, moving_mask, shape).ncc(fixed, fixed_mask)
    checked = 0
    for shift in [(0, 0, 0), (1, 2, -1), (-2, -1, 3), (2, 0, 2), (-4, -3, -5), (6, 5, 7)]:
        pairs = [(fixed[i], moving[tuple(np.add(i, shift))]) for i in np.ndindex(fixed.shape)
                 if fixed_mask[i] and all(0 <= a + s < m for a, s, m in zip(i, shift, moving.shape))
                 and moving_mask[tuple(np.add(i, shift))]]
        index = tuple(s % n for s, n in zip(shift, shape))
        assert count[index] == pytest.approx(len(pairs), abs=1e-3)
        if len(pairs) > 3:
            a, b = np.array(pairs, dtype=float).T
            assert ncc[index] == pytest.approx(np.corrcoef(a, b)[0, 1], abs=1e-4)
            checked += 1
    assert checked >= 4


def test_rotation_samples_cover_the_capture_range():
    from SeedBrachyLib.postimplant.registration_search import rotation_samples

    samples = rotation_samples(30.0, 20.0)
    np.testing.assert_allclose(samples[0], np.eye(3))
    vectors = Rotation.from_matrix(samples).as_rotvec(degrees=True)
    probes = Rotation.random(2000, random_state=3).as_rotvec()
    probes = probes / np.linalg.norm(probes, axis=1, keepdims=True) * np.random.default_rng(3).uniform(0, 30, (2000, 1))
    nearest = np.min(np.linalg.norm(probes[:, None] - vectors[None], axis=-1), axis=1)
    assert nearest.max() <= 12.0  # every rotation within 30 deg is within 12 deg of a sample
    with pytest.raises(InputError, match="rotation"):
        rotation_samples(120.0, 20.0)
