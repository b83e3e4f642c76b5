"""Dose-volume histograms and plan metrics, exact to the voxel (no dose bins).

Public API
----------
* :class:`DVH` -- cumulative DVH of one structure from dose (Gy) and partial-volume weights:
  ``dose_at_volume_pct(x)`` (Dx, Gy), ``dose_at_volume_cc(v)`` (Dvcc, Gy),
  ``volume_at_dose(d_gy)`` -> (cc, %), ``volume_cc``, ``dmin``, ``dmax``, ``dmean`` (Gy),
  ``metric(name, prescription_gy)`` -> (value, unit) for names such as "D90", "D2cc", "D0.1cc",
  "V100" (% of volume at >= 100% of Rx), "V100_cc", "V20Gy", "V20Gy_cc", "Dmax", "Dmean", "Dmin",
  "Volume", and ``curve()`` (dose axis Gy, cumulative volume % and cc) for plotting;
  :func:`metric_unit` gives a metric name's unit.
* :func:`conformity_indices` -- CI, EI, HI of a target (definitions and sources below).
* :func:`evaluate_plan` -> :class:`PlanEvaluation` (per-structure metrics; target set for
  targets, D2cc/D1cc/D0.1cc/Dmax/Dmean for organs at risk and skin); ``value(structure, metric)``.
* :func:`format_evaluation` -- text tables with units in the column headers.

How the DVH is built
--------------------
Structures made by ``structures.structure_on_grid`` know, for every dose voxel, which of its
n^3 sub-points (centres of an n x n x n subdivision) lie inside. The DVH is built from those
inside sub-points, each with volume voxel/n^3 and the dose interpolated trilinearly from the dose
grid at the sub-point: partial-volume voxels count only their inside part, at the dose where
that part is, and the dose variation inside each voxel is resolved (in the tests a TG-43 target
D90 from a 2 mm grid is within 1% of direct dose at 0.5 mm points; voxel-centre dose with
partial-volume weights read D90 1% low there, and 8% low for a 12 mm target with seeds at its
surface).
A :class:`~SeedBrachyLib.structures.Structure` made directly from weights uses the voxel model:
each voxel with weight w > 0 contributes ``w * voxel volume`` at its centre dose.
The volume elements are sorted by dose, hottest first; C_i is the cumulative volume of the i
hottest. Nothing is binned, so the DVH is exact for these samples whatever the dose range.

* ``V(>= D)`` (Vx) is the summed volume of the voxels with dose >= D (inclusive).
* ``Dx`` is the minimum dose received by the hottest x% (or v cc) of the volume. Each voxel's
  dose stands for the volume interval [C_{i-1}, C_i]; it is placed at the interval's middle
  M_i = C_i - w_i/2 and Dx is interpolated linearly in volume between neighbouring M_i (the
  Hazen rule for empirical quantiles). For volumes below M_0 it is the maximum dose, above the
  last M_i the minimum dose. The result lies between the doses of the two voxels whose volume
  intervals meet at the requested volume, so the sampling error is at most one dose step
  between consecutive sorted voxels (far below 0.1% of Rx for any clinical structure).
* ``D100`` is the minimum dose of the samples in the structure (same as ``Dmin``). A binned
  cumulative DVH tabulated from 0 Gy reads D100 where the curve first drops below 100%, the
  lower edge of a bin, or 0 Gy when the first bin starts at 0; here D100 is the smallest sampled
  dose itself, never a bin edge.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .errors import InputError
from .structures import subpoint_offsets

TARGET_METRICS = ("Volume", "D90", "D98", "D100", "Dmax", "Dmean", "V90", "V100", "V150", "V200", "V100_cc",
                  "CI", "EI", "HI")
OAR_METRICS = ("Volume", "D2cc", "D1cc", "D0.1cc", "Dmax", "Dmean")
INDEX_NAMES = ("CI", "EI", "HI")

_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_PATTERNS = (
    (re.compile(rf"^D{_NUMBER}%?$"), "dx_pct"),
    (re.compile(rf"^D{_NUMBER}cc$"), "dx_cc"),
    (re.compile(rf"^V{_NUMBER}%?$"), "vx_rx_pct"),
    (re.compile(rf"^V{_NUMBER}%?_cc$"), "vx_rx_cc"),
    (re.compile(rf"^V{_NUMBER}Gy$"), "vx_gy_pct"),
    (re.compile(rf"^V{_NUMBER}Gy_cc$"), "vx_gy_cc"),
)
METRIC_HELP = ("Dx (x % of volume, e.g. D90), Dxcc (e.g. D2cc), Dmax, Dmin, Dmean (Gy); Vx (x % of Rx, in %), "
               "Vx_cc (cc), VxGy (%), VxGy_cc (cc); Volume (cc); CI, EI, HI (targets in a plan evaluation)")


class DVH:
    """Exact cumulative DVH of one structure (see the module notes for the read-off rules).

    Args:
        dose_gy: dose (Gy), any shape.
        weights: fraction of each voxel inside the structure (0..1), same shape as ``dose_gy``.
        voxel_volume_cc: volume of one voxel (cc).
        name: structure name (for messages).
    """

    def __init__(self, dose_gy, weights, voxel_volume_cc, name="structure"):
        dose = np.asarray(dose_gy)
        w = np.asarray(weights)
        if dose.shape != w.shape:
            raise InputError(f"DVH of '{name}': dose shape {dose.shape} differs from structure shape {w.shape}")
        if not (voxel_volume_cc > 0):
            raise InputError(f"DVH of '{name}': voxel volume {voxel_volume_cc!r} cc must be > 0")
        sel = np.flatnonzero(w.ravel() > 0)
        if sel.size == 0:
            raise InputError(f"structure '{name}' is empty: no voxel with a weight > 0 on the dose grid")
        d = dose.ravel()[sel]
        if not np.all(np.isfinite(d)):
            raise InputError(f"DVH of '{name}': dose contains non-finite values inside the structure")
        if np.any(d < 0):
            raise InputError(f"DVH of '{name}': dose {float(np.min(d)):.4g} Gy inside the structure is negative: "
                             "a dose is >= 0 Gy (is this a dose volume in Gy?)")
        w_sel = w.ravel()[sel].astype(np.float64) * float(voxel_volume_cc)  # cc per sample
        self.name = name
        if np.all(w_sel == w_sel[0]):  # equal volumes (sub-points, whole voxels): sorting the doses suffices
            self.doses = np.sort(d)[::-1].astype(np.float64)  # Gy, hottest first (sorted in the input precision)
            self.volumes = w_sel
        else:
            order = np.argsort(-d)
            self.doses = d[order].astype(np.float64)
            self.volumes = w_sel[order]
        self.cumulative = np.cumsum(self.volumes)  # cc of the i+1 hottest voxels
        self.volume_cc = float(self.cumulative[-1])
        self._mid = self.cumulative - 0.5 * self.volumes

    @classmethod
    def of(cls, dose_gy, structure):
        """DVH of a :class:`~SeedBrachyLib.structures.Structure` for a dose array (Gy) on its grid.

        With ``structure.subvoxels`` (set by ``structure_on_grid``) every inside sub-point of every
        voxel counts with volume voxel/n^3 at the dose interpolated (trilinear) at that point;
        otherwise each voxel counts ``weight * voxel volume`` at its centre dose (module notes).
        """
        dose = np.asarray(dose_gy)
        if dose.shape != tuple(structure.grid.shape):
            raise InputError(f"dose shape {dose.shape} does not match the grid of '{structure.name}' "
                             f"{tuple(structure.grid.shape)}: map the structure onto the dose grid first")
        if structure.subvoxels is None:
            return cls(dose, structure.weights, structure.grid.voxel_volume_cc, structure.name)
        flat, inside, n = structure.subvoxels
        full = np.flatnonzero(structure.weights.ravel() >= 1.0)
        offsets = subpoint_offsets(n)
        point, sub = np.nonzero(inside)
        voxel = np.concatenate([np.repeat(full, n ** 3), flat[point]])
        sub = np.concatenate([np.tile(np.arange(n ** 3), full.size), sub])
        ijk = np.stack(np.unravel_index(voxel, dose.shape)[::-1], axis=1) + offsets[sub]
        sub_dose = ndimage.map_coordinates(dose, ijk[:, ::-1].T, output=dose.dtype if dose.dtype == np.float32
                                           else np.float64, order=1, mode="nearest")
        return cls(sub_dose, np.full(sub_dose.size, 1.0 / n ** 3), structure.grid.voxel_volume_cc, structure.name)

    # ------------------------------------------------------------ summaries
    @property
    def dmin(self):
        """Minimum sampled dose (Gy) = D100."""
        return float(self.doses[-1])

    @property
    def dmax(self):
        """Maximum sampled dose (Gy) = D0."""
        return float(self.doses[0])

    @property
    def dmean(self):
        """Volume-weighted mean dose (Gy)."""
        return float(np.dot(self.doses, self.volumes) / self.volume_cc)

    # ------------------------------------------------------------ read-offs
    def dose_at_volume_cc(self, volume_cc):
        """Minimum dose (Gy) to the hottest ``volume_cc`` cc (e.g. D2cc); see the module notes."""
        v = float(volume_cc)
        if not (0 <= v <= self.volume_cc * (1 + 1e-9)):
            raise InputError(f"D{v:g}cc of '{self.name}' undefined: the structure has {self.volume_cc:.3f} cc; "
                             f"volume must be 0..{self.volume_cc:.3f} cc")
        return float(np.interp(v, self._mid, self.doses))

    def dose_at_volume_pct(self, percent):
        """Dx (Gy): minimum dose to the hottest ``percent`` % of the volume (D100 = Dmin)."""
        x = float(percent)
        if not (0 <= x <= 100):
            raise InputError(f"D{percent!r} invalid: the volume percentage must be 0..100 %")
        if x == 100:
            return self.dmin
        return self.dose_at_volume_cc(x / 100.0 * self.volume_cc)

    def volume_at_dose(self, dose_gy):
        """Volume receiving at least ``dose_gy`` Gy: (cc, % of the structure)."""
        d = float(dose_gy)
        if not math.isfinite(d):
            raise InputError(f"dose level {dose_gy!r} Gy must be finite")
        n = int(np.searchsorted(-self.doses, -d, side="right"))  # voxels with dose >= d
        cc = float(self.cumulative[n - 1]) if n else 0.0
        return cc, 100.0 * cc / self.volume_cc

    def metric(self, name, prescription_gy=None):
        """A DVH metric by name -> (value, unit). Names: see ``METRIC_HELP``; Vx needs ``prescription_gy``."""
        key = str(name).strip()
        if key == "Volume":
            return self.volume_cc, "cc"
        if key in ("Dmax", "D0"):
            return self.dmax, "Gy"
        if key == "Dmin":
            return self.dmin, "Gy"
        if key == "Dmean":
            return self.dmean, "Gy"
        for pattern, kind in _PATTERNS:
            match = pattern.match(key)
            if not match:
                continue
            x = float(match.group(1))
            if kind == "dx_pct":
                return self.dose_at_volume_pct(x), "Gy"
            if kind == "dx_cc":
                return self.dose_at_volume_cc(x), "Gy"
            if kind.startswith("vx_rx"):
                if prescription_gy is None or not prescription_gy > 0:
                    raise InputError(f"{key} needs a prescription dose > 0 Gy (got {prescription_gy!r})")
                level = x / 100.0 * float(prescription_gy)
            else:
                level = x
            cc, pct = self.volume_at_dose(level)
            return (cc, "cc") if kind.endswith("_cc") else (pct, "%")
        raise InputError(f"unknown DVH metric {name!r}: use {METRIC_HELP}")

    def curve(self, dose_axis_gy=None, n_points=501):
        """Cumulative DVH for plotting: (dose Gy, volume % , volume cc) with V(>= dose).

        ``dose_axis_gy``: doses to evaluate (Gy); default ``n_points`` from 0 to Dmax.
        """
        axis = np.linspace(0.0, self.dmax, int(n_points)) if dose_axis_gy is None else np.asarray(dose_axis_gy, float)
        n = np.searchsorted(-self.doses, -axis, side="right")
        cc = np.where(n > 0, self.cumulative[np.maximum(n - 1, 0)], 0.0)
        return axis, 100.0 * cc / self.volume_cc, cc


def _isodose_volume_cc(dose, reference_gy, body, voxel_volume_cc):
    hot = dose >= reference_gy
    if body is None:
        return float(np.count_nonzero(hot)) * voxel_volume_cc
    return float(np.sum(body.weights[hot], dtype=np.float64)) * voxel_volume_cc


def isodose_reaches_grid_edge(dose, reference_gy):
    """True if any voxel on the outer faces of the dose array has dose >= ``reference_gy`` (Gy)."""
    d = np.asarray(dose)
    faces = (d[0], d[-1], d[:, 0], d[:, -1], d[:, :, 0], d[:, :, -1])
    return any(bool(np.any(f >= reference_gy)) for f in faces)


def conformity_indices(dose, target, reference_gy, body=None, dvh=None):
    """Conformity, external and homogeneity indices of ``target`` for the reference dose (Gy).

    With VT the target volume, VT,ref the target volume receiving >= the reference dose,
    VT,1.5ref the target volume receiving >= 1.5 x reference, and Vref the volume of the whole
    reference isodose (all of the dose grid, restricted to ``body`` if given):

    * CI = (VT,ref / VT) x (VT,ref / Vref): conformity index (conformation number), 1 = perfect.
      van't Riet A, Mak ACA, Moerland MA, Elders LH, van der Zee W. Int J Radiat Oncol Biol Phys
      1997;37(3):731-736; as used for seed implants following Nakamura et al.
    * EI = (Vref - VT,ref) / VT: external index, normal tissue inside the reference isodose
      relative to the target volume, 0 = perfect.
      Saw CB, Suntharalingam N. Int J Radiat Oncol Biol Phys 1991;20(1):135-139.
    * HI = (VT,ref - VT,1.5ref) / VT,ref: homogeneity index, the fraction of the covered target
      that is not above 150% of the reference, 1 = perfectly homogeneous. Saw & Suntharalingam (as above).

    Vref is only right if the dose grid contains the whole reference isodose;
    ``isodose_clipped`` in the result says when it reaches the grid edge (then Vref, CI and EI
    are underestimated / overestimated respectively).

    Args:
        dose: dose (Gy) on the structures' grid.
        target, body: :class:`~SeedBrachyLib.structures.Structure` on that grid.
        reference_gy: reference (prescription) dose (Gy), > 0.
        dvh: the target's :class:`DVH` for this dose, if already computed.

    Returns:
        dict: CI, EI, HI (dimensionless), VT_cc, VT_ref_cc, VT_1.5ref_cc, Vref_cc, isodose_clipped.
    """
    ref = float(reference_gy)
    if not ref > 0:
        raise InputError(f"reference dose {reference_gy!r} Gy must be > 0")
    dvh = DVH.of(dose, target) if dvh is None else dvh
    if body is not None and tuple(body.grid.shape) != tuple(target.grid.shape):
        raise InputError(f"body '{body.name}' is not on the dose grid of '{target.name}'")
    vt = dvh.volume_cc
    vt_ref, _ = dvh.volume_at_dose(ref)
    vt_15, _ = dvh.volume_at_dose(1.5 * ref)
    v_ref = _isodose_volume_cc(np.asarray(dose), ref, body, target.grid.voxel_volume_cc)
    return {
        "CI": (vt_ref / vt) * (vt_ref / v_ref) if v_ref > 0 else 0.0,
        "EI": (v_ref - vt_ref) / vt,
        "HI": (vt_ref - vt_15) / vt_ref if vt_ref > 0 else float("nan"),
        "VT_cc": vt, "VT_ref_cc": vt_ref, "VT_1.5ref_cc": vt_15, "Vref_cc": v_ref,
        "isodose_clipped": isodose_reaches_grid_edge(dose, ref),
    }


@dataclass
class StructureMetrics:
    """Metrics of one structure: ``values`` metric -> value, ``units`` metric -> unit, its ``dvh``."""

    name: str
    role: str
    dvh: DVH
    values: dict = field(default_factory=dict)
    units: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    evaluated_fraction: float = 1.0  # of the structure's volume (checks on less than all are NOT EVALUATED)
    outside_below_gy: float = None  # the dose outside the evaluated part is known to be below this (Gy), if set

    def exact_on_part(self, metric, value):
        """True if ``metric`` = ``value`` (Gy) read on the evaluated part is the whole structure's value: a hot-spot
        metric (Dmax, Dxcc) at or above the dose known to bound everything outside the part."""
        if self.evaluated_fraction >= 0.999:
            return True
        hot_spot = metric == "Dmax" or _PATTERNS[1][0].match(str(metric)) is not None
        return hot_spot and self.outside_below_gy is not None and value >= self.outside_below_gy


@dataclass
class PlanEvaluation:
    """Per-structure metrics of a dose distribution (Gy) with its prescription (Gy)."""

    prescription_gy: float
    structures: dict
    dose_description: str = ""
    notes: list = field(default_factory=list)

    def __getitem__(self, name):
        if name not in self.structures:
            raise InputError(f"no structure '{name}' in the evaluation: have {sorted(self.structures)}")
        return self.structures[name]

    def value(self, structure, metric):
        """(value, unit) of ``metric`` for ``structure``: from the table, else computed from its DVH.

        Unknown metric names raise InputError; undefined values (D2cc of a 1 cc structure) are NaN.
        """
        s = self[structure]
        if metric in s.values:
            return s.values[metric], s.units[metric]
        if metric_unit(metric) == "":
            raise InputError(f"{metric} is only computed for targets; '{structure}' is an {s.role}")
        return _safe_metric(s.dvh, metric, self.prescription_gy, s.notes)


def _safe_metric(dvh, name, rx, notes):
    try:
        return dvh.metric(name, rx)
    except InputError as err:  # e.g. D2cc of a 1.5 cc structure: undefined, shown as n/a
        notes.append(f"{dvh.name} {name}: {err}")
        return float("nan"), metric_unit(name)


def metric_unit(name):
    """Unit of a metric name ("Gy", "%", "cc" or "" for CI/EI/HI); InputError for unknown names."""
    key = str(name).strip()
    if key in INDEX_NAMES:
        return ""
    if key in ("Volume", "Dmax", "D0", "Dmin", "Dmean"):
        return "cc" if key == "Volume" else "Gy"
    for pattern, kind in _PATTERNS:
        if pattern.match(key):
            return "Gy" if kind.startswith("dx") else ("cc" if kind.endswith("_cc") else "%")
    raise InputError(f"unknown DVH metric {name!r}: use {METRIC_HELP}")


def evaluate_plan(dose, structures, prescription_gy, body=None, dose_description="",
                  target_metrics=TARGET_METRICS, oar_metrics=OAR_METRICS, outside_below_gy=None):
    """Metrics for each structure of a plan.

    Args:
        dose: dose (Gy) array ``[k, j, i]`` on the structures' grid (the dose grid).
        structures: iterable of :class:`~SeedBrachyLib.structures.Structure`; role "target" gets
            ``target_metrics`` (default D90, D98, D100, Dmax, Dmean, V90-V200 %, V100 cc, CI, EI, HI),
            role "oar" gets ``oar_metrics`` (default Volume, D2cc, D1cc, D0.1cc, Dmax, Dmean).
        prescription_gy: prescription (reference) dose (Gy), > 0.
        body: optional body Structure limiting Vref for CI/EI (default: the whole dose grid).
        dose_description: how the dose was computed (shown with the table).
        outside_below_gy: if known, a bound (Gy) on the dose outside the grid (the dose-grid policy's threshold):
            hot-spot metrics of structures partly outside are then exact when at or above it.

    Returns:
        :class:`PlanEvaluation`. Undefined metrics (e.g. D2cc of a structure under 2 cc) are NaN
        with a note.
    """
    try:
        rx = float(prescription_gy)
    except (TypeError, ValueError):
        rx = math.nan
    if not (rx > 0 and math.isfinite(rx)):
        raise InputError(f"prescription {prescription_gy!r} Gy invalid: need a finite dose > 0 Gy")
    out, notes = {}, []
    clipped = False
    for s in structures:
        if s.name in out:
            raise InputError(f"structure name '{s.name}' used twice: names must be unique")
        dvh = DVH.of(dose, s)
        names = target_metrics if s.role == "target" else oar_metrics
        m = StructureMetrics(s.name, s.role, dvh)
        truncated = s.truncation_note()
        if truncated:
            m.notes.append(truncated)
            m.evaluated_fraction = s.volume_cc / s.source_volume_cc
            m.outside_below_gy = outside_below_gy
        indices = conformity_indices(dose, s, rx, body, dvh) if s.role == "target" else None
        for name in names:
            if name in INDEX_NAMES:
                value, unit = (indices[name], "") if indices else (float("nan"), "")
            else:
                value, unit = _safe_metric(dvh, name, rx, m.notes)
            m.values[name], m.units[name] = float(value), unit
        clipped |= bool(indices and indices["isodose_clipped"])
        notes.extend(m.notes)
        out[s.name] = m
    if clipped:
        notes.append(f"the {rx:g} Gy isodose reaches the dose grid edge: Vref is underestimated "
                     "(CI too high, EI too low); enlarge the dose grid")
    return PlanEvaluation(rx, out, dose_description, notes)


def _fmt(value, unit):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if unit == "":
        return f"{value:.3f}"
    if unit == "cc":
        return f"{value:.2f}"
    return f"{value:.1f}"


def _header(name, unit):
    label = name.replace("_cc", "")
    return f"{label} [{unit}]" if unit else label


def _table(rows, metrics, units):
    headers = ["Structure"] + [_header(m, units[m]) for m in metrics]
    cells = [[r.name] + [_fmt(r.values.get(m), units[m]) for m in metrics] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(headers, widths)))
    body = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in cells]
    return [line, "-" * len(line)] + body


def format_evaluation(evaluation, max_columns=9):
    """Text tables of a :class:`PlanEvaluation`: one for targets, one for organs at risk, then notes.

    Column headers carry units ([Gy], [%], [cc]; indices are dimensionless). Wide metric sets are
    split into several tables of at most ``max_columns`` metrics.
    """
    rx = evaluation.prescription_gy
    lines = [f"Plan evaluation, prescription {rx:g} Gy"
             + (f" ({evaluation.dose_description})" if evaluation.dose_description else "")]
    for role, title in (("target", "Targets"), ("oar", "Organs at risk")):
        rows = [s for s in evaluation.structures.values() if s.role == role]
        if not rows:
            continue
        metrics = list(dict.fromkeys(m for r in rows for m in r.values))
        units = {m: next(r.units[m] for r in rows if m in r.units) for m in metrics}
        lines.append("")
        lines.append(f"{title} (Vx: % of the structure at >= x% of {rx:g} Gy; V100 [cc] in cc)"
                     if role == "target" else f"{title} (Dxcc: minimum dose to the hottest x cc)")
        for start in range(0, len(metrics), max_columns):
            lines.extend(_table(rows, metrics[start:start + max_columns], units))
            lines.append("")
    for note in evaluation.notes:
        lines.append(f"Note: {note}")
    return "\n".join(lines).rstrip() + "\n"
