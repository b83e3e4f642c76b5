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
    ("grid covering spacing 0", lambda: Grid.covering([[0, 0, 0], [9, 9, 9]], 0.0), r"spacing 0.0 mm .*> 0"),
    ("grid covering spacing -1", lambda: Grid.covering([[0, 0, 0]], [1, -1, 1]), r"spacing \[1, -1, 1\] .*> 0"),
    ("grid covering margin -5", lambda: Grid.covering([[0, 0, 0]], 1.0, margin_mm=-5.0), r"margin -5.0 mm .*>= 0"),
    ("grid covering NaN point", lambda: Grid.covering([[0, 0, 0], [1, math.nan, 0]], 1.0), r"point \[1.0, nan, 0.0\]"),
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


# --------------------------------------------------------------------------------------------- DICOM import
@pytest.fixture(scope="module")
def dicom_case(tmp_path_factory):
    """A small oblique case as DICOM (CT/, RS.dcm, RP.dcm, RD.dcm), a seeds JSON, and damaged copies."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent / "fuzz"))
    import dicom_mutations

    folder = tmp_path_factory.mktemp("dicom-bad")
    grid = dicom_mutations.make_case(folder / "case")
    case = folder / "case"
    data = (case / "RP.dcm").read_bytes()
    damaged = folder / "damaged"
    damaged.mkdir()
    (damaged / "RP_cut.dcm").write_bytes(data[:data.rindex(b"\xfe\xff\x00\xe0")])
    (damaged / "text.dcm").write_text("not DICOM at all")
    (folder / "rtonly").mkdir()
    for name in ("RS.dcm", "RP.dcm"):
        (folder / "rtonly" / name).write_bytes((case / name).read_bytes())
    for name, change in (("RP_HDR.dcm", lambda ds: setattr(ds, "BrachyTreatmentType", "HDR")),
                         ("RD_relative.dcm", lambda ds: setattr(ds, "DoseUnits", "RELATIVE"))):
        import pydicom
        ds = pydicom.dcmread(case / ("RP.dcm" if name.startswith("RP") else "RD.dcm"))
        change(ds)
        ds.save_as(damaged / name)
    from SeedBrachyLib.dicomrt import read_rtplan
    seeds = read_rtplan(case / "RP.dcm").seeds
    (folder / "seeds.json").write_text(json.dumps({"space": "RAS", "seeds": [
        {"center_ras_mm": list(s.position), "axis_ras": list(s.axis), "strength_u": s.strength_u} for s in seeds]}))
    return dict(folder=folder, case=case, damaged=damaged, grid=grid, seeds=seeds)


def _dicom_cases():
    import datetime

    from SeedBrachyLib import dicomrt
    from SeedBrachyLib.dicomrt.dataset import parse_datetime

    far = datetime.datetime(2090, 1, 1)
    roi = dicomrt.Roi
    return [
        ("CT folder missing", lambda c: dicomrt.read_ct_series(c["folder"] / "nope"), r"'.*nope' does not exist"),
        ("CT folder without images", lambda c: dicomrt.read_ct_series(c["folder"] / "rtonly"),
         r"no image series found in 2 files"),
        ("CT folder with a damaged file", lambda c: dicomrt.read_ct_series(c["damaged"]),
         r"RP_cut\.dcm' is cut short"),
        ("RT Plan that is a CT slice", lambda c: dicomrt.read_rtplan(sorted((c["case"] / "CT").iterdir())[0]),
         r"modality 'CT' is not RTPLAN: not an RT Plan"),
        ("RT Plan that is text", lambda c: dicomrt.read_rtplan(c["damaged"] / "text.dcm"),
         r"text\.dcm' is not a readable DICOM file"),
        ("RT Plan cut short", lambda c: dicomrt.read_rtplan(c["damaged"] / "RP_cut.dcm"), r"RP_cut\.dcm' is cut short"),
        ("RT Plan HDR", lambda c: dicomrt.read_rtplan(c["damaged"] / "RP_HDR.dcm"),
         r"Brachy Treatment Type 'HDR' is not a seed implant: LDR or MANUAL expected"),
        ("RT Plan decayed 64 years", lambda c: dicomrt.read_rtplan(c["case"] / "RP.dcm", far),
         r"implant date 2090-01-01, more than 20 half-lives \(59\.4 d\)"),
        ("RT Structure Set that is a plan", lambda c: dicomrt.read_rtstruct(c["case"] / "RP.dcm", c["grid"]),
         r"modality 'RTPLAN' is not RTSTRUCT"),
        ("RT Structure Set in another frame", lambda c: dicomrt.read_rtstruct(c["case"] / "RS.dcm", c["grid"],
                                                                              frame_of_reference_uid="1.2.3"),
         r"frame of reference .* not the CT's 1\.2\.3"),
        ("RT Structure Set ROI not there", lambda c: dicomrt.read_rtstruct(c["case"] / "RS.dcm", c["grid"],
                                                                           names=["Cord"]),
         r"ROIs \['Cord'\] not found; the file has \['Body', 'Ring'\]"),
        ("RT Dose in another frame", lambda c: dicomrt.read_rtdose(c["case"] / "RD.dcm", frame_of_reference_uid="1.2"),
         r"dose frame of reference .* is not the CT's 1\.2"),
        ("RT Dose RELATIVE", lambda c: dicomrt.read_rtdose(c["damaged"] / "RD_relative.dcm"),
         r"Dose Units RELATIVE cannot be used: an absolute dose \(GY\) is needed"),
        ("DICOM folder without CT", lambda c: dicomrt.read_dicom_folder(c["folder"] / "rtonly"),
         r"no CT image in .*: a case needs its CT series"),
        ("implant date 'yesterday'", lambda c: parse_datetime("yesterday", "implant date"),
         r"implant date 'yesterday' invalid: use ISO 8601"),
        ("export with an unknown model", lambda c: dicomrt.write_dicom_case(
            c["folder"] / "out-model", *_ct_of(c), [], c["seeds"], "Onco", 100.0), r"'Onco' is not a known seed model"),
        ("export with prescription NaN", lambda c: dicomrt.write_dicom_case(
            c["folder"] / "out-rx", *_ct_of(c), [], c["seeds"], MODEL, math.nan), r"prescription nan Gy invalid"),
        ("structure fraction 2", lambda c: dicomrt.write_rtstruct(
            c["folder"] / "out-rs.dcm", [roi("Twice", np.full(c["grid"].shape, 2.0, np.float32))], c["grid"],
            dicomrt.read_ct_series(c["case"] / "CT")[2]), r"'Twice' mask values must be fractions in \[0, 1\]"),
        ("CT values NaN", lambda c: dicomrt.write_ct_series(c["folder"] / "out-ct", np.full(c["grid"].shape, np.nan),
                                                            c["grid"]), r"CT values must be finite \(HU\)"),
    ]


def _ct_of(c):
    from SeedBrachyLib.dicomrt import read_ct_series

    hu, grid, _ = read_ct_series(c["case"] / "CT")
    return hu, grid


def _tree(folder):
    """path -> bytes of every file below ``folder``."""
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


DICOM_IDS = [c[0] for c in _dicom_cases()]


@pytest.mark.parametrize("name", DICOM_IDS)
def test_dicom_bad_inputs_raise_a_clear_error_and_write_nothing(dicom_case, name):
    call, pattern = {n: (f, rx) for n, f, rx in _dicom_cases()}[name]
    before = _tree(dicom_case["folder"])
    with pytest.raises(InputError) as error:
        call(dicom_case)
    assert re.search(pattern, str(error.value)), f"message {str(error.value)[:300]!r} does not match {pattern!r}"
    assert len(str(error.value)) < 2000
    assert _tree(dicom_case["folder"]) == before  # inputs unchanged, no output begun


# ------------------------------------------------------------------- command line: the subcommands on real data
def _subcommand_cases():
    """(id, argv with {case}, {damaged}, {seeds}, {out} placeholders, stderr regex)."""
    ct, rs, rp = "{case}/CT", "{case}/RS.dcm", "{case}/RP.dcm"
    base = ["--ct", ct, "--structures", rs, "--gtv", "Ring", "--quiet"]
    return [
        ("plan CT missing", ["plan", "--ct", "{case}/nope", "--structures", rs, "--gtv", "Ring", "--out", "{out}"],
         r"CT '.*nope' does not exist"),
        ("plan GTV not there", ["plan", *base[:4], "--gtv", "Tumour", "--out", "{out}", "--quiet"],
         r"GTV 'Tumour' not found among the structures: have Body, Ring"),
        ("plan prescription 0", ["plan", *base, "--out", "{out}", "--prescription-gy", "0"],
         r"prescriptionGy = 0\.0 Gy invalid: allowed is 1 to 300 Gy"),
        ("plan unknown model", ["plan", *base, "--out", "{out}", "--source-model", "6712"],
         r"sourceModel = '6712' invalid: seed model '6712' is not a known seed model"),
        ("plan hole spacing 1.5", ["plan", *base, "--out", "{out}", "--hole-spacing-mm", "1.5"],
         r"holeSpacingMm = 1\.5 mm invalid: allowed is 3 to 30 mm"),
        ("plan output is the CT", ["plan", *base, "--out", ct, "--force"],
         r"output '.*CT' is the input '.*CT' \(or inside it\): choose another output"),
        ("plan structures are text", ["plan", "--ct", ct, "--structures", "{damaged}/text.dcm", "--gtv", "Ring",
                                      "--out", "{out}", "--quiet"],
         r"labelmap '.*text\.dcm' is neither a folder of DICOM slices nor a volume file"),
        ("evaluate plan is text", ["evaluate", *base, "--plan", "{damaged}/text.dcm"],
         r"plan '.*text\.dcm' is neither an RT Plan \(DICOM\) nor a seeds JSON file"),
        ("evaluate plan cut short", ["evaluate", *base, "--plan", "{damaged}/RP_cut.dcm"],
         r"RP_cut\.dcm' is cut short"),
        ("evaluate plan HDR", ["evaluate", *base, "--plan", "{damaged}/RP_HDR.dcm"], r"'HDR' is not a seed implant"),
        ("evaluate dose RELATIVE", ["evaluate", *base, "--dose", "{damaged}/RD_relative.dcm"],
         r"Dose Units RELATIVE cannot be used"),
        ("evaluate plan without CT", ["evaluate", "--structures", rs, "--gtv", "Ring", "--plan", rp, "--quiet"],
         r"--plan without --ct"),
        ("postplan post-CT missing", ["postplan", "--post-ct", "{case}/nope", *base, "--plan", rp],
         r"'.*nope' does not exist"),
        ("detect CT missing", ["detect", "{case}/nope", "--quiet"], r"post-implant CT '.*nope' does not exist"),
        ("batch cases missing", ["batch", "{case}/nope", "--out", "{out}.csv", "--quiet"],
         r"cases '.*nope' do not exist"),
        ("cohort table missing", ["cohort", "{case}/nope.csv", "--quiet"], r"cohort table '.*nope\.csv' is not a file"),
        ("dicom export without CT", ["dicom", "export", "{out}", "--plan", "{seeds}", "--quiet"],
         r"dicom export needs --ct, --plan and --prescription-gy"),
        ("dicom export unknown target", ["dicom", "export", "{out}", "--ct", ct, "--structures", rs, "--plan",
                                         "{seeds}", "--prescription-gy", "120", "--target", "Tumour", "--quiet"],
         r"target 'Tumour' is not among the structures \['Body', 'Ring'\]"),
        ("dicom export unknown model", ["dicom", "export", "{out}", "--ct", ct, "--structures", rs, "--plan",
                                        "{seeds}", "--prescription-gy", "120", "--source-model", "Onco", "--quiet"],
         r"seed model 'Onco' is not a known seed model"),
        ("dicom export implant date 13th month", ["dicom", "export", "{out}", "--demo", "--implant-date",
                                                  "2026-13-01", "--quiet"], r"'2026-13-01' invalid: use ISO 8601"),
        ("dicom import folder missing", ["dicom", "import", "{case}/nope", "--quiet"],
         r"DICOM folder '.*nope' does not exist or is not a folder"),
        ("dicom import without CT", ["dicom", "import", "{rtonly}", "--quiet"], r"no CT image in"),
        ("dicom import of a damaged file", ["dicom", "import", "{damaged}", "--quiet"], r"is cut short"),
        ("dicom import implant date", ["dicom", "import", "{case}", "--implant-date", "yesterday", "--quiet"],
         r"implant date 'yesterday' invalid: use ISO 8601"),
        ("dicom import JSON over an input", ["dicom", "import", "{case}", "--json", rp, "--force", "--quiet"],
         r"output '.*RP\.dcm' is the input .* choose another output"),
    ]


SUBCOMMAND_IDS = [c[0] for c in _subcommand_cases()]


@pytest.mark.parametrize("name", SUBCOMMAND_IDS)
def test_subcommand_bad_inputs_exit_2_naming_the_value_and_change_nothing(dicom_case, name, capsys, tmp_path):
    from SeedBrachyLib.cli import main

    argv, pattern = {n: (a, rx) for n, a, rx in _subcommand_cases()}[name]
    places = {"case": dicom_case["case"], "damaged": dicom_case["damaged"], "seeds": dicom_case["folder"] /
              "seeds.json", "rtonly": dicom_case["folder"] / "rtonly", "out": tmp_path / "out"}
    argv = [a.format(**places) for a in argv]
    before = _tree(dicom_case["folder"])
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's own refusals
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert re.search(pattern, err), f"stderr {err[-400:]!r} does not match {pattern!r}"
    assert _tree(dicom_case["folder"]) == before  # inputs unchanged
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.csv").exists()  # refused before any output


def test_models_add_of_the_user_file_itself_and_a_model_folder_that_is_a_file(tmp_path, monkeypatch, capsys):
    import SeedBrachyLib.sources as sources
    from SeedBrachyLib.cli import main

    user = tmp_path / "user"
    user.mkdir()
    mine = user / "Mine.json"
    mine.write_text(json.dumps(_model_data()))
    before = mine.read_bytes()
    monkeypatch.setenv("SEEDBRACHY_SOURCE_DIR", str(user))
    assert main(["models", "--add", str(mine), "--force"]) == 2
    assert re.search(r"'.*Mine\.json' is the user model 'Mine' itself .* it is added already", capsys.readouterr().err)
    assert mine.read_bytes() == before
    monkeypatch.setenv("SEEDBRACHY_SOURCE_DIR", str(mine))  # a file where the folder should be
    assert main(["models"]) == 2
    assert re.search(r"user model folder '.*Mine\.json' .* is a file: it must be a folder", capsys.readouterr().err)
    with pytest.raises(InputError, match="is a file: it must be a folder"):
        sources.available_models()
    assert mine.read_bytes() == before


def test_a_huge_model_file_gets_a_short_message(tmp_path):
    data = _model_data()
    data["half_life_days"] = [59.4] * 200_000  # a 1.2 MB value: quoted whole, the message would be as long
    path = tmp_path / "Huge.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"half_life_days' = \[59\.4, .*\.\.\. \(\d+ characters\) invalid") as error:
        _load_text_file(path)
    assert len(str(error.value)) < 300


def _load_text_file(path):
    from SeedBrachyLib.sources import load_model_file

    return load_model_file(path)


def test_optimiser_and_template_goals_that_cannot_mean_anything_are_refused():
    from SeedBrachyLib.planning.optimize import Goals

    with pytest.raises(InputError, match=r"goal safety_pct = nan % invalid: use 0\.\.20 %"):
        Goals(100.0, safety_pct=math.nan)
    with pytest.raises(InputError, match="met by a plan of no seeds"):
        Goals(100.0, d90_min_pct=0.0, v100_min_pct=0.0)
    with pytest.raises(InputError, match=r"goal v200_max_pct = 150 % invalid"):
        Goals(100.0, v200_max_pct=150)
    target = np.linalg.norm(GRID.points(), axis=-1) < 9.0
    with pytest.raises(InputError, match=r"hole spacing 0\.5 mm: the target spans .* needs 31 x 31 holes .* at most 24 "
                                         r"columns: use a spacing of at least 0\.7 mm"):
        template.template_for_target(target, GRID, [1, 0, 0], spacing_mm=0.5)


def test_registration_refuses_a_blank_post_implant_ct():
    from SeedBrachyLib.postimplant.registration import register_post_to_pre

    ct = np.where(np.linalg.norm(GRID.points(), axis=-1) < 8.0, 40.0, -1000.0).astype(np.float32)
    blank = np.zeros(GRID.shape, np.float32)
    with pytest.raises(InputError, match="blank|uniform|constant"):
        register_post_to_pre(ct, GRID, blank, GRID)
    assert not blank.any()


@pytest.mark.parametrize("command", ["models", "demo", "example", "plan", "evaluate", "postplan", "detect", "batch",
                                     "cohort", "dicom export", "dicom import"])
def test_every_subcommand_prints_its_help(command, capsys):
    """The help is formatted by argparse with %: a unit "%" in a setting's help once broke `plan --help`."""
    from SeedBrachyLib.cli import main

    with pytest.raises(SystemExit) as stop:
        main([*command.split(), "--help"])
    assert stop.value.code == 0 and "usage: seedbrachy" in capsys.readouterr().out
