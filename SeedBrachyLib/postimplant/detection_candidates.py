"""The candidate stage of seed detection: the bright objects of a CT, without labelling the whole volume.

Seeds, metal and cortical bone fill a small part of a series (on a 512 x 512 x 200 pelvis, some 10^4 to 10^5 of
5 x 10^7 voxels above 1300 HU). The voxels at or above a level are gathered into blocks of
:data:`BLOCK` voxels; the blocks holding any are labelled (26-connected, a small array); two voxels that touch
lie in the same or touching blocks, so every object lies inside one group of blocks, and is labelled there
on its own crop. The objects come out in the order in which a raster scan of the volume first meets them (the
order of ``scipy.ndimage.label`` on the whole volume), each with its voxels in raster order.

Inside a region of low surroundings (lung, gas: :func:`low_region`), :func:`enclosed_objects` gives the objects at
a level of their own that stand alone there (a seed in lung, whose image stands above the lung, not above soft
tissue).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

BLOCK = (4, 8, 8)  # voxels (k, j, i) per block of the coarse map
_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)


def _blocks(mask):
    """Which blocks of :data:`BLOCK` voxels hold a voxel of ``mask`` [k, j, i] (the last ones may be partial)."""
    coarse = np.zeros([-(-n // b) for n, b in zip(mask.shape, BLOCK)], bool)
    kji = np.unravel_index(np.flatnonzero(mask), mask.shape)
    coarse[tuple(x // b for x, b in zip(kji, BLOCK))] = True
    return coarse


def objects(values, level):
    """Voxel index arrays (n, 3 as k, j, i) of the 26-connected objects of ``values`` [k, j, i] (HU; float32, or
    int16 as stored) at or above ``level`` (HU, taken as float32, as on a float32 copy of an int16 series),
    ordered as a raster scan first meets them."""
    mask = values >= np.float32(level)
    return [kji for kji, _crop, _lo in _label(mask, _blocks(mask))]


def _label(mask, coarse):
    """(voxels (n, 3 as k, j, i), the crop of ``mask`` it was labelled on, the crop's lower corner) of each
    26-connected object of ``mask`` inside the blocks ``coarse``, in raster order of their first voxels."""
    groups, _n = ndimage.label(coarse, _CONNECTIVITY)
    out = []
    for g, box in enumerate(ndimage.find_objects(groups), start=1):
        lo = np.array([s.start * b for s, b in zip(box, BLOCK)])
        hi = np.minimum([s.stop * b for s, b in zip(box, BLOCK)], mask.shape)
        mine = groups[box] == g
        for axis, size in enumerate(BLOCK):
            mine = np.repeat(mine, size, axis=axis)
        crop = mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] & mine[:hi[0] - lo[0], :hi[1] - lo[1], :hi[2] - lo[2]]
        labels, _m = ndimage.label(crop, _CONNECTIVITY)
        for c, part in enumerate(ndimage.find_objects(labels), start=1):
            out.append((np.argwhere(labels[part] == c) + lo + [s.start for s in part], crop, lo))
    out.sort(key=lambda item: tuple(item[0][0]))
    return out


def low_region(values, below):
    """Blocks of :data:`BLOCK` voxels (a coarse map [k, j, i]) of low surroundings: those at least half of whose
    voxels (sampled every second slice and every fourth pixel) are under ``below`` (HU), with their neighbours."""
    step = (BLOCK[0] // 2, BLOCK[1] // 2, BLOCK[2] // 2)
    low = values[::step[0], ::step[1], ::step[2]] < np.float32(below)
    shape = [-(-n // b) for n, b in zip(values.shape, BLOCK)]
    padded = np.zeros([2 * n for n in shape], np.uint8)
    padded[:low.shape[0], :low.shape[1], :low.shape[2]] = low
    counts = padded.reshape(shape[0], 2, shape[1], 2, shape[2], 2).sum(axis=(1, 3, 5))
    return ndimage.binary_dilation(counts >= 4, _CONNECTIVITY)


def enclosed_objects(values, level, region):
    """The objects of ``values`` at or above ``level`` (HU) inside ``region`` (blocks, :func:`low_region`) that
    touch no voxel at or above ``level`` outside it (they stand alone in low surroundings; a part of the tissue
    around a lung is cut by the region's edge); voxel index arrays (n, 3 as k, j, i), in raster order."""
    mask = values >= np.float32(level)
    out = []
    for kji, crop, lo in _label(mask, _blocks(mask) & region):
        a = np.maximum(kji.min(0) - 1, 0)
        b = np.minimum(kji.max(0) + 2, mask.shape)
        near = np.zeros(tuple(b - a), bool)
        near[tuple((kji - a).T)] = True
        near = ndimage.binary_dilation(near, _CONNECTIVITY)
        # the voxels of the box that the crop holds (the region's part), the rest is outside the region
        held = np.zeros(near.shape, bool)
        c0, c1 = np.maximum(a, lo), np.minimum(b, lo + np.array(crop.shape))
        held[tuple(slice(p - q, r - q) for p, q, r in zip(c0, a, c1))] = \
            crop[tuple(slice(p - q, r - q) for p, q, r in zip(c0, lo, c1))]
        if not np.any(near & mask[a[0]:b[0], a[1]:b[1], a[2]:b[2]] & ~held):
            out.append(kji)
    return out
