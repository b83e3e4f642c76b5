"""The subcommands end to end on the example data (DICOM and NRRD): plan, evaluate, postplan, batch.

Oracles: the RT Plan read back (seed count and positions), the same plan evaluated from its RT Dose
alone, the simulated implant's truth for the post-plan, and each batch row against the single run.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from SeedBrachyLib.cli import main

pytestmark = pytest.mark.slow
FAST = ["--planning-method", "modified_peripheral", "--quiet"]
RECORDED_BATCH = Path(__file__).parent / "data" / "batch_cohort" / "cohort.csv"


@pytest.fixture(scope="module")
def neck(tmp_path_factory):
    """The built-in case exported to DICOM and planned with `seedbrachy plan`."""
    root = tmp_path_factory.mktemp("neck")
    assert main(["example", "--case", "neck", "--out", str(root / "case")]) == 0
    code = main(["plan", "--ct", str(root / "case" / "ct"), "--structures", str(root / "case" / "structures.dcm"),
                 "--gtv", "GTV", "--ignore", "Bone", "--nogo", "Carotid", "--out", str(root / "plan"), *FAST,
                 "--robustness", "--robustness-samples", "20"])
    return root, code, json.loads((root / "plan" / "results.json").read_text())


def test_plan_writes_rt_plan_dose_loading_sheet_and_report(neck):
    from SeedBrachyLib.dicomrt import read_rtdose, read_rtplan
    root, code, result = neck
    out = root / "plan"
    checks_fail = any(c["status"] == "FAIL" for c in result["checks"])
    assert code == (3 if checks_fail or not result["goals_met"] else 0)
    plan = read_rtplan(out / "plan.dcm")
    assert len(plan.seeds) == result["n_seeds"] == len(result["seeds"])
    got = np.array(sorted(s.position.tolist() for s in plan.seeds))
    want = np.array(sorted(s["center_ras_mm"] for s in result["seeds"]))
    np.testing.assert_allclose(got, want, atol=0.01)
    dose, grid, _ = read_rtdose(out / "dose.dcm")
    assert dose.max() > 3 * result["settings"]["prescriptionGy"]
    with open(out / "loading_sheet.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == result["n_needles"] and sum(int(r["n_seeds"]) for r in rows) == result["n_seeds"]
    html = (out / "report.html").read_text()
    for key in ("identification", "checks", "dvh", "slices", "needles", "order"):
        assert f'id="{key}"' in html
    assert "Neck Demo" in html  # identification as the DICOM carries it
    gtv = result["evaluation"]["structures"]["GTV"]
    assert set(gtv) >= {"volume_cc", "D90", "D98", "D100", "V100", "V150", "V200", "D2cc", "D0.1cc"}
    assert f"{gtv['D90']:.1f}" in html
    # placement robustness (20 samples): the nominal plan read on the sampling's 2 mm points agrees with the
    # evaluation's exact DVH; every checked target goal gets a probability with its Wilson interval, in the report
    rob = result["robustness"]
    assert rob["n_samples"] == 20 and 'id="robustness"' in html
    assert rob["metrics"]["GTV.D90"]["nominal"] == pytest.approx(gtv["D90"], rel=0.03)
    assert len(rob["goals"]) == len(result["checks"])
    for g in rob["goals"]:
        assert 0 <= g["ci_low"] <= g["probability"] <= g["ci_high"] <= 1 and g["n"] == 20


def test_evaluate_from_the_rt_plan_and_from_the_rt_dose_alone(neck, tmp_path):
    root, _, planned = neck
    case, out = root / "case", root / "plan"
    j1, j2 = tmp_path / "e1.json", tmp_path / "e2.json"
    main(["evaluate", "--ct", str(case / "ct"), "--structures", str(case / "structures.dcm"), "--gtv", "GTV",
          "--ignore", "Bone", "--plan", str(out / "plan.dcm"), "--json", str(j1), "--quiet"])
    # RT Dose + RT Structure Set alone (no CT), as a physicist checking another system's plan
    main(["evaluate", "--structures", str(out / "structures.dcm"), "--gtv", "GTV", "--ctv", "CTV", "--ignore",
          "Bone", "--dose", str(out / "dose.dcm"), "--json", str(j2), "--quiet", "--report-html",
          str(tmp_path / "e.html")])
    from_plan, from_dose = (json.loads(p.read_text())["evaluation"]["structures"] for p in (j1, j2))
    want = planned["evaluation"]["structures"]
    for name in ("GTV", "CTV"):
        assert from_plan[name]["D90"] == pytest.approx(want[name]["D90"], rel=1e-3)
        assert from_dose[name]["D90"] == pytest.approx(want[name]["D90"], rel=0.03)  # the stored dose grid
        assert from_dose[name]["volume_cc"] == pytest.approx(want[name]["volume_cc"], rel=0.05)
    assert 'id="dvh"' in (tmp_path / "e.html").read_text()


def test_postplan_finds_the_implanted_seeds(neck, tmp_path, capsys):
    root, _, planned = neck
    case, out = root / "case", root / "plan"
    assert main(["example", "--case", "neck", "--out", str(case), "--implant", str(out / "plan.dcm")]) == 0
    j = tmp_path / "post.json"
    main(["postplan", "--post-ct", str(case / "post_ct"), "--ct", str(case / "ct"), "--structures",
          str(case / "structures.dcm"), "--gtv", "GTV", "--ignore", "Bone", "--plan", str(out / "plan.dcm"),
          "--json", str(j), "--quiet", "--report-pdf", str(tmp_path / "post.pdf"),
          "--count", str(planned["n_seeds"] - 1)])  # the simulation loses one seed; the implant sheet says so
    result = json.loads(j.read_text())
    assert result["n_planned"] == planned["n_seeds"]
    assert result["n_seeds"] == planned["n_seeds"] - 1
    # every seed carries its review flag; the flagged ones are listed by label, in the JSON and on screen
    flagged = [s["label"] for s in result["seeds"] if s["to_review"]]
    assert flagged == result["to_review"] and len(result["seeds"]) == result["n_seeds"]
    printed = capsys.readouterr().out
    assert all((f"{label}: centre" in printed) == (label in flagged) for label in (s["label"] for s in result["seeds"]))
    assert all(s["to_review"] or s["confidence"] >= 0.5 for s in result["seeds"])  # the default threshold
    assert flagged, "the simulated implant (one seed lost, neighbours touching) has seeds to review"
    rows = {(r["structure"], r["metric"]): r for r in result["comparison"]}
    assert rows[("GTV", "D90")]["pre"] == pytest.approx(planned["evaluation"]["structures"]["GTV"]["D90"], rel=1e-3)
    assert (tmp_path / "post.pdf").stat().st_size > 10000


def test_plan_that_cannot_meet_its_goals_says_so(neck, tmp_path, capsys):
    root = neck[0]
    case = root / "case"
    code = main(["plan", "--ct", str(case / "ct"), "--structures", str(case / "structures.dcm"), "--gtv", "GTV",
                 "--ignore", "Bone", "--out", str(tmp_path / "weak"), "--hole-spacing-mm", "30",
                 "--candidate-spacing-mm", "10", "--quiet"])  # a needle or two cannot cover the CTV
    out = capsys.readouterr().out
    assert code == 3 and "NOT MET" in out and "WARNING: The plan does not meet" in out
    assert "WARNING: the optimiser could not meet" in out  # the plan summary itself (also shown by the module)
    result = json.loads((tmp_path / "weak" / "results.json").read_text())
    assert result["goals_met"] is False
    assert "NOT MET" in (tmp_path / "weak" / "report.html").read_text()


def _copy_case(src_case, src_plan, dest, **values):
    import shutil
    dest.mkdir(parents=True)
    shutil.copytree(src_case / "ct", dest / "ct")
    shutil.copy(src_plan / "structures.dcm", dest / "structures.dcm")
    shutil.copy(src_plan / "plan.dcm", dest / "plan.dcm")
    if values:
        (dest / "case.json").write_text(json.dumps(values))


def test_batch_table_one_row_per_case_and_past_failures(neck, tmp_path):
    root = neck[0]
    cases = tmp_path / "cases"
    _copy_case(root / "case", root / "plan", cases / "P001", ctv="CTV", prescriptionGy=100.0)
    _copy_case(root / "case", root / "plan", cases / "P002", ctv="CTV", prescriptionGy=140.0)
    (cases / "P999").mkdir()  # a broken case: no CT, no structures
    table = tmp_path / "cohort.csv"
    assert main(["batch", str(cases), "--out", str(table), "--ignore", "Bone", "--quiet"]) == 3  # one case failed
    with open(table) as f:
        rows = list(csv.DictReader(f))
    assert [r["patient_id"] for r in rows] == ["P001", "P002", "P999"]
    assert [r["status"] for r in rows] == ["ok", "ok", "error"] and rows[2]["error"]
    assert rows[0]["mode"] == "evaluate" and rows[0]["prescription_gy"] == "100.0"
    header = list(rows[0])
    assert header[:9] == ["patient_id", "mode", "status", "error", "prescription_gy", "gtv", "ctv", "n_seeds",
                          "n_planned"]
    for metric in ("volume_cc", "D90", "D100", "V100", "V150", "V200"):
        assert f"GTV.{metric}" in header and f"CTV.{metric}" in header
    assert "check_GTV_D90" in header and "check_CTV_V100" in header
    # same seeds, two prescriptions: the same D90, less volume at the higher prescription
    assert float(rows[0]["CTV.D90"]) == pytest.approx(float(rows[1]["CTV.D90"]), rel=1e-6)
    assert float(rows[1]["CTV.V100"]) < float(rows[0]["CTV.V100"])
    # a row equals the single evaluate run of the same case
    j = tmp_path / "p1.json"
    p1 = cases / "P001"
    main(["evaluate", "--ct", str(p1 / "ct"), "--structures", str(p1 / "structures.dcm"), "--gtv", "GTV", "--ctv",
          "CTV", "--ignore", "Bone", "--plan", str(p1 / "plan.dcm"), "--prescription-gy", "100", "--json", str(j),
          "--quiet"])
    single = json.loads(j.read_text())["evaluation"]["structures"]
    for name in ("GTV", "CTV"):
        assert float(rows[0][f"{name}.D90"]) == pytest.approx(single[name]["D90"], rel=1e-9)
        assert float(rows[0][f"{name}.V100"]) == pytest.approx(single[name]["V100"], rel=1e-9)


@pytest.fixture(scope="module")
def example_cohort(tmp_path_factory):
    """`seedbrachy example --cohort 1`: one simulated patient with its outcome, lesion and truth tables."""
    out = tmp_path_factory.mktemp("cohort") / "c"
    assert main(["example", "--cohort", "1", "--out", str(out), "--quiet"]) == 0
    return out


def test_example_cohort_patient_has_plan_and_a_new_scan(example_cohort):
    import pandas as pd

    from SeedBrachyLib.cohort.table import responses_from_lesions
    from SeedBrachyLib.dicomrt import read_ct_series, read_rtplan
    p = example_cohort / "P001"
    assert sorted(x.name for x in p.iterdir()) == ["ct", "plan.dcm", "post_ct", "structures.dcm"]
    _, _, ct = read_ct_series(p / "ct")
    _, _, post = read_ct_series(p / "post_ct")
    assert ct.study.patient_id == post.study.patient_id == "P001"
    assert ct.study.frame_of_reference_uid != post.study.frame_of_reference_uid  # another scan, to register
    n_planned = len(read_rtplan(p / "plan.dcm").seeds)
    assert n_planned >= 10
    truth = pd.read_csv(example_cohort / "truth.csv").iloc[0]
    assert truth.planned_seeds == n_planned and truth.implanted_seeds == n_planned - 1   # one seed lost
    assert 0 < truth.true_gtv_d90_gy < 1000 and truth.true_gtv_d90_gy != truth.planned_gtv_d90_gy
    # the lesion measurements give back, by RECIST 1.1, the 6-month category the simulation drew
    assert responses_from_lesions(example_cohort / "lesions.csv", response_month=6)[0] == \
        {"P001": truth.category_6_months}
    outcomes = pd.read_csv(example_cohort / "outcomes.csv")
    assert list(outcomes.patient_id) == ["P001"] and outcomes.tumor_size_mm[0] == truth.node_diameter_mm


def test_example_batch_cohort_chain(example_cohort, tmp_path, capsys):
    """The real chain: example -> batch -> cohort (one patient: the too-few-events refusal, clearly said), and the
    live batch table has the format of the recorded 30-patient run in Testing/data (test_cohort_batch.py)."""
    from SeedBrachyLib.cohort import table as cohort_table
    table = tmp_path / "cohort.csv"
    assert main(["batch", str(example_cohort), "--out", str(table), "--ignore", "Bone", "--quiet"]) == 0
    with open(table) as f, open(RECORDED_BATCH) as g:
        assert next(csv.reader(f)) == next(csv.reader(g))
    t = cohort_table.load(table, outcomes=example_cohort / "outcomes.csv", lesions=example_cohort / "lesions.csv",
                          response_month=6)
    assert t.dosimetry["D90"] == "GTV.D90" and t.response.index.tolist() == ["P001"]
    assert "clinical column 'tumor_size_mm' has a single value" in " ".join(t.notes)   # joined from the outcomes
    with open(example_cohort / "truth.csv") as f:
        truth = next(csv.DictReader(f))
    measured = t.dose.iloc[0]   # post-implant GTV D90 from the detected seeds on the registered scan
    assert measured == pytest.approx(float(truth["true_gtv_d90_gy"]), rel=0.15)
    code = main(["cohort", str(table), "--outcomes", str(example_cohort / "outcomes.csv"), "--lesions",
                 str(example_cohort / "lesions.csv"), "--response-month", "6", "--out", str(tmp_path / "o"),
                 "--quiet"])
    assert code == 2 and "events" in capsys.readouterr().err


def test_second_case_nrrd_oblique_other_model(tmp_path):
    case = tmp_path / "pa"
    assert main(["example", "--case", "paraaortic", "--format", "nrrd", "--out", str(case)]) == 0
    code = main(["plan", "--ct", str(case / "ct.nrrd"), "--structures", str(case / "structures"), "--gtv", "GTV",
                 "--ignore", "Vertebra", "--nogo", "Aorta", "--needle-entry", "posterior", "--source-model",
                 "I125_IsoAid_IAI-125A", "--seed-activity-mci", "0.6", "--prescription-gy", "110",
                 "--out", str(tmp_path / "plan"), *FAST])
    result = json.loads((tmp_path / "plan" / "results.json").read_text())
    assert code in (0, 3)
    assert result["settings"]["sourceModel"] == "I125_IsoAid_IAI-125A"
    assert (tmp_path / "plan" / "dose.nrrd").exists()
    assert result["evaluation"]["structures"]["GTV"]["D90"] > 0
    for row in result["loading_sheet"]:  # needles from the back: straight anterior, no tilt (RAS)
        assert abs(row[5]) == pytest.approx(180.0, abs=0.1) and row[6] == pytest.approx(0.0, abs=0.1)
