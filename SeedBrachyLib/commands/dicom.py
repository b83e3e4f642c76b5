"""``seedbrachy dicom export`` / ``seedbrachy dicom import``: a case to and from DICOM RT.

* ``dicom export OUT --demo``: the built-in synthetic neck case, planned, as CT + RT Structure Set + RT Plan +
  RT Dose (a worked example to load in Slicer/SlicerRT or another planning system).
* ``dicom export OUT --ct CT --plan PLAN [--structures S] [--dose D] --prescription-gy RX``: a case computed
  headless (CT folder or volume, seeds JSON or RT Plan, labelmaps or RT Structure Set, dose volume) as DICOM
  RT. A CT read from DICOM is referenced, not written again: the new objects join its study.
* ``dicom import FOLDER``: what a DICOM folder holds (CT grid, ROIs and volumes, seeds with S_K decayed to
  ``--implant-date``, dose), optionally as JSON with the seed list.
"""

from __future__ import annotations

from .. import settings
from ..dicomrt.dataset import parse_datetime
from ..errors import InputError
from ..progress import close
from .common import EXIT_OK, check_outputs, progress_of, write_json

SOURCE_OPTIONS = ("sourceModel", "seedActivityMci", "uPerMci")  # --demo plans with them; --ct: a plan's model


def add_parser(sub, export_demo=None):
    """The ``dicom`` subcommand; ``export_demo(folder, args, implant_datetime, progress)`` serves ``--demo``
    (given by the command line, which alone may run the built-in synthetic case)."""
    p = sub.add_parser("dicom", help="export a case to DICOM RT, or read a DICOM folder")
    actions = p.add_subparsers(dest="action", required=True)
    e = actions.add_parser("export", help="write CT, RT Structure Set, RT Plan and RT Dose")
    e.add_argument("out", help="output folder (new, or empty; --force to write into an existing one)")
    e.add_argument("--demo", action="store_true", help="export the built-in synthetic neck case")
    e.add_argument("--ct", help="CT: a folder of DICOM slices or a volume file (HU)")
    e.add_argument("--structures", help="RT Structure Set, or labelmap files (a file or a folder of them)")
    e.add_argument("--plan", help="seeds: a seeds JSON file or an RT Plan")
    e.add_argument("--dose", help="dose: an RT Dose or a dose volume file (Gy)")
    e.add_argument("--target", help="name of the target structure the prescription is to (default: CTV or GTV)")
    e.add_argument("--prescription-gy", type=float,
                   help="prescribed total dose (Gy); required with --ct, --demo plans to it when given")
    settings.add_arguments(e, SOURCE_OPTIONS)
    e.add_argument("--implant-date", help="date (and time) the seed strengths refer to, ISO 8601 (default now)")
    e.add_argument("--force", action="store_true", help="write into an existing output folder")
    e.add_argument("--quiet", action="store_true", help="no progress display")
    e.set_defaults(func=run_export, export_demo=export_demo)
    i = actions.add_parser("import", help="read a DICOM folder: CT, structures, seeds, dose")
    i.add_argument("folder", help="folder holding the CT series and RT objects (searched recursively)")
    i.add_argument("--implant-date", help="decay the seed strengths to this date (and time), ISO 8601")
    i.add_argument("--json", metavar="FILE", help="write the summary and the seed list as JSON")
    i.add_argument("--force", action="store_true", help="replace the JSON file if it exists")
    i.add_argument("--quiet", action="store_true", help="no progress display")
    i.set_defaults(func=run_import)
    return p


def run_export(args):
    check_outputs(args, inputs=[p for p in (args.ct, args.structures, args.plan, args.dose) if p],
                  folders=[args.out])
    args.values = settings.from_arguments(args, SOURCE_OPTIONS)  # every input checked before any output
    when = parse_datetime(args.implant_date, 'implant date')
    progress = progress_of(args)
    if args.demo:
        if args.ct or args.plan or args.export_demo is None:
            raise InputError("--demo writes the synthetic case: give either --demo or --ct and --plan")
        args.export_demo(args.out, args, when, progress)
    else:
        _export_case(args, when, progress)
    close(progress)
    return EXIT_OK


def _export_case(args, when, progress):
    from ..dicomrt import Roi, write_dicom_case
    from .inputs import read_dose, read_image, read_plan, read_structures

    if not (args.ct and args.plan and args.prescription_gy):
        raise InputError("dicom export needs --ct, --plan and --prescription-gy (or --demo)")
    image = read_image(args.ct, "CT")
    frame = image.series.study.frame_of_reference_uid if image.series is not None else None
    plan = read_plan(args.plan)
    read = read_structures(args.structures, image.grid, frame) if args.structures else {}
    target = args.target or next((n for n in ("CTV", "GTV") if n in read), None)
    if args.target and args.target not in read:
        raise InputError(f"target {args.target!r} is not among the structures {sorted(read)}")
    rois = [Roi(name, s.weights, interpreted_type=name if name in ("GTV", "CTV", "PTV") else "ORGAN")
            for name, s in read.items()]  # partial volumes as read: the contours keep their sub-voxel course
    target_number = [r.name for r in rois].index(target) + 1 if target else None
    dose = dose_grid = None
    if args.dose:
        dose, dose_grid, _ = read_dose(args.dose, frame)
    model = plan.model_key or args.values.sourceModel
    paths = write_dicom_case(args.out, image.array, image.grid, rois, plan.seeds, model, args.prescription_gy,
                             dose, dose_grid, when, image.series, target_number, overwrite=args.force,
                             progress=progress).paths
    print(f"DICOM RT written: {', '.join(f'{k} {v}' for k, v in paths.items())}"
          f"{' (the CT is the input series, referenced)' if image.series is not None else ''}")


def run_import(args):
    check_outputs(args, inputs=[args.folder])
    from ..dicomrt import read_dicom_folder
    progress = progress_of(args)
    case = read_dicom_folder(args.folder, parse_datetime(args.implant_date, 'implant date'), progress=progress)
    close(progress)
    print("\n".join(case.summary_lines()))
    plan = case.plan
    write_json(args.json, "dicom import", {
        "folder": str(args.folder),
        "ct": {"dims": list(case.grid.dims), "spacing_mm": case.grid.spacing, "origin_ras_mm": case.grid.origin,
               "direction_ras": case.grid.direction, "series_uid": case.series.series_instance_uid},
        "rois": [{"number": r.number, "name": r.name, "type": r.interpreted_type,
                  "volume_cc": float(r.fraction.sum(dtype=float)) * case.grid.voxel_volume_cc} for r in case.rois],
        "plan": None if plan is None else {
            "encoding": plan.encoding, "model": plan.model_key, "prescription_gy": plan.prescription_gy,
            "implant_date": None if plan.implant_datetime is None else plan.implant_datetime.isoformat(),
            "decay": plan.decay_lines(),
            "space": "RAS", "seeds": [{"label": s.label, "center_ras_mm": s.position, "axis_ras": s.axis,
                                       "strength_u": s.strength_u} for s in plan.seeds]},
        "dose": None if case.dose_gy is None else {"max_gy": float(case.dose_gy.max()), "dims": list(
            case.dose_grid.dims), "spacing_mm": case.dose_grid.spacing},
        "notes": case.notes})
    return EXIT_OK
