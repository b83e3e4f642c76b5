"""Analytic DVH validation cases, their truth, and the peers plastimatch and dicompyler-core.

Shapes are signed distances (mm, negative inside) in RAS: a CTV sphere, a 2 mm slab, a 3 mm tube
(a nerve) and a 5 mm skin rind patch, placed a few mm from the sources where the dose falls
steeply. Fields (Gy): a sum of k/r^2 sources capped at 400 Gy, the TG-43 field of I-125 seeds at
the same positions, and a linear ramp. The truth of a (field, shape) pair is the DVH of the field
at the points of a 0.1 mm lattice inside the shape (10x finer than a 1 mm grid, 20x than 2 mm).

Methods compared (all read with the same rules, see :mod:`SeedBrachyLib.dvh`):

* "exact": the field evaluated at the structure's own sample points (:class:`PointDose`; the TG-43
  field as every plan reads it, :class:`SeedDose`: the compiled engine's (r, theta) table within 0.1 %
  of the exact formula the truth uses), the structure from a 0.125 mm mask (what a closed surface
  rasterised with oversampling 8 on a 1 mm CT gives, as :mod:`SeedBrachyLib.mrml.segmentations` does);
* "exact-binary": the same from a binary mask of voxel centres on the dose grid (a segment drawn
  at the dose grid's resolution);
* "grid": the field sampled at the dose grid's voxel centres (:class:`GridDose`), 0.125 mm mask;
* "plastimatch": ``plastimatch dvh`` on the same dose grid with a structure image of the voxel
  centres inside; its CSV is a cumulative histogram whose row at dose d is the fraction of voxels
  in bins at or above d, bins centred on the row doses (d +- w/2, found by a test on known
  voxels). Read: Dx = the highest row dose whose fraction is >= x %; Vx = the fraction at the row
  nearest to x; Dmean from the differential histogram (bin centres); Dxcc as Dx with x = v / V;
* "dicompyler": dicompyler-core ``get_dvh`` on an RT Dose (32-bit, the same voxels) and an RT
  Structure Set with the shape's cross-section on every dose plane (polygons from the signed
  distance on a 0.05 mm lattice); read with its own ``dose_constraint`` (Dx, Dxcc),
  ``volume_constraint`` (Vx), ``mean``. Axis-aligned grids only (dicompyler assumes them).

Run as a script to print every value: ``python Testing/dvh_validation_cases.py``.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import subprocess
import tempfile

import numpy as np
from scipy.spatial.transform import Rotation

from SeedBrachyLib.dvh import DVH, GridDose, PointDose, SeedDose
from SeedBrachyLib.grid import Grid
from SeedBrachyLib.seeds import Seed
from SeedBrachyLib.sources import get_model
from SeedBrachyLib.structures import structure_from_mask

TRUTH_SPACING_MM = 0.1
FINE_MASK_MM = 0.125
CAP_GY = 400.0
RX_GY = 100.0
CENTER = np.array([0.37, -0.23, 0.11])  # mm RAS, off every lattice
# six sources about 4 mm from the centre, not on any lattice (real seeds are not)
SOURCES = CENTER + np.array([[4.13, 0.27, -0.19], [-3.91, -0.33, 0.41], [0.21, 4.07, 0.36], [-0.38, -4.19, -0.23],
                             [0.29, -0.17, 3.94], [-0.12, 0.44, -4.11]])
K_GY_MM2 = 1500.0  # each capped source: 15 Gy at 10 mm
SEED_STRENGTH_U = 0.9
OBLIQUE = Rotation.from_euler("zyx", [23, -17, 31], degrees=True).as_matrix()
GRIDS = {
    "1mm": (1.0, None), "2mm": (2.0, None), "1x1x3mm": ((1.0, 1.0, 3.0), None), "oblique 1mm": (1.0, OBLIQUE),
    "oblique 2mm": (2.0, OBLIQUE),
}
TARGET_METRICS = ("D90", "D98", "V100", "V150", "Dmean")
OAR_METRICS = ("D2cc", "D1cc", "D0.1cc", "Dmean")
THIN_METRICS = ("D0.1cc", "Dmean")


# ------------------------------------------------------------------ shapes (signed distance, mm)
def _unit(v):
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def sphere(center, radius):
    return lambda p: np.linalg.norm(p - center, axis=-1) - radius


def slab(center, normal, thickness, radius):
    """A disc-shaped slab: |n.(p - c)| <= thickness / 2 and within ``radius`` of the axis."""
    n = _unit(normal)

    def sdf(p):
        d = p - center
        h = d @ n
        rho = np.linalg.norm(d - h[..., None] * n, axis=-1)
        return np.maximum(np.abs(h) - thickness / 2.0, rho - radius)
    return sdf


def tube(a, b, diameter):
    """A tube (capsule) of ``diameter`` around the segment a-b."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ab = b - a

    def sdf(p):
        t = np.clip(((p - a) @ ab) / (ab @ ab), 0.0, 1.0)
        return np.linalg.norm(p - a - t[..., None] * ab, axis=-1) - diameter / 2.0
    return sdf


def rind(body_center, outer_radius, thickness, axis, half_angle_deg):
    """The outer ``thickness`` of a spherical body, within a cone around ``axis``: a skin patch."""
    u = _unit(axis)
    half = math.radians(half_angle_deg)

    def sdf(p):
        d = p - body_center
        r = np.linalg.norm(d, axis=-1)
        angle = np.arccos(np.clip((d @ u) / np.maximum(r, 1e-12), -1.0, 1.0))
        return np.maximum.reduce([r - outer_radius, outer_radius - thickness - r, (angle - half) * r])
    return sdf


SHAPES = {  # name: (signed distance, bounding box lo, hi in mm RAS (the shape lies inside it), role, metrics)
    "CTV": (sphere(CENTER, 10.0), CENTER - 10.5, CENTER + 10.5, "target", TARGET_METRICS),
    "Slab 2mm": (slab(CENTER + [13.0, 0, 0], [1, 0.2, 0.1], 2.0, 10.0), CENTER + [9.5, -11, -11],
                 CENTER + [16.5, 11, 11], "oar", THIN_METRICS),
    "Tube 3mm": (tube(CENTER + [-13.0, -14.0, -3.0], CENTER + [-13.0, 14.0, 3.0], 3.0), CENTER + [-15, -16, -5],
                 CENTER + [-11, 16, 5], "oar", THIN_METRICS),
    "Skin rind": (rind(CENTER + [0, 0, -45.0], 60.0, 5.0, [0, 0, 1], 18.0), CENTER + [-19, -19, 6.8],
                  CENTER + [19, 19, 15.5], "oar", OAR_METRICS),
}


# ------------------------------------------------------------------ fields (Gy)
def capped_field(p):
    """Sum of k / r^2 (k = 1500 Gy mm^2, r in mm) over the six sources, capped at 400 Gy."""
    total = np.zeros(p.shape[:-1])
    for s in SOURCES:
        total += K_GY_MM2 / np.maximum(np.sum((p - s) ** 2, axis=-1), 1e-6)
    return np.minimum(total, CAP_GY)


@functools.lru_cache(maxsize=1)
def seeds():
    """Six I-125 seeds (OncoSeed 6711) at the source positions, axes along S."""
    return [Seed(position=s, axis=[0.0, 0.3, 1.0], strength_u=SEED_STRENGTH_U) for s in SOURCES]


def tg43_field(p):
    """TG-43U1 line-source dose (Gy) of :func:`seeds`, permanent implant."""
    return SeedDose(seeds(), get_model("I125_OncoSeed6711")).at(np.asarray(p).reshape(-1, 3)).reshape(p.shape[:-1])


def ramp_field(p):
    """120 Gy at the centre, 4 Gy/mm along an oblique direction."""
    return 120.0 + 4.0 * ((p - CENTER) @ _unit([0.3, -0.5, 0.8]))


FIELDS = {"capped k/r^2": capped_field, "TG-43 seeds": tg43_field, "ramp": ramp_field}


def dose_source(field_name):
    """How the DVH reads a field at the sample points: the seeds' :class:`SeedDose` for the TG-43 field (as a plan
    is evaluated), the field itself (:class:`PointDose`) otherwise."""
    if field_name == "TG-43 seeds":
        return SeedDose(seeds(), get_model("I125_OncoSeed6711"))
    return PointDose(FIELDS[field_name])


# ------------------------------------------------------------------ truth
def _lattice(lo, hi, spacing):
    n = np.ceil((np.asarray(hi) - np.asarray(lo)) / spacing).astype(int) + 1
    origin = np.asarray(lo) + 0.0123  # not aligned with any grid or source
    return Grid(origin, [spacing] * 3, np.eye(3), tuple(n))


@functools.cache
def truth(field_name, shape_name, spacing=TRUTH_SPACING_MM):
    """DVH of the field at the points of a ``spacing`` lattice inside the shape (chunked over K)."""
    sdf, lo, hi, _, _ = SHAPES[shape_name]
    lattice = _lattice(lo, hi, spacing)
    field = FIELDS[field_name]
    doses = []
    step = max(1, 4_000_000 // (lattice.dims[0] * lattice.dims[1]))
    for k0 in range(0, lattice.dims[2], step):
        pts = lattice.points((k0, min(lattice.dims[2], k0 + step))).reshape(-1, 3)
        pts = pts[sdf(pts) <= 0.0]
        if len(pts):
            doses.append(field(pts))
    d = np.concatenate(doses)
    return DVH.from_samples(d, np.full(d.size, lattice.voxel_volume_cc), shape_name)


# ------------------------------------------------------------------ structures and grids
def dose_grid(name):
    spacing, direction = GRIDS[name]
    return Grid.around(CENTER + [0.29, -0.41, 0.17], [64.0, 64.0, 64.0], spacing, direction)


@functools.cache
def fine_structure(shape_name):
    """The shape from a 0.125 mm axis-aligned mask, as a Structure on its own sampling grid."""
    sdf, lo, hi, role, _ = SHAPES[shape_name]
    g = _lattice(lo, hi, FINE_MASK_MM)
    return structure_from_mask(shape_name, sdf(g.points()) <= 0.0, g, role)


def centres_mask(shape_name, grid):
    """Voxel centres of ``grid`` inside the shape (a perfect voxel-centre rasteriser)."""
    return SHAPES[shape_name][0](grid.points()) <= 0.0


def metric(dvh, name):
    return dvh.metric(name, RX_GY)[0]


# ------------------------------------------------------------------ peers
def plastimatch_available():
    return shutil.which("plastimatch") is not None


def plastimatch_metrics(dose, grid, mask, metrics, bin_width=0.01, max_gy=1000.0):
    """Metrics read from ``plastimatch dvh`` (cumulative, bin width 0.01 Gy) by the rules in the module notes."""
    import SimpleITK as sitk

    from SeedBrachyLib.itk_image import to_sitk

    with tempfile.TemporaryDirectory() as tmp:
        sitk.WriteImage(to_sitk(np.asarray(dose, np.float32), grid), os.path.join(tmp, "dose.mha"))
        sitk.WriteImage(to_sitk(mask.astype(np.uint32), grid), os.path.join(tmp, "ss.mha"))
        with open(os.path.join(tmp, "ss.txt"), "w") as fh:
            fh.write("0|255\\0\\0|S\n")
        subprocess.run(["plastimatch", "dvh", "--input-dose", os.path.join(tmp, "dose.mha"),
                        "--input-ss-img", os.path.join(tmp, "ss.mha"), "--input-ss-list", os.path.join(tmp, "ss.txt"),
                        "--output-csv", os.path.join(tmp, "dvh.csv"), "--bin-width", str(bin_width),
                        "--num-bins", str(int(max_gy / bin_width))], check=True, capture_output=True)
        table = np.loadtxt(os.path.join(tmp, "dvh.csv"), delimiter=",", skiprows=1)
    doses, fraction = table[:, 0], table[:, 1]
    volume_cc = float(mask.sum()) * grid.voxel_volume_cc
    differential = -np.diff(np.append(fraction, 0.0))
    out = {}
    for name in metrics:
        if name == "Dmean":
            out[name] = float(np.sum(differential * doses))
        elif name.startswith("V"):
            out[name] = 100.0 * float(fraction[np.argmin(np.abs(doses - float(name[1:]) / 100.0 * RX_GY))])
        else:
            x = float(name[1:-2]) / volume_cc if name.endswith("cc") else float(name[1:]) / 100.0
            hit = np.flatnonzero(fraction >= x - 1e-12)
            out[name] = float(doses[hit[-1]]) if hit.size else 0.0
    return out


def _cross_sections(sdf, lo, hi, z, step=0.05):
    """Polygons (LPS x, y in mm) of the shape's cross-section at RAS S = z, from its signed distance."""
    import contourpy

    x = np.arange(lo[0] - 1.0, hi[0] + 1.0, step)
    y = np.arange(lo[1] - 1.0, hi[1] + 1.0, step)
    xx, yy = np.meshgrid(x, y)
    values = sdf(np.stack([xx, yy, np.full_like(xx, z)], axis=-1))
    if values.min() > 0:
        return []
    lines = contourpy.contour_generator(x, y, values).lines(0.0)
    return [np.stack([-line[:, 0], -line[:, 1]], axis=1) for line in lines if len(line) > 3]


def dicompyler_metrics(dose, grid, shape_name, metrics):
    """Metrics from dicompyler-core (RT Dose + RT Structure Set) by its own read-off functions."""
    import pydicom.dicomio
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    if not hasattr(pydicom.dicomio, "read_file"):  # dicompyler-core 0.5.6 imports the pydicom < 3 name
        pydicom.dicomio.read_file = pydicom.dcmread
    from dicompylercore import dvhcalc

    if not np.allclose(grid.direction, np.eye(3)):
        raise ValueError("dicompyler-core needs an axis-aligned grid")
    sdf, lo, hi, _, _ = SHAPES[shape_name]
    frame = generate_uid()

    def base(sop_class):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = sop_class
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, ds.file_meta.MediaStorageSOPInstanceUID
        ds.FrameOfReferenceUID = frame
        return ds

    # RAS -> LPS with the grid flipped so that LPS x, y increase with the columns and rows
    ni, nj, nk = grid.dims
    d = np.asarray(dose, float)[:, ::-1, ::-1]  # [k, j, i] with i, j reversed: LPS increasing
    ras_first = grid.to_ras([ni - 1, nj - 1, 0])
    scaling = float(d.max()) / 4.0e9
    rd = base("1.2.840.10008.5.1.4.1.1.481.2")
    rd.Modality = "RTDOSE"
    rd.ImagePositionPatient = [float(-ras_first[0]), float(-ras_first[1]), float(ras_first[2])]
    rd.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    rd.PixelSpacing = [float(grid.spacing[1]), float(grid.spacing[0])]
    rd.GridFrameOffsetVector = [float(k * grid.spacing[2]) for k in range(nk)]
    rd.Rows, rd.Columns, rd.NumberOfFrames = nj, ni, nk
    rd.SamplesPerPixel, rd.PhotometricInterpretation = 1, "MONOCHROME2"
    rd.BitsAllocated, rd.BitsStored, rd.HighBit, rd.PixelRepresentation = 32, 32, 31, 0
    rd.DoseGridScaling, rd.DoseUnits, rd.DoseType, rd.DoseSummationType = scaling, "GY", "PHYSICAL", "PLAN"
    rd.PixelData = np.rint(d / scaling).astype(np.uint32).tobytes()
    rs = base("1.2.840.10008.5.1.4.1.1.481.3")
    rs.Modality = "RTSTRUCT"
    roi = Dataset()
    roi.ROINumber, roi.ROIName = 1, shape_name
    rs.StructureSetROISequence = Sequence([roi])
    contours = []
    for k in range(nk):
        z = float(grid.to_ras([0, 0, k])[2])
        for poly in _cross_sections(sdf, lo, hi, z):
            c = Dataset()
            c.ContourGeometricType, c.NumberOfContourPoints = "CLOSED_PLANAR", len(poly)
            c.ContourData = [float(v) for v in np.column_stack([poly, np.full(len(poly), z)]).ravel()]
            contours.append(c)
    rc = Dataset()
    rc.ReferencedROINumber = 1
    rc.ContourSequence = Sequence(contours)
    rs.ROIContourSequence = Sequence([rc])
    result = dvhcalc.get_dvh(rs, rd, 1)
    out = {}
    for name in metrics:
        if name == "Dmean":
            out[name] = float(result.mean)
        elif name.startswith("V"):
            out[name] = float(result.relative_volume.volume_constraint(float(name[1:]) / 100.0 * RX_GY, "Gy").value)
        elif name.endswith("cc"):
            out[name] = float(result.dose_constraint(float(name[1:-2]), "cc").value)
        else:
            out[name] = float(result.dose_constraint(float(name[1:])).value)
    return out


# ------------------------------------------------------------------ one comparison
def compare(field_name, shape_name, grid_name, peers=True):
    """{method: {metric: value}} plus "truth" for one (field, shape, dose grid)."""
    field = FIELDS[field_name]
    metrics = SHAPES[shape_name][4]
    grid = dose_grid(grid_name)
    sampled = field(grid.points())
    centres = centres_mask(shape_name, grid)
    fine = fine_structure(shape_name)
    rows = {
        "truth": {m: metric(truth(field_name, shape_name), m) for m in metrics},
        "exact": {m: metric(dose_source(field_name).dvh(fine), m) for m in metrics},
        "exact-binary": {m: metric(dose_source(field_name).dvh(structure_from_mask(shape_name, centres, grid)), m)
                         for m in metrics},
        "grid": {m: metric(GridDose(sampled, grid).dvh(fine), m) for m in metrics},
    }
    if peers and plastimatch_available():
        rows["plastimatch"] = plastimatch_metrics(sampled, grid, centres, metrics)
    if peers and GRIDS[grid_name][1] is None:
        rows["dicompyler"] = dicompyler_metrics(sampled, grid, shape_name, metrics)
    return rows


def error(rows, method, name):
    """|method - truth| of one metric."""
    return abs(rows[method][name] - rows["truth"][name])


MATRIX = [(f, s, g) for f in ("capped k/r^2", "TG-43 seeds") for s in SHAPES
          for g in ("1mm", "2mm", "1x1x3mm", "oblique 1mm")] + [("ramp", "CTV", "1mm"), ("ramp", "CTV", "2mm")]
# closer to the truth than this counts as a tie (see Testing/test_dvh_validation.py)
TIE_DOSE_FRACTION, TIE_DOSE_GY, TIE_VOLUME_PP = 0.0025, 0.05, 0.15


def tie(rows, name):
    """The tie tolerance of a metric: percentage points for Vx, else max(0.05 Gy, 0.25 % of the truth)."""
    return TIE_VOLUME_PP if name.startswith("V") else max(TIE_DOSE_GY, TIE_DOSE_FRACTION * rows["truth"][name])


def summary(matrix=MATRIX, print_fn=print):
    """Count, over ``matrix``, the values where each method is at least as close to the truth as the better peer
    (within the tie), and print the largest relative errors of D90 (exact, grid) and the hot-spot metrics."""
    counts = {"exact": 0, "exact-binary": 0, "grid": 0}
    n = 0
    worst = {}
    for field_name, shape_name, grid_name in matrix:
        rows = compare(field_name, shape_name, grid_name)
        peers = [p for p in ("plastimatch", "dicompyler") if p in rows]
        for name in SHAPES[shape_name][4]:
            n += 1
            best = min(error(rows, p, name) for p in peers)
            for method in counts:
                ok = error(rows, method, name) <= best + tie(rows, name)
                counts[method] += ok
                if not ok:
                    print_fn(f"  {method} worse than the better peer: {field_name} | {shape_name} | {grid_name} | "
                             f"{name}: truth {rows['truth'][name]:.3f}, {method} {rows[method][name]:.3f}, "
                             + ", ".join(f"{p} {rows[p][name]:.3f}" for p in peers))
            for method in ("exact", "grid", "exact-binary", *peers):
                t = rows["truth"][name]
                e = abs(rows[method][name] - t) if name.startswith("V") else abs(rows[method][name] / t - 1.0) * 100
                key = (method, name)
                worst[key] = max(worst.get(key, 0.0), e)
    print_fn(f"{n} metric values; at least as close as the better of plastimatch and dicompyler-core: "
             + ", ".join(f"{m} {c}/{n}" for m, c in counts.items()))
    for (method, name), e in sorted(worst.items()):
        print_fn(f"  largest error {method:13s} {name:7s} {e:.3f} {'pp' if name.startswith('V') else '%'}")
    return counts, n, worst


def main():
    for field_name in FIELDS:
        for shape_name in SHAPES:
            for grid_name in GRIDS:
                rows = compare(field_name, shape_name, grid_name)
                print(f"\n{field_name} | {shape_name} ({truth(field_name, shape_name).volume_cc:.2f} cc) | {grid_name}")
                for method, values in rows.items():
                    print(f"  {method:13s}" + "".join(f" {m}={v:9.3f}" for m, v in values.items()))
    print()
    summary()


if __name__ == "__main__":
    main()


# ------------------------------------------------------------------ the Slicer path (slicer-core)
def closed_surface(shape_name, spacing=0.25):
    """vtkPolyData of the shape: Slicer-style closed surface (flying edges on its signed distance, 0.25 mm)."""
    import vtk
    from vtk.util import numpy_support

    sdf, lo, hi, _, _ = SHAPES[shape_name]
    g = _lattice(np.asarray(lo) - 1.0, np.asarray(hi) + 1.0, spacing)
    image = vtk.vtkImageData()
    image.SetDimensions(*g.dims)
    image.SetSpacing(*g.spacing)
    image.SetOrigin(*g.origin)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(sdf(g.points()).ravel().astype(np.float32), deep=1))
    surface = vtk.vtkFlyingEdges3D()
    surface.SetInputData(image)
    surface.SetValue(0, 0.0)
    surface.ComputeNormalsOff()
    surface.Update()
    return surface.GetOutput()


def slicer_structures(scene, shape_name, dose_grid_name, ct_spacing=1.0):
    """The shape as Slicer segments -> Structures: (from its closed surface on a CT, from a binary labelmap).

    Closed surface: a segmentation whose source is the surface, reference geometry an axis-aligned
    CT of ``ct_spacing`` mm; read by :func:`SeedBrachyLib.mrml.segmentations.structure_from_segment`
    (rasterised by Slicer with oversampling). Binary labelmap: the voxel centres inside on the dose
    grid, added as a labelmap segment, read the same way.
    """
    from SeedBrachyLib.mrml import segmentations, volumes

    _, lo, hi, role, _ = SHAPES[shape_name]
    ct = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT")
    ct_grid = _lattice(np.asarray(lo) - 3.0, np.asarray(hi) + 3.0, ct_spacing)
    volumes.update_volume_node(ct, np.zeros(ct_grid.shape, np.int16), ct_grid)
    surface_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "RTSTRUCT")
    surface_node.SetReferenceImageGeometryParameterFromVolumeNode(ct)
    surface_node.GetSegmentation().SetSourceRepresentationName("Closed surface")
    sid = surface_node.AddSegmentFromClosedSurfaceRepresentation(closed_surface(shape_name), shape_name, (0, 1, 0))
    from_surface = segmentations.structure_from_segment(surface_node, sid, role=role)
    labelmap_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Labelmap")
    grid = dose_grid(dose_grid_name)
    lid = segmentations.add_mask_segment(labelmap_node, centres_mask(shape_name, grid), grid, shape_name)
    return from_surface, segmentations.structure_from_segment(labelmap_node, lid, role=role)
