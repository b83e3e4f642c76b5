"""Plan checks: published dose goals with their sources, selectable by indication, plus user limits.

Public API
----------
* :class:`Goal` -- one goal: structure (a target or a named structure), DVH metric, comparator,
  limit (absolute, or a fraction of the prescription), unit and source.
* :data:`INDICATIONS` / :func:`available_indications` / :func:`goals_for` -- the goal library:
  "lymph-node-metastases", "esophageal-scc-cervical-nodal-recurrence", "general".
* :func:`user_limit` -- an organ-at-risk or skin limit entered by the user (Gy; metric D2cc,
  D1cc, D0.1cc, Dmax, Dmean, Dx, ...).
* :func:`run_checks` -> list of :class:`CheckResult` (pass/fail, measured value, limit, source);
  :func:`format_checks` -- text table with units.

Metrics are read from a :class:`~SeedBrachyLib.dvh.PlanEvaluation` (see :mod:`SeedBrachyLib.dvh`
for how Dx and Vx are computed). These goals come from retrospective cohorts; they are aids for
research use, not clinical prescriptions.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, replace

from .dvh import metric_unit
from .errors import InputError

GTV = "GTV"  # Goal.structure value: the gross tumour volume the user names
CTV = "CTV"  # Goal.structure value: the clinical target volume (GTV + margin, a segment the user sees)
TARGET_ROLES = (GTV, CTV)
COMPARATORS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}

HUANG_2026 = ("Huang D, Zhong Z, Zhang F, Lin L. Clinical outcomes and individualized seed implantation planning "
              "for iodine-125 seed brachytherapy in lymph node metastases. J Cancer 2026. doi:10.7150/jca.126692 "
              "(81 lymph-node metastases; post-implant D90 > 102.7 Gy: objective response 81.5% vs 31.3% below)")
ESCC_NODAL = ("Zhang Y, Liu Z, Liang Y, Chen E, Zhang H, Gao Z, Wang J. The effectiveness and prognostic factors of "
              "radioactive iodine-125 seed implantation for the treatment of cervical lymph node recurrence of "
              "esophageal squamous cell carcinoma after external beam radiation therapy. J Contemp Brachytherapy "
              "2020;12(6):579-585 (in-field cervical nodal recurrence; D90 >= 110 Gy: better local control and "
              "survival)")
GENERAL_AIM = ("Planning aim of CT-guided I-125 seed implantation: at least 90% of the CTV receives the prescription "
               "dose (V100 >= 90%, D90 >= prescription); metric definitions as in AAPM TG-137, Nath R et al., "
               "Med Phys 2009;36(11):5310-5322")
USER_SOURCE = "limit entered by the user"


@dataclass(frozen=True)
class Goal:
    """A dose goal.

    Attributes:
        name: short label, e.g. "post-implant D90 > 102.7 Gy".
        structure: ``GTV`` or ``CTV`` (the target the source reads the metric on; mapped to the user's
            structure names by :func:`run_checks`), or an organ-at-risk structure name.
        metric: DVH metric name ("D90", "V100", "D2cc", "Dmax", ...; see ``dvh.METRIC_HELP``).
        comparator: ">", ">=", "<" or "<=" (measured <comparator> limit passes).
        limit: limit in ``unit``; ignored when ``fraction_of_rx`` is set.
        unit: "Gy", "%" or "cc".
        source: citation or origin of the goal.
        fraction_of_rx: if set, the limit is this fraction of the prescription (Gy).
    """

    name: str
    structure: str
    metric: str
    comparator: str
    limit: float
    unit: str
    source: str
    fraction_of_rx: float = None

    def limit_for(self, prescription_gy):
        """The limit in ``unit`` for a prescription (Gy)."""
        return self.limit if self.fraction_of_rx is None else self.fraction_of_rx * float(prescription_gy)


INDICATIONS = {
    "lymph-node-metastases": (
        # the study reads D90 on the metastatic node itself (the GTV)
        Goal("post-implant D90 > 102.7 Gy", GTV, "D90", ">", 102.7, "Gy", HUANG_2026),
    ),
    "esophageal-scc-cervical-nodal-recurrence": (
        # D90 of the recurrent node (GTV), as the study reports it
        Goal("D90 >= 110 Gy", GTV, "D90", ">=", 110.0, "Gy", ESCC_NODAL),
    ),
    "general": (
        Goal("D90 >= prescription", CTV, "D90", ">=", None, "Gy", GENERAL_AIM, fraction_of_rx=1.0),
        Goal("V100 >= 90% of the CTV", CTV, "V100", ">=", 90.0, "%", GENERAL_AIM),
    ),
}


def available_indications():
    """Names of the indications in the goal library."""
    return tuple(INDICATIONS)


def goals_for(indication):
    """Goals of an indication (name as in :func:`available_indications`; case and '_' vs '-' ignored)."""
    key = str(indication).strip().lower().replace("_", "-").replace(" ", "-")
    if key not in INDICATIONS:
        raise InputError(f"unknown indication {indication!r}: known indications are "
                         f"{', '.join(available_indications())}")
    return INDICATIONS[key]


def user_limit(structure, metric, limit_gy, comparator="<=", source=USER_SOURCE):
    """A dose limit (Gy) entered by the user, e.g. ``user_limit("Skin", "D2cc", 30.0)``.

    ``metric`` must be a dose metric (Gy): D2cc, D1cc, D0.1cc, Dmax, Dmean, Dmin or Dx.
    """
    unit = metric_unit(metric)
    if unit != "Gy":
        raise InputError(f"user limit metric {metric!r} is not a dose metric: use D2cc, D1cc, D0.1cc, Dmax, "
                         f"Dmean, Dmin or Dx (Gy)")
    limit = float(limit_gy)
    if not (math.isfinite(limit) and limit > 0):
        raise InputError(f"user limit {limit_gy!r} Gy for {structure} {metric} invalid: need a dose > 0 Gy")
    if comparator not in COMPARATORS:
        raise InputError(f"comparator {comparator!r} invalid: use one of {', '.join(COMPARATORS)}")
    return Goal(f"{structure} {metric} {comparator} {limit:g} Gy", str(structure), metric, comparator, limit, "Gy",
                source)


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one goal. ``status`` is "PASS", "FAIL" or "NOT EVALUATED" (structure missing, only partly
    evaluated, or metric undefined: ``measured`` NaN, ``note`` says why); ``passed`` is True only for PASS."""

    goal: str
    structure: str
    metric: str
    measured: float
    limit: float
    comparator: str
    unit: str
    status: str
    source: str
    note: str = ""

    @property
    def passed(self):
        """True only when the goal was evaluated on the whole structure and met."""
        return self.status == "PASS"

    def describe(self):
        """One line with units, e.g. 'PASS  GTV D90 = 112.4 Gy (goal > 102.7 Gy)'."""
        value = "n/a" if math.isnan(self.measured) else f"{self.measured:.1f} {self.unit}"
        line = f"{self.status}  {self.structure} {self.metric} = {value} (goal {self.comparator} {self.limit:g} " \
               f"{self.unit})"
        return f"{line}: {self.note}" if self.note else line


#: Goal set checked with every indication: D90 >= Rx and V100 >= 90 % of the CTV.
PLANNING_AIM = "general"


def goals_on(indication, targets, limits=()):
    """The goals of ``indication`` (None: none) on the user's structures, then ``limits`` (:func:`user_limit`).

    ``targets``: {"GTV": structure name, "CTV": structure name}; a role missing from it reads on the other one.
    """
    on_role = {GTV: targets.get(GTV) or targets[CTV], CTV: targets.get(CTV) or targets[GTV]}
    goals = [replace(g, structure=on_role[g.structure]) if g.structure in TARGET_ROLES else g
             for g in (goals_for(indication) if indication else ())]
    return goals + list(limits)


def indications_to_check(indication):
    """The goal sets checked for ``indication``: its own published goals, then the planning aim."""
    goals_for(indication)
    return tuple(dict.fromkeys((indication, PLANNING_AIM)))


def user_limits(skin_d2cc_limit_gy=0.0, oar_name="", oar_metric="D2cc", oar_limit_gy=0.0, skin_name="Skin"):
    """The user's limits (settings skinD2ccLimitGy, oarMetric, oarLimitGy; 0 Gy = none) as :func:`user_limit`
    goals: skin D2cc on ``skin_name``, and ``oar_metric`` on organ ``oar_name``."""
    limits = []
    if skin_d2cc_limit_gy > 0:
        limits.append(user_limit(skin_name, "D2cc", skin_d2cc_limit_gy))
    if oar_limit_gy > 0:
        if not oar_name:
            raise InputError(f"an organ-at-risk limit of {oar_limit_gy:g} Gy needs its structure: choose one, or "
                             "set the limit to 0 (no limit)")
        limits.append(user_limit(oar_name, oar_metric, oar_limit_gy))
    return limits


def run_checks(evaluation, indications=(PLANNING_AIM,), targets=None, user_limits=()):
    """Check a plan evaluation against the goals of ``indications`` and the user's limits.

    Args:
        evaluation: :class:`~SeedBrachyLib.dvh.PlanEvaluation`.
        indications: indication names (see :func:`available_indications`), or one name.
        targets: {"GTV": structure name, "CTV": structure name}: the user's structures the published
            goals are read on (each goal names which one its source uses). Default: structures named
            "GTV" and "CTV" if the evaluation has them.
        user_limits: :class:`Goal` objects from :func:`user_limit` (or (structure, metric, limit_gy) tuples).

    Returns:
        list of :class:`CheckResult`, in the order of the goals. A goal on a structure that is not in the
        evaluation, or was evaluated on only a part of itself, is NOT EVALUATED, never PASS -- unless it is a
        hot-spot metric (Dmax, Dxcc) that the part determines exactly (``StructureMetrics.exact_on_part``).
    """
    if isinstance(indications, str):
        indications = (indications,)
    goals = [g for ind in indications for g in goals_for(ind)]
    goals += [g if isinstance(g, Goal) else user_limit(*g) for g in user_limits]
    names = {role: role for role in TARGET_ROLES}
    names.update(targets or {})
    results = []
    for g in goals:
        name = names.get(g.structure, g.structure)
        limit = g.limit_for(evaluation.prescription_gy)
        note, exact, value = "", "", float("nan")
        if name not in evaluation.structures:
            role = f" ({g.structure} of this goal)" if g.structure in TARGET_ROLES else ""
            note = f"no structure '{name}'{role} in the evaluation"
        else:
            metrics = evaluation[name]
            value, unit = evaluation.value(name, g.metric)
            if unit != g.unit:
                raise InputError(f"goal '{g.name}' is in {g.unit} but {g.metric} is in {unit}")
            partial = metrics.evaluated_fraction
            if math.isnan(value):
                note = f"{g.metric} undefined for {name}"
            elif not metrics.exact_on_part(g.metric, value):
                note = f"only {100 * partial:.1f}% of {name} was evaluated (outside the dose grid)"
            elif partial < 0.999:
                exact = (f"{name}: {100 * partial:.1f}% inside the dose grid, the rest below "
                         f"{metrics.outside_below_gy:.3g} Gy, so its {g.metric} is exact")
        if note:
            status = "NOT EVALUATED"
        else:
            status = "PASS" if COMPARATORS[g.comparator](value, limit) else "FAIL"
        results.append(CheckResult(g.name, name, g.metric, float(value), float(limit), g.comparator, g.unit,
                                   status, g.source, note or exact))
    return results


def format_checks(results):
    """Text lines of check results, each with PASS/FAIL, measured value and limit with units, then sources."""
    lines = [r.describe() for r in results]
    sources = list(dict.fromkeys(r.source for r in results))
    lines += [f"  [{i + 1}] {s}" for i, s in enumerate(sources)]
    for i, r in enumerate(results):
        lines[i] += f" [{sources.index(r.source) + 1}]"
    return "\n".join(lines) + "\n"
