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


#: The quick lane (``make test-quick``, ``pytest -m quick``, about 30 s): a few fast tests of every room, by node-id
#: prefix, each able to fail on its room's main fault. Quick tests are never slow, whatever SLOW_TESTS says.
QUICK_TESTS = (
    # physics: TG-43U1 against the published tables and the oracle, both engines on an oblique grid, near the seed
    "test_dose_tg43.py::",
    "test_dose_grid.py::test_oblique_grid_and_rotated_seed_give_same_physical_dose",
    "test_dose_grid.py::test_covering_grid_spans_the_points_with_margin_in_the_given_direction",
    "test_kernel.py::test_points_exact_on_both_engines_and_per_seed_rows_sum_to_total",
    "test_near_seed.py::test_beside_the_seed_the_dose_is_the_tg43_formula_down_to_the_capsule",
    "test_sources.py::",
    # DVH, structures and checks
    "test_dvh.py::test_d90_resolution_far_below_a_tenth_of_a_percent",
    "test_dvh.py::test_evaluate_plan_and_table",
    "test_structures.py::test_partial_voxel_sub_points_by_hand",
    "test_checks.py::",
    "test_radiobiology.py::",
    # planning
    "test_planning_template.py::test_template_holes_spacing_labels_and_plane",
    "test_planning_template.py::test_obstacle_avoidance_rejects_within_margin_keeps_clear",
    "test_planning_loading.py::test_anderson_formula",
    "test_planning_optimize.py::test_unknown_oar_limit_is_rejected",
    "test_incremental.py::test_sync_follows_a_seed_list_with_single_seed_edits",
    "test_robustness.py::test_wilson_interval_matches_scipy",
    # post-implant: detection, registration geometry, comparison
    "test_postimplant_detection.py::test_confidence_and_review_marking",
    "test_postimplant_detection.py::test_bad_input",
    "test_postimplant_registration.py::test_image_round_trip_oblique_keeps_geometry_and_voxels",
    "test_postimplant_registration.py::test_resample_follows_the_target_to_source_convention_on_oblique_grids",
    "test_postimplant_registration.py::test_masked_ncc_by_fft_matches_a_direct_sum_at_every_shift",
    "test_postimplant_comparison.py::test_needle_axis_comes_from_the_nearest_needle",
    # DICOM RT, reports, cohort statistics, command line
    "test_dicomrt.py::test_rtplan_attributes_as_the_standard_names_them",
    "test_dicomrt.py::test_contour_filling_against_analytic_areas",
    "test_dicomrt.py::test_rtdose_round_trip_within_stored_precision",
    "test_report.py::test_existing_report_is_refused_before_any_computation",
    "test_report.py::test_needle_angles",
    "test_cohort_descriptive.py::",
    "test_cli.py::test_version",
    "test_cli.py::test_demo_out_naming_a_file_fails_at_once",
    # settings, MRML bridge, the module's static checks, house rules, packaging
    "test_settings.py::",
    "test_progress.py::",
    "test_mrml_volumes.py::",
    "test_mrml_markups.py::",
    "test_module_ui.py::test_every_widget_the_module_uses_exists_with_the_expected_class",
    "test_module_ui.py::test_every_setting_has_its_widget_with_the_settings_range_and_choices",
    "test_module_ui.py::test_every_button_runs_a_logic_entry_that_accepts_what_the_panel_gives_it",
    "test_module_ui.py::test_every_widget_and_logic_method_has_a_docstring",
    "test_module_ui.py::test_every_mrml_widget_gets_the_scene_from_the_top_level_widget",
    "test_module_ui.py::test_setup_connects_every_button_selector_and_tooltip_and_binds_the_parameter_node",
    "test_import_rules.py::test_rule_checker_sees_a_violation",
    "test_cmake_lists.py::",
    "test_quick_lane.py::",
)


def _quick_only(config):
    return config.getoption("markexpr", "") == "quick"


def pytest_ignore_collect(collection_path, config):
    """``-m quick`` collects only the files of :data:`QUICK_TESTS` (importing every test module costs more than
    the quick lane itself)."""
    if _quick_only(config) and collection_path.suffix == ".py" and collection_path.name.startswith("test_"):
        return not any(prefix.startswith(collection_path.name + "::") for prefix in QUICK_TESTS)
    return None


def pytest_collection_modifyitems(config, items):
    """Mark the tests of :data:`QUICK_TESTS` quick and those of :data:`SLOW_TESTS` (but not quick) slow."""
    for item in items:
        nodeid = item.nodeid.split("/")[-1]
        if nodeid.startswith(QUICK_TESTS):
            item.add_marker(pytest.mark.quick)
        elif nodeid.startswith(SLOW_TESTS):
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

    class Widget(Base):
        def setup(self):
            pass

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

            def AddObserver(self, event, callback, priority=0.0):  # as Slicer's wrapper: the node's own
                return self.parameterNode.AddObserver(event, callback, priority)

            def RemoveObserver(self, tag):
                self.parameterNode.RemoveObserver(tag)

            def connectGui(self, gui):  # records the binding; Slicer's connectors are not in slicer-core
                object.__setattr__(self, "connectedGui", gui)
                return 1

            def disconnectGui(self, tag):
                object.__setattr__(self, "connectedGui", None)

            def __setattr__(self, name, value):
                parameters.write_settings(self.parameterNode, **{name: value})

        return Wrapper

    module("slicer.i18n", tr=lambda text: text, translate=lambda context, text: text)
    module("slicer.ScriptedLoadableModule", ScriptedLoadableModule=Module, ScriptedLoadableModuleWidget=Widget,
           ScriptedLoadableModuleLogic=Logic, ScriptedLoadableModuleTest=Test)
    module("slicer.parameterNodeWrapper", parameterNodeWrapper=parameter_node_wrapper, Choice=Choice,
           WithinRange=WithinRange)
    monkeypatch.setattr(slicer, "mrmlScene", mrml_app.scene, raising=False)
    path = Path(__file__).resolve().parents[1] / "SeedBrachy" / "SeedBrachy.py"
    spec = importlib.util.spec_from_file_location("SeedBrachyModuleUnderTest", path)
    seedbrachy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seedbrachy)
    return seedbrachy
