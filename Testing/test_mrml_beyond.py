"""Robustness and the printed template on real MRML nodes (slicer-core)."""

import json

import numpy as np
import pytest

pytest.importorskip("slicer")

from SeedBrachyLib import settings  # noqa: E402
from SeedBrachyLib.errors import InputError  # noqa: E402
from SeedBrachyLib.mrml import beyond, markups, planning  # noqa: E402
from SeedBrachyLib.planning import printed_template  # noqa: E402
from SeedBrachyLib.planning import robustness as rob  # noqa: E402


@pytest.fixture
def planned(case_nodes):
    c = case_nodes
    node = c.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Planned seeds")
    planning.plan_seeds(c.ct, c.segmentation, c.ids["CTV"], node, settings.resolve(c.values, planningMethod="uniform"),
                        nogo_segment_ids=[c.ids["Carotid"]])
    return c, node


def test_robustness_tables_and_chart(planned):
    c, node = planned
    scene = c.scene
    tables = [scene.AddNewNodeByClass("vtkMRMLTableNode", n) for n in ("Samples", "Goals", "Histogram")]
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", "Robustness")
    result = beyond.robustness(node, c.segmentation, c.ids["GTV"], c.case.prescription_gy, [c.ids["Carotid"]],
                               user_limits=[(c.ids["Carotid"], "D2cc", 45.0)], n_samples=12, samples_table=tables[0],
                               goals_table=tables[1], histogram_table=tables[2], chart_node=chart, bins=5)
    samples = tables[0].GetTable()
    assert samples.GetNumberOfRows() == 12
    d90 = np.array([samples.GetValueByName(i, "GTV D90 [Gy]").ToDouble() for i in range(12)])
    assert np.allclose(d90, result.values[("GTV", "D90")])
    goals = tables[1].GetTable()
    assert goals.GetNumberOfRows() == 2
    assert goals.GetValueByName(0, "P [%]").ToDouble() == pytest.approx(100 * result.probabilities[0].p)
    hist = tables[2].GetTable()
    assert sum(hist.GetValueByName(i, "Samples").ToDouble() for i in range(hist.GetNumberOfRows())) == 12
    assert chart.GetNumberOfPlotSeriesNodes() == 1 and "simulated implants" in chart.GetTitle()
    # the same plan from the library gives the same samples (seeds and needles read back from the nodes)
    geometry = rob.ImplantGeometry.from_seeds(markups.read_seeds(node), markups.read_needles(node))
    assert geometry.n_seeds == node.GetNumberOfControlPoints()
    beyond.robustness(node, c.segmentation, c.ids["GTV"], c.case.prescription_gy, n_samples=3,
                      histogram_table=tables[2], chart_node=chart)
    assert chart.GetNumberOfPlotSeriesNodes() == 1  # replaced, not added


def test_export_template(planned, tmp_path):
    c, node = planned
    model = c.scene.AddNewNodeByClass("vtkMRMLModelNode", "Template")
    path = tmp_path / "template.stl"
    settings = printed_template.TemplateSettings(resolution_mm=0.25)
    template = beyond.export_template(node, c.ct, str(path), settings, model_node=model)
    assert path.is_file() and model.GetPolyData().GetNumberOfCells() == template.mesh.GetNumberOfCells()
    check = printed_template.mesh_check(model.GetPolyData())
    assert check["boundary_edges"] == 0 and check["non_manifold_edges"] == 0
    rows = json.loads(model.GetAttribute(beyond.HOLE_TABLE_ATTRIBUTE))
    assert [r["label"] for r in rows if r["kind"] == "needle"] == [n.label for n in markups.read_needles(node)]
    with pytest.raises(InputError, match="exists"):
        beyond.export_template(node, c.ct, str(path), settings)
