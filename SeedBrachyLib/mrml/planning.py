"""Pre-planning on MRML nodes: needles and seeds from a CT and a GTV segment into markups nodes.

The plan lands in a seed fiducial node (one point per seed, axis and S_K kept, see
:mod:`.markups`) with one line node per needle used. The node also keeps the generated seed
positions (attribute :data:`GENERATED_ATTRIBUTE`, JSON, mm RAS): a later run compares the
node's points with them, and if the user moved, added or removed a seed by hand (or the
node holds seeds that were never generated), it refuses to replace them unless
``overwrite`` is given -- the caller asks the user or writes into a new node.
"""

from __future__ import annotations

import json

import numpy as np

from .. import structures
from ..errors import InputError
from ..planning import pipeline
from ..planning.loading import PATTERNS, load_pattern
from ..planning.optimize import Goals, OarLimit
from ..sources import DEFAULT_U_PER_MCI, mci_to_u
from . import ATTRIBUTE_PREFIX, markups, segmentations, volumes
from ._common import require_node

GENERATED_ATTRIBUTE = ATTRIBUTE_PREFIX + "GeneratedSeedPositions"
METHODS = ("optimise", *PATTERNS)
POSITION_TOLERANCE_MM = 0.01


def _positions(node):
    return np.array([node.GetNthControlPointPositionVector(i) for i in range(node.GetNumberOfControlPoints())],
                    dtype=float).reshape(-1, 3)


def edited_by_hand(seeds_node):
    """True if ``seeds_node`` holds points that differ from the last plan generated into it (mm RAS).

    A node with points but no generated plan counts as hand-made; an empty node is not edited.
    """
    require_node(seeds_node, "seed markups", markups.FIDUCIAL_CLASS)
    current = _positions(seeds_node)
    if len(current) == 0:
        return False
    stored = seeds_node.GetAttribute(GENERATED_ATTRIBUTE)
    if not stored:
        return True
    generated = np.asarray(json.loads(stored), dtype=float).reshape(-1, 3)
    return generated.shape != current.shape or not np.allclose(generated, current, atol=POSITION_TOLERANCE_MM)


def _mask_on(segmentation_node, segment_id, grid):
    mask, mask_grid = segmentations.segment_mask(segmentation_node, segment_id)
    return structures.resample_mask(mask, mask_grid, grid, supersampling=1) >= 0.5


def plan_seeds(ct_node, segmentation_node, gtv_segment_id, seeds_node, prescription_gy, method="optimise",
               activity_mci=0.5, u_per_mci=DEFAULT_U_PER_MCI, model_key="I125_OncoSeed6711",
               needle_direction=(-1.0, 0.0, 0.0), hole_spacing_mm=10.0, safety_margin_mm=3.0,
               candidate_spacing_mm=5.0, seed_spacing_mm=10.0, ctv_margin_mm=5.0, nogo_segment_ids=(),
               oar_limits=(), random_seed=0, overwrite=False, progress=None):
    """Generate needles and seeds for the GTV segment and write them into ``seeds_node`` (+ needle lines).

    Args:
        ct_node: CT scalar volume (HU).
        segmentation_node, gtv_segment_id: the GTV; CTV = GTV + ``ctv_margin_mm`` (mm).
        seeds_node: fiducial node receiving the seeds (hand edits protected, see the module notes).
        prescription_gy: Rx (Gy).
        method: "optimise" or a loading pattern ("uniform", "peripheral", "modified_peripheral").
        activity_mci, u_per_mci: seed activity (mCi) and its conversion to S_K (U/mCi).
        needle_direction: insertion direction (RAS), perpendicular to the template.
        hole_spacing_mm, safety_margin_mm, candidate_spacing_mm, seed_spacing_mm: template hole
            spacing, clearance from no-go structures, candidate and pattern seed spacing (mm).
        nogo_segment_ids: segments needles must avoid (bone from the CT is always avoided).
        oar_limits: (segment ID or "Skin", metric "D2cc"/"D0.1cc"/"Dmax", limit Gy) for the optimiser.
        overwrite: replace seeds edited by hand (ask the user first).
        progress: callback(fraction, message); returning False cancels.

    Returns:
        the :class:`~SeedBrachyLib.planning.candidates.Plan`.
    """
    require_node(seeds_node, "seed markups", markups.FIDUCIAL_CLASS)
    if method not in METHODS:
        raise InputError(f"planning method {method!r} unknown: use one of {METHODS}")
    if edited_by_hand(seeds_node) and not overwrite:
        raise InputError(f"seed markups '{seeds_node.GetName()}' hold seeds edited by hand (or not made by the "
                         "planner); choose a new seeds node or confirm replacing them (overwrite)")
    ct, grid = volumes.array_from_volume_node(ct_node)
    gtv = _mask_on(segmentation_node, gtv_segment_id, grid)
    limited = {sid for sid, _, _ in oar_limits if sid != "Skin"}
    oar_ids = set(nogo_segment_ids) | limited
    oar_masks = {sid: _mask_on(segmentation_node, sid, grid) for sid in oar_ids}
    case = pipeline.prepare(ct, grid, gtv, prescription_gy, ctv_margin_mm, oar_masks, tuple(nogo_segment_ids))
    _, needles, candidates = pipeline.generate_needles(case, needle_direction, hole_spacing_mm, safety_margin_mm,
                                                       candidate_spacing_mm)
    strength = float(mci_to_u(activity_mci, u_per_mci))
    if method == "optimise":
        goals = Goals(prescription_gy, oar_limits=tuple(OarLimit(*limit) for limit in oar_limits))
        plan = pipeline.optimise_plan(case, candidates, strength, model_key, goals, random_seed, progress=progress)
    else:
        plan = load_pattern(candidates, method, strength, seed_spacing_mm)
    seeds = plan.seeds()
    markups.write_seeds(seeds_node, seeds, model_key, overwrite=True)
    used = [candidates.needles[n].needle for n in plan.needle_indices]
    markups.write_needles(seeds_node, used, overwrite=True)
    seeds_node.SetAttribute(GENERATED_ATTRIBUTE, json.dumps(_positions(seeds_node).round(4).tolist()))
    return plan
