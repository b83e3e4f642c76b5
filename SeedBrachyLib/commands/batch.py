"""``seedbrachy batch``: many cases in one run -> one CSV row per case with every metric, the checks and any error.

Cases come from a folder (one sub-folder per patient, named by the patient id) or a CSV listing them
(column ``patient_id`` and the inputs as paths: ``ct``, ``structures``, ``plan``, ``dose``,
``post_ct``; optional per-case ``gtv``, ``ctv``, ``count`` and any setting by its name, e.g.
``prescriptionGy``). In a case folder the inputs are found by name: ``ct`` (a DICOM folder) or
``ct.nrrd`` (any volume suffix), ``structures.dcm`` / ``structures/``, ``plan.dcm`` / ``seeds.json``,
``dose.dcm`` / ``dose.nrrd``, ``post_ct`` / ``post_ct.nrrd``; ``case.json`` may hold per-case values as in
the CSV.

What runs per case: ``postplan`` when there is a post-implant CT and a plan, else ``evaluate`` when
there is a plan or a dose, else ``plan``. A failing case gets its error in the ``error`` column and the
batch goes on.

Columns (stable; the cohort analysis reads them): ``patient_id``, ``mode``, ``status`` ("ok" or
"error"), ``error``, ``prescription_gy``, ``gtv``, ``ctv``, ``n_seeds``, ``n_planned`` (postplan),
then ``<structure>.<metric>`` for every structure and every metric of
:data:`SeedBrachyLib.report.records.METRIC_NAMES` (``GTV.D90``, ``Skin.D2cc``...; Gy, %, cc), then
``check_<structure>_<metric>`` (PASS, FAIL or NOT EVALUATED) for every check.
"""

from __future__ import annotations

import csv
import json
import traceback
from argparse import Namespace
from pathlib import Path

from .. import settings
from ..errors import InputError
from ..progress import close, scaled
from ..report.records import METRIC_NAMES
from .common import EXIT_OK, EXIT_UNMET, check_outputs, progress_of
from .inputs import VOLUME_SUFFIXES
from .plan import OPTIONS as PLAN_OPTIONS

INPUTS = ("ct", "structures", "plan", "dose", "post_ct")
FIXED_COLUMNS = ("patient_id", "mode", "status", "error", "prescription_gy", "gtv", "ctv", "n_seeds", "n_planned")
OPTIONS = (*PLAN_OPTIONS, "postSeedAxis")


def add_parser(sub):
    p = sub.add_parser("batch", help="many cases in one run: one CSV row per case (metrics, checks, error)")
    p.add_argument("cases", help="a folder with one sub-folder per case, or a CSV listing the cases")
    p.add_argument("--out", required=True, metavar="CSV", help="the cohort table to write (CSV)")
    p.add_argument("--gtv", default="GTV", help="GTV name in every case (default GTV; a case may say otherwise)")
    p.add_argument("--ctv", help="CTV name in every case (default: made from the GTV and the margin)")
    p.add_argument("--ignore", action="append", default=[], metavar="NAME",
                   help="a structure to leave out in every case (repeatable)")
    p.add_argument("--force", action="store_true", help="replace the table if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    settings.add_arguments(p, OPTIONS)
    p.set_defaults(func=run)
    return p


def _find(folder, name):
    """The input ``name`` in a case folder: a sub-folder, a DICOM file, a JSON seeds file or a volume file."""
    candidates = [folder / name, folder / f"{name}.dcm"]
    candidates += [folder / f"{name}{s}" for s in VOLUME_SUFFIXES]
    if name == "plan":
        candidates.append(folder / "seeds.json")
    hit = next((c for c in candidates if c.exists()), None)
    return str(hit) if hit else None


def cases_from_folder(folder):
    out = []
    for sub in sorted(p for p in Path(folder).iterdir() if p.is_dir()):
        case = {"patient_id": sub.name, **{k: _find(sub, k) for k in INPUTS}}
        extra = sub / "case.json"
        if extra.exists():
            case.update(json.loads(extra.read_text(encoding="utf-8")))
        out.append(case)
    return out


def cases_from_csv(path):
    base = Path(path).parent
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or "patient_id" not in rows[0]:
        raise InputError(f"case list {str(path)!r} needs a header with patient_id and the input columns "
                         f"({', '.join(INPUTS)})")
    out = []
    for row in rows:
        case = {k: v for k, v in row.items() if v not in (None, "")}
        for k in INPUTS:
            if k in case and not Path(case[k]).is_absolute():
                case[k] = str(base / case[k])
        out.append(case)
    return out


def mode_of(case):
    if case.get("post_ct") and case.get("plan"):
        return "postplan"
    if case.get("plan") or case.get("dose"):
        return "evaluate"
    return "plan"


def run_case(case, base_values, defaults, progress=None):
    """One case -> (mode, result record with "evaluation" and "checks"); raises on failure."""
    from . import evaluate, plan, postplan
    from .case import load_case
    from .inputs import read_dose, read_image, read_plan
    overrides = {k: v for k, v in case.items() if k in settings.SETTINGS}
    values = settings.resolve(base_values, **overrides)
    args = Namespace(ct=case.get("ct"), structures=case.get("structures"), gtv=case.get("gtv", defaults["gtv"]),
                     ctv=case.get("ctv", defaults["ctv"]), oar=None,
                     ignore=[n for n in defaults["ignore"]])
    if not args.structures:
        raise InputError("no structures found for the case")
    mode = mode_of(case)
    count = int(case["count"]) if case.get("count") else None
    if mode == "plan":
        c = load_case(args, ctv_margin_mm=values.ctvMarginMm, body_threshold_hu=values.bodyThresholdHu)
        return mode, plan.record(plan.make_plan(c, values, progress=progress)), c
    if mode == "evaluate":
        dose = read_dose(case["dose"]) if case.get("dose") and not case.get("plan") else None
        c = load_case(args, grid=dose[1] if dose else None, ctv_margin_mm=values.ctvMarginMm,
                      body_threshold_hu=values.bodyThresholdHu)
        p = read_plan(case["plan"]) if case.get("plan") else None
        return mode, evaluate.record(evaluate.evaluate_case(c, values, p, dose, progress=progress)), c
    c = load_case(args, ctv_margin_mm=values.ctvMarginMm, body_threshold_hu=values.bodyThresholdHu)
    result = postplan.postplan_case(c, read_image(case["post_ct"], "post-implant CT"), read_plan(case["plan"]),
                                    values, count, progress=progress)
    return mode, postplan.record(result), c


def row_of(patient_id, mode, record, case, prescription_gy):
    """The CSV row (dict) of one case's record."""
    row = {"patient_id": patient_id, "mode": mode, "status": "ok", "error": "", "prescription_gy": prescription_gy,
           "gtv": case.gtv_name, "ctv": case.ctv_name, "n_seeds": record.get("n_seeds"),
           "n_planned": record.get("n_planned")}
    for name, metrics in record["evaluation"]["structures"].items():
        for metric in METRIC_NAMES:
            row[f"{name}.{metric}"] = metrics.get(metric)
    for check in record["checks"]:
        row[f"check_{check['structure']}_{check['metric']}"] = check["status"]
    return row


def run_batch(cases, values, defaults, progress=None, print_fn=print):
    """Every case in turn; returns the rows (a failed case: status "error" and its message)."""
    rows = []
    for n, case in enumerate(cases):
        pid = case.get("patient_id") or f"case{n + 1}"
        step = scaled(progress, n / len(cases), (n + 1) / len(cases))
        try:
            mode, record, c = run_case(case, values, defaults, step)
            rows.append(row_of(pid, mode, record, c, record["evaluation"]["prescription_gy"]))
            print_fn(f"{pid}: {mode} ok")
        except Exception as exc:  # noqa: BLE001 - a failed case is recorded and the batch goes on
            message = str(exc) if isinstance(exc, InputError) else \
                f"{type(exc).__name__}: {exc} ({traceback.extract_tb(exc.__traceback__)[-1].name})"
            rows.append({"patient_id": pid, "mode": mode_of(case), "status": "error", "error": message})
            print_fn(f"{pid}: error: {message}")
    return rows


def write_table(rows, path):
    """The rows as CSV: the fixed columns, then the metric columns, then the checks; blank where absent."""
    metric_cols = list(dict.fromkeys(k for r in rows for k in r if "." in k and not k.startswith("check_")))
    check_cols = list(dict.fromkeys(k for r in rows for k in r if k.startswith("check_")))
    columns = list(FIXED_COLUMNS) + metric_cols + check_cols
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="", lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return columns


def run(args):
    values = settings.from_arguments(args, OPTIONS)
    check_outputs(args, inputs=[args.cases], files=[args.out])
    source = Path(args.cases)
    if not source.exists():
        raise InputError(f"cases {args.cases!r} do not exist")
    cases = cases_from_folder(source) if source.is_dir() else cases_from_csv(source)
    if not cases:
        raise InputError(f"no case found in {args.cases!r}: one sub-folder per case, or a CSV with patient_id")
    progress = progress_of(args)
    rows = run_batch(cases, values, {"gtv": args.gtv, "ctv": args.ctv, "ignore": args.ignore}, progress)
    close(progress)
    write_table(rows, args.out)
    failed = sum(r["status"] == "error" for r in rows)
    print(f"{len(rows)} cases, {failed} failed; table {args.out}")
    return EXIT_UNMET if failed else EXIT_OK
