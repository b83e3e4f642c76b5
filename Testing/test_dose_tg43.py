"""Validation of the TG-43U1 kernel against published values, closed forms and an independent oracle."""

import math

import numpy as np
import pytest
import tg43_oracle
from scipy.integrate import trapezoid

from SeedBrachyLib import tg43
from SeedBrachyLib.sources import available_models, get_model

PACKAGED = ["I125_IsoAid_IAI-125A", "I125_Model6702", "I125_OncoSeed6711", "I125_selectSeed_130002"]


def test_packaged_models_present():
    assert set(PACKAGED) <= set(available_models())


@pytest.mark.parametrize("key", PACKAGED)
def test_dose_rate_at_reference_point_is_lambda(key):
    m = get_model(key)
    # (1 cm, 90 deg): r = 10 mm, z = 0
    assert tg43.dose_rate_per_u(m, 10.0, 0.0) == pytest.approx(m.dose_rate_constant, rel=1e-12)


#: Shipped models whose consensus file carries no independent reference point (see their "reference_points").
MODELS_WITHOUT_REFERENCE_POINTS = {"I125_selectSeed_130002"}


def test_total_dose_per_u_6711_published():
    m = get_model("I125_OncoSeed6711")
    total_cgy = tg43.dose_rate_per_u(m, 10.0, 0.0) * m.mean_life_h
    assert total_cgy == pytest.approx(1984.7, abs=0.05)  # Lambda x tau = 0.965 x 2056.7 h


@pytest.mark.parametrize("key", PACKAGED)
def test_reference_points_from_model_files(key):
    """Every reference point a model file carries is reproduced; a file without any is named (it is checked
    only by the definition Ddot(1 cm, 90 deg) = Lambda x S_K, which every model must meet)."""
    m = get_model(key)
    assert tg43.dose_rate_per_u(m, 10.0, 0.0) == pytest.approx(m.dose_rate_constant, rel=1e-9)
    checked = 0
    for point in m.extra.get("reference_points", []):
        keys = {"total_dose_cGy_per_U", "dose_rate_cGy_per_h_per_U", "values"} & set(point)
        assert keys, f"{key}: reference point {point.get('desc')!r} has no value the test knows how to check"
        if "total_dose_cGy_per_U" in point:
            got = tg43.dose_rate_per_u(m, 10.0, 0.0) * m.mean_life_h
            assert got == pytest.approx(point["total_dose_cGy_per_U"], rel=1e-9)
        if "dose_rate_cGy_per_h_per_U" in point:
            assert tg43.dose_rate_per_u(m, 10.0, 0.0) == pytest.approx(point["dose_rate_cGy_per_h_per_U"], rel=1e-9)
        for value in point.get("values", []):
            theta = math.radians(value["theta_deg"])
            r_mm = value["r_cm"] * 10
            g = tg43.geometry_line(r_mm, r_mm * math.cos(theta), m.active_length_mm) * 100  # cm^-2
            assert g == pytest.approx(value["G_L_cm^-2"], rel=1e-9)
        checked += 1
    assert checked == len(m.extra.get("reference_points", []))
    assert checked > 0 or key in MODELS_WITHOUT_REFERENCE_POINTS, f"{key} carries no reference points"


@pytest.mark.parametrize("r_mm,theta_deg", [(5, 10), (10, 45), (20, 90), (7, 0), (30, 170), (3, 60), (50, 2)])
def test_geometry_function_closed_form(r_mm, theta_deg):
    length = 3.0
    th = math.radians(theta_deg)
    z, rho = r_mm * math.cos(th), r_mm * math.sin(th)
    if rho < 1e-9:
        expected = 1 / (r_mm**2 - length**2 / 4)
    else:  # beta = angle subtended by the segment: difference of the end-point elevation angles
        beta = math.atan((z + length / 2) / rho) - math.atan((z - length / 2) / rho)
        expected = beta / (length * r_mm * math.sin(th))
    assert tg43.geometry_line(r_mm, z, length) == pytest.approx(expected, rel=1e-10)
    # far away the line source tends to the inverse square law
    assert tg43.geometry_line(1000.0, 1000.0 * math.cos(th), length) == pytest.approx(1e-6, rel=1e-5)


@pytest.mark.parametrize("key", PACKAGED)
def test_model_reproduces_tabulated_gl_and_f(key):
    m = get_model(key)
    r_clamp = m.outer_length_mm / 2
    r = m.gl_r_mm
    assert np.allclose(tg43.radial_dose_function(m, r), m.gl, rtol=1e-12)
    # through the full kernel on the transverse axis: Ddot / (Lambda G/G0) = g_L (outside the capsule)
    ok = r >= r_clamp
    g0 = tg43.geometry_line_transverse(10.0, m.active_length_mm)
    ratio = tg43.dose_rate_per_u(m, r[ok], 0 * r[ok]) / (
        m.dose_rate_constant * tg43.geometry_line_transverse(r[ok], m.active_length_mm) / g0)
    assert np.allclose(ratio, m.gl[ok], rtol=1e-9)
    rr, tt = np.meshgrid(m.f_r_mm, m.f_theta_deg)
    assert np.allclose(tg43.anisotropy_function(m, rr, tt), m.f_table, rtol=1e-12)
    assert np.allclose(tg43.anisotropy_function(m, rr, 180 - tt), m.f_table, rtol=1e-12)  # symmetry
    ok = rr >= r_clamp
    z = rr * np.cos(np.radians(tt))
    kernel = tg43.dose_rate_per_u(m, rr[ok], z[ok])
    f = kernel / (m.dose_rate_constant * tg43.geometry_line(rr[ok], z[ok], m.active_length_mm) / g0
                  * tg43.radial_dose_function(m, rr[ok]))
    assert np.allclose(f, m.f_table[ok], rtol=1e-9)


def test_extrapolation_rules():
    m = get_model("I125_OncoSeed6711")
    # g_L: nearest neighbour below the first radius
    assert tg43.radial_dose_function(m, 0.2) == pytest.approx(m.gl[0])
    # g_L: log-linear extrapolation from the last two points beyond the last radius
    r1, r2 = m.gl_r_mm[-2:]
    g1, g2 = m.gl[-2:]
    expected = g2 * (g2 / g1) ** ((150.0 - r2) / (r2 - r1))
    assert tg43.radial_dose_function(m, 150.0) == pytest.approx(expected, rel=1e-12)
    # g_L: log-linear between points: geometric mean at the midpoint
    assert tg43.radial_dose_function(m, 0.5 * (r1 + r2)) == pytest.approx(math.sqrt(g1 * g2), rel=1e-12)
    # F: nearest neighbour in r outside the tabulated radii
    f = tg43.anisotropy_function
    for theta in (0.0, 15.0, 45.0, 90.0):
        assert f(m, 1.0, theta) == pytest.approx(f(m, m.f_r_mm[0], theta))
        assert f(m, 90.0, theta) == pytest.approx(f(m, m.f_r_mm[-1], theta))
    assert np.isfinite(tg43.dose_rate_per_u(m, 0.0, 0.0))


@pytest.mark.parametrize("key", PACKAGED)
def test_kernel_matches_independent_oracle(key):
    m = get_model(key)
    raw = tg43_oracle.load(key)
    rng = np.random.default_rng(1)
    pts = rng.uniform(-80, 80, (300, 3)) * rng.uniform(0, 1, (300, 1)) ** 2
    axis = np.array([0.3, -0.2, 0.9])
    axis /= np.linalg.norm(axis)
    z = pts @ axis
    r = np.linalg.norm(pts, axis=1)
    got = tg43.dose_rate_per_u(m, r, z)
    want = [tg43_oracle.dose_rate(raw, p / 10, [0, 0, 0], axis) for p in pts]
    assert np.allclose(got, want, rtol=1e-9)


@pytest.mark.parametrize("key", PACKAGED)
def test_1d_and_2d_agree_in_far_field(key):
    """phi_an is the solid-angle average of F weighted by G_L: the 1D dose is the 2D dose averaged over a sphere."""
    m = get_model(key)
    theta = np.linspace(0, 180, 3601)
    w = np.sin(np.radians(theta))
    for r in (20.0, 30.0, 50.0):
        d2 = tg43.dose_rate_per_u(m, np.full_like(theta, r), r * np.cos(np.radians(theta)))
        avg_2d = trapezoid(d2 * w, theta) / trapezoid(w, theta)
        d1 = tg43.dose_rate_per_u(m, r, 0.0, formalism="point")
        assert d1 == pytest.approx(avg_2d, rel=0.01), f"r = {r} mm"


def test_point_formalism_on_transverse_axis_uses_phi_an():
    m = get_model("I125_OncoSeed6711")
    assert tg43.dose_rate_per_u(m, 10.0, 0.0, "point") == pytest.approx(m.dose_rate_constant * 0.944)
