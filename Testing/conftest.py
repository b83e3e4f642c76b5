"""Shared fixtures: a headless MRML application (slicer-core) and the synthetic neck case as real nodes."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from SeedBrachyLib.synthetic.phantom import neck_phantom


@pytest.fixture(params=["compiled", "numpy"])
def engine(request):
    """Each dose engine in turn (the compiled one needs numba, a runtime dependency: no skip)."""
    return request.param


#: Tests of more than a few seconds (end-to-end planning, registration, the module self-test), by node-id prefix:
#: marked ``slow`` so that ``make test-fast`` (``pytest -m "not slow"``) runs the rest in well under a minute.
#: Test files may also mark their own (``@pytest.mark.slow``).
SLOW_TESTS = (
    "test_demo.py::",
    "test_planning_optimize.py::test_optimised_plan_meets_goals",
    "test_module_ui.py::test_module_self_test_runs_headless",
    "test_mrml_checks.py::",
    "test_mrml_postimplant.py::",
    "test_mrml_dosimetry.py::",
    "test_mrml_demo_scene.py::test_demo_bundle",
    "test_postimplant_registration.py::",
    "test_postimplant_detection.py::test_sensitivity_and_precision",
    "test_robustness.py::test_needle_depth_shift_d90_distribution",   # about 6 s of CPU
)


def pytest_collection_modifyitems(config, items):
    """Mark the tests of :data:`SLOW_TESTS` as slow."""
    for item in items:
        if item.nodeid.split("/")[-1].startswith(SLOW_TESTS):
            item.add_marker(pytest.mark.slow)


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
    """The neck case in a scene (SeedBrachyLib.demo.scene.add_case_nodes, as the module's self-test): CT volume,
    segmentation (GTV, CTV made from it, one segment per other mask), seeds node, empty dose node."""
    from SeedBrachyLib.demo.scene import add_case_nodes

    c = add_case_nodes(mrml_app.scene, neck_case)
    return SimpleNamespace(scene=mrml_app.scene, app=mrml_app, case=neck_case, ct=c.ct, segmentation=c.segmentation,
                           ids=c.ids, seeds=c.seeds, seeds_node=c.seedsNode, dose=c.dose, model=c.model,
                           values=c.values)


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

    from SeedBrachyLib.mrml import parameters

    class Base:
        def __init__(self, *args):
            pass

    class Module(Base):
        def __init__(self, parent):
            self.parent = parent

    class Logic(Base):
        def getParameterNode(self):
            return parameters.parameter_node(slicer.mrmlScene)

    class Test(unittest.TestCase):
        def delayDisplay(self, message, msec=None):
            pass

    class Choice:
        def __init__(self, choices):
            self.choices = list(choices)

    class WithinRange:
        def __init__(self, minimum, maximum):
            self.minimum, self.maximum = minimum, maximum

    def parameter_node_wrapper(cls):
        """Typed access stored as Slicer's wrapper stores it (SeedBrachyLib.mrml.parameters), defaults from ``cls``."""

        class Wrapper:
            __annotations__ = dict(cls.__annotations__)
            wrapped = cls

            def __init__(self, node):
                object.__setattr__(self, "parameterNode", node)
                unset = {n: getattr(cls, n) for n in cls.__annotations__ if hasattr(cls, n)
                         and not node.HasParameter(n)}
                parameters.write_settings(node, **unset)

            def __getattr__(self, name):
                values = parameters.read_settings(self.parameterNode)
                if name not in values:
                    raise AttributeError(name)
                return values[name]

            def StartModify(self):  # as Slicer's wrapper (parameterNodeWrapper/wrapper.py): the node's own
                return self.parameterNode.StartModify()

            def EndModify(self, was_modifying):
                self.parameterNode.EndModify(was_modifying)

            def __setattr__(self, name, value):
                parameters.write_settings(self.parameterNode, **{name: value})

        return Wrapper

    module("slicer.i18n", tr=lambda text: text, translate=lambda context, text: text)
    module("slicer.ScriptedLoadableModule", ScriptedLoadableModule=Module, ScriptedLoadableModuleWidget=Base,
           ScriptedLoadableModuleLogic=Logic, ScriptedLoadableModuleTest=Test)
    module("slicer.parameterNodeWrapper", parameterNodeWrapper=parameter_node_wrapper, Choice=Choice,
           WithinRange=WithinRange)
    monkeypatch.setattr(slicer, "mrmlScene", mrml_app.scene, raising=False)
    path = Path(__file__).resolve().parents[1] / "SeedBrachy" / "SeedBrachy.py"
    spec = importlib.util.spec_from_file_location("SeedBrachyModuleUnderTest", path)
    seedbrachy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seedbrachy)
    return seedbrachy
