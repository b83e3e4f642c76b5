"""A case as the commands see it: CT (optional), structures on a reference grid, the GTV/CTV rule, identification.

Target rule (as in the module): the user names the GTV; the CTV is the structure named by ``--ctv``,
or else made once from the GTV and the margin (setting ``ctvMarginMm``) clipped to the body. The
published goals say which of the two they are read on (:mod:`SeedBrachyLib.checks`). Every other
structure is an organ at risk unless left out with ``--ignore``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from .inputs import contour_grid, pick, read_image, read_structures, rtstruct_path

#: Structure names taken as the body outline, not as an organ at risk.
BODY_NAMES = ("body", "external", "skin_outline", "outline")


def add_case_arguments(p, ct_required=True):
    """--ct, --structures, --gtv, --ctv, --oar, --ignore."""
    p.add_argument("--ct", required=ct_required, help="planning CT: a folder of DICOM slices or a volume file (HU)")
    p.add_argument("--structures", required=True,
                   help="RT Structure Set file (or a folder holding one), or a folder of labelmaps (one per structure)")
    p.add_argument("--gtv", required=True, help="name of the GTV structure (matched exactly, or ignoring case)")
    p.add_argument("--ctv", help="name of the CTV structure; default: made from the GTV and --ctv-margin-mm")
    p.add_argument("--oar", action="append", default=None, metavar="NAME",
                   help="an organ at risk to evaluate (repeatable); default: every other structure")
    p.add_argument("--ignore", action="append", default=[], metavar="NAME",
                   help="a structure to leave out (repeatable; a name the case lacks is noted, not an error)")


@dataclass
class Case:
    """Structures (bool masks: voxels at least half inside) on ``grid``; ``ct`` is the :class:`~.inputs.Image` or None
    (dose-only evaluation); ``read`` the structures as read, with their partial volumes (:meth:`fraction`)."""

    grid: object
    gtv_name: str
    gtv: np.ndarray
    ctv: np.ndarray | None
    ctv_name: str
    oars: dict
    ct: object = None
    identification: dict = field(default_factory=dict)
    frame_of_reference_uid: str = None
    notes: list = field(default_factory=list)
    read: dict = field(default_factory=dict)  # name -> Structure on grid as read (partial volumes kept)

    def targets(self):
        """name -> mask of the targets (GTV, CTV)."""
        out = {self.gtv_name: self.gtv}
        if self.ctv is not None:
            out[self.ctv_name] = self.ctv
        return out

    def fraction(self, name):
        """float32 ``[k, j, i]``: the part of each voxel inside structure ``name`` (as read, else its mask)."""
        read = self.read.get(name)
        return read.weights if read is not None else np.asarray({**self.targets(), **self.oars}[name], np.float32)

    def fine(self):
        """name -> ``(mask, grid)``: the sub-voxel geometry of the structures read from an RT Structure Set (their
        contours filled finer than the CT, ``Roi.fine``), for the DVH (``structures_from_masks(..., fine=)``)."""
        return {name: s.source for name, s in self.read.items() if s.source is not None}

    def target_names(self):
        """{"GTV": the user's GTV name, "CTV": the CTV's} for :func:`SeedBrachyLib.checks.run_checks`."""
        return {"GTV": self.gtv_name, "CTV": self.ctv_name}


def load_case(args, grid=None, ctv_margin_mm=None, body_threshold_hu=None, progress=None):
    """Read ``--ct`` and ``--structures`` and apply the target rule.

    Without a CT (``grid`` given, e.g. a dose grid), a CTV must be named with ``--ctv`` or the GTV is
    the only target.
    """
    ct = read_image(args.ct, "CT", progress=progress) if args.ct else None
    if ct is None and grid is None:
        raise InputError("give the CT (--ct) or a dose grid to read the structures on")
    if ct is None:
        rtstruct = rtstruct_path(args.structures)
        grid = contour_grid(rtstruct, grid) if rtstruct is not None else grid
    else:
        grid = ct.grid
    frame = getattr(getattr(ct, "series", None), "study", None)
    frame_uid = frame.frame_of_reference_uid if frame is not None else None
    read = read_structures(args.structures, grid, frame_uid)
    structures = {name: s.weights >= 0.5 for name, s in read.items()}
    notes = []
    for name in args.ignore:
        hits = [k for k in structures if k.lower() == str(name).lower()]
        for k in hits:
            del structures[k]
        if not hits:
            notes.append(f"--ignore {name}: no such structure")
    gtv_name = pick(structures, args.gtv, "GTV")
    if args.ctv:
        ctv_name = pick(structures, args.ctv, "CTV")
        ctv = structures[ctv_name]
    elif ct is not None:
        from ..planning.pipeline import make_ctv
        ctv_name = "CTV" if "CTV" not in structures else "CTV (GTV + margin)"
        ctv = make_ctv(ct.array, grid, structures[gtv_name], ctv_margin_mm, body_threshold_hu)
        notes.append(f"{ctv_name} = {gtv_name} + {ctv_margin_mm:g} mm, clipped to the body (CT)")
    else:
        ctv_name, ctv = "CTV", None
        notes.append(f"no CT and no --ctv: {gtv_name} is the only target; goals on the CTV are not evaluated")
    taken = {gtv_name, ctv_name}
    if args.oar:
        oar_names = [pick(structures, n, "organ at risk") for n in args.oar]
    else:
        oar_names = [n for n in structures if n not in taken and n.lower() not in BODY_NAMES]
    ident = dict(ct.identification) if ct is not None else {}
    ident.setdefault("Structures", str(args.structures))
    return Case(grid, gtv_name, structures[gtv_name], ctv, ctv_name, {n: structures[n] for n in oar_names}, ct,
                ident, frame_uid, notes, {n: read[n] for n in structures})
