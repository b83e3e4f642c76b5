"""The AAPM TG-43U1 dose-rate formalism for one seed (Rivard et al., Med Phys 31:633, 2004).

2D (line source), TG-43U1 Eq. (1)::

    Ddot(r, theta) = S_K * Lambda * G_L(r, theta) / G_L(r0, theta0) * g_L(r) * F(r, theta)

1D (TG-43U1 Eq. (11), line-source geometry function as the report recommends)::

    Ddot(r) = S_K * Lambda * G_L(r, theta0) / G_L(r0, theta0) * g_L(r) * phi_an(r)

with r0 = 1 cm = 10 mm, theta0 = 90 deg. Units: distances in mm (tables are
converted from cm when a model is loaded), S_K in U, Lambda in cGy h^-1 U^-1,
dose rate in cGy h^-1. Every function here returns dose rate *per unit S_K*.

Interpolation and extrapolation rules (TG-43U1, Rivard et al. 2004, Sec. IV and
Appendix C; restated in the 2007 supplement TG-43U1S1, Rivard et al., Med Phys 34:2187):

* g_L(r): log-linear interpolation (log g_L linear in r) between tabulated radii.
  Below the first tabulated radius: nearest neighbour, g_L(r) = g_L(r_min), the rule
  TG-43U1 gives for the line-source g_L, whose short-distance behaviour the geometry
  function already carries. Beyond the last tabulated radius: log-linear extrapolation
  from the last two tabulated points (an exponential fall-off that stays positive).
* F(r, theta): bilinear in r and theta (degrees) inside the table; theta is folded
  into [0, 90] deg by the symmetry F(r, 180 - theta) = F(r, theta). Outside the
  tabulated radii: nearest neighbour in r, F(r, theta) = F(r_min or r_max, theta).
* phi_an(r): linear in r, nearest neighbour outside the tabulated radii.
* G_L(r, theta) = beta / (L r sin theta) with beta the angle subtended by the active
  length; on the axis (theta = 0 or 180 deg) G_L = 1 / (r^2 - L^2 / 4).

Near the seed: the formula above holds everywhere outside the capsule, down to its
surface (a cylinder of the model's outer diameter and outer length, 0.8 mm x 4.5 mm
for the shipped I-125 seeds; the rounded end welds are not modelled). Beside a seed
the dose is therefore the TG-43 value at 0.4 mm from the axis, not a value held at
some larger radius. TG-43 defines no dose inside the capsule (the consensus data
start at r = 0.1 cm and describe water outside the source). There, as a stated
engineering choice rather than a TG-43 rule, a point takes the TG-43 value at the
nearest point of the capsule surface (side wall or end face): the dose stays finite
and continuous, and no point inside exceeds the surface value next to it. So Dmax of
a structure that holds a seed is the TG-43 dose at the capsule surface (about
4600 Gy per U of S_K for a 6711 seed, permanent implant), and D0.1cc next to a seed is
an average over the steep field around the capsule, not a dose inside it.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import InputError

R0_MM = 10.0  # reference distance r0 = 1 cm


def _rho(r_mm, z_mm):
    """Distance from the seed axis (mm) from r and z (mm); never NaN from rounding."""
    r = np.asarray(r_mm, dtype=float)
    z = np.asarray(z_mm, dtype=float)
    return np.sqrt(np.maximum(r * r - z * z, 0.0))


def geometry_line_cyl(rho_mm, z_mm, length_mm):
    """Line-source geometry function G_L (mm^-2) at distance rho from the axis and axial coordinate z (mm).

    beta = atan2(L rho, rho^2 + z^2 - L^2/4) is the angle the active length subtends;
    G_L = beta / (L rho) off the axis (= beta / (L r sin theta)) and 1 / (z^2 - L^2/4)
    on it. Both are exact and stable as rho -> 0.
    """
    rho = np.asarray(rho_mm, dtype=float)
    z = np.asarray(z_mm, dtype=float)
    half2 = 0.25 * length_mm * length_mm
    beta = np.arctan2(length_mm * rho, rho * rho + z * z - half2)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(rho > 0, beta / (length_mm * rho), 1.0 / (z * z - half2))


def geometry_line(r_mm, z_mm, length_mm):
    """Line-source geometry function G_L (mm^-2) at distance r and axial coordinate z (mm)."""
    return geometry_line_cyl(_rho(r_mm, z_mm), z_mm, length_mm)


def geometry_line_transverse(r_mm, length_mm):
    """G_L(r, 90 deg) in mm^-2: 2 atan(L / 2r) / (L r)."""
    r = np.asarray(r_mm, dtype=float)
    return 2.0 * np.arctan(0.5 * length_mm / r) / (length_mm * r)


class _UniformTable:
    """A piecewise-linear table resampled on a uniform grid that contains every breakpoint.

    Linear (and bilinear) interpolation on such a refinement reproduces the original
    interpolant exactly, while a uniform grid finds its interval by one division
    instead of a search. ``nodes`` are the refined abscissae (x0 + step * n).
    """

    MAX_NODES = 200_000

    def __init__(self, x, step=None):
        x = np.asarray(x, dtype=float)
        if step is None:
            ticks = [int(round(v * 1e4)) for v in x - x[0]]  # 1e-4 resolution in the table's unit
            gcd = 0
            for t in ticks[1:]:
                gcd = math.gcd(gcd, t)
            step = gcd / 1e4
        n = int(round((x[-1] - x[0]) / step)) + 1
        if n > self.MAX_NODES:
            raise InputError(f"table abscissae {x.tolist()} need {n} uniform nodes (> {self.MAX_NODES}); "
                             "use breakpoints on a coarser common step")
        self.x0, self.step, self.n = float(x[0]), float(step), n
        self.nodes = self.x0 + self.step * np.arange(n)

    def locate(self, x):
        """Interval index and (unclipped) weight of x on the uniform nodes."""
        t = (np.asarray(x, dtype=float) - self.x0) / self.step
        i = np.clip(np.floor(t), 0, self.n - 2).astype(np.intp)
        return i, t - i


_TABLES = {}


def _tables_key(model):
    """Identity of a model's tables (their content)."""
    return (model.key, model.gl.tobytes(), model.gl_r_mm.tobytes(), model.f_table.tobytes(),
            model.f_r_mm.tobytes(), model.f_theta_deg.tobytes())


def _tables(model):
    """Uniform refinements of g_L (log) and F for a model, built once per table content."""
    key = _tables_key(model)
    if key not in _TABLES:
        g_axis = _UniformTable(model.gl_r_mm)
        log_g = np.interp(g_axis.nodes, model.gl_r_mm, np.log(model.gl))
        r_axis = _UniformTable(model.f_r_mm) if model.f_r_mm.size > 1 else _UniformTable([0.0, 1.0], 1.0)
        t_axis = _UniformTable(model.f_theta_deg)
        by_r = np.array([np.interp(r_axis.nodes, model.f_r_mm, row) for row in model.f_table])
        f_fine = np.array([np.interp(t_axis.nodes, model.f_theta_deg, col) for col in by_r.T]).T
        _TABLES[key] = (g_axis, log_g, r_axis, t_axis, np.ascontiguousarray(f_fine).ravel())
    return _TABLES[key]


def radial_dose_function(model, r_mm):
    """g_L(r) (unitless): log-linear, nearest neighbour below r_min, log-linear extrapolation above r_max."""
    g_axis, log_g, *_ = _tables(model)
    # Below r_min: clip (nearest neighbour). Above r_max: the last interval's line, extended.
    i, w = g_axis.locate(np.maximum(r_mm, g_axis.x0))
    return np.exp(log_g[i] + w * (log_g[i + 1] - log_g[i]))


def anisotropy_function(model, r_mm, theta_deg):
    """F(r, theta) (unitless): bilinear in r (mm) and theta (deg), nearest neighbour outside the radii."""
    _, _, r_axis, t_axis, f_flat = _tables(model)
    theta = np.asarray(theta_deg, dtype=float)
    theta = np.where(theta > 90.0, 180.0 - theta, theta)
    r = np.clip(r_mm, model.f_r_mm[0], model.f_r_mm[-1]) if model.f_r_mm.size > 1 else np.zeros_like(theta)
    ri, rw = r_axis.locate(r)
    ti, tw = t_axis.locate(np.clip(theta, t_axis.x0, model.f_theta_deg[-1]))
    base = ti * r_axis.n + ri
    f00, f01 = f_flat[base], f_flat[base + 1]
    f10, f11 = f_flat[base + r_axis.n], f_flat[base + r_axis.n + 1]
    return (f00 + rw * (f01 - f00)) * (1 - tw) + (f10 + rw * (f11 - f10)) * tw


def anisotropy_factor(model, r_mm):
    """phi_an(r) (unitless): linear in r (mm), nearest neighbour outside the tabulated radii."""
    if model.phi_an is None:
        raise InputError(f"seed model {model.key!r} has no anisotropy_factor_1d (phi_an) table; "
                         "the 1D formalism needs one: use formalism='line'")
    return np.interp(r_mm, model.phi_r_mm, model.phi_an)


def capsule_surface(model, rho_mm, z_mm):
    """Points inside the capsule moved to the nearest point of its surface (rho, z in mm); others unchanged.

    The capsule is the cylinder rho <= outer radius, |z| <= outer length / 2 (see the
    module docstring: TG-43 defines no dose inside it).
    """
    rho = np.asarray(rho_mm, dtype=float)
    z = np.asarray(z_mm, dtype=float)
    radius, half = model.outer_radius_mm, 0.5 * model.outer_length_mm
    inside = (rho < radius) & (np.abs(z) < half)
    to_side = inside & (radius - rho <= half - np.abs(z))
    return (np.where(to_side, radius, rho),
            np.where(inside & ~to_side, np.where(z < 0, -half, half), z))


def dose_rate_per_u_cyl(model, rho_mm, z_mm, formalism="line"):
    """Dose rate per unit air-kerma strength (cGy h^-1 U^-1) at (rho, z) in the seed's frame (mm).

    Args:
        model: a SourceModel.
        rho_mm: distance from the seed axis (mm, >= 0), any shape.
        z_mm: coordinate along the seed axis from the seed centre (mm), same shape.
        formalism: "line" (2D, TG-43U1 Eq. 1) or "point" (1D, TG-43U1 Eq. 11).
    """
    return formula_per_u(model, *capsule_surface(model, rho_mm, z_mm), formalism)


def formula_per_u(model, rho_mm, z_mm, formalism="line"):
    """The TG-43U1 formula (cGy h^-1 U^-1) at (rho, z) mm as it stands, without the capsule rule.

    Inside the capsule this is the formula's smooth continuation (infinite on the active
    segment itself); dose evaluation goes through :func:`dose_rate_per_u_cyl`.
    """
    rho = np.asarray(rho_mm, dtype=float)
    z = np.asarray(z_mm, dtype=float)
    r = np.hypot(rho, z)
    length = model.active_length_mm
    g0 = geometry_line_transverse(R0_MM, length)
    with np.errstate(divide="ignore", invalid="ignore"):  # only on the active segment (r = 0 for "point")
        if formalism == "line":
            theta = np.degrees(np.arctan2(rho, np.abs(z)))
            shape = geometry_line_cyl(rho, z, length) * anisotropy_function(model, r, theta)
        elif formalism == "point":
            shape = geometry_line_transverse(r, length) * anisotropy_factor(model, r)
        else:
            raise InputError(f"formalism {formalism!r} unknown: use 'line' (2D) or 'point' (1D)")
        return model.dose_rate_constant * shape / g0 * radial_dose_function(model, r)


def dose_rate_per_u(model, r_mm, z_mm, formalism="line"):
    """Dose rate per unit air-kerma strength (cGy h^-1 U^-1) at distance r and axial coordinate z (mm).

    Same as :func:`dose_rate_per_u_cyl` with rho = sqrt(r^2 - z^2) (|z| <= r).
    """
    return dose_rate_per_u_cyl(model, _rho(r_mm, z_mm), z_mm, formalism)
