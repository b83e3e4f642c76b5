"""A plan in the scene, end to end: nodes in, dose volume and evaluation tables out.

The one code path behind the Slicer module's Logic and headless scripts:

* :func:`compute_dose` -- seeds node + CT + target segments -> dose volume node (Gy, SlicerRT-marked).
* :func:`evaluate` -- dose node + segmentation (GTV, CTV, organs at risk) -> DVH metrics table, curves, chart
  (the structures it reads: :func:`evaluation_inputs`).
  A dose node written here carries its seeds (:func:`mark_dose_seeds`): its DVH is TG-43 evaluated at
  each structure's own sample points (:class:`SeedBrachyLib.dvh.SeedDose`), every structure whole; any other
  dose volume (e.g. an imported RT Dose) is read as a grid (:class:`SeedBrachyLib.dvh.GridDose`).
* :func:`check` -- an evaluation against the indication's published goals, the planning aim and the
  user's limits (:mod:`SeedBrachyLib.checks`) -> checks table.

Settings come as one :class:`SeedBrachyLib.settings.Values` (defaults where not given).

Bad input raises :class:`~SeedBrachyLib.errors.InputError` with a message for the user:
no segment chosen, empty target, no seeds, seeds outside the CT, unknown source model.
"""

from __future__ import annotations

import json

import numpy as np

from .. import checks, dose_grid, dvh, kernel, settings
from .. import dose as dose_engine
from ..errors import InputError
from ..progress import report, scaled
from ..seeds import Seed
from ..sources import get_model
from ..summaries import describe_dose
from . import markups, segmentations, tables, volumes
from ._common import require_outputs

CURVES_TABLE_REFERENCE_ROLE = "SeedBrachyDVHCurves"


def mark_dose_seeds(dose_node, seeds, model_key, formalism="line"):
    """Record on ``dose_node`` the seeds (mm RAS, unit axis, S_K in U), model and formalism its dose was computed
    from (JSON in :data:`~.volumes.DOSE_SEEDS_ATTRIBUTE`; :func:`.volumes.set_dose_volume` removes it, so a dose
    written from elsewhere never keeps the seeds of an earlier one)."""
    rows = [[*map(float, s.position), *map(float, s.axis), float(s.strength_u)] for s in seeds]
    dose_node.SetAttribute(volumes.DOSE_SEEDS_ATTRIBUTE, json.dumps({"model": model_key, "formalism": formalism,
                                                                     "seeds": rows}))


def dose_seeds(dose_node):
    """The :class:`~SeedBrachyLib.dvh.SeedDose` recorded on a dose node (:func:`mark_dose_seeds`), or None."""
    text = dose_node.GetAttribute(volumes.DOSE_SEEDS_ATTRIBUTE)
    if not text:
        return None
    data = json.loads(text)
    seeds = [Seed(position=r[:3], axis=r[3:6], strength_u=r[6]) for r in data["seeds"]]
    return dvh.SeedDose(seeds, get_model(data["model"]), data["formalism"]) if seeds else None


def curves_table_of(chart, role=CURVES_TABLE_REFERENCE_ROLE, suffix="curves"):
    """The table of a chart's curves referenced by ``chart`` as ``role`` (the DVH curves by default; a new table
    node named "<chart> <suffix>", referenced, if none)."""
    table = chart.GetNodeReference(role)
    if table is None:
        table = chart.GetScene().AddNewNodeByClass("vtkMRMLTableNode", f"{chart.GetName()} {suffix}")
        chart.SetNodeReferenceID(role, table.GetID())
    return table


def seeds_inside_ct(seeds, ct_grid):
    """Raise InputError naming the first seed outside the CT volume (positions mm RAS)."""
    positions = np.array([s.position for s in seeds])
    inside = ct_grid.contains(positions)
    if not np.all(inside):
        i = int(np.flatnonzero(~inside)[0])
        raise InputError(f"seed '{seeds[i].label or i + 1}' at {np.round(positions[i], 1).tolist()} mm (RAS) lies "
                         f"outside the CT volume ({ct_grid.describe()}); {int((~inside).sum())} of {len(seeds)} "
                         "seeds are outside")


def plan_seeds_and_model(seeds_node, values):
    """(seeds, model) of a seeds node: stored axis and S_K per seed; hand-placed points take the panel's strength
    (``values.strength_u``, U) and :data:`.markups.HAND_PLACED_SEED_AXIS`. The model stored on the node must
    be the one chosen (``values.sourceModel``), else InputError: a plan is never dosed with another model."""
    seeds = markups.read_seeds(seeds_node, values.strength_u, markups.HAND_PLACED_SEED_AXIS)
    stored = markups.source_model_key(seeds_node)
    if stored and stored != values.sourceModel:
        raise InputError(f"the seeds in '{seeds_node.GetName()}' were planned with seed model {stored}, but "
                         f"{values.sourceModel} is chosen: choose {stored}, or plan the seeds again")
    return seeds, get_model(values.sourceModel)


def compute_dose(ct_node, segmentation_node, target_segment_ids, seeds_node, dose_node, values=None,
                 oar_segment_ids=None, progress=None):
    """TG-43U1 dose of the seeds in ``seeds_node`` into scalar volume ``dose_node`` (Gy).

    The dose grid follows :func:`SeedBrachyLib.dose_grid.policy_grid`: the CT's direction, the
    ``doseSpacingMm`` setting, every seed and target voxel, and every other segment (and the skin
    found from the CT) wherever the plan's dose exceeds ``doseGridThresholdPct`` of the prescription.

    Args:
        ct_node: CT scalar volume (HU) the plan belongs to; seeds must lie inside it.
        segmentation_node, target_segment_ids: the target segments (GTV and CTV); at least one.
        seeds_node: seed fiducial node (see :mod:`.markups`).
        dose_node: output scalar volume node (an output: never the CT or another input).
        values: :class:`SeedBrachyLib.settings.Values` (prescriptionGy, sourceModel, formalism, doseSpacingMm,
            doseGridThresholdPct, seedActivityMci and uPerMci for hand-placed seeds); default: the defaults.
        oar_segment_ids: other segments whose dose matters (default: every non-target segment).
        progress: callback(fraction, message); returning False cancels.

    Returns:
        (dose array float32 ``[k, j, i]`` Gy, dose :class:`Grid`).
    """
    values = values or settings.defaults()
    require_outputs({"output dose volume": dose_node}, {"CT": ct_node})
    ct_grid = volumes.grid_from_volume_node(ct_node)
    seeds, model = plan_seeds_and_model(seeds_node, values)
    seeds_inside_ct(seeds, ct_grid)
    target_segment_ids = [sid for sid in target_segment_ids if sid]
    if not target_segment_ids:
        raise InputError("no target segment chosen: choose the GTV and the CTV")
    report(progress, 0.0, "reading the structures")
    targets = [segmentations.segment_mask(segmentation_node, sid) for sid in target_segment_ids]
    if oar_segment_ids is None:
        oar_segment_ids = [s for s in segmentations.segment_ids(segmentation_node) if s not in target_segment_ids]
    others = [segmentations.segment_mask(segmentation_node, sid) for sid in oar_segment_ids]
    body, skin, ct_grid_ = segmentations.body_and_skin_masks(ct_node, values)
    others.append((skin, ct_grid_))
    grid = dose_grid.policy_grid(ct_grid, seeds, model, values.prescriptionGy, targets, others,
                                 values.doseSpacingMm, values.doseGridThresholdPct)
    dose = dose_engine.compute_dose(grid, seeds, model, formalism=values.formalism,
                                    progress=scaled(progress, 0.1, 0.95))
    write_dose(dose_node, dose, grid, seeds, model, values, seeds_node)
    report(progress, 1.0, "dose done")
    return dose, grid


def write_dose(dose_node, dose_gy, grid, seeds, model, values, seeds_node=None):
    """Dose (Gy, ``[k, j, i]`` on ``grid``) of ``seeds`` into ``dose_node``, described with how it was computed
    (model, seeds, grid, dose engine, points of ``seeds_node`` marked missing and not dosed); voxels below the
    policy threshold are marked as the grid policy says; the node carries its seeds (:func:`mark_dose_seeds`)."""
    missing = markups.missing_points(seeds_node) if seeds_node is not None else []
    left_out = f" ({len(missing)} marked missing not dosed: {', '.join(missing)})" if missing else ""
    volumes.set_dose_volume(dose_node, dose_gy, grid, values.prescriptionGy,
                            describe_dose(model, len(seeds), grid, values.formalism, engine=kernel.describe())
                            + left_out,
                            outside_below_gy=0.01 * values.doseGridThresholdPct * values.prescriptionGy)
    mark_dose_seeds(dose_node, seeds, model.key, values.formalism)


def evaluation_inputs(dose_node, segmentation_node, gtv_segment_id, ctv_segment_id, values=None, oar_segment_ids=None,
                      ct_node=None, progress=None):
    """What :func:`evaluate` reads besides the dose: (structures, notes on segments left out, body or None).

    Structures keep their own geometry (:func:`.segmentations.structures_from_segments`); for a dose volume not
    computed from seeds, organs at risk wholly outside its grid are left out (named in the notes). With
    ``ct_node`` (CT in HU) the body and its skin rind (settings bodyThresholdHu, skinThicknessMm) are found
    from the CT on the dose grid: the skin is added as an organ at risk (unless a structure is already named
    "Skin"). Kept by :class:`.live.LiveDosimetry` while seeds move (the grid and segments stay).
    """
    values = values or settings.defaults()
    grid = volumes.grid_from_volume_node(_dose_volume(dose_node))
    structures, outside = segmentations.structures_from_segments(
        segmentation_node, [gtv_segment_id, ctv_segment_id], None if dose_seeds(dose_node) else grid,
        oar_segment_ids, progress=scaled(progress, 0, 0.8))
    body = None
    if ct_node is not None:
        body, skin = segmentations.body_and_skin(ct_node, grid, values)
        if all(s.name != skin.name for s in structures):
            structures.append(skin)
    return structures, outside, body


def _dose_volume(node):
    if not volumes.is_dose_volume(node):
        raise InputError(f"volume '{node.GetName() if node else None}' is not a dose volume: compute the dose first")
    return node


def evaluate(dose_node, segmentation_node, gtv_segment_id, ctv_segment_id, values=None, metrics_table=None,
             chart=None, oar_segment_ids=None, ct_node=None, progress=None, inputs=None, dose_source=None):
    """DVH metrics of the targets (GTV and CTV) and organs at risk for the dose in ``dose_node``.

    The structures (and the skin and body from ``ct_node``) are :func:`evaluation_inputs` (or ``inputs``, kept
    from an earlier call). A dose computed from seeds (:func:`mark_dose_seeds`) is evaluated with TG-43 at the
    structures' sample points, each structure whole (``dose_source``: the same DVH with the formula, kept up to date, a
    :class:`SeedBrachyLib.incremental.LiveDose` of the node's seeds); another dose volume is read as a grid
    (structures mapped onto it with partial volumes; one only partly inside is evaluated on that part and says so,
    and checks on it are NOT EVALUATED unless the policy's dose bound makes a hot-spot metric exact). Metrics come
    from :func:`SeedBrachyLib.dvh.evaluate_plan`; the body, if any, limits the reference isodose volume of CI/EI.
    Given output nodes are filled: ``metrics_table`` (row per structure) and ``chart`` (cumulative DVH, one series
    per structure; its curve table is the node the chart references as :data:`CURVES_TABLE_REFERENCE_ROLE`,
    created if missing).

    Returns:
        :class:`~SeedBrachyLib.dvh.PlanEvaluation`.
    """
    values = values or settings.defaults()
    structures, outside, body = inputs or evaluation_inputs(dose_node, segmentation_node, gtv_segment_id,
                                                            ctv_segment_id, values, oar_segment_ids, ct_node,
                                                            progress)
    dose, grid = volumes.array_from_volume_node(_dose_volume(dose_node))
    floor = dose_node.GetAttribute(volumes.OUTSIDE_BELOW_ATTRIBUTE)
    volume = dvh.GridDose(dose, grid)
    evaluation = dvh.evaluate_plan(dose_source or dose_seeds(dose_node) or volume, structures, values.prescriptionGy,
                                   body=body, dose_description=dose_node.GetDescription() or "", dose_volume=volume,
                                   outside_below_gy=float(floor) if floor else None)
    evaluation.notes.extend(outside)
    if metrics_table is not None:
        tables.write_dvh_metrics(metrics_table, evaluation)
    if chart is not None:
        tables.write_dvh_curves(curves_table_of(chart), chart, evaluation)
    report(progress, 1.0, "evaluation done")
    return evaluation


def target_names(segmentation_node, gtv_segment_id, ctv_segment_id):
    """{"GTV": name, "CTV": name} of the chosen target segments (missing ones left out), for the checks."""
    names = {}
    for role, sid in ((checks.GTV, gtv_segment_id), (checks.CTV, ctv_segment_id)):
        if sid:
            names[role] = segmentations.segment_name(segmentation_node, sid)
    return names


def check(evaluation, values=None, checks_table=None, targets=None, oar_name=""):
    """Check an evaluation against the chosen indication's published goals, the planning aim and the user's
    limits (settings indication, skinD2ccLimitGy, oarMetric, oarLimitGy on structure ``oar_name``); fill
    ``checks_table`` if given.

    ``targets``: {"GTV": name, "CTV": name} (:func:`target_names`). Returns a list of
    :class:`~SeedBrachyLib.checks.CheckResult`.
    """
    values = values or settings.defaults()
    limits = checks.user_limits(values.skinD2ccLimitGy, oar_name, values.oarMetric, values.oarLimitGy)
    results = checks.run_checks(evaluation, checks.indications_to_check(values.indication), targets, limits)
    if checks_table is not None:
        tables.write_checks(checks_table, results)
    return results


def evaluate_and_check(dose_node, segmentation_node, gtv_segment_id, ctv_segment_id, values=None,
                       metrics_table=None, chart=None, checks_table=None, oar_segment_id="", ct_node=None,
                       inputs=None, dose_source=None):
    """:func:`evaluate` (DVH metrics in Gy, cc and %; tables and chart filled if given; ``inputs`` and
    ``dose_source`` as there), then :func:`check` with the chosen targets and ``oar_segment_id`` as the organ at
    risk of the user limit.

    Returns:
        (:class:`~SeedBrachyLib.dvh.PlanEvaluation`, list of :class:`~SeedBrachyLib.checks.CheckResult`).
    """
    evaluation = evaluate(dose_node, segmentation_node, gtv_segment_id, ctv_segment_id, values, metrics_table,
                          chart, ct_node=ct_node, inputs=inputs, dose_source=dose_source)
    oar_name = segmentations.segment_name(segmentation_node, oar_segment_id) if oar_segment_id else ""
    targets = target_names(segmentation_node, gtv_segment_id, ctv_segment_id)
    return evaluation, check(evaluation, values, checks_table, targets, oar_name)
