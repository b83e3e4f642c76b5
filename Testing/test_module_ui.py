"""Static checks of the Slicer module: widgets the code uses exist in the .ui with the right class, and the
typed parameter node matches both the .ui bindings and the headless bridge's settings (no Slicer needed)."""

import ast
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from SeedBrachyLib.sources import DEFAULT_U_PER_MCI

ROOT = Path(__file__).resolve().parents[1]
MODULE = ROOT / "SeedBrachy" / "SeedBrachy.py"
UI = ROOT / "SeedBrachy" / "Resources" / "UI" / "SeedBrachy.ui"

#: Widget class expected from a widget name's suffix (first match wins).
SUFFIX_CLASSES = (("CollapsibleButton", "ctkCollapsibleButton"), ("Button", "QPushButton"), ("Label", "QLabel"),
                  ("SegmentSelector", "qMRMLSegmentSelectorWidget"), ("Selector", "qMRMLNodeComboBox"),
                  ("SpinBox", "QDoubleSpinBox"), ("ComboBox", "QComboBox"))
#: Signals, methods and properties the module may use on each widget class (Slicer/Qt API).
CLASS_API = {
    "QPushButton": {"connect", "enabled", "toolTip", "text", "clicked(bool)"},
    "QLabel": {"text", "toolTip"},
    "qMRMLSegmentSelectorWidget": {"connect", "currentNodeChanged(vtkMRMLNode*)", "currentSegmentChanged(QString)",
                                   "setCurrentNode", "setCurrentSegmentID", "currentNode", "currentSegmentID",
                                   "blockSignals", "segmentSelectionChanged(QStringList)", "selectedSegmentIDs",
                                   "setSelectedSegmentIDs"},
}
#: Parameters bound by hand (their widget cannot carry SlicerParameterName).
MANUAL_PARAMETERS = {"segmentation", "targetSegmentID", "nogoSegmentIDs", "oarSegmentID"}


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


def _wrapper_fields(tree):
    """name -> (type name, default) of the @parameterNodeWrapper class."""
    cls = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)
               and any(getattr(d, "id", None) == "parameterNodeWrapper" for d in n.decorator_list))
    fields = {}
    for item in cls.body:
        if isinstance(item, ast.AnnAssign):
            ann = item.annotation
            annotated = isinstance(ann, ast.Subscript) and ann.value.id == "Annotated"
            base = ann.slice.elts[0] if annotated else ann.value if isinstance(ann, ast.Subscript) else ann
            default = [] if base.id == "list" else None  # the wrapper's default list is empty
            if item.value is not None:
                default = DEFAULT_U_PER_MCI if getattr(item.value, "id", None) == "DEFAULT_U_PER_MCI" \
                    else ast.literal_eval(item.value)
            fields[item.target.id] = (base.id, default, ann)
    return fields


def test_every_widget_the_module_uses_exists_with_the_expected_class(tree, ui_widgets):
    uses = _ui_uses(tree)
    assert len({name for name, _ in uses}) >= 5
    for name, member in uses:
        assert name in ui_widgets, f"self.ui.{name} is used in SeedBrachy.py but missing from SeedBrachy.ui"
        cls = ui_widgets[name][0]
        assert cls == expected_class(name), f"{name} is a {cls} in the .ui; its name says {expected_class(name)}"
        if member is not None and cls in CLASS_API:
            assert member in CLASS_API[cls], f"self.ui.{name}.{member}: not an API of {cls}"


def test_ui_has_the_six_collapsible_sections(ui_widgets):
    sections = {props["text"] for cls, props in ui_widgets.values() if cls == "ctkCollapsibleButton"}
    assert sections == {"Inputs", "Source and prescription", "Needles and seeds", "Dose", "Evaluation",
                        "Post-implant"}


def test_parameter_bindings_match_the_typed_parameter_node(tree, ui_widgets):
    fields = _wrapper_fields(tree)
    bound = {}
    for name, (cls, props) in ui_widgets.items():
        parameter = props.get("SlicerParameterName")
        if parameter is None:
            continue
        assert parameter in fields, f"widget {name} binds unknown parameter '{parameter}'"
        type_name, _, ann = fields[parameter]
        if cls == "qMRMLNodeComboBox":
            assert type_name.startswith("vtkMRML") and props["nodeTypes"] == [type_name], name
        elif cls == "QDoubleSpinBox":
            assert type_name == "float", name
            within = next(a for a in ann.slice.elts[1:] if a.func.id == "WithinRange")
            lo, hi = (ast.literal_eval(a) for a in within.args)
            assert (float(props["minimum"]), float(props["maximum"])) == (lo, hi), name
        elif cls == "QComboBox":
            assert type_name == "str" and any(getattr(a.func, "id", "") == "Choice" for a in ann.slice.elts[1:]), name
        else:
            pytest.fail(f"widget {name} of class {cls} cannot be bound by parameterNodeWrapper")
        bound[parameter] = name
    assert set(bound) | MANUAL_PARAMETERS == set(fields)


def test_parameter_node_matches_the_headless_settings(tree):
    from SeedBrachyLib.mrml.parameters import PARAMETERS  # imports no slicer

    fields = _wrapper_fields(tree)
    assert list(fields) == list(PARAMETERS)
    for name, (type_name, default, _) in fields.items():
        kind, expected_default = PARAMETERS[name]
        assert type_name == (kind if isinstance(kind, str) else kind.__name__), name
        assert default == expected_default, name


def test_module_follows_the_template_and_cites_its_sources(tree):
    source = MODULE.read_text()
    assert "self._parameterNode.connectGui(self.ui)" in source
    assert "from slicer.i18n import tr as _" in source
    assert 'loadUI(self.resourcePath("UI/SeedBrachy.ui"))' in source
    for needed in ("TG-43U1", "Rivard", "2004", "102.7 Gy", "110 Gy", "Huang et al., J Cancer 2026",
                   "Research use only"):
        assert needed in source, needed
    classes = {n.name: [b.id for b in n.bases if isinstance(b, ast.Name)] for n in ast.walk(tree)
               if isinstance(n, ast.ClassDef)}
    assert classes["SeedBrachy"] == ["ScriptedLoadableModule"]
    assert "ScriptedLoadableModuleWidget" in classes["SeedBrachyWidget"]
    assert classes["SeedBrachyLogic"] == ["ScriptedLoadableModuleLogic"]
    assert classes["SeedBrachyTest"] == ["ScriptedLoadableModuleTest"]
    logic = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "SeedBrachyLogic")
    assert "self.ui" not in ast.unparse(logic), "the Logic must work without the widget"
    assert "slicer.mrmlScene" not in ast.unparse(logic)


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
    for cls in set(classes.values()) - {"QLabel", "QPushButton", "QComboBox", "QDoubleSpinBox", "QLineEdit"}:
        assert declared.get(cls) == f"{cls}.h", f"custom widget {cls} needs <customwidget> with header {cls}.h"


def _signature(function, method):
    """inspect.Signature of an ast.FunctionDef (defaults as placeholders); ``method`` drops ``self``."""
    import inspect

    a = function.args
    positional = a.posonlyargs + a.args
    if method and not any(getattr(d, "id", "") == "staticmethod" for d in function.decorator_list):
        positional = positional[1:]
    first_default = len(positional) - len(a.defaults)
    params = [inspect.Parameter(arg.arg, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                default=None if i >= first_default else inspect.Parameter.empty)
              for i, arg in enumerate(positional)]
    if a.vararg:
        params.append(inspect.Parameter(a.vararg.arg, inspect.Parameter.VAR_POSITIONAL))
    params += [inspect.Parameter(arg.arg, inspect.Parameter.KEYWORD_ONLY,
                                 default=inspect.Parameter.empty if d is None else None)
               for arg, d in zip(a.kwonlyargs, a.kw_defaults)]
    if a.kwarg:
        params.append(inspect.Parameter(a.kwarg.arg, inspect.Parameter.VAR_KEYWORD))
    return inspect.Signature(params)


def _bind(signature, call, where):
    """Bind a call's argument count and keyword names to ``signature`` (TypeError -> test failure)."""
    if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
        return
    try:
        signature.bind(*call.args, **{k.arg: k.value for k in call.keywords})
    except TypeError as exc:
        pytest.fail(f"{where} (line {call.lineno}): {ast.unparse(call)[:100]}: {exc}")


def test_widget_and_test_calls_to_the_logic_match_its_methods(tree):
    logic = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "SeedBrachyLogic")
    methods = {f.name: _signature(f, method=True) for f in logic.body if isinstance(f, ast.FunctionDef)}
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and ast.unparse(n.func.value) in ("self.logic", "logic")]
    assert len(calls) >= 15
    for call in calls:
        assert call.func.attr in methods, f"line {call.lineno}: SeedBrachyLogic has no method {call.func.attr}"
        _bind(methods[call.func.attr], call, f"SeedBrachyLogic.{call.func.attr}")


def test_calls_into_seedbrachylib_match_the_library(tree):
    """Every name imported from SeedBrachyLib exists, and every call to it binds to the real signature."""
    import importlib
    import inspect

    pytest.importorskip("slicer", reason="SeedBrachyLib.mrml needs slicer-core")
    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "SeedBrachyLib":
            module = importlib.import_module(node.module)
            for alias in node.names:
                if hasattr(module, alias.name):
                    bound[alias.asname or alias.name] = getattr(module, alias.name)
                else:  # a submodule
                    bound[alias.asname or alias.name] = importlib.import_module(f"{node.module}.{alias.name}")
    assert {"markups", "dosimetry", "planning", "postimplant"} <= set(bound)
    checked = 0
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
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
    assert checked >= 20


def test_needle_entry_and_nogo_settings_round_trip_and_reach_the_planner(case_nodes):
    """Settings stored as the wrapper stores them; entry "anterior" gives needles along -A clear of the no-go."""
    import numpy as np

    from SeedBrachyLib.errors import InputError
    from SeedBrachyLib.mrml import markups, parameters, planning

    c = case_nodes
    node = parameters.parameter_node(c.scene)
    assert parameters.read_settings(node)["nogoSegmentIDs"] == []
    parameters.write_settings(node, needleEntry="anterior", nogoSegmentIDs=[c.ids["Carotid"], c.ids["Trachea"]])
    parameters.write_settings(node, nogoSegmentIDs=[c.ids["Carotid"]])  # shorter list: stale items removed
    assert (node.GetParameter("nogoSegmentIDs_len"), node.GetParameter("nogoSegmentIDs_1")) == ("1", "")
    settings = parameters.read_settings(node)
    assert settings["needleEntry"] == "anterior" and settings["nogoSegmentIDs"] == [c.ids["Carotid"]]
    with pytest.raises(InputError, match="list of strings"):
        parameters.write_settings(node, nogoSegmentIDs=c.ids["Carotid"])
    for side, direction in parameters.NEEDLE_ENTRY_DIRECTIONS.items():
        assert np.isclose(np.linalg.norm(direction), 1.0), side

    carotid = c.case.masks["Carotid"]

    def plan(entry, nogo):
        seeds_node = c.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", f"Planned from {entry}")
        planning.plan_seeds(c.ct, c.segmentation, c.ids["GTV"], seeds_node, c.case.prescription_gy,
                            method="uniform", needle_direction=parameters.NEEDLE_ENTRY_DIRECTIONS[entry],
                            nogo_segment_ids=nogo)
        needles = markups.read_needles(seeds_node)
        assert needles
        crossing = 0
        for needle in needles:
            entry_ras, tip = np.asarray(needle.entry), np.asarray(needle.tip)
            assert np.allclose((tip - entry_ras) / np.linalg.norm(tip - entry_ras),
                               parameters.NEEDLE_ENTRY_DIRECTIONS[entry], atol=1e-6)
            path = entry_ras + np.linspace(0.0, 1.0, 200)[:, None] * (tip - entry_ras)
            ijk = np.rint(c.case.grid.to_ijk(path)).astype(int)
            inside = np.all((ijk >= 0) & (ijk < np.array(c.case.grid.dims)), axis=1)
            crossing += bool(carotid[ijk[inside, 2], ijk[inside, 1], ijk[inside, 0]].any())
        return needles, crossing

    needles, _ = plan(settings["needleEntry"], ())
    assert all(n.entry[1] > n.tip[1] for n in needles)  # "anterior": entered from the anterior side
    # from the right, some template needle crosses the carotid unless it is a no-go segment
    assert plan("right", ())[1] > 0
    assert plan("right", settings["nogoSegmentIDs"])[1] == 0


def test_choice_defaults_are_among_the_choices(tree):
    """The wrapper validates defaults when it creates the parameter node: one outside its Choice would fail."""
    from SeedBrachyLib.checks import available_indications
    from SeedBrachyLib.mrml.parameters import NEEDLE_ENTRY_DIRECTIONS
    from SeedBrachyLib.planning.optimize import OAR_METRICS
    from SeedBrachyLib.sources import available_models

    names = {"available_models": available_models, "NEEDLE_ENTRY_DIRECTIONS": NEEDLE_ENTRY_DIRECTIONS,
             "available_indications": available_indications, "OAR_METRICS": OAR_METRICS}
    checked = 0
    for name, (_, default, ann) in _wrapper_fields(tree).items():
        for a in (ann.slice.elts[1:] if isinstance(ann, ast.Subscript) and ann.value.id == "Annotated" else ()):
            if getattr(a.func, "id", "") == "Choice":
                choices = eval(compile(ast.Expression(a.args[0]), "<choice>", "eval"), {"list": list}, names)
                assert default in choices, f"{name}: default {default!r} not in {choices}"
                checked += 1
    assert checked >= 6


def test_plan_method_combo_lists_the_planner_methods_in_order():
    """The Widget takes planning.METHODS[currentIndex]: the .ui items must be those methods, in that order."""
    pytest.importorskip("slicer", reason="SeedBrachyLib.mrml needs slicer-core")
    from SeedBrachyLib.mrml.planning import METHODS

    combo = next(w for w in ET.parse(UI).getroot().iter("widget") if w.get("name") == "planMethodComboBox")
    texts = [item.find("property/string").text.lower() for item in combo.findall("item")]
    assert len(texts) == len(METHODS)
    for method, text in zip(METHODS, texts):
        assert text.startswith(method.replace("_", " ").replace("optimise", "optimis")), (method, text)


def test_module_self_test_runs_headless(seedbrachy_module):
    """SeedBrachyTest's methods (Logic only) on slicer-core, with minimal stand-ins for the Slicer-only
    ScriptedLoadableModule, parameterNodeWrapper and i18n modules (conftest.seedbrachy_module)."""
    import unittest

    names = [n for n in dir(seedbrachy_module.SeedBrachyTest) if n.startswith("test_")]
    assert set(names) == {"test_SyntheticCaseD90", "test_Planning", "test_PostImplant"}
    result = unittest.TestResult()
    seedbrachy_module.SeedBrachyTest("runTest").run(result)
    assert result.wasSuccessful() and result.testsRun == 1, result.errors + result.failures
