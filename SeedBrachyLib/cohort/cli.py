"""``seedbrachy cohort``: the dose-response analyses of a cohort table -> HTML/PDF report and JSON."""

from __future__ import annotations

from pathlib import Path

from ..commands.common import EXIT_OK, add_output_options, check_outputs, progress_of, write_json
from ..errors import InputError

#: where --json, --report-html and --report-pdf go inside --out when not given
DEFAULT_OUTPUTS = (("json", "results.json"), ("report_html", "report.html"), ("report_pdf", "report.pdf"))
SIMULATED = ("lymph-node", "escc")


def add_parser(sub):
    """Register the ``cohort`` subcommand on an argparse subparsers object."""
    p = sub.add_parser("cohort", help="dose-response statistics of a cohort table (RECIST, ROC, logistic, survival)",
                       description="Analyse a cohort table (one row per patient: dosimetry as written by "
                                   "'seedbrachy batch', clinical variables, response and/or follow-up); the table "
                                   "schema is in SeedBrachyLib/cohort/table.py and the README.")
    p.add_argument("csv", nargs="?", help="the cohort table (CSV); omit with --simulate")
    p.add_argument("--simulate", choices=SIMULATED,
                   help="the built-in research demo: write a simulated cohort (lymph-node: 81 patients after "
                        "Huang et al. 2026; escc: 36 patients after Zhang et al. 2020) into --out and analyse it")
    p.add_argument("--outcomes", metavar="CSV",
                   help="a second table joined on patient_id (response, follow-up, clinical variables), e.g. "
                        "beside a 'seedbrachy batch' table")
    p.add_argument("--lesions", metavar="CSV", help="RECIST lesion table; the response is computed from it")
    p.add_argument("--response-month", type=float, default=None,
                   help="with --lesions: the response at this visit (months; default: best overall response)")
    p.add_argument("--confirm-months", type=float, default=None,
                   help="with --lesions: best overall response with CR/PR confirmed at least this many months "
                        "later (RECIST 1.1 Table 3; e.g. 0.92 = 4 weeks; default: unconfirmed)")
    p.add_argument("--structure", help="dosimetry prefix to use when the table has several structures; with a "
                                        "'seedbrachy batch' table gtv (the default) or ctv: each row's structure "
                                        "of that role")
    p.add_argument("--dose-metric", default="D90", help="dose metric for the ROC cut-off and dose groups (default D90)")
    p.add_argument("--clinical", help="comma-separated clinical columns (default: every other column)")
    p.add_argument("--cutoff", type=float, help="dose splitting the survival groups (default: the Youden cut-off, "
                                                "else the median)")
    p.add_argument("--alpha", type=float, default=0.05, help="univariate p below which a factor enters the "
                                                              "multivariate model (default 0.05)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap replicates (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap and simulation seed (default 0)")
    p.add_argument("--out", default="build/cohort",
                   help="folder for the outputs not named by --json/--report-html/--report-pdf (results.json, "
                        "report.html, report.pdf) and for the --simulate tables (default build/cohort)")
    add_output_options(p)
    p.set_defaults(func=run)
    return p


def run(args):
    """Run the subcommand from parsed arguments; returns the exit code."""
    from ..progress import close
    from . import analysis, report, table

    for attr, name in DEFAULT_OUTPUTS:
        if not getattr(args, attr):
            setattr(args, attr, str(Path(args.out) / name))
    lesions, response_month, cutoff = args.lesions, args.response_month, args.cutoff
    if response_month is not None and not lesions:
        raise InputError("--response-month chooses the visit in a lesion table: give --lesions with it")
    if args.simulate:
        if args.csv or args.lesions or args.outcomes:
            raise InputError("--simulate writes its own tables: give no CSV, --outcomes or --lesions with it")
        check_outputs(args, folders=[args.out])
        from ..demo import cohort as demo_cohort

        csv, lesions, response_month, study_cutoff = demo_cohort.write_tables(args.simulate, args.out,
                                                                              seed=args.seed, force=args.force)
        cutoff = study_cutoff if cutoff is None else cutoff
    elif not args.csv:
        raise InputError("give the cohort table CSV (or --simulate lymph-node|escc for the built-in demo)")
    else:
        csv = args.csv
        check_outputs(args, inputs=[p for p in (csv, lesions, args.outcomes) if p])
    progress = progress_of(args)
    clinical = [c.strip() for c in args.clinical.split(",") if c.strip()] if args.clinical else None
    cohort = table.load(csv, lesions=lesions, structure=args.structure, dose_metric=args.dose_metric,
                        clinical=clinical, response_month=response_month, confirm_months=args.confirm_months,
                        outcomes=args.outcomes)
    results = analysis.analyse(cohort, alpha=args.alpha, cutoff=cutoff, replicates=args.bootstrap,
                               seed=args.seed, progress=progress, source=str(csv))
    close(progress)
    report.write(results, html=args.report_html, pdf=args.report_pdf)
    write_json(args.json, "cohort", results)
    print(summary(results))
    for path in (args.json, args.report_html, args.report_pdf):
        print(f"wrote {path}")
    return EXIT_OK


def summary(results):
    """A few lines for the terminal: ORR, AUC, cut-off, survival log-rank."""
    lines = [f"{results['input']['patients']} patients; dose metric {results['input']['dose_column']}"]
    resp = results.get("response")
    if resp:
        r, y = resp["roc"], resp["roc"]["youden"]
        rates = r["rates"]
        lines.append(f"ORR {100 * resp['orr']['rate']:.1f}%, LCR {100 * resp['lcr']['rate']:.1f}% "
                     f"({resp['n_evaluable']} evaluable)")
        lines.append(f"AUC {r['auc']:.3f} (DeLong 95% CI {r['ci_low']:.3f}-{r['ci_high']:.3f}); Youden cut-off "
                     f"{y['cutoff']:.1f} {r['unit']} (bootstrap 95% CI {y['ci_low']:.1f}-{y['ci_high']:.1f})")
        if rates["n_above"] and rates["n_below"]:
            lines.append(f"ORR {100 * rates['rate_above']:.1f}% at or above vs {100 * rates['rate_below']:.1f}% "
                         f"below (Fisher p = {rates['fisher_p']:.3g})")
    for name, s in results.get("survival", {}).items():
        lr = s["logrank"][0]
        lines.append(f"{name}: {s['overall']['events']} events; log-rank {lr['variable']} p = "
                     + (f"{lr['p']:.3g}" if "p" in lr else lr["skipped"]))
    return "\n".join(lines)
