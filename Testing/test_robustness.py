"""Placement robustness sampling against analytic cases: Gaussian seed displacement, a needle depth shift."""

import math

import numpy as np
import pytest
from scipy import stats

from SeedBrachyLib.checks import Goal, goals_for, user_limit
from SeedBrachyLib.dose import dose_at_points
from SeedBrachyLib.dvh import DVH
from SeedBrachyLib.errors import InputError
from SeedBrachyLib.planning import robustness as rob
from SeedBrachyLib.seeds import Needle, Seed
from SeedBrachyLib.sources import get_model

MODEL = get_model("I125_OncoSeed6711")
NONE = dict(needle_depth_sd_mm=0.0, needle_entry_sd_mm=0.0, needle_angle_sd_deg=0.0, seed_along_sd_mm=0.0,
            seed_across_sd_mm=0.0, seed_tilt_sd_deg=0.0, p_lost=0.0)


def _single_seed_geometry():
    needle = Needle([0.0, 0.0, -50.0], [0.0, 0.0, 10.0], "A1")
    return rob.ImplantGeometry.from_seeds([Seed([0.0, 0.0, 0.0], [0, 0, 1], 0.6)], [needle])


def _point(name, xyz):
    return rob.SamplePoints(name, "oar", np.array([xyz], float), np.array([0.001]))


@pytest.mark.parametrize("distance_mm", [4.0, 10.0])
def test_gaussian_displacement_mean_point_dose(distance_mm):
    """One seed with an isotropic Gaussian displacement (SD 2 mm per axis): the Monte Carlo mean (and second moment)
    of the dose at a point equal E[D^k] = int D(p - delta)^k phi(delta) d^3 delta, by 24^3-node Gauss-Hermite
    quadrature."""
    sd = 2.0
    errors = rob.PlacementErrors(**{**NONE, "seed_along_sd_mm": sd, "seed_across_sd_mm": sd})
    p = [distance_mm, 0.0, 0.0]
    result = rob.evaluate_robustness(_single_seed_geometry(), MODEL, [_point("P", p)], errors=errors,
                                     n_samples=3000, random_seed=7, oar_metrics=("Dmax",), oar_keep_fraction=0.0)
    samples = result.values[("P", "Dmax")]
    x, w = np.polynomial.hermite_e.hermegauss(24)  # nodes for the standard normal weight exp(-x^2/2)
    w = w / w.sum()
    dx, dy, dz = np.meshgrid(x * sd, x * sd, x * sd, indexing="ij")
    weight = (w[:, None, None] * w[None, :, None] * w[None, None, :]).ravel()
    shifted = np.stack([p[0] - dx.ravel(), p[1] - dy.ravel(), p[2] - dz.ravel()], axis=1)
    quad_dose = dose_at_points(shifted, [Seed([0, 0, 0], [0, 0, 1], 0.6)], MODEL)
    for power in (1, 2):  # mean and second moment: a wrong SD or a missing shift moves them
        moment = samples ** power
        se = moment.std(ddof=1) / math.sqrt(len(samples))
        assert abs(moment.mean() - float(weight @ quad_dose ** power)) < 4 * se
    nominal = result.nominal[("P", "Dmax")]
    assert nominal == pytest.approx(float(dose_at_points([p], [Seed([0, 0, 0], [0, 0, 1], 0.6)], MODEL)[0]))
    assert samples.std() > 0.2 * nominal


def _needle_case():
    needle = Needle([0.0, 0.0, -60.0], [0.0, 0.0, 20.0], "C3")
    seeds = [Seed([0.0, 0.0, z], [0, 0, 1], 0.7) for z in (-7.5, -2.5, 2.5, 7.5)]
    geometry = rob.ImplantGeometry.from_seeds(seeds, [needle])
    rng = np.random.default_rng(0)
    pts = rng.uniform(-9, 9, (3000, 3))
    pts = pts[np.linalg.norm(pts, axis=1) <= 9.0]
    target = rob.SamplePoints("T", "target", pts, np.full(len(pts), 0.001))
    return seeds, geometry, target


def _d90_shifted(seeds, target, shift_mm):
    moved = [Seed(s.position + [0.0, 0.0, shift_mm], s.axis, s.strength_u) for s in seeds]
    return target.dvh(dose_at_points(target.points, moved, MODEL)).dose_at_volume_pct(90)


def test_needle_depth_shift_d90_distribution():
    """Only a needle depth error (SD 3 mm): D90 of a sampled implant is D90(delta) of the plan shifted by delta.

    The exact distribution is computed independently on a fine delta grid (D90(delta) evaluated directly,
    weighted by the normal density); the sampled P(D90 > threshold) lies inside its 99.9% Wilson interval
    and the sampled D90s pass a Kolmogorov-Smirnov test against the exact CDF.
    """
    seeds, geometry, target = _needle_case()
    sd = 3.0
    errors = rob.PlacementErrors(**{**NONE, "needle_depth_sd_mm": sd})
    deltas = np.linspace(-6 * sd, 6 * sd, 481)
    d90 = np.array([_d90_shifted(seeds, target, d) for d in deltas])
    density = stats.norm.pdf(deltas, scale=sd)
    density /= density.sum()
    nominal = d90[240]
    threshold = float(np.percentile(d90[np.abs(deltas) < 2 * sd], 40))
    exact_p = float(density[d90 > threshold].sum())
    goal = Goal("D90 threshold", "T", "D90", ">", threshold, "Gy", "test")
    result = rob.evaluate_robustness(geometry, MODEL, [target], [goal], errors=errors, n_samples=800,
                                     random_seed=11, target_metrics=("D90",))
    prob = result.probabilities[0]
    low, high = rob.wilson_interval(prob.k, prob.n, z=3.29)
    assert low <= exact_p <= high
    assert result.nominal[("T", "D90")] == pytest.approx(nominal, rel=1e-9)

    order = np.argsort(d90)
    cdf_x, cdf_p = d90[order], np.cumsum(density[order])

    def exact_cdf(x):
        return np.interp(x, cdf_x, cdf_p, left=0.0, right=1.0)

    assert stats.kstest(result.values[("T", "D90")], exact_cdf).pvalue > 1e-3
    wrong = rob.evaluate_robustness(geometry, MODEL, [target], [goal], errors=rob.PlacementErrors(
        **{**NONE, "needle_depth_sd_mm": 2 * sd}), n_samples=800, random_seed=11, target_metrics=("D90",))
    assert stats.kstest(wrong.values[("T", "D90")], exact_cdf).pvalue < 1e-3  # the test sees a wrong SD


def test_sampled_error_statistics():
    """Loss fraction, seed tilt and the needle-deflection growth of lateral error with depth match the model."""
    needle = Needle([0.0, 0.0, 0.0], [0.0, 0.0, 100.0], "A1")
    seeds = [Seed([0.0, 0.0, z], [0, 0, 1], 0.5) for z in (20.0, 80.0)]
    geometry = rob.ImplantGeometry.from_seeds(seeds, [needle])
    e = rob.PlacementErrors(needle_depth_sd_mm=1.0, needle_entry_sd_mm=1.5, needle_angle_sd_deg=3.0,
                            seed_along_sd_mm=0.5, seed_across_sd_mm=0.7, seed_tilt_sd_deg=10.0, p_lost=0.05)
    n = 20_000
    s = rob.sample_implants(geometry, e, n, random_seed=3)
    lost = int((~s.kept).sum())
    assert stats.binomtest(lost, s.kept.size, 0.05).pvalue > 1e-3
    tan_sd = math.tan(math.radians(3.0))
    for i, depth in enumerate((20.0, 80.0)):
        expected_var = 1.5 ** 2 + (depth * tan_sd) ** 2 + 0.7 ** 2  # per lateral axis, small-angle
        for axis in (0, 1):
            assert s.positions[:, i, axis].var() == pytest.approx(expected_var, rel=0.04)
        assert s.positions[:, i, 2].std() == pytest.approx(math.hypot(1.0, 0.5), rel=0.03)
    tilt = np.degrees(np.arctan2(s.axes[:, 0, 0], s.axes[:, 0, 2]))  # tilt of seed from the needle, one plane
    needle_dir = np.degrees(np.arctan2(s.positions[:, 1, 0] - s.positions[:, 0, 0],
                                       s.positions[:, 1, 2] - s.positions[:, 0, 2]))
    assert tilt.std() == pytest.approx(math.hypot(10.0, 3.0), rel=0.05)
    assert abs(np.corrcoef(tilt, needle_dir)[0, 1]) > 0.1  # seeds follow their deflected needle
    first = rob.sample_implants(geometry, e, 10, random_seed=3)
    assert np.array_equal(first.positions, s.positions[:10]) and np.array_equal(first.kept, s.kept[:10])
    assert not np.array_equal(first.positions, rob.sample_implants(geometry, e, 10, random_seed=4).positions)


def test_wilson_interval_matches_scipy():
    for k, n in ((0, 50), (3, 50), (25, 50), (49, 50), (812, 1000)):
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert rob.wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_oar_cut_does_not_change_d2cc():
    """Far organ-at-risk points left out while the dose bound allows (an organ 8 mm beyond the needle tip, so many
    samples need them): every sample's D2cc and Dmax equal those from all points."""
    seeds, geometry, _ = _needle_case()
    g = np.mgrid[-20:21:1.5, -20:21:1.5, 8:40:1.5].reshape(3, -1).T
    oar = rob.SamplePoints("OAR", "oar", g, np.full(len(g), 1.5 ** 3 / 1000))
    errors = rob.PlacementErrors()
    cut = rob.evaluate_robustness(geometry, MODEL, [oar], errors=errors, n_samples=60, random_seed=5,
                                  oar_metrics=("D2cc", "Dmax"))
    full = rob.evaluate_robustness(geometry, MODEL, [oar], errors=errors, n_samples=60, random_seed=5,
                                   oar_metrics=("D2cc", "Dmax"), oar_keep_fraction=0.0)
    for metric in ("D2cc", "Dmax"):
        assert np.allclose(cut.values[("OAR", metric)], full.values[("OAR", metric)], rtol=1e-12)
    assert "of 17248 points evaluated in every sample" in cut.notes[0], cut.notes


def test_goals_and_summary():
    """Goals apply to the structure they name (the library's GTV goal, an OAR limit); summary lines carry units."""
    seeds, geometry, target = _needle_case()
    target = rob.SamplePoints("GTV", "target", target.points, target.volumes_cc)
    other = rob.SamplePoints("T2", "target", target.points * 0.8, target.volumes_cc)
    oar = _point("Skin", [0.0, 12.0, 0.0])
    goals = list(goals_for("lymph-node-metastases")) + [user_limit("Skin", "Dmax", 500.0)]
    r = rob.evaluate_robustness(geometry, MODEL, [target, other, oar], goals, n_samples=40, prescription_gy=100.0,
                                oar_metrics=("Dmax",), oar_keep_fraction=0.0)
    assert [p.structure for p in r.probabilities] == ["GTV", "Skin"]
    assert all(0 <= p.ci_low <= p.p <= p.ci_high <= 1 for p in r.probabilities)
    text = "\n".join(r.summary_lines())
    assert "P(GTV D90 > 102.7 Gy)" in text and "Wilson 95% CI" in text and "needle depth SD 6.5 mm" in text
    counts, edges = r.histogram("T2", "D90", bins=10)
    assert counts.sum() == 40 and len(edges) == 11
    with pytest.raises(InputError, match="prescription"):
        rob.evaluate_robustness(geometry, MODEL, [target], n_samples=2)
    with pytest.raises(InputError, match="no sample points"):
        rob.evaluate_robustness(geometry, MODEL, [target], [user_limit("Cord", "Dmax", 10.0)], n_samples=2,
                                prescription_gy=100.0)


def test_bad_input_named():
    with pytest.raises(InputError, match="needle_depth_sd_mm"):
        rob.PlacementErrors(needle_depth_sd_mm=-1.0)
    with pytest.raises(InputError, match="p_lost"):
        rob.PlacementErrors(p_lost=1.0)
    with pytest.raises(InputError, match="from the nearest needle"):
        rob.ImplantGeometry.from_seeds([Seed([5.0, 0, 0], [0, 0, 1], 0.5)], [Needle([0, 0, -50], [0, 0, 10])])
    with pytest.raises(InputError, match="samples"):
        rob.sample_implants(_single_seed_geometry(), rob.PlacementErrors(), 0)
    assert DVH is not None
