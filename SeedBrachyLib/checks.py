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
from dataclasses import dataclass

from .dvh import metric_unit
from .errors import InputError

TARGET = "target"  # Goal.structure value meaning "the evaluated target"
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
        structure: structure name, or ``TARGET`` for the evaluated target.
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
        Goal("post-implant D90 > 102.7 Gy", TARGET, "D90", ">", 102.7, "Gy", HUANG_2026),
    ),
    "esophageal-scc-cervical-nodal-recurrence": (
        Goal("D90 >= 110 Gy", TARGET, "D90", ">=", 110.0, "Gy", ESCC_NODAL),
    ),
    "general": (
        Goal("D90 >= prescription", TARGET, "D90", ">=", None, "Gy", GENERAL_AIM, fraction_of_rx=1.0),
        Goal("V100 >= 90% of the CTV", TARGET, "V100", ">=", 90.0, "%", GENERAL_AIM),
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
    """Outcome of one goal: ``passed`` is False when the metric could not be evaluated (``measured`` NaN)."""

    goal: str
    structure: str
    metric: str
    measured: float
    limit: float
    comparator: str
    unit: str
    passed: bool
    source: str

    def describe(self):
        """One line with units, e.g. 'PASS  CTV D90 = 112.4 Gy (goal > 102.7 Gy)'."""
        status = "PASS" if self.passed else "FAIL"
        value = "n/a" if math.isnan(self.measured) else f"{self.measured:.1f} {self.unit}"
        return f"{status}  {self.structure} {self.metric} = {value} (goal {self.comparator} {self.limit:g} {self.unit})"


def _target_name(evaluation, target):
    if target is not None:
        return evaluation[target].name  # InputError for unknown names
    targets = [s.name for s in evaluation.structures.values() if s.role == "target"]
    if len(targets) != 1:
        raise InputError(f"choose the target for the checks: the evaluation has targets {targets}")
    return targets[0]


def run_checks(evaluation, indications=("general",), target=None, user_limits=()):
    """Check a plan evaluation against the goals of ``indications`` and the user's limits.

    Args:
        evaluation: :class:`~SeedBrachyLib.dvh.PlanEvaluation`.
        indications: indication names (see :func:`available_indications`), or one name.
        target: structure the target goals apply to (default: the evaluation's only target).
        user_limits: :class:`Goal` objects from :func:`user_limit` (or (structure, metric, limit_gy) tuples).

    Returns:
        list of :class:`CheckResult`, in the order of the goals.
    """
    if isinstance(indications, str):
        indications = (indications,)
    goals = [g for ind in indications for g in goals_for(ind)]
    goals += [g if isinstance(g, Goal) else user_limit(*g) for g in user_limits]
    target_name = _target_name(evaluation, target) if any(g.structure == TARGET for g in goals) else None
    results = []
    for g in goals:
        name = target_name if g.structure == TARGET else g.structure
        value, unit = evaluation.value(name, g.metric)
        if unit != g.unit:
            raise InputError(f"goal '{g.name}' is in {g.unit} but {g.metric} is in {unit}")
        limit = g.limit_for(evaluation.prescription_gy)
        passed = (not math.isnan(value)) and COMPARATORS[g.comparator](value, limit)
        results.append(CheckResult(g.name, name, g.metric, float(value), float(limit), g.comparator, unit,
                                   bool(passed), g.source))
    return results


def format_checks(results):
    """Text lines of check results, each with PASS/FAIL, measured value and limit with units, then sources."""
    lines = [r.describe() for r in results]
    sources = list(dict.fromkeys(r.source for r in results))
    lines += [f"  [{i + 1}] {s}" for i, s in enumerate(sources)]
    for i, r in enumerate(results):
        lines[i] += f" [{sources.index(r.source) + 1}]"
    return "\n".join(lines) + "\n"
