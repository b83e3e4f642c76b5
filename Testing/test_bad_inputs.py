"""Bad and unusual inputs through every public entry point: each gets a clear error (the error class, a message
that names the bad value and what is allowed) and leaves its inputs unchanged -- or is handled correctly.

Grow this table with every new entry point. Cases that need slicer-core use real MRML nodes.
"""

from __future__ import annotations

import copy
import json
import math
import re

import numpy as np
import pytest

from SeedBrachyLib import checks, dose, dvh, settings, structures
from SeedBrachyLib.errors import InputError
from SeedBrachyLib.grid import Grid
from SeedBrachyLib.planning import order, template
from SeedBrachyLib.seeds import Needle, Seed
from SeedBrachyLib.sources import get_model, mci_to_u, model_from_dict

GRID = Grid.around([0, 0, 0], [20, 20, 20], 2.0)
MODEL = "I125_OncoSeed6711"
SEED = Seed([0, 0, 0], [0, 0, 1], 0.6)


def _model_data():
    import SeedBrachyLib.sources as sources

    with open(sources.PACKAGED_DIR / f"{MODEL}.json") as f:
        return json.load(f)


#: (id, call, message regex). Every call must raise InputError with a message matching the regex.
LIBRARY = [
    ("grid dims 10.7", lambda: Grid([0, 0, 0], [1, 1, 1], np.eye(3), (10.7, 10, 10)), r"dims .*10\.7.*whole"),
    ("grid dims 0", lambda: Grid([0, 0, 0], [1, 1, 1], np.eye(3), (0, 10, 10)), r"dims .*>= 1"),
    ("grid dims two", lambda: Grid([0, 0, 0], [1, 1, 1], np.eye(3), (10, 10)), r"dims .*three"),
    ("grid spacing NaN", lambda: Grid([0, 0, 0], [1, math.nan, 1], np.eye(3), (2, 2, 2)), r"spacing .*finite"),
    ("grid spacing inf", lambda: Grid([0, 0, 0], [1, math.inf, 1], np.eye(3), (2, 2, 2)), r"spacing .*finite"),
    ("grid spacing 0", lambda: Grid([0, 0, 0], [1, 0, 1], np.eye(3), (2, 2, 2)), r"spacing .*> 0"),
    ("grid origin NaN", lambda: Grid([0, math.nan, 0], [1, 1, 1], np.eye(3), (2, 2, 2)), r"origin .*finite"),
    ("grid direction skew", lambda: Grid([0, 0, 0], [1, 1, 1], [[1, 0.2, 0], [0, 1, 0], [0, 0, 1]], (2, 2, 2)),
     r"not orthonormal"),
    ("grid size -50", lambda: Grid.around([0, 0, 0], [-50, 50, 50], 1.0), r"size .*-50.*> 0"),
    ("grid size NaN", lambda: Grid.around([0, 0, 0], [math.nan, 50, 50], 1.0), r"size .*finite"),
    ("grid around spacing 0", lambda: Grid.around([0, 0, 0], [50, 50, 50], 0.0), r"spacing .*> 0"),
    ("seed position NaN", lambda: Seed([0, math.nan, 0]), r"position .*finite"),
    ("seed position two values", lambda: Seed([1.0, 2.0]), r"position \[1\.0, 2\.0\] invalid: must be 3 numbers"),
    ("seed axis zero", lambda: Seed([0, 0, 0], [0, 0, 0]), r"axis .*non-zero"),
    ("seed axis two values", lambda: Seed([0, 0, 0], [0, 1]), r"axis .*3 numbers"),
    ("seed axis text", lambda: Seed([0, 0, 0], "up"), r"axis 'up' invalid"),
    ("seed strength 0", lambda: Seed([0, 0, 0], [0, 0, 1], 0.0), r"strength 0\.0 U invalid: .* > 0 U"),
    ("seed strength negative", lambda: Seed([0, 0, 0], [0, 0, 1], -1.0), r"strength -1\.0 U"),
    ("seed strength NaN", lambda: Seed([0, 0, 0], [0, 0, 1], math.nan), r"strength nan U"),
    ("seed strength text", lambda: Seed([0, 0, 0], [0, 0, 1], "abc"), r"strength 'abc' U"),
    ("needle entry NaN", lambda: Needle([math.nan, 0, 0], [0, 0, 10]), r"entry .*finite"),
    ("needle entry is tip", lambda: Needle([0, 0, 0], [0, 0, 0]), r"entry and tip coincide"),
    ("unknown seed model", lambda: get_model("OncoSeed 6712"), r"OncoSeed 6712"),
    ("u per mCi 0", lambda: mci_to_u(0.5, 0.0), r"u_per_mci"),
    ("dose grid too large", lambda: dose.compute_dose(Grid.around([0, 0, 0], [4000, 4000, 4000], 1.0), [SEED],
                                                       MODEL), r"GiB"),
    ("dose workers -1", lambda: dose.compute_dose(GRID, [SEED], MODEL, workers=-1), r"workers -1 invalid"),
    ("dose time window 3 values", lambda: dose.compute_dose(GRID, [SEED], MODEL, time_window_days=(0, 1, 2)),
     r"time window \(0, 1, 2\) days invalid"),
    ("dose time window reversed", lambda: dose.compute_dose(GRID, [SEED], MODEL, time_window_days=(5, 1)),
     r"0 <= start < end"),
    ("dose unknown formalism", lambda: dose.compute_dose(GRID, [SEED], MODEL, formalism="2d"), r"'2d'"),
    ("dose seed outside the grid", lambda: dose.compute_dose(GRID, [Seed([500, 0, 0], [0, 0, 1], 0.6)], MODEL),
     r"outside"),
    ("dose at NaN point", lambda: dose.dose_at_points([[0, 0, math.nan]], [SEED], MODEL), r"not finite"),
    ("dose points shape", lambda: dose.dose_at_points([1.0, 2.0], [SEED], MODEL), r"\(\.\.\., 3\)"),
    ("point dose axis not unit", lambda: dose.dose_per_u_at_points([[10, 0, 0]], [0, 0, 0], [0, 0, 2], MODEL),
     r"axis \[0\.0, 0\.0, 2\.0\] invalid: must be a finite unit vector"),
    ("negative dose array", lambda: dvh.evaluate_plan(-np.ones(GRID.shape), [structures.Structure(
        "CTV", np.ones(GRID.shape, np.float32), GRID, "target")], 100.0), r"-1 Gy .*negative"),
    ("NaN dose array", lambda: dvh.evaluate_plan(np.full(GRID.shape, math.nan), [structures.Structure(
        "CTV", np.ones(GRID.shape, np.float32), GRID, "target")], 100.0), r"non-finite"),
    ("prescription 0", lambda: dvh.evaluate_plan(np.ones(GRID.shape), [], 0.0), r"prescription 0\.0 Gy"),
    ("prescription text", lambda: dvh.evaluate_plan(np.ones(GRID.shape), [], "abc"), r"prescription 'abc'"),
    ("empty structure", lambda: structures.structure_on_grid("Cord", np.zeros(GRID.shape, bool), GRID, GRID),
     r"'Cord' is empty"),
    ("structure off the grid", lambda: structures.structure_on_grid(
        "Far", np.ones((2, 2, 2), bool), Grid.around([900, 0, 0], [4, 4, 4], 2.0), GRID), r"'Far' lies outside"),
    ("mask shape", lambda: structures.structure_on_grid("CTV", np.ones((3, 3, 3), bool), GRID, GRID), r"shape"),
    ("limit metric V100", lambda: checks.user_limit("Skin", "V100", 30.0), r"'V100' is not a dose metric"),
    ("limit -1 Gy", lambda: checks.user_limit("Skin", "D2cc", -1.0), r"-1\.0 Gy .*> 0 Gy"),
    ("limit comparator =", lambda: checks.user_limit("Skin", "D2cc", 30.0, "="), r"comparator '='"),
    ("unknown indication", lambda: checks.goals_for("prostate"), r"'prostate'.*lymph-node-metastases"),
    ("OAR limit without organ", lambda: checks.user_limits(oar_limit_gy=45.0), r"45 Gy needs its structure"),
    ("unknown metric", lambda: dvh.metric_unit("D2ccc"), r"'D2ccc'"),
    ("seed order 0 seeds", lambda: order.seed_order(0, activity_mci=0.5), r"count 0 invalid"),
    ("seed order both", lambda: order.seed_order(10, activity_mci=0.5, strength_u=0.6), r"not both"),
    ("template hole spacing 0", lambda: template.Template([0, 0, 0], [1, 0, 0], [0, 1, 0], spacing_mm=0.0),
     r"hole spacing 0\.0 mm"),
    ("template hole spacing NaN", lambda: template.Template([0, 0, 0], [1, 0, 0], [0, 1, 0], spacing_mm=math.nan),
     r"hole spacing nan mm"),
    ("model g_L(1 cm) = 2", lambda: model_from_dict(_scaled_gl(2.0), "bad"), r"g_L"),
    ("model nested 100000 deep", lambda: _load_text("[" * 100000 + "]" * 100000), r"model file"),
    ("model one-point g_L", lambda: model_from_dict(_one_point_gl(), "bad"), r"g_L|r_cm"),
]
LIBRARY += [(f"setting {name} = {value!r}", (lambda n=name, v=value: settings.resolve(**{n: v})), rx)
            for name, value, rx in (
                ("seedActivityMci", 0.0, r"0\.05 to 5 mCi"), ("seedActivityMci", math.inf, r"0\.05 to 5 mCi"),
                ("uPerMci", 0.0, r"0\.5 to 2 U/mCi"), ("prescriptionGy", -10.0, r"1 to 300 Gy"),
                ("prescriptionGy", "abc", r"'abc' invalid: must be a number"), ("ctvMarginMm", 50.0, r"0 to 20 mm"),
                ("holeSpacingMm", 1.5, r"1\.5 mm invalid: allowed is 3 to 30 mm"),
                ("safetyMarginMm", math.nan, r"0 to 20 mm"), ("candidateSpacingMm", 2.0, r"5 to 10 mm"),
                ("randomSeed", -1, r"0 to"), ("randomSeed", 2.5, r"whole number"),
                ("doseSpacingMm", 0.0, r"0\.25 to 5 mm"), ("doseGridThresholdPct", 0.0, r"0\.1 to 50 %"),
                ("sourceModel", "6712", r"'6712' is not a known seed model.*available: I125_"),
                ("formalism", "3d", r"allowed are line, point"),
                ("indication", "prostate", r"allowed are lymph-node"), ("oarMetric", "V100", r"allowed are D2cc"),
                ("postSeedAxis", "guess", r"allowed are detection, needle, unknown"),
                ("planningMethod", "random", r"allowed are optimise"), ("needleEntry", "up", r"allowed are right"),
                ("skinD2ccLimitGy", -5.0, r"0 to 1000 Gy"), ("bodyThresholdHu", 500.0, r"-900 to 0 HU"),
                ("unknownName", 1.0, r"unknown setting 'unknownName'"))]


def _scaled_gl(factor):
    data = _model_data()
    data["radial_dose_function"]["gL"] = [v * factor for v in data["radial_dose_function"]["gL"]]
    return data


def _one_point_gl():
    data = _model_data()
    for key in ("r_cm", "gL"):
        data["radial_dose_function"][key] = data["radial_dose_function"][key][:1]
    return data


def _load_text(text):
    import tempfile

    from SeedBrachyLib.sources import load_model_file

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        f.write(text)
    return load_model_file(f.name)


@pytest.mark.parametrize("case", LIBRARY, ids=[c[0] for c in LIBRARY])
def test_library_bad_inputs_raise_a_clear_input_error(case):
    _, call, pattern = case
    with pytest.raises(InputError) as error:
        call()
    assert re.search(pattern, str(error.value)), f"message {str(error.value)[:300]!r} does not match {pattern!r}"
    assert len(str(error.value)) < 2000, "the message must be short enough to read"


def test_inputs_are_unchanged_after_an_error():
    seeds = [SEED, Seed([500, 0, 0], [0, 0, 1], 0.6)]
    before = copy.deepcopy(seeds)
    mask = np.zeros(GRID.shape, bool)
    with pytest.raises(InputError):
        dose.compute_dose(GRID, seeds, MODEL)
    with pytest.raises(InputError):
        structures.structure_on_grid("Cord", mask, GRID, GRID)
    assert all(np.array_equal(a.position, b.position) and a.strength_u == b.strength_u for a, b in zip(seeds, before))
    assert not mask.any()


# --------------------------------------------------------------------------------------------- command line
COMMAND_LINE = [
    ("demo activity 9 mCi", ["demo", "--quiet", "--seed-activity-mci", "9"], r"0\.05 to 5 mCi"),
    ("demo unknown model", ["demo", "--quiet", "--source-model", "Model6711"],
     r"sourceModel = 'Model6711' invalid: seed model 'Model6711' is not a known seed model.*available: I125_"),
    ("models add missing file", ["models", "--add", "/no/such/model.json"], r"/no/such/model\.json"),
    ("unknown subcommand", ["plot"], r"invalid choice: 'plot'"),
]


@pytest.mark.parametrize("case", COMMAND_LINE, ids=[c[0] for c in COMMAND_LINE])
def test_command_line_bad_inputs_exit_2_with_the_reason(case, capsys, tmp_path, monkeypatch):
    from SeedBrachyLib.cli import main

    monkeypatch.chdir(tmp_path)
    _, argv, pattern = case
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's own refusals
        code = stop.code
    assert code == 2
    assert re.search(pattern, capsys.readouterr().err)
    assert not (tmp_path / "build").exists()  # refused before any output


# --------------------------------------------------------------------------------------------- MRML bridge
@pytest.fixture
def nodes(case_nodes):
    pytest.importorskip("slicer")
    return case_nodes


def _bridge_cases(c):
    from SeedBrachyLib.mrml import dosimetry, markups, parameters, planning, postimplant, segmentations, tables

    scene = c.scene
    image = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "A user's image")
    image.SetAndObserveImageData(c.ct.GetImageData())
    user_table = scene.AddNewNodeByClass("vtkMRMLTableNode", "My notes")
    user_table.AddColumn().SetName("note")
    moved = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "My transform")
    m = np.eye(4)
    m[0, 3] = 5.0
    from SeedBrachyLib.mrml import transforms
    moved.SetMatrixTransformToParent(transforms.array_to_matrix(m))
    values = c.values
    ids = [c.ids["GTV"], c.ids["CTV"]]
    bad_model = settings.resolve(values, sourceModel="I125_Model6702")
    return [
        ("dose into the CT", lambda: dosimetry.compute_dose(c.ct, c.segmentation, ids, c.seeds_node, c.ct, values),
         r"'Neck CT' is also the CT"),
        ("dose into a user's image", lambda: dosimetry.compute_dose(c.ct, c.segmentation, ids, c.seeds_node, image,
                                                                   values), r"holds data SeedBrachy did not make"),
        ("dose with another model than planned", lambda: dosimetry.compute_dose(
            c.ct, c.segmentation, ids, c.seeds_node, c.dose, bad_model), r"planned with seed model I125_OncoSeed6711"),
        ("no target segment", lambda: dosimetry.compute_dose(c.ct, c.segmentation, ["", ""], c.seeds_node, c.dose,
                                                             values), r"no target segment chosen"),
        ("unknown segment", lambda: segmentations.segment_mask(c.segmentation, "NoSuchSegment"),
         r"'NoSuchSegment' not found"),
        ("checks into a user's table", lambda: tables.write_checks(user_table, checks.run_checks(
            _evaluation(), "general", {"CTV": "CTV"})), r"'My notes' holds data SeedBrachy did not make"),
        ("registration into a user's transform", lambda: transforms.write_matrix(moved, np.eye(4), "Registration"),
         r"'My transform' holds data SeedBrachy did not make"),
        ("CTV made twice", lambda: segmentations.make_ctv(c.segmentation, c.ids["GTV"], c.ct, values),
         r"already has a segment 'CTV'"),
        ("plan into hand-made seeds", lambda: planning.plan_seeds(c.ct, c.segmentation, c.ids["CTV"], c.seeds_node,
                                                                  values), r"edited by hand"),
        ("no-go segment unknown", lambda: planning.plan_seeds(
            c.ct, c.segmentation, c.ids["CTV"], scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode"), values,
            nogo_segment_ids=["nope"]), r"'nope' not found"),
        ("evaluate a non-dose volume", lambda: dosimetry.evaluate(image, c.segmentation, *ids, values),
         r"'A user's image' is not a dose volume"),
        ("detect into the plan's seeds", lambda: postimplant.detect(c.ct, c.seeds_node), r"already hold"),
        ("scene prescription 'abc'", lambda: _read_bad_setting(parameters, scene), r"prescriptionGy = 'abc'"),
        ("corrupt stored seed data", lambda: _corrupt_seed_data(markups, c), r"stored seed data .* is corrupt"),
        ("legacy description axis 'up'", lambda: _legacy_axis_up(markups, scene), r"stored axis 'up' invalid"),
        ("every seed marked missing", lambda: _all_missing(markups, scene, c), r"every point .* is marked missing"),
    ]


def _evaluation():
    return dvh.evaluate_plan(np.ones(GRID.shape), [structures.Structure("CTV", np.ones(GRID.shape, np.float32), GRID,
                                                                        "target")], 100.0)


def _read_bad_setting(parameters, scene):
    node = parameters.parameter_node(scene)
    node.SetParameter("prescriptionGy", "abc")
    return parameters.read_settings(node)


def _corrupt_seed_data(markups, c):
    node = c.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Copy")
    markups.write_seeds(node, c.seeds[:3], MODEL)
    node.SetAttribute(markups.SEED_DATA_ATTRIBUTE, "{not json")
    return markups.read_seeds(node)


def _legacy_axis_up(markups, scene):
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Old scene seeds")
    node.AddControlPoint(0.0, 0.0, 0.0, "S1")
    node.SetNthControlPointDescription(0, '{"axis": "up", "strength_u": 0.6}')
    return markups.read_seeds(node)


def _all_missing(markups, scene, c):
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Lost")
    markups.write_seeds(node, c.seeds[:2], MODEL)
    for i in range(2):
        node.SetNthControlPointPositionMissing(i)
    return markups.read_seeds(node)


BRIDGE_IDS = ["dose into the CT", "dose into a user's image", "dose with another model than planned",
              "no target segment", "unknown segment", "checks into a user's table",
              "registration into a user's transform", "CTV made twice", "plan into hand-made seeds",
              "no-go segment unknown", "evaluate a non-dose volume", "detect into the plan's seeds",
              "scene prescription 'abc'", "corrupt stored seed data", "legacy description axis 'up'",
              "every seed marked missing"]


@pytest.mark.parametrize("name", BRIDGE_IDS)
def test_bridge_bad_inputs_raise_and_leave_the_nodes_unchanged(nodes, name):
    c = nodes
    case = {n: (call, rx) for n, call, rx in _bridge_cases(c)}[name]
    call, pattern = case
    ct_before = c.ct.GetImageData().GetScalarRange()
    seeds_before = [list(c.seeds_node.GetNthControlPointPositionVector(i))
                    for i in range(c.seeds_node.GetNumberOfControlPoints())]
    with pytest.raises(InputError) as error:
        call()
    assert re.search(pattern, str(error.value)), f"{str(error.value)[:300]!r} !~ {pattern!r}"
    assert c.ct.GetImageData().GetScalarRange() == ct_before
    assert [list(c.seeds_node.GetNthControlPointPositionVector(i))
            for i in range(c.seeds_node.GetNumberOfControlPoints())] == seeds_before


def test_bridge_case_list_is_complete(nodes):
    assert [n for n, _, _ in _bridge_cases(nodes)] == BRIDGE_IDS


# ------------------------------------------------------------------------ handled correctly, not an error
def test_editing_a_seed_description_keeps_its_strength_and_axis(nodes):
    from SeedBrachyLib.mrml import markups

    c = nodes
    before = markups.read_seeds(c.seeds_node)
    c.seeds_node.SetNthControlPointDescription(0, "checked on the CT, looks fine")
    after = markups.read_seeds(c.seeds_node)
    assert after[0].strength_u == before[0].strength_u and np.array_equal(after[0].axis, before[0].axis)


def test_a_seed_marked_missing_is_not_dosed_and_hand_edits_of_any_attribute_are_detected(nodes):
    from SeedBrachyLib.mrml import markups, planning

    c = nodes
    node = c.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Planned")
    planning.plan_seeds(c.ct, c.segmentation, c.ids["CTV"], node, settings.resolve(c.values,
                                                                                   planningMethod="uniform"))
    assert not planning.edited_by_hand(node)
    n = node.GetNumberOfControlPoints()
    node.SetNthControlPointLabel(0, "renamed")
    assert planning.edited_by_hand(node)
    node.SetNthControlPointLabel(0, markups.read_seeds(node)[1].label)  # any other label: still an edit
    assert planning.edited_by_hand(node)
    node.SetNthControlPointPositionMissing(1)
    assert len(markups.read_seeds(node)) == n - 1 and markups.missing_points(node) == [node.GetNthControlPointLabel(1)]
    data = json.loads(node.GetAttribute(markups.SEED_DATA_ATTRIBUTE))
    first = node.GetNthControlPointID(2)
    data[first]["strength_u"] = 0.9
    node.SetAttribute(markups.SEED_DATA_ATTRIBUTE, json.dumps(data))
    assert markups.read_seeds(node)[1].strength_u == 0.9  # the stored strength, not a default


def test_a_truncated_or_foreign_scene_bundle_is_refused_with_the_reason(tmp_path):
    pytest.importorskip("slicer")
    from SeedBrachyLib.mrml.scene import load_bundle

    fake = tmp_path / "scene.mrb"
    fake.write_bytes(b"not a zip at all")
    with pytest.raises(InputError, match="is not a Slicer scene bundle: a .mrb file is a zip archive"):
        load_bundle(fake)
    with pytest.raises(InputError, match="does not exist"):
        load_bundle(tmp_path / "missing.mrb")


def test_table_values_keep_full_precision_through_save_and_reload(nodes, tmp_path):
    from SeedBrachyLib.mrml import tables
    from SeedBrachyLib.mrml.scene import load_bundle, save_bundle

    c = nodes
    table = c.scene.AddNewNodeByClass("vtkMRMLTableNode", "DVH metrics")
    value = 123.456789012345
    ev = dvh.evaluate_plan(np.full(GRID.shape, value), [structures.Structure(
        "CTV", np.ones(GRID.shape, np.float32), GRID, "target")], 100.0)
    tables.write_dvh_metrics(table, ev)
    reloaded = load_bundle(save_bundle(c.scene, tmp_path / "t.mrb")).scene.GetFirstNodeByName("DVH metrics")
    assert reloaded.GetTable().GetColumnByName("D90 [Gy]").GetValue(0) != value  # what Slicer's storage keeps
    assert tables.read_dvh_metric(reloaded, "CTV", "D90") == (value, "Gy")  # what SeedBrachy keeps
