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
from ..settings import SETTINGS

MODULE_NAME = "SeedBrachy"

#: Node and segment parameters (scene references, not user settings): name -> MRML class name, or ``str``
#: (a segment ID of ``segmentation``) or ``list`` (segment IDs). ``gtvSegmentID`` and ``ctvSegmentID`` are the
#: targets (the CTV made once from the GTV, :func:`SeedBrachyLib.mrml.segmentations.make_ctv`);
#: ``nogoSegmentIDs`` the segments needles avoid; ``oarSegmentID`` the organ at risk of the user limit.
NODE_PARAMETERS = {
    "ctVolume": "vtkMRMLScalarVolumeNode",
    "segmentation": "vtkMRMLSegmentationNode",
    "gtvSegmentID": str,
    "ctvSegmentID": str,
    "seeds": "vtkMRMLMarkupsFiducialNode",
    "nogoSegmentIDs": list,
    "doseVolume": "vtkMRMLScalarVolumeNode",
    "dvhTable": "vtkMRMLTableNode",
    "dvhChart": "vtkMRMLPlotChartNode",
    "checksTable": "vtkMRMLTableNode",
    "oarSegmentID": str,
    "postImplantCt": "vtkMRMLScalarVolumeNode",
    "postImplantSeeds": "vtkMRMLMarkupsFiducialNode",
    "registrationTransform": "vtkMRMLLinearTransformNode",
    "carriedSegmentation": "vtkMRMLSegmentationNode",
    "postDoseVolume": "vtkMRMLScalarVolumeNode",
    "comparisonTable": "vtkMRMLTableNode",
}

#: name -> (type, default) of everything the parameter node holds: the user settings of
#: :data:`SeedBrachyLib.settings.SETTINGS` and the node parameters (MRML class name as type, default None;
#: segment IDs "" and lists []).
PARAMETERS = {**{name: (s.kind, s.default) for name, s in SETTINGS.items()},
              **{name: (kind, {str: "", list: []}.get(kind)) for name, kind in NODE_PARAMETERS.items()}}


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
            text = node.GetParameter(name)
            try:
                values[name] = kind(text)
            except ValueError as error:
                raise InputError(f"the scene's setting {name} = {text!r} is not a {kind.__name__}: set it again in "
                                 "the module panel") from error
    return values


#: Module action (its button in the panel) -> the parameters it needs, with how the panel names them.
ACTION_INPUTS = {
    "makeCtvButton": {"ctVolume": "CT", "gtvSegmentID": "GTV segment"},
    "planSeedsButton": {"ctVolume": "CT", "ctvSegmentID": "CTV segment", "seeds": "seeds point list"},
    "computeDoseButton": {"ctVolume": "CT", "ctvSegmentID": "CTV segment", "seeds": "seeds point list",
                          "doseVolume": "output dose volume"},
    "evaluateButton": {"ctvSegmentID": "CTV segment", "doseVolume": "dose volume", "dvhTable": "output table"},
    "detectSeedsButton": {"postImplantCt": "post-implant CT", "postImplantSeeds": "output seeds point list"},
    "registerButton": {"ctVolume": "pre-plan CT", "postImplantCt": "post-implant CT",
                       "registrationTransform": "output transform"},
    "carryContoursButton": {"ctvSegmentID": "CTV segment", "registrationTransform": "registration",
                            "postImplantCt": "post-implant CT", "carriedSegmentation": "output segmentation"},
    "computePostDoseButton": {"postImplantSeeds": "implanted seeds", "doseVolume": "pre-plan dose volume",
                              "postDoseVolume": "output post-plan dose volume"},
    "compareButton": {"doseVolume": "pre-plan dose", "postDoseVolume": "post-plan dose",
                      "ctvSegmentID": "CTV segment", "seeds": "planned seeds", "postImplantSeeds": "implanted seeds",
                      "comparisonTable": "output table"},
    "exportDicomButton": {"ctVolume": "CT", "seeds": "seeds point list"},
}


def values_of(node_or_wrapper):
    """name -> value of every parameter, from a typed parameter node wrapper or a raw parameter node."""
    if hasattr(node_or_wrapper, "GetParameter"):
        return read_settings(node_or_wrapper)
    return {name: getattr(node_or_wrapper, name) for name in PARAMETERS}


def missing_inputs(values):
    """Action -> the panel names of its inputs still missing in ``values`` (:func:`values_of`); [] = ready.

    A seeds point list without points counts as missing for the actions that dose it.
    """
    missing = {}
    for action, needs in ACTION_INPUTS.items():
        absent = [label for name, label in needs.items() if not values.get(name)]
        seeds = values.get("seeds") if action == "computeDoseButton" else values.get("postImplantSeeds") \
            if action in ("computePostDoseButton", "compareButton") else None
        if seeds is not None and not seeds.GetNumberOfControlPoints():
            absent.append("seeds (the point list is empty)")
        missing[action] = absent
    return missing
