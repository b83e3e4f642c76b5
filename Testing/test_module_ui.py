"""Static checks of the Slicer module: widgets the code uses exist in the .ui with the right class, and the
typed parameter node matches both the .ui bindings and the headless bridge's settings (no Slicer needed)."""

import ast
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from SeedBrachyLib import RESEARCH_NOTICE

ROOT = Path(__file__).resolve().parents[1]
MODULE = ROOT / "SeedBrachy" / "SeedBrachy.py"
LOGIC = ROOT / "SeedBrachyLib" / "mrml" / "logic.py"
UI = ROOT / "SeedBrachy" / "Resources" / "UI" / "SeedBrachy.ui"

#: Widget class expected from a widget name's suffix (first match wins).
SUFFIX_CLASSES = (("CollapsibleButton", "ctkCollapsibleButton"), ("Button", "QPushButton"), ("Label", "QLabel"),
                  ("SegmentSelector", "qMRMLSegmentSelectorWidget"), ("Selector", "qMRMLNodeComboBox"),
                  ("SeedSpinBox", "QSpinBox"), ("SpinBox", "QDoubleSpinBox"), ("ComboBox", "QComboBox"),
                  ("LineEdit", "QLineEdit"), ("CheckBox", "QCheckBox"))
#: Signals, methods and properties the module may use on each widget class (Slicer/Qt API).
CLASS_API = {
    "QPushButton": {"connect", "enabled", "toolTip", "text", "clicked(bool)"},
    "QLabel": {"text", "toolTip"},
    "QLineEdit": {"text", "toolTip"},
    "QCheckBox": {"connect", "enabled", "checked", "toolTip", "toggled(bool)"},
    "qMRMLSegmentSelectorWidget": {"connect", "currentNodeChanged(vtkMRMLNode*)", "currentSegmentChanged(QString)",
                                   "setCurrentNode", "setCurrentSegmentID", "currentNode", "currentSegmentID",
                                   "blockSignals", "segmentSelectionChanged(QStringList)", "selectedSegmentIDs",
                                   "setSelectedSegmentIDs"},
}
#: Parameters bound by hand (their widget cannot carry SlicerParameterName): the segment selectors.
MANUAL_PARAMETERS = {"segmentation", "gtvSegmentID", "ctvSegmentID", "nogoSegmentIDs", "oarSegmentID"}


def expected_class(name):
    return next((cls for suffix, cls in SUFFIX_CLASSES if name.endswith(suffix)), None)


@pytest.fixture(scope="module")
def ui_widgets():
    """name -> (class, {property: value}) of every widget in the .ui."""
    widgets = {}
    for w in ET.parse(UI).getroot().iter("widget"):
        props = {}
        for p in w.findall("property"):
            child = p[0]
            props[p.get("name")] = ([s.text for s in child] if child.tag == "stringlist" else child.text)
        widgets[w.get("name")] = (w.get("class"), props)
    return widgets


@pytest.fixture(scope="module")
def tree():
    return ast.parse(MODULE.read_text())


def _ui_uses(tree):
    """(widget name, used member or signal) for every ``self.ui.<name>...`` in the module."""
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "ui" \
                and isinstance(node.value.value, ast.Name) and node.value.value.id == "self":
            uses.append((node.attr, None))
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                and isinstance(node.value.value, ast.Attribute) and node.value.value.attr == "ui":
            uses.append((node.value.attr, node.attr))
    for node in ast.walk(tree):  # signals named in .connect("signal", slot)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "connect" \
                and isinstance(node.func.value, ast.Attribute) and isinstance(node.func.value.value, ast.Attribute) \
                and node.func.value.value.attr == "ui":
            uses.append((node.func.value.attr, node.args[0].value))
    return uses


def test_every_widget_the_module_uses_exists_with_the_expected_class(tree, ui_widgets):
    uses = _ui_uses(tree)
    assert len({name for name, _ in uses}) >= 5
    for name, member in uses:
        assert name in ui_widgets, f"self.ui.{name} is used in SeedBrachy.py but missing from SeedBrachy.ui"
        cls = ui_widgets[name][0]
        assert cls == expected_class(name), f"{name} is a {cls} in the .ui; its name says {expected_class(name)}"
        if member is not None and cls in CLASS_API:
            assert member in CLASS_API[cls], f"self.ui.{name}.{member}: not an API of {cls}"


def test_ui_has_the_eight_collapsible_sections(ui_widgets):
    sections = {props["text"] for cls, props in ui_widgets.values() if cls == "ctkCollapsibleButton"}
    assert sections == {"Inputs", "Source and prescription", "Needles and seeds", "Dose", "Evaluation",
                        "Post-implant", "DICOM RT", "Robustness, radiobiology, printed template"}


def test_every_setting_has_its_widget_with_the_settings_range_and_choices(ui_widgets):
    """Each SlicerParameterName binds a setting or node parameter; spin boxes carry the setting's range, combo
    boxes bind settings with choices (the connector fills them from the Choice); every setting is in the panel."""
    from SeedBrachyLib.mrml.parameters import NODE_PARAMETERS
    from SeedBrachyLib.settings import SETTINGS

    bound = {}
    for name, (cls, props) in ui_widgets.items():
        parameter = props.get("SlicerParameterName")
        if parameter is None:
            continue
        assert parameter in SETTINGS or parameter in NODE_PARAMETERS, f"widget {name} binds unknown '{parameter}'"
        if cls == "qMRMLNodeComboBox":
            assert props["nodeTypes"] == [NODE_PARAMETERS[parameter]], name
        elif cls in ("QDoubleSpinBox", "QSpinBox"):
            setting = SETTINGS[parameter]
            assert setting.kind is (float if cls == "QDoubleSpinBox" else int), name
            assert (float(props["minimum"]), float(props["maximum"])) == (setting.minimum, setting.maximum), name
        elif cls == "QComboBox":
            assert SETTINGS[parameter].allowed(), name
        else:
            pytest.fail(f"widget {name} of class {cls} cannot be bound by parameterNodeWrapper")
        assert parameter not in bound, f"{parameter} bound twice ({bound.get(parameter)}, {name})"
        bound[parameter] = name
    assert set(bound) | MANUAL_PARAMETERS == set(SETTINGS) | set(NODE_PARAMETERS)


def test_the_typed_parameter_node_is_generated_from_the_settings(seedbrachy_module):
    """The wrapper class holds every setting with its type, Choice or WithinRange and default, and the nodes."""
    import typing

    from SeedBrachyLib.mrml.parameters import NODE_PARAMETERS, PARAMETERS
    from SeedBrachyLib.settings import SETTINGS

    cls = seedbrachy_module.SeedBrachyParameterNode.wrapped
    hints = typing.get_type_hints(cls, include_extras=True)  # what Slicer's parameterNodeWrapper reads
    assert list(hints) == list(PARAMETERS)
    checked = 0
    for name, setting in SETTINGS.items():
        base, *extras = typing.get_args(hints[name]) or (hints[name],)
        assert base is setting.kind and getattr(cls, name) == setting.default, name
        (extra,) = extras
        if setting.allowed():
            assert extra.choices == list(setting.allowed()) and setting.default in extra.choices, name
        else:
            assert (extra.minimum, extra.maximum) == (setting.minimum, setting.maximum), name
            assert extra.minimum <= setting.default <= extra.maximum, name
        checked += 1
    assert checked == len(SETTINGS) >= 20
    for name, kind in NODE_PARAMETERS.items():
        hint = hints[name]
        if kind is list:
            assert typing.get_args(hint) == (str,), name
        elif kind is str:
            assert hint is str and getattr(cls, name) == "", name
        else:
            assert hint.__name__ == kind, name


def test_module_follows_the_template_and_cites_its_sources(tree):
    assert "from slicer.i18n import tr as _" in MODULE.read_text()  # the .ui binding: test_setup_connects_...
    classes = {n.name: [b.id for b in n.bases if isinstance(b, ast.Name)] for n in ast.walk(tree)
               if isinstance(n, ast.ClassDef)}
    assert classes["SeedBrachy"] == ["ScriptedLoadableModule"]
    assert "ScriptedLoadableModuleWidget" in classes["SeedBrachyWidget"]
    assert classes["SeedBrachyLogic"] == ["ScriptedLoadableModuleLogic", "ModuleLogic"]  # its methods: the library's
    assert classes["SeedBrachyTest"] == ["ScriptedLoadableModuleTest"]
    logic = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "SeedBrachyLogic")
    for source in (ast.unparse(logic), LOGIC.read_text()):
        assert "self.ui" not in source, "the Logic must work without the widget"
        assert "slicer.mrmlScene" not in source


def test_module_help_states_every_published_goal_and_the_dose_formalism(seedbrachy_module):
    """The help text a user reads names each indication's published limit and first author, and TG-43U1."""
    from types import SimpleNamespace

    from SeedBrachyLib.checks import INDICATIONS

    parent = SimpleNamespace()
    seedbrachy_module.SeedBrachy(parent)
    text = " ".join((parent.helpText + parent.acknowledgementText).split())
    for indication, goals in INDICATIONS.items():
        for goal in goals:
            if goal.fraction_of_rx is None and goal.unit == "Gy":
                assert f"{goal.limit:g} Gy" in text, (indication, goal.name)
                assert goal.source.split()[0] in text, (indication, goal.source.split()[0])
    for needed in ("TG-43U1", "Rivard MJ", "Med Phys 2004", "Research use only"):
        assert needed in text, needed
    assert parent.categories == ["Radiotherapy"]


def test_every_mrml_widget_gets_the_scene_from_the_top_level_widget():
    """As Slicer's template .ui: qMRMLWidget's mrmlSceneChanged(vtkMRMLScene*) -> each MRML widget's setMRMLScene."""
    root = ET.parse(UI).getroot()
    top = root.find("widget")
    classes = {w.get("name"): w.get("class") for w in top.iter("widget")}
    connections = {(c.findtext("sender"), c.findtext("signal"), c.findtext("receiver"), c.findtext("slot"))
                   for c in root.iter("connection")}
    mrml_widgets = {name for name, cls in classes.items() if cls.startswith("qMRML") and name != top.get("name")}
    assert top.get("class") == "qMRMLWidget" and len(mrml_widgets) >= 10
    for name in mrml_widgets:
        assert (top.get("name"), "mrmlSceneChanged(vtkMRMLScene*)", name, "setMRMLScene(vtkMRMLScene*)") \
            in connections, f"{name} never gets the scene: add the mrmlSceneChanged connection"
    assert {c[2] for c in connections} <= set(classes), "a connection names a widget missing from the .ui"
    declared = {c.findtext("class"): c.findtext("header") for c in root.iter("customwidget")}
    plain = {"QLabel", "QPushButton", "QComboBox", "QDoubleSpinBox", "QSpinBox", "QLineEdit", "QCheckBox"}
    for cls in set(classes.values()) - plain:
        assert declared.get(cls) == f"{cls}.h", f"custom widget {cls} needs <customwidget> with header {cls}.h"


def _bind(signature, call, where):
    """Bind a call's argument count and keyword names to ``signature`` (TypeError -> test failure)."""
    if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
        return
    try:
        signature.bind(*call.args, **{k.arg: k.value for k in call.keywords})
    except TypeError as exc:
        pytest.fail(f"{where} (line {call.lineno}): {ast.unparse(call)[:100]}: {exc}")


SELFTEST = ROOT / "SeedBrachyLib" / "demo" / "selftest.py"


def test_widget_and_self_test_calls_to_the_logic_match_its_methods(tree, seedbrachy_module):
    """Every ``self.logic.X(...)`` of the Widget and ``logic.X(...)`` of the self-test steps binds to the Logic's
    real signature (aliases of library functions included)."""
    import inspect

    logic = seedbrachy_module.SeedBrachyLogic
    calls = [(n, "SeedBrachy.py") for n in ast.walk(tree)]
    calls += [(n, "selftest.py") for n in ast.walk(ast.parse(SELFTEST.read_text()))]
    checked = 0
    for call, where in calls:
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) \
                and ast.unparse(call.func.value) in ("self.logic", "logic"):
            name = call.func.attr
            assert hasattr(logic, name), f"{where} line {call.lineno}: SeedBrachyLogic has no method {name}"
            _bind(inspect.signature(getattr(logic(), name)), call, f"{where}: SeedBrachyLogic.{name}")
            checked += 1
    assert checked >= 12, checked


def test_calls_into_seedbrachylib_match_the_library(tree):
    """Every name the module and its Logic's methods (mrml/logic.py) import from SeedBrachyLib exists, and every
    call to it binds to the real signature."""
    import importlib
    import inspect

    pytest.importorskip("slicer", reason="SeedBrachyLib.mrml needs slicer-core")
    logic = ast.parse(LOGIC.read_text())
    for source, package, names, at_least in ((tree, "", {"actions", "settings"}, 2),
                                             (logic, "SeedBrachyLib.mrml", {"actions", "dosimetry", "planning"}, 3)):
        bound, checked = {}, 0
        for node in ast.walk(source):
            if not isinstance(node, ast.ImportFrom):
                continue
            module_name = (package.rsplit(".", node.level - 1)[0] + (f".{node.module}" if node.module else "")
                           if node.level else node.module)
            if module_name and module_name.split(".")[0] == "SeedBrachyLib":
                module = importlib.import_module(module_name)
                for alias in node.names:
                    if hasattr(module, alias.name):
                        bound[alias.asname or alias.name] = getattr(module, alias.name)
                    else:  # a submodule
                        bound[alias.asname or alias.name] = importlib.import_module(f"{module_name}.{alias.name}")
        assert names <= set(bound), package
        for call in (n for n in ast.walk(source) if isinstance(n, ast.Call)):
            target = None
            if isinstance(call.func, ast.Name) and call.func.id in bound:
                target, name = bound[call.func.id], call.func.id
            elif isinstance(call.func, ast.Attribute) and isinstance(call.func.value, ast.Name) \
                    and inspect.ismodule(bound.get(call.func.value.id)):
                name = f"{call.func.value.id}.{call.func.attr}"
                assert hasattr(bound[call.func.value.id], call.func.attr), f"line {call.lineno}: {name} does not exist"
                target = getattr(bound[call.func.value.id], call.func.attr)
            if target is not None and callable(target) and not inspect.isclass(target):
                _bind(inspect.signature(target), call, name)
                checked += 1
        assert checked >= at_least, package


def test_needle_entry_and_nogo_settings_round_trip_and_reach_the_planner(case_nodes):
    """Settings stored as the wrapper stores them; entry "anterior" gives needles along -A clear of the no-go."""
    import numpy as np

    from SeedBrachyLib import settings
    from SeedBrachyLib.errors import InputError
    from SeedBrachyLib.mrml import markups, parameters, planning
    from SeedBrachyLib.planning.template import NEEDLE_ENTRY_DIRECTIONS

    c = case_nodes
    node = parameters.parameter_node(c.scene)
    assert parameters.read_settings(node)["nogoSegmentIDs"] == []
    parameters.write_settings(node, needleEntry="anterior", nogoSegmentIDs=[c.ids["Carotid"], c.ids["Trachea"]])
    parameters.write_settings(node, nogoSegmentIDs=[c.ids["Carotid"]])  # shorter list: stale items removed
    assert (node.GetParameter("nogoSegmentIDs_len"), node.GetParameter("nogoSegmentIDs_1")) == ("1", "")
    stored = parameters.read_settings(node)
    assert stored["needleEntry"] == "anterior" and stored["nogoSegmentIDs"] == [c.ids["Carotid"]]
    with pytest.raises(InputError, match="list of strings"):
        parameters.write_settings(node, nogoSegmentIDs=c.ids["Carotid"])
    for side, direction in NEEDLE_ENTRY_DIRECTIONS.items():
        assert np.isclose(np.linalg.norm(direction), 1.0), side

    carotid = c.case.masks["Carotid"]

    def plan(entry, nogo):
        seeds_node = c.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", f"Planned from {entry}")
        planning.plan_seeds(c.ct, c.segmentation, c.ids["CTV"], seeds_node,
                            settings.resolve(planningMethod="uniform", needleEntry=entry), nogo_segment_ids=nogo)
        needles = markups.read_needles(seeds_node)
        assert needles
        crossing = 0
        for needle in needles:
            entry_ras, tip = np.asarray(needle.entry), np.asarray(needle.tip)
            assert np.allclose((tip - entry_ras) / np.linalg.norm(tip - entry_ras),
                               NEEDLE_ENTRY_DIRECTIONS[entry], atol=1e-6)
            path = entry_ras + np.linspace(0.0, 1.0, 200)[:, None] * (tip - entry_ras)
            ijk = np.rint(c.case.grid.to_ijk(path)).astype(int)
            inside = np.all((ijk >= 0) & (ijk < np.array(c.case.grid.dims)), axis=1)
            crossing += bool(carotid[ijk[inside, 2], ijk[inside, 1], ijk[inside, 0]].any())
        return needles, crossing

    needles, _ = plan(stored["needleEntry"], ())
    assert all(n.entry[1] > n.tip[1] for n in needles)  # "anterior": entered from the anterior side
    # from the right, some template needle crosses the carotid unless it is a no-go segment
    assert plan("right", ())[1] > 0
    assert plan("right", stored["nogoSegmentIDs"])[1] == 0


def test_module_self_test_runs_headless(seedbrachy_module, monkeypatch):
    """SeedBrachyTest.runTest on slicer-core, with minimal stand-ins for the Slicer-only ScriptedLoadableModule,
    parameterNodeWrapper and i18n modules (conftest.seedbrachy_module): every step of
    SeedBrachyLib.demo.selftest runs, each through the module's Logic, and passes."""
    import unittest

    from SeedBrachyLib.demo import selftest

    ran = []

    def recorded(step):
        def run(test, logic, scene):
            ran.append((step.__name__, type(logic).__name__))
            step(test, logic, scene)

        return run

    monkeypatch.setattr(selftest, "STEPS", tuple(recorded(step) for step in selftest.STEPS))
    result = unittest.TestResult()
    seedbrachy_module.SeedBrachyTest("runTest").run(result)
    assert result.wasSuccessful() and result.testsRun == 1, result.errors + result.failures
    assert ran == [("dose_and_checks", "SeedBrachyLogic"), ("planning", "SeedBrachyLogic"),
                   ("post_implant", "SeedBrachyLogic")]


def test_every_button_runs_a_logic_entry_that_accepts_what_the_panel_gives_it(seedbrachy_module, ui_widgets):
    """Each button of parameters.ACTION_INPUTS (and Import DICOM) has its PanelAction (the Widget connects them
    all): the button and its results label exist in the .ui, the Logic has the entry's explicit-node method
    (``X`` beside ``XUsingParameterNode``), the entry accepts (parameter node,
    progress= when a progress text is given, the keywords of what the user chooses first), the outputs shown are
    node parameters."""
    import inspect

    from SeedBrachyLib.mrml.actions import ASKS, GUARDED_OUTPUTS, PANEL_ACTIONS
    from SeedBrachyLib.mrml.parameters import ACTION_INPUTS, NODE_PARAMETERS

    assert set(PANEL_ACTIONS) == set(ACTION_INPUTS) | {"importDicomButton"}
    assert {"robustnessButton", "radiobiologyButton", "exportTemplateButton"} <= set(PANEL_ACTIONS)
    logic = seedbrachy_module.SeedBrachyLogic()
    for button, action in PANEL_ACTIONS.items():
        assert ui_widgets[button][0] == "QPushButton", button
        assert action.results_label is None or ui_widgets[action.results_label][0] == "QLabel", button
        assert (action.text is None) == (action.results_label is None), button
        keywords = dict.fromkeys(ASKS[action.ask], None) | ({"progress": None} if action.label else {})
        inspect.signature(getattr(logic, action.entry)).bind(None, **keywords)
        explicit = action.entry.removesuffix("UsingParameterNode")  # the template's pair: explicit nodes, entry
        assert explicit != action.entry and callable(getattr(logic, explicit, None)), button
        assert (action.ask == "replace") == (button in GUARDED_OUTPUTS), button
        assert action.ask not in ("folder", "file") or action.caption, button
        assert all(name in NODE_PARAMETERS for name in action.shown), button


def test_every_widget_and_logic_method_has_a_docstring(seedbrachy_module):
    """Issue 9: a docstring on every Widget and Logic method, those the Logic takes from the library
    (SeedBrachyLib.mrml.logic.ModuleLogic) and its aliases of library functions included (their docstrings are the
    library's)."""
    import inspect

    from SeedBrachyLib.mrml.logic import ModuleLogic

    for cls, at_least in ((seedbrachy_module.SeedBrachyWidget, 10), (seedbrachy_module.SeedBrachyLogic, 2),
                          (ModuleLogic, 30)):
        own = {name: value for name, value in vars(cls).items() if not name.startswith("__") or name == "__init__"}
        functions = {name: getattr(cls, name) for name, value in own.items()
                     if inspect.isfunction(value) or isinstance(value, staticmethod)}
        assert len(functions) >= at_least, cls.__name__
        undocumented = [name for name, f in functions.items() if not (f.__doc__ or "").strip()]
        assert not undocumented, (cls.__name__, undocumented)


@pytest.fixture
def panel(seedbrachy_module, case_nodes, monkeypatch):
    """The Widget on slicer-core, its parameter node holding the neck case: what only Slicer's application has
    (Qt file dialogs, progress dialog, message boxes, views) is replaced by recorders."""
    import contextlib
    import sys
    import types
    from types import SimpleNamespace

    import slicer

    c = case_nodes
    seen = SimpleNamespace(errors=[], dialogs=[], layers=[], charts=[], tables=[], questions=[], file="")

    @contextlib.contextmanager
    def try_with_error_display(message=None, show=True, waitCursor=False):  # as slicer.util's: shows, raises
        try:
            yield
        except Exception as error:
            seen.errors.append(f"{message}\n\n{error}")
            raise

    class Dialog:
        wasCanceled = False

        def __init__(self, **options):
            self.options, self.values, self.closed = options, [], False
            seen.dialogs.append(self)

        def setValue(self, value):
            self.values.append(value)

        def setLabelText(self, text):
            pass

        def close(self):
            self.closed = True

    monkeypatch.setattr(slicer.util, "tryWithErrorDisplay", try_with_error_display)
    monkeypatch.setattr(slicer.util, "createProgressDialog", lambda **options: Dialog(**options))
    monkeypatch.setattr(slicer.util, "setSliceViewerLayers", lambda **layers: seen.layers.append(layers))
    monkeypatch.setattr(slicer.util, "confirmYesNoDisplay", lambda question: seen.questions.append(question))
    plots = SimpleNamespace(logic=lambda: SimpleNamespace(ShowChartInLayout=seen.charts.append))
    monkeypatch.setattr(slicer, "modules", SimpleNamespace(plots=plots), raising=False)
    selection = SimpleNamespace(SetActiveTableID=seen.tables.append)
    application_logic = SimpleNamespace(GetSelectionNode=lambda: selection, PropagateTableSelection=lambda: None)
    monkeypatch.setattr(slicer, "app", SimpleNamespace(processEvents=lambda: None,
                                                       applicationLogic=lambda: application_logic), raising=False)
    qt = types.ModuleType("qt")
    qt.QFileDialog = SimpleNamespace(getSaveFileName=lambda *args: seen.file)
    monkeypatch.setitem(sys.modules, "qt", qt)

    widget = seedbrachy_module.SeedBrachyWidget()
    widget.parent = None
    widget.resourcePath = lambda name: str(ROOT / "SeedBrachy" / "Resources" / name)
    widget.logic = seedbrachy_module.SeedBrachyLogic()
    widget.ui = SimpleNamespace(**{name: SimpleNamespace(text="") for name in (
        "resultsLabel", "postImplantResultsLabel", "dicomResultsLabel", "beyondResultsLabel")})
    p = widget.logic.getParameterNode()
    p.ctVolume, p.segmentation, p.seeds, p.doseVolume = c.ct, c.segmentation, c.seeds_node, c.dose
    p.gtvSegmentID, p.ctvSegmentID = c.ids["GTV"], c.ids["CTV"]
    p.dvhTable = c.scene.AddNewNodeByClass("vtkMRMLTableNode", "DVH")
    p.dvhChart = c.scene.AddNewNodeByClass("vtkMRMLPlotChartNode", "DVH chart")
    widget._parameterNode = p
    return widget, seen, c


@pytest.mark.slow
def test_the_panel_runs_its_buttons_shows_results_errors_and_cancels(panel):
    """onAction as a click runs it: Compute dose under a progress dialog (closed after), the dose shown over the
    CT; Evaluate without one, its summary in the panel and the DVH chart shown; a failing action shows its error
    and returns; Cancel stops quietly; a file dialog left empty runs nothing."""
    widget, seen, c = panel
    widget.onAction("computeDoseButton")
    assert not seen.errors, seen.errors
    (dialog,) = seen.dialogs
    assert dialog.closed and dialog.options["labelText"] == "Computing dose..." and dialog.values[-1] < 100
    assert dialog.values == sorted(dialog.values) and len(dialog.values) >= 2
    assert seen.layers == [{"background": c.ct, "foreground": c.dose, "foregroundOpacity": 0.5}]
    assert c.dose.GetImageData().GetPointData().GetScalars().GetRange()[1] > 0

    widget.onAction("evaluateButton")
    text = widget.ui.resultsLabel.text
    assert not seen.errors and "GTV: D90 = " in text and text.endswith(RESEARCH_NOTICE), text
    assert seen.charts == [widget._parameterNode.dvhChart] and len(seen.dialogs) == 1

    widget.onAction("makeCtvButton")  # the case has its CTV already: refused, shown, nothing raised
    assert len(seen.errors) == 1 and seen.errors[0].startswith("Making the CTV failed.\n\n")
    assert "already has a segment 'CTV'" in seen.errors[0]

    class Cancelling(type(seen.dialogs[0])):
        wasCanceled = True

    import slicer

    slicer.util.createProgressDialog = lambda **options: Cancelling(**options)  # restored by monkeypatch
    seen.layers.clear()
    widget.onAction("computeDoseButton")
    assert len(seen.errors) == 1 and not seen.layers and seen.dialogs[-1].closed

    seen.file = ""  # the save dialog cancelled: no template, no dialog
    widget.onAction("exportTemplateButton")
    assert len(seen.dialogs) == 2 and len(seen.errors) == 1 and widget.ui.beyondResultsLabel.text == ""


class FakeWidget:
    """A widget of the .ui as the module uses it: connections recorded, properties from the .ui, the segment
    selectors' node and segment IDs kept."""

    def __init__(self, cls, props):
        self.cls, self.props, self.connections = cls, props, {}
        self.text = self.toolTip = ""
        self.enabled, self.checked, self.blocked = True, False, False
        self.node, self.segment, self.segments = None, "", []

    def connect(self, signal, slot):
        self.connections[signal] = slot

    def property(self, name):
        return self.props.get(name)

    def setMRMLScene(self, scene):
        self.scene = scene

    def setCurrentNode(self, node):
        self.node = node

    def currentNode(self):
        return self.node

    def setCurrentSegmentID(self, segment_id):
        self.segment = segment_id

    def currentSegmentID(self):
        return self.segment

    def setSelectedSegmentIDs(self, segment_ids):
        self.segments = list(segment_ids)

    def selectedSegmentIDs(self):
        return list(self.segments)

    def blockSignals(self, block):
        was, self.blocked = self.blocked, block
        return was


def test_setup_connects_every_button_selector_and_tooltip_and_binds_the_parameter_node(
        seedbrachy_module, case_nodes, ui_widgets, monkeypatch):
    """setup() on the real .ui's widgets (recorders for Qt): each button's click runs its own action, the
    tooltips are the settings' help, the parameter node is bound (the CT chosen), the buttons say what they
    miss; the segment selectors follow the parameter node and write back to it, a new segmentation clears them."""
    import sys
    import types
    from types import SimpleNamespace

    import slicer

    from SeedBrachyLib.mrml.actions import PANEL_ACTIONS
    from SeedBrachyLib.settings import SETTINGS

    c = case_nodes
    widgets = {name: FakeWidget(cls, props) for name, (cls, props) in ui_widgets.items()}
    top = next(w for w in widgets.values() if w.cls == "qMRMLWidget")
    top.findChildren = lambda cls: list(widgets.values())
    monkeypatch.setattr(slicer.util, "loadUI", lambda path: top if path.endswith("UI/SeedBrachy.ui") else None)
    monkeypatch.setattr(slicer.util, "childWidgetVariables", lambda ui: SimpleNamespace(**widgets))
    qt = types.ModuleType("qt")
    qt.QTimer = lambda: FakeWidget("QTimer", {})
    monkeypatch.setitem(sys.modules, "qt", qt)
    for timer_method in ("setSingleShot", "setInterval", "start", "stop"):
        monkeypatch.setattr(FakeWidget, timer_method, lambda self, *args: None, raising=False)

    widget = seedbrachy_module.SeedBrachyWidget()
    widget.parent = SimpleNamespace(isEntered=True)
    widget.layout = SimpleNamespace(addWidget=lambda w: None)
    widget.resourcePath = lambda name: str(ROOT / "SeedBrachy" / "Resources" / name)
    widget.setup()
    ui, p = widget.ui, widget._parameterNode
    assert top.scene is slicer.mrmlScene and p.connectedGui is ui and p.ctVolume is c.ct
    assert ui.researchNoticeLabel.text == RESEARCH_NOTICE
    tooltip = widgets[next(n for n, w in widgets.items() if w.property("SlicerParameterName") == "prescriptionGy")]
    assert tooltip.toolTip == f"{SETTINGS['prescriptionGy'].help} (Gy)"
    clicked = []
    widget.onAction = clicked.append
    for button in PANEL_ACTIONS:
        getattr(ui, button).connections["clicked(bool)"](False)
    assert clicked == list(PANEL_ACTIONS)  # each button its own action (no late binding of the loop variable)
    assert not ui.planSeedsButton.enabled and "CTV segment" in ui.planSeedsButton.toolTip

    p.segmentation, p.gtvSegmentID, p.nogoSegmentIDs = c.segmentation, c.ids["GTV"], [c.ids["Carotid"]]
    p.seeds = c.seeds_node
    widget.updateGUIFromParameterNode()
    assert (ui.gtvSegmentSelector.node, ui.gtvSegmentSelector.segment) == (c.segmentation, c.ids["GTV"])
    assert ui.nogoSegmentSelector.segments == [c.ids["Carotid"]] and not ui.ctvSegmentSelector.blocked
    ui.ctvSegmentSelector.segment = c.ids["CTV"]
    ui.ctvSegmentSelector.connections["currentSegmentChanged(QString)"](c.ids["CTV"])
    assert p.ctvSegmentID == c.ids["CTV"] and p.gtvSegmentID == c.ids["GTV"]
    assert ui.planSeedsButton.enabled and ui.planSeedsButton.toolTip == ""
    other = c.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Other")
    ui.gtvSegmentSelector.node = other
    ui.gtvSegmentSelector.connections["currentNodeChanged(vtkMRMLNode*)"](other)
    assert p.segmentation is other and (p.gtvSegmentID, p.ctvSegmentID, p.nogoSegmentIDs) == ("", "", [])
    widget.exit()
    assert p.connectedGui is None and widget._parameterNode is None
    widget.cleanup()  # as on module unload: no observer of the scene left
    assert not widget.Observations
