"""MRML bridge, volumes: geometry and voxels survive node round trips; the dose node is marked as SlicerRT does."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

pytest.importorskip("slicer")

from SeedBrachyLib.errors import InputError  # noqa: E402
from SeedBrachyLib.grid import Grid  # noqa: E402
from SeedBrachyLib.mrml import volumes  # noqa: E402


def _rotation(axis, degrees):
    axis = np.asarray(axis, float)
    return Rotation.from_rotvec(np.radians(degrees) * axis / np.linalg.norm(axis)).as_matrix()


OBLIQUE = Grid([10.0, -20.0, 5.0], [0.7, 0.9, 1.3], _rotation([1, 2, 3], 30.0), (11, 7, 5))


def test_volume_round_trip_keeps_oblique_geometry_and_voxels(mrml_app):
    node = mrml_app.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "v")
    values = np.arange(OBLIQUE.n_voxels, dtype=np.int16).reshape(OBLIQUE.shape)
    volumes.update_volume_node(node, values, OBLIQUE)
    array, grid = volumes.array_from_volume_node(node)
    assert np.array_equal(array, values)
    assert grid.dims == OBLIQUE.dims
    assert np.allclose(grid.ijk_to_ras, OBLIQUE.ijk_to_ras, atol=1e-9)
    # Slicer's own index -> RAS mapping of a voxel agrees with the library's
    ijk = np.array([3.0, 5.0, 2.0])
    ras = [0.0] * 4
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    m.MultiplyPoint([*ijk, 1.0], ras)
    assert np.allclose(ras[:3], OBLIQUE.to_ras(ijk))


def test_bool_mask_is_stored_as_uint8(mrml_app):
    node = mrml_app.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "m")
    mask = np.zeros(OBLIQUE.shape, bool)
    mask[1, 2, 3] = True
    volumes.update_volume_node(node, mask, OBLIQUE)
    array, _ = volumes.array_from_volume_node(node)
    assert array.dtype == np.uint8 and array.sum() == 1 and array[1, 2, 3] == 1


def test_shape_mismatch_and_missing_node_are_input_errors(mrml_app):
    node = mrml_app.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "v")
    with pytest.raises(InputError, match="does not match grid shape"):
        volumes.update_volume_node(node, np.zeros((2, 2, 2)), OBLIQUE)
    with pytest.raises(InputError, match="no volume given"):
        volumes.grid_from_volume_node(None)
    with pytest.raises(InputError, match="has no image data"):
        volumes.grid_from_volume_node(node)


def test_transformed_volume_is_refused(mrml_app):
    scene = mrml_app.scene
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "v")
    volumes.update_volume_node(node, np.zeros(OBLIQUE.shape, np.float32), OBLIQUE)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "T")
    node.SetAndObserveTransformNodeID(transform.GetID())
    with pytest.raises(InputError, match="harden the transform"):
        volumes.array_from_volume_node(node)


def test_dose_node_is_a_slicerrt_dose_volume_with_isodose_display(mrml_app):
    scene = mrml_app.scene
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Dose")
    rx = 120.0
    dose = np.linspace(0.0, 300.0, OBLIQUE.n_voxels).reshape(OBLIQUE.shape).astype(np.float32)
    volumes.set_dose_volume(node, dose, OBLIQUE, rx, "test dose")
    assert volumes.is_dose_volume(node)
    assert node.GetAttribute("DicomRtImport.DoseVolume") == "1"
    assert node.GetAttribute("DicomRtImport.DoseUnitName") == "Gy"
    assert float(node.GetAttribute("DicomRtImport.DoseUnitValue")) == 1.0
    array, grid = volumes.array_from_volume_node(node)
    assert array.dtype == np.float32 and np.array_equal(array, dose)
    assert np.allclose(grid.ijk_to_ras, OBLIQUE.ijk_to_ras)
    display = node.GetDisplayNode()
    assert display.GetWindow() == pytest.approx(2.1 * rx) and display.GetLevel() == pytest.approx(1.05 * rx)
    assert display.GetApplyThreshold() and display.GetLowerThreshold() == pytest.approx(0.5 * rx)
    colors = display.GetColorNode()
    assert colors.GetName() == volumes.ISODOSE_COLOR_NODE_NAME
    # window 0..210% Rx over 21 entries: a dose d falls in entry floor(d / (10% Rx))
    n = colors.GetNumberOfColors()
    assert n == 21

    def color_at(fraction_of_rx):
        rgba = [0.0] * 4
        colors.GetColor(min(n - 1, int(np.floor(fraction_of_rx * rx / display.GetWindow() * n + 1e-9))), rgba)
        return rgba[:3]

    assert color_at(1.00) == pytest.approx([1.0, 1.0, 0.0], abs=1 / 255)  # 100-150%: yellow
    assert color_at(0.95) == pytest.approx([0.0, 0.8, 0.0], abs=1 / 255)  # 90-100%: green
    assert color_at(0.60) == pytest.approx([0.0, 0.8, 1.0], abs=1 / 255)  # 50-90%: cyan
    assert color_at(1.60) == pytest.approx([1.0, 0.55, 0.0], abs=1 / 255)  # 150-200%: orange
    assert color_at(2.50) == pytest.approx([1.0, 0.0, 0.0], abs=1 / 255)  # >= 200%: red
    # a second dose reuses the colour table instead of adding another
    other = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Dose 2")
    volumes.set_dose_volume(other, dose, OBLIQUE, rx)
    assert other.GetDisplayNode().GetColorNode() is colors or \
        other.GetDisplayNode().GetColorNodeID() == display.GetColorNodeID()


def test_dose_unit_goes_to_the_study_that_has_none(mrml_app):
    import slicer

    scene = mrml_app.scene
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Dose")
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    patient = sh.CreateSubjectItem(sh.GetSceneItemID(), "Patient")
    study = sh.CreateStudyItem(patient, "Study")
    sh.CreateItem(study, node)
    volumes.set_dose_volume(node, np.ones(OBLIQUE.shape), OBLIQUE, 100.0)
    assert sh.GetItemAttribute(study, "DicomRtImport.DoseUnitName") == "Gy"


def test_bad_prescription_is_an_input_error(mrml_app):
    node = mrml_app.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Dose")
    with pytest.raises(InputError, match="prescription"):
        volumes.set_dose_volume(node, np.ones(OBLIQUE.shape), OBLIQUE, 0.0)


