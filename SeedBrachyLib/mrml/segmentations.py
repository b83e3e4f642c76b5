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

from .. import structures
from ..errors import InputError
from ..progress import report
from ._common import array_to_matrix, require_node, require_scene, require_untransformed
from .volumes import array_from_volume_node


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


def structure_from_segment(segmentation_node, segment_id, dose_grid, role="oar", supersampling=None,
                           progress=None):
    """A :class:`~SeedBrachyLib.structures.Structure` (fractions on ``dose_grid``) from one segment."""
    mask, grid = segment_mask(segmentation_node, segment_id)
    return structures.structure_on_grid(segment_name(segmentation_node, segment_id), mask, grid, dose_grid,
                                        role=role, supersampling=supersampling, progress=progress)


def structures_from_segments(segmentation_node, target_segment_id, dose_grid, oar_segment_ids=None,
                             progress=None):
    """The target and the organs at risk of a segmentation as Structures on ``dose_grid``.

    Args:
        target_segment_id: the target (CTV) segment; InputError if not chosen, missing or empty.
        oar_segment_ids: segments evaluated as organs at risk (default: every other segment).
            Segments lying entirely outside the dose grid are skipped (they receive no dose
            that the grid can report), an empty OAR segment is an error.
        progress: callback(fraction, message); returning False cancels.

    Returns:
        list of Structure, the target first.
    """
    segment_name(segmentation_node, target_segment_id)
    if oar_segment_ids is None:
        oar_segment_ids = [s for s in segment_ids(segmentation_node) if s != target_segment_id]
    result = [structure_from_segment(segmentation_node, target_segment_id, dose_grid, role="target")]
    for n, sid in enumerate(oar_segment_ids):
        report(progress, n / max(1, len(oar_segment_ids)), "mapping structures to the dose grid")
        mask, grid = segment_mask(segmentation_node, sid)
        if _reaches_grid(mask, grid, dose_grid):
            result.append(structures.structure_on_grid(segment_name(segmentation_node, sid), mask, grid, dose_grid,
                                                       role="oar"))
    report(progress, 1.0, "structures mapped")
    return result


def _reaches_grid(mask, grid, dose_grid):
    """True if some voxel centre of ``mask`` (on ``grid``) lies inside ``dose_grid``."""
    k, j, i = np.nonzero(mask)
    return bool(np.any(dose_grid.contains(grid.to_ras(np.stack([i, j, k], axis=-1)))))


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


def body_and_skin(ct_node, dose_grid, threshold_hu=structures.DEFAULT_BODY_THRESHOLD_HU,
                  skin_thickness_mm=structures.DEFAULT_SKIN_THICKNESS_MM):
    """Body and skin rind from a CT volume node (HU), as Structures on ``dose_grid``.

    Body: :func:`SeedBrachyLib.structures.body_from_ct` (threshold in HU); skin: the outer
    ``skin_thickness_mm`` (mm) of the body (:func:`SeedBrachyLib.structures.skin_rind`),
    both computed on the CT grid and then mapped to the dose grid with partial volumes.
    """
    ct, grid = array_from_volume_node(ct_node)
    body = structures.body_from_ct(ct, grid, threshold_hu)
    skin = structures.skin_rind(body, grid, skin_thickness_mm)
    return (structures.structure_on_grid("Body", body, grid, dose_grid, role="oar"),
            structures.structure_on_grid("Skin", skin, grid, dose_grid, role="oar"))
