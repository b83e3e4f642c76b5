"""Placement robustness: a plan's DVH metrics over simulated implants (Monte Carlo), with sampling errors.

Public API
----------
* :class:`PlacementErrors` -- the error model (standard deviations in mm and degrees, loss probability),
  defaults from published post-implant studies (:data:`ERROR_SOURCES`).
* :class:`ImplantGeometry` -- the planned seeds on their needles (entry point, direction, depth of each
  seed); :meth:`ImplantGeometry.from_plan` / :meth:`ImplantGeometry.from_seeds`.
* :func:`sample_implants` -> :class:`SampledImplants` (positions, axes, which seeds stayed), vectorised.
* :class:`SamplePoints` -- a structure as points (mm RAS) with volumes (cc); :func:`points_from_mask`,
  :func:`points_from_structure`.
* :func:`evaluate_robustness` -> :class:`RobustnessResult`: per sample target D90, V100 and OAR D2cc
  (and any metric a goal names), the probability that each goal holds with its binomial standard
  error and Wilson 95% interval, :meth:`RobustnessResult.summary_lines`, :meth:`RobustnessResult.histogram`.

Error model (each sample is one simulated implant; every draw is independent):

* per needle: a depth error along the needle (SD ``needle_depth_sd_mm``, shared by its seeds), a shift of
  the entry point across it (SD ``needle_entry_sd_mm`` per perpendicular axis) and a deflection, the needle
  direction tilted about the entry point by two perpendicular angles (SD ``needle_angle_sd_deg`` each), so
  the lateral error grows with depth;
* per seed: an error along the (deflected) needle (``seed_along_sd_mm``) and across it
  (``seed_across_sd_mm`` per perpendicular axis of the planned needle), a tilt of its axis from the
  needle by two perpendicular angles (``seed_tilt_sd_deg`` each), and loss (migration out of the region,
  extrusion) with probability ``p_lost``.

Dose at the structures' points is TG-43 from the sampled seeds, all samples at once
(:func:`SeedBrachyLib.kernel.samples_rate`): with the compiled engine from its (r, theta) table, within 0.05 % of
exact TG-43 (Testing/test_kernel.py; a D90 of 120 Gy moves by at most 0.06 Gy, a tenth of its sampling SE with
1,000 samples), with the numpy engine exact; the nominal plan's metrics are exact
(:func:`SeedBrachyLib.dose.dose_at_points`). Target points cover the whole target (D90 and
V100 need all of it); organ-at-risk points are those whose nominal dose is at least ``oar_keep_fraction`` of
the organ's nominal metric (the hot end decides D2cc and Dmax), the rest are kept as their volume at 0 Gy
(the cut is reported). The point sets are coarser than the plan's DVH: compare ``nominal`` (same points,
planned seeds) with the plan's own DVH metric to see the sampling bias.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field

import numpy as np

from .. import kernel
from ..checks import COMPARATORS
from ..dose import dose_at_points, time_factor_h
from ..dvh import DVH, metric_unit
from ..errors import InputError, require_range
from ..grid import Grid
from ..progress import report
from ..seeds import Seed, seed_arrays
from ..sources import get_model
from ..structures import resample_mask
from ..vectors import perpendicular_basis

JI_2021 = ("Ji Z, Sun H, Jiang Y, Chen Y, Guo F, Fan J, Wang J. Analysis on the accuracy of CT-guided radioactive "
           "I-125 seed implantation with 3D printing template assistance in the treatment of thoracic malignant "
           "tumors. J Radiat Res 2021;62(5):910-917 (318 needles; mean errors: depth 5.2 +/- 4.8 mm, insertion "
           "point 3.4 +/- 1.7 mm, angle 2.8 +/- 1.7 deg)")
LECLERC_2004 = ("Leclerc G, Lavallee MC, Tubic D, Metivier J, Vigneault E, Beaulieu L. Idealized line source "
                "configuration for permanent 125I prostate implants. Radiother Oncol 2004;72:213-220 (1625 seeds; "
                "orientation angle SDs 22.9 and 27.1 deg)")
MIGRATION_2011 = ("Incidence of seed migration to the chest, abdomen, and pelvis after transperineal interstitial "
                  "prostate brachytherapy with loose 125I seeds. Radiat Oncol 2011;6:130, doi:10.1186/1748-717X-6-130 "
                  "(91 of 19,236 seeds, 0.47%, migrated)")
#: Where each default comes from. Mean absolute errors are turned into SDs of zero-mean normal errors:
#: 1D (depth) SD = mean / sqrt(2/pi); 2D radial (entry point, angle) SD per axis = mean / sqrt(pi/2).
ERROR_SOURCES = {
    "needle_depth_sd_mm": f"6.5 mm = 5.2 mm / sqrt(2/pi), {JI_2021}",
    "needle_entry_sd_mm": f"2.7 mm per axis = 3.4 mm / sqrt(pi/2), {JI_2021}",
    "needle_angle_sd_deg": f"2.2 deg per axis = 2.8 deg / sqrt(pi/2), {JI_2021}",
    "seed_along_sd_mm": "2.0 mm: our choice (seed deposition along the track beyond the needle's own error)",
    "seed_across_sd_mm": "1.0 mm per axis: our choice (a seed leaves the needle lumen sideways in soft tissue)",
    "seed_tilt_sd_deg": f"25 deg per axis, the mean of 22.9 and 27.1 deg, {LECLERC_2004}",
    "p_lost": f"0.005 per seed (0.47% rounded), {MIGRATION_2011}",
}


#: Allowed values of each placement error: name -> (unit, minimum, maximum); a seed is lost with a probability
#: of at most 0.5 (more is not a placement error), angles up to 45 degrees.
ERROR_RANGES = {"needle_depth_sd_mm": ("mm", 0.0, 20.0), "needle_entry_sd_mm": ("mm", 0.0, 20.0),
                "needle_angle_sd_deg": ("deg", 0.0, 45.0), "seed_along_sd_mm": ("mm", 0.0, 20.0),
                "seed_across_sd_mm": ("mm", 0.0, 20.0), "seed_tilt_sd_deg": ("deg", 0.0, 45.0),
                "p_lost": ("", 0.0, 0.5)}


@dataclass(frozen=True)
class PlacementErrors:
    """Placement error model (module notes); all standard deviations of zero-mean normal errors.

    Attributes:
        needle_depth_sd_mm, needle_entry_sd_mm: per needle, along it and per axis across it (mm).
        needle_angle_sd_deg: per needle, deflection about the entry point per perpendicular axis (degrees).
        seed_along_sd_mm, seed_across_sd_mm: per seed, along the needle and per axis across it (mm).
        seed_tilt_sd_deg: per seed, axis tilt from the needle per perpendicular axis (degrees).
        p_lost: probability that a seed is lost (0..0.5).
    """

    needle_depth_sd_mm: float = 6.5
    needle_entry_sd_mm: float = 2.7
    needle_angle_sd_deg: float = 2.2
    seed_along_sd_mm: float = 2.0
    seed_across_sd_mm: float = 1.0
    seed_tilt_sd_deg: float = 25.0
    p_lost: float = 0.005

    def __post_init__(self):
        for name, (unit, minimum, maximum) in ERROR_RANGES.items():
            require_range(f"placement error {name}", getattr(self, name), unit, minimum, maximum)

    def describe(self):
        """One line with units."""
        return (f"needle depth SD {self.needle_depth_sd_mm:g} mm, entry SD {self.needle_entry_sd_mm:g} mm/axis, "
                f"deflection SD {self.needle_angle_sd_deg:g} deg/axis; seed SD {self.seed_along_sd_mm:g} mm along, "
                f"{self.seed_across_sd_mm:g} mm/axis across, tilt SD {self.seed_tilt_sd_deg:g} deg/axis; "
                f"loss p = {self.p_lost:g}")


@dataclass(frozen=True)
class ImplantGeometry:
    """Planned seeds on their needles (mm RAS).

    Attributes:
        entries: (m, 3) needle entry points; directions: (m, 3) unit vectors entry -> tip.
        needle_of_seed: (n,) needle index of each seed; depth_mm: (n,) seed depth from its needle's entry.
        strengths_u: (n,) S_K of each seed (U); labels: needle labels (m,).
    """

    entries: np.ndarray
    directions: np.ndarray
    needle_of_seed: np.ndarray
    depth_mm: np.ndarray
    strengths_u: np.ndarray
    labels: tuple = ()

    @property
    def n_seeds(self):
        return int(len(self.depth_mm))

    def planned_positions(self):
        """(n, 3) planned seed positions (mm RAS)."""
        m = self.needle_of_seed
        return self.entries[m] + self.depth_mm[:, None] * self.directions[m]

    @classmethod
    def from_seeds(cls, seeds, needles, tolerance_mm=1.0):
        """Seeds (mm RAS, U) on ``needles`` (:class:`~SeedBrachyLib.seeds.Needle`): each seed goes to the needle
        whose line passes closest, which must be within ``tolerance_mm``."""
        positions, _, strengths = seed_arrays(seeds)
        if not needles:
            raise InputError("no needles given: robustness sampling needs the needle each seed is placed with")
        entries = np.array([n.entry for n in needles])
        dirs = np.array([n.direction for n in needles])
        rel = positions[:, None, :] - entries[None]
        depth = np.einsum("nmk,mk->nm", rel, dirs)
        off = np.linalg.norm(rel - depth[..., None] * dirs[None], axis=-1)
        off[depth < 0] = np.inf
        best = np.argmin(off, axis=1)
        far = off[np.arange(len(seeds)), best] > tolerance_mm
        if np.any(far):
            i = int(np.flatnonzero(far)[0])
            raise InputError(f"seed {seeds[i].label or i + 1} at {np.round(positions[i], 1).tolist()} mm lies "
                             f"{off[i, best[i]]:.1f} mm from the nearest needle line (allowed {tolerance_mm:g} mm)")
        return cls(entries, dirs, best, depth[np.arange(len(seeds)), best], strengths,
                   tuple(n.label for n in needles))

    @classmethod
    def from_plan(cls, plan):
        """The seeds and needles of a :class:`~SeedBrachyLib.planning.candidates.Plan`."""
        from ..seeds import Needle
        needles = [Needle(r["entry_mm"], r["tip_mm"], r["needle"]) for r in plan.needle_table()]
        return cls.from_seeds(plan.seeds(), needles)


@dataclass(frozen=True)
class SampledImplants:
    """Simulated implants: positions (s, n, 3) mm RAS, unit axes (s, n, 3), kept (s, n) bool (False = lost)."""

    positions: np.ndarray
    axes: np.ndarray
    kept: np.ndarray

    def seeds(self, sample, strengths_u):
        """The seeds (mm RAS, U) of one sample, lost seeds left out."""
        keep = np.flatnonzero(self.kept[sample])
        return [Seed(self.positions[sample, i], self.axes[sample, i], float(strengths_u[i])) for i in keep]


def _tilt(direction, u, v, sd_deg, shape, rng):
    """Unit vectors tilted from ``direction`` by two normal angles (SD ``sd_deg``) about ``u`` and ``v``."""
    if sd_deg == 0:
        return np.broadcast_to(direction, shape + (3,)).copy()
    a = np.tan(np.radians(rng.normal(0.0, sd_deg, shape)))
    b = np.tan(np.radians(rng.normal(0.0, sd_deg, shape)))
    out = direction + a[..., None] * u + b[..., None] * v
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def sample_implants(geometry, errors, n_samples, random_seed=0):
    """``n_samples`` simulated implants of ``geometry`` under ``errors`` (:class:`PlacementErrors`).

    Sample i is drawn from its own stream (``SeedSequence(random_seed).spawn``), so the same seed always gives
    the same implants and the first k of a larger run are the k of a smaller one. Returns :class:`SampledImplants`.
    """
    n_samples = int(n_samples)
    if n_samples < 1:
        raise InputError(f"number of samples {n_samples!r} invalid: need >= 1")
    g, e = geometry, errors
    basis = [perpendicular_basis(d) for d in g.directions]
    u = np.array([b[0] for b in basis])
    v = np.array([b[1] for b in basis])
    k = g.needle_of_seed
    m, n = len(g.entries), g.n_seeds
    positions, axes, kept = np.empty((n_samples, n, 3)), np.empty((n_samples, n, 3)), np.empty((n_samples, n), bool)
    for i, stream in enumerate(np.random.SeedSequence(random_seed).spawn(n_samples)):
        rng = np.random.default_rng(stream)
        entry = (g.entries + rng.normal(0.0, e.needle_entry_sd_mm, m)[:, None] * u
                 + rng.normal(0.0, e.needle_entry_sd_mm, m)[:, None] * v)
        direction = _tilt(g.directions, u, v, e.needle_angle_sd_deg, (m,), rng)
        depth = g.depth_mm + rng.normal(0.0, e.needle_depth_sd_mm, m)[k] + rng.normal(0.0, e.seed_along_sd_mm, n)
        d = direction[k]
        positions[i] = (entry[k] + depth[:, None] * d + rng.normal(0.0, e.seed_across_sd_mm, n)[:, None] * u[k]
                        + rng.normal(0.0, e.seed_across_sd_mm, n)[:, None] * v[k])
        axes[i] = _tilt(d, u[k], v[k], e.seed_tilt_sd_deg, (n,), rng)
        kept[i] = rng.random(n) >= e.p_lost
    return SampledImplants(positions, axes, kept)


@dataclass(frozen=True)
class SamplePoints:
    """A structure as points: ``points`` (N, 3) mm RAS with ``volumes_cc`` (N,); ``role`` "target" or "oar".

    ``cold_cc``: volume (cc) left out as receiving 0 Gy (organ-at-risk points far below the metric).
    """

    name: str
    role: str
    points: np.ndarray
    volumes_cc: np.ndarray
    cold_cc: float = 0.0

    def dvh(self, dose_gy):
        """Exact DVH of these points for their doses (Gy), the cold volume at 0 Gy."""
        if self.cold_cc > 0:
            return DVH(np.append(dose_gy, 0.0), np.append(self.volumes_cc, self.cold_cc), 1.0, self.name)
        return DVH(dose_gy, self.volumes_cc, 1.0, self.name)


def points_from_structure(structure):
    """Voxel centres (mm RAS) of a :class:`~SeedBrachyLib.structures.Structure` with weight x voxel volume (cc)."""
    w = structure.weights
    sel = w > 0
    return SamplePoints(structure.name, structure.role, structure.grid.points()[sel],
                        w[sel].astype(float) * structure.grid.voxel_volume_cc)


def points_from_mask(name, mask, mask_grid, spacing_mm=1.5, role="oar"):
    """A structure's points from a bool mask on ``mask_grid``: voxel centres of a ``spacing_mm`` grid in the mask's
    direction, each with its fractional occupancy (:func:`~SeedBrachyLib.structures.resample_mask`) x voxel cc."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise InputError(f"structure '{name}' is empty: it has no voxel inside")
    grid = Grid.covering(mask_grid.to_ras(np.argwhere(mask)[:, ::-1]), spacing_mm, mask_grid.direction,
                         margin_mm=float(np.max(mask_grid.spacing)))
    w = resample_mask(mask, mask_grid, grid, name=name)
    sel = w > 0
    return SamplePoints(name, role, grid.points()[sel], w[sel].astype(float) * grid.voxel_volume_cc)


@dataclass(frozen=True)
class GoalProbability:
    """How often a goal held: ``k`` of ``n`` samples; p = k/n with binomial SE and Wilson 95% interval."""

    goal: str
    structure: str
    metric: str
    k: int
    n: int
    p: float
    se: float
    ci_low: float
    ci_high: float
    source: str

    def describe(self):
        return (f"P({self.goal}) = {100 * self.p:.1f} % (SE {100 * self.se:.1f} %, Wilson 95% CI "
                f"{100 * self.ci_low:.1f}-{100 * self.ci_high:.1f} %; {self.k}/{self.n} samples)")


def wilson_interval(k, n, z=1.959963984540054):
    """Wilson score interval (low, high) of a binomial proportion k/n (default 95%)."""
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class RobustnessResult:
    """Per-sample metrics and goal probabilities of :func:`evaluate_robustness`.

    Attributes:
        values: (structure, metric) -> array (n_samples,) in the metric's unit.
        units: (structure, metric) -> unit; nominal: (structure, metric) -> value for the planned seeds.
        probabilities: list of :class:`GoalProbability`.
        errors: the :class:`PlacementErrors`; n_samples; seconds (wall time); notes (point sets, cuts).
    """

    values: dict
    units: dict
    nominal: dict
    probabilities: list
    errors: PlacementErrors
    n_samples: int
    seconds: float
    notes: list = field(default_factory=list)

    def histogram(self, structure, metric, bins=30):
        """(counts, bin edges) of one metric over the samples, for a plot."""
        if (structure, metric) not in self.values:
            raise InputError(f"no samples of {structure} {metric}: have {sorted(self.values)}")
        return np.histogram(self.values[(structure, metric)], bins=bins)

    def spread(self):
        """(structure, metric) -> {unit, nominal, mean, sd, se (of the mean), p5, p50, p95} over the samples."""
        out = {}
        for key, v in self.values.items():
            sd = float(v.std(ddof=1)) if len(v) > 1 else 0.0
            p5, p50, p95 = map(float, np.percentile(v, [5, 50, 95]))
            out[key] = {"unit": self.units[key], "nominal": self.nominal[key], "mean": float(v.mean()), "sd": sd,
                        "se": sd / math.sqrt(len(v)), "p5": p5, "p50": p50, "p95": p95}
        return out

    def summary_lines(self):
        """Text: the error model, each metric's nominal value, mean, SD and 5th-95th percentiles, then the goals."""
        lines = [f"Placement robustness: {self.n_samples} simulated implants ({self.errors.describe()}), "
                 f"{self.seconds:.1f} s"]
        for key, s in self.spread().items():
            unit = s["unit"]
            lines.append(f"  {key[0]} {key[1]}: nominal {s['nominal']:.1f} {unit}; samples mean {s['mean']:.1f}, "
                         f"SD {s['sd']:.1f}, median {s['p50']:.1f}, 5-95% {s['p5']:.1f}-{s['p95']:.1f} "
                         f"{unit} (SE of the mean {s['se']:.2f})")
        lines += [f"  {p.describe()}" for p in self.probabilities]
        lines += [f"  note: {n}" for n in self.notes]
        return lines


def _metric(dvh, metric, rx):
    value, _ = dvh.metric(metric, rx)
    return value


#: Simulated implants whose structure-point doses are computed in one call (memory: SAMPLE_CHUNK x points x 8 B).
SAMPLE_CHUNK = 50
ENVELOPE_STEP_MM = 0.05
ENVELOPE_SAFETY = 1.01  # the angular maximum is taken over 0.5 deg steps of theta


def dose_envelope(model, r_max_mm):
    """(step mm, values Gy/U): a non-increasing upper bound of one seed's dose per U at distances >= r, any angle.

    The TG-43 dose per U at r = 0, 0.05, 0.1, ... mm, maximised over theta in 0.5 deg steps, made non-increasing
    from the far end and raised by 1%; value n bounds every distance >= n x step.
    """
    r = np.arange(0.0, float(r_max_mm) + 2 * ENVELOPE_STEP_MM, ENVELOPE_STEP_MM)
    theta = np.radians(np.arange(0.0, 180.01, 0.5))
    pts = np.stack([np.outer(r, np.sin(theta)), np.zeros((len(r), len(theta))), np.outer(r, np.cos(theta))], -1)
    dose = dose_at_points(pts.reshape(-1, 3), [Seed([0.0, 0.0, 0.0], [0.0, 0.0, 1.0], 1.0)], model)
    per_r = dose.reshape(len(r), len(theta)).max(axis=1)
    return ENVELOPE_STEP_MM, np.maximum.accumulate(per_r[::-1])[::-1] * ENVELOPE_SAFETY


_CUT_METRIC = re.compile(r"^(Dmax|D0|D\d+(\.\d*)?cc|D\d+(\.\d*)?%?|V\d+(\.\d*)?%?|V\d+(\.\d*)?Gy)$")


class _Part:
    """One structure in the sampling: its points, and for organs at risk the far points left out when that is safe.

    Left-out points count at 0 Gy. In each sample, an upper bound on the dose of the left-out points of a
    4 mm cell is the sum over seeds of the dose envelope at (the cell's nearest point to the planned seed - the
    seed's displacement), by the triangle inequality; the points of every cell whose bound reaches the lowest
    dose a metric reads off are evaluated (adding points only raises those read-offs, so the rest stay safe).
    """

    CELL_MM = 4.0

    def __init__(self, points, nominal_dose, metrics, keep_fraction, rx, planned_positions):
        self.points, self.metrics, self.rx, self.nominal_dose = points, metrics, rx, nominal_dose
        dose_metrics = [m for m in metrics if metric_unit(m) == "Gy"]
        keep = np.ones(len(points.points), dtype=bool)
        if points.role != "target" and keep_fraction > 0 and dose_metrics and \
                all(_CUT_METRIC.match(m) for m in metrics):
            level = keep_fraction * min(_metric(points.dvh(nominal_dose), m, rx) for m in dose_metrics)
            keep = nominal_dose >= level
        self.keep = keep
        self.kept = SamplePoints(points.name, points.role, points.points[keep], points.volumes_cc[keep],
                                 float(points.volumes_cc[~keep].sum()))
        self.far = points.points[~keep]
        self.far_cc = points.volumes_cc[~keep]
        self.max_element_cc = float(points.volumes_cc[keep].max()) if keep.any() else 0.0
        self.cell_distance = None
        if len(self.far):
            cells = np.floor(self.far / self.CELL_MM).astype(np.int64)
            _, self.cell_of_far = np.unique(cells, axis=0, return_inverse=True)
            self.cell_of_far = self.cell_of_far.ravel()
            d = np.linalg.norm(self.far[:, None, :] - planned_positions[None], axis=-1)
            self.cell_distance = np.full((self.cell_of_far.max() + 1, len(planned_positions)), np.inf)
            np.minimum.at(self.cell_distance, self.cell_of_far, d)
        self.far_evaluated = 0

    def note(self, n_samples):
        n, k = len(self.keep), int(self.keep.sum())
        if k == n:
            return f"{self.points.name}: {n} points, {self.points.volumes_cc.sum():.2f} cc"
        return (f"{self.points.name}: {k} of {n} points evaluated in every sample; the other "
                f"{self.kept.cold_cc:.2f} cc far from the seeds only where a dose bound says they could change "
                f"{', '.join(self.metrics)} "
                f"({self.far_evaluated / max(n_samples, 1):.0f} points per sample on average)")

    def _threshold(self, dvh):
        """The lowest dose (Gy) the left-out points must stay below for every metric to be exact (-inf: none)."""
        kept_cc = dvh.volume_cc - self.kept.cold_cc
        out = np.inf
        for m in self.metrics:
            if metric_unit(m) != "Gy":
                level = float(re.match(r"V(\d+(?:\.\d*)?)", m).group(1))
                out = min(out, level if m.endswith("Gy") else level / 100.0 * self.rx)
            elif m in ("Dmax", "D0"):
                out = min(out, dvh.dmax)
            else:
                v = float(m[1:-2]) if m.endswith("cc") else float(m[1:].rstrip("%")) / 100.0 * dvh.volume_cc
                bracket = v + 2.0 * self.max_element_cc
                out = -np.inf if bracket > kept_cc else min(out, dvh.dose_at_volume_cc(bracket))
        return out

    def metrics_of(self, dose_kept, far_dose=None, envelope=None, displacement=None, strengths=None):
        """Metrics from the kept points' doses and those far points whose bound reaches a read-off.

        ``far_dose``: points (n, 3) mm -> dose (Gy) of the sample, for the far points the bound cannot rule out."""
        dvh = self.kept.dvh(dose_kept)
        if self.cell_distance is not None and far_dose is not None:
            step, values = envelope
            reach = np.maximum(self.cell_distance - displacement[None, :], 0.0)
            idx = np.minimum((reach / step).astype(np.int64), len(values) - 1)
            bound = (values[idx] * strengths[None, :]).sum(axis=1)
            unsafe = np.flatnonzero(bound >= self._threshold(dvh))
            if unsafe.size:
                pick = np.isin(self.cell_of_far, unsafe)
                self.far_evaluated += int(pick.sum())
                cold = self.kept.cold_cc - float(self.far_cc[pick].sum())
                dvh = DVH(np.concatenate([dose_kept, far_dose(self.far[pick]), [0.0]]),
                          np.concatenate([self.kept.volumes_cc, self.far_cc[pick], [max(cold, 0.0)]]), 1.0,
                          self.points.name)
        return {(self.points.name, m): _metric(dvh, m, self.rx) for m in self.metrics}


def evaluate_robustness(geometry, model, structures, goals=(), errors=None, n_samples=1000, random_seed=0,
                        prescription_gy=None, target_metrics=("D90", "V100"), oar_metrics=("D2cc",),
                        oar_keep_fraction=0.6, progress=None):
    """Sample implants and evaluate each: the distributions of the metrics and how often each goal holds.

    Args:
        geometry: :class:`ImplantGeometry` (planned seeds on needles).
        model: seed model or key (TG-43 data).
        structures: :class:`SamplePoints` of the targets and organs at risk.
        goals: :class:`~SeedBrachyLib.checks.Goal` objects (``checks.goals_for(...)``, ``checks.user_limit(...)``),
            each on the structure it names (the goal library's "GTV" / "CTV").
        errors: :class:`PlacementErrors` (default: the cited defaults).
        n_samples: simulated implants; random_seed: the same value gives the same samples.
        prescription_gy: Rx (Gy) for V100 and goals relative to Rx.
        target_metrics, oar_metrics: metrics recorded for every target / organ at risk.
        oar_keep_fraction: organ-at-risk points with a nominal dose below this fraction of the nominal metric are
            evaluated only in samples where a dose bound says they could matter (0: always; results are the same).
        progress: callback(fraction, message); returning False cancels.

    Returns:
        :class:`RobustnessResult`.
    """
    t0 = time.perf_counter()
    model = get_model(model)
    errors = errors or PlacementErrors()
    if not structures:
        raise InputError("no structures to evaluate: give the target (and organ-at-risk) sample points")
    if not 0 <= oar_keep_fraction < 1:
        raise InputError(f"oar_keep_fraction {oar_keep_fraction!r} invalid: need 0 <= f < 1")
    wanted = {s.name: list(target_metrics if s.role == "target" else oar_metrics) for s in structures}
    checks = []
    for g in goals:
        name = g.structure
        if name not in wanted:
            raise InputError(f"goal '{g.name}' is on '{name}', which has no sample points (have {sorted(wanted)})")
        if g.metric not in wanted[name]:
            wanted[name].append(g.metric)
        checks.append((g, name))
    needs_rx = any(metric_unit(m) == "%" for ms in wanted.values() for m in ms) or \
        any(g.fraction_of_rx is not None for g, _ in checks)
    if needs_rx and not (prescription_gy and prescription_gy > 0):
        raise InputError("V100 and goals relative to the prescription need prescription_gy > 0 Gy")

    planned_positions = geometry.planned_positions()
    planned = [Seed(p, d, float(s)) for p, d, s in zip(planned_positions, geometry.directions[geometry.needle_of_seed],
                                                       geometry.strengths_u)]
    parts = [_Part(s, dose_at_points(s.points, planned, model), wanted[s.name], oar_keep_fraction, prescription_gy,
                   planned_positions) for s in structures]
    all_points = np.concatenate([p.kept.points for p in parts])
    bounds = np.cumsum([0] + [len(p.kept.points) for p in parts])
    units = {(s.name, m): metric_unit(m) for s in structures for m in wanted[s.name]}
    far = [p.cell_distance is not None for p in parts]
    envelope = None
    if any(far):
        reach = max(float(np.max(p.cell_distance)) for p, f in zip(parts, far) if f)
        envelope = dose_envelope(model, min(reach, 300.0))

    nominal = {}
    for part in parts:  # the nominal plan on every point (nothing left out)
        dvh = part.points.dvh(part.nominal_dose)
        nominal.update({(part.points.name, m): _metric(dvh, m, prescription_gy) for m in part.metrics})
    sampled = sample_implants(geometry, errors, n_samples, random_seed)
    strengths = np.where(sampled.kept, geometry.strengths_u[None, :], 0.0)  # lost seeds: 0 U
    engine, scale = kernel.resolve(), time_factor_h(model) / 100.0  # cGy/h -> Gy (permanent implant)

    reach = kernel.reach_between(np.concatenate([s.points for s in structures]), sampled.positions)

    def sample_dose(points, a, b):
        """Dose (Gy) at ``points`` of samples a..b-1, (b - a, n)."""
        return scale * kernel.samples_rate(engine, points, sampled.positions[a:b], sampled.axes[a:b], strengths[a:b],
                                           model, "line", reach_mm=reach)

    values = {key: np.empty(n_samples) for key in units}
    report(progress, 0.0, "robustness sampling")
    for a in range(0, n_samples, SAMPLE_CHUNK):
        b = min(n_samples, a + SAMPLE_CHUNK)
        doses = sample_dose(all_points, a, b)
        for i in range(a, b):
            displacement = np.where(sampled.kept[i], np.linalg.norm(sampled.positions[i] - planned_positions, axis=1),
                                    0.0)
            for part, lo, hi in zip(parts, bounds[:-1], bounds[1:]):
                dose = doses[i - a, lo:hi]
                result = part.metrics_of(dose) if part.cell_distance is None else part.metrics_of(
                    dose, lambda pts, i=i: sample_dose(pts, i, i + 1)[0], envelope, displacement, strengths[i])
                for key, value in result.items():
                    values[key][i] = value
        report(progress, b / n_samples, f"robustness: implant {b}/{n_samples}")
    notes = [p.note(n_samples) for p in parts]

    probabilities = []
    for g, name in checks:
        limit = g.limit_for(prescription_gy)
        k = int(np.count_nonzero(COMPARATORS[g.comparator](values[(name, g.metric)], limit)))
        p = k / n_samples
        low, high = wilson_interval(k, n_samples)
        probabilities.append(GoalProbability(f"{name} {g.metric} {g.comparator} {limit:g} {g.unit}", name, g.metric,
                                             k, n_samples, p, math.sqrt(p * (1 - p) / n_samples), low, high,
                                             g.source))
    return RobustnessResult(values, units, nominal, probabilities, errors, n_samples, time.perf_counter() - t0, notes)



def plan_robustness(plan, model, masks, mask_grid, goals=(), prescription_gy=None, spacing_mm=2.0, **options):
    """Robustness of a :class:`~SeedBrachyLib.planning.candidates.Plan` (its seeds on its needles).

    ``masks``: structure name -> (bool mask ``[k, j, i]`` on ``mask_grid``, role "target" or "oar"); each becomes
    :func:`points_from_mask` on a ``spacing_mm`` grid. ``options`` go to :func:`evaluate_robustness`.
    """
    structures = [points_from_mask(name, mask, mask_grid, spacing_mm, role) for name, (mask, role) in masks.items()]
    return evaluate_robustness(ImplantGeometry.from_plan(plan), model, structures, goals,
                               prescription_gy=prescription_gy, **options)
