"""Forward model of the CT image of I-125 seeds, and the fit of k seeds to a block of voxels.

A seed (a 4.5 x 0.8 mm titanium capsule around a dense silver, gold or tungsten marker) is imaged as a
line of attenuation excess: ``marker_fraction`` of it along the marker (``length_mm``), the rest along the
4.5 mm capsule; its total mass ``mass`` (HU mm^3: the integral of CT number above the surroundings),
seen through the system response of the series: in-plane a Gaussian point-spread function (sigma
``psf_mm``, widened by the capsule radius), along the slice axis the slice sensitivity profile, a
rectangle of the slice thickness (which may be wider than the slice increment) blurred by a Gaussian.
The image is then clipped at the top of the stored HU range. Lengths mm, CT values HU; positions
are in the grid's own frame (mm along I, J, K from voxel (0, 0, 0)) inside this module.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from .. import kernel

CAPSULE_RADIUS_MM = 0.4
CAPSULE_LENGTH_MM = 4.5
CAPSULE_DIAMETER_MM = 0.8
MASS_PRIOR_SD = 0.2  # spread of seed masses in one fit (log units)
_N_SAMPLES = 7  # points along the marker
_N_CAPSULE = 5  # points along the capsule
_COMPILED = {}


@dataclass(frozen=True)
class SeriesModel:
    """The imaging of one series.

    Attributes:
        spacing: voxel size (mm) along I, J, K (K: the slice increment).
        thickness_mm: nominal slice thickness (FWHM of the slice sensitivity profile, mm).
        psf_mm: in-plane Gaussian sigma of the reconstruction (mm).
        clip_hu: top of the stored range (HU), or None when the scale is not clipped.
        length_mm: length of the seed's dense marker (mm).
        marker_fraction: share of the seed's mass in its marker (the rest in the 4.5 mm capsule).
        radius_mm: radius of the object's cross-section (mm): the seed's capsule, or a denser rod's
            (:func:`rod_model`).
        ssp_width: width of the slice sensitivity profile's rectangle, as a fraction of ``thickness_mm``.
        ssp_edge: sigma of the Gaussian that softens its edges, as a fraction of ``thickness_mm``.
    """

    spacing: np.ndarray
    thickness_mm: float
    psf_mm: float = 0.45
    clip_hu: float | None = None
    length_mm: float = 3.3
    marker_fraction: float = 0.75
    radius_mm: float = CAPSULE_RADIUS_MM
    ssp_width: float = 0.9
    ssp_edge: float = 0.25

    @property
    def sigma_xy(self):
        """In-plane sigma (mm) of the cross-section: PSF and capsule (a disk of radius r has r^2 / 4)."""
        return math.sqrt(self.psf_mm ** 2 + self.radius_mm ** 2 / 4)

    @property
    def ssp(self):
        """(rectangle width, Gaussian sigma) of the slice sensitivity profile (mm)."""
        return self.ssp_width * self.thickness_mm, max(self.ssp_edge * self.thickness_mm, 0.1)

    def blur_covariance(self):
        """Covariance (mm^2, grid frame) the imaging adds to an object's intensity moments."""
        width, sz = self.ssp
        return np.diag([self.sigma_xy ** 2, self.sigma_xy ** 2, width ** 2 / 12 + sz ** 2])


def rod_model(model, length_mm, radius_mm):
    """The imaging ``model`` of a uniform straight rod (a gold fiducial, a wire) of ``length_mm`` and
    ``radius_mm`` (mm) in place of a seed: its whole mass along its length, no capsule."""
    return dataclasses.replace(model, length_mm=float(length_mm), marker_fraction=1.0, radius_mm=float(radius_mm))


def _axis(theta, phi):
    st = math.sin(theta)
    return np.array([st * math.cos(phi), st * math.sin(phi), math.cos(theta)])


def angles_of(axis):
    """(theta, phi) of a unit vector (radians)."""
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    if a[2] < 0:
        a = -a
    return math.acos(min(1.0, a[2])), math.atan2(a[1], a[0])


def _samples(model):
    """Positions along the seed line (mm from the centre) and weight fractions: the marker
    (``model.marker_fraction`` of the mass over ``model.length_mm``) and the capsule wall and welds (the
    rest, over the 4.5 mm capsule)."""
    tm = (np.arange(_N_SAMPLES) + 0.5) / _N_SAMPLES - 0.5
    tc = (np.arange(_N_CAPSULE) + 0.5) / _N_CAPSULE - 0.5
    t = np.concatenate([tm * model.length_mm, tc * CAPSULE_LENGTH_MM])
    f = np.concatenate([np.full(_N_SAMPLES, model.marker_fraction / _N_SAMPLES),
                        np.full(_N_CAPSULE, (1 - model.marker_fraction) / _N_CAPSULE)])
    return t, f


def render_at(model, coords, index, centres, axes, masses, jacobian=False):
    """Image (HU above background) of seeds at the voxels ``index`` = (i, j, k) index arrays (V,) into the
    grid-frame voxel-centre coordinates ``coords`` (three 1D arrays, mm, along I, J, K).

    With ``jacobian``, also its derivatives (V, 6 per seed) by centre (3), axis angles theta and phi, and
    log mass. Transcendental functions are evaluated per coordinate line, then gathered per voxel. With the
    compiled engine (:func:`SeedBrachyLib.kernel.resolve`) :mod:`.seed_model_numba` evaluates it: the same image
    and derivatives to rounding."""
    s = model.sigma_xy
    width, sz = model.ssp
    t, f = _samples(model)
    centres, axes = np.asarray(centres, float), np.asarray(axes, float)
    compiled = _compiled("render_at")
    if compiled is not None:
        return compiled(coords, index, centres, axes, masses, t, f, s, width, sz, jacobian)
    k, n = len(centres), len(t)
    pts = (centres[:, None, :] + t[None, :, None] * axes[:, None, :]).reshape(-1, 3)
    w = (np.asarray(masses, float)[:, None] * f[None]).reshape(-1) / (2 * math.pi * s * s)
    ii, jj, kk = index
    ux = coords[0][None] - pts[:, :1]
    uy = coords[1][None] - pts[:, 1:2]
    uz = coords[2][None] - pts[:, 2:3]
    ex, ey = np.exp(-0.5 * (ux / s) ** 2), np.exp(-0.5 * (uy / s) ** 2)
    a, b = (uz + width / 2) / sz, (uz - width / 2) / sz
    hz = (ndtr(a) - ndtr(b)) / width
    gxy = ex[:, ii] * ey[:, jj]
    h = hz[:, kk]
    term = w[:, None] * gxy * h  # (P, V)
    value = term.sum(0)
    if not jacobian:
        return value
    dhz = (np.exp(-0.5 * a * a) - np.exp(-0.5 * b * b)) / (math.sqrt(2 * math.pi) * sz * width)
    grad = np.stack([term * ux[:, ii] / (s * s), term * uy[:, jj] / (s * s), -w[:, None] * gxy * dhz[:, kk]], -1)
    grad = grad.reshape(k, n, -1, 3)
    term = term.reshape(k, n, -1)
    jac = np.empty((len(ii), 6 * k))
    for q in range(k):
        u = axes[q]
        theta = math.acos(max(-1.0, min(1.0, u[2])))
        phi = math.atan2(u[1], u[0])
        du_t = np.array([math.cos(theta) * math.cos(phi), math.cos(theta) * math.sin(phi), -math.sin(theta)])
        du_p = np.array([-math.sin(theta) * math.sin(phi), math.sin(theta) * math.cos(phi), 0.0])
        g = grad[q]
        jac[:, 6 * q:6 * q + 3] = g.sum(0)
        along = np.tensordot(t, g, axes=(0, 0))  # sum_p t_p grad_p (V, 3)
        jac[:, 6 * q + 3] = along @ du_t
        jac[:, 6 * q + 4] = along @ du_p
        jac[:, 6 * q + 5] = term[q].sum(0)
    return value, jac


def _compiled(name):
    """``name`` of :mod:`.seed_model_numba` while the compiled engine is in use, else None (numba missing, or
    ``SEEDBRACHY_ENGINE=numpy``: :func:`SeedBrachyLib.kernel.resolve`)."""
    if kernel.resolve() != "compiled":
        return None
    if "module" not in _COMPILED:
        try:
            _COMPILED["module"] = importlib.import_module(".seed_model_numba", __package__)
        except ImportError:
            _COMPILED["module"] = None
    return getattr(_COMPILED["module"], name, None)


def render(model, coords, centres, axes, masses):
    """Image (HU above background) of seeds on the voxel block with grid-frame coordinates ``coords``
    (three 1D arrays of voxel-centre positions, mm, along I, J, K). Returns [k, j, i]."""
    kk, jj, ii = np.meshgrid(*(np.arange(len(c)) for c in coords[::-1]), indexing="ij")
    value = render_at(model, coords, (ii.ravel(), jj.ravel(), kk.ravel()), centres, axes, masses)
    return value.reshape(kk.shape)


def peak_per_mass(model, axis, offset=(0.0, 0.0, 0.0)):
    """Highest voxel value (HU) of a seed of unit mass (HU mm^3) with ``axis`` (grid frame), its centre at
    ``offset`` (mm) from a voxel centre, unclipped."""
    sp = model.spacing
    n = np.ceil((model.length_mm / 2 + 3 * model.sigma_xy + model.thickness_mm) / sp).astype(int) + 1
    coords = [np.arange(-n[a], n[a] + 1) * sp[a] for a in range(3)]
    return float(render(model, coords, [np.asarray(offset, float)], [np.asarray(axis, float)], [1.0]).max())


def min_peak_per_mass(model, n_orientations=24):
    """Lowest peak (HU per HU mm^3) over seed orientations and sub-voxel positions: the faintest a seed can look."""
    lowest = math.inf
    sp = model.spacing
    for q in range(n_orientations):
        theta = math.acos(1 - (q + 0.5) / n_orientations)
        phi = q * 2.39996
        for offset in ((0, 0, 0), sp / 2):
            lowest = min(lowest, peak_per_mass(model, _axis(theta, phi), offset))
    return lowest


@dataclass
class Fit:
    """k seeds fitted to a block: centres (k, 3) and unit axes (k, 3) in the grid frame (mm), masses
    (HU mm^3), background (HU: the level under the seeds; with a floor, the fitted level of the slice nearest
    their mean centre), residual sum of squares (HU^2), the number of voxels fitted, the cost of the mass
    prior (HU^2) and, with a floor, the fitted level of each group of slices (HU)."""

    centres: np.ndarray
    axes: np.ndarray
    masses: np.ndarray
    background: float
    rss: float
    n: int
    prior: float = 0.0  # the mass prior's share of the cost (HU^2)
    levels: np.ndarray | None = None  # with a floor: the level of each group of slices (HU)


def fit_seeds(model, coords, values, weights, starts, mass, background, prior_hu, floor=None):
    """Least-squares fit of ``len(starts)`` seeds to ``values`` [k, j, i] (HU) on ``coords`` (mm, grid frame).

    ``starts``: (centre, axis) initial guesses (grid frame); ``mass``: one seed's mass (HU mm^3), the start
    and the prior of every seed's mass (all seeds of an implant are alike: a log-mass deviation of
    ``MASS_PRIOR_SD`` costs as much as an rms residual of ``prior_hu`` HU over the voxels fitted);
    ``background``: the level (HU) under the seeds, one value or one per voxel; ``weights``: per-voxel
    weights (0 leaves a voxel out). The model is clipped at ``model.clip_hu``.

    ``floor``: (floor HU, group per slice of the block, starting level HU per group) where the image is cut at
    the bottom of its stored range (e.g. -1024 HU) and the level under the seeds may lie below it (metal streaks
    in the acquisition plane): the level is then fitted, one per group of slices, in place of ``background``, and
    a voxel stored at the floor says only that the image there is at or under it (a censored value: it costs
    only where the model is above the floor). The fit's ``background`` is then the level of the slice nearest
    the seeds' mean centre.
    """
    from scipy.optimize import least_squares  # here: scipy.optimize would load with the settings

    k = len(starts)
    x0 = []
    # positions are fitted as offsets from the starts (mm), so that the tolerance on the step is absolute
    origin = np.array([c for c, _a in starts], float)
    for _c, a in starts:
        th, ph = angles_of(a)
        x0 += [0.0, 0.0, 0.0, th, ph, 0.0]
    use = weights > 0
    kk, jj, ii = np.nonzero(use)
    index = (ii, jj, kk)
    sw = np.sqrt(weights[use])
    if floor is None:
        under = np.asarray(background, float)[use] if np.ndim(background) else float(background)
        group, censored, floor_hu = None, None, None
    else:
        floor_hu, slice_group, start_levels = floor
        slice_group = np.asarray(slice_group, int)
        if slice_group.shape != (values.shape[0],) or slice_group.min() < 0 or slice_group.max() >= len(start_levels):
            raise ValueError(f"slice groups {slice_group.tolist()} must give each of the {values.shape[0]} slices a "
                             f"level 0..{len(start_levels) - 1}")
        under, group = 0.0, slice_group[kk]
        censored = values[use] <= floor_hu
        x0 += [float(v) for v in start_levels]
    n_free = len(x0)
    data = values[use].astype(float) - under
    clip = None if model.clip_hu is None else model.clip_hu - under
    prior = math.sqrt(len(ii)) * prior_hu / MASS_PRIOR_SD

    def unpack(p):
        q = p[:6 * k].reshape(k, 6)
        axes = np.array([_axis(th, ph) for th, ph in q[:, 3:5]])
        return origin + q[:, :3], axes, mass * np.exp(np.clip(q[:, 5], -5.0, 5.0))

    def level(p):
        return 0.0 if group is None else p[6 * k:][group]

    pairs = [(a, b) for a in range(k) for b in range(a + 1, k)]
    contrast = data if floor is None else data - floor_hu  # the image above the level, or above the floor
    repel = math.sqrt(len(ii)) * max(prior_hu, 0.02 * float(np.max(np.abs(contrast)))) / 0.1

    half_line = (CAPSULE_LENGTH_MM - CAPSULE_DIAMETER_MM) / 2
    t_line = np.linspace(-half_line, half_line, 9)

    def overlap(p):
        """Capsules cannot overlap: centre lines closer than one diameter cost ``repel`` per 0.1 mm. Returns
        per pair the distance and the closest sample positions (ta, tb) and unit vector from b to a."""
        centres, axes, _m = unpack(p)
        out = []
        for a, b in pairs:
            la = centres[a] + t_line[:, None] * axes[a]
            lb = centres[b] + t_line[:, None] * axes[b]
            dist = np.linalg.norm(la[:, None] - lb[None], axis=-1)
            ia, ib = np.unravel_index(np.argmin(dist), dist.shape)
            d = dist[ia, ib]
            out.append((d, t_line[ia], t_line[ib], (la[ia] - lb[ib]) / max(d, 1e-6)))
        return out

    def residual(p):
        centres, axes, masses = unpack(p)
        img = render_at(model, coords, index, centres, axes, masses) + level(p)
        if clip is not None:
            img = np.minimum(img, clip)
        misfit = img - data if censored is None else np.where(censored, np.maximum(img - floor_hu, 0.0), img - data)
        d = np.array([o[0] for o in overlap(p)])
        return np.concatenate([misfit * sw, prior * p[:6 * k].reshape(k, 6)[:, 5],
                               repel * np.maximum(CAPSULE_DIAMETER_MM - d, 0.0)])

    def jac(p):
        centres, axes, masses = unpack(p)
        img, j = render_at(model, coords, index, centres, axes, masses, jacobian=True)
        if group is not None:
            img = img + level(p)
            j = np.concatenate([j, np.zeros((len(ii), n_free - 6 * k))], axis=1)
            j[np.arange(len(ii)), 6 * k + group] = 1.0
            j[censored & (img <= floor_hu)] = 0.0
        if clip is not None:
            j[img > clip] = 0.0
        rows = np.zeros((k, n_free))
        rows[np.arange(k), 6 * np.arange(k) + 5] = prior
        rep = np.zeros((len(pairs), n_free))
        q = p[:6 * k].reshape(k, 6)
        for r, ((a, b), (d, ta, tb, u)) in enumerate(zip(pairs, overlap(p))):
            if d < CAPSULE_DIAMETER_MM:
                for seed, t_s, sign in ((a, ta, -1.0), (b, tb, 1.0)):
                    th, ph = q[seed, 3], q[seed, 4]
                    du_t = np.array([math.cos(th) * math.cos(ph), math.cos(th) * math.sin(ph), -math.sin(th)])
                    du_p = np.array([-math.sin(th) * math.sin(ph), math.sin(th) * math.cos(ph), 0.0])
                    rep[r, 6 * seed:6 * seed + 3] = sign * repel * u
                    rep[r, 6 * seed + 3] = sign * repel * t_s * (u @ du_t)
                    rep[r, 6 * seed + 4] = sign * repel * t_s * (u @ du_p)
        return np.concatenate([j * sw[:, None], rows, rep])

    compiled = _compiled("FitProblem") if floor is None else None
    if compiled is not None:  # the same residual and Jacobian, compiled (:mod:`.seed_model_numba`)
        problem = compiled(coords, index, origin, mass, *_samples(model), model.sigma_xy, *model.ssp, data, sw, clip,
                           prior, repel, CAPSULE_DIAMETER_MM, t_line)
        residual, jac = problem.residual, problem.jacobian
        least_squares = _compiled("least_squares")  # the same MINPACK call, less overhead per evaluation
    # censored residuals have a kink at the floor, where Levenberg-Marquardt stalls (the trust region copes)
    method = "lm" if floor is None and len(ii) > n_free else "trf"
    try:
        sol = least_squares(residual, np.array(x0, float), jac=jac, method=method, max_nfev=12 * (n_free + 1),
                            xtol=1e-4, ftol=1e-5, x_scale="jac")
        failed = not np.all(np.isfinite(sol.x))
    except ValueError:  # a step to an infinite angle: a start that sees none of the voxels fitted
        failed = True
    p = np.array(x0, float) if failed else sol.x
    centres, axes, masses = unpack(p)
    levels = None if group is None else p[6 * k:].copy()
    if group is None:
        under_seeds = float(np.median(under))
    else:
        near = int(np.argmin(np.abs(coords[2] - float(np.mean(centres[:, 2])))))
        under_seeds = float(levels[slice_group[near]])
    if failed:
        return Fit(centres, axes, masses, under_seeds, math.inf, len(ii), math.inf, levels)
    rss = float(np.sum(sol.fun[:len(ii)] ** 2))
    return Fit(centres, axes, masses, under_seeds, rss, len(ii), float(np.sum(sol.fun[len(ii):] ** 2)), levels)
