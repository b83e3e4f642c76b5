"""Confidence of detected seeds: score features of each fitted seed and their calibration.

A detected seed's confidence (0-1) is the fraction of detections with its features that were true seeds on the
TUNING phantoms (``Testing/ct_phantoms``; a detection is true when Hungarian matching within 2.5 mm pairs it with
an implanted seed): a logistic function of the features below, fitted on TUNING only by
``Testing/benchmarks/bench_detection.py --calibrate``, which writes the coefficients to
:mod:`.detection_confidence_fit` (data, not code).

Seeds placed only to meet an expected count are listed "to review" whatever their confidence (the detector).

Features (per seed; lengths mm, CT numbers HU; each dimensionless), from the fit and a box of the series around
the seed (5 mm in-plane, the slice profile plus 3 mm across slices) in which the fitted seeds of its object are
rendered by the forward model (:func:`~.seed_model.render`) over the median of the box where they add nothing:

- ``mass``: log of the fitted mass over one seed's mass; ``mass_off``: its absolute value;
- ``residual``: rms of data - model where the model is over 10 % of its peak, over the series noise (log1p);
- ``tail``: the same in the model's penumbra (2-30 % of its peak: the slice-profile and blur tails);
- ``peak``: log of the data's peak over the model's peak above the surroundings;
- ``clutter``: robust SD of the box where the model adds nothing, over the series noise (log; streaks, bone);
- ``bone``: fraction of that part of the box more than 250 HU above soft tissue (bone beside the seed);
- ``neighbour``: distance to the nearest other detected seed, capped at 10 mm, over 10 mm;
- ``k``: log of the number of seeds fitted to its object; ``margin``: the score margin of that choice
  (clipped to -0.2-1);
- ``thickness``: log of the slice thickness (mm) over 1 mm;
- ``score``: the detector's raw fit score (0-1: mass near one seed, small residual, clear k).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError
from .seed_model import render

FEATURES = ("mass", "mass_off", "residual", "tail", "peak", "clutter", "bone", "neighbour", "k", "margin",
            "thickness", "score")
_BOX_MM = 5.0  # in-plane half-width of the box around a seed (mm)
_BOX_SLICES_MM = 3.0  # added to half the slice profile across slices (mm)
_BONE_HU = 250.0  # above soft tissue: bone (HU)
_NEIGHBOUR_MM = 10.0  # nearest-seed distance cap (mm)


def features(ctx, seeds):
    """Feature rows (n, len(FEATURES)) of ``seeds``: (hypothesis, index in it, raw score) per detected seed, in
    the detector's grid frame (``ctx``: the detector's series context: values, grid, model, soft, noise, mass)."""
    rows = np.zeros((len(seeds), len(FEATURES)))
    centres = np.array([h.centres[q] for h, q, _s in seeds]).reshape(-1, 3)
    for n, (h, q, score) in enumerate(seeds):
        others = np.delete(centres, n, axis=0)
        nearest = float(np.min(np.linalg.norm(others - centres[n], axis=1))) if len(others) else _NEIGHBOUR_MM
        ratio = max(float(h.ratios[q]), 1e-3)
        rows[n] = (math.log(ratio), abs(math.log(ratio)), *_image_features(ctx, h, q),
                   min(nearest, _NEIGHBOUR_MM) / _NEIGHBOUR_MM, math.log(len(h.centres)),
                   min(max(h.margin, -0.2), 1.0), math.log(ctx.model.thickness_mm), score)
    return rows


def _image_features(ctx, h, q):
    """(residual, tail, peak, clutter, bone) of seed ``q`` of hypothesis ``h`` (see the module text)."""
    sp = ctx.grid.spacing
    half = np.array([_BOX_MM / sp[0], _BOX_MM / sp[1], (0.5 * ctx.model.thickness_mm + _BOX_SLICES_MM) / sp[2]])
    centre = h.centres[q] / sp  # voxel (i, j, k)
    shape = np.array(ctx.values.shape[::-1])
    lo = np.clip(np.floor(centre - half).astype(int), 0, shape - 1)
    hi = np.clip(np.ceil(centre + half).astype(int) + 1, lo + 1, shape)
    block = ctx.values[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]].astype(np.float32)
    coords = [np.arange(lo[a], hi[a]) * sp[a] for a in range(3)]
    model = render(ctx.model, coords, h.centres, h.axes, h.ratios * ctx.mass)
    top = float(model.max())
    if top <= 0:
        return 3.0, 3.0, 0.0, 0.0, 0.0
    quiet = model < 0.01 * top
    surroundings = block[quiet] if quiet.sum() >= 10 else block.reshape(-1)
    bg = float(np.median(surroundings))
    seen = model + bg
    if ctx.model.clip_hu is not None:
        seen = np.minimum(seen, ctx.model.clip_hu)
    diff = block - seen
    core = model >= 0.1 * top
    penumbra = (model >= 0.02 * top) & ~core
    noise = max(ctx.noise, 1.0)
    residual = math.log1p(float(np.sqrt(np.mean(diff[core] ** 2))) / noise)
    tail = math.log1p(float(np.sqrt(np.mean(diff[penumbra] ** 2))) / noise) if penumbra.any() else 0.0
    peak = math.log(max(float(np.max(block[core])) - bg, 1.0) / max(float(np.max(seen[core])) - bg, 1.0))
    spread = 1.4826 * float(np.median(np.abs(surroundings - bg)))
    clutter = math.log(max(spread, 1.0) / noise)
    bone = float(np.mean(surroundings > ctx.soft + _BONE_HU))
    return residual, tail, peak, clutter, bone


def confidence(rows, calibration=None):
    """Confidence (0-1) per feature row (n, len(FEATURES)): 1 / (1 + exp(-(b0 + b . (x - mean) / scale))) with
    the TUNING fit in :mod:`.detection_confidence_fit` (or ``calibration``, a dict of the same form)."""
    if calibration is None:
        from .detection_confidence_fit import CALIBRATION

        calibration = CALIBRATION
    rows = np.asarray(rows, float).reshape(-1, len(FEATURES))
    if tuple(calibration["features"]) != FEATURES:
        raise InputError(f"calibration features {calibration['features']} are not {FEATURES}: refit it "
                         "(Testing/benchmarks/bench_detection.py --calibrate)")
    z = (rows - np.asarray(calibration["mean"])) / np.asarray(calibration["scale"])
    return 1.0 / (1.0 + np.exp(-(calibration["intercept"] + z @ np.asarray(calibration["coefficients"]))))


def fit(rows, true, penalty=1.0):
    """Logistic regression of ``true`` (0/1 per row) on the standardised feature ``rows`` (n, F), an L2
    ``penalty`` on the coefficients (not the intercept; in units of one detection's log-likelihood), by
    Newton's method. Returns the calibration dict :func:`confidence` reads."""
    rows = np.asarray(rows, float)
    y = np.asarray(true, float)
    if rows.ndim != 2 or len(rows) != len(y) or len(y) < 2 or y.min() == y.max():
        raise InputError(f"need feature rows (n, F) and n 0/1 labels of both kinds; got {rows.shape}, {len(y)} labels")
    mean = rows.mean(0)
    scale = rows.std(0)
    scale[scale < 1e-9] = 1.0
    x = np.hstack([np.ones((len(y), 1)), (rows - mean) / scale])
    w = np.zeros(x.shape[1])
    ridge = np.full(x.shape[1], float(penalty))
    ridge[0] = 0.0
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        gradient = x.T @ (p - y) + ridge * w
        hessian = (x * (p * (1 - p))[:, None]).T @ x + np.diag(ridge + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return {"features": list(FEATURES), "mean": mean.tolist(), "scale": scale.tolist(),
            "intercept": float(w[0]), "coefficients": w[1:].tolist(), "penalty": float(penalty)}

