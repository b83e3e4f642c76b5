"""A plan in the scene, end to end: nodes in, dose volume and evaluation tables out.

The one code path behind the Slicer module's Logic and headless scripts:

* :func:`compute_dose` -- seeds node + CT + target segment -> dose volume node (Gy, SlicerRT-marked).
* :func:`evaluate` -- dose node + segmentation -> DVH metrics table, DVH curves table and chart.
* :func:`check` -- an evaluation against published goals (:mod:`SeedBrachyLib.checks`) -> checks table.

Bad input raises :class:`~SeedBrachyLib.errors.InputError` with a message for the user:
no segment chosen, empty target, no seeds, seeds outside the CT, unknown source model.
"""

from __future__ import annotations

import numpy as np

from .. import checks, dvh
from .. import dose as dose_engine
from ..errors import InputError
from ..progress import report
from ..sources import get_model
from . import markups, segmentations, tables, volumes

CURVES_TABLE_REFERENCE_ROLE = "SeedBrachyDVHCurves"


def curves_table_of(chart):
    """The DVH curve table referenced by ``chart`` (a new table node, referenced, if none)."""
    table = chart.GetNodeReference(CURVES_TABLE_REFERENCE_ROLE)
    if table is None:
        table = chart.GetScene().AddNewNodeByClass("vtkMRMLTableNode", f"{chart.GetName()} curves")
        chart.SetNodeReferenceID(CURVES_TABLE_REFERENCE_ROLE, table.GetID())
    return table


def _scaled(progress, start, stop):
    """A progress callback mapping 0..1 onto start..stop of ``progress``."""
    if progress is None:
        return None
    return lambda fraction, message="": progress(start + (stop - start) * fraction, message)


def seeds_inside_ct(seeds, ct_grid):
    """Raise InputError naming the first seed outside the CT volume (positions mm RAS)."""
    positions = np.array([s.position for s in seeds])
    inside = ct_grid.contains(positions)
    if not np.all(inside):
        i = int(np.flatnonzero(~inside)[0])
        raise InputError(f"seed '{seeds[i].label or i + 1}' at {np.round(positions[i], 1).tolist()} mm (RAS) lies "
                         f"outside the CT volume ({ct_grid.describe()}); {int((~inside).sum())} of {len(seeds)} "
                         "seeds are outside")


def compute_dose(ct_node, segmentation_node, target_segment_id, seeds_node, dose_node, prescription_gy,
                 model_key=None, spacing_mm=1.0, margin_mm=10.0, formalism="line", default_strength_u=None,
                 default_axis=None, progress=None):
    """TG-43U1 dose of the seeds in ``seeds_node`` into scalar volume ``dose_node`` (Gy).

    The dose grid takes the CT's direction, covers the target segment and every seed plus
    ``margin_mm`` (mm), with ``spacing_mm`` (mm) voxels. Seeds keep their stored axis and S_K (U).

    Args:
        ct_node: CT scalar volume (HU) the plan belongs to; seeds must lie inside it.
        segmentation_node, target_segment_id: the target (CTV) segment.
        seeds_node: seed fiducial node (see :mod:`.markups`).
        dose_node: output scalar volume node (overwritten: it is an output).
        prescription_gy: prescription (Gy), for the isodose display.
        model_key: TG-43 source model key; default: the one stored on the seeds node.
        formalism: "line" (2D) or "point" (1D).
        default_strength_u, default_axis: S_K (U) and unit axis (RAS) of seeds placed by hand
            (points without stored values); see :func:`.markups.read_seeds`.
        progress: callback(fraction, message); returning False cancels.

    Returns:
        (dose array float32 ``[k, j, i]`` Gy, dose :class:`Grid`).
    """
    ct_grid = volumes.grid_from_volume_node(ct_node)
    seeds = markups.read_seeds(seeds_node, default_strength_u, default_axis)
    seeds_inside_ct(seeds, ct_grid)
    key = model_key or markups.source_model_key(seeds_node)
    if not key:
        raise InputError(f"no seed source model given and none stored on '{seeds_node.GetName()}': choose a model")
    model = get_model(key)
    report(progress, 0.0, "reading the target")
    mask, mask_grid = segmentations.segment_mask(segmentation_node, target_segment_id)
    k, j, i = np.nonzero(mask)
    target_points = mask_grid.to_ras(np.stack([i, j, k], axis=-1))
    points = np.vstack([target_points, [s.position for s in seeds]])
    grid = volumes.dose_grid_for(ct_grid, points, margin_mm, spacing_mm)
    dose = dose_engine.compute_dose(grid, seeds, model, formalism=formalism, progress=_scaled(progress, 0.05, 0.95))
    description = (f"TG-43U1 {formalism} source, {model.name}, {len(seeds)} seeds, permanent implant; "
                   f"grid {grid.describe()}. Research use only.")
    volumes.set_dose_volume(dose_node, dose, grid, prescription_gy, description)
    report(progress, 1.0, "dose done")
    return dose, grid


def evaluate(dose_node, segmentation_node, target_segment_id, prescription_gy, metrics_table=None, chart=None,
             oar_segment_ids=None, ct_node=None, progress=None):
    """DVH metrics of the target and organs at risk for the dose in ``dose_node``.

    Structures are mapped onto the dose grid with partial volumes; metrics come from
    :func:`SeedBrachyLib.dvh.evaluate_plan`. Given output nodes are filled: ``metrics_table``
    (row per structure) and ``chart`` (cumulative DVH, one series per structure; its curve table
    is the node the chart references as :data:`CURVES_TABLE_REFERENCE_ROLE`, created if missing).
    With ``ct_node`` (CT in HU) the body and its 5 mm skin rind are found from the CT
    (:func:`.segmentations.body_and_skin`): the skin is evaluated as an organ at risk (unless a
    structure is already named "Skin") and the body limits the reference isodose volume of CI/EI.

    Returns:
        :class:`~SeedBrachyLib.dvh.PlanEvaluation`.
    """
    if not volumes.is_dose_volume(dose_node):
        raise InputError(f"volume '{dose_node.GetName() if dose_node else None}' is not a dose volume: "
                         "compute the dose first")
    dose, grid = volumes.array_from_volume_node(dose_node)
    structures = segmentations.structures_from_segments(segmentation_node, target_segment_id, grid,
                                                        oar_segment_ids, progress=_scaled(progress, 0.0, 0.8))
    body = None
    if ct_node is not None:
        body, skin = segmentations.body_and_skin(ct_node, grid)
        if all(s.name != skin.name for s in structures):
            structures.append(skin)
    evaluation = dvh.evaluate_plan(dose, structures, prescription_gy, body=body,
                                   dose_description=dose_node.GetDescription() or "")
    if metrics_table is not None:
        tables.write_dvh_metrics(metrics_table, evaluation)
    if chart is not None:
        tables.write_dvh_curves(curves_table_of(chart), chart, evaluation)
    report(progress, 1.0, "evaluation done")
    return evaluation


def check(evaluation, checks_table=None, indications=("general",), user_limits=()):
    """Check an evaluation against published goals and user limits; fill ``checks_table`` if given.

    Args:
        evaluation: :class:`~SeedBrachyLib.dvh.PlanEvaluation` (from :func:`evaluate`).
        indications: goal sets of :mod:`SeedBrachyLib.checks` (``checks.available_indications()``).
        user_limits: user OAR/skin limits, :func:`SeedBrachyLib.checks.user_limit` goals or
            (structure, metric, limit in Gy) tuples.

    Returns:
        list of :class:`~SeedBrachyLib.checks.CheckResult`.
    """
    results = checks.run_checks(evaluation, indications, user_limits=user_limits)
    if checks_table is not None:
        tables.write_checks(checks_table, results)
    return results
