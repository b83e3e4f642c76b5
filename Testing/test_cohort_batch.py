"""``seedbrachy cohort`` on the table ``seedbrachy batch`` writes, joined with an outcome table.

The batch tables here are laid out by the batch command's own writer (``commands.batch.write_table``)
from rows with the keys ``batch.row_of`` gives, so a change of the batch format reaches these tests;
Testing/data/batch_cohort holds a real run (``seedbrachy example --cohort 30``, then ``seedbrachy batch``:
cohort.csv as batch wrote it; outcomes.csv, lesions.csv and truth.csv as the example wrote them), and
Testing/test_commands.py runs the chain (example -> batch -> cohort) live on one patient and checks that
its table has the recorded run's columns.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from SeedBrachyLib.cli import main
from SeedBrachyLib.cohort import table
from SeedBrachyLib.commands import batch
from SeedBrachyLib.errors import InputError
from SeedBrachyLib.report.records import METRIC_NAMES

N = 40
RECORDED = Path(__file__).parent / "data" / "batch_cohort"   # a seedbrachy batch run, as written


def _rows(n=N, seed=0):
    """Batch rows: GTV (named Node in one case), CTV and Carotid metrics, checks, and a failed case."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        pid = f"{i + 1:03d}"   # leading zeros: must stay text
        if i == 3:
            rows.append({"patient_id": pid, "mode": "postplan", "status": "error", "error": "no structures found"})
            continue
        gtv = "Node" if i == 5 else "GTV"
        d90 = float(rng.normal(130, 30))
        row = {"patient_id": pid, "mode": "postplan", "status": "ok", "error": "", "prescription_gy": 120.0,
               "gtv": gtv, "ctv": "CTV", "n_seeds": int(rng.integers(20, 30)), "n_planned": 27}
        for name, scale in ((gtv, 1.0), ("CTV", 0.8), ("Carotid", 0.2)):
            for metric in METRIC_NAMES:
                row[f"{name}.{metric}"] = scale * d90 * (1 + 0.01 * rng.normal()) if metric.startswith("D") else \
                    float(rng.uniform(5, 100))
        row[f"check_{gtv}_D90"] = "PASS" if row[f"{gtv}.D90"] > 102.7 else "FAIL"
        rows.append(row)
    return rows


def _outcomes(rows, seed=1):
    rng = np.random.default_rng(seed)
    d90 = np.array([r.get(f"{r.get('gtv')}.D90", 110.0) for r in rows], float)
    p = 1 / (1 + np.exp(-(d90 - 110) / 10))
    return pd.DataFrame({"patient_id": [r["patient_id"] for r in rows],
                         "response": np.where(rng.random(len(rows)) < p, "PR", "SD"),
                         "age": rng.normal(60, 10, len(rows)).round(), "sex": rng.choice(["f", "m"], len(rows))})


@pytest.fixture
def tables(tmp_path):
    rows = _rows()
    batch.write_table(rows, tmp_path / "batch.csv")
    _outcomes(rows).to_csv(tmp_path / "outcomes.csv", index=False)
    return tmp_path / "batch.csv", tmp_path / "outcomes.csv", rows


def test_batch_table_reads_each_rows_gtv_and_leaves_out_failed_cases(tables):
    csv, outcomes, rows = tables
    t = table.load(csv, outcomes=outcomes)
    assert t.dosimetry["D90"] == "gtv.D90" and set(t.dosimetry) == set(METRIC_NAMES)
    frame = t.frame
    assert frame.index[0] == "001"                                       # ids stay text
    assert frame.at["006", "gtv.D90"] == pytest.approx(rows[5]["Node.D90"])   # the case whose GTV is "Node"
    assert frame.at["010", "gtv.D90"] == pytest.approx(rows[9]["GTV.D90"])
    assert np.isnan(frame.at["004", "gtv.D90"])
    notes = " | ".join(t.notes)
    assert "1 batch cases failed" in notes and "004" in notes and "GTV, Node" in notes
    assert "without D90" not in notes                                    # said once, as a failed case
    assert set(t.clinical) == {"n_seeds", "age", "sex"}                  # bookkeeping and constants left out
    assert t.response.notna().all()
    ctv = table.load(csv, outcomes=outcomes, structure="ctv")
    assert ctv.dosimetry["D90"] == "CTV.D90" and "of the CTV 'CTV'" in " ".join(ctv.notes)
    assert table.load(csv, outcomes=outcomes, structure="Carotid", dose_metric="D2cc").dosimetry["D2cc"] == \
        "Carotid.D2cc"


def test_seedbrachy_cohort_on_a_recorded_batch_run(tmp_path, capsys):
    """A real ``seedbrachy batch`` output (the README's 30 simulated patients) with the example's outcome and lesion
    tables: the analysis runs on it, and the D90 the post-implant chain measured is checked against the truth the
    simulation kept (the true delivered GTV D90 of each implant, computed apart from detection and registration)."""
    out = tmp_path / "out"
    assert main(["cohort", str(RECORDED / "cohort.csv"), "--outcomes", str(RECORDED / "outcomes.csv"), "--lesions",
                 str(RECORDED / "lesions.csv"), "--response-month", "6", "--out", str(out), "--bootstrap", "200",
                 "--quiet"]) == 0
    res = json.loads((out / "results.json").read_text())
    truth = pd.read_csv(RECORDED / "truth.csv", dtype={"patient_id": str}).set_index("patient_id")
    assert res["input"]["dose_column"] == "GTV.D90" and res["input"]["patients"] == len(truth)
    resp = res["response"]
    assert resp["n_evaluable"] == len(truth)
    assert {k: v for k, v in resp["counts"].items() if v} == truth.category_6_months.value_counts().to_dict()
    assert set(res["input"]["clinical"]) >= {"tumor_size_mm", "age", "sex", "primary", "n_seeds"}
    assert "GTV.D90" in capsys.readouterr().out
    measured = pd.read_csv(RECORDED / "cohort.csv", dtype={"patient_id": str}).set_index("patient_id")["GTV.D90"]
    error = (measured / truth.true_gtv_d90_gy - 1).abs()
    assert error.median() < 0.05 and (error < 0.10).sum() >= 28   # README: median 3.2 %, 28 of 30 within 10 %


@pytest.mark.parametrize("edit, message", [
    (lambda o: o.drop(columns="patient_id"), "outcome table needs a 'patient_id'"),
    (lambda o: o.assign(patient_id="001"), "unique in the outcome table"),
    (lambda o: o.assign(n_seeds=1), r"\['n_seeds'\] are in both"),
    (lambda o: o.assign(patient_id=[f"Z{i}" for i in range(len(o))]), "no patient_id of the outcome table"),
])
def test_bad_outcome_tables_are_refused(tables, tmp_path, edit, message):
    csv, outcomes, _ = tables
    edit(pd.read_csv(outcomes, dtype={"patient_id": str})).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(InputError, match=message):
        table.load(csv, outcomes=tmp_path / "bad.csv")


def test_outcomes_for_other_patients_and_patients_without_outcomes_are_counted(tables, tmp_path):
    csv, outcomes, _ = tables
    o = pd.read_csv(outcomes, dtype={"patient_id": str})
    pd.concat([o.iloc[2:], o.iloc[:1].assign(patient_id="999")]).to_csv(tmp_path / "o.csv", index=False)
    notes = " | ".join(table.load(csv, outcomes=tmp_path / "o.csv").notes)
    assert "1 patients of the outcome table are not in the cohort table: left out (999)" in notes
    assert "2 patients have no row in the outcome table (001, 002)" in notes


def test_a_role_needs_the_batch_column(tmp_path):
    pd.DataFrame({"patient_id": ["a", "b"], "CTV.D90": [1.0, 2.0], "response": ["PR", "SD"]}).to_csv(
        tmp_path / "t.csv", index=False)
    with pytest.raises(InputError, match="role read per row from the batch column 'gtv'"):
        table.load(tmp_path / "t.csv", structure="gtv")
