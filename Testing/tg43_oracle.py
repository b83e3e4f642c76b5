"""Independent scalar TG-43U1 implementation, used only as a test and benchmark oracle.

Written separately from SeedBrachyLib.tg43: works in cm straight from the JSON model
files, one (point, seed) pair at a time with the math module, with the geometry
function from the law of cosines. Same published rules: log-linear g_L (nearest
neighbour below r_min, log-linear extrapolation from the last two points above
r_max), bilinear F with nearest neighbour outside the radii; a point inside the
capsule (cylinder of the outer diameter and outer length) takes the value at the
nearest point of the capsule surface.
"""

import json
import math
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "SeedBrachyLib" / "data" / "sources"


def load(key):
    """Raw model dictionary (cm units) by file key."""
    return json.loads((DATA / f"{key}.json").read_text())


def _interval(xs, x):
    for i in range(len(xs) - 1):
        if x <= xs[i + 1]:
            return i
    return len(xs) - 2


def g_line(m, r):
    rs, gs = m["radial_dose_function"]["r_cm"], m["radial_dose_function"]["gL"]
    if r < rs[0]:
        return gs[0]
    i = _interval(rs, r)
    t = (r - rs[i]) / (rs[i + 1] - rs[i])
    return math.exp(math.log(gs[i]) + t * (math.log(gs[i + 1]) - math.log(gs[i])))


def _lin(xs, ys, x):
    x = min(max(x, xs[0]), xs[-1])
    i = _interval(xs, x)
    t = (x - xs[i]) / (xs[i + 1] - xs[i])
    return ys[i] + t * (ys[i + 1] - ys[i])


def f_aniso(m, r, theta_deg):
    a = m["anisotropy_function"]
    if theta_deg > 90:
        theta_deg = 180 - theta_deg
    column = [_lin(a["r_cm"], row, r) for row in a["F"]]
    return _lin(a["theta_deg"], column, theta_deg)


def geometry(r, theta, length):
    """G_L in cm^-2; theta in radians."""
    z, rho = r * math.cos(theta), r * math.sin(theta)
    if rho < 1e-12:
        return 1.0 / (r * r - length * length / 4)
    a = math.hypot(rho, z - length / 2)
    b = math.hypot(rho, z + length / 2)
    beta = math.acos(max(-1.0, min(1.0, (a * a + b * b - length * length) / (2 * a * b))))
    return beta / (length * r * math.sin(theta))


def dose_rate(m, point_cm, seed_cm, axis, formalism="line"):
    """Dose rate per U (cGy/h/U) at point_cm from a seed at seed_cm with unit axis."""
    d = [p - s for p, s in zip(point_cm, seed_cm)]
    z = sum(c * a for c, a in zip(d, axis))
    across = [c - z * a for c, a in zip(d, axis)]
    rho = math.sqrt(sum(c * c for c in across))
    capsule = m.get("physical_seed", {})
    radius = capsule.get("outer_diameter_cm", 0.08) / 2
    half = capsule.get("outer_length_cm", 0.45) / 2
    if rho < radius and abs(z) < half:  # inside: nearest surface point (side wall or end face)
        if radius - rho <= half - abs(z):
            rho = radius
        else:
            z = math.copysign(half, z)
    r = math.hypot(rho, z)
    theta = math.acos(max(-1.0, min(1.0, z / r)))
    length = m["active_length_cm"]
    g0 = geometry(1.0, math.pi / 2, length)
    if formalism == "line":
        shape = geometry(r, theta, length) * f_aniso(m, r, math.degrees(theta))
    else:
        p = m["anisotropy_factor_1d"]
        shape = geometry(r, math.pi / 2, length) * _lin(p["r_cm"], p["phi_an"], r)
    return m["dose_rate_constant_cGy_per_h_per_U"] * shape / g0 * g_line(m, r)


def total_dose_gy(m, point_mm, seeds_mm, formalism="line"):
    """Permanent-implant dose (Gy) at a point from [(position_mm, axis, S_K U), ...]."""
    tau_h = m["half_life_days"] * 24 / math.log(2)
    p = [c / 10 for c in point_mm]
    total = 0.0
    for pos, axis, sk in seeds_mm:
        total += sk * dose_rate(m, p, [c / 10 for c in pos], axis, formalism)
    return total * tau_h / 100
