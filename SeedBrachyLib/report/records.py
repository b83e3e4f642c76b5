"""Results as plain records with stable names, for JSON files, cohort tables and the report.

Names (stable: the cohort table's columns and the ``--json`` keys are built from them):

* DVH metrics per structure, :data:`METRIC_NAMES`: ``volume_cc`` (cc), ``D98``, ``D90``, ``D50``,
  ``D100``, ``Dmin``, ``Dmax``, ``Dmean``, ``D2cc``, ``D1cc``, ``D0.1cc`` (Gy), ``V90``, ``V100``,
  ``V150``, ``V200`` (% of the structure at >= x % of the prescription); ``None`` where undefined
  (D2cc of a structure under 2 cc).
* Checks: ``goal``, ``structure``, ``metric``, ``passed``, ``status`` (PASS, FAIL, NOT EVALUATED),
  ``note``, ``measured``, ``comparator``, ``limit``, ``unit``, ``source``.
* Seeds: ``{"space": "RAS", "seeds": [{"center_ras_mm": [x, y, z], "axis_ras": [ax, ay, az],
  "confidence": c}, ...]}`` (positions in mm).
"""

from __future__ import annotations

import math

import numpy as np

#: (record name, metric name in :mod:`SeedBrachyLib.dvh`) in the order of the tables.
METRICS = (("volume_cc", "Volume"), ("D98", "D98"), ("D90", "D90"), ("D50", "D50"), ("D100", "D100"),
           ("Dmin", "Dmin"), ("Dmax", "Dmax"), ("Dmean", "Dmean"), ("D2cc", "D2cc"), ("D1cc", "D1cc"),
           ("D0.1cc", "D0.1cc"), ("V90", "V90"), ("V100", "V100"), ("V150", "V150"), ("V200", "V200"))
METRIC_NAMES = tuple(name for name, _ in METRICS)
METRIC_UNITS = {"volume_cc": "cc", **{n: "%" for n in ("V90", "V100", "V150", "V200")}}


def metric_unit(name):
    """Unit of a record metric name: "cc", "%" or "Gy"."""
    return METRIC_UNITS.get(name, "Gy")


def number(value):
    """A float, or None for NaN / None (JSON null)."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def structure_metrics(evaluation, name):
    """The :data:`METRIC_NAMES` of one structure of a :class:`~SeedBrachyLib.dvh.PlanEvaluation` (None: undefined)."""
    return {key: number(evaluation.value(name, metric)[0]) for key, metric in METRICS}


def evaluation_record(evaluation):
    """{"prescription_gy", "dose_description", "structures": {name: {"role", metrics...}}, "notes"}."""
    return {"prescription_gy": evaluation.prescription_gy, "dose_description": evaluation.dose_description,
            "structures": {name: {"role": s.role, **structure_metrics(evaluation, name)}
                           for name, s in evaluation.structures.items()},
            "notes": list(evaluation.notes)}


def check_records(results):
    """Check results (:class:`~SeedBrachyLib.checks.CheckResult`) as records."""
    return [{"goal": r.goal, "structure": r.structure, "metric": r.metric, "passed": bool(r.passed),
             "status": r.status, "note": r.note,
             "measured": number(r.measured), "comparator": r.comparator, "limit": number(r.limit), "unit": r.unit,
             "source": r.source} for r in results]


def seed_records(seeds, confidences=None, review=None):
    """Seeds (mm RAS) as ``{"space": "RAS", "seeds": [...]}``; ``confidences`` one per seed (0..1) or None;
    ``review`` one flag per seed (a detected seed to review: ``"to_review"``) or None."""
    conf = [None] * len(seeds) if confidences is None else list(confidences)
    rows = [{"center_ras_mm": [float(x) for x in np.asarray(s.position)], "axis_ras": [float(x) for x in s.axis],
             "confidence": number(c), "strength_u": float(s.strength_u), "label": s.label}
            for s, c in zip(seeds, conf)]
    if review is not None:
        for row, r in zip(rows, review):
            row["to_review"] = bool(r)
    return {"space": "RAS", "seeds": rows}
