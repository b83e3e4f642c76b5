"""The module's Evaluation checks on real MRML nodes: the chosen indication decides which published goals are
checked, and the user's skin and organ-at-risk limits become PASS/FAIL rows with the measured dose."""

import pytest

pytest.importorskip("slicer")

from SeedBrachyLib import checks, dvh, structures  # noqa: E402
from SeedBrachyLib.errors import InputError  # noqa: E402
from SeedBrachyLib.mrml import parameters  # noqa: E402

CHECK_COLUMNS = ("Check", "Structure", "Metric", "Measured", "Limit", "Unit", "Result", "Source")


@pytest.fixture
def evaluated(case_nodes, seedbrachy_module):
    """(case nodes, module Logic, evaluation with the skin from the CT, dose array, dose grid)."""
    c = case_nodes
    logic = seedbrachy_module.SeedBrachyLogic()
    dose, grid = logic.computeDose(c.ct, c.segmentation, c.ids["GTV"], c.seeds_node, c.dose, c.case.prescription_gy,
                                   spacingMm=1.5, marginMm=8.0)
    evaluation = logic.evaluate(c.dose, c.segmentation, c.ids["GTV"], c.case.prescription_gy, ctVolume=c.ct)
    return c, logic, evaluation, dose, grid


def table_rows(table):
    """Check name -> {column: value} of a checks table node."""
    t = table.GetTable()
    columns = {name: t.GetColumnByName(name) for name in CHECK_COLUMNS}
    return {columns["Check"].GetValue(r): {name: col.GetValue(r) for name, col in columns.items()}
            for r in range(t.GetNumberOfRows())}


def test_the_chosen_indication_decides_which_goals_are_checked(evaluated):
    c, logic, evaluation, _, _ = evaluated
    table = c.scene.AddNewNodeByClass("vtkMRMLTableNode", "Checks")
    aim = {g.name for g in checks.goals_for("general")}
    escc_goal = checks.goals_for("esophageal-scc-cervical-nodal-recurrence")[0].name
    default = parameters.PARAMETERS["indication"][1]
    assert default == "lymph-node-metastases"
    for indication in checks.available_indications():
        results = logic.check(evaluation, table, logic.indicationsToCheck(indication))
        rows = table_rows(table)
        expected = {g.name for g in checks.goals_for(indication)} | aim
        assert set(rows) == {r.goal for r in results} == expected, indication
        assert len(rows) == len(results) == len(expected)  # the planning aim is not repeated for "general"
        assert (escc_goal in rows) == (indication == "esophageal-scc-cervical-nodal-recurrence")
    # the lymph-node default: Huang's D90 > 102.7 Gy on the GTV, measured D90 as in the evaluation
    logic.check(evaluation, table, logic.indicationsToCheck(default))
    rows = table_rows(table)
    d90 = evaluation.value("GTV", "D90")[0]
    row = rows["post-implant D90 > 102.7 Gy"]
    assert row["Structure"] == "GTV" and row["Measured"] == pytest.approx(d90) and row["Limit"] == 102.7
    assert row["Result"] == ("PASS" if d90 > 102.7 else "FAIL") and "J Cancer 2026" in row["Source"]
    assert escc_goal not in rows


def test_user_skin_and_oar_limits_are_rows_with_the_measured_dose(evaluated):
    c, logic, evaluation, dose, grid = evaluated
    # independent oracle: skin = outer 5 mm of the CT body, carotid from its mask, both mapped to the dose grid
    body = structures.body_from_ct(c.case.ct, c.case.grid)
    skin = structures.structure_on_grid("Skin", structures.skin_rind(body, c.case.grid), c.case.grid, grid)
    skin_d2cc = dvh.DVH.of(dose, skin).metric("D2cc")[0]
    carotid = structures.structure_on_grid("Carotid", c.case.masks["Carotid"], c.case.grid, grid)
    carotid_dmax = dvh.DVH.of(dose, carotid).metric("Dmax")[0]
    assert skin_d2cc > 1.0 and carotid_dmax > 1.0

    # settings as the panel stores them, read back and passed as onEvaluateButton passes them
    node = parameters.parameter_node(c.scene)
    table = c.scene.AddNewNodeByClass("vtkMRMLTableNode", "Checks")
    for skin_limit, oar_limit, skin_result, oar_result in ((1.01 * skin_d2cc, 0.99 * carotid_dmax, "PASS", "FAIL"),
                                                           (0.99 * skin_d2cc, 1.01 * carotid_dmax, "FAIL", "PASS")):
        parameters.write_settings(node, segmentation=c.segmentation, indication="lymph-node-metastases",
                                  skinD2ccLimitGy=skin_limit, oarSegmentID=c.ids["Carotid"], oarMetric="Dmax",
                                  oarLimitGy=oar_limit)
        p = parameters.read_settings(node)
        limits = logic.userLimits(p["skinD2ccLimitGy"], p["segmentation"], p["oarSegmentID"], p["oarMetric"],
                                  p["oarLimitGy"])
        results = logic.check(evaluation, table, logic.indicationsToCheck(p["indication"]), limits)
        rows = table_rows(table)
        assert len(rows) == len(results) == 5  # Huang D90, the two planning-aim goals, skin, carotid
        skin_row = rows[f"Skin D2cc <= {skin_limit:g} Gy"]
        assert (skin_row["Structure"], skin_row["Metric"], skin_row["Unit"]) == ("Skin", "D2cc", "Gy")
        assert skin_row["Measured"] == pytest.approx(skin_d2cc, rel=1e-9)
        assert skin_row["Limit"] == pytest.approx(skin_limit) and skin_row["Result"] == skin_result
        assert skin_row["Source"] == checks.USER_SOURCE
        oar_row = rows[f"Carotid Dmax <= {oar_limit:g} Gy"]
        assert oar_row["Structure"] == "Carotid" and oar_row["Measured"] == pytest.approx(carotid_dmax, rel=1e-9)
        assert oar_row["Result"] == oar_result and oar_row["Source"] == checks.USER_SOURCE

    # 0 Gy means no limit; a limit without its segment or on a non-dose metric is an input error
    assert logic.userLimits(0.0, c.segmentation, c.ids["Carotid"], "D2cc", 0.0) == []
    with pytest.raises(InputError, match="needs its segment"):
        logic.userLimits(0.0, c.segmentation, "", "D2cc", 20.0)
    with pytest.raises(InputError, match="not a dose metric"):
        logic.userLimits(0.0, c.segmentation, c.ids["Carotid"], "V100", 20.0)
    with pytest.raises(InputError, match="not found"):
        logic.userLimits(0.0, c.segmentation, "no-such-segment", "D2cc", 20.0)
