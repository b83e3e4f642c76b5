"""A local optimisation stops on another start's answer (registration._Run.optimise, ``joinable``), never on a
start that failed: that one's matrix is where it started, and its value (infinite) would drop a good start."""

from types import SimpleNamespace

import numpy as np

from SeedBrachyLib.grid import Grid
from SeedBrachyLib.itk_image import to_sitk
from SeedBrachyLib.postimplant import registration, registration_levels


def _level():
    """An 80 mm body (soft tissue, HU) with a dense 7 mm ball off centre, 2 mm voxels, every voxel kept."""
    grid = Grid.around([0.0, 0.0, 0.0], [80.0, 80.0, 80.0], 2.0)
    p = grid.points()
    body = np.linalg.norm(p / [30.0, 25.0, 20.0], axis=-1) <= 1
    ball = np.linalg.norm(p - [8.0, -5.0, 3.0], axis=-1) < 7
    ct = np.where(body, 40.0 + 900.0 * ball, -1000.0).astype(np.float32)
    return registration_levels.Level(to_sitk(ct, grid), to_sitk(np.ones(ct.shape, bool), grid),
                                     np.full(3, 4.0 / 12))


def test_a_start_never_joins_a_failed_start():
    level = _level()
    region = np.stack(np.meshgrid(*[(-20.0, 20.0)] * 3, indexing="ij"), -1).reshape(-1, 3)  # LPS mm
    failed = SimpleNamespace(matrix=np.eye(4), value=np.inf)  # raised at this level: left at its start
    run = registration._Run(np.eye(4), np.zeros(3))  # starts at the optimum, on the failed start's matrix
    run.optimise(level, level, "mattes", "rigid", 2.0, 3000, 20, 0, joinable=([failed], region))
    assert np.isfinite(run.value), run.stop_condition
    done = SimpleNamespace(matrix=np.eye(4), value=-0.5)  # a start that reached this answer: joined
    again = registration._Run(np.eye(4), np.zeros(3))
    again.optimise(level, level, "mattes", "rigid", 2.0, 3000, 20, 0, joinable=([done], region))
    assert again.value == -0.5 and again.stop_condition.startswith("joined")


def test_the_compared_answers_are_scored_on_the_same_samples():
    """Mean squares against a constant moving image is the mean of (F - c)^2 over the fixed samples whatever
    the transform: equal values for two different answers only if both are scored on the same points (ITK
    draws them, jittered within their voxels, in the fixed frame; samples drawn per run differ)."""
    grid = Grid.around([0.0, 0.0, 0.0], [60.0, 60.0, 60.0], 2.0)
    noise = np.random.default_rng(4).normal(0.0, 100.0, grid.shape).astype(np.float32)
    fixed = registration_levels.Level(to_sitk(noise, grid), to_sitk(np.ones(grid.shape, bool), grid), np.zeros(3))
    wide = Grid.around([0.0, 0.0, 0.0], [140.0, 140.0, 140.0], 2.0)
    flat = np.full(wide.shape, 25.0, np.float32)
    moving = registration_levels.Level(to_sitk(flat, wide), to_sitk(np.ones(wide.shape, bool), wide), np.zeros(3))
    runs = []
    for shift in ([0.0, 0.0, 0.0], [12.0, -7.0, 3.0]):
        run = registration._Run(np.eye(4), np.zeros(3))
        run.matrix[:3, 3] = shift
        run.value = -1.0 - len(runs)
        runs.append(run)
    ranked = registration._compare(runs, fixed, moving, "meansquares", "rigid", 2000, 7)
    values = [r.value for r in ranked]
    assert values[0] == values[1]
    assert 25.0 ** 2 < values[0] < 100.0 ** 2 + 25.0 ** 2  # the noise, smoothed by interpolation at the jitter


def test_the_start_loop_ends_once_three_starts_agree_and_an_alternative_is_known():
    region = np.stack(np.meshgrid(*[(-20.0, 20.0)] * 3, indexing="ij"), -1).reshape(-1, 3)  # LPS mm

    def run(shift_mm, value):
        matrix = np.eye(4)
        matrix[:3, 3] = shift_mm
        return SimpleNamespace(matrix=matrix, value=value)

    best, near, other = run([0, 0, 0], -1.6), run([1.0, 0.5, 0], -1.6), run([0, 0, 27.0], -1.4)
    failed = run([0.3, 0, 0], np.inf)
    assert registration._settled([best, near, near, other], region)
    assert not registration._settled([best, near, near], region)  # no alternative to weigh against it yet
    assert not registration._settled([best, near, other, failed], region)  # a failed start agrees with nothing
    assert not registration._settled([other, other, other, best], region)  # three agree, but not on the best
    assert not registration._settled([failed], region)
