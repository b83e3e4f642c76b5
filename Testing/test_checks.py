"""Plan checks at their boundaries, with sources, user limits and bad input."""

import math

import numpy as np
import pytest

from SeedBrachyLib.checks import (
    available_indications,
    format_checks,
    goals_for,
    run_checks,
    user_limit,
    user_limits,
)
from SeedBrachyLib.dvh import evaluate_plan
from SeedBrachyLib.errors import InputError
from SeedBrachyLib.grid import Grid
from SeedBrachyLib.structures import Structure

GRID = Grid.around([0, 0, 0], [20, 20, 20], 1.0)


def _plan(target_dose_gy, cold_fraction=0.0, cold_dose_gy=0.0, skin_dose_gy=20.0, rx=100.0):
    """A 10 x 10 x 10 mm target with uniform dose, optionally a cold slab, and a 20 x 20 x 5 mm skin slab."""
    dose = np.zeros(GRID.shape)
    target = np.zeros(GRID.shape, np.float32)
    target[5:15, 5:15, 5:15] = 1.0
    dose[5:15, 5:15, 5:15] = target_dose_gy
    n_cold = int(round(cold_fraction * 10))
    if n_cold:
        dose[5:5 + n_cold, 5:15, 5:15] = cold_dose_gy
    skin = np.zeros(GRID.shape, np.float32)
    skin[15:20] = 1.0
    dose[15:20] = skin_dose_gy
    structures = [Structure("CTV", target, GRID, "target"), Structure("Skin", skin, GRID, "oar")]
    return evaluate_plan(dose, structures, rx)


#: The test plan has one target, "CTV"; the GTV goals are read on it too.
ON_CTV = {"GTV": "CTV"}


def _result(results, name):
    return next(r for r in results if r.goal == name)


@pytest.mark.parametrize("d90,passed", [(102.7, False), (102.71, True), (102.69, False), (140.0, True)])
def test_lymph_node_goal_is_strict_at_102_7_gy(d90, passed):
    results = run_checks(_plan(d90), "lymph-node-metastases", targets=ON_CTV)
    (r,) = results
    assert r.passed is passed and r.limit == 102.7 and r.unit == "Gy" and r.comparator == ">"
    assert r.measured == pytest.approx(d90)
    assert "Huang" in r.source and "J Cancer 2026" in r.source and "81.5%" in r.source


@pytest.mark.parametrize("d90,passed", [(110.0, True), (109.99, False), (110.01, True)])
def test_esophageal_nodal_recurrence_goal_at_110_gy(d90, passed):
    (r,) = run_checks(_plan(d90), "esophageal_scc_cervical_nodal_recurrence", targets=ON_CTV)
    assert r.passed is passed and r.comparator == ">=" and r.limit == 110.0


def test_general_goals_d90_and_v100_at_their_boundaries():
    rx = 100.0
    # exactly 10% of the target cold: V100 = 90.0% passes (>=), D90 lies between the cold and hot doses
    ev = _plan(120.0, cold_fraction=0.1, cold_dose_gy=80.0, rx=rx)
    results = run_checks(ev, "general")
    v100 = _result(results, "V100 >= 90% of the CTV")
    assert v100.measured == pytest.approx(90.0) and v100.passed and v100.unit == "%"
    d90 = _result(results, "D90 >= prescription")
    assert d90.limit == rx and d90.measured == pytest.approx(ev.value("CTV", "D90")[0])
    # 20% cold: V100 = 80% and D90 = 80 Gy both fail
    results = run_checks(_plan(120.0, cold_fraction=0.2, cold_dose_gy=80.0, rx=rx), "general")
    assert not any(r.passed for r in results)
    assert _result(results, "D90 >= prescription").measured == pytest.approx(80.0)
    # D90 exactly at the prescription passes
    (ok, _) = run_checks(_plan(100.0, rx=rx), "general")
    assert ok.passed and ok.measured == pytest.approx(100.0)


def test_user_limits_for_skin_and_oars():
    ev = _plan(120.0, skin_dose_gy=30.0)
    results = run_checks(ev, (), user_limits=[user_limit("Skin", "D2cc", 30.0), ("Skin", "Dmax", 29.9)])
    at_limit, below = results
    assert at_limit.passed and at_limit.measured == pytest.approx(30.0)
    assert at_limit.source == "limit entered by the user"
    assert not below.passed and below.limit == 29.9
    strict = run_checks(ev, (), user_limits=[user_limit("Skin", "Dmean", 30.0, comparator="<")])
    assert not strict[0].passed


def test_unevaluable_metric_is_not_evaluated_never_passed():
    ev = _plan(120.0)  # the CTV is 1 cc: D2cc is undefined
    (r,) = run_checks(ev, (), user_limits=[("CTV", "D2cc", 500.0)])
    assert not r.passed and math.isnan(r.measured) and r.status == "NOT EVALUATED"
    assert "n/a" in r.describe() and "undefined" in r.note


def test_a_structure_partly_outside_the_dose_grid_is_not_evaluated():
    """A limit that the part inside the grid meets is NOT EVALUATED, not PASS (the rest may be hotter)."""
    inside = np.zeros(GRID.shape, np.float32)
    inside[0:5] = 1.0  # 20 x 20 x 5 mm = 2 cc inside the grid ...
    cord = Structure("Cord", inside, GRID, "oar", source_volume_cc=9.4)  # ... of a 9.4 cc cord
    ev = evaluate_plan(np.full(GRID.shape, 10.0), [Structure("CTV", np.ones(GRID.shape, np.float32), GRID,
                                                              "target"), cord], 100.0)
    (r,) = run_checks(ev, (), user_limits=[("Cord", "Dmax", 45.0)])
    assert r.measured == pytest.approx(10.0) and r.status == "NOT EVALUATED" and not r.passed
    assert "only 21.3% of Cord" in r.note


def test_published_goals_say_which_target_they_are_read_on():
    gtv = np.zeros(GRID.shape, np.float32)
    gtv[8:12, 8:12, 8:12] = 1.0
    ctv = np.zeros(GRID.shape, np.float32)
    ctv[5:15, 5:15, 5:15] = 1.0
    dose = np.where(gtv > 0, 130.0, 95.0)
    ev = evaluate_plan(dose, [Structure("Node", gtv, GRID, "target"), Structure("Node+5", ctv, GRID, "target")],
                       100.0)
    results = run_checks(ev, ("lymph-node-metastases", "general"), targets={"GTV": "Node", "CTV": "Node+5"})
    assert [(r.structure, r.status) for r in results] == [("Node", "PASS"), ("Node+5", "FAIL"), ("Node+5", "FAIL")]
    missing = run_checks(ev, "lymph-node-metastases")  # no structure is the GTV
    assert missing[0].status == "NOT EVALUATED" and "no structure 'GTV'" in missing[0].note


def test_format_lists_values_limits_units_and_sources():
    results = run_checks(_plan(105.0), ("lymph-node-metastases", "general"), targets=ON_CTV,
                         user_limits=[("Skin", "D2cc", 40.0)])
    text = format_checks(results)
    assert "PASS  CTV D90 = 105.0 Gy (goal > 102.7 Gy) [1]" in text
    assert "V100 = 100.0 % (goal >= 90 %)" in text
    assert "[1] Huang D" in text and "[3] limit entered by the user" in text


def test_library_and_bad_inputs():
    assert set(available_indications()) == {"lymph-node-metastases", "esophageal-scc-cervical-nodal-recurrence",
                                            "general"}
    with pytest.raises(InputError, match="known indications are lymph-node-metastases, esophageal"):
        goals_for("prostate")
    with pytest.raises(InputError, match="not a dose metric"):
        user_limit("Skin", "V100", 30.0)
    with pytest.raises(InputError, match="unknown DVH metric"):
        user_limit("Skin", "D2ccc", 30.0)
    with pytest.raises(InputError, match="need a dose > 0 Gy"):
        user_limit("Skin", "D2cc", -1.0)
    with pytest.raises(InputError, match="comparator"):
        user_limit("Skin", "D2cc", 30.0, comparator="=")
    ev = _plan(120.0)
    (cord,) = run_checks(ev, (), user_limits=[("Cord", "Dmax", 45.0)])
    assert cord.status == "NOT EVALUATED" and "no structure 'Cord'" in cord.note
    with pytest.raises(InputError, match="needs its structure"):
        user_limits(oar_limit_gy=45.0)
    assert [g.structure for g in user_limits(30.0, "Cord", "Dmax", 45.0)] == ["Skin", "Cord"]
    assert user_limits() == []


def test_a_hot_spot_read_on_the_part_is_exact_when_the_rest_is_known_colder():
    """With the dose-grid policy's bound on the dose outside the grid, Dmax and Dxcc at or above the bound are
    the whole structure's; a mean, a volume fraction, or a hot spot below the bound are not."""
    inside = np.zeros(GRID.shape, np.float32)
    inside[0:5] = 1.0  # 2 cc of a 9.4 cc structure inside the grid
    cord = Structure("Cord", inside, GRID, "oar", source_volume_cc=9.4)
    target = Structure("CTV", np.ones(GRID.shape, np.float32), GRID, "target")
    dose = np.full(GRID.shape, 10.0)
    limits = [("Cord", "Dmax", 45.0), ("Cord", "D1cc", 45.0), ("Cord", "Dmean", 45.0)]
    ev = evaluate_plan(dose, [target, cord], 100.0, outside_below_gy=1.0)
    dmax, d1cc, dmean = run_checks(ev, (), user_limits=limits)
    assert (dmax.status, d1cc.status, dmean.status) == ("PASS", "PASS", "NOT EVALUATED")
    assert "the rest below 1 Gy, so its Dmax is exact" in dmax.note
    colder = evaluate_plan(dose, [target, cord], 100.0, outside_below_gy=20.0)  # the rest may be hotter
    assert [r.status for r in run_checks(colder, (), user_limits=limits)] == ["NOT EVALUATED"] * 3
