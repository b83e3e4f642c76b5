"""A second synthetic case that looks nothing like the neck demo: a left para-aortic lymph node in the abdomen.

Geometry (RAS, mm; body axis S): an elliptic abdomen (semi-axes 135 mm R-L, 95 mm A-P) with a fat
layer, a vertebral body and its posterior arch (bone), the spinal cord, the aorta (contrast) left and
in front of the vertebra, the left kidney, and an elongated 32 x 24 x 36 mm node (GTV) beside the
aorta. The CT is oblique (gantry tilted 12 deg about R, rotated 5 deg about S) and anisotropic
(0.9 x 0.9 x 2.5 mm). Needles come from the back (the patient lies prone for the implant). CT
values in HU (int16), arrays indexed [k, j, i].
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from ..grid import Grid
from .phantom import HU, SyntheticCase

NODE_CENTER = (-40.0, -14.0, 0.0)
NODE_SEMI_AXES_MM = (16.0, 12.0, 18.0)


def oblique_direction(tilt_deg=12.0, rotation_deg=5.0):
    """3x3 IJK-to-RAS direction of a CT tilted ``tilt_deg`` about R and rotated ``rotation_deg`` about S."""
    return Rotation.from_euler("xz", [tilt_deg, rotation_deg], degrees=True).as_matrix()


def paraaortic_phantom(spacing_mm=(0.9, 0.9, 2.5), direction=None, noise_hu=0.0, seed=0,
                       node_center=NODE_CENTER, node_semi_axes_mm=NODE_SEMI_AXES_MM):
    """Build the para-aortic case (CT HU and masks; prescription 110 Gy, needles from posterior)."""
    direction = oblique_direction() if direction is None else direction
    grid = Grid.around([0.0, -5.0, 0.0], [290.0, 210.0, 100.0], spacing_mm, direction)
    ras = grid.points()
    x, y, z = ras[..., 0], ras[..., 1], ras[..., 2]

    def ellipse(cx, cy, ax, ay):
        return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 <= 1.0

    slab = np.abs(z) <= 48.0
    body = ellipse(0, -5, 135, 95) & slab
    inner = ellipse(0, -5, 125, 85) & slab
    vertebra = (ellipse(0, -25, 22, 18) | ellipse(0, -62, 24, 9)) & slab
    cord = ellipse(0, -48, 6, 6) & slab
    aorta = ellipse(-14, 6, 11, 11) & slab
    kidney = (((x + 82) / 26) ** 2 + ((y + 38) / 20) ** 2 + (z / 46) ** 2) <= 1.0
    c = np.asarray(node_center, float)
    a = np.asarray(node_semi_axes_mm, float)
    node = (((x - c[0]) / a[0]) ** 2 + ((y - c[1]) / a[1]) ** 2 + ((z - c[2]) / a[2]) ** 2) <= 1.0
    ct = np.full(grid.shape, HU["air"], dtype=np.int16)
    ct[body] = HU["fat"]
    ct[inner] = HU["soft"]
    for mask, value in ((kidney, 30), (vertebra, HU["bone"]), (cord, HU["cord"]), (aorta, HU["vessel"]),
                        (node, HU["node"])):
        ct[mask & body] = value
    if noise_hu > 0:
        rng = np.random.default_rng(seed)
        ct = np.clip(ct + rng.normal(0, noise_hu, ct.shape), -1024, 3071).astype(np.int16)
    masks = {"GTV": node & body, "Aorta": aorta, "Kidney_L": kidney & body, "SpinalCord": cord,
             "Vertebra": vertebra, "Body": body}
    return SyntheticCase(ct=ct, grid=grid, masks=masks, prescription_gy=110.0,
                         needle_direction=np.array([0.0, 1.0, 0.0]), node_center=c,
                         description=(f"synthetic abdomen, {2 * a[0]:g} x {2 * a[1]:g} x {2 * a[2]:g} mm left "
                                      f"para-aortic node, oblique CT {grid.describe()}"))
