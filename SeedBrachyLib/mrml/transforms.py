"""4x4 RAS matrices <-> linear transform nodes.

A vtkMRMLLinearTransformNode's *matrix to parent* maps a point of a node placed under it (its
child frame) to the parent frame (world, when the transform node itself is not transformed).
SeedBrachy writes a registration result ``post_to_pre`` (post-implant CT frame -> pre-plan CT
frame, mm RAS) as that matrix: putting the post-implant CT under the node lays it over the pre-plan CT.
"""

from __future__ import annotations

import numpy as np
import vtk

from . import ROLE_ATTRIBUTE
from ._common import array_to_matrix, matrix_to_array, require_node, require_writable_output

TRANSFORM_CLASS = "vtkMRMLLinearTransformNode"


def write_matrix(node, matrix_to_parent, role=None, description=""):
    """Set the 4x4 matrix-to-parent (mm RAS) of linear transform ``node``; optional role attribute and description."""
    require_node(node, "output transform", TRANSFORM_CLASS)
    current = vtk.vtkMatrix4x4()
    node.GetMatrixTransformToParent(current)
    require_writable_output(node, "output transform", not np.allclose(matrix_to_array(current), np.eye(4)), role)
    was_modifying = node.StartModify()
    node.SetMatrixTransformToParent(array_to_matrix(matrix_to_parent))
    if role:
        node.SetAttribute(ROLE_ATTRIBUTE, role)
    if description:
        node.SetDescription(description)
    node.EndModify(was_modifying)
    return node


def read_matrix_to_world(node):
    """4x4 numpy matrix (mm RAS) from ``node``'s frame to world, parents included."""
    require_node(node, "transform", TRANSFORM_CLASS)
    m = vtk.vtkMatrix4x4()
    node.GetMatrixTransformToWorld(m)
    return matrix_to_array(m)
