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
