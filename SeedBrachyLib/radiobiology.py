"""Radiobiology of a permanent implant: BED and EQD2 (linear-quadratic model), with a prior external-beam course.

Public API
----------
* :class:`TissueParameters` -- alpha/beta (Gy), repair half-time (h), optional repopulation (alpha in
  Gy^-1, Tpot and onset Tk in days), with their source; :data:`TUMOUR`, :data:`LATE_NORMAL`,
  :data:`SPINAL_CORD` defaults and :func:`default_tissue` / :func:`parameters_for` (per structure,
  overridable); :func:`format_parameters` shows them.
* :func:`implant_bed` / :func:`implant_eqd2` -- BED / EQD2 (Gy) of a permanent implant's total
  physical dose (Gy), per voxel or per sample (any array); :func:`effective_time_days`;
  :func:`bed_delivered` -- BED of the dose delivered up to a time (decaying or constant rate).
* :func:`fractionated_bed` / :func:`fractionated_eqd2` -- a course of n equal fractions, also per voxel.
* :func:`eqd2_dvh` -- the DVH of EQD2 from a physical-dose DVH (exact: same samples, same volumes).
* :class:`PriorCourse` and :func:`cumulative_eqd2` -> :class:`CumulativeRow` per structure:
  implant EQD2 + prior EQD2 for D2cc and Dmax (and any Dx metric) against user limits;
  :func:`format_cumulative`.

The model (Dale 1985; Ling 1992)
--------------------------------
A permanent implant delivers the dose rate R(t) = R0 exp(-lambda t) (Gy/h), lambda = ln 2 / T1/2 of
the isotope; the total dose is D = R0 / lambda, so R0 = lambda D. With the linear-quadratic model and
mono-exponential repair of sublethal damage (mu = ln 2 / repair half-time), the effect of the dose
delivered up to time T is E/alpha = BED(T):

    BED(T) = D(T) + (2 / (alpha/beta)) * int_0^T R(t) int_0^t R(t') exp(-mu (t - t')) dt' dt

The inner integral is R0 (exp(-lambda t) - exp(-mu t)) / (mu - lambda); integrating again,

    BED(T) = (R0/lambda)(1 - e^(-lambda T))
             + 2 R0^2 / ((mu - lambda)(alpha/beta)) * [(1 - e^(-2 lambda T)) / (2 lambda)
                                                       - (1 - e^(-(mu + lambda) T)) / (mu + lambda)].

For T -> infinity this is Dale's formula for a permanent implant,

    BED = D [1 + R0 / ((mu + lambda)(alpha/beta))]                                  (Dale 1985)

and for a constant rate (lambda -> 0) the classical LDR form D [1 + (2R/(mu alpha/beta))(1 - 1/(mu T))].
Repopulation (optional): after an onset time Tk clonogens repopulate with the potential doubling
time Tpot, which costs K = ln 2 / (alpha Tpot) Gy of BED per unit time. The implant's BED is the
maximum over T of BED(T) - K (T - Tk)+, reached at the effective treatment time T_eff where the
rate dBED/dT = R(T) [1 + 2 I(T) / (alpha/beta)], I(T) the inner integral, has fallen to K
(T_eff = Tk when it is below K already at Tk). Dale and Ling use the linear part of the rate,
T_eff = ln(R0 alpha Tpot / ln 2) / lambda; the exact maximum used here differs from that only
through the quadratic term (BED is flat at its maximum: differences well below 0.1 Gy in the tests).

EQD2 = BED / (1 + 2 / (alpha/beta)); a course of n fractions of d Gy has BED = n d (1 + d / (alpha/beta)).
Both BED and EQD2 increase with the physical dose, so a DVH metric of EQD2 is EQD2 of the physical
metric (D90_EQD2 = EQD2(D90)); :func:`eqd2_dvh` transforms every sample and keeps its volume.

Sources: Dale RG. The application of the linear-quadratic dose-effect equation to fractionated and
protracted radiotherapy. Br J Radiol 1985;58:515-528. Ling CC. Permanent implants using Au-198, Pd-103
and I-125: radiobiological considerations based on the linear quadratic model. Int J Radiat Oncol Biol
Phys 1992;23:81-87. EQD2: Withers HR, Thames HD, Peters LJ. Radiother Oncol 1983;1:187-191.
Research use: the parameters are population values with wide uncertainty; results are estimates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from .dvh import DVH, metric_unit
from .errors import InputError

LN2 = math.log(2.0)

BCR = ("Joiner MC, van der Kogel AJ (eds). Basic Clinical Radiobiology, 4th ed. Hodder Arnold 2009: alpha/beta "
       "about 10 Gy for tumours and early-responding tissue, about 3 Gy for late effects; repair half-times of "
       "0.5-4 h, 1.5 h a common single value")
QUANTEC_CORD = ("Kirkpatrick JP, van der Kogel AJ, Schultheiss TE. Radiation dose-volume effects in the spinal "
                "cord. Int J Radiat Oncol Biol Phys 2010;76(3 Suppl):S42-S49 (alpha/beta about 2 Gy)")
REPOPULATION = ("Withers HR, Taylor JMG, Maciejewski B. The hazard of accelerated tumor clonogen repopulation during "
                "radiotherapy. Acta Oncol 1988;27:131-146 (onset about 4 weeks, head and neck SCC); alpha 0.3 Gy^-1 "
                "and Tpot 3 d are typical squamous-cell values, to be set per tumour")
DEFAULT_ALPHA_PER_GY = 0.3
DEFAULT_KICKOFF_DAYS = 28.0
DEFAULT_REPAIR_HALF_TIME_H = 1.5


@dataclass(frozen=True)
class TissueParameters:
    """Linear-quadratic parameters of one tissue.

    Attributes:
        name: what the parameters describe (e.g. "tumour", "late-responding normal tissue").
        alpha_beta_gy: alpha/beta (Gy), > 0.
        repair_half_time_h: half-time of sublethal-damage repair (h), > 0.
        tpot_days: potential doubling time (days) for repopulation, or None (no repopulation).
        kickoff_days: onset of repopulation Tk (days after the implant), >= 0.
        alpha_per_gy: alpha (Gy^-1), used only with repopulation, > 0.
        source: where the values come from.
    """

    name: str
    alpha_beta_gy: float
    repair_half_time_h: float = DEFAULT_REPAIR_HALF_TIME_H
    tpot_days: float | None = None
    kickoff_days: float = DEFAULT_KICKOFF_DAYS
    alpha_per_gy: float = DEFAULT_ALPHA_PER_GY
    source: str = BCR

    def __post_init__(self):
        for label, value in (("alpha/beta", self.alpha_beta_gy), ("repair half-time", self.repair_half_time_h),
                             ("alpha", self.alpha_per_gy)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise InputError(f"{self.name}: {label} {value!r} invalid: need a finite value > 0 "
                                 "(alpha/beta in Gy, repair half-time in h, alpha in Gy^-1)")
        if self.tpot_days is not None and not (math.isfinite(self.tpot_days) and self.tpot_days > 0):
            raise InputError(f"{self.name}: Tpot {self.tpot_days!r} days invalid: need > 0 days, or None for "
                             "no repopulation")
        if not (math.isfinite(self.kickoff_days) and self.kickoff_days >= 0):
            raise InputError(f"{self.name}: repopulation onset {self.kickoff_days!r} days invalid: need >= 0 days")

    @property
    def mu_per_h(self):
        """Repair rate constant mu = ln 2 / repair half-time (h^-1)."""
        return LN2 / self.repair_half_time_h

    def with_values(self, **changes):
        """A copy with some values changed (same validation), e.g. ``with_values(alpha_beta_gy=4)``."""
        return replace(self, **changes)

    def describe(self):
        """One line with units."""
        text = f"alpha/beta {self.alpha_beta_gy:g} Gy, repair T1/2 {self.repair_half_time_h:g} h"
        if self.tpot_days is None:
            return text + ", no repopulation"
        return (text + f", repopulation: alpha {self.alpha_per_gy:g} Gy^-1, Tpot {self.tpot_days:g} d, "
                f"onset {self.kickoff_days:g} d")


TUMOUR = TissueParameters("tumour", 10.0)
LATE_NORMAL = TissueParameters("late-responding normal tissue", 3.0)
SPINAL_CORD = TissueParameters("spinal cord", 2.0, source=QUANTEC_CORD)


def with_repopulation(tissue, tpot_days=3.0, kickoff_days=DEFAULT_KICKOFF_DAYS, alpha_per_gy=DEFAULT_ALPHA_PER_GY):
    """``tissue`` with repopulation switched on (defaults: Tpot 3 d, onset 28 d, alpha 0.3 Gy^-1; see REPOPULATION)."""
    return tissue.with_values(tpot_days=tpot_days, kickoff_days=kickoff_days, alpha_per_gy=alpha_per_gy,
                              source=f"{tissue.source}; {REPOPULATION}")


def default_tissue(name, role):
    """Default parameters of a structure: targets TUMOUR, a spinal cord SPINAL_CORD, other organs LATE_NORMAL."""
    if role == "target":
        return TUMOUR
    key = str(name).lower().replace(" ", "").replace("_", "")
    return SPINAL_CORD if "cord" in key else LATE_NORMAL


def parameters_for(structures, overrides=None):
    """Structure name -> TissueParameters for ``structures`` ((name, role) pairs), with ``overrides`` by name."""
    overrides = dict(overrides or {})
    names = [n for n, _ in structures]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise InputError(f"radiobiology parameters given for {unknown}, which are not among the structures {names}")
    return {n: overrides.get(n, default_tissue(n, role)) for n, role in structures}


def format_parameters(parameters):
    """Text lines: each structure's parameters, then their sources."""
    sources = list(dict.fromkeys(p.source for p in parameters.values()))
    lines = [f"  {name}: {p.name}, {p.describe()} [{sources.index(p.source) + 1}]" for name, p in parameters.items()]
    return lines + [f"  [{i + 1}] {s}" for i, s in enumerate(sources)]


def _decay_per_h(half_life_days):
    t = float(half_life_days)
    if not (math.isfinite(t) and t > 0):
        raise InputError(f"source half-life {half_life_days!r} days invalid: need > 0 days")
    return LN2 / (t * 24.0)


def _doses(dose_gy):
    d = np.asarray(dose_gy, dtype=float)
    if not np.all(np.isfinite(d)) or np.any(d < 0):
        raise InputError("physical dose for BED/EQD2 must be finite and >= 0 Gy")
    return d


def bed_delivered(initial_rate_gy_per_h, duration_h, tissue, half_life_days):
    """BED (Gy) of the dose delivered from 0 to ``duration_h`` hours at R0 exp(-lambda t) (Gy/h), no repopulation.

    The module's BED(T) formula (arrays allowed); ``half_life_days`` of the source (a very long
    half-life gives the constant-rate case).
    """
    lam, mu = _checked(tissue, half_life_days)
    return _bed_until(np.asarray(initial_rate_gy_per_h, float), np.asarray(duration_h, float), lam, mu,
                      tissue.alpha_beta_gy)


def _bed_until(r0, t_h, lam, mu, ab):
    quad = (-np.expm1(-2.0 * lam * t_h) / (2.0 * lam) + np.expm1(-(mu + lam) * t_h) / (mu + lam))
    return r0 / lam * -np.expm1(-lam * t_h) + 2.0 * r0 * r0 / ((mu - lam) * ab) * quad


def _bed_rate(r0, t_h, lam, mu, ab):
    """dBED/dT (Gy/h) at time t_h: R(T) [1 + 2 I(T) / (alpha/beta)]."""
    rate = r0 * np.exp(-lam * t_h)
    inner = r0 * (np.exp(-lam * t_h) - np.exp(-mu * t_h)) / (mu - lam)
    return rate * (1.0 + 2.0 * inner / ab)


def _checked(tissue, half_life_days):
    lam = _decay_per_h(half_life_days)
    mu = tissue.mu_per_h
    if not mu > lam:
        raise InputError(f"{tissue.name}: repair half-time {tissue.repair_half_time_h:g} h must be shorter than the "
                         f"source half-life {half_life_days:g} days")
    return lam, mu


def effective_time_days(dose_gy, tissue, half_life_days):
    """Effective treatment time T_eff (days) of a permanent implant of total dose ``dose_gy`` (Gy, array).

    Infinite without repopulation; otherwise the time after the onset Tk at which the BED rate has
    fallen to the repopulation rate K = ln 2 / (alpha Tpot) (module notes), Tk if it is below K at Tk.
    Found by bisection on the rate (monotone after the first hours), to 1e-6 h.
    """
    d = _doses(dose_gy)
    if tissue.tpot_days is None:
        return np.full(d.shape, np.inf)
    lam, mu = _checked(tissue, half_life_days)
    r0 = lam * d
    k = LN2 / (tissue.alpha_per_gy * tissue.tpot_days * 24.0)  # Gy of BED per hour
    ab = tissue.alpha_beta_gy
    lo = np.full(d.shape, tissue.kickoff_days * 24.0)
    above = _bed_rate(r0, lo, lam, mu, ab) > k
    hi = np.where(above, np.log(np.maximum(r0, k) / k) / lam * 1.5 + 10.0 / mu + lo, lo)
    while np.any(above & (_bed_rate(r0, hi, lam, mu, ab) > k)):
        hi = np.where(above & (_bed_rate(r0, hi, lam, mu, ab) > k), 2.0 * hi, hi)
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        up = _bed_rate(r0, mid, lam, mu, ab) > k
        lo = np.where(above & up, mid, lo)
        hi = np.where(above & ~up, mid, hi)
        if np.all(hi - lo < 1e-6):
            break
    return np.where(above, 0.5 * (lo + hi), tissue.kickoff_days * 24.0) / 24.0


def implant_bed(dose_gy, tissue, half_life_days):
    """BED (Gy) of a permanent implant delivering the total physical dose ``dose_gy`` (Gy, any array shape).

    Dale's formula D [1 + lambda D / ((mu + lambda) alpha/beta)] without repopulation; with
    repopulation BED(T_eff) - K (T_eff - Tk) (module notes). ``half_life_days``: the isotope's
    half-life (e.g. ``model.half_life_days``).
    """
    d = _doses(dose_gy)
    lam, mu = _checked(tissue, half_life_days)
    ab = tissue.alpha_beta_gy
    r0 = lam * d
    if tissue.tpot_days is None:
        return d * (1.0 + r0 / ((mu + lam) * ab))
    t_eff = effective_time_days(d, tissue, half_life_days) * 24.0
    k = LN2 / (tissue.alpha_per_gy * tissue.tpot_days * 24.0)
    return _bed_until(r0, t_eff, lam, mu, ab) - k * np.maximum(t_eff - tissue.kickoff_days * 24.0, 0.0)


def eqd2_from_bed(bed_gy, alpha_beta_gy):
    """EQD2 (Gy) = BED / (1 + 2 / (alpha/beta))."""
    return np.asarray(bed_gy, dtype=float) / (1.0 + 2.0 / float(alpha_beta_gy))


def implant_eqd2(dose_gy, tissue, half_life_days):
    """EQD2 (Gy) of a permanent implant's total physical dose ``dose_gy`` (Gy, any array shape)."""
    return eqd2_from_bed(implant_bed(dose_gy, tissue, half_life_days), tissue.alpha_beta_gy)


def _fractions(n_fractions):
    if isinstance(n_fractions, bool) or not float(n_fractions).is_integer() or n_fractions < 1:
        raise InputError(f"number of fractions {n_fractions!r} invalid: need a whole number >= 1")
    return int(n_fractions)


def fractionated_bed(total_gy, n_fractions, alpha_beta_gy):
    """BED (Gy) of ``total_gy`` (Gy, array: per voxel) in ``n_fractions`` equal fractions: n d (1 + d / (a/b))."""
    total = _doses(total_gy)
    d = total / _fractions(n_fractions)
    return total * (1.0 + d / float(alpha_beta_gy))


def fractionated_eqd2(total_gy, n_fractions, alpha_beta_gy):
    """EQD2 (Gy) of ``total_gy`` (Gy, array) in ``n_fractions`` equal fractions: D (d + a/b) / (2 + a/b)."""
    return eqd2_from_bed(fractionated_bed(total_gy, n_fractions, alpha_beta_gy), alpha_beta_gy)


def eqd2_dvh(dvh, tissue, half_life_days, prior_eqd2_gy=0.0):
    """DVH of EQD2 (Gy): each sample of the physical ``dvh`` mapped to EQD2, plus a uniform prior EQD2 (Gy)."""
    doses = implant_eqd2(dvh.doses, tissue, half_life_days) + float(prior_eqd2_gy)
    return DVH(doses, dvh.volumes, 1.0, f"{dvh.name} (EQD2)")


@dataclass(frozen=True)
class PriorCourse:
    """A prior external-beam course.

    Either ``dose_gy``: structure name -> total dose (Gy) that structure received (for a D2cc or
    Dmax sum give the prior course's D2cc or Dmax of that structure: added as a uniform dose, the
    conservative assumption that the hot spots coincide), or a dose volume per voxel passed to
    :func:`cumulative_eqd2` as ``prior_dose_volume`` on the implant's dose grid (voxel-wise sum).

    Attributes:
        n_fractions: number of equal fractions (>= 1).
        dose_gy: structure -> total prior dose (Gy); structures not listed received none.
        description: e.g. "60 Gy in 30 fractions, 2019".
    """

    n_fractions: int
    dose_gy: dict = field(default_factory=dict)
    description: str = "prior external-beam course"

    def __post_init__(self):
        _fractions(self.n_fractions)
        for name, dose in self.dose_gy.items():
            if not (math.isfinite(float(dose)) and dose >= 0):
                raise InputError(f"prior dose {dose!r} Gy for '{name}' invalid: need a dose >= 0 Gy")


@dataclass(frozen=True)
class CumulativeRow:
    """One structure, one metric: implant, prior and cumulative EQD2 (Gy), with the user's limit.

    With a uniform prior dose the cumulative value is implant + prior; with a prior dose volume it is
    the metric of the voxel-wise sum (at most implant + prior: the hot spots need not coincide).
    """

    structure: str
    metric: str
    physical_gy: float
    implant_eqd2_gy: float
    prior_eqd2_gy: float
    cumulative_eqd2_gy: float
    limit_eqd2_gy: float | None
    passed: bool | None
    alpha_beta_gy: float

    def describe(self):
        """One line with units."""
        status = "" if self.passed is None else ("PASS  " if self.passed else "FAIL  ")
        limit = "" if self.limit_eqd2_gy is None else f" (limit <= {self.limit_eqd2_gy:g} Gy EQD2)"
        return (f"{status}{self.structure} {self.metric}: implant {self.physical_gy:.1f} Gy physical = "
                f"{self.implant_eqd2_gy:.1f} Gy EQD2, prior {self.prior_eqd2_gy:.1f} Gy EQD2, cumulative "
                f"{self.cumulative_eqd2_gy:.1f} Gy EQD2 (alpha/beta {self.alpha_beta_gy:g} Gy){limit}")


def cumulative_eqd2(evaluation, parameters, half_life_days, prior=None, limits=(), metrics=("D2cc", "Dmax"),
                    implant_dose=None, prior_dose_volume=None, structures=None):
    """Implant + prior-course EQD2 per structure and metric, checked against user limits.

    Args:
        evaluation: :class:`~SeedBrachyLib.dvh.PlanEvaluation` of the implant (physical dose, Gy).
        parameters: structure -> :class:`TissueParameters` (see :func:`parameters_for`).
        half_life_days: source half-life (days).
        prior: :class:`PriorCourse` or None.
        limits: (structure, metric, cumulative EQD2 limit in Gy) triples (limit "<=").
        metrics: dose metrics (Gy) to sum for every structure (D2cc, Dmax, D90, ...).
        implant_dose, prior_dose_volume, structures: for a voxel-wise sum: the implant dose (Gy) and
            the prior course's dose (Gy) on the same grid, and the :class:`~SeedBrachyLib.structures.Structure`
            objects on it; each structure's EQD2 DVH is then built from the summed EQD2 volume.

    Returns:
        list of :class:`CumulativeRow` (structure order of the evaluation, then metric order).
    """
    voxelwise = prior_dose_volume is not None
    if voxelwise and (prior is None or implant_dose is None or structures is None):
        raise InputError("a voxel-wise sum needs the prior course (fractions), the implant dose and the structures "
                         "on the same grid as the prior dose volume")
    if voxelwise and np.shape(prior_dose_volume) != np.shape(implant_dose):
        raise InputError(f"prior dose volume shape {np.shape(prior_dose_volume)} differs from the implant dose "
                         f"shape {np.shape(implant_dose)}: resample it onto the implant's dose grid first")
    limit_of = {}
    for name, metric, value in limits:
        if name not in evaluation.structures:
            raise InputError(f"limit for '{name}': no such structure (have {sorted(evaluation.structures)})")
        if metric_unit(metric) != "Gy" or not float(value) > 0:
            raise InputError(f"limit {name} {metric} <= {value!r}: need a dose metric (Gy) and a limit > 0 Gy EQD2")
        limit_of[(name, metric)] = float(value)
    wanted = list(dict.fromkeys(list(metrics) + [m for _, m in limit_of]))
    by_name = {s.name: s for s in structures or ()}
    missing = sorted(set(evaluation.structures) - set(by_name)) if voxelwise else []
    if missing:
        raise InputError(f"voxel-wise sum: structures {missing} of the evaluation were not given on the dose grid")
    rows = []
    for name, entry in evaluation.structures.items():
        tissue = parameters[name]
        ab = tissue.alpha_beta_gy
        prior_eqd2 = 0.0
        implant_dvh = eqd2_dvh(entry.dvh, tissue, half_life_days)
        if voxelwise:
            implant_volume = implant_eqd2(implant_dose, tissue, half_life_days)
            prior_volume = fractionated_eqd2(prior_dose_volume, prior.n_fractions, ab)
            prior_dvh = DVH.of(prior_volume, by_name[name])
            cum_dvh = DVH.of(implant_volume + prior_volume, by_name[name])
        elif prior is not None:
            prior_eqd2 = float(fractionated_eqd2(prior.dose_gy.get(name, 0.0), prior.n_fractions, ab))
        for metric in wanted:
            if (name, metric) not in limit_of and metric not in metrics:
                continue
            try:
                physical = entry.dvh.metric(metric)[0]
            except InputError:
                continue  # e.g. D2cc of a structure under 2 cc
            implant = implant_dvh.metric(metric)[0]
            if voxelwise:
                before, cumulative = prior_dvh.metric(metric)[0], cum_dvh.metric(metric)[0]
            else:
                before, cumulative = prior_eqd2, implant + prior_eqd2
            limit = limit_of.get((name, metric))
            rows.append(CumulativeRow(name, metric, physical, implant, before, cumulative, limit,
                                      None if limit is None else bool(cumulative <= limit), ab))
    return rows


def format_cumulative(rows, prior=None):
    """Text lines of :func:`cumulative_eqd2` rows, with what the prior course was."""
    head = ("Cumulative EQD2 (implant, Dale 1985 permanent-implant BED; prior course: "
            + (f"{prior.description}, {prior.n_fractions} fractions" if prior else "none") + ")")
    return [head] + [f"  {r.describe()}" for r in rows]


def summary_lines(evaluation, half_life_days, prior=None, limits=(), overrides=None, target_metric="D90"):
    """Printed section: per-structure parameters, implant EQD2 of the target ``target_metric`` and of each
    OAR's D2cc and Dmax, and the cumulative EQD2 with ``prior`` (:class:`PriorCourse`) against ``limits``."""
    roles = [(name, s.role) for name, s in evaluation.structures.items()]
    params = parameters_for(roles, overrides)
    lines = ["Radiobiology (linear-quadratic; permanent implant BED after Dale 1985, EQD2 = BED / (1 + 2/(a/b))):"]
    lines += format_parameters(params)
    for name, role in roles:
        if role != "target":
            continue
        dose = evaluation.value(name, target_metric)[0]
        bed = float(implant_bed(dose, params[name], half_life_days))
        eqd2 = float(eqd2_from_bed(bed, params[name].alpha_beta_gy))
        lines.append(f"  {name} {target_metric}: {dose:.1f} Gy physical = {bed:.1f} Gy BED = {eqd2:.1f} Gy EQD2")
    rows = cumulative_eqd2(evaluation, params, half_life_days, prior, limits)
    return lines + format_cumulative(rows, prior)
