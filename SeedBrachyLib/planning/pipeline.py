"""Pre-plan from a CT and a GTV: structures, needles, candidates, loading or optimisation, evaluation.

The steps a Slicer user and a headless script share (positions mm RAS, dose Gy, strength U):

0. :func:`make_ctv` -- the CTV = GTV + margin clipped to the body, made once and shown to the user.
1. :func:`prepare` -- body from the CT, the planning CTV (the CTV outside the no-go structures), skin
   rind, bone from a CT threshold (:mod:`SeedBrachyLib.structures`).
2. :func:`generate_needles` -- template facing the needle direction, needles with obstacle
   avoidance (:mod:`.template`), candidate positions (:mod:`.candidates`).
3. :func:`load_pattern` (:mod:`.loading`) or :func:`optimise_plan` (:mod:`.optimize`).
4. :func:`evaluate` -- TG-43 dose on the policy's dose grid (:mod:`SeedBrachyLib.dose_grid`) and the DVH
   metrics of the GTV, the CTV and every organ at risk (:func:`SeedBrachyLib.dvh.evaluate_plan`, TG-43 exact at
   the structures' own sample points).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import dose_grid, structures
from ..dose import compute_dose
from ..dvh import GridDose, SeedDose, evaluate_plan
from ..errors import InputError
from ..grid import Grid
from ..sources import get_model
from ..summaries import describe_dose
from .candidates import candidate_positions
from .loading import PATTERNS, load_pattern
from .optimize import DoseMatrices, Goals, optimise
from .template import (
    DEFAULT_BONE_THRESHOLD_HU,
    DEFAULT_HOLE_SPACING_MM,
    DEFAULT_SAFETY_MARGIN_MM,
    nogo_masks_from_ct,
    plan_needles,
    template_for_target,
)


@dataclass
class PlanningCase:
    """Masks on the CT grid for planning.

    Attributes:
        grid: the CT :class:`Grid`.
        ctv: bool ``[k, j, i]``, the planning CTV (the CTV minus the no-go structures).
        body, skin: bool ``[k, j, i]``.
        nogo: name -> bool mask of structures needles must avoid (bone, vessels, marked OARs).
        oars: name -> bool mask of organs evaluated and limited (skin included as "Skin").
        prescription_gy: Rx (Gy).
        targets: name -> bool mask of the targets as the user sees them ("GTV" if given, "CTV").
        fine: name -> ``(mask, grid)``, a structure's finer geometry for the DVH (e.g. an RT Structure Set's
            contours, ``Case.fine``), taken instead of its mask by :func:`evaluate`.
    """

    grid: Grid
    ctv: np.ndarray
    body: np.ndarray
    skin: np.ndarray
    nogo: dict
    oars: dict
    prescription_gy: float
    targets: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    fine: dict = field(default_factory=dict)


def make_ctv(ct_hu, grid, gtv_mask, margin_mm=structures.DEFAULT_CTV_MARGIN_MM, body_threshold_hu=None):
    """The CTV: bool ``[k, j, i]`` = GTV + ``margin_mm`` (mm), clipped to the body found from the CT (HU)."""
    body = structures.body_from_ct(ct_hu, grid, *(() if body_threshold_hu is None else (body_threshold_hu,)))
    return structures.expand_margin(gtv_mask, grid, margin_mm, clip_to=body, name="CTV")


def prepare(ct_hu, grid, ctv_mask, prescription_gy, oar_masks=None, nogo_names=(), gtv_mask=None,
            bone_threshold_hu=DEFAULT_BONE_THRESHOLD_HU, skin_thickness_mm=structures.DEFAULT_SKIN_THICKNESS_MM):
    """Planning structures from a CT (HU) and the CTV (and GTV) on its grid.

    Args:
        ct_hu: CT ``[k, j, i]`` (HU) on ``grid``.
        ctv_mask: bool ``[k, j, i]``, the CTV as the user sees it (:func:`make_ctv`); planning uses it
            minus the no-go structures.
        prescription_gy: Rx (Gy).
        oar_masks: name -> bool mask of organs at risk to evaluate (and limit).
        nogo_names: names in ``oar_masks`` that needles must avoid (bone from the CT is always added).
        gtv_mask: optional GTV, evaluated with the CTV (the published D90 goals are read on it).
        bone_threshold_hu: CT threshold (HU) for bone.
        skin_thickness_mm: skin rind thickness (mm).
    """
    oar_masks = dict(oar_masks or {})
    missing = [n for n in nogo_names if n not in oar_masks]
    if missing:
        raise InputError(f"no-go structures {missing} are not among the OARs given ({sorted(oar_masks)})")
    body = structures.body_from_ct(ct_hu, grid)
    nogo = nogo_masks_from_ct(ct_hu, grid, bone_threshold_hu, {n: oar_masks[n] for n in nogo_names})
    ctv = np.asarray(ctv_mask, dtype=bool).copy()
    for mask in nogo.values():
        ctv &= ~np.asarray(mask, dtype=bool)
    if not ctv.any():
        raise InputError("CTV is empty after removing the no-go structures: check the CTV and the no-go masks")
    skin = structures.skin_rind(body, grid, skin_thickness_mm)
    oars = {"Skin": skin, **oar_masks}
    targets = {"CTV": np.asarray(ctv_mask, dtype=bool)}
    if gtv_mask is not None:
        targets = {"GTV": np.asarray(gtv_mask, dtype=bool), **targets}
    return PlanningCase(grid, ctv, body, skin, nogo, oars, float(prescription_gy), targets=targets)


def generate_needles(case, direction, hole_spacing_mm=DEFAULT_HOLE_SPACING_MM,
                     safety_margin_mm=DEFAULT_SAFETY_MARGIN_MM, candidate_spacing_mm=5.0, paths=None):
    """Template needles along ``direction`` (or the given ``paths``) and their candidate seed positions.

    Returns:
        (template or None, :class:`~.template.NeedleSet`, :class:`~.plan.Candidates`).
    """
    template = None
    if paths is None:
        template = template_for_target(case.ctv, case.grid, direction, case.body, hole_spacing_mm)
        paths = template.paths()
    needles = plan_needles(paths, case.ctv, case.body, case.grid, case.nogo, safety_margin_mm)
    if not needles.needles:
        reasons = "; ".join(f"{lbl}: {why}" for lbl, why in needles.rejected) or "no path crosses the CTV"
        raise InputError(f"no usable needle: {reasons}")
    return template, needles, candidate_positions(needles.needles, case.ctv, case.grid, candidate_spacing_mm)


def dose_matrices(case, candidates, strength_u, model, progress=None):
    """Per-candidate dose (Gy) on the CTV and OAR voxel centres (see :class:`~.optimize.DoseMatrices`)."""
    pts = case.grid.points()
    return DoseMatrices(candidates, strength_u, model, pts[case.ctv],
                        {name: pts[np.asarray(m, dtype=bool)] for name, m in case.oars.items()},
                        case.grid.voxel_volume_cc, progress=progress)


def optimise_plan(case, candidates, strength_u, model, goals=None, random_seed=0, matrices=None, progress=None,
                  **options):
    """Optimised plan (:func:`~.optimize.optimise`), started also from every loading pattern (10 mm seed spacing).

    Default goals: D90 >= Rx, V100 >= 95 %, V150 <= 60 %. ``options`` go to :func:`~.optimize.optimise`.
    """
    goals = goals or Goals(case.prescription_gy)
    matrices = matrices or dose_matrices(case, candidates, strength_u, model, progress)
    starts = [load_pattern(candidates, p, strength_u, 10.0).chosen for p in PATTERNS]
    return optimise(candidates, goals, matrices, random_seed=random_seed, starts=starts, progress=progress,
                    **options)


def dose_grid_for(case, seeds, model, spacing_mm=None, threshold_pct=None):
    """The policy's dose grid (:func:`SeedBrachyLib.dose_grid.policy_grid`) for ``seeds`` in ``case``."""
    targets = [(m, case.grid) for m in case.targets.values()]
    others = [(m, case.grid) for m in case.oars.values()]
    return dose_grid.policy_grid(case.grid, seeds, get_model(model), case.prescription_gy, targets, others,
                                 spacing_mm, threshold_pct)


def evaluate(case, seeds, model, dose_grid=None, progress=None, spacing_mm=None, threshold_pct=None):
    """TG-43 dose of ``seeds`` on ``dose_grid`` (default :func:`dose_grid_for`, the policy grid) and the DVH
    evaluation, with TG-43 evaluated exactly at each structure's own sample points
    (:class:`SeedBrachyLib.dvh.SeedDose`), so every structure is evaluated whole wherever it lies; the dose grid
    is for display and export and gives the reference isodose volume of CI and EI.

    Returns:
        (:class:`~SeedBrachyLib.dvh.PlanEvaluation` with the targets (GTV, CTV) and every OAR, dose Gy, dose grid).
        ``spacing_mm`` and ``threshold_pct`` (settings doseSpacingMm, doseGridThresholdPct) shape the default grid.
    """
    model = get_model(model)
    grid = dose_grid or dose_grid_for(case, seeds, model, spacing_mm, threshold_pct)
    dose = compute_dose(grid, seeds, model, progress=progress, allow_outside=True)
    structs = structures.structures_from_masks(case.targets, case.oars, case.grid, fine=case.fine)
    body = structures.structure_on_grid("Body", case.body, case.grid, grid)
    evaluation = evaluate_plan(SeedDose(seeds, model), structs, case.prescription_gy, body=body,
                               dose_description=describe_dose(model, len(seeds), grid),
                               dose_volume=GridDose(dose, grid))
    return evaluation, dose, grid
