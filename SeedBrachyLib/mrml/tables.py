"""Plan evaluation -> table and plot nodes.

* DVH metrics table (:func:`write_dvh_metrics`): one row per structure, columns "Structure",
  "Role", then one column per metric named ``"<metric> [<unit>]"`` (e.g. "D90 [Gy]",
  "V100 [%]", "V100_cc [cc]", "CI" for dimensionless indices); undefined metrics are NaN.
* DVH curves (:func:`write_dvh_curves`): a table with a common dose column "Dose [Gy]" and one
  cumulative volume column "<structure> [%]" per structure, and a plot chart with one line
  series per structure (x: dose in Gy, y: volume in %).
* Checks table (:func:`write_checks`): one row per check: "Check", "Structure", "Metric",
  "Measured", "Limit" (both in the row's "Unit"), "Comparator", "Result" (PASS/FAIL; FAIL also
  when the metric is undefined), "Source" (citation).

The numbers come from :mod:`SeedBrachyLib.dvh` (and the checks module); nothing is recomputed here.
"""

from __future__ import annotations

import json
import math

import numpy as np
import vtk

from ..errors import InputError
from . import ATTRIBUTE_PREFIX, ROLE_ATTRIBUTE, ROLE_CHECKS, ROLE_DVH_CURVES, ROLE_DVH_METRICS
from ._common import require_node, require_scene, require_writable_output

DOSE_COLUMN = "Dose [Gy]"
#: Table attribute holding every numeric column at full precision (JSON ``{column: [values]}``, NaN as null):
#: Slicer's table storage writes numbers with 6 significant digits, so a saved and reloaded table keeps its
#: exact values here (:func:`column_values`).
EXACT_VALUES_ATTRIBUTE = ATTRIBUTE_PREFIX + "ExactValues"
CURVE_POINTS = 501


def column_name(metric, unit):
    """Column header of a metric: ``"<metric> [<unit>]"``, or the bare name when dimensionless."""
    return f"{metric} [{unit}]" if unit else metric


def _fill_table(table_node, columns, role, description=""):
    """Replace the content of ``table_node`` by ``columns`` (list of (name, values, unit)); a table holding
    content of another kind is refused (:func:`._common.require_writable_output`)."""
    require_writable_output(table_node, "output table", table_node.GetNumberOfColumns() > 0, role)
    table = vtk.vtkTable()
    for name, values, _unit in columns:
        if values and isinstance(values[0], str):
            array = vtk.vtkStringArray()
            for v in values:
                array.InsertNextValue(v)
        else:
            array = vtk.vtkDoubleArray()
            for v in values:
                array.InsertNextValue(float("nan") if v is None else float(v))
        array.SetName(name)
        table.AddColumn(array)
    was_modifying = table_node.StartModify()
    table_node.SetAndObserveTable(table)
    for name, _, unit in columns:
        if unit:
            table_node.SetColumnUnitLabel(name, unit)
    table_node.SetAttribute(ROLE_ATTRIBUTE, role)
    exact = {name: [None if v is None or not math.isfinite(float(v)) else float(v) for v in values]
             for name, values, _ in columns if values and not isinstance(values[0], str)}
    table_node.SetAttribute(EXACT_VALUES_ATTRIBUTE, json.dumps(exact))
    if description:
        table_node.SetDescription(description)
    table_node.EndModify(was_modifying)
    return table_node


def column_values(table_node, name):
    """Numbers of column ``name`` of a table SeedBrachy wrote, at full precision (NaN where undefined)."""
    exact = json.loads(table_node.GetAttribute(EXACT_VALUES_ATTRIBUTE) or "{}")
    if name in exact:
        return [math.nan if v is None else v for v in exact[name]]
    column = table_node.GetTable().GetColumnByName(name)
    return [float(column.GetValue(r)) for r in range(column.GetNumberOfTuples())]


def write_dvh_metrics(table_node, evaluation):
    """Fill ``table_node`` with a :class:`~SeedBrachyLib.dvh.PlanEvaluation` (row per structure)."""
    require_node(table_node, "output DVH table", "vtkMRMLTableNode")
    rows = list(evaluation.structures.values())
    if not rows:
        raise InputError("the plan evaluation has no structures to tabulate")
    metrics = list(dict.fromkeys(m for r in rows for m in r.values))
    units = {m: next(r.units[m] for r in rows if m in r.units) for m in metrics}
    columns = [("Structure", [r.name for r in rows], ""), ("Role", [r.role for r in rows], "")]
    columns += [(column_name(m, units[m]), [r.values.get(m) for r in rows], units[m]) for m in metrics]
    text = f"Prescription {evaluation.prescription_gy:g} Gy"
    if evaluation.dose_description:
        text += f"; {evaluation.dose_description}"
    return _fill_table(table_node, columns, ROLE_DVH_METRICS, text)


def read_dvh_metric(table_node, structure, metric):
    """(value, unit) of ``metric`` for ``structure`` from a table written by :func:`write_dvh_metrics`."""
    table = table_node.GetTable()
    names = [table.GetColumn(c).GetName() for c in range(table.GetNumberOfColumns())]
    matches = [n for n in names if n == metric or n.startswith(metric + " [")]
    if not matches:
        raise InputError(f"metric '{metric}' not in table '{table_node.GetName()}' (columns: {', '.join(names)})")
    structures = table.GetColumnByName("Structure")
    for row in range(table.GetNumberOfRows()):
        if structures.GetValue(row) == structure:
            unit = matches[0][len(metric):].strip(" []")
            return column_values(table_node, matches[0])[row], unit
    raise InputError(f"structure '{structure}' not in table '{table_node.GetName()}'")


def write_dvh_curves(table_node, chart_node, evaluation, n_points=CURVE_POINTS):
    """Cumulative DVH curves: table (dose Gy, volume % per structure) and a chart, one series each.

    Series this function made before on ``chart_node`` are replaced (removed from the scene).
    """
    require_node(table_node, "output DVH curve table", "vtkMRMLTableNode")
    require_node(chart_node, "output DVH chart", "vtkMRMLPlotChartNode")
    scene = require_scene(chart_node, "DVH chart")
    rows = list(evaluation.structures.values())
    if not rows:
        raise InputError("the plan evaluation has no structures to plot")
    dmax = max(r.dvh.dmax for r in rows)
    axis = np.linspace(0.0, dmax, int(n_points))
    columns = [(DOSE_COLUMN, axis.tolist(), "Gy")]
    for r in rows:
        _, volume_pct, _ = r.dvh.curve(axis)
        columns.append((f"{r.name} [%]", volume_pct.tolist(), "%"))
    _fill_table(table_node, columns, ROLE_DVH_CURVES, f"Cumulative DVH, prescription {evaluation.prescription_gy:g} Gy")

    for i in reversed(range(chart_node.GetNumberOfPlotSeriesNodes())):
        old = chart_node.GetNthPlotSeriesNode(i)
        if old is not None and old.GetAttribute(ROLE_ATTRIBUTE) == ROLE_DVH_CURVES:
            chart_node.RemovePlotSeriesNodeID(old.GetID())
            scene.RemoveNode(old)
    for r in rows:
        series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"DVH {r.name}")
        series.SetAndObserveTableNodeID(table_node.GetID())
        series.SetXColumnName(DOSE_COLUMN)
        series.SetYColumnName(f"{r.name} [%]")
        series.SetPlotType(series.PlotTypeScatter)
        series.SetMarkerStyle(series.MarkerStyleNone)
        series.SetUniqueColor()
        series.SetAttribute(ROLE_ATTRIBUTE, ROLE_DVH_CURVES)
        chart_node.AddAndObservePlotSeriesNodeID(series.GetID())
    chart_node.SetTitle(f"DVH (prescription {evaluation.prescription_gy:g} Gy)")
    chart_node.SetXAxisTitle("Dose (Gy)")
    chart_node.SetYAxisTitle("Volume (%)")
    chart_node.SetAttribute(ROLE_ATTRIBUTE, ROLE_DVH_CURVES)
    return table_node, chart_node


def write_checks(table_node, results):
    """Fill ``table_node`` with :class:`~SeedBrachyLib.checks.CheckResult` rows (one per goal)."""
    require_node(table_node, "output checks table", "vtkMRMLTableNode")
    if not results:
        raise InputError("no check results to tabulate")
    columns = [("Check", [r.goal for r in results], ""), ("Structure", [r.structure for r in results], ""),
               ("Metric", [r.metric for r in results], ""), ("Measured", [r.measured for r in results], ""),
               ("Limit", [r.limit for r in results], ""), ("Unit", [r.unit for r in results], ""),
               ("Comparator", [r.comparator for r in results], ""),
               ("Result", [r.status for r in results], ""), ("Note", [r.note for r in results], ""),
               ("Source", [r.source for r in results], "")]
    return _fill_table(table_node, columns, ROLE_CHECKS, "Plan checks against published goals (research use only)")
