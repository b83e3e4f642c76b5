"""The loading sheet the implant team works from: per needle its template hole, entry, angles, depth and seeds.

Angles of a needle's insertion direction d = (dR, dA, dS) (unit vector, RAS):

* ``axial_angle_deg``: in the axial plane, from the anterior-to-posterior direction, positive
  towards the patient's left: ``atan2(-dR, -dA)`` (0 = straight down from the front of a
  supine patient, 90 = from the patient's right towards the left, -90 = from the left, 180 = from the back).
* ``tilt_deg``: angle to the axial plane, positive towards superior (cranial): ``asin(dS)``
  (the gantry-style cranio-caudal tilt).

Depths are in mm from the skin entry along the needle.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

import numpy as np

COLUMNS = ("needle", "hole", "entry_r_mm", "entry_a_mm", "entry_s_mm", "axial_angle_deg", "tilt_deg", "depth_mm",
           "n_seeds", "seed_depths_mm")


def needle_angles(direction):
    """(axial angle, tilt) in degrees of a needle direction (RAS); see the module notes."""
    d = np.asarray(direction, dtype=float)
    d = d / np.linalg.norm(d)
    return math.degrees(math.atan2(0.0 - d[0], 0.0 - d[1])), math.degrees(math.asin(float(np.clip(d[2], -1.0, 1.0))))


@dataclass(frozen=True)
class NeedleLoading:
    """One needle of the loading sheet (mm RAS, degrees); ``hole`` is the template hole label or ""."""

    needle: str
    hole: str
    entry_ras_mm: tuple
    tip_ras_mm: tuple
    axial_angle_deg: float
    tilt_deg: float
    depth_mm: float
    seed_depths_mm: tuple

    @property
    def n_seeds(self):
        return len(self.seed_depths_mm)

    def row(self):
        """Values in the order of :data:`COLUMNS` (seed depths joined with "; ")."""
        e = self.entry_ras_mm
        return (self.needle, self.hole, round(e[0], 1), round(e[1], 1), round(e[2], 1),
                round(self.axial_angle_deg, 1), round(self.tilt_deg, 1), round(self.depth_mm, 1), self.n_seeds,
                "; ".join(f"{d:.1f}" for d in self.seed_depths_mm))


def loading_sheet(needle_table):
    """Loading sheet from a plan's needle table (:meth:`~.candidates.Plan.needle_table` rows), deepest seed first.

    Template needles carry their hole label as the needle label; needles on the user's own paths have
    no hole ("").
    """
    out = []
    for row in needle_table:
        entry, tip = np.asarray(row["entry_mm"], float), np.asarray(row["tip_mm"], float)
        axial, tilt = needle_angles(tip - entry)
        out.append(NeedleLoading(row["needle"], row["needle"] if row.get("hole") is not None else "",
                                 tuple(float(x) for x in entry), tuple(float(x) for x in tip), axial, tilt,
                                 float(row["depth_mm"]),
                                 tuple(sorted((float(d) for d in row["seed_depths_mm"]), reverse=True))))
    return out


def loading_sheet_csv(sheet):
    """The loading sheet as CSV text (header :data:`COLUMNS`)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for needle in sheet:
        writer.writerow(needle.row())
    return buf.getvalue()
