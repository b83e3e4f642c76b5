"""``seedbrachy evaluate``: structures + an existing plan (seeds) or dose (any system) -> DVH table, checks, report.

* With ``--plan`` (RT Plan or seeds JSON): TG-43U1 dose of the seeds on the policy's dose grid; the DVH is TG-43
  evaluated exactly at each structure's own sample points, every structure whole.
* With ``--dose`` (RT Dose or a dose volume, Gy): that dose as given, never smoothed; structures are
  read on the CT grid, or on the dose grid when there is no CT (``evaluate --dose D --structures S``
  alone, as a physicist checking another system's plan).
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import settings
from ..checks import format_checks, indications_to_check, run_checks
from ..dose import compute_dose
from ..dvh import GridDose, SeedDose, evaluate_plan, format_evaluation
from ..errors import InputError
from ..progress import close
from ..report.records import check_records, evaluation_record, seed_records
from ..sources import get_model
from ..structures import body_from_ct, mask_reaches_grid, structure_on_grid, structures_from_masks
from ..summaries import describe_dose
from .case import add_case_arguments, load_case
from .common import EXIT_OK, EXIT_UNMET, check_outputs, finish_parser, progress_of, write_json
from .inputs import read_dose, read_plan
from .plan import limits_of

OPTIONS = ("prescriptionGy", "sourceModel", "seedActivityMci", "uPerMci", "ctvMarginMm", "doseSpacingMm",
           "doseGridThresholdPct", "indication", "bodyThresholdHu", "skinD2ccLimitGy", "oarMetric", "oarLimitGy")


def add_parser(sub):
    p = sub.add_parser("evaluate", help="DVH, checks and report of an existing plan (RT Plan / seeds) or dose")
    add_case_arguments(p, ct_required=False)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--plan", help="RT Plan (DICOM) or seeds JSON: dose computed with TG-43U1")
    source.add_argument("--dose", help="RT Dose (DICOM) or dose volume file (Gy), evaluated as given")
    return finish_parser(p, OPTIONS, run)


@dataclass
class EvaluationResult:
    case: object
    evaluation: object
    dose: object
    dose_grid: object
    checks: list
    seeds: list
    model: object
    description: str


def evaluate_seeds(case, seeds, model, values, progress=None):
    """TG-43U1 dose of ``seeds`` on the policy's dose grid and the evaluation of the case's structures."""
    from ..dose_grid import policy_grid
    rx = values.prescriptionGy
    targets = [(m, case.grid) for m in case.targets().values()]
    others = [(m, case.grid) for m in case.oars.values()]
    grid = policy_grid(case.grid, seeds, model, rx, targets, others, values.doseSpacingMm,
                       values.doseGridThresholdPct)
    dose = compute_dose(grid, seeds, model, progress=progress, allow_outside=True)
    return dose, grid, describe_dose(model, len(seeds), grid)


def evaluate_dose(case, dose, dose_grid, values, description, seeds=None, model=None, formalism="line"):
    """The evaluation of the case's structures with a dose (Gy) on its own grid.

    With ``seeds`` (and their ``model``) the DVH is TG-43 evaluated exactly at each structure's own sample points,
    every structure whole (:class:`~SeedBrachyLib.dvh.SeedDose`); the dose grid gives the reference isodose volume
    of CI/EI. Without seeds the dose is read as given (:class:`~SeedBrachyLib.dvh.GridDose`, never smoothed inside a
    structure); a structure partly outside its grid is evaluated on the part inside and says so. Structures read
    from an RT Structure Set are taken at their contours' sub-voxel geometry (``Case.fine``), not as the voxels at
    least half inside.
    """
    structs = structures_from_masks(case.targets(), case.oars, case.grid, fine=case.fine())
    body = None
    if case.ct is not None:
        body = structure_on_grid("Body", body_from_ct(case.ct.array, case.grid, values.bodyThresholdHu), case.grid,
                                 dose_grid)
    volume = GridDose(dose, dose_grid)
    outside = []
    if seeds is None:  # a given dose: an organ at risk wholly outside its grid has no dose to read
        outside = [s for s in structs if s.role == "oar" and not mask_reaches_grid(*s.source, dose_grid)]
        structs = [s for s in structs if s not in outside]
    evaluation = evaluate_plan(volume if seeds is None else SeedDose(seeds, model, formalism), structs,
                               values.prescriptionGy, body=body, dose_description=description, dose_volume=volume)
    evaluation.notes.extend(f"{s.name} lies wholly outside the dose grid ({dose_grid.describe()}): not evaluated"
                            for s in outside)
    return evaluation


def evaluate_case(case, values, plan=None, dose=None, oar_limit_on=None, progress=None):
    """Evaluate ``case`` with a plan (:class:`~.inputs.PlanInput`) or a dose ``(Gy array, Grid, description)``."""
    seeds, model = [], None
    if plan is not None:
        model = get_model(plan.model_key or values.sourceModel)
        seeds = plan.seeds
        dose_gy, grid, description = evaluate_seeds(case, seeds, model, values, progress)
        evaluation = evaluate_dose(case, dose_gy, grid, values, description, seeds, model)
    else:
        dose_gy, grid, description = dose
        evaluation = evaluate_dose(case, dose_gy, grid, values, description)
    checks = run_checks(evaluation, indications_to_check(values.indication), case.target_names(),
                        limits_of(values, oar_limit_on))
    return EvaluationResult(case, evaluation, dose_gy, grid, checks, seeds, model, description)


def record(result):
    out = {"evaluation": evaluation_record(result.evaluation), "checks": check_records(result.checks),
           "n_seeds": len(result.seeds)}
    if result.seeds:
        out.update(seed_records(result.seeds))
    return out


def report_content(result, values):
    from ..report import ReportContent
    case = result.case
    structures = [(n, m, case.grid) for n, m in {**case.targets(), **case.oars}.items()]
    strength = result.seeds[0].strength_u if result.seeds else None
    return ReportContent("Plan evaluation", values.prescriptionGy, result.evaluation,
                         identification=case.identification, checks=result.checks, model=result.model,
                         strength_u=strength, u_per_mci=values.uPerMci, dose=result.dose, dose_grid=result.dose_grid,
                         structures=structures, target=case.ctv_name if case.ctv is not None else case.gtv_name,
                         ct=case.ct.array if case.ct is not None else None, ct_grid=case.grid, seeds=result.seeds,
                         method=list(case.notes))


def run(args):
    values = settings.from_arguments(args, OPTIONS)
    check_outputs(args, inputs=[args.ct, args.structures, args.plan, args.dose])
    progress = progress_of(args)
    plan = read_plan(args.plan) if args.plan else None
    dose = None
    grid = None
    if args.dose:
        dose = read_dose(args.dose)
        grid = dose[1]
    if args.plan and not args.ct:
        raise InputError("--plan without --ct: the structures need the CT grid (or give --dose)")
    case = load_case(args, grid=grid, ctv_margin_mm=values.ctvMarginMm, body_threshold_hu=values.bodyThresholdHu)
    result = evaluate_case(case, values, plan, dose, args.oar_limit_on, progress)
    close(progress)
    print(format_evaluation(result.evaluation).rstrip())
    print(format_checks(result.checks).rstrip())
    write_json(args.json, "evaluate", record(result))
    if args.report_html or args.report_pdf:
        from ..report import write_report
        write_report(report_content(result, values), html=args.report_html, pdf=args.report_pdf, force=True)
    return EXIT_UNMET if any(c.status == "FAIL" for c in result.checks) else EXIT_OK
