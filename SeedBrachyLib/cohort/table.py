"""The cohort table (one row per patient) and the optional RECIST lesion table: reading and checking.

Cohort table (CSV, header row; column names are case-sensitive):

* ``patient_id`` (required, unique; read as text, so ``007`` stays ``007``).
* Dosimetry as the ``batch`` command writes it, with the stable names ``volume_cc`` (cc), ``D98``,
  ``D90``, ``D50``, ``D100``, ``Dmin``, ``Dmax``, ``Dmean``, ``D2cc``, ``D1cc``, ``D0.1cc`` (Gy),
  ``V90``, ``V100``, ``V150``, ``V200`` (% of the volume). Either bare (``D90``) or prefixed by the
  structure (``CTV.D90``, ``CTV_D90`` or ``CTV:D90``); with several prefixes choose one with
  ``structure``. The dose metric analysed for cut-offs (default ``D90``) must be present.
* A ``seedbrachy batch`` table (it has the batch's ``status``, ``gtv`` and ``ctv`` columns) is read as
  it is: the structure defaults to each row's GTV (``structure`` "gtv" or "ctv" picks a role, read
  per row from those columns, so cases whose GTV has another name line up), failed cases (``status``
  error) are counted in the notes and left out of the dose analyses, and the batch's bookkeeping
  (``mode``, ``status``, ``error``, ``gtv``, ``ctv``, the ``check_*`` columns) is not analysed. Its
  outcomes come from a second table (``outcomes``, joined on ``patient_id``): response, follow-up,
  clinical variables; or from the lesion table.
* Response (for the logistic and ROC analyses): ``response`` with CR, PR, SD, PD, Non-CR/Non-PD or
  NE per patient (the RECIST 1.1 response at the assessment), or a lesion table (below) from
  which it is computed. Patients with NE are left out of the response analyses (counted).
* Follow-up (for survival analyses), any number of endpoints: ``<name>_time`` (months) with
  ``<name>_event`` (1 = event, 0 = censored), e.g. ``lc_time``/``lc_event`` (local control),
  ``os_time``/``os_event`` (overall survival).
* Clinical variables: every other column (or those named in ``clinical``). Numeric columns with
  more than two distinct values are continuous; others are categorical. Constant columns, and text
  columns with more than 10 distinct values (names, paths), are left out with a note; so are batch
  bookkeeping columns (``case``, ``error``, ``status``, ``*_check``/``check_*``, ``*_pass``).

Lesion table (CSV, one row per lesion per visit): ``patient_id``, ``month`` (0 = baseline),
``lesion`` (an id), ``role`` (target, non_target, new), ``nodal`` (1/0), ``diameter_mm`` (long axis,
or short axis for a node; blank = not assessed) and ``status`` (non-target: absent, present,
progression; blank = not assessed). See :mod:`SeedBrachyLib.cohort.recist` for the rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..report.records import METRIC_NAMES as DOSIMETRY
from . import recist

LESION_COLUMNS = ("patient_id", "month", "lesion", "role", "nodal", "diameter_mm", "status")
MAX_TEXT_LEVELS = 10
_BOOKKEEPING = re.compile(r"^(case|case_id|error|errors|status|mode|gtv|ctv|path|folder|notes?)$|(^check_)|(_check$)"
                          r"|(_pass$)", re.I)
ROLES = ("gtv", "ctv")   # batch columns naming each row's structures
_METRIC = re.compile(r"^(?:(?P<prefix>.+?)[._:])?(?P<metric>" + "|".join(re.escape(m) for m in DOSIMETRY) + r")$")


@dataclass
class CohortTable:
    """A checked cohort: data frame, which columns are what, and notes on what was left out."""

    frame: object                      # pandas.DataFrame, one row per patient
    dosimetry: dict                    # metric name -> column
    dose_metric: str
    response: object = None            # pandas.Series of RECIST labels (index as frame) or None
    endpoints: dict = field(default_factory=dict)   # name -> (time column, event column)
    clinical: dict = field(default_factory=dict)    # column -> "continuous" | "categorical"
    notes: list = field(default_factory=list)
    visit_responses: dict = field(default_factory=dict)  # patient -> [VisitResponse] (lesion table only)

    @property
    def dose(self):
        """The analysed dose metric per patient (unit of the metric)."""
        return self.frame[self.dosimetry[self.dose_metric]].astype(float)


def _read_csv(path, what):
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} {str(path)!r} is not a file")
    try:
        return pd.read_csv(path, skipinitialspace=True, dtype={"patient_id": str})
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} {str(path)!r} is not a readable CSV table: {exc}") from None


def _dosimetry_columns(columns, structure, dose_metric):
    """(metric -> column of the analysed structure, {prefix: {metric: column}} of every structure)."""
    found = {}
    for col in columns:
        m = _METRIC.match(col)
        if m:
            found.setdefault(m.group("prefix"), {})[m.group("metric")] = col
    if not found:
        raise InputError(f"no dosimetry columns ({', '.join(DOSIMETRY)}) in the cohort table; columns: {list(columns)}")
    if structure is not None:
        if structure not in found:
            raise InputError(f"no dosimetry columns for structure {structure!r}; structures in the table: "
                             f"{sorted(str(k) for k in found if k is not None)}")
        chosen = found[structure]
    elif None in found:
        chosen = found[None]
    else:
        having = [k for k, v in found.items() if dose_metric in v]
        if len(having) > 1:
            raise InputError(f"{dose_metric} for several structures {sorted(having)}: choose one with --structure")
        chosen = found[having[0]] if having else {}
    if dose_metric not in chosen:
        raise InputError(f"dose metric {dose_metric!r} is not in the table; dosimetry columns: "
                         f"{sorted(c for v in found.values() for c in v.values())}")
    return chosen, found


def _is_batch_table(df):
    return all(c in df.columns for c in ("status", *ROLES))


def _per_row_structure(df, role, notes):
    """The structure prefix of the batch column ``role`` ("gtv" or "ctv"): the one name every row gives, or
    new columns ``<role>.<metric>`` taking each row's metric of the structure that row names."""
    names = df[role].where(df[role].notna(), None)
    present = sorted({str(n) for n in names.dropna()})
    if not present:
        raise InputError(f"the batch column {role!r} names no structure in any row")
    if len(present) == 1:
        notes.append(f"dosimetry of the {role.upper()} {present[0]!r} (batch column {role!r})")
        return present[0]
    for metric in DOSIMETRY:
        cols = {n: f"{n}.{metric}" for n in present}
        if not any(c in df.columns for c in cols.values()):
            continue
        df[f"{role}.{metric}"] = [df.at[i, cols[str(n)]] if n is not None and cols[str(n)] in df.columns
                                  else np.nan for i, n in zip(df.index, names)]
    notes.append(f"dosimetry of each row's {role.upper()} (batch column {role!r}: {', '.join(present)})")
    return role


def _join_outcomes(df, outcomes, notes):
    """The cohort table with the outcome table's columns, joined on patient_id (left: every cohort patient)."""
    out = outcomes if hasattr(outcomes, "columns") else _read_csv(outcomes, "outcome table")
    if "patient_id" not in out.columns:
        raise InputError(f"the outcome table needs a 'patient_id' column; columns: {list(out.columns)}")
    out = out.assign(patient_id=out["patient_id"].astype(str))
    dup = sorted(out["patient_id"][out["patient_id"].duplicated()].unique())
    if dup:
        raise InputError(f"patient_id values must be unique in the outcome table; repeated: {dup[:10]}")
    clash = sorted(set(out.columns) & set(df.columns) - {"patient_id"})
    if clash:
        raise InputError(f"columns {clash} are in both the cohort table and the outcome table: keep them in one")
    ids = set(df["patient_id"])
    matched = out["patient_id"].isin(ids)
    if not matched.any():
        raise InputError(f"no patient_id of the outcome table is in the cohort table (outcome ids e.g. "
                         f"{out['patient_id'].head(3).tolist()}, cohort ids e.g. {df['patient_id'].head(3).tolist()})")
    if not matched.all():
        extra = out["patient_id"][~matched].tolist()
        notes.append(f"{len(extra)} patients of the outcome table are not in the cohort table: left out "
                     f"({', '.join(extra[:10])}{', ...' if len(extra) > 10 else ''})")
    missing = sorted(ids - set(out["patient_id"]))
    if missing:
        notes.append(f"{len(missing)} patients have no row in the outcome table ({', '.join(missing[:10])}"
                     f"{', ...' if len(missing) > 10 else ''})")
    return df.merge(out[matched.to_numpy()], on="patient_id", how="left")


def responses_from_lesions(path_or_frame, response_month=None, min_sd_months=1.5, confirm_months=None):
    """Per-patient RECIST responses from a lesion table -> ({patient: response}, {patient: [VisitResponse]}).

    ``response_month``: the response at that visit (e.g. 6); None: the best overall response
    (confirmed when ``confirm_months`` is given, see :func:`recist.best_overall_response`).
    """
    df = path_or_frame if hasattr(path_or_frame, "columns") else _read_csv(path_or_frame, "lesion table")
    missing = [c for c in LESION_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"lesion table lacks columns {missing}; it needs {list(LESION_COLUMNS)}")
    out, visits_out = {}, {}
    for pid, rows in df.groupby("patient_id", sort=False):
        visits = []
        for month, vrows in rows.groupby("month"):
            lesions = tuple(recist.Lesion(
                lesion_id=str(r.lesion), role=str(r.role).strip(), nodal=bool(int(r.nodal)),
                diameter_mm=None if r.diameter_mm != r.diameter_mm else float(r.diameter_mm),
                status=None if not isinstance(r.status, str) or not r.status.strip() else r.status.strip())
                for r in vrows.itertuples())
            visits.append(recist.Visit(float(month), lesions))
        try:
            responses = recist.evaluate(visits)
        except InputError as exc:
            raise InputError(f"patient {pid}: {exc}") from None
        visits_out[str(pid)] = responses
        out[str(pid)] = (recist.best_overall_response(responses, min_sd_months, confirm_months)
                         if response_month is None
                         else recist.response_at(responses, response_month))
    return out, visits_out


def load(path, lesions=None, structure=None, dose_metric="D90", clinical=None, response_month=None,
         confirm_months=None, outcomes=None):
    """Read and check a cohort table (see the module docstring) -> CohortTable.

    ``outcomes``: a second table (CSV path or DataFrame) joined on ``patient_id``, e.g. the response,
    follow-up and clinical variables beside a ``seedbrachy batch`` table.
    """
    df = _read_csv(path, "cohort table")
    if "patient_id" not in df.columns:
        raise InputError(f"the cohort table needs a 'patient_id' column; columns: {list(df.columns)}")
    df["patient_id"] = df["patient_id"].astype(str)
    dup = sorted(df["patient_id"][df["patient_id"].duplicated()].unique())
    if dup:
        raise InputError(f"patient_id values must be unique; repeated: {dup[:10]}")
    if len(df) == 0:
        raise InputError(f"the cohort table {str(path)!r} has no patients")
    notes, failed = [], []
    if outcomes is not None:
        df = _join_outcomes(df, outcomes, notes)
    df = df.set_index("patient_id", drop=False)
    if _is_batch_table(df):
        failed = df.index[df["status"].astype(str).str.strip().str.lower() == "error"].tolist()
        if failed:
            notes.append(f"{len(failed)} batch cases failed and have no dosimetry ({', '.join(failed[:10])}"
                         f"{', ...' if len(failed) > 10 else ''}): left out of the dose analyses")
        if structure is None:
            structure = "gtv"
    if structure in ROLES:
        if structure not in df.columns:
            raise InputError(f"structure {structure!r} is a role read per row from the batch column {structure!r}, "
                             "which the table does not have: name the structure instead")
        structure = _per_row_structure(df, structure, notes)
    dosimetry, all_dosimetry = _dosimetry_columns(df.columns, structure, dose_metric)
    for col in dosimetry.values():
        values = df[col]
        if values.dtype == object:
            raise InputError(f"dosimetry column {col!r} must be numeric; got e.g. {values.dropna().iloc[0]!r}")
    table = CohortTable(frame=df, dosimetry=dosimetry, dose_metric=dose_metric, notes=notes)
    no_dose = df[dosimetry[dose_metric]].isna() & ~df.index.isin(failed)
    if no_dose.any():
        table.notes.append(f"{int(no_dose.sum())} patients without {dose_metric} are left out of the dose analyses")
    # response
    if lesions is not None:
        if "response" in df.columns:
            raise InputError("give either a 'response' column or a lesion table, not both")
        by_patient, table.visit_responses = responses_from_lesions(lesions, response_month,
                                                                   confirm_months=confirm_months)
        unknown = sorted(set(by_patient) - set(df.index))
        if unknown:
            raise InputError(f"lesion table has patients not in the cohort table: {unknown[:10]}")
        import pandas as pd

        table.response = pd.Series({pid: by_patient.get(pid, recist.NE) for pid in df.index}, name="response")
        how = (f"response at month {response_month:g}" if response_month is not None else
               "best overall response" + ("" if confirm_months is None else
                                          f", CR/PR confirmed >= {confirm_months:g} months later"))
        table.notes.append(f"response computed from the lesion table by RECIST 1.1 ({how})")
    elif "response" in df.columns:
        table.response = df["response"].map(lambda v: recist.NE if v != v else recist.normalise_response(v))
    # endpoints
    for col in df.columns:
        if col.endswith("_time") and f"{col[:-5]}_event" in df.columns:
            name = col[:-5]
            if df[col].dtype == object or df[f"{name}_event"].dtype == object:
                raise InputError(f"follow-up columns {col!r} and {name}_event must be numeric (months; 1/0)")
            table.endpoints[name] = (col, f"{name}_event")
        elif col.endswith("_time") or (col.endswith("_event") and f"{col[:-6]}_time" not in df.columns):
            raise InputError(f"follow-up column {col!r} needs its partner "
                             f"{col[:-5] + '_event' if col.endswith('_time') else col[:-6] + '_time'!r}")
    if table.response is None and not table.endpoints:
        raise InputError("the cohort table has neither a 'response' column (or lesion table) nor follow-up "
                         "columns '<name>_time' + '<name>_event': nothing to relate the dose to")
    # clinical variables
    used = {"patient_id", "response"} | {c for pair in table.endpoints.values() for c in pair}
    used |= {c for cols in all_dosimetry.values() for c in cols.values()}
    if clinical is not None:
        absent = [c for c in clinical if c not in df.columns]
        if absent:
            raise InputError(f"clinical columns {absent} are not in the table; columns: {list(df.columns)}")
        candidates = list(clinical)
    else:
        candidates = [c for c in df.columns if c not in used and not _BOOKKEEPING.search(c)]
    for col in candidates:
        values = df[col].dropna()
        numeric = values.dtype != object
        if values.nunique() < 2:
            table.notes.append(f"clinical column {col!r} has a single value: left out")
        elif not numeric and values.nunique() > MAX_TEXT_LEVELS:
            table.notes.append(f"clinical column {col!r} is text with {values.nunique()} distinct values: left out")
        else:
            table.clinical[col] = "continuous" if numeric and values.nunique() > 2 else "categorical"
    return table


def numeric_codes(series):
    """A categorical column as 0/1 indicators (first level = reference) -> (matrix, names, reference)."""
    values = series.astype(str)
    levels = sorted(values.unique())
    cols = [(values == lev).to_numpy(float) for lev in levels[1:]]
    return np.column_stack(cols) if cols else np.zeros((len(values), 0)), \
        [f"{series.name}={lev}" for lev in levels[1:]], levels[0]
