"""Which engine evaluates TG-43 (compiled or numpy), the compiled engine's (r, theta) table, and both engines' drivers.

Engines
-------
* ``"compiled"``: numba kernels (:mod:`SeedBrachyLib.kernel_numba`), multi-threaded.
  Grid dose comes from a precomputed (r, theta) table (below); dose at points
  (:func:`points_rate`) is the exact TG-43U1 formula, the same rules and tables as
  :mod:`SeedBrachyLib.tg43`. The table also gives the dose at points for many seed sets at once
  (:func:`samples_rate`, the robustness sampling and the optimiser) and at the DVH's sample points
  (:func:`samples_rate`, :func:`lattice_rate`: the interior points along runs of neighbouring voxels).
* ``"numpy"``: the vectorised exact evaluation of :mod:`SeedBrachyLib.tg43`, the
  fallback when numba cannot be imported (e.g. inside Slicer before it is installed).

``engine="auto"`` (the default everywhere) takes the compiled engine when numba imports,
else numpy; the environment variable ``SEEDBRACHY_ENGINE=numpy`` forces the fallback.
:func:`describe` says which one ran, for dose descriptions and logs. numba is imported
on first use, never when this module is imported. Both engines apply the same
near-seed rule (:func:`SeedBrachyLib.tg43.capsule_surface`).

The table
---------
Q(r, theta) = r^2 x Ddot(r, theta) / S_K (mm^2 cGy h^-1 U^-1), exact TG-43 at the nodes,
looked up bilinearly and divided by the exact r^2, theta folded into [0, 90] deg as
:mod:`SeedBrachyLib.tg43` folds it (F is tabulated on [0, 90] deg, symmetric about the
transverse plane; the models' validation requires it). Three sections of nodes (:data:`SECTIONS`):
up to 5 mm every 0.02 mm and 0.25 deg, to 10 mm every 0.1 mm and 1 deg, beyond every 0.5 mm and
5 deg, to the largest seed-to-voxel distance; each step is the largest up to these that puts every
tabulated radius of g_L, F and phi_an and every tabulated F angle on a node, so that F's and g_L's
kinks lie on node lines (F's angles of the shipped models are multiples of 5 deg, selectSeed's of 1 deg:
its far section has 1 deg steps). Within a cell Q is then smooth, and bilinear interpolation of it
stays within 1e-4 beyond 3 mm. The cells hold the bilinear coefficients (four float32 numbers each); the
far section, where nearly every voxel of a grid falls, takes 107 kB (6711; 534 kB for selectSeed), so
it stays in the L2 cache. theta enters through u^2 = 1 - cos(theta) = rho^2 / (r (r + |z|)) and a
fitted polynomial theta(u) (error < 2e-5 deg, 7 coefficients). Largest difference from the exact
evaluation, measured by Testing/test_kernel.py at the centre of every cell of every section for
every installed model, and over random points from 0.2 to 150 mm in every direction (points inside
the capsule test the surface values): below 0.03 %, the largest beside the ends of the active length
(the issue's bound is 0.1 % where the dose exceeds 1 % of the maximum); the benchmark prints the
figure for a 60-seed grid. Inside the capsule the nodes hold the formula's smooth continuation, so
that cells cut by the capsule surface interpolate a smooth function.
"""

from __future__ import annotations

import importlib
import math
import os
from dataclasses import dataclass

import numpy as np

from . import tg43
from .errors import InputError
from .vectors import extent, perpendicular_basis

ENGINES = ("auto", "compiled", "numpy")
#: The table's three sections: (where the next begins in mm, largest r step mm, largest theta step deg); the
#: last runs to the needed radius. Each step is the largest up to these that puts every tabulated radius (g_L,
#: F, phi_an) and every tabulated F angle on a node (see :func:`table_for`); ends as in :func:`section_ends_mm`.
SECTIONS = ((5.0, 0.02, 0.25), (10.0, 0.1, 1.0), (None, 0.5, 5.0))
#: The table is built to a multiple of this radius (mm), so nearby grids share it.
R_MAX_BUCKET_MM = 100.0
#: Lattice points per work item of :func:`lattice_rate` (about; whole runs).
LATTICE_BLOCK = 2048

_NUMBA = {}


def numba_kernels():
    """The compiled kernels module, or None when numba cannot be imported (the reason is kept)."""
    if "module" not in _NUMBA:
        try:
            _NUMBA["module"] = importlib.import_module(".kernel_numba", __package__)
        except ImportError as exc:  # numba missing or broken
            _NUMBA["module"], _NUMBA["reason"] = None, str(exc)
    return _NUMBA["module"]


def retry_import():
    """Forget a failed numba import (e.g. after installing numba in a running session)."""
    if _NUMBA.get("module") is None:
        _NUMBA.clear()


def resolve(engine="auto"):
    """'compiled' or 'numpy' for ``engine`` in ENGINES; 'compiled' asked for but unavailable is an InputError."""
    if engine not in ENGINES:
        raise InputError(f"dose engine {engine!r} unknown: use one of {ENGINES}")
    if engine == "auto":
        if os.environ.get("SEEDBRACHY_ENGINE", "").lower() == "numpy":
            return "numpy"
        return "compiled" if numba_kernels() is not None else "numpy"
    if engine == "compiled" and numba_kernels() is None:
        raise InputError(f"the compiled dose engine needs numba ({_NUMBA['reason']}); "
                         "install it (pip install numba) or use engine='numpy'")
    return engine


def describe(engine="auto"):
    """One line saying which engine ``engine`` resolves to, e.g. for a dose volume's description."""
    engine = resolve(engine)
    if engine == "compiled":
        import numba

        return (f"compiled TG-43 kernel (numba {numba.__version__}, up to {_threads(None)} threads; "
                "grid and DVH points from an (r, theta) table within 0.1 % of exact, other points exact)")
    return "numpy TG-43 kernel (exact, vectorised)"


#: Below this many (point, seed) pairs the compiled kernels run on the calling thread: waking worker
#: threads costs more than the work (tens of ms on a loaded machine).
PARALLEL_MIN_PAIRS = 1 << 20


def set_threads(workers, pairs=None):
    """Use ``workers`` threads (at most the machine's; 1 for fewer than PARALLEL_MIN_PAIRS ``pairs``, counted in
    table lookups or exact pairs, which cost about the same) in the compiled kernels; returns the count used."""
    import numba

    n = _threads(workers)
    if pairs is not None and pairs < PARALLEL_MIN_PAIRS:
        n = 1
    numba.set_num_threads(n)
    return n


def _threads(workers):
    """Threads a large call uses: ``workers`` (default: the machine's cores), at most numba's."""
    import numba

    return max(1, min(int(workers or os.cpu_count() or 1), numba.config.NUMBA_NUM_THREADS))


def seed_frames(axes):
    """Rotation matrices (n, 3, 3): rows a, b across each unit axis (RAS) and the axis itself."""
    axes = np.asarray(axes, dtype=float).reshape(-1, 3)
    return np.ascontiguousarray(np.stack([*perpendicular_basis(axes), axes], axis=1))


# ------------------------------------------------------------------ the table
@dataclass(frozen=True)
class Table:
    """Q = r^2 Ddot / S_K on the (r, theta) nodes of three sections, as bilinear cells, with their index maps.

    ``cells`` (float32, flat): for each section in turn, each r interval and, within it, each theta
    interval, four numbers (a, b, c, d) with Q = a + b wt + wr (c + d wt) at fractional position
    (wr, wt) in the cell (a = Q at the cell's first node; b, c the differences to the next node in
    theta and in r; d the cross term). ``sections`` (float32, (3, 13)): per section its first
    radius (mm), 1/r step (mm^-1), cells per r interval, first cell, last r interval, last theta
    interval and the 7 coefficients of its theta-index polynomial (see :func:`_theta_polynomial`).
    ``steps``: per section (first radius mm, end mm, r step mm, theta step deg), for reports and tests.
    """

    cells: np.ndarray
    sections: np.ndarray
    steps: tuple
    r_max_mm: float


def _theta_polynomial():
    """Coefficients c_k with theta (deg) = u * sum_k c_k t^k, t = u^2 = 1 - cos theta (error < 2e-5 deg)."""
    u = np.unique(np.concatenate([np.sin(np.linspace(0.0, np.pi / 2, 400)), np.linspace(0.0, 1.0, 400)]))
    theta = np.degrees(2.0 * np.arcsin(u / np.sqrt(2.0)))
    basis = u[:, None] * (u[:, None] ** 2) ** np.arange(7)[None, :]
    coef, *_ = np.linalg.lstsq(basis, theta, rcond=None)
    return coef


def _node_step(start, end, breaks, largest):
    """The largest step <= ``largest`` that puts ``end`` and every breakpoint within (start, end) on a node
    (at 1e-4 resolution); ``largest`` itself when that would take more than 64 times as many nodes."""
    ticks = [round((x - start) * 1e4) for x in (*breaks, end) if start < x <= end]
    common = 0
    for t in ticks:
        common = math.gcd(common, int(t))
    step = common / 1e4 / math.ceil(common / 1e4 / largest - 1e-9)
    return step if step >= largest / 64 else largest


def section_ends_mm(model):
    """Where the table's middle and far sections begin (mm): 5 and 10 mm, or more for a larger capsule so
    that the far section (no capsule rule) starts beyond twice the capsule's bounding radius."""
    bound = math.hypot(model.outer_radius_mm, 0.5 * model.outer_length_mm)
    scale = max(1, math.ceil(2.0 * bound / SECTIONS[1][0]))
    return SECTIONS[0][0] * scale, SECTIONS[1][0] * scale


_TABLE_CACHE = {}


def table_for(model, formalism, r_max_mm):
    """The (r, theta) table of ``model`` covering distances up to ``r_max_mm`` (mm), built once and cached."""
    r_max = R_MAX_BUCKET_MM * max(1, int(np.ceil(float(r_max_mm) / R_MAX_BUCKET_MM)))
    key = (tg43._tables_key(model), model.dose_rate_constant, model.active_length_mm, model.outer_radius_mm,
           model.outer_length_mm, formalism, r_max)
    if key not in _TABLE_CACHE:
        radii = [*model.gl_r_mm, *model.f_r_mm, *([] if model.phi_r_mm is None else model.phi_r_mm)]
        ends = (*section_ends_mm(model), r_max)
        poly = _theta_polynomial()
        cells, sections, steps, start, first = [], [], [], 0.0, 0
        for end, (_, r_largest, t_largest) in zip(ends, SECTIONS):
            h = _node_step(start, end, radii, r_largest)
            dt = _node_step(0.0, 90.0, model.f_theta_deg, t_largest)
            q = _q_nodes(model, formalism, start + h * np.arange(round((end - start) / h) + 1),
                         np.arange(round(90.0 / dt) + 1) * dt)
            a, b, c = q[:-1, :-1], q[:-1, 1:] - q[:-1, :-1], q[1:, :-1] - q[:-1, :-1]
            cells.append(np.stack([a, b, c, q[1:, 1:] - q[1:, :-1] - b], axis=-1).ravel())
            n_r, n_t = a.shape
            sections.append([start, 1.0 / h, n_t, first, n_r - 1, n_t - 1, *(poly / dt)])
            steps.append((start, end, h, dt))
            first += n_r * n_t
            start = end
        _TABLE_CACHE[key] = Table(np.ascontiguousarray(np.concatenate(cells), dtype=np.float32),
                                  np.array(sections, dtype=np.float32), tuple(steps), r_max)
    return _TABLE_CACHE[key]


def _q_nodes(model, formalism, r, theta_deg):
    """Q = r^2 Ddot / S_K (mm^2 cGy h^-1 U^-1) on the nodes r (mm) x theta (deg)."""
    rr, tt = np.meshgrid(r, np.radians(theta_deg), indexing="ij")
    rho, z = rr * np.sin(tt), rr * np.cos(tt)
    # Nodes on or next to the active segment (no point outside the capsule reaches their cells)
    # take the capsule-surface value; other nodes inside the capsule the formula's continuation.
    near_segment = (rho < 0.05) & (np.abs(z) < 0.5 * model.active_length_mm + 0.05)
    rate = np.where(near_segment, tg43.dose_rate_per_u_cyl(model, rho, z, formalism),
                    tg43.formula_per_u(model, rho, z, formalism))
    return rr * rr * rate


def _exact_params(model, formalism):
    g_axis, log_g, r_axis, t_axis, f_flat = tg43._tables(model)
    scale = model.dose_rate_constant / float(tg43.geometry_line_transverse(tg43.R0_MM, model.active_length_mm))
    ex = (float(model.active_length_mm), float(scale), g_axis.x0, g_axis.step, g_axis.n,
          float(model.f_r_mm[0]), float(model.f_r_mm[-1]), r_axis.x0, r_axis.step, r_axis.n,
          t_axis.x0, t_axis.step, t_axis.n)
    if formalism == "point":
        tg43.anisotropy_factor(model, 1.0)  # names the missing table
        phi_r, phi = model.phi_r_mm, model.phi_an
    elif formalism == "line":
        phi_r = phi = np.zeros(1)
    else:
        raise InputError(f"formalism {formalism!r} unknown: use 'line' (2D) or 'point' (1D)")
    return formalism == "line", ex, log_g, f_flat, np.asarray(phi_r, float), np.asarray(phi, float)


def _capsule(model):
    return float(model.outer_radius_mm), 0.5 * float(model.outer_length_mm)


# ------------------------------------------------------------------ drivers
def grid_rate_slab(engine, out, k0, grid, positions, frames, strengths, model, formalism, table=None):
    """Add the dose rate (cGy/h) of all seeds to ``out``, a float64 [k, j, i] slab of ``grid`` from slice ``k0``.

    ``engine`` is a resolved engine; the compiled engine needs the ``table``.
    """
    nk, nj, ni = out.shape
    step = grid.direction * grid.spacing[None, :]  # columns: one voxel along I, J, K (mm RAS)
    start = np.einsum("sab,sb->sa", frames, grid.origin[None, :] - positions)  # voxel (0,0,0), seed frames
    steps = [np.ascontiguousarray(frames @ step[:, m]) for m in range(3)]
    if engine == "compiled":
        radius, half = _capsule(model)
        numba_kernels().grid_tabled(out, int(k0), np.ascontiguousarray(start), steps[0], steps[1], steps[2],
                                    np.asarray(strengths, float), radius, half, table.cells, table.sections)
        return
    i, j, k = np.arange(ni), np.arange(nj), np.arange(k0, k0 + nk)
    for s in range(len(strengths)):
        x, y, z = (start[s, a] + k[:, None, None] * steps[2][s, a] + j[None, :, None] * steps[1][s, a]
                   + i[None, None, :] * steps[0][s, a] for a in range(3))
        out += strengths[s] * tg43.dose_rate_per_u_cyl(model, np.sqrt(x * x + y * y), z, formalism)


def points_rate(engine, points, positions, frames, strengths, model, formalism, each=False, workers=None):
    """Exact dose rate (cGy/h) at points (n, 3) mm RAS: total (n,) or, with ``each``, per seed (n_seeds, n)."""
    points = np.ascontiguousarray(points, dtype=float)
    strengths = np.asarray(strengths, dtype=float)
    if engine == "compiled":
        set_threads(workers, len(points) * len(strengths))  # an exact pair costs about one lookup
        radius, half = _capsule(model)
        params = _exact_params(model, formalism)
        kernels = numba_kernels()
        out = np.empty((len(strengths) if each else 1, len(points)))
        kernels.points_exact(points, np.ascontiguousarray(positions, float), np.ascontiguousarray(frames, float),
                             strengths, radius, half, *params, out, bool(each))
        return out if each else out[0]
    out = np.zeros((len(strengths), len(points)) if each else len(points))
    for s in range(len(strengths)):
        local = (points - positions[s]) @ frames[s].T
        rate = strengths[s] * tg43.dose_rate_per_u_cyl(
            model, np.hypot(local[:, 0], local[:, 1]), local[:, 2], formalism)
        if each:
            out[s] = rate
        else:
            out += rate
    return out


def samples_rate(engine, points, positions, axes, strengths, model, formalism, workers=None, reach_mm=None):
    """Dose rate (cGy/h) at points (n, 3) mm RAS of many seed sets (e.g. simulated implants): (n_sets, n).

    ``positions``/``axes`` (n_sets, n_seeds, 3) mm RAS / unit, ``strengths`` (n_sets, n_seeds) U (0: no seed).
    The compiled engine looks the dose up in the (r, theta) table (within 0.1 % of exact TG-43, see the module
    notes), the numpy engine evaluates it exactly, one set at a time. ``reach_mm``: the largest seed-to-point
    distance (mm) of this and related calls (one table for all; default: from these points and seeds).
    """
    points = np.ascontiguousarray(points, dtype=float).reshape(-1, 3)
    positions = np.ascontiguousarray(positions, dtype=float)
    strengths = np.ascontiguousarray(strengths, dtype=float)
    n_sets, n_seeds = strengths.shape
    frames = seed_frames(axes.reshape(-1, 3)).reshape(n_sets, n_seeds, 3, 3)
    out = np.zeros((n_sets, len(points)))
    if engine != "compiled":
        for i in range(n_sets):
            out[i] = points_rate(engine, points, positions[i], frames[i], strengths[i], model, formalism)
        return out
    if len(points) == 0 or n_sets == 0:
        return out
    table = table_for(model, formalism, reach_mm or reach_between(points, positions))
    set_threads(workers, len(points) * strengths.size)
    radius, half = _capsule(model)
    px, py, pz = (np.ascontiguousarray(points[:, a]) for a in range(3))
    numba_kernels().samples_tabled(px, py, pz, positions, frames, strengths, radius, half, table.cells,
                                   table.sections, out)
    return out


def lattice_runs(shape, voxels):
    """Runs of neighbouring voxels among the flat ``voxels`` (ascending indices into a [k, j, i] array of ``shape``),
    along the grid axis that gives the fewest runs (the first of equal ones): (axis 0/1/2 for I/J/K, order, runs).
    ``order``: the positions in ``voxels`` of the voxels run after run (the run axis fastest, then the other axes in
    I, J, K order); ``runs``: int64 (R, 5) rows (i, j, k, n, first), n voxels from voxel (i, j, k) on along the
    axis, the first being ``voxels[order[first]]``. The numpy reference of the compiled ``kernel_numba.lattice_runs``
    that :func:`lattice_rate` uses (the same results, tested; about 5 times faster: 46k voxels 5.1 -> 1.4 ms)."""
    voxels = np.asarray(voxels, dtype=np.int64)
    ijk = np.stack(np.unravel_index(voxels, shape)[::-1], axis=1)
    member = np.zeros(int(np.prod(shape)), bool)
    member[voxels] = True
    strides = (1, shape[2], shape[2] * shape[1])  # flat index step along I, J, K
    starts = [(ijk[:, a] == 0) | ~member[np.maximum(voxels - strides[a], 0)] for a in range(3)]  # a run begins
    axis = int(np.argmin([np.count_nonzero(x) for x in starts]))
    if axis == 0:
        order = np.arange(voxels.size)
    else:  # the voxels in the order of a traversal with the run axis fastest
        perm = [x for x in range(3) if x != 2 - axis] + [2 - axis]  # array axes, the run axis last
        transposed = member.reshape(shape).transpose(perm)
        coords = [None] * 3
        for m, c in enumerate(np.unravel_index(np.flatnonzero(transposed), transposed.shape)):
            coords[perm[m]] = c
        order = np.searchsorted(voxels, np.ravel_multi_index(coords, shape))
    first = np.flatnonzero(starts[axis][order])
    runs = np.concatenate([ijk[order[first]], np.diff(np.append(first, voxels.size))[:, None], first[:, None]], axis=1)
    return axis, order, runs.astype(np.int64)


def lattice_rate(engine, grid, voxels, offsets, positions, frames, strengths, model, formalism, workers=None):
    """Dose rate (cGy/h) at voxel index + offset of ``grid`` (mm RAS through its origin, spacing and direction) for
    each of ``offsets`` (M, 3) (voxel units, I, J, K) and each of the flat ``voxels``: (M, n_voxels).

    The compiled engine looks the dose up in the (r, theta) table (within 0.1 % of exact TG-43, the module notes),
    along runs of neighbouring voxels as on a grid; the numpy engine evaluates it exactly (:func:`points_rate`).
    """
    voxels = np.asarray(voxels, dtype=np.int64)
    offsets = np.asarray(offsets, dtype=float).reshape(-1, 3)
    strengths = np.asarray(strengths, dtype=float)
    centres = np.stack(np.unravel_index(voxels, grid.shape)[::-1], axis=1).astype(float)
    if engine != "compiled" or voxels.size == 0:
        points = grid.to_ras((centres[None, :, :] + offsets[:, None, :]).reshape(-1, 3))
        rate = points_rate(engine, points, positions, frames, strengths, model, formalism, workers=workers)
        return rate.reshape(len(offsets), voxels.size)
    axis, order, runs = numba_kernels().lattice_runs(*grid.shape, voxels)
    ends = np.cumsum(runs[:, 3])
    blocks = np.unique(np.concatenate([[0], np.searchsorted(ends, np.arange(1, ends[-1] // LATTICE_BLOCK + 1)
                                                             * LATTICE_BLOCK, side="right"), [len(runs)]]))
    step = grid.direction * grid.spacing[None, :]  # columns: one voxel along I, J, K (mm RAS)
    start = np.einsum("sab,osb->osa", frames, grid.to_ras(offsets)[:, None, :] - positions[None, :, :])
    steps = [np.ascontiguousarray(frames @ step[:, m]) for m in range(3)]
    (lo, hi), (off_lo, off_hi) = extent(centres), extent(offsets)
    lo, hi = lo + off_lo, hi + off_hi
    box = grid.to_ras(np.array([[a[0], b[1], c[2]] for a in (lo, hi) for b in (lo, hi) for c in (lo, hi)]))
    table = table_for(model, formalism, reach_between(box, positions))
    set_threads(workers, voxels.size * len(offsets) * len(strengths))
    radius, half = _capsule(model)
    out = np.empty((len(offsets), voxels.size))
    numba_kernels().samples_lattice(out, runs, blocks, np.ascontiguousarray(start), *steps, steps[axis], strengths,
                                    radius, half, table.cells, table.sections)
    if axis == 0:  # runs along I: the voxels' own order
        return out
    result = np.empty_like(out)
    result[:, order] = out
    return result


def reach_between(points, positions):
    """Largest distance (mm) between any of ``points`` and any of ``positions`` (..., 3) (through bounding boxes)."""
    (p_lo, p_hi), (q_lo, q_hi) = extent(points), extent(positions)
    span = np.maximum(np.abs(p_hi - q_lo), np.abs(q_hi - p_lo))
    return float(np.linalg.norm(span))


def grid_reach_mm(grid, positions):
    """Largest distance (mm) from any seed to any voxel centre of ``grid`` (through its corners)."""
    corners = grid.to_ras(np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)])
                          * (np.asarray(grid.dims) - 1))
    return float(np.sqrt(((corners[None, :, :] - positions[:, None, :]) ** 2).sum(-1)).max())
