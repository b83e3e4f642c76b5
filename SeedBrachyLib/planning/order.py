"""Seed order: number of seeds, activity per seed in mCi and U (conversion shown), total activity, spares.

Air-kerma strength S_K (U) = apparent activity (mCi) x f, with f = 1.270 U/mCi by the
I-125 convention (:data:`SeedBrachyLib.sources.DEFAULT_U_PER_MCI`), settable. Spares:
``max(min_spares, ceil(spare_fraction x planned))``, default 10 % and at least 2 (a house
convention, settable: seeds are lost or rejected in loading).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InputError
from ..sources import DEFAULT_U_PER_MCI, mci_to_u, u_to_mci

DEFAULT_SPARE_FRACTION = 0.10
DEFAULT_MIN_SPARES = 2


@dataclass(frozen=True)
class SeedOrder:
    """An order of identical seeds (activities in mCi, strengths in U)."""

    n_planned: int
    n_spares: int
    activity_mci: float
    strength_u: float
    u_per_mci: float
    model_name: str = ""

    @property
    def n_order(self):
        """Seeds to order: planned + spares."""
        return self.n_planned + self.n_spares

    @property
    def total_planned_mci(self):
        """Activity implanted (mCi): planned seeds x activity per seed."""
        return self.n_planned * self.activity_mci

    @property
    def total_planned_u(self):
        """Strength implanted (U)."""
        return self.n_planned * self.strength_u

    @property
    def total_order_mci(self):
        """Activity ordered, spares included (mCi)."""
        return self.n_order * self.activity_mci

    def lines(self):
        model = f" {self.model_name}" if self.model_name else ""
        return [f"Seed order{model}: {self.n_order} seeds = {self.n_planned} planned + {self.n_spares} spares",
                f"  per seed {self.activity_mci:.3f} mCi = {self.strength_u:.3f} U "
                f"(S_K = A x {self.u_per_mci:.3f} U/mCi)",
                f"  implanted {self.total_planned_mci:.2f} mCi = {self.total_planned_u:.2f} U; "
                f"ordered {self.total_order_mci:.2f} mCi = {self.n_order * self.strength_u:.2f} U"]


def seed_order(n_planned, activity_mci=None, strength_u=None, u_per_mci=DEFAULT_U_PER_MCI,
               spare_fraction=DEFAULT_SPARE_FRACTION, min_spares=DEFAULT_MIN_SPARES, model_name=""):
    """The seed order for ``n_planned`` seeds of one activity (mCi) or strength (U); give exactly one of them."""
    if isinstance(n_planned, bool) or int(n_planned) != n_planned or n_planned < 1:
        raise InputError(f"planned seed count {n_planned!r} invalid: must be an integer >= 1")
    if (activity_mci is None) == (strength_u is None):
        raise InputError("give the activity per seed (mCi) or the strength per seed (U), not both or neither")
    if not (0 <= spare_fraction <= 1) or int(min_spares) != min_spares or min_spares < 0:
        raise InputError(f"spares {spare_fraction!r} (fraction 0..1) / {min_spares!r} (integer >= 0) invalid")
    if activity_mci is not None:
        if not (math.isfinite(activity_mci) and activity_mci > 0):
            raise InputError(f"activity per seed {activity_mci!r} mCi invalid: must be > 0 mCi")
        strength_u = float(mci_to_u(activity_mci, u_per_mci))
    else:
        if not (math.isfinite(strength_u) and strength_u > 0):
            raise InputError(f"strength per seed {strength_u!r} U invalid: must be > 0 U")
        activity_mci = float(u_to_mci(strength_u, u_per_mci))
    n_planned = int(n_planned)
    spares = max(int(min_spares), int(math.ceil(spare_fraction * n_planned - 1e-9)))
    return SeedOrder(n_planned, spares, float(activity_mci), float(strength_u), float(u_per_mci), model_name)
