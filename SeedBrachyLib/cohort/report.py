"""The research report of a cohort analysis: figures (matplotlib), self-contained HTML and a PDF.

Figures: ROC curve with the Youden point, dose-response curve (fitted logistic with its 95% band,
observed responses and binned response rates), Kaplan-Meier curves by dose group for each endpoint.
Laid out as a :mod:`SeedBrachyLib.report` document and rendered by its HTML and PDF writers (the
clinical report's), so both files carry the same tables and figures. Every number comes from the
results dict (the JSON).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fmt(v, digits=3):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if abs(v) >= 1000 or (0 < abs(v) < 1e-3):
        return f"{v:.2e}"
    return f"{v:.{digits}g}" if abs(v) < 1 else f"{v:.{max(digits - 2, 1)}f}" if abs(v) < 100 else f"{v:.1f}"


def _ratio(v):
    """An odds or hazard ratio: three decimals (per-Gy ratios sit close to 1)."""
    return "-" if v is None else f"{v:.3f}" if 1e-3 <= v < 1e3 else f"{v:.2e}"


def _ratio_row(t, key):
    return [t["term"], _ratio(t[key]), f"{_ratio(t['ci_low'])}-{_ratio(t['ci_high'])}", _p(t["p"])]


def _p(v):
    return "-" if v is None else ("< 0.001" if v < 0.001 else f"{v:.3f}")


def figures(results):
    """{name: matplotlib Figure} for the results."""
    plt = _pyplot()
    figs = {}
    resp = results.get("response")
    if resp:
        r = resp["roc"]
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.plot(r["curve"]["fpr"], r["curve"]["tpr"], "-", color="C0")
        ax.plot([0, 1], [0, 1], ":", color="grey")
        y = r["youden"]
        ax.plot(1 - y["specificity"], y["sensitivity"], "o", color="C3",
                label=f"Youden cut-off {y['cutoff']:.1f} {r['unit']}")
        ax.set(xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.02),
               title=f"ROC of {r['variable']}: AUC {r['auc']:.3f} ({r['ci_low']:.3f}-{r['ci_high']:.3f}, DeLong)")
        ax.title.set_fontsize(9)
        ax.legend(loc="lower right", fontsize=8)
        figs["roc"] = fig
        d = resp["dose_response"]
        fig, ax = plt.subplots(figsize=(6, 4))
        c = d["curve"]
        ax.fill_between(c["dose"], c["ci_low"], c["ci_high"], color="C0", alpha=0.2, label="95% CI")
        ax.plot(c["dose"], c["p"], color="C0", label=f"logistic fit ({'Firth' if 'Firth' in d['method'] else 'ML'})")
        x, yy = np.asarray(d["observed"]["dose"]), np.asarray(d["observed"]["response"])
        jitter = np.random.default_rng(0).uniform(-0.02, 0.02, x.size)
        ax.plot(x, yy + jitter, "|", color="k", alpha=0.5, label="patients (1 = objective response)")
        edges = np.unique(np.quantile(x, np.linspace(0, 1, 6)))
        idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
        centres = [x[idx == i].mean() for i in range(len(edges) - 1) if (idx == i).any()]
        rates = [yy[idx == i].mean() for i in range(len(edges) - 1) if (idx == i).any()]
        ax.plot(centres, rates, "s", color="C1", label="observed rate (dose quintiles)")
        ax.axvline(y["cutoff"], color="C3", ls="--", lw=1, label=f"cut-off {y['cutoff']:.1f} {r['unit']}")
        ax.set(xlabel=f"{d['variable']} [{d['unit']}]", ylabel="P(objective response)", ylim=(-0.05, 1.05),
               title="Dose-response")
        ax.legend(fontsize=7, loc="lower right")
        figs["dose_response"] = fig
    for name, s in results.get("survival", {}).items():
        fig, ax = plt.subplots(figsize=(6, 4))
        for i, (g, km) in enumerate(sorted(s["groups"].items())):
            t = [0.0, *km["time"]]
            ax.step(t, [1.0, *km["survival"]], where="post", color=f"C{i}",
                    label=f"{s['dose_group']['variable']} >= {s['dose_group']['cutoff']:.1f}: {g} "
                          f"(n={km['n']}, events={km['events']})")
            ax.fill_between(t, [1.0, *km["ci_low"]], [1.0, *km["ci_high"]], step="post", color=f"C{i}", alpha=0.15)
        lr = next((r for r in s["logrank"] if r["variable"].startswith(s["dose_group"]["variable"] + " >=")), None)
        title = f"{name}: Kaplan-Meier by dose group"
        if lr and "p" in lr:
            title += f" (log-rank p = {_p(lr['p'])})"
        ax.set(xlabel="months", ylabel="probability", ylim=(0, 1.05), title=title)
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7, loc="lower left")
        figs[f"km_{name}"] = fig
    return figs


def _table(header, rows):
    return header, [[_fmt(v) if not isinstance(v, str) else v for v in row] for row in rows]


def _model_tables(kind, univariate, multivariate, key, label):
    """The univariate and the multivariate table of one model family (logistic: OR; Cox: HR)."""
    rows, notes = [], []
    for u in univariate:
        if "skipped" in u:
            rows.append([u["variable"], "-", "-", "not fitted"])
            notes.append(u["skipped"])
            continue
        rows += [_ratio_row(t, key) for t in u["terms"]]
        notes += u["notes"]
    notes = sorted(set(notes)) + [f"method: {m}" for m in sorted({u["method"] for u in univariate if "method" in u})]
    header = ["term", label, "95% CI", "p"]
    m = multivariate
    if "skipped" in m:
        multi = (f"Multivariate {kind}", ["", ""], [["not fitted", m["skipped"]]], [m["selection"]])
    else:
        multi = (f"Multivariate {kind}", header, [_ratio_row(t, key) for t in m["terms"]],
                 [m["selection"], m["method"], *m["notes"]])
    return [(f"Univariate {kind}", header, rows, notes), multi]


def tables(results):
    """[(title, header, rows, notes)] : every table of the report, from the results."""
    out = []
    inp = results["input"]
    out.append(("Input", ["item", "value"], [
        ["source", str(inp["source"])], ["patients", str(inp["patients"])],
        ["dose metric", f"{inp['dose_metric']} (column {inp['dose_column']}, {inp['unit']})"],
        ["clinical variables", ", ".join(f"{k} ({v})" for k, v in inp["clinical"].items()) or "-"],
        ["endpoints", ", ".join(inp["endpoints"]) or "-"]], inp["notes"]))
    resp = results.get("response")
    if resp:
        out.append(("Response (RECIST 1.1)", ["", "value"], [
            *[[k, str(v)] for k, v in resp["counts"].items()],
            ["evaluable", str(resp["n_evaluable"])],
            ["ORR", f"{resp['orr']['k']}/{resp['orr']['n']} = {100 * resp['orr']['rate']:.1f}% "
                    f"({100 * resp['orr']['ci_low']:.1f}-{100 * resp['orr']['ci_high']:.1f}%)"],
            ["LCR", f"{resp['lcr']['k']}/{resp['lcr']['n']} = {100 * resp['lcr']['rate']:.1f}% "
                    f"({100 * resp['lcr']['ci_low']:.1f}-{100 * resp['lcr']['ci_high']:.1f}%)"]],
            [resp["definitions"], resp["orr"]["method"]]))
        rows = []
        for r in resp["descriptive"]["rows"]:
            if r.get("summary") is None:
                rows.append([r["variable"], "-", "-", "-", "-"])
            elif r["kind"] == "continuous":
                rows.append([f"{r['variable']} [{r['unit']}]" if r["unit"] else r["variable"], r["summary"],
                             *r["text"], f"{_p(r['p'])} ({r['test']})"])
            else:
                for i, (lev, txt) in enumerate(r["text"].items()):
                    rows.append([f"{r['variable']} = {lev}", "n (%)", *txt,
                                 f"{_p(r['p'])} ({r['test']})" if i == 0 else ""])
        out.append(("Patients by objective response", ["variable", "summary", "response", "no response", "p (test)"],
                    rows, [r["note"] for r in resp["descriptive"]["rows"] if r.get("note")]))
        out += _model_tables("logistic regression (objective response; OR per unit)", resp["univariate"],
                             resp["multivariate"], "odds_ratio", "OR")
        r, y, rates = resp["roc"], resp["roc"]["youden"], resp["roc"]["rates"]
        out.append((f"ROC of {r['variable']} and the Youden cut-off", ["", "value"], [
            ["AUC (DeLong 95% CI)", f"{r['auc']:.3f} ({r['ci_low']:.3f}-{r['ci_high']:.3f})"],
            ["AUC bootstrap 95% CI", f"{r['auc_bootstrap_ci'][0]:.3f}-{r['auc_bootstrap_ci'][1]:.3f}"],
            ["Youden cut-off (bootstrap 95% CI)",
             f"{y['cutoff']:.1f} {r['unit']} ({y['ci_low']:.1f}-{y['ci_high']:.1f})"],
            ["sensitivity / specificity", f"{y['sensitivity']:.3f} / {y['specificity']:.3f} (J = {y['youden_j']:.3f})"],
            [f"ORR at >= {y['cutoff']:.1f}", f"{rates['responders_above']}/{rates['n_above']} = "
                                             f"{100 * rates['rate_above']:.1f}%" if rates["n_above"] else "-"],
            [f"ORR below {y['cutoff']:.1f}", f"{rates['responders_below']}/{rates['n_below']} = "
                                             f"{100 * rates['rate_below']:.1f}%" if rates["n_below"] else "-"],
            ["Fisher's exact p", _p(rates["fisher_p"])]],
            [r["method"], y["method"] + f" ({y['replicates']} replicates, seed {y['seed']})"]))
    for name, s in results.get("survival", {}).items():
        rows = []
        for label, km in [("all", s["overall"]), *sorted(s["groups"].items())]:
            at = {a["month"]: a for a in km["at"]}
            rows.append([label, str(km["n"]), str(km["events"]),
                         _fmt(km["median"]) + (f" ({_fmt(km['median_ci'][0])}-{_fmt(km['median_ci'][1])})"
                                                if km["median"] is not None else ""),
                         *[f"{100 * at[m]['survival']:.0f}%" if m in at else "-" for m in (12.0, 24.0)]])
        g = s["dose_group"]
        out.append((f"{name}: Kaplan-Meier", ["group", "n", "events", "median, months (95% CI)", "12 months",
                                               "24 months"], rows,
                    [f"groups: {g['variable']} >= {g['cutoff']:.1f} (yes/no), cut-off: {g['cutoff_source']}",
                     s["overall"]["method"]]))
        out.append((f"{name}: log-rank tests", ["factor", "chi-square", "p"],
                    [[lr["variable"], _fmt(lr.get("chi2")), _p(lr.get("p"))] for lr in s["logrank"]],
                    [lr["skipped"] for lr in s["logrank"] if "skipped" in lr]))
        out += _model_tables(f"Cox model ({name}; HR per unit)", s["univariate_cox"], s["multivariate_cox"],
                             "hazard_ratio", "HR")
    return out


def _png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    return buf.getvalue()


#: where each figure goes: after the table whose title starts with the key's text
_FIGURE_AFTER = {"roc": "ROC of ", "dose_response": "ROC of "}
_CAPTIONS = {"roc": "ROC curve of the dose metric for objective response, with the Youden-optimal point.",
             "dose_response": "Dose-response: logistic fit with its 95% band (Wald on the linear predictor), "
                              "patients (1 = objective response) and observed rates by dose quintile."}


def document(results, figs):
    """The report as a :class:`SeedBrachyLib.report.document.Document` (rendered to HTML and PDF)."""
    from ..report.document import Document, Figure, Heading, Paragraph, Table

    doc = Document("Cohort dose-response report", f"{results['software']}; input {results['input']['source']}")
    doc.add(Paragraph(f"{results['notice']} Research use only, not for clinical decisions.", "notice"))
    placed = set()
    for i, (title, header, rows, notes) in enumerate(tables(results)):
        doc.add(Heading(title, f"t{i}"), Table(tuple(header), tuple(tuple(r) for r in rows), key=f"table{i}"))
        doc.add(*[Paragraph(str(n), "small") for n in notes if n])
        for key, fig in figs.items():
            endpoint = key[3:] if key.startswith("km_") else None
            after = f"{endpoint}: Kaplan-Meier" if endpoint else _FIGURE_AFTER[key]
            if key not in placed and title.startswith(after):
                caption = (f"Kaplan-Meier estimates of {endpoint} by dose group with pointwise 95% CIs "
                           "(log(-log) Greenwood)" if endpoint else _CAPTIONS[key])
                doc.add(Figure(_png(fig), caption, key, width=0.6))
                placed.add(key)
    return doc


def write(results, html=None, pdf=None):
    """Write the report as self-contained HTML and/or PDF (paths; None = not written)."""
    from ..report.html import render_html
    from ..report.pdf import render_pdf

    doc = document(results, figures(results))
    _pyplot().close("all")
    if html:
        Path(html).write_text(render_html(doc), encoding="utf-8")
    if pdf:
        render_pdf(doc, pdf)
