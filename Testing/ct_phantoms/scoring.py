"""Scoring: Hungarian matching within 2.5 mm, per-condition tallies, and the plain threshold baseline."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

GATE_MM = 2.5


def grid_of(series):
    """The series geometry as a SeedBrachyLib Grid (the detector's input type)."""
    from SeedBrachyLib.grid import Grid

    return Grid(series.origin, series.spacing, series.direction, series.dims)


def match(found, truth, gate_mm=GATE_MM):
    """Pairs (found index, true index) and distances (mm) of the optimal assignment within ``gate_mm``."""
    found = np.asarray(found, float).reshape(-1, 3)
    truth = np.asarray(truth, float).reshape(-1, 3)
    if len(found) == 0 or len(truth) == 0:
        return [], np.zeros(0)
    cost = np.linalg.norm(found[:, None] - truth[None], axis=-1)
    rows, cols = linear_sum_assignment(np.where(cost <= gate_mm, cost, 1e6))
    keep = cost[rows, cols] <= gate_mm
    return list(zip(rows[keep], cols[keep])), cost[rows[keep], cols[keep]]


def threshold_baseline(ct, series, threshold_hu=2000.0):
    """Reference detector: 26-connected components >= ``threshold_hu``, one seed at each centroid (mm RAS)."""
    labels, n = ndimage.label(np.asarray(ct) >= threshold_hu, np.ones((3, 3, 3), bool))
    if n == 0:
        return np.zeros((0, 3))
    kji = np.array(ndimage.center_of_mass(np.ones(labels.shape), labels, np.arange(1, n + 1)))
    return series.to_ras(kji[:, ::-1])


class Tally:
    """Per-condition counts: true seeds, found seeds (series-level conditions only), matches, errors."""

    def __init__(self):
        self.rows = defaultdict(lambda: {"true": 0, "found": 0, "matched": 0, "err": [], "axis": [], "fp": 0})

    def add(self, phantom, found_pos, found_axes=None):
        truth = [s.position for s in phantom.seeds]
        pairs, dist = match(found_pos, truth)
        matched_true = {t: (f, d) for (f, t), d in zip(pairs, dist)}
        series_conds = ["all"] + phantom.case.conditions()
        n_fp = len(found_pos) - len(pairs)
        for cond in series_conds:
            r = self.rows[cond]
            r["found"] += len(found_pos)
            r["fp"] += n_fp
        for t, s in enumerate(phantom.seeds):
            conds = set(series_conds) | {"seed: " + tag for tag in s.tags}
            for cond in conds:
                r = self.rows[cond]
                r["true"] += 1
                if t in matched_true:
                    f, d = matched_true[t]
                    r["matched"] += 1
                    r["err"].append(d)
                    if found_axes is not None:
                        c = abs(float(np.dot(found_axes[f], s.axis)))
                        r["axis"].append(math.degrees(math.acos(min(1.0, c))))
        return pairs, dist

    def table(self, title):
        lines = [title, f"{'condition':<28}{'seeds':>6}{'sens':>7}{'prec':>7}{'FP':>5}{'err mm':>8}{'axis deg':>9}"]
        for cond in sorted(self.rows, key=lambda c: (c != "all", c.startswith("seed:"), c)):
            r = self.rows[cond]
            sens = r["matched"] / r["true"] if r["true"] else float("nan")
            series_level = not cond.startswith("seed:")
            prec = (r["found"] - r["fp"]) / r["found"] if (series_level and r["found"]) else float("nan")
            err = np.mean(r["err"]) if r["err"] else float("nan")
            ax = np.mean(r["axis"]) if r["axis"] else float("nan")
            fp = f"{r['fp']:>5}" if series_level else f"{'':>5}"
            lines.append(f"{cond:<28}{r['true']:>6}{sens:>7.3f}{prec:>7.3f}{fp}{err:>8.2f}{ax:>9.1f}")
        return "\n".join(lines)
