"""The module's actions on its parameter node: each button of the SeedBrachy panel as one function.

``p`` is the module's parameter node: Slicer's typed wrapper (``SeedBrachyParameterNode`` of
``SeedBrachy.py``) or the raw ``vtkMRMLScriptedModuleNode`` (:func:`.parameters.parameter_node`, e.g. of
a scene saved from Slicer and loaded headless). Its nodes and settings are read with
:func:`.parameters.values_of`, the settings validated by :func:`SeedBrachyLib.settings.resolve`, and the
bridge function is called with them: the one place where the panel's choices become arguments, so the
module's ``...UsingParameterNode`` entries and a headless script on the same scene do the same thing.
Units and results: those of the bridge functions named in each docstring.

:data:`PANEL_ACTIONS` says how the panel runs each button (progress and error texts, the result's text, the
outputs shown, what the user chooses first); :func:`guard_output` asks before an action replaces what the user
made (no: a new output node).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

from .. import settings, summaries
from ..dicomrt.dataset import parse_datetime
from ..planning import printed_template
from . import beyond, dicom, dosimetry, live, parameters, planning, postimplant, segmentations


def nodes_of(p):
    """Every parameter of ``p`` (nodes, segment IDs, settings) as attributes, e.g. ``nodes_of(p).ctVolume``."""
    return SimpleNamespace(**parameters.values_of(p))


def settings_of(p):
    """The validated settings (:class:`SeedBrachyLib.settings.Values`) held by ``p``."""
    values = parameters.values_of(p)
    return settings.resolve({name: values[name] for name in settings.SETTINGS})


def missing_inputs(p):
    """Button name -> the panel names of its inputs still to choose in ``p`` (:func:`.parameters.missing_inputs`)."""
    return parameters.missing_inputs(parameters.values_of(p))


def assign(p, **values):
    """Set parameters of ``p`` (a typed wrapper or a raw parameter node) as one modification."""
    was_modifying = p.StartModify()
    try:
        if hasattr(p, "GetParameter"):
            parameters.write_settings(p, **values)
        else:
            for name, value in values.items():
                setattr(p, name, value)
    finally:
        p.EndModify(was_modifying)


def scene_of(p):
    """The scene that holds ``p`` (a typed wrapper, whose ``parameterNode`` is the node, or a raw parameter node)."""
    return getattr(p, "parameterNode", p).GetScene()


#: Actions whose output node may hold what the user made or corrected: action -> (output parameter, name of the
#: new node made when the user keeps it).
GUARDED_OUTPUTS = {"planSeedsButton": ("seeds", "Planned seeds"),
                   "detectSeedsButton": ("postImplantSeeds", "Detected seeds"),
                   "carryContoursButton": ("carriedSegmentation", "Carried contours")}


def replace_question(p, action):
    """The question to ask before ``action`` (of :data:`GUARDED_OUTPUTS`) replaces what is in its output node:
    seeds edited by hand (or not made by the planner), detected seeds (maybe corrected by hand), carried
    segments of the same names; "" when there is nothing to replace."""
    parameter, new_name = GUARDED_OUTPUTS[action]
    output = getattr(nodes_of(p), parameter)
    if action == "planSeedsButton":
        held = "seeds edited by hand (or not made by the planner)" if planning.edited_by_hand(output) else ""
    elif action == "detectSeedsButton":
        count = output.GetNumberOfControlPoints()
        held = f"{count} seeds (maybe corrected by hand)" if count else ""
    else:
        names = carried_segments_present(p)
        held = f"segments {', '.join(names)}" if names else ""
    return (f"'{output.GetName()}' already holds {held}. Replace them?\nNo: the result goes into a new node "
            f"'{new_name}'.") if held else ""


def guard_output(p, action, confirm):
    """Nothing the user made is replaced without asking: when ``action``'s output holds something
    (:func:`replace_question`), ``confirm(question)`` decides: True returns True (run ``action`` with
    ``overwrite=True``); False makes a new output node, chosen in ``p``, and returns False. Nothing to replace:
    False."""
    question = replace_question(p, action)
    if question and confirm(question):
        return True
    if question:
        parameter, name = GUARDED_OUTPUTS[action]
        assign(p, **{parameter: scene_of(p).AddNewNodeByClass(parameters.NODE_PARAMETERS[parameter], name)})
    return False


def make_ctv(p):
    """:func:`.segmentations.make_ctv` (GTV + ctvMarginMm, clipped to the body, minus the no-go segments); the
    new segment becomes the CTV of ``p``. Returns its segment ID."""
    n = nodes_of(p)
    ctv = segmentations.make_ctv(n.segmentation, n.gtvSegmentID, n.ctVolume, settings_of(p),
                                 nogo_segment_ids=tuple(n.nogoSegmentIDs))
    assign(p, ctvSegmentID=ctv)
    return ctv


def plan_seeds(p, overwrite=False, progress=None):
    """:func:`.planning.plan_seeds`: needles (clear of the no-go segments) and seeds for the CTV into the seeds
    node; returns the :class:`~SeedBrachyLib.planning.candidates.Plan`."""
    n = nodes_of(p)
    return planning.plan_seeds(n.ctVolume, n.segmentation, n.ctvSegmentID, n.seeds, settings_of(p),
                               tuple(n.nogoSegmentIDs), n.oarSegmentID, n.gtvSegmentID, overwrite, progress)


def compute_dose(p, progress=None):
    """:func:`.dosimetry.compute_dose` of the seeds into the dose volume (targets GTV and CTV); (dose Gy, grid)."""
    n = nodes_of(p)
    return dosimetry.compute_dose(n.ctVolume, n.segmentation, [n.gtvSegmentID, n.ctvSegmentID], n.seeds,
                                  n.doseVolume, settings_of(p), progress=progress)


def _evaluation_arguments(n):
    return {"gtv_segment_id": n.gtvSegmentID, "ctv_segment_id": n.ctvSegmentID, "metrics_table": n.dvhTable,
            "chart": n.dvhChart, "checks_table": n.checksTable, "oar_segment_id": n.oarSegmentID,
            "ct_node": n.ctVolume}


def evaluate(p):
    """:func:`.dosimetry.evaluate_and_check` into the DVH table, chart and checks table; (evaluation, checks)."""
    n = nodes_of(p)
    return dosimetry.evaluate_and_check(n.doseVolume, n.segmentation, values=settings_of(p),
                                        **_evaluation_arguments(n))


def start_live_dose(p, progress=None):
    """:class:`.live.LiveDosimetry` of the seeds (dose as :func:`compute_dose`; the evaluation follows too if
    a DVH table is chosen)."""
    n = nodes_of(p)
    return live.LiveDosimetry(n.ctVolume, n.segmentation, [n.gtvSegmentID, n.ctvSegmentID], n.seeds, n.doseVolume,
                              settings_of(p), evaluation=_evaluation_arguments(n) if n.dvhTable else None,
                              progress=progress)


def detect_seeds(p, overwrite=False, progress=None, database=None):
    """:func:`.postimplant.detect` in the post-implant CT into the implanted seeds (the plan's seeds as prior).
    A post-implant CT from Slicer's DICOM browser is first linked to its files in ``database``
    (:func:`.dicom.link_ct_to_database`), so that its header's slice thickness is used."""
    n = nodes_of(p)
    dicom.link_ct_to_database(n.postImplantCt, database)
    return postimplant.detect(n.postImplantCt, n.postImplantSeeds, n.seeds, overwrite=overwrite,
                              review_below=settings_of(p).reviewBelowConfidence, progress=progress)


def register(p, progress=None):
    """:func:`.postimplant.register` of the post-implant CT to the CT (transform: post-implant -> pre-plan)."""
    n = nodes_of(p)
    return postimplant.register(n.ctVolume, n.postImplantCt, n.registrationTransform, seeds_node=n.postImplantSeeds,
                                progress=progress)


def _target_ids(n):
    return [sid for sid in (n.gtvSegmentID, n.ctvSegmentID) if sid]


def carried_segments_present(p):
    """Names of the target segments already in the carried segmentation (:func:`.postimplant.existing_segments`)."""
    n = nodes_of(p)
    return postimplant.existing_segments(n.segmentation, _target_ids(n), n.carriedSegmentation)


def carry_contours(p, overwrite=False):
    """:func:`.postimplant.carry_contours` of the GTV and CTV onto the post-implant CT; the new segment IDs."""
    n = nodes_of(p)
    return postimplant.carry_contours(n.segmentation, _target_ids(n), n.registrationTransform, n.postImplantCt,
                                      n.carriedSegmentation, overwrite=overwrite)


def compute_post_plan_dose(p, progress=None):
    """:func:`.postimplant.compute_post_plan_dose` of the implanted seeds on the pre-plan dose grid."""
    n = nodes_of(p)
    return postimplant.compute_post_plan_dose(n.postImplantSeeds, n.registrationTransform, n.doseVolume,
                                              n.postDoseVolume, settings_of(p), n.seeds, progress)


def compare(p):
    """:func:`.postimplant.compare`: pre vs post table, the post-plan checked with the same indication and limits."""
    n = nodes_of(p)
    return postimplant.compare(n.doseVolume, n.postDoseVolume, n.segmentation, n.gtvSegmentID, n.ctvSegmentID,
                               n.comparisonTable, n.seeds, n.postImplantSeeds, settings_of(p),
                               oar_segment_id=n.oarSegmentID, ct_node=n.ctVolume)


def import_dicom(p, folder, implant_date="", progress=None):
    """:func:`.dicom.import_folder` (``implant_date``: ISO 8601 text or blank) into the scene of ``p``; the new
    CT, segmentation, seeds and dose become the inputs of ``p``. Returns the nodes."""
    nodes = dicom.import_folder(scene_of(p), folder, parse_datetime(implant_date, "implant date"), progress=progress)
    assign(p, **{name: nodes[key] for name, key in (("ctVolume", "ct"), ("segmentation", "segmentation"),
                                                      ("seeds", "seeds"), ("doseVolume", "dose"))
                 if nodes[key] is not None})
    return nodes


def export_dicom(p, folder, implant_date="", database=None, progress=None):
    """:func:`.dicom.export_case` of CT, segments, seeds and dose (prescription to the CTV) into ``folder``; a CT
    from Slicer's DICOM browser is first linked to its files in ``database`` (:func:`.dicom.link_ct_to_database`)
    so that the export references that series. Returns {role: path} of the files written."""
    n = nodes_of(p)
    values = settings_of(p)
    dicom.link_ct_to_database(n.ctVolume, database)
    return dicom.export_case(folder, n.ctVolume, n.seeds, values.prescriptionGy, n.segmentation, n.doseVolume,
                             n.ctvSegmentID or None, values.sourceModel, parse_datetime(implant_date, "implant date"),
                             progress=progress)


def robustness(p, progress=None):
    """:func:`.beyond.robustness` of the plan in the seeds node (its needles) for the GTV (the CTV's goals on the
    CTV) and the chosen organ at risk with its limit: placement errors, samples and random seed from the
    settings; goal probabilities into the robustness table, the target D90 histogram into the chart. Returns
    the :class:`~SeedBrachyLib.planning.robustness.RobustnessResult`."""
    n = nodes_of(p)
    values = settings_of(p)
    oars = [n.oarSegmentID] if n.oarSegmentID else []
    limits = [(n.oarSegmentID, values.oarMetric, values.oarLimitGy)] if oars and values.oarLimitGy > 0 else []
    return beyond.robustness(n.seeds, n.segmentation, n.gtvSegmentID, values.prescriptionGy, oars, values.indication,
                             limits, values.placement_errors, values.robustnessSamples, values.randomSeed,
                             goals_table=n.robustnessTable, chart_node=n.robustnessChart,
                             ctv_segment_id=n.ctvSegmentID, progress=progress)


def radiobiology(p, progress=None):
    """:func:`.beyond.radiobiology` of the dose volume (targets GTV and CTV, the chosen organ at risk with the
    cumulative limit) into the radiobiology table; returns the :class:`~.beyond.Radiobiology`."""
    n = nodes_of(p)
    return beyond.radiobiology(n.doseVolume, n.segmentation, n.gtvSegmentID, n.ctvSegmentID, settings_of(p),
                               n.radiobiologyTable, n.oarSegmentID, n.ctVolume, progress)


def export_template(p, path, force=False, progress=None):
    """:func:`.beyond.export_template`: the printable template of the seeds node's needles on the CT's skin
    (dimensions from the settings) written to ``path`` (STL; an existing file only with ``force``) and shown in
    the template model. Returns the :class:`~SeedBrachyLib.planning.printed_template.PrintedTemplate`."""
    n = nodes_of(p)
    values = settings_of(p)
    return beyond.export_template(n.seeds, n.ctVolume, path, values.template_settings, n.templateModel, force,
                                  values.bodyThresholdHu, progress)


def _lines(result, p):
    return "\n".join(result.summary_lines())


@dataclass(frozen=True)
class PanelAction:
    """One button of the module's panel: how the module runs the action and shows its result.

    Attributes:
        entry: the module Logic's ``...UsingParameterNode`` method (called with the parameter node).
        label: progress text (None: a quick action, run without a progress dialog, so without ``progress=``).
        error: the text shown when the action fails.
        results_label: the panel label that shows ``text(result, p)``.
        shown: output parameters shown afterwards (a dose volume over the CT, a table, a chart).
        ask: what the user chooses first: "replace" (:func:`guard_output`, keyword ``overwrite``), "folder"
            (``folder`` and the panel's ``implant_date``) or "file" (``path``, ``force``); ``caption`` its dialog's.
    """

    entry: str
    label: str | None
    error: str
    results_label: str | None = None
    text: Callable | None = None
    shown: tuple = ()
    ask: str | None = None
    caption: str = ""


#: Every button of the panel but the live-dose toggle: button -> :class:`PanelAction`.
PANEL_ACTIONS = {
    "makeCtvButton": PanelAction("makeCtvUsingParameterNode", None, "Making the CTV failed."),
    "planSeedsButton": PanelAction(
        "planSeedsUsingParameterNode", "Planning needles and seeds...", "Planning failed.", "resultsLabel",
        lambda plan, p: "\n".join(plan.summary_lines(settings_of(p).uPerMci)), ask="replace"),
    "computeDoseButton": PanelAction("computeDoseUsingParameterNode", "Computing dose...", "Dose computation failed.",
                                     shown=("doseVolume",)),
    "evaluateButton": PanelAction("evaluateUsingParameterNode", None, "Evaluation failed.", "resultsLabel",
                                  lambda result, p: summaries.evaluation_summary(*result), ("dvhChart",)),
    "detectSeedsButton": PanelAction("detectSeedsUsingParameterNode", "Detecting seeds...", "Seed detection failed.",
                                     "postImplantResultsLabel", lambda result, p: result.summary(), ask="replace"),
    "registerButton": PanelAction("registerPostImplantUsingParameterNode", "Registering...", "Registration failed.",
                                  "postImplantResultsLabel", lambda result, p: result.describe()),
    "carryContoursButton": PanelAction("carryContoursUsingParameterNode", None, "Carrying the contours failed.",
                                       ask="replace"),
    "computePostDoseButton": PanelAction("computePostPlanDoseUsingParameterNode", "Computing post-plan dose...",
                                         "Post-plan dose failed.", "postImplantResultsLabel",
                                         lambda post, p: post.description),
    "compareButton": PanelAction("comparePlansUsingParameterNode", None, "Comparison failed.",
                                 "postImplantResultsLabel", lambda result, p: summaries.comparison_summary(result),
                                 ("comparisonTable",)),
    "importDicomButton": PanelAction("importDicomUsingParameterNode", "Importing DICOM...", "DICOM import failed.",
                                     "dicomResultsLabel", lambda nodes, p: _lines(nodes["case"], p), ask="folder",
                                     caption="DICOM folder to import"),
    "exportDicomButton": PanelAction("exportDicomUsingParameterNode", "Exporting DICOM RT...", "DICOM export failed.",
                                     "dicomResultsLabel", lambda paths, p: "Written: " + ", ".join(
                                         map(str, paths.values())), ask="folder",
                                     caption="New or empty folder for the DICOM RT files"),
    "robustnessButton": PanelAction("robustnessUsingParameterNode", "Simulating implants...", "Robustness failed.",
                                    "beyondResultsLabel", _lines, ("robustnessTable", "robustnessChart")),
    "radiobiologyButton": PanelAction("radiobiologyUsingParameterNode", "Radiobiology...", "Radiobiology failed.",
                                      "beyondResultsLabel", _lines, ("radiobiologyTable",)),
    "exportTemplateButton": PanelAction("exportTemplateUsingParameterNode", "Building the printed template...",
                                        "Printed template failed.", "beyondResultsLabel",
                                        lambda template, p: "\n".join(printed_template.table_lines(template)),
                                        ask="file", caption="Printed template (STL)"),
}
#: What the user chooses before an action (:attr:`PanelAction.ask`) -> the keywords it gives the action's entry.
ASKS = {None: (), "replace": ("overwrite",), "folder": ("folder", "implant_date"), "file": ("path", "force")}
