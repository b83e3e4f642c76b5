"""Needle template and needle paths with obstacle avoidance (positions in mm RAS).

A template is a plane of holes on a square grid (spacing default 10 mm). Hole
``(row, col)`` sits at ``center + (col - c0) * s * col_axis + (row - r0) * s * row_axis``
with ``row_axis = normal x col_axis``; it is labelled with a column letter and a row
number, e.g. ``"C4"`` (letters skip I and O). Needles go through the holes along the
template normal (parallel needles), or the user gives a non-coplanar set of paths.

:func:`plan_needles` keeps the paths that cross the CTV and rejects any whose part
inside the body (skin entry to tip) comes closer than a safety margin (default 3 mm)
to a no-go structure (bone from a CT threshold, vessels or OARs the user marks); a
needle whose far end would enter the margin stops short of it (its tip moves back).
Distances come from a Euclidean distance transform on the structure's own grid
(voxel spacing in mm, so anisotropic voxels are exact), interpolated along the path
and reduced by half the largest voxel size: the distance to the structure's voxel edge,
never overestimated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..seeds import Needle
from ..vectors import unit

COLUMN_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
DEFAULT_HOLE_SPACING_MM = 10.0
DEFAULT_SAFETY_MARGIN_MM = 3.0
DEFAULT_BONE_THRESHOLD_HU = 300.0
#: Side the needles enter from -> needle direction (RAS unit vector, entry -> tip).
NEEDLE_ENTRY_DIRECTIONS = MappingProxyType({"right": (-1.0, 0.0, 0.0), "left": (1.0, 0.0, 0.0),
                                            "anterior": (0.0, -1.0, 0.0), "posterior": (0.0, 1.0, 0.0)})


@dataclass(frozen=True)
class Template:
    """A plane of needle holes.

    Attributes:
        center: RAS (mm) of the hole grid centre.
        normal: insertion direction (unit vector, RAS), perpendicular to the plane.
        col_axis: in-plane direction of increasing column letter (made orthogonal to ``normal``).
        spacing_mm: hole spacing (mm), > 0.
        n_rows, n_cols: hole counts (rows numbered 1.., columns lettered A..).
    """

    center: np.ndarray
    normal: np.ndarray
    col_axis: np.ndarray
    spacing_mm: float = DEFAULT_HOLE_SPACING_MM
    n_rows: int = 7
    n_cols: int = 7

    def __post_init__(self):
        normal = unit(self.normal, "template normal")
        col = np.asarray(self.col_axis, dtype=float).reshape(3)
        col = unit(col - (col @ normal) * normal, "template column axis (parallel to the normal?)")
        if not (np.isfinite(self.spacing_mm) and self.spacing_mm > 0):
            raise InputError(f"template hole spacing {self.spacing_mm!r} mm invalid: must be > 0")
        if not (1 <= self.n_cols <= len(COLUMN_LETTERS)) or self.n_rows < 1:
            raise InputError(f"template size {self.n_rows} rows x {self.n_cols} columns invalid: "
                             f"need >= 1 row and 1..{len(COLUMN_LETTERS)} columns")
        object.__setattr__(self, "center", np.asarray(self.center, dtype=float).reshape(3))
        object.__setattr__(self, "normal", normal)
        object.__setattr__(self, "col_axis", col)
        object.__setattr__(self, "spacing_mm", float(self.spacing_mm))

    @property
    def row_axis(self):
        """In-plane direction of increasing row number: normal x col_axis."""
        return np.cross(self.normal, self.col_axis)

    @staticmethod
    def label(row, col):
        """Hole label: column letter + row number (1-based), e.g. (3, 2) -> "C4"."""
        return f"{COLUMN_LETTERS[col]}{row + 1}"

    def hole(self, row, col):
        """RAS (mm) of hole (row, col), 0-based indices."""
        r0, c0 = (self.n_rows - 1) / 2.0, (self.n_cols - 1) / 2.0
        return (self.center + (col - c0) * self.spacing_mm * self.col_axis
                + (row - r0) * self.spacing_mm * self.row_axis)

    def holes(self):
        """All holes as (label, RAS mm), row by row."""
        return [(self.label(r, c), self.hole(r, c)) for r in range(self.n_rows) for c in range(self.n_cols)]

    def paths(self):
        """Parallel needle paths, one per hole, along the template normal."""
        return [NeedlePath(lbl, pos, self.normal, hole=pos) for lbl, pos in self.holes()]


def default_col_axis(normal):
    """Column axis for a template facing ``normal``: the patient's S axis projected on the plane (A if parallel)."""
    normal = unit(normal, "template normal")
    for axis in ([0.0, 0.0, 1.0], [0.0, 1.0, 0.0]):
        a = np.asarray(axis)
        proj = a - (a @ normal) * normal
        if np.linalg.norm(proj) > 0.1:
            return proj / np.linalg.norm(proj)
    raise AssertionError("unreachable: S and A cannot both be parallel to the normal")


def template_for_target(target_mask, grid, direction, body_mask=None, spacing_mm=DEFAULT_HOLE_SPACING_MM,
                        margin_holes=1, standoff_mm=5.0):
    """A template facing ``direction`` that covers the target's projection.

    The plane is perpendicular to ``direction`` and sits ``standoff_mm`` (mm) before the
    body's (or the target's) first point along it; the hole grid is centred on the
    target's centroid and spans its projected extent plus ``margin_holes`` holes each side.

    Args:
        target_mask: bool ``[k, j, i]`` on ``grid`` (the CTV).
        grid: :class:`Grid` of the masks.
        direction: needle insertion direction (RAS vector).
        body_mask: optional bool ``[k, j, i]`` body on ``grid``.
        spacing_mm: hole spacing (mm).
    """
    normal = unit(direction, "needle direction")
    target = _mask_points(target_mask, grid, "target")
    col = default_col_axis(normal)
    row = np.cross(normal, col)
    c = target.mean(axis=0)
    rel = target - c
    if not (isinstance(spacing_mm, (int, float, np.number)) and np.isfinite(spacing_mm) and spacing_mm > 0):
        raise InputError(f"template hole spacing {spacing_mm!r} mm invalid: must be > 0")
    half = max(np.abs(rel @ col).max(), np.abs(rel @ row).max())
    n = 2 * (int(np.ceil(half / spacing_mm)) + int(margin_holes)) + 1
    if n > len(COLUMN_LETTERS):
        fits = np.ceil(10.0 * half / max((len(COLUMN_LETTERS) - 1) // 2 - int(margin_holes), 1)) / 10.0  # mm
        raise InputError(f"template hole spacing {spacing_mm:g} mm: the target spans {2 * half:.1f} mm across the "
                         f"needles, which needs {n} x {n} holes at that spacing; a template has at most "
                         f"{len(COLUMN_LETTERS)} columns: use a spacing of at least {fits:.1f} mm")
    front = _mask_points(body_mask, grid, "body") if body_mask is not None else target
    depth = float((front @ normal).min()) - float(standoff_mm)
    center = c + (depth - c @ normal) * normal
    return Template(center, normal, col, spacing_mm, n, n)


def _mask_points(mask, grid, name):
    mask = np.asarray(mask)
    if mask.shape != tuple(grid.shape):
        raise InputError(f"{name} mask shape {mask.shape} does not match the grid shape {tuple(grid.shape)}")
    idx = np.argwhere(mask)
    if idx.size == 0:
        raise InputError(f"{name} mask is empty: it has no voxel inside")
    return grid.to_ras(idx[:, ::-1])


@dataclass(frozen=True)
class NeedlePath:
    """A straight line a needle may follow: through ``origin`` (mm RAS) along ``direction``."""

    label: str
    origin: np.ndarray
    direction: np.ndarray
    hole: np.ndarray | None = None

    def __post_init__(self):
        object.__setattr__(self, "origin", np.asarray(self.origin, dtype=float).reshape(3))
        object.__setattr__(self, "direction", unit(self.direction, f"needle {self.label} direction"))


def paths_from_points(entries, targets, labels=None):
    """Non-coplanar needle paths from user points: each from ``entries[n]`` towards ``targets[n]`` (mm RAS)."""
    entries = np.asarray(entries, dtype=float).reshape(-1, 3)
    targets = np.asarray(targets, dtype=float).reshape(-1, 3)
    if len(entries) != len(targets):
        raise InputError(f"{len(entries)} needle entry points but {len(targets)} target points: need one each")
    labels = labels or [f"N{n + 1}" for n in range(len(entries))]
    return [NeedlePath(lbl, e, t - e) for lbl, e, t in zip(labels, entries, targets)]


@dataclass
class PlannedNeedle:
    """A needle kept by :func:`plan_needles`.

    Attributes:
        needle: :class:`~SeedBrachyLib.seeds.Needle` from the skin entry to the tip (mm RAS),
            labelled with the template hole (e.g. "C4") or the user's label.
        hole: template hole position (mm RAS) or None for user paths.
        ctv_start_mm, ctv_end_mm: distance (mm) from the entry where the needle enters and
            leaves the CTV; the tip is at ``ctv_end_mm``.
        clearance_mm: smallest distance (mm) from the path inside the body to a no-go
            structure (inf if none given).
        nearest_structure: name of that structure ("" if none).
        shortened: True if the tip stops before the CTV's far side to keep the safety margin.
    """

    needle: Needle
    hole: np.ndarray | None
    ctv_start_mm: float
    ctv_end_mm: float
    clearance_mm: float = float("inf")
    nearest_structure: str = ""
    shortened: bool = False

    @property
    def label(self):
        return self.needle.label

    def point_at(self, depth_mm):
        """RAS (mm) at ``depth_mm`` (mm) from the skin entry along the needle."""
        return self.needle.entry + np.asarray(depth_mm, dtype=float)[..., None] * self.needle.direction


@dataclass
class NeedleSet:
    """Result of :func:`plan_needles`: kept needles and the rejected ones with the reason."""

    needles: list
    rejected: list = field(default_factory=list)  # (label, reason)
    missed: list = field(default_factory=list)  # labels of paths that do not cross the CTV


def _line_box(grid, origin, direction):
    """Parameter range [t0, t1] (mm) where origin + t * direction is inside the grid's extent."""
    o = grid.to_ijk(origin)
    d = (direction @ grid.direction) / grid.spacing
    lo, hi = -0.5, np.asarray(grid.dims) - 0.5
    t0, t1 = -np.inf, np.inf
    for a in range(3):
        if abs(d[a]) < 1e-12:
            if not lo <= o[a] <= hi[a]:
                return None
            continue
        ta, tb = sorted(((lo - o[a]) / d[a], (hi[a] - o[a]) / d[a]))
        t0, t1 = max(t0, ta), min(t1, tb)
    return (t0, t1) if t1 > t0 else None


def nogo_masks_from_ct(ct_hu, grid, bone_threshold_hu=DEFAULT_BONE_THRESHOLD_HU, user_masks=None):
    """No-go structures: ``{"Bone": CT >= bone_threshold_hu (HU)}`` plus the user's masks (name -> bool [k,j,i])."""
    ct = np.asarray(ct_hu)
    if ct.shape != tuple(grid.shape):
        raise InputError(f"CT shape {ct.shape} does not match the grid shape {tuple(grid.shape)}")
    masks = {"Bone": ct >= bone_threshold_hu}
    masks.update(user_masks or {})
    return masks


def plan_needles(paths, ctv_mask, body_mask, grid, nogo_masks=None, margin_mm=DEFAULT_SAFETY_MARGIN_MM,
                 step_mm=None):
    """Keep the needle paths that cross the CTV and stay ``margin_mm`` clear of every no-go structure.

    Each path is sampled every ``step_mm`` (default half the smallest voxel size). The skin
    entry is the first sample inside the body, the tip the last sample inside the CTV that
    the needle reaches before coming within ``margin_mm`` (mm) of a no-go structure: a
    needle whose far end would enter the margin is shortened (``shortened`` True), one that
    meets the margin before reaching the CTV is rejected, as is one that reaches the CTV
    without entering the body. Paths that miss the CTV are listed in ``missed``.

    Args:
        paths: list of :class:`NeedlePath` (``Template.paths()`` or :func:`paths_from_points`).
        ctv_mask, body_mask: bool ``[k, j, i]`` on ``grid``.
        grid: :class:`Grid` of all masks.
        nogo_masks: dict name -> bool ``[k, j, i]`` on ``grid`` (e.g. :func:`nogo_masks_from_ct`).
        margin_mm: safety margin (mm), >= 0.

    Returns:
        :class:`NeedleSet`.
    """
    if not (np.isfinite(margin_mm) and margin_mm >= 0):
        raise InputError(f"safety margin {margin_mm!r} mm invalid: must be >= 0 mm")
    ctv = np.asarray(ctv_mask, dtype=bool)
    body = np.asarray(body_mask, dtype=bool)
    for name, m in (("CTV", ctv), ("body", body)):
        if m.shape != tuple(grid.shape):
            raise InputError(f"{name} mask shape {m.shape} does not match the grid shape {tuple(grid.shape)}")
    if not ctv.any():
        raise InputError("CTV mask is empty: it has no voxel inside")
    step = float(step_mm) if step_mm else 0.5 * float(grid.spacing.min())
    result = NeedleSet([])
    traced = []
    for path in paths:
        box = _line_box(grid, path.origin, path.direction)
        t = np.arange(box[0], box[1], step) if box is not None else np.zeros(0)
        pts = path.origin + t[:, None] * path.direction
        in_ctv = grid.mask_at(ctv, pts)
        if not in_ctv.any():
            result.missed.append(path.label)
            continue
        first_ctv = int(np.flatnonzero(in_ctv)[0])
        body_before = np.flatnonzero(grid.mask_at(body, pts[:first_ctv + 1]))
        if body_before.size == 0:
            result.rejected.append((path.label, "reaches the CTV without entering the body"))
            continue
        entry, end = int(body_before[0]), int(np.flatnonzero(in_ctv)[-1]) + 1
        traced.append((path, t[entry:end], pts[entry:end], in_ctv[entry:end]))
    distances = _distances([p for _, _, p, _ in traced], grid, nogo_masks or {}, margin_mm)
    for (path, t, pts, in_ctv), (dist, names) in zip(traced, distances):
        unsafe = np.flatnonzero(dist < margin_mm)
        stop = int(unsafe[0]) if unsafe.size else len(t)
        reachable = np.flatnonzero(in_ctv[:stop])
        if reachable.size == 0:
            i = stop
            result.rejected.append((path.label, f"passes {max(float(dist[i]), 0.0):.1f} mm from {names[i]} "
                                                f"before reaching the CTV (safety margin {margin_mm:g} mm)"))
            continue
        tip = int(reachable[-1])
        i = int(np.argmin(dist[:tip + 1]))
        needle = Needle(pts[0], pts[tip], path.label)
        t_in = float(t[int(reachable[0])] - t[0])
        result.needles.append(PlannedNeedle(needle, path.hole, t_in, float(t[tip] - t[0]), float(dist[i]),
                                            names[i], shortened=bool(unsafe.size and in_ctv[stop:].any())))
    return result


def _distances(segments, grid, nogo_masks, margin_mm):
    """Per segment (points (n, 3) mm RAS): distance (mm) of each point to the nearest no-go structure and its name."""
    out = [(np.full(len(seg), np.inf), [""] * len(seg)) for seg in segments]
    if not segments or not nogo_masks:
        return out
    ijk = grid.to_ijk(np.concatenate(segments))
    pad = np.ceil((margin_mm + 2.0 * grid.spacing.max()) / grid.spacing)
    lo = np.maximum(np.floor(ijk.min(axis=0) - pad), 0).astype(int)
    hi = np.minimum(np.ceil(ijk.max(axis=0) + pad) + 1, np.asarray(grid.dims)).astype(int)
    crop = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
    half_voxel = 0.5 * float(grid.spacing.max())
    for name, mask in nogo_masks.items():
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != tuple(grid.shape):
            raise InputError(f"no-go structure '{name}' mask shape {mask.shape} does not match the grid "
                             f"shape {tuple(grid.shape)}")
        sub = mask[crop]
        if not sub.any():
            continue
        edt = ndimage.distance_transform_edt(~sub, sampling=grid.spacing[::-1])
        for seg, (dist, names) in zip(segments, out):
            local = (grid.to_ijk(seg) - lo)[:, ::-1].T  # (k, j, i) coordinates in the crop
            d = ndimage.map_coordinates(edt, local, order=1, mode="nearest") - half_voxel
            closer = d < dist
            dist[closer] = d[closer]
            for i in np.flatnonzero(closer):
                names[i] = name
    return out
