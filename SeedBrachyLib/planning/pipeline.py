"""Pre-plan from a CT and a GTV: structures, needles, candidates, loading or optimisation, evaluation.

The steps a Slicer user and a headless script share (positions mm RAS, dose Gy, strength U):

1. :func:`prepare` -- body from the CT, CTV = GTV + margin clipped to the body and outside the
   no-go structures, skin rind, bone from a CT threshold (:mod:`SeedBrachyLib.structures`).
2. :func:`generate_needles` -- template facing the needle direction, needles with obstacle
   avoidance (:mod:`.template`), candidate positions (:mod:`.candidates`).
3. :func:`load_pattern` (:mod:`.loading`) or :func:`optimise_plan` (:mod:`.optimize`).
4. :func:`evaluate` -- TG-43 dose on a dose grid around the CTV and the DVH metrics from
   :func:`SeedBrachyLib.dvh.evaluate_plan`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import structures
from ..dose import compute_dose
from ..dvh import evaluate_plan
from ..errors import InputError
from ..grid import Grid
from ..sources import get_model
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

DEFAULT_CTV_MARGIN_MM = 5.0


@dataclass
class PlanningCase:
    """Masks on the CT grid for planning.

    Attributes:
        grid: the CT :class:`Grid`.
        ctv, body, skin: bool ``[k, j, i]``.
        nogo: name -> bool mask of structures needles must avoid (bone, vessels, marked OARs).
        oars: name -> bool mask of organs evaluated and limited (skin included as "Skin").
        prescription_gy: Rx (Gy).
    """

    grid: Grid
    ctv: np.ndarray
    body: np.ndarray
    skin: np.ndarray
    nogo: dict
    oars: dict
    prescription_gy: float
    notes: list = field(default_factory=list)


def prepare(ct_hu, grid, gtv_mask, prescription_gy, ctv_margin_mm=DEFAULT_CTV_MARGIN_MM, oar_masks=None,
            nogo_names=(), bone_threshold_hu=DEFAULT_BONE_THRESHOLD_HU, skin_thickness_mm=5.0):
    """Planning structures from a CT (HU) and a GTV mask on its grid.

    Args:
        ct_hu: CT ``[k, j, i]`` (HU) on ``grid``.
        gtv_mask: bool ``[k, j, i]``.
        prescription_gy: Rx (Gy).
        ctv_margin_mm: CTV = GTV + this margin (mm), clipped to the body, minus the no-go structures.
        oar_masks: name -> bool mask of organs at risk to evaluate (and limit).
        nogo_names: names in ``oar_masks`` that needles must avoid (bone from the CT is always added).
        bone_threshold_hu: CT threshold (HU) for bone.
        skin_thickness_mm: skin rind thickness (mm).
    """
    oar_masks = dict(oar_masks or {})
    missing = [n for n in nogo_names if n not in oar_masks]
    if missing:
        raise InputError(f"no-go structures {missing} are not among the OARs given ({sorted(oar_masks)})")
    body = structures.body_from_ct(ct_hu, grid)
    nogo = nogo_masks_from_ct(ct_hu, grid, bone_threshold_hu, {n: oar_masks[n] for n in nogo_names})
    ctv = structures.expand_margin(gtv_mask, grid, ctv_margin_mm, clip_to=body)
    for mask in nogo.values():
        ctv &= ~np.asarray(mask, dtype=bool)
    if not ctv.any():
        raise InputError("CTV is empty after removing the no-go structures: check the GTV and the no-go masks")
    skin = structures.skin_rind(body, grid, skin_thickness_mm)
    oars = {"Skin": skin, **oar_masks}
    return PlanningCase(grid, ctv, body, skin, nogo, oars, float(prescription_gy))


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


def dose_grid_for(case, spacing_mm=1.0, margin_mm=15.0):
    """A dose grid (mm) around the CTV plus ``margin_mm``, in the CT's orientation."""
    idx = np.argwhere(case.ctv)[:, ::-1]
    lo, hi = idx.min(axis=0), idx.max(axis=0)
    center = case.grid.to_ras((lo + hi) / 2.0)
    size = (hi - lo + 1) * case.grid.spacing + 2.0 * margin_mm
    return Grid.around(center, size, spacing_mm, case.grid.direction)


def evaluate(case, seeds, model, dose_grid=None, progress=None):
    """TG-43 dose of ``seeds`` on ``dose_grid`` (default :func:`dose_grid_for`) and its DVH evaluation.

    Returns:
        (:class:`~SeedBrachyLib.dvh.PlanEvaluation` with the CTV as target and the OARs, dose Gy, dose grid).
    """
    model = get_model(model)
    grid = dose_grid or dose_grid_for(case)
    dose = compute_dose(grid, seeds, model, progress=progress, allow_outside=True)
    structs = [structures.structure_on_grid("CTV", case.ctv, case.grid, grid, role="target")]
    for name, mask in case.oars.items():
        try:
            structs.append(structures.structure_on_grid(name, mask, case.grid, grid))
        except InputError:  # the OAR lies outside the dose grid: too far to matter
            continue
    body = structures.structure_on_grid("Body", case.body, case.grid, grid)
    description = f"TG-43 line source ({model.name}), dose grid {grid.describe()}"
    return evaluate_plan(dose, structs, case.prescription_gy, body=body, dose_description=description), dose, grid
