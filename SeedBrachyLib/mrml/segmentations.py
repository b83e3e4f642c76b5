"""Segmentation nodes <-> masks and :class:`~SeedBrachyLib.structures.Structure` on a dose grid.

A segment is exported with Slicer's own static logic
(``vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode``) to a labelmap on the
segment's own geometry (so segments stored as closed surfaces, e.g. from RTSTRUCT, are
rasterised by Slicer as usual), then mapped to the dose grid with partial-volume fractions by
:func:`SeedBrachyLib.structures.structure_on_grid`. Segmentation and dose grid may differ in
origin, spacing and direction.
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from .. import settings, structures
from ..errors import InputError
from ..progress import report
from ._common import array_to_matrix, require_node, require_scene, require_untransformed
from .volumes import array_from_volume_node

#: Display colour (RGB 0-1) of the CTV segment made from the GTV.
CTV_COLOR = (1.0, 0.6, 0.0)


def segment_ids(segmentation_node):
    """IDs of the segments of a segmentation node, in display order."""
    require_node(segmentation_node, "segmentation", "vtkMRMLSegmentationNode")
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]


def segment_name(segmentation_node, segment_id):
    """Name of segment ``segment_id``; InputError if no segment is chosen or it does not exist."""
    require_node(segmentation_node, "segmentation", "vtkMRMLSegmentationNode")
    if not segment_id:
        raise InputError(f"no segment chosen in segmentation '{segmentation_node.GetName()}': select a segment")
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    if segment is None:
        names = [segmentation_node.GetSegmentation().GetSegment(s).GetName() for s in segment_ids(segmentation_node)]
        raise InputError(f"segment '{segment_id}' not found in segmentation '{segmentation_node.GetName()}' "
                         f"(segments: {', '.join(names) or 'none'})")
    return segment.GetName()


def segment_mask(segmentation_node, segment_id):
    """(bool mask ``[k, j, i]``, :class:`Grid`) of one segment on its own labelmap geometry.

    Raises InputError if no segment is chosen, the segment does not exist or it is empty.
    """
    name = segment_name(segmentation_node, segment_id)
    require_untransformed(segmentation_node, "segmentation")
    scene = require_scene(segmentation_node, "segmentation")
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "SeedBrachy temporary labelmap")
    try:
        ids = vtk.vtkStringArray()
        ids.InsertNextValue(segment_id)
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(segmentation_node, ids, labelmap)
        if not ok or labelmap.GetImageData() is None:
            raise InputError(f"segment '{name}' could not be exported to a labelmap (is it empty?)")
        labels, grid = array_from_volume_node(labelmap)
    finally:
        display = labelmap.GetDisplayNode()
        if display is not None:
            scene.RemoveNode(display)
        scene.RemoveNode(labelmap)
    mask = labels != 0
    if not mask.any():
        raise InputError(f"segment '{name}' in '{segmentation_node.GetName()}' is empty: it has no voxel inside")
    return mask, grid


def mask_on_grid(segmentation_node, segment_id, grid):
    """Bool mask ``[k, j, i]`` of a segment on ``grid`` (voxels whose centre region is at least half inside)."""
    mask, mask_grid = segment_mask(segmentation_node, segment_id)
    return structures.resample_mask(mask, mask_grid, grid, supersampling=1) >= 0.5


def structure_from_segment(segmentation_node, segment_id, dose_grid, role="oar", supersampling=None,
                           progress=None):
    """A :class:`~SeedBrachyLib.structures.Structure` (fractions on ``dose_grid``) from one segment."""
    mask, grid = segment_mask(segmentation_node, segment_id)
    return structures.structure_on_grid(segment_name(segmentation_node, segment_id), mask, grid, dose_grid,
                                        role=role, supersampling=supersampling, progress=progress)


def structures_from_segments(segmentation_node, target_segment_ids, dose_grid, oar_segment_ids=None,
                             progress=None):
    """The targets and the organs at risk of a segmentation as Structures on ``dose_grid``.

    Args:
        target_segment_ids: the target segments (GTV, CTV; empty IDs skipped); at least one; InputError if
            missing or empty.
        oar_segment_ids: segments evaluated as organs at risk (default: every other segment); an empty
            OAR segment is an error. A structure partly outside the dose grid is kept, and its metrics say
            which part was evaluated (checks on it are NOT EVALUATED); one wholly outside is listed in the
            notes.
        progress: callback(fraction, message); returning False cancels.

    Returns:
        (list of Structure, the targets first; notes: list of str naming the segments not evaluated).
    """
    if isinstance(target_segment_ids, str):
        target_segment_ids = [target_segment_ids]
    targets = [sid for sid in target_segment_ids if sid]
    if not targets:
        raise InputError("no target segment chosen: choose the GTV and the CTV")
    for sid in targets:
        segment_name(segmentation_node, sid)
    if oar_segment_ids is None:
        oar_segment_ids = [s for s in segment_ids(segmentation_node) if s not in targets]
    ids = [(sid, "target") for sid in targets] + [(sid, "oar") for sid in oar_segment_ids]
    result, notes = [], []
    for n, (sid, role) in enumerate(ids):
        report(progress, n / len(ids), "mapping structures to the dose grid")
        mask, grid = segment_mask(segmentation_node, sid)
        name = segment_name(segmentation_node, sid)
        if role == "oar" and not _reaches_grid(mask, grid, dose_grid):
            notes.append(f"{name} lies wholly outside the dose grid ({dose_grid.describe()}): not evaluated")
            continue
        result.append(structures.structure_on_grid(name, mask, grid, dose_grid, role=role))
    report(progress, 1.0, "structures mapped")
    return result, notes


def _reaches_grid(mask, grid, dose_grid):
    """True if some voxel centre of ``mask`` (on ``grid``) lies inside ``dose_grid``."""
    k, j, i = np.nonzero(mask)
    return bool(dose_grid.contains(grid.to_ras(np.stack([i, j, k], axis=-1))).any())


def add_mask_segment(segmentation_node, mask, grid, name, color=None, overwrite=False):
    """Add a bool mask ``[k, j, i]`` on ``grid`` as a segment named ``name``; return its ID.

    An existing segment of that name is an InputError unless ``overwrite`` (then it is replaced),
    so contours a user made are never replaced silently.
    """
    require_node(segmentation_node, "segmentation", "vtkMRMLSegmentationNode")
    mask = np.asarray(mask)
    if mask.shape != tuple(grid.shape):
        raise InputError(f"mask '{name}' shape {mask.shape} does not match grid shape {tuple(grid.shape)}")
    if not mask.any():
        raise InputError(f"mask '{name}' is empty: it has no voxel inside")
    segmentation = segmentation_node.GetSegmentation()
    existing = segmentation.GetSegmentIdBySegmentName(name)
    if existing:
        if not overwrite:
            raise InputError(f"segmentation '{segmentation_node.GetName()}' already has a segment '{name}'; "
                             "pass overwrite=True to replace it")
        segmentation.RemoveSegment(existing)
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(*grid.dims)
    scalars = numpy_support.numpy_to_vtk((np.ascontiguousarray(mask) != 0).astype(np.uint8).ravel(), deep=1)
    image.GetPointData().SetScalars(scalars)
    image.SetImageToWorldMatrix(array_to_matrix(grid.ijk_to_ras))
    rgb = (0.5, 0.5, 0.5) if color is None else tuple(float(c) for c in color)
    return segmentation_node.AddSegmentFromBinaryLabelmapRepresentation(image, name, rgb)


def body_and_skin_masks(ct_node, values=None):
    """(body, skin, CT grid): bool masks ``[k, j, i]`` on the CT grid of a CT volume node (HU).

    Body: :func:`SeedBrachyLib.structures.body_from_ct` above ``values.bodyThresholdHu`` (HU); skin: its outer
    ``values.skinThicknessMm`` (mm) (:func:`SeedBrachyLib.structures.skin_rind`). ``values``: settings
    (:class:`SeedBrachyLib.settings.Values`, default the defaults).
    """
    values = values or settings.defaults()
    ct, grid = array_from_volume_node(ct_node)
    body = structures.body_from_ct(ct, grid, values.bodyThresholdHu)
    return body, structures.skin_rind(body, grid, values.skinThicknessMm), grid


def body_and_skin(ct_node, dose_grid, values=None):
    """Body and skin rind (:func:`body_and_skin_masks`) as Structures on ``dose_grid`` (partial volumes)."""
    body, skin, grid = body_and_skin_masks(ct_node, values)
    return (structures.structure_on_grid("Body", body, grid, dose_grid, role="oar"),
            structures.structure_on_grid("Skin", skin, grid, dose_grid, role="oar"))


def make_ctv(segmentation_node, gtv_segment_id, ct_node, values=None, name="CTV", nogo_segment_ids=()):
    """The CTV as a new, visible segment: GTV + ``values.ctvMarginMm`` (mm), clipped to the body (from the CT),
    minus the no-go segments. Made once; planning and evaluation then use it as it is.

    An existing segment called ``name`` is never replaced: InputError asks to rename or delete it first.
    Returns the new segment's ID.
    """
    values = values or settings.defaults()
    if segmentation_node.GetSegmentation().GetSegmentIdBySegmentName(name):
        raise InputError(f"segmentation '{segmentation_node.GetName()}' already has a segment '{name}': choose it "
                         "as the CTV, or rename or delete it to make a new one")
    body, _, ct_grid = body_and_skin_masks(ct_node, values)
    gtv = mask_on_grid(segmentation_node, gtv_segment_id, ct_grid)  # on the CT grid: room for the margin
    ctv = structures.expand_margin(gtv, ct_grid, values.ctvMarginMm, clip_to=body)
    for sid in nogo_segment_ids:
        ctv &= ~mask_on_grid(segmentation_node, sid, ct_grid)
    if not ctv.any():
        raise InputError(f"the CTV from '{segment_name(segmentation_node, gtv_segment_id)}' + "
                         f"{values.ctvMarginMm:g} mm is empty after clipping to the body and removing no-go segments")
    return add_mask_segment(segmentation_node, ctv, ct_grid, name, CTV_COLOR)
