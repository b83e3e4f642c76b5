"""The probability objective: the plan maximising P(target goal) under placement errors.

Without placement errors every sample is the plan itself, so P(target goal) must be 1 or 0 exactly as the
nominal metric meets the goal or not (an analytic case); the choice rules (highest probability among the
plans whose limits hold often enough, ties to fewer seeds) are checked on made-up robustness results.
"""

from types import SimpleNamespace

import numpy as np
import pytest

from SeedBrachyLib.checks import goals_for, user_limit
from SeedBrachyLib.errors import InputError
from SeedBrachyLib.planning import robust_objective as ro
from SeedBrachyLib.planning.robustness import GoalProbability, PlacementErrors

TARGET = goals_for("lymph-node-metastases")[0]   # GTV D90 > 102.7 Gy
LIMIT = user_limit("Skin", "D2cc", 100.0)


def _fake_result(d90, skin):
    """A robustness result with per-sample GTV D90 and skin D2cc (Gy) and its two goal probabilities."""
    d90, skin = np.asarray(d90, float), np.asarray(skin, float)
    probs = []
    for goal, v, ok in ((TARGET, d90, d90 > 102.7), (LIMIT, skin, skin <= 100.0)):
        k = int(ok.sum())
        probs.append(GoalProbability(f"{goal.structure} {goal.metric} {goal.comparator} {goal.limit:g} Gy",
                                     goal.structure, goal.metric, k, len(v), k / len(v), 0.0, 0.0, 1.0, "test"))
    return SimpleNamespace(values={("GTV", "D90"): d90, ("Skin", "D2cc"): skin}, probabilities=probs,
                           nominal={("GTV", "D90"): float(np.median(d90))}, units={("GTV", "D90"): "Gy"})


@pytest.fixture
def fake_search(monkeypatch):
    """aim (% of Rx) -> (n seeds, per-sample GTV D90, per-sample skin D2cc): the optimiser and the sampling faked."""
    table = {}

    def optimise_plan(planning, candidates, strength_u, model, goals, seed, progress=None):
        return SimpleNamespace(n_seeds=table[goals.d90_min_pct][0], aim=goals.d90_min_pct)

    def plan_robustness(plan, model, masks, grid, goals, rx, **options):
        return _fake_result(*table[plan.aim][1:])

    monkeypatch.setattr(ro.pipeline, "optimise_plan", optimise_plan)
    monkeypatch.setattr(ro, "plan_robustness", plan_robustness)
    planning = SimpleNamespace(prescription_gy=120.0, grid=None)
    return table, lambda **kw: ro.maximise_probability(planning, None, 0.6, "model", {}, TARGET, [LIMIT],
                                                       aims_pct=sorted(table), **kw)


def test_the_highest_probability_wins_among_plans_whose_limits_hold(fake_search):
    table, run = fake_search
    n = 10
    table[100.0] = (30, [150] * 7 + [90] * 3, [80] * n)            # P 0.7, skin always held
    table[120.0] = (34, [150] * 9 + [90] * 1, [120] + [80] * 9)     # P 0.9, skin 0.9 (as often as allowed)
    table[140.0] = (38, [150] * n, [80] * 5 + [120] * 5)            # P 1.0, but skin only 0.5
    choice = run(n_samples=n, min_limit_probability=0.9)
    assert choice.chosen.aim_pct == 120.0 and choice.nominal.aim_pct == 100.0
    assert [c.eligible for c in choice.candidates] == [True, True, False]
    assert choice.candidates[1].p_all == pytest.approx(0.8)         # target and skin together: 8 of 10
    assert choice.limit_floor == {"Skin D2cc <= 100 Gy": 0.9}
    text = "\n".join(choice.lines())
    assert "chosen: aim 120 % of Rx, 34 seeds, P(target) 90.0 %" in text and "a limit too often missed" in text


def test_ties_go_to_fewer_seeds_and_the_nominal_plan_is_always_eligible(fake_search):
    table, run = fake_search
    table[100.0] = (30, [150] * 8 + [90] * 2, [80] * 6 + [120] * 4)   # skin 0.6: lowers the floor to 0.6
    table[110.0] = (28, [150] * 8 + [90] * 2, [80] * 6 + [120] * 4)   # the same P with fewer seeds
    choice = run(n_samples=10, min_limit_probability=0.95)
    assert choice.limit_floor == {"Skin D2cc <= 100 Gy": 0.6}
    assert choice.chosen.aim_pct == 110.0 and choice.chosen.n_seeds == 28


def test_a_limit_may_hold_a_little_less_often_when_allowed(fake_search):
    table, run = fake_search
    table[100.0] = (45, [150] * 6 + [90] * 4, [80] * 5 + [120] * 5)   # skin 0.5
    table[110.0] = (45, [150] * 8 + [90] * 2, [80] * 4 + [120] * 6)   # P 0.8, skin 0.4
    assert run(n_samples=10).chosen.aim_pct == 100.0
    choice = run(n_samples=10, limit_loss=0.1)
    assert choice.limit_floor == {"Skin D2cc <= 100 Gy": pytest.approx(0.4)} and choice.chosen.aim_pct == 110.0


@pytest.mark.parametrize("aims", [(), (0.0,), (250.0,), (float("nan"),)])
def test_bad_aims_are_refused(aims):
    with pytest.raises(InputError, match="D90 aims"):
        ro.maximise_probability(SimpleNamespace(prescription_gy=120.0), None, 0.6, "m", {}, TARGET, aims_pct=aims)


def test_without_placement_errors_the_probability_is_the_nominal_goal():
    from SeedBrachyLib import settings
    from SeedBrachyLib.synthetic.phantom import neck_planning_case

    values = settings.resolve(prescriptionGy=100.0)
    case, planning, candidates = neck_planning_case(15.0, prescription_gy=100.0)
    none = PlacementErrors(0, 0, 0, 0, 0, 0, 0)
    choice = ro.maximise_probability(planning, candidates, values.strength_u, values.sourceModel,
                                     {"GTV": (case.masks["GTV"], "target")}, TARGET, aims_pct=(60, 100),
                                     n_samples=3, errors=none)
    for c in choice.candidates:
        nominal = c.robustness.nominal[("GTV", "D90")]
        d90 = c.robustness.values[("GTV", "D90")]
        assert np.all(d90 == d90[0])  # every implant the plan; its dose from the compiled table (< 0.05 % of exact)
        assert np.all(d90 == pytest.approx(nominal, rel=5e-4))
        assert c.p_target == (1.0 if nominal > TARGET.limit else 0.0)
    best = max(c.p_target for c in choice.candidates)
    assert choice.chosen.p_target == best
    assert choice.chosen.n_seeds == min(c.n_seeds for c in choice.candidates if c.p_target == best)
