"""Seeds <-> one point-list (fiducial) node per plan; needles <-> line nodes.

Seeds: one control point per seed at its centre (mm RAS), labelled with the seed label. Each seed's
axis and strength are kept on the node, by control-point ID, in the attribute :data:`SEED_DATA_ATTRIBUTE`
(JSON ``{id: {"axis": [x, y, z], "strength_u": S_K}}``, unit vector RAS, U), so they survive saving and
reloading and are not touched when the user edits a point's description, which stays free text. The
node carries ``SeedBrachy.Role`` = "Seeds" and ``SeedBrachy.SourceModel`` (the TG-43 model key).
Points a user adds by hand have no stored data; reading them needs a default axis and strength. Points
the user marks as missing (Markups "position missing") are not seeds in the patient: they are left out.
Scenes written before (axis and strength as JSON in the description) are still read, strictly.

Needles: one line node per needle, control point 0 = entry (skin), point 1 = tip (mm RAS),
named by the needle label, with ``SeedBrachy.Role`` = "Needle". The seeds node references its
needles (reference role :data:`NEEDLE_REFERENCE_ROLE`) so a plan's needles are found again
after reloading.
"""

from __future__ import annotations

import json

import numpy as np
import vtk

from ..errors import InputError
from ..seeds import Needle, Seed
from . import ATTRIBUTE_PREFIX, ROLE_ATTRIBUTE, ROLE_NEEDLE, ROLE_SEEDS
from ._common import require_node, require_scene, require_untransformed

SOURCE_MODEL_ATTRIBUTE = ATTRIBUTE_PREFIX + "SourceModel"
SEED_DATA_ATTRIBUTE = ATTRIBUTE_PREFIX + "SeedData"
NEEDLE_REFERENCE_ROLE = "SeedBrachyNeedle"
FIDUCIAL_CLASS = "vtkMRMLMarkupsFiducialNode"
LINE_CLASS = "vtkMRMLMarkupsLineNode"


#: Axis (RAS unit vector) given to seeds placed by hand, which carry no stored axis.
HAND_PLACED_SEED_AXIS = (0.0, 0.0, 1.0)


def write_seeds(node, seeds, model_key=None, overwrite=False):
    """Put ``seeds`` into fiducial node ``node``: one control point per seed, axis and S_K kept by point ID.

    A node that already has control points is an InputError unless ``overwrite`` (then they are
    replaced), so hand-edited seeds are never replaced silently.
    """
    require_node(node, "seed markups", FIDUCIAL_CLASS)
    if node.GetNumberOfControlPoints() and not overwrite:
        raise InputError(f"seed markups '{node.GetName()}' already hold {node.GetNumberOfControlPoints()} points; "
                         "pass overwrite=True (or choose a new node) to replace them")
    require_untransformed(node, "seed markups")
    was_modifying = node.StartModify()
    try:
        node.RemoveAllControlPoints()
        data = {}
        for seed in seeds:
            index = node.AddControlPoint(vtk.vtkVector3d(*seed.position), seed.label)
            axis = [round(float(a), 12) for a in seed.axis]
            data[node.GetNthControlPointID(index)] = {"axis": axis, "strength_u": float(seed.strength_u)}
            node.SetNthControlPointDescription(index, f"S_K {seed.strength_u:.4g} U, axis ({axis[0]:.3f}, "
                                                      f"{axis[1]:.3f}, {axis[2]:.3f})")
        node.SetAttribute(SEED_DATA_ATTRIBUTE, json.dumps(data))
        node.SetAttribute(ROLE_ATTRIBUTE, ROLE_SEEDS)
        if model_key:
            node.SetAttribute(SOURCE_MODEL_ATTRIBUTE, str(model_key))
    finally:
        node.EndModify(was_modifying)
    return node


def missing_points(node):
    """Labels of the points the user marked as missing (position status "missing"): not dosed."""
    return [node.GetNthControlPointLabel(i) for i in range(node.GetNumberOfControlPoints())
            if node.GetNthControlPointPositionStatus(i) == node.PositionMissing]


def read_seeds(node, default_strength_u=None, default_axis=None):
    """Seeds (mm RAS, unit axis, S_K in U) from a fiducial node written by :func:`write_seeds`.

    Points without stored axis or strength (added by hand) take ``default_axis`` /
    ``default_strength_u`` (U); without defaults they are an InputError naming the point. Points marked
    missing are left out (:func:`missing_points`); a node with no point left is an InputError.
    """
    require_node(node, "seed markups", FIDUCIAL_CLASS)
    require_untransformed(node, "seed markups")
    if node.GetNumberOfControlPoints() == 0:
        raise InputError(f"seed markups '{node.GetName()}' hold no points: place or plan seeds first")
    stored_all = _seed_data(node)
    seeds = []
    for index in range(node.GetNumberOfControlPoints()):
        if node.GetNthControlPointPositionStatus(index) == node.PositionMissing:
            continue
        label = node.GetNthControlPointLabel(index)
        where = f"seed '{label}' (point {index + 1} of '{node.GetName()}')"
        stored = stored_all.get(node.GetNthControlPointID(index)) or _legacy_description(node, index, where)
        axis = stored.get("axis", default_axis)
        strength = stored.get("strength_u", default_strength_u)
        if axis is None or strength is None:
            absent = "axis" if axis is None else "strength"
            raise InputError(f"{where} has no stored {absent} (placed by hand?): give a default seed axis and "
                             "strength (U)")
        seeds.append(Seed(np.array(node.GetNthControlPointPositionVector(index)), _axis(axis, where), strength, label))
    if not seeds:
        raise InputError(f"every point of '{node.GetName()}' is marked missing: no seed to dose")
    return seeds


def _axis(value, where):
    try:
        axis = np.asarray(value, dtype=float).reshape(3)
    except (TypeError, ValueError) as error:
        raise InputError(f"{where}: stored axis {value!r} invalid: need 3 numbers (RAS)") from error
    return axis


def _seed_data(node):
    """Point ID -> {"axis", "strength_u"} stored by :func:`write_seeds`; InputError if the attribute is corrupt."""
    text = node.GetAttribute(SEED_DATA_ATTRIBUTE)
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError as error:
        raise InputError(f"the stored seed data of '{node.GetName()}' ({SEED_DATA_ATTRIBUTE}) is corrupt: {error}; "
                         "plan the seeds again, or remove the attribute to treat them as placed by hand") from error
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise InputError(f"the stored seed data of '{node.GetName()}' ({SEED_DATA_ATTRIBUTE}) is not a map of "
                         "point ID -> {axis, strength_u}")
    return data


def _legacy_description(node, index, where):
    """Axis and strength from a point description in the format of earlier scenes (JSON), else {}."""
    text = node.GetNthControlPointDescription(index)
    if not text or not text.lstrip().startswith("{"):
        return {}
    try:
        data = json.loads(text)
    except ValueError as error:
        raise InputError(f"{where}: its description looks like stored seed data but is not valid JSON "
                         f"({error}): correct it, or clear it to treat the seed as placed by hand") from error
    if not isinstance(data, dict):
        return {}
    return {key: data[key] for key in ("axis", "strength_u") if key in data}


def snapshot(node):
    """What a seeds node holds, for comparing: per point its ID, label, position (mm, rounded to 1e-4), stored
    axis and strength, and position status; the source model."""
    data = _seed_data(node)
    points = [[node.GetNthControlPointID(i), node.GetNthControlPointLabel(i),
               [round(float(x), 4) for x in node.GetNthControlPointPositionVector(i)],
               data.get(node.GetNthControlPointID(i)), node.GetNthControlPointPositionStatus(i)]
              for i in range(node.GetNumberOfControlPoints())]
    return {"points": points, "model": source_model_key(node)}


def source_model_key(node):
    """The TG-43 model key stored on a seeds node, or None."""
    return node.GetAttribute(SOURCE_MODEL_ATTRIBUTE)


def write_needles(seeds_node, needles, overwrite=False):
    """One line node per needle (entry -> tip, mm RAS), referenced from ``seeds_node``; return them.

    Needles already referenced by ``seeds_node`` are an InputError unless ``overwrite`` (then
    those line nodes are removed from the scene first).
    """
    require_node(seeds_node, "seed markups", FIDUCIAL_CLASS)
    scene = require_scene(seeds_node, "seed markups")
    old = needle_nodes(seeds_node)
    if old and not overwrite:
        raise InputError(f"seed markups '{seeds_node.GetName()}' already have {len(old)} needles; "
                         "pass overwrite=True to replace them")
    seeds_node.RemoveNodeReferenceIDs(NEEDLE_REFERENCE_ROLE)
    for line in old:
        scene.RemoveNode(line)
    lines = []
    for n, needle in enumerate(needles):
        line = scene.AddNewNodeByClass(LINE_CLASS, needle.label or f"Needle {n + 1}")
        line.AddControlPoint(vtk.vtkVector3d(*needle.entry), "entry")
        line.AddControlPoint(vtk.vtkVector3d(*needle.tip), "tip")
        line.SetAttribute(ROLE_ATTRIBUTE, ROLE_NEEDLE)
        line.CreateDefaultDisplayNodes()
        seeds_node.AddNodeReferenceID(NEEDLE_REFERENCE_ROLE, line.GetID())
        lines.append(line)
    return lines


def needle_nodes(seeds_node):
    """Line nodes referenced as needles by ``seeds_node``, in order."""
    return [seeds_node.GetNthNodeReference(NEEDLE_REFERENCE_ROLE, i)
            for i in range(seeds_node.GetNumberOfNodeReferences(NEEDLE_REFERENCE_ROLE))]


def read_needle(line_node):
    """A :class:`~SeedBrachyLib.seeds.Needle` from a line node (point 0 = entry, point 1 = tip)."""
    require_node(line_node, "needle line", LINE_CLASS)
    require_untransformed(line_node, "needle line")
    if line_node.GetNumberOfControlPoints() != 2:
        raise InputError(f"needle line '{line_node.GetName()}' has {line_node.GetNumberOfControlPoints()} points: "
                         "a needle needs its entry and tip")
    return Needle(np.array(line_node.GetNthControlPointPositionVector(0)),
                  np.array(line_node.GetNthControlPointPositionVector(1)), line_node.GetName())


def read_needles(seeds_node):
    """The needles of a plan (the line nodes referenced by ``seeds_node``)."""
    return [read_needle(line) for line in needle_nodes(seeds_node)]
