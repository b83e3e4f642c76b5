"""The candidate stage of seed detection: the bright objects of a CT, without labelling the whole volume.

Seeds, metal and cortical bone fill a small part of a series (on a 512 x 512 x 200 pelvis, some 10^4 to 10^5 of
5 x 10^7 voxels above 1300 HU). The voxels at or above a level are gathered into blocks of
:data:`BLOCK` voxels; the blocks holding any are labelled (26-connected, a small array); two voxels that touch
lie in the same or touching blocks, so every object lies inside one group of blocks, and is labelled there
on its own crop. The objects come out in the order in which a raster scan of the volume first meets them (the
order of ``scipy.ndimage.label`` on the whole volume), each with its voxels in raster order.
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
    coarse = _blocks(mask)
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
            out.append(np.argwhere(labels[part] == c) + lo + [s.start for s in part])
    out.sort(key=lambda kji: tuple(kji[0]))
    return out
