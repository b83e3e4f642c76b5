"""Command line: ``seedbrachy models``, ``demo`` and the subcommands on real data (:mod:`SeedBrachyLib.commands`)."""

from __future__ import annotations

import argparse
import sys

from . import RESEARCH_NOTICE, __version__
from .errors import InputError
from .progress import close, console_progress
from .sources import DEFAULT_U_PER_MCI


def _models(args):
    from .sources import add_user_model, available_models, get_model, user_source_dir
    if args.add:
        model = add_user_model(args.add, overwrite=args.force)
        print(f"added {model.key} to {user_source_dir()}")
    print(f"Seed models (S_K in U; apparent activity converted at {DEFAULT_U_PER_MCI:.3f} U/mCi by "
          "convention, settable with demo --u-per-mci):")
    for key in available_models():
        model = get_model(key)
        print(f"  {model.summary()}")
        print(f"      source: {model.citation}")
    return 0


def _demo(args):
    import os

    from .demo import case as demo
    from .outputs import check_output
    check_output(args.out, "folder", force=True)
    check_output(os.path.join(args.out, demo.SCENE_FILE), "file", force=args.force)
    progress = console_progress(quiet=args.quiet)
    demo.run(out_dir=args.out, progress=progress, model_key=args.model, activity_mci=args.activity_mci,
             u_per_mci=args.u_per_mci)
    close(progress)
    return 0


def main(argv=None):
    """Entry point of the ``seedbrachy`` console command; returns the exit code."""
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
    p.add_argument("--model", default="I125_OncoSeed6711", help="seed model key (see 'seedbrachy models')")
    p.add_argument("--activity-mci", type=float, default=0.5, help="apparent activity per seed, mCi (default 0.5)")
    p.add_argument("--u-per-mci", type=float, default=DEFAULT_U_PER_MCI,
                   help=f"S_K per apparent activity, U/mCi (default {DEFAULT_U_PER_MCI:.3f}, the I-125 convention)")
    p.set_defaults(func=_demo)
    from .commands import detect
    for command in (detect,):
        command.add_parser(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except InputError as exc:
        print(f"seedbrachy: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
