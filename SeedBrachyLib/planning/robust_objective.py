"""The probability objective: a plan chosen to maximise P(target goal holds) under placement errors.

The nominal optimiser (:func:`SeedBrachyLib.planning.pipeline.optimise_plan`) meets the CTV D90 aim
with the fewest seeds: a plan exactly at the aim loses it in about half of the real implants, since
seeds land off their planned places. This objective instead maximises the probability, over the
placement-error model of :mod:`SeedBrachyLib.planning.robustness`, that the target goal holds (e.g. the
lymph-node study's post-implant GTV D90 > 102.7 Gy):

1. one optimised plan per nominal CTV D90 aim in ``aims_pct`` (% of Rx; the other goals and OAR
   limits as given), each the nominal optimiser's fewest-seed plan at that aim;
2. each plan's implants sampled with the same random seed (common random numbers: the same needle
   and seed errors for every plan, so differences between plans are not sampling noise) by
   :func:`~SeedBrachyLib.planning.robustness.plan_robustness`;
3. the chosen plan has the highest P(target goal) among the plans whose every other goal (organ-at-risk
   limits) holds at least as often as ``min_limit_probability`` (or as in the nominal plan, the aim of
   100 %, less ``limit_loss``, when that is lower); ties (the same number of samples) go to fewer seeds,
   then the lower aim.

The search is over the nominal aim (the margin the plan keeps above the goal), not over seed
positions scenario by scenario: the nominal optimiser places the seeds, the probability ranks the
plans. Probabilities carry their binomial standard error and Wilson interval
(:class:`~SeedBrachyLib.planning.robustness.GoalProbability`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from ..checks import COMPARATORS
from ..errors import InputError
from ..progress import report, scaled
from . import pipeline
from .optimize import Goals
from .robustness import plan_robustness

DEFAULT_AIMS_PCT = (100.0, 110.0, 120.0, 130.0, 140.0)
NOMINAL_AIM_PCT = 100.0
MIN_LIMIT_PROBABILITY = 0.95


@dataclass(frozen=True)
class Candidate:
    """One plan of the search: its nominal aim (% of Rx), the plan, and its robustness.

    ``p_target``: P(target goal) (0..1) with ``se`` and the Wilson 95% interval; ``p_limits``: goal name ->
    P(limit holds); ``p_all``: P(target goal and every limit hold together); ``eligible``: the limits hold
    often enough.
    """

    aim_pct: float
    plan: object
    robustness: object
    p_target: float
    se: float
    ci_low: float
    ci_high: float
    p_limits: dict
    p_all: float
    eligible: bool

    @property
    def n_seeds(self):
        return int(self.plan.n_seeds)


@dataclass(frozen=True)
class ProbabilityChoice:
    """The chosen candidate, the nominal one (aim 100 % of Rx, if searched), every candidate, and the least
    P(limit holds) (limit -> 0..1) a candidate needed."""

    chosen: Candidate
    nominal: Candidate | None
    candidates: tuple
    target_goal: str
    limit_floor: dict

    def lines(self):
        """Text: one line per candidate (aim, seeds, nominal target metric, probabilities), then the choice."""
        floors = ", ".join(f"{name} in >= {100 * p:.1f} %" for name, p in self.limit_floor.items())
        out = [f"Probability objective: maximise P({self.target_goal}) over the placement-error samples"
               + (f" (limits must hold: {floors} of them)" if floors else "")]
        for c in self.candidates:
            key = c.robustness.probabilities[0]
            nominal = c.robustness.nominal[(key.structure, key.metric)]
            limits = ", ".join(f"{name} {100 * p:.1f} %" for name, p in c.p_limits.items()) or "no limits"
            out.append(f"  aim CTV D90 >= {c.aim_pct:g} % of Rx: {c.n_seeds} seeds, nominal {key.structure} "
                       f"{key.metric} {nominal:.1f} {c.robustness.units[(key.structure, key.metric)]}; "
                       f"P(target) {100 * c.p_target:.1f} % (SE {100 * c.se:.1f} %, Wilson "
                       f"{100 * c.ci_low:.1f}-{100 * c.ci_high:.1f} %); limits: {limits}; all goals "
                       f"{100 * c.p_all:.1f} %{'' if c.eligible else ' (a limit too often missed)'}")
        c = self.chosen
        out.append(f"  chosen: aim {c.aim_pct:g} % of Rx, {c.n_seeds} seeds, P(target) {100 * c.p_target:.1f} %"
                   + ("" if self.nominal is None else
                      f" (nominal plan: {self.nominal.n_seeds} seeds, {100 * self.nominal.p_target:.1f} %)"))
        return out


def _candidate(aim, plan, result, goals, rx, floor):
    """A :class:`Candidate`; ``goals`` in the order of ``result.probabilities`` (the target goal first), ``floor``:
    limit -> the least P(limit holds) for the plan to be eligible."""
    target, limits = result.probabilities[0], result.probabilities[1:]
    held = [COMPARATORS[g.comparator](result.values[(g.structure, g.metric)], g.limit_for(rx)) for g in goals]
    return Candidate(aim, plan, result, target.p, target.se, target.ci_low, target.ci_high,
                     {p.goal: p.p for p in limits}, float(np.logical_and.reduce(held).mean()),
                     all(p.p >= floor[p.goal] - 1e-9 for p in limits))   # k/n against a difference of k/n


def maximise_probability(planning, candidates, strength_u, model, masks, target_goal, limits=(), goals=None,
                         aims_pct=DEFAULT_AIMS_PCT, n_samples=200, random_seed=0, errors=None,
                         min_limit_probability=MIN_LIMIT_PROBABILITY, limit_loss=0.0, spacing_mm=2.0,
                         optimiser_seed=0, progress=None):
    """The plan maximising P(``target_goal``) under placement errors (module notes) -> :class:`ProbabilityChoice`.

    Args:
        planning: :class:`~SeedBrachyLib.planning.pipeline.PlanningCase`; candidates: its candidate positions.
        strength_u: seed strength (U); model: seed model or key.
        masks: structure name -> (bool mask ``[k, j, i]`` on ``planning.grid``, role "target" or "oar") for the
            robustness samples (the target goal's structure and every limit's).
        target_goal: the :class:`~SeedBrachyLib.checks.Goal` whose probability is maximised (e.g. GTV D90 >
            102.7 Gy); limits: further goals (organ-at-risk limits) that must hold often enough.
        goals: the optimiser's :class:`~SeedBrachyLib.planning.optimize.Goals` (default: D90 >= Rx,
            V100 >= 95 %, V150 <= 60 %); its ``d90_min_pct`` is replaced by each aim.
        aims_pct: nominal CTV D90 aims (% of Rx, 0..200) to search.
        n_samples, random_seed, errors: the robustness sampling (the same samples for every plan).
        min_limit_probability: the least P(limit holds) (0..1) for a plan to be chosen (lowered to the nominal
            plan's where that is lower, so the nominal plan is always eligible).
        limit_loss: how much less often (0..1) than in the nominal plan a limit may hold in the chosen plan, where
            the nominal plan's probability is below ``min_limit_probability`` (0: never less often).
        spacing_mm: sample-point spacing (mm); optimiser_seed: the optimiser's random seed.
        progress: callback(fraction, message); returning False cancels.
    """
    aims = sorted({float(a) for a in aims_pct})
    if not aims or any(not (math.isfinite(a) and 0 < a <= 200) for a in aims):
        raise InputError(f"D90 aims {list(aims_pct)!r} % of Rx invalid: need values in (0, 200]")
    for name, value in (("min_limit_probability", min_limit_probability), ("limit_loss", limit_loss)):
        if not 0 <= value <= 1:
            raise InputError(f"{name} {value!r} invalid: need 0..1")
    rx = planning.prescription_gy
    base = goals or Goals(rx)
    found = []
    for i, aim in enumerate(aims):
        step = scaled(progress, i / len(aims), (i + 1) / len(aims))
        plan = pipeline.optimise_plan(planning, candidates, strength_u, model,
                                      dataclasses.replace(base, d90_min_pct=aim), optimiser_seed,
                                      progress=scaled(step, 0.0, 0.5))
        result = plan_robustness(plan, model, masks, planning.grid, [target_goal, *limits], rx,
                                 spacing_mm=spacing_mm, n_samples=n_samples, random_seed=random_seed,
                                 errors=errors, progress=scaled(step, 0.5, 1.0))
        found.append((aim, plan, result))
        report(progress, (i + 1) / len(aims), f"probability objective: aim {aim:g} % of Rx done")
    nominal = next((f for f in found if f[0] == NOMINAL_AIM_PCT), None)
    floor = {p.goal: min_limit_probability for p in found[0][2].probabilities[1:]}
    if nominal is not None:
        floor = {p.goal: min(min_limit_probability, p.p - limit_loss) for p in nominal[2].probabilities[1:]}
    cands = tuple(_candidate(aim, plan, result, [target_goal, *limits], rx, floor) for aim, plan, result in found)
    eligible = [c for c in cands if c.eligible] or list(cands)
    chosen = max(eligible, key=lambda c: (round(c.p_target * n_samples), -c.n_seeds, -c.aim_pct))
    nominal_c = next((c for c in cands if c.aim_pct == NOMINAL_AIM_PCT), None)
    return ProbabilityChoice(chosen, nominal_c, cands, cands[0].robustness.probabilities[0].goal, floor)

