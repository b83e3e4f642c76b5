"""``seedbrachy detect CT``: the seeds in a post-implant CT (DICOM folder or volume file), centre, axis, confidence."""

from __future__ import annotations

from .. import settings
from ..progress import close
from ..report.records import seed_records
from .common import EXIT_OK, add_output_options, check_outputs, progress_of, write_json
from .inputs import read_image


def add_parser(sub):
    p = sub.add_parser("detect", help="find the seeds in a post-implant CT (DICOM folder or NRRD, NIfTI...)")
    p.add_argument("ct", help="post-implant CT: a folder of DICOM slices or a volume file (HU)")
    p.add_argument("--count", type=int, help="number of seeds implanted (helps split touching seeds)")
    p.add_argument("--strength-u", type=float, help="S_K (U) given to each detected seed (default 1 U)")
    p.add_argument("--slice-thickness", type=float, metavar="MM", help="reconstructed slice thickness (mm); default "
                   "the DICOM header's SliceThickness, else estimated from the image")
    settings.add_arguments(p, ["reviewBelowConfidence"])
    add_output_options(p, report=False)
    p.set_defaults(func=run)
    return p


def detect(image, count=None, strength_u=None, progress=None, slice_thickness_mm=None, review_below=None):
    """:class:`~SeedBrachyLib.postimplant.detection.DetectionResult` of an :class:`~.inputs.Image` (HU); the slice
    thickness (mm) is ``slice_thickness_mm``, else the image's DICOM header's, else estimated; seeds with a
    confidence (0-1) under ``review_below`` (default the setting ``reviewBelowConfidence``) are "to review"."""
    from ..postimplant.detection import detect_seeds
    thickness = image.slice_thickness_mm if slice_thickness_mm is None else slice_thickness_mm
    if review_below is None:
        review_below = settings.SETTINGS["reviewBelowConfidence"].default
    return detect_seeds(image.array, image.grid, expected_count=count, strength_u=strength_u,
                        slice_thickness_mm=thickness, review_below=review_below, progress=progress)


def run(args):
    check_outputs(args, inputs=[args.ct])
    progress = progress_of(args)
    review_below = settings.from_arguments(args, ["reviewBelowConfidence"]).reviewBelowConfidence
    image = read_image(args.ct, "post-implant CT")
    result = detect(image, args.count, args.strength_u, progress, args.slice_thickness, review_below)
    close(progress)
    print(result.summary())
    print("\n".join(seed_lines(result)))
    for r in result.rejected:
        print(f"  rejected at ({r.position[0]:.1f}, {r.position[1]:.1f}, {r.position[2]:.1f}) mm: {r.reason}")
    write_json(args.json, "detect", {"input": str(args.ct), "summary": result.summary(),
                                     **detection_records(result),
                                     "rejected": [{"center_ras_mm": r.position, "reason": r.reason}
                                                  for r in result.rejected]})
    return EXIT_OK


def seed_lines(result, review_only=False):
    """One line of text per detected seed (centre mm RAS and axis in the post-implant CT, confidence 0-1, "to
    review"), or only the seeds to review."""
    lines = []
    for seed, c, review in zip(result.seeds, result.confidences, result.review):
        if review or not review_only:
            p, a = seed.position, seed.axis
            lines.append(f"  {seed.label:>4}: centre ({p[0]:.1f}, {p[1]:.1f}, {p[2]:.1f}) mm RAS, axis ({a[0]:.2f}, "
                         f"{a[1]:.2f}, {a[2]:.2f}), confidence {c:.2f}" + (": to review" if review else ""))
    return lines


def detection_records(result, seeds=None):
    """JSON records of a detection: each seed (``seeds``, default the detected ones in the post-implant CT, mm RAS)
    with its confidence and "to_review" flag, and the labels to review."""
    seeds = result.seeds if seeds is None else seeds
    return {**seed_records(seeds, result.confidences, result.review),
            "to_review": [s.label for s, r in zip(result.seeds, result.review) if r]}
