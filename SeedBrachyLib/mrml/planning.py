"""Pre-planning on MRML nodes: needles and seeds from a CT and the CTV segment into markups nodes.

The plan lands in a seed fiducial node (one point per seed, axis and S_K kept, see
:mod:`.markups`) with one line node per needle used. The node also keeps a record of what was
generated (attribute :data:`GENERATED_ATTRIBUTE`: every point's ID, label, position, axis, S_K and
status, and the model, :func:`.markups.snapshot`): a later run compares the node with it, and if the
user changed anything by hand (or the node holds seeds that were never generated), it refuses to
replace them unless ``overwrite`` is given -- the caller asks the user or writes into a new node.
"""

from __future__ import annotations

import json

from .. import checks, settings
from ..errors import InputError
from ..planning import pipeline
from ..planning.loading import load_pattern
from ..planning.optimize import Goals, OarLimit
from . import ATTRIBUTE_PREFIX, markups, segmentations, volumes
from ._common import require_node

GENERATED_ATTRIBUTE = ATTRIBUTE_PREFIX + "GeneratedPlan"


def edited_by_hand(seeds_node):
    """True if ``seeds_node`` differs in anything from the last plan generated into it: a point moved, added,
    removed, relabelled or marked missing, a stored axis or strength changed, or the source model changed.

    A node with points but no generated plan counts as hand-made; an empty node is not edited; a corrupt
    record of the generated plan counts as edited (it cannot be shown to be unchanged).
    """
    require_node(seeds_node, "seed markups", markups.FIDUCIAL_CLASS)
    if seeds_node.GetNumberOfControlPoints() == 0:
        return False
    stored = seeds_node.GetAttribute(GENERATED_ATTRIBUTE)
    if not stored:
        return True
    try:
        generated = json.loads(stored)
    except ValueError:
        return True
    return generated != json.loads(json.dumps(markups.snapshot(seeds_node)))


def optimiser_limits(values, oar_segment_id=""):
    """The user's limits of the Evaluation settings (skinD2ccLimitGy; oarMetric/oarLimitGy on segment
    ``oar_segment_id``) as optimiser limits: the same limits the checks apply (:func:`checks.user_limits`)."""
    goals = checks.user_limits(values.skinD2ccLimitGy, oar_segment_id, values.oarMetric, values.oarLimitGy)
    return tuple(OarLimit(g.structure, g.metric, g.limit) for g in goals)


def plan_seeds(ct_node, segmentation_node, ctv_segment_id, seeds_node, values=None, nogo_segment_ids=(),
               oar_segment_id="", gtv_segment_id="", overwrite=False, progress=None):
    """Generate needles and seeds for the CTV segment and write them into ``seeds_node`` (+ needle lines).

    Args:
        ct_node: CT scalar volume (HU).
        segmentation_node, ctv_segment_id: the CTV, used as it is (make it once from the GTV with
            :func:`.segmentations.make_ctv`); needles and seeds avoid its part inside no-go structures.
        seeds_node: fiducial node receiving the seeds (hand edits protected, see the module notes).
        values: :class:`SeedBrachyLib.settings.Values`: prescriptionGy, planningMethod, seedActivityMci and
            uPerMci (S_K), sourceModel, needleEntry, holeSpacingMm, safetyMarginMm, candidateSpacingMm,
            seedSpacingMm, randomSeed, boneThresholdHu, skinThicknessMm and the user limits
            (skinD2ccLimitGy, oarMetric, oarLimitGy); default: the defaults.
        nogo_segment_ids: segments needles must avoid (bone from the CT is always avoided).
        oar_segment_id: the organ at risk of the oarLimitGy limit (a segment ID).
        gtv_segment_id: optional GTV, evaluated with the plan.
        overwrite: replace seeds edited by hand (ask the user first).
        progress: callback(fraction, message); returning False cancels.

    Returns:
        the :class:`~SeedBrachyLib.planning.candidates.Plan`.
    """
    values = values or settings.defaults()
    require_node(seeds_node, "seed markups", markups.FIDUCIAL_CLASS)
    if edited_by_hand(seeds_node) and not overwrite:
        raise InputError(f"seed markups '{seeds_node.GetName()}' hold seeds edited by hand (or not made by the "
                         "planner); choose a new seeds node or confirm replacing them (overwrite)")
    ct, grid = volumes.array_from_volume_node(ct_node)
    ctv = segmentations.mask_on_grid(segmentation_node, ctv_segment_id, grid)
    gtv = segmentations.mask_on_grid(segmentation_node, gtv_segment_id, grid) if gtv_segment_id else None
    limits = optimiser_limits(values, oar_segment_id)
    oar_ids = set(nogo_segment_ids) | {limit.name for limit in limits if limit.name != "Skin"}
    oar_masks = {sid: segmentations.mask_on_grid(segmentation_node, sid, grid) for sid in oar_ids}
    case = pipeline.prepare(ct, grid, ctv, values.prescriptionGy, oar_masks, tuple(nogo_segment_ids), gtv,
                            values.boneThresholdHu, values.skinThicknessMm)
    _, needles, candidates = pipeline.generate_needles(case, values.needle_direction, values.holeSpacingMm,
                                                       values.safetyMarginMm, values.candidateSpacingMm)
    if values.planningMethod == "optimise":
        goals = Goals(values.prescriptionGy, oar_limits=limits)
        plan = pipeline.optimise_plan(case, candidates, values.strength_u, values.sourceModel, goals,
                                      values.randomSeed, progress=progress)
    else:
        plan = load_pattern(candidates, values.planningMethod, values.strength_u, values.seedSpacingMm)
    seeds = plan.seeds()
    markups.write_seeds(seeds_node, seeds, values.sourceModel, overwrite=True)
    used = [candidates.needles[n].needle for n in plan.needle_indices]
    markups.write_needles(seeds_node, used, overwrite=True)
    seeds_node.SetAttribute(GENERATED_ATTRIBUTE, json.dumps(markups.snapshot(seeds_node)))
    return plan
