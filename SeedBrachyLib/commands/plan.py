"""``seedbrachy plan``: CT + structures -> needles and seeds, RT Plan, RT Dose, loading sheet, seed order, report.

Settings (prescription, seed model and activity, needle entry side, template, planning method, dose
grid, indication, limits) are the options of :mod:`SeedBrachyLib.settings`. When the optimiser
cannot meet a goal the summary, the report and the exit status (3) say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import settings
from ..checks import format_checks, goals_on, indications_to_check, run_checks, user_limits
from ..errors import InputError
from ..planning import pipeline, robustness
from ..planning.goal_status import goal_status, unmet_message
from ..planning.loading import load_pattern
from ..planning.loading_sheet import loading_sheet, loading_sheet_csv
from ..planning.optimize import OAR_METRICS, Goals, OarLimit
from ..planning.order import seed_order
from ..progress import close, scaled
from ..report.records import check_records, evaluation_record, seed_records
from ..sources import get_model
from .case import add_case_arguments, load_case
from .common import EXIT_OK, EXIT_UNMET, check_outputs, finish_parser, progress_of, write_json

#: The settings ``plan`` takes as options.
OPTIONS = ("prescriptionGy", "sourceModel", "seedActivityMci", "uPerMci", "ctvMarginMm", "planningMethod",
           "needleEntry", "holeSpacingMm", "safetyMarginMm", "candidateSpacingMm", "seedSpacingMm", "randomSeed",
           "boneThresholdHu", "doseSpacingMm", "doseGridThresholdPct", "indication", "skinThicknessMm",
           "bodyThresholdHu", "skinD2ccLimitGy", "oarMetric", "oarLimitGy", "robustnessSamples",
           *settings.PLACEMENT_ERROR_SETTINGS)
OUTPUT_FILES = {"plan": "plan.dcm", "dose": "dose.dcm", "structures": "structures.dcm", "dose_nrrd": "dose.nrrd",
                "structures_nrrd": "structures", "seeds": "seeds.json",
                "loading": "loading_sheet.csv", "json": "results.json", "html": "report.html", "pdf": "report.pdf"}


def add_parser(sub):
    p = sub.add_parser("plan", help="plan needles and seeds on a CT: RT Plan, RT Dose, loading sheet, report")
    add_case_arguments(p)
    p.add_argument("--nogo", action="append", default=[], metavar="NAME",
                   help="an organ at risk the needles must keep clear of (repeatable; bone always)")
    p.add_argument("--robustness", action="store_true",
                   help="also sample implants around the plan (placement errors: the --needle-*/--seed-* SD options, "
                        "--robustness-samples) and report how often each goal holds")
    p.add_argument("--out", required=True, metavar="FOLDER",
                   help=f"output folder: {', '.join(sorted(set(OUTPUT_FILES.values())))}")
    return finish_parser(p, OPTIONS, run)


@dataclass
class PlanResult:
    """What ``plan`` made (positions mm RAS, dose Gy): the plan, its evaluation, checks, goals and outputs."""

    case: object
    values: object
    model: object
    plan: object
    evaluation: object
    dose: object
    dose_grid: object
    checks: list
    goals: list
    loading: list
    order: object
    robustness: object = None

    @property
    def unmet(self):
        return unmet_message(self.goals) if self.goals else ""


def limits_of(values, oar_name):
    """The user limits of the settings (skin D2cc, one organ at risk) as checks goals."""
    return user_limits(values.skinD2ccLimitGy, oar_name or "", values.oarMetric, values.oarLimitGy)


def make_plan(case, values, nogo=(), oar_limit_on=None, progress=None):
    """Plan ``case`` (:class:`~.case.Case` with a CT) with ``values`` (:class:`~SeedBrachyLib.settings.Values`)."""
    if case.ct is None:
        raise InputError("planning needs the CT (--ct)")
    model = get_model(values.sourceModel)
    rx = values.prescriptionGy
    nogo_names = list(nogo)
    missing = [n for n in nogo_names if n not in case.oars]
    if missing:
        raise InputError(f"no-go structures {missing} are not among the organs at risk ({sorted(case.oars)})")
    planning = pipeline.prepare(case.ct.array, case.grid, case.ctv, rx, oar_masks=case.oars, nogo_names=nogo_names,
                                gtv_mask=case.gtv, bone_threshold_hu=values.boneThresholdHu,
                                skin_thickness_mm=values.skinThicknessMm)
    planning.targets = {case.gtv_name: case.gtv, case.ctv_name: case.ctv}
    planning.fine = case.fine()
    _, _, candidates = pipeline.generate_needles(planning, values.needle_direction, values.holeSpacingMm,
                                                 values.safetyMarginMm, values.candidateSpacingMm)
    limits = limits_of(values, oar_limit_on)
    goals = None
    if values.planningMethod == "optimise":
        oar_limits = tuple(OarLimit(g.structure, g.metric, g.limit) for g in limits if g.metric in OAR_METRICS)
        goals = Goals(rx, oar_limits=oar_limits)
        plan = pipeline.optimise_plan(planning, candidates, values.strength_u, model, goals,
                                      random_seed=values.randomSeed, progress=scaled(progress, 0.0, 0.8))
    else:
        plan = load_pattern(candidates, values.planningMethod, values.strength_u, values.seedSpacingMm)
    seeds = plan.seeds()
    evaluation, dose, grid = pipeline.evaluate(planning, seeds, model, progress=scaled(progress, 0.8, 1.0),
                                               spacing_mm=values.doseSpacingMm,
                                               threshold_pct=values.doseGridThresholdPct)
    checks = run_checks(evaluation, indications_to_check(values.indication), case.target_names(), limits)
    status = goal_status(goals, evaluation, case.ctv_name) if goals is not None else []
    order = seed_order(plan.n_seeds, activity_mci=values.seedActivityMci, u_per_mci=values.uPerMci,
                       model_name=model.name)
    return PlanResult(case, values, model, plan, evaluation, dose, grid, checks, status,
                      loading_sheet(plan.needle_table()), order)


def add_robustness(result, oar_limit_on=None, progress=None):
    """Placement robustness of ``result``'s plan (settings: robustnessSamples, the placement errors, randomSeed):
    D90/V100 of the GTV and CTV, D2cc of every organ at risk, and how often each checked goal holds."""
    case, v = result.case, result.values
    masks = {name: (mask, "target") for name, mask in case.targets().items()}
    masks.update({name: (mask, "oar") for name, mask in case.oars.items()})
    goals = [g for indication in indications_to_check(v.indication) for g in goals_on(indication, case.target_names())]
    goals += limits_of(v, oar_limit_on)
    result.robustness = robustness.plan_robustness(
        result.plan, result.model, masks, case.grid, goals, v.prescriptionGy, errors=v.placement_errors,
        n_samples=v.robustnessSamples, random_seed=v.randomSeed, progress=progress)
    return result.robustness


def record(result):
    """The JSON record of a plan (stable names: see :mod:`SeedBrachyLib.report.records`)."""
    return {"settings": result.values.as_dict(), "n_seeds": result.plan.n_seeds, "n_needles": result.plan.n_needles,
            "evaluation": evaluation_record(result.evaluation), "checks": check_records(result.checks),
            "goals": [{"goal": g.goal, "achieved": g.achieved, "unit": g.unit, "met": g.met} for g in result.goals],
            "goals_met": not result.unmet, "loading_sheet": [n.row() for n in result.loading],
            **({"robustness": robustness_record(result.robustness)} if result.robustness is not None else {}),
            **seed_records(result.plan.seeds())}


def robustness_record(rob):
    """JSON of a :class:`~SeedBrachyLib.planning.robustness.RobustnessResult`: per metric the nominal value and the
    sample mean, SD and 5th/50th/95th percentiles (its unit), per goal the probability and Wilson 95% CI."""
    metrics = {f"{s}.{m}": {k: v for k, v in spread.items() if k != "se"} for (s, m), spread in rob.spread().items()}
    goals = [{"goal": p.goal, "structure": p.structure, "metric": p.metric, "probability": p.p, "ci_low": p.ci_low,
              "ci_high": p.ci_high, "k": p.k, "n": p.n, "source": p.source} for p in rob.probabilities]
    return {"n_samples": rob.n_samples, "errors": rob.errors.describe(), "metrics": metrics, "goals": goals}


def report_content(result):
    """The :class:`~SeedBrachyLib.report.ReportContent` of a plan."""
    from ..report import ReportContent
    case, v = result.case, result.values
    structures = [(n, m, case.grid) for n, m in {**case.targets(), **case.oars}.items()]
    return ReportContent(
        "Pre-plan", v.prescriptionGy, result.evaluation, identification=case.identification, checks=result.checks,
        model=result.model, strength_u=v.strength_u, u_per_mci=v.uPerMci, dose=result.dose,
        dose_grid=result.dose_grid, structures=structures, target=case.ctv_name, ct=case.ct.array,
        ct_grid=case.grid, seeds=result.plan.seeds(), loading=result.loading, order=result.order,
        goals=result.goals if result.goals else None, robustness=result.robustness,
        method=[f"Planning: {v.planningMethod}; needles enter from the patient's {v.needleEntry}, template holes "
                f"{v.holeSpacingMm:g} mm apart, {v.safetyMarginMm:g} mm clear of bone and no-go structures; "
                f"candidate positions every {v.candidateSpacingMm:g} mm.", *case.notes])


def print_summary(result, print_fn=print):
    print_fn("\n".join(result.plan.summary_lines(result.values.uPerMci)))
    print_fn("\n".join(result.order.lines()))
    print_fn(format_checks(result.checks).rstrip())
    if result.robustness is not None:
        print_fn("\n".join(result.robustness.summary_lines()))
    for g in result.goals:
        print_fn(g.describe())
    if result.unmet:
        print_fn(f"WARNING: {result.unmet}")


def write_outputs(result, out):
    """Write the plan's files into folder ``out`` (see :data:`OUTPUT_FILES`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = result.plan.seeds()
    series = getattr(result.case.ct, "series", None)
    structures = {**result.case.targets(), **result.case.oars}
    if series is not None:
        from ..dicomrt import Roi, write_rtdose, write_rtplan, write_rtstruct
        rois = [Roi(n, result.case.fraction(n), interpreted_type={result.case.gtv_name: "GTV",
                                                                 result.case.ctv_name: "CTV"}.get(n, "ORGAN"))
                for n in structures]
        write_rtstruct(out / OUTPUT_FILES["structures"], rois, result.case.grid, series, overwrite=True)
        ds = write_rtplan(out / OUTPUT_FILES["plan"], seeds, result.model, series.study,
                          result.values.prescriptionGy, overwrite=True)
        write_rtdose(out / OUTPUT_FILES["dose"], result.dose, result.dose_grid, series.study,
                     plan_sop_instance_uid=str(ds.SOPInstanceUID), overwrite=True)
    else:
        import SimpleITK as sitk

        from ..itk_image import to_sitk
        sitk.WriteImage(to_sitk(result.dose, result.dose_grid), str(out / OUTPUT_FILES["dose_nrrd"]))
        folder = out / OUTPUT_FILES["structures_nrrd"]
        folder.mkdir(exist_ok=True)
        for name, mask in structures.items():
            sitk.WriteImage(to_sitk(mask.astype("uint8"), result.case.grid), str(folder / f"{name}.nrrd"))
    write_json(out / OUTPUT_FILES["seeds"], "plan", seed_records(seeds))
    (out / OUTPUT_FILES["loading"]).write_text(loading_sheet_csv(result.loading), encoding="utf-8")


def run(args):
    values = settings.from_arguments(args, OPTIONS)
    check_outputs(args, inputs=[args.ct, args.structures], folders=[args.out])
    progress = progress_of(args)
    case = load_case(args, ctv_margin_mm=values.ctvMarginMm, body_threshold_hu=values.bodyThresholdHu)
    result = make_plan(case, values, args.nogo, args.oar_limit_on,
                       scaled(progress, 0.0, 0.7) if args.robustness else progress)
    if args.robustness:
        add_robustness(result, args.oar_limit_on, scaled(progress, 0.7, 1.0))
    close(progress)
    print_summary(result)
    write_outputs(result, args.out)
    out = Path(args.out)
    write_json(args.json or out / OUTPUT_FILES["json"], "plan", record(result))
    from ..report import write_report
    write_report(report_content(result), html=args.report_html or out / OUTPUT_FILES["html"],
                 pdf=args.report_pdf or out / OUTPUT_FILES["pdf"], force=True)
    print(f"Outputs in {out}")
    failed = [c for c in result.checks if c.status == "FAIL"]
    return EXIT_UNMET if result.unmet or failed else EXIT_OK
