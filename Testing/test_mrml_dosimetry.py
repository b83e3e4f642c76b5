"""The synthetic case as real MRML nodes: dose node and DVH table agree with the library; bad inputs fail clearly."""

import numpy as np
import pytest

pytest.importorskip("slicer")

import vtk  # noqa: E402
from vtk.util import numpy_support  # noqa: E402

from SeedBrachyLib import dvh, settings, structures  # noqa: E402
from SeedBrachyLib.dose import compute_dose, dose_at_points  # noqa: E402
from SeedBrachyLib.errors import Cancelled, InputError  # noqa: E402
from SeedBrachyLib.mrml import dosimetry, markups, parameters, segmentations, tables, volumes  # noqa: E402
from SeedBrachyLib.mrml.scene import load_bundle, save_bundle  # noqa: E402


@pytest.fixture
def computed(case_nodes):
    c = case_nodes
    dose, grid = dosimetry.compute_dose(c.ct, c.segmentation, [c.ids["GTV"], c.ids["CTV"]], c.seeds_node, c.dose,
                                        settings.resolve(c.values, doseSpacingMm=1.5))
    return c, dose, grid


def test_dose_node_holds_the_library_dose_on_the_policy_grid(computed):
    """The grid covers seeds and targets, and every organ at risk wherever the dose exceeds 1 % of Rx."""
    c, dose, grid = computed
    assert np.array_equal(volumes.array_from_volume_node(c.dose)[0], dose)
    expected = compute_dose(grid, c.seeds, "I125_OncoSeed6711")
    assert np.allclose(dose, expected, rtol=1e-6)
    assert np.allclose(grid.spacing, 1.5) and np.allclose(grid.direction, c.case.grid.direction)
    assert np.all(grid.contains(np.array([s.position for s in c.seeds])))
    points = c.case.grid.points()
    assert np.all(grid.contains(points[c.case.masks["GTV"]]))
    for name in ("Carotid", "Trachea", "SpinalCord"):
        organ = points[c.case.masks[name]]
        hot = organ[dose_at_points(organ, c.seeds, c.model) > 0.01 * c.values.prescriptionGy]
        assert np.all(grid.contains(hot)), name
    assert volumes.is_dose_volume(c.dose)
    assert "TG-43U1 line" in c.dose.GetDescription()


def test_dvh_table_d90_equals_the_pure_library(computed):
    c, dose, grid = computed
    scene = c.scene
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "DVH metrics")
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", "DVH chart")
    oars = [c.ids["Carotid"], c.ids["Body"]]
    evaluation = dosimetry.evaluate(c.dose, c.segmentation, c.ids["GTV"], c.ids["CTV"], c.values, table, chart,
                                    oar_segment_ids=oars)
    # the dose node carries its seeds: the DVH is TG-43 at the structures' own sample points
    exact = dvh.SeedDose(c.seeds, "I125_OncoSeed6711")
    gtv = structures.structure_from_mask("GTV", *segmentations.segment_mask(c.segmentation, c.ids["GTV"]),
                                         role="target")
    expected_d90 = dvh.DVH.of(exact, gtv).metric("D90")[0]
    d90, unit = tables.read_dvh_metric(table, "GTV", "D90")
    assert unit == "Gy" and d90 == pytest.approx(expected_d90, rel=1e-9)
    carotid = structures.structure_from_mask("Carotid", *segmentations.segment_mask(c.segmentation, c.ids["Carotid"]))
    d2cc, unit = tables.read_dvh_metric(table, "Carotid", "D2cc")
    assert unit == "Gy" and d2cc == pytest.approx(dvh.DVH.of(exact, carotid).metric("D2cc")[0], rel=1e-9)
    # one row per structure, units in the headers
    t = table.GetTable()
    assert t.GetNumberOfRows() == 4  # GTV, CTV, Carotid, Body
    names = [t.GetColumn(i).GetName() for i in range(t.GetNumberOfColumns())]
    assert {"Structure", "Role", "D90 [Gy]", "V100 [%]", "V100_cc [cc]", "D2cc [Gy]", "CI"} <= set(names)
    assert table.GetColumnUnitLabel("D90 [Gy]") == "Gy"
    assert evaluation.value("GTV", "D90")[0] == pytest.approx(d90)
    # chart: one series per structure, on a curve table whose GTV column is the library's curve
    assert chart.GetNumberOfPlotSeriesNodes() == 4
    curves = dosimetry.curves_table_of(chart)
    dose_axis = numpy_support.vtk_to_numpy(curves.GetTable().GetColumnByName(tables.DOSE_COLUMN))
    gtv_curve = numpy_support.vtk_to_numpy(curves.GetTable().GetColumnByName("GTV [%]"))
    assert np.allclose(gtv_curve, dvh.DVH.of(exact, gtv).curve(dose_axis)[1])
    assert gtv_curve[0] == pytest.approx(100.0) and np.all(np.diff(gtv_curve) <= 1e-9)
    # evaluating again replaces the series instead of adding more
    dosimetry.evaluate(c.dose, c.segmentation, c.ids["GTV"], c.ids["CTV"], c.values, table, chart,
                       oar_segment_ids=oars)
    assert chart.GetNumberOfPlotSeriesNodes() == 4
    assert scene.GetNumberOfNodesByClass("vtkMRMLPlotSeriesNode") == 4


def test_saved_scene_reopens_with_settings_dose_and_table(computed, tmp_path):
    c, dose, _ = computed
    scene = c.scene
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "DVH metrics")
    dosimetry.evaluate(c.dose, c.segmentation, c.ids["GTV"], c.ids["CTV"], c.values, table,
                       oar_segment_ids=[c.ids["Carotid"]])
    node = parameters.parameter_node(scene)
    parameters.write_settings(node, ctVolume=c.ct, segmentation=c.segmentation, gtvSegmentID=c.ids["GTV"],
                              seeds=c.seeds_node, doseVolume=c.dose, dvhTable=table, prescriptionGy=110.0,
                              doseSpacingMm=1.5, formalism="point")
    path = save_bundle(scene, tmp_path / "case.mrb")
    reloaded = load_bundle(path).scene
    stored = parameters.read_settings(parameters.parameter_node(reloaded, create=False))
    assert stored["prescriptionGy"] == 110.0 and stored["doseSpacingMm"] == 1.5
    assert stored["formalism"] == "point" and stored["gtvSegmentID"] == c.ids["GTV"]
    assert stored["sourceModel"] == settings.SETTINGS["sourceModel"].default  # unset -> default
    assert stored["ctVolume"].GetName() == "Neck CT" and stored["seeds"].GetName() == "Seeds"
    assert volumes.is_dose_volume(stored["doseVolume"])
    assert np.allclose(volumes.array_from_volume_node(stored["doseVolume"])[0], dose)
    assert stored["segmentation"].GetSegmentation().GetSegment(c.ids["GTV"]).GetName() == "GTV"
    d90_before = tables.read_dvh_metric(table, "GTV", "D90")[0]
    assert tables.read_dvh_metric(stored["dvhTable"], "GTV", "D90")[0] == pytest.approx(d90_before, rel=1e-5)
    assert len(markups.read_seeds(stored["seeds"])) == len(c.seeds)


def test_bad_settings_are_input_errors(mrml_app):
    node = parameters.parameter_node(mrml_app.scene)
    with pytest.raises(InputError, match="unknown plan setting 'rx'"):
        parameters.write_settings(node, rx=1.0)
    table = mrml_app.scene.AddNewNodeByClass("vtkMRMLTableNode", "t")
    with pytest.raises(InputError, match="needs a vtkMRMLScalarVolumeNode"):
        parameters.write_settings(node, ctVolume=table)
    assert parameters.parameter_node(mrml_app.scene) is node  # singleton


def test_no_segment_empty_target_and_seeds_outside_the_ct_are_input_errors(case_nodes):
    c = case_nodes
    with pytest.raises(InputError, match="no target segment chosen"):
        dosimetry.compute_dose(c.ct, c.segmentation, ["", ""], c.seeds_node, c.dose, c.values)
    empty = c.segmentation.GetSegmentation().AddEmptySegment("", "Empty")
    with pytest.raises(InputError, match="'Empty'.*empty"):
        dosimetry.compute_dose(c.ct, c.segmentation, [empty], c.seeds_node, c.dose, c.values)
    with pytest.raises(InputError, match="output dose volume 'Neck CT' is also the CT"):
        dosimetry.compute_dose(c.ct, c.segmentation, [c.ids["CTV"]], c.seeds_node, c.ct, c.values)
    with pytest.raises(InputError, match="planned with seed model I125_OncoSeed6711, but I125_Model6702"):
        dosimetry.compute_dose(c.ct, c.segmentation, [c.ids["CTV"]], c.seeds_node, c.dose,
                               settings.resolve(c.values, sourceModel="I125_Model6702"))
    c.seeds_node.AddControlPoint(vtk.vtkVector3d(500.0, 0.0, 0.0), "stray")
    c.seeds_node.SetNthControlPointDescription(c.seeds_node.GetNumberOfControlPoints() - 1,
                                               '{"axis": [1, 0, 0], "strength_u": 0.6}')
    with pytest.raises(InputError, match="seed 'stray'.*outside the CT"):
        dosimetry.compute_dose(c.ct, c.segmentation, [c.ids["GTV"]], c.seeds_node, c.dose, c.values)
    not_dose = c.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "plain")
    with pytest.raises(InputError, match="not a dose volume"):
        dosimetry.evaluate(not_dose, c.segmentation, c.ids["GTV"], c.ids["CTV"], c.values)
    assert c.dose.GetImageData() is None  # nothing was written by the failed calls


def test_progress_reaches_one_and_cancel_stops(case_nodes):
    c = case_nodes
    seen = []
    coarse = settings.resolve(c.values, doseSpacingMm=2.0)
    dosimetry.compute_dose(c.ct, c.segmentation, [c.ids["GTV"]], c.seeds_node, c.dose, coarse,
                           progress=lambda f, m="": seen.append(f))
    assert seen[-1] == pytest.approx(1.0) and all(b >= a - 1e-12 for a, b in zip(seen, seen[1:]))
    with pytest.raises(Cancelled):
        dosimetry.compute_dose(c.ct, c.segmentation, [c.ids["GTV"]], c.seeds_node, c.dose, coarse,
                               progress=lambda f, m="": f < 0.5)


def test_skin_from_the_ct_is_evaluated_and_the_body_limits_ci(computed):
    c, dose, grid = computed
    table = c.scene.AddNewNodeByClass("vtkMRMLTableNode", "DVH metrics")
    evaluation = dosimetry.evaluate(c.dose, c.segmentation, c.ids["GTV"], c.ids["CTV"], c.values, table,
                                    oar_segment_ids=[c.ids["Carotid"]], ct_node=c.ct)
    ct_body = structures.body_from_ct(c.case.ct, c.case.grid)
    skin = structures.structure_from_mask("Skin", structures.skin_rind(ct_body, c.case.grid), c.case.grid)
    body = structures.structure_on_grid("Body", ct_body, c.case.grid, grid)
    exact = dvh.SeedDose(c.seeds, "I125_OncoSeed6711")
    d2cc, unit = tables.read_dvh_metric(table, "Skin", "D2cc")
    assert unit == "Gy" and d2cc == pytest.approx(dvh.DVH.of(exact, skin).metric("D2cc")[0], rel=1e-9)
    gtv = structures.structure_from_mask("GTV", *segmentations.segment_mask(c.segmentation, c.ids["GTV"]),
                                         role="target")
    expected_ci = dvh.conformity_indices(dvh.GridDose(dose, grid), gtv, c.case.prescription_gy, body,
                                         dvh.DVH.of(exact, gtv))["CI"]
    assert evaluation.value("GTV", "CI")[0] == pytest.approx(expected_ci, rel=1e-9)
    assert [s for s in evaluation.structures] == ["GTV", "CTV", "Carotid", "Skin"]
    # the skin reaches beyond the policy grid, yet it is evaluated whole (from the seeds)
    assert evaluation["Skin"].evaluated_fraction == 1.0 and not evaluation["Skin"].notes
    assert evaluation["Skin"].values["Volume"] == pytest.approx(skin.source_volume_cc, rel=1e-9)


def test_a_dose_volume_without_seeds_is_read_as_a_grid(computed):
    """An imported dose (no seeds recorded): structures mapped onto its grid, voxels inside at their own value; a
    structure reaching beyond the grid is evaluated on its part inside and says so."""
    c, dose, grid = computed
    imported = c.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "RTDOSE")
    volumes.set_dose_volume(imported, dose, grid, c.values.prescriptionGy, "imported")
    assert dosimetry.dose_seeds(imported) is None and dosimetry.dose_seeds(c.dose) is not None
    evaluation = dosimetry.evaluate(imported, c.segmentation, c.ids["GTV"], c.ids["CTV"], c.values,
                                    oar_segment_ids=[c.ids["Carotid"]], ct_node=c.ct)
    gtv = structures.structure_from_mask("GTV", *segmentations.segment_mask(c.segmentation, c.ids["GTV"]),
                                         role="target")
    expected = dvh.DVH.of(dvh.GridDose(dose, grid), gtv)
    assert evaluation.value("GTV", "D90")[0] == pytest.approx(expected.metric("D90")[0], rel=1e-9)
    skin = evaluation["Skin"]
    assert skin.evaluated_fraction < 0.9 and "lie in the dose grid" in skin.notes[0]
    # writing a dose from elsewhere into the planned dose node drops its seeds
    volumes.set_dose_volume(c.dose, dose, grid, c.values.prescriptionGy, "replaced")
    assert dosimetry.dose_seeds(c.dose) is None


def test_checks_table_holds_the_indication_goals_and_the_user_limits(computed):
    c, dose, grid = computed
    evaluation = dosimetry.evaluate(c.dose, c.segmentation, c.ids["GTV"], c.ids["CTV"], c.values,
                                    oar_segment_ids=[c.ids["Carotid"]], ct_node=c.ct)
    table = c.scene.AddNewNodeByClass("vtkMRMLTableNode", "Checks")
    d90 = evaluation.value("GTV", "D90")[0]
    skin_d2cc = evaluation.value("Skin", "D2cc")[0]
    carotid_dmax = evaluation.value("Carotid", "Dmax")[0]
    # a skin limit just below the measured D2cc fails, a carotid limit just above its Dmax passes
    values = settings.resolve(c.values, indication="esophageal-scc-cervical-nodal-recurrence",
                              skinD2ccLimitGy=skin_d2cc * 0.99, oarMetric="Dmax", oarLimitGy=carotid_dmax * 1.01)
    results = dosimetry.check(evaluation, values, table, dosimetry.target_names(c.segmentation, c.ids["GTV"],
                                                                                c.ids["CTV"]), "Carotid")
    t = table.GetTable()
    assert t.GetNumberOfRows() == len(results) == 5  # ESCC D90 (GTV); D90 >= Rx, V100 (CTV); skin; carotid
    column = {name: t.GetColumnByName(name) for name in ("Check", "Structure", "Metric", "Measured", "Limit", "Unit",
                                                         "Result", "Note", "Source")}
    rows = {column["Check"].GetValue(r): r for r in range(t.GetNumberOfRows())}
    r = rows["D90 >= 110 Gy"]
    assert column["Structure"].GetValue(r) == "GTV" and column["Unit"].GetValue(r) == "Gy"
    assert column["Measured"].GetValue(r) == pytest.approx(d90) and column["Limit"].GetValue(r) == 110.0
    assert column["Result"].GetValue(r) == ("PASS" if d90 >= 110.0 else "FAIL")
    assert "J Contemp Brachytherapy" in column["Source"].GetValue(r)
    assert column["Structure"].GetValue(rows["V100 >= 90% of the CTV"]) == "CTV"
    skin_row = next(i for name, i in rows.items() if name.startswith("Skin D2cc"))
    # the skin reaches beyond the dose grid, but the DVH from the seeds evaluates it whole: no note
    assert evaluation["Skin"].evaluated_fraction == 1.0
    assert column["Result"].GetValue(skin_row) == "FAIL" and column["Note"].GetValue(skin_row) == ""
    carotid_row = next(i for name, i in rows.items() if name.startswith("Carotid Dmax"))
    assert column["Result"].GetValue(carotid_row) == "PASS"
    assert [res.status for res in results] == [column["Result"].GetValue(i) for i in range(5)]

    # the same dose as a volume without its seeds (a scene saved before the dose carried them), on the policy grid:
    # the skin is read on its part inside, whose D2cc is the whole skin's (the rest is below 1 % of Rx), so the
    # limit is evaluated and the note says why
    grid_only = c.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "policy dose without seeds")
    volumes.set_dose_volume(grid_only, dose, grid, c.values.prescriptionGy, "policy grid",
                            outside_below_gy=0.01 * c.values.doseGridThresholdPct * c.values.prescriptionGy)
    on_grid = dosimetry.evaluate(grid_only, c.segmentation, c.ids["GTV"], c.ids["CTV"], c.values,
                                 oar_segment_ids=[c.ids["Carotid"]], ct_node=c.ct)
    assert on_grid["Skin"].evaluated_fraction < 0.99
    skin_check = next(r for r in dosimetry.check(on_grid, values, None, dosimetry.target_names(
        c.segmentation, c.ids["GTV"], c.ids["CTV"]), "Carotid") if r.structure == "Skin")
    assert skin_check.status in ("PASS", "FAIL") and "is exact" in skin_check.note
