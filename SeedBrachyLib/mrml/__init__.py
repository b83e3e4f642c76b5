"""The MRML bridge: SeedBrachyLib data <-> Slicer MRML nodes (needs ``slicer``: Slicer or slicer-core).

The only part of SeedBrachyLib that imports ``slicer``, and only ``slicer.vtkMRML*`` classes,
Slicer's static logic methods and vtk. Functions take the nodes they work on and find the
scene with ``node.GetScene()``; where new nodes must be created they take the scene explicitly.
Nothing here uses ``slicer.mrmlScene`` or ``slicer.app``, so Slicer and headless scripts
(slicer-core) run the same code.

Submodules, one concern each:

* :mod:`.volumes` -- scalar volume node <-> (array ``[k, j, i]``, :class:`~SeedBrachyLib.grid.Grid`);
  dose array -> dose volume node marked as SlicerRT marks dose (Gy), isodose colours.
* :mod:`.segmentations` -- segments -> masks and :class:`~SeedBrachyLib.structures.Structure` on a
  dose grid; masks -> segments; CT -> body and skin.
* :mod:`.markups` -- seeds <-> one fiducial node per plan (axis and S_K kept per control point);
  needles <-> line nodes (entry -> tip).
* :mod:`.planning` -- template needles and seeds (optimised or a loading pattern) into markups; the
  generated plan is kept on the node so seeds edited by hand are never replaced without asking.
* :mod:`.tables` -- DVH metrics, DVH curves (table + plot chart) and plan checks -> table nodes.
* :mod:`.parameters` -- plan settings kept in the scene (the module's parameter node).
* :mod:`.actions` -- each button of the module's panel as one function of the parameter node.
* :mod:`.dicom` -- DICOM RT folders <-> CT, segmentation, seeds and dose nodes, each node linked to its DICOM
  object by SOP Instance UID attributes.
* :mod:`.scene` -- headless application set-up for slicer-core; saving and loading .mrb bundles.
"""

#: Prefix of every node attribute SeedBrachy writes.
ATTRIBUTE_PREFIX = "SeedBrachy."
#: Node attribute naming what a node is in a SeedBrachy plan (values: the ``ROLE_*`` constants).
ROLE_ATTRIBUTE = ATTRIBUTE_PREFIX + "Role"
ROLE_SEEDS = "Seeds"
ROLE_NEEDLE = "Needle"
ROLE_DOSE = "Dose"
ROLE_DVH_METRICS = "DVHMetrics"
ROLE_DVH_CURVES = "DVHCurves"
ROLE_CHECKS = "Checks"
