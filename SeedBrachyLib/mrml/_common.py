"""Small helpers shared by the bridge modules (checks on nodes, matrices)."""

from __future__ import annotations

import numpy as np
import vtk

from ..errors import InputError


def require_node(node, what, class_name=None):
    """Raise InputError if ``node`` is None (or not a ``class_name``); return it."""
    if node is None:
        raise InputError(f"no {what} given: select a {class_name or 'node'}")
    if class_name is not None and not node.IsA(class_name):
        raise InputError(f"{what} '{node.GetName()}' is a {node.GetClassName()}: a {class_name} is needed")
    return node


def require_outputs(outputs, inputs):
    """Refuse an output node that is one of the input nodes (or another output): nothing the user made is
    overwritten by an action's result. ``outputs`` and ``inputs`` map a description to a node (or None)."""
    seen = {}
    for what, node in list(inputs.items()) + list(outputs.items()):
        if node is None:
            continue
        key = node.GetID() or id(node)
        if key in seen and what in outputs:
            raise InputError(f"the {what} '{node.GetName()}' is also the {seen[key]}: choose or create another "
                             f"node for the {what}")
        seen.setdefault(key, what)
    for what, node in outputs.items():
        require_node(node, what)


def require_writable_output(node, what, holds_data, role):
    """Refuse to write an output into a node that holds data SeedBrachy did not put there (the user's CT, a
    table or transform of their own): ``holds_data`` says whether it has content; a node carrying this
    ``role`` (SeedBrachy.Role) was written by SeedBrachy as that output and may be replaced."""
    from . import ROLE_ATTRIBUTE

    if holds_data and node.GetAttribute(ROLE_ATTRIBUTE) != role:
        kind = node.GetAttribute(ROLE_ATTRIBUTE)
        held = f"SeedBrachy's {kind}" if kind else "data SeedBrachy did not make"
        raise InputError(f"the {what} '{node.GetName()}' holds {held}: choose or create another node for the "
                         f"{what} (nothing you made is overwritten)")


def require_scene(node, what):
    """The scene of ``node``; InputError if the node is not in a scene."""
    scene = node.GetScene()
    if scene is None:
        raise InputError(f"{what} '{node.GetName()}' is not in a MRML scene")
    return scene


def require_untransformed(node, what):
    """Raise InputError if ``node`` sits under a transform (positions must be in world RAS)."""
    transform = node.GetParentTransformNode() if hasattr(node, "GetParentTransformNode") else None
    if transform is not None:
        raise InputError(f"{what} '{node.GetName()}' is under transform '{transform.GetName()}': "
                         "harden the transform first (Data module: right-click > Harden transform)")


def matrix_to_array(matrix):
    """vtkMatrix4x4 -> 4x4 numpy array."""
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def array_to_matrix(array):
    """4x4 numpy array -> vtkMatrix4x4."""
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r][c]))
    return matrix
