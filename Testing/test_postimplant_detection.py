"""Seed detection in synthetic post-implant CT: sensitivity, precision and localisation error across
slice thickness (1, 2, 3, 5 mm and a 5 mm series interpolated at 2.5 mm), an oblique grid, noise,
metal streaks, cortical bone near seeds, a needle fragment and touching pairs; plus bad input.

Detected and true seeds are matched by Hungarian assignment with a distance gate of
max(2.5 mm, 0.6 x slice thickness). Run with ``-s`` to see the figures.
"""

import math

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from SeedBrachyLib.errors import Cancelled, InputError
from SeedBrachyLib.postimplant.detection import detect_seeds, match_seeds
from SeedBrachyLib.seeds import Seed
from SeedBrachyLib.synthetic.post_implant_ct import post_implant_ct, random_implant


def _rotation(deg_x, deg_z):
    ax, az = math.radians(deg_x), math.radians(deg_z)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ rx


CONDITIONS = {
    "1 mm": {"spacing_mm": (0.8, 0.8, 1.0)},
    "2 mm": {"spacing_mm": (0.8, 0.8, 2.0)},
    "3 mm": {"spacing_mm": (0.8, 0.8, 3.0)},
    "5 mm": {"spacing_mm": (0.8, 0.8, 5.0)},
    "5 mm at 2.5": {"spacing_mm": (0.8, 0.8, 2.5), "slice_thickness_mm": 5.0},
    "2 mm oblique": {"spacing_mm": (0.9, 0.9, 2.0), "direction": _rotation(12, 20)},
}
IMPLANTS = (3, 4)  # random seeds of the two implants scanned under every condition
N_SEEDS, PAIRS = 40, 4


def _gate(thickness_mm):
    return max(2.5, 0.6 * thickness_mm)


def _oracle_match(detected, truth, gate):
    """Independent Hungarian matching (brute cost matrix) used to check match_seeds."""
    cost = np.array([[np.linalg.norm(d - t) for t in truth] for d in detected])
    rows, cols = linear_sum_assignment(np.where(cost <= gate, cost, 1e9))
    return [(r, c, cost[r, c]) for r, c in zip(rows, cols) if cost[r, c] <= gate]


@pytest.fixture(scope="module")
def figures():
    """Detect in every (condition, implant) scan; per condition: true, detected, matched, errors (mm)."""
    out = {}
    for name, kw in CONDITIONS.items():
        stats = {"true": 0, "detected": 0, "matched": 0, "errors": []}
        for rs in IMPLANTS:
            seeds = random_implant(N_SEEDS, (40, 8, 0), 17, touching_pairs=PAIRS, max_tilt_deg=30, random_seed=rs)
            scan = post_implant_ct(seeds, noise_hu=15, streak_hu=300, bone_fragments=3, needle_fragments=1,
                                   random_seed=rs + 100, **kw)
            result = detect_seeds(scan.ct, scan.grid, slice_thickness_mm=scan.slice_thickness_mm)
            found = [s.position for s in result.seeds]
            matches = _oracle_match(found, [s.position for s in seeds], _gate(scan.slice_thickness_mm))
            stats["true"] += len(seeds)
            stats["detected"] += len(found)
            stats["matched"] += len(matches)
            stats["errors"] += [d for _r, _c, d in matches]
        out[name] = stats
    total = {k: sum(s[k] for s in out.values()) for k in ("true", "detected", "matched")}
    print("\nseed detection on synthetic post-implant CT (noise 15 HU, streaks 300 HU, 3 bone fragments, "
          "1 needle fragment, 4 touching pairs per 40 seeds)")
    print(f"{'condition':<14}{'seeds':>6}{'sens %':>8}{'prec %':>8}{'mean mm':>9}{'max mm':>8}")
    for name, s in out.items():
        e = np.array(s["errors"])
        print(f"{name:<14}{s['true']:>6}{100 * s['matched'] / s['true']:>8.1f}"
              f"{100 * s['matched'] / max(s['detected'], 1):>8.1f}{e.mean():>9.2f}{e.max():>8.2f}")
    print(f"{'all':<14}{total['true']:>6}{100 * total['matched'] / total['true']:>8.1f}"
          f"{100 * total['matched'] / total['detected']:>8.1f}")
    out["all"] = total
    return out


def test_sensitivity_and_precision_over_all_conditions(figures):
    total = figures["all"]
    assert total["true"] >= 200
    assert total["matched"] / total["true"] >= 0.98
    assert total["matched"] / total["detected"] >= 0.98


@pytest.mark.parametrize("condition, limit_mm", [("1 mm", 0.5), ("3 mm", 1.0)])
def test_mean_localisation_error(figures, condition, limit_mm):
    assert np.mean(figures[condition]["errors"]) <= limit_mm


def test_expected_count_and_strength_from_plan():
    seeds = random_implant(20, (40, 8, 0), 15, touching_pairs=3, strength_u=0.635, random_seed=21)
    scan = post_implant_ct(seeds, spacing_mm=(0.8, 0.8, 2.0), bone_fragments=2, needle_fragments=1, random_seed=21)
    result = detect_seeds(scan.ct, scan.grid, plan_seeds=seeds)
    assert len(result.seeds) == 20 and result.expected_count == 20
    assert all(s.strength_u == 0.635 for s in result.seeds)
    pairs, dist = match_seeds([s.position for s in result.seeds], [s.position for s in seeds])
    assert len(pairs) >= 19 and dist.mean() < 0.6
    # fewer planned than present: the most confident are kept, the rest rejected with a reason
    fewer = detect_seeds(scan.ct, scan.grid, expected_count=15)
    assert len(fewer.seeds) == 15
    assert sum("expected count" in r.reason for r in fewer.rejected) >= 5
    assert np.all(np.diff(fewer.confidences) <= 0) and np.all((fewer.confidences >= 0) & (fewer.confidences <= 1))


def test_touching_pair_is_split_into_two_seeds():
    a = Seed([40.0, 8.0, 0.0], [1.0, 0.0, 0.0], 0.5)
    b = Seed([44.5, 8.0, 0.0], [1.0, 0.0, 0.0], 0.5)  # end to end, touching
    c = Seed([30.0, 0.0, 5.0], [0.0, 1.0, 0.0], 0.5)
    scan = post_implant_ct([a, b, c], spacing_mm=(0.8, 0.8, 1.0), random_seed=5)
    result = detect_seeds(scan.ct, scan.grid, strength_u=0.5)
    pairs, dist = match_seeds([s.position for s in result.seeds], [a.position, b.position, c.position])
    assert len(result.seeds) == 3 and len(pairs) == 3 and dist.max() < 0.6


def test_axis_follows_the_seed():
    # the axial seed lies in a slice centre (z = 1.5 mm) for both 1 and 3 mm slices: a 0.8 mm seed lying
    # exactly between two 3 mm slices peaks at only ~700 HU, below bone (see the benchmark)
    seeds = [Seed([40.0, 8.0, 1.5], [1.0, 0.0, 0.0]), Seed([30.0, 0.0, 5.0], [0.0, 0.6, 0.8]),
             Seed([48.0, 16.0, -8.0], [0.0, 0.0, 1.0])]
    for thickness in (1.0, 3.0):
        scan = post_implant_ct(seeds, spacing_mm=(0.8, 0.8, thickness), random_seed=6)
        result = detect_seeds(scan.ct, scan.grid)
        pairs, _ = match_seeds([s.position for s in result.seeds], [s.position for s in seeds])
        assert len(pairs) == 3
        for d, t in pairs:
            angle = math.degrees(math.acos(min(1.0, abs(result.seeds[d].axis @ seeds[t].axis))))
            assert angle < 15.0, (thickness, angle)


def test_needle_fragment_and_bone_are_rejected_with_reasons():
    seeds = random_implant(10, (40, 8, 0), 14, random_seed=8)
    scan = post_implant_ct(seeds, spacing_mm=(0.8, 0.8, 1.0), bone_fragments=3, needle_fragments=1,
                           cortical_hu=1400, random_seed=8)
    result = detect_seeds(scan.ct, scan.grid)
    pairs, _ = match_seeds([s.position for s in result.seeds], [s.position for s in seeds])
    assert len(pairs) == 10 and len(result.seeds) == 10
    needle = next(d["center"] for d in scan.distractors if d["kind"] == "needle")
    assert any(np.linalg.norm(r.position - needle) < 3 and ("too large" in r.reason or "too long" in r.reason)
               for r in result.rejected)


def test_threshold_adapts_to_slice_thickness():
    seeds = random_implant(15, (40, 8, 0), 15, random_seed=9)
    thin = detect_seeds(*_scan(seeds, 1.0))
    thick = detect_seeds(*_scan(seeds, 5.0))
    assert thick.threshold_hu < thin.threshold_hu
    assert 1000 < thick.seed_peak_hu < 2500 and thick.threshold_hu > 1000  # above cortical bone (1000 HU)
    assert len(thin.seeds) == 15 and len(thick.seeds) == 15


def _scan(seeds, thickness):
    scan = post_implant_ct(seeds, spacing_mm=(0.8, 0.8, thickness), random_seed=9)
    return scan.ct, scan.grid


def test_no_metal_gives_no_seeds_and_progress_reports():
    scan = post_implant_ct([], spacing_mm=(1.0, 1.0, 2.0))
    assert detect_seeds(scan.ct, scan.grid).seeds == []
    seeds = random_implant(5, (40, 8, 0), 12, random_seed=1)
    scan = post_implant_ct(seeds, spacing_mm=(1.0, 1.0, 2.0))
    calls = []
    result = detect_seeds(scan.ct, scan.grid, progress=lambda f, m: calls.append(f))
    assert len(result.seeds) == 5 and calls[0] == 0.0 and calls[-1] == 1.0 and calls == sorted(calls)
    with pytest.raises(Cancelled):
        detect_seeds(scan.ct, scan.grid, progress=lambda f, m: False)
    assert "5 seeds detected" in result.summary()


def test_match_seeds_gate_and_assignment():
    truth = np.array([[0.0, 0, 0], [5.0, 0, 0], [20.0, 0, 0]])
    detected = np.array([[4.0, 0, 0], [0.5, 0, 0], [30.0, 0, 0]])
    pairs, dist = match_seeds(detected, truth, gate_mm=2.0)
    assert sorted(map(tuple, pairs.tolist())) == [(0, 1), (1, 0)] and np.allclose(sorted(dist), [0.5, 1.0])


@pytest.mark.parametrize("ct_shape, kwargs", [((0, 4, 4), {}), ((4, 4), {}), ((5, 6, 7), {}),
                                              (None, {"expected_count": 0}), (None, {"expected_count": -3}),
                                              (None, {"strength_u": 0}), (None, {"slice_thickness_mm": 0}),
                                              (None, {"plan_seeds": []}), ("nan", {})])
def test_bad_input(ct_shape, kwargs):
    scan = post_implant_ct([], spacing_mm=(2.0, 2.0, 4.0))
    if ct_shape == "nan":
        ct = scan.ct.astype(float)
        ct[0, 0, 0] = np.nan
    else:
        ct = scan.ct if ct_shape is None else np.zeros(ct_shape, dtype=np.int16)
    with pytest.raises(InputError):
        detect_seeds(ct, scan.grid, **kwargs)
