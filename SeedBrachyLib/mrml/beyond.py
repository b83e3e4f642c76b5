"""Placement robustness, radiobiology and the printed template on MRML nodes.

* :func:`robustness` -- the plan in a seeds node (seeds + needle lines, see :mod:`.markups`) and segments ->
  :func:`SeedBrachyLib.planning.robustness.evaluate_robustness`; results into table nodes: per-sample metrics
  (one column "<structure> <metric> [<unit>]" per metric), goal probabilities ("Goal", "P [%]", "SE [%]",
  "CI low [%]", "CI high [%]", "Samples", "Source") and a histogram of the target metric (bin centres and
  counts) with a bar chart.
* :func:`radiobiology` -- BED and EQD2 of the implant's DVH metrics with a prior external-beam course, against
  the user's cumulative limit; results into a table node.
* :func:`export_template` -- the needles of a seeds node and the body from the CT -> a printable template
  (:mod:`SeedBrachyLib.planning.printed_template`): STL file, a model node to view it, and the hole table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import radiobiology as radio
from .. import settings, structures
from ..checks import CTV, GTV, goals_on, user_limit
from ..planning import printed_template
from ..planning import robustness as rob
from ..sources import get_model
from . import ATTRIBUTE_PREFIX, ROLE_ATTRIBUTE, dosimetry, markups, segmentations, volumes
from ._common import require_node, require_scene
from .tables import _fill_table, column_name

ROLE_ROBUSTNESS_SAMPLES = "RobustnessSamples"
ROLE_ROBUSTNESS_GOALS = "RobustnessGoals"
ROLE_ROBUSTNESS_HISTOGRAM = "RobustnessHistogram"
ROLE_TEMPLATE = "PrintedTemplate"
ROLE_RADIOBIOLOGY = "Radiobiology"
HOLE_TABLE_ATTRIBUTE = ATTRIBUTE_PREFIX + "TemplateHoles"
HISTOGRAM_TABLE_REFERENCE_ROLE = "SeedBrachyRobustnessHistogram"


def robustness(seeds_node, segmentation_node, target_segment_id, prescription_gy, oar_segment_ids=(),
               indication="lymph-node-metastases", user_limits=(), errors=None, n_samples=1000, random_seed=0,
               spacing_mm=2.0, samples_table=None, goals_table=None, histogram_table=None, chart_node=None,
               histogram_metric="D90", bins=30, ctv_segment_id="", progress=None):
    """Robustness of the plan in ``seeds_node`` (its seeds on its needle lines) for the chosen segments.

    Args:
        seeds_node: fiducial node with the seeds and the needle lines it references (as the planner writes them).
        segmentation_node, target_segment_id: the target (the GTV where a CTV is given too);
            ``oar_segment_ids``: organs at risk (D2cc).
        ctv_segment_id: the CTV, if the target is the GTV: the goals on the CTV are read on it (without it every
            target goal is read on the target).
        prescription_gy: Rx (Gy).
        indication: goal library entry for the target (see :mod:`SeedBrachyLib.checks`), or None.
        user_limits: (segment ID, metric, limit Gy) organ-at-risk limits.
        errors: :class:`~SeedBrachyLib.planning.robustness.PlacementErrors` (default: the cited defaults).
        n_samples, random_seed, spacing_mm: samples, their seed, structure point spacing (mm).
        samples_table, goals_table, histogram_table, chart_node: output nodes (any may be None).
        histogram_metric, bins: the target metric plotted and its bins.
        progress: callback(fraction, message); returning False cancels.

    Returns:
        :class:`~SeedBrachyLib.planning.robustness.RobustnessResult`.
    """
    require_node(seeds_node, "seed markups", markups.FIDUCIAL_CLASS)
    seeds = markups.read_seeds(seeds_node)
    needles = markups.read_needles(seeds_node)
    geometry = rob.ImplantGeometry.from_seeds(seeds, needles)
    points = []
    names = {}
    targets = [target_segment_id] + ([ctv_segment_id] if ctv_segment_id else [])
    for sid, role in [(sid, "target") for sid in targets] + [(sid, "oar") for sid in oar_segment_ids]:
        mask, grid = segmentations.segment_mask(segmentation_node, sid)
        names[sid] = segmentations.segment_name(segmentation_node, sid)
        points.append(rob.points_from_mask(names[sid], mask, grid, spacing_mm, role))
    target = names[target_segment_id]
    goals = goals_on(indication, {GTV: target, CTV: names[ctv_segment_id] if ctv_segment_id else target},
                     [user_limit(names.get(sid, sid), metric, limit) for sid, metric, limit in user_limits])
    model = markups.source_model_key(seeds_node) or "I125_OncoSeed6711"
    result = rob.evaluate_robustness(geometry, model, points, goals, errors, n_samples, random_seed,
                                     prescription_gy, progress=progress)
    description = f"Placement robustness, {result.n_samples} simulated implants ({result.errors.describe()})"
    if samples_table is not None:
        require_node(samples_table, "output robustness samples table", "vtkMRMLTableNode")
        columns = [(column_name(f"{s} {m}", result.units[(s, m)]), v.tolist(), result.units[(s, m)])
                   for (s, m), v in result.values.items()]
        _fill_table(samples_table, columns, ROLE_ROBUSTNESS_SAMPLES, description)
    if goals_table is not None and result.probabilities:
        require_node(goals_table, "output robustness goals table", "vtkMRMLTableNode")
        p = result.probabilities
        _fill_table(goals_table, [("Goal", [g.goal for g in p], ""), ("P [%]", [100 * g.p for g in p], "%"),
                                  ("SE [%]", [100 * g.se for g in p], "%"),
                                  ("CI low [%]", [100 * g.ci_low for g in p], "%"),
                                  ("CI high [%]", [100 * g.ci_high for g in p], "%"),
                                  ("Samples", [float(g.n) for g in p], ""), ("Source", [g.source for g in p], "")],
                    ROLE_ROBUSTNESS_GOALS, description + "; Wilson 95% intervals")
    if histogram_table is None and chart_node is not None:
        histogram_table = dosimetry.curves_table_of(chart_node, HISTOGRAM_TABLE_REFERENCE_ROLE, "histogram")
    if histogram_table is not None:
        _histogram(result, names[target_segment_id], histogram_metric, bins, histogram_table, chart_node)
    return result


def _histogram(result, structure, metric, bins, table_node, chart_node):
    require_node(table_node, "output robustness histogram table", "vtkMRMLTableNode")
    counts, edges = result.histogram(structure, metric, bins)
    unit = result.units[(structure, metric)]
    x_name = column_name(f"{structure} {metric}", unit)
    _fill_table(table_node, [(x_name, (0.5 * (edges[1:] + edges[:-1])).tolist(), unit),
                             ("Samples", counts.astype(float).tolist(), "")], ROLE_ROBUSTNESS_HISTOGRAM,
                f"{structure} {metric} over {result.n_samples} simulated implants")
    if chart_node is None:
        return
    require_node(chart_node, "output robustness chart", "vtkMRMLPlotChartNode")
    scene = require_scene(chart_node, "robustness chart")
    for i in reversed(range(chart_node.GetNumberOfPlotSeriesNodes())):
        old = chart_node.GetNthPlotSeriesNode(i)
        if old is not None and old.GetAttribute(ROLE_ATTRIBUTE) == ROLE_ROBUSTNESS_HISTOGRAM:
            chart_node.RemovePlotSeriesNodeID(old.GetID())
            scene.RemoveNode(old)
    series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"Robustness {structure} {metric}")
    series.SetAndObserveTableNodeID(table_node.GetID())
    series.SetXColumnName(x_name)
    series.SetYColumnName("Samples")
    series.SetPlotType(series.PlotTypeBar)
    series.SetAttribute(ROLE_ATTRIBUTE, ROLE_ROBUSTNESS_HISTOGRAM)
    chart_node.AddAndObservePlotSeriesNodeID(series.GetID())
    chart_node.SetTitle(f"{structure} {metric}: {result.n_samples} simulated implants "
                        f"(nominal {result.nominal[(structure, metric)]:.1f} {unit})")
    chart_node.SetXAxisTitle(f"{metric} ({unit})")
    chart_node.SetYAxisTitle("Samples")
    chart_node.SetAttribute(ROLE_ATTRIBUTE, ROLE_ROBUSTNESS_HISTOGRAM)


@dataclass
class Radiobiology:
    """What :func:`radiobiology` found: the physical evaluation, each structure's tissue parameters, the prior
    course (or None), the cumulative limits, the half-life (days) and the EQD2 rows
    (:class:`~SeedBrachyLib.radiobiology.CumulativeRow`) with the implant BED (Gy) of each row's metric."""

    evaluation: object
    parameters: dict
    prior: object
    limits: list
    half_life_days: float
    rows: list
    bed_gy: list

    def summary_lines(self):
        """The printed section (:func:`SeedBrachyLib.radiobiology.summary_lines`)."""
        return radio.summary_lines(self.evaluation, self.half_life_days, self.prior, self.limits, self.parameters)


def tissue_parameters(values, roles, oar_name=""):
    """Structure name -> TissueParameters from the settings: targets targetAlphaBetaGy (with repopulation when
    tpotDays > 0: Tpot, onset kickoffDays), the organ at risk ``oar_name`` oarAlphaBetaGy, other organs their
    defaults (:func:`SeedBrachyLib.radiobiology.default_tissue`); repairHalfTimeH (h) for all.

    ``roles``: (name, "target" or "oar") pairs.
    """
    tumour = radio.TUMOUR.with_values(alpha_beta_gy=values.targetAlphaBetaGy)
    if values.tpotDays > 0:
        tumour = radio.with_repopulation(tumour, values.tpotDays, values.kickoffDays)
    chosen = radio.LATE_NORMAL.with_values(name=f"{radio.LATE_NORMAL.name} (alpha/beta set by the user)",
                                           alpha_beta_gy=values.oarAlphaBetaGy)
    parameters = {}
    for name, role in roles:
        tissue = tumour if role == "target" else chosen if name == oar_name else radio.default_tissue(name, role)
        parameters[name] = tissue.with_values(repair_half_time_h=values.repairHalfTimeH)
    return parameters


def radiobiology(dose_node, segmentation_node, gtv_segment_id, ctv_segment_id, values=None, table_node=None,
                 oar_segment_id="", ct_node=None, progress=None):
    """BED and EQD2 (Gy) of the implant in ``dose_node`` for the DVH metrics, a prior external-beam course added.

    The structures are those of :func:`.dosimetry.evaluate` (GTV, CTV, every other segment as an organ at risk,
    the skin when ``ct_node`` is given); parameters from :func:`tissue_parameters`; the half-life of the
    sourceModel setting. Prior course: priorDoseGy (Gy) in priorFractions fractions, taken as received in full by
    every structure (the conservative sum: the hot spots coincide); none when priorDoseGy is 0. The limit
    cumulativeLimitGy (EQD2, Gy; 0 = none) applies to the oarMetric of ``oar_segment_id``. Rows: D90 of the
    targets, D2cc and Dmax of the organs at risk (D2cc only where the organ holds 2 cc); ``table_node`` (if
    given) gets one row each: "Structure", "Metric", "Physical [Gy]", "alpha/beta [Gy]", "Implant BED [Gy]",
    "Implant EQD2 [Gy]", "Prior EQD2 [Gy]", "Cumulative EQD2 [Gy]", "Limit EQD2 [Gy]", "Result". ``progress``:
    callback(fraction, message) of the evaluation.

    Returns:
        :class:`Radiobiology`.
    """
    values = values or settings.defaults()
    evaluation = dosimetry.evaluate(dose_node, segmentation_node, gtv_segment_id, ctv_segment_id, values,
                                    ct_node=ct_node, progress=progress)
    oar = segmentations.segment_name(segmentation_node, oar_segment_id) if oar_segment_id else ""
    roles = [(name, s.role) for name, s in evaluation.structures.items()]
    parameters = tissue_parameters(values, roles, oar)
    prior = radio.PriorCourse(values.priorFractions, {name: values.priorDoseGy for name, _ in roles},
                              f"{values.priorDoseGy:g} Gy external beam, to every structure in full") \
        if values.priorDoseGy > 0 else None
    limits = [(oar, values.oarMetric, values.cumulativeLimitGy)] if oar and values.cumulativeLimitGy > 0 else []
    half_life = get_model(values.sourceModel).half_life_days
    wanted = {"target": ("D90",), "oar": ("D2cc", "Dmax")}
    rows = [r for r in radio.cumulative_eqd2(evaluation, parameters, half_life, prior, limits,
                                             metrics=("D90", "D2cc", "Dmax"))
            if r.metric in wanted[evaluation.structures[r.structure].role] or r.limit_eqd2_gy is not None]
    bed = [float(radio.implant_bed(r.physical_gy, parameters[r.structure], half_life)) for r in rows]
    if table_node is not None:
        require_node(table_node, "output radiobiology table", "vtkMRMLTableNode")
        result = ["" if r.passed is None else "PASS" if r.passed else "FAIL" for r in rows]
        _fill_table(table_node, [
            ("Structure", [r.structure for r in rows], ""), ("Metric", [r.metric for r in rows], ""),
            ("Physical [Gy]", [r.physical_gy for r in rows], "Gy"),
            ("alpha/beta [Gy]", [r.alpha_beta_gy for r in rows], "Gy"), ("Implant BED [Gy]", bed, "Gy"),
            ("Implant EQD2 [Gy]", [r.implant_eqd2_gy for r in rows], "Gy"),
            ("Prior EQD2 [Gy]", [r.prior_eqd2_gy for r in rows], "Gy"),
            ("Cumulative EQD2 [Gy]", [r.cumulative_eqd2_gy for r in rows], "Gy"),
            ("Limit EQD2 [Gy]", [r.limit_eqd2_gy for r in rows], "Gy"), ("Result", result, "")],
            ROLE_RADIOBIOLOGY, radio.format_cumulative(rows, prior)[0])
    return Radiobiology(evaluation, parameters, prior, limits, half_life, rows, bed)


def export_template(seeds_node, ct_node, path, settings=None, model_node=None, force=False,
                    body_threshold_hu=structures.DEFAULT_BODY_THRESHOLD_HU, progress=None):
    """Printable template for the needles of ``seeds_node`` on the skin found in ``ct_node`` (body > threshold HU).

    Writes the STL to ``path`` (never over an existing file unless ``force``), shows the mesh in ``model_node``
    (if given; its hole table is kept as a node attribute, JSON) and returns the
    :class:`~SeedBrachyLib.planning.printed_template.PrintedTemplate`.
    """
    import json

    require_node(seeds_node, "seed markups", markups.FIDUCIAL_CLASS)
    needles = markups.read_needles(seeds_node)
    ct, grid = volumes.array_from_volume_node(ct_node)
    body = structures.body_from_ct(ct, grid, body_threshold_hu)
    template = printed_template.build_template(needles, body, grid, settings, progress)
    template.write_stl(path, force=force, inputs=[_storage_path(ct_node)])
    if model_node is not None:
        require_node(model_node, "output template model", "vtkMRMLModelNode")
        model_node.SetAndObservePolyData(template.mesh)
        if model_node.GetDisplayNode() is None:
            model_node.CreateDefaultDisplayNodes()
        rows = [{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in r.items()}
                for r in printed_template.hole_table(template)]
        model_node.SetAttribute(HOLE_TABLE_ATTRIBUTE, json.dumps(rows))
        model_node.SetAttribute(ROLE_ATTRIBUTE, ROLE_TEMPLATE)
        model_node.SetDescription(template.settings.describe())
    return template


def _storage_path(node):
    storage = node.GetStorageNode()
    return storage.GetFileName() if storage is not None and storage.GetFileName() else None
