"""The module's Evaluation on real MRML nodes through the parameter node, as the panel runs it: the chosen
indication decides which published goals are checked (each on the structure its source uses), and the user's
skin and organ-at-risk limits become PASS/FAIL rows with the measured dose."""

import pytest

pytest.importorskip("slicer")

from SeedBrachyLib import checks, dvh, settings, structures  # noqa: E402
from SeedBrachyLib.errors import InputError  # noqa: E402
from SeedBrachyLib.mrml import dosimetry, planning, segmentations  # noqa: E402

CHECK_COLUMNS = ("Check", "Structure", "Metric", "Measured", "Limit", "Unit", "Result", "Note", "Source")


@pytest.fixture
def panel(case_nodes, seedbrachy_module):
    """(case nodes, module Logic, parameter node holding the case as the panel would, dose array, dose grid)."""
    c = case_nodes
    logic = seedbrachy_module.SeedBrachyLogic()
    p = logic.getParameterNode()
    p.ctVolume, p.segmentation, p.seeds, p.doseVolume = c.ct, c.segmentation, c.seeds_node, c.dose
    p.gtvSegmentID, p.ctvSegmentID = c.ids["GTV"], c.ids["CTV"]
    p.dvhTable = c.scene.AddNewNodeByClass("vtkMRMLTableNode", "DVH")
    p.checksTable = c.scene.AddNewNodeByClass("vtkMRMLTableNode", "Checks")
    p.doseSpacingMm = 1.5
    dose, grid = logic.computeDoseUsingParameterNode(p)
    return c, logic, p, dose, grid


def table_rows(table):
    """Check name -> {column: value} of a checks table node."""
    t = table.GetTable()
    columns = {name: t.GetColumnByName(name) for name in CHECK_COLUMNS}
    return {columns["Check"].GetValue(r): {name: col.GetValue(r) for name, col in columns.items()}
            for r in range(t.GetNumberOfRows())}


def test_the_chosen_indication_decides_which_goals_are_checked(panel):
    c, logic, p, _, _ = panel
    aim = {g.name for g in checks.goals_for("general")}
    escc_goal = checks.goals_for("esophageal-scc-cervical-nodal-recurrence")[0].name
    assert p.indication == settings.SETTINGS["indication"].default == "lymph-node-metastases"
    for indication in checks.available_indications():
        p.indication = indication
        evaluation, results = logic.evaluateUsingParameterNode(p)
        rows = table_rows(p.checksTable)
        expected = {g.name for g in checks.goals_for(indication)} | aim
        assert set(rows) == {r.goal for r in results} == expected, indication
        assert len(rows) == len(results) == len(expected)  # the planning aim is not repeated for "general"
        assert (escc_goal in rows) == (indication == "esophageal-scc-cervical-nodal-recurrence")
        for goal in aim:
            assert rows[goal]["Structure"] == "CTV"  # the planning aim is read on the CTV
    # the lymph-node default: Huang's D90 > 102.7 Gy read on the GTV, measured D90 as in the evaluation
    p.indication = "lymph-node-metastases"
    evaluation, _ = logic.evaluateUsingParameterNode(p)
    rows = table_rows(p.checksTable)
    d90 = evaluation.value("GTV", "D90")[0]
    row = rows["post-implant D90 > 102.7 Gy"]
    assert row["Structure"] == "GTV" and row["Measured"] == pytest.approx(d90) and row["Limit"] == 102.7
    assert row["Result"] == ("PASS" if d90 > 102.7 else "FAIL") and "J Cancer 2026" in row["Source"]
    assert escc_goal not in rows


def test_user_limits_are_rows_with_the_measured_dose(panel):
    c, logic, p, dose, grid = panel
    # independent of the bridge: skin = outer 5 mm of the CT body, the carotid from the case's own mask, TG-43
    # from the seeds at their own sample points (the skin reaches beyond the dose grid: evaluated whole)
    exact = dvh.SeedDose(c.seeds, "I125_OncoSeed6711")
    carotid = structures.structure_from_mask("Carotid", c.case.masks["Carotid"], c.case.grid)
    carotid_dmax = dvh.DVH.of(exact, carotid).metric("Dmax")[0]
    body = structures.body_from_ct(c.case.ct, c.case.grid)
    skin = structures.structure_from_mask("Skin", structures.skin_rind(body, c.case.grid), c.case.grid)
    skin_d2cc = dvh.DVH.of(exact, skin).metric("D2cc")[0]
    assert carotid_dmax > 1.0 and skin_d2cc > 0.01 * p.prescriptionGy
    p.oarSegmentID, p.oarMetric = c.ids["Carotid"], "Dmax"
    for oar_limit, oar_result in ((0.99 * carotid_dmax, "FAIL"), (1.01 * carotid_dmax, "PASS")):
        p.oarLimitGy, p.skinD2ccLimitGy = oar_limit, 500.0
        evaluation, results = logic.evaluateUsingParameterNode(p)
        rows = table_rows(p.checksTable)
        assert len(rows) == len(results) == 5  # Huang D90, the two planning-aim goals, skin, carotid
        skin_row = rows["Skin D2cc <= 500 Gy"]
        assert (skin_row["Structure"], skin_row["Metric"], skin_row["Unit"]) == ("Skin", "D2cc", "Gy")
        assert skin_row["Source"] == checks.USER_SOURCE
        assert skin_row["Result"] == "PASS" and skin_row["Measured"] == pytest.approx(skin_d2cc, rel=1e-9)
        assert skin_row["Note"] == ""  # evaluated whole: no note about a part
        oar_row = rows[f"Carotid Dmax <= {oar_limit:g} Gy"]
        assert oar_row["Structure"] == "Carotid" and oar_row["Measured"] == pytest.approx(carotid_dmax, rel=1e-9)
        assert oar_row["Result"] == oar_result and oar_row["Source"] == checks.USER_SOURCE

    # 0 Gy means no limit; a limit without its segment or on a non-dose metric is refused when it enters
    p.oarLimitGy, p.skinD2ccLimitGy = 0.0, 0.0
    assert len(logic.evaluateUsingParameterNode(p)[1]) == 3
    p.oarSegmentID, p.oarLimitGy = "", 20.0
    with pytest.raises(InputError, match="needs its structure"):
        logic.evaluateUsingParameterNode(p)
    with pytest.raises(InputError, match="oarMetric = 'V100' invalid: allowed are D2cc"):
        settings.resolve(oarMetric="V100")
    p.oarSegmentID = "no-such-segment"
    with pytest.raises(InputError, match="not found"):
        logic.evaluateUsingParameterNode(p)


def test_panel_defaults_and_a_headless_call_give_the_same_plan_and_numbers(panel):
    """Deliverable of the house issue: the module's defaults (parameter node) are the library's (settings)."""
    c, logic, p, _, _ = panel
    assert logic.settingsOf(p) == settings.resolve(doseSpacingMm=1.5)  # the panel's only change in the fixture
    p.doseSpacingMm = settings.SETTINGS["doseSpacingMm"].default
    p.seeds = c.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Panel plan")
    p.planningMethod = "uniform"
    panel_plan = logic.planSeedsUsingParameterNode(p)
    headless_node = c.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Headless plan")
    headless_plan = planning.plan_seeds(c.ct, c.segmentation, c.ids["CTV"], headless_node,
                                        settings.resolve(planningMethod="uniform"), gtv_segment_id=c.ids["GTV"])
    assert [s.position.tolist() for s in panel_plan.seeds()] == [s.position.tolist() for s in headless_plan.seeds()]
    assert [s.strength_u for s in panel_plan.seeds()] == [s.strength_u for s in headless_plan.seeds()]
    panel_dose, panel_grid = logic.computeDoseUsingParameterNode(p)
    headless_dose_node = c.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Headless dose")
    headless_dose, headless_grid = dosimetry.compute_dose(c.ct, c.segmentation, [c.ids["GTV"], c.ids["CTV"]],
                                                          headless_node, headless_dose_node)
    assert panel_grid.dims == headless_grid.dims and (panel_grid.ijk_to_ras == headless_grid.ijk_to_ras).all()
    assert (panel_dose == headless_dose).all()
    panel_eval, _ = logic.evaluateUsingParameterNode(p)
    headless_eval = dosimetry.evaluate(headless_dose_node, c.segmentation, c.ids["GTV"], c.ids["CTV"])
    for name in ("GTV", "CTV"):
        assert panel_eval.value(name, "D90") == headless_eval.value(name, "D90")
    # a CTV made in the panel is the bridge's make_ctv with the panel's margin
    assert segmentations.segment_name(c.segmentation, c.ids["CTV"]) == "CTV"
    with pytest.raises(InputError, match="already has a segment 'CTV'"):
        logic.makeCtvUsingParameterNode(p)
