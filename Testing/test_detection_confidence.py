"""Detection confidence: the logistic fit (against its generating model), the stored TUNING calibration (true
seeds confident, a doubtful one not), and the "to review" threshold from the setting to the command line."""

import json

import numpy as np
import pytest

from SeedBrachyLib import settings
from SeedBrachyLib.cli import main
from SeedBrachyLib.cohort.roc import auc_delong
from SeedBrachyLib.errors import InputError
from SeedBrachyLib.postimplant import detection_confidence as dc
from SeedBrachyLib.postimplant.detection import detect_seeds
from SeedBrachyLib.postimplant.detection_confidence_fit import CALIBRATION


def _logistic_sample(n, rng):
    """Rows (n, F): feature 'residual' carries the label (logit 1.5 - 2 x), 'bone' is planted noise."""
    rows = rng.normal(size=(n, len(dc.FEATURES)))
    logit = 1.5 - 2.0 * rows[:, dc.FEATURES.index("residual")]
    return rows, rng.random(n) < 1 / (1 + np.exp(-logit)), 1 / (1 + np.exp(-logit))


def test_fit_recovers_the_generating_model_and_gives_noise_no_weight():
    rng = np.random.default_rng(5)
    rows, true, _ = _logistic_sample(4000, rng)
    fit = dc.fit(rows, true, penalty=1.0)
    b = np.array(fit["coefficients"]) / np.array(fit["scale"])  # per unit of the feature
    assert abs(b[dc.FEATURES.index("residual")] + 2.0) < 0.2
    others = np.delete(b, dc.FEATURES.index("residual"))
    assert np.max(np.abs(others)) < 0.15  # planted noise features earn (almost) no weight
    fresh, fresh_true, p = _logistic_sample(4000, rng)
    c = dc.confidence(fresh, fit)
    assert np.percentile(np.abs(c - p), 95) < 0.06  # calibrated: the generating probability
    for lo, hi in ((0.0, 0.3), (0.3, 0.7), (0.7, 1.0)):
        sel = (c >= lo) & (c < hi)
        assert abs(c[sel].mean() - fresh_true[sel].mean()) < 0.05
    assert 0.8 < auc_delong(c, fresh_true)["auc"] < 0.9


def test_fit_and_confidence_refuse_what_they_cannot_use():
    rows = np.zeros((4, len(dc.FEATURES)))
    with pytest.raises(InputError, match="both kinds"):
        dc.fit(rows, [1, 1, 1, 1])
    stale = dict(CALIBRATION, features=list(dc.FEATURES[:-1]))
    with pytest.raises(InputError, match="refit"):
        dc.confidence(rows, stale)


def test_stored_calibration_is_a_fit_of_every_feature():
    assert tuple(CALIBRATION["features"]) == dc.FEATURES
    b = np.abs(CALIBRATION["coefficients"])
    assert len(b) == len(dc.FEATURES) and b.max() > 0.3  # not a constant


def _series(pair):
    """Four isolated seeds and, with ``pair``, two side by side 1 mm apart at the centre (HU, mm)."""
    from ct_phantoms import physics, scoring

    series = physics.series_around(np.zeros(3), (60.0, 60.0), (0.8, 0.8), 1.0, 1.0, 24.0, (0.45, 0.45), 3071.0)
    image = np.full(series.shape, 40.0, np.float32)
    axis = np.array([0.0, 0.3, 0.95]) / np.linalg.norm([0.0, 0.3, 0.95])
    for c in [[-15, -15, 0], [15, -15, 2], [-15, 15, -2], [15, 15, 1]] + ([[0, 0, 0], [1, 0, 0]] if pair else []):
        physics.splat(image, series, *physics.seed_points(np.array(c, float), axis, "Ag rod", 70000.0, 5500.0))
    image += physics.textured_noise(series, 15.0, np.random.default_rng(11))
    return physics.store(image, 3071.0), scoring.grid_of(series)


def test_calibrated_confidence_keeps_isolated_seeds_and_doubts_a_side_by_side_pair():
    """Isolated seeds are confident (not to review); two seeds side by side, where the TUNING phantoms' false
    detections gather (an object split into k seeds, a seed close by), are placed lower (a constant fails)."""
    ct, grid = _series(True)
    result = detect_seeds(ct, grid, slice_thickness_mm=1.0)
    assert len(result.seeds) == 6 and result.features.shape == (6, len(dc.FEATURES))
    central = np.array([np.linalg.norm(s.position) < 3.0 for s in result.seeds])
    assert central.sum() == 2
    isolated = result.confidences[~central]
    assert isolated.min() >= 0.9 and not result.review[~central].any()
    assert 1 - result.confidences[central].max() > 5 * (1 - isolated.min())  # 5 times the chance of being false
    np.testing.assert_allclose(result.confidences, dc.confidence(result.features))


def test_command_line_lists_seeds_under_the_threshold_to_review(tmp_path, capsys):
    """``seedbrachy detect --review-below-confidence``: the setting's option; 1.0 lists every seed to review,
    0 none; each is printed with its confidence and, under the threshold, ": to review"."""
    import SimpleITK as sitk

    from SeedBrachyLib.itk_image import to_sitk

    ct, grid = _series(False)
    path = tmp_path / "post.nrrd"
    sitk.WriteImage(to_sitk(ct, grid), str(path))
    option = settings.SETTINGS["reviewBelowConfidence"].option
    for threshold, listed in (("1.0", 4), ("0", 0)):
        out = tmp_path / f"seeds{threshold}.json"
        assert main(["detect", str(path), "--quiet", "--slice-thickness", "1", option, threshold,
                     "--json", str(out)]) == 0
        printed = capsys.readouterr().out
        assert f"{listed} to review (confidence < {float(threshold):g}" in printed
        assert printed.count(": to review") == listed
        assert len(json.loads(out.read_text())["to_review"]) == listed
    assert main(["detect", str(path), "--quiet", option, "1.5"]) != 0
    assert "reviewBelowConfidence = 1.5" in capsys.readouterr().err
