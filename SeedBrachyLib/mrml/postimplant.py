"""Post-implant verification in the scene: nodes in, nodes out (the Logic's and headless scripts' code path).

1. :func:`detect` -- post-implant CT -> seed markups in the post-implant CT frame (the user corrects
   them by hand; hand-edited seeds are not replaced without ``overwrite``).
2. :func:`register` -- post-implant CT -> pre-plan CT: a linear transform node whose matrix-to-parent
   is ``post_to_pre`` (see :mod:`SeedBrachyLib.postimplant.registration`): placing the post-implant CT
   under it lays it over the pre-plan CT.
3. :func:`carry_contours` -- pre-plan segments resampled onto the post-implant CT (new segmentation).
4. :func:`compute_post_plan_dose` -- detected seeds, mapped to the pre-plan frame by the transform,
   -> post-plan dose volume on the pre-plan dose grid (Gy; the seed-axis choice in its description).
5. :func:`compare` -- pre-plan and post-plan doses, same structures, same grid -> comparison table
   node (pre, post, post - pre) with the published thresholds checked on the post-plan.

Every node given is read or written as it is; nodes under a transform are refused (harden first).
"""

from __future__ import annotations

import numpy as np

from .. import checks, settings
from ..errors import InputError
from ..postimplant import comparison as comparison_lib
from ..postimplant import detection, registration
from ..progress import report, scaled
from ..seeds import Seed
from . import ATTRIBUTE_PREFIX, ROLE_ATTRIBUTE, dicom, dosimetry, markups, segmentations, tables, transforms, volumes
from ._common import require_node, require_outputs

ROLE_POST_SEEDS = "PostImplantSeeds"
ROLE_REGISTRATION = "PostImplantRegistration"
ROLE_COMPARISON = "PrePostComparison"
CONFIDENCE_ATTRIBUTE = ATTRIBUTE_PREFIX + "DetectionConfidences"


def detect(post_ct_node, seeds_node, plan_seeds_node=None, use_plan_count=False, overwrite=False,
           review_below=detection.REVIEW_BELOW, slice_thickness_mm=None, progress=None):
    """Find the seeds in ``post_ct_node`` (HU) and write them into fiducial node ``seeds_node``.

    Args:
        post_ct_node: post-implant CT scalar volume (HU).
        seeds_node: output fiducial node; points it already holds (possibly hand-corrected) are an
            InputError unless ``overwrite``.
        plan_seeds_node: the plan's seeds: their S_K (U) and source model go to the detected seeds.
        use_plan_count: let the planned number of seeds decide between k and k + 1 seeds where the image
            supports both (it never invents a seed: a lost or migrated seed stays missing).
        review_below: confidence (0-1) under which a seed is listed "to review": kept in the point list,
            labelled "<label> (review)", unselected, its description starting "to review".
        slice_thickness_mm: the series' slice thickness (mm); default the SliceThickness of the DICOM series
            the CT is linked to (:func:`.dicom.slice_thickness_of`), else estimated from the image.
        progress: callback(fraction, message); returning False cancels.

    Returns:
        :class:`~SeedBrachyLib.postimplant.detection.DetectionResult`; confidences (0-1, in point
        order) are written in each point's description and on the node as :data:`CONFIDENCE_ATTRIBUTE`.
    """
    require_node(seeds_node, "output seed markups", markups.FIDUCIAL_CLASS)
    if seeds_node.GetNumberOfControlPoints() and not overwrite:
        raise InputError(f"seed markups '{seeds_node.GetName()}' already hold {seeds_node.GetNumberOfControlPoints()} "
                         "points (maybe corrected by hand); choose another node or allow overwriting")
    ct, grid = volumes.array_from_volume_node(post_ct_node)
    if slice_thickness_mm is None:
        slice_thickness_mm = dicom.slice_thickness_of(post_ct_node)
    plan_seeds = markups.read_seeds(plan_seeds_node) if plan_seeds_node is not None else None
    strength = float(np.median([s.strength_u for s in plan_seeds])) if plan_seeds else None
    expected = len(plan_seeds) if (plan_seeds and use_plan_count) else None
    result = detection.detect_seeds(ct, grid, expected_count=expected, strength_u=strength,
                                    slice_thickness_mm=slice_thickness_mm, review_below=review_below,
                                    progress=progress)
    if not result.seeds:
        raise InputError(f"no seeds found in '{post_ct_node.GetName()}' (objects cut at {result.threshold_hu:.0f} HU): "
                         "check that it is the post-implant CT, or place the seeds by hand")
    model_key = markups.source_model_key(plan_seeds_node) if plan_seeds_node is not None else None
    labelled = [Seed(s.position, s.axis, s.strength_u, f"{s.label} (review)" if review else s.label)
                for s, review in zip(result.seeds, result.review)]
    markups.write_seeds(seeds_node, labelled, model_key, overwrite=True)
    for index, (confidence, review) in enumerate(zip(result.confidences, result.review)):
        text = seeds_node.GetNthControlPointDescription(index)
        note = f"to review: detection confidence {confidence:.2f}" if review else \
            f"detection confidence {confidence:.2f}"
        seeds_node.SetNthControlPointDescription(index, f"{note}; {text}" if text else note)
        if review:
            seeds_node.SetNthControlPointSelected(index, False)
    seeds_node.SetAttribute(ROLE_ATTRIBUTE, ROLE_POST_SEEDS)
    seeds_node.SetAttribute(CONFIDENCE_ATTRIBUTE, " ".join(f"{c:.3f}" for c in result.confidences))
    seeds_node.SetDescription(result.summary())
    return result


def register(pre_ct_node, post_ct_node, transform_node, kind="rigid", metric="mattes", seeds_node=None,
             target_segmentation_node=None, target_segment_id=None, roi_margin_mm=registration.DEFAULT_ROI_MARGIN_MM,
             accept_implausible=False, progress=None):
    """Register the post-implant CT to the pre-plan CT; write ``post_to_pre`` into ``transform_node``.

    Args:
        pre_ct_node, post_ct_node: scalar volumes (HU).
        transform_node: output vtkMRMLLinearTransformNode (matrix to parent = post-implant -> pre-plan, mm RAS).
        kind, metric: see :func:`SeedBrachyLib.postimplant.registration.register_post_to_pre`.
        seeds_node: optional detected seeds (post-implant frame), masked out of the metric as well.
        target_segmentation_node, target_segment_id: optional target segment (pre-plan frame): the
            metric is then restricted to it grown by ``roi_margin_mm`` (mm).
        accept_implausible: write the transform even when the quality checks flag it (its description
            says so); by default a flagged registration is an InputError and the node is left as it was.

    Returns:
        :class:`~SeedBrachyLib.postimplant.registration.RegistrationResult`.
    """
    require_node(transform_node, "output transform", transforms.TRANSFORM_CLASS)
    pre_ct, pre_grid = volumes.array_from_volume_node(pre_ct_node)
    post_ct, post_grid = volumes.array_from_volume_node(post_ct_node)
    points = None
    if seeds_node is not None and seeds_node.GetNumberOfControlPoints():
        points = [s.position for s in markups.read_seeds(seeds_node, 1.0, (0.0, 0.0, 1.0))]
    roi = None
    if target_segment_id:
        mask, grid = segmentations.segment_mask(target_segmentation_node, target_segment_id)
        on_pre = registration.carry_mask(mask, grid, pre_grid, np.eye(4))  # grown on the CT grid, not clipped
        roi = registration.target_region(on_pre, pre_grid, roi_margin_mm)
    result = registration.register_post_to_pre(pre_ct, pre_grid, post_ct, post_grid, kind=kind, metric=metric,
                                               post_seed_points=points, pre_roi=roi, progress=progress)
    if not result.plausible and not accept_implausible:
        raise InputError(f"registration of '{post_ct_node.GetName()}' to '{pre_ct_node.GetName()}' is not "
                         f"trustworthy, transform '{transform_node.GetName()}' left unchanged: "
                         f"{'; '.join(result.quality.reasons)}")
    transforms.write_matrix(transform_node, result.post_to_pre, ROLE_REGISTRATION, result.describe())
    return result


def existing_segments(segmentation_node, segment_ids, output_segmentation_node):
    """Names of the segments ``segment_ids`` of ``segmentation_node`` that ``output_segmentation_node`` already has."""
    if output_segmentation_node is None:
        return []
    names = [segmentations.segment_name(segmentation_node, sid) for sid in segment_ids if sid]
    out = output_segmentation_node.GetSegmentation()
    return [name for name in names if out.GetSegmentIdBySegmentName(name)]


def carry_contours(segmentation_node, segment_ids, transform_node, post_ct_node, output_segmentation_node,
                   overwrite=False):
    """Pre-plan segments carried onto the post-implant CT grid through the registration; return the new IDs.

    Each segment is resampled with ``post_to_pre`` (the transform node's matrix to world) onto the
    post-implant CT's grid and added to ``output_segmentation_node`` under the same name (an
    existing segment of that name is an InputError unless ``overwrite``).
    """
    post_to_pre = transforms.read_matrix_to_world(transform_node)
    post_grid = volumes.grid_from_volume_node(post_ct_node)
    if not segment_ids:
        raise InputError("no segments chosen to carry onto the post-implant CT")
    ids = []
    for sid in segment_ids:
        name = segmentations.segment_name(segmentation_node, sid)
        mask, grid = segmentations.segment_mask(segmentation_node, sid)
        carried = registration.carry_mask(mask, grid, post_grid, post_to_pre)
        if not carried.any():
            raise InputError(f"segment '{name}' falls outside the post-implant CT after registration")
        ids.append(segmentations.add_mask_segment(output_segmentation_node, carried, post_grid, name,
                                                  overwrite=overwrite))
    return ids


def compute_post_plan_dose(seeds_node, transform_node, pre_dose_node, post_dose_node, values=None,
                           plan_seeds_node=None, progress=None):
    """Post-plan dose (Gy) of the detected seeds, on the pre-plan dose grid, into ``post_dose_node``.

    Args:
        seeds_node: implanted seeds in the post-implant CT frame (detected and corrected by hand; points
            added by hand have no axis: use the postSeedAxis setting "needle" or "unknown" then).
        transform_node: the registration (matrix to world = post-implant -> pre-plan), or None when
            the seeds are already in the pre-plan frame.
        pre_dose_node: the pre-plan dose volume: its grid is used, so both doses share every voxel.
        post_dose_node: output scalar volume (Gy, marked as a dose volume); never the pre-plan dose.
        values: settings (:class:`SeedBrachyLib.settings.Values`): postSeedAxis ("detection", "needle": the
            needles of ``plan_seeds_node``, "unknown": 1D point source), sourceModel, prescriptionGy.
        plan_seeds_node: the plan's seeds node (needles; S_K of seeds added by hand).

    Returns:
        :class:`~SeedBrachyLib.postimplant.comparison.PostPlanDose` (seeds in the pre-plan frame).
    """
    values = values or settings.defaults()
    axis_source = values.postSeedAxis
    if not volumes.is_dose_volume(pre_dose_node):
        raise InputError(f"volume '{pre_dose_node.GetName() if pre_dose_node else None}' is not a dose volume: "
                         "compute the pre-plan dose first")
    require_outputs({"output post-plan dose volume": post_dose_node}, {"pre-plan dose volume": pre_dose_node})
    # points placed by hand have no axis: with "needle" it is replaced, with "unknown" unused
    placeholder_axis = None if axis_source == "detection" else (0.0, 0.0, 1.0)
    try:
        seeds = markups.read_seeds(seeds_node, _plan_strength(plan_seeds_node), placeholder_axis)
    except InputError as exc:
        if axis_source != "detection":
            raise
        raise InputError(f"{exc}; or take the seed axes from the needles, or as unknown (1D point source)") from exc
    if transform_node is not None:
        seeds = registration.map_seeds(seeds, transforms.read_matrix_to_world(transform_node))
    key = values.sourceModel
    needles = markups.read_needles(plan_seeds_node) if (axis_source == "needle" and plan_seeds_node) else None
    grid = volumes.grid_from_volume_node(pre_dose_node)
    post = comparison_lib.post_plan_dose(grid, seeds, key, axis_source, needles=needles, progress=progress)
    volumes.set_dose_volume(post_dose_node, post.dose, grid, values.prescriptionGy, post.description)
    dosimetry.mark_dose_seeds(post_dose_node, post.seeds, key, post.formalism)
    return post


def _plan_strength(plan_seeds_node):
    if plan_seeds_node is None:
        return None
    return float(np.median([s.strength_u for s in markups.read_seeds(plan_seeds_node)]))


def compare(pre_dose_node, post_dose_node, segmentation_node, gtv_segment_id, ctv_segment_id, table_node,
            plan_seeds_node, post_seeds_node, values=None, oar_segment_ids=None, oar_segment_id="", ct_node=None,
            progress=None):
    """Pre-plan vs post-plan table into ``table_node``; returns the :class:`Comparison`.

    Both doses must be on the same grid (:func:`compute_post_plan_dose` does that). Structures come
    from the segmentation (GTV, CTV and organs at risk), with the skin from ``ct_node`` (the pre-plan
    CT) as in :func:`.dosimetry.evaluate`; the post-plan is checked exactly as the pre-plan is
    (:func:`.dosimetry.check`: the chosen indication, the planning aim and the user's limits of ``values``,
    the organ-at-risk limit on ``oar_segment_id``). Columns: Structure, Metric, Unit, Pre-plan, Post-plan,
    Difference (post - pre), Difference [%]; the checks and the dose descriptions go to the table's description.
    """
    values = values or settings.defaults()
    require_node(table_node, "output comparison table", "vtkMRMLTableNode")
    pre_grid = volumes.grid_from_volume_node(pre_dose_node)
    post_grid = volumes.grid_from_volume_node(post_dose_node)
    if pre_dose_node is post_dose_node:
        raise InputError(f"the pre-plan and the post-plan dose are the same volume '{pre_dose_node.GetName()}': "
                         "compute the post-plan dose into its own volume")
    if pre_grid.dims != post_grid.dims or not np.allclose(pre_grid.ijk_to_ras, post_grid.ijk_to_ras, atol=1e-6):
        raise InputError(f"pre-plan dose ({pre_grid.describe()}) and post-plan dose ({post_grid.describe()}) "
                         "are on different grids: compute the post-plan dose on the pre-plan dose grid")
    evaluations = [dosimetry.evaluate(node, segmentation_node, gtv_segment_id, ctv_segment_id, values,
                                      oar_segment_ids=oar_segment_ids, ct_node=ct_node,
                                      progress=scaled(progress, 0.5 * n, 0.5 * n + 0.5))
                   for n, node in enumerate((pre_dose_node, post_dose_node))]
    oar_name = segmentations.segment_name(segmentation_node, oar_segment_id) if oar_segment_id else ""
    limits = checks.user_limits(values.skinD2ccLimitGy, oar_name, values.oarMetric, values.oarLimitGy)
    result = comparison_lib.compare_evaluations(
        *evaluations, plan_seeds_node.GetNumberOfControlPoints(), post_seeds_node.GetNumberOfControlPoints(),
        indications=checks.indications_to_check(values.indication),
        targets=dosimetry.target_names(segmentation_node, gtv_segment_id, ctv_segment_id), user_limits=limits)
    columns = [(header, values_, "") for header, values_ in result.columns()]
    tables._fill_table(table_node, columns, ROLE_COMPARISON, result.format())
    report(progress, 1.0, "comparison done")
    return result
