"""Reports (HTML and PDF): sections present, numbers as in the evaluation, images embedded; slice geometry."""

from __future__ import annotations

import base64
import math
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from SeedBrachyLib.checks import run_checks
from SeedBrachyLib.errors import InputError
from SeedBrachyLib.grid import Grid
from SeedBrachyLib.outputs import check_output
from SeedBrachyLib.planning import pipeline
from SeedBrachyLib.planning.goal_status import goal_status, unmet_message
from SeedBrachyLib.planning.loading import load_pattern
from SeedBrachyLib.planning.loading_sheet import loading_sheet, loading_sheet_csv, needle_angles
from SeedBrachyLib.planning.optimize import Goals
from SeedBrachyLib.planning.order import seed_order
from SeedBrachyLib.report import ReportContent, write_report
from SeedBrachyLib.report.records import METRIC_NAMES, structure_metrics
from SeedBrachyLib.report.slices import plane_through, sample, seeds_near, target_view
from SeedBrachyLib.seeds import Seed
from SeedBrachyLib.sources import get_model, mci_to_u

pytest.importorskip("matplotlib")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def planned(neck_case):
    """The neck case with a modified-peripheral loading (fast, deterministic), its evaluation and report inputs."""
    case = neck_case
    rx = case.prescription_gy
    ctv = pipeline.make_ctv(case.ct, case.grid, case.masks["GTV"], 5.0)
    planning = pipeline.prepare(case.ct, case.grid, ctv, rx, oar_masks={"Carotid": case.masks["Carotid"]},
                                nogo_names=["Carotid"], gtv_mask=case.masks["GTV"])
    _, _, candidates = pipeline.generate_needles(planning, case.needle_direction)
    plan = load_pattern(candidates, "modified_peripheral", float(mci_to_u(0.5)), 10.0)
    model = get_model("I125_OncoSeed6711")
    evaluation, dose, grid = pipeline.evaluate(planning, plan.seeds(), model)
    goals = goal_status(Goals(rx, v100_min_pct=95.0), evaluation, "CTV")
    content = ReportContent(
        "Pre-plan", rx, evaluation, identification={"Patient": "synthetic phantom", "Plan": "test plan 1"},
        checks=run_checks(evaluation, "general"), model=model, strength_u=plan.strength_u,
        dose=dose, dose_grid=grid, structures=[("CTV", planning.ctv, case.grid), ("GTV", case.masks["GTV"], case.grid),
                                               ("Carotid", case.masks["Carotid"], case.grid)],
        target="CTV", ct=case.ct, ct_grid=case.grid, seeds=plan.seeds(), loading=loading_sheet(plan.needle_table()),
        order=seed_order(plan.n_seeds, activity_mci=0.5, model_name=model.name), goals=goals)
    return plan, evaluation, content


@pytest.fixture(scope="module")
def written(planned, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    document = write_report(planned[2], html=out / "r.html", pdf=out / "r.pdf")
    return document, (out / "r.html").read_text(encoding="utf-8"), out / "r.pdf"


class _Html(HTMLParser):
    """Collects ids of headings, tables (rows of cell texts) and img sources."""

    def __init__(self):
        super().__init__()
        self.headings, self.tables, self.images, self.links, self.text = [], {}, [], [], []
        self._table = self._row = self._cell = None
        self._heading = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "h2":
            self._heading = a.get("id")
        if tag == "table":
            self._table = a.get("id", f"table{len(self.tables)}")
            self.tables[self._table] = []
        if tag == "tr":
            self._row = []
        if tag in ("td", "th"):
            self._cell = ""
        if tag == "img":
            self.images.append(a["src"])
        for key in ("href", "src"):
            if key in a and tag != "img":
                self.links.append(a[key])

    def handle_endtag(self, tag):
        if tag == "h2" and self._heading:
            self.headings.append(self._heading)
            self._heading = None
        if tag in ("td", "th"):
            self._row.append(self._cell)
            self._cell = None
        if tag == "tr":
            self.tables[self._table].append(self._row)
        if tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        self.text.append(data)


def _parse(html):
    p = _Html()
    p.feed(html)
    return p


def _rows(table):
    header, *rows = table
    return [dict(zip(header, r)) for r in rows]


def test_html_has_every_section_in_order_and_the_notice(written):
    document, html, _ = written
    p = _parse(html)
    assert p.headings == document.section_keys()
    assert p.headings[:6] == ["identification", "summary", "goals", "source", "checks", "dvh"]
    for key in ("slices", "needles", "seeds", "order"):
        assert key in p.headings
    text = " ".join(p.text)
    assert text.count("RESEARCH USE ONLY - NOT FOR CLINICAL DECISIONS") == 2  # top and bottom
    assert html.index("NOT FOR CLINICAL DECISIONS") < html.index('id="identification"')


def test_html_is_self_contained_with_png_images(written):
    _, html, _ = written
    p = _parse(html)
    assert not p.links and "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html
    assert len(p.images) == 2  # DVH, slices
    for src in p.images:
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1])
        assert png[:8] == PNG_SIGNATURE
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        assert width >= 800 and height >= 400


def test_html_numbers_match_the_evaluation(planned, written):
    plan, evaluation, content = planned
    p = _parse(written[1])
    rows = _rows(p.tables["dvh-target"])
    assert [r["Structure"] for r in rows] == ["GTV", "CTV"]
    target = rows[1]
    for name in ("D90", "D98", "D100", "Dmax"):
        assert target[f"{name} [Gy]"] == f"{evaluation.value('CTV', name)[0]:.1f}"
    for name in ("V100", "V150", "V200"):
        assert target[f"{name} [%]"] == f"{evaluation.value('CTV', name)[0]:.1f}"
    assert target["Volume [cc]"] == f"{evaluation.value('CTV', 'Volume')[0]:.2f}"
    oars = {r["Structure"]: r for r in _rows(p.tables["dvh-oar"])}
    assert oars["Skin"]["D2cc [Gy]"] == f"{evaluation.value('Skin', 'D2cc')[0]:.1f}"
    checks = _rows(p.tables["checks-table"])
    assert [r["Status"] for r in checks] == ["PASS" if c.passed else "FAIL" for c in content.checks]
    assert [r["Measured"] for r in checks] == [f"{c.measured:.1f} {c.unit}" for c in content.checks]
    source = dict(p.tables["source-table"][1:])
    assert source["Data source"] == content.model.citation
    assert content.model.name in source["Model"]


def test_loading_sheet_in_the_report_matches_the_plan_geometry(planned, written):
    plan, _, content = planned
    rows = _rows(_parse(written[1]).tables["needles-table"])
    table = plan.needle_table()
    assert [r["Needle"] for r in rows] == [t["needle"] for t in table]
    assert sum(int(r["Seeds"]) for r in rows) == plan.n_seeds == len(content.seeds)
    for r, t in zip(rows, table):
        assert r["Template hole"] == t["needle"]  # template needles are labelled by their hole
        # seed depths recomputed from the seed positions and the entry point
        depths = sorted((float(np.linalg.norm(p - t["entry_mm"])) for p in t["seed_positions_mm"]), reverse=True)
        assert r["Seed depths [mm]"] == ", ".join(f"{d:.1f}" for d in depths)
        assert float(r["Depth [mm]"]) == pytest.approx(float(np.linalg.norm(t["tip_mm"] - t["entry_mm"])), abs=0.051)


def test_goals_section_says_an_unmet_goal_out_loud(planned, written):
    _, evaluation, content = planned
    p = _parse(written[1])
    rows = _rows(p.tables["goals-table"])
    v100 = evaluation.value("CTV", "V100")[0]
    assert v100 < 95.0  # this loading does not reach the 95 % goal
    row = next(r for r in rows if r["Planning goal"] == "CTV V100 >= 95 %")
    assert row["Status"] == "NOT MET" and row["Achieved"] == f"{v100:.1f} %"
    assert "WARNING: The plan does not meet" in written[1]


def test_pdf_pages_carry_the_same_content(planned, written):
    pypdf = pytest.importorskip("pypdf")
    _, evaluation, content = planned
    reader = pypdf.PdfReader(str(written[2]))
    assert 2 <= len(reader.pages) <= 8
    text = re.sub(r"\s+", " ", " ".join(page.extract_text() for page in reader.pages))
    for heading in ("Identification", "Summary", "Planning goals", "Seed model and dose calculation", "Checks",
                    "Dose-volume histogram", "Dose slices through the target", "Needles and seed loading",
                    "Seed order"):
        assert heading in text
    assert "NOT FOR CLINICAL DECISIONS" in text and "test plan 1" in text
    assert f"{evaluation.value('CTV', 'D90')[0]:.1f}" in text
    assert "Rivard" in text  # the model's data source
    for row in content.loading:
        assert ", ".join(f"{d:.1f}" for d in row.seed_depths_mm) in text
    assert len({image.name for page in reader.pages for image in page.images}) == 2  # DVH and slices


def test_existing_report_is_refused_before_any_computation(tmp_path):
    existing = tmp_path / "r.html"
    existing.write_text("mine")
    with pytest.raises(InputError, match="exists"):
        write_report(None, html=existing)  # refused before the (invalid) content is touched
    assert existing.read_text() == "mine"
    with pytest.raises(InputError, match="folder"):
        write_report(None, pdf=tmp_path)
    with pytest.raises(InputError, match="both"):
        write_report(None, html=tmp_path / "x", pdf=tmp_path / "x")


def test_check_output_rules(tmp_path):
    f = tmp_path / "a.json"
    assert check_output(f) == f
    f.write_text("{}")
    with pytest.raises(InputError, match="--force"):
        check_output(f)
    assert check_output(f, force=True) == f
    with pytest.raises(InputError, match="is a file"):
        check_output(f, "folder", force=True)
    with pytest.raises(InputError, match="is the input"):
        check_output(f, force=True, inputs=[f])
    with pytest.raises(InputError, match="is the input"):
        check_output(tmp_path / "sub" / "b.json", inputs=[tmp_path])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("1")
    with pytest.raises(InputError, match="exists"):
        check_output(tmp_path / "full", "folder")
    assert check_output(tmp_path / "new" / "deep" / "c.pdf").parent.is_dir()
    (tmp_path / "empty").mkdir()
    assert check_output(tmp_path / "empty", "folder") == tmp_path / "empty"


def test_records_match_the_evaluation_and_null_where_undefined(planned):
    _, evaluation, _ = planned
    m = structure_metrics(evaluation, "CTV")
    assert tuple(m) == METRIC_NAMES
    assert m["D90"] == evaluation.value("CTV", "D90")[0] and m["V100"] == evaluation.value("CTV", "V100")[0]
    assert m["Dmin"] == m["D100"]
    carotid = structure_metrics(evaluation, "Carotid")
    if carotid["volume_cc"] < 2.0:
        assert carotid["D2cc"] is None


# ---------------------------------------------------------------- slice geometry (independent of the report)
def _oblique_grid():
    rot = np.linalg.qr(np.array([[0.9, -0.3, 0.2], [0.35, 0.8, -0.4], [0.1, 0.45, 0.9]]))[0]
    rot *= np.sign(np.linalg.det(rot))
    return Grid(origin=[-30.0, -25.0, -20.0], spacing=[0.9, 1.3, 2.1], direction=rot, dims=(60, 50, 30))


def test_planes_sample_an_oblique_anisotropic_grid_in_the_patient_frame():
    grid = _oblique_grid()
    a, b = np.array([0.7, -1.9, 3.1]), 5.0
    field = (grid.points() @ a + b).astype(np.float32)  # linear in RAS: trilinear sampling is exact
    center = grid.to_ras((np.asarray(grid.dims) - 1) / 2.0)
    for name in ("axial", "coronal", "sagittal"):
        plane = plane_through(name, center, 12.0, pixel_mm=1.0)
        values = sample(field, grid, plane)
        expected = plane.points() @ a + b
        np.testing.assert_allclose(values, expected, rtol=0, atol=1e-3)
    axial = plane_through("axial", center, 10.0)
    np.testing.assert_allclose(axial.normal, [0, 0, -1])  # seen from the feet: patient's right on the left
    np.testing.assert_allclose(axial.right, [-1, 0, 0])
    far = plane_through("axial", center + [0, 0, 500.0], 10.0)
    assert np.isnan(sample(field, grid, far)).all()


def test_seeds_near_a_plane_and_the_target_view():
    plane = plane_through("coronal", [10.0, 20.0, 30.0], 30.0)
    seeds = [Seed([10 + dx, 20 + dy, 30], [0, 1, 0], 0.5, f"s{dy}") for dx, dy in ((5, 0), (0, 2.9), (0, -3.5))]
    near = seeds_near(seeds, plane, 3.0)
    assert [s.label for *_, s in near] == ["s0", "s2.9"]
    u, v, au, av, _ = near[0]
    assert (u, v) == pytest.approx((-5.0, 0.0)) and (au, av) == pytest.approx((0.0, 0.0))  # seed along A: a dot
    grid = Grid.around([0, 0, 0], [40, 40, 40], 1.0)
    mask = np.linalg.norm(grid.points() - [5.0, -3.0, 2.0], axis=-1) <= 8.0
    center, half = target_view(mask, grid, margin_mm=10.0, min_half_mm=5.0)
    np.testing.assert_allclose(center, [5.0, -3.0, 2.0], atol=0.05)
    assert 18.0 <= half <= 19.5


# ---------------------------------------------------------------- loading sheet and goal status
@pytest.mark.parametrize("direction, axial, tilt", [((0, -1, 0), 0.0, 0.0), ((-1, 0, 0), 90.0, 0.0),
                                                    ((1, 0, 0), -90.0, 0.0), ((0, 1, 0), 180.0, 0.0),
                                                    ((-1, -1, 0), 45.0, 0.0), ((0, -1, 1), 0.0, 45.0),
                                                    ((0, 0, -2), 0.0, -90.0)])
def test_needle_angles(direction, axial, tilt):
    a, t = needle_angles(direction)
    assert t == pytest.approx(tilt)
    if abs(tilt) < 90:
        assert a == pytest.approx(axial)


def test_loading_sheet_csv_has_one_row_per_needle(planned):
    plan = planned[0]
    lines = loading_sheet_csv(loading_sheet(plan.needle_table())).splitlines()
    assert lines[0].startswith("needle,hole,entry_r_mm")
    assert len(lines) == 1 + plan.n_needles


def test_goal_status_reads_the_dvh(planned):
    _, evaluation, _ = planned
    rx = evaluation.prescription_gy
    easy = goal_status(Goals(rx, d90_min_pct=50.0, v100_min_pct=10.0, v150_max_pct=100.0), evaluation)
    assert all(g.met for g in easy) and unmet_message(easy) == ""
    hard = goal_status(Goals(rx, v100_min_pct=100.0, v200_max_pct=0.0), evaluation)
    missed = [g.goal for g in hard if not g.met]
    assert "CTV V100 >= 100 %" in missed and "CTV V200 <= 0 %" in missed
    v100 = next(g for g in hard if g.metric == "V100")
    assert v100.achieved == evaluation.value("CTV", "V100")[0]
    assert "V100 >= 100 %" in unmet_message(hard) and math.isfinite(v100.achieved)


def test_unmet_in_terms_names_each_missed_goal():
    from SeedBrachyLib.planning.goal_status import unmet_in_terms
    from SeedBrachyLib.planning.optimize import OarLimit
    goals = Goals(120.0, v100_min_pct=95.0, v200_max_pct=20.0, oar_limits=(OarLimit("Skin", "D2cc", 100.0),))
    terms = {"D90": 130.0, "V100": 8.7, "V150": 4.0, "V200": 25.0, "Skin D2cc": 99.0}
    missed = unmet_in_terms(goals, terms)
    assert missed == ["CTV V100 >= 95 % (optimiser estimate 8.7 %)", "CTV V200 <= 20 % (optimiser estimate 25.0 %)"]
    assert unmet_in_terms(goals, {**terms, "V100": 96.0, "V200": 10.0}) == []
    hot = {**terms, "V100": 96.0, "V200": 10.0, "Skin D2cc": 100.5}
    assert unmet_in_terms(goals, hot) == ["Skin D2cc <= 100 Gy (optimiser estimate 100.5 Gy)"]
