"""DICOM RT <-> MRML nodes, keeping every node linked to the DICOM object it came from or went to.

* :func:`import_folder` -- a DICOM folder (:func:`SeedBrachyLib.dicomrt.read_dicom_folder`) as nodes: CT volume,
  segmentation (one closed-surface segment per ROI, as Slicer's RT Structure Set import makes: the surface of
  the ROI's contours filled finer than the CT (``Roi.fine``; else of its voxels at least half inside), so the
  DVH rasterises it finer, :func:`.segmentations.structure_from_segment`), seeds
  node (one point per seed, axis and S_K at implant kept, :mod:`.markups`), dose volume (marked the SlicerRT
  way, :func:`.volumes.set_dose_volume`).
* :func:`link_ct_to_files` -- link a CT node loaded elsewhere (Slicer's DICOM browser) to its series' files;
  :func:`link_ct_to_database` finds those files in Slicer's DICOM database.
* :func:`export_case` -- CT, segmentation, seeds and dose nodes as CT series + RT Structure Set + RT Plan +
  RT Dose (:func:`SeedBrachyLib.dicomrt.write_dicom_case`). A CT linked to a DICOM series is referenced, not
  written again; an unlinked CT is written and linked to its new series.

Links are node attributes (space-separated UIDs): on the CT :data:`SERIES_UID`, :data:`STUDY_UID`,
:data:`FRAME_UID`, :data:`SOP_CLASS_UID`, :data:`INSTANCE_UIDS` (one per slice, in slice order k) and the
patient; on the segmentation, seeds and dose nodes :data:`INSTANCE_UIDS` (the RT Structure Set, RT Plan or
RT Dose SOP Instance UID) and :data:`FRAME_UID`; each segment carries its ROI Number as tag :data:`ROI_TAG`.
"""

from __future__ import annotations

import logging

import numpy as np
import slicer

from .. import structures
from ..dicomrt import ImageSeries, Roi, Study, read_ct_headers, read_dicom_folder, write_dicom_case
from ..errors import InputError
from ..progress import report
from . import ATTRIBUTE_PREFIX
from ._common import require_node, require_scene
from .markups import read_seeds, source_model_key, write_seeds
from .segmentations import add_surface_segment, segment_ids, segment_mask, segment_name
from .volumes import (
    DOSE_UNIT_VALUE_ATTRIBUTE,
    PRESCRIPTION_ATTRIBUTE,
    array_from_volume_node,
    set_dose_volume,
    update_volume_node,
)

DICOM_PREFIX = ATTRIBUTE_PREFIX + "DICOM."
SERIES_UID = DICOM_PREFIX + "SeriesInstanceUID"
STUDY_UID = DICOM_PREFIX + "StudyInstanceUID"
FRAME_UID = DICOM_PREFIX + "FrameOfReferenceUID"
SOP_CLASS_UID = DICOM_PREFIX + "SOPClassUID"
INSTANCE_UIDS = DICOM_PREFIX + "SOPInstanceUIDs"
PATIENT_NAME = DICOM_PREFIX + "PatientName"
PATIENT_ID = DICOM_PREFIX + "PatientID"
IMPLANT_DATE = DICOM_PREFIX + "ImplantDateTime"
ROI_TAG = DICOM_PREFIX + "ROINumber"
SLICE_THICKNESS = DICOM_PREFIX + "SliceThickness"


def link_ct(ct_node, series):
    """Record on ``ct_node`` the DICOM series (:class:`~SeedBrachyLib.dicomrt.ImageSeries`) it is."""
    study = series.study
    for key, value in ((SERIES_UID, series.series_instance_uid), (STUDY_UID, study.study_instance_uid),
                       (FRAME_UID, study.frame_of_reference_uid), (SOP_CLASS_UID, series.sop_class_uid),
                       (INSTANCE_UIDS, " ".join(series.sop_instance_uids)), (PATIENT_NAME, study.patient_name),
                       (PATIENT_ID, study.patient_id)):
        ct_node.SetAttribute(key, str(value))
    if series.slice_thickness_mm is not None:
        ct_node.SetAttribute(SLICE_THICKNESS, repr(float(series.slice_thickness_mm)))


def slice_thickness_of(ct_node):
    """The reconstructed slice thickness (mm) of the DICOM series ``ct_node`` is linked to (its header's
    SliceThickness, kept by :func:`link_ct`), or None: not linked, not given, or the volume cropped or
    resampled since."""
    text = ct_node.GetAttribute(SLICE_THICKNESS)
    if not text or linked_series(ct_node) is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 < value < 1e4 else None


def link_ct_to_files(ct_node, files):
    """Link ``ct_node`` to the CT series of ``files`` (e.g. Slicer's DICOM database files of the volume's
    ``DICOM.instanceUIDs``), after checking that the files' geometry is the node's; return the ImageSeries.
    """
    grid, series = read_ct_headers(files)
    node_grid = array_from_volume_node(ct_node)[1]
    if node_grid.dims != grid.dims or not np.allclose(node_grid.ijk_to_ras, grid.ijk_to_ras, atol=1e-3):
        raise InputError(f"CT '{ct_node.GetName()}' ({node_grid.describe()}) is not the series of those files "
                         f"({grid.describe()}): it was cropped or resampled; export writes it as a new series")
    link_ct(ct_node, series)
    return series


def linked_series(ct_node):
    """The :class:`~SeedBrachyLib.dicomrt.ImageSeries` a CT node is linked to, or None if it is not (or no longer)."""
    uids = (ct_node.GetAttribute(INSTANCE_UIDS) or "").split()
    needed = [ct_node.GetAttribute(k) for k in (SERIES_UID, STUDY_UID, FRAME_UID, SOP_CLASS_UID)]
    if not uids or not all(needed):
        return None
    grid = array_from_volume_node(ct_node)[1]
    if len(uids) != grid.dims[2]:
        return None  # the volume was cropped or resampled since: it is not that series any more
    study = Study(patient_name=ct_node.GetAttribute(PATIENT_NAME) or "", patient_id=ct_node.GetAttribute(PATIENT_ID)
                  or "", study_instance_uid=needed[1], frame_of_reference_uid=needed[2])
    return ImageSeries(study, needed[0], needed[3], tuple(uids))


#: Attribute Slicer's DICOM plugins put on a volume they load: its slices' SOP Instance UIDs, space-separated.
SLICER_INSTANCE_UIDS = "DICOM.instanceUIDs"


def link_ct_to_database(ct_node, database):
    """Link a CT loaded by Slicer's DICOM browser (attribute ``DICOM.instanceUIDs``) to its series' files in
    ``database`` (a ctkDICOMDatabase: ``fileForInstance(uid)`` -> path), so that an export references it
    instead of writing a new series. Returns the ImageSeries, or None when nothing is linked: no database, a
    CT not from the browser or already linked, files missing, or a CT cropped or resampled since (logged as a
    warning, not an error: the export then writes the CT as a new series)."""
    uids = (ct_node.GetAttribute(SLICER_INSTANCE_UIDS) or "").split()
    if not uids or database is None or linked_series(ct_node) is not None:
        return None
    files = [database.fileForInstance(uid) for uid in uids]
    if not all(files):
        return None
    try:
        return link_ct_to_files(ct_node, files)
    except InputError as exc:
        logging.getLogger(__name__).warning("SeedBrachy: %s", exc)
        return None


def _link(node, uid, frame):
    node.SetAttribute(INSTANCE_UIDS, uid)
    node.SetAttribute(FRAME_UID, frame)


def import_folder(scene, folder, implant_datetime=None, name="DICOM", progress=None):
    """Nodes of the DICOM case in ``folder``: {"ct", "segmentation", "seeds", "dose"} (absent objects: None).

    ``implant_datetime``: the date the seed strengths are decayed to (default the source reference date).
    """
    if scene is None:
        raise InputError("no MRML scene given to import the DICOM folder into")
    case = read_dicom_folder(folder, implant_datetime, progress=progress)
    frame = case.series.study.frame_of_reference_uid
    nodes = {"ct": scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", f"{name} CT"), "segmentation": None,
             "seeds": None, "dose": None, "case": case}
    update_volume_node(nodes["ct"], case.hu, case.grid)
    nodes["ct"].CreateDefaultDisplayNodes()
    link_ct(nodes["ct"], case.series)
    if case.rois:
        seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{name} structures")
        seg.CreateDefaultDisplayNodes()
        seg.SetReferenceImageGeometryParameterFromVolumeNode(nodes["ct"])
        seg.GetSegmentation().SetSourceRepresentationName(
            slicer.vtkSegmentationConverter.GetSegmentationClosedSurfaceRepresentationName())
        for roi in case.rois:
            mask, grid = roi.fine or (roi.fraction >= 0.5, case.grid)
            if not mask.any():
                continue
            color = None if roi.color is None else [c / 255.0 for c in roi.color]
            segment_id = add_surface_segment(seg, mask, grid, roi.name, color)
            seg.GetSegmentation().GetSegment(segment_id).SetTag(ROI_TAG, str(roi.number))
        _link(seg, case.uids["RTSTRUCT"], frame)
        nodes["segmentation"] = seg
    if case.plan is not None:
        seeds = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", f"{name} seeds")
        write_seeds(seeds, case.plan.seeds, case.plan.model_key)
        _link(seeds, case.uids["RTPLAN"], frame)
        if case.plan.implant_datetime is not None:
            seeds.SetAttribute(IMPLANT_DATE, case.plan.implant_datetime.isoformat())
        seeds.SetDescription("; ".join(case.plan.decay_lines()))
        nodes["seeds"] = seeds
    if case.dose_gy is not None:
        dose = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", f"{name} dose")
        rx = case.plan.prescription_gy if case.plan is not None and case.plan.prescription_gy else \
            float(np.percentile(case.dose_gy, 99))
        set_dose_volume(dose, case.dose_gy, case.dose_grid, rx, f"RT Dose ({case.dose_info.dose_type}, "
                                                                 f"{case.dose_info.summation})")
        _link(dose, case.uids["RTDOSE"], frame)
        nodes["dose"] = dose
    return nodes


def _on_grid(mask, mask_grid, grid):
    """Fractions on ``grid`` of a mask on ``mask_grid``: pasted when it is a sub-block of ``grid``, else resampled."""
    m = grid.ras_to_ijk @ mask_grid.ijk_to_ras
    shift = np.rint(m[:3, 3]).astype(int)
    if not (np.allclose(m[:3, :3], np.eye(3), atol=1e-6) and np.allclose(m[:3, 3], shift, atol=1e-4)):
        return structures.resample_mask(mask, mask_grid, grid)
    fraction = np.zeros(grid.shape, dtype=np.float32)
    lo = np.maximum(shift, 0)
    hi = np.minimum(shift + np.asarray(mask_grid.dims), np.asarray(grid.dims))
    if np.any(hi <= lo):
        raise InputError("a segment lies outside the CT volume: it cannot be contoured on the CT slices")
    src = [slice(a - s, b - s) for a, b, s in zip(lo, hi, shift)]
    fraction[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]] = mask[src[2], src[1], src[0]]
    return fraction


def _rois(segmentation_node, grid, target_segment_id, progress):
    """Rois on the CT ``grid`` from every segment (partial volumes where the segment's geometry differs)."""
    rois, target_number = [], None
    ids = segment_ids(segmentation_node)
    for n, segment_id in enumerate(ids):
        mask, mask_grid = segment_mask(segmentation_node, segment_id)
        fraction = _on_grid(mask, mask_grid, grid)
        segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
        color = tuple(int(round(255 * c)) for c in segment.GetColor())
        name = segment_name(segmentation_node, segment_id)
        kind = name.upper() if name.upper() in ("GTV", "CTV", "PTV") else ("EXTERNAL" if name == "Body" else "ORGAN")
        rois.append(Roi(name, fraction, color, kind, n + 1))
        if segment_id == target_segment_id:
            target_number = n + 1
        report(progress, 0.1 + 0.3 * (n + 1) / len(ids), f"contouring {name}")
    return rois, target_number


def export_case(folder, ct_node, seeds_node, prescription_gy=None, segmentation_node=None, dose_node=None,
                target_segment_id=None, model_key=None, implant_datetime=None, overwrite=False, progress=None):
    """Write the nodes' case to ``folder`` as DICOM RT; return {role: path} of the files written.

    ``ct_node`` (HU), ``seeds_node`` (:mod:`.markups`), optional ``segmentation_node`` (its segments become
    ROIs on the CT grid; ``target_segment_id`` the target the prescription refers to) and ``dose_node`` (Gy).
    ``prescription_gy`` default: the dose node's prescription. ``model_key`` default: the seeds node's model.
    ``implant_datetime``: the strength reference date of the seeds (default now). Afterwards every node is
    linked to the object written for it.
    """
    require_node(ct_node, "CT volume", "vtkMRMLScalarVolumeNode")
    require_node(seeds_node, "seed markups", "vtkMRMLMarkupsFiducialNode")
    require_scene(ct_node, "CT volume")
    if prescription_gy is None and dose_node is not None and dose_node.GetAttribute(PRESCRIPTION_ATTRIBUTE):
        prescription_gy = float(dose_node.GetAttribute(PRESCRIPTION_ATTRIBUTE))
    if prescription_gy is None:
        raise InputError("no prescription given: an RT Plan states its prescription (Gy)")
    model_key = model_key or source_model_key(seeds_node)
    if not model_key:
        raise InputError(f"seed markups '{seeds_node.GetName()}' name no seed model: choose one")
    hu, grid = array_from_volume_node(ct_node)
    series = linked_series(ct_node)
    rois, target_number = ([], None) if segmentation_node is None else _rois(segmentation_node, grid,
                                                                             target_segment_id, progress)
    dose = dose_grid = None
    if dose_node is not None:
        dose, dose_grid = array_from_volume_node(dose_node)
        dose = dose.astype(np.float64) * float(dose_node.GetAttribute(DOSE_UNIT_VALUE_ATTRIBUTE) or 1.0)
    seeds = read_seeds(seeds_node)
    written = write_dicom_case(folder, hu, grid, rois, seeds, model_key, prescription_gy, dose, dose_grid,
                               implant_datetime, series, target_number, overwrite, progress)
    if series is None:
        link_ct(ct_node, written.series)
    frame = written.series.study.frame_of_reference_uid
    for node, role in ((seeds_node, "RTPLAN"), (segmentation_node, "RTSTRUCT"), (dose_node, "RTDOSE")):
        if node is not None and role in written.uids:
            _link(node, written.uids[role], frame)
    return written.paths
