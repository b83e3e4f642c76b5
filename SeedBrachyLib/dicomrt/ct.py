"""CT image series: read a folder into HU on a Grid, write a volume as a CT series.

* :func:`read_ct_series` -- the CT series in a folder (or a list of files) as (HU array ``[k, j, i]``,
  RAS :class:`~SeedBrachyLib.grid.Grid`, :class:`ImageSeries`). Slices are sorted by their position along
  the slice normal (Image Position (Patient) projected on Image Orientation's row x column), not by
  file name; an oblique orientation is kept in the grid's direction. Refused with a clear message:
  no image series, several image series (choose one with ``series_uid``), a non-CT modality, enhanced
  multi-frame CT, slices of different size, orientation or pixel spacing, two slices at one position,
  missing slices, uneven spacing, a tilted (sheared) stack, undecodable pixel data.
* :func:`read_ct_headers` -- the same from the headers only: (Grid, ImageSeries), no pixel data read.
* :func:`write_ct_series` -- HU ``[k, j, i]`` on a Grid as single-frame CT Image Storage files
  (signed 16-bit, 1 HU steps), one per slice, returning the :class:`ImageSeries` (SOP Instance UIDs
  in slice order) that an RT Structure Set references.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.uid import CTImageStorage

from ..errors import InputError
from ..progress import report
from .dataset import (
    Study,
    has_dicom_header,
    integer,
    new_dataset,
    number,
    numbers,
    read_dataset,
    save,
    text,
    uid,
    value,
)
from .geometry import grid_from_planes, orientation, set_image_plane, slice_positions_lps

ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
#: Modalities of objects that may share a folder with a CT series and are not images of it.
NON_IMAGE_MODALITIES = {"RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "SR", "PR", "KO", "REG", "SEG", "DOC"}
#: Slice spacing tolerance: relative to the median spacing, and absolute (mm).
SPACING_TOLERANCE = (0.01, 0.01)
#: Largest in-plane shift between neighbouring slices (mm, per mm of slice spacing) before the stack counts as tilted.
TILT_TOLERANCE = 1e-3
MAX_VOXELS = 1 << 30
#: Smallest CT Rescale Slope accepted (HU per stored unit); a CT slope is positive, normally 1.
MIN_SLOPE = 1e-3


@dataclass(frozen=True)
class ImageSeries:
    """A CT series as stored: its study, series UID, and one SOP Instance UID per slice (slice order k).

    ``notes`` lists what the reader noticed and accepted (skipped files, duplicate instances).
    ``slice_thickness_mm``: the reconstructed slice thickness of the header (mm, SliceThickness, the median
    over the slices), None when the header does not give it; it may exceed the slice increment (overlapping
    or interpolated series), which the grid's K spacing is.
    """

    study: Study
    series_instance_uid: str
    sop_class_uid: str
    sop_instance_uids: tuple
    modality: str = "CT"
    description: str = ""
    files: tuple = ()
    notes: tuple = field(default=(), compare=False)
    slice_thickness_mm: float | None = field(default=None, compare=False)


def _files_of(source):
    if isinstance(source, (str, Path)):
        folder = Path(source)
        if not folder.is_dir():
            raise InputError(f"CT folder {str(folder)!r} does not exist or is not a folder")
        return sorted(p for p in folder.iterdir() if p.is_file())
    return [Path(p) for p in source]


def read_ct_series(source, series_uid=None, progress=None):
    """The CT series in folder ``source`` (or a list of files) as (HU ``[k, j, i]``, RAS Grid, ImageSeries).

    HU is int16 when every slice's rescale gives whole HU in range, else float32 (Hounsfield units).
    ``series_uid`` picks one series when the folder holds several image series.
    """
    items, notes = _series_items(source, series_uid, progress)
    return _stack(items, notes, progress)


def read_ct_headers(source, series_uid=None):
    """(RAS Grid, ImageSeries) of the CT series in ``source`` from the headers alone (no pixel data read).

    The same checks as :func:`read_ct_series`; for linking a volume loaded elsewhere (e.g. by Slicer's DICOM
    browser) to the series it came from.
    """
    items, notes = _series_items(source, series_uid, None)
    return _stack(items, notes, None, pixels=False)[1:]


def _series_items(source, series_uid, progress):
    """([(path, header dataset)] of the one image series chosen in ``source``, notes)."""
    files = _files_of(source)
    notes, series, others = [], {}, []
    skipped = [p for p in files if not has_dicom_header(p)]
    if skipped:
        notes.append(f"skipped {len(skipped)} files without a DICOM header ({', '.join(p.name for p in skipped[:3])}"
                     f"{', ...' if len(skipped) > 3 else ''})")
    for n, path in enumerate(p for p in files if p not in skipped):
        ds = read_dataset(path, "CT slice", stop_before_pixels=True)
        where = f"{path.name}"
        modality = text(ds, "Modality", where, required=False)
        if modality in NON_IMAGE_MODALITIES or "Rows" not in ds:
            others.append(f"{path.name} ({modality or 'no modality'})")
            continue
        series.setdefault(uid(ds, "SeriesInstanceUID", where), []).append((path, ds))
        report(progress, 0.3 * (n + 1) / max(len(files), 1), "reading CT headers")
    if others:
        more = ", ..." if len(others) > 3 else ""
        notes.append(f"ignored {len(others)} non-image objects: {', '.join(others[:3])}{more}")
    if not series:
        raise InputError(f"no image series found in {len(files)} files of {str(source)!r}")
    if series_uid is None and len(series) > 1:
        listing = "; ".join(f"{u} ({text(s[0][1], 'Modality', u, required=False)}, {len(s)} files, "
                            f"'{text(s[0][1], 'SeriesDescription', u, required=False)}')" for u, s in series.items())
        raise InputError(f"{len(series)} image series in {str(source)!r}: choose one with series_uid: {listing}")
    chosen = series_uid or next(iter(series))
    if chosen not in series:
        raise InputError(f"series {chosen!r} not found; the folder holds: {', '.join(series)}")
    return series[chosen], notes


def _slice_header(ds, where):
    modality = text(ds, "Modality", where)
    if modality != "CT":
        raise InputError(f"{where}: modality {modality!r} is not CT: SeedBrachy plans on a CT series")
    sop_class = uid(ds, "SOPClassUID", where)
    if sop_class == ENHANCED_CT:
        raise InputError(f"{where}: enhanced multi-frame CT is not supported: export the series as single-frame "
                         "CT Image Storage slices")
    if sop_class != CTImageStorage:
        raise InputError(f"{where}: SOP class {sop_class} is not CT Image Storage ({CTImageStorage})")
    if integer(ds, "NumberOfFrames", where, required=False, default=1) != 1:
        raise InputError(f"{where}: a CT slice must hold one frame")
    if integer(ds, "SamplesPerPixel", where, minimum=1) != 1:
        raise InputError(f"{where}: SamplesPerPixel must be 1 (greyscale CT)")
    text(ds, "PhotometricInterpretation", where, allowed={"MONOCHROME1", "MONOCHROME2"})
    return {
        "size": (integer(ds, "Columns", where, minimum=1, maximum=65535), integer(ds, "Rows", where, minimum=1,
                                                                                   maximum=65535)),
        "iop": numbers(ds, "ImageOrientationPatient", where, 6, minimum=-1.0001, maximum=1.0001),
        "spacing": numbers(ds, "PixelSpacing", where, 2, minimum=1e-6, maximum=1e4),
        "ipp": np.array(numbers(ds, "ImagePositionPatient", where, 3, minimum=-1e6, maximum=1e6)),
        "sop": uid(ds, "SOPInstanceUID", where),
        "slope": number(ds, "RescaleSlope", where, False, 1.0, MIN_SLOPE, 1.0 / MIN_SLOPE),
        "intercept": number(ds, "RescaleIntercept", where, False, 0.0, -1e5, 1e5),
        "thickness": number(ds, "SliceThickness", where, False, None, 0.0, 1e4),
        "tilt": number(ds, "GantryDetectorTilt", where, False, 0.0),
    }


def _stack(items, notes, progress, pixels=True):
    headers, seen = [], {}
    for path, ds in items:
        h = _slice_header(ds, path.name)
        if h["sop"] in seen:
            notes.append(f"{path.name} repeats SOP instance {h['sop']} of {seen[h['sop']].name}: ignored")
            continue
        seen[h["sop"]] = path
        headers.append((path, ds, h))
    ref_path, ref_ds, ref = headers[0]
    for path, _, h in headers[1:]:
        for key, name in (("size", "columns x rows"), ("spacing", "PixelSpacing")):
            if not np.allclose(h[key], ref[key], rtol=1e-5, atol=1e-6):
                raise InputError(f"{path.name}: {name} {list(h[key])} differs from {ref_path.name}'s {list(ref[key])}:"
                                 " mixed series")
        if not np.allclose(h["iop"], ref["iop"], atol=1e-4):
            raise InputError(f"{path.name}: ImageOrientationPatient {h['iop']} differs from {ref_path.name}'s "
                             f"{ref['iop']}: all slices of a series must share one orientation")
    _, _, normal = orientation(ref["iop"], ref_path.name)
    order = np.argsort([h["ipp"] @ normal for _, _, h in headers], kind="stable")
    headers = [headers[n] for n in order]
    positions = np.array([h["ipp"] for _, _, h in headers])
    spacing = _slice_spacing(positions, normal, [p.name for p, _, _ in headers], ref)
    n_i, n_j = ref["size"]
    if n_i * n_j * len(headers) > MAX_VOXELS:
        raise InputError(f"CT series of {n_i}x{n_j}x{len(headers)} voxels exceeds {MAX_VOXELS} voxels")
    grid = grid_from_planes(ref["iop"], ref["spacing"], positions[0], spacing, (n_i, n_j, len(headers)),
                            ref_path.name)
    hu = _pixels(headers, progress) if pixels else None
    study = Study.of(ref_ds, ref_path.name)
    series = ImageSeries(study, uid(ref_ds, "SeriesInstanceUID", ref_path.name), CTImageStorage,
                         tuple(h["sop"] for _, _, h in headers), "CT",
                         text(ref_ds, "SeriesDescription", ref_path.name, required=False),
                         tuple(str(p) for p, _, _ in headers), tuple(notes), _thickness(headers))
    return hu, grid, series


def _thickness(headers):
    """Median SliceThickness (mm) of the slices that give one > 0, else None."""
    given = [h["thickness"] for _, _, h in headers if h["thickness"]]
    return float(np.median(given)) if given else None


def _slice_spacing(positions, normal, names, ref):
    if len(positions) == 1:
        if not ref["thickness"]:
            raise InputError(f"{names[0]}: a single-slice series needs SliceThickness > 0 for its slice spacing")
        return float(ref["thickness"])
    steps = positions[1:] - positions[:-1]
    along = steps @ normal
    for n, dz in enumerate(along):
        if dz < SPACING_TOLERANCE[1]:
            raise InputError(f"{names[n]} and {names[n + 1]} lie at the same position {along[n]:.3f} mm along the "
                             "slice normal: two slices at one position (mixed or duplicated series)")
    lateral = np.linalg.norm(steps - along[:, None] * normal, axis=1)
    worst = int(np.argmax(lateral / along))
    if lateral[worst] > TILT_TOLERANCE * along[worst] + 1e-3:
        angle = np.degrees(np.arctan2(lateral[worst], along[worst]))
        raise InputError(f"slices {names[worst]} -> {names[worst + 1]} are offset {lateral[worst]:.3f} mm sideways "
                         f"for {along[worst]:.3f} mm along the normal: gantry tilt of {angle:.2f} deg "
                         f"(GantryDetectorTilt {ref['tilt']:g}); resample the series to an untilted volume first")
    median = float(np.median(along))
    tolerance = max(SPACING_TOLERANCE[0] * median, SPACING_TOLERANCE[1])
    for n, dz in enumerate(along):
        if abs(dz - median) > tolerance:
            ratio = dz / median
            if ratio > 1.5 and abs(ratio - round(ratio)) * median <= tolerance:
                raise InputError(f"{round(ratio) - 1} missing slice(s) between {names[n]} and {names[n + 1]} "
                                 f"({dz:.3f} mm apart; the series spacing is {median:.3f} mm)")
            raise InputError(f"uneven slice spacing: {names[n]} -> {names[n + 1]} is {dz:.3f} mm, the series "
                             f"spacing is {median:.3f} mm (tolerance {tolerance:.3f} mm); resample it first")
    return float(np.mean(along))


def _pixels(headers, progress):
    n_i, n_j = headers[0][2]["size"]
    slices, exact = [], True
    for k, (path, _, h) in enumerate(headers):
        ds = read_dataset(path, "CT slice")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _check_pixel_length(ds, path.name)
                raw = ds.pixel_array
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - decoders raise many types on damaged or unsupported data
            raise InputError(f"{path.name}: pixel data cannot be decoded ({type(exc).__name__}: {str(exc)[:120]})") \
                from None
        if raw.shape != (n_j, n_i):
            raise InputError(f"{path.name}: pixel array {raw.shape} does not match Rows x Columns {(n_j, n_i)}")
        values = raw.astype(np.float64) * h["slope"] + h["intercept"]
        exact &= bool(np.all(values == np.rint(values)) and values.min() >= -32768 and values.max() <= 32767)
        slices.append(values.astype(np.float32))
        report(progress, 0.3 + 0.7 * (k + 1) / len(headers), "reading CT pixels")
    hu = np.stack(slices)
    return hu.astype(np.int16) if exact else hu


def _check_pixel_length(ds, where):
    pixel_data = value(ds, "PixelData", where)
    bits = integer(ds, "BitsAllocated", where, minimum=1, maximum=64)
    if bits not in (8, 16, 32):
        raise InputError(f"{where}: BitsAllocated {bits} invalid for CT: 8, 16 or 32 expected")
    stored = integer(ds, "BitsStored", where, minimum=1, maximum=bits)
    integer(ds, "HighBit", where, minimum=stored - 1, maximum=bits - 1)
    integer(ds, "PixelRepresentation", where, minimum=0, maximum=1)
    if not ds.file_meta.TransferSyntaxUID.is_compressed:
        need = integer(ds, "Rows", where) * integer(ds, "Columns", where) * bits // 8
        if not need <= len(pixel_data) <= need + 1:  # one pad byte at most
            raise InputError(f"{where}: PixelData holds {len(pixel_data)} bytes, but Rows x Columns x BitsAllocated "
                             f"make {need}")


def write_ct_series(folder, hu, grid, study=None, description="SeedBrachy CT", overwrite=False, progress=None):
    """Write HU ``[k, j, i]`` on ``grid`` (RAS) as CT slices ``CT_0001.dcm``... in ``folder``; return the ImageSeries.

    Values are rounded to whole HU and clipped to signed 16 bits. ``study`` (:class:`Study`) gives the
    patient, study and frame of reference (a new one if None). Existing files are kept unless ``overwrite``.
    """
    hu = np.asarray(hu)
    if hu.shape != tuple(grid.shape):
        raise InputError(f"CT array shape {hu.shape} does not match the grid shape {tuple(grid.shape)} ([k, j, i])")
    if not np.all(np.isfinite(hu)):
        raise InputError("CT values must be finite (HU)")
    folder = Path(folder)
    paths = [folder / f"CT_{k + 1:04d}.dcm" for k in range(grid.dims[2])]
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        raise InputError(f"{str(existing[0])!r} exists: choose a new folder or pass overwrite=True")
    study = study or Study()
    positions = slice_positions_lps(grid)
    series_uid, uids = None, []
    pixels = np.clip(np.rint(hu), -32768, 32767).astype("<i2")
    for k, path in enumerate(paths):
        ds = new_dataset(CTImageStorage, "CT", study, description, series_uid)
        series_uid = ds.SeriesInstanceUID
        ds.PatientPosition = "HFS"
        ds.ImageLaterality = "U"  # unpaired body part: Laterality (0020,0060) is then not needed
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.DerivationDescription = "Volume written by SeedBrachy (research use)"
        ds.ContentDate, ds.ContentTime = ds.SeriesDate, ds.SeriesTime
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = k + 1
        ds.PatientOrientation = ""
        ds.KVP = ""
        set_image_plane(ds, grid, positions[k], 16, signed=True)
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "HU"
        ds.WindowCenter, ds.WindowWidth = "40", "400"
        ds.PixelData = pixels[k].tobytes()
        save(ds, path, overwrite)
        uids.append(ds.SOPInstanceUID)
        report(progress, (k + 1) / len(paths), "writing CT slices")
    return ImageSeries(study, series_uid, CTImageStorage, tuple(uids), "CT", description,
                       tuple(str(p) for p in paths), slice_thickness_mm=float(grid.spacing[2]))
