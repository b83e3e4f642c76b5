"""A 3D-printable patient template (STL) from the planned needles and the skin surface (positions in mm RAS).

The template is a plate that lies on the skin over the implant area, with a guide hole for every needle
along its planned line, a guide sleeve around each hole on the outer side (the hole is longer than the
plate, so it holds the direction), the needle label embossed beside each hole, and registration holes.

Geometry (the frame): t is the depth along the mean needle direction n (into the patient); u is the
template's column axis (:func:`~.template.default_col_axis`, the patient's S axis projected on the plate) and
v = n x u its row axis. The skin is the surface of the body mask, smoothed (Gaussian, ``SKIN_SMOOTHING_MM``)
and found along n as a height field h(u, v) (depth of the first body point); the plate occupies
h - gap - thickness <= t <= h - gap over the footprint (the holes' convex hull grown by ``margin_mm``).

The solid is an implicit function f (f < 0 inside) on a regular (u, v, t) grid of ``resolution_mm``:
plate and sleeves and labels united (min), needle and registration holes removed (max with r - distance to
the hole axis, exact for cylinders of any direction). The surface is its zero level (vtkFlyingEdges3D), so
it is closed by construction; :func:`mesh_check` counts boundary and non-manifold edges (both 0 for a
printable mesh). Hole walls are exact to second order in the resolution (about 0.01 mm at 0.2 mm).

Holes are sized for an 18G needle (outer diameter 1.27 mm) plus a diametral clearance (default 0.2 mm, a
common allowance for fused-deposition and resin printers; check your printer). Labels are read from outside
(looking along n). :func:`hole_table` lists each hole's label, direction and where its axis meets the skin
side and the outer side of the plate, and the top of its sleeve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..errors import InputError, require_range
from ..outputs import check_output
from ..progress import report
from ..vectors import unit
from .template import default_col_axis

NEEDLE_18G_OD_MM = 1.27
DEFAULT_CLEARANCE_MM = 0.2
SKIN_SMOOTHING_MM = 1.0
RAY_STEP_MM = 0.2
LABEL_MIN_HEIGHT_MM = 1.5


def _vtk():
    """The vtk module (Slicer bundles it; elsewhere ``pip install 'SeedBrachyLib[mesh]'``), imported on first use."""
    try:
        import vtk
    except ImportError as exc:
        raise InputError("the printed template needs VTK: inside Slicer it is bundled; elsewhere install it with "
                         "pip install 'SeedBrachyLib[mesh]'") from exc
    return vtk


#: Allowed values of each template dimension (mm): name -> (minimum, maximum, minimum excluded).
SETTING_RANGES = {"plate_thickness_mm": (0.0, 30.0, True), "gap_mm": (0.0, 20.0, False),
                  "needle_od_mm": (0.0, 5.0, True), "clearance_mm": (0.0, 2.0, False),
                  "sleeve_length_mm": (0.0, 50.0, False), "sleeve_wall_mm": (0.0, 10.0, True),
                  "margin_mm": (0.0, 50.0, True), "label_height_mm": (0.0, 20.0, True),
                  "label_depth_mm": (0.0, 5.0, True), "registration_diameter_mm": (0.0, 10.0, True),
                  "resolution_mm": (0.05, 0.5, False)}


@dataclass(frozen=True)
class TemplateSettings:
    """Dimensions of the printed template (mm).

    Attributes:
        plate_thickness_mm: plate thickness along the needle direction (> 0).
        gap_mm: distance between the skin and the plate's skin side (>= 0).
        needle_od_mm: needle outer diameter (18G: 1.27 mm); clearance_mm: added to it for the hole diameter.
        sleeve_length_mm: guide sleeve length beyond the plate's outer side (0: none); sleeve_wall_mm: its wall.
        margin_mm: footprint beyond the outermost holes.
        label_height_mm, label_depth_mm: embossed label character height and relief height.
        registration_diameter_mm: diameter of the three registration holes (skin marks, CT markers).
        resolution_mm: voxel size of the implicit model.
    """

    plate_thickness_mm: float = 5.0
    gap_mm: float = 0.5
    needle_od_mm: float = NEEDLE_18G_OD_MM
    clearance_mm: float = DEFAULT_CLEARANCE_MM
    sleeve_length_mm: float = 10.0
    sleeve_wall_mm: float = 1.5
    margin_mm: float = 9.0
    label_height_mm: float = 3.5
    label_depth_mm: float = 0.8
    registration_diameter_mm: float = 2.0
    resolution_mm: float = 0.2

    def __post_init__(self):
        for name, (minimum, maximum, above_minimum) in SETTING_RANGES.items():
            require_range(f"template setting {name}", getattr(self, name), "mm", minimum, maximum, above_minimum)

    @property
    def hole_diameter_mm(self):
        """Needle outer diameter + clearance (mm)."""
        return self.needle_od_mm + self.clearance_mm

    def describe(self):
        return (f"plate {self.plate_thickness_mm:g} mm thick, {self.gap_mm:g} mm off the skin; holes "
                f"{self.hole_diameter_mm:.2f} mm (needle OD {self.needle_od_mm:g} mm + {self.clearance_mm:g} mm "
                f"clearance); sleeves {self.sleeve_length_mm:g} mm long, wall {self.sleeve_wall_mm:g} mm; labels "
                f"{self.label_height_mm:g} mm high, raised {self.label_depth_mm:g} mm; registration holes "
                f"{self.registration_diameter_mm:g} mm; model resolution {self.resolution_mm:g} mm")


@dataclass
class PrintedTemplate:
    """The template: ``mesh`` (vtkPolyData, mm RAS), its holes and registration holes, settings and frame."""

    mesh: object
    holes: list
    registration: list
    settings: TemplateSettings
    frame: dict
    notes: list = field(default_factory=list)

    def write_stl(self, path, force=False, inputs=()):
        """Write the mesh as a binary STL (mm, RAS coordinates); an existing file is replaced only with ``force``
        and the output is never one of ``inputs`` (:func:`SeedBrachyLib.outputs.check_output`)."""
        out = check_output(path, "file", force, inputs)
        writer = _vtk().vtkSTLWriter()
        writer.SetFileName(str(out))
        writer.SetInputData(self.mesh)
        writer.SetFileTypeToBinary()
        if writer.Write() != 1:
            raise InputError(f"could not write the STL file {out}")
        return str(out)


@dataclass(frozen=True)
class Hole:
    """One guide hole: label, unit direction (RAS) and where its axis meets the plate (mm RAS)."""

    label: str
    direction: np.ndarray
    skin_side_mm: np.ndarray
    outer_side_mm: np.ndarray
    sleeve_top_mm: np.ndarray
    diameter_mm: float


def _needle_lines(needles):
    out = []
    for n in needles:
        needle = getattr(n, "needle", n)
        out.append((str(needle.label), np.asarray(needle.entry, float), unit(needle.tip - needle.entry,
                                                                             f"needle {needle.label}")))
    if not out:
        raise InputError("no needles given: a template needs at least one planned needle")
    labels = [lbl for lbl, _, _ in out]
    if len(set(labels)) != len(labels):
        raise InputError(f"needle labels {labels} repeat: every hole needs its own label")
    return out


def _frame(lines):
    n = unit(np.sum([d for _, _, d in lines], axis=0), "mean needle direction")
    if any(d @ n < math.cos(math.radians(60.0)) for _, _, d in lines):
        raise InputError("needle directions differ by more than 60 degrees from their mean: one plate cannot guide "
                         "them all")
    u = default_col_axis(n)
    return n, u, np.cross(n, u)


def _skin_height(body_mask, grid, n, origin, uu, vv, t_range):
    """Depth t (mm along n from the frame origin) of the smoothed skin along rays at (uu, vv); NaN where missed."""
    sigma = SKIN_SMOOTHING_MM / grid.spacing[::-1]
    smooth = ndimage.gaussian_filter(np.asarray(body_mask, dtype=np.float32), sigma)
    t = np.arange(t_range[0], t_range[1], RAY_STEP_MM)
    u_axis, v_axis = origin["u"], origin["v"]
    base = origin["point"] + uu[..., None] * u_axis + vv[..., None] * v_axis  # (..., 3)
    h = np.full(uu.shape, np.nan)
    prev = None
    for i, ti in enumerate(t):
        ijk = grid.to_ijk(base + ti * n)
        value = ndimage.map_coordinates(smooth, ijk[..., ::-1].reshape(-1, 3).T, order=1, mode="constant",
                                        cval=0.0).reshape(uu.shape)
        if prev is not None:
            cross = np.isnan(h) & (prev < 0.5) & (value >= 0.5)
            frac = (0.5 - prev[cross]) / (value[cross] - prev[cross])
            h[cross] = t[i - 1] + frac * RAY_STEP_MM
        prev = value
    return h


def _hull_inside(points_2d, uu, vv):
    """Inside the holes' convex hull, or None when the holes are fewer than 3 or in a row."""
    if len(points_2d) < 3 or np.linalg.matrix_rank(points_2d[1:] - points_2d[0], tol=1e-6) < 2:
        return None
    from scipy.spatial import ConvexHull  # here: scipy.spatial would load with the settings (lazy import)

    eq = ConvexHull(points_2d).equations
    return np.all(uu[..., None] * eq[:, 0] + vv[..., None] * eq[:, 1] + eq[:, 2] <= 0, axis=-1)


def _footprint_sdf(points_2d, uu, vv, margin):
    """2D signed distance (mm) to the footprint: the holes' convex hull (or segment) grown by ``margin``."""
    step = uu[1, 0] - uu[0, 0]
    inside = _hull_inside(points_2d, uu, vv)
    if inside is None:  # distance to the segment through the outermost holes (a point for one hole)
        c = points_2d.mean(axis=0)
        if len(points_2d) > 1 and np.ptp(points_2d, axis=0).max() > 1e-9:
            axis = points_2d[np.argmax(np.linalg.norm(points_2d - c, axis=1))] - c
            axis /= np.linalg.norm(axis)
        else:
            axis = np.array([1.0, 0.0])
        proj = (points_2d - c) @ axis
        a, b = c + proj.min() * axis, c + proj.max() * axis
        ab = b - a
        s = np.clip(((uu - a[0]) * ab[0] + (vv - a[1]) * ab[1]) / max(ab @ ab, 1e-12), 0, 1)
        return np.hypot(uu - a[0] - s * ab[0], vv - a[1] - s * ab[1]) - margin
    outside = ndimage.distance_transform_edt(~inside, sampling=step)
    return outside - margin


def _cylinder_distance(pu, pv, pt, origin_local, direction_local):
    """Distance (mm) of local points to a line (origin, unit direction) and the axial coordinate along it."""
    du, dv, dt = pu - origin_local[0], pv - origin_local[1], pt - origin_local[2]
    s = du * direction_local[0] + dv * direction_local[1] + dt * direction_local[2]
    return np.sqrt(np.maximum(du * du + dv * dv + dt * dt - s * s, 0.0)), s


def _text_triangles(text):
    vtk = _vtk()
    source = vtk.vtkVectorText()
    source.SetText(text)
    source.Update()
    poly = source.GetOutput()
    pts = np.array([poly.GetPoint(i)[:2] for i in range(poly.GetNumberOfPoints())])
    tris = np.array([[poly.GetCell(c).GetPointId(k) for k in range(3)] for c in range(poly.GetNumberOfCells())])
    return pts, tris


def _text_aspect(text):
    """Width / height of ``text`` in vtkVectorText's font."""
    pts, _ = _text_triangles(text)
    extent = pts.max(axis=0) - pts.min(axis=0)
    return float(extent[0] / max(extent[1], 1e-6))


def _text_sdf(text, height_mm, anchor_uv, step):
    """(u0, v0, 2D signed distance raster in mm) of ``text`` reading from outside, its left middle at ``anchor_uv``."""
    pts, tris = _text_triangles(text)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    scale = height_mm / max(hi[1] - lo[1], 1e-6)
    xy = (pts - [lo[0], (lo[1] + hi[1]) / 2.0]) * scale  # x from 0, y centred (mm)
    # reading from outside (looking along n): text x runs along +u, text y along -v
    width = xy[:, 0].max()
    pad = 1.0
    us = np.arange(anchor_uv[0] - pad, anchor_uv[0] + width + pad, step)
    vs = np.arange(anchor_uv[1] - height_mm / 2 - pad, anchor_uv[1] + height_mm / 2 + pad, step)
    gu, gv = np.meshgrid(us, vs, indexing="ij")
    x, y = gu - anchor_uv[0], -(gv - anchor_uv[1])
    inside = np.zeros(gu.shape, dtype=bool)
    for a, b, c in xy[tris]:
        d1 = (x - b[0]) * (a[1] - b[1]) - (a[0] - b[0]) * (y - b[1])
        d2 = (x - c[0]) * (b[1] - c[1]) - (b[0] - c[0]) * (y - c[1])
        d3 = (x - a[0]) * (c[1] - a[1]) - (c[0] - a[0]) * (y - a[1])
        neg = (d1 < 0) | (d2 < 0) | (d3 < 0)
        pos = (d1 > 0) | (d2 > 0) | (d3 > 0)
        inside |= ~(neg & pos)
    sdf = ndimage.distance_transform_edt(~inside, sampling=step) - ndimage.distance_transform_edt(inside, sampling=step)
    return us[0], vs[0], sdf


def _box_distance(points, box):
    """Distance (mm) from 2D points (N, 2) to an axis-aligned box (u0, u1, v0, v1); 0 inside."""
    du = np.maximum(np.maximum(box[0] - points[:, 0], points[:, 0] - box[1]), 0.0)
    dv = np.maximum(np.maximum(box[2] - points[:, 1], points[:, 1] - box[3]), 0.0)
    return np.hypot(du, dv)


def _place_label(label, centres, radii, idx, placed, max_height, footprint, gap=0.5):
    """Box (u0, u1, v0, v1) in mm for the label of hole ``idx``, or None if none of at least the minimum height fits."""
    aspect = _text_aspect(label)
    c, r = centres[idx], radii[idx]
    others = np.delete(np.arange(len(centres)), idx)
    height = max_height
    while height >= LABEL_MIN_HEIGHT_MM:
        w = aspect * height
        for side in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            if side[0]:
                u0 = c[0] + r + 0.6 if side[0] > 0 else c[0] - r - 0.6 - w
                box = (u0, u0 + w, c[1] - height / 2, c[1] + height / 2)
            else:
                v0 = c[1] + r + 0.6 if side[1] > 0 else c[1] - r - 0.6 - height
                box = (c[0] - w / 2, c[0] + w / 2, v0, v0 + height)
            clear = np.all(_box_distance(centres[others], box) >= radii[others] + gap) if len(others) else True
            corners = np.array([[box[0], box[2]], [box[0], box[3]], [box[1], box[2]], [box[1], box[3]]])
            apart = all(b[1] + gap <= box[0] or box[1] + gap <= b[0] or b[3] + gap <= box[2] or box[3] + gap <= b[2]
                        for b in placed)
            if clear and apart and np.all(footprint(corners) <= -gap):
                return box
        height *= 0.9
    return None


def _registration_points(points_2d, offset):
    """Three registration hole centres (u, v): ``offset`` (mm) beyond the holes farthest along three directions."""
    c = points_2d.mean(axis=0)
    picks = []
    for direction in (np.array([1.0, 0.0]), np.array([-0.5, 0.866]), np.array([-0.5, -0.866])):
        i = int(np.argmax(points_2d @ direction))
        out = points_2d[i] - c
        norm = np.linalg.norm(out)
        out = out / norm if norm > 1e-9 else direction
        picks.append(points_2d[i] + offset * out)
    return picks


def build_template(needles, body_mask, grid, settings=None, progress=None):
    """A printable template for ``needles`` (PlannedNeedle or Needle: entry, tip, label; mm RAS) on the skin of
    ``body_mask`` (bool ``[k, j, i]`` on ``grid``). Returns :class:`PrintedTemplate` (mesh in mm RAS)."""
    vtk = _vtk()
    from vtk.util import numpy_support

    s = settings or TemplateSettings()
    lines = _needle_lines(needles)
    n, u, v = _frame(lines)
    body = np.asarray(body_mask, dtype=bool)
    if body.shape != tuple(grid.shape) or not body.any():
        raise InputError(f"body mask shape {body.shape} must match the grid {tuple(grid.shape)} and not be empty")
    entries = np.array([e for _, e, _ in lines])
    centre = entries.mean(axis=0)
    origin = {"point": centre - 40.0 * n, "u": u, "v": v}  # t = 0 lies 40 mm outside the mean entry
    uv = np.array([[(e - origin["point"]) @ u, (e - origin["point"]) @ v] for e in entries])
    r_hole = s.hole_diameter_mm / 2.0
    r_sleeve = r_hole + s.sleeve_wall_mm
    label_reach = 1.2 * (r_sleeve + 0.6 + 2.2 * s.label_height_mm)
    margin = max(s.margin_mm, label_reach)
    step = s.resolution_mm
    lo2, hi2 = uv.min(axis=0) - margin - 2.0, uv.max(axis=0) + margin + 2.0
    us = np.arange(lo2[0], hi2[0] + step, step)
    vs = np.arange(lo2[1], hi2[1] + step, step)
    report(progress, 0.05, "template: skin surface")
    coarse = 1.0
    cu = np.arange(lo2[0], hi2[0] + coarse, coarse)
    cv = np.arange(lo2[1], hi2[1] + coarse, coarse)
    cuu, cvv = np.meshgrid(cu, cv, indexing="ij")
    h_coarse = _skin_height(body, grid, n, origin, cuu, cvv, (0.0, 120.0))
    uu, vv = np.meshgrid(us, vs, indexing="ij")
    fp = _footprint_sdf(uv, uu, vv, margin)
    need = fp <= 2 * step
    ci = (uu - cu[0]) / coarse
    cj = (vv - cv[0]) / coarse
    h_filled = np.where(np.isnan(h_coarse), np.nanmax(h_coarse) if np.isfinite(h_coarse).any() else 0.0, h_coarse)
    h = ndimage.map_coordinates(h_filled, [ci.ravel(), cj.ravel()], order=1, mode="nearest").reshape(uu.shape)
    missed = ndimage.map_coordinates(np.isnan(h_coarse).astype(float), [ci.ravel(), cj.ravel()], order=1,
                                     mode="nearest").reshape(uu.shape) > 0
    if np.any(missed & need):
        raise InputError("the skin surface does not cover the whole template area along the needle direction: the "
                         "body mask ends inside it (extend the CT/body, or choose a smaller margin)")
    if not np.isfinite(h_coarse).any():
        raise InputError("no skin found along the needle direction within 80 mm of the needle entries")
    top = h - s.gap_mm  # skin side of the plate (t grows into the patient)
    bottom = top - s.plate_thickness_mm  # outer side
    t_lo = float(np.min(bottom[need])) - s.sleeve_length_mm - s.label_depth_mm - 3.0
    t_hi = float(np.max(top[need])) + 2.0
    ts = np.arange(t_lo, t_hi + step, step)

    # hole axes in the local frame (u, v, t)
    to_local = np.stack([u, v, n])

    def local(p):
        return to_local @ (np.asarray(p, float) - origin["point"])

    axes = [(label, local(e), to_local @ d) for label, e, d in lines]
    surface = {}
    for label, p0, d in axes:
        sv = []
        for depth in (top, bottom):
            # solve t(s) = depth(u(s), v(s)) along the axis by fixed-point iteration on the height field
            s_val = 0.0
            for _ in range(50):
                q = p0 + s_val * d
                ref = ndimage.map_coordinates(depth, [[(q[0] - us[0]) / step], [(q[1] - vs[0]) / step]], order=1,
                                              mode="nearest")[0]
                s_new = s_val + (ref - q[2]) / d[2]
                if abs(s_new - s_val) < 1e-9:
                    break
                s_val = s_new
            sv.append(s_val)
        surface[label] = sv
    reg_uv = _registration_points(uv, margin - s.registration_diameter_mm / 2.0 - 2.0)
    reg_axes = []
    for k, (ru, rv) in enumerate(reg_uv):
        p0 = np.array([ru, rv, 0.0])
        reg_axes.append((f"R{k + 1}", p0, np.array([0.0, 0.0, 1.0])))

    # labels on the outer side beside each hole: the first of +u / -u / +v / -v, at the largest height that keeps
    # the label's box 0.5 mm clear of every hole's sleeve, of the labels already placed and of the plate's edge
    centres = np.array([(p0 + surface[lbl][1] * d)[:2] for lbl, p0, d in axes] + [p0[:2] for _, p0, _ in reg_axes])
    radii = np.array([r_sleeve] * len(axes) + [s.registration_diameter_mm / 2.0] * len(reg_axes))
    text_fields, heights, boxes = [], [], []
    for idx, (label, _, _) in enumerate(axes + reg_axes):
        box = _place_label(label, centres, radii, idx, boxes, s.label_height_mm, lambda q: ndimage.map_coordinates(
            fp, [(q[:, 0] - us[0]) / step, (q[:, 1] - vs[0]) / step], order=1, mode="nearest"))
        if box is None:
            raise InputError(f"label {label} does not fit beside its hole at {LABEL_MIN_HEIGHT_MM:g} mm or more: "
                             "holes too close for labels; use thinner sleeves, a larger margin or fewer holes")
        boxes.append(box)
        heights.append(box[3] - box[2])
        text_fields.append(_text_sdf(label, box[3] - box[2], (box[0], 0.5 * (box[2] + box[3])), step))
    text = np.full(uu.shape, np.inf)
    for u0, v0, sdf in text_fields:
        i0, j0 = int(round((u0 - us[0]) / step)), int(round((v0 - vs[0]) / step))
        i1, j1 = min(i0 + sdf.shape[0], len(us)), min(j0 + sdf.shape[1], len(vs))
        if i0 < 0 or j0 < 0:
            raise InputError("a label falls outside the template area: increase the margin")
        text[i0:i1, j0:j1] = np.minimum(text[i0:i1, j0:j1], sdf[:i1 - i0, :j1 - j0])

    report(progress, 0.2, "template: solid model")
    f = np.empty((len(ts), len(vs), len(us)), dtype=np.float32)  # [t, v, u] = [k, j, i]
    fp_t, top_t, bottom_t, text_t = fp.T, top.T, bottom.T, text.T
    cutters = [(p0, d, r_hole, surface[lbl]) for lbl, p0, d in axes]
    cutters += [(p0, d, s.registration_diameter_mm / 2.0, None) for _, p0, d in reg_axes]
    reach = int(math.ceil((max(r_sleeve, s.registration_diameter_mm / 2.0) + 2 * step) / step))
    for k, t in enumerate(ts):
        plate = np.maximum(np.maximum(t - top_t, bottom_t - t), fp_t)
        raised = np.maximum(bottom_t - s.label_depth_mm - t, t - (bottom_t + 0.5 * s.plate_thickness_mm))
        solid = np.minimum(plate, np.maximum(text_t, raised))
        for p0, d, radius, sides in cutters:  # each hole (and its sleeve) only near its axis in this slice
            q = p0 + (t - p0[2]) / d[2] * d
            i, j = int(round((q[0] - us[0]) / step)), int(round((q[1] - vs[0]) / step))
            ii, jj = slice(max(i - reach, 0), i + reach + 1), slice(max(j - reach, 0), j + reach + 1)
            dist, ax = _cylinder_distance(uu.T[jj, ii], vv.T[jj, ii], t, p0, d)
            window = solid[jj, ii]
            if sides is not None and s.sleeve_length_mm > 0:
                s_skin, s_out = sides
                sleeve = np.maximum(dist - r_sleeve, np.maximum((s_out - s.sleeve_length_mm) - ax,
                                                                ax - (s_out + 0.5 * (s_skin - s_out))))
                window = np.minimum(window, sleeve)
            solid[jj, ii] = np.maximum(window, radius - dist)
        f[k] = solid
        if k % 20 == 0:
            report(progress, 0.2 + 0.6 * k / len(ts), "template: solid model")
    f[f == 0.0] = 1e-6  # no surface exactly through a voxel corner (zero-area triangles)
    f[0], f[-1] = 1.0, 1.0
    f[:, 0, :], f[:, -1, :], f[:, :, 0], f[:, :, -1] = 1.0, 1.0, 1.0, 1.0

    report(progress, 0.85, "template: surface")
    image = vtk.vtkImageData()
    image.SetDimensions(len(us), len(vs), len(ts))
    image.SetSpacing(step, step, step)
    image.SetOrigin(us[0], vs[0], ts[0])
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(f.ravel(), deep=True, array_type=vtk.VTK_FLOAT))
    contour = vtk.vtkFlyingEdges3D()
    contour.SetInputData(image)
    contour.SetValue(0, 0.0)
    contour.ComputeNormalsOff()
    contour.ComputeGradientsOff()
    clean = vtk.vtkCleanPolyData()
    clean.SetInputConnection(contour.GetOutputPort())
    clean.PointMergingOn()  # merge points closer than 1 um: their tiny triangles would collapse in the STL's floats
    clean.ToleranceIsAbsoluteOn()
    clean.SetAbsoluteTolerance(1e-3)
    matrix = vtk.vtkMatrix4x4()
    for r in range(3):
        for c, axis in enumerate((u, v, n)):
            matrix.SetElement(r, c, axis[r])
        matrix.SetElement(r, 3, origin["point"][r])
    transform = vtk.vtkTransform()
    transform.SetMatrix(matrix)
    to_ras = vtk.vtkTransformPolyDataFilter()
    to_ras.SetInputConnection(clean.GetOutputPort())
    to_ras.SetTransform(transform)
    to_ras.Update()
    surface_only = vtk.vtkPolyData()  # cleaning turned any zero-length-edge triangle into a line: keep triangles only
    surface_only.SetPoints(to_ras.GetOutput().GetPoints())
    surface_only.SetPolys(to_ras.GetOutput().GetPolys())
    normals = vtk.vtkPolyDataNormals()
    normals.SetInputData(surface_only)
    normals.SplittingOff()
    normals.ConsistencyOn()
    normals.AutoOrientNormalsOn()
    normals.ComputeCellNormalsOn()
    normals.Update()
    mesh = vtk.vtkPolyData()
    mesh.DeepCopy(normals.GetOutput())

    def ras(q):
        return origin["point"] + q[0] * u + q[1] * v + q[2] * n

    holes = []
    for (label, p0, d), (_, _, direction) in zip(axes, lines):
        s_skin, s_out = surface[label]
        holes.append(Hole(label, direction, ras(p0 + s_skin * d), ras(p0 + s_out * d),
                          ras(p0 + (s_out - s.sleeve_length_mm) * d), s.hole_diameter_mm))
    registration = []
    for label, p0, d in reg_axes:
        q = (p0[0] - us[0]) / step, (p0[1] - vs[0]) / step
        depth = [float(ndimage.map_coordinates(x, [[q[0]], [q[1]]], order=1)[0]) for x in (top, bottom)]
        registration.append(Hole(label, n.copy(), ras(p0 + depth[0] * d), ras(p0 + depth[1] * d),
                                 ras(p0 + depth[1] * d), s.registration_diameter_mm))
    report(progress, 1.0, "template: done")
    frame = {"origin_mm": origin["point"], "u": u, "v": v, "n": n}
    notes = [f"label heights {min(heights):.1f}-{max(heights):.1f} mm (at most {s.label_height_mm:g} mm, as fits "
             f"beside each sleeve)"]
    return PrintedTemplate(mesh, holes, registration, s, frame, notes)


def mesh_check(mesh):
    """Watertightness of a vtkPolyData: dict with boundary_edges, non_manifold_edges, regions, triangles."""
    vtk = _vtk()
    edges = vtk.vtkFeatureEdges()
    edges.SetInputData(mesh)
    edges.FeatureEdgesOff()
    edges.ManifoldEdgesOff()
    edges.BoundaryEdgesOn()
    edges.NonManifoldEdgesOff()
    edges.Update()
    boundary = edges.GetOutput().GetNumberOfCells()
    edges.BoundaryEdgesOff()
    edges.NonManifoldEdgesOn()
    edges.Update()
    non_manifold = edges.GetOutput().GetNumberOfCells()
    conn = vtk.vtkPolyDataConnectivityFilter()
    conn.SetInputData(mesh)
    conn.SetExtractionModeToAllRegions()
    conn.Update()
    return {"boundary_edges": int(boundary), "non_manifold_edges": int(non_manifold),
            "regions": int(conn.GetNumberOfExtractedRegions()), "triangles": int(mesh.GetNumberOfCells())}


def hole_table(template):
    """Rows per needle and registration hole: label, direction, skin-side, outer and sleeve-top points (mm RAS),
    diameter (mm)."""
    rows = []
    for kind, holes in (("needle", template.holes), ("registration", template.registration)):
        for h in holes:
            rows.append({"label": h.label, "kind": kind, "direction": h.direction.copy(),
                         "skin_side_mm": h.skin_side_mm.copy(), "outer_side_mm": h.outer_side_mm.copy(),
                         "sleeve_top_mm": h.sleeve_top_mm.copy(), "diameter_mm": h.diameter_mm})
    return rows


def table_lines(template):
    """Text lines of :func:`hole_table` with units, for the report."""
    lines = [f"Printed template: {template.settings.describe()}",
             "  label  kind           direction (RAS)           skin side (mm RAS)       outer side (mm RAS)"]
    for r in hole_table(template):
        d, a, b = r["direction"], r["skin_side_mm"], r["outer_side_mm"]
        lines.append(f"  {r['label']:>5}  {r['kind']:<12} ({d[0]:+.3f}, {d[1]:+.3f}, {d[2]:+.3f})  "
                     f"({a[0]:7.1f}, {a[1]:7.1f}, {a[2]:7.1f})  ({b[0]:7.1f}, {b[1]:7.1f}, {b[2]:7.1f})")
    return lines
