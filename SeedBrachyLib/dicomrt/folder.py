"""A case as a DICOM folder: the CT series with its RT Structure Set, RT Plan and RT Dose, in and out.

* :func:`read_dicom_folder` -- every DICOM file below a folder, sorted by modality: one CT series (choose
  with ``series_uid`` when there are several), the RT Structure Set in the CT's frame of reference (its ROIs
  as fractional masks on the CT grid), the RT Plan's seeds (S_K decayed to ``implant_datetime``) and the
  RT Dose of that plan; any of the RT objects may be absent. Two candidates for one role are an InputError
  listing them.
* :func:`write_dicom_case` -- CT series (``CT/``), ``RS.dcm``, ``RP.dcm``, ``RD.dcm`` of one case, linked
  by UIDs: the structure set references the CT slices, the plan the structure set, the dose the plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..progress import report
from ..sources import get_model
from .ct import read_ct_series, write_ct_series
from .dataset import Study, has_dicom_header, read_dataset, sequence, text, uid
from .rtdose import read_rtdose, write_rtdose
from .rtplan import check_plan, read_rtplan, write_rtplan
from .rtstruct import read_rtstruct, write_rtstruct


@dataclass
class DicomCase:
    """What a DICOM folder holds, on SeedBrachy's terms (mm RAS, Gy, U).

    Attributes:
        hu, grid, series: the CT (HU ``[k, j, i]``), its Grid and :class:`~.ct.ImageSeries`.
        rois: list of :class:`~.rtstruct.Roi` on ``grid`` (empty without a structure set).
        plan: :class:`~.rtplan.PlanSeeds` or None.
        dose_gy, dose_grid, dose_info: the RT Dose (or None).
        files: role ("CT", "RTSTRUCT", "RTPLAN", "RTDOSE") -> list of paths read.
        uids: role ("RTSTRUCT", "RTPLAN", "RTDOSE") -> SOP Instance UID of the object read.
        notes: what the readers noticed.
    """

    hu: object
    grid: object
    series: object
    rois: list = field(default_factory=list)
    plan: object = None
    dose_gy: object = None
    dose_grid: object = None
    dose_info: object = None
    files: dict = field(default_factory=dict)
    uids: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    def summary_lines(self):
        """Human-readable summary with units."""
        lines = [f"CT: {self.grid.describe()}, {len(self.series.sop_instance_uids)} slices, series "
                 f"{self.series.series_instance_uid}"]
        for roi in self.rois:
            cc = float(roi.fraction.sum(dtype=float)) * self.grid.voxel_volume_cc
            lines.append(f"ROI {roi.number} '{roi.name}' ({roi.interpreted_type or 'no type'}): {cc:.2f} cc")
        if self.plan is not None:
            p = self.plan
            total = sum(s.strength_u for s in p.seeds)
            rx = "no prescription" if p.prescription_gy is None else f"prescription {p.prescription_gy:g} Gy"
            lines.append(f"RT Plan: {len(p.seeds)} seeds ({p.encoding}), total S_K {total:.3f} U at implant, "
                         f"model {p.model_key or 'not a SeedBrachy model'}, {rx}")
            lines += ["  " + line for line in p.decay_lines()]
        if self.dose_gy is not None:
            lines.append(f"RT Dose: {self.dose_grid.describe()}, max {self.dose_gy.max():.1f} Gy "
                         f"({self.dose_info.dose_type}, {self.dose_info.summation})")
        return lines + [f"note: {n}" for n in self.notes]


def _classify(folder):
    roles = {"CT": [], "RTSTRUCT": [], "RTPLAN": [], "RTDOSE": []}
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and has_dicom_header(p)):
        ds = read_dataset(path, "DICOM file", stop_before_pixels=True)
        modality = text(ds, "Modality", str(path), required=False)
        if modality in roles:
            roles[modality].append((path, ds))
    return roles


def _one(candidates, role, where, case, key):
    """The path of the only candidate (its SOP Instance UID into ``case.uids[key]``), or None."""
    if len(candidates) > 1:
        raise InputError(f"{len(candidates)} {role} objects fit in {where}: "
                         f"{', '.join(p.name for p, _ in candidates)}; keep one in the folder")
    if not candidates:
        return None
    path, ds = candidates[0]
    case.files[key] = [path]
    case.uids[key] = uid(ds, "SOPInstanceUID", str(path))
    return path


def read_dicom_folder(folder, implant_datetime=None, series_uid=None, progress=None):
    """The :class:`DicomCase` of ``folder`` (searched recursively); a CT series is required."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"DICOM folder {str(folder)!r} does not exist or is not a folder")
    roles = _classify(folder)
    if not roles["CT"]:
        raise InputError(f"no CT image in {str(folder)!r}: a case needs its CT series")
    report(progress, 0.1, "reading the CT series")
    hu, grid, series = read_ct_series([p for p, _ in roles["CT"]], series_uid)
    frame = series.study.frame_of_reference_uid
    case = DicomCase(hu, grid, series, files={"CT": list(series.files)}, notes=list(series.notes))

    def in_frame(ds, path):
        if text(ds, "Modality", str(path)) == "RTSTRUCT":
            return any(uid(item, "ReferencedFrameOfReferenceUID", str(path)) == frame
                       for item in sequence(ds, "StructureSetROISequence", str(path)))
        return uid(ds, "FrameOfReferenceUID", str(path), required=False) == frame

    for role in ("RTSTRUCT", "RTPLAN", "RTDOSE"):
        outside = [p.name for p, ds in roles[role] if not in_frame(ds, p)]
        if outside:
            case.notes.append(f"{role} files in another frame of reference ignored: {', '.join(outside)}")
        roles[role] = [(p, ds) for p, ds in roles[role] if in_frame(ds, p)]
    path = _one(roles["RTSTRUCT"], "RT Structure Set", "the CT's frame of reference", case, "RTSTRUCT")
    if path is not None:
        report(progress, 0.4, "filling the structures")
        case.rois = read_rtstruct(path, grid, frame)
        case.notes += [n for roi in case.rois for n in roi.notes]
    path = _one(roles["RTPLAN"], "RT Plan", "the CT's frame of reference", case, "RTPLAN")
    if path is not None:
        case.plan = read_rtplan(path, implant_datetime)
        case.notes += case.plan.notes
        plan_uid = case.plan.sop_instance_uid
        referencing = [(p, ds) for p, ds in roles["RTDOSE"] if any(
            uid(ref, "ReferencedSOPInstanceUID", str(p), required=False) == plan_uid
            for ref in sequence(ds, "ReferencedRTPlanSequence", str(p), required=False))]
        roles["RTDOSE"] = referencing or roles["RTDOSE"]
    path = _one(roles["RTDOSE"], "RT Dose", "the CT's frame of reference (and the plan)", case, "RTDOSE")
    if path is not None:
        report(progress, 0.8, "reading the dose")
        case.dose_gy, case.dose_grid, case.dose_info = read_rtdose(path, frame)
    report(progress, 1.0, "DICOM folder read")
    return case


@dataclass(frozen=True)
class WrittenCase:
    """What :func:`write_dicom_case` wrote: paths and SOP Instance UIDs by role, and the CT series referenced."""

    paths: dict
    series: object
    uids: dict


def write_dicom_case(folder, hu, grid, rois, seeds, model, prescription_gy, dose_gy=None, dose_grid=None,
                     implant_datetime=None, ct_series=None, target_roi_number=None, overwrite=False, progress=None):
    """Write a case to ``folder``: ``CT/`` slices, ``RS.dcm`` (if ``rois``), ``RP.dcm``, ``RD.dcm`` (if a dose).

    ``hu`` on ``grid`` (RAS); ``rois`` (list of :class:`~.rtstruct.Roi`) on ``grid``; ``seeds`` (mm RAS, S_K in U
    at ``implant_datetime``) of seed ``model``; ``dose_gy`` on ``dose_grid``. ``ct_series``: the
    :class:`~.ct.ImageSeries` the CT was read from; then no CT is written and the RT objects join its study and
    reference its slices. Returns a :class:`WrittenCase`.
    """
    folder = Path(folder)
    model = get_model(model)  # a bad model, plan or prescription is refused before any file is written
    check_plan(seeds, prescription_gy)
    paths, uids = {}, {}
    if ct_series is None:
        report(progress, 0.0, "writing the CT series")
        ct_series = write_ct_series(folder / "CT", hu, grid, Study(), overwrite=overwrite)
        paths["CT"] = folder / "CT"
    series, study = ct_series, ct_series.study
    structure_set_uid = None
    if rois:
        report(progress, 0.4, "contouring the structures")
        paths["RTSTRUCT"] = folder / "RS.dcm"
        structure_set_uid = write_rtstruct(paths["RTSTRUCT"], rois, grid, series, overwrite=overwrite).SOPInstanceUID
        uids["RTSTRUCT"] = structure_set_uid
    paths["RTPLAN"] = folder / "RP.dcm"
    plan = write_rtplan(paths["RTPLAN"], seeds, model, study, prescription_gy, implant_datetime, structure_set_uid,
                        target_roi_number if rois else None, overwrite=overwrite)
    uids["RTPLAN"] = plan.SOPInstanceUID
    if dose_gy is not None:
        paths["RTDOSE"] = folder / "RD.dcm"
        uids["RTDOSE"] = write_rtdose(paths["RTDOSE"], dose_gy, dose_grid, study, plan.SOPInstanceUID,
                                      overwrite=overwrite).SOPInstanceUID
    report(progress, 1.0, "DICOM case written")
    return WrittenCase(paths, series, uids)
