"""Dose from a set of seeds on a grid or at points (TG-43U1, see :mod:`SeedBrachyLib.tg43`).

Output is absorbed dose to water in Gy (float32 on grids):

* permanent implant (default): D = Ddot_0 * tau, tau = T1/2 / ln 2 (mean life);
* a time window [t0, t1] in days after implant: D = Ddot_0 * (exp(-lambda t0) - exp(-lambda t1)) / lambda.

Grid evaluation is chunked over K slices (bounded memory) and spread over the
machine's cores with threads; the grid geometry is separable, so distances are
built from per-axis terms without ever forming the voxel coordinates.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import tg43
from .errors import InputError
from .progress import report
from .seeds import seed_arrays
from .sources import get_model

CHUNK_VOXELS = 1 << 18  # voxels per work item: ~30 MB of float64 temporaries
TEMP_BYTES_PER_VOXEL = 120  # float64 temporaries alive per voxel of a chunk


def time_factor_h(model, time_window_days=None):
    """Hours that turn an initial dose rate (cGy/h) into dose (cGy).

    None: permanent implant, the mean life tau = T1/2 / ln 2. (t0, t1) in days:
    the integral of exp(-lambda t) over that window (t1 may be math.inf).
    """
    if time_window_days is None:
        return model.mean_life_h
    t0, t1 = (float(t) for t in time_window_days)
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


def check_memory(grid, max_bytes=None, workers=1):
    """Raise InputError before any work if the dose array and temporaries will not fit in memory."""
    chunk = min(grid.n_voxels, CHUNK_VOXELS)
    need = grid.n_voxels * 4 + workers * chunk * TEMP_BYTES_PER_VOXEL
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


def dose_per_u_at_points(points_ras, position, axis, model, formalism="line", time_window_days=None):
    """Dose (Gy per U of S_K) from one seed at ``position``/``axis`` to points (..., 3) mm RAS."""
    model = get_model(model)
    d = np.asarray(points_ras, dtype=float) - np.asarray(position, dtype=float)
    r = np.sqrt(np.einsum("...i,...i->...", d, d))
    z = d @ np.asarray(axis, dtype=float)
    scale = time_factor_h(model, time_window_days) / 100.0
    return tg43.dose_rate_per_u(model, r, z, formalism) * scale


def dose_at_points(points_ras, seeds, model, formalism="line", time_window_days=None):
    """Total dose (Gy, float64) from ``seeds`` at points (..., 3) mm RAS."""
    model, positions, axes, strengths = _validated(None, seeds, model, True)
    total = np.zeros(np.shape(points_ras)[:-1])
    for p, a, s in zip(positions, axes, strengths):
        total += s * dose_per_u_at_points(points_ras, p, a, model, formalism, time_window_days)
    return total


def _separable_terms(grid, position, axis):
    """Per-axis terms so that r^2 = sum of r2 terms and z = sum of z terms over (i, j, k)."""
    offset = grid.origin - position
    r2_terms, z_terms = [], []
    for m, coords in enumerate(grid.axis_coordinates()):
        u = grid.direction[:, m]
        r2_terms.append(2.0 * coords * (u @ offset) + coords * coords)
        z_terms.append(coords * (u @ axis))
    return float(offset @ offset), float(offset @ axis), r2_terms, z_terms


def compute_dose(grid, seeds, model, formalism="line", time_window_days=None,
                 progress=None, max_bytes=None, allow_outside=False, workers=None):
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
    """
    model, positions, axes, strengths = _validated(grid, seeds, model, allow_outside)
    workers = workers or os.cpu_count() or 1
    check_memory(grid, max_bytes, workers)
    scale = time_factor_h(model, time_window_days) / 100.0
    terms = [_separable_terms(grid, p, a) for p, a in zip(positions, axes)]
    ni, nj, nk = grid.dims
    k_step = max(1, CHUNK_VOXELS // (ni * nj))
    chunks = [(k0, min(nk, k0 + k_step)) for k0 in range(0, nk, k_step)]
    out = np.empty(grid.shape, dtype=np.float32)

    def work(chunk):
        k0, k1 = chunk
        acc = np.zeros((k1 - k0, nj, ni))
        for (r20, z0, r2t, zt), strength in zip(terms, strengths):
            r2 = (r2t[2][k0:k1, None, None] + r20) + r2t[1][None, :, None] + r2t[0][None, None, :]
            z = (zt[2][k0:k1, None, None] + z0) + zt[1][None, :, None] + zt[0][None, None, :]
            acc += strength * tg43.dose_rate_per_u(model, np.sqrt(r2), z, formalism)
        out[k0:k1] = acc * scale
        return k1 - k0

    done = 0
    report(progress, 0.0, "dose")
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for n in pool.map(work, chunks):
            done += n
            report(progress, done / nk, f"dose: {len(seeds)} seeds, slice {done}/{nk}")
    return out
