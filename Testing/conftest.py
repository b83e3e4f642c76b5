"""Shared fixtures: a headless MRML application (slicer-core) and the synthetic neck case as real nodes."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from SeedBrachyLib.synthetic.phantom import fixed_seed_arrangement, neck_phantom


@pytest.fixture(params=["compiled", "numpy"])
def engine(request):
    """Each dose engine in turn (the compiled one needs numba, a runtime dependency: no skip)."""
    return request.param


@pytest.fixture(scope="session")
def neck_case():
    """The built-in synthetic neck case (pure library objects)."""
    return neck_phantom()


@pytest.fixture
def mrml_app():
    """A fresh vtkMRMLScene set up like Slicer's application (slicer-core), without touching slicer.mrmlScene."""
    pytest.importorskip("slicer", reason="slicer-core is needed for the MRML bridge tests")
    from SeedBrachyLib.mrml.scene import headless_application

    return headless_application(set_global_scene=False)


@pytest.fixture
def case_nodes(mrml_app, neck_case):
    """The neck case in a scene: CT volume, segmentation (one segment per mask), seeds node, empty dose node."""
    from SeedBrachyLib.mrml import markups, segmentations, volumes

    scene = mrml_app.scene
    ct = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Neck CT")
    volumes.update_volume_node(ct, neck_case.ct, neck_case.grid)
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Structures")
    seg.CreateDefaultDisplayNodes()
    ids = {name: segmentations.add_mask_segment(seg, mask, neck_case.grid, name)
           for name, mask in neck_case.masks.items()}
    seeds = fixed_seed_arrangement(neck_case)
    seeds_node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Seeds")
    markups.write_seeds(seeds_node, seeds, "I125_OncoSeed6711")
    dose = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Dose")
    return SimpleNamespace(scene=scene, app=mrml_app, case=neck_case, ct=ct, segmentation=seg, ids=ids,
                           seeds=seeds, seeds_node=seeds_node, dose=dose)


@pytest.fixture
def seedbrachy_module(monkeypatch, mrml_app):
    """SeedBrachy/SeedBrachy.py loaded on slicer-core (slicer.mrmlScene = mrml_app.scene), with minimal stand-ins
    for the Slicer-only ScriptedLoadableModule, parameterNodeWrapper and i18n modules."""
    import importlib.util
    import sys
    import types
    import unittest
    from pathlib import Path

    import slicer

    def module(name, **members):
        stand_in = types.ModuleType(name)
        stand_in.__dict__.update(members)
        monkeypatch.setitem(sys.modules, name, stand_in)

    class Base:
        def __init__(self, *args):
            pass

    class Test(unittest.TestCase):
        def delayDisplay(self, message, msec=None):
            pass

    module("slicer.i18n", tr=lambda text: text, translate=lambda context, text: text)
    module("slicer.ScriptedLoadableModule", ScriptedLoadableModule=Base, ScriptedLoadableModuleWidget=Base,
           ScriptedLoadableModuleLogic=Base, ScriptedLoadableModuleTest=Test)
    module("slicer.parameterNodeWrapper", parameterNodeWrapper=lambda cls: cls, Choice=lambda choices: choices,
           WithinRange=lambda low, high: (low, high))
    monkeypatch.setattr(slicer, "mrmlScene", mrml_app.scene, raising=False)
    path = Path(__file__).resolve().parents[1] / "SeedBrachy" / "SeedBrachy.py"
    spec = importlib.util.spec_from_file_location("SeedBrachyModuleUnderTest", path)
    seedbrachy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seedbrachy)
    return seedbrachy
