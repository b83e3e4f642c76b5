"""CT phantoms for testing registration, built without the registration code's assumptions.

The anatomy is painted once on a fine axis-aligned canvas in the anatomy (= pre-plan) frame, from
simple solids with a soft (partial-volume) edge: a thorax with a spine of vertebrae repeating along
S every ``period_mm`` (bodies, discs, arches, spinous processes, a pair of ribs each), lungs, heart,
aorta, trachea, sternum, scapulae and a mediastinal lymph node (the target); or a pelvis (iliac
wings, sacrum, femoral heads, bladder) as an unrelated image. A scan of it is any grid (spacing,
oblique direction, z range) in any frame: each voxel averages the canvas over the slice thickness
(a box profile, sampled by sub-slices) at the voxel's anatomical position; seeds (titanium capsules,
rendered by the project's synthetic CT) and their streaks go into the post-implant scan; noise last.
The pre-plan is contrast-enhanced (vessels and heart ~200 HU), the post-implant is not.

Coordinates: mm, RAS (R = +x, A = +y, S = +z). ``post_to_pre`` (4x4) maps a post-implant frame point
to the same anatomical point in the pre-plan frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from SeedBrachyLib.grid import Grid
from SeedBrachyLib.itk_image import resample
from SeedBrachyLib.synthetic.phantom import HU as NECK_HU
from SeedBrachyLib.synthetic.post_implant_ct import SEED_DIAMETER_MM, SEED_LENGTH_MM, random_implant, render_capsule

EDGE_MM = 0.4  # partial-volume edge width of every solid
TARGET = np.array([-35.0, 10.0, 20.0])  # mediastinal (right paratracheal) node centre, mm RAS


# The neck phantom is invariant along S apart from the node, and the node is full of seeds (masked
# out of the metric): a real neck has anatomy that changes along S. These soft-edged ellipsoids (mm,
# RAS; HU added) give the test images that, identically in both CTs.
NECK_LANDMARKS = [
    ((-35.0, 10.0, -30.0), (6.0, 8.0, 10.0), -130.0),  # fat lobule
    ((-25.0, -5.0, 25.0), (5.0, 5.0, 8.0), 60.0),
    ((15.0, 30.0, -10.0), (7.0, 5.0, 6.0), 80.0),  # thyroid-like
    ((-40.0, -10.0, 5.0), (4.0, 4.0, 12.0), 300.0),  # calcified
    ((30.0, -25.0, 30.0), (6.0, 5.0, 7.0), -120.0),
    ((45.0, 20.0, -30.0), (5.0, 5.0, 6.0), 70.0),
]


def neck_landmarks(ct, grid):
    """``ct`` (HU [k, j, i] on ``grid``) as float32 with :data:`NECK_LANDMARKS` added (HU)."""
    out = ct.astype(np.float32)
    pts = grid.points()
    for center, semi, hu in NECK_LANDMARKS:
        r = np.linalg.norm((pts - center) / semi, axis=-1)  # 1 on the surface
        out += hu / (1.0 + np.exp((r - 1.0) * min(semi) / 0.5))  # ~0.5 mm edge (partial volume)
    return out


# A cervical spine for the neck phantom, whose vertebral body is one bone cylinder along S: discs (mm: centre
# along S; 4 mm thick, ~80 HU) cut it into vertebrae of unequal heights (15-17 mm, so no shift by one vertebra
# fits), and each vertebra gets a spinous process behind the cord (mm: half-width R-L), as in a real neck.
NECK_DISCS_MM = (-41.0, -25.0, -10.0, 6.0, 23.0, 40.0)
NECK_SPINOUS_HALF_WIDTH_MM = (3.0, 4.5, 3.5, 5.0, 4.0)
DISC_HU, DISC_HALF_MM = 80.0, 2.0


def _soft_inside(r, scale_mm):
    """~1 inside (``r`` < 1, a normalised radius), ~0 outside: a logistic edge ~0.5 mm wide at the scale ``scale_mm``
    (mm per unit of ``r``)."""
    return 1.0 / (1.0 + np.exp(np.clip((r - 1.0) * scale_mm / 0.5, -50.0, 50.0)))


def neck_vertebrae(ct, grid):
    """``ct`` (HU [k, j, i] on ``grid``, the neck phantom's anatomy frame) as float32 with the discs and spinous
    processes of :data:`NECK_DISCS_MM` painted into its vertebral body (bone above 400 HU within 16 mm of the
    spine's axis, x = 0, y = -20 mm, only: seeds elsewhere are left alone)."""
    out = ct.astype(np.float32)
    pts = grid.points()
    x, y, z = pts[..., 0], pts[..., 1], pts[..., 2]
    bone = np.clip((out - 400.0) / 200.0, 0.0, 1.0) * (np.hypot(x, y + 20.0) <= 16.0)
    for zc in NECK_DISCS_MM:
        out -= (out - DISC_HU) * bone * _soft_inside(np.abs(z - zc) / DISC_HALF_MM, DISC_HALF_MM)
    for lo, hi, half in zip(NECK_DISCS_MM[:-1], NECK_DISCS_MM[1:], NECK_SPINOUS_HALF_WIDTH_MM):
        semi = np.array([half, 3.0, (hi - lo) / 2.0 - DISC_HALF_MM - 1.0])
        r = np.linalg.norm((pts - [0.0, -45.0, (lo + hi) / 2.0]) / semi, axis=-1)
        out += (NECK_HU["bone"] - out) * _soft_inside(r, semi.min())
    return out


def rigid(rotvec_deg, shift_mm, about=(0.0, 0.0, 0.0)):
    """4x4 RAS rigid map: rotation (rotation vector, degrees) about point ``about`` (mm), then ``shift_mm``."""
    m = np.eye(4)
    r = Rotation.from_rotvec(np.radians(rotvec_deg)).as_matrix()
    about = np.asarray(about, float)
    m[:3, :3] = r
    m[:3, 3] = about - r @ about + np.asarray(shift_mm, float)
    return m


def apply(matrix, points):
    """4x4 matrix applied to points (..., 3)."""
    return np.asarray(points, float) @ matrix[:3, :3].T + matrix[:3, 3]


class Canvas:
    """HU on an axis-aligned RAS grid; solids are painted with a soft edge (signed distance / EDGE_MM)."""

    def __init__(self, lo, hi, step_mm):
        self.step = float(step_mm)
        self.lo = np.asarray(lo, float)
        n = np.ceil((np.asarray(hi, float) - self.lo) / self.step).astype(int) + 1
        self.axes = [self.lo[a] + self.step * np.arange(n[a]) for a in range(3)]
        self.values = np.full(tuple(n[::-1]), -1000.0, np.float32)
        self.grid = Grid(self.lo, [self.step] * 3, np.eye(3), tuple(n))

    def paint(self, lo, hi, distance, hu):
        """Paint ``hu`` where ``distance(x, y, z)`` (mm, < 0 inside; broadcast arrays) is negative, inside the box."""
        idx = []
        for a in range(3):
            i0 = int(np.searchsorted(self.axes[a], lo[a] - 2.0))
            i1 = int(np.searchsorted(self.axes[a], hi[a] + 2.0))
            if i1 <= i0:
                return
            idx.append(slice(i0, i1))
        x = self.axes[0][idx[0]][None, None, :]
        y = self.axes[1][idx[1]][None, :, None]
        z = self.axes[2][idx[2]][:, None, None]
        s = 0.5 * (1.0 - np.tanh(np.clip(distance(x, y, z), -20.0, 20.0) / EDGE_MM))
        block = self.values[idx[2], idx[1], idx[0]]
        self.values[idx[2], idx[1], idx[0]] = block * (1.0 - s) + np.float32(hu) * s


def _ellipsoid(c, semi, rot=None):
    c, semi = np.asarray(c, float), np.asarray(semi, float)
    rot = np.eye(3) if rot is None else rot

    def distance(x, y, z):
        d = [x - c[0], y - c[1], z - c[2]]
        local = [rot[0, a] * d[0] + rot[1, a] * d[1] + rot[2, a] * d[2] for a in range(3)]
        q = sum((local[a] / semi[a]) ** 2 for a in range(3))
        return (np.sqrt(q) - 1.0) * semi.min()

    reach = semi.max()
    return c - reach, c + reach, distance


def _cylinder(cx, cy, a, b, z0, z1):
    """Elliptic cylinder along S (semi-axes a, b mm) between z0 and z1."""

    def distance(x, y, z):
        radial = (np.sqrt(((x - cx) / a) ** 2 + ((y - cy) / b) ** 2) - 1.0) * min(a, b)
        return np.maximum(radial, np.abs(z - 0.5 * (z0 + z1)) - 0.5 * (z1 - z0))

    return np.array([cx - a, cy - b, z0]), np.array([cx + a, cy + b, z1]), distance


@dataclass
class Thorax:
    """A thorax's dimensions (mm, HU); ``patient`` draws a different person."""

    half_width: float = 165.0
    half_depth: float = 110.0
    period_mm: float = 27.0
    vertebra_radius: float = 19.0
    spine_y: float = -55.0
    z_range: tuple = (-150.0, 150.0)
    heart_center: tuple = (20.0, 25.0, -70.0)
    node_center: tuple = tuple(TARGET)
    contrast_hu: float = 200.0

    @classmethod
    def patient(cls, seed):
        """Another thorax: dimensions, spine and organ positions drawn at random (deterministic in ``seed``)."""
        rng = np.random.default_rng(seed)
        return cls(half_width=rng.uniform(140, 190), half_depth=rng.uniform(90, 130),
                   period_mm=rng.uniform(22, 32), vertebra_radius=rng.uniform(15, 23),
                   spine_y=rng.uniform(-70, -45),
                   heart_center=(rng.uniform(0, 40), rng.uniform(10, 40), rng.uniform(-100, -40)),
                   node_center=(rng.uniform(-50, 50), rng.uniform(-10, 30), rng.uniform(-20, 60)))

    def paint(self, canvas, contrast=True):
        """Paint the thorax onto ``canvas`` (pre-plan contrast in vessels and heart when ``contrast``)."""
        z0, z1 = self.z_range
        blood = self.contrast_hu if contrast else 45.0
        a, b = self.half_width, self.half_depth
        canvas.paint(*_cylinder(0, 0, a, b, z0, z1), -90.0)  # fat
        canvas.paint(*_cylinder(0, 0, a - 12, b - 10, z0, z1), 45.0)  # muscle, soft tissue
        for side in (-1, 1):  # lungs: narrower at the apex, the dome of the diaphragm at the base
            canvas.paint(*_ellipsoid((side * 0.45 * a, 5.0, 20.0), (0.36 * a, 0.7 * b, 140.0)), -850.0)
        canvas.paint(*_ellipsoid(self.heart_center, (0.38 * a, 0.45 * b, 55.0)), blood)
        canvas.paint(*_cylinder(25.0, self.spine_y + 25, 12, 12, z0, 40.0), blood)  # descending aorta
        canvas.paint(*_ellipsoid((10.0, 10.0, 45.0), (35.0, 14.0, 12.0)), blood)  # aortic arch
        canvas.paint(*_cylinder(0, 25.0, 9, 8, -10.0, z1), -1000.0)  # trachea
        canvas.paint(*_cylinder(0, b - 14, 16, 6, -130.0, 60.0), 500.0)  # sternum
        for side in (-1, 1):  # scapulae
            rot = Rotation.from_rotvec([0.0, 0.0, side * 0.5]).as_matrix()
            canvas.paint(*_ellipsoid((side * 0.6 * a, self.spine_y - 15, 60.0), (45.0, 5.0, 70.0), rot), 700.0)
        canvas.paint(*_ellipsoid(self.node_center, (12.0, 11.0, 13.0)), 60.0)  # the target node
        k0, k1 = int(np.floor(z0 / self.period_mm)), int(np.ceil(z1 / self.period_mm))
        for k in range(k0, k1 + 1):
            self._vertebra(canvas, k * self.period_mm, k)

    def _vertebra(self, canvas, zc, k):
        r = self.vertebra_radius * (1.0 - 0.004 * zc / 10.0)  # vertebrae grow caudally
        h = 0.78 * self.period_mm
        y = self.spine_y
        canvas.paint(*_cylinder(0, y, r, 0.8 * r, zc - h / 2, zc + h / 2), 1000.0)  # cortex
        canvas.paint(*_cylinder(0, y, r - 1.5, 0.8 * r - 1.5, zc - h / 2 + 1.5, zc + h / 2 - 1.5), 230.0)
        canvas.paint(*_cylinder(0, y, r, 0.8 * r, zc + h / 2, zc + self.period_mm - h / 2), 90.0)  # disc
        canvas.paint(*_cylinder(0, y - 0.8 * r - 12, 15, 13, zc - h / 2 + 2, zc + h / 2 - 2), 800.0)  # arch
        canvas.paint(*_cylinder(0, y - 0.8 * r - 12, 8, 7, zc - h / 2, zc + h / 2), 35.0)  # canal, cord
        canvas.paint(*_ellipsoid((0, y - 0.8 * r - 34, zc - 6), (5.0, 13.0, 8.0)), 800.0)  # spinous process
        ar, br = self.half_width - 22, self.half_depth - 18

        def rib(x, yy, z):  # an elliptic band around the body, descending anteriorly, not meeting in front
            ring = np.abs(np.sqrt((x / ar) ** 2 + (yy / br) ** 2) - 1.0) * br - 3.5
            height = np.abs(z - (zc - 0.22 * (yy - y))) - 4.5
            return np.maximum(np.maximum(ring, height), yy - 0.55 * br)

        lo = np.array([-ar - 5, -br - 5, zc - 0.22 * (0.55 * br - y) - 10])
        hi = np.array([ar + 5, 0.55 * br + 5, zc + 0.22 * (br + y) + 10])
        canvas.paint(lo, hi, rib, 650.0)


def pelvis(canvas):
    """Paint a pelvis (unrelated anatomy for the thorax): body, iliac wings, sacrum, femoral heads, bladder."""
    canvas.paint(*_cylinder(0, 0, 175, 120, -150.0, 150.0), -90.0)
    canvas.paint(*_cylinder(0, 0, 160, 108, -150.0, 150.0), 40.0)
    for side in (-1, 1):
        rot = Rotation.from_rotvec([0.0, side * 0.35, side * 0.6]).as_matrix()
        canvas.paint(*_ellipsoid((side * 95.0, -20.0, 60.0), (55.0, 8.0, 60.0), rot), 700.0)
        canvas.paint(*_ellipsoid((side * 95.0, 5.0, -60.0), (24.0, 24.0, 24.0)), 700.0)
        canvas.paint(*_cylinder(side * 110.0, 0.0, 14, 14, -150.0, -70.0), 800.0)
    canvas.paint(*_ellipsoid((0.0, -75.0, 40.0), (40.0, 14.0, 55.0)), 600.0)  # sacrum
    canvas.paint(*_ellipsoid((0.0, 45.0, -30.0), (50.0, 40.0, 40.0)), 10.0)  # bladder
    canvas.paint(*_cylinder(0.0, -50.0, 14, 12, -150.0, 30.0), -600.0)  # rectum with gas


def canvas_for(anatomy="thorax", step_mm=1.0, patient=None, contrast=True, z_range=(-150.0, 150.0)):
    """A painted canvas: "thorax" (``patient``: a :class:`Thorax`, default the standard one) or "pelvis"."""
    thorax = patient or Thorax()
    canvas = Canvas([-200.0, -140.0, z_range[0]], [200.0, 140.0, z_range[1]], step_mm)
    if anatomy == "pelvis":
        pelvis(canvas)
    else:
        thorax.paint(canvas, contrast=contrast)
    return canvas


def scan(canvas, grid, post_to_pre=None, slice_thickness_mm=None, noise_hu=15.0, rng=None):
    """CT (HU, float32 [k, j, i]) of the canvas on ``grid`` in a frame related to the canvas by ``post_to_pre``.

    Each voxel averages the canvas over a box slice profile of ``slice_thickness_mm`` (default the K
    spacing) along K, sampled by sub-slices no more than half a canvas step apart.
    """
    thickness = float(grid.spacing[2] if slice_thickness_mm is None else slice_thickness_mm)
    n_sub = max(1, int(np.ceil(thickness / (0.5 * canvas.step))))
    offsets = ((np.arange(n_sub) + 0.5) / n_sub - 0.5) * thickness
    matrix = np.eye(4) if post_to_pre is None else np.asarray(post_to_pre, float)
    out = np.zeros(grid.shape, np.float32)
    for offset in offsets:
        shifted = Grid(grid.origin + grid.direction[:, 2] * offset, grid.spacing, grid.direction, grid.dims)
        out += resample(canvas.values, canvas.grid, shifted, matrix, "linear", -1000.0)
    out /= n_sub
    if noise_hu > 0:
        rng = rng or np.random.default_rng(0)
        out += rng.normal(0.0, noise_hu, out.shape).astype(np.float32)
    return out


def add_seeds(ct, grid, seeds_post, slice_thickness_mm=None, capsule_hu=16000.0, streak_hu=250.0, max_hu=3071.0):
    """Seeds (list of (centre, axis), post-implant frame, mm) rendered into ``ct`` in place, with streaks."""
    thickness = float(grid.spacing[2] if slice_thickness_mm is None else slice_thickness_mm)
    values = ct.astype(np.float64)
    for center, axis in seeds_post:
        render_capsule(values, grid, center, axis, SEED_LENGTH_MM, SEED_DIAMETER_MM, capsule_hu, thickness)
    if streak_hu > 0:
        _streaks(values, grid, [c for c, _ in seeds_post], thickness, streak_hu)
    ct[...] = np.clip(values, -1024.0, max_hu)
    return ct


def _streaks(values, grid, centers, thickness, amplitude_hu, reach_mm=35.0):
    """Bright and dark rays (8 lobes) around each seed in the slices it crosses, fading over ``reach_mm``."""
    for center in centers:
        ijk = grid.to_ijk(center)
        half = int(np.ceil((0.5 * thickness + 2.0) / grid.spacing[2]))
        r_vox = np.ceil(reach_mm / grid.spacing[:2]).astype(int)
        k0, k1 = max(0, int(round(ijk[2])) - half), min(grid.dims[2], int(round(ijk[2])) + half + 1)
        j0, j1 = max(0, int(ijk[1]) - r_vox[1]), min(grid.dims[1], int(ijk[1]) + r_vox[1] + 1)
        i0, i1 = max(0, int(ijk[0]) - r_vox[0]), min(grid.dims[0], int(ijk[0]) + r_vox[0] + 1)
        if k1 <= k0 or j1 <= j0 or i1 <= i0:
            continue
        di = (np.arange(i0, i1) - ijk[0]) * grid.spacing[0]
        dj = (np.arange(j0, j1) - ijk[1]) * grid.spacing[1]
        r = np.hypot(di[None, :], dj[:, None])
        theta = np.arctan2(dj[:, None], di[None, :])
        pattern = amplitude_hu * np.cos(8 * theta) * np.exp(-r / 12.0) * (r > 2.0) * (r < reach_mm)
        for k in range(k0, k1):
            weight = max(0.0, 1.0 - abs(k - ijk[2]) * grid.spacing[2] / (0.5 * thickness + 2.0))
            values[k, j0:j1, i0:i1] += weight * pattern


@dataclass
class Pair:
    """A pre-plan / post-implant pair with the truth: ``post_to_pre`` (4x4 RAS) and the seeds (post frame, mm)."""

    pre_ct: np.ndarray
    pre_grid: Grid
    post_ct: np.ndarray
    post_grid: Grid
    post_to_pre: np.ndarray
    seeds_post: np.ndarray
    description: str = ""

    def tre(self, post_to_pre_estimate):
        """Target registration errors (mm) at the seed positions."""
        return np.linalg.norm(apply(post_to_pre_estimate, self.seeds_post) - apply(self.post_to_pre, self.seeds_post),
                              axis=1)


def series_grid(center, size_mm, spacing_mm, direction=None):
    """A scan grid (mm RAS) of ``size_mm`` around ``center``."""
    return Grid.around(center, size_mm, spacing_mm, direction)


def make_pair(post_to_pre, pre_canvas, post_canvas=None, pre_spacing=(1.5, 1.5, 2.0), post_spacing=(1.5, 1.5, 2.0),
              pre_z=(-120.0, 120.0), post_z_half=60.0, post_thickness=None, post_direction=None, n_seeds=20,
              random_seed=0, description=""):
    """A pre-plan scan of ``pre_canvas`` and a post-implant scan of ``post_canvas`` (default the same anatomy
    without contrast is not available from one canvas: pass it) moved by ``post_to_pre``, with seeds at the target.

    The post-implant grid is centred on the target's position in the post frame, ``2 * post_z_half`` mm long.
    """
    rng = np.random.default_rng(random_seed)
    post_canvas = post_canvas or pre_canvas
    pre_grid = series_grid([0.0, 0.0, 0.5 * (pre_z[0] + pre_z[1])], [380.0, 260.0, pre_z[1] - pre_z[0]], pre_spacing)
    pre_ct = scan(pre_canvas, pre_grid, None, None, 12.0, rng)
    pre_to_post = np.linalg.inv(post_to_pre)
    target_post = apply(pre_to_post, TARGET)
    post_grid = series_grid([0.0, 0.0, target_post[2]], [380.0, 260.0, 2 * post_z_half], post_spacing, post_direction)
    post_ct = scan(post_canvas, post_grid, post_to_pre, post_thickness, 18.0, rng)
    seeds = random_implant(n_seeds, TARGET, 10.0, min_spacing_mm=4.0, random_seed=random_seed)
    centres = apply(pre_to_post, [s.position for s in seeds])
    axes = [pre_to_post[:3, :3] @ s.axis for s in seeds]
    add_seeds(post_ct, post_grid, list(zip(centres, axes)), post_thickness)
    return Pair(pre_ct, pre_grid, post_ct, post_grid, np.asarray(post_to_pre, float), centres, description)
