"""The fast paths of seed detection against what they replace: the compiled seed image and fit
(postimplant/seed_model_numba.py) against the numpy path, the candidate stage (detection_candidates.py) against
labelling the whole volume.

The numpy path (``SEEDBRACHY_ENGINE=numpy``) is the reference: the compiled image must equal it to rounding
(1e-14 relative: numpy's exp on AVX-512 machines is its own SIMD routine, one ulp from the C library's that the
compiled path calls, so the images agree to a few 1e-16, not to the bit), the fit's residual too, its Jacobian to
rounding, and detection on phantom series (oblique, clipped at 3071 HU,
5 mm slices, an extended scale without a header thickness) must give the same seeds, positions and axes within
1e-6 mm, the same confidences within 1e-6 and the same rejections.
"""

import numpy as np
import pytest
from ct_phantoms import cases, scoring
from scipy import ndimage

from SeedBrachyLib.postimplant import seed_model
from SeedBrachyLib.postimplant.detection import detect_seeds
from SeedBrachyLib.postimplant.detection_candidates import objects

_GROUPS = {"end-to-end": 1, "side-by-side": 1, "clump3": 0, "bundle": 0}
# own random seeds (71xx), neither TUNING nor SCORING
SERIES = (
    cases.Case("oblique 1.5 mm thorax", "thorax", 7101, thickness=1.5, increment=1.5, tilt_deg=(12.0, 0.0, 8.0),
               fov=(100.0, 90.0), length=35.0, needle_seeds=10, groups=_GROUPS, in_bone=1, near_bone=1, migrated=1),
    cases.Case("5 mm pelvis", "pelvis", 7102, thickness=5.0, increment=5.0, fov=(80.0, 70.0), length=35.0,
               needle_seeds=6, groups={"side-by-side": 1}, in_bone=0, near_bone=1, migrated=0, noise_hu=25,
               calcifications=2),
    cases.Case("extended 1 mm, no header", "pelvis", 7103, thickness=1.0, increment=1.0, clip_hu=None,
               fov=(90.0, 80.0), length=30.0, needle_seeds=8, groups=_GROUPS, in_bone=1, near_bone=1, migrated=0,
               header_thickness=False),
)


def _numpy(monkeypatch, call):
    monkeypatch.setenv("SEEDBRACHY_ENGINE", "numpy")
    try:
        return call()
    finally:
        monkeypatch.delenv("SEEDBRACHY_ENGINE")


def _block(rng, k, clip_hu):
    model = seed_model.SeriesModel(np.array([0.7, 0.9, 2.5]), 3.0, clip_hu=clip_hu)
    coords = [np.arange(14) * 0.7 + 3.0, np.arange(12) * 0.9 - 2.0, np.arange(7) * 2.5 + 1.0]
    centres = np.array([c.mean() for c in coords]) + rng.normal(0, 0.8, (k, 3))
    axes = rng.normal(size=(k, 3))
    axes /= np.linalg.norm(axes, axis=1)[:, None]
    return model, coords, centres, axes, rng.uniform(3e4, 5e4, k)


@pytest.mark.parametrize("k", [1, 2, 3, 6, 11])
def test_compiled_image_equals_numpy_to_rounding(monkeypatch, k):
    """11 seeds: 132 line samples, past numpy's 128-term summation block."""
    rng = np.random.default_rng(k)
    model, coords, centres, axes, masses = _block(rng, k, None)
    kk, jj, ii = np.nonzero(rng.random((7, 12, 14)) > 0.4)
    index = (ii, jj, kk)
    value, jac = seed_model.render_at(model, coords, index, centres, axes, masses, jacobian=True)
    ref_value, ref_jac = _numpy(monkeypatch, lambda: seed_model.render_at(model, coords, index, centres, axes,
                                                                          masses, jacobian=True))
    assert seed_model._compiled("render_at") is not None
    assert np.allclose(value, ref_value, rtol=1e-14, atol=0)
    assert np.array_equal(seed_model.render_at(model, coords, index, centres, axes, masses), value)
    assert np.allclose(jac, ref_jac, rtol=0, atol=1e-13 * np.abs(ref_jac).max())


@pytest.mark.parametrize("clip_hu", [None, 1500.0])
def test_compiled_fit_equals_numpy(monkeypatch, clip_hu):
    """Two seeds close enough that the overlap cost acts, on a clipped and an unclipped block."""
    rng = np.random.default_rng(7)
    model, coords, centres, axes, masses = _block(rng, 2, clip_hu)
    centres[1] = centres[0] + np.array([0.5, 0.3, 0.0])
    image = seed_model.render(model, coords, centres, axes, masses) + 40.0 + rng.normal(0, 15, (7, 12, 14))
    if clip_hu is not None:
        image = np.minimum(image, clip_hu)
    weights = np.ones(image.shape)
    starts = [(c + 0.3, a) for c, a in zip(centres, axes)]

    def fit():
        return seed_model.fit_seeds(model, coords, image, weights, starts, 40000.0, 40.0, 5.0)

    got, ref = fit(), _numpy(monkeypatch, fit)
    assert np.allclose(got.centres, ref.centres, rtol=0, atol=1e-9)
    assert np.allclose(got.axes, ref.axes, rtol=0, atol=1e-9)
    assert np.allclose(got.masses, ref.masses, rtol=1e-9)
    assert got.rss == pytest.approx(ref.rss, rel=1e-9) and got.prior == pytest.approx(ref.prior, rel=1e-9, abs=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("case", SERIES, ids=[c.name for c in SERIES])
def test_detection_compiled_equals_numpy(monkeypatch, case):
    """The fast path (compiled, on the int16 series as stored) against the former one (numpy, on a float32 copy)."""
    ph = cases.build(case)
    grid = scoring.grid_of(ph.series)
    assert ph.ct.dtype == np.int16

    def detect(ct=ph.ct):
        return detect_seeds(ct, grid, slice_thickness_mm=ph.slice_thickness_mm)

    got, ref = detect(), _numpy(monkeypatch, lambda: detect(ph.ct.astype(np.float32)))
    assert len(got.seeds) == len(ref.seeds) >= 3
    assert np.abs(np.array([s.position for s in got.seeds]) - [s.position for s in ref.seeds]).max() < 1e-6
    assert np.abs(np.array([s.axis for s in got.seeds]) - [s.axis for s in ref.seeds]).max() < 1e-6
    # the calibrated confidence reads residuals and peaks in noise units (detection_confidence), which carry the
    # paths' ~1e-10 mm rounding differences up to ~2e-9; 1e-6 is the positions' tolerance, far under any threshold
    assert np.abs(got.confidences - ref.confidences).max() < 1e-6
    assert np.array_equal(got.review, ref.review)
    assert [r.reason for r in got.rejected] == [r.reason for r in ref.rejected]
    assert got.threshold_hu == pytest.approx(ref.threshold_hu, rel=1e-12)
    assert got.single_seed_mass == pytest.approx(ref.single_seed_mass, rel=1e-9) and got.series == ref.series


# ------------------------------------------------------------------ the candidate stage
def _objects_by_whole_volume_label(values, level):
    """Reference: ndimage.label on the whole volume, objects in label order, voxels in raster order."""
    labels, n = ndimage.label(values >= level, np.ones((3, 3, 3), bool))
    return [np.argwhere(labels == c) for c in range(1, n + 1)]


@pytest.mark.parametrize("dtype", [np.float32, np.int16])
def test_candidate_objects_equal_whole_volume_labelling(dtype):
    """Objects that wind across block borders, touch only at a corner, and fill the volume's last partial blocks
    (41 x 37 x 29 is no multiple of the blocks)."""
    rng = np.random.default_rng(11)
    values = (ndimage.gaussian_filter(rng.random((41, 37, 29)), 1.2) * 3000).astype(dtype)
    values[-1, -1, -1] = values[-2, -2, -2] = 3000  # a diagonal pair in the last corner
    values[5, 7, 7] = values[4, 8, 8] = 3000  # touching across a block corner
    for level in np.quantile(values, [0.5, 0.9, 0.99]).tolist() + [3000, 4000]:
        got, ref = objects(values, level), _objects_by_whole_volume_label(values, level)
        assert len(got) == len(ref) and all(np.array_equal(a, b) for a, b in zip(got, ref)), level
    assert len(objects(values, np.quantile(values, 0.9))) > 50  # many objects, and one of 20000 voxels at 0.5


def test_levenberg_marquardt_through_leastsq_equals_least_squares():
    """The fit's least_squares(method="lm", x_scale="jac") made through leastsq: the same iterates, to the bit."""
    from scipy.optimize import least_squares

    from SeedBrachyLib.postimplant import seed_model_numba

    t = np.linspace(0, 4, 40)
    y = 3.0 * np.exp(-0.7 * t) + 0.5 + 0.01 * np.sin(17 * t)

    def fun(p):
        return p[0] * np.exp(-p[1] * t) + p[2] - y

    def jac(p):
        return np.stack([np.exp(-p[1] * t), -p[0] * t * np.exp(-p[1] * t), np.ones_like(t)], 1)

    for max_nfev in (3, 50):
        kw = dict(jac=jac, method="lm", max_nfev=max_nfev, xtol=1e-4, ftol=1e-5, x_scale="jac")
        got, ref = seed_model_numba.least_squares(fun, np.array([1.0, 0.2, 0.0]), **kw), \
            least_squares(fun, np.array([1.0, 0.2, 0.0]), **kw)
        assert np.array_equal(got.x, ref.x) and np.array_equal(got.fun, ref.fun)
