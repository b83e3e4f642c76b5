"""``seedbrachy cohort`` end to end: the built-in simulated cohorts, a batch-format table, and bad input.

The batch-format table is built here with the stable metric names prefixed by the structure, the way
a ``seedbrachy batch`` cohort table carries several structures, plus bookkeeping columns.
"""

import json

import numpy as np
import pandas as pd
import pytest

from SeedBrachyLib.cli import main
from SeedBrachyLib.cohort import table
from SeedBrachyLib.errors import InputError
from SeedBrachyLib.synthetic import cohort as simulated

FAST = ["--bootstrap", "200", "--quiet"]


def _run(args, capsys=None):
    code = main(["cohort", *args, *FAST])
    return code


@pytest.mark.slow
def test_simulated_lymph_node_cohort_report_and_json(tmp_path, capsys):
    out = tmp_path / "ln"
    assert _run(["--simulate", "lymph-node", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    resp = res["response"]
    assert res["input"]["patients"] == 81 and resp["n_evaluable"] == 81
    assert resp["orr"]["k"] == sum(resp["counts"][k] for k in ("CR", "PR"))
    assert resp["orr"]["ci_low"] < resp["orr"]["rate"] < resp["orr"]["ci_high"]
    y = resp["roc"]["youden"]
    assert y["ci_low"] <= y["cutoff"] <= y["ci_high"] and resp["roc"]["reported_ci"] == "DeLong"
    rates = resp["roc"]["rates"]
    assert rates["n_above"] + rates["n_below"] == 81
    assert any(u["variable"] == "tumor_size_mm" for u in resp["univariate"])
    assert "multivariate" in resp and "selection" in resp["multivariate"]
    assert "RECIST 1.1" in " ".join(res["input"]["notes"])
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "not for clinical" in html
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF")
    printed = capsys.readouterr().out
    assert "Youden cut-off" in printed and "report.pdf" in printed


@pytest.mark.slow
def test_simulated_escc_cohort_survival_with_the_study_cutoff(tmp_path):
    out = tmp_path / "escc"
    assert _run(["--simulate", "escc", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    for endpoint in ("lc", "os"):
        s = res["survival"][endpoint]
        assert s["dose_group"]["cutoff"] == 110.0 and s["dose_group"]["cutoff_source"] == "given"
        assert sum(g["n"] for g in s["groups"].values()) == 36
        assert s["logrank"][0]["variable"] == "D90 >= 110" and 0 <= s["logrank"][0]["p"] <= 1
        assert s["univariate_cox"] and "selection" in s["multivariate_cox"]
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 4


def _batch_table(path, n=40, seed=0, separated=False):
    rng = np.random.default_rng(seed)
    d90 = rng.normal(115, 20, n)
    p = 1 / (1 + np.exp(-(d90 - 105) / 8))
    resp = np.where(d90 >= 110, "PR", "SD") if separated else np.where(rng.random(n) < p, "PR", "SD")
    df = pd.DataFrame({"case": [f"case{i}" for i in range(n)], "patient_id": [f"P{i}" for i in range(n)],
                       "CTV.volume_cc": rng.uniform(5, 40, n), "CTV.D90": d90, "CTV.D100": d90 * 0.6,
                       "CTV.V100": np.clip(80 + (d90 - 110) / 2, 0, 100), "Skin.D2cc": rng.uniform(10, 60, n),
                       "CTV_check": "PASS", "error": "", "age": rng.normal(60, 10, n).round(), "response": resp})
    df.to_csv(path, index=False)
    return path


def test_batch_format_table_uses_the_target_prefix_and_skips_bookkeeping(tmp_path):
    csv = _batch_table(tmp_path / "batch.csv")
    t = table.load(csv)
    assert t.dosimetry["D90"] == "CTV.D90" and "D2cc" not in t.dosimetry
    assert set(t.clinical) == {"age"}
    assert _run([str(csv), "--out", str(tmp_path / "out")]) == 0
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["input"]["dose_column"] == "CTV.D90"
    assert table.load(csv, structure="Skin", dose_metric="D2cc").dosimetry == {"D2cc": "Skin.D2cc"}


def test_perfect_separation_is_fitted_by_firth_and_said(tmp_path):
    csv = _batch_table(tmp_path / "sep.csv", separated=True)
    assert _run([str(csv), "--out", str(tmp_path / "out")]) == 0
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    fit = res["response"]["dose_response"]
    assert "Firth" in fit["method"] and any("perfectly separated" in n for n in fit["notes"])
    assert res["response"]["roc"]["auc"] == 1.0
    assert "perfectly separated" in (tmp_path / "out" / "report.html").read_text()


def test_outputs_are_never_overwritten_silently(tmp_path, capsys):
    csv = _batch_table(tmp_path / "batch.csv")
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.html").write_text("made by the user")
    assert _run([str(csv), "--out", str(out)]) == 2          # refused before any work
    assert "--force" in capsys.readouterr().err and (out / "report.html").read_text() == "made by the user"
    inside = out / "results.json"
    inside.write_text(csv.read_text())
    assert _run([str(inside), "--out", str(out), "--force"]) == 2
    assert "is the input" in capsys.readouterr().err
    elsewhere = tmp_path / "elsewhere.json"
    assert _run([str(csv), "--out", str(out), "--force", "--json", str(elsewhere)]) == 0
    assert json.loads(elsewhere.read_text())["command"] == "cohort" and (out / "report.pdf").is_file()
    assert "Cohort dose-response report" in (out / "report.html").read_text()
    assert inside.read_text() == csv.read_text()              # --json went elsewhere: the input is untouched


@pytest.mark.parametrize("edit, message", [
    (lambda df: df.drop(columns="patient_id"), "needs a 'patient_id' column"),
    (lambda df: df.drop(columns="CTV.D90"), "dose metric 'D90' is not in the table"),
    (lambda df: df.drop(columns="response"), "neither a 'response' column"),
    (lambda df: df.assign(response="SD").assign(response=lambda d: ["PR"] * 3 + ["SD"] * (len(d) - 3)),
     "3 events and 37 non-events"),
    (lambda df: df.assign(response=["PR", "XX"] * 20), "response 'XX' is not one of"),
    (lambda df: df.assign(patient_id="P1"), "must be unique"),
    (lambda df: df.assign(lc_time=1.0), "needs its partner 'lc_event'"),
    (lambda df: df.rename(columns=lambda c: c.replace("CTV.", "")).assign(**{"GTV.D90": 1.0}), None),
    (lambda df: df.assign(**{"GTV.D90": 1.0}), "several structures"),
])
def test_bad_tables_get_clear_errors(tmp_path, edit, message):
    df = edit(pd.read_csv(_batch_table(tmp_path / "b.csv")))
    df.to_csv(tmp_path / "bad.csv", index=False)
    if message is None:   # bare names win over prefixed ones
        assert table.load(tmp_path / "bad.csv").dosimetry["D90"] == "D90"
        return
    with pytest.raises(InputError, match=message):
        from SeedBrachyLib.cohort import analysis

        analysis.analyse(table.load(tmp_path / "bad.csv"), replicates=200)


def test_too_few_survival_events_and_missing_files(tmp_path, capsys):
    cohort, _ = simulated.escc_cohort(seed=0)
    cohort["lc_event"] = 0
    cohort.loc[:2, "lc_event"] = 1
    cohort.to_csv(tmp_path / "few.csv", index=False)
    assert _run([str(tmp_path / "few.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "'lc': 3 events among 36 patients" in capsys.readouterr().err
    assert _run([str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "is not a file" in capsys.readouterr().err
    assert _run(["--out", str(tmp_path / "o")]) == 2


def test_option_combinations_that_make_no_sense_are_refused(tmp_path, capsys):
    csv = _batch_table(tmp_path / "batch.csv")
    assert _run([str(csv), "--response-month", "6", "--out", str(tmp_path / "o")]) == 2
    assert "give --lesions" in capsys.readouterr().err
    assert _run(["--simulate", "escc", str(csv), "--out", str(tmp_path / "o")]) == 2
    assert "--simulate writes its own tables" in capsys.readouterr().err
