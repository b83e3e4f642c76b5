"""Command line: ``seedbrachy models``, ``demo`` and the subcommands on real data (:mod:`SeedBrachyLib.commands`)."""

from __future__ import annotations

import argparse
import sys

from . import RESEARCH_NOTICE, __version__, settings
from .errors import InputError
from .progress import close, console_progress
from .sources import DEFAULT_U_PER_MCI


def _models(args):
    from .sources import add_user_model, available_models, get_model, user_source_dir
    if args.add:
        model = add_user_model(args.add, overwrite=args.force)
        print(f"added {model.key} to {user_source_dir()}")
    print(f"Seed models (S_K in U; apparent activity converted at {DEFAULT_U_PER_MCI:.3f} U/mCi by "
          f"convention, settable with {settings.SETTINGS['uPerMci'].option}):")
    for key in available_models():
        model = get_model(key)
        print(f"  {model.summary()}")
        print(f"      source: {model.citation}")
    return 0


#: Settings the demo takes from the command line.
DEMO_OPTIONS = ("sourceModel", "seedActivityMci", "uPerMci")


def _demo(args):
    import os

    from .demo import case as demo
    from .outputs import check_output
    changes = settings.from_arguments(args, DEMO_OPTIONS).as_dict()  # every input checked before any output
    check_output(args.out, "folder", force=True)
    check_output(os.path.join(args.out, demo.SCENE_FILE), "file", force=args.force)
    progress = console_progress(quiet=args.quiet)
    demo.run(out_dir=args.out, progress=progress, **{name: changes[name] for name in DEMO_OPTIONS})
    close(progress)
    return 0


def _dicom_demo(folder, args, implant_datetime, progress):
    from .demo.dicom import export_demo
    values = args.values.as_dict()
    changes = {name: values[name] for name in DEMO_OPTIONS}
    if args.prescription_gy is not None:
        changes["prescriptionGy"] = args.prescription_gy
    export_demo(folder, implant_datetime, progress=progress, overwrite=args.force, **changes)


def _example(args):
    from pathlib import Path

    from .commands.inputs import read_image, read_plan
    from .demo import export
    from .outputs import check_output
    out = Path(args.out)
    if args.cohort:
        check_output(out, "folder", force=args.force)
        progress = console_progress(quiet=args.quiet)
        names = export.write_cohort(out, args.cohort, progress=progress)
        close(progress)
        print(f"{len(names)} simulated patients in {out} (ct/, structures.dcm, plan.dcm, post_ct/ each)")
        return 0
    case = export.make_case(args.case)
    if args.implant:
        post = out / ("post_ct.nrrd" if args.format == "nrrd" else "post_ct")
        check_output(post, "file" if args.format == "nrrd" else "folder", force=args.force, inputs=[args.implant])
        study = read_image(out / "ct").series.study if (out / "ct").is_dir() else None
        implant = export.write_post_implant(case, read_plan(args.implant).seeds, post, args.format, study,
                                            overwrite=args.force)
        print(f"{implant.describe()}; post-implant CT (patient moved) in {post}")
        return 0
    check_output(out, "folder", force=args.force)
    written = export.write_case(case, out, args.format, export._study(args.case, f"EX-{args.case.upper()}"),
                                overwrite=args.force)
    print(f"{case.description}: CT {written['ct']}, structures {written['structures']}")
    return 0


def main(argv=None):
    """Entry point of the ``seedbrachy`` console command; returns the exit code (2: bad input, named on stderr)."""
    try:
        args = _parser().parse_args(argv)  # the options' choices are read here (e.g. the user's seed models)
        return args.func(args)
    except InputError as exc:
        print(f"seedbrachy: error: {exc}", file=sys.stderr)
        return 2


def _parser():
    parser = argparse.ArgumentParser(prog="seedbrachy", description=f"SeedBrachy {__version__}. {RESEARCH_NOTICE}")
    parser.add_argument("--version", action="version", version=f"seedbrachy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("models", help="list the seed source models (and add your own)")
    p.add_argument("--add", metavar="FILE", help="validate a model JSON file and add it to the user folder")
    p.add_argument("--force", action="store_true", help="with --add: replace a user model of the same name")
    p.set_defaults(func=_models)
    p = sub.add_parser("demo", help="run the built-in synthetic case")
    p.add_argument("--out", default="build/demo", help="output folder (default build/demo)")
    p.add_argument("--force", action="store_true", help="replace the scene bundle of an earlier run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    settings.add_arguments(p, DEMO_OPTIONS)
    p.set_defaults(func=_demo)
    p = sub.add_parser("example", help="write example data: the built-in cases as DICOM or NRRD, a post-implant CT "
                       "of a plan, or a simulated cohort for batch")
    p.add_argument("--case", default="neck", help="neck (the built-in case) or paraaortic (abdomen, oblique CT)")
    p.add_argument("--out", required=True, metavar="FOLDER", help="output folder")
    p.add_argument("--format", choices=("dicom", "nrrd"), default="dicom", help="file format (default dicom)")
    p.add_argument("--implant", metavar="PLAN", help="write the post-implant CT (post_ct) of this plan (RT Plan or "
                   "seeds JSON): a simulated implant with placement errors and patient motion")
    p.add_argument("--cohort", type=int, metavar="N", help="write N simulated patients (neck) for seedbrachy batch")
    p.add_argument("--force", action="store_true", help="replace existing files")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=_example)
    from .cohort import cli as cohort
    from .commands import batch, detect, dicom, evaluate, plan, postplan
    for command in (plan, evaluate, postplan, detect, batch, cohort):
        command.add_parser(sub)
    dicom.add_parser(sub, export_demo=_dicom_demo)
    return parser


if __name__ == "__main__":
    sys.exit(main())
