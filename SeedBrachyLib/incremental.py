"""Dose kept up to date while single seeds move, appear or disappear (the live dose of the module).

:class:`LiveDose` holds, for one seed model and one set of seeds,

* the dose on a grid (display and export): the sum over seeds, kept in float64 so that
  subtracting a seed's old contribution and adding its new one (the same kernel both
  times) leaves a total equal to a full recompute to float32 precision;
* the dose of every seed at each structure's sample points (exact TG-43, see
  :func:`SeedBrachyLib.dose.dose_each_at_points`), one float64 row per seed, so that a
  structure's dose after a change is the old total minus one row plus one new row, and
  its DVH metrics follow without touching the other seeds.

Moving one seed costs two single-seed evaluations on the grid and one at the sample
points; :meth:`LiveDose.sync` turns a new seed list (e.g. read back from a markups node
after a drag, an addition or a deletion) into such edits. Units: positions in mm RAS,
S_K in U, dose in Gy (permanent implant unless a time window is given, as
:func:`SeedBrachyLib.dose.compute_dose`).
"""

from __future__ import annotations

import os

import numpy as np

from . import kernel
from .dose import check_memory, finite_points, time_factor_h
from .errors import InputError
from .seeds import Seed
from .sources import get_model


class LiveDose:
    """Grid dose and per-seed structure-point dose of ``seeds``, updated one seed at a time.

    Args:
        grid: the dose Grid (None: structure points only).
        seeds: list of Seed.
        model: SourceModel or model key.
        structures: dict name -> sample points (n, 3) mm RAS (e.g. a structure's DVH sample points).
        formalism: "line" or "point".
        time_window_days: None (permanent implant) or (t0, t1) days.
        engine: "auto", "compiled" or "numpy" (see :mod:`SeedBrachyLib.kernel`).
        workers: threads for the grid kernel.
        max_bytes: memory limit checked before any work (default: available memory).
    """

    def __init__(self, grid, seeds, model, structures=None, formalism="line", time_window_days=None,
                 engine="auto", workers=None, max_bytes=None):
        self.model = get_model(model)
        self.grid = grid
        self.formalism = formalism
        self.engine = kernel.resolve(engine)
        self.workers = workers or os.cpu_count() or 1
        self._scale = time_factor_h(self.model, time_window_days) / 100.0  # cGy/h -> Gy
        points = {name: finite_points(p, f"'{name}' sample point").reshape(-1, 3)
                  for name, p in (structures or {}).items()}
        ends = np.cumsum([0, *(len(p) for p in points.values())])
        self._slices = {name: slice(a, b) for name, a, b in zip(points, ends[:-1], ends[1:])}
        self._points = np.concatenate([np.empty((0, 3)), *points.values()])  # all structures, one kernel call
        self.seeds = [self._seed(s) for s in seeds]
        if grid is not None:
            check_memory(grid, max_bytes, self.workers, self.engine)
        self.recompute()

    # ------------------------------------------------------------ evaluation
    @staticmethod
    def _seed(seed):
        if not isinstance(seed, Seed):
            raise InputError(f"{seed!r} is not a Seed (position mm RAS, unit axis, S_K in U)")
        return seed

    def _arrays(self, seeds, signs=None):
        positions = np.array([s.position for s in seeds]).reshape(-1, 3)
        strengths = np.array([s.strength_u for s in seeds], dtype=float)
        if signs is not None:
            strengths = strengths * np.asarray(signs, dtype=float)
        return positions, kernel.seed_frames([s.axis for s in seeds]), strengths

    def _add_to_grid(self, seeds, signs=None):
        """Add the dose rate (cGy/h) of ``seeds`` (times ``signs``) to the float64 grid total."""
        positions, frames, strengths = self._arrays(seeds, signs)
        table = None
        if self.engine == "compiled":
            kernel.set_threads(self.workers, self.grid.n_voxels * len(seeds))
            table = kernel.table_for(self.model, self.formalism, kernel.grid_reach_mm(self.grid, positions))
        kernel.grid_rate_slab(self.engine, self._rate, 0, self.grid, positions, frames, strengths, self.model,
                              self.formalism, table)

    def _rows(self, seeds):
        """Dose (Gy) of each of ``seeds`` at every structure's points: (len(seeds), n_points) float64."""
        if not len(self._points):
            return np.zeros((len(seeds), 0))
        positions, frames, strengths = self._arrays(seeds)
        rate = kernel.points_rate(self.engine, self._points, positions, frames, strengths, self.model,
                                  self.formalism, each=True, workers=self.workers)
        return rate * self._scale

    def recompute(self):
        """Evaluate everything from the current seeds (full computation)."""
        if self.grid is not None:
            self._rate = np.zeros(self.grid.shape)
            if self.seeds:
                self._add_to_grid(self.seeds)
        rows = self._rows(self.seeds) if self.seeds else np.zeros((0, len(self._points)))
        self._each = list(rows)  # one row per seed
        self._total = rows.sum(axis=0) if len(rows) else np.zeros(len(self._points))

    # ------------------------------------------------------------ results
    @property
    def dose(self):
        """Dose on the grid (Gy, float32 [k, j, i])."""
        if self.grid is None:
            raise InputError("this LiveDose has no grid: it keeps structure point doses only")
        return (self._rate * self._scale).astype(np.float32)

    def point_dose(self, name):
        """Total dose (Gy, float64) at structure ``name``'s sample points."""
        if name not in self._slices:
            raise InputError(f"structure {name!r} unknown; known: {', '.join(self._slices) or 'none'}")
        return self._total[self._slices[name]]

    @property
    def structure_names(self):
        """Names of the structures whose sample-point doses are kept."""
        return list(self._slices)

    # ------------------------------------------------------------ edits
    def _index(self, index):
        if not (isinstance(index, (int, np.integer)) and -len(self.seeds) <= index < len(self.seeds)):
            raise InputError(f"seed index {index!r} invalid: {len(self.seeds)} seeds (0..{len(self.seeds) - 1})")
        return int(index) % len(self.seeds)

    def replace(self, index, seed):
        """Replace seed ``index`` by ``seed`` (a move, re-orientation or new strength)."""
        index, seed = self._index(index), self._seed(seed)
        old = self.seeds[index]
        if self.grid is not None:
            self._add_to_grid([old, seed], signs=[-1.0, 1.0])
        row = self._rows([seed])[0]
        self._total += row - self._each[index]
        self._each[index] = row
        self.seeds[index] = seed

    def move(self, index, position):
        """Move seed ``index`` to ``position`` (mm RAS), same axis and strength."""
        old = self.seeds[self._index(index)]
        self.replace(index, Seed(position, old.axis, old.strength_u, old.label))

    def add(self, seed):
        """Add ``seed`` (last index)."""
        self.insert(len(self.seeds), seed)

    def insert(self, index, seed):
        """Insert ``seed`` before seed ``index`` (``len(seeds)``: at the end)."""
        if not (isinstance(index, (int, np.integer)) and 0 <= index <= len(self.seeds)):
            raise InputError(f"insertion index {index!r} invalid: 0..{len(self.seeds)}")
        seed = self._seed(seed)
        if self.grid is not None:
            self._add_to_grid([seed])
        row = self._rows([seed])[0]
        self._total += row
        self._each.insert(int(index), row)
        self.seeds.insert(int(index), seed)

    def remove(self, index):
        """Remove seed ``index``."""
        index = self._index(index)
        if self.grid is not None:
            self._add_to_grid([self.seeds[index]], signs=[-1.0])
        self._total -= self._each.pop(index)
        del self.seeds[index]

    def sync(self, seeds):
        """Follow a new list of seeds with the fewest single-seed edits; returns the number of seeds changed.

        Seeds compare by position, axis and strength. Same count: each changed seed is
        replaced; one more or one fewer (added or deleted anywhere, the others unchanged):
        one insertion or removal plus replacements of any others changed; anything else:
        a full recompute.
        """
        new = [self._seed(s) for s in seeds]
        old = self.seeds
        if abs(len(new) - len(old)) > 1:
            self.seeds = new
            self.recompute()
            return len(new)
        changed = 0
        if len(new) != len(old):
            longer, shorter = (new, old) if len(new) > len(old) else (old, new)
            at = next((i for i in range(len(shorter)) if not _same(longer[i], shorter[i])), len(shorter))
            if len(new) > len(old):
                self.insert(at, new[at])
            else:
                self.remove(at)
            changed = 1
        for i, seed in enumerate(new):
            if not _same(self.seeds[i], seed):
                self.replace(i, seed)
                changed += 1
        return changed


def _same(a, b):
    return (np.array_equal(a.position, b.position) and np.array_equal(a.axis, b.axis)
            and a.strength_u == b.strength_u)
