"""``seedbrachy postplan``: post-implant CT + the pre-plan -> detected seeds, registration, post-plan dose, pre vs post.

Steps (each a library call): detect the seeds in the post-implant CT
(:func:`~SeedBrachyLib.postimplant.detection.detect_seeds`, the implanted count if given, else the
planned count), register the post-implant CT to the planning CT (rigid, the seeds' metal masked,
:func:`~SeedBrachyLib.postimplant.registration.register_post_to_pre`), carry the seeds into the
planning frame, and compare the pre-plan and post-plan doses on the same structures and dose grid
(:func:`~SeedBrachyLib.postimplant.comparison.compare_implant`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import settings
from ..checks import indications_to_check
from ..dose import compute_dose
from ..progress import close, scaled
from ..report.records import check_records, evaluation_record
from ..sources import get_model
from ..summaries import describe_dose
from .case import add_case_arguments, load_case
from .common import EXIT_OK, EXIT_UNMET, check_outputs, finish_parser, progress_of, write_json
from .detect import detection_records, seed_lines
from .evaluate import evaluate_dose
from .inputs import read_image, read_plan
from .plan import limits_of

OPTIONS = ("prescriptionGy", "sourceModel", "ctvMarginMm", "doseSpacingMm", "doseGridThresholdPct", "indication",
           "bodyThresholdHu", "skinD2ccLimitGy", "oarMetric", "oarLimitGy", "postSeedAxis",
           "reviewBelowConfidence")


def add_parser(sub):
    p = sub.add_parser("postplan", help="post-implant verification: detect, register, post-plan dose, pre vs post")
    p.add_argument("--post-ct", required=True, help="post-implant CT: a folder of DICOM slices or a volume file")
    add_case_arguments(p)
    p.add_argument("--plan", required=True, help="the pre-plan: RT Plan (DICOM) or seeds JSON")
    p.add_argument("--count", type=int, help="number of seeds implanted, from the implant record (default: the planned "
                   "count); detection splits touching seeds to meet it")
    return finish_parser(p, OPTIONS, run)


@dataclass
class PostplanResult:
    case: object
    detection: object
    registration: object
    seeds: list  # implanted seeds in the planning frame
    plan_seeds: list
    comparison: object
    post_dose: object
    pre_evaluation: object
    post_evaluation: object
    model: object


def postplan_case(case, post_ct, plan, values, count=None, oar_limit_on=None, progress=None):
    """Post-implant verification of ``case`` (pre-plan CT and structures) from the post-implant CT (Image)."""
    from ..dose_grid import policy_grid
    from ..postimplant.comparison import compare_evaluations, post_plan_dose
    from ..postimplant.detection import detect_seeds
    from ..postimplant.registration import map_seeds, register_post_to_pre
    model = get_model(plan.model_key or values.sourceModel)
    strength = float(np.median([s.strength_u for s in plan.seeds]))
    expected = int(count) if count else len(plan.seeds)  # the implant record's count, else the plan's
    # the slice thickness is estimated from the image, not taken from the header: a series resampled after
    # reconstruction (the example's, for patient motion) has a wider slice profile than its header says
    detection = detect_seeds(post_ct.array, post_ct.grid, expected_count=expected, strength_u=strength,
                             review_below=values.reviewBelowConfidence, progress=scaled(progress, 0.0, 0.25))
    registration = register_post_to_pre(case.ct.array, case.grid, post_ct.array, post_ct.grid,
                                        post_seed_points=[s.position for s in detection.seeds],
                                        progress=scaled(progress, 0.25, 0.7))
    seeds = map_seeds(detection.seeds, registration.post_to_pre)
    rx = values.prescriptionGy
    grid = policy_grid(case.grid, list(plan.seeds) + list(seeds), model, rx,
                       [(m, case.grid) for m in case.targets().values()],
                       [(m, case.grid) for m in case.oars.values()], values.doseSpacingMm,
                       values.doseGridThresholdPct)
    pre_dose = compute_dose(grid, plan.seeds, model, progress=scaled(progress, 0.7, 0.85), allow_outside=True)
    post = post_plan_dose(grid, seeds, model, values.postSeedAxis, progress=scaled(progress, 0.85, 1.0))
    pre_eval = evaluate_dose(case, pre_dose, grid, values,
                             describe_dose(model, len(plan.seeds), grid, axes="planned seed axes"), plan.seeds, model)
    post_eval = evaluate_dose(case, post.dose, grid, values, post.description, post.seeds, model, post.formalism)
    comparison = compare_evaluations(pre_eval, post_eval, len(plan.seeds), len(seeds),
                                     indications=indications_to_check(values.indication),
                                     targets=case.target_names(), user_limits=limits_of(values, oar_limit_on))
    return PostplanResult(case, detection, registration, seeds, plan.seeds, comparison, post, pre_eval, post_eval,
                          model)


def record(result):
    c = result.comparison
    return {"detection": result.detection.summary(), "registration": result.registration.describe(),
            "n_planned": len(result.plan_seeds), "n_seeds": len(result.seeds),
            "pre": evaluation_record(result.pre_evaluation), "evaluation": evaluation_record(result.post_evaluation),
            "comparison": [{"structure": r.structure, "metric": r.metric, "unit": r.unit, "pre": r.pre,
                            "post": r.post, "difference": r.difference} for r in c.rows],
            "checks": check_records(c.checks),
            **detection_records(result.detection, result.seeds)}


def report_content(result, values):
    from ..report import ReportContent
    case = result.case
    structures = [(n, m, case.grid) for n, m in {**case.targets(), **case.oars}.items()]
    return ReportContent(
        "Post-implant verification", values.prescriptionGy, result.post_evaluation,
        identification=case.identification, checks=result.comparison.checks, model=result.model,
        strength_u=result.seeds[0].strength_u if result.seeds else None, dose=result.post_dose.dose,
        dose_grid=result.post_dose.grid, structures=structures, target=case.ctv_name, ct=case.ct.array,
        ct_grid=case.grid, seeds=result.seeds, comparison=result.comparison, pre_evaluation=result.pre_evaluation,
        method=[f"Detection: {result.detection.summary()}.", f"Registration: {result.registration.describe()}.",
                *case.notes])


def run(args):
    values = settings.from_arguments(args, OPTIONS)
    check_outputs(args, inputs=[args.ct, args.post_ct, args.structures, args.plan])
    progress = progress_of(args)
    plan = read_plan(args.plan)
    case = load_case(args, ctv_margin_mm=values.ctvMarginMm, body_threshold_hu=values.bodyThresholdHu)
    post_ct = read_image(args.post_ct, "post-implant CT")
    result = postplan_case(case, post_ct, plan, values, args.count, args.oar_limit_on, progress)
    close(progress)
    print(result.detection.summary())
    review = seed_lines(result.detection, review_only=True)
    if review:
        print("Seeds to review in the post-implant CT:\n" + "\n".join(review))
    print(result.registration.describe())
    print(result.comparison.format())
    write_json(args.json, "postplan", record(result))
    if args.report_html or args.report_pdf:
        from ..report import write_report
        write_report(report_content(result, values), html=args.report_html, pdf=args.report_pdf, force=True)
    return EXIT_UNMET if any(c.status == "FAIL" for c in result.comparison.checks) else EXIT_OK
