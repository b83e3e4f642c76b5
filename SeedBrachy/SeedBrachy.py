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
    vtkMRMLLinearTransformNode,
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
from SeedBrachyLib.checks import available_indications, format_checks, user_limit
from SeedBrachyLib.errors import Cancelled, InputError
from SeedBrachyLib.mrml import dosimetry, markups, planning, postimplant, segmentations
from SeedBrachyLib.mrml.parameters import NEEDLE_ENTRY_DIRECTIONS
from SeedBrachyLib.planning.optimize import OAR_METRICS
from SeedBrachyLib.sources import DEFAULT_U_PER_MCI, available_models, mci_to_u

#: Axis (RAS unit vector) given to seeds placed by hand, which carry no stored axis.
HAND_PLACED_SEED_AXIS = (0.0, 0.0, 1.0)
#: Goal set checked with every indication: the planning aim (D90 >= prescription, V100 >= 90 % of the CTV).
PLANNING_AIM = "general"
#: Name of the skin rind the evaluation finds from the CT (SeedBrachyLib.mrml.segmentations.body_and_skin).
SKIN = "Skin"


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
    needleEntry - side the planned needles enter from (see NEEDLE_ENTRY_DIRECTIONS); nogoSegmentIDs -
    segments the needles must avoid (bone from the CT always is).
    formalism - "line" or "point"; doseSpacingMm, doseMarginMm (mm) - dose grid; doseVolume (Gy).
    dvhTable, dvhChart, checksTable - evaluation outputs; indication - goal set checked (with the planning aim);
    skinD2ccLimitGy, oarLimitGy (Gy, 0 = no limit) - user limits, the latter on segment oarSegmentID (metric oarMetric).
    Post-implant: postImplantCt (HU); postImplantSeeds - detected seeds (post-implant CT frame);
    registrationTransform - post-implant -> pre-plan; carriedSegmentation - target on the post-implant CT;
    postSeedAxis - "detection", "needle" or "unknown" (1D point source); postDoseVolume (Gy); comparisonTable.
    """

    ctVolume: vtkMRMLScalarVolumeNode
    segmentation: vtkMRMLSegmentationNode
    targetSegmentID: str = ""
    sourceModel: Annotated[str, Choice(available_models())] = "I125_OncoSeed6711"
    seedActivityMci: Annotated[float, WithinRange(0.05, 5.0)] = 0.5
    uPerMci: Annotated[float, WithinRange(0.5, 2.0)] = DEFAULT_U_PER_MCI
    prescriptionGy: Annotated[float, WithinRange(1.0, 300.0)] = 120.0
    seeds: vtkMRMLMarkupsFiducialNode
    needleEntry: Annotated[str, Choice(list(NEEDLE_ENTRY_DIRECTIONS))] = "right"
    nogoSegmentIDs: list[str]
    formalism: Annotated[str, Choice(["line", "point"])] = "line"
    doseSpacingMm: Annotated[float, WithinRange(0.25, 5.0)] = 1.0
    doseMarginMm: Annotated[float, WithinRange(0.0, 50.0)] = 10.0
    doseVolume: vtkMRMLScalarVolumeNode
    dvhTable: vtkMRMLTableNode
    dvhChart: vtkMRMLPlotChartNode
    checksTable: vtkMRMLTableNode
    indication: Annotated[str, Choice(list(available_indications()))] = "lymph-node-metastases"
    skinD2ccLimitGy: Annotated[float, WithinRange(0.0, 500.0)] = 0.0
    oarSegmentID: str = ""
    oarMetric: Annotated[str, Choice(list(OAR_METRICS))] = "D2cc"
    oarLimitGy: Annotated[float, WithinRange(0.0, 500.0)] = 0.0
    postImplantCt: vtkMRMLScalarVolumeNode
    postImplantSeeds: vtkMRMLMarkupsFiducialNode
    registrationTransform: vtkMRMLLinearTransformNode
    carriedSegmentation: vtkMRMLSegmentationNode
    postSeedAxis: Annotated[str, Choice(["detection", "needle", "unknown"])] = "detection"
    postDoseVolume: vtkMRMLScalarVolumeNode
    comparisonTable: vtkMRMLTableNode


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
        self._observedSeeds = None

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
        self.ui.nogoSegmentSelector.connect("segmentSelectionChanged(QStringList)", self.onNogoSegmentsChanged)
        self.ui.oarSegmentSelector.connect("currentSegmentChanged(QString)", self.onOarSegmentChanged)
        self.ui.planSeedsButton.connect("clicked(bool)", self.onPlanSeedsButton)
        self.ui.computeDoseButton.connect("clicked(bool)", self.onComputeDoseButton)
        self.ui.evaluateButton.connect("clicked(bool)", self.onEvaluateButton)
        self.ui.detectSeedsButton.connect("clicked(bool)", self.onDetectSeedsButton)
        self.ui.registerButton.connect("clicked(bool)", self.onRegisterButton)
        self.ui.carryContoursButton.connect("clicked(bool)", self.onCarryContoursButton)
        self.ui.computePostDoseButton.connect("clicked(bool)", self.onComputePostDoseButton)
        self.ui.compareButton.connect("clicked(bool)", self.onCompareButton)

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
        wasBlocked = self.ui.nogoSegmentSelector.blockSignals(True)
        self.ui.nogoSegmentSelector.setCurrentNode(p.segmentation)
        if p.segmentation:
            self.ui.nogoSegmentSelector.setSelectedSegmentIDs(list(p.nogoSegmentIDs))
        self.ui.nogoSegmentSelector.blockSignals(wasBlocked)
        wasBlocked = self.ui.oarSegmentSelector.blockSignals(True)
        self.ui.oarSegmentSelector.setCurrentNode(p.segmentation)
        self.ui.oarSegmentSelector.setCurrentSegmentID(p.oarSegmentID)
        self.ui.oarSegmentSelector.blockSignals(wasBlocked)
        seeds = p.seeds
        self._observeSeeds(seeds)
        count = seeds.GetNumberOfControlPoints() if seeds else 0
        self.ui.seedsSummaryLabel.text = _("{count} seeds").format(count=count) if seeds else ""
        canPlan = bool(p.ctVolume and p.segmentation and p.targetSegmentID and seeds)
        self.ui.planSeedsButton.enabled = canPlan
        self.ui.planSeedsButton.toolTip = (_("Template needles (10 mm holes, 3 mm clear of bone and the no-go "
                                             "segments) and seeds by the chosen method, into the seeds point list")
                                           if canPlan else _("Select a CT, a target segment and a seeds point list"))
        canDose = bool(p.ctVolume and p.segmentation and p.targetSegmentID and count and p.doseVolume)
        self.ui.computeDoseButton.enabled = canDose
        self.ui.computeDoseButton.toolTip = (_("Compute the TG-43U1 dose of the seeds") if canDose else
                                             _("Select a CT, a target segment, seeds and an output dose volume"))
        canEvaluate = bool(p.segmentation and p.targetSegmentID and p.doseVolume and p.dvhTable)
        self.ui.evaluateButton.enabled = canEvaluate
        self.ui.evaluateButton.toolTip = (_("DVH metrics, curves and checks") if canEvaluate else
                                          _("Select a target segment, a dose volume and an output table"))
        self.updatePostImplantButtons()

    def _observeSeeds(self, seeds) -> None:
        """Refresh the panel when seeds are added or removed (points placed by hand)."""
        if seeds is self._observedSeeds:
            return
        events = (slicer.vtkMRMLMarkupsNode.PointAddedEvent, slicer.vtkMRMLMarkupsNode.PointRemovedEvent)
        for event in events if self._observedSeeds is not None else ():
            self.removeObserver(self._observedSeeds, event, self.updateGUIFromParameterNode)
        self._observedSeeds = seeds
        for event in events if seeds is not None else ():
            self.addObserver(seeds, event, self.updateGUIFromParameterNode)

    def updatePostImplantButtons(self) -> None:
        """Enable each post-implant step when its inputs and output are selected."""
        p = self._parameterNode
        found = p.postImplantSeeds.GetNumberOfControlPoints() if p.postImplantSeeds else 0
        steps = (
            (self.ui.detectSeedsButton, p.postImplantCt and p.postImplantSeeds,
             _("Select the post-implant CT and an output seeds node")),
            (self.ui.registerButton, p.ctVolume and p.postImplantCt and p.registrationTransform,
             _("Select the pre-plan CT (Inputs), the post-implant CT and an output transform")),
            (self.ui.carryContoursButton, p.segmentation and p.targetSegmentID and p.registrationTransform
             and p.postImplantCt and p.carriedSegmentation,
             _("Select the target segment, the registration, the post-implant CT and an output segmentation")),
            (self.ui.computePostDoseButton, found and p.doseVolume and p.postDoseVolume,
             _("Detect (or place) the implanted seeds, compute the pre-plan dose and select an output dose volume")),
            (self.ui.compareButton, p.doseVolume and p.postDoseVolume and p.segmentation and p.targetSegmentID
             and p.seeds and found and p.comparisonTable,
             _("Compute both doses, select the target segment and an output table")),
        )
        for button, ready, missing in steps:
            button.enabled = bool(ready)
            button.toolTip = "" if ready else missing

    def onTargetSegmentChanged(self, *args) -> None:
        if self._parameterNode is None:
            return
        # Read both first and write them as one change: the first write refreshes the selector.
        segmentation = self.ui.targetSegmentSelector.currentNode()
        segmentID = self.ui.targetSegmentSelector.currentSegmentID() or ""
        with slicer.util.NodeModify(self._parameterNode):
            if segmentation is not self._parameterNode.segmentation:
                self._parameterNode.nogoSegmentIDs = []  # segment IDs of another segmentation
                self._parameterNode.oarSegmentID = ""
            self._parameterNode.segmentation = segmentation
            self._parameterNode.targetSegmentID = segmentID

    def onNogoSegmentsChanged(self, *args) -> None:
        if self._parameterNode is not None:
            self._parameterNode.nogoSegmentIDs = list(self.ui.nogoSegmentSelector.selectedSegmentIDs())

    def onOarSegmentChanged(self, *args) -> None:
        if self._parameterNode is not None:
            self._parameterNode.oarSegmentID = self.ui.oarSegmentSelector.currentSegmentID() or ""

    def onPlanSeedsButton(self) -> None:
        """Plan needles and seeds into the seeds node; seeds edited by hand are replaced only if the user agrees."""
        p = self._parameterNode
        overwrite = False
        if self.logic.seedsEditedByHand(p.seeds):
            overwrite = slicer.util.confirmYesNoDisplay(
                _("'{name}' holds seeds edited by hand (or not made by the planner). Replace them?\n"
                  "No: write the new plan into a new point list.").format(name=p.seeds.GetName()))
            if not overwrite:
                p.seeds = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", _("Planned seeds"))
        method = planning.METHODS[self.ui.planMethodComboBox.currentIndex]  # the .ui lists them in this order
        # the Evaluation section's limits (0 Gy = none) are also the optimiser's OAR limits
        oarLimits = [("Skin", "D2cc", p.skinD2ccLimitGy)] if p.skinD2ccLimitGy > 0 else []
        if p.oarLimitGy > 0 and p.oarSegmentID:
            oarLimits.append((p.oarSegmentID, p.oarMetric, p.oarLimitGy))

        def work(progress):
            result = self.logic.planSeeds(p.ctVolume, p.segmentation, p.targetSegmentID, p.seeds, p.prescriptionGy,
                                          method=method, activityMci=p.seedActivityMci, uPerMci=p.uPerMci,
                                          modelKey=p.sourceModel,
                                          needleDirection=NEEDLE_ENTRY_DIRECTIONS[p.needleEntry],
                                          nogoSegmentIDs=tuple(p.nogoSegmentIDs), oarLimits=tuple(oarLimits),
                                          overwrite=overwrite,
                                          progress=progress)
            self.ui.resultsLabel.text = "\n".join(result.summary_lines(p.uPerMci))

        self._runWithProgress(_("Planning needles and seeds..."), _("Planning failed."), work)

    def onComputeDoseButton(self) -> None:
        p = self._parameterNode

        def work(progress):
            self.logic.computeDose(
                p.ctVolume, p.segmentation, p.targetSegmentID, p.seeds, p.doseVolume, p.prescriptionGy,
                modelKey=p.sourceModel, spacingMm=p.doseSpacingMm, marginMm=p.doseMarginMm,
                formalism=p.formalism, handPlacedStrengthU=float(mci_to_u(p.seedActivityMci, p.uPerMci)),
                progress=progress)
            slicer.util.setSliceViewerLayers(background=p.ctVolume, foreground=p.doseVolume, foregroundOpacity=0.5)

        self._runWithProgress(_("Computing dose..."), _("Dose computation failed."), work)

    def onEvaluateButton(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Evaluation failed."), waitCursor=True):
            evaluation = self.logic.evaluate(p.doseVolume, p.segmentation, p.targetSegmentID, p.prescriptionGy,
                                             p.dvhTable, p.dvhChart, ctVolume=p.ctVolume)
            userLimits = self.logic.userLimits(p.skinD2ccLimitGy, p.segmentation, p.oarSegmentID, p.oarMetric,
                                               p.oarLimitGy)
            results = self.logic.check(evaluation, p.checksTable, self.logic.indicationsToCheck(p.indication),
                                       userLimits)
            self.ui.resultsLabel.text = self.logic.summary(evaluation, results)
            if p.dvhChart:
                slicer.modules.plots.logic().ShowChartInLayout(p.dvhChart)

    def _runWithProgress(self, label, errorText, work) -> None:
        """Run ``work(progress)`` with a progress dialog and error display; a cancel is logged, not an error."""
        dialog = slicer.util.createProgressDialog(parent=self.parent, windowTitle=_("SeedBrachy"), labelText=label,
                                                  maximum=100)
        try:
            with slicer.util.tryWithErrorDisplay(errorText, waitCursor=True):
                try:
                    work(self.logic.progressCallback(dialog))
                except Cancelled:  # caught inside: tryWithErrorDisplay would show it as an error
                    logging.info("SeedBrachy: %s cancelled by the user", label)
        finally:
            dialog.close()

    def onDetectSeedsButton(self) -> None:
        p = self._parameterNode
        if p.postImplantSeeds.GetNumberOfControlPoints() and not slicer.util.confirmYesNoDisplay(
                _("'{name}' already holds {count} seeds (maybe corrected by hand). Replace them?").format(
                    name=p.postImplantSeeds.GetName(), count=p.postImplantSeeds.GetNumberOfControlPoints())):
            return

        def work(progress):
            result = self.logic.detectSeeds(p.postImplantCt, p.postImplantSeeds, planSeeds=p.seeds, overwrite=True,
                                            progress=progress)
            self.ui.postImplantResultsLabel.text = result.summary()

        self._runWithProgress(_("Detecting seeds..."), _("Seed detection failed."), work)

    def onRegisterButton(self) -> None:
        p = self._parameterNode

        def work(progress):
            result = self.logic.registerPostImplant(p.ctVolume, p.postImplantCt, p.registrationTransform,
                                                    postImplantSeeds=p.postImplantSeeds, progress=progress)
            self.ui.postImplantResultsLabel.text = result.describe()

        self._runWithProgress(_("Registering..."), _("Registration failed."), work)

    def onCarryContoursButton(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Carrying the contour failed."), waitCursor=True):
            segment = p.segmentation.GetSegmentation().GetSegment(p.targetSegmentID)
            if segment is None:
                raise InputError(_("the target segment no longer exists: choose it again"))
            overwrite = bool(p.carriedSegmentation.GetSegmentation().GetSegmentIdBySegmentName(segment.GetName()))
            if overwrite and not slicer.util.confirmYesNoDisplay(
                    _("'{seg}' already has a segment '{name}'. Replace it?").format(
                        seg=p.carriedSegmentation.GetName(), name=segment.GetName())):
                return
            if p.carriedSegmentation.GetDisplayNode() is None:
                p.carriedSegmentation.CreateDefaultDisplayNodes()
            self.logic.carryContours(p.segmentation, [p.targetSegmentID], p.registrationTransform, p.postImplantCt,
                                     p.carriedSegmentation, overwrite=overwrite)

    def onComputePostDoseButton(self) -> None:
        p = self._parameterNode

        def work(progress):
            post = self.logic.computePostPlanDose(p.postImplantSeeds, p.registrationTransform, p.doseVolume,
                                                  p.postDoseVolume, p.prescriptionGy, axisSource=p.postSeedAxis,
                                                  planSeeds=p.seeds, progress=progress)
            self.ui.postImplantResultsLabel.text = post.description

        self._runWithProgress(_("Computing post-plan dose..."), _("Post-plan dose failed."), work)

    def onCompareButton(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Comparison failed."), waitCursor=True):
            comparison = self.logic.comparePlans(p.doseVolume, p.postDoseVolume, p.segmentation, p.targetSegmentID,
                                                 p.prescriptionGy, p.comparisonTable, p.seeds, p.postImplantSeeds,
                                                 ctVolume=p.ctVolume)
            self.ui.postImplantResultsLabel.text = self.logic.comparisonSummary(comparison)
            slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(p.comparisonTable.GetID())
            slicer.app.applicationLogic().PropagateTableSelection()


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
        """TG-43U1 dose (Gy) of ``seeds`` into ``doseVolume``; see SeedBrachyLib.mrml.dosimetry.compute_dose.

        Raises InputError (no segment chosen, empty target, no seeds, seeds outside the CT, ...) and
        Cancelled when ``progress`` returns False.
        Returns (dose array [k, j, i] in Gy, dose Grid).
        """
        if doseVolume is None:
            raise InputError(_("no output dose volume selected: choose or create one"))
        return dosimetry.compute_dose(ctVolume, segmentation, targetSegmentID, seeds, doseVolume, prescriptionGy,
                                 model_key=modelKey, spacing_mm=spacingMm, margin_mm=marginMm,
                                 formalism=formalism, default_strength_u=handPlacedStrengthU,
                                 default_axis=HAND_PLACED_SEED_AXIS, progress=progress)

    @staticmethod
    def seedsEditedByHand(seeds):
        """True if ``seeds`` holds points that differ from the last plan generated into it (see planSeeds)."""
        return planning.edited_by_hand(seeds)

    def planSeeds(self, ctVolume, segmentation, targetSegmentID, seeds, prescriptionGy, method="optimise",
                  activityMci=0.5, uPerMci=DEFAULT_U_PER_MCI, modelKey="I125_OncoSeed6711", ctvMarginMm=0.0,
                  needleDirection=(-1.0, 0.0, 0.0), nogoSegmentIDs=(), oarLimits=(), randomSeed=0, overwrite=False,
                  progress=None):
        """Template needles and seeds for the target into ``seeds`` (point list) and needle line nodes.

        The target segment is the CTV (``ctvMarginMm`` grows it); needles run along ``needleDirection``
        (RAS), 3 mm clear of bone (CT) and of ``nogoSegmentIDs``; ``method`` is "optimise" or a loading
        pattern. Seeds edited by hand are an InputError unless ``overwrite``. Returns the Plan; see
        SeedBrachyLib.mrml.planning.plan_seeds.
        """
        return planning.plan_seeds(ctVolume, segmentation, targetSegmentID, seeds, prescriptionGy, method=method,
                                   activity_mci=activityMci, u_per_mci=uPerMci, model_key=modelKey,
                                   needle_direction=needleDirection, ctv_margin_mm=ctvMarginMm,
                                   nogo_segment_ids=nogoSegmentIDs, oar_limits=oarLimits, random_seed=randomSeed,
                                   overwrite=overwrite, progress=progress)

    def evaluate(self, doseVolume, segmentation, targetSegmentID, prescriptionGy, dvhTable=None, dvhChart=None,
                 ctVolume=None):
        """DVH metrics (PlanEvaluation) of the target, the other segments and (with ``ctVolume``) the skin.

        Fills the given output table and chart; see SeedBrachyLib.mrml.dosimetry.evaluate.
        """
        return dosimetry.evaluate(doseVolume, segmentation, targetSegmentID, prescriptionGy, dvhTable, dvhChart,
                             ct_node=ctVolume)

    def check(self, evaluation, checksTable=None, indications=(PLANNING_AIM,), userLimits=()):
        """Check results of an evaluation against the goals of ``indications`` and the user's limits.

        ``indications``: goal sets of SeedBrachyLib.checks (see indicationsToCheck); ``userLimits``: from
        userLimits. Fills ``checksTable`` if given; see SeedBrachyLib.mrml.dosimetry.check.
        """
        return dosimetry.check(evaluation, checksTable, indications, userLimits)

    @staticmethod
    def indicationsToCheck(indication):
        """The goal sets checked for ``indication``: its own published goals and the planning aim."""
        return tuple(dict.fromkeys((indication, PLANNING_AIM)))

    @staticmethod
    def userLimits(skinD2ccLimitGy=0.0, segmentation=None, oarSegmentID="", oarMetric="D2cc", oarLimitGy=0.0):
        """The user's limits as SeedBrachyLib.checks.user_limit goals (measured <= limit passes).

        ``skinD2ccLimitGy`` (Gy): skin D2cc (the skin rind found from the CT); ``oarLimitGy`` (Gy): ``oarMetric``
        (a dose metric: D2cc, D0.1cc, Dmax, ...) of segment ``oarSegmentID`` of ``segmentation``.
        A limit of 0 Gy means none.
        """
        limits = []
        if skinD2ccLimitGy > 0:
            limits.append(user_limit(SKIN, "D2cc", skinD2ccLimitGy))
        if oarLimitGy > 0:
            if segmentation is None or not oarSegmentID:
                raise InputError(_("an organ-at-risk limit of {limit:g} Gy needs its segment: choose one, or set the "
                                   "limit to 0 (no limit)").format(limit=oarLimitGy))
            limits.append(user_limit(segmentations.segment_name(segmentation, oarSegmentID), oarMetric, oarLimitGy))
        return limits

    def detectSeeds(self, postImplantCt, postImplantSeeds, planSeeds=None, overwrite=False, progress=None):
        """Seeds found in ``postImplantCt`` written into ``postImplantSeeds`` (post-implant CT frame).

        Points already in the node are an InputError unless ``overwrite``; S_K and model come from
        ``planSeeds``. Returns the DetectionResult; see SeedBrachyLib.mrml.postimplant.detect.
        """
        return postimplant.detect(postImplantCt, postImplantSeeds, plan_seeds_node=planSeeds, overwrite=overwrite,
                                  progress=progress)

    def registerPostImplant(self, ctVolume, postImplantCt, registrationTransform, postImplantSeeds=None,
                            kind="rigid", progress=None):
        """Rigid (or "affine") registration; ``registrationTransform`` gets post-implant -> pre-plan (mm RAS).

        Returns the RegistrationResult; see SeedBrachyLib.mrml.postimplant.register.
        """
        return postimplant.register(ctVolume, postImplantCt, registrationTransform, kind=kind,
                                    seeds_node=postImplantSeeds, progress=progress)

    def carryContours(self, segmentation, segmentIDs, registrationTransform, postImplantCt, carriedSegmentation,
                      overwrite=False):
        """Segments resampled onto the post-implant CT through the registration; returns the new segment IDs."""
        return postimplant.carry_contours(segmentation, segmentIDs, registrationTransform, postImplantCt,
                                          carriedSegmentation, overwrite=overwrite)

    def computePostPlanDose(self, postImplantSeeds, registrationTransform, doseVolume, postDoseVolume,
                            prescriptionGy, axisSource="detection", planSeeds=None, progress=None):
        """Post-plan dose (Gy) of the implanted seeds on the pre-plan dose grid into ``postDoseVolume``.

        ``axisSource``: "detection", "needle" (the plan's needles) or "unknown" (1D point source); the
        choice is written into the dose description. See SeedBrachyLib.mrml.postimplant.compute_post_plan_dose.
        """
        return postimplant.compute_post_plan_dose(postImplantSeeds, registrationTransform, doseVolume,
                                                  postDoseVolume, prescriptionGy, axis_source=axisSource,
                                                  plan_seeds_node=planSeeds, progress=progress)

    def comparePlans(self, doseVolume, postDoseVolume, segmentation, targetSegmentID, prescriptionGy,
                     comparisonTable, planSeeds, postImplantSeeds, ctVolume=None):
        """Pre-plan vs post-plan table (differences, thresholds on the post-plan); returns the Comparison."""
        return postimplant.compare(doseVolume, postDoseVolume, segmentation, targetSegmentID, prescriptionGy,
                                   comparisonTable, planSeeds, postImplantSeeds, ct_node=ctVolume)

    @staticmethod
    def comparisonSummary(comparison):
        """Target D90 and V100 pre -> post and the threshold checks, as text for the panel."""
        lines = []
        for row in comparison.rows:
            if row.metric in ("D90", "V100") and row.unit in ("Gy", "%"):
                lines.append(_("{s} {m}: {pre:.1f} -> {post:.1f} {u} ({d:+.1f})").format(
                    s=row.structure, m=row.metric, pre=row.pre, post=row.post, u=row.unit, d=row.difference))
        lines += [check.describe() for check in comparison.checks]
        lines.append(RESEARCH_NOTICE)
        return "\n".join(lines)

    @staticmethod
    def summary(evaluation, checkResults=()):
        """Target D90 and V100 with the check results (PASS/FAIL, value, goal, source), as text for the panel."""
        target = next(s for s in evaluation.structures.values() if s.role == "target")
        lines = [_("{name}: D90 = {d90:.1f} Gy, V100 = {v100:.1f} % (prescription {rx:g} Gy)").format(
            name=target.name, d90=target.values["D90"], v100=target.values["V100"], rx=evaluation.prescription_gy)]
        if checkResults:
            lines.append(format_checks(checkResults).rstrip())
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
        self.setUp()
        self.test_PostImplant()
        self.setUp()
        self.test_Planning()

    def syntheticCaseNodes(self):
        """The synthetic neck case in the scene: (case, CT node, segmentation, GTV segment ID, seeds,
        seeds node, empty dose node)."""
        from SeedBrachyLib.mrml import segmentations, volumes
        from SeedBrachyLib.synthetic.phantom import fixed_seed_arrangement, neck_phantom

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
        return case, ct, segmentation, gtv, seeds, seedsNode, doseNode

    def test_SyntheticCaseD90(self):
        import numpy as np

        from SeedBrachyLib import dvh, structures
        from SeedBrachyLib.mrml import tables, volumes

        case, ct, segmentation, gtv, _, seedsNode, doseNode = self.syntheticCaseNodes()
        table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", "DVH")

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

    def test_Planning(self):
        """Optimised plan into the seeds node, needles clear of the carotid (no-go); a seed moved by hand is
        protected from re-planning."""
        from SeedBrachyLib.mrml import segmentations

        case, ct, segmentation, gtv, _, _, doseNode = self.syntheticCaseNodes()
        carotid = segmentations.add_mask_segment(segmentation, case.masks["Carotid"], case.grid, "Carotid",
                                                 (0.8, 0.2, 0.2))
        logic = SeedBrachyLogic()
        seedsNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Planned seeds")
        self.delayDisplay("Planning needles and seeds")
        result = logic.planSeeds(ct, segmentation, gtv, seedsNode, case.prescription_gy, ctvMarginMm=5.0,
                                 needleDirection=NEEDLE_ENTRY_DIRECTIONS["right"], nogoSegmentIDs=(carotid,))
        self.assertEqual(seedsNode.GetNumberOfControlPoints(), result.n_seeds)
        self.assertEqual(result.terms["violation"], 0)
        self.assertFalse(logic.seedsEditedByHand(seedsNode))
        p = seedsNode.GetNthControlPointPositionVector(0)
        seedsNode.SetNthControlPointPosition(0, vtk.vtkVector3d(p[0], p[1], p[2] + 3.0))
        self.assertTrue(logic.seedsEditedByHand(seedsNode))
        with self.assertRaises(InputError):
            logic.planSeeds(ct, segmentation, gtv, seedsNode, case.prescription_gy, method="uniform")
        logic.computeDose(ct, segmentation, gtv, seedsNode, doseNode, case.prescription_gy, spacingMm=2.0)
        self.delayDisplay("Test passed")

    def test_PostImplant(self):
        """Simulated implant, patient moved: detect, register (TRE at the target <= 1 mm), dose, compare."""
        import numpy as np

        from SeedBrachyLib.demo.postimplant import patient_motion
        from SeedBrachyLib.itk_image import resample
        from SeedBrachyLib.mrml import transforms, volumes
        from SeedBrachyLib.postimplant.registration import map_points
        from SeedBrachyLib.synthetic import post_implant_ct as synthetic_ct
        from SeedBrachyLib.synthetic.implant import simulate_implant

        scene = slicer.mrmlScene
        case, ct, segmentation, gtv, seeds, planSeeds, dose = self.syntheticCaseNodes()
        logic = SeedBrachyLogic()
        logic.computeDose(ct, segmentation, gtv, planSeeds, dose, case.prescription_gy, spacingMm=2.0)

        implant = simulate_implant(seeds, random_seed=2, needle_direction=case.needle_direction)
        truth = patient_motion()  # post-implant frame -> pre-plan frame
        scan = synthetic_ct.post_implant_ct(implant.seeds, spacing_mm=(0.9, 0.9, 2.0), random_seed=2)
        moved = resample(scan.ct.astype(np.float32), scan.grid, scan.grid, truth, "linear", -1000.0)
        postCt = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Post-implant CT")
        volumes.update_volume_node(postCt, np.rint(moved).astype(np.int16), scan.grid)

        self.delayDisplay("Detecting and registering")
        postSeeds = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Implanted seeds")
        logic.detectSeeds(postCt, postSeeds, planSeeds=planSeeds)
        self.assertEqual(postSeeds.GetNumberOfControlPoints(), len(implant.seeds))
        transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "Post-implant to pre-plan")
        logic.registerPostImplant(ct, postCt, transform, postImplantSeeds=postSeeds)
        points = case.grid.points()[case.masks["GTV"]]
        mapped = map_points(transforms.read_matrix_to_world(transform), map_points(np.linalg.inv(truth), points))
        self.assertLessEqual(float(np.linalg.norm(mapped - points, axis=1).max()), 1.0)

        self.delayDisplay("Post-plan dose and comparison")
        postDose = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Post-plan dose")
        logic.computePostPlanDose(postSeeds, transform, dose, postDose, case.prescription_gy, planSeeds=planSeeds)
        table = scene.AddNewNodeByClass("vtkMRMLTableNode", "Pre vs post")
        comparison = logic.comparePlans(dose, postDose, segmentation, gtv, case.prescription_gy, table, planSeeds,
                                        postSeeds)
        self.assertEqual(table.GetNumberOfRows(), len(comparison.rows))
        self.assertEqual(comparison.row("Implant", "Seeds").difference, -len(implant.lost))
        self.delayDisplay("Test passed")
