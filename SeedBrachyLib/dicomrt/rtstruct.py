"""RT Structure Set: fractional masks on a CT grid <-> planar contours.

* :func:`write_rtstruct` -- ROIs given as fractional masks ``[k, j, i]`` (0..1, or boolean) on the CT grid
  become CLOSED_PLANAR contours on the CT slices (the 0.5 level, marching squares; holes as their own
  contours), each referencing its slice's SOP Instance UID, the CT series and its frame of reference.
* :func:`contour_points` -- the points of every closed planar contour (mm RAS), e.g. to build a grid for them.
* :func:`read_rtstruct` -- the ROIs of an RT Structure Set on a grid (normally the CT's) as
  :class:`Roi` objects: ``fraction`` float32 ``[k, j, i]``, the part of each voxel inside the ROI's
  contours on that voxel's slice (even-odd rule over all contours of the slice, so holes and several
  contours per slice are honoured), sampled at n x n sub-points per voxel (default 9 x 9). Contours
  must be planar and parallel to the grid's slices; each is assigned to the nearest slice. ``fine`` keeps
  the sub-voxel geometry for the DVH: the contours filled on a grid finer in the slice plane
  (:func:`fine_mask`); ``Structure(name, roi.fraction, grid, role, source=roi.fine)``
  (``SeedBrachyLib.structures``) carries both, and ``structure_from_mask(name, *roi.fine, role)`` is the
  structure on its own geometry for the DVH from seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian, RTStructureSetStorage

from ..errors import InputError
from ..grid import Grid
from ..progress import report
from .contours import fill_fraction, mask_contours
from .dataset import (
    ds_array,
    integer,
    new_dataset,
    numbers,
    read_object,
    save,
    sequence,
    sequence_of,
    set_ds_array,
    text,
    uid,
)
from .geometry import lps_to_ras, ras_to_lps

#: RT ROI Interpreted Types (DICOM PS3.3 C.8.8.8) accepted on export.
INTERPRETED_TYPES = ("EXTERNAL", "PTV", "CTV", "GTV", "TREATED_VOLUME", "IRRAD_VOLUME", "BOLUS", "AVOIDANCE",
                     "ORGAN", "MARKER", "REGISTRATION", "ISOCENTER", "CONTRAST_AGENT", "CAVITY",
                     "BRACHY_CHANNEL", "BRACHY_ACCESSORY", "BRACHY_SRC_APP", "BRACHY_CHNL_SHLD", "SUPPORT",
                     "FIXATION", "DOSE_REGION", "CONTROL", "")
#: In-plane pixel size (mm, at most) of an ROI's fine mask, and its limits: at most FINE_MAX_FACTOR fine pixels per
#: voxel side and FINE_MAX_VOXELS fine voxels per ROI (a larger ROI, e.g. the body outline, gets a coarser one or
#: none when a fine pixel would be a whole voxel).
FINE_PIXEL_MM = 0.25
FINE_MAX_FACTOR = 8
FINE_MAX_VOXELS = 1 << 24
#: Largest distance (in slices) of a contour's points from its mean plane.
PLANARITY_TOLERANCE = 0.02
#: Largest value length (bytes) of an element in Explicit VR (16-bit length field).
MAX_SHORT_LENGTH = 0xFFFE
DETACHED_STUDY_MANAGEMENT = "1.2.840.10008.3.1.2.3.1"
DEFAULT_COLORS = ((230, 60, 60), (60, 160, 230), (250, 200, 40), (120, 200, 90), (200, 100, 220), (240, 140, 60),
                  (90, 210, 210), (180, 180, 180))


@dataclass
class Roi:
    """One region of interest on a grid.

    Attributes:
        name: ROI name.
        fraction: float32 ``[k, j, i]`` on the grid, the part (0..1) of each voxel inside.
        color: (r, g, b) 0..255 or None.
        interpreted_type: RT ROI Interpreted Type ("GTV", "CTV", "ORGAN", "EXTERNAL", ... or "").
        number: ROI Number in the file (None: assigned on export).
        notes: what the reader noticed (contours off the grid, skipped point contours, ...).
        fine: ``(mask, fine grid)`` from the reader (:func:`fine_mask`), or None: the contours' sub-voxel geometry.
    """

    name: str
    fraction: np.ndarray
    color: tuple = None
    interpreted_type: str = ""
    number: int = None
    notes: list = field(default_factory=list)
    fine: tuple = None


def write_rtstruct(path, rois, grid, series, label="SeedBrachy", overwrite=False, progress=None):
    """Write ``rois`` (list of :class:`Roi` on ``grid``) as an RT Structure Set on the CT ``series``; return it.

    ``grid`` must be the CT series' grid (one slice per SOP Instance UID in ``series.sop_instance_uids``);
    contour points are written in LPS mm. ROI numbers are 1, 2, ... unless given.
    """
    if len(series.sop_instance_uids) != grid.dims[2]:
        raise InputError(f"the CT series has {len(series.sop_instance_uids)} slices but the grid {grid.describe()} "
                         f"has {grid.dims[2]}: contours must be written on the CT's own grid")
    if not rois:
        raise InputError("no ROIs given: an RT Structure Set needs at least one")
    study = series.study
    ds = new_dataset(RTStructureSetStorage, "RTSTRUCT", study, "SeedBrachy structures")
    ds.OperatorsName = ""
    ds.StructureSetLabel = label[:16]
    ds.StructureSetName = label[:64]
    ds.StructureSetDate, ds.StructureSetTime = ds.SeriesDate, ds.SeriesTime
    ds.ReferencedFrameOfReferenceSequence = sequence_of([_frame_reference(series)])
    rois_seq, contours_seq, observations = [], [], []
    numbers_used, long_values = set(), [False]
    for n, roi in enumerate(rois):
        fraction = _fraction_on(roi, grid)
        number = int(roi.number) if roi.number is not None else max(numbers_used | {0}) + 1
        if number in numbers_used or number < 1:
            raise InputError(f"ROI '{roi.name}' number {number} is used twice or < 1")
        numbers_used.add(number)
        if roi.interpreted_type not in INTERPRETED_TYPES:
            raise InputError(f"ROI '{roi.name}' type {roi.interpreted_type!r} invalid: use one of {INTERPRETED_TYPES}")
        item = Dataset()
        item.ROINumber = number
        item.ReferencedFrameOfReferenceUID = study.frame_of_reference_uid
        item.ROIName = roi.name[:64]
        item.ROIGenerationAlgorithm = "SEMIAUTOMATIC"
        rois_seq.append(item)
        contour_item = Dataset()
        contour_item.ReferencedROINumber = number
        contour_item.ROIDisplayColor = list(roi.color or DEFAULT_COLORS[n % len(DEFAULT_COLORS)])
        contour_item.ContourSequence = sequence_of(_contours(fraction, grid, series, long_values))
        if not contour_item.ContourSequence:
            raise InputError(f"ROI '{roi.name}' has no voxel at >= 0.5 inside: nothing to contour")
        contours_seq.append(contour_item)
        obs = Dataset()
        obs.ObservationNumber = number
        obs.ReferencedROINumber = number
        obs.RTROIInterpretedType = roi.interpreted_type
        obs.ROIInterpreter = ""
        observations.append(obs)
        report(progress, (n + 1) / len(rois), f"contouring {roi.name}")
    ds.StructureSetROISequence = sequence_of(rois_seq)
    ds.ROIContourSequence = sequence_of(contours_seq)
    ds.RTROIObservationsSequence = sequence_of(observations)
    ds.ApprovalStatus = "UNAPPROVED"
    if long_values[0]:  # a contour's text over 64 kB has no 16-bit length: use a 32-bit-length syntax
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    save(ds, path, overwrite)
    return ds


def _fraction_on(roi, grid):
    fraction = np.asarray(roi.fraction, dtype=np.float32)
    if fraction.shape != tuple(grid.shape):
        raise InputError(f"ROI '{roi.name}' mask shape {fraction.shape} does not match the grid shape "
                         f"{tuple(grid.shape)} ([k, j, i])")
    if not np.all(np.isfinite(fraction)) or fraction.min() < 0 or fraction.max() > 1:
        raise InputError(f"ROI '{roi.name}' mask values must be fractions in [0, 1]")
    return fraction


def _frame_reference(series):
    images = []
    for sop in series.sop_instance_uids:
        image = Dataset()
        image.ReferencedSOPClassUID = series.sop_class_uid
        image.ReferencedSOPInstanceUID = sop
        images.append(image)
    ref_series = Dataset()
    ref_series.SeriesInstanceUID = series.series_instance_uid
    ref_series.ContourImageSequence = sequence_of(images)
    ref_study = Dataset()
    ref_study.ReferencedSOPClassUID = DETACHED_STUDY_MANAGEMENT
    ref_study.ReferencedSOPInstanceUID = series.study.study_instance_uid
    ref_study.RTReferencedSeriesSequence = sequence_of([ref_series])
    frame = Dataset()
    frame.FrameOfReferenceUID = series.study.frame_of_reference_uid
    frame.RTReferencedStudySequence = sequence_of([ref_study])
    return frame


def _contours(fraction, grid, series, long_values):
    items = []
    for k in range(grid.dims[2]):
        if not np.any(fraction[k] > 0.5):
            continue
        for polygon in mask_contours(fraction[k]):
            ijk = np.column_stack([polygon, np.full(len(polygon), float(k))])
            lps = ras_to_lps(grid.to_ras(ijk))
            item = Dataset()
            image = Dataset()
            image.ReferencedSOPClassUID = series.sop_class_uid
            image.ReferencedSOPInstanceUID = series.sop_instance_uids[k]
            item.ContourImageSequence = sequence_of([image])
            item.ContourGeometricType = "CLOSED_PLANAR"
            item.NumberOfContourPoints = len(lps)
            item.ContourNumber = len(items) + 1
            if set_ds_array(item, "ContourData", lps) > MAX_SHORT_LENGTH:
                long_values[0] = True
            items.append(item)
    return items


# ----------------------------------------------------------------------------- reading
def read_rtstruct(path, grid, frame_of_reference_uid=None, supersampling=9, names=None, progress=None):
    """The ROIs of the RT Structure Set ``path`` on ``grid`` (RAS) as a list of :class:`Roi`.

    ``frame_of_reference_uid`` (the CT's): if given, every ROI must be in that frame. ``names``: only
    those ROIs (all if None). ``supersampling``: sub-points per voxel side in the slice plane.
    ROIs without closed planar contours (points, open contours) are skipped and listed in the
    ``notes`` of the result's first ROI; an ROI whose contours all miss the grid is an InputError.
    """
    ds, where = read_object(path, "RT Structure Set", "RTSTRUCT", RTStructureSetStorage)
    rois = {}
    for item in sequence(ds, "StructureSetROISequence", where):
        number = integer(item, "ROINumber", f"{where}: StructureSetROISequence")
        name = text(item, "ROIName", f"{where}: ROI {number}", required=False) or f"ROI {number}"
        frame = uid(item, "ReferencedFrameOfReferenceUID", f"{where}: ROI '{name}'")
        if frame_of_reference_uid is not None and frame != frame_of_reference_uid:
            raise InputError(f"{where}: ROI '{name}' is in frame of reference {frame}, not the CT's "
                             f"{frame_of_reference_uid}: register the images first")
        if number in rois:
            raise InputError(f"{where}: ROI number {number} appears twice")
        rois[number] = Roi(name, None, number=number)
    for obs in sequence(ds, "RTROIObservationsSequence", where, required=False):
        number = integer(obs, "ReferencedROINumber", f"{where}: RTROIObservationsSequence", required=False)
        if number in rois:
            rois[number].interpreted_type = text(obs, "RTROIInterpretedType", where, required=False)
    wanted = None if names is None else set(names)
    skipped, out = [], []
    contour_items = sequence(ds, "ROIContourSequence", where)
    for n, item in enumerate(contour_items):
        number = integer(item, "ReferencedROINumber", f"{where}: ROIContourSequence")
        if number not in rois:
            raise InputError(f"{where}: ROIContourSequence refers to ROI {number}, which StructureSetROISequence "
                             "does not define")
        roi = rois[number]
        if wanted is not None and roi.name not in wanted:
            continue
        color = numbers(item, "ROIDisplayColor", f"{where}: ROI '{roi.name}'", 3, required=False, minimum=0,
                        maximum=255)
        roi.color = None if color is None else tuple(int(c) for c in color)
        planes = _planes(item, roi, grid, where)
        if planes is None:
            skipped.append(roi.name)
        else:
            roi.fraction = _rasterise(planes, roi, grid, supersampling, where)
            roi.fine = fine_mask(planes, grid)
            out.append(roi)
        report(progress, (n + 1) / len(contour_items), f"filling {roi.name}")
    if wanted is not None and wanted - {r.name for r in out} - set(skipped):
        raise InputError(f"{where}: ROIs {sorted(wanted - {r.name for r in out})} not found; the file has "
                         f"{sorted(r.name for r in rois.values())}")
    if skipped and out:
        out[0].notes.append(f"skipped ROIs without closed planar contours: {', '.join(skipped)}")
    return out


def contour_points(path):
    """The points (mm RAS, ``(n, 3)`` arrays) of every closed planar contour of the RT Structure Set ``path``."""
    ds, where = read_object(path, "RT Structure Set", "RTSTRUCT", RTStructureSetStorage)
    return [ras for n, item in enumerate(sequence(ds, "ROIContourSequence", where))
            for _, ras in _closed_contours(item, f"{where}: ROIContourSequence item {n + 1}", [0])]


def _closed_contours(item, where, other):
    """(name for messages, points mm RAS ``(n, 3)``) of each closed planar contour of a ROIContourSequence item;
    ``other[0]`` counts the point and open contours passed over."""
    for c, contour in enumerate(sequence(item, "ContourSequence", where, required=False)):
        here = f"{where} contour {c + 1}"
        kind = text(contour, "ContourGeometricType", here, allowed={"POINT", "OPEN_PLANAR", "OPEN_NONPLANAR",
                                                                   "CLOSED_PLANAR", "CLOSEDPLANAR_XOR"})
        if kind not in ("CLOSED_PLANAR", "CLOSEDPLANAR_XOR"):
            other[0] += 1
            continue
        data = ds_array(contour, "ContourData", here, minimum=-1e6, maximum=1e6)
        count = integer(contour, "NumberOfContourPoints", here, required=False, default=len(data) // 3)
        if len(data) % 3 or count != len(data) // 3 or count < 3:
            raise InputError(f"{here}: ContourData has {len(data)} values for NumberOfContourPoints {count}: "
                             "need 3 values (x, y, z mm) per point and at least 3 points")
        yield here, lps_to_ras(np.reshape(data, (-1, 3)))


def _planes(item, roi, grid, where):
    """{slice k: [(m, 2) polygons in (i, j) voxel coordinates]} of the ROI's closed contours, or None if it has none."""
    where = f"{where}: ROI '{roi.name}'"
    planes, other, outside = {}, [0], 0
    for here, ras in _closed_contours(item, where, other):
        ijk = grid.to_ijk(ras)
        if np.ptp(ijk[:, 2]) > PLANARITY_TOLERANCE:
            raise InputError(f"{here}: points span {np.ptp(ijk[:, 2]) * grid.spacing[2]:.3f} mm across the slices: "
                             "contours must be planar and parallel to the image slices")
        k = int(np.rint(ijk[:, 2].mean()))
        if not 0 <= k < grid.dims[2]:
            outside += 1
            continue
        planes.setdefault(k, []).append(ijk[:, :2])
    if not planes:
        if outside:
            raise InputError(f"{where}: all {outside} contours lie outside the grid's slices ({grid.describe()})")
        return None
    if outside:
        roi.notes.append(f"'{roi.name}': {outside} contours lie outside the grid's slices and were left out")
    if other[0]:
        roi.notes.append(f"'{roi.name}': {other[0]} point or open contours ignored")
    return planes


def _rasterise(planes, roi, grid, n, where):
    """Fraction of each voxel inside the ROI's contours (``planes`` from :func:`_planes`), n x n sub-points each."""
    fraction = np.zeros(grid.shape, dtype=np.float32)
    for k, polygons in planes.items():
        fraction[k] = fill_fraction(polygons, grid.shape[1:], n)
    if not np.any(fraction):
        raise InputError(f"{where}: ROI '{roi.name}': its contours cover no voxel of the grid ({grid.describe()})")
    return fraction


def fine_mask(planes, grid, pixel_mm=FINE_PIXEL_MM):
    """``(mask, fine grid)``: the contours (``planes``: slice k -> polygons in (i, j) voxel coordinates of ``grid``)
    filled at the centres of pixels f times finer than ``grid``'s in the slice plane (f = ceil(in-plane spacing /
    ``pixel_mm``), at most FINE_MAX_FACTOR), on the ROI's slices (each contour stands for its slice's thickness),
    cropped to the ROI with a voxel's margin. None when f would be 1, the mask would exceed FINE_MAX_VOXELS or no fine
    pixel centre lies inside."""
    f = int(min(FINE_MAX_FACTOR, np.ceil(float(np.max(grid.spacing[:2])) / pixel_mm - 1e-9)))
    ks = sorted(planes)
    points = np.concatenate([p for k in ks for p in planes[k]])
    lo = np.maximum(np.floor(points.min(axis=0)) - 1, 0).astype(int)
    hi = np.minimum(np.ceil(points.max(axis=0)) + 1, np.asarray(grid.dims[:2]) - 1).astype(int)
    shape = (ks[-1] - ks[0] + 1, f * (hi[1] - lo[1] + 1), f * (hi[0] - lo[0] + 1))
    while f > 1 and np.prod(shape, dtype=np.int64) > FINE_MAX_VOXELS:
        f -= 1
        shape = (shape[0], f * (hi[1] - lo[1] + 1), f * (hi[0] - lo[0] + 1))
    if f == 1:
        return None
    first = lo - 0.5 + 0.5 / f  # centre of fine pixel 0 in grid voxel coordinates (i, j)
    mask = np.zeros(shape, dtype=bool)
    for k in ks:
        mask[k - ks[0]] = fill_fraction([(p - first) * f for p in planes[k]], shape[1:], 1) > 0.5
    origin = grid.to_ras([first[0], first[1], ks[0]])
    spacing = np.asarray(grid.spacing, float) / np.array([f, f, 1.0])
    return (mask, Grid(origin, spacing, grid.direction, shape[::-1])) if mask.any() else None
