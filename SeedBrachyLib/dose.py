"""Dose from a set of seeds on a grid or at points (TG-43U1, see :mod:`SeedBrachyLib.tg43`).

Output is absorbed dose to water in Gy (float32 on grids, float64 at points):

* permanent implant (default): D = Ddot_0 * tau, tau = T1/2 / ln 2 (mean life);
* a time window [t0, t1] in days after implant: D = Ddot_0 * (exp(-lambda t0) - exp(-lambda t1)) / lambda.

Engines (:mod:`SeedBrachyLib.kernel`): the compiled engine (numba) when it can be
imported, else the exact numpy evaluation; ``engine=`` chooses, and
:func:`SeedBrachyLib.kernel.describe` says which one runs. On grids the compiled engine
uses an (r, theta) table within 0.1 % of exact TG-43 (measured: < 0.03 %); dose at
points is exact on both engines, unless the table is asked for (``tabled``,
:func:`dose_at_lattice`: the DVH from seeds). Grid evaluation is chunked over K slices (bounded
memory, checked before any work) and multi-threaded; distances are built in each
seed's own frame, so rho^2 = x^2 + y^2 is never negative and a seed on a voxel centre
is an ordinary point (the capsule rule of :mod:`SeedBrachyLib.tg43` applies).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import kernel
from .errors import InputError
from .progress import report
from .seeds import seed_arrays
from .sources import get_model

CHUNK_VOXELS = 1 << 18  # voxels per numpy work item: ~30 MB of float64 temporaries
TEMP_BYTES_PER_VOXEL = 120  # float64 temporaries alive per voxel of a numpy chunk
COMPILED_CHUNK_VOXELS = 1 << 19  # voxels per compiled slab: a 4 MB float64 accumulator


def time_factor_h(model, time_window_days=None):
    """Hours that turn an initial dose rate (cGy/h) into dose (cGy).

    None: permanent implant, the mean life tau = T1/2 / ln 2. (t0, t1) in days:
    the integral of exp(-lambda t) over that window (t1 may be math.inf).
    """
    if time_window_days is None:
        return model.mean_life_h
    try:
        t0, t1 = (float(t) for t in time_window_days)
    except (TypeError, ValueError) as error:
        raise InputError(f"time window {time_window_days!r} days invalid: need (start, end) with "
                         "0 <= start < end") from error
    if not (0 <= t0 < t1):
        raise InputError(f"time window {time_window_days!r} days invalid: need 0 <= start < end")
    lam = model.decay_constant_per_h
    return (math.exp(-lam * t0 * 24.0) - math.exp(-lam * t1 * 24.0)) / lam


def available_memory_bytes():
    """Memory the system can give now (bytes), from /proc/meminfo or sysconf."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def check_memory(grid, max_bytes=None, workers=1, engine="numpy"):
    """Raise InputError before any work if the dose array and temporaries will not fit in memory."""
    if engine == "compiled":
        temporaries = min(grid.n_voxels, COMPILED_CHUNK_VOXELS) * 8
    else:
        temporaries = workers * min(grid.n_voxels, CHUNK_VOXELS) * TEMP_BYTES_PER_VOXEL
    need = grid.n_voxels * 4 + temporaries
    limit = available_memory_bytes() if max_bytes is None else int(max_bytes)
    if need > limit:
        raise InputError(
            f"dose grid {grid.describe()} ({grid.n_voxels:,} voxels) needs {need / 2**30:.2f} GiB; "
            f"only {limit / 2**30:.2f} GiB allowed/available. Use a coarser spacing or a smaller region."
        )


def _validated(grid, seeds, model, allow_outside):
    model = get_model(model)
    positions, axes, strengths = seed_arrays(seeds)
    if grid is not None and not allow_outside:
        inside = grid.contains(positions)
        if not np.all(inside):
            i = int(np.flatnonzero(~inside)[0])
            raise InputError(
                f"seed {i + 1} at {np.round(positions[i], 1).tolist()} mm (RAS) lies outside the dose grid "
                f"({grid.describe()}); enlarge the grid or pass allow_outside=True")
    return model, positions, axes, strengths


def finite_points(points_ras, what="point"):
    """Points as a float array (..., 3) mm; InputError naming the first non-finite one."""
    pts = np.asarray(points_ras, dtype=float)
    if pts.ndim == 0 or pts.shape[-1] != 3:
        raise InputError(f"{what}s must be an array (..., 3) of RAS mm; got shape {pts.shape}")
    if not np.isfinite(pts).all():  # one pass over all coordinates first: per point it costs 20 times more
        bad = ~np.all(np.isfinite(pts), axis=-1)
        first = np.argwhere(bad)[0]
        raise InputError(f"{what} {tuple(int(i) for i in first)} = {pts[tuple(first)].tolist()} mm is not finite: "
                         "every coordinate must be a finite number (mm RAS)")
    return pts


def _points_dose(points_ras, positions, axes, strengths, model, formalism, time_window_days, engine, each,
                 tabled=False):
    pts = finite_points(points_ras)
    engine = kernel.resolve(engine)
    flat = pts.reshape(-1, 3)
    if tabled and not each:
        rate = kernel.samples_rate(engine, flat, positions[None], np.asarray(axes, float)[None], strengths[None],
                                   model, formalism)[0]
    else:
        rate = kernel.points_rate(engine, flat, positions, kernel.seed_frames(axes), strengths, model, formalism,
                                  each=each)
    rate *= time_factor_h(model, time_window_days) / 100.0
    return rate.reshape(((len(strengths),) if each else ()) + pts.shape[:-1])


def dose_per_u_at_points(points_ras, position, axis, model, formalism="line", time_window_days=None,
                         engine="auto"):
    """Dose (Gy per U of S_K) from one seed at ``position``/``axis`` (mm RAS, unit) at points (..., 3) mm RAS."""
    model = get_model(model)
    position = finite_points(np.reshape(position, 3), "seed position")
    axis = np.asarray(axis, dtype=float).reshape(3)
    if not (np.all(np.isfinite(axis)) and abs(np.linalg.norm(axis) - 1.0) < 1e-6):
        raise InputError(f"seed axis {axis.tolist()} invalid: must be a finite unit vector (RAS)")
    return _points_dose(points_ras, position[None], axis[None], np.ones(1), model, formalism,
                        time_window_days, engine, False)


def dose_at_points(points_ras, seeds, model, formalism="line", time_window_days=None, engine="auto", tabled=False):
    """Total dose (Gy, float64) from ``seeds`` at points (..., 3) mm RAS: exact TG-43 on either engine, or with
    ``tabled`` on the compiled engine from its (r, theta) table (within 0.1 % of exact, :mod:`SeedBrachyLib.kernel`)."""
    model, positions, axes, strengths = _validated(None, seeds, model, True)
    return _points_dose(points_ras, positions, axes, strengths, model, formalism, time_window_days, engine, False,
                        tabled)


def dose_at_lattice(grid, voxels, offsets, seeds, model, formalism="line", time_window_days=None, engine="auto"):
    """Total dose (Gy, float64 (M, n_voxels)) from ``seeds`` at voxel index + offset of ``grid`` (mm RAS) for each
    of ``offsets`` (M, 3) (voxel units) and each of the flat ``voxels``: on the compiled engine from its (r, theta)
    table along runs of neighbouring voxels (within 0.1 % of exact TG-43, :func:`SeedBrachyLib.kernel.lattice_rate`),
    on the numpy engine exact."""
    model, positions, axes, strengths = _validated(None, seeds, model, True)
    rate = kernel.lattice_rate(kernel.resolve(engine), grid, voxels, offsets, positions, kernel.seed_frames(axes),
                               strengths, model, formalism)
    return rate * (time_factor_h(model, time_window_days) / 100.0)


def dose_each_at_points(points_ras, seeds, model, formalism="line", time_window_days=None, engine="auto"):
    """Dose (Gy, float64) of each seed at points (..., 3) mm RAS: shape (n_seeds, ...), exact TG-43."""
    model, positions, axes, strengths = _validated(None, seeds, model, True)
    return _points_dose(points_ras, positions, axes, strengths, model, formalism, time_window_days, engine, True)


def compute_dose(grid, seeds, model, formalism="line", time_window_days=None,
                 progress=None, max_bytes=None, allow_outside=False, workers=None, engine="auto"):
    """Dose (Gy) on ``grid`` from ``seeds``: float32 array indexed [k, j, i].

    Args:
        grid: a Grid (any origin, spacing and orthonormal direction).
        seeds: list of Seed (mm RAS, unit axis, S_K in U).
        model: SourceModel or model key (see ``sources.available_models()``).
        formalism: "line" (2D TG-43U1) or "point" (1D, phi_an).
        time_window_days: None for the permanent-implant total dose, or (t0, t1) days.
        progress: callback(fraction, message); returning False cancels.
        max_bytes: memory limit (bytes) checked before work; default: available memory.
        allow_outside: accept seeds outside the grid (default: error).
        workers: threads (default: number of CPUs).
        engine: "auto" (compiled if numba imports, else numpy), "compiled" or "numpy".
    """
    model, positions, axes, strengths = _validated(grid, seeds, model, allow_outside)
    engine = kernel.resolve(engine)
    if workers is not None and (isinstance(workers, bool) or int(workers) != workers or workers < 1):
        raise InputError(f"workers {workers!r} invalid: a whole number of threads >= 1 (or None for every CPU)")
    workers = workers or os.cpu_count() or 1
    check_memory(grid, max_bytes, workers, engine)
    scale = time_factor_h(model, time_window_days) / 100.0
    frames = kernel.seed_frames(axes)
    ni, nj, nk = grid.dims
    out = np.empty(grid.shape, dtype=np.float32)
    label = f"dose: {len(seeds)} seeds, {kernel.describe(engine).split(' (')[0]}"
    report(progress, 0.0, label)

    if engine == "compiled":
        kernel.set_threads(workers, grid.n_voxels * len(seeds))
        table = kernel.table_for(model, formalism, kernel.grid_reach_mm(grid, positions))
        k_step = max(1, COMPILED_CHUNK_VOXELS // (ni * nj))
        buffer = np.empty((min(k_step, nk), nj, ni))
        for k0 in range(0, nk, k_step):
            k1 = min(nk, k0 + k_step)
            slab = buffer[:k1 - k0]
            slab[:] = 0.0
            kernel.grid_rate_slab(engine, slab, k0, grid, positions, frames, strengths, model, formalism, table)
            np.multiply(slab, scale, out=out[k0:k1], casting="same_kind")
            report(progress, k1 / nk, f"{label}, slice {k1}/{nk}")
        return out

    def work(chunk):
        k0, k1 = chunk
        slab = np.zeros((k1 - k0, nj, ni))
        kernel.grid_rate_slab(engine, slab, k0, grid, positions, frames, strengths, model, formalism)
        out[k0:k1] = slab * scale
        return k1 - k0

    k_step = max(1, CHUNK_VOXELS // (ni * nj))
    chunks = [(k0, min(nk, k0 + k_step)) for k0 in range(0, nk, k_step)]
    done = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for n in pool.map(work, chunks):
            done += n
            report(progress, done / nk, f"{label}, slice {done}/{nk}")
    return out
