"""Structures on a dose grid: partial-volume masks, margins, body and skin.

Public API
----------
* :class:`Structure` -- a named fractional mask on a :class:`~SeedBrachyLib.grid.Grid`
  (``weights`` float32 ``[k, j, i]`` in [0, 1], the fraction of each voxel inside) with a
  ``role`` ("target" or "oar"); ``volume_cc``, ``truncation_note()``.
* :func:`resample_mask` -- a boolean mask on ANY grid -> fractional occupancy on another grid
  (supersampling: n^3 sub-points per target voxel, nearest-neighbour lookup;
  :func:`default_supersampling` from the spacing ratio).
* :func:`structure_on_grid` -- a mask or labelmap (``label=``) as a :class:`Structure` on a given
  grid (normally a dose grid), which also records its inside sub-points for the DVH
  (:func:`dvh_subdivision`, :func:`subpoint_offsets`).
* :func:`structure_from_mask` -- a mask as a :class:`Structure` on its OWN geometry (a sampling grid
  aligned with the mask's grid, cells of about 1 mm), for the DVH from seeds; it keeps the mask,
  so ``Structure.on_grid(dose_grid)`` maps it onto any dose grid.
* :func:`structures_from_masks` -- named target and organ-at-risk masks as such Structures.
* :func:`expand_margin` -- CTV = GTV + margin (mm; isotropic or per R/A/S axis), distance based,
  exact for anisotropic voxels, optionally clipped to the body. Binary on the input grid: the
  margin is realised to about half a voxel along each axis, so build it on the CT grid.
* :func:`body_from_ct` -- body from a CT threshold (HU), largest connected component, holes filled.
* :func:`skin_rind` -- the outer rind of the body, of a given thickness (mm, default 5).

Sample points (``Structure.sample_points``)
-------------------------------------------
The DVH from seeds evaluates TG-43 at each structure's sample points (mm RAS), each standing for a
volume (cc). On the structure's grid:

* a voxel fully inside (weight 1) is split m per axis, m = ceil(spacing / ``interior_spacing_mm``)
  (default 0.5 mm), at the Gauss-Legendre nodes with their weights, only half of them when every m
  is even (4 points for a 1 mm voxel, a regular tetrahedron: ``_split_offsets``);
  with ``interior_spacing_mm = inf`` (a given dose grid) it is one point, its centre (the DVH
  from seeds of an organ at risk splits only its hottest voxels, see ``dvh.PointDose``). The
  split resolves the dose spread inside a voxel, which the low quantiles (D90, D98) need in the
  steep fields around seeds: in the validation cases one point per 1 mm voxel reads D90 0.9 %
  high, 0.5 mm Gauss-Legendre points within 0.1 %;
* a full voxel next to an empty one (the edge of a mask at voxel resolution, e.g. a binary
  labelmap) gives its centre only: its membership was decided at the centre, and the centre
  dose is what stands for it (voxel-centre counting); splitting it would put dose points on the
  outside half of the staircase;
* a partial voxel with recorded sub-points (``subvoxels``, n^3 per voxel) gives one point per
  group of its inside sub-points (grouped at most 4 per axis: 2 x 2 x 2 for n = 8) at their
  centroid, with their share of the voxel's weight times its volume;
* a partial voxel without sub-points gives its centre with ``weight * voxel volume``.

So every dose is an exact point dose (no smoothing), and the boundary is resolved to the mask's
own voxels, with at most 64 points per boundary voxel. A binary mask at its own resolution (a
labelmap of about 1 mm or coarser, as drawn in the Segment Editor or exported on a dose grid) has no
sub-voxel geometry (:attr:`Structure.voxel_centres_only`): the DVH from seeds counts its voxel
centres, the rule of plastimatch and dicompyler-core, with the exact dose there, so it is never
handled worse than that (splitting its interior moved the validation cases' metrics away from the
truth as often as towards it: the staircase boundary, not the interior, sets the error).

Empty structures raise :class:`~SeedBrachyLib.errors.InputError` naming the structure.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .errors import InputError
from .grid import Grid
from .progress import report

ROLES = ("target", "oar")
MAX_SUPERSAMPLING = 8
MAX_DVH_SUBDIVISION = 4  # sample points per axis of a partial voxel (groups of its recorded sub-points)
MAX_DVH_SUBPOINTS = 1 << 24
RESAMPLE_CHUNK_VOXELS = 1 << 18  # target voxels per vectorised step (bounded memory)
MASK_SCAN_BYTES = 1 << 20  # slices read at a time when looking for a mask's first and last occupied slice
DEFAULT_BODY_THRESHOLD_HU = -300.0
DEFAULT_SKIN_THICKNESS_MM = 5.0
DEFAULT_CTV_MARGIN_MM = 5.0  # CTV = GTV + 5 mm, as in the seed studies
DEFAULT_SAMPLE_SPACING_MM = 1.0  # cell size of a structure's own sampling grid (mm, about)
DEFAULT_INTERIOR_SPACING_MM = 0.5  # sub-point spacing inside interior voxels for the DVH from seeds (mm)


@dataclass
class Structure:
    """A named structure on a grid.

    Attributes:
        name: structure name (e.g. "CTV", "Skin").
        weights: float32 ``[k, j, i]`` array on ``grid``, the fraction (0..1) of each voxel's
            volume inside the structure.
        grid: the :class:`Grid` the weights live on (normally the dose grid).
        role: "target" (gets the target metric set) or "oar" (organ at risk, skin, body).
        source_volume_cc: volume (cc) of the mask it was resampled from, if any; larger than
            ``volume_cc`` when part of the structure lies outside ``grid``.
        subvoxels: optional ``(flat_indices, inside, n)`` for the partial-volume voxels: their flat
            indices into ``weights`` and which of their n^3 sub-points (order of
            ``subpoint_offsets(n)``) lie inside; voxels with weight 1 have all sub-points inside.
            The DVH then samples the dose at the inside sub-points (see ``dvh.DVH.of``).
        source: optional ``(mask, mask_grid)``, the boolean mask the structure was made from, so it
            can be mapped onto another grid (:meth:`on_grid`).
    """

    name: str
    weights: np.ndarray
    grid: Grid
    role: str = "oar"
    source_volume_cc: float = None
    subvoxels: tuple = None
    source: tuple = None

    def __post_init__(self):
        if self.role not in ROLES:
            raise InputError(f"structure '{self.name}' role {self.role!r} invalid: use one of {ROLES}")
        w = np.asarray(self.weights, dtype=np.float32)
        if w.shape != tuple(self.grid.shape):
            raise InputError(f"structure '{self.name}' weights shape {w.shape} does not match its grid "
                             f"shape {tuple(self.grid.shape)} ([k, j, i])")
        if not np.all(np.isfinite(w)) or w.min(initial=0.0) < 0 or w.max(initial=0.0) > 1:
            raise InputError(f"structure '{self.name}' weights must be fractions in [0, 1]")
        _require_nonempty(w, self.name)
        self.weights = w
        if self.subvoxels is not None:
            flat, inside, n = self.subvoxels
            if np.shape(inside) != (len(flat), int(n) ** 3) or (len(flat) and not 0 <= min(flat) <= max(flat) < w.size):
                raise InputError(f"structure '{self.name}' subvoxels invalid: need flat indices into the grid and an "
                                 f"inside array of shape (voxels, n^3)")

    @property
    def volume_cc(self):
        """Structure volume (cc) on its grid: sum of the voxel fractions times the voxel volume."""
        return float(self.weights.sum(dtype=np.float64)) * self.grid.voxel_volume_cc

    @property
    def voxel_centres_only(self):
        """True if the structure has no sub-voxel geometry, so its DVH counts its voxel centres (module notes): made
        from weights alone, or from a mask whose voxels are not finer than the structure's grid (a binary mask at
        its own resolution, or mapped onto a grid of the same or a finer spacing)."""
        if self.subvoxels is None or int(self.subvoxels[2]) == 1:
            return True
        return self.source is not None and float(np.min(self.source[1].spacing)) >= 0.999 * float(
            np.max(self.grid.spacing))

    def sample_points(self, interior_spacing_mm=DEFAULT_INTERIOR_SPACING_MM, per_voxel_boundary=False):
        """(points ``(N, 3)`` mm RAS, volumes ``(N,)`` cc) standing for the structure (module notes).

        ``interior_spacing_mm``: interior voxels are split into sub-points at most this far apart
        (mm; default 0.5); ``math.inf`` keeps one point per voxel (as for a given dose grid). The
        volumes add up to :attr:`volume_cc`. Cached per spacing. With ``math.inf`` the points of
        the interior voxels (:meth:`interior_voxels`) come first, in that order. The points of the other
        voxels follow (:meth:`boundary_points`; ``per_voxel_boundary``: one per voxel).
        """
        cache = self.__dict__.setdefault("_samples", {})
        key = (interior_spacing_mm, bool(per_voxel_boundary))
        if key not in cache:
            split, volumes = self.split_points(self.interior_voxels(), interior_spacing_mm)
            points, rest = self.boundary_points(per_voxel_boundary)
            cache[key] = np.concatenate([split, points]), np.concatenate([volumes, rest])
        return cache[key]

    def boundary_points(self, per_voxel=False):
        """(points ``(N, 3)`` mm RAS, volumes ``(N,)`` cc) of the voxels that are not interior (module notes): the
        same for every interior spacing; :meth:`sample_points` ends with them. ``per_voxel``: one point per voxel
        instead, the volume-weighted centroid of its points with their summed volume (a linear dose's mean over
        the voxel's inside part; an organ at risk's first reading, ``dvh.PointDose``), voxels in ascending flat
        index. Cached."""
        if "_boundary" not in self.__dict__:
            self.__dict__["_boundary"] = _boundary_points(self)
        if per_voxel:
            return self._boundary_voxels()[0]
        return self.__dict__["_boundary"][:2]

    def _boundary_voxels(self):
        """((centroids (V, 3) mm RAS, volumes (V,) cc) of the boundary voxels, ascending flat index; the row of each
        point of :meth:`boundary_points` in them). Cached."""
        if "_boundary_by_voxel" not in self.__dict__:
            self.boundary_points()
            points, volumes, owners = self.__dict__["_boundary"]
            voxels, row = np.unique(owners, return_inverse=True)
            total = np.bincount(row, volumes, voxels.size)
            centroids = np.stack([np.bincount(row, volumes * points[:, a], voxels.size) for a in range(3)], 1)
            self.__dict__["_boundary_by_voxel"] = (centroids / total[:, None], total), row
        return self.__dict__["_boundary_by_voxel"]

    def boundary_split_points(self, rows):
        """(points mm RAS, volumes cc) of the voxels at ``rows`` of ``boundary_points(per_voxel=True)``, each at its
        own points of :meth:`boundary_points` (in that order)."""
        points, volumes = self.boundary_points()
        (_, voxel_volumes), row = self._boundary_voxels()
        chosen = np.zeros(voxel_volumes.size, bool)
        chosen[np.asarray(rows, dtype=np.int64)] = True
        take = chosen[row]
        return points[take], volumes[take]

    def interior_voxels(self):
        """Flat indices (ascending) of the interior voxels: full, and not next to an empty voxel (module notes).
        Cached (the weights are not to be changed in place)."""
        if "_interior" not in self.__dict__:
            weights = self.weights
            empty_near = ndimage.binary_dilation(np.pad(weights == 0, 1, constant_values=True))[1:-1, 1:-1, 1:-1]
            self.__dict__["_interior"] = np.flatnonzero((weights >= 1.0) & ~empty_near)
        return self.__dict__["_interior"]

    def split_offsets(self, interior_spacing_mm=DEFAULT_INTERIOR_SPACING_MM):
        """(offsets (M, 3) voxel units, shares (M,)) of an interior voxel's points: :meth:`sample_points` and
        :meth:`split_points` begin with voxel index + each offset of each voxel in turn, ``share`` x voxel volume."""
        return _split_offsets(self.grid.spacing, interior_spacing_mm)

    def split_points(self, voxels, interior_spacing_mm=DEFAULT_INTERIOR_SPACING_MM):
        """(points mm RAS, volumes cc) of interior ``voxels`` (flat indices) split as in :meth:`sample_points`:
        voxel after voxel, each at its centre + each of :meth:`split_offsets`."""
        offsets, _ = self.split_offsets(interior_spacing_mm)
        centres = self.grid.to_ras(np.stack(np.unravel_index(np.asarray(voxels), self.grid.shape)[::-1], axis=1))
        points = centres[:, None, :] + self.grid.to_ras(offsets) - self.grid.origin
        return points.reshape(-1, 3), self.split_volumes(len(centres), interior_spacing_mm)

    def split_volumes(self, n_voxels, interior_spacing_mm=DEFAULT_INTERIOR_SPACING_MM):
        """Volumes (cc) of the points of ``n_voxels`` interior voxels split as in :meth:`split_points`."""
        return np.tile(self.grid.voxel_volume_cc * self.split_offsets(interior_spacing_mm)[1], int(n_voxels))

    def on_grid(self, grid, supersampling=None, progress=None):
        """This structure on ``grid`` (e.g. a dose grid) with partial-volume weights.

        Returns ``self`` if ``grid`` is its own grid; otherwise the source mask is resampled
        (:func:`structure_on_grid`; the last one is kept for the same grid and supersampling). InputError if
        it has no source mask to resample.
        """
        if _same_grid(grid, self.grid):
            return self
        if self.source is None:
            raise InputError(f"structure '{self.name}' lives on {self.grid.describe()} and has no source mask: "
                             f"it cannot be mapped onto {grid.describe()}")
        kept = self.__dict__.get("_on_grid")
        if kept is not None and kept[1] == supersampling and _same_grid(grid, kept[0]):
            return kept[2]
        mask, mask_grid = self.source
        s = structure_on_grid(self.name, mask, mask_grid, grid, self.role, supersampling=supersampling,
                              progress=progress)
        s.source_volume_cc = self.source_volume_cc if self.source_volume_cc is not None else s.source_volume_cc
        self.__dict__["_on_grid"] = (grid, supersampling, s)
        return s

    def truncation_note(self, evaluated_cc=None, tolerance=0.01):
        """A message if more than ``tolerance`` (fraction) of the source volume is not evaluated, else None.

        ``evaluated_cc``: the volume evaluated (cc, e.g. the part on a dose grid); default its own volume.
        """
        cc = self.volume_cc if evaluated_cc is None else float(evaluated_cc)
        if self.source_volume_cc is None or cc >= (1.0 - tolerance) * self.source_volume_cc:
            return None
        return (f"only {cc:.2f} of {self.source_volume_cc:.2f} cc of '{self.name}' lie in the "
                f"dose grid; its metrics cover that part only")


def _same_grid(a, b):
    return (tuple(a.dims) == tuple(b.dims) and np.allclose(a.origin, b.origin, atol=1e-6)
            and np.allclose(a.spacing, b.spacing, rtol=1e-9) and np.allclose(a.direction, b.direction, atol=1e-9))


def _group_members(n):
    """(n^3, q^3) one-hot: the group of each sub-point when the n x n x n sub-points of a voxel are
    grouped q = min(n, MAX_DVH_SUBDIVISION) per axis (groups of 2 x 2 x 2 for n = 8)."""
    q = min(n, MAX_DVH_SUBDIVISION)
    per_axis = (np.arange(n) * q) // n
    k, j, i = np.meshgrid(per_axis, per_axis, per_axis, indexing="ij")
    group = (i + q * (j + q * k)).ravel()
    return (group[:, None] == np.arange(q ** 3)[None, :]).astype(np.float32)


def _split_offsets(spacing, interior_spacing_mm):
    """Gauss-Legendre nodes of a voxel split m_a per axis (m_a = ceil(spacing / interior spacing)).

    Returns ((M, 3) offsets in voxel units, (M,) weights summing to 1; read-only, shared). Gauss-Legendre nodes
    (m = 2: +-0.289 of the voxel, not the sub-cell centres +-0.25) give a linear field's mean and its spread
    inside the voxel exactly, which the low quantiles (D90, D98) need. When every m_a is even, half of the
    product nodes do too: those whose node numbers (i + j + k) add up to an even number, at twice the weight
    (for m = 2 the four corners of a regular tetrahedron). Their mean is the centre and their covariance the
    voxel's, diag(h_a^2) / 12: per pair of axes the cross terms of the kept half cancel because the third axis's
    weights, alternating in sign with its node number, sum to 0 for an even m. So M = m_I m_J m_K / 2 (4 for a
    1 mm voxel at 0.5 mm). Largest errors from the truth in the validation cases (module notes, the DVH from a
    fine mask) with the half: D90 0.045 %, D1cc 0.077 %, D0.1cc 0.17 %, V100 0.060 pp, V150 0.11 pp; with every
    product node: 0.021 %, 0.020 %, 0.18 %, 0.054 pp, 0.060 pp.
    """
    return _split_offsets_of(tuple(float(s) for s in spacing), float(interior_spacing_mm))


@functools.lru_cache(maxsize=64)
def _split_offsets_of(spacing, interior_spacing_mm):
    nodes, weights = [], []
    for s in spacing:
        m = int(max(1, np.ceil(s / interior_spacing_mm - 1e-9))) if np.isfinite(interior_spacing_mm) else 1
        x, w = np.polynomial.legendre.leggauss(m)
        nodes.append(x / 2.0)
        weights.append(w / 2.0)
    k, j, i = np.meshgrid(nodes[2], nodes[1], nodes[0], indexing="ij")
    wk, wj, wi = np.meshgrid(weights[2], weights[1], weights[0], indexing="ij")
    offsets, shares = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1), (wk * wj * wi).ravel()
    m = [len(x) for x in nodes]
    if all(n % 2 == 0 for n in m):  # the half whose node numbers add up to an even number, at twice the weight
        nk, nj, ni = np.meshgrid(np.arange(m[2]), np.arange(m[1]), np.arange(m[0]), indexing="ij")
        even = (nk + nj + ni).ravel() % 2 == 0
        offsets, shares = offsets[even], 2.0 * shares[even]
    offsets.flags.writeable = shares.flags.writeable = False
    return offsets, shares


def _boundary_points(structure):
    """Sample points, volumes and the flat index of each point's voxel, of a structure's voxels that are not
    interior (see the module notes)."""
    weights = structure.weights
    w = weights.ravel()
    grid = structure.grid
    vv = grid.voxel_volume_cc
    interior = structure.interior_voxels()
    # a full voxel next to an empty one is the edge of a voxel-resolution mask: its centre stands for it
    edge = np.setdiff1d(np.flatnonzero(w >= 1.0), interior, assume_unique=True)
    ijk = [np.stack(np.unravel_index(edge, grid.shape)[::-1], axis=1).astype(float)]
    vol = [np.full(edge.size, vv)]
    owners = [edge]
    partial = np.flatnonzero((w > 0) & (w < 1))
    if structure.subvoxels is not None and partial.size:
        flat, inside, n = structure.subvoxels
        offsets = subpoint_offsets(n)
        if n <= MAX_DVH_SUBDIVISION:  # each sub-point is a group of its own: at its offset, its share of the voxel
            total = np.count_nonzero(inside, axis=1).astype(np.float32)  # float32 as the groups' sums below
            row, group = np.nonzero(inside)
            centroid, count = offsets[group], 1.0
        else:
            members = _group_members(n)
            inside = inside.astype(np.float32)
            counts = np.einsum("vs,sg->vg", inside, members)  # (voxels, groups) inside sub-points per group; not BLAS
            centroid = np.stack([np.einsum("vs,sg->vg", inside, members * offsets[:, a:a + 1]) for a in range(3)],
                                axis=-1)
            total = counts.sum(axis=1)
            row, group = np.nonzero(counts)
            centroid, count = centroid[row, group] / counts[row, group, None], counts[row, group]
        voxels = flat[row]
        ijk.append(np.stack(np.unravel_index(voxels, grid.shape)[::-1], axis=1) + centroid)
        vol.append(w[voxels] * vv * count / total[row])
        owners.append(voxels)
        partial = np.setdiff1d(partial, flat[total > 0], assume_unique=True)
    ijk.append(np.stack(np.unravel_index(partial, grid.shape)[::-1], axis=1).astype(float))
    vol.append(w[partial].astype(np.float64) * vv)
    owners.append(partial)
    return grid.to_ras(np.concatenate(ijk)), np.concatenate(vol), np.concatenate(owners)


def _require_nonempty(mask, name):
    if not np.any(mask):
        raise InputError(f"structure '{name}' is empty: it has no voxel inside")


def _check_on_grid(array, grid, name):
    array = np.asarray(array)
    if array.shape != tuple(grid.shape):
        raise InputError(f"'{name}' array shape {array.shape} does not match its grid shape "
                         f"{tuple(grid.shape)} ([k, j, i], dims {grid.dims})")
    return array


def default_supersampling(source_grid, target_grid):
    """Sub-points per axis n: sub-point spacing at most half the source's finest voxel, 2 <= n <= 8."""
    ratio = float(np.max(target_grid.spacing) / np.min(source_grid.spacing))
    return int(np.clip(np.ceil(2.0 * ratio - 1e-9), 2, MAX_SUPERSAMPLING))


def mask_box(mask, name="mask"):
    """(lowest, highest) voxel indices (I, J, K) of the non-zero voxels of a [k, j, i] ``mask``; InputError naming
    ``name`` if it has none. Only the empty slices at either end (read a few at a time, from each end inward until
    one holds a voxel) and the slab between them are read: then the rows and columns of the slab's union plane (a
    whole-array pass, np.nonzero or reductions over two strided axes of a large mask cost far more)."""
    part = np.asarray(mask)
    slices = part.reshape(part.shape[0], -1)
    k0 = _first_occupied_slice(slices, range(0, len(slices), 1), name)
    k1 = _first_occupied_slice(slices, range(len(slices) - 1, k0 - 1, -1), name)
    plane = part[k0:k1 + 1].any(axis=0)
    j, i = np.flatnonzero(plane.any(axis=1)), np.flatnonzero(plane.any(axis=0))
    return np.array([i[0], j[0], k0]), np.array([i[-1], j[-1], k1])


def _first_occupied_slice(slices, order, name):
    """The first index in ``order`` (a range of slice indices, either direction) of a row of ``slices`` ((K, J * I))
    with a non-zero voxel, reading MASK_SCAN_BYTES of slices at a time; InputError naming ``name`` if none has."""
    step = max(1, MASK_SCAN_BYTES // max(1, slices[:1].nbytes))
    for c in range(0, len(order), step):
        chunk = order[c:c + step]
        lo, hi = min(chunk[0], chunk[-1]), max(chunk[0], chunk[-1]) + 1
        rows = np.flatnonzero(slices[lo:hi].any(axis=1))
        if rows.size:
            return int(lo + (rows[0] if order.step > 0 else rows[-1]))
    raise InputError(f"structure '{name}' is empty: it has no voxel inside")


def _target_box(mask, source_grid, target_grid):
    """Index box ((i0, i1), (j0, j1), (k0, k1)) of target voxels that can overlap the mask."""
    lo, hi = mask_box(mask)
    lo, hi = lo - 0.5, hi + 0.5
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    t = target_grid.to_ijk(source_grid.to_ras(corners))
    t_lo = np.maximum(np.floor(t.min(axis=0) - 0.5).astype(int), 0)
    t_hi = np.minimum(np.ceil(t.max(axis=0) + 0.5).astype(int) + 1, np.asarray(target_grid.dims))
    return [(int(a), int(b)) for a, b in zip(t_lo, t_hi)]


def _subpoint_axis(n):
    """(n,) offsets in voxel units of the centres of n equal parts of a voxel along one axis."""
    return (np.arange(n) + 0.5) / n - 0.5


def subpoint_offsets(n):
    """(n^3, 3) offsets (di, dj, dk) in voxel units of the centres of an n x n x n voxel subdivision."""
    o = _subpoint_axis(n)
    k, j, i = np.meshgrid(o, o, o, indexing="ij")
    return np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1)


def _lookup(mask, idx):
    """mask[k, j, i] at integer indices idx = [i, j, k] (arrays); False outside the mask's array."""
    inside = np.ones(np.shape(idx[0]), dtype=bool)
    for a, n in enumerate(mask.shape[::-1]):
        inside &= (idx[a] >= 0) & (idx[a] < n)
    hit = np.zeros(inside.shape, dtype=bool)
    hit[inside] = mask[idx[2][inside], idx[1][inside], idx[0][inside]]
    return hit


def _aligned(m):
    """True if the affine ``m`` (4x4, source ijk from target ijk) maps each axis onto the same axis alone (its
    off-diagonal terms exactly 0, as between a mask's grid and its own sampling grid, or any two grids of one
    axis-aligned direction): a sub-point's source index along an axis then depends on that axis alone, and
    :func:`_axis_lookup` rounds it exactly as the full affine does."""
    return not np.any(m[:3, :3][~np.eye(3, dtype=bool)])


def _axis_lookup(m, axis, targets, n, size):
    """Source voxel indices along ``axis`` (0..2 for I, J, K) of target indices ``targets`` (T,) + each sub-point
    offset of an n-per-axis subdivision (:func:`subpoint_offsets`) for an :func:`_aligned` affine ``m``: (int64
    (T, n) clipped into 0..size-1, bool (T, n) True where inside the source array of ``size`` voxels)."""
    offsets = _subpoint_axis(n)
    idx = np.rint(m[axis, 3] + m[axis, axis] * (targets[:, None] + offsets[None, :])).astype(np.int64)
    return np.clip(idx, 0, size - 1), (idx >= 0) & (idx < size)


def _aligned_counts(mask, m, box, n):
    """uint16 counts of the n^3 sub-points inside ``mask`` of each target voxel in ``box`` ((lo, hi) target indices
    along I, J, K) for an :func:`_aligned` affine ``m``: the same counts as sub-point by sub-point, summed one
    axis at a time over the part of the mask the box reaches."""
    lookups = [_axis_lookup(m, a, np.arange(lo, hi, dtype=float), n, mask.shape[2 - a]) for a, (lo, hi) in
               enumerate(box)]
    reach = [(int(idx.min()), int(idx.max()) + 1) for idx, _ in lookups]
    part = mask[reach[2][0]:reach[2][1], reach[1][0]:reach[1][1], reach[0][0]:reach[0][1]]
    for a, (idx, inside) in enumerate(lookups):
        axis = 2 - a  # array axis of grid axis a
        shape = [1, 1, 1]
        shape[axis] = idx.shape[0]
        total = None
        for d in range(n):
            taken = np.take(part, idx[:, d] - reach[a][0], axis=axis) * inside[:, d].reshape(shape)
            total = taken.astype(np.uint16) if total is None else total + taken
        part = total
    return part


def _partial_subpoints(mask, source_grid, target_grid, weights, n):
    """(flat indices, inside (N, n^3) bool) of the partial-volume voxels of ``weights``."""
    flat = np.flatnonzero((weights > 0) & (weights < 1))
    m = source_grid.ras_to_ijk @ target_grid.ijk_to_ras
    if _aligned(m):
        axes = [_axis_lookup(m, a, t.astype(float), n, mask.shape[2 - a])
                for a, t in enumerate(np.unravel_index(flat, target_grid.shape)[::-1])]
        (ii, vi), (jj, vj), (kk, vk) = axes
        inside = (mask[kk[:, :, None, None], jj[:, None, :, None], ii[:, None, None, :]] & vk[:, :, None, None]
                  & vj[:, None, :, None] & vi[:, None, None, :])
        return flat, inside.reshape(flat.size, n ** 3)
    offsets = subpoint_offsets(n)
    inside = np.zeros((flat.size, n ** 3), dtype=bool)
    step = max(1, RESAMPLE_CHUNK_VOXELS // n ** 3)
    for c0 in range(0, flat.size, step):
        part = flat[c0:c0 + step]
        ijk = np.stack(np.unravel_index(part, target_grid.shape)[::-1], axis=1)[:, None, :] + offsets[None]
        src = np.rint(ijk @ m[:3, :3].T + m[:3, 3]).astype(np.int64)
        inside[c0:c0 + part.size] = _lookup(mask, [src[..., 0], src[..., 1], src[..., 2]])
    return flat, inside


def resample_mask(mask, source_grid, target_grid, supersampling=None, name="structure", progress=None):
    """Fractional occupancy on ``target_grid`` of a boolean mask given on ``source_grid``.

    Each target voxel is sampled at n^3 sub-points (centres of an n x n x n subdivision of the
    voxel); each sub-point is mapped to the source grid with ``Grid.to_ijk`` and looked up by
    nearest neighbour (points outside the source grid count as outside). The weight is the
    fraction of sub-points inside, so partial-volume voxels get fractions 0 < w < 1. Grids may
    have any origin, spacing (mm) and direction.

    Args:
        mask: bool array ``[k, j, i]`` on ``source_grid`` (non-zero = inside).
        source_grid, target_grid: :class:`Grid`.
        supersampling: n sub-points per axis (1..16); default :func:`default_supersampling`.
        name: structure name for error messages.
        progress: callback(fraction, message); returning False cancels.

    Returns:
        float32 ``[k, j, i]`` on ``target_grid``, values in [0, 1].
    """
    mask = _check_on_grid(mask, source_grid, name) != 0
    _require_nonempty(mask, name)
    n = default_supersampling(source_grid, target_grid) if supersampling is None else int(supersampling)
    if not 1 <= n <= 16:
        raise InputError(f"supersampling {supersampling!r} invalid: use an integer 1..16 sub-points per axis")
    (i0, i1), (j0, j1), (k0, k1) = _target_box(mask, source_grid, target_grid)
    if i1 <= i0 or j1 <= j0 or k1 <= k0:
        raise InputError(f"structure '{name}' lies outside the target grid ({target_grid.describe()})")
    # source continuous ijk = A @ target ijk + b (affine), built separably from per-axis terms
    m = source_grid.ras_to_ijk @ target_grid.ijk_to_ras
    weights = np.zeros(target_grid.shape, dtype=np.float32)
    if _aligned(m):
        weights[k0:k1, j0:j1, i0:i1] = _aligned_counts(mask, m, ((i0, i1), (j0, j1), (k0, k1)), n) / float(n ** 3)
        report(progress, 1.0, f"resampling {name}")
        _require_nonempty(weights, name)
        return weights
    lin, shift = m[:3, :3], m[:3, 3]
    ii, jj = np.arange(i0, i1, dtype=float), np.arange(j0, j1, dtype=float)
    box = (k1 - k0, j1 - j0, i1 - i0)
    counts = np.zeros(box, dtype=np.uint16)
    k_step = max(1, RESAMPLE_CHUNK_VOXELS // (box[1] * box[2]))
    for c0 in range(k0, k1, k_step):
        kk = np.arange(c0, min(k1, c0 + k_step), dtype=float)
        rows = slice(c0 - k0, c0 - k0 + kk.size)
        for di, dj, dk in subpoint_offsets(n):
            idx = [np.rint(shift[a] + lin[a, 2] * (kk[:, None, None] + dk) + lin[a, 1] * (jj[None, :, None] + dj)
                           + lin[a, 0] * (ii[None, None, :] + di)).astype(np.int64) for a in range(3)]
            counts[rows] += _lookup(mask, idx)
        report(progress, (c0 + kk.size - k0) / (k1 - k0), f"resampling {name}")
    weights[k0:k1, j0:j1, i0:i1] = counts / float(n ** 3)
    _require_nonempty(weights, name)
    return weights


def structure_on_grid(name, mask, source_grid, target_grid, role="oar", label=None, supersampling=None,
                      progress=None):
    """A :class:`Structure` on ``target_grid`` from a mask or labelmap on ``source_grid``.

    ``label``: if given, ``mask`` is a labelmap and the structure is ``mask == label``;
    otherwise non-zero voxels are inside. Weights: see :func:`resample_mask`. For the DVH it also
    records which of the m^3 sub-points of each partial voxel are inside, m =
    :func:`dvh_subdivision` (the supersampling, at most 4 and 2^24 sub-points in all).
    """
    mask = np.asarray(mask)
    if label is not None:
        mask = mask == label
        if not np.any(mask):
            raise InputError(f"structure '{name}': label {label!r} does not occur in the labelmap")
    mask = mask != 0
    weights = resample_mask(mask, source_grid, target_grid, supersampling, name, progress)
    source_cc = float(np.count_nonzero(mask)) * source_grid.voxel_volume_cc
    n = default_supersampling(source_grid, target_grid) if supersampling is None else int(supersampling)
    m = dvh_subdivision(n, np.count_nonzero((weights > 0) & (weights < 1)))
    subvoxels = _partial_subpoints(mask, source_grid, target_grid, weights, m) + (m,)
    return Structure(name, weights, target_grid, role, source_cc, subvoxels, (mask, source_grid))


def sampling_grid(mask, grid, sample_spacing_mm=DEFAULT_SAMPLE_SPACING_MM):
    """(cell grid, sub-points per axis n) of a mask's own sampling grid, cropped to the mask.

    Aligned with ``grid`` (same direction): along each axis, voxels finer than
    ``sample_spacing_mm`` (mm) are grouped b at a time (b = floor(sample / spacing), so n = b
    sub-points per axis land on the mask's voxel centres and count them exactly); coarser voxels
    are cells as they are (``Structure.sample_points`` splits interior ones). The grid covers the
    mask's bounding box.
    """
    if not (np.isfinite(sample_spacing_mm) and sample_spacing_mm > 0):
        raise InputError(f"sample spacing {sample_spacing_mm!r} mm invalid: need a finite value > 0 mm")
    ratio = float(sample_spacing_mm) / grid.spacing
    factor = np.maximum(1.0, np.floor(ratio + 1e-6))
    lo, hi = mask_box(mask)
    lo, hi = lo - 0.5, hi + 0.5  # mask box in voxel-edge units
    dims = np.ceil((hi - lo) / factor - 1e-9).astype(int)
    first_centre = lo + 0.5 * factor  # of cell 0, in mask voxel units
    origin = grid.to_ras(first_centre)
    cells = Grid(origin, grid.spacing * factor, grid.direction, tuple(int(d) for d in dims))
    n = int(min(MAX_SUPERSAMPLING, max(1.0, float(np.max(np.rint(factor))))))
    return cells, n


def structure_from_mask(name, mask, grid, role="oar", label=None, sample_spacing_mm=DEFAULT_SAMPLE_SPACING_MM,
                        progress=None):
    """A :class:`Structure` on its own sampling grid (:func:`sampling_grid`) from a mask on ``grid``.

    For the DVH from seeds: TG-43 is evaluated at its :meth:`Structure.sample_points`, wherever the
    structure lies (also outside any dose grid). A fine mask (e.g. a segment rasterised with
    oversampling) gives partial cells resolved to its voxels; a binary mask at about 1 mm gives
    one point per voxel centre. The mask is kept (``source``) for :meth:`Structure.on_grid`.

    Args:
        mask: bool (or labelmap with ``label``) ``[k, j, i]`` on ``grid``.
        grid: :class:`Grid` of the mask (any origin, spacing mm, direction).
        role: "target" or "oar".
        sample_spacing_mm: cell size (mm, about) of the sampling grid.
    """
    mask = _check_on_grid(mask, grid, name)
    if label is not None:
        mask = mask == label
        if not np.any(mask):
            raise InputError(f"structure '{name}': label {label!r} does not occur in the labelmap")
    lo, hi = mask_box(mask, name)  # InputError if empty
    mask = mask[lo[2]:hi[2] + 1, lo[1]:hi[1] + 1, lo[0]:hi[0] + 1] != 0  # only the box is converted (and copied)
    grid = Grid(grid.to_ras(lo.astype(float)), grid.spacing, grid.direction, mask.shape[::-1])
    cells, n = sampling_grid(mask, grid, sample_spacing_mm)
    s = structure_on_grid(name, mask, grid, cells, role, supersampling=n, progress=progress)
    s.source = (mask, grid)
    return s


def mask_reaches_grid(mask, mask_grid, grid):
    """True if some voxel centre of bool ``mask`` (on ``mask_grid``) lies inside ``grid``."""
    k, j, i = np.nonzero(mask)
    return bool(grid.contains(mask_grid.to_ras(np.stack([i, j, k], axis=-1))).any())


def structures_from_masks(targets, oars, grid, sample_spacing_mm=DEFAULT_SAMPLE_SPACING_MM, fine=None):
    """Targets and organs at risk as Structures on their own geometry (:func:`structure_from_mask`), for the DVH
    from seeds: ``targets`` and ``oars`` map names to bool masks ``[k, j, i]`` on ``grid``; targets first.

    ``fine``: optional name -> ``(mask, mask grid)``, a finer geometry of that structure taken instead of its mask
    (an RT Structure Set ROI's contours filled finer than the CT, ``dicomrt.rtstruct.fine_mask``).
    """
    fine = fine or {}
    return [structure_from_mask(name, *fine.get(name, (mask, grid)), role, sample_spacing_mm=sample_spacing_mm)
            for role, masks in (("target", targets), ("oar", oars)) for name, mask in masks.items()]


def dvh_subdivision(n, n_voxels):
    """Sub-points per axis recorded for the partial voxels: n, at most 2^24 sub-points in all."""
    budget = int(np.floor((MAX_DVH_SUBPOINTS / max(int(n_voxels), 1)) ** (1.0 / 3.0) + 1e-9))
    return int(max(1, min(n, budget)))


def _margin_per_grid_axis(margin_mm, grid, name):
    m = np.broadcast_to(np.asarray(margin_mm, dtype=float), (3,)).copy()
    if not np.all(np.isfinite(m)) or np.any(m < 0):
        raise InputError(f"margin {margin_mm!r} mm for '{name}' invalid: need finite values >= 0")
    if np.allclose(m, m[0]):
        return m
    a = np.abs(grid.direction)
    perm = np.argmax(a, axis=0)  # RAS axis of each grid axis
    if not np.allclose(a[perm, [0, 1, 2]], 1.0, atol=1e-6) or len(set(perm.tolist())) != 3:
        raise InputError(f"per-axis margin {m.tolist()} mm needs a grid aligned with R, A, S "
                         f"(this one is oblique: {grid.describe()}); use an isotropic margin")
    return m[perm]


def _surface_distance(region, sampling):
    """For voxels of ``region`` (bool), the distance (in the units of ``sampling``) to the region's surface.

    d is the Euclidean distance from the voxel centre to the nearest voxel centre outside the
    region (scipy ``distance_transform_edt``), h the voxel size along that direction; the
    estimate is d - h/4. The surface of a voxelised shape lies half a voxel beyond the last
    centre on average along an axis, but on curved surfaces the nearest lattice point outside
    lies deeper than the surface normal suggests; d - h/4 balances the two (on spheres of
    radius 9-15 mm: volume error < 1% with 1 mm voxels, where d alone gives -3%; see the tests).
    Zero outside ``region``; voxels on the array border are not next to a surface.
    """
    d, nearest = ndimage.distance_transform_edt(region, sampling=sampling, return_indices=True)
    delta = (nearest - np.indices(region.shape)) * sampling[:, None, None, None]
    u = delta / np.maximum(d, 1e-12)
    h = np.sqrt(np.sum((u * sampling[:, None, None, None]) ** 2, axis=0))
    return np.where(region, d - 0.25 * h, 0.0)


def expand_margin(mask, grid, margin_mm, clip_to=None, name="CTV"):
    """Boolean mask grown by a margin (mm): e.g. CTV = GTV + 5 mm.

    A voxel is added if its centre lies within the margin of the input's surface, measured
    with the Euclidean distance in mm (scipy ``distance_transform_edt`` with ``sampling`` = the
    voxel spacing, so anisotropic voxels are handled exactly; surface estimate as described in
    :func:`_surface_distance`).

    Per-axis margins ``(mR, mA, mS)`` (mm along the R-L, A-P and S-I directions) define an
    ellipsoidal structuring element: the distance is measured in the space scaled by 1/m per
    axis (EDT with ``sampling = spacing / m``) and compared with 1, i.e. a voxel offset
    (dR, dA, dS) from the surface is within the margin when (dR/mR)^2 + (dA/mA)^2 + (dS/mS)^2 <= 1.
    An axis with margin 0 is not expanded. Per-axis margins need a grid whose axes are aligned
    with R, A, S (any order or sign); isotropic margins work on any grid, oblique included.

    Args:
        mask: bool (or fractional, inside where >= 0.5) ``[k, j, i]`` on ``grid``.
        grid: :class:`Grid` of ``mask``.
        margin_mm: scalar or (mR, mA, mS) in mm, >= 0.
        clip_to: optional bool mask on ``grid`` (e.g. the body); the result is intersected with it.
        name: name for error messages.

    Returns:
        bool ``[k, j, i]`` on ``grid`` (contains the input mask).
    """
    mask = _check_on_grid(mask, grid, name)
    inside = mask >= 0.5 if mask.dtype.kind == "f" else mask != 0
    _require_nonempty(inside, name)
    m_ijk = _margin_per_grid_axis(margin_mm, grid, name)
    grown = inside.copy()
    if np.any(m_ijk > 0):
        scale = np.where(m_ijk > 0, m_ijk, 1e-6)
        sampling = (grid.spacing / scale)[::-1]  # array axes are k, j, i
        grown |= (_surface_distance(~inside, sampling) <= 1.0) & ~inside
    if clip_to is not None:
        grown &= _check_on_grid(clip_to, grid, "clip mask") != 0
    _require_nonempty(grown, name)
    return grown


def body_from_ct(ct_hu, grid, threshold_hu=DEFAULT_BODY_THRESHOLD_HU, name="Body"):
    """Body mask from a CT (HU): voxels above ``threshold_hu``, largest connected component, holes filled.

    Holes are filled in 3D and then slice by slice along K (the axial slices of a CT), so air
    inside the body (trachea, airways open at the scan ends) belongs to the body.

    Args:
        ct_hu: CT ``[k, j, i]`` in HU on ``grid``.
        grid: :class:`Grid` of the CT.
        threshold_hu: HU threshold (default -300 HU: air below, fat and tissue above).

    Returns:
        bool ``[k, j, i]`` on ``grid``.
    """
    ct = _check_on_grid(ct_hu, grid, "CT")
    above = ct > threshold_hu
    if not np.any(above):
        raise InputError(f"structure '{name}' is empty: no CT voxel above {threshold_hu:g} HU "
                         f"(CT range {float(ct.min()):g}..{float(ct.max()):g} HU)")
    labels, _ = ndimage.label(above)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    body = ndimage.binary_fill_holes(labels == int(np.argmax(sizes)))
    for k in range(body.shape[0]):
        body[k] = ndimage.binary_fill_holes(body[k])
    return body


def skin_rind(body, grid, thickness_mm=DEFAULT_SKIN_THICKNESS_MM, name="Skin"):
    """Skin: the body voxels whose centre lies within ``thickness_mm`` (mm) of the body surface.

    Distance to the surface as in :func:`_surface_distance` (Euclidean, mm, exact for
    anisotropic voxels). Body voxels on the grid border are not next to a surface (a scan cuts
    through the body; the skin is where the body meets air inside the scan).

    Args:
        body: bool ``[k, j, i]`` on ``grid``.
        grid: :class:`Grid`.
        thickness_mm: rind thickness (mm), > 0; default 5 mm.

    Returns:
        bool ``[k, j, i]`` on ``grid``.
    """
    body = _check_on_grid(body, grid, "Body") != 0
    _require_nonempty(body, "Body")
    t = float(thickness_mm)
    if not np.isfinite(t) or t <= 0:
        raise InputError(f"skin thickness {thickness_mm!r} mm invalid: need a value > 0 mm")
    if body.all():
        raise InputError(f"structure '{name}' is empty: the body fills the whole grid, it has no surface")
    skin = body & (_surface_distance(body, grid.spacing[::-1]) <= t)
    _require_nonempty(skin, name)
    return skin
