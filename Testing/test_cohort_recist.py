"""RECIST 1.1 rule by rule (Eisenhauer et al., Eur J Cancer 45:228-247, 2009; section numbers in the names).

Each test builds the visits a rule speaks of and checks the response the guideline gives; the
boundary cases sit exactly on and just beside the thresholds (30%, 20%, 5 mm, 10 mm, 15 mm).
"""

import pytest

from SeedBrachyLib.cohort import recist
from SeedBrachyLib.cohort.recist import CR, NE, NON_CR_NON_PD, PD, PR, SD, Lesion, Visit
from SeedBrachyLib.errors import InputError


def T(lid, mm, nodal=False):
    return Lesion(lid, "target", nodal=nodal, diameter_mm=mm)


def NT(lid, status, nodal=False, mm=None):
    return Lesion(lid, "non_target", nodal=nodal, status=status, diameter_mm=mm)


NEW = Lesion("new1", "new")


def responses(*visits):
    """visits: (month, [lesions]) pairs, the first at month 0."""
    return recist.evaluate([Visit(m, tuple(les)) for m, les in visits])


def overall(*visits):
    return [r.overall for r in responses(*visits)]


# --- 4.3.1 sum of diameters: long axis of non-nodal targets + short axis of nodal targets -----------------

def test_sum_of_diameters_adds_long_axes_and_node_short_axes():
    r = responses((0, [T("liver", 40), T("node", 20, nodal=True)]), (2, [T("liver", 30), T("node", 12, nodal=True)]))
    assert r[0].sum_mm == 42.0
    assert r[0].change_from_baseline_pct == pytest.approx(100 * (42 - 60) / 60)


# --- 3.2 measurability of targets at baseline ------------------------------------------------------------

def test_baseline_node_must_be_15mm_short_axis_and_lesion_10mm():
    responses((0, [T("node", 15.0, nodal=True), T("lung", 10.0)]), (2, [T("node", 15, nodal=True), T("lung", 10)]))
    with pytest.raises(InputError, match=">= 15 mm"):
        responses((0, [T("node", 14.9, nodal=True)]), (2, [T("node", 14, nodal=True)]))
    with pytest.raises(InputError, match=">= 10 mm"):
        responses((0, [T("lung", 9.9)]), (2, [T("lung", 9)]))


def test_at_most_five_targets_and_no_new_lesion_at_baseline():
    with pytest.raises(InputError, match="at most 5"):
        responses((0, [T(f"l{i}", 20) for i in range(6)]))
    with pytest.raises(InputError, match="baseline"):
        responses((0, [T("l", 20), NEW]))


# --- 4.3.1 CR: non-nodal targets gone, nodal targets < 10 mm (the sum need not be zero) -------------------

def test_cr_with_nodes_below_10mm_even_though_the_sum_is_not_zero():
    r = responses((0, [T("lung", 25), T("node", 22, nodal=True)]), (2, [T("lung", 0), T("node", 9.9, nodal=True)]))
    assert r[0].target == CR and r[0].sum_mm == 9.9


def test_node_at_10mm_is_not_normal_so_no_cr():
    r = responses((0, [T("lung", 25), T("node", 22, nodal=True)]), (2, [T("lung", 0), T("node", 10.0, nodal=True)]))
    assert r[0].target == PR


def test_non_nodal_residue_prevents_cr():
    assert responses((0, [T("lung", 25)]), (2, [T("lung", 5)]))[0].target == PR   # 5 mm = "too small to measure"


# --- 4.3.1 PR: >= 30% decrease from the baseline sum ------------------------------------------------------

@pytest.mark.parametrize("follow_mm, expected", [(70.0, PR), (70.1, SD), (69.9, PR)])
def test_pr_threshold_is_30_percent_of_baseline(follow_mm, expected):
    assert responses((0, [T("a", 60), T("b", 40)]), (2, [T("a", follow_mm - 40 * 0.5), T("b", 20)]))[0].target \
        == expected


# --- 4.3.1 PD: >= 20% above the nadir and >= 5 mm absolute --------------------------------------------------

@pytest.mark.parametrize("follow_mm, expected", [(60.0, PD), (59.9, SD), (55.0, SD)])
def test_pd_threshold_is_20_percent_above_the_nadir(follow_mm, expected):
    # baseline 55 mm, nadir 50 mm at month 2: PD needs >= 60 mm (20% of 50 = 10 mm >= 5 mm)
    got = responses((0, [T("a", 55)]), (2, [T("a", 50)]), (4, [T("a", follow_mm)]))
    assert got[1].target == expected


def test_pd_needs_5mm_absolute_even_when_20_percent_is_reached():
    # nadir 12 mm: 14.4 mm is +20% but only +2.4 mm -> not PD; 17 mm is +5 mm -> PD
    base = [T("a", 30)]
    assert responses((0, base), (2, [T("a", 12)]), (4, [T("a", 14.4)]))[1].target == PR
    assert responses((0, base), (2, [T("a", 12)]), (4, [T("a", 16.9)]))[1].target == PR
    assert responses((0, base), (2, [T("a", 12)]), (4, [T("a", 17.0)]))[1].target == PD


def test_pd_is_measured_from_the_nadir_not_the_baseline():
    # 40% below baseline yet 50% above the nadir: PD
    r = responses((0, [T("a", 100)]), (2, [T("a", 40)]), (4, [T("a", 60)]))
    assert r[1].change_from_baseline_pct == pytest.approx(-40) and r[1].change_from_nadir_pct == pytest.approx(50)
    assert r[1].target == PD


def test_nadir_includes_baseline_when_it_is_the_smallest():
    assert responses((0, [T("a", 30)]), (2, [T("a", 36)]))[0].target == PD   # +20%, +6 mm from baseline
    assert responses((0, [T("a", 30)]), (2, [T("a", 35.9)]))[0].target == SD


def test_new_lesion_is_pd_whatever_the_targets_do():
    r = responses((0, [T("a", 30)]), (2, [T("a", 0), NEW]))
    assert r[0].target == CR and r[0].new_lesion and r[0].overall == PD


# --- 4.3.1 missing measurements: NE unless PD is already met ------------------------------------------------

def test_missing_target_gives_ne():
    r = responses((0, [T("a", 30), T("b", 30)]), (2, [T("a", 10)]))
    assert r[0].target == NE and r[0].overall == NE and r[0].sum_mm is None


def test_missing_target_with_progression_already_met_is_pd():
    r = responses((0, [T("a", 30), T("b", 30)]), (2, [T("a", 80)]))   # 80 mm alone > 60 * 1.2
    assert r[0].target == PD


# --- 4.3.2 non-target lesions --------------------------------------------------------------------------------

def test_non_target_categories():
    f = recist.non_target_response
    assert f([NT("p", "absent"), NT("n", None, nodal=True, mm=8)]) == CR
    assert f([NT("p", "absent"), NT("n", None, nodal=True, mm=12)]) == NON_CR_NON_PD
    assert f([NT("p", "present")]) == NON_CR_NON_PD
    assert f([NT("p", "present"), NT("q", None)]) == NE
    assert f([NT("p", "progression"), NT("q", None)]) == PD
    assert f([]) is None


# --- 4.4 Table 1 (target disease) and Table 2 (non-target disease only) ------------------------------------

@pytest.mark.parametrize("target, non_target, new, expected", [
    (CR, CR, False, CR), (CR, None, False, CR), (CR, NON_CR_NON_PD, False, PR), (CR, NE, False, PR),
    (PR, NON_CR_NON_PD, False, PR), (PR, NE, False, PR), (PR, None, False, PR),
    (SD, NON_CR_NON_PD, False, SD), (SD, NE, False, SD),
    (NE, NON_CR_NON_PD, False, NE), (PD, CR, False, PD), (CR, PD, False, PD), (SD, CR, True, PD),
    (None, CR, False, CR), (None, NON_CR_NON_PD, False, NON_CR_NON_PD), (None, NE, False, NE),
    (None, PD, False, PD), (None, CR, True, PD)])
def test_overall_response_tables(target, non_target, new, expected):
    assert recist.overall_response(target, non_target, new) == expected


def test_target_cr_with_persisting_non_target_is_pr_in_a_patient():
    r = responses((0, [T("a", 30), NT("bone", "present")]), (2, [T("a", 0), NT("bone", "present")]))
    assert (r[0].target, r[0].non_target, r[0].overall) == (CR, NON_CR_NON_PD, PR)


# --- 4.4.1 best overall response -------------------------------------------------------------------------------

def _vr(month, overall):
    return recist.VisitResponse(month, None, None, False, overall, None, None, None)


@pytest.mark.parametrize("sequence, expected", [
    ([(2, PR), (4, CR), (6, PR)], CR),          # best visit response (unconfirmed)
    ([(2, SD), (4, PR), (6, PD), (8, CR)], PR),  # nothing after progression counts
    ([(2, PD), (4, CR)], PD),
    ([(1, SD), (2, PD)], PD),                     # SD before the minimum interval does not count
    ([(1, SD), (3, NE)], NE),
    ([(2, SD), (3, NE)], SD),
    ([(2, NE), (4, NE)], NE),
    ([(2, NON_CR_NON_PD)], NON_CR_NON_PD)])
def test_best_overall_response(sequence, expected):
    assert recist.best_overall_response([_vr(m, o) for m, o in sequence], min_sd_months=1.5) == expected


@pytest.mark.parametrize("first, second, months, expected", [
    (CR, CR, (2, 3), CR), (CR, PR, (2, 3), PR), (CR, SD, (2, 3), SD), (CR, SD, (1, 2), PD), (CR, SD, (1, 1.4), PD),
    (CR, PD, (2, 3), SD), (CR, PD, (1, 2), PD),
    (CR, NE, (2, 3), SD), (CR, NE, (1, 2), NE), (PR, CR, (2, 3), PR), (PR, PR, (2, 3), PR), (PR, SD, (2, 3), SD),
    (PR, PD, (2, 3), SD), (PR, PD, (1, 2), PD), (PR, NE, (2, 3), SD), (NE, NE, (2, 3), NE)])
def test_confirmed_best_overall_response_table_3(first, second, months, expected):
    """RECIST 1.1 Table 3 (confirmation >= 4 weeks; SD at >= 1.5 months). CR then SD: "SD provided minimum
    criteria for SD duration met, otherwise, PD" (the SD after a CR is disease come back, footnote a), also
    when the SD comes sooner than the confirmation interval."""
    seq = [_vr(months[0], first), _vr(months[1], second)]
    assert recist.best_overall_response(seq, min_sd_months=1.5, confirm_months=0.92) == expected


def test_sd_after_cr_ends_the_confirmed_assessment_only():
    seq = [_vr(1, CR), _vr(1.4, SD), _vr(3, PR)]
    assert recist.best_overall_response(seq, min_sd_months=1.5) == CR                     # unconfirmed: the CR
    assert recist.best_overall_response(seq, min_sd_months=1.5, confirm_months=0.92) == PD  # came back before 6 weeks
    confirmed = [_vr(2, CR), _vr(3, CR), _vr(5, SD)]
    assert recist.best_overall_response(confirmed, min_sd_months=1.5, confirm_months=0.92) == CR


def test_confirmation_needs_the_interval():
    seq = [_vr(2, PR), _vr(2.5, PR), _vr(3.5, PR)]   # 2.5 is too soon to confirm; 3.5 confirms
    assert recist.best_overall_response(seq, confirm_months=0.92) == PR
    assert recist.best_overall_response(seq[:2], confirm_months=0.92) == SD


def test_response_at_a_visit_and_progression_before_it():
    seq = [_vr(2, PR), _vr(6, SD)]
    assert recist.response_at(seq, 6) == SD and recist.response_at(seq, 2) == PR
    assert recist.response_at([_vr(3, PD)], 6) == PD
    assert recist.response_at([_vr(3, PR)], 6) == NE


def test_objective_response_and_local_control_sets():
    assert recist.OBJECTIVE == {CR, PR}
    assert recist.LOCAL_CONTROL == {CR, PR, SD, NON_CR_NON_PD}


# --- input checks ----------------------------------------------------------------------------------------------

def test_bad_inputs_are_named():
    with pytest.raises(InputError, match="role"):
        Lesion("x", "targett")
    with pytest.raises(InputError, match="-3"):
        Lesion("x", "target", diameter_mm=-3)
    with pytest.raises(InputError, match="status"):
        Lesion("x", "non_target", status="gone")
    with pytest.raises(InputError, match="baseline"):
        recist.evaluate([Visit(2, (T("a", 20),))])
    with pytest.raises(InputError, match="were not targets at baseline"):
        responses((0, [T("a", 20)]), (2, [T("a", 20), T("b", 20)]))
    with pytest.raises(InputError, match="not one of"):
        recist.normalise_response("partial")
    assert recist.normalise_response(" non-cr/non-pd ") == NON_CR_NON_PD and recist.normalise_response("cr") == CR


# --- the lesion table (one row per lesion per visit) ------------------------------------------------------------

def _lesion_table(rows):
    import pandas as pd

    return pd.DataFrame(rows, columns=["patient_id", "month", "lesion", "role", "nodal", "diameter_mm", "status"])


def test_lesion_table_gives_best_response_or_the_visit_response():
    from SeedBrachyLib.cohort.table import responses_from_lesions

    nan = float("nan")
    df = _lesion_table([
        ("A", 0, "n1", "target", 1, 20.0, ""), ("A", 0, "bone", "non_target", 0, nan, "present"),
        ("A", 2, "n1", "target", 1, 12.0, ""), ("A", 2, "bone", "non_target", 0, nan, "present"),
        ("A", 6, "n1", "target", 1, 8.0, ""), ("A", 6, "bone", "non_target", 0, nan, "absent"),
        ("B", 0, "n1", "target", 1, 30.0, ""), ("B", 3, "n1", "target", 1, 29.0, ""),
        ("B", 6, "n1", "target", 1, 25.0, ""), ("B", 6, "liver", "new", 0, nan, ""),
        ("C", 0, "n1", "target", 1, 30.0, ""), ("C", 6, "n1", "target", 1, nan, "")])
    best, visits = responses_from_lesions(df)
    assert best == {"A": CR, "B": SD, "C": NE}
    assert [v.overall for v in visits["A"]] == [PR, CR] and visits["B"][-1].new_lesion
    assert responses_from_lesions(df, confirm_months=0.92)[0]["A"] == PR   # the CR at 6 months is unconfirmed
    at6, _ = responses_from_lesions(df, response_month=6)
    assert at6 == {"A": CR, "B": PD, "C": NE}
    with pytest.raises(InputError, match="lacks columns \\['status'\\]"):
        responses_from_lesions(df.drop(columns="status"))
    with pytest.raises(InputError, match="patient C: baseline target 'n1'"):
        responses_from_lesions(df.assign(diameter_mm=df.diameter_mm.where(df.patient_id != "C", 12.0)))
