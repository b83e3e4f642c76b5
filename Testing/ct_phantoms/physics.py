"""Image formation of a CT series: geometry, system blur, seed and metal rendering, noise, streaks, storage.

Lengths mm, positions RAS, CT values HU. The image of an object is its attenuation excess (HU)
convolved with the system response and sampled at the voxel centres: in-plane a Gaussian PSF (sigma
per in-plane axis: an anisotropic kernel), along the slice axis the slice sensitivity profile (a
trapezoid of FWHM the nominal thickness), which may be wider than the slice increment (overlapping
series). Small dense objects (seed capsule, marker, clips, fiducials, calcifications) are supersampled
as point sets carrying HU x mm^3 and splatted through that response, so partial volume, blur and peak
loss on thick slices follow from the geometry, not from a formula for the peak. Effective HU of metal
are beam-hardened CT numbers at 120 kVp (see ``SEED_MODELS``: silver about 1000 x (mu_Ag / mu_water - 1)
at 60-80 keV, reduced by hardening; tungsten and gold higher).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

TI_WALL_MM = 0.05  # titanium capsule wall (mm)
CAPSULE_LENGTH_MM, CAPSULE_DIAMETER_MM = 4.5, 0.8

# marker: kind, length (mm), diameter (mm), effective HU range; titanium effective HU range
SEED_MODELS = {
    "Ag rod": {"marker": ("rod", 3.0, 0.5), "marker_hu": (50000.0, 90000.0), "ti_hu": (4500.0, 6500.0)},
    "W rod": {"marker": ("rod", 3.7, 0.25), "marker_hu": (150000.0, 250000.0), "ti_hu": (4500.0, 6500.0)},
    "Au beads": {"marker": ("beads", 3.2, 0.6), "marker_hu": (100000.0, 170000.0), "ti_hu": (4500.0, 6500.0)},
}


@dataclass(frozen=True)
class Series:
    """Geometry and system response of one reconstructed series.

    Attributes:
        origin: RAS (mm) of voxel (0, 0, 0); spacing: (dx, dy, increment) mm; direction: 3x3, columns I, J, K in
        RAS; dims: (ni, nj, nk); thickness_mm: nominal slice thickness (SSP FWHM, mm); psf_sigma_mm: in-plane
        Gaussian sigma (mm) along I and J; clip_hu: upper end of the stored range (None: extended scale).
    """

    origin: np.ndarray
    spacing: np.ndarray
    direction: np.ndarray
    dims: tuple
    thickness_mm: float
    psf_sigma_mm: tuple
    clip_hu: float | None

    def to_ijk(self, ras):
        return ((np.asarray(ras, float) - self.origin) @ self.direction) / self.spacing

    def to_ras(self, ijk):
        return np.asarray(ijk, float) @ (self.direction * self.spacing).T + self.origin

    @property
    def shape(self):
        return tuple(self.dims[::-1])

    @property
    def ssp(self):
        """(FWHM, ramp width) of the trapezoidal slice sensitivity profile (mm): a helical scan's profile is
        the detector row aperture convolved with the z interpolation, a rectangle of the nominal thickness
        convolved with a narrower one (40% of it)."""
        return self.thickness_mm, 0.4 * self.thickness_mm


def series_around(center, fov_mm, pixel_mm, increment_mm, thickness_mm, length_mm, psf_sigma_mm, clip_hu,
                  direction=None):
    """A series of ``fov_mm`` (x, y) in-plane and ``length_mm`` along K centred on ``center`` (mm RAS)."""
    direction = np.eye(3) if direction is None else np.asarray(direction, float)
    spacing = np.array([pixel_mm[0], pixel_mm[1], increment_mm], float)
    dims = (int(round(fov_mm[0] / pixel_mm[0])), int(round(fov_mm[1] / pixel_mm[1])),
            int(round(length_mm / increment_mm)))
    half = direction @ (spacing * (np.array(dims) - 1) / 2)
    return Series(np.asarray(center, float) - half, spacing, direction, dims, float(thickness_mm),
                  tuple(psf_sigma_mm), clip_hu)


def rotation(deg_x, deg_y, deg_z):
    """Rotation matrix (about x, then y, then z; degrees)."""
    out = np.eye(3)
    for axis, deg in ((0, deg_x), (1, deg_y), (2, deg_z)):
        c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
        r = np.eye(3)
        a, b = [q for q in range(3) if q != axis]
        r[a, a], r[a, b], r[b, a], r[b, b] = c, -s, s, c
        out = r @ out
    return out


# ------------------------------------------------------------------ system response
def _gauss(d_mm, sigma):
    return np.exp(-0.5 * (d_mm / sigma) ** 2) / (math.sqrt(2 * math.pi) * sigma)


def _ramp_integral(x, b):
    """Integral from -inf to x of a rectangle of width b and unit area (a clipped ramp)."""
    return np.clip(x / b + 0.5, 0.0, 1.0)


def _ssp(d_mm, fwhm, ramp):
    """Trapezoid of unit area: rectangle ``fwhm`` convolved with rectangle ``ramp`` (mm)."""
    return (_ramp_integral(d_mm + fwhm / 2, ramp) - _ramp_integral(d_mm - fwhm / 2, ramp)) / fwhm


def splat(volume, series, points, weights):
    """Add the image of point masses ``weights`` (HU mm^3) at ``points`` (mm RAS) to ``volume`` [k, j, i] (HU)."""
    if len(points) == 0:
        return
    f = series.to_ijk(points)
    sx, sy = series.psf_sigma_mm
    width, ramp = series.ssp
    dx, dy, dk = series.spacing
    reach = np.array([4 * sx / dx + 1, 4 * sy / dy + 1, (width / 2 + ramp) / dk + 1])
    lo = np.maximum(np.floor(f.min(0) - reach).astype(int), 0)
    hi = np.minimum(np.ceil(f.max(0) + reach).astype(int) + 1, np.array(series.dims))
    if np.any(hi <= lo):
        return
    ii, jj, kk = (np.arange(lo[a], hi[a]) for a in range(3))
    gi = _gauss((ii[None] - f[:, :1]) * dx, sx)
    gj = _gauss((jj[None] - f[:, 1:2]) * dy, sy)
    gk = _ssp((kk[None] - f[:, 2:3]) * dk, width, ramp)
    b = (weights[:, None] * gk)[:, :, None] * gj[:, None, :]
    volume[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]] += np.tensordot(b, gi, axes=(0, 0))


def blur_continuous(image, series):
    """Blur an image sampled at voxel centres (evaluated over the slice width already) by the in-plane PSF."""
    sx, sy = series.psf_sigma_mm
    return ndimage.gaussian_filter(image, (0.0, sy / series.spacing[1], sx / series.spacing[0]), mode="nearest")


# ------------------------------------------------------------------ objects as point masses
def _lattice(step):
    return np.arange(-1, 1 + 1e-9, step)


def _local_frame(axis):
    u = np.asarray(axis, float) / np.linalg.norm(axis)
    helper = np.array([1.0, 0, 0]) if abs(u[0]) < 0.9 else np.array([0, 1.0, 0])
    a = np.cross(u, helper)
    a /= np.linalg.norm(a)
    return u, a, np.cross(u, a)


def rod_points(center, axis, length, diameter, hu, step=0.08):
    """A solid cylinder (mm) of effective ``hu`` as points (mm RAS) and weights (HU mm^3)."""
    u, a, b = _local_frame(axis)
    r = diameter / 2
    t = np.arange(-length / 2 + step / 2, length / 2, step)
    g = np.arange(-r + step / 2, r, step)
    ga, gb = np.meshgrid(g, g)
    inside = ga ** 2 + gb ** 2 <= r * r
    ga, gb = ga[inside], gb[inside]
    pts = (center + t[:, None, None] * u + ga[None, :, None] * a + gb[None, :, None] * b).reshape(-1, 3)
    w = np.full(len(pts), hu * (math.pi * r * r * length) / len(pts))
    return pts, w


def ball_points(center, diameter, hu, step=0.08, semi=None):
    """A solid ball (or ellipsoid with semi-axes ``semi``, mm) of effective ``hu``: points and weights."""
    semi = np.full(3, diameter / 2) if semi is None else np.asarray(semi, float)
    g = [np.arange(-s + step / 2, s, step) for s in semi]
    x, y, z = np.meshgrid(*g, indexing="ij")
    inside = (x / semi[0]) ** 2 + (y / semi[1]) ** 2 + (z / semi[2]) ** 2 <= 1
    pts = np.stack([x[inside], y[inside], z[inside]], 1) + center
    volume = 4 / 3 * math.pi * np.prod(semi)
    return pts, np.full(len(pts), hu * volume / max(len(pts), 1))


def seed_points(center, axis, model, marker_hu, ti_hu, step=0.08):
    """A seed: titanium capsule wall (0.05 mm) with end welds, and the model's dense marker.

    Returns points (mm RAS) and weights (HU mm^3 above the surrounding tissue).
    """
    u, a, b = _local_frame(axis)
    r = CAPSULE_DIAMETER_MM / 2
    half = CAPSULE_LENGTH_MM / 2
    # wall: surface points, weight = area x wall thickness x HU
    t = np.arange(-half + 0.3 + step / 2, half - 0.3, step)
    phi = np.arange(0, 2 * math.pi, step / r)
    ring = np.cos(phi)[:, None] * a + np.sin(phi)[:, None] * b
    wall = (center + t[:, None, None] * u + r * ring[None]).reshape(-1, 3)
    wall_w = np.full(len(wall), ti_hu * TI_WALL_MM * 2 * math.pi * r * (len(t) * step) / len(wall))
    # end welds: solid titanium plugs 0.3 mm long at each end
    ends = [rod_points(center + s * (half - 0.15) * u, u, 0.3, CAPSULE_DIAMETER_MM, ti_hu, step) for s in (-1, 1)]
    kind, length, diameter = SEED_MODELS[model]["marker"]
    if kind == "rod":
        mk, mk_w = rod_points(center, u, length, diameter, marker_hu, step / 2)
    else:  # beads: three balls along the axis over ``length``
        parts = [ball_points(center + s * (length - diameter) / 2 * u, diameter, marker_hu, step / 2)
                 for s in (-1, 0, 1)]
        mk, mk_w = np.concatenate([p for p, _ in parts]), np.concatenate([w for _, w in parts])
    pts = np.concatenate([wall, ends[0][0], ends[1][0], mk])
    return pts, np.concatenate([wall_w, ends[0][1], ends[1][1], mk_w])


def clip_points(apex, direction, opening, length, hu, step=0.1):
    """A V-shaped ligation clip: two flat legs (0.6 x 0.3 mm) from ``apex`` (mm) at +-opening/2 about ``direction``."""
    u, a, _ = _local_frame(direction)
    pts, ws = [], []
    for s in (-1, 1):
        leg = math.cos(opening / 2) * u + s * math.sin(opening / 2) * a
        p, w = rod_points(apex + leg * length / 2, leg, length, 0.45, hu, step)
        pts.append(p)
        ws.append(w)
    return np.concatenate(pts), np.concatenate(ws)


# ------------------------------------------------------------------ noise, streaks, storage
def textured_noise(series, sigma_hu, rng):
    """Correlated CT noise (HU): band-pass in-plane (FBP-like texture), averaged over the slice sensitivity
    profile on a fine z grid so that overlapping slices share noise."""
    nk = series.dims[2]
    inc, thick = series.spacing[2], series.thickness_mm
    sub = max(1, int(round(inc / min(inc, thick / 2))))
    fine_step = inc / sub
    window = max(1, int(round(thick / fine_step)))
    fine = rng.standard_normal((nk * sub + window, series.dims[1], series.dims[0])).astype(np.float32)
    for z in range(len(fine)):
        s = fine[z]
        fine[z] = ndimage.gaussian_filter(s, 0.7) - ndimage.gaussian_filter(s, 2.2)
    out = np.stack([fine[k * sub:k * sub + window].mean(axis=0) for k in range(nk)])
    return out * (sigma_hu / max(float(out.std()), 1e-6))


def streaks(series, metal, strength_hu, rng):
    """Metal artefacts in each slice (the acquisition plane): dark beam-hardening bands between metal objects
    and bright/dark photon-starvation rays from each, decaying with distance. ``metal``: list of (points mm
    RAS, weights HU mm^3) per object; amplitude ``strength_hu`` for one seed's worth of metal in the slice."""
    out = np.zeros(series.shape, np.float32)
    if strength_hu <= 0 or not metal:
        return out
    width, _ = series.ssp
    dx, dy, dk = series.spacing
    ref = 30000.0  # HU mm^3, about one seed
    per_object = []
    for pts, w in metal:
        f = series.to_ijk(pts)
        per_object.append((f, w))
    angles = [rng.uniform(0, math.pi, 6) for _ in metal]
    signs = [rng.choice([-1.0, 1.0], 6) for _ in metal]
    for k in range(series.dims[2]):
        here = []
        for o, (f, w) in enumerate(per_object):
            inside = np.abs(f[:, 2] - k) * dk <= width / 2
            m = float(w[inside].sum()) / ref
            if m > 0.05:
                here.append((o, np.average(f[inside, :2], axis=0, weights=w[inside]) * (dx, dy), m))
        if not here:
            continue
        for o, c, m in here:
            _rays(out[k], c, angles[o], signs[o] * strength_hu * min(m, 3.0), dx, dy)
        for a in range(len(here)):
            for b in range(a + 1, len(here)):
                (_, ca, ma), (_, cb, mb) = here[a], here[b]
                if np.linalg.norm(ca - cb) < 60:
                    _band(out[k], ca, cb, -0.6 * strength_hu * math.sqrt(min(ma, 3) * min(mb, 3)), dx, dy)
    return out


def _window(c, half_mm, dx, dy, shape):
    i0, i1 = max(int((c[0] - half_mm) / dx), 0), min(int((c[0] + half_mm) / dx) + 1, shape[1])
    j0, j1 = max(int((c[1] - half_mm) / dy), 0), min(int((c[1] + half_mm) / dy) + 1, shape[0])
    x = np.arange(i0, i1) * dx
    y = np.arange(j0, j1) * dy
    return (slice(j0, j1), slice(i0, i1)), x[None, :] - c[0], y[:, None] - c[1]


def _rays(slice2d, c, angles, amplitudes, dx, dy, half_mm=45.0):
    win, x, y = _window(c, half_mm, dx, dy, slice2d.shape)
    r = np.hypot(x, y)
    for ang, amp in zip(angles, amplitudes):
        perp = np.abs(-math.sin(ang) * x + math.cos(ang) * y)
        slice2d[win] += amp * np.exp(-0.5 * (perp / 0.7) ** 2) / (1 + r / 8.0) * (r > 1.2)


def _band(slice2d, ca, cb, amplitude, dx, dy):
    mid = (ca + cb) / 2
    length = float(np.linalg.norm(cb - ca))
    win, x, y = _window(mid, length / 2 + 10, dx, dy, slice2d.shape)
    u = (cb - ca) / max(length, 1e-6)
    along = x * u[0] + y * u[1]
    perp = np.abs(-u[1] * x + u[0] * y)
    inside = np.clip(1 - (np.abs(along) - length / 2) / 8.0, 0, 1)
    away = np.minimum(np.hypot(x - (ca - mid)[0], y - (ca - mid)[1]), np.hypot(x - (cb - mid)[0], y - (cb - mid)[1]))
    slice2d[win] += amplitude * np.exp(-0.5 * (perp / 1.5) ** 2) * inside * (away > 1.5)


def interpolate_slices(image, native, target):
    """Linear interpolation along K from the ``native`` series onto ``target`` (same I, J and direction)."""
    z_target = (target.origin - native.origin) @ native.direction[:, 2] / native.spacing[2] \
        + np.arange(target.dims[2]) * target.spacing[2] / native.spacing[2]
    k0 = np.clip(np.floor(z_target).astype(int), 0, native.dims[2] - 2)
    t = np.clip(z_target - k0, 0, 1).astype(np.float32)[:, None, None]
    return image[k0] * (1 - t) + image[k0 + 1] * t


def store(image, clip_hu, dtype=np.int16):
    """Quantise and clip to the stored range: [-1024, clip_hu] HU (12-bit) or the int16 range (extended)."""
    top = 32767 if clip_hu is None else clip_hu
    return np.clip(np.rint(image), -1024, top).astype(dtype)
