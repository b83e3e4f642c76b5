"""Scalar volume nodes <-> arrays on a :class:`~SeedBrachyLib.grid.Grid`; the dose volume node.

Arrays are indexed ``[k, j, i]`` (as ``slicer.util.arrayFromVolume``); the grid carries the
node's full IJK-to-RAS matrix (origin mm, spacing mm, direction), so oblique volumes stay oblique.

A dose volume (Gy) is marked the way SlicerRT marks an imported RTDOSE, so SlicerRT's Isodose
and Dose Volume Histogram modules accept it: node attribute ``DicomRtImport.DoseVolume`` = "1",
and the dose unit attributes ``DicomRtImport.DoseUnitName`` = "Gy" and
``DicomRtImport.DoseUnitValue`` = "1.0" (scaling of stored values to Gy) on the node and, when the
volume sits in a subject-hierarchy study that has no unit yet, on that study (where SlicerRT
looks). It is shown with an isodose-style colour table: 21 entries of 10 % of the prescription
each over a window of 0..210 % of the prescription (entry i holds doses in [10 i, 10 i + 10) %;
higher doses take the last entry), and voxels below 50 % of the prescription hidden.
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from ..errors import InputError
from ..grid import Grid
from . import ATTRIBUTE_PREFIX, ROLE_ATTRIBUTE, ROLE_DOSE
from ._common import array_to_matrix, matrix_to_array, require_node, require_untransformed, require_writable_output

DOSE_VOLUME_ATTRIBUTE = "DicomRtImport.DoseVolume"
DOSE_UNIT_NAME_ATTRIBUTE = "DicomRtImport.DoseUnitName"
DOSE_UNIT_VALUE_ATTRIBUTE = "DicomRtImport.DoseUnitValue"
PRESCRIPTION_ATTRIBUTE = "SeedBrachy.PrescriptionGy"
ISODOSE_COLOR_NODE_NAME = "SeedBrachy isodose"
#: Isodose bands as (lower bound in % of the prescription, RGB): 0-50 % blue, 50-90 % cyan,
#: 90-100 % green, 100-150 % yellow, 150-200 % orange, >= 200 % red.
ISODOSE_BANDS = ((0, (0.0, 0.0, 0.6)), (50, (0.0, 0.8, 1.0)), (90, (0.0, 0.8, 0.0)),
                 (100, (1.0, 1.0, 0.0)), (150, (1.0, 0.55, 0.0)), (200, (1.0, 0.0, 0.0)))
ISODOSE_STEP_PERCENT = 10  # one colour-table entry per 10 % of the prescription
ISODOSE_ENTRIES = 21  # 0..210 % of the prescription: the last entry is >= 200 %
HIDE_BELOW_PERCENT = 50


def grid_from_volume_node(node):
    """The :class:`Grid` of a volume node (its IJK-to-RAS matrix and image dimensions)."""
    require_node(node, "volume", "vtkMRMLVolumeNode")
    image = node.GetImageData()
    if image is None:
        raise InputError(f"volume '{node.GetName()}' has no image data")
    require_untransformed(node, "volume")
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    ijk_to_ras = matrix_to_array(m)
    extent = image.GetExtent()
    lo = np.array([extent[0], extent[2], extent[4]], dtype=float)
    dims = [extent[1] - extent[0] + 1, extent[3] - extent[2] + 1, extent[5] - extent[4] + 1]
    columns = ijk_to_ras[:3, :3]
    spacing = np.linalg.norm(columns, axis=0)
    origin = ijk_to_ras[:3, :3] @ lo + ijk_to_ras[:3, 3]
    return Grid(origin, spacing, columns / spacing, tuple(dims))


def array_from_volume_node(node):
    """(array ``[k, j, i]`` copy of the voxel values, :class:`Grid`) of a single-component volume node."""
    grid = grid_from_volume_node(node)
    scalars = node.GetImageData().GetPointData().GetScalars()
    if scalars is None or scalars.GetNumberOfComponents() != 1:
        raise InputError(f"volume '{node.GetName()}' must have one scalar component per voxel")
    return numpy_support.vtk_to_numpy(scalars).reshape(grid.shape).copy(), grid


def update_volume_node(node, array, grid):
    """Set a volume node's voxels from ``array`` ``[k, j, i]`` and its geometry from ``grid``."""
    require_node(node, "output volume", "vtkMRMLVolumeNode")
    array = np.asarray(array)
    if array.shape != tuple(grid.shape):
        raise InputError(f"array shape {array.shape} does not match grid shape {tuple(grid.shape)} ([k, j, i])")
    if array.dtype == bool:
        array = array.astype(np.uint8)
    image = vtk.vtkImageData()
    image.SetDimensions(*grid.dims)
    vtk_array = numpy_support.numpy_to_vtk(np.ascontiguousarray(array).ravel(), deep=1)
    vtk_array.SetName("ImageScalars")
    image.GetPointData().SetScalars(vtk_array)
    node.SetIJKToRASMatrix(array_to_matrix(grid.ijk_to_ras))
    node.SetAndObserveImageData(image)
    return node


def is_dose_volume(node):
    """True if ``node`` is a scalar volume marked as dose the SlicerRT way."""
    return (node is not None and node.IsA("vtkMRMLScalarVolumeNode")
            and node.GetAttribute(DOSE_VOLUME_ATTRIBUTE) is not None)


def isodose_color_node(scene):
    """The isodose colour table node of ``scene`` (created once; a user-edited one is reused)."""
    for node in _nodes_by_class(scene, "vtkMRMLColorTableNode"):
        if node.GetName() == ISODOSE_COLOR_NODE_NAME:
            return node
    node = scene.AddNewNodeByClass("vtkMRMLColorTableNode", ISODOSE_COLOR_NODE_NAME)
    node.SetTypeToUser()
    n = ISODOSE_ENTRIES
    node.SetNumberOfColors(n)
    node.GetLookupTable().SetTableRange(0, n - 1)
    for index in range(n):
        percent = index * ISODOSE_STEP_PERCENT
        rgb = [c for lower, c in ISODOSE_BANDS if percent >= lower][-1]
        node.SetColor(index, f"{percent}% Rx", *rgb, 1.0)
    return node


#: Dose-node attribute: the seeds, model and formalism the dose was computed from (JSON; ``dosimetry.mark_dose_seeds``).
DOSE_SEEDS_ATTRIBUTE = ATTRIBUTE_PREFIX + "DoseSeeds"
#: Dose-node attribute: the dose outside the node's grid is below this (Gy), as the dose-grid policy made it.
OUTSIDE_BELOW_ATTRIBUTE = ATTRIBUTE_PREFIX + "DoseOutsideGridBelowGy"


def set_dose_volume(node, dose_gy, grid, prescription_gy, description="", outside_below_gy=None):
    """Write dose (Gy) into scalar volume ``node``, mark it as a SlicerRT dose volume and colour it.

    Args:
        node: output vtkMRMLScalarVolumeNode (in a scene).
        dose_gy: float array ``[k, j, i]`` on ``grid`` (Gy).
        grid: :class:`Grid` of the dose.
        prescription_gy: prescription (Gy) > 0: sets the isodose window 0..210 % of it.
        description: how the dose was computed (kept as the node description).
        outside_below_gy: a bound (Gy) on the dose outside ``grid`` when known (the dose-grid policy's
            threshold), kept as :data:`OUTSIDE_BELOW_ATTRIBUTE`; None removes an earlier one.

    An earlier node's seeds (:data:`DOSE_SEEDS_ATTRIBUTE`) are removed: the writer of a dose from seeds marks them
    again (``dosimetry.mark_dose_seeds``).
    """
    require_node(node, "output dose volume", "vtkMRMLScalarVolumeNode")
    if not np.isfinite(prescription_gy) or prescription_gy <= 0:
        raise InputError(f"prescription {prescription_gy!r} Gy invalid: need a value > 0 Gy")
    scene = node.GetScene()
    if scene is None:
        raise InputError(f"output dose volume '{node.GetName()}' is not in a MRML scene")
    require_writable_output(node, "output dose volume", node.GetImageData() is not None, ROLE_DOSE)
    update_volume_node(node, np.asarray(dose_gy, dtype=np.float32), grid)
    node.SetAttribute(DOSE_VOLUME_ATTRIBUTE, "1")
    node.SetAttribute(DOSE_UNIT_NAME_ATTRIBUTE, "Gy")
    node.SetAttribute(DOSE_UNIT_VALUE_ATTRIBUTE, "1.0")
    node.SetAttribute(PRESCRIPTION_ATTRIBUTE, repr(float(prescription_gy)))
    node.SetAttribute(ROLE_ATTRIBUTE, ROLE_DOSE)
    node.RemoveAttribute(DOSE_SEEDS_ATTRIBUTE)
    if outside_below_gy is None:
        node.RemoveAttribute(OUTSIDE_BELOW_ATTRIBUTE)
    else:
        node.SetAttribute(OUTSIDE_BELOW_ATTRIBUTE, repr(float(outside_below_gy)))
    if description:
        node.SetDescription(description)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    display.SetAndObserveColorNodeID(isodose_color_node(scene).GetID())
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, ISODOSE_ENTRIES * ISODOSE_STEP_PERCENT / 100.0 * prescription_gy)
    display.SetApplyThreshold(1)
    display.AutoThresholdOff()
    display.SetThreshold(HIDE_BELOW_PERCENT / 100.0 * prescription_gy, float(np.max(dose_gy)) + 1.0)
    _mark_study_dose_unit(node)
    return node


def _mark_study_dose_unit(node):
    """Set the dose unit on the volume's subject-hierarchy study if it has none (SlicerRT reads it there)."""
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(node.GetScene())
    if sh is None:
        return
    item = sh.GetItemByDataNode(node)
    if not item:
        return
    parent = sh.GetItemParent(item)
    if parent and sh.GetItemLevel(parent) == "Study" and not sh.GetItemAttribute(parent, DOSE_UNIT_NAME_ATTRIBUTE):
        sh.SetItemAttribute(parent, DOSE_UNIT_NAME_ATTRIBUTE, "Gy")
        sh.SetItemAttribute(parent, DOSE_UNIT_VALUE_ATTRIBUTE, "1.0")


def _nodes_by_class(scene, class_name):
    return [scene.GetNthNodeByClass(i, class_name) for i in range(scene.GetNumberOfNodesByClass(class_name))]
