"""The dose-response analyses of a cohort, every number with its method: one JSON-ready dict.

Response (objective response = CR or PR; local control = CR, PR, SD or Non-CR/Non-PD), for the
patients with an evaluable response and the dose metric:

* ORR and LCR with exact (Clopper-Pearson) 95% CIs;
* descriptive table of every dosimetry and clinical variable by objective response
  (:mod:`.descriptive`);
* univariate logistic regression of objective response on each variable; the variables with
  p < ``alpha`` enter the multivariate model. Of the dosimetry metrics only the analysed dose metric
  may enter it (the metrics are strongly collinear: D90, D100, V100 measure the same coverage);
* ROC of the dose metric: AUC (DeLong CI, and the bootstrap CI beside it), the Youden cut-off with
  its bootstrap CI, and the response rates at or above vs below the cut-off (Fisher's exact test);
* the dose-response curve: the univariate logistic fit with its 95% band.

Survival, for each endpoint ``<name>_time``/``<name>_event``: Kaplan-Meier overall and by dose
group (dose metric >= the cut-off: the one given, else the Youden cut-off, else the median), log-rank
tests for the dose group, the response group and each categorical variable, univariate Cox models,
and a multivariate Cox model of the factors with p < ``alpha`` (dose group rather than the continuous
dose).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from .. import RESEARCH_NOTICE, __version__
from ..errors import InputError
from ..progress import report
from ..report.records import metric_unit as unit
from . import descriptive, logistic, recist, roc, survival
from .table import numeric_codes

SURVIVAL_MONTHS = (6, 12, 24, 36)


def _rate(k, n):
    ci = stats.binomtest(int(k), int(n)).proportion_ci(method="exact")
    return dict(k=int(k), n=int(n), rate=k / n, ci_low=float(ci.low), ci_high=float(ci.high),
                method="exact (Clopper-Pearson) 95% CI")


def _design_for(frame, name, kind):
    """(matrix, term names, note) of one variable: continuous as is; categorical as indicators."""
    if kind == "continuous":
        return frame[name].to_numpy(float)[:, None], [name], None
    X, names, ref = numeric_codes(frame[name])
    return X, names, f"reference level {name}={ref}"


def _univariate_logistic(frame, y, variables):
    rows = []
    for name, kind in variables.items():
        keep = frame[name].notna().to_numpy()
        X, names, ref = _design_for(frame[keep], name, kind)
        try:
            fit = logistic.fit(X, y[keep], names, label=f"objective response on {name}")
        except InputError as exc:
            rows.append(dict(variable=name, kind=kind, skipped=str(exc)))
            continue
        entry = dict(variable=name, kind=kind, **fit.as_dict(), reference=ref)
        entry["p"] = min(t["p"] for t in entry["terms"])
        rows.append(entry)
    return rows


def _response_section(table, alpha, replicates, seed, progress):
    labels = table.response
    dose = table.dose
    evaluable = (labels != recist.NE) & dose.notna()
    counts = {r: int((labels == r).sum()) for r in recist.RESPONSES}
    frame = table.frame[evaluable.to_numpy()]
    y = labels[evaluable].isin(recist.OBJECTIVE).to_numpy(int)
    lc = labels[evaluable].isin(recist.LOCAL_CONTROL).to_numpy(int)
    n = int(evaluable.sum())
    if n == 0:
        raise InputError("no patient has both an evaluable response (not NE) and the dose metric")
    out = dict(counts=counts, n_evaluable=n, n_not_evaluable=int(len(labels) - n),
               orr=_rate(y.sum(), n), lcr=_rate(lc.sum(), n),
               definitions="objective response = CR + PR; local control = CR + PR + SD (+ Non-CR/Non-PD)")
    logistic.check_counts(y, "objective response")
    group = y.astype(bool)
    variables = {table.dosimetry[m]: "continuous" for m in table.dosimetry}
    variables.update(table.clinical)
    rows = []
    for name, kind in variables.items():
        if kind == "continuous":
            metric = next((m for m, c in table.dosimetry.items() if c == name), None)
            rows.append(descriptive.continuous_row(name, frame[name], group, unit(metric) if metric else ""))
        else:
            rows.append(descriptive.categorical_row(name, frame[name].to_numpy(object), group))
    out["descriptive"] = dict(groups=["objective response", "no objective response"], rows=rows)
    report(progress, 0.15, "logistic regression")
    out["univariate"] = _univariate_logistic(frame, y, variables)
    dose_col = table.dosimetry[table.dose_metric]
    selected = [r["variable"] for r in out["univariate"] if "skipped" not in r and r["p"] < alpha
                and (r["variable"] == dose_col or r["variable"] in table.clinical)]
    if selected:
        keep = frame[selected].notna().all(axis=1).to_numpy()
        parts = [_design_for(frame[keep], v, variables[v]) for v in selected]
        X = np.column_stack([p[0] for p in parts])
        names = [t for p in parts for t in p[1]]
        try:
            fit = logistic.fit(X, y[keep], names, label="objective response (multivariate)")
            out["multivariate"] = dict(variables=selected, **fit.as_dict())
        except InputError as exc:
            out["multivariate"] = dict(variables=selected, skipped=str(exc))
    else:
        out["multivariate"] = dict(variables=[], skipped=f"no variable had univariate p < {alpha:g}")
    out["multivariate"]["selection"] = (f"univariate p < {alpha:g}; of the dosimetry metrics only {dose_col} "
                                        "(the others are collinear with it)")
    report(progress, 0.3, "ROC and cut-off")
    x = frame[dose_col].to_numpy(float)
    delong = roc.auc_delong(x, y)
    cut = roc.youden(x, y)
    boot = roc.bootstrap(x, y, replicates=replicates, seed=seed,
                         progress=lambda f, m: report(progress, 0.3 + 0.4 * f, m))
    fpr, tpr, thr = roc.roc_curve(x, y)
    youden = dict(**cut, ci_low=boot["cutoff_ci"][0], ci_high=boot["cutoff_ci"][1], method=roc.YOUDEN_METHOD,
                  replicates=replicates, seed=seed)
    out["roc"] = dict(variable=dose_col, unit=unit(table.dose_metric), **delong, auc_bootstrap_ci=boot["auc_ci"],
                      reported_ci="DeLong", youden=youden,
                      rates=roc.rates_by_cutoff(x, y, cut["cutoff"]),
                      curve=dict(fpr=fpr.tolist(), tpr=tpr.tolist(), threshold=[float(t) for t in thr]))
    dose_fit = logistic.fit(x, y, [dose_col], label=f"objective response on {dose_col}")
    grid = np.linspace(x.min(), x.max(), 101)
    p, lo, hi = dose_fit.predict(grid[:, None])
    out["dose_response"] = dict(variable=dose_col, unit=unit(table.dose_metric), **dose_fit.as_dict(),
                                curve=dict(dose=grid.tolist(), p=p.tolist(), ci_low=lo.tolist(), ci_high=hi.tolist()),
                                observed=dict(dose=x.tolist(), response=y.tolist()))
    return out


def _cox_rows(t, e, frame, variables, label):
    rows = []
    for name, kind in variables.items():
        keep = frame[name].notna().to_numpy()
        X, names, ref = _design_for(frame[keep], name, kind)
        try:
            res = survival.cox(t[keep], e[keep], X, names, label=f"{label} on {name}")
        except InputError as exc:
            rows.append(dict(variable=name, kind=kind, skipped=str(exc)))
            continue
        rows.append(dict(variable=name, kind=kind, reference=ref, p=min(r["p"] for r in res["terms"]), **res))
    return rows


def _survival_section(table, name, cutoff, cutoff_source, alpha):
    tcol, ecol = table.endpoints[name]
    frame = table.frame
    ok = frame[tcol].notna() & frame[ecol].notna() & table.dose.notna()
    frame = frame[ok.to_numpy()].copy()
    t, e = frame[tcol].to_numpy(float), frame[ecol].to_numpy(float)
    if e.sum() < survival.MIN_EVENTS:
        raise InputError(f"endpoint {name!r}: {int(e.sum())} events among {len(t)} patients; survival analyses "
                         f"need at least {survival.MIN_EVENTS} events")
    dose_col = table.dosimetry[table.dose_metric]
    group_col = f"{dose_col} >= {cutoff:g}"
    frame[group_col] = np.where(frame[dose_col] >= cutoff, "yes", "no")
    factors = {group_col: "categorical"}
    if table.response is not None:
        resp = table.response.reindex(frame.index)
        frame["objective response"] = np.where(resp == recist.NE, None,
                                               np.where(resp.isin(recist.OBJECTIVE), "yes", "no"))
        factors["objective response"] = "categorical"
    factors.update(table.clinical)
    out = dict(time_column=tcol, event_column=ecol, unit="months",
               dose_group=dict(variable=dose_col, cutoff=cutoff, cutoff_source=cutoff_source),
               overall=survival.kaplan_meier(t, e, SURVIVAL_MONTHS, name),
               groups={g: survival.kaplan_meier(t[frame[group_col] == g], e[frame[group_col] == g], SURVIVAL_MONTHS,
                                                f"{name} {group_col} {g}")
                       for g in ("yes", "no") if (frame[group_col] == g).any()})
    out["logrank"] = []
    for fname, kind in factors.items():
        if kind != "categorical":
            continue
        keep = frame[fname].notna().to_numpy()
        try:
            out["logrank"].append(dict(variable=fname, **survival.logrank(t[keep], e[keep],
                                                                          frame[fname][keep].astype(str), name)))
        except InputError as exc:
            out["logrank"].append(dict(variable=fname, skipped=str(exc)))
    cox_vars = {dose_col: "continuous", **factors}
    out["univariate_cox"] = _cox_rows(t, e, frame, cox_vars, name)
    selected = [r["variable"] for r in out["univariate_cox"] if "skipped" not in r and r["p"] < alpha
                and r["variable"] != dose_col]
    if selected:
        keep = frame[selected].notna().all(axis=1).to_numpy()
        parts = [_design_for(frame[keep], v, factors[v]) for v in selected]
        try:
            res = survival.cox(t[keep], e[keep], np.column_stack([p[0] for p in parts]),
                               [n for p in parts for n in p[1]], label=f"{name} (multivariate)")
            out["multivariate_cox"] = dict(variables=selected, **res)
        except InputError as exc:
            out["multivariate_cox"] = dict(variables=selected, skipped=str(exc))
    else:
        out["multivariate_cox"] = dict(variables=[], skipped=f"no factor had univariate p < {alpha:g}")
    out["multivariate_cox"]["selection"] = f"univariate p < {alpha:g}; the dose enters as the group {group_col}"
    return out


def analyse(table, alpha=0.05, cutoff=None, replicates=2000, seed=0, progress=None, source=None):
    """All analyses of a :class:`~SeedBrachyLib.cohort.table.CohortTable` -> JSON-ready dict.

    ``cutoff``: dose (unit of the dose metric) splitting the survival groups; None = the Youden cut-off
    when there is a response, else the median. ``replicates``, ``seed``: the bootstrap.
    """
    if not 0 < alpha < 1:
        raise InputError(f"alpha {alpha!r} must be in (0, 1)")
    results = dict(notice=RESEARCH_NOTICE, software=f"SeedBrachy {__version__}",
                   input=dict(source=source, patients=int(len(table.frame)), dose_metric=table.dose_metric,
                              dose_column=table.dosimetry[table.dose_metric], unit=unit(table.dose_metric),
                              dosimetry=table.dosimetry, clinical=table.clinical,
                              endpoints={k: list(v) for k, v in table.endpoints.items()}, notes=list(table.notes)),
                   settings=dict(alpha=alpha, bootstrap_replicates=replicates, seed=seed))
    report(progress, 0.0, "response")
    if table.response is not None:
        results["response"] = _response_section(table, alpha, replicates, seed, progress)
    if table.endpoints:
        if cutoff is not None:
            source_text = "given"
        elif "response" in results:
            cutoff, source_text = results["response"]["roc"]["youden"]["cutoff"], "Youden cut-off of the ROC"
        else:
            cutoff, source_text = float(table.dose.median()), "median of the cohort"
        results["survival"] = {}
        for i, name in enumerate(table.endpoints):
            report(progress, 0.7 + 0.3 * i / len(table.endpoints), f"survival {name}")
            results["survival"][name] = _survival_section(table, name, float(cutoff), source_text, alpha)
    report(progress, 1.0, "analyses done")
    return results
