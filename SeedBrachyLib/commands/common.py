"""What the subcommands share: output options checked before any work, JSON files, progress, exit codes.

Exit codes: 0 success; 2 bad input (a clear message on stderr); 3 the command ran but the plan misses
a goal or a check fails (said on stdout and in the report).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .. import RESEARCH_NOTICE, __version__
from ..outputs import check_output
from ..progress import console_progress

EXIT_OK, EXIT_INPUT, EXIT_UNMET = 0, 2, 3


def add_output_options(p, report=True):
    """--json, --report-html, --report-pdf, --force and --quiet."""
    p.add_argument("--json", metavar="FILE", help="write the results as JSON (stable names, see the README)")
    if report:
        p.add_argument("--report-html", metavar="FILE", help="write the report as one self-contained HTML file")
        p.add_argument("--report-pdf", metavar="FILE", help="write the report as PDF")
    p.add_argument("--force", action="store_true", help="replace output files that exist")
    p.add_argument("--quiet", action="store_true", help="no progress display")


def finish_parser(p, options, run):
    """The options every evaluating command shares: the organ of the user's OAR limit, the outputs, the
    settings ``options`` (:func:`SeedBrachyLib.settings.add_arguments`), and ``run`` as the command."""
    from .. import settings
    p.add_argument("--oar-limit-on", metavar="NAME", help="organ at risk of --oar-limit-gy")
    add_output_options(p)
    settings.add_arguments(p, options)
    p.set_defaults(func=run)
    return p


def check_outputs(args, inputs=(), files=(), folders=()):
    """Refuse bad output paths before any computation (existing without --force, an input, wrong kind)."""
    paths = [getattr(args, "json", None), getattr(args, "report_html", None), getattr(args, "report_pdf", None),
             *files]
    given = [p for p in paths if p]
    resolved = [Path(p).expanduser().resolve() for p in given]
    if len(set(resolved)) != len(resolved):
        from ..errors import InputError
        raise InputError(f"two outputs name the same file: {', '.join(given)}")
    for p in given:
        check_output(p, "file", args.force, inputs)
    for p in folders:
        if p:
            check_output(p, "folder", args.force, inputs)


def progress_of(args):
    return console_progress(quiet=getattr(args, "quiet", False))


def _clean(value):
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(float(value)) or math.isinf(float(value)) else float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def write_json(path, command, result):
    """Write ``result`` (a dict) with the command, version and research notice; NaN becomes null."""
    if not path:
        return
    data = {"command": command, "software": f"SeedBrachy {__version__}", "notice": RESEARCH_NOTICE, **result}
    Path(path).write_text(json.dumps(_clean(data), indent=2) + "\n", encoding="utf-8")
