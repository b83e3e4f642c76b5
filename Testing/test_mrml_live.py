"""Live dose on real MRML nodes (slicer-core): the dose volume, DVH table and checks follow seeds dragged, placed by
hand and deleted, and agree with a full computation; the module's Logic entries headless."""

import numpy as np
import pytest

pytest.importorskip("slicer")

import slicer  # noqa: E402

from SeedBrachyLib import settings  # noqa: E402
from SeedBrachyLib.dose import compute_dose  # noqa: E402
from SeedBrachyLib.errors import InputError  # noqa: E402
from SeedBrachyLib.mrml import dosimetry, markups, volumes  # noqa: E402
from SeedBrachyLib.mrml.live import LiveDosimetry  # noqa: E402


def _targets(c):
    return [c.ids["GTV"], c.ids["CTV"]]


def _full(c, values, grid):
    """A full computation of the node's current seeds on ``grid``, written to a fresh node: (dose, evaluation)."""
    node = c.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "reference dose")
    seeds, model = dosimetry.plan_seeds_and_model(c.seeds_node, values)
    dose = compute_dose(grid, seeds, model)
    dosimetry.write_dose(node, dose, grid, seeds, model, values)
    return dose, dosimetry.evaluate(node, c.segmentation, c.ids["GTV"], c.ids["CTV"], values)


def test_dose_table_and_checks_follow_drag_add_and_delete(case_nodes):
    c = case_nodes
    values = settings.resolve(c.values, doseSpacingMm=2.0)
    metrics, checks_table = (c.scene.AddNewNodeByClass("vtkMRMLTableNode", name) for name in ("DVH", "Checks"))
    live = LiveDosimetry(c.ct, c.segmentation, _targets(c), c.seeds_node, c.dose, values,
                         evaluation={"gtv_segment_id": c.ids["GTV"], "ctv_segment_id": c.ids["CTV"],
                                     "metrics_table": metrics, "checks_table": checks_table})
    modified = []
    c.seeds_node.AddObserver(slicer.vtkMRMLMarkupsNode.PointModifiedEvent, lambda caller, event: modified.append(1))
    d90_before = live.evaluation.value("CTV", "D90")[0]

    p = np.array(c.seeds_node.GetNthControlPointPositionVector(2))
    c.seeds_node.SetNthControlPointPosition(2, *(p + [1.5, -1.0, 0.5]))  # a drag
    assert modified, "the module observes PointModifiedEvent: slicer-core must send it on a move"
    assert live.update() == 1
    centre = np.mean([s.position for s in c.seeds], axis=0)
    c.seeds_node.AddControlPoint(*(centre + [0.5, 0.5, 0.0]))  # a seed placed by hand: default axis and S_K
    assert live.update() == 1
    c.seeds_node.RemoveNthControlPoint(0)  # a seed deleted
    assert live.update() == 1
    assert live.update() == 0  # nothing changed, nothing recomputed

    dose, evaluation = _full(c, values, live.grid)  # the seeds stayed inside the first grid: it is kept
    shown, _ = volumes.array_from_volume_node(c.dose)
    assert np.max(np.abs(shown - dose)) <= 2 * np.finfo(np.float32).eps * dose.max()
    assert f"{len(live.live.seeds)} seeds" in c.dose.GetDescription() and "kernel" in c.dose.GetDescription()
    assert live.evaluation.structures.keys() == evaluation.structures.keys()
    for name, structure in evaluation.structures.items():  # the button's DVH, every metric: the live DVH takes the
        for metric, value in structure.values.items():  # formula, the button the table within 0.1 % (2.5e-5 measured)
            assert live.evaluation.value(name, metric)[0] == pytest.approx(value, rel=1e-4, abs=1e-9, nan_ok=True)
    assert live.evaluation.value("CTV", "D90")[0] != d90_before
    assert metrics.GetNumberOfRows() >= 1 and checks_table.GetNumberOfRows() == len(live.results)


def test_a_seed_dragged_out_of_the_dose_grid_regrids(case_nodes):
    c = case_nodes
    live = LiveDosimetry(c.ct, c.segmentation, _targets(c), c.seeds_node, c.dose, settings.resolve(
        c.values, doseSpacingMm=2.0))
    old = live.grid
    ct_points = volumes.grid_from_volume_node(c.ct).points()[::2, ::2, ::2].reshape(-1, 3)
    candidates = ct_points[~old.contains(ct_points)]  # in the CT, out of the dose grid
    assert len(candidates), "test geometry: the CT must reach beyond the dose grid"
    centre = old.to_ras((np.asarray(old.dims) - 1) / 2)
    outside = candidates[np.argmin(np.linalg.norm(candidates - centre, axis=1))]
    c.seeds_node.SetNthControlPointPosition(0, *outside)
    seeds = markups.read_seeds(c.seeds_node)
    assert live.update() == len(seeds)
    assert live.grid.contains(seeds[0].position)
    shown, grid = volumes.array_from_volume_node(c.dose)
    assert np.allclose(shown, compute_dose(grid, seeds, c.model, allow_outside=True), rtol=1e-6, atol=1e-6)


def test_module_logic_turns_live_dose_on_follows_and_off(seedbrachy_module, case_nodes):
    """The module's Logic (what the Live dose check box calls), headless: started from the parameter node, a seed
    moved in the node fires the observer (the Widget's throttle timer) once per event, the update recomputes one
    seed; stopping removes the observers."""
    c = case_nodes
    logic = seedbrachy_module.SeedBrachyLogic()
    table = c.scene.AddNewNodeByClass("vtkMRMLTableNode", "DVH")
    p = logic.getParameterNode()
    for name, value in dict(ctVolume=c.ct, segmentation=c.segmentation, gtvSegmentID=c.ids["GTV"],
                            ctvSegmentID=c.ids["CTV"], seeds=c.seeds_node, doseVolume=c.dose, dvhTable=table,
                            doseSpacingMm=2.0).items():
        setattr(p, name, value)
    logic.startLiveDoseUsingParameterNode(p)
    assert logic.liveDose.results is not None  # checks run with the evaluation
    changes = []
    logic.liveDose.observe(lambda: changes.append(1))
    assert logic.updateLiveDose() == 0
    position = np.array(c.seeds_node.GetNthControlPointPositionVector(1))
    c.seeds_node.SetNthControlPointPosition(1, *(position + [0.0, 1.0, 0.0]))
    assert changes == [1]
    assert logic.updateLiveDose() == 1
    assert logic.liveDose.evaluation is not None and table.GetNumberOfRows() >= 1
    logic.stopLiveDose()
    assert logic.liveDose is None
    c.seeds_node.SetNthControlPointPosition(1, *position)
    assert changes == [1]  # no longer observed
    with pytest.raises(InputError, match="live dose is off"):
        logic.updateLiveDose()
