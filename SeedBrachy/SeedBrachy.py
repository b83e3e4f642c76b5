"""SeedBrachy: CT-guided I-125 seed brachytherapy planning and evaluation (3D Slicer scripted module).

Thin by design: the Widget binds the .ui to the parameter node, the Logic takes explicit nodes and
calls SeedBrachyLib (the MRML bridge ``SeedBrachyLib.mrml`` and the pure engine). Headless scripts
call the same bridge functions. Research use only.
"""

import logging
from typing import Annotated

import slicer
import vtk
from slicer import (
    vtkMRMLMarkupsFiducialNode,
    vtkMRMLPlotChartNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
    vtkMRMLTableNode,
)
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from SeedBrachyLib import RESEARCH_NOTICE
from SeedBrachyLib.errors import Cancelled, InputError
from SeedBrachyLib.mrml import markups, plan
from SeedBrachyLib.sources import DEFAULT_U_PER_MCI, available_models, mci_to_u

#: Published post-implant D90 thresholds (Gy) shown with the evaluation.
D90_THRESHOLDS_GY = (
    (102.7, ">", "lymph-node metastases: ORR 81.5% vs 31.3% (Huang et al., J Cancer 2026)"),
    (110.0, ">=", "in-field cervical nodal recurrence of esophageal SCC: better local control and survival"),
)
#: Axis (RAS unit vector) given to seeds placed by hand, which carry no stored axis.
HAND_PLACED_SEED_AXIS = (0.0, 0.0, 1.0)


#
# SeedBrachy
#


class SeedBrachy(ScriptedLoadableModule):
    """Module metadata (Slicer's ScriptedLoadableModule)."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("SeedBrachy")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Radiotherapy")]
        self.parent.dependencies = []
        self.parent.contributors = ["SeedBrachy developers"]
        self.parent.helpText = _("""
Permanent interstitial I-125 seed brachytherapy (CT-guided seed implantation) of lymph-node
metastases and other soft-tissue tumours: seeds and needles as markups, dose with the AAPM TG-43U1
formalism (2D line source; 1D point source as an option; permanent implant: initial dose rate x
mean life), DVH metrics (D90, D100, V100, V150, V200; organ-at-risk D2cc) and the published D90
thresholds: post-implant D90 &gt; 102.7 Gy for lymph-node metastases (Huang et al., J Cancer 2026);
D90 &gt;= 110 Gy for in-field cervical nodal recurrence of esophageal squamous cell carcinoma.
The dose volume is marked as a SlicerRT dose volume, so SlicerRT's Isodose and DVH modules accept it.
<b>Research use only: not for clinical decisions.</b>
""")
        self.parent.acknowledgementText = _("""
Dose formalism: Rivard MJ et al. Update of AAPM Task Group No. 43 Report (TG-43U1).
Med Phys 2004;31(3):633-674. Seed data: consensus TG-43 datasets with their citations.
""")


#
# SeedBrachyParameterNode
#


@parameterNodeWrapper
class SeedBrachyParameterNode:
    """Plan settings kept in the scene (same names, types and defaults as SeedBrachyLib.mrml.parameters).

    ctVolume - CT (HU); segmentation, targetSegmentID - the target (CTV) segment.
    sourceModel - TG-43 seed model key; seedActivityMci (mCi) and uPerMci (U/mCi) - strength of
    hand-placed seeds; prescriptionGy (Gy); seeds - one control point per seed.
    formalism - "line" or "point"; doseSpacingMm, doseMarginMm (mm) - dose grid; doseVolume (Gy).
    dvhTable, dvhChart, checksTable - evaluation outputs.
    """

    ctVolume: vtkMRMLScalarVolumeNode
    segmentation: vtkMRMLSegmentationNode
    targetSegmentID: str = ""
    sourceModel: Annotated[str, Choice(available_models())] = "I125_OncoSeed6711"
    seedActivityMci: Annotated[float, WithinRange(0.05, 5.0)] = 0.5
    uPerMci: Annotated[float, WithinRange(0.5, 2.0)] = DEFAULT_U_PER_MCI
    prescriptionGy: Annotated[float, WithinRange(1.0, 300.0)] = 120.0
    seeds: vtkMRMLMarkupsFiducialNode
    formalism: Annotated[str, Choice(["line", "point"])] = "line"
    doseSpacingMm: Annotated[float, WithinRange(0.25, 5.0)] = 1.0
    doseMarginMm: Annotated[float, WithinRange(0.0, 50.0)] = 10.0
    doseVolume: vtkMRMLScalarVolumeNode
    dvhTable: vtkMRMLTableNode
    dvhChart: vtkMRMLPlotChartNode
    checksTable: vtkMRMLTableNode


#
# SeedBrachyWidget
#


class SeedBrachyWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel: the .ui bound to the parameter node; buttons call the Logic."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SeedBrachy.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.ui.researchNoticeLabel.text = RESEARCH_NOTICE

        self.logic = SeedBrachyLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        # The segment selector is not a parameter-node widget: keep segmentation and segment ID in sync by hand.
        self.ui.targetSegmentSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onTargetSegmentChanged)
        self.ui.targetSegmentSelector.connect("currentSegmentChanged(QString)", self.onTargetSegmentChanged)
        self.ui.computeDoseButton.connect("clicked(bool)", self.onComputeDoseButton)
        self.ui.evaluateButton.connect("clicked(bool)", self.onEvaluateButton)

        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.ctVolume:
            self._parameterNode.ctVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Widgets carry the SlicerParameterName dynamic property in the .ui file.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
            self.updateGUIFromParameterNode()

    def updateGUIFromParameterNode(self, caller=None, event=None) -> None:
        """Segment selector, seed summary and button states from the parameter node."""
        p = self._parameterNode
        if p is None:
            return
        wasBlocked = self.ui.targetSegmentSelector.blockSignals(True)
        self.ui.targetSegmentSelector.setCurrentNode(p.segmentation)
        self.ui.targetSegmentSelector.setCurrentSegmentID(p.targetSegmentID)
        self.ui.targetSegmentSelector.blockSignals(wasBlocked)
        seeds = p.seeds
        count = seeds.GetNumberOfControlPoints() if seeds else 0
        self.ui.seedsSummaryLabel.text = _("{count} seeds").format(count=count) if seeds else ""
        canDose = bool(p.ctVolume and p.segmentation and p.targetSegmentID and count and p.doseVolume)
        self.ui.computeDoseButton.enabled = canDose
        self.ui.computeDoseButton.toolTip = (_("Compute the TG-43U1 dose of the seeds") if canDose else
                                             _("Select a CT, a target segment, seeds and an output dose volume"))
        canEvaluate = bool(p.segmentation and p.targetSegmentID and p.doseVolume and p.dvhTable)
        self.ui.evaluateButton.enabled = canEvaluate
        self.ui.evaluateButton.toolTip = (_("DVH metrics, curves and checks") if canEvaluate else
                                          _("Select a target segment, a dose volume and an output table"))

    def onTargetSegmentChanged(self, *args) -> None:
        if self._parameterNode is None:
            return
        self._parameterNode.segmentation = self.ui.targetSegmentSelector.currentNode()
        self._parameterNode.targetSegmentID = self.ui.targetSegmentSelector.currentSegmentID() or ""

    def onComputeDoseButton(self) -> None:
        p = self._parameterNode
        progress = slicer.util.createProgressDialog(parent=self.parent, windowTitle=_("SeedBrachy"),
                                                    labelText=_("Computing dose..."), maximum=100)
        try:
            with slicer.util.tryWithErrorDisplay(_("Dose computation failed."), waitCursor=True):
                self.logic.computeDose(
                    p.ctVolume, p.segmentation, p.targetSegmentID, p.seeds, p.doseVolume, p.prescriptionGy,
                    modelKey=p.sourceModel, spacingMm=p.doseSpacingMm, marginMm=p.doseMarginMm,
                    formalism=p.formalism, handPlacedStrengthU=float(mci_to_u(p.seedActivityMci, p.uPerMci)),
                    progress=self.logic.progressCallback(progress))
                slicer.util.setSliceViewerLayers(background=p.ctVolume, foreground=p.doseVolume, foregroundOpacity=0.5)
        except Cancelled:
            logging.info("SeedBrachy: dose computation cancelled by the user")
        finally:
            progress.close()

    def onEvaluateButton(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Evaluation failed."), waitCursor=True):
            evaluation = self.logic.evaluate(p.doseVolume, p.segmentation, p.targetSegmentID, p.prescriptionGy,
                                             p.dvhTable, p.dvhChart, ctVolume=p.ctVolume)
            self.ui.resultsLabel.text = self.logic.summary(evaluation)
            if p.dvhChart:
                slicer.modules.plots.logic().ShowChartInLayout(p.dvhChart)


#
# SeedBrachyLogic
#


class SeedBrachyLogic(ScriptedLoadableModuleLogic):
    """All computation, usable without the widget: explicit nodes in, nodes out (delegates to SeedBrachyLib)."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return SeedBrachyParameterNode(super().getParameterNode())

    @staticmethod
    def progressCallback(dialog):
        """A SeedBrachyLib progress callback driving a Qt progress dialog (Cancel stops the work)."""

        def callback(fraction, message=""):
            dialog.setValue(int(round(100 * fraction)))
            if message:
                dialog.setLabelText(message)
            slicer.app.processEvents()
            return not dialog.wasCanceled

        return callback

    def computeDose(self, ctVolume, segmentation, targetSegmentID, seeds, doseVolume, prescriptionGy,
                    modelKey=None, spacingMm=1.0, marginMm=10.0, formalism="line", handPlacedStrengthU=None,
                    progress=None):
        """TG-43U1 dose (Gy) of ``seeds`` into ``doseVolume``; see SeedBrachyLib.mrml.plan.compute_dose.

        Raises InputError (no segment chosen, empty target, no seeds, seeds outside the CT, ...) and
        Cancelled when ``progress`` returns False.
        Returns (dose array [k, j, i] in Gy, dose Grid).
        """
        if doseVolume is None:
            raise InputError(_("no output dose volume selected: choose or create one"))
        return plan.compute_dose(ctVolume, segmentation, targetSegmentID, seeds, doseVolume, prescriptionGy,
                                 model_key=modelKey, spacing_mm=spacingMm, margin_mm=marginMm,
                                 formalism=formalism, default_strength_u=handPlacedStrengthU,
                                 default_axis=HAND_PLACED_SEED_AXIS, progress=progress)

    def evaluate(self, doseVolume, segmentation, targetSegmentID, prescriptionGy, dvhTable=None, dvhChart=None,
                 ctVolume=None):
        """DVH metrics (PlanEvaluation) of the target, the other segments and (with ``ctVolume``) the skin.

        Fills the given output table and chart; see SeedBrachyLib.mrml.plan.evaluate.
        """
        return plan.evaluate(doseVolume, segmentation, targetSegmentID, prescriptionGy, dvhTable, dvhChart,
                             ct_node=ctVolume)

    @staticmethod
    def summary(evaluation):
        """Target D90 with the published thresholds, as text for the panel."""
        target = next(s for s in evaluation.structures.values() if s.role == "target")
        d90 = target.values["D90"]
        lines = [_("{name}: D90 = {d90:.1f} Gy, V100 = {v100:.1f} % (prescription {rx:g} Gy)").format(
            name=target.name, d90=d90, v100=target.values["V100"], rx=evaluation.prescription_gy)]
        for threshold, op, meaning in D90_THRESHOLDS_GY:
            met = d90 > threshold if op == ">" else d90 >= threshold
            lines.append(_("D90 {op} {threshold:g} Gy: {verdict} ({meaning})").format(
                op=op, threshold=threshold, verdict=_("met") if met else _("not met"), meaning=meaning))
        lines.append(RESEARCH_NOTICE)
        return "\n".join(lines)


#
# SeedBrachyTest
#


class SeedBrachyTest(ScriptedLoadableModuleTest):
    """Builds the synthetic neck case in the scene, computes dose, checks D90 against the library."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_SyntheticCaseD90()

    def test_SyntheticCaseD90(self):
        import numpy as np

        from SeedBrachyLib import dvh, structures
        from SeedBrachyLib.demo import fixed_seed_arrangement
        from SeedBrachyLib.mrml import segmentations, tables, volumes
        from SeedBrachyLib.phantom import neck_phantom

        self.delayDisplay("Building the synthetic neck case")
        scene = slicer.mrmlScene
        case = neck_phantom()
        ct = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Neck CT")
        volumes.update_volume_node(ct, case.ct, case.grid)
        segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Structures")
        segmentation.CreateDefaultDisplayNodes()
        gtv = segmentations.add_mask_segment(segmentation, case.masks["GTV"], case.grid, "GTV", (1.0, 0.0, 0.0))
        seedsNode = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Seeds")
        seeds = fixed_seed_arrangement(case)
        markups.write_seeds(seedsNode, seeds, "I125_OncoSeed6711")
        doseNode = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Dose")
        table = scene.AddNewNodeByClass("vtkMRMLTableNode", "DVH")

        logic = SeedBrachyLogic()
        self.delayDisplay("Computing dose")
        dose, grid = logic.computeDose(ct, segmentation, gtv, seedsNode, doseNode, case.prescription_gy)
        self.assertTrue(volumes.is_dose_volume(doseNode))
        logic.evaluate(doseNode, segmentation, gtv, case.prescription_gy, table)

        expected = dvh.DVH.of(dose, structures.structure_on_grid("GTV", case.masks["GTV"], case.grid, grid,
                                                                 role="target")).metric("D90")[0]
        d90, unit = tables.read_dvh_metric(table, "GTV", "D90")
        self.assertEqual(unit, "Gy")
        self.assertTrue(np.isclose(d90, expected, rtol=1e-6), f"D90 {d90} Gy vs library {expected} Gy")
        with self.assertRaises(InputError):
            logic.computeDose(ct, segmentation, "", seedsNode, doseNode, case.prescription_gy)
        self.delayDisplay("Test passed")
