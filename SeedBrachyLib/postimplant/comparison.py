"""Post-plan dosimetry from the implanted (detected) seeds and the pre vs post comparison.

* :func:`oriented_seeds` -- how the seed axes of the post-plan are known: from detection (each seed's
  own axis, TG-43 line source), from the needle (the axis of the nearest planned needle, line
  source), or unknown (TG-43 1D point source, axes unused). The choice is kept with the dose.
* :func:`post_plan_dose` -- the post-plan dose (Gy) on a grid, with its description.
* :func:`compare_evaluations` -- a side-by-side table of the pre-plan and post-plan metrics (target
  D90, D100, V90, V100, V150, V200, CI, EI, HI; D2cc of every organ at risk and the skin; seed count)
  with the difference post - pre, and the published thresholds checked on the post-plan values.

The metrics come from :func:`SeedBrachyLib.dvh.evaluate_plan` with TG-43 evaluated exactly at the structures'
own sample points (:class:`SeedBrachyLib.dvh.SeedDose`; the same structures, and the same dose grid for CI/EI, for
both plans, so every difference is the implant's); the thresholds from :mod:`SeedBrachyLib.checks`.
Seeds must be in the frame of the structures: map detected seeds onto the pre-plan with
``registration.map_seeds(seeds, result.post_to_pre)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .. import RESEARCH_NOTICE
from ..checks import format_checks, run_checks
from ..dose import compute_dose
from ..dvh import GridDose, SeedDose, evaluate_plan
from ..errors import InputError
from ..progress import scaled
from ..seeds import Needle, Seed
from ..sources import get_model
from ..summaries import describe_dose

AXIS_SOURCES = {
    "detection": "seed axes from detection",
    "needle": "seed axes along the nearest needle",
    "unknown": "seed axes unknown: 1D point source",
}
TARGET_ROWS = ("D90", "D100", "V90", "V100", "V150", "V200", "CI", "EI", "HI")
OAR_ROWS = ("D2cc",)
DEFAULT_INDICATIONS = ("lymph-node-metastases", "general")


def oriented_seeds(seeds, axis_source="detection", needles=None, needle_direction=None):
    """Seeds with axes set by ``axis_source``; returns (seeds, formalism "line" | "point").

    Args:
        seeds: seeds (mm RAS, U).
        axis_source: "detection" (keep each seed's axis), "needle" (the direction of the nearest of
            ``needles``, or ``needle_direction`` for all), "unknown" (point source, axes unused).
        needles: list of :class:`~SeedBrachyLib.seeds.Needle` (mm RAS), for "needle".
        needle_direction: one unit vector (RAS) for every seed, for "needle" without ``needles``.
    """
    if axis_source not in AXIS_SOURCES:
        raise InputError(f"seed axis source {axis_source!r} invalid: use one of {list(AXIS_SOURCES)}")
    if len(seeds) == 0:
        raise InputError("no seeds: the post-plan needs at least one implanted seed")
    if axis_source == "detection":
        return list(seeds), "line"
    if axis_source == "unknown":
        return list(seeds), "point"
    if needles:
        needles = [n if isinstance(n, Needle) else Needle(*n) for n in needles]
        entries = np.array([n.entry for n in needles])
        directions = np.array([n.direction for n in needles])
        positions = np.array([s.position for s in seeds])
        rel = positions[:, None, :] - entries[None]
        along = np.einsum("snk,nk->sn", rel, directions)
        distance = np.linalg.norm(rel - along[..., None] * directions[None], axis=-1)
        axes = directions[np.argmin(distance, axis=1)]
    elif needle_direction is not None:
        axes = np.broadcast_to(np.asarray(needle_direction, dtype=float), (len(seeds), 3))
    else:
        raise InputError("seed axis source 'needle' needs the needles (or one needle direction)")
    return [Seed(s.position, a, s.strength_u, s.label) for s, a in zip(seeds, axes)], "line"


@dataclass
class PostPlanDose:
    """A post-plan dose: ``dose`` (Gy, float32 [k, j, i]) on ``grid`` from ``seeds`` (as oriented)."""

    dose: np.ndarray
    grid: object
    seeds: list
    formalism: str
    axis_source: str
    description: str


def post_plan_dose(grid, seeds, model, axis_source="detection", needles=None, needle_direction=None,
                   progress=None):
    """TG-43U1 permanent-implant dose (Gy) on ``grid`` from the implanted seeds (mm RAS, U).

    Seeds outside the grid (migrated) still contribute. See :func:`oriented_seeds` for
    ``axis_source``; the choice is written into the description.
    """
    model = get_model(model)
    oriented, formalism = oriented_seeds(seeds, axis_source, needles, needle_direction)
    dose = compute_dose(grid, oriented, model, formalism=formalism, progress=progress, allow_outside=True)
    description = describe_dose(model, len(oriented), grid, formalism, axes=AXIS_SOURCES[axis_source])
    return PostPlanDose(dose, grid, oriented, formalism, axis_source, description)


@dataclass(frozen=True)
class ComparisonRow:
    """One compared quantity: ``pre`` and ``post`` values in ``unit`` ("Gy", "%", "" or "seeds")."""

    structure: str
    metric: str
    unit: str
    pre: float
    post: float

    @property
    def difference(self):
        """post - pre, in ``unit`` (NaN when either is undefined)."""
        return self.post - self.pre

    @property
    def relative_pct(self):
        """(post - pre) / pre in % for doses (Gy), else NaN."""
        if self.unit != "Gy" or not self.pre:
            return float("nan")
        return 100.0 * self.difference / self.pre


@dataclass
class Comparison:
    """Pre-plan vs post-plan, row by row, with the thresholds checked on the post-plan.

    Attributes:
        rows: :class:`ComparisonRow` list (targets first, then organs at risk, then the seed count).
        prescription_gy: prescription (Gy).
        pre_description, post_description: how each dose was computed.
        checks: :class:`~SeedBrachyLib.checks.CheckResult` list, the goals checked on the post-plan values.
        notes: undefined metrics and other remarks.
    """

    rows: list
    prescription_gy: float
    pre_description: str = ""
    post_description: str = ""
    checks: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def row(self, structure, metric):
        """The row of ``metric`` for ``structure`` (InputError if absent)."""
        for r in self.rows:
            if r.structure == structure and r.metric == metric:
                return r
        raise InputError(f"no comparison row {structure} {metric}: have "
                         f"{[(r.structure, r.metric) for r in self.rows]}")

    def columns(self):
        """The table as named columns (list of (header, values)), headers with units."""
        return [("Structure", [r.structure for r in self.rows]), ("Metric", [r.metric for r in self.rows]),
                ("Unit", [r.unit for r in self.rows]), ("Pre-plan", [r.pre for r in self.rows]),
                ("Post-plan", [r.post for r in self.rows]),
                ("Difference (post - pre)", [r.difference for r in self.rows]),
                ("Difference [%]", [r.relative_pct for r in self.rows])]

    def format(self):
        """Text table with units, the dose descriptions, the checks and the research notice."""
        lines = [f"Pre-plan vs post-plan (prescription {self.prescription_gy:g} Gy)",
                 f"  pre-plan:  {self.pre_description}", f"  post-plan: {self.post_description}", ""]
        header = f"{'Structure':<12} {'Metric':<8} {'Pre-plan':>10} {'Post-plan':>10} {'Post - pre':>11} {'%':>7}"
        lines += [header, "-" * len(header)]
        for r in self.rows:
            rel = "" if math.isnan(r.relative_pct) else f"{r.relative_pct:+.1f}"
            lines.append(f"{r.structure:<12} {r.metric + _unit_suffix(r.unit):<8} {_fmt(r.pre, r.unit):>10} "
                         f"{_fmt(r.post, r.unit):>10} {_fmt(r.difference, r.unit, signed=True):>11} {rel:>7}")
        if self.checks:
            lines += ["", "Published thresholds on the post-plan:"]
            lines += [f"  {line}" for line in format_checks(self.checks).splitlines()]
        lines += [f"Note: {n}" for n in self.notes]
        lines.append(RESEARCH_NOTICE)
        return "\n".join(lines)


def _unit_suffix(unit):
    return f" [{unit}]" if unit and unit != "seeds" else ""


def _fmt(value, unit, signed=False):
    if value is None or math.isnan(value):
        return "n/a"
    sign = "+" if signed else ""
    if unit in ("seeds",):
        return f"{value:{sign}.0f}"
    if unit == "":
        return f"{value:{sign}.3f}"
    return f"{value:{sign}.1f}"


def compare_evaluations(pre, post, pre_seed_count, post_seed_count, target_rows=TARGET_ROWS, oar_rows=OAR_ROWS,
                        indications=DEFAULT_INDICATIONS, targets=None, user_limits=()):
    """Side-by-side comparison of two :class:`~SeedBrachyLib.dvh.PlanEvaluation` of the same structures.

    Args:
        pre, post: evaluations of the pre-plan and the post-plan dose (same prescription, Gy).
        pre_seed_count, post_seed_count: planned and implanted (detected) seed counts.
        target_rows, oar_rows: metrics compared for targets and for organs at risk (incl. skin).
        indications: indication names of :mod:`SeedBrachyLib.checks` checked on ``post``; default: the
            lymph-node post-implant D90 > 102.7 Gy (on the GTV) and the planning aim (on the CTV).
        targets, user_limits: which structures are the GTV and CTV, and the user's limits; see
            :func:`SeedBrachyLib.checks.run_checks`.

    Returns:
        :class:`Comparison`, with the published thresholds checked on ``post``.
    """
    if not math.isclose(pre.prescription_gy, post.prescription_gy):
        raise InputError(f"pre-plan prescription {pre.prescription_gy:g} Gy differs from the post-plan's "
                         f"{post.prescription_gy:g} Gy: compare plans with the same prescription")
    missing = sorted(set(pre.structures) ^ set(post.structures))
    if missing:
        raise InputError(f"structures {missing} are in only one of the two evaluations: evaluate both plans "
                         "with the same structures")
    rows, notes = [], []
    for role, metrics in (("target", target_rows), ("oar", oar_rows)):
        for name, s in pre.structures.items():
            if s.role != role:
                continue
            for metric in metrics:
                (a, unit), (b, _) = pre.value(name, metric), post.value(name, metric)
                rows.append(ComparisonRow(name, metric, unit, float(a), float(b)))
                if math.isnan(a) or math.isnan(b):
                    notes.append(f"{name} {metric} undefined (structure too small or outside the dose grid)")
    rows.append(ComparisonRow("Implant", "Seeds", "seeds", float(pre_seed_count), float(post_seed_count)))
    return Comparison(rows, pre.prescription_gy, pre.dose_description, post.dose_description,
                      checks=run_checks(post, indications, targets, user_limits), notes=notes)


def compare_implant(grid, structures, prescription_gy, plan_seeds, implanted_seeds, model, axis_source="detection",
                    needles=None, needle_direction=None, body=None, pre_dose=None, progress=None,
                    indications=DEFAULT_INDICATIONS, targets=None, user_limits=()):
    """Pre-plan vs post-plan on one dose grid and one set of structures; returns (Comparison, PostPlanDose).

    Args:
        grid: dose grid (mm RAS): the dose volumes (display, CI/EI reference isodose volume).
        structures: :class:`~SeedBrachyLib.structures.Structure` list, each evaluated with TG-43 exactly at its own
            sample points (e.g. :func:`~SeedBrachyLib.structures.structures_from_masks`) for both plans.
        prescription_gy: prescription (Gy).
        plan_seeds: the planned seeds (TG-43 line source along their axes).
        implanted_seeds: the implanted (detected) seeds in the same frame (mm RAS, U).
        model: TG-43 source model or key.
        axis_source, needles, needle_direction: post-plan seed axes, see :func:`oriented_seeds`.
        body: optional body Structure (on ``grid``) limiting the reference isodose volume for CI/EI.
        pre_dose: the pre-plan dose (Gy) on ``grid`` if already computed.
        indications, targets, user_limits: goals checked on the post-plan, see :func:`compare_evaluations`.
        progress: callback(fraction, message); returning False cancels.
    """
    model = get_model(model)
    if pre_dose is None:
        pre_dose = compute_dose(grid, plan_seeds, model, progress=scaled(progress, 0.0, 0.5), allow_outside=True)
    pre_text = describe_dose(model, len(plan_seeds), grid, axes="planned seed axes")
    post = post_plan_dose(grid, implanted_seeds, model, axis_source, needles, needle_direction,
                          scaled(progress, 0.5, 1.0))
    pre_eval = evaluate_plan(SeedDose(plan_seeds, model), structures, prescription_gy, body=body,
                             dose_description=pre_text, dose_volume=GridDose(pre_dose, grid))
    post_eval = evaluate_plan(SeedDose(post.seeds, model, post.formalism), structures, prescription_gy, body=body,
                              dose_description=post.description, dose_volume=GridDose(post.dose, grid))
    comparison = compare_evaluations(pre_eval, post_eval, len(plan_seeds), len(implanted_seeds),
                                     indications=indications, targets=targets, user_limits=user_limits)
    return comparison, post
