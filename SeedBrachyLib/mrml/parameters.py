"""Plan settings kept in the scene: the SeedBrachy module's parameter node.

The parameter node is the scene's singleton ``vtkMRMLScriptedModuleNode`` tagged "SeedBrachy",
the node Slicer's ``ScriptedLoadableModuleLogic.getParameterNode()`` returns for the module.
Values are stored exactly as Slicer's ``parameterNodeWrapper`` stores them (numbers with
``str``, booleans as "True"/"False", nodes as node references whose role is the parameter
name, lists of strings as ``<name>_len`` and ``<name>_0``, ``<name>_1``, ...), so a scene
written headless opens in the module with every setting in place, and the module's typed
wrapper (``SeedBrachyParameterNode``) declares the same names, types and defaults as
:data:`PARAMETERS` (a test checks this).
"""

from __future__ import annotations

from ..errors import InputError
from ..sources import DEFAULT_U_PER_MCI

MODULE_NAME = "SeedBrachy"
#: Side the needles enter from -> needle direction (RAS unit vector, entry -> tip).
NEEDLE_ENTRY_DIRECTIONS = {"right": (-1.0, 0.0, 0.0), "left": (1.0, 0.0, 0.0),
                           "anterior": (0.0, -1.0, 0.0), "posterior": (0.0, 1.0, 0.0)}

#: name -> (type, default). Node-valued parameters have the MRML class name (str) as type; ``list`` is a
#: list of strings. ``needleEntry`` is a key of :data:`NEEDLE_ENTRY_DIRECTIONS`; ``nogoSegmentIDs`` are the
#: segments needles must avoid. Checks: ``indication`` is a key of ``checks.available_indications()``;
#: ``skinD2ccLimitGy`` and ``oarLimitGy`` (Gy, 0 = no limit) are user limits, the latter on segment
#: ``oarSegmentID`` for metric ``oarMetric`` (one of ``planning.optimize.OAR_METRICS``).
PARAMETERS = {
    "ctVolume": ("vtkMRMLScalarVolumeNode", None),
    "segmentation": ("vtkMRMLSegmentationNode", None),
    "targetSegmentID": (str, ""),
    "sourceModel": (str, "I125_OncoSeed6711"),
    "seedActivityMci": (float, 0.5),
    "uPerMci": (float, DEFAULT_U_PER_MCI),
    "prescriptionGy": (float, 120.0),
    "seeds": ("vtkMRMLMarkupsFiducialNode", None),
    "needleEntry": (str, "right"),
    "nogoSegmentIDs": (list, []),
    "formalism": (str, "line"),
    "doseSpacingMm": (float, 1.0),
    "doseMarginMm": (float, 10.0),
    "doseVolume": ("vtkMRMLScalarVolumeNode", None),
    "dvhTable": ("vtkMRMLTableNode", None),
    "dvhChart": ("vtkMRMLPlotChartNode", None),
    "checksTable": ("vtkMRMLTableNode", None),
    "indication": (str, "lymph-node-metastases"),
    "skinD2ccLimitGy": (float, 0.0),
    "oarSegmentID": (str, ""),
    "oarMetric": (str, "D2cc"),
    "oarLimitGy": (float, 0.0),
    "postImplantCt": ("vtkMRMLScalarVolumeNode", None),
    "postImplantSeeds": ("vtkMRMLMarkupsFiducialNode", None),
    "registrationTransform": ("vtkMRMLLinearTransformNode", None),
    "carriedSegmentation": ("vtkMRMLSegmentationNode", None),
    "postSeedAxis": (str, "detection"),
    "postDoseVolume": ("vtkMRMLScalarVolumeNode", None),
    "comparisonTable": ("vtkMRMLTableNode", None),
}


def parameter_node(scene, create=True):
    """The module's parameter node in ``scene`` (created with the module's tag if missing and ``create``)."""
    node = scene.GetSingletonNode(MODULE_NAME, "vtkMRMLScriptedModuleNode")
    if node is None and create:
        node = scene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
        node.UnRegister(None)
        node.SetSingletonTag(MODULE_NAME)
        node.SetModuleName(MODULE_NAME)
        node.SetName(scene.GenerateUniqueName(MODULE_NAME))
        node = scene.AddNode(node)
    return node


def write_settings(node, **values):
    """Store settings (names of :data:`PARAMETERS`) in parameter node ``node``."""
    for name, value in values.items():
        if name not in PARAMETERS:
            raise InputError(f"unknown plan setting '{name}': allowed are {', '.join(PARAMETERS)}")
        kind, _ = PARAMETERS[name]
        if isinstance(kind, str):
            if value is not None and not value.IsA(kind):
                raise InputError(f"setting '{name}' needs a {kind}, got a {value.GetClassName()}")
            node.SetParameter(name, "")
            node.SetNodeReferenceID(name, value.GetID() if value is not None else None)
        elif kind is bool:
            node.SetParameter(name, "True" if value else "False")
        elif kind is list:
            if isinstance(value, str):
                raise InputError(f"setting '{name}' needs a list of strings, got the string {value!r}")
            old_length = int(node.GetParameter(f"{name}_len") or 0)
            for i, item in enumerate(value):
                node.SetParameter(f"{name}_{i}", str(item))
            node.SetParameter(f"{name}_len", str(len(value)))
            for i in range(len(value), old_length):
                node.UnsetParameter(f"{name}_{i}")
        else:
            node.SetParameter(name, str(kind(value)))


def read_settings(node):
    """All settings of :data:`PARAMETERS` from parameter node ``node`` (defaults where unset)."""
    values = {}
    for name, (kind, default) in PARAMETERS.items():
        if kind is list:
            values[name] = [node.GetParameter(f"{name}_{i}") for i in range(int(node.GetParameter(f"{name}_len") or 0))]
        elif not node.HasParameter(name):
            values[name] = default
        elif isinstance(kind, str):
            values[name] = node.GetNodeReference(name)
        elif kind is bool:
            values[name] = node.GetParameter(name) == "True"
        else:
            values[name] = kind(node.GetParameter(name))
    return values
