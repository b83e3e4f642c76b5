"""Seed-count and activity estimate before planning: the Anderson average-dimension nomogram for I-125.

Source: Anderson LL. Spacing nomograph for interstitial implants of 125I seeds.
Med Phys 1976;3(1):48-51; formulas as reviewed in Cohen GN, Amols HI, Zelefsky MJ,
Zaider M. The Anderson nomograms for permanent interstitial prostate implants: a
briefing for practitioners. Int J Radiat Oncol Biol Phys 2002;53(2):504-511 (who found
the nomogram's total activity within 10 % of computer-optimised plans).

Formula (total apparent activity A in mCi, average dimension d_a in cm):

* d_a = (a + b + c) / 3, the mean of the target's three orthogonal dimensions;
* A = 5 * d_a                for d_a <= 3 cm;
* A = 1.525 * d_a ** 2.2     for d_a >  3 cm.

The nomogram was made for a matched peripheral dose of 160 Gy in the pre-TG-43 dosimetry
of model 6711 seeds, which is 145 Gy in TG-43 dosimetry (the reason the I-125 monotherapy
prescription became 145 Gy). For another prescription the activity is scaled linearly:
A(Rx) = A * Rx / 145 Gy. The seed count is ceil(A(Rx) / activity per seed).

Only the review's abstract could be consulted when this module was written: the coefficients
above (5 mCi/cm, 1.525 and 2.2, 145 Gy) are as commonly quoted from it and should be checked
against its full text before research use.

The target dimensions here are its extents (mm) along its principal axes (eigenvectors of
the voxel-position covariance), each voxel counted with its full size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..sources import DEFAULT_U_PER_MCI, mci_to_u

NOMOGRAM_DOSE_GY = 145.0
LINEAR_MCI_PER_CM = 5.0
POWER_COEFFICIENT_MCI = 1.525
POWER_EXPONENT = 2.2
BREAK_CM = 3.0
CITATION = ("Anderson LL, Med Phys 1976;3:48-51, as reviewed by Cohen GN et al., "
            "Int J Radiat Oncol Biol Phys 2002;53:504-511")


def anderson_total_activity_mci(average_dimension_cm, prescription_gy=NOMOGRAM_DOSE_GY):
    """Total apparent activity (mCi) for a target of average dimension d_a (cm) at ``prescription_gy`` (Gy)."""
    da = float(average_dimension_cm)
    if not (math.isfinite(da) and da > 0):
        raise InputError(f"average dimension {average_dimension_cm!r} cm invalid: must be > 0 cm")
    rx = float(prescription_gy)
    if not (math.isfinite(rx) and rx > 0):
        raise InputError(f"prescription {prescription_gy!r} Gy invalid: must be > 0 Gy")
    a = LINEAR_MCI_PER_CM * da if da <= BREAK_CM else POWER_COEFFICIENT_MCI * da ** POWER_EXPONENT
    return a * rx / NOMOGRAM_DOSE_GY


def principal_dimensions_mm(mask, grid):
    """Extents (mm) of a bool mask ``[k, j, i]`` along its three principal axes, largest first."""
    idx = np.argwhere(np.asarray(mask, dtype=bool))
    if idx.size == 0:
        raise InputError("target mask is empty: it has no voxel inside")
    pts = grid.to_ras(idx[:, ::-1])
    centred = pts - pts.mean(axis=0)
    _, vectors = np.linalg.eigh(np.cov(centred.T) if len(pts) > 1 else np.eye(3))
    proj = centred @ vectors
    # each voxel adds its own extent along the axis: |axis . (direction * spacing)| summed over I, J, K
    voxel = np.abs(vectors.T @ (grid.direction * grid.spacing[None, :])).sum(axis=1)
    return np.sort(proj.max(axis=0) - proj.min(axis=0) + voxel)[::-1]


@dataclass(frozen=True)
class NomogramEstimate:
    """Pre-planning estimate: dimensions (mm), d_a (cm), total activity (mCi and U), seed count."""

    dimensions_mm: tuple
    average_dimension_cm: float
    prescription_gy: float
    total_activity_mci: float
    activity_per_seed_mci: float
    u_per_mci: float
    n_seeds: int

    @property
    def total_strength_u(self):
        return float(mci_to_u(self.total_activity_mci, self.u_per_mci))

    def lines(self):
        a, b, c = self.dimensions_mm
        return [f"Nomogram estimate ({CITATION}):",
                f"  CTV dimensions {a:.1f} x {b:.1f} x {c:.1f} mm -> average dimension "
                f"d_a = {self.average_dimension_cm:.2f} cm",
                f"  total activity A = {'5 x d_a' if self.average_dimension_cm <= BREAK_CM else '1.525 x d_a^2.2'}"
                f" x Rx / 145 Gy = {self.total_activity_mci:.1f} mCi ({self.total_strength_u:.1f} U at "
                f"{self.u_per_mci:.3f} U/mCi) for Rx {self.prescription_gy:g} Gy",
                f"  seeds: ceil({self.total_activity_mci:.1f} / {self.activity_per_seed_mci:.3f} mCi) = {self.n_seeds}"]


def estimate(ctv_mask, grid, prescription_gy, activity_per_seed_mci, u_per_mci=DEFAULT_U_PER_MCI):
    """Nomogram total activity and seed count for a CTV mask on ``grid`` (see the module formula).

    Args:
        ctv_mask: bool ``[k, j, i]`` on ``grid``.
        prescription_gy: Rx (Gy).
        activity_per_seed_mci: apparent activity per seed (mCi), > 0.
        u_per_mci: U per mCi used to show the strength (U).
    """
    if not (math.isfinite(activity_per_seed_mci) and activity_per_seed_mci > 0):
        raise InputError(f"activity per seed {activity_per_seed_mci!r} mCi invalid: must be > 0 mCi")
    dims = principal_dimensions_mm(ctv_mask, grid)
    da = float(dims.mean()) / 10.0
    total = anderson_total_activity_mci(da, prescription_gy)
    n = int(math.ceil(total / activity_per_seed_mci - 1e-9))
    return NomogramEstimate(tuple(float(d) for d in dims), da, float(prescription_gy), total,
                            float(activity_per_seed_mci), float(u_per_mci), n)
