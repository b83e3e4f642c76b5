"""Checks that a CT holds Hounsfield units, and what its stored range says about clipping.

A CT in HU has air near -1000 and soft tissue near 0..100 HU. Stored values without the rescale applied
(unsigned, soft tissue near 1024 + 40) or 8-bit data cannot be read as HU; an image of one value holds
no anatomy. Such input is an InputError naming what was seen.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

_SAMPLE = 200_000  # voxels looked at for the statistics
_FLOOR_MAX = -1000.0  # a floor of the stored range lies at or under this (HU)
_PADDING_BELOW = -1500.0  # a minimum under this may pad the image outside the reconstruction circle (HU)
_CLIP_LEVELS = (3071.0, 4095.0, 31743.0, 32767.0)  # tops of 12-bit and 16-bit stored ranges (HU)


def _sample(ct):
    flat = ct.reshape(-1)
    step = max(1, flat.size // _SAMPLE)
    return flat[::step]


def require_hu(ct, name="CT"):
    """InputError unless ``ct`` (array) plausibly holds HU: not 8-bit, not constant, not offset by +1024."""
    if ct.dtype.itemsize == 1:
        raise InputError(f"{name} array has the 8-bit type {ct.dtype} (values {int(ct.min())}..{int(ct.max())}): "
                         "CT numbers need at least 16 bits (HU from -1024 to 3071 or more); load the series with "
                         "its rescale slope and intercept applied")
    lo, hi = float(ct.min()), float(ct.max())
    if lo == hi:
        raise InputError(f"{name} array holds the single value {lo:g} everywhere: it is not a CT image (HU)")
    sample = _sample(ct).astype(np.float32)
    median = float(np.median(sample))
    if lo >= 0 and median >= 500:
        raise InputError(f"{name} values look stored without the rescale intercept: minimum {lo:g}, median "
                         f"{median:g} (in HU, air is about -1000 and soft tissue 0-100); apply the DICOM rescale "
                         "(HU = stored x slope + intercept, intercept usually -1024)")
    if median < -1100 or median > 1500:
        raise InputError(f"{name} median value {median:g} is not a CT in HU (air about -1000, soft tissue 0-100 HU)")


def clip_level(ct):
    """The top of the stored range (HU) when the image is clipped there (voxels at exactly the maximum of
    a 12-bit or 16-bit range, or a plateau of many voxels under 4096 HU), else None (nothing reaches the
    top of the scale)."""
    top = float(ct.max())
    at_top = int(np.count_nonzero(ct >= top))
    if at_top >= 4 and (top in _CLIP_LEVELS or (top <= 4095.0 and at_top >= 20)):
        return top
    return None


def floor_level(ct):
    """The bottom of the stored range (HU) when the image is cut there (at least 0.1 % of the voxels, and 20, at
    exactly the minimum, itself at -1000 HU or lower: air, lung and dark metal streaks stored at the floor), else
    None. A minimum under ``_PADDING_BELOW`` may be the padding outside the reconstruction circle (-2048, -3024 HU):
    then the floor is the lowest value above it, when that is a floor."""
    low = float(ct.min())
    if low < _PADDING_BELOW:
        sample = _sample(ct)
        inside = sample[sample > low]
        above = float(inside.min()) if inside.size else None
        if above is not None and above <= _FLOOR_MAX and _is_floor(ct, above):
            return above
    return low if low <= _FLOOR_MAX and _is_floor(ct, low) else None


def _is_floor(ct, value):
    """Whether at least 0.1 % of the voxels of ``ct``, and 20, hold exactly ``value``."""
    return int(np.count_nonzero(ct == value)) >= max(20, 1e-3 * ct.size)
