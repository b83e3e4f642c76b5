"""Compiled (numba) parts of :mod:`.seed_model`: the image of seeds and its Jacobian (:func:`render_at`), and the
residual and Jacobian of the seed fit (:class:`FitProblem`); used only with the compiled engine.

The same arithmetic as the numpy path, in the same order: per sample point of a seed line its Gaussian in-plane
factors and slice-profile factor per coordinate line, then per voxel their product, summed over the points in
numpy's own order (its pairwise summation, :func:`_pairwise_sum`). The normal distribution function is scipy's
``ndtr``, taken between the two compiled calls, so the image and the fit's residual equal the numpy path's to
rounding (tested within 1e-14 relative; to the last bit where numpy's exp is the C library's, a few 1e-16 apart
where it is numpy's own SIMD exp, on AVX-512 machines); the Jacobian's sums along each seed line, which the numpy
path takes through BLAS, agree to rounding (about 1e-16 relative). The fit's Levenberg-Marquardt is MINPACK's, as
in the numpy path, called through ``scipy.optimize.leastsq`` (:func:`least_squares`). Detected positions agree to
about 1e-9 mm (3e-13 mm on a 513 x 513 x 200 series, 6e-10 mm on a 5 mm one; tested within 1e-6 mm). The kernels
are compiled on first use and cached on disk (numba ``cache=True``): the first run after an install or a change
compiles them (some 10-25 s of CPU), later processes load them (under 1 s). Lengths mm, CT values HU, positions in
the grid frame (mm).
"""

import math

import numpy as np
from numba import njit
from scipy.special import ndtr

_SQRT_2PI = math.sqrt(2 * math.pi)


@njit(cache=True)
def _lines(coords, pts, axis, s):
    """Per point (rows) and coordinate (columns) along ``axis``: offset (mm) and Gaussian exp(-u^2 / 2 s^2)."""
    u = np.empty((pts.shape[0], coords.shape[0]))
    e = np.empty_like(u)
    for p in range(pts.shape[0]):
        for c in range(coords.shape[0]):
            d = coords[c] - pts[p, axis]
            u[p, c] = d
            r = d / s
            e[p, c] = math.exp(-0.5 * (r * r))
    return u, e


@njit(cache=True)
def _block_sum(a, start, stop):
    """Sum of a[start:stop], at most 128 terms, in the order of numpy's ``pairwise_sum`` (numpy's
    loops_utils): under 8 terms one after another, else eight running sums combined pairwise, then the rest."""
    n = stop - start
    if n < 8:
        res = 0.0
        for x in range(start, stop):
            res += a[x]
        return res
    r0, r1, r2, r3 = a[start], a[start + 1], a[start + 2], a[start + 3]
    r4, r5, r6, r7 = a[start + 4], a[start + 5], a[start + 6], a[start + 7]
    m = n - n % 8
    for x in range(start + 8, start + m, 8):
        r0 += a[x]
        r1 += a[x + 1]
        r2 += a[x + 2]
        r3 += a[x + 3]
        r4 += a[x + 4]
        r5 += a[x + 5]
        r6 += a[x + 6]
        r7 += a[x + 7]
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for x in range(start + m, stop):
        res += a[x]
    return res


@njit(cache=True)
def _pairwise_sum(a, start, stop):
    """Sum of a[start:stop] in numpy's order for a contiguous reduction: blocks of more than 128 terms are
    halved (at a multiple of 8) and the halves' sums added, as numpy's recursion does (here with a stack), so
    that the image is summed in the same order as the numpy path's ``term.sum(0)``."""
    if stop - start <= 128:
        return _block_sum(a, start, stop)
    lo, hi, expanded = np.empty(64, np.int64), np.empty(64, np.int64), np.zeros(64, np.bool_)
    sums = np.empty(64)
    top, n_sums = 0, 0
    lo[0], hi[0] = start, stop
    while top >= 0:
        n = hi[top] - lo[top]
        if n <= 128:
            sums[n_sums] = _block_sum(a, lo[top], hi[top])
            n_sums += 1
            top -= 1
        elif not expanded[top]:
            expanded[top] = True
            half = n // 2
            half -= half % 8
            lo[top + 1], hi[top + 1], expanded[top + 1] = lo[top], lo[top] + half, False
            lo[top + 2], hi[top + 2], expanded[top + 2] = lo[top] + half, hi[top], False
            top += 2
        else:  # both halves summed: the last two sums (addition commutes exactly)
            sums[n_sums - 2] += sums[n_sums - 1]
            n_sums -= 1
            top -= 1
    return sums[0]


@njit(cache=True)
def _points(ci, cj, ck, centres, axes, masses, t, f, s, width, sz):
    """Sample points of the seed lines and their weights, the in-plane factors per coordinate line, and the
    slice profile's arguments (a, b) and derivative per slice coordinate."""
    k, n = centres.shape[0], t.shape[0]
    npts = k * n
    pts = np.empty((npts, 3))
    w = np.empty(npts)
    norm = 2 * math.pi * s * s
    for q in range(k):
        for p in range(n):
            for d in range(3):
                pts[q * n + p, d] = centres[q, d] + t[p] * axes[q, d]
            w[q * n + p] = masses[q] * f[p] / norm
    ux, ex = _lines(ci, pts, 0, s)
    uy, ey = _lines(cj, pts, 1, s)
    a = np.empty((npts, ck.shape[0]))
    b = np.empty_like(a)
    dhz = np.empty_like(a)
    dnorm = _SQRT_2PI * sz * width
    for p in range(npts):
        for c in range(ck.shape[0]):
            uz = ck[c] - pts[p, 2]
            a[p, c], b[p, c] = (uz + width / 2) / sz, (uz - width / 2) / sz
            dhz[p, c] = (math.exp(-0.5 * a[p, c] * a[p, c]) - math.exp(-0.5 * b[p, c] * b[p, c])) / dnorm
    return w, ux, ex, uy, ey, a, b, dhz


@njit(cache=True)
def _voxels(ii, jj, kk, axes, t, s, w, ux, ex, uy, ey, hz, dhz, jacobian):
    """Per voxel the sum over the points of their products (the image) and, with ``jacobian``, its
    derivatives (6 per seed)."""
    k, n, nv = axes.shape[0], t.shape[0], ii.shape[0]
    npts = k * n
    value = np.empty(nv)
    jac = np.zeros((nv if jacobian else 0, 6 * k))
    du = np.empty((k, 2, 3))
    for q in range(k):
        th = math.acos(max(-1.0, min(1.0, axes[q, 2])))
        ph = math.atan2(axes[q, 1], axes[q, 0])
        du[q, 0] = (math.cos(th) * math.cos(ph), math.cos(th) * math.sin(ph), -math.sin(th))
        du[q, 1] = (-math.sin(th) * math.sin(ph), math.sin(th) * math.cos(ph), 0.0)
    s2 = s * s
    terms = np.empty(npts)
    for v in range(nv):
        i, j, kz = ii[v], jj[v], kk[v]
        for q in range(k):
            g0 = g1 = g2 = a0 = a1 = a2 = 0.0
            for p in range(q * n, q * n + n):
                gxy = ex[p, i] * ey[p, j]
                term = w[p] * gxy * hz[p, kz]
                terms[p] = term
                if jacobian:
                    x0, x1, x2 = term * ux[p, i] / s2, term * uy[p, j] / s2, -w[p] * gxy * dhz[p, kz]
                    tp = t[p - q * n]
                    g0 += x0
                    g1 += x1
                    g2 += x2
                    a0 += tp * x0
                    a1 += tp * x1
                    a2 += tp * x2
            if jacobian:
                jac[v, 6 * q] = g0
                jac[v, 6 * q + 1] = g1
                jac[v, 6 * q + 2] = g2
                jac[v, 6 * q + 3] = a0 * du[q, 0, 0] + a1 * du[q, 0, 1] + a2 * du[q, 0, 2]
                jac[v, 6 * q + 4] = a0 * du[q, 1, 0] + a1 * du[q, 1, 1] + a2 * du[q, 1, 2]
                jac[v, 6 * q + 5] = _pairwise_sum(terms, q * n, q * n + n)
        value[v] = _pairwise_sum(terms, 0, npts)
    return value, jac


def _c(x, dtype=float):
    """``x`` as a C-contiguous array of ``dtype`` (one compiled signature for all callers)."""
    return np.ascontiguousarray(x, dtype)


def render_at(coords, index, centres, axes, masses, t, f, s, width, sz, jacobian):
    """Image (HU above background) at the voxels ``index`` (i, j, k arrays (V,)) of grid-frame coordinates
    ``coords`` (mm), and with ``jacobian`` its derivatives (V, 6 per seed), as :func:`.seed_model.render_at`;
    ``t``, ``f``: sample positions (mm) and mass fractions along a seed; ``s``: in-plane sigma (mm);
    ``width``, ``sz``: the slice profile's rectangle width and Gaussian sigma (mm)."""
    ii, jj, kk = (_c(x, np.int64) for x in index)
    axes = _c(axes)
    w, ux, ex, uy, ey, a, b, dhz = _points(*(_c(c) for c in coords), _c(centres), axes, _c(masses), t, f, float(s),
                                           float(width), float(sz))
    hz = (ndtr(a) - ndtr(b)) / width  # scipy's normal distribution, as the numpy path takes it
    value, jac = _voxels(ii, jj, kk, axes, t, float(s), w, ux, ex, uy, ey, hz, dhz, bool(jacobian))
    return (value, jac) if jacobian else value


@njit(cache=True)
def _unpack(p, origin, mass):
    """Centres (mm), unit axes and masses (HU mm^3) of the fit's parameters ``p`` (per seed: offset from its
    start, theta, phi, log mass ratio), as the numpy path's ``unpack``."""
    k = origin.shape[0]
    centres, axes, masses = np.empty((k, 3)), np.empty((k, 3)), np.empty(k)
    for q in range(k):
        th, ph = p[6 * q + 3], p[6 * q + 4]
        st = math.sin(th)
        axes[q, 0], axes[q, 1], axes[q, 2] = st * math.cos(ph), st * math.sin(ph), math.cos(th)
        for d in range(3):
            centres[q, d] = origin[q, d] + p[6 * q + d]
        masses[q] = mass * math.exp(min(max(p[6 * q + 5], -5.0), 5.0))
    return centres, axes, masses


@njit(cache=True)
def _overlap(centres, axes, t_line):
    """Per pair of seeds (a < b): the closest distance of their centre-line samples (mm), the sample
    positions (ta, tb) and the unit vector from b to a, as the numpy path's ``overlap``."""
    k, m = centres.shape[0], t_line.shape[0]
    n_pairs = k * (k - 1) // 2
    dist, ta, tb, u = np.empty(n_pairs), np.empty(n_pairs), np.empty(n_pairs), np.empty((n_pairs, 3))
    la, lb = np.empty((m, 3)), np.empty((m, 3))
    r = 0
    for a in range(k):
        for b in range(a + 1, k):
            for x in range(m):
                for d in range(3):
                    la[x, d] = centres[a, d] + t_line[x] * axes[a, d]
                    lb[x, d] = centres[b, d] + t_line[x] * axes[b, d]
            best, ia, ib = math.inf, 0, 0
            for x in range(m):
                for y in range(m):
                    s = 0.0
                    for d in range(3):
                        e = la[x, d] - lb[y, d]
                        s += e * e
                    s = math.sqrt(s)
                    if s < best:
                        best, ia, ib = s, x, y
            dist[r], ta[r], tb[r] = best, t_line[ia], t_line[ib]
            for d in range(3):
                u[r, d] = (la[ia, d] - lb[ib, d]) / max(best, 1e-6)
            r += 1
    return dist, ta, tb, u


@njit(cache=True)
def _residual(p, value, data, sw, clip, prior, repel, diameter, dist):
    """The residual vector of the numpy path: weighted image minus data, the mass prior, the overlap cost."""
    nv, k, n_pairs = value.shape[0], p.shape[0] // 6, dist.shape[0]
    out = np.empty(nv + k + n_pairs)
    for v in range(nv):
        img = min(value[v], clip[v]) if clip.shape[0] else value[v]
        out[v] = (img - data[v]) * sw[v]
    for q in range(k):
        out[nv + q] = prior * p[6 * q + 5]
    for r in range(n_pairs):
        out[nv + k + r] = repel * max(diameter - dist[r], 0.0)
    return out


@njit(cache=True)
def _jacobian(p, value, jac, sw, clip, prior, repel, diameter, dist, ta, tb, u):
    """The Jacobian of :func:`_residual` (rows: voxels, mass priors, seed pairs; 6 columns per seed)."""
    nv, k, n_pairs = value.shape[0], p.shape[0] // 6, dist.shape[0]
    out = np.zeros((nv + k + n_pairs, 6 * k))
    for v in range(nv):
        if not (clip.shape[0] and value[v] > clip[v]):
            for c in range(6 * k):
                out[v, c] = jac[v, c] * sw[v]
    for q in range(k):
        out[nv + q, 6 * q + 5] = prior
    r = 0
    for a in range(k):
        for b in range(a + 1, k):
            if dist[r] < diameter:
                for seed, t_s, sign in ((a, ta[r], -1.0), (b, tb[r], 1.0)):
                    th, ph = p[6 * seed + 3], p[6 * seed + 4]
                    du_t = (math.cos(th) * math.cos(ph), math.cos(th) * math.sin(ph), -math.sin(th))
                    du_p = (-math.sin(th) * math.sin(ph), math.sin(th) * math.cos(ph), 0.0)
                    for d in range(3):
                        out[nv + k + r, 6 * seed + d] = sign * repel * u[r, d]
                    out[nv + k + r, 6 * seed + 3] = sign * repel * t_s * (
                        u[r, 0] * du_t[0] + u[r, 1] * du_t[1] + u[r, 2] * du_t[2])
                    out[nv + k + r, 6 * seed + 4] = sign * repel * t_s * (
                        u[r, 0] * du_p[0] + u[r, 1] * du_p[1] + u[r, 2] * du_p[2])
            r += 1
    return out


@njit(cache=True)
def _seeds(p, origin, mass, ci, cj, ck, t, f, s, width, sz):
    """Centres and axes of the fit's parameters ``p`` and the factors of :func:`_points` (math.sin raises on an
    infinite angle in the numpy path: so here)."""
    for x in range(3, p.shape[0], 6):
        if math.isinf(p[x]) or math.isinf(p[x + 1]):
            raise ValueError("seed axis angle is infinite")
    centres, axes, masses = _unpack(p, origin, mass)
    w, ux, ex, uy, ey, a, b, dhz = _points(ci, cj, ck, centres, axes, masses, t, f, s, width, sz)
    return centres, axes, w, ux, ex, uy, ey, a, b, dhz


@njit(cache=True)
def _fit_residual(p, ii, jj, kk, centres, axes, w, ux, ex, uy, ey, hz, dhz, t, s, data, sw, clip, prior, repel,
                  diameter, t_line):
    value, _jac = _voxels(ii, jj, kk, axes, t, s, w, ux, ex, uy, ey, hz, dhz, False)
    dist, _ta, _tb, _u = _overlap(centres, axes, t_line)
    return _residual(p, value, data, sw, clip, prior, repel, diameter, dist)


@njit(cache=True)
def _fit_jacobian(p, ii, jj, kk, centres, axes, w, ux, ex, uy, ey, hz, dhz, t, s, sw, clip, prior, repel, diameter,
                  t_line):
    value, jac = _voxels(ii, jj, kk, axes, t, s, w, ux, ex, uy, ey, hz, dhz, True)
    dist, ta, tb, u = _overlap(centres, axes, t_line)
    return _jacobian(p, value, jac, sw, clip, prior, repel, diameter, dist, ta, tb, u)


class FitProblem:
    """The residual and Jacobian of :func:`.seed_model.fit_seeds` for one block (same arithmetic as its numpy
    closures): ``coords`` (mm), ``index`` (i, j, k voxel arrays), ``origin`` (k, 3) seed starts (mm), ``mass``
    (HU mm^3), the seed line's samples ``t`` (mm) and fractions ``f``, in-plane sigma ``s`` and slice profile
    ``width``, ``sz`` (mm), ``data`` (HU above the background), ``sw`` (sqrt weights), ``clip`` (HU above the
    background per voxel, or None), ``prior`` and ``repel`` (the cost scales), ``diameter`` and ``t_line``
    (mm: the capsule and its centre-line samples)."""

    def __init__(self, coords, index, origin, mass, t, f, s, width, sz, data, sw, clip, prior, repel, diameter,
                 t_line):
        self.coords = tuple(np.ascontiguousarray(c, float) for c in coords)
        self.index = tuple(np.ascontiguousarray(x, np.int64) for x in index)
        self.origin, self.mass = _c(origin), float(mass)
        self.line = (_c(t), _c(f), float(s), float(width), float(sz))
        self.data, self.sw = _c(data), _c(sw)
        self.clip = np.zeros(0) if clip is None else np.broadcast_to(_c(clip), self.data.shape).copy()
        self.costs = (float(prior), float(repel), float(diameter))
        self.t_line = _c(t_line)

    def _factors(self, p):
        t, f, s, width, sz = self.line
        centres, axes, w, ux, ex, uy, ey, a, b, dhz = _seeds(p, self.origin, self.mass, *self.coords, t, f, s, width,
                                                             sz)
        return centres, axes, w, ux, ex, uy, ey, (ndtr(a) - ndtr(b)) / width, dhz

    def residual(self, p):
        """Residual vector (HU x sqrt weight; prior and overlap costs) at parameters ``p``."""
        return _fit_residual(p, *self.index, *self._factors(p), self.line[0], self.line[2], self.data, self.sw,
                             self.clip, *self.costs, self.t_line)

    def jacobian(self, p):
        """Its Jacobian (rows as the residual, 6 columns per seed) at parameters ``p``."""
        return _fit_jacobian(p, *self.index, *self._factors(p), self.line[0], self.line[2], self.sw, self.clip,
                             *self.costs, self.t_line)


def least_squares(fun, x0, jac, method, max_nfev, xtol, ftol, x_scale):
    """``scipy.optimize.least_squares`` as :func:`.seed_model.fit_seeds` calls it, its Levenberg-Marquardt
    method (x_scale "jac") made through ``scipy.optimize.leastsq``: the same MINPACK ``lmder`` call (factor 100,
    gtol 1e-8, MINPACK's own scaling), so the same iterates to the bit, without least_squares' wrapper around
    every evaluation. Returns an object with ``x`` and ``fun`` (the residual there)."""
    from scipy import optimize  # here: scipy.optimize would load with the settings

    if method != "lm" or x_scale != "jac":
        return optimize.least_squares(fun, x0, jac=jac, method=method, max_nfev=max_nfev, xtol=xtol, ftol=ftol,
                                      x_scale=x_scale)
    if not np.all(np.isfinite(fun(x0))):  # as least_squares
        raise ValueError("Residuals are not finite in the initial point.")
    with np.errstate(over="ignore", invalid="ignore"):  # leastsq's covariance (unused) of a singular fit
        x, _cov, info, _message, _status = optimize.leastsq(fun, x0, Dfun=jac, full_output=True, ftol=ftol,
                                                            xtol=xtol, gtol=1e-8, maxfev=max_nfev, factor=100.0)
    return optimize.OptimizeResult(x=x, fun=info["fvec"])
