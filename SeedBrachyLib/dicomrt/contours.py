"""Planar contours <-> fractional masks on one image plane (pixel coordinates i, j).

* :func:`mask_contours` -- closed polygons of the 0.5 level of a fractional (or binary) 2D mask
  ``[j, i]`` by marching squares with linear interpolation along the cell edges. Outer boundaries turn
  counter-clockwise in (i, j), holes clockwise; a binary mask's contours pass through the midpoints
  between inside and outside pixel centres, so filling them again gives back the same pixels.
  Saddle cells are resolved by the cell-centre mean (above 0.5: joined). Vertices on straight runs are dropped.
* :func:`fill_fraction` -- the fraction (0..1) of each pixel inside a set of polygons, by the even-odd
  rule (so holes and several contours on one plane combine as XOR), sampled at n x n sub-points per
  pixel along scan lines; n = 9 by default, odd so that a binary mask's isolated pixel (a diamond of area
  1/2) fills to 41/81, above one half. n is odd by default (9): a binary mask's isolated pixel (a diamond of area 1/2)
  then fills to 41/81, above one half.
* :func:`polygon_area` -- signed area (shoelace), in pixel units.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

LEVEL = 0.5
#: Largest number of polygon edges filled on one plane.
MAX_EDGES = 2_000_000
#: Scan-line crossings computed per vectorised step (rows x edges).
ROW_CHUNK = 1 << 20


def mask_contours(fraction):
    """Closed polygons (list of (m, 2) arrays of (i, j) pixel coordinates) of the 0.5 level of ``fraction`` [j, i]."""
    f = np.pad(np.asarray(fraction, dtype=float), 1)
    inside = f > LEVEL
    rows, cols = f.shape
    corners = (inside[:-1, :-1].astype(np.uint8) | inside[:-1, 1:] << 1 | inside[1:, 1:] << 2 | inside[1:, :-1] << 3)
    cj, ci = np.nonzero((corners > 0) & (corners < 15))
    nxt, points = {}, {}

    def crossing(kind, i, j):
        """Key and (i, j) position of the level crossing on a horizontal ('h') or vertical ('v') pixel edge."""
        key = (2 * (j * cols + i) + (kind == "v"))
        if key not in points:
            a = f[j, i]
            b = f[j, i + 1] if kind == "h" else f[j + 1, i]
            t = (LEVEL - a) / (b - a)
            points[key] = (i + t, j) if kind == "h" else (i, j + t)
        return key

    for j, i in zip(cj.tolist(), ci.tolist()):
        c = corners[j, i]
        # cell corners counter-clockwise: (i, j), (i+1, j), (i+1, j+1), (i, j+1); edges between them
        edges = (("h", i, j), ("v", i + 1, j), ("h", i, j + 1), ("v", i, j))
        bits = [(c >> n) & 1 for n in range(4)]
        exits = [n for n in range(4) if bits[n] and not bits[(n + 1) % 4]]
        entries = [n for n in range(4) if not bits[n] and bits[(n + 1) % 4]]
        if len(exits) == 1:
            pairs = [(exits[0], entries[0])]
        else:  # saddle: join through the centre if its mean is inside, else keep the corners apart
            joined = f[j:j + 2, i:i + 2].mean() > LEVEL
            pairs = [(e, (e + 1) % 4 if joined else (e - 1) % 4) for e in exits]
        for a, b in pairs:
            nxt[crossing(*edges[a])] = crossing(*edges[b])
    polygons = []
    while nxt:
        start, key = next(iter(nxt.items()))
        loop = [start]
        del nxt[start]
        while key != start:
            loop.append(key)
            key = nxt.pop(key)
        polygons.append(_without_collinear(np.array([points[k] for k in loop]) - 1.0))
    return polygons


def _without_collinear(polygon):
    """The polygon without vertices that lie on the straight line through their neighbours."""
    before, after = np.roll(polygon, 1, axis=0), np.roll(polygon, -1, axis=0)
    a, b = polygon - before, after - polygon
    keep = np.abs(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]) > 1e-9
    return polygon[keep] if keep.sum() >= 3 else polygon


def polygon_area(polygon):
    """Signed area of a closed polygon (m, 2) (shoelace; counter-clockwise positive), in its units squared."""
    p = np.asarray(polygon, dtype=float)
    x, y = p[:, 0], p[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def fill_fraction(polygons, shape, n=9):
    """Fraction (float32 [j, i] of ``shape``) of each pixel inside ``polygons`` (even-odd rule), n x n sub-points each.

    Polygons are (m, 2) arrays of (i, j) pixel coordinates (pixel centres at integers), implicitly closed.
    """
    n = int(n)
    if not 1 <= n <= 32:
        raise InputError(f"sub-points per pixel side {n!r} invalid: use 1..32")
    nj, ni = shape
    out = np.zeros((nj, ni), dtype=np.float32)
    segments = [np.stack([p, np.roll(p, -1, axis=0)], axis=1) for p in polygons if len(p) >= 3]
    if not segments:
        return out
    e = np.concatenate(segments)  # (edges, 2 ends, (i, j))
    if len(e) > MAX_EDGES:
        raise InputError(f"{len(e)} contour edges on one plane exceed {MAX_EDGES}")
    x0, y0, x1, y1 = e[:, 0, 0], e[:, 0, 1], e[:, 1, 0], e[:, 1, 1]
    sub = (np.arange(n) + 0.5) / n - 0.5
    j_lo = max(int(np.floor(min(y0.min(), y1.min()))) - 1, 0)
    j_hi = min(int(np.ceil(max(y0.max(), y1.max()))) + 2, nj)
    i_lo = max(int(np.floor(min(x0.min(), x1.min()))) - 1, 0)
    i_hi = min(int(np.ceil(max(x0.max(), x1.max()))) + 2, ni)
    if j_hi <= j_lo or i_hi <= i_lo:
        return out
    xs = (np.arange(i_lo, i_hi)[:, None] + sub[None, :]).ravel()
    ys = (np.arange(j_lo, j_hi)[:, None] + sub[None, :]).ravel()
    counts = np.zeros((ys.size, xs.size), dtype=np.uint8)
    step = max(1, ROW_CHUNK // len(e))
    for r0 in range(0, ys.size, step):
        y = ys[r0:r0 + step, None]
        rows, edge = np.nonzero((y0[None] <= y) != (y1[None] <= y))
        xh = x0[edge] + (y[rows, 0] - y0[edge]) * (x1[edge] - x0[edge]) / (y1[edge] - y0[edge])
        # a crossing at xh counts for every sub-point column to its right: histogram, then running sum
        first = np.searchsorted(xs, xh, side="right")
        hist = np.bincount(rows * (xs.size + 1) + first, minlength=len(y) * (xs.size + 1))
        counts[r0:r0 + step] = np.cumsum(hist.reshape(len(y), xs.size + 1), axis=1)[:, :xs.size] & 1
    block = counts.reshape(j_hi - j_lo, n, i_hi - i_lo, n).mean(axis=(1, 3), dtype=np.float64)
    out[j_lo:j_hi, i_lo:i_hi] = block
    return out
