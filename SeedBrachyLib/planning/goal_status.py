"""Whether a plan meets the optimiser's goals, read from the plan's DVH evaluation (not the optimiser's estimate).

The optimiser (:mod:`.optimize`) may stop short of a goal it cannot reach (too few needles, an
organ-at-risk limit in the way); :func:`goal_status` says, goal by goal, what was asked and what
the plan achieves, so a plan summary, report, module and command can say so out loud.
Dose in Gy, volumes in % of the target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..checks import COMPARATORS


@dataclass(frozen=True)
class GoalStatus:
    """One goal: ``structure metric comparator aim unit`` and the ``achieved`` value (NaN: undefined)."""

    structure: str
    metric: str
    comparator: str
    aim: float
    unit: str
    achieved: float

    @property
    def met(self):
        return (not math.isnan(self.achieved)) and COMPARATORS[self.comparator](self.achieved, self.aim)

    @property
    def goal(self):
        return f"{self.structure} {self.metric} {self.comparator} {self.aim:g} {self.unit}"

    def describe(self):
        """E.g. 'NOT MET  CTV V100 >= 95 % (achieved 8.0 %)'."""
        value = "n/a" if math.isnan(self.achieved) else f"{self.achieved:.1f} {self.unit}"
        return f"{'met' if self.met else 'NOT MET':<7}  {self.goal} (achieved {value})"


def goal_status(goals, evaluation, target="CTV"):
    """Each goal of :class:`~.optimize.Goals` with what ``evaluation`` (a :class:`~SeedBrachyLib.dvh.PlanEvaluation`)
    achieves on ``target`` and on the limited organs at risk."""
    rx = goals.prescription_gy
    aims = [(target, "D90", ">=", goals.d90_min_pct / 100.0 * rx, "Gy"),
            (target, "V100", ">=", goals.v100_min_pct, "%"),
            (target, "V150", "<=", goals.v150_max_pct, "%")]
    if goals.v200_max_pct is not None:
        aims.append((target, "V200", "<=", goals.v200_max_pct, "%"))
    aims += [(lim.name, lim.metric, "<=", lim.limit_gy, "Gy") for lim in goals.oar_limits]
    out = []
    for structure, metric, comparator, aim, unit in aims:
        achieved = evaluation.value(structure, metric)[0] if structure in evaluation.structures else float("nan")
        out.append(GoalStatus(structure, metric, comparator, float(aim), unit, float(achieved)))
    return out


def unmet(statuses):
    """The goals not met (list of :class:`GoalStatus`)."""
    return [s for s in statuses if not s.met]


def unmet_message(statuses):
    """'' if every goal is met, else one sentence naming each unmet goal and what was achieved."""
    missed = unmet(statuses)
    if not missed:
        return ""
    parts = "; ".join(f"{s.goal} (achieved {'n/a' if math.isnan(s.achieved) else f'{s.achieved:.1f} {s.unit}'})"
                      for s in missed)
    return f"The plan does not meet {len(missed)} of its {len(statuses)} goals: {parts}."


def unmet_in_terms(goals, terms):
    """The goals of :class:`~.optimize.Goals` the optimiser's own estimate ``terms`` (voxel-centre D90 Gy,
    V100/V150/V200 %, OAR metrics Gy) misses, as texts; the plan's DVH (:func:`goal_status`) is the final word."""
    rx = goals.prescription_gy
    aims = [("CTV D90", ">=", goals.d90_min_pct / 100.0 * rx, "Gy", terms["D90"]),
            ("CTV V100", ">=", goals.v100_min_pct, "%", terms["V100"]),
            ("CTV V150", "<=", goals.v150_max_pct, "%", terms["V150"])]
    if goals.v200_max_pct is not None:
        aims.append(("CTV V200", "<=", goals.v200_max_pct, "%", terms["V200"]))
    aims += [(lim.key, "<=", lim.limit_gy, "Gy", terms[lim.key]) for lim in goals.oar_limits]
    return [f"{name} {op} {aim:g} {unit} (optimiser estimate {value:.1f} {unit})"
            for name, op, aim, unit, value in aims if not COMPARATORS[op](value, aim)]
