"""The panel's actions (SeedBrachyLib.mrml.actions): on a raw parameter node, a scene saved from Slicer and opened
headless re-runs what the buttons do, with the same settings; through the module's Logic and typed parameter node,
the robustness, radiobiology and printed-template buttons' entries on real MRML nodes; the CT of Slicer's DICOM
browser is linked to its database files before an export."""

import numpy as np
import pytest

pytest.importorskip("slicer")

from SeedBrachyLib import settings  # noqa: E402
from SeedBrachyLib.mrml import actions, dicom, parameters, planning  # noqa: E402


@pytest.fixture
def raw(case_nodes):
    """The case in the module's raw parameter node (vtkMRMLScriptedModuleNode), as the panel would store it."""
    c = case_nodes
    node = parameters.parameter_node(c.scene)
    parameters.write_settings(node, ctVolume=c.ct, segmentation=c.segmentation, seeds=c.seeds_node,
                              gtvSegmentID=c.ids["GTV"], doseVolume=c.dose, planningMethod="uniform",
                              ctvMarginMm=4.0, nogoSegmentIDs=[c.ids["Carotid"]])
    return c, node


def test_actions_read_the_settings_and_write_back_into_a_raw_parameter_node(raw):
    c, node = raw
    assert actions.settings_of(node) == settings.resolve(planningMethod="uniform", ctvMarginMm=4.0)
    assert actions.missing_inputs(node)["planSeedsButton"] == ["CTV segment"]
    c.segmentation.GetSegmentation().RemoveSegment(c.ids["CTV"])  # made again from the panel's margin
    modified = []
    node.AddObserver("ModifiedEvent", lambda caller, event: modified.append(event))
    ctv = actions.make_ctv(node)
    assert parameters.read_settings(node)["ctvSegmentID"] == ctv and len(modified) == 1  # one modification
    assert c.segmentation.GetSegmentation().GetSegment(ctv).GetName() == "CTV"
    assert actions.missing_inputs(node)["planSeedsButton"] == []


@pytest.mark.slow
def test_a_plan_from_the_raw_parameter_node_is_the_bridge_call_with_its_settings(raw):
    c, node = raw
    panel_node = c.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Panel")
    parameters.write_settings(node, ctvSegmentID=c.ids["CTV"], seeds=panel_node)
    plan = actions.plan_seeds(node)
    direct_node = c.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Direct")
    direct = planning.plan_seeds(c.ct, c.segmentation, c.ids["CTV"], direct_node,
                                 settings.resolve(planningMethod="uniform", ctvMarginMm=4.0), (c.ids["Carotid"],),
                                 gtv_segment_id=c.ids["GTV"])
    assert [s.position.tolist() for s in plan.seeds()] == [s.position.tolist() for s in direct.seeds()]
    assert panel_node.GetNumberOfControlPoints() == plan.n_seeds > 0


def test_a_ct_from_the_dicom_browser_is_linked_to_its_database_files(case_nodes, tmp_path):
    """Slicer's DICOM plugins leave DICOM.instanceUIDs on the volume; ctkDICOMDatabase.fileForInstance gives the
    files. Nothing to link (no attribute, no database, a missing file) is not an error."""
    from SeedBrachyLib.dicomrt import write_ct_series

    c = case_nodes
    series = write_ct_series(tmp_path / "ct", c.case.ct, c.case.grid)
    files = dict(zip(series.sop_instance_uids, sorted((tmp_path / "ct").iterdir())))

    class Database:  # the one ctkDICOMDatabase method used
        def __init__(self, files):
            self.files = files

        def fileForInstance(self, uid):
            return str(self.files.get(uid, ""))

    assert dicom.link_ct_to_database(c.ct, Database(files)) is None  # not from the browser
    c.ct.SetAttribute(dicom.SLICER_INSTANCE_UIDS, " ".join(series.sop_instance_uids))
    assert dicom.link_ct_to_database(c.ct, None) is None
    assert dicom.link_ct_to_database(c.ct, Database(dict(list(files.items())[1:]))) is None  # a file missing
    assert dicom.linked_series(c.ct) is None
    linked = dicom.link_ct_to_database(c.ct, Database(files))
    assert linked.sop_instance_uids == series.sop_instance_uids
    assert dicom.linked_series(c.ct).series_instance_uid == series.series_instance_uid
    # the header's slice thickness comes along, for seed detection
    assert dicom.slice_thickness_of(c.ct) == pytest.approx(c.case.grid.spacing[2])


@pytest.fixture
def planned(raw, seedbrachy_module):
    """The module's Logic and typed parameter node (wrapping the raw node) with a uniform plan (seeds on their
    needle lines) in a new seeds node: the new buttons' entries are called as the panel calls them."""
    c, node = raw
    logic = seedbrachy_module.SeedBrachyLogic()
    p = logic.getParameterNode()
    assert p.parameterNode is node
    p.ctvSegmentID, p.oarSegmentID = c.ids["CTV"], c.ids["Carotid"]
    p.seeds = c.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Planned")
    logic.planSeedsUsingParameterNode(p)
    return c, logic, p


def _set(p, **values):
    for name, value in values.items():
        setattr(p, name, value)


@pytest.mark.slow
def test_robustness_from_the_panel_settings_without_errors_every_implant_is_the_plan(planned):
    """All placement SDs and the loss probability at 0: each simulated implant is the plan, so every sample's D90
    is the nominal one (the analytic case), each goal holds in all samples or in none, and the histogram has all
    samples in one bin; the chart's histogram table is created once and reused."""
    c, logic, p = planned
    zero = dict.fromkeys(settings.PLACEMENT_ERROR_SETTINGS, 0.0)
    table = c.scene.AddNewNodeByClass("vtkMRMLTableNode", "Robustness")
    chart = c.scene.AddNewNodeByClass("vtkMRMLPlotChartNode", "Robustness chart")
    _set(p, robustnessSamples=10, robustnessTable=table, robustnessChart=chart, oarLimitGy=500.0, **zero)
    assert logic.missingInputs(p)["robustnessButton"] == []
    result = logic.robustnessUsingParameterNode(p)
    assert result.n_samples == 10 and result.errors == settings.resolve(**zero).placement_errors
    d90 = result.values[("GTV", "D90")]
    assert np.all(d90 == d90[0])  # every implant the same: the plan
    # the samples' dose from the compiled (r, theta) table (within 0.05 % of exact), the nominal exact
    assert d90 == pytest.approx([result.nominal[("GTV", "D90")]] * 10, rel=5e-4)
    goals = [g.goal for g in result.probabilities]
    assert any(g.startswith("GTV D90 >") for g in goals) and any(g.startswith("Carotid D2cc <=") for g in goals)
    assert all(g.p in (0.0, 1.0) for g in result.probabilities)
    assert table.GetNumberOfRows() == len(goals)
    histogram = chart.GetNodeReference("SeedBrachyRobustnessHistogram")
    counts = [histogram.GetTable().GetValueByName(i, "Samples").ToDouble()
              for i in range(histogram.GetNumberOfRows())]
    assert sorted(counts)[-1] == 10
    tables_before = c.scene.GetNumberOfNodesByClass("vtkMRMLTableNode")
    logic.robustnessUsingParameterNode(p)
    assert c.scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == tables_before


@pytest.mark.slow
def test_radiobiology_from_the_panel_settings_matches_hand_computed_eqd2(planned):
    """Dale's permanent-implant BED, D (1 + lambda D / ((mu + lambda) alpha/beta)), and EQD2 = BED / (1 + 2 /
    (alpha/beta)) written out here; a prior 60 Gy in 30 fractions is 60 Gy EQD2 for any alpha/beta (2 Gy
    fractions); the chosen organ gets the panel's alpha/beta, the others their defaults (spinal cord 2 Gy)."""
    import math

    from SeedBrachyLib.sources import get_model

    c, logic, p = planned
    table = c.scene.AddNewNodeByClass("vtkMRMLTableNode", "EQD2")
    _set(p, radiobiologyTable=table, priorDoseGy=60.0, priorFractions=30, oarAlphaBetaGy=2.5,
         cumulativeLimitGy=100.0, oarMetric="D2cc", doseSpacingMm=2.0)
    logic.computeDoseUsingParameterNode(p)
    result = logic.radiobiologyUsingParameterNode(p)
    lam = math.log(2) / (get_model(settings.defaults().sourceModel).half_life_days * 24.0)
    mu = math.log(2) / 1.5

    def eqd2(dose, ab):
        return dose * (1 + lam * dose / ((mu + lam) * ab)) / (1 + 2 / ab)

    rows = {(r.structure, r.metric): r for r in result.rows}
    gtv = rows[("GTV", "D90")]
    assert gtv.alpha_beta_gy == 10.0 and gtv.implant_eqd2_gy == pytest.approx(eqd2(gtv.physical_gy, 10.0), rel=1e-9)
    assert gtv.prior_eqd2_gy == pytest.approx(60.0) and gtv.cumulative_eqd2_gy == pytest.approx(
        gtv.implant_eqd2_gy + 60.0)
    carotid = rows[("Carotid", "D2cc")]
    assert carotid.alpha_beta_gy == 2.5 and carotid.limit_eqd2_gy == 100.0
    # read off the EQD2 DVH (EQD2 at each sample point, then D2cc between two samples' doses): EQD2 of the physical
    # D2cc up to the interpolation inside one step of the curve (measured 1.5e-8 relative on the exact DVH)
    assert carotid.implant_eqd2_gy == pytest.approx(eqd2(carotid.physical_gy, 2.5), rel=1e-6)
    assert carotid.passed == (carotid.implant_eqd2_gy + 60.0 <= 100.0)
    assert rows[("SpinalCord", "Dmax")].alpha_beta_gy == 2.0 and ("SpinalCord", "D90") not in rows
    assert table.GetNumberOfRows() == len(result.rows)
    column = [table.GetTable().GetValueByName(i, "Implant BED [Gy]").ToDouble() for i in range(len(result.rows))]
    assert column[list(rows).index(("GTV", "D90"))] == pytest.approx(gtv.implant_eqd2_gy * 1.2, rel=1e-9)
    assert any("Cumulative EQD2" in line for line in result.summary_lines())


@pytest.mark.slow
def test_printed_template_from_the_panel_settings(planned, tmp_path):
    """Plate and hole sizes from the panel reach the STL; an existing file is not overwritten without force."""
    from SeedBrachyLib.errors import InputError
    from SeedBrachyLib.planning import printed_template

    c, logic, p = planned
    model = c.scene.AddNewNodeByClass("vtkMRMLModelNode", "Template")
    _set(p, templateModel=model, plateThicknessMm=4.0, holeClearanceMm=0.3, sleeveLengthMm=0.0)
    path = tmp_path / "template.stl"
    template = logic.exportTemplateUsingParameterNode(p, str(path))
    assert template.settings.plate_thickness_mm == 4.0 and template.settings.hole_diameter_mm == pytest.approx(1.57)
    assert path.is_file() and model.GetPolyData().GetNumberOfCells() == template.mesh.GetNumberOfCells()
    assert printed_template.mesh_check(model.GetPolyData())["boundary_edges"] == 0
    with pytest.raises(InputError, match="exists"):
        logic.exportTemplateUsingParameterNode(p, str(path))


@pytest.mark.slow
def test_detection_from_the_raw_parameter_node_lists_seeds_under_its_review_threshold(raw):
    from SeedBrachyLib.mrml import volumes
    from SeedBrachyLib.synthetic.implant import rescanned_implant

    c, node = raw
    scan = rescanned_implant(c.seeds, c.case, random_seed=2, spacing_mm=(0.9, 0.9, 2.0))
    post_ct = c.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Post-implant CT")
    volumes.update_volume_node(post_ct, scan.ct, scan.grid)
    points = c.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Implanted seeds")
    parameters.write_settings(node, postImplantCt=post_ct, postImplantSeeds=points, reviewBelowConfidence=1.0)
    result = actions.detect_seeds(node)
    assert result.review_below == 1.0 and result.review.tolist() == (result.confidences < 1.0).tolist()
    assert result.review.any()  # the calibrated confidence is >= 0.99 on this clean scan, never 1: all listed
    labels = [points.GetNthControlPointLabel(i) for i in range(points.GetNumberOfControlPoints())]
    assert [label.endswith("(review)") for label in labels] == result.review.tolist()


def test_nothing_the_user_made_is_replaced_without_asking(raw):
    """guard_output: hand-made seeds -> the question names the node; No -> a new seeds node chosen in the
    parameter node (the user's points kept), Yes -> overwrite; an empty output asks nothing."""
    c, node = raw
    assert planning.edited_by_hand(c.seeds_node)
    asked = []
    assert actions.guard_output(node, "planSeedsButton", lambda question: asked.append(question) or False) is False
    assert len(asked) == 1 and f"'{c.seeds_node.GetName()}' already holds seeds edited by hand" in asked[0]
    kept = parameters.read_settings(node)["seeds"]
    assert kept is not c.seeds_node and kept.GetName() == "Planned seeds" and kept.GetNumberOfControlPoints() == 0
    assert c.seeds_node.GetNumberOfControlPoints() == len(c.seeds)
    assert actions.guard_output(node, "planSeedsButton", asked.append) is False and len(asked) == 1  # empty now
    parameters.write_settings(node, seeds=c.seeds_node)
    assert actions.guard_output(node, "planSeedsButton", lambda question: True) is True
    assert parameters.read_settings(node)["seeds"] is c.seeds_node
    detected = c.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Implanted")
    parameters.write_settings(node, postImplantSeeds=detected)
    assert actions.guard_output(node, "detectSeedsButton", asked.append) is False and len(asked) == 1
    detected.AddControlPoint(0.0, 0.0, 0.0)
    assert "1 seeds (maybe corrected by hand)" in actions.replace_question(node, "detectSeedsButton")
    assert actions.replace_question(node, "carryContoursButton") == ""  # no carried segmentation chosen
