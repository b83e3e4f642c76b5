"""MRML bridge, markups: seeds (position, axis, S_K) and needles survive a saved and reloaded scene."""

import numpy as np
import pytest

pytest.importorskip("slicer")

import vtk  # noqa: E402

from SeedBrachyLib.errors import InputError  # noqa: E402
from SeedBrachyLib.mrml import markups  # noqa: E402
from SeedBrachyLib.mrml.scene import load_bundle, save_bundle  # noqa: E402
from SeedBrachyLib.seeds import Needle, Seed  # noqa: E402


def _seeds():
    rng = np.random.default_rng(4)
    return [Seed(rng.uniform(-50, 50, 3), rng.normal(size=3), float(rng.uniform(0.3, 1.1)), f"N{i // 3}-{i % 3}")
            for i in range(9)]


def _needles():
    return [Needle([60.0, float(y), 0.0], [20.0, float(y), 1.5], f"Needle {n}") for n, y in enumerate((-10, 0, 10))]


def test_seeds_and_needles_round_trip_through_an_mrb_bundle(mrml_app, tmp_path):
    scene = mrml_app.scene
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Plan seeds")
    seeds, needles = _seeds(), _needles()
    markups.write_seeds(node, seeds, "I125_Model6702")
    markups.write_needles(node, needles)
    path = save_bundle(scene, tmp_path / "plan.mrb")

    reloaded = load_bundle(path)
    node2 = reloaded.scene.GetFirstNodeByName("Plan seeds")
    got = markups.read_seeds(node2)
    assert [s.label for s in got] == [s.label for s in seeds]
    for a, b in zip(got, seeds):
        assert np.allclose(a.position, b.position, atol=1e-6)  # mm
        assert np.allclose(a.axis, b.axis, atol=1e-8)
        assert a.strength_u == pytest.approx(b.strength_u, rel=1e-12)  # U
    assert markups.source_model_key(node2) == "I125_Model6702"
    got_needles = markups.read_needles(node2)
    assert [n.label for n in got_needles] == [n.label for n in needles]
    for a, b in zip(got_needles, needles):
        assert np.allclose(a.entry, b.entry) and np.allclose(a.tip, b.tip)
        assert np.allclose(a.direction, b.direction)


def test_hand_edited_seeds_are_not_overwritten_without_asking(mrml_app):
    node = mrml_app.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Seeds")
    markups.write_seeds(node, _seeds()[:2])
    with pytest.raises(InputError, match="already hold 2 points"):
        markups.write_seeds(node, _seeds())
    markups.write_seeds(node, _seeds(), overwrite=True)
    assert node.GetNumberOfControlPoints() == 9
    markups.write_needles(node, _needles())
    with pytest.raises(InputError, match="already have 3 needles"):
        markups.write_needles(node, _needles()[:1])
    lines = markups.write_needles(node, _needles()[:1], overwrite=True)
    assert len(markups.needle_nodes(node)) == 1 and markups.needle_nodes(node)[0] is lines[0]
    assert mrml_app.scene.GetNumberOfNodesByClass("vtkMRMLMarkupsLineNode") == 1  # old needles removed


def test_hand_placed_points_need_defaults(mrml_app):
    node = mrml_app.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Seeds")
    node.AddControlPoint(vtk.vtkVector3d(1.0, 2.0, 3.0), "clicked")
    with pytest.raises(InputError, match="seed 'clicked'.*no stored axis"):
        markups.read_seeds(node)
    (seed,) = markups.read_seeds(node, default_strength_u=0.635, default_axis=(0, 0, 2))
    assert np.allclose(seed.position, [1, 2, 3]) and np.allclose(seed.axis, [0, 0, 1])
    assert seed.strength_u == pytest.approx(0.635)


def test_empty_wrong_class_and_bad_needles_are_input_errors(mrml_app):
    scene = mrml_app.scene
    empty = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Seeds")
    with pytest.raises(InputError, match="hold no points"):
        markups.read_seeds(empty)
    line = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", "L")
    with pytest.raises(InputError, match="vtkMRMLMarkupsFiducialNode is needed"):
        markups.read_seeds(line)
    line.AddControlPoint(vtk.vtkVector3d(0.0, 0.0, 0.0))
    with pytest.raises(InputError, match="needs its entry and tip"):
        markups.read_needle(line)


def test_seeds_with_bad_stored_strength_are_refused(mrml_app):
    node = mrml_app.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Seeds")
    node.AddControlPoint(vtk.vtkVector3d(0.0, 0.0, 0.0), "s")
    node.SetNthControlPointDescription(0, '{"axis": [0, 0, 1], "strength_u": -1}')
    with pytest.raises(InputError, match="strength"):
        markups.read_seeds(node)
