"""Inverse optimisation: choose seeds among the candidate positions (all seeds of one strength, U).

Dose model
----------
Each candidate's dose (Gy, TG-43 of a seed of the plan's strength in U, all candidates in one call of
:func:`SeedBrachyLib.kernel.samples_rate`: the compiled engine's (r, theta) table, within 0.05 % of exact
TG-43, or the exact numpy evaluation; the synthetic neck cases of Testing/benchmarks/bench_planning.py get
the same plans as from exact matrices) is computed once on the voxel centres of the CTV and of each OAR
(OAR voxels farther than ``oar_reach_mm`` from every candidate are dropped: they cannot hold the hottest cc).
A plan's dose is then a sum of columns, updated in O(voxels) per seed added, removed or moved.

Objective (lower is better)
---------------------------
``F = W * violation + n_seeds + c_needle * n_needles + c_hot * (V150 + V200) / 100
+ c_oar * sum(D_oar / limit)`` with

* ``violation`` (in % points) = ``max(0, D90_goal - D90) / Rx * 100 + max(0, V100_goal - V100)
  + max(0, V150 - V150_max) + max(0, V200 - V200_max) + sum(max(0, D_oar - limit) / limit * 100)``,
  each goal tightened by ``Goals.safety_pct``;
* D90, V100, V150, V200 on the CTV voxels (% of volume, Gy); ``D_oar`` is the OAR's D2cc
  (dose of the hottest 2 cc), D0.1cc or Dmax as the limit asks;
* ``W`` (default 10) makes 1 % point of violation cost as much as 10 seeds, so goals come first,
  then the fewest seeds, then the fewest needles (``c_needle`` 0.5), then the lowest hot spots
  and OAR doses (``c_hot`` 1, ``c_oar`` 0.5, below one seed).

Algorithm
---------
1. Greedy construction: from no seed, add the candidate with the best
   ``coverage gain - penalties`` until the D90 and V100 goals are met, where the coverage gain
   is the reduction of the CTV dose deficit ``sum(max(0, Rx - d))`` (normalised), and the
   penalties are the growth of V150, of V200 (if limited), of the OAR overdose above their
   limits, and a cost for opening a new needle.
2. Local search, repeated until a full pass changes nothing (at most ``max_passes``):
   try removing each seed, then each whole needle, then moving each seed to the best free
   candidate within ``move_radius_mm`` (mm); accept a change when it lowers F. If the goals
   are violated after a pass, the greedy step adds the best seed and the search continues.
   Steps 1-2 also run from each of the given ``starts`` (e.g. the loading patterns, refilled
   greedily if they miss the coverage goals); the plan with the lowest F goes on.
3. Iterated local search: ``restarts`` times (up to 3x as many while the goals are still
   violated), remove a random ``perturb_fraction`` of the best plan's seeds, refill greedily
   and search locally again; keep the best plan (lowest F).
The order of the trials and the perturbations come from
``numpy.random.default_rng(random_seed)``: the result is deterministic for a given random seed.

Progress goes through :func:`SeedBrachyLib.progress.report`; a callback returning False
cancels (raises :class:`SeedBrachyLib.errors.Cancelled`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .. import kernel
from ..dose import time_factor_h
from ..errors import InputError
from ..progress import report
from ..sources import get_model
from .candidates import Plan
from .goal_status import unmet_in_terms

OAR_METRICS = ("D2cc", "D0.1cc", "Dmax")


@dataclass(frozen=True)
class OarLimit:
    """A dose limit on an organ at risk: ``metric`` ("D2cc", "D0.1cc" or "Dmax") <= ``limit_gy`` (Gy)."""

    name: str
    metric: str
    limit_gy: float

    def __post_init__(self):
        if self.metric not in OAR_METRICS:
            raise InputError(f"OAR '{self.name}' metric {self.metric!r} unknown: use one of {OAR_METRICS}")
        if not (np.isfinite(self.limit_gy) and self.limit_gy > 0):
            raise InputError(f"OAR '{self.name}' limit {self.limit_gy!r} Gy invalid: must be > 0 Gy")

    @property
    def key(self):
        """Name of the metric in the optimiser's terms, e.g. "Skin D2cc"."""
        return f"{self.name} {self.metric}"

    @property
    def volume_cc(self):
        """Volume (cc) the metric refers to (0 for Dmax)."""
        return {"D2cc": 2.0, "D0.1cc": 0.1, "Dmax": 0.0}[self.metric]


@dataclass(frozen=True)
class Goals:
    """Plan goals: CTV D90 >= ``d90_min_pct`` % of Rx, V100 >= ``v100_min_pct`` %, V150 <= ``v150_max_pct`` %,
    V200 <= ``v200_max_pct`` % (None: only kept low), and OAR limits (:class:`OarLimit`).

    The optimiser aims ``safety_pct`` (% points; % of Rx for D90, % of the limit for OARs)
    inside every goal: its voxel-centre dose samples differ from the DVH's sub-voxel
    sampling (:mod:`SeedBrachyLib.dvh`) by up to about 1 % point.
    """

    prescription_gy: float
    d90_min_pct: float = 100.0
    v100_min_pct: float = 95.0
    v150_max_pct: float = 60.0
    v200_max_pct: float | None = None
    oar_limits: tuple = field(default_factory=tuple)
    safety_pct: float = 1.0

    def __post_init__(self):
        if not (np.isfinite(self.prescription_gy) and self.prescription_gy > 0):
            raise InputError(f"prescription {self.prescription_gy!r} Gy invalid: must be > 0 Gy")
        for name in ("d90_min_pct", "v100_min_pct", "v150_max_pct", "v200_max_pct", "safety_pct"):
            v = getattr(self, name)
            if v is None and name == "v200_max_pct":
                continue
            top = {"d90_min_pct": 200, "safety_pct": MAX_SAFETY_PCT}.get(name, 100)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not (np.isfinite(v)
                                                                                          and 0 <= v <= top):
                raise InputError(f"goal {name} = {v!r} % invalid: use 0..{top} %"
                                 f"{' of Rx' if name == 'd90_min_pct' else ''}")
        if self.d90_min_pct == 0 and self.v100_min_pct == 0:
            raise InputError("goals D90 >= 0 % of Rx and V100 >= 0 % are met by a plan of no seeds: give "
                             "d90_min_pct or v100_min_pct > 0")
        object.__setattr__(self, "oar_limits", tuple(self.oar_limits))


#: Largest safety margin (% points) the optimiser may aim inside its goals.
MAX_SAFETY_PCT = 20


@dataclass(frozen=True)
class Weights:
    """Objective weights (see the module docstring)."""

    violation: float = 10.0
    needle: float = 0.5
    hot: float = 1.0
    oar: float = 0.5


class DoseMatrices:
    """Dose (Gy) of every candidate seed on the CTV and OAR voxel centres, computed once.

    Args:
        candidates: :class:`~SeedBrachyLib.planning.candidates.Candidates`.
        strength_u: seed strength (U).
        model: source model or key.
        ctv_points: (m, 3) RAS mm of the CTV voxel centres.
        oar_points: dict name -> (p, 3) RAS mm of OAR voxel centres.
        voxel_cc: volume (cc) of one voxel (for D2cc).
        oar_reach_mm: OAR voxels farther (mm) than this from every candidate are dropped.
        max_points: larger point sets are subsampled (every n-th point, n = ceil(count / max_points));
            each kept point then stands for n voxels (``voxel_cc`` per structure, cc).
    """

    def __init__(self, candidates, strength_u, model, ctv_points, oar_points=None, voxel_cc=None,
                 oar_reach_mm=30.0, max_points=20000, formalism="line", progress=None):
        model = get_model(model)
        ctv_points = np.asarray(ctv_points, dtype=float).reshape(-1, 3)
        if len(ctv_points) == 0:
            raise InputError("CTV has no voxel: cannot optimise")
        if voxel_cc is None or not voxel_cc > 0:
            raise InputError(f"voxel volume {voxel_cc!r} cc invalid: must be > 0 cc")
        self.n = len(candidates)
        self.strength_u = float(strength_u)
        pos, axes = candidates.positions, candidates.axes
        lo, hi = pos.min(axis=0) - oar_reach_mm, pos.max(axis=0) + oar_reach_mm
        sets = {"CTV": ctv_points}
        self.oar_total = {}
        for name, pts in (oar_points or {}).items():
            pts = np.asarray(pts, dtype=float).reshape(-1, 3)
            self.oar_total[name] = len(pts)
            near = pts[np.all((pts >= lo) & (pts <= hi), axis=1)]
            if len(near):
                near = near[_min_distance(near, pos) <= oar_reach_mm]
            sets[name] = near
        self.voxel_cc = {}
        for name, pts in sets.items():
            stride = max(1, int(np.ceil(len(pts) / max_points)))
            sets[name] = pts[::stride]
            self.voxel_cc[name] = float(voxel_cc) * len(pts) / max(len(sets[name]), 1)
        total = sum(len(p) for p in sets.values())
        engine, scale = kernel.resolve(), time_factor_h(model) / 100.0  # cGy/h -> Gy (permanent implant)
        strengths = np.full((self.n, 1), self.strength_u)
        reach = kernel.reach_between(np.concatenate([np.empty((0, 3)), *sets.values()]), pos)
        self.matrices = {}
        done = 0
        for name, pts in sets.items():
            report(progress, done / max(total, 1), f"seed dose on {name}")
            # one contiguous float32 row per candidate (each candidate a seed set of its own)
            rate = kernel.samples_rate(engine, pts, pos[:, None, :], axes[:, None, :], strengths, model, formalism,
                                       reach_mm=reach)
            rate *= scale
            self.matrices[name] = rate.astype(np.float32)
            done += len(pts)


def _min_distance(points, seeds):
    """Distance (mm) from each point to the nearest of ``seeds`` (k-d tree)."""
    from scipy.spatial import cKDTree  # here: scipy.spatial would load with the settings (lazy import)

    return cKDTree(seeds).query(points)[0]


class _State:
    """A selection of candidates with its dose vectors (the CTV and the limited OARs) and objective terms.

    Compiled: ``arrays`` (x, per_needle, doses, metrics, lo, hi, act, n_act, score), the state as the compiled
    search (:mod:`SeedBrachyLib.kernel_numba`) keeps and changes it in place; ``value`` and ``terms`` follow them
    (:meth:`sync`)."""

    def __init__(self, problem, chosen):
        self.p = problem
        self.x = np.zeros(problem.n, dtype=bool)
        self.x[list(chosen)] = True
        self.dose = {k: problem.mats[k][self.x].sum(axis=0, dtype=np.float32) for k in dict.fromkeys(problem.names)}
        self.per_needle = np.bincount(problem.needle_of[self.x], minlength=problem.n_needles)
        if problem.compiled is None:
            self.value, self.terms = problem.objective(self.dose, self.x.sum(), (self.per_needle > 0).sum())
        else:
            self._link(np.concatenate([self.dose[k] for k in problem.names]),
                       [np.empty(3 + len(problem.names)), *np.full((2, len(problem.names)), np.nan, np.float32),
                        np.empty((len(problem.names), problem.scratch.size // 2), np.int64),
                        np.zeros((2, len(problem.names)), np.int64), np.empty(2)])
            problem.compiled.state_refresh(self.arrays, problem.constants, problem.scratch)
            self.sync()

    def _link(self, dose, rest):
        """The compiled state on the structures' doses side by side (``dose``; ``self.dose`` views of it)."""
        starts = self.p.constants[1]
        self.dose = {k: dose[starts[q]:starts[q + 1]] for q, k in reversed(list(enumerate(self.p.names)))}
        self.arrays = (self.x, self.per_needle, dose, *rest)

    def sync(self):
        """``value`` and ``terms`` from the compiled state's metrics (the same dict as the numpy path's)."""
        metrics, score = self.arrays[3], self.arrays[8]
        self.value = float(score[0])
        self.terms = {"D90": float(metrics[3]), **dict(zip(self.p.level_keys, metrics[:3].tolist())),
                      **{key: float(v) for (key, _), v in zip(self.p.limits, metrics[4:])},
                      "violation": float(score[1])}

    def trial(self, add=(), remove=()):
        """((objective value, terms), (add, remove), seeds per needle) after adding/removing candidate indices
        (state unchanged)."""
        values, per, terms = self.trials([add], [remove])
        return (float(values[0]), {k: float(v[0]) for k, v in terms.items()}), (add, remove), per[0]

    def trials(self, adds, removes):
        """Several changes against this state (``adds[t]``, ``removes[t]``: candidate indices; the same count in every
        ``adds[t]``, and in every ``removes[t]``), evaluated together (the metrics in one compiled call): (objective
        values (T,), seeds per needle (T, needles), terms: metric -> (T,))."""
        n = len(adds)
        add, remove = (np.asarray(a, dtype=np.int64).reshape(n, -1) for a in (adds, removes))
        terms = self.p.trial_metrics(self, add, remove)
        per, rows = np.repeat(self.per_needle[None], n, axis=0), np.arange(n)
        for column in add.T:
            per[rows, self.p.needle_of[column]] += 1
        for column in remove.T:
            per[rows, self.p.needle_of[column]] -= 1
        n_seeds = self.x.sum() + add.shape[1] - remove.shape[1]
        values, terms = self.p.objective_of(terms, n_seeds, (per > 0).sum(axis=1))
        return values, per, terms

    @staticmethod
    def _shift(v, m, add, remove):
        out = v + m[add[0]] if len(add) else v.copy()
        for j in add[1:]:
            out += m[j]
        for j in remove:
            out -= m[j]
        return out

    def copy(self):
        other = object.__new__(_State)
        other.p, other.x, other.dose = self.p, self.x.copy(), {k: v.copy() for k, v in self.dose.items()}
        other.per_needle, other.value, other.terms = self.per_needle.copy(), self.value, dict(self.terms)
        if self.p.compiled is not None:
            other._link(self.arrays[2].copy(), [a.copy() for a in self.arrays[3:]])
        return other

    def apply(self, add, remove, result):
        """Make the change a :meth:`trial` of the same ``add``, ``remove`` evaluated."""
        if self.p.compiled is not None:
            self.p.compiled.state_apply(self.arrays, self.p.constants, np.asarray(add, dtype=np.int64),
                                        np.asarray(remove, dtype=np.int64), self.p.scratch)
            self.sync()
            return
        self.x[list(add)] = True
        self.x[list(remove)] = False
        self.dose = {k: self._shift(v, self.p.mats[k], add, remove) for k, v in self.dose.items()}
        self.per_needle = result[2]
        self.value, self.terms = self.p.objective(self.dose, self.x.sum(), (self.per_needle > 0).sum())


class _Problem:
    LEVELS = (1.0, 1.5, 2.0)  # V100, V150, V200 (fractions of Rx)

    def __init__(self, candidates, matrices, goals, weights):
        self.n = len(candidates)
        self.mats = matrices.matrices
        self.goals, self.w = goals, weights
        self.rx = goals.prescription_gy
        self.needle_of = candidates.needle_index
        self.n_needles = len(candidates.needles)
        self.k_oar = {}
        for lim in goals.oar_limits:
            if lim.name not in self.mats:
                raise InputError(f"OAR limit on '{lim.name}' but no structure of that name was given "
                                 f"(have: {sorted(k for k in self.mats if k != 'CTV')})")
            self.k_oar[lim] = max(1, int(round(lim.volume_cc / matrices.voxel_cc[lim.name])))
        # the metrics as order statistics (rank of the value among a structure's sorted doses, 0-based)
        self.names = ["CTV", *(lim.name for lim in self.k_oar)]
        self.limits = [(lim.key, lim.limit_gy) for lim in self.k_oar]
        self.value_keys = ["D90", *(key for key, _ in self.limits)]
        self.level_keys = [f"V{int(100 * f)}" for f in self.LEVELS]
        sizes = [self.mats[k].shape[1] for k in self.names]
        self.ranks = np.array([int(np.floor(0.1 * sizes[0]))]
                              + [max(n - k, 0) for n, k in zip(sizes[1:], self.k_oar.values())], dtype=np.int64)
        self.compiled = kernel.numba_kernels() if kernel.resolve() == "compiled" else None
        # float32 levels, as numpy compares the float32 doses with f * Rx
        self.levels = np.array([f * self.rx for f in self.LEVELS], dtype=np.float32)
        self.scratch = np.empty(2 * max(sizes), dtype=np.float32)
        # D90 only counts through max(0, aim - D90): a trial needs its value only below the aim
        self.floors = np.array([(goals.d90_min_pct + goals.safety_pct) / 100.0 * self.rx]
                               + [-np.inf] * len(self.k_oar))
        if self.compiled is not None:  # the problem as the compiled search takes it (kernel_numba)
            # the organs at risk's largest candidate dose at each point: points that one added seed cannot lift into
            # a state's window are left out of its trials (pruned: OARs, whose metrics have no floor)
            # the structures side by side (an organ with two limits twice)
            mats = np.concatenate([self.mats[k] for k in self.names], axis=1)
            starts = np.cumsum([0, *sizes], dtype=np.int64)
            self.pruned = np.arange(len(self.names)) > 0
            g, w = goals, weights
            goal = np.array([self.rx, self.floors[0], g.v100_min_pct, g.v150_max_pct,
                             np.nan if g.v200_max_pct is None else g.v200_max_pct, g.safety_pct,
                             w.violation, w.needle, w.hot, w.oar])
            self.constants = (mats, starts, np.asarray(self.needle_of, dtype=np.int64), self.ranks,
                              mats.max(axis=0, initial=0.0), self.pruned, self.floors,
                              self.levels, goal, np.array([limit for _, limit in self.limits], dtype=float),
                              np.array(list(self.k_oar.values()), dtype=np.int64))
            self.work = self.compiled.search_work(self.scratch.size, len(self.names))

    def metrics(self, dose):
        """CTV D90 (Gy), V100/V150/V200 (%) and each limited OAR's metric (Gy) from voxel dose vectors."""
        d = dose["CTV"]
        m = len(d)
        out = {"D90": float(np.partition(d, self.ranks[0])[self.ranks[0]]),
               **{key: 100.0 * np.count_nonzero(d >= f * self.rx) / m for key, f in zip(self.level_keys, self.LEVELS)}}
        for lim, rank in zip(self.k_oar, self.ranks[1:]):
            v = dose[lim.name]
            out[lim.key] = float(np.partition(v, rank)[rank]) if len(v) else 0.0
        return out

    def trial_metrics(self, state, adds, removes):
        """:meth:`metrics` of ``state`` with candidates ``adds[t]`` added and ``removes[t]`` removed (int arrays
        (T, A) and (T, R)), for each trial t (state unchanged): metric -> (T,) array.

        Compiled (all trials in one call): a D90 that meets its aim (goal + safety) is given as the aim, the
        objective is the same (:meth:`_State.apply` recomputes the exact terms of the state it keeps)."""
        if self.compiled is None:
            rows = [self.metrics({k: state._shift(state.dose[k], self.mats[k], add, remove) for k in self.names})
                    for add, remove in zip(adds, removes)]
            return {key: np.array([r[key] for r in rows]) for key in [*self.level_keys, *self.value_keys]}
        n = len(adds)
        counts, out = np.empty((n, len(self.LEVELS)), dtype=np.int64), np.empty((n, len(self.names)))
        _, _, dose, _, lo, hi, act, n_act, _ = state.arrays
        self.compiled.trial_order_stats(dose, *self.constants[:2], adds, removes, self.ranks, lo, hi, act, n_act,
                                        self.pruned, self.floors, self.levels, counts, out, self.scratch)
        m = len(state.dose["CTV"])
        return {**dict(zip(self.level_keys, 100.0 * counts.T / m)), **dict(zip(self.value_keys, out.T))}

    def objective(self, dose, n_seeds, n_needles):
        value, terms = self.objective_of(self.metrics(dose), n_seeds, n_needles)
        terms["violation"] = float(terms["violation"])
        return float(value), terms

    def objective_of(self, m, n_seeds, n_needles):
        """(F, terms) from :meth:`metrics` terms ``m`` (the dict gets ``violation``); numbers or arrays (one value per
        trial, the same arithmetic)."""
        g, w, s = self.goals, self.w, self.goals.safety_pct
        viol = (np.maximum(0.0, (g.d90_min_pct + s) / 100.0 * self.rx - m["D90"]) / self.rx * 100.0
                + np.maximum(0.0, g.v100_min_pct + s - m["V100"]) + np.maximum(0.0, m["V150"] - g.v150_max_pct + s))
        if g.v200_max_pct is not None:
            viol += np.maximum(0.0, m["V200"] - g.v200_max_pct + s)
        oar = 0.0
        for key, limit in self.limits:
            viol += np.maximum(0.0, m[key] / limit * 100.0 - 100.0 + s)
            oar += m[key] / limit
        value = (w.violation * viol + n_seeds + w.needle * n_needles + w.hot * (m["V150"] + m["V200"]) / 100.0
                 + w.oar * oar)
        m["violation"] = viol
        return value, m

    def _greedy_terms(self, d, a):
        """Coverage gain and hot-spot growth (numpy) of candidate rows ``a`` added to the CTV dose ``d``."""
        rx, m = self.rx, len(d)
        under = d < rx
        gain = (np.minimum(d[under] + a[:, under], rx) - d[under]).sum(axis=1) / (m * rx)
        cold = d < 1.5 * rx
        hot = (d[cold] + a[:, cold] >= 1.5 * rx).sum(axis=1) / m
        if self.goals.v200_max_pct is not None:
            cold2 = d < 2.0 * rx
            hot = hot + (d[cold2] + a[:, cold2] >= 2.0 * rx).sum(axis=1) / m
        return gain, hot

    def greedy_pick(self, state):
        """Best candidate to add: coverage-deficit reduction minus hot-spot, OAR and new-needle penalties (numpy;
        compiled: kernel_numba.greedy_pick, the same sums)."""
        free = np.flatnonzero(~state.x)
        if free.size == 0:
            return None
        gain, hot = self._greedy_terms(state.dose["CTV"], self.mats["CTV"][free])
        score = gain - 0.25 * hot
        for lim in self.k_oar:
            v, b = state.dose[lim.name], self.mats[lim.name]
            if len(v):
                b = b[free]
                over = (np.maximum(v + b - lim.limit_gy, 0) - np.maximum(v - lim.limit_gy, 0)).sum(axis=1)
                score -= over / (self.k_oar[lim] * lim.limit_gy)
        opens = state.per_needle[self.needle_of[free]] == 0
        score -= opens * 0.2 * np.maximum(gain.max(), 1e-12)
        return int(free[int(np.argmax(score))])


def optimise(candidates, goals, matrices, random_seed=0, weights=Weights(), move_radius_mm=10.0, max_passes=20,
             restarts=6, perturb_fraction=0.2, starts=(), progress=None, name="optimised"):
    """Choose seeds among ``candidates`` to meet ``goals`` with as few seeds and needles as possible.

    Args:
        candidates: :class:`~SeedBrachyLib.planning.candidates.Candidates`.
        goals: :class:`Goals` (Rx in Gy, % goals, OAR limits named as in ``matrices``).
        matrices: :class:`DoseMatrices` of these candidates (seed strength in U, CTV and OAR points).
        random_seed: seed of the trial order and perturbations (same seed, same plan).
        move_radius_mm: largest move (mm) of one seed in the local search.
        max_passes: local-search passes per round.
        restarts: perturbation rounds after the first local search (iterated local search).
        perturb_fraction: fraction of the best plan's seeds removed (at random) to start a round.
        starts: further starting plans (candidate index arrays, e.g. the loading patterns).
        progress: callback(fraction, message); returning False cancels.

    Returns:
        :class:`~SeedBrachyLib.planning.candidates.Plan` whose ``terms`` hold the internal metrics
        (D90 Gy, V100/V150/V200 %, OAR metrics Gy, ``violation`` 0 when every goal is met with its safety
        margin) and ``unmet``, the goals the plan misses (texts, empty when all are met).
    """
    t0 = time.perf_counter()
    report(progress, 0.0, "optimiser: start")
    if matrices.n != len(candidates):
        raise InputError(f"dose matrices have {matrices.n} candidates, the candidate set {len(candidates)}")
    problem = _Problem(candidates, matrices, goals, weights)
    rng = np.random.default_rng(random_seed)
    diff = candidates.positions[:, None, :] - candidates.positions[None, :, :]
    neighbours = [np.flatnonzero(row <= move_radius_mm) for row in np.sqrt(np.einsum("abi,abi->ab", diff, diff))]
    neighbours = (neighbours, np.concatenate(neighbours).astype(np.int64),
                  np.cumsum([0, *map(len, neighbours)], dtype=np.int64))  # also flat, for the compiled search

    state = _State(problem, [])
    _fill(problem, state, progress, 0.0, 0.2)
    best = None
    for n, start in enumerate([None, *starts]):
        if start is not None:
            state = _State(problem, start)
            _fill(problem, state, None, 0, 0)
        _local_search(problem, state, rng, neighbours, candidates, max_passes)
        if best is None or state.value < best.value - 1e-9:
            best = state
        report(progress, 0.2 + 0.2 * (n + 1) / (len(starts) + 1), f"optimiser: start {n + 1}/{len(starts) + 1}")
    rounds = 0
    while best.x.any() and (rounds < restarts or (best.terms["violation"] > 0 and rounds < 3 * restarts)):
        rounds += 1  # (a plan of no seed has none to perturb)
        state = best.copy()
        drop = rng.choice(np.flatnonzero(state.x), size=max(1, int(perturb_fraction * state.x.sum())),
                          replace=False)
        state.apply([], drop, state.trial(remove=drop))
        _fill(problem, state, None, 0, 0)
        _local_search(problem, state, rng, neighbours, candidates, max_passes)
        if state.value < best.value - 1e-9:
            best = state
        report(progress, min(1.0, 0.4 + 0.6 * rounds / restarts),
               f"optimiser: round {rounds}, best {int(best.x.sum())} seeds")
    report(progress, 1.0, "optimiser: done")
    terms = {**best.terms, "unmet": unmet_in_terms(goals, best.terms)}
    return Plan(name, candidates, np.flatnonzero(best.x), matrices.strength_u, time.perf_counter() - t0, terms)


def _local_search(problem, state, rng, neighbours, candidates, max_passes):
    """Remove seeds, remove needles, move seeds (accepting improvements of F) until nothing changes."""
    for _ in range(max_passes):
        changed = _remove_seeds(state, rng) | _remove_needles(state, rng, candidates)
        changed |= _move_seeds(state, rng, neighbours)
        if state.terms["violation"] > 0:
            changed |= _fill(problem, state, None, 0, 0)
        if not changed:
            return


def _fill(problem, state, progress, f0, f1):
    """Greedy additions until the D90 and V100 goals hold (or no candidate is left). True if any was added."""
    added = False
    g = problem.goals
    d90_aim, v100_aim = (g.d90_min_pct + g.safety_pct) / 100.0 * problem.rx, g.v100_min_pct + g.safety_pct
    if problem.compiled is not None:
        added = problem.compiled.fill(state.arrays, problem.constants, v100_aim, g.v200_max_pct is not None,
                                      problem.scratch)
        state.sync()
        report(progress, f1, f"optimiser: greedy, {int(state.x.sum())} seeds")
        return added
    while True:
        t = state.terms
        if t["D90"] >= d90_aim and t["V100"] >= v100_aim:
            return added
        j = problem.greedy_pick(state)
        if j is None:
            return added
        state.apply([j], [], state.trial(add=[j]))
        added = True
        frac = min(1.0, t["V100"] / max(g.v100_min_pct, 1e-9))
        report(progress, f0 + (f1 - f0) * frac, f"optimiser: greedy, {int(state.x.sum())} seeds")


def _remove_seeds(state, rng):
    return _remove_each_if_better(state, [[j] for j in rng.permutation(np.flatnonzero(state.x))])


def _remove_needles(state, rng, candidates):
    return _remove_each_if_better(state, [np.flatnonzero(state.x & (candidates.needle_index == n))
                                          for n in rng.permutation(np.flatnonzero(state.per_needle > 0))])


#: Removal trials evaluated together (one compiled call); those after an accepted one are evaluated again.
TRIAL_CHUNK = 16


def _remove_each_if_better(state, removals):
    """Try each removal (candidate index lists, disjoint) in turn and keep it if it lowers F: the same as trying them
    one by one against the state as it is then, evaluated up to TRIAL_CHUNK consecutive ones of one size at a time."""
    p = state.p
    if p.compiled is not None:
        if not removals:
            return False
        changed = p.compiled.remove_each(state.arrays, p.constants, np.concatenate(removals).astype(np.int64),
                                         np.cumsum([0, *map(len, removals)], dtype=np.int64), p.work)
        state.sync()
        return changed
    changed, i = False, 0
    while i < len(removals):
        end = i + 1
        while end < min(len(removals), i + TRIAL_CHUNK) and len(removals[end]) == len(removals[i]):
            end += 1
        values, per, _ = state.trials([[]] * (end - i), removals[i:end])
        better = np.flatnonzero(values < state.value - 1e-9)
        if better.size:
            t = int(better[0])
            state.apply([], removals[i + t], (None, None, per[t]))
            changed, end = True, i + t + 1
        i = end
    return changed


def _move_seeds(state, rng, neighbours):
    """Move each seed (random order) to its best free neighbour if that lowers F. ``neighbours``: (candidate index
    arrays per candidate, the same flat, their offsets in it)."""
    order, p = rng.permutation(np.flatnonzero(state.x)), state.p
    if p.compiled is not None:
        changed = p.compiled.move_each(state.arrays, p.constants, order.astype(np.int64), *neighbours[1:], p.work)
        state.sync()
        return changed
    changed, neighbours = False, neighbours[0]
    for j in order:
        if not state.x[j]:
            continue
        free = neighbours[j][~state.x[neighbours[j]]]
        if not free.size:
            continue
        values, per, _ = state.trials(free[:, None], np.full((free.size, 1), j))
        best, best_value = None, state.value
        for t, value in enumerate(values.tolist()):
            if value < best_value - 1e-9:
                best, best_value = t, value
        if best is not None:
            state.apply([free[best]], [j], (None, None, per[best]))
            changed = True
    return changed
