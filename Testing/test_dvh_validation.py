"""DVH validation against analytic truth (0.1 mm lattice) with plastimatch and dicompyler-core as peers.

Cases, methods and the peers' reading rules: ``dvh_validation_cases.py`` (run it as a script for
the full table). The targets of issue 10, for the DVH from seeds (exact point dose at the
structure's own sample points):

* D90 within 0.5 % of the truth for structures of at least 1 cc;
* D2cc, D1cc, D0.1cc within 1 % or 0.5 Gy;
* thin-structure (2 mm slab, 3 mm tube) Dmean within 1 %;
* V100 within 0.5 percentage points;
* on every metric at least as close to the truth as the better of plastimatch and dicompyler-core
  (which read the same field from the dose grid), through the library and through Slicer's
  segmentation logic (closed surface or binary labelmap -> Structure -> metrics).

The fast lane runs the capped k/r^2 field on the 1 mm grid; the matrix (capped and TG-43 fields,
four shapes, 1 mm, 2 mm, 1 x 1 x 3 mm and oblique 1 mm grids; a covering subset unless
SEEDBRACHY_FULL_VALIDATION=1) and the Slicer path are marked slow,
and the linear ramp runs on the CTV.
"""

import os

import dvh_validation_cases as cases
import pytest
from scipy import ndimage

from SeedBrachyLib.dvh import DVH, GridDose, PointDose

# closer to the truth than ``cases.tie`` counts as a tie: the truth itself moves by up to 0.1 % between a
# 0.1 mm and a 0.0625 mm lattice, the fine masks resolve the surface to 0.125 mm, and the peers
# read 0.01 Gy bins (their voxel-centre errors cancel on some cases by the symmetry of the shape)
MATRIX_GRIDS = ("1mm", "2mm", "1x1x3mm", "oblique 1mm")
MATRIX_FIELDS = ("capped k/r^2", "TG-43 seeds")
#: ``SEEDBRACHY_FULL_VALIDATION=1`` runs the whole matrix (32 cases; this file with the Slicer path: 86-114 s with
#: pytest -n 2 on 2 cores); otherwise a covering eighth of it runs in ``make test`` (every shape on two grids and
#: under both fields, every grid under both fields)
FULL_MATRIX = os.environ.get("SEEDBRACHY_FULL_VALIDATION") == "1"


def _matrix_cases():
    shapes = list(cases.SHAPES)
    if FULL_MATRIX:
        return [(f, s, g) for f in MATRIX_FIELDS for s in shapes for g in MATRIX_GRIDS]
    n = len(MATRIX_GRIDS)
    return [(MATRIX_FIELDS[(i + k + 1) % 2], shape, MATRIX_GRIDS[(i + 2 * k) % n])
            for i, shape in enumerate(shapes) for k in (0, 1)]


def _check_targets(rows, shape_name, metrics):
    truth, exact = rows["truth"], rows["exact"]
    for name in metrics:
        t, e = truth[name], exact[name]
        if name == "D90":
            assert e == pytest.approx(t, rel=0.005), name
        elif name in ("D2cc", "D1cc", "D0.1cc"):
            assert abs(e - t) <= max(0.01 * t, 0.5), name
        elif name == "Dmean" and shape_name in ("Slab 2mm", "Tube 3mm"):
            assert e == pytest.approx(t, rel=0.01), name
        elif name == "V100":
            assert e == pytest.approx(t, abs=0.5), name


def _check_against_peers(rows, metrics):
    peers = [p for p in ("plastimatch", "dicompyler") if p in rows]
    for name in metrics:
        best = min(cases.error(rows, p, name) for p in peers)
        assert cases.error(rows, "exact", name) <= best + cases.tie(rows, name), (name,
                                                                                   {m: rows[m][name] for m in rows})


def _check_binary_and_grid(rows, metrics):
    """A binary mask at the dose grid's resolution, evaluated from the exact field, is never further from the truth
    than voxel-centre counting (plastimatch on the same voxels); the dose-grid path reads D90 within 0.7 %."""
    for name in metrics:
        assert cases.error(rows, "exact-binary", name) <= cases.error(rows, "plastimatch", name) + cases.tie(
            rows, name), (name, rows["exact-binary"][name], rows["plastimatch"][name], rows["truth"][name])
    if "D90" in metrics:
        assert rows["grid"]["D90"] == pytest.approx(rows["truth"]["D90"], rel=0.007)


def test_every_shape_lies_inside_its_box():
    """The truth lattice, the fine masks and the closed surfaces cover each shape's box, the peers its whole signed
    distance: no point of a box face may be inside (the slab and the skin rind reached past theirs, so the truth and
    the surfaces were of a cut shape and the peers of the whole one)."""
    import numpy as np

    for name, (sdf, lo, hi, _, _) in cases.SHAPES.items():
        u, v = np.meshgrid(np.linspace(0, 1, 200), np.linspace(0, 1, 200), indexing="ij")
        for axis in range(3):
            a, b = [x for x in range(3) if x != axis]
            for side in (lo, hi):
                p = np.empty(u.shape + (3,))
                p[..., axis] = side[axis]
                p[..., a] = lo[a] + u * (hi[a] - lo[a])
                p[..., b] = lo[b] + v * (hi[b] - lo[b])
                assert sdf(p).min() > 0, (name, axis)


def _require_plastimatch():
    if not cases.plastimatch_available():
        pytest.skip("plastimatch is NOT installed (apt-get install plastimatch; .ci/run installs it): "
                    "the plastimatch peer comparison did not run")


@pytest.mark.parametrize("shape_name", ["CTV", "Slab 2mm"])
def test_capped_field_on_1mm_grid(shape_name):
    _require_plastimatch()
    rows = cases.compare("capped k/r^2", shape_name, "1mm")
    metrics = cases.SHAPES[shape_name][4]
    _check_targets(rows, shape_name, metrics)
    _check_against_peers(rows, metrics)
    _check_binary_and_grid(rows, metrics)


@pytest.mark.slow
@pytest.mark.parametrize(("field_name", "shape_name", "grid_name"), _matrix_cases())
def test_matrix(field_name, shape_name, grid_name):
    _require_plastimatch()
    rows = cases.compare(field_name, shape_name, grid_name)
    metrics = cases.SHAPES[shape_name][4]
    _check_targets(rows, shape_name, metrics)
    _check_against_peers(rows, metrics)
    _check_binary_and_grid(rows, metrics)


@pytest.mark.slow
@pytest.mark.parametrize("grid_name", ("1mm", "2mm"))
def test_ramp(grid_name):
    _require_plastimatch()
    rows = cases.compare("ramp", "CTV", grid_name)
    _check_targets(rows, "CTV", cases.TARGET_METRICS)
    _check_against_peers(rows, cases.TARGET_METRICS)


def test_validation_can_fail_on_the_old_faults():
    """The suite sees the faults of issue 10: one point per 1 mm voxel in a steep field reads D90 high, and
    trilinear interpolation of a dose grid at every sample point flattens the capped hot spot (measured:
    0.19 of 0.57 cc at >= 399 Gy)."""
    truth = cases.truth("capped k/r^2", "CTV")
    structure = cases.fine_structure("CTV")
    points, volumes = structure.sample_points(float("inf"))
    one_per_voxel = DVH.from_samples(cases.capped_field(points), volumes)
    assert abs(one_per_voxel.metric("D90")[0] / truth.metric("D90")[0] - 1.0) > 0.005
    grid = cases.dose_grid("2mm")
    volume = GridDose(cases.capped_field(grid.points()), grid)
    points, volumes = structure.sample_points()
    ijk = grid.to_ijk(points)[:, ::-1].T  # the old path: trilinear interpolation at every sample point
    smoothed = DVH.from_samples(ndimage.map_coordinates(volume.dose, ijk, order=1, mode="nearest"), volumes)
    hot = "V399Gy_cc"  # the capped hot spots around the sources
    assert smoothed.metric(hot)[0] < 0.9 * truth.metric(hot)[0]
    # the rules kept: exact point dose, and a dose grid's voxels inside at their own value
    assert PointDose(cases.capped_field).dvh(structure).metric(hot)[0] == pytest.approx(truth.metric(hot)[0], rel=0.05)
    assert volume.dvh(structure).metric(hot)[0] > smoothed.metric(hot)[0]


@pytest.mark.slow
@pytest.mark.parametrize("shape_name", list(cases.SHAPES))
def test_slicer_segments_closed_surface_and_labelmap(mrml_app, shape_name):
    """Through slicer-core: segment (closed surface on a 1 mm CT, or binary labelmap on the dose grid) ->
    structure_from_segment -> exact DVH; targets and peers as in the library (a binary labelmap, which has no
    sub-voxel geometry, against voxel-centre counting on its voxels)."""
    _require_plastimatch()
    from_surface, from_labelmap = cases.slicer_structures(mrml_app.scene, shape_name, "1mm")
    rows = cases.compare("capped k/r^2", shape_name, "1mm")
    metrics = cases.SHAPES[shape_name][4]
    field = PointDose(cases.capped_field)
    rows["exact"] = {m: cases.metric(field.dvh(from_surface), m) for m in metrics}
    _check_targets(rows, shape_name, metrics)
    _check_against_peers(rows, metrics)
    # a binary labelmap at the dose grid's resolution: never further from the truth than voxel-centre counting
    rows["exact-binary"] = {m: cases.metric(field.dvh(from_labelmap), m) for m in metrics}
    _check_binary_and_grid(rows, metrics)
