"""Headless MRML application set-up (slicer-core) and Slicer scene bundles (.mrb).

Inside Slicer the application already exists: use the scene of your nodes. In plain Python
with the slicer-core wheel, :func:`headless_application` builds what Slicer's application
would: an application logic on the scene, the default colour nodes, the Volumes,
Segmentations, Markups, Tables, Plots, Transforms and Subject Hierarchy logics (markups and
table storage need them), and a cache manager plus data I/O manager on a fresh temporary
folder (needed to read .mrb bundles).
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from dataclasses import dataclass, field

import slicer

from ..errors import InputError

MODULE_LOGICS = (("Volumes", "vtkSlicerVolumesLogic"), ("Segmentations", "vtkSlicerSegmentationsModuleLogic"),
                 ("Markups", "vtkSlicerMarkupsLogic"), ("Tables", "vtkSlicerTablesLogic"),
                 ("Plots", "vtkSlicerPlotsLogic"), ("Transforms", "vtkSlicerTransformLogic"),
                 ("SubjectHierarchy", "vtkSlicerSubjectHierarchyModuleLogic"))


@dataclass
class HeadlessApplication:
    """A scene with the logics Slicer's application would give it (keep this object alive while in use)."""

    scene: object
    application_logic: object
    logics: dict = field(default_factory=dict)
    cache_dir: str = ""


def headless_application(scene=None, set_global_scene=True):
    """Set up ``scene`` (default: a new vtkMRMLScene) like Slicer's application does.

    Args:
        scene: an existing vtkMRMLScene, or None for a new one.
        set_global_scene: also set ``slicer.mrmlScene`` (used by ``slicer.util`` helpers only;
            SeedBrachyLib itself never reads it).
    """
    scene = scene if scene is not None else slicer.vtkMRMLScene()
    cache_dir = tempfile.mkdtemp(prefix="seedbrachy-cache-")
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    # an empty share folder: no colour files to load, and no warning that it is missing
    os.makedirs(os.path.join(cache_dir, "share", "ColorFiles"))
    app.SetHomeDirectory(cache_dir)
    app.SetShareDirectory("share")
    colors = slicer.vtkSlicerColorLogic()
    colors.SetMRMLApplicationLogic(app)
    colors.SetMRMLScene(scene)
    app.SetColorLogic(colors)
    logics = {"Colors": colors}
    for name, class_name in MODULE_LOGICS:
        logic = getattr(slicer, class_name)()
        logic.SetMRMLApplicationLogic(app)
        logic.SetMRMLScene(scene)
        app.SetModuleLogic(name, logic)
        logics[name] = logic
    remote_cache = os.path.join(cache_dir, "cache")
    os.makedirs(remote_cache)
    open(os.path.join(remote_cache, ".slicer-cache"), "w").close()  # marks the folder as a cache
    cache = slicer.vtkCacheManager()
    cache.SetRemoteCacheDirectory(remote_cache)
    scene.SetCacheManager(cache)
    io_manager = slicer.vtkDataIOManager()
    io_manager.SetCacheManager(cache)
    scene.SetDataIOManager(io_manager)
    if set_global_scene:
        slicer.mrmlScene = scene
    return HeadlessApplication(scene, app, logics, cache_dir)


def save_bundle(scene, path):
    """Write ``scene`` with all its data as a Slicer scene bundle (.mrb) at ``path``; return the path."""
    path = os.path.abspath(os.fspath(path))
    if not path.lower().endswith(".mrb"):
        raise InputError(f"scene bundle path '{path}' must end with .mrb")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not scene.WriteToMRB(path):
        raise OSError(f"could not write the scene bundle '{path}'")
    return path


def load_bundle(path):
    """Read a .mrb bundle into a new headless application scene; return the :class:`HeadlessApplication`."""
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise InputError(f"scene bundle '{path}' does not exist")
    if not zipfile.is_zipfile(path):
        raise InputError(f"'{path}' is not a Slicer scene bundle: a .mrb file is a zip archive, this one is not "
                         "(truncated, or another kind of file)")
    app = headless_application(set_global_scene=False)
    if not app.scene.ReadFromMRB(path):
        raise InputError(f"could not read the scene bundle '{path}': the archive holds no readable .mrml scene")
    return app
