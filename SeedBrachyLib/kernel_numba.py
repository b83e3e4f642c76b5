"""Compiled TG-43 kernels (numba). Imported only by :mod:`SeedBrachyLib.kernel`, and only when numba is installed.

Every kernel works in each seed's own frame: ``frames[s]`` is a 3x3 matrix whose rows
are two unit vectors across the seed and its axis, so a point's local coordinates
(x, y, z) give rho^2 = x^2 + y^2 (never negative) and z directly. Points inside the
capsule are moved to its surface exactly as :func:`SeedBrachyLib.tg43.capsule_surface`
does. Lengths in mm; the returned values are dose rates per U (cGy h^-1 U^-1) times the
given strengths (U), i.e. cGy h^-1 (the caller turns them into Gy).

Two evaluations of one (point, seed) pair:

* exact (:func:`points_exact`): the TG-43U1 formula with the same piecewise tables and rules as
  :mod:`SeedBrachyLib.tg43`, within 1e-15 relative of it (tested at 1e-12): its arctangents and exponential
  are branch-free double-precision routines (:func:`_atan2`, :func:`_exp`) so that the loops over a block of
  points vectorise, as the table's do;
* the table: bilinear lookup of Q = r^2 x dose rate on an (r, theta) table built by
  :func:`SeedBrachyLib.kernel.table_for`, divided by r^2 (the table's accuracy is
  stated and tested there), in two passes over a row of points (:func:`grid_tabled`,
  :func:`samples_tabled`): float32 cell indices and weights, vectorised, then the lookups.
  A grid row is first taken whole in the table's far section (no capsule rule, no choice of
  section: the bulk of the work), then the few voxels within its reach of the seed again with
  every section and the capsule rule.
"""

import math
import os

import numpy as np
from numba import njit, prange

# Idle OpenMP workers sleep rather than spin (unless the user says otherwise; read when OpenMP starts, at the first
# parallel call): the optimiser's search runs thousands of short parallel loops, and on a busy machine spinning
# workers took the cores from the working ones (40-seed plan at load 11: 15 s CPU spinning, 1.6 s passive).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
POINT_BLOCK = 1024  # points per work item of the point kernels (scratch rows stay in the L1/L2 cache)


EXACT = {"contract"}  # fused multiply-adds only: no reassociation, no finite-math assumptions
# Cephes atan.c (S. L. Moshier, Cephes Math Library 2.8): atan(t) = t + t z P(z) / Q(z), z = t^2, |t| <= 0.66,
# relative error about 1e-16; arguments above 0.66 are reduced by pi/4 + atan((a - 1) / (a + 1)).
_AP = (-8.750608600031904122785e-1, -1.615753718733365076637e1, -7.500855792314704667340e1,
       -1.228866684490136173410e2, -6.485021904942025371773e1)
_AQ = (2.485846490142306297962e1, 1.650270098316988542046e2, 4.328810604912902668951e2,
       4.853903996359136964868e2, 1.945506571482613964425e2)
_MOREBITS = 6.123233995736765886130e-17  # pi/2 - float(pi/2)
_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10  # ln 2 split as in fdlibm's exp
_EXP_TAYLOR = tuple(1.0 / math.factorial(j) for j in range(13, -1, -1))  # 1/13!, ..., 1/1!, 1/0!


@njit(inline="always", fastmath=EXACT)
def _atan2(y, x):
    """atan2(y, x) (rad) for y >= 0 and (x, y) != (0, 0), branch-free so that loops over it vectorise (Cephes'
    rational atan on [0, 1] by octant; within 3e-16 relative of math.atan2, tested)."""
    ax = abs(x)
    lo, hi = min(y, ax), max(y, ax)
    big = lo > 0.66 * hi
    num = lo - hi if big else lo
    den = lo + hi if big else hi
    t = num / den
    z = t * t
    p = (((_AP[0] * z + _AP[1]) * z + _AP[2]) * z + _AP[3]) * z + _AP[4]
    q = ((((z + _AQ[0]) * z + _AQ[1]) * z + _AQ[2]) * z + _AQ[3]) * z + _AQ[4]
    v = t + t * (z * p / q)
    quarter = (0.25 * math.pi + 0.5 * _MOREBITS) + v
    v = quarter if big else v
    steep = (0.5 * math.pi - v) + _MOREBITS
    v = steep if y > ax else v
    back = (math.pi - v) + 2.0 * _MOREBITS
    return back if x < 0.0 else v


@njit(inline="always", fastmath=EXACT)
def _pow2(k):
    """2^k (exact) for a whole float k in -1022..1023, from the binary digits of k + 1022 (vectorises)."""
    m = np.int32(k + 1022.0)
    e = 4.0 if m & 1024 else 2.0 ** -1022  # 2^-1022 x 2^1024 first (2^1024 is no double)
    e = e * 2.0 if m & 1 else e
    e = e * 4.0 if m & 2 else e
    e = e * 16.0 if m & 4 else e
    e = e * 256.0 if m & 8 else e
    e = e * 65536.0 if m & 16 else e
    e = e * 2.0 ** 32 if m & 32 else e
    e = e * 2.0 ** 64 if m & 64 else e
    e = e * 2.0 ** 128 if m & 128 else e
    e = e * 2.0 ** 256 if m & 256 else e
    return e * 2.0 ** 512 if m & 512 else e


@njit(inline="always", fastmath=EXACT)
def _exp(x):
    """exp(x) for x clipped to [-708, 709], branch-free: x = k ln 2 + f with |f| <= ln 2 / 2, e^f by its Taylor
    series to degree 13 (truncation < 1e-17), times 2^k (within 3e-16 relative of math.exp, tested)."""
    x = min(max(x, -708.0), 709.0)
    k = np.floor(x * 1.4426950408889634 + 0.5)
    f = (x - k * _LN2_HI) - k * _LN2_LO
    p = _EXP_TAYLOR[0]
    for j in range(1, 14):  # unrolled (constant trip count), Horner's scheme
        p = p * f + _EXP_TAYLOR[j]
    return p * _pow2(k)


@njit(inline="always", fastmath=EXACT)
def _node(x, x0, inv_step, n):
    """(interval index clipped to 0..n-2 as int32, unclipped weight) of x on the nodes x0 + k / inv_step."""
    u = (x - x0) * inv_step
    i = min(max(np.floor(u), 0.0), n - 2.0)
    return np.int32(i), u - i


@njit(inline="always", fastmath=EXACT)
def _outside(px, py, pz, c, f, radius, half):
    """(rho^2, |z|) (mm^2, mm) of a point in a seed's frame (centre ``c``, rows of ``f``), moved to the nearest
    capsule-surface point when inside the capsule (tg43.capsule_surface)."""
    dx, dy, dz = px - c[0], py - c[1], pz - c[2]
    x = f[0] * dx + f[1] * dy + f[2] * dz
    y = f[3] * dx + f[4] * dy + f[5] * dz
    rho2 = x * x + y * y
    az = abs(f[6] * dx + f[7] * dy + f[8] * dz)
    inside = (rho2 < radius * radius) & (az < half)
    gap = radius - (half - az)
    to_side = inside & ((gap <= 0.0) | (rho2 >= gap * gap))
    rho2 = radius * radius if to_side else rho2
    az = half if (inside & (not to_side)) else az
    return rho2, az


@njit(inline="always", fastmath=EXACT)
def _seed_rates(xs, ys, zs, c, f, radius, half, line, ex, log_g, f_flat, phi_r, phi, rate, scratch, index):
    """rate[p] = TG-43U1 dose rate per U (cGy/h/U) of one seed at points (xs, ys, zs)[p] (mm), tg43's tables and
    rules: g_L log-linear, F bilinear in (r, theta deg), phi_an linear, each clipped as tg43 clips it.

    Three passes so that the first and last vectorise: geometry, arctangents and table positions; the table
    lookups; the exponential of log g_L. ``scratch`` (4, n) float64 and ``index`` (2, n) int32 are work rows.
    """
    (length, scale, gx0, gstep, gn, fr_min, fr_max, rx0, rstep, rn, tx0, tstep, tn) = ex
    half2 = 0.25 * length * length
    inv_g, inv_r, inv_t = 1.0 / gstep, 1.0 / rstep, 1.0 / tstep
    n = xs.size
    gw, rw, tw, pre = scratch[0, :n], scratch[1, :n], scratch[2, :n], scratch[3, :n]
    gi, fb = index[0, :n], index[1, :n]
    if line:
        for p in range(n):
            rho2, az = _outside(xs[p], ys[p], zs[p], c, f, radius, half)
            r2 = rho2 + az * az
            r = math.sqrt(r2)
            gi[p], gw[p] = _node(max(r, gx0), gx0, inv_g, gn)
            rho = math.sqrt(rho2)
            lr = length * rho
            on_axis = lr == 0.0
            angle = _atan2(1.0 if on_axis else lr, r2 - half2)  # the angle the active length subtends
            geom = (1.0 if on_axis else angle) / (az * az - half2 if on_axis else lr)
            theta = (180.0 / math.pi) * _atan2(rho, az)
            ri, rw[p] = _node(min(max(r, fr_min), fr_max), rx0, inv_r, rn)
            ti, tw[p] = _node(min(max(theta, tx0), 90.0), tx0, inv_t, tn)
            fb[p] = ti * np.int32(rn) + ri
            pre[p] = scale * geom
        for p in range(n):
            b = fb[p]
            f0 = f_flat[b] + rw[p] * (f_flat[b + 1] - f_flat[b])
            f1 = f_flat[b + rn] + rw[p] * (f_flat[b + rn + 1] - f_flat[b + rn])
            pre[p] *= f0 * (1.0 - tw[p]) + f1 * tw[p]
    else:
        for p in range(n):
            rho2, az = _outside(xs[p], ys[p], zs[p], c, f, radius, half)
            r = math.sqrt(rho2 + az * az)
            gi[p], gw[p] = _node(max(r, gx0), gx0, inv_g, gn)
            rw[p] = r
            pre[p] = scale * 2.0 * _atan2(0.5 * length, r) / (length * r)
        last = phi_r.size - 1
        for p in range(n):
            r = rw[p]
            k = 0
            while k < last - 1 and phi_r[k + 1] < r:
                k += 1
            w = min(max((r - phi_r[k]) / (phi_r[k + 1] - phi_r[k]), 0.0), 1.0) if last > 0 else 0.0
            pre[p] *= phi[k] + w * (phi[min(k + 1, last)] - phi[k])
    for p in range(n):
        i = gi[p]
        gw[p] = log_g[i] + gw[p] * (log_g[i + 1] - log_g[i])
    for p in range(n):
        rate[p] = pre[p] * _exp(gw[p])


@njit(inline="always")
def _section(sections, s):
    """Row ``s`` of a table's float32 section array (kernel.Table.sections) as a tuple."""
    return (sections[s, 0], sections[s, 1], sections[s, 2], sections[s, 3], sections[s, 4], sections[s, 5],
            sections[s, 6], sections[s, 7], sections[s, 8], sections[s, 9], sections[s, 10], sections[s, 11],
            sections[s, 12])


@njit(inline="always", fastmath=FASTMATH)
def _in_section(rho2, az, p):
    """(cell index, theta weight, r weight, 1/r^2 in mm^-2) of float32 (rho^2, |z|) on table section ``p``
    (a _section tuple). theta from u^2 = 1 - cos(theta) = rho^2 / (r (r + |z|)) (no cancellation near the axis)
    and the section's polynomial. r at most rounding below the section's start truncates to its first interval
    (weight ~ -1e-7); the far path's near points get garbage indices, overwritten before any lookup."""
    r0, inv_h, n_t, first, last_r, last_t, c0, c1, c2, c3, c4, c5, c6 = p
    r2 = rho2 + az * az
    inv_r = np.float32(1.0) / math.sqrt(r2)
    r = r2 * inv_r
    t = rho2 * inv_r / (r + az)
    ft = math.sqrt(t) * (c0 + t * (c1 + t * (c2 + t * (c3 + t * (c4 + t * (c5 + t * c6))))))
    fr = (r - r0) * inv_h
    it = np.float32(np.int32(min(ft, last_t)))
    ir = np.float32(np.int32(min(fr, last_r)))
    return np.uint32(np.int32(first + ir * n_t + it)), ft - it, fr - ir, inv_r * inv_r


@njit(inline="always", fastmath=FASTMATH)
def _pick(near, middle, a, b, c):
    return c if not (near | middle) else (b if middle else a)


@njit(inline="always", fastmath=FASTMATH)
def _in_table(x, y, z, radius, half, near_p, mid_p, far_p):
    """As :func:`_in_section` for float32 local coordinates (mm) at any distance, after the capsule rule (as
    _outside); the three sections' _section tuples, chosen by r."""
    zero = np.float32(0.0)
    rho2, az = x * x + y * y, abs(z)
    a2 = radius * radius
    inside = (rho2 < a2) & (az < half)
    gap = radius - (half - az)
    to_side = inside & ((gap <= zero) | (rho2 >= gap * gap))
    rho2 = a2 if to_side else rho2
    az = half if (inside & (not to_side)) else az
    r2 = rho2 + az * az
    near, middle = r2 < mid_p[0] * mid_p[0], r2 < far_p[0] * far_p[0]
    middle = middle & (not near)
    p = (_pick(near, middle, near_p[0], mid_p[0], far_p[0]), _pick(near, middle, near_p[1], mid_p[1], far_p[1]),
         _pick(near, middle, near_p[2], mid_p[2], far_p[2]), _pick(near, middle, near_p[3], mid_p[3], far_p[3]),
         _pick(near, middle, near_p[4], mid_p[4], far_p[4]), _pick(near, middle, near_p[5], mid_p[5], far_p[5]),
         _pick(near, middle, near_p[6], mid_p[6], far_p[6]), _pick(near, middle, near_p[7], mid_p[7], far_p[7]),
         _pick(near, middle, near_p[8], mid_p[8], far_p[8]), _pick(near, middle, near_p[9], mid_p[9], far_p[9]),
         _pick(near, middle, near_p[10], mid_p[10], far_p[10]),
         _pick(near, middle, near_p[11], mid_p[11], far_p[11]),
         _pick(near, middle, near_p[12], mid_p[12], far_p[12]))
    return _in_section(rho2, az, p)


@njit(inline="always", fastmath=FASTMATH)
def _lookup(cells, k, wt, wr):
    """Bilinear Q (mm^2 cGy h^-1 U^-1) in cell ``k`` at weights ``wt`` (theta), ``wr`` (r)."""
    b = k * np.uint32(4)
    return cells[b] + wt * cells[b + 1] + wr * (cells[b + 2] + wt * cells[b + 3])


@njit(inline="always")
def _near_span(bx, by, bz, ux, uy, uz, reach, n):
    """[i0, i1): the voxels i < n of the row b + i u (seed frame, mm, float64) that may lie nearer than
    ``reach`` (mm) to the seed; every other voxel of the row lies farther."""
    uu = ux * ux + uy * uy + uz * uz
    bu = bx * ux + by * uy + bz * uz
    disc = bu * bu - uu * (bx * bx + by * by + bz * bz - reach * reach)
    if disc <= 0.0:
        return 0, 0
    root = math.sqrt(disc)
    i0 = max(0, min(n, int(math.floor((-bu - root) / uu))))
    return i0, max(i0, min(n, int(math.floor((-bu + root) / uu)) + 1))


@njit(inline="always", fastmath=FASTMATH)
def _row_cells(dx, dy, dz, ux, uy, uz, strength, radius, half, near_p, mid_p, far_p, reach, cell, wt, wr, w):
    """Pass 1 over a row of points b + i u, i = 0, 1, ... (b = (dx, dy, dz), u = (ux, uy, uz): mm in a seed's frame,
    float64): every point's cell, weights and S / r^2. All points (the arrays' whole length, a multiple of the
    vector width) take the far section without the capsule rule, then those that may lie within ``reach`` of the
    seed are redone with every section and the rule."""
    i0, i1 = _near_span(dx, dy, dz, ux, uy, uz, reach, cell.size)
    f32, one = np.float32, np.float32(1.0)
    bx, by, bz = f32(dx), f32(dy), f32(dz)
    ux, uy, uz = f32(ux), f32(uy), f32(uz)
    fi = -one
    for i in range(cell.size):
        fi += one  # an exact float counter (a converted loop index does not vectorise)
        x, y, z = bx + fi * ux, by + fi * uy, bz + fi * uz
        u = np.uint64(i)  # unsigned: no negative-index wraparound, so the stores vectorise
        cell[u], wt[u], wr[u], inv_r2 = _in_section(x * x + y * y, abs(z), far_p)
        w[u] = strength * inv_r2
    fi = f32(i0) - one
    for i in range(i0, i1):
        fi += one
        u = np.uint64(i)
        cell[u], wt[u], wr[u], inv_r2 = _in_table(bx + fi * ux, by + fi * uy, bz + fi * uz, radius, half, near_p,
                                                   mid_p, far_p)
        w[u] = strength * inv_r2


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def grid_tabled(out, k0, start, step_i, step_j, step_k, strengths, radius, half, cells, sections):
    """Add sum_s S_s Ddot_s (cGy/h) to ``out`` (float64 [k, j, i] slab starting at slice k0).

    ``start[s]`` is voxel (0, 0, 0) in seed s's frame, ``step_i/j/k[s]`` one voxel step
    along I, J, K in that frame (mm); ``cells``, ``sections``: a kernel.Table. Parallel over slices; per
    seed and row of voxels two passes (:func:`_row_cells`, vectorised: float32 local coordinates from exact
    voxel counters, rounding < 1e-5 mm at 200 mm; then the lookups).
    """
    nk, nj, ni = out.shape
    n_pad = (ni + 7) // 8 * 8
    f32 = np.float32
    near_p, mid_p, far_p = _section(sections, 0), _section(sections, 1), _section(sections, 2)
    reach = 1.001 * float(sections[2, 0]) + 1e-3  # beyond it, the far section holds (float32 rounding aside)
    for kk in prange(nk):
        cell = np.empty(n_pad, dtype=np.uint32)
        wr = np.empty(n_pad, dtype=np.float32)
        wt = np.empty(n_pad, dtype=np.float32)
        w = np.empty(n_pad, dtype=np.float32)
        k = k0 + kk
        for s in range(strengths.size):
            for j in range(nj):
                _row_cells(start[s, 0] + k * step_k[s, 0] + j * step_j[s, 0],
                           start[s, 1] + k * step_k[s, 1] + j * step_j[s, 1],
                           start[s, 2] + k * step_k[s, 2] + j * step_j[s, 2], step_i[s, 0], step_i[s, 1],
                           step_i[s, 2], f32(strengths[s]), f32(radius), f32(half), near_p, mid_p, far_p, reach,
                           cell, wt, wr, w)
                for i in range(ni):
                    u = np.uint64(i)
                    out[kk, j, u] += w[u] * _lookup(cells, cell[u], wt[u], wr[u])


@njit(cache=True)
def lattice_runs(nk, nj, ni, voxels):
    """As :func:`SeedBrachyLib.kernel.lattice_runs` (the numpy reference; the same axis, order and runs) for the flat,
    ascending ``voxels`` of a [k, j, i] array of shape (nk, nj, ni): one pass to count the runs along each axis, one
    traversal with the chosen axis fastest."""
    member = np.full(nk * nj * ni, -1, dtype=np.int64)  # position in voxels, -1: not a member
    for p in range(voxels.size):
        member[voxels[p]] = p
    strides = (1, ni, ni * nj)
    counts = np.zeros(3, dtype=np.int64)
    for p in range(voxels.size):
        v = voxels[p]
        i, j, k = v % ni, (v // ni) % nj, v // (ni * nj)
        counts[0] += (i == 0) or member[v - 1] < 0
        counts[1] += (j == 0) or member[v - ni] < 0
        counts[2] += (k == 0) or member[v - ni * nj] < 0
    axis = 0
    for a in (1, 2):
        if counts[a] < counts[axis]:
            axis = a
    # traversal: the two other axes (outer first in array order k, j, i), then the run axis fastest
    dims, stride = (ni, nj, nk), strides[axis]
    outer, inner = (1, 2) if axis == 0 else ((0, 2) if axis == 1 else (0, 1))  # grid axes (I, J, K) besides axis
    order = np.empty(voxels.size, dtype=np.int64)
    runs = np.empty((counts[axis], 5), dtype=np.int64)
    q = r = 0
    for b in range(dims[inner]):  # the slower of the two (higher grid axis = earlier array axis)
        for a in range(dims[outer]):
            for c in range(dims[axis]):
                v = a * strides[outer] + b * strides[inner] + c * stride
                p = member[v]
                if p < 0:
                    continue
                if c == 0 or member[v - stride] < 0:
                    runs[r, 0], runs[r, 1], runs[r, 2] = v % ni, (v // ni) % nj, v // (ni * nj)
                    runs[r, 3], runs[r, 4] = 0, q
                    r += 1
                runs[r - 1, 3] += 1
                order[q] = p
                q += 1
    return axis, order, runs


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def samples_lattice(out, runs, blocks, start, step_i, step_j, step_k, step_run, strengths, radius, half, cells,
                    sections):
    """out[o, p] = sum_s S_s Ddot_s (cGy/h) at the lattice points of offset o, from the (r, theta) table.

    The points are runs of neighbouring voxels of a grid: ``runs[r]`` = (i, j, k, n, first), n voxels from voxel
    (i, j, k) on in steps of ``step_run``, whose values go to out[o, first:first + n]. ``start[o, s]`` is voxel
    (0, 0, 0) moved by offset o in seed s's frame, ``step_i/j/k[s]`` and ``step_run[s]`` one voxel step along I, J,
    K and along the runs in that frame (mm). Parallel over offsets x blocks of runs (``blocks``: the run index
    where each block begins, then the end); per run and seed the two passes of :func:`grid_tabled`. Seeds of
    strength 0 are skipped.
    """
    f32 = np.float32
    near_p, mid_p, far_p = _section(sections, 0), _section(sections, 1), _section(sections, 2)
    reach = 1.001 * float(sections[2, 0]) + 1e-3
    n_blocks = blocks.size - 1
    width = (np.max(runs[:, 3]) + 7) // 8 * 8 if runs.shape[0] else 8
    for job in prange(start.shape[0] * n_blocks):
        o, b = job // n_blocks, job % n_blocks
        cell = np.empty(width, dtype=np.uint32)
        wr = np.empty(width, dtype=np.float32)
        wt = np.empty(width, dtype=np.float32)
        w = np.empty(width, dtype=np.float32)
        for r in range(blocks[b], blocks[b + 1]):
            i, j, k, n, first = runs[r, 0], runs[r, 1], runs[r, 2], runs[r, 3], runs[r, 4]
            n_pad = (n + 7) // 8 * 8
            row = out[o, first:first + n]
            row[:] = 0.0
            for s in range(strengths.size):
                strength = f32(strengths[s])
                if strength == 0.0:
                    continue
                _row_cells(start[o, s, 0] + k * step_k[s, 0] + j * step_j[s, 0] + i * step_i[s, 0],
                           start[o, s, 1] + k * step_k[s, 1] + j * step_j[s, 1] + i * step_i[s, 1],
                           start[o, s, 2] + k * step_k[s, 2] + j * step_j[s, 2] + i * step_i[s, 2],
                           step_run[s, 0], step_run[s, 1], step_run[s, 2], strength, f32(radius), f32(half), near_p,
                           mid_p, far_p, reach, cell[:n_pad], wt[:n_pad], wr[:n_pad], w[:n_pad])
                for m in range(n):
                    u = np.uint64(m)
                    row[u] += w[u] * _lookup(cells, cell[u], wt[u], wr[u])


@njit(parallel=True, error_model="numpy", fastmath=EXACT, cache=True)
def points_exact(points, centres, frames, strengths, radius, half, line, ex, log_g, f_flat, phi_r, phi, out, each):
    """Exact TG-43 dose rate (cGy/h) at points (n, 3) mm: out[p] = sum_s S_s Ddot_s(point p), or with ``each``
    out[s, p] = S_s Ddot_s(point p) (one row per seed). Parallel over blocks of POINT_BLOCK points; the seeds'
    rates are added in seed order, so a total equals the sum of its rows."""
    n_points, n_seeds = points.shape[0], strengths.size
    n_blocks = (n_points + POINT_BLOCK - 1) // POINT_BLOCK
    rows = frames.reshape(n_seeds, 9)
    for job in prange(n_blocks):
        p0 = job * POINT_BLOCK
        p1 = min(p0 + POINT_BLOCK, n_points)
        xs = np.ascontiguousarray(points[p0:p1, 0])
        ys = np.ascontiguousarray(points[p0:p1, 1])
        zs = np.ascontiguousarray(points[p0:p1, 2])
        scratch = np.empty((4, p1 - p0))
        index = np.empty((2, p1 - p0), dtype=np.int32)
        rate = np.empty(p1 - p0)
        acc = np.zeros(p1 - p0)
        for s in range(n_seeds):
            _seed_rates(xs, ys, zs, centres[s], rows[s], radius, half, line, ex, log_g, f_flat, phi_r, phi, rate,
                        scratch, index)
            strength = strengths[s]
            if each:
                for p in range(p1 - p0):
                    out[s, p0 + p] = strength * rate[p]
            else:
                for p in range(p1 - p0):
                    acc[p] += strength * rate[p]
        if not each:
            out[0, p0:p1] = acc


@njit(parallel=True, fastmath=FASTMATH, cache=True)  # each row vectorised, the rows in parallel
def greedy_scores(dose, matrix, start, free, rx, with_v200, gain, hot):
    """For each free candidate row of ``matrix`` (float32, Gy; its columns start.. for the points of ``dose``) added to
    ``dose`` (float32, Gy): the coverage gain
    sum(min(d + a, Rx) - d over d < Rx) / (m Rx) and the fraction of points it lifts over 1.5 Rx (and 2 Rx).

    Branch-free sums (rows are >= 0, so min(d + a, Rx) - d <= 0 exactly where d >= Rx, clipped to 0)."""
    m = dose.size
    rx32, hot1, hot2 = np.float32(rx), np.float32(1.5 * rx), np.float32(2.0 * rx)
    zero = np.float32(0.0)
    for q in prange(free.size):
        row = matrix[free[q], start:start + m]
        g = 0.0
        h = 0
        for p in range(m):
            d = dose[p]
            s = d + row[p]
            g += max(min(s, rx32) - d, zero)
            h += (d < hot1) & (s >= hot1)
        if with_v200:
            for p in range(m):
                h += (dose[p] < hot2) & (dose[p] + row[p] >= hot2)
        gain[q] = g / (m * rx)
        hot[q] = h / m


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def overdose_growth(dose, matrix, start, free, points, limit, out):
    """For each free candidate row (columns start.. of ``matrix``): sum(max(v + b - limit, 0) - max(v - limit, 0))
    (Gy) over ``points`` (indices; they must hold every point where v + b can reach the limit: the others add 0)."""
    lim = np.float32(limit)
    zero = np.float32(0.0)
    for q in prange(free.size):
        row = matrix[free[q], start:start + dose.size]
        acc = 0.0
        for i in range(points.size):
            p = points[i]
            acc += max(dose[p] + row[p] - lim, zero) - max(dose[p] - lim, zero)
        out[q] = acc


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def samples_tabled(px, py, pz, centres, frames, strengths, radius, half, cells, sections, out):
    """out[i, p] = sum_s strengths[i, s] Ddot (cGy/h) of seed s of sample i at point p, from the (r, theta) table.

    Points as coordinate arrays ``px``, ``py``, ``pz`` (contiguous, so the first pass vectorises);
    ``centres`` (n_samples, n_seeds, 3), ``frames`` (n_samples, n_seeds, 3, 3); seeds of strength 0 (lost) are
    skipped. Parallel over samples x blocks of POINT_BLOCK points; per seed, passes over a block as in
    :func:`grid_tabled` (local coordinates in float64, then float32 table indices and weights, in the far section
    for all points, then again with every section and the capsule rule for those within its reach; then the
    lookups).
    """
    f32 = np.float32
    near_p, mid_p, far_p = _section(sections, 0), _section(sections, 1), _section(sections, 2)
    radius, half = f32(radius), f32(half)
    reach2 = f32((1.001 * float(sections[2, 0]) + 1e-3) ** 2)  # beyond its root, the far section holds
    n_blocks = (px.size + POINT_BLOCK - 1) // POINT_BLOCK
    for job in prange(strengths.shape[0] * n_blocks):
        i, p0 = job // n_blocks, (job % n_blocks) * POINT_BLOCK
        n = min(POINT_BLOCK, px.size - p0)
        cell = np.empty(n, dtype=np.uint32)
        wr = np.empty(n, dtype=np.float32)
        wt = np.empty(n, dtype=np.float32)
        w = np.empty(n, dtype=np.float32)
        row = out[i, p0:p0 + n]
        row[:] = 0.0
        for s in range(strengths.shape[1]):
            strength = f32(strengths[i, s])
            if strength == 0.0:
                continue
            cx, cy, cz = centres[i, s, 0], centres[i, s, 1], centres[i, s, 2]
            f00, f01, f02 = frames[i, s, 0, 0], frames[i, s, 0, 1], frames[i, s, 0, 2]
            f10, f11, f12 = frames[i, s, 1, 0], frames[i, s, 1, 1], frames[i, s, 1, 2]
            f20, f21, f22 = frames[i, s, 2, 0], frames[i, s, 2, 1], frames[i, s, 2, 2]
            near = 0
            for p in range(n):  # vectorised: every point in the far section, without the capsule rule
                dx, dy, dz = px[p0 + p] - cx, py[p0 + p] - cy, pz[p0 + p] - cz
                x = f32(f00 * dx + f01 * dy + f02 * dz)
                y = f32(f10 * dx + f11 * dy + f12 * dz)
                z = f32(f20 * dx + f21 * dy + f22 * dz)
                rho2, az = x * x + y * y, abs(z)
                cell[p], wt[p], wr[p], inv_r2 = _in_section(rho2, az, far_p)
                w[p] = strength * inv_r2
                near += rho2 + az * az < reach2
            for p in range(n if near else 0):  # then the points within reach again, with every section and the rule
                dx, dy, dz = px[p0 + p] - cx, py[p0 + p] - cy, pz[p0 + p] - cz
                x = f32(f00 * dx + f01 * dy + f02 * dz)
                y = f32(f10 * dx + f11 * dy + f12 * dz)
                z = f32(f20 * dx + f21 * dy + f22 * dz)
                if x * x + y * y + z * z < reach2:
                    cell[p], wt[p], wr[p], inv_r2 = _in_table(x, y, z, radius, half, near_p, mid_p, far_p)
                    w[p] = strength * inv_r2
            for p in range(n):
                row[p] += w[p] * _lookup(cells, cell[p], wt[p], wr[p])


@njit(cache=True)
def _select(a, n, k):
    """The k-th smallest (0-based) of a[:n] (Hoare's selection, reorders a[:n])."""
    lo, hi = 0, n - 1
    while hi > lo:
        x, y, z = a[lo], a[(lo + hi) >> 1], a[hi]
        pivot = max(min(x, y), min(max(x, y), z))  # median of three
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return a[k]
    return a[k]


@njit(inline="always")
def _trial_values(new, base, mats, s0, s1, add, remove):
    """new = base + row[add[0]] + ... - row[remove[0]] - ... (rows mats[:, s0:s1]; float32, in that order, as numpy
    evaluates it)."""
    m = base.size
    new[:] = base
    for a in add:
        row = mats[a, s0:s1]
        for p in range(m):
            new[p] += row[p]
    for r in remove:
        row = mats[r, s0:s1]
        for p in range(m):
            new[p] -= row[p]


@njit(inline="always")
def _trial_value(base, mat, add, remove, p):
    """The same sum as _trial_values at one point p (of all the structures' points)."""
    v = base[p]
    for a in add:
        v += mat[a, p]
    for r in remove:
        v -= mat[r, p]
    return v


@njit(inline="always")
def _window_select(new, n_values, low, high, k, buf):
    """The k-th smallest of the values of new[:n_values] within [low, high] (k counted among those)."""
    n = 0
    for p in range(n_values):  # few are: the branch is mostly predicted
        v = new[p]
        if v >= low and v <= high:
            buf[n] = v
            n += 1
    return _select(buf, n, k)


@njit(cache=True)  # compiled once for trial_order_stats and _trial_f
def _trial(dose, mats, starts, add, remove, ranks, lo, hi, act, n_act, pruned, floors, levels, counts, out, scratch,
           zero, q0, q1):
    """One trial of :func:`trial_order_stats` for the structures q0 <= q < q1 (counts (3,), out (structures,) of
    that trial)."""
    l0, l1, l2 = levels[0], levels[1], levels[2]
    for q in range(q0, q1):
        s0, s1 = starts[q], starts[q + 1]
        base = dose[s0:s1]
        m = base.size
        if m == 0:
            out[q] = 0.0
            continue
        k, floor, low, high = ranks[q], floors[q], lo[q], hi[q]
        if pruned[q] and add.size <= 1:
            # the points of act (removals only: those of its first n_act[1, q], the others are below low and stay)
            na, points = n_act[0, q] if add.size else n_act[1, q], act[q]
            new = scratch[:na]
            if add.size == 1 and remove.size == 1:  # a move: the same sum as _trial_value, its rows picked once
                ra, rr = mats[add[0]], mats[remove[0]]
                for i in range(na):
                    p = s0 + points[i]
                    new[i] = (dose[p] + ra[p]) - rr[p]
            elif add.size == 0 and remove.size == 1:  # a removal, likewise
                rr = mats[remove[0]]
                for i in range(na):
                    p = s0 + points[i]
                    new[i] = dose[p] - rr[p]
            else:
                for i in range(na):
                    new[i] = _trial_value(dose, mats, add, remove, s0 + points[i])
            below, above = m - na, 0
            for i in range(na):  # vectorised
                below += new[i] < low
                above += new[i] > high
            inside = m - below - above
            if below <= k < below + inside:
                out[q] = _window_select(new, na, low, high, k - below, scratch[na:2 * na])
                continue
            if k >= below + inside:  # above the window: among the values > high (every one at a point of act)
                out[q] = _window_select(new, na, np.nextafter(high, np.float32(np.inf)), np.float32(np.inf),
                                        k - below - inside, scratch[na:2 * na])
                continue
        new = scratch[:m]
        if add.size > 1 or remove.size > 1:
            _trial_values(new, base, mats, s0, s1, add, remove)
            ra = rr = zero[:m]  # the values are made: counted as new + 0 - 0 (exact)
            base = new
        else:  # one row or none added or removed (none: a zero row, exact): values and counts in one pass
            ra = mats[add[0], s0:s1] if add.size else zero[:m]
            rr = mats[remove[0], s0:s1] if remove.size else zero[:m]
        if floor > -np.inf:  # the counts first, without keeping the values: most trials need no more
            c0 = c1 = c2 = under = 0
            for p in range(m):  # vectorised
                v = (base[p] + ra[p]) - rr[p]
                c0 += v >= l0
                c1 += v >= l1
                c2 += v >= l2
                under += v < floor
            if q == 0:
                counts[0], counts[1], counts[2] = c0, c1, c2
            if under <= k:
                out[q] = floor
                continue
        c0 = c1 = c2 = below = inside = 0
        for p in range(m):  # vectorised
            v = (base[p] + ra[p]) - rr[p]
            new[p] = v
            c0 += v >= l0
            c1 += v >= l1
            c2 += v >= l2
            below += v < low
            inside += (v >= low) & (v <= high)
        if q == 0:
            counts[0], counts[1], counts[2] = c0, c1, c2
        if below <= k < below + inside:
            out[q] = _window_select(new, m, low, high, k - below, scratch[m:2 * m])
        else:
            out[q] = _select(new, m, k)


@njit(cache=True)  # no fastmath: the sums must round exactly as numpy's (same plan as the numpy path)
def trial_order_stats(dose, mats, starts, adds, removes, ranks, lo, hi, act, n_act, pruned, floors, levels, counts, out,
                      scratch):
    """Order statistics of trial doses without keeping them (the optimiser's trial moves), for T trials at once.

    Structure q's doses are dose[starts[q]:starts[q + 1]] and its candidate rows mats[:, starts[q]:starts[q + 1]]
    (float32, Gy). For trial t and structure q: new = base + row[adds[t, 0]] + ... - row[removes[t, 0]] - ...
    (float32, in that order, as numpy evaluates it); out[t, q] = its ranks[q]-th smallest value (0-based; 0 Gy
    if empty), or floors[q] when at most ranks[q] values lie below floors[q] (the value is then >= floors[q], all a
    goal-type term needs; -inf: always the value); counts[t, l] = number of values of structure 0 >= levels[l]
    (float32, the three levels of V100, V150, V200). One pass makes the counts (with a floor, first without
    keeping the values: when the floor is met nothing more is needed); the selection then looks only at the values
    within [lo[q], hi[q]] (the state's neighbourhood of that rank) when the rank falls among them, else at all
    values: the result is the same. For a structure with ``pruned[q]`` (no floor) and a trial of at most one
    addition, only the points ``act[q, :n_act[0, q]]`` are looked at, and for a trial of removals only, only the
    first ``n_act[1, q]`` of them (base >= lo[q]): the others are below lo[q] in every such trial (the caller's
    bound: base + the largest candidate dose there < lo[q]; removals only lower it).
    """
    zero = np.zeros(scratch.size // 2, dtype=np.float32)
    for t in range(adds.shape[0]):
        _trial(dose, mats, starts, adds[t], removes[t], ranks, lo, hi, act, n_act, pruned, floors, levels, counts[t],
               out[t], scratch, zero, 0, starts.size - 1)


# The optimiser's local search (planning.optimize), compiled: a state S = (x, per_needle, dose, metrics, lo, hi, act,
# n_act, score) is changed in place; the problem P = (mats, starts, needle_of, ranks, caps, pruned, floors, levels,
# goal, limits, k_oar) is constant. Structure q (the CTV, then each limited OAR, an organ with two limits twice) has
# the doses dose[starts[q]:starts[q + 1]], the candidate rows mats[:, starts[q]:starts[q + 1]] and the largest
# candidate dose caps[starts[q]:starts[q + 1]] (float32, Gy). metrics = [V100, V150, V200 (%), then per structure its
# order statistic (Gy): CTV D90, each limited OAR's metric]; score = [F, violation]; goal = [Rx, D90 aim (Gy), V100
# goal, V150 limit, V200 limit (nan: none), safety, then the weights violation, needle, hot, oar]. Every number is
# computed as optimize._Problem does it.

#: The optimiser's trial windows: the doses within max(16, n // WINDOW) ranks of a metric's rank, and within
#: PRUNED_WINDOW ranks for a pruned structure (an OAR: its trials select among the window's values, fewer then;
#: a rank outside the window is still found, more slowly). Their sizes change only the speed.
WINDOW = 128
PRUNED_WINDOW = 128


@njit(inline="always")
def _objective(metrics, n_seeds, n_needles, goal, limits):
    """(F, violation) as optimize._Problem.objective_of, in the same order of operations."""
    rx, aim, v100, v150, v200, s = goal[0], goal[1], goal[2], goal[3], goal[4], goal[5]
    viol = (max(0.0, aim - metrics[3]) / rx * 100.0 + max(0.0, v100 + s - metrics[0])
            + max(0.0, metrics[1] - v150 + s))
    if not np.isnan(v200):
        viol += max(0.0, metrics[2] - v200 + s)
    oar = 0.0
    for i in range(limits.size):
        viol += max(0.0, metrics[4 + i] / limits[i] * 100.0 - 100.0 + s)
        oar += metrics[4 + i] / limits[i]
    value = goal[6] * viol + n_seeds + goal[7] * n_needles + goal[8] * (metrics[1] + metrics[2]) / 100.0 + goal[9] * oar
    return value, viol


@njit(inline="always")
def _open_needles(per):
    n = 0
    for c in per:
        n += c > 0
    return n


@njit(inline="always")
def _needles_after(per, needle_of, add, remove):
    """Needles in use after adding ``add`` and removing ``remove`` (``per`` only read: trials run in parallel)."""
    n = _open_needles(per)
    k = add.size + remove.size
    for i in range(k):
        needle = needle_of[add[i]] if i < add.size else needle_of[remove[i - add.size]]
        seen, change = False, 0
        for j in range(k):
            other = needle_of[add[j]] if j < add.size else needle_of[remove[j - add.size]]
            if other == needle:
                seen |= j < i
                change += 1 if j < add.size else -1
        if not seen:  # each needle once
            n += (per[needle] + change > 0) - (per[needle] > 0)
    return n


@njit(cache=True)
def state_refresh(S, P, buf):
    """The state's exact metrics, F, and trial windows (lo, hi, act) from its doses (as optimize._Problem.metrics:
    order statistics of the float32 doses, V levels counted as float32 comparisons)."""
    x, per, dose, metrics, lo, hi, act, n_act, score = S
    mats, starts, needle_of, ranks, caps, pruned, floors, levels, goal, limits, k_oar = P
    for q in range(starts.size - 1):
        s0, k = starts[q], ranks[q]
        d = dose[s0:starts[q + 1]]
        m = d.size
        w = max(16, m // WINDOW) if not pruned[q] else PRUNED_WINDOW
        value = np.float32(metrics[3 + q])  # the last rank's value and window (nan: none yet)
        below_w, above_w = value - lo[q], hi[q] - value
        lo[q], hi[q], n_act[0, q], n_act[1, q] = -np.inf, np.inf, 0, 0
        if m == 0:
            metrics[3 + q] = 0.0
            continue
        if q == 0:
            c0 = c1 = c2 = 0
            for p in range(m):  # vectorised
                c0 += d[p] >= levels[0]
                c1 += d[p] >= levels[1]
                c2 += d[p] >= levels[2]
            metrics[0], metrics[1], metrics[2] = 100.0 * c0 / m, 100.0 * c1 / m, 100.0 * c2 / m
        # the values within the last window widened on either side (2, 8, 32 times its distance to the rank's value)
        # when they hold ranks k - w, k and k + w (of those < m and >= 0), else all
        first, last = k - w if k - w >= 0 else k, k + w if k + w < m else k  # the ranks to find
        found, widen = False, np.float32(2.0)
        for _ in range(3):
            low, high = value - widen * below_w, value + widen * above_w
            n = below = 0
            for p in range(m):
                v = d[p]
                buf[n] = v
                n += (v >= low) & (v <= high)
                below += v < low
            found = below <= first <= last < below + n
            if found or not (low == low and high == high):  # (no window yet: nan)
                break
            widen *= 4
        if not found:
            n, below = m, 0
            buf[:m] = d
        j = k - below
        b = buf[:n]
        metrics[3 + q] = _select(b, n, j)  # b[:j] <= b[j] <= b[j + 1:]: the window's ends within either side
        if k - w >= 0:
            lo[q] = _select(b, j, j - w)
        if k + w < m:
            hi[q] = _select(b[j + 1:], n - j - 1, w - 1)
        if pruned[q]:  # act: first the points at or above lo, then those one seed can lift to it
            n, low = 0, lo[q]
            for p in range(m):
                if d[p] >= low:
                    act[q, n] = p
                    n += 1
            n_act[1, q] = n
            for p in range(m):
                if d[p] < low and d[p] + caps[s0 + p] >= low:
                    act[q, n] = p
                    n += 1
            n_act[0, q] = n
    score[0], score[1] = _objective(metrics, x.sum(), _open_needles(per), goal, limits)


@njit(cache=True)
def state_apply(S, P, add, remove, buf):
    """Add candidates ``add``, remove ``remove`` (int64 arrays): doses d + rows added - rows removed (float32, in
    that order, as numpy), then :func:`state_refresh`."""
    x, per, dose = S[0], S[1], S[2]
    mats, needle_of = P[0], P[2]
    for a in add:
        row = mats[a]
        for p in range(dose.size):
            dose[p] += row[p]
    for r in remove:
        row = mats[r]
        for p in range(dose.size):
            dose[p] -= row[p]
    for a in add:
        x[a] = True
        per[needle_of[a]] += 1
    for r in remove:
        x[r] = False
        per[needle_of[r]] -= 1
    state_refresh(S, P, buf)


@njit(inline="always")
def _trial_f(per, dose, lo, hi, act, n_act, mats, starts, needle_of, ranks, pruned, floors, levels, goal, limits,
             add, remove, n_seeds, tm, counts, scratch, zero, cut):
    """F of the state with ``add`` added and ``remove`` removed (state unchanged), as optimize._State.trials; or,
    when F with the OARs' metrics at 0 Gy (F grows with each of them: a lower bound) is already >= ``cut``, that
    bound (the OARs not looked at)."""
    _trial(dose, mats, starts, add, remove, ranks, lo, hi, act, n_act, pruned, floors, levels, counts, tm[3:],
           scratch, zero, 0, 1)
    m = starts[1]
    for lv in range(3):
        tm[lv] = 100.0 * counts[lv] / m
    tm[4:] = 0.0
    n_seeds, n_needles = n_seeds + add.size - remove.size, _needles_after(per, needle_of, add, remove)
    low = _objective(tm, n_seeds, n_needles, goal, limits)[0]
    if low >= cut:
        return low
    _trial(dose, mats, starts, add, remove, ranks, lo, hi, act, n_act, pruned, floors, levels, counts, tm[3:],
           scratch, zero, 1, starts.size - 1)
    return _objective(tm, n_seeds, n_needles, goal, limits)[0]


def search_work(size, structures):
    """Scratch for :func:`_trials_f`: ``size`` float32 (twice the largest structure), trial metrics, counts and a
    zero row."""
    return np.empty(size, np.float32), np.empty(3 + structures), np.empty(3, np.int64), np.zeros(size // 2, np.float32)


@njit(cache=True)
def _trials_f(S, P, adds, a_lo, a_hi, removes, r_lo, r_hi, values, work):
    """values[t] = F of the state with adds[a_lo[t]:a_hi[t]] added and removes[r_lo[t]:r_hi[t]] removed (state
    unchanged), or a lower bound of it that is >= the state's F - 1e-9 (:func:`_trial_f`: a trial that cannot lower
    F by more than 1e-9, the least change kept); work = (scratch, tm, counts, zero) (:func:`search_work`). One
    trial after the other: the trials are too small for threads to pay (a move tries ~2)."""
    x, per, dose, metrics, lo, hi, act, n_act, score = S
    mats, starts, needle_of, ranks, caps, pruned, floors, levels, goal, limits, k_oar = P
    scratch, tm, counts, zero = work
    n_seeds, cut = x.sum(), score[0] - 1e-9
    for t in range(values.size):
        values[t] = _trial_f(per, dose, lo, hi, act, n_act, mats, starts, needle_of, ranks, pruned, floors, levels,
                             goal, limits, adds[a_lo[t]:a_hi[t]], removes[r_lo[t]:r_hi[t]], n_seeds, tm, counts,
                             scratch, zero, cut)


@njit(cache=True)
def remove_each(S, P, flat, offsets, work):
    """optimize._remove_each_if_better: removal i (candidates flat[offsets[i]:offsets[i + 1]]) is kept when it lowers
    F by more than 1e-9, each tried against the state as it is then. True if any was kept."""
    none, zero, value = np.empty(0, np.int64), np.zeros(1, np.int64), np.empty(1)
    changed = False
    for i in range(offsets.size - 1):
        _trials_f(S, P, none, zero, zero, flat, offsets[i:i + 1], offsets[i + 1:i + 2], value, work)
        if value[0] < S[8][0] - 1e-9:
            state_apply(S, P, none, flat[offsets[i]:offsets[i + 1]], work[0])
            changed = True
    return changed


@njit(cache=True)
def move_each(S, P, order, nb_flat, nb_offsets, work):
    """optimize._move_seeds: each seed j of ``order`` still chosen moves to the free neighbour
    (nb_flat[nb_offsets[j]:nb_offsets[j + 1]], in that order) of lowest F when that lowers F by more than 1e-9
    (the first of equal ones). True if any moved."""
    x = S[0]
    most = np.max(nb_offsets[1:] - nb_offsets[:-1])
    free, values, lo, hi = np.empty(most, np.int64), np.empty(most), np.zeros(most, np.int64), np.ones(most, np.int64)
    up = np.arange(most + 1)
    remove = np.empty(1, np.int64)
    changed = False
    for j in order:
        if not x[j]:
            continue
        n = 0
        for i in range(nb_offsets[j], nb_offsets[j + 1]):
            free[n] = nb_flat[i]
            n += not x[nb_flat[i]]
        if n == 0:
            continue
        remove[0] = j
        _trials_f(S, P, free, up[:n], up[1:n + 1], remove, lo[:n], hi[:n], values[:n], work)
        best, best_value = -1, S[8][0]
        for t in range(n):
            if values[t] < best_value - 1e-9:
                best, best_value = t, values[t]
        if best >= 0:
            state_apply(S, P, free[best:best + 1], remove, work[0])
            changed = True
    return changed


#: Candidates whose exact greedy terms a lazy pick (:func:`greedy_pick`) evaluates at a time.
GREEDY_CHUNK = 8
#: Bound on the rounding growth of one candidate's coverage gain (fraction of m Rx) as doses rise: each float32 term
#: min(d + a, Rx) - d rounds within 2 ulp of 2 Rx, i.e. within 2^-21 Rx, of its exact, non-increasing value.
GAIN_ROUNDING = 4.0 * 2.0 ** -21
#: Bound on the rounding of one overdose term max(v + b - L, 0) - max(v - L, 0) (float32, four operations), as a
#: fraction of v + b + L (a generous 16 half-ulps).
OVERDOSE_ROUNDING = 2.0 ** -20


@njit(cache=True)
def greedy_pick(S, P, with_v200, memo):
    """optimize._Problem.greedy_pick: the free candidate of best coverage gain - 0.25 hot-spot growth - OAR overdose
    growth / (k limit) - 0.2 max gain if it opens a needle; -1 if none is free.

    Lazy, within one fill (the doses only rise, so every gain falls and every overdose growth rises): ``memo``
    (4, candidates) holds per candidate, from its last exact evaluation, a bound of its coverage gain from above
    (fraction of m Rx, with GAIN_ROUNDING; inf: never evaluated), its hot-spot count (points lifted over 1.5 Rx,
    and 2 Rx), the count of points over those levels then (of the points it lifted, only those lifted since by
    other seeds, the rise of that count, are lost) and its overdose penalty less its rounding bound. Candidates
    are evaluated exactly in order of decreasing score bound, GREEDY_CHUNK at a time, until no other candidate's
    score bound (gain bound - 0.25 hot-spot count bound - overdose bound - needle penalty, the penalty 0.2 x the
    largest gain evaluated: a lower bound of it until no gain bound is left above that) reaches the best exact
    score: the same pick as evaluating every free candidate."""
    x, per, dose = S[0], S[1], S[2]
    mats, starts, needle_of, caps, goal, limits, k_oar = P[0], P[1], P[2], P[4], P[8], P[9], P[10]
    free = np.flatnonzero(~x)
    if free.size == 0:
        return -1
    bound, lifted, seen, over_low = memo[0], memo[1], memo[2], memo[3]
    near, ends = np.empty(starts[-1] - starts[1], np.int64), np.zeros(starts.size - 1, np.int64)
    slack = 0.0  # the overdose penalty's rounding bound now
    for q in range(1, starts.size - 1):  # per OAR, the points one seed can lift over the limit
        s0, s1 = starts[q], starts[q + 1]
        lim = np.float32(limits[q - 1])
        these = np.flatnonzero(dose[s0:s1] + caps[s0:s1] >= lim)
        ends[q] = ends[q - 1] + these.size
        near[ends[q - 1]:ends[q]] = these
        size = 0.0
        for p in these:
            size += dose[s0 + p] + caps[s0 + p] + lim
        slack += OVERDOSE_ROUNDING * size / (k_oar[q - 1] * limits[q - 1])
    m = starts[1]
    over_now = round(S[3][1] * m / 100.0) + (round(S[3][2] * m / 100.0) if with_v200 else 0)  # points over the levels
    low = np.empty(free.size)  # the score bounds without the needle penalty
    for i in range(free.size):
        c = free[i]
        low[i] = bound[c] - 0.25 * max(lifted[c] - (over_now - seen[c]), 0.0) / m - (over_low[c] - slack)
    order = free[np.argsort(-low, kind="mergesort")]
    low = low[np.argsort(-low, kind="mergesort")]
    gain, hot, over = np.empty(free.size), np.empty(free.size), np.empty(free.size)
    score = np.empty(free.size)
    done, most, best = 0, -np.inf, -1
    while done < order.size:
        end = order.size if bound[order[0]] == np.inf else min(done + GREEDY_CHUNK, order.size)
        chunk = order[done:end]
        g, h, o, sc = gain[done:end], hot[done:end], over[done:end], score[done:end]
        greedy_scores(dose[:m], mats, 0, chunk, goal[0], with_v200, g, h)
        sc[:] = g - 0.25 * h
        penalty = np.zeros(chunk.size)
        for q in range(1, starts.size - 1):
            s0, s1 = starts[q], starts[q + 1]
            if s1 > s0:
                overdose_growth(dose[s0:s1], mats, s0, chunk, near[ends[q - 1]:ends[q]], limits[q - 1], o)
                sc -= o / (k_oar[q - 1] * limits[q - 1])
                penalty += o / (k_oar[q - 1] * limits[q - 1])
        for i in range(chunk.size):
            c = chunk[i]
            bound[c], lifted[c], seen[c], over_low[c] = g[i] + GAIN_ROUNDING, round(h[i] * m), over_now, \
                penalty[i] - slack
        most = max(most, g.max())
        done = end
        # the largest gain is known unless a bound left is above the largest evaluated: until it is, the needle
        # penalty is known only from below, and so the score of a seed opening a needle only from above
        known = True
        for i in range(done, order.size):
            known &= bound[order[i]] <= most
        opening = 0.2 * max(most, 1e-12)
        best, best_score, reach = -1, -np.inf, -np.inf  # reach: the best score any other could have
        for i in range(done):  # the exact scores, the first of equal ones as numpy's argmax (by index)
            c = order[i]
            opens = per[needle_of[c]] == 0
            v = score[i] - opens * opening
            if opens and not known:
                reach = max(reach, v)
            elif v > best_score or (v == best_score and c < best):
                best, best_score = c, v
        for i in range(done, order.size):
            reach = max(reach, low[i] - (per[needle_of[order[i]]] == 0) * opening)
        if best >= 0 and reach < best_score:
            break
    return best


@njit(cache=True)
def fill(S, P, v100_aim, with_v200, scratch):
    """optimize._fill: greedy additions until D90 >= its aim and V100 >= ``v100_aim`` (or no candidate is left);
    True if any was added."""
    metrics, goal = S[3], P[8]
    add, none = np.empty(1, np.int64), np.empty(0, np.int64)
    memo = np.zeros((4, S[0].size))  # greedy_pick's bounds, none known before the first pick
    memo[0] = np.inf
    added = False
    while not (metrics[3] >= goal[1] and metrics[0] >= v100_aim):
        j = greedy_pick(S, P, with_v200, memo)
        if j < 0:
            break
        add[0] = j
        state_apply(S, P, add, none, scratch)
        added = True
    return added
