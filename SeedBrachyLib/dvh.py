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

Where the dose comes from
-------------------------
Every DVH is the dose at a structure's sample points (``Structure.sample_points``: points at most
0.5 mm apart inside interior voxels, the inside sub-points of each partial voxel, each with its
volume in cc; a structure without sub-voxel geometry, such as a binary mask at its own resolution,
at its voxel centres, the rule of plastimatch and dicompyler-core; see :mod:`SeedBrachyLib.structures`):

* :class:`SeedDose` -- dose from seeds: TG-43 evaluated at each sample point itself, with the
  structure on its OWN sampling grid, so nothing is interpolated between points and a structure is
  evaluated whole wherever it lies. This is the DVH of every plan and post-plan; a dose volume is for
  display and export. The compiled engine takes each point's TG-43 dose from its (r, theta) table,
  within 0.1 % of the formula (measured below 0.03 %; :mod:`SeedBrachyLib.kernel`), the interior
  voxels' points along runs of neighbouring voxels as on a grid (``dose.dose_at_lattice``): about 4x
  faster per point and seed than the formula, which ``SeedDose(..., exact=True)`` evaluates
  (``dose.dose_at_points``; the numpy engine always does). In the validation cases the table moved
  no metric by more than 0.003 % of the formula's value (D0.1cc, Dmean, D90; V100 0.0004 pp).
* :class:`GridDose` -- a given dose volume (a loaded RT Dose, a dose node): the structure is
  mapped onto the dose grid with partial volumes (``Structure.on_grid``). Each voxel keeps its own
  value at its centre; inside the voxel the dose varies linearly with the slope its neighbours
  show, limited so that it never passes their values and is flat at a local maximum or minimum
  (``GridDose.slopes_at``): a hot spot keeps its voxel's value and every voxel's mean dose is its
  own (nothing is smoothed), while the dose spread inside a voxel, which the low quantiles (D90,
  D98) need, is kept. A voxel fully inside counts at 8 Gauss-Legendre points of that linear dose,
  a boundary voxel at its inside parts (``Structure.sample_points``); a structure without sub-voxel
  geometry (``Structure.voxel_centres_only``) counts its voxel centres, each with its weight. In the
  validation cases one value per voxel read D90 up to 2.2 % high in the steep fields around seeds,
  this rule at most 0.6 %. Sample points outside the dose grid have no dose: the structure's part inside the grid is
  evaluated and the evaluation says so (``Structure.truncation_note``).
* a plain dose array on the structure's grid (``DVH.of(dose, structure)``): the same rule.
* :class:`PointDose` -- any exact point evaluator (e.g. an analytic field in the tests), used
  like :class:`SeedDose`.

Reading rules (exact to the samples; nothing is binned)
-------------------------------------------------------
The samples are sorted by dose, hottest first; C_i is the cumulative volume of the i hottest,
w_i the volume of sample i.

* ``V(>= D)`` (Vx, VxGy): the summed volume of the samples with dose >= D (inclusive); Vx with x
  in % of the prescription, in % of the structure volume (Vx_cc in cc).
* ``Dx`` (x % of the volume) and ``Dvcc`` (v cc): the minimum dose to the hottest x % or v cc.
  Each sample's dose stands for the volume interval [C_{i-1}, C_i]; it is placed at the
  interval's middle M_i = C_i - w_i/2 and Dx is interpolated linearly in volume between
  neighbouring M_i (the Hazen rule for empirical quantiles). Below M_0 it is the maximum dose,
  above the last M_i the minimum dose; the result lies between the doses of the two samples
  whose volume intervals meet at the requested volume.
* ``D100`` = ``Dmin``: the smallest sampled dose itself (a binned DVH tabulated from 0 Gy reads a
  bin edge or 0 Gy instead). It lies at a sample point at most half a sub-point spacing inside
  the boundary, so it reads slightly high of the continuous minimum on the surface.
* ``Dmax`` (= D0): the largest sampled dose. Near a seed the TG-43 dose rises steeply toward the
  capsule (about 1/r^2): Dmax of a structure that contains or touches a seed is the dose at the
  sample point nearest to it and depends on where the sampling lattice falls, so it is not a
  stable number there; use ``D0.1cc`` (the minimum dose to the hottest 0.1 cc, the GEC-ESTRO
  near-maximum), which is. Far from seeds Dmax is the maximum over the points (up to half a
  voxel from the true maximum).
* ``D0.1cc``, ``D1cc``, ``D2cc`` next to a seed: hottest-volume doses over the sample volumes,
  which near a seed include the volume the capsule occupies; their value there is set by the
  TG-43 dose close to the capsule (see :mod:`SeedBrachyLib.tg43` for the near-seed rule).
* ``Dmean``: the volume-weighted mean of the sampled doses.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from .dose import dose_at_lattice, dose_at_points
from .errors import InputError
from .structures import DEFAULT_INTERIOR_SPACING_MM

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
        w = w.ravel()
        if w.size and w.min() > 0:  # sample volumes: all taken
            d = dose.ravel()
        else:
            sel = np.flatnonzero(w > 0)
            if sel.size == 0:
                raise InputError(f"structure '{name}' is empty: no voxel with a weight > 0 on the dose grid")
            d, w = dose.ravel()[sel], w[sel]
        if not np.all(np.isfinite(d)):
            raise InputError(f"DVH of '{name}': dose contains non-finite values inside the structure")
        if np.any(d < 0):
            raise InputError(f"DVH of '{name}': dose {float(np.min(d)):.4g} Gy inside the structure is negative: "
                             "a dose is >= 0 Gy (is this a dose volume in Gy?)")
        w_sel = w.astype(np.float64) * float(voxel_volume_cc)  # cc per sample
        self.name = name
        if np.all(w_sel == w_sel[0]):  # equal volumes (sub-points, whole voxels): sorting the doses suffices
            self.doses = np.sort(d)[::-1].astype(np.float64)  # Gy, hottest first (sorted in the input precision)
            self.volumes = w_sel
        else:
            order, self.doses = _descending_order(d.astype(np.float64, copy=False))
            self.volumes = w_sel[order]
        self.cumulative = np.cumsum(self.volumes)  # cc of the i+1 hottest voxels
        self.volume_cc = float(self.cumulative[-1])
        self._mid = self.cumulative - 0.5 * self.volumes

    @classmethod
    def from_samples(cls, dose_gy, volumes_cc, name="structure"):
        """DVH of sample doses (Gy) standing for volumes (cc), e.g. at ``Structure.sample_points``."""
        return cls(dose_gy, volumes_cc, 1.0, name)

    @classmethod
    def of(cls, dose, structure):
        """DVH of a :class:`~SeedBrachyLib.structures.Structure` for ``dose``.

        ``dose``: a :class:`SeedDose` (TG-43 at the sample points) or another
        :class:`PointDose`, a :class:`GridDose`
        (the structure is mapped onto its grid), or a dose array (Gy) on the structure's grid.
        See the module notes for the rules.
        """
        if isinstance(dose, (PointDose, GridDose)):
            return dose.dvh(structure)
        return GridDose(dose, structure.grid).dvh(structure)

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
        return float(np.sum(self.doses * self.volumes) / self.volume_cc)  # not BLAS (its threads stall under load)

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


def _descending_order(dose):
    """(order, ``dose[order]``) of ``dose`` (float64 >= 0), largest first, equal doses by descending index. Sorting
    keys is faster than an argsort: each key is the dose's bit pattern (monotone in the dose for doses >= 0) with its
    lowest bits replaced by the sample's index; doses closer than those bits (a few ulp apart: a block of equal
    truncated bits) that came out of order are then put in order by a stable sort of their blocks alone (doses in
    different blocks are in order already). A block is found by its truncated bits in the sorted keys (binary
    search), not by numbering every block."""
    shift = max(1, int(dose.size).bit_length())
    keys = np.sort(((dose.view(np.int64) >> shift) << shift) | np.arange(dose.size, dtype=np.int64))  # ascending
    order = keys[::-1] & ((1 << shift) - 1)
    ordered = dose[order]
    wrong = np.flatnonzero(ordered[1:] > ordered[:-1])
    if wrong.size:
        bits = np.unique(keys[dose.size - 1 - wrong] >> shift)[::-1]  # of the blocks holding a pair out of order
        starts = dose.size - np.searchsorted(keys, (bits + 1) << shift)  # their positions in the descending order
        ends = dose.size - np.searchsorted(keys, bits << shift)
        lengths = ends - starts
        block = np.repeat(np.arange(bits.size), lengths)
        fix = starts[block] + np.arange(block.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        order[fix] = order[fix][np.lexsort((-ordered[fix], block))]
        ordered[fix] = dose[order[fix]]
    return order, ordered


OAR_HOT_CC = 4.0  # organs at risk: the hottest max(4 cc, 25 %) is sampled at 0.5 mm
OAR_HOT_FRACTION = 0.25


class PointDose:
    """Dose (Gy) from an exact point evaluator, used at each structure's own sample points.

    A binary mask at its own resolution (``Structure.voxel_centres_only``) is read at its voxel centres.
    Otherwise targets are sampled at 0.5 mm inside (``Structure.sample_points``): their low quantiles (D90,
    D98) need the dose spread inside each voxel. Organs at risk are read at their hot end (D2cc to
    D0.1cc) and by Dmean: one point per voxel first (an interior voxel at its centre, a boundary voxel
    at the centroid of its inside points with its whole inside volume), then the voxels whose dose is
    at least the dose to the hottest max(4 cc, 25 %) are read at their own points: interior ones split
    at 0.5 mm, boundary ones at their inside points (``Structure.boundary_points``); the mean is exact
    to second order either way. In the validation cases one point per 1 mm voxel reads a 2 mm slab's
    D0.1cc 0.6 % high; this rule is within 0.1 %.

    Args:
        dose_at: callable, points ``(N, 3)`` mm RAS -> dose ``(N,)`` Gy.
    """

    description = "DVH: exact point dose at each structure's own sample points"

    def __init__(self, dose_at):
        self.at = dose_at

    def _dose(self, points):
        return np.asarray(self.at(points), dtype=np.float64)

    def samples_dose(self, structure, interior_spacing_mm, per_voxel_boundary=False):
        """(dose Gy, volumes cc) at ``structure.sample_points(interior_spacing_mm, per_voxel_boundary)``: the points
        the rule reads (a dose source that keeps doses between calls, :class:`SeedBrachyLib.incremental.LiveDose`,
        overrides it)."""
        points, volumes = structure.sample_points(interior_spacing_mm, per_voxel_boundary)
        return self._dose(points), volumes

    def boundary_split_dose(self, structure, rows):
        """(dose Gy, volumes cc) at ``structure.boundary_split_points(rows)``: an organ at risk's hottest boundary
        voxels at their own points."""
        points, volumes = structure.boundary_split_points(rows)
        return self._dose(points), volumes

    def split_dose(self, structure, voxels):
        """(dose Gy, volumes cc) at the points of interior ``voxels`` (flat indices) split by
        ``structure.split_points``: an organ at risk's hottest voxels."""
        points, volumes = structure.split_points(voxels)
        return self._dose(points), volumes

    def dvh(self, structure):
        """:class:`DVH` of ``structure`` from the dose at its sample points (its own grid)."""
        if structure.voxel_centres_only:  # a binary mask at its own resolution: voxel-centre counting
            return DVH.from_samples(*self.samples_dose(structure, math.inf), structure.name)
        if structure.role == "target":
            return DVH.from_samples(*self.samples_dose(structure, DEFAULT_INTERIOR_SPACING_MM), structure.name)
        dose, volumes = self.samples_dose(structure, math.inf, per_voxel_boundary=True)
        interior = structure.interior_voxels()  # their centres are the first points, then one per boundary voxel
        coarse = DVH.from_samples(dose, volumes, structure.name)
        level = coarse.dose_at_volume_cc(min(coarse.volume_cc, max(OAR_HOT_CC, OAR_HOT_FRACTION * coarse.volume_cc)))
        hot = np.flatnonzero(dose >= level)
        inner, outer = hot[hot < interior.size], hot[hot >= interior.size] - interior.size
        keep = np.ones(dose.size, bool)
        keep[hot] = False
        parts = [(dose[keep], volumes[keep])]
        if inner.size:
            parts.append(self.split_dose(structure, interior[inner]))
        if outer.size:
            parts.append(self.boundary_split_dose(structure, outer))
        return DVH.from_samples(np.concatenate([d for d, _ in parts]), np.concatenate([v for _, v in parts]),
                                structure.name)


class SeedDose(PointDose):
    """Dose (Gy) from seeds, evaluated with TG-43 at each structure's sample points.

    The compiled engine takes the dose at the sample points from its (r, theta) table, within 0.1 % of exact
    TG-43 (measured below 0.03 %, :mod:`SeedBrachyLib.kernel`), the interior voxels' points along runs of
    neighbouring voxels (:func:`SeedBrachyLib.dose.dose_at_lattice`): at each point itself, nothing is
    interpolated between points. ``exact=True`` (or the numpy engine) evaluates the TG-43 formula at every point
    (:func:`SeedBrachyLib.dose.dose_at_points`); :meth:`at` is always exact.

    Args:
        seeds: list of :class:`~SeedBrachyLib.seeds.Seed` (mm RAS, unit axis, S_K in U).
        model: TG-43 source model or key.
        formalism: "line" (2D) or "point" (1D).
        time_window_days: None (permanent implant) or (t0, t1) in days.
        exact: evaluate the formula at the sample points instead of the table.
    """

    def __init__(self, seeds, model, formalism="line", time_window_days=None, exact=False):
        if len(seeds) == 0:
            raise InputError("no seeds: the dose from seeds needs at least one seed")
        self.seeds, self.model = list(seeds), model
        self.formalism, self.time_window_days = formalism, time_window_days
        super().__init__(self._tg43)
        self.exact = bool(exact)
        how = "exact" if self.exact else "(within 0.1 % of exact)"
        self.description = (f"DVH: TG-43 {formalism} source {how} at each structure's own sample points, every "
                            "structure whole")

    def _tg43(self, points_ras, tabled=False):
        return dose_at_points(points_ras, self.seeds, self.model, self.formalism, self.time_window_days,
                              tabled=tabled)

    def _lattice(self, structure, voxels, interior_spacing_mm):
        """Dose (Gy) at the points of interior ``voxels`` split as by ``structure.split_points``, in its order."""
        offsets, _ = structure.split_offsets(interior_spacing_mm)
        return dose_at_lattice(structure.grid, voxels, offsets, self.seeds, self.model, self.formalism,
                               self.time_window_days).T.ravel()

    def samples_dose(self, structure, interior_spacing_mm, per_voxel_boundary=False):
        """As :meth:`PointDose.samples_dose`; from the table the interior points along runs, the others one by one
        (their coordinates are made only for the others: ``structure.boundary_points``)."""
        if self.exact:
            return super().samples_dose(structure, interior_spacing_mm, per_voxel_boundary)
        voxels = structure.interior_voxels()
        points, volumes = structure.boundary_points(per_voxel_boundary)
        dose = np.concatenate([self._lattice(structure, voxels, interior_spacing_mm), self._tg43(points, tabled=True)])
        return dose, np.concatenate([structure.split_volumes(voxels.size, interior_spacing_mm), volumes])

    def boundary_split_dose(self, structure, rows):
        if self.exact:
            return super().boundary_split_dose(structure, rows)
        points, volumes = structure.boundary_split_points(rows)
        return self._tg43(points, tabled=True), volumes

    def split_dose(self, structure, voxels):
        if self.exact:
            return super().split_dose(structure, voxels)
        return self._lattice(structure, voxels, DEFAULT_INTERIOR_SPACING_MM), structure.split_volumes(len(voxels))


class GridDose:
    """A dose volume: array ``[k, j, i]`` (Gy) on a :class:`~SeedBrachyLib.grid.Grid`."""

    description = ("DVH: read from the dose volume (voxels inside at their own value, boundary voxels at their "
                   "inside parts)")

    def __init__(self, dose_gy, grid):
        dose = np.asarray(dose_gy)
        if dose.shape != tuple(grid.shape):
            raise InputError(f"dose shape {dose.shape} does not match its grid {tuple(grid.shape)} "
                             "([k, j, i]): map the structure onto the dose grid first")
        self.dose, self.grid = dose, grid

    def slopes_at(self, voxels):
        """Dose slopes (Gy per voxel step along I, J, K; ``(N, 3)``) of the voxels at integer indices ``(N, 3)``.

        Monotonized central differences (van Leer): the central difference, limited to twice the smaller one-sided
        difference, and 0 where the one-sided differences disagree in sign (a local maximum or minimum) or at the
        grid's faces. So a voxel's linear dose never passes its neighbours' values and a hot spot keeps its own.
        """
        dims = np.asarray(self.grid.dims)
        voxels = np.asarray(voxels, dtype=np.int64)
        value = self.dose[voxels[:, 2], voxels[:, 1], voxels[:, 0]].astype(np.float64)
        out = np.empty((len(voxels), 3))
        for axis in range(3):
            step = np.eye(3, dtype=np.int64)[axis]
            up, down = np.minimum(voxels + step, dims - 1), np.maximum(voxels - step, 0)
            forward = self.dose[up[:, 2], up[:, 1], up[:, 0]] - value
            backward = value - self.dose[down[:, 2], down[:, 1], down[:, 0]]
            central = 0.5 * (forward + backward)
            limit = np.minimum(np.abs(central), 2.0 * np.minimum(np.abs(forward), np.abs(backward)))
            out[:, axis] = np.where(forward * backward > 0, np.sign(central) * limit, 0.0)
        return out

    def dvh(self, structure):
        """:class:`DVH` of ``structure`` mapped onto this grid (module notes: each voxel at its own value, varying
        linearly inside it with its limited slopes; interior voxels at 8 Gauss-Legendre points)."""
        s = structure.on_grid(self.grid)
        if s.voxel_centres_only:  # no sub-voxel geometry: voxel-centre counting, each voxel at its own value
            weights = s.weights.ravel().astype(np.float64)
            inside = weights > 0
            return DVH.from_samples(self.dose.ravel()[inside], weights[inside] * self.grid.voxel_volume_cc, s.name)
        points, volumes = s.sample_points(math.inf)
        ijk = self.grid.to_ijk(points)
        voxels = np.clip(np.rint(ijk).astype(np.int64), 0, np.asarray(self.grid.dims) - 1)
        value = self.dose[voxels[:, 2], voxels[:, 1], voxels[:, 0]].astype(np.float64)
        slopes = self.slopes_at(voxels)
        dose = value + np.sum(slopes * (ijk - voxels), axis=1)
        n = s.interior_voxels().size  # their centres come first
        nodes = np.array([[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)]) * (0.5 / math.sqrt(3.0))
        split = (value[:n, None] + slopes[:n] @ nodes.T).ravel()
        return DVH.from_samples(np.concatenate([split, dose[n:]]),
                                np.concatenate([np.repeat(volumes[:n] / 8.0, 8), volumes[n:]]), s.name)


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

    Vref needs the whole isodose, so it comes from the dose volume. With ``dvh`` (the target's
    DVH, e.g. exact from seeds) VT, VT,ref and VT,1.5ref come from it, and Vref is the dose
    volume's isodose volume outside the target plus the exact VT,ref (so EI is the grid's
    normal-tissue volume and CI <= 1 stays consistent). Vref is only right if the dose grid
    contains the whole reference isodose; ``isodose_clipped`` says when it reaches the grid edge
    (then Vref, CI and EI are underestimated / overestimated respectively).

    Args:
        dose: :class:`GridDose`, or a dose array (Gy) on the target's grid.
        target, body: :class:`~SeedBrachyLib.structures.Structure` (mapped onto the dose grid).
        reference_gy: reference (prescription) dose (Gy), > 0.
        dvh: the target's :class:`DVH` for this dose (default: from the dose volume).

    Returns:
        dict: CI, EI, HI (dimensionless), VT_cc, VT_ref_cc, VT_1.5ref_cc, Vref_cc, isodose_clipped.
    """
    ref = float(reference_gy)
    if not ref > 0:
        raise InputError(f"reference dose {reference_gy!r} Gy must be > 0")
    volume = dose if isinstance(dose, GridDose) else GridDose(dose, target.grid)
    grid_dvh = volume.dvh(target)
    dvh = grid_dvh if dvh is None else dvh
    body_on_grid = None if body is None else body.on_grid(volume.grid)
    vt = dvh.volume_cc
    vt_ref, _ = dvh.volume_at_dose(ref)
    vt_15, _ = dvh.volume_at_dose(1.5 * ref)
    v_ref = (_isodose_volume_cc(volume.dose, ref, body_on_grid, volume.grid.voxel_volume_cc)
             - grid_dvh.volume_at_dose(ref)[0] + vt_ref)
    return {
        "CI": (vt_ref / vt) * (vt_ref / v_ref) if v_ref > 0 else 0.0,
        "EI": (v_ref - vt_ref) / vt,
        "HI": (vt_ref - vt_15) / vt_ref if vt_ref > 0 else float("nan"),
        "VT_cc": vt, "VT_ref_cc": vt_ref, "VT_1.5ref_cc": vt_15, "Vref_cc": v_ref,
        "isodose_clipped": isodose_reaches_grid_edge(volume.dose, ref),
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
                  target_metrics=TARGET_METRICS, oar_metrics=OAR_METRICS, dose_volume=None, outside_below_gy=None):
    """Metrics for each structure of a plan.

    Args:
        dose: where the dose comes from (module notes): a :class:`SeedDose` (TG-43 at each
            structure's own sample points: the DVH of every plan), a :class:`GridDose` (a given
            dose volume; structures are mapped onto it), or a dose (Gy) array ``[k, j, i]`` on the
            structures' grid.
        structures: iterable of :class:`~SeedBrachyLib.structures.Structure`; role "target" gets
            ``target_metrics`` (default D90, D98, D100, Dmax, Dmean, V90-V200 %, V100 cc, CI, EI, HI),
            role "oar" gets ``oar_metrics`` (default Volume, D2cc, D1cc, D0.1cc, Dmax, Dmean).
        prescription_gy: prescription (reference) dose (Gy), > 0.
        body: optional body Structure limiting Vref for CI/EI (default: the whole dose grid).
        dose_description: how the dose was computed (shown with the table); how the DVH read it is added.
        dose_volume: with a :class:`SeedDose`, the dose volume (:class:`GridDose`) that gives the
            reference isodose volume Vref for CI and EI (see :func:`conformity_indices`); without
            it CI and EI are n/a.
        outside_below_gy: with a dose volume (:class:`GridDose` or array), if known, a bound (Gy) on the dose
            outside its grid (the dose-grid policy's threshold): hot-spot metrics of structures partly outside
            are then exact when at or above it. From seeds every structure is evaluated whole.

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
        truncated = s.truncation_note(dvh.volume_cc)
        if truncated:
            m.notes.append(truncated)
            m.evaluated_fraction = dvh.volume_cc / s.source_volume_cc
            m.outside_below_gy = outside_below_gy
        indices = _target_indices(dose, dose_volume, s, rx, body, dvh, m.notes) if s.role == "target" else None
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
    source = dose if isinstance(dose, (PointDose, GridDose)) else GridDose
    return PlanEvaluation(rx, out, f"{dose_description} {source.description}.".strip(), notes)


def _target_indices(dose, dose_volume, target, rx, body, dvh, notes):
    """CI, EI, HI of a target: Vref from the dose volume (the given grid, or ``dose_volume`` for seeds)."""
    if isinstance(dose, PointDose):
        volume = dose_volume
    else:
        volume = dose if isinstance(dose, GridDose) else GridDose(dose, target.grid)
    if volume is not None:
        return conformity_indices(volume, target, rx, body, dvh)
    notes.append(f"{target.name} CI, EI: n/a (no dose volume for the reference isodose volume)")
    vt_ref, vt_15 = dvh.volume_at_dose(rx)[0], dvh.volume_at_dose(1.5 * rx)[0]
    return {"CI": float("nan"), "EI": float("nan"), "isodose_clipped": False,
            "HI": (vt_ref - vt_15) / vt_ref if vt_ref > 0 else float("nan")}


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
