"""The built-in research demo: a simulated cohort written as the tables ``seedbrachy cohort`` reads."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..synthetic import cohort as simulated


def write_tables(kind, out_dir, seed=0, force=False):
    """Write the simulated cohort ``kind`` ("lymph-node" or "escc") into ``out_dir``.

    Returns (cohort CSV, lesion CSV or None, response month or None, the study's dose cut-off or None):
    the lymph-node study assessed RECIST at 6 months; the ESCC study split the dose at D90 = 110 Gy.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cohort_csv = out / f"simulated_{kind}_cohort.csv"
    lesion_csv = out / f"simulated_{kind}_lesions.csv"
    for path in (cohort_csv, lesion_csv):
        if path.exists() and not force:
            raise InputError(f"{str(path)!r} exists; use --force to replace it or choose another --out")
    if kind == "lymph-node":
        cohort, lesions, _ = simulated.lymph_node_cohort(seed)
        cohort.to_csv(cohort_csv, index=False)
        lesions.to_csv(lesion_csv, index=False)
        return cohort_csv, lesion_csv, 6.0, None
    if kind == "escc":
        cohort, _ = simulated.escc_cohort(seed)
        cohort.to_csv(cohort_csv, index=False)
        return cohort_csv, None, None, simulated.ESCC_THRESHOLD_GY
    raise InputError(f"simulated cohort {kind!r} is not one of ('lymph-node', 'escc')")
