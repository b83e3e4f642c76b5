"""RT Dose: a dose grid (Gy, RAS) <-> a multi-frame RT Dose object (LPS).

* :func:`write_rtdose` -- dose ``[k, j, i]`` (Gy) on any Grid (oblique allowed) as RT Dose: Dose Units GY,
  Dose Type PHYSICAL, Dose Summation Type PLAN referencing the RT Plan, unsigned 32-bit pixels with Dose Grid
  Scaling = max dose / (2^32 - 1) (so the stored precision is that scaling, about 2e-10 of the maximum),
  frames along the slice normal with Grid Frame Offset Vector relative to the first frame (a left-handed
  grid is written with its frames reversed, so offsets always increase).
* :func:`read_rtdose` -- (dose float64 ``[k, j, i]`` Gy, RAS Grid, :class:`DoseInfo`). Dose Units GY (CGY is
  converted), Dose Type PHYSICAL or EFFECTIVE (ERROR refused), relative or absolute (axial) Grid Frame
  Offset Vector, evenly spaced frames, frame of reference checked when the caller gives one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import RTDoseStorage, RTPlanStorage

from ..errors import InputError
from . import dataset
from .ct import MAX_VOXELS
from .geometry import grid_from_planes, image_plane, orientation, set_image_plane, slice_positions_lps

UINT32_MAX = 2 ** 32 - 1
#: Dose Grid Scaling accepted (Gy per stored unit), and the largest dose accepted (Gy): beyond, the file is wrong.
MIN_SCALING, MAX_SCALING = 1e-15, 1e3
MAX_DOSE_GY = 1e8
#: Frame offsets may differ from even spacing by this much (mm).
OFFSET_TOLERANCE_MM = 1e-3


@dataclass(frozen=True)
class DoseInfo:
    """What an RT Dose file says about its dose: units as read, type, summation, plan and frame references."""

    units: str
    dose_type: str
    summation: str
    frame_of_reference_uid: str
    referenced_plan_uid: str = None
    sop_instance_uid: str = None
    scaling: float = 1.0


def write_rtdose(path, dose_gy, grid, study, plan_sop_instance_uid=None, comment="TG-43U1, permanent implant",
                 overwrite=False):
    """Write ``dose_gy`` ``[k, j, i]`` (Gy, >= 0) on ``grid`` (RAS) as RT Dose; return the dataset.

    ``study`` (:class:`~.dataset.Study`) gives the patient, study and frame of reference (the CT's);
    ``plan_sop_instance_uid`` the RT Plan it belongs to (Dose Summation Type PLAN needs one).
    """
    dose = np.asarray(dose_gy, dtype=np.float64)
    if dose.shape != tuple(grid.shape):
        raise InputError(f"dose array shape {dose.shape} does not match the grid shape {tuple(grid.shape)} ([k, j, i])")
    if not np.all(np.isfinite(dose)) or dose.min() < 0:
        raise InputError("dose values must be finite and >= 0 Gy")
    if not plan_sop_instance_uid:
        raise InputError("an RT Dose of a plan references its RT Plan: give plan_sop_instance_uid")
    _, _, normal = image_plane(grid)
    positions = slice_positions_lps(grid)
    if (positions[-1] - positions[0]) @ normal < 0:  # K against row x column: write the frames the other way
        dose, positions = dose[::-1], positions[::-1]
    ds = dataset.new_dataset(RTDoseStorage, "RTDOSE", study, "SeedBrachy dose")
    ds.OperatorsName = ""
    ds.ContentDate, ds.ContentTime = ds.SeriesDate, ds.SeriesTime
    ds.InstanceNumber = 1
    ds.ImageType = ["DERIVED", "SECONDARY"]
    set_image_plane(ds, grid, positions[0], 32, signed=False)
    ds.NumberOfFrames = grid.dims[2]
    ds.FrameIncrementPointer = 0x3004000C
    ds.GridFrameOffsetVector = [dataset.ds_number(k * grid.spacing[2]) for k in range(grid.dims[2])]
    ds.DoseUnits, ds.DoseType, ds.DoseSummationType = "GY", "PHYSICAL", "PLAN"
    ds.DoseComment = comment[:64]
    ds.TissueHeterogeneityCorrection = "WATER"
    scaling = float(dose.max()) / UINT32_MAX if dose.max() > 0 else 1.0
    ds.DoseGridScaling = dataset.ds_number(scaling)
    scaling = float(ds.DoseGridScaling)  # the value as written
    plan = Dataset()
    plan.ReferencedSOPClassUID = RTPlanStorage
    plan.ReferencedSOPInstanceUID = plan_sop_instance_uid
    ds.ReferencedRTPlanSequence = dataset.sequence_of([plan])
    ds.PixelData = np.clip(np.rint(dose / scaling), 0, UINT32_MAX).astype("<u4").tobytes()
    dataset.save(ds, path, overwrite)
    return ds


def read_rtdose(path, frame_of_reference_uid=None):
    """(dose float64 ``[k, j, i]`` Gy, RAS Grid, :class:`DoseInfo`) of the RT Dose file ``path``."""
    ds, where = dataset.read_object(path, "RT Dose", "RTDOSE", RTDoseStorage)
    units = dataset.text(ds, "DoseUnits", where, allowed={"GY", "CGY", "RELATIVE"})
    if units == "RELATIVE":
        raise InputError(f"{where}: Dose Units RELATIVE cannot be used: an absolute dose (GY) is needed")
    dose_type = dataset.text(ds, "DoseType", where, allowed={"PHYSICAL", "EFFECTIVE", "ERROR"})
    if dose_type == "ERROR":
        raise InputError(f"{where}: Dose Type ERROR is a dose difference, not a dose")
    summation = dataset.text(ds, "DoseSummationType", where)
    frame = dataset.uid(ds, "FrameOfReferenceUID", where)
    if frame_of_reference_uid is not None and frame != frame_of_reference_uid:
        raise InputError(f"{where}: dose frame of reference {frame} is not the CT's {frame_of_reference_uid}")
    plans = dataset.sequence(ds, "ReferencedRTPlanSequence", where, required=False)
    plan_uid = dataset.uid(plans[0], "ReferencedSOPInstanceUID", where) if plans else None
    n_i = dataset.integer(ds, "Columns", where, minimum=1, maximum=65535)
    n_j = dataset.integer(ds, "Rows", where, minimum=1, maximum=65535)
    n_k = dataset.integer(ds, "NumberOfFrames", where, required=False, default=1, minimum=1, maximum=65535)
    if n_i * n_j * n_k > MAX_VOXELS:
        raise InputError(f"{where}: {n_i}x{n_j}x{n_k} dose voxels exceed {MAX_VOXELS}")
    iop = dataset.numbers(ds, "ImageOrientationPatient", where, 6, minimum=-1.0001, maximum=1.0001)
    _, _, normal = orientation(iop, where)
    ipp = np.array(dataset.numbers(ds, "ImagePositionPatient", where, 3, minimum=-1e6, maximum=1e6))
    spacing = _frame_spacing(ds, where, n_k, iop, ipp)
    grid = grid_from_planes(iop, dataset.numbers(ds, "PixelSpacing", where, 2, minimum=1e-6, maximum=1e4),
                            ipp, spacing, (n_i, n_j, n_k), where)
    scaling = dataset.numbers(ds, "DoseGridScaling", where, 1, required=n_k > 0, minimum=0)[0]
    if not MIN_SCALING <= scaling <= MAX_SCALING:
        raise InputError(f"{where}: DoseGridScaling {scaling!r} Gy per stored unit invalid: must lie in "
                         f"[{MIN_SCALING:g}, {MAX_SCALING:g}]")
    dose = _stored_values(ds, where, n_i, n_j, n_k) * scaling
    if not np.all(np.isfinite(dose)) or dose.max() > MAX_DOSE_GY:
        raise InputError(f"{where}: dose up to {dose.max():g} Gy: values must be finite and at most "
                         f"{MAX_DOSE_GY:g} Gy (a wrong DoseGridScaling?)")
    if units == "CGY":
        dose /= 100.0
    if np.any(dose < 0):
        raise InputError(f"{where}: negative dose values: a physical dose is >= 0")
    info = DoseInfo(units, dose_type, summation, frame, plan_uid, dataset.uid(ds, "SOPInstanceUID", where), scaling)
    return dose, grid, info


def _frame_spacing(ds, where, n_k, iop, ipp):
    if n_k == 1:
        offsets = dataset.numbers(ds, "GridFrameOffsetVector", where, required=False)
        if offsets is not None and len(offsets) != 1:
            raise InputError(f"{where}: GridFrameOffsetVector has {len(offsets)} values for NumberOfFrames 1")
        thickness = dataset.numbers(ds, "SliceThickness", where, 1, required=False, minimum=0, maximum=1e4)
        return float(thickness[0]) if thickness and thickness[0] > 0 else 1.0
    offsets = np.array(dataset.numbers(ds, "GridFrameOffsetVector", where, n_k, minimum=-1e6, maximum=1e6))
    if offsets[0] != 0:
        if not np.allclose(iop, [1, 0, 0, 0, 1, 0], atol=1e-6) or abs(offsets[0] - ipp[2]) > OFFSET_TOLERANCE_MM:
            raise InputError(f"{where}: GridFrameOffsetVector starts at {offsets[0]:g} mm: relative offsets start at "
                             "0, absolute ones (axial images only) at the Image Position z")
        offsets = offsets - offsets[0]
    steps = np.diff(offsets)
    if np.any(steps <= 0):
        raise InputError(f"{where}: GridFrameOffsetVector must increase strictly (found {offsets[:5].tolist()}...)")
    if np.ptp(steps) > OFFSET_TOLERANCE_MM:
        raise InputError(f"{where}: frames are unevenly spaced ({steps.min():g} to {steps.max():g} mm): resample first")
    return float(offsets[-1] / (n_k - 1))


def _stored_values(ds, where, n_i, n_j, n_k):
    bits = dataset.integer(ds, "BitsAllocated", where)
    if bits not in (16, 32):
        raise InputError(f"{where}: BitsAllocated {bits} invalid for RT Dose: 16 or 32")
    signed = dataset.integer(ds, "PixelRepresentation", where, minimum=0, maximum=1)
    if dataset.integer(ds, "SamplesPerPixel", where) != 1:
        raise InputError(f"{where}: SamplesPerPixel must be 1")
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        raise InputError(f"{where}: compressed RT Dose pixel data is not supported")
    data = dataset.value(ds, "PixelData", where)
    need = n_i * n_j * n_k * bits // 8
    if not need <= len(data) <= need + 1:  # one pad byte at most
        raise InputError(f"{where}: PixelData holds {len(data)} bytes, but NumberOfFrames {n_k} x Rows {n_j} x "
                         f"Columns {n_i} x {bits} bits make {need}")
    dtype = np.dtype(f"{'<' if ds.file_meta.TransferSyntaxUID.is_little_endian else '>'}{'i' if signed else 'u'}"
                     f"{bits // 8}")
    return np.frombuffer(data, dtype=dtype, count=n_i * n_j * n_k).reshape(n_k, n_j, n_i).astype(np.float64)
