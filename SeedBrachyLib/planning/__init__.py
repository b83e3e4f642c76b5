"""Pre-planning of seed implants (positions mm RAS, dose Gy, strength U, activity mCi at the boundary).

* :mod:`.template` -- template of needle holes, needle paths with obstacle avoidance.
* :mod:`.plan` -- candidate seed positions along needles; a plan (chosen candidates).
* :mod:`.loading` -- loading patterns: uniform, peripheral, modified peripheral.
* :mod:`.optimize` -- inverse optimisation (goals, objective and algorithm in its docstring).
* :mod:`.nomogram` -- seed-count and activity estimate (Anderson nomogram, cited).
* :mod:`.order` -- the seed order (mCi and U, spares).
* :mod:`.pipeline` -- the steps from CT and GTV to an evaluated plan.
"""
