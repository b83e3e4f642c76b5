"""BED and EQD2 of permanent implants and fractionated courses against hand-computed textbook examples."""

import math

import numpy as np
import pytest
from scipy.integrate import trapezoid

from SeedBrachyLib import radiobiology as rb
from SeedBrachyLib.dvh import DVH, PlanEvaluation, StructureMetrics
from SeedBrachyLib.errors import InputError
from SeedBrachyLib.grid import Grid
from SeedBrachyLib.structures import Structure

I125_HALF_LIFE_D = 59.4  # TG-43U1 (Rivard et al. 2004), as in the shipped seed models


def test_permanent_implant_bed_hand_computed():
    """Dale's permanent-implant formula, 145 Gy of I-125 (Dale RG, Br J Radiol 1985;58:515; TG-137 uses it).

    Hand computation: lambda = ln2 / (59.4 d x 24 h/d) = 0.693147 / 1425.6 h = 4.86215e-4 h^-1;
    R0 = lambda D = 145 x 4.86215e-4 = 0.0705012 Gy/h; mu = ln2 / 1.5 h = 0.462098 h^-1; mu + lambda = 0.462584.
    alpha/beta = 10 Gy: BED = 145 (1 + 0.0705012 / 4.62584) = 145 x 1.0152406 = 147.21 Gy.
    alpha/beta = 3 Gy:  BED = 145 (1 + 0.0705012 / 1.387752) = 145 x 1.0508025 = 152.37 Gy;
                        EQD2 = 152.37 / (1 + 2/3) = 91.42 Gy.
    """
    assert rb.implant_bed(145.0, rb.TUMOUR, I125_HALF_LIFE_D) == pytest.approx(147.21, abs=0.01)
    assert rb.implant_bed(145.0, rb.LATE_NORMAL, I125_HALF_LIFE_D) == pytest.approx(152.37, abs=0.01)
    assert rb.implant_eqd2(145.0, rb.LATE_NORMAL, I125_HALF_LIFE_D) == pytest.approx(91.42, abs=0.01)


def test_finite_time_formula_reaches_dale_limit_and_integral():
    """BED(T) from the closed form equals a direct numerical double integral, and tends to Dale's formula."""
    tissue = rb.LATE_NORMAL
    lam = math.log(2) / (I125_HALF_LIFE_D * 24)
    mu = tissue.mu_per_h
    r0 = lam * 120.0
    t_end = 30 * 24.0
    t = np.linspace(0.0, t_end, 200_001)
    rate = r0 * np.exp(-lam * t)
    inner = r0 * (np.exp(-lam * t) - np.exp(-mu * t)) / (mu - lam)  # checked against cumulative quadrature below
    dt = t[1] - t[0]
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (rate[1:] * np.exp(mu * t[1:]) + rate[:-1] * np.exp(mu * t[:-1]))
                                            * dt)]) * np.exp(-mu * t)
    assert np.max(np.abs(cum - inner)) < 1e-6
    numeric = trapezoid(rate, t) + 2.0 / tissue.alpha_beta_gy * trapezoid(rate * inner, t)
    assert rb.bed_delivered(r0, t_end, tissue, I125_HALF_LIFE_D) == pytest.approx(numeric, rel=1e-7)
    assert rb.bed_delivered(r0, 1e7, tissue, I125_HALF_LIFE_D) == pytest.approx(
        rb.implant_bed(120.0, tissue, I125_HALF_LIFE_D), rel=1e-12)


def test_constant_rate_ldr_textbook_example():
    """Continuous LDR at a constant rate: 40 Gy at 0.55 Gy/h, alpha/beta 10 Gy, mu 0.46 h^-1.

    The textbook long-treatment form BED = D [1 + 2R / (mu alpha/beta)] = 40 (1 + 1.1 / 4.6) = 49.57 Gy
    (Dale 1985; e.g. Hall & Giaccia, Radiobiology for the Radiologist). With the finite-time factor
    (1 - 1/(mu T)), T = 40 / 0.55 = 72.727 h: 40 x 0.23913 x (1 - 1/33.4545) = 9.565 x 0.970109 = 9.279 Gy,
    so BED = 49.28 Gy. A source half-life of 1e9 days makes the rate constant to 1e-11.
    """
    tissue = rb.TissueParameters("tumour", 10.0, repair_half_time_h=math.log(2) / 0.46)
    bed = rb.bed_delivered(0.55, 40.0 / 0.55, tissue, 1e9)
    assert bed == pytest.approx(49.28, abs=0.01)
    assert 40.0 * (1 + 2 * 0.55 / (0.46 * 10)) == pytest.approx(49.57, abs=0.01)  # the long-time form


def test_repopulation_hand_computed_and_maximum():
    """Repopulation, 120 Gy I-125, alpha/beta 10 Gy, T1/2 repair 1.5 h, alpha 0.3 Gy^-1, Tpot 3 d, Tk 28 d (Dale 1985).

    Hand computation with Dale's T_eff (linear rate): K = ln2 / (0.3 x 3 d) = 0.770164 Gy/d;
    R0 = 120 x ln2 / 59.4 d = 1.400298 Gy/d; T_eff = ln(R0 / K) / lambda = ln(1.818182) / 0.0116692 d^-1 = 51.23 d;
    exp(-lambda T_eff) = K / R0 = 0.55, so the dose by then is 120 x 0.45 = 54.00 Gy; the quadratic term
    2 R0^2 / ((mu - lambda) a/b) [(1 - 0.3025) / (2 lambda) - 1 / (mu + lambda)] (hours) =
    0.0014749 x (717.27 - 2.16) = 1.05 Gy; repopulation K (T_eff - Tk) = 0.770164 x 23.23 = 17.89 Gy;
    BED = 54.00 + 1.05 - 17.89 = 37.16 Gy. The exact maximum lies at 52.4 d (the quadratic term keeps the
    rate above K a little longer) and is within 0.05 Gy of that, because BED is flat at its maximum.
    """
    tissue = rb.with_repopulation(rb.TUMOUR, tpot_days=3.0, kickoff_days=28.0, alpha_per_gy=0.3)
    assert rb.implant_bed(120.0, tissue, I125_HALF_LIFE_D) == pytest.approx(37.16, abs=0.05)
    t_eff = float(rb.effective_time_days(120.0, tissue, I125_HALF_LIFE_D))
    assert 51.2 < t_eff < 53.0
    # the returned BED is the maximum of BED(T) - K (T - Tk)+ over a fine time grid
    lam, k = math.log(2) / (I125_HALF_LIFE_D * 24), math.log(2) / (0.3 * 3 * 24)
    t = np.linspace(0, 300 * 24, 300_001)
    f = rb.bed_delivered(lam * 120.0, t, rb.TUMOUR, I125_HALF_LIFE_D) - k * np.maximum(t - 28 * 24, 0)
    assert rb.implant_bed(120.0, tissue, I125_HALF_LIFE_D) == pytest.approx(f.max(), abs=1e-6)
    assert t_eff == pytest.approx(t[f.argmax()] / 24, abs=0.01)


def test_repopulation_low_dose_stops_at_onset():
    """A dose rate below K at Tk: T_eff = Tk and BED = BED(Tk) without loss; repopulation never raises BED."""
    tissue = rb.with_repopulation(rb.TUMOUR, tpot_days=3.0, kickoff_days=28.0)
    doses = np.array([0.0, 10.0, 40.0, 60.0, 120.0, 200.0])
    t_eff = rb.effective_time_days(doses, tissue, I125_HALF_LIFE_D)
    assert t_eff[1] == pytest.approx(28.0) and t_eff[2] == pytest.approx(28.0)
    lam = math.log(2) / (I125_HALF_LIFE_D * 24)
    assert rb.implant_bed(40.0, tissue, I125_HALF_LIFE_D) == pytest.approx(
        rb.bed_delivered(lam * 40.0, 28 * 24.0, rb.TUMOUR, I125_HALF_LIFE_D), rel=1e-9)
    bed = rb.implant_bed(doses, tissue, I125_HALF_LIFE_D)
    assert np.all(np.diff(bed) > 0) and bed[0] == 0.0
    assert np.all(bed <= rb.implant_bed(doses, rb.TUMOUR, I125_HALF_LIFE_D) + 1e-9)


def test_fractionated_textbook_examples():
    """EBRT: 60 Gy / 30 fx (2 Gy) is 60 Gy EQD2 whatever alpha/beta; 45 Gy / 15 fx (3 Gy), alpha/beta 3 Gy:
    BED = 45 (1 + 3/3) = 90 Gy, EQD2 = 45 (3 + 3) / (2 + 3) = 54 Gy; 20 Gy / 5 fx, alpha/beta 10 Gy:
    BED = 20 (1 + 4/10) = 28 Gy, EQD2 = 28 / 1.2 = 23.33 Gy (Withers et al. 1983)."""
    assert rb.fractionated_eqd2(60.0, 30, 3.0) == pytest.approx(60.0)
    assert rb.fractionated_eqd2(60.0, 30, 10.0) == pytest.approx(60.0)
    assert rb.fractionated_bed(45.0, 15, 3.0) == pytest.approx(90.0)
    assert rb.fractionated_eqd2(45.0, 15, 3.0) == pytest.approx(54.0)
    assert rb.fractionated_eqd2(20.0, 5, 10.0) == pytest.approx(23.333, abs=1e-3)
    per_voxel = rb.fractionated_eqd2(np.array([0.0, 30.0, 60.0]), 30, 3.0)
    assert per_voxel == pytest.approx([0.0, 30.0 * (1 + 3) / 5, 60.0])


def _evaluation(doses_by_name, roles, voxel_cc=0.01):
    structures = {}
    for name, doses in doses_by_name.items():
        dvh = DVH(np.asarray(doses, float), np.ones(len(doses)), voxel_cc, name)
        structures[name] = StructureMetrics(name, roles[name], dvh)
    return PlanEvaluation(120.0, structures)


def test_cumulative_skin_hand_computed():
    """Skin re-irradiation: implant D2cc 100 Gy physical, prior 60 Gy in 30 fractions, alpha/beta 3 Gy.

    Implant: R0 = 100 x 4.86215e-4 = 0.0486215 Gy/h; BED = 100 (1 + 0.0486215 / (0.462584 x 3)) = 103.504 Gy;
    EQD2 = 103.504 / (5/3) = 62.10 Gy. Prior: 60 Gy EQD2. Cumulative D2cc = 122.10 Gy EQD2: over a 120 Gy
    limit, under 125 Gy.
    """
    ev = _evaluation({"Skin": np.full(1000, 100.0), "GTV": np.full(500, 150.0)}, {"Skin": "oar", "GTV": "target"})
    params = rb.parameters_for([("Skin", "oar"), ("GTV", "target")])
    assert params["Skin"] is rb.LATE_NORMAL and params["GTV"] is rb.TUMOUR
    prior = rb.PriorCourse(30, {"Skin": 60.0}, "60 Gy / 30 fx")
    rows = rb.cumulative_eqd2(ev, params, I125_HALF_LIFE_D, prior, limits=[("Skin", "D2cc", 120.0)])
    skin = {r.metric: r for r in rows if r.structure == "Skin"}
    assert skin["D2cc"].implant_eqd2_gy == pytest.approx(62.10, abs=0.01)
    assert skin["D2cc"].prior_eqd2_gy == pytest.approx(60.0)
    assert skin["D2cc"].cumulative_eqd2_gy == pytest.approx(122.10, abs=0.01)
    assert skin["D2cc"].passed is False and skin["Dmax"].passed is None
    rows = rb.cumulative_eqd2(ev, params, I125_HALF_LIFE_D, prior, limits=[("Skin", "D2cc", 125.0)])
    assert [r.passed for r in rows if r.metric == "D2cc" and r.structure == "Skin"] == [True]
    gtv = [r for r in rows if r.structure == "GTV" and r.metric == "Dmax"][0]
    assert gtv.prior_eqd2_gy == 0.0 and gtv.cumulative_eqd2_gy == pytest.approx(
        float(rb.implant_eqd2(150.0, rb.TUMOUR, I125_HALF_LIFE_D)))
    text = "\n".join(rb.format_cumulative(rows, prior))
    assert "122.1 Gy EQD2" in text and "60 Gy / 30 fx" in text


def test_eqd2_dvh_is_pointwise_map():
    """Dx of the EQD2 DVH = EQD2 of the physical Dx (monotone map; linear interpolation between samples aside)."""
    rng = np.random.default_rng(3)
    doses = rng.uniform(20.0, 400.0, 5000)
    dvh = DVH(doses, rng.uniform(0.2, 1.0, 5000), 0.008, "CTV")
    e = rb.eqd2_dvh(dvh, rb.TUMOUR, I125_HALF_LIFE_D)
    for x in (10, 50, 90, 98):
        assert e.dose_at_volume_pct(x) == pytest.approx(
            float(rb.implant_eqd2(dvh.dose_at_volume_pct(x), rb.TUMOUR, I125_HALF_LIFE_D)), rel=1e-6)
    assert e.volume_cc == pytest.approx(dvh.volume_cc)


def test_voxelwise_prior_volume():
    """A uniform prior dose volume gives the uniform-prior sum; separate hot spots sum to less than D2cc + D2cc."""
    grid = Grid.around([0, 0, 0], [40, 40, 40], 2.0)
    pts = grid.points()
    inside = (np.abs(pts[..., 0]) < 15) & (np.abs(pts[..., 1]) < 15) & (np.abs(pts[..., 2]) < 15)
    oar = Structure("OAR", inside.astype(np.float32), grid, "oar")
    implant = 80.0 * np.exp(-((pts[..., 0] - 10) ** 2 + pts[..., 1] ** 2 + pts[..., 2] ** 2) / 50.0)
    prior_hot = 50.0 * np.exp(-((pts[..., 0] + 10) ** 2 + pts[..., 1] ** 2 + pts[..., 2] ** 2) / 50.0)
    ev = PlanEvaluation(100.0, {"OAR": StructureMetrics("OAR", "oar", DVH.of(implant, oar))})
    params = {"OAR": rb.LATE_NORMAL}
    uniform = rb.cumulative_eqd2(ev, params, I125_HALF_LIFE_D, rb.PriorCourse(25, {"OAR": 50.0}))
    voxel = rb.cumulative_eqd2(ev, params, I125_HALF_LIFE_D, rb.PriorCourse(25), implant_dose=implant,
                               prior_dose_volume=np.full(grid.shape, 50.0), structures=[oar])
    for a, b in zip(uniform, voxel):
        assert a.cumulative_eqd2_gy == pytest.approx(b.cumulative_eqd2_gy, rel=1e-6)
    apart = rb.cumulative_eqd2(ev, params, I125_HALF_LIFE_D, rb.PriorCourse(25), implant_dose=implant,
                               prior_dose_volume=prior_hot, structures=[oar])
    for r in apart:
        assert r.cumulative_eqd2_gy < r.implant_eqd2_gy + r.prior_eqd2_gy - 1.0
        assert r.cumulative_eqd2_gy >= max(r.implant_eqd2_gy, r.prior_eqd2_gy) - 1e-9


def test_bad_input_named():
    with pytest.raises(InputError, match="alpha/beta"):
        rb.TissueParameters("x", 0.0)
    with pytest.raises(InputError, match="fractions"):
        rb.fractionated_eqd2(60.0, 0, 3.0)
    with pytest.raises(InputError, match="Tpot"):
        rb.TissueParameters("x", 10.0, tpot_days=-1.0)
    with pytest.raises(InputError, match="repair half-time"):
        rb.implant_bed(100.0, rb.TissueParameters("x", 3.0, repair_half_time_h=5000.0), 59.4)
    with pytest.raises(InputError, match="not among"):
        rb.parameters_for([("GTV", "target")], {"Cord": rb.SPINAL_CORD})
    with pytest.raises(InputError, match=">= 0 Gy"):
        rb.implant_bed(-1.0, rb.TUMOUR, 59.4)
    lines = rb.format_parameters(rb.parameters_for([("GTV", "target"), ("SpinalCord", "oar")]))
    assert "alpha/beta 2 Gy" in lines[1] and "Kirkpatrick" in "\n".join(lines)
