"""Dose kept up to date while single seeds move, appear or disappear (the live dose of the module).

:class:`LiveDose` holds, for one seed model and one set of seeds,

* the dose on a grid (display and export): the sum over seeds, kept in float64 so that
  subtracting a seed's old contribution and adding its new one (the same kernel both
  times) leaves a total equal to a full recompute to float32 precision;
* the DVH of every structure it was asked for, by the rules of the exact DVH
  (:class:`SeedBrachyLib.dvh.PointDose`: the same sample points, the same reading rules; it
  is such a dose source): the dose of every seed at each structure's sample points (exact
  TG-43, :func:`SeedBrachyLib.kernel.points_rate`), one float64 row per seed, kept from the
  first evaluation of that structure, so that after a change a structure's dose is the old
  total minus one row plus one new row. An organ at risk's hottest voxels, which the rule
  splits into finer points depending on the dose, keep their split-point totals from one
  evaluation to the next (updated by each edit); voxels that become hot are evaluated from
  all seeds, voxels that cool down are dropped.

Moving one seed costs two single-seed evaluations on the grid and one at the sample points
(two at the kept split points); :meth:`LiveDose.sync` turns a new seed list (e.g. read back
from a markups node after a drag, an addition or a deletion) into such edits. Units:
positions in mm RAS, S_K in U, dose in Gy (permanent implant unless a time window is given,
as :func:`SeedBrachyLib.dose.compute_dose`).
"""

from __future__ import annotations

import os

import numpy as np

from . import kernel
from .dose import check_memory, time_factor_h
from .dvh import PointDose
from .errors import InputError
from .seeds import Seed
from .sources import get_model


class LiveDose(PointDose):
    """Grid dose and exact structure DVHs of ``seeds``, updated one seed at a time.

    A dose source for :meth:`SeedBrachyLib.dvh.DVH.of` and :func:`SeedBrachyLib.dvh.evaluate_plan`
    (``evaluate_plan(live, structures, rx, dose_volume=GridDose(live.dose, live.grid))``): the same
    metrics as an exact :class:`SeedBrachyLib.dvh.SeedDose` (``exact=True``) of the current seeds, to float32
    precision (the default SeedDose takes the compiled engine's table, within 0.1 % of it).

    Args:
        grid: the dose Grid (None: structure doses only).
        seeds: list of Seed.
        model: SourceModel or model key.
        structures: :class:`~SeedBrachyLib.structures.Structure` objects whose DVH is evaluated now
            (any other structure is taken in at its first :meth:`dvh`).
        formalism: "line" or "point".
        time_window_days: None (permanent implant) or (t0, t1) days.
        engine: "auto", "compiled" or "numpy" (see :mod:`SeedBrachyLib.kernel`).
        workers: threads for the kernels.
        max_bytes: memory limit checked before any work (default: available memory).
    """

    def __init__(self, grid, seeds, model, structures=(), formalism="line", time_window_days=None,
                 engine="auto", workers=None, max_bytes=None):
        super().__init__(self._total_dose)
        self.model = get_model(model)
        self.grid = grid
        self.formalism = formalism
        self.description = (f"DVH: TG-43 {formalism} source exact at each structure's own sample points, every "
                            "structure whole")
        self.engine = kernel.resolve(engine)
        self.workers = workers or os.cpu_count() or 1
        self._scale = time_factor_h(self.model, time_window_days) / 100.0  # cGy/h -> Gy
        self.seeds = [self._seed(s) for s in seeds]
        if grid is not None:
            check_memory(grid, max_bytes, self.workers, self.engine)
        self._bank = _Bank()
        self._split = {}  # id(structure) -> _Split
        self.recompute()
        for structure in structures:
            self.dvh(structure)

    # ------------------------------------------------------------ evaluation
    @staticmethod
    def _seed(seed):
        if not isinstance(seed, Seed):
            raise InputError(f"{seed!r} is not a Seed (position mm RAS, unit axis, S_K in U)")
        return seed

    def _arrays(self, seeds, signs=None):
        positions = np.array([s.position for s in seeds], dtype=float).reshape(-1, 3)
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

    def _points(self, points, seeds, signs=None, each=False):
        """Exact dose (Gy) of ``seeds`` (times ``signs``) at ``points``: summed (n,) or, with ``each``, per seed."""
        if not len(seeds):
            return np.zeros((0, len(points)) if each else len(points))
        positions, frames, strengths = self._arrays(seeds, signs)
        rate = kernel.points_rate(self.engine, points, positions, frames, strengths, self.model, self.formalism,
                                  each=each, workers=self.workers)
        return rate * self._scale

    def _total_dose(self, points):
        return self._points(np.asarray(points, dtype=float).reshape(-1, 3), self.seeds)

    def recompute(self):
        """Evaluate everything from the current seeds (full computation)."""
        if self.grid is not None:
            self._rate = np.zeros(self.grid.shape)
            if self.seeds:
                self._add_to_grid(self.seeds)
        self._bank.reset(self._points(self._bank.points, self.seeds, each=True))
        for split in self._split.values():
            split.totals = self._points(split.points, self.seeds)

    # ------------------------------------------------------------ results
    @property
    def dose(self):
        """Dose on the grid (Gy, float32 [k, j, i])."""
        if self.grid is None:
            raise InputError("this LiveDose has no grid: it keeps structure doses only")
        return np.multiply(self._rate, self._scale, out=np.empty(self.grid.shape, np.float32), casting="same_kind")

    def samples_dose(self, structure, interior_spacing_mm, per_voxel_boundary=False):
        """(dose Gy, volumes cc) at ``structure.sample_points(interior_spacing_mm, per_voxel_boundary)``, kept up to
        date."""
        key, bank = (id(structure), interior_spacing_mm, bool(per_voxel_boundary)), self._bank
        if key not in bank.slices:
            points, volumes = structure.sample_points(interior_spacing_mm, per_voxel_boundary)
            bank.take_in(key, structure, points, volumes, self._points(points, self.seeds, each=True))
        total = bank.total[bank.slices[key]]
        total.flags.writeable = False
        return total, bank.volumes[key]

    def split_dose(self, structure, voxels):
        """(dose Gy, volumes cc) at the split points of interior ``voxels`` (flat indices, ascending): the totals
        kept for voxels split before, the new ones from all seeds; voxels not asked for any more are dropped."""
        voxels = np.asarray(voxels, dtype=np.int64)
        kept = self._split.get(id(structure))
        points, volumes = structure.split_points(voxels)
        m = len(points) // max(len(voxels), 1)  # split points per voxel
        totals = np.empty(len(points))
        found = np.zeros(len(voxels), bool)
        if kept is not None and len(kept.voxels):
            at = np.minimum(np.searchsorted(kept.voxels, voxels), len(kept.voxels) - 1)
            found = kept.voxels[at] == voxels
            totals.reshape(-1, m)[found] = kept.totals.reshape(-1, m)[at[found]]
        fresh = np.repeat(~found, m)
        totals[fresh] = self._points(points[fresh], self.seeds)
        self._split[id(structure)] = _Split(structure, voxels, points, totals)
        return totals.copy(), volumes

    # ------------------------------------------------------------ edits
    def _index(self, index):
        if not (isinstance(index, (int, np.integer)) and -len(self.seeds) <= index < len(self.seeds)):
            raise InputError(f"seed index {index!r} invalid: {len(self.seeds)} seeds (0..{len(self.seeds) - 1})")
        return int(index) % len(self.seeds)

    def _edit_splits(self, seeds, signs):
        for split in self._split.values():
            split.totals += self._points(split.points, seeds, signs)
            np.maximum(split.totals, 0.0, out=split.totals)

    def replace(self, index, seed):
        """Replace seed ``index`` by ``seed`` (a move, re-orientation or new strength)."""
        index, seed = self._index(index), self._seed(seed)
        old = self.seeds[index]
        if self.grid is not None:
            self._add_to_grid([old, seed], signs=[-1.0, 1.0])
        self._bank.replace(index, self._points(self._bank.points, [seed]))
        self._edit_splits([old, seed], [-1.0, 1.0])
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
        self._bank.insert(int(index), self._points(self._bank.points, [seed]))
        self._edit_splits([seed], [1.0])
        self.seeds.insert(int(index), seed)

    def remove(self, index):
        """Remove seed ``index``."""
        index = self._index(index)
        old = self.seeds[index]
        if self.grid is not None:
            self._add_to_grid([old], signs=[-1.0])
        self._bank.remove(index)
        self._edit_splits([old], [-1.0])
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


class _Bank:
    """The sample points of every structure taken in (one array, so that an edit is one kernel call), with one dose
    row (Gy) per seed and their total; ``slices`` maps a (structure id, spacing, per-voxel boundary) key to its
    points."""

    def __init__(self):
        self.points, self.rows, self.total, self.slices, self.volumes = np.empty((0, 3)), [], np.zeros(0), {}, {}
        self.structures = []  # kept alive, so that their ids stay theirs

    def take_in(self, key, structure, points, volumes, rows):
        """Add a structure's points, volumes and per-seed rows (n_seeds, n)."""
        start = len(self.points)
        self.points = np.concatenate([self.points, points])
        self.rows = [np.concatenate([a, b]) for a, b in zip(self.rows, rows)] if self.rows else list(rows)
        self.total = np.concatenate([self.total, np.sum(rows, axis=0) if len(rows) else np.zeros(len(points))])
        self.slices[key], self.volumes[key] = slice(start, len(self.points)), volumes
        self.structures.append(structure)

    def reset(self, rows):
        self.rows = list(rows)
        self.total = np.sum(rows, axis=0) if len(rows) else np.zeros(len(self.points))

    def replace(self, index, row):
        self.total += row - self.rows[index]
        np.maximum(self.total, 0.0, out=self.total)  # a dose is >= 0 (rounding of the difference: 1e-16 relative)
        self.rows[index] = row

    def insert(self, index, row):
        self.total += row
        self.rows.insert(index, row)

    def remove(self, index):
        self.total -= self.rows.pop(index)
        np.maximum(self.total, 0.0, out=self.total)


class _Split:
    """An organ at risk's split voxels (flat indices, ascending), their split points and total dose (Gy)."""

    def __init__(self, structure, voxels, points, totals):
        self.structure, self.voxels, self.points, self.totals = structure, voxels, points, totals


def _same(a, b):
    return (np.array_equal(a.position, b.position) and np.array_equal(a.axis, b.axis)
            and a.strength_u == b.strength_u)
