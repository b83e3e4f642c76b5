"""SeedBrachy: CT-guided I-125 seed brachytherapy planning and evaluation (3D Slicer scripted module).

Thin by design (as SlicerElastix and SlicerNNUnet): the Widget binds the .ui to the parameter node and
shows results; the Logic has, for each action, an explicit-node method and a ``...UsingParameterNode``
entry point, each one call into SeedBrachyLib (the MRML bridge ``SeedBrachyLib.mrml``). Every setting,
with its default, range and help, comes from ``SeedBrachyLib.settings``. Research use only.
"""

import logging
import os
import sys
from typing import Annotated


def _findSeedBrachyLib():
    """Make SeedBrachyLib importable in a development install.

    Slicer appends a scripted module's own folder to sys.path (qSlicerScriptedLoadableModuleFactory.cxx,
    ctkFactoryScriptedItem::load). Built extensions install SeedBrachyLib inside that folder; a source
    checkout added to Slicer's module paths has it one level up, beside SeedBrachy/, so that folder is
    appended too (only when SeedBrachyLib is there).
    """
    here = os.path.dirname(os.path.abspath(__file__))
    for folder in (here, os.path.dirname(here)):
        if os.path.isfile(os.path.join(folder, "SeedBrachyLib", "__init__.py")):
            if folder not in sys.path:
                sys.path.append(folder)
            return folder
    return None


_findSeedBrachyLib()

import slicer  # noqa: E402
import vtk  # noqa: E402
from slicer.i18n import tr as _  # noqa: E402
from slicer.i18n import translate  # noqa: E402
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper  # noqa: E402
from slicer.ScriptedLoadableModule import (  # noqa: E402
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin  # noqa: E402

from SeedBrachyLib import RESEARCH_NOTICE, kernel, settings, summaries  # noqa: E402
from SeedBrachyLib.dicomrt.dataset import parse_datetime  # noqa: E402
from SeedBrachyLib.errors import Cancelled, InputError  # noqa: E402
from SeedBrachyLib.mrml import dicom, dosimetry, live, parameters, planning, postimplant, segmentations  # noqa: E402

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
        self.parent.contributors = ["SeedBrachy developers (SeedBrachy project)"]
        self.parent.helpText = _("""
Permanent interstitial I-125 seed brachytherapy (CT-guided seed implantation) of lymph-node
metastases and other soft-tissue tumours: seeds and needles as markups, dose with the AAPM TG-43U1
formalism (2D line source; 1D point source as an option; permanent implant: initial dose rate x
mean life), DVH metrics (D90, D100, V100, V150, V200; organ-at-risk D2cc) and the published D90
thresholds, read on the GTV: post-implant D90 &gt; 102.7 Gy for lymph-node metastases (Huang et al.,
J Cancer 2026); D90 &gt;= 110 Gy for in-field cervical nodal recurrence of esophageal squamous cell
carcinoma (Zhang et al., J Contemp Brachytherapy 2020); the planning aim (D90 &gt;= Rx, V100 &gt;= 90 %)
on the CTV.
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


def _parameterNodeClass():
    """The typed parameter node: every setting of SeedBrachyLib.settings.SETTINGS (type, range or choices,
    default) and the node parameters of SeedBrachyLib.mrml.parameters.NODE_PARAMETERS."""
    annotations, defaults = {}, {}
    for name, setting in settings.SETTINGS.items():
        allowed = setting.allowed()
        extra = Choice(list(allowed)) if allowed else WithinRange(setting.minimum, setting.maximum) \
            if setting.minimum is not None else None
        annotations[name] = Annotated[setting.kind, extra] if extra is not None else setting.kind
        defaults[name] = setting.default
    for name, kind in parameters.NODE_PARAMETERS.items():
        annotations[name] = {str: str, list: list[str]}.get(kind) or getattr(slicer, kind)
        if kind is str:
            defaults[name] = ""
    doc = "Plan settings and nodes kept in the scene (generated from SeedBrachyLib.settings)."
    return parameterNodeWrapper(type("SeedBrachyParameterNode", (),
                                     {"__annotations__": annotations, "__doc__": doc, "__module__": __name__,
                                      **defaults}))


SeedBrachyParameterNode = _parameterNodeClass()


#
# SeedBrachyWidget
#


#: Live dose: the update runs this long (ms) after the last seed change (drag events come in bursts).
LIVE_DOSE_DELAY_MS = 150
#: Seed-node events that start a live update: moved, placed, deleted (vtkMRMLMarkupsNode.h).
LIVE_DOSE_EVENTS = ("PointModifiedEvent", "PointAddedEvent", "PointRemovedEvent")


class SeedBrachyWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel: the .ui bound to the parameter node; buttons call the Logic's parameter-node entries."""

    #: Segment selectors (not parameter-node widgets): selector -> parameter holding its segment ID(s).
    SEGMENT_SELECTORS = {"gtvSegmentSelector": "gtvSegmentID", "ctvSegmentSelector": "ctvSegmentID",
                         "oarSegmentSelector": "oarSegmentID", "nogoSegmentSelector": "nogoSegmentIDs"}

    def __init__(self, parent=None) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._liveSeeds = None
        self._liveTimer = None

    def setup(self) -> None:
        """Load the .ui, connect the buttons and the segment selectors, and bind the parameter node."""
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SeedBrachy.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.ui.researchNoticeLabel.text = RESEARCH_NOTICE
        for name, setting in settings.SETTINGS.items():  # tooltips from the one source of help texts
            for widget in uiWidget.findChildren("QWidget"):
                if widget.property("SlicerParameterName") == name:
                    widget.toolTip = setting.help + (f" ({setting.unit})" if setting.unit else "")
        self.logic = SeedBrachyLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.gtvSegmentSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onSegmentationChanged)
        for selector in ("gtvSegmentSelector", "ctvSegmentSelector", "oarSegmentSelector"):
            getattr(self.ui, selector).connect("currentSegmentChanged(QString)", self.onSegmentsChanged)
        self.ui.nogoSegmentSelector.connect("segmentSelectionChanged(QStringList)", self.onSegmentsChanged)
        buttons = {"makeCtvButton": self.onMakeCtvButton, "planSeedsButton": self.onPlanSeedsButton,
                   "computeDoseButton": self.onComputeDoseButton, "evaluateButton": self.onEvaluateButton,
                   "detectSeedsButton": self.onDetectSeedsButton, "registerButton": self.onRegisterButton,
                   "carryContoursButton": self.onCarryContoursButton,
                   "computePostDoseButton": self.onComputePostDoseButton, "compareButton": self.onCompareButton,
                   "importDicomButton": self.onImportDicomButton, "exportDicomButton": self.onExportDicomButton}
        for name, slot in buttons.items():
            getattr(self.ui, name).connect("clicked(bool)", slot)
        self.ui.liveDoseCheckBox.connect("toggled(bool)", self.onLiveDoseToggled)
        import qt  # the widget only: the Logic and the self-test run without Qt

        self._liveTimer = qt.QTimer()
        self._liveTimer.setSingleShot(True)
        self._liveTimer.setInterval(LIVE_DOSE_DELAY_MS)
        self._liveTimer.connect("timeout()", self.onLiveDoseTimer)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        self.stopLiveDose()
        self.removeObservers()

    def enter(self) -> None:
        """Called each time the user opens this module."""
        self.initializeParameterNode()

    def exit(self) -> None:
        """Called each time the user opens a different module: stop updating the GUI."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)

    def onSceneStartClose(self, caller, event) -> None:
        """Called just before the scene is closed."""
        self.stopLiveDose()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        """Called just after the scene is closed: a new parameter node if the module is shown."""
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        """Take the module's parameter node; choose the first volume as the CT if none is chosen."""
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.ctVolume:
            self._parameterNode.ctVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")

    def setParameterNode(self, inputParameterNode) -> None:
        """Bind the widgets (SlicerParameterName in the .ui) to ``inputParameterNode`` and observe it."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
            self.updateGUIFromParameterNode()

    def updateGUIFromParameterNode(self, caller=None, event=None) -> None:
        """Segment selectors and button states from the parameter node."""
        p = self._parameterNode
        if p is None:
            return
        for selector, name in self.SEGMENT_SELECTORS.items():
            widget = getattr(self.ui, selector)
            wasBlocked = widget.blockSignals(True)
            widget.setCurrentNode(p.segmentation)
            if name == "nogoSegmentIDs":
                if p.segmentation:
                    widget.setSelectedSegmentIDs(list(p.nogoSegmentIDs))
            else:
                widget.setCurrentSegmentID(getattr(p, name))
            widget.blockSignals(wasBlocked)
        missingInputs = self.logic.missingInputs(p)
        for button, missing in missingInputs.items():
            getattr(self.ui, button).enabled = not missing
            getattr(self.ui, button).toolTip = _("Select: {what}").format(what=", ".join(missing)) if missing else ""
        live = self.logic.liveDose is not None
        self.ui.computeDoseButton.enabled = self.ui.computeDoseButton.enabled and not live  # live: no button
        self.ui.liveDoseCheckBox.enabled = live or not missingInputs["computeDoseButton"]

    def onSegmentationChanged(self, *args) -> None:
        """A new segmentation: segment IDs of the old one no longer apply."""
        if self._parameterNode is None:
            return
        with slicer.util.NodeModify(self._parameterNode):
            self._parameterNode.segmentation = self.ui.gtvSegmentSelector.currentNode()
            for name in ("gtvSegmentID", "ctvSegmentID", "oarSegmentID"):
                setattr(self._parameterNode, name, "")
            self._parameterNode.nogoSegmentIDs = []

    def onSegmentsChanged(self, *args) -> None:
        """Segment IDs chosen in the selectors into the parameter node, as one change."""
        if self._parameterNode is None:
            return
        with slicer.util.NodeModify(self._parameterNode):
            for selector, name in self.SEGMENT_SELECTORS.items():
                widget = getattr(self.ui, selector)
                value = list(widget.selectedSegmentIDs()) if name == "nogoSegmentIDs" else \
                    widget.currentSegmentID() or ""
                setattr(self._parameterNode, name, value)

    def _run(self, label, errorText, work) -> None:
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

    def onMakeCtvButton(self) -> None:
        """Make the CTV segment (GTV + margin) once and choose it as the CTV."""
        with slicer.util.tryWithErrorDisplay(_("Making the CTV failed."), waitCursor=True):
            self.logic.makeCtvUsingParameterNode(self._parameterNode)

    def onPlanSeedsButton(self) -> None:
        """Plan needles and seeds; seeds edited by hand are replaced only if the user agrees."""
        p = self._parameterNode
        overwrite = False
        if self.logic.seedsEditedByHand(p.seeds):
            overwrite = slicer.util.confirmYesNoDisplay(
                _("'{name}' holds seeds edited by hand (or not made by the planner). Replace them?\n"
                  "No: write the new plan into a new point list.").format(name=p.seeds.GetName()))
            if not overwrite:
                p.seeds = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", _("Planned seeds"))

        def work(progress):
            plan = self.logic.planSeedsUsingParameterNode(p, overwrite=overwrite, progress=progress)
            self.ui.resultsLabel.text = "\n".join(plan.summary_lines(p.uPerMci))

        self._run(_("Planning needles and seeds..."), _("Planning failed."), work)

    def onComputeDoseButton(self) -> None:
        """Dose of the seeds into the dose volume, shown over the CT."""
        self.logic.ensureDoseEngine(self.resourcePath("requirements.txt"))

        def work(progress):
            self.logic.computeDoseUsingParameterNode(self._parameterNode, progress=progress)
            slicer.util.setSliceViewerLayers(background=self._parameterNode.ctVolume,
                                             foreground=self._parameterNode.doseVolume, foregroundOpacity=0.5)

        self._run(_("Computing dose..."), _("Dose computation failed."), work)

    def onLiveDoseToggled(self, on) -> None:
        """Live dose on: compute once, then follow the seeds node (throttled); off: back to the buttons."""
        if not on:
            self.stopLiveDose()
            return
        p = self._parameterNode
        self.logic.ensureDoseEngine(self.resourcePath("requirements.txt"))

        def work(progress):
            self.logic.startLiveDoseUsingParameterNode(p, progress=progress)
            slicer.util.setSliceViewerLayers(background=p.ctVolume, foreground=p.doseVolume, foregroundOpacity=0.5)

        self._run(_("Computing dose..."), _("Live dose could not start."), work)
        if self.logic.liveDose is None:
            self.ui.liveDoseCheckBox.checked = False
            return
        self._liveSeeds = p.seeds
        for event in LIVE_DOSE_EVENTS:
            self.addObserver(p.seeds, getattr(slicer.vtkMRMLMarkupsNode, event), self.onLiveSeedsChanged)
        self._showLiveResults()
        self.updateGUIFromParameterNode()

    def onLiveSeedsChanged(self, caller=None, event=None) -> None:
        """A seed moved, was placed or deleted: update once no change came for LIVE_DOSE_DELAY_MS."""
        self._liveTimer.start()

    def onLiveDoseTimer(self) -> None:
        """The throttled live update; an error shows and turns live dose off."""
        with slicer.util.tryWithErrorDisplay(_("Live dose update failed; live dose is off."), waitCursor=True):
            try:
                self.logic.updateLiveDose()
            except Exception:
                self.ui.liveDoseCheckBox.checked = False  # stops observing (onLiveDoseToggled)
                raise
            self._showLiveResults()

    def _showLiveResults(self) -> None:
        state = self.logic.liveDose
        if state is not None and state.evaluation is not None:
            self.ui.resultsLabel.text = summaries.evaluation_summary(state.evaluation, state.results)

    def stopLiveDose(self) -> None:
        """Stop following the seeds node; the dose volume and tables stay as they are."""
        if self._liveTimer is not None:
            self._liveTimer.stop()
        if self._liveSeeds is not None:
            for event in LIVE_DOSE_EVENTS:
                self.removeObserver(self._liveSeeds, getattr(slicer.vtkMRMLMarkupsNode, event),
                                    self.onLiveSeedsChanged)
            self._liveSeeds = None
        if self.logic is not None:
            self.logic.stopLiveDose()
        if self._parameterNode is not None:
            self.updateGUIFromParameterNode()

    def onEvaluateButton(self) -> None:
        """DVH table, plot and checks; the summary in the panel."""
        with slicer.util.tryWithErrorDisplay(_("Evaluation failed."), waitCursor=True):
            evaluation, results = self.logic.evaluateUsingParameterNode(self._parameterNode)
            self.ui.resultsLabel.text = summaries.evaluation_summary(evaluation, results)
            if self._parameterNode.dvhChart:
                slicer.modules.plots.logic().ShowChartInLayout(self._parameterNode.dvhChart)

    def onDetectSeedsButton(self) -> None:
        """Find the seeds in the post-implant CT (asks before replacing points already there)."""
        p = self._parameterNode
        if p.postImplantSeeds.GetNumberOfControlPoints() and not slicer.util.confirmYesNoDisplay(
                _("'{name}' already holds {count} seeds (maybe corrected by hand). Replace them?").format(
                    name=p.postImplantSeeds.GetName(), count=p.postImplantSeeds.GetNumberOfControlPoints())):
            return

        def work(progress):
            result = self.logic.detectSeedsUsingParameterNode(p, overwrite=True, progress=progress)
            self.ui.postImplantResultsLabel.text = result.summary()

        self._run(_("Detecting seeds..."), _("Seed detection failed."), work)

    def onRegisterButton(self) -> None:
        """Register the post-implant CT to the pre-plan CT."""
        def work(progress):
            result = self.logic.registerPostImplantUsingParameterNode(self._parameterNode, progress=progress)
            self.ui.postImplantResultsLabel.text = result.describe()

        self._run(_("Registering..."), _("Registration failed."), work)

    def onCarryContoursButton(self) -> None:
        """Carry the GTV and CTV onto the post-implant CT (asks before replacing segments of the same name)."""
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Carrying the contours failed."), waitCursor=True):
            existing = self.logic.carriedSegmentsPresent(p)
            if existing and not slicer.util.confirmYesNoDisplay(
                    _("'{seg}' already has segments {names}. Replace them?").format(
                        seg=p.carriedSegmentation.GetName(), names=", ".join(existing))):
                return
            self.logic.carryContoursUsingParameterNode(p, overwrite=bool(existing))

    def onComputePostDoseButton(self) -> None:
        """Post-plan dose of the implanted seeds on the pre-plan dose grid."""
        def work(progress):
            post = self.logic.computePostPlanDoseUsingParameterNode(self._parameterNode, progress=progress)
            self.ui.postImplantResultsLabel.text = post.description

        self._run(_("Computing post-plan dose..."), _("Post-plan dose failed."), work)

    def onCompareButton(self) -> None:
        """Pre vs post table with the checks on the post-plan; the table is shown."""
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Comparison failed."), waitCursor=True):
            comparison = self.logic.comparePlansUsingParameterNode(p)
            self.ui.postImplantResultsLabel.text = summaries.comparison_summary(comparison)
            slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(p.comparisonTable.GetID())
            slicer.app.applicationLogic().PropagateTableSelection()

    def onImportDicomButton(self) -> None:
        """Read a DICOM folder into new nodes, chosen as the module's CT, segmentation, seeds and dose."""
        import qt  # here, not at the top: the headless tests (slicer-core) have no Qt

        folder = qt.QFileDialog.getExistingDirectory(self.parent, _("DICOM folder to import"))
        if not folder:
            return

        def work(progress):
            nodes = self.logic.importDicomUsingParameterNode(self._parameterNode, slicer.mrmlScene, folder,
                                                             self.ui.implantDateLineEdit.text, progress)
            self.ui.dicomResultsLabel.text = "\n".join(nodes["case"].summary_lines())

        self._run(_("Importing DICOM..."), _("DICOM import failed."), work)

    def onExportDicomButton(self) -> None:
        """Write CT, segments, seeds and dose as DICOM RT into a new (or empty) folder."""
        import qt

        folder = qt.QFileDialog.getExistingDirectory(self.parent, _("New or empty folder for the DICOM RT files"))
        if not folder:
            return

        def work(progress):
            paths = self.logic.exportDicomUsingParameterNode(self._parameterNode, folder,
                                                             self.ui.implantDateLineEdit.text, progress)
            self.ui.dicomResultsLabel.text = _("Written: {files}").format(files=", ".join(map(str, paths.values())))

        self._run(_("Exporting DICOM RT..."), _("DICOM export failed."), work)


#
# SeedBrachyLogic
#


class SeedBrachyLogic(ScriptedLoadableModuleLogic):
    """All computation, usable without the widget: each action takes explicit nodes (and settings, see
    SeedBrachyLib.settings.resolve) or the parameter node, and is one call into SeedBrachyLib.mrml."""

    def __init__(self) -> None:
        """Called when the logic class is instantiated."""
        ScriptedLoadableModuleLogic.__init__(self)
        self.liveDose = None

    def getParameterNode(self):
        """The module's typed parameter node (created with every default if missing)."""
        return SeedBrachyParameterNode(super().getParameterNode())

    @staticmethod
    def settingsOf(parameterNode):
        """The validated settings (SeedBrachyLib.settings.Values) held by ``parameterNode``."""
        return settings.resolve({name: getattr(parameterNode, name) for name in settings.SETTINGS})

    @staticmethod
    def missingInputs(parameterNode):
        """Button name -> list of the inputs and outputs still to choose (empty: the action can run)."""
        return parameters.missing_inputs(parameters.values_of(parameterNode))

    @staticmethod
    def progressCallback(dialog):
        """A SeedBrachyLib progress callback driving a Qt progress dialog (Cancel stops the work)."""

        def callback(fraction, message=""):
            dialog.setValue(int(round(100 * min(max(fraction, 0.0), 1.0))))
            if message:
                dialog.setLabelText(message)
            slicer.app.processEvents()
            return not dialog.wasCanceled

        return callback

    @staticmethod
    def seedsEditedByHand(seeds):
        """True if ``seeds`` holds points that differ from the last plan generated into it."""
        return planning.edited_by_hand(seeds)

    def makeCtv(self, segmentation, gtvSegmentID, ctVolume, values=None, nogoSegmentIDs=()):
        """New CTV segment = GTV + ctvMarginMm (mm), clipped to the body; returns its ID."""
        return segmentations.make_ctv(segmentation, gtvSegmentID, ctVolume, values, nogo_segment_ids=nogoSegmentIDs)

    def makeCtvUsingParameterNode(self, p):
        """makeCtv with the parameter node's nodes and settings; the new segment becomes the CTV."""
        p.ctvSegmentID = self.makeCtv(p.segmentation, p.gtvSegmentID, p.ctVolume, self.settingsOf(p),
                                      tuple(p.nogoSegmentIDs))
        return p.ctvSegmentID

    def planSeeds(self, ctVolume, segmentation, ctvSegmentID, seeds, values=None, nogoSegmentIDs=(),
                  oarSegmentID="", gtvSegmentID="", overwrite=False, progress=None):
        """Template needles and seeds for the CTV into ``seeds`` and needle lines; returns the Plan."""
        return planning.plan_seeds(ctVolume, segmentation, ctvSegmentID, seeds, values, nogoSegmentIDs,
                                   oarSegmentID, gtvSegmentID, overwrite, progress)

    def planSeedsUsingParameterNode(self, p, overwrite=False, progress=None):
        """planSeeds with the parameter node's nodes and settings."""
        return self.planSeeds(p.ctVolume, p.segmentation, p.ctvSegmentID, p.seeds, self.settingsOf(p),
                              tuple(p.nogoSegmentIDs), p.oarSegmentID, p.gtvSegmentID, overwrite, progress)

    def computeDose(self, ctVolume, segmentation, targetSegmentIDs, seeds, doseVolume, values=None, progress=None):
        """TG-43U1 dose (Gy) of ``seeds`` into ``doseVolume`` on the policy's grid; returns (dose, grid)."""
        return dosimetry.compute_dose(ctVolume, segmentation, targetSegmentIDs, seeds, doseVolume, values,
                                      progress=progress)

    def computeDoseUsingParameterNode(self, p, progress=None):
        """computeDose with the parameter node's nodes and settings (targets: GTV and CTV)."""
        return self.computeDose(p.ctVolume, p.segmentation, [p.gtvSegmentID, p.ctvSegmentID], p.seeds,
                                p.doseVolume, self.settingsOf(p), progress)

    @staticmethod
    def ensureDoseEngine(requirementsPath):
        """Offer to install numba (the compiled dose engine, listed in ``requirementsPath``) if it is missing;
        returns the engine that will run (SeedBrachyLib.kernel.describe). Declined or failed: the exact numpy
        engine runs."""
        if kernel.numba_kernels() is None:
            with open(requirementsPath) as requirements:
                numba = [line.strip() for line in requirements if line.strip().startswith("numba")]
            try:
                if hasattr(slicer, "packaging"):  # Slicer 5.11+: asks, installs, offers a restart if needed
                    slicer.packaging.pip_ensure(numba, requester="SeedBrachy")
                elif slicer.util.confirmOkCancelDisplay(_("Install numba for a faster dose engine?")):
                    slicer.util.pip_install(numba)
            except Exception as error:  # declined or no network: the numpy engine runs
                logging.info("SeedBrachy: numba not installed (%s); the numpy dose engine runs", error)
            kernel.retry_import()
        return kernel.describe()

    def startLiveDose(self, ctVolume, segmentation, gtvSegmentID, ctvSegmentID, seeds, doseVolume, values=None,
                      dvhTable=None, dvhChart=None, checksTable=None, oarSegmentID="", progress=None):
        """Compute the dose as computeDose, then keep it following ``seeds`` (updateLiveDose); with ``dvhTable``
        the DVH table, chart and checks follow too. See SeedBrachyLib.mrml.live.LiveDosimetry."""
        evaluation = None if dvhTable is None else {
            "gtv_segment_id": gtvSegmentID, "ctv_segment_id": ctvSegmentID, "metrics_table": dvhTable,
            "chart": dvhChart, "checks_table": checksTable, "oar_segment_id": oarSegmentID, "ct_node": ctVolume}
        self.liveDose = live.LiveDosimetry(ctVolume, segmentation, [gtvSegmentID, ctvSegmentID], seeds, doseVolume,
                                           values, evaluation=evaluation, progress=progress)
        return self.liveDose

    def startLiveDoseUsingParameterNode(self, p, progress=None):
        """startLiveDose with the parameter node's nodes and settings."""
        return self.startLiveDose(p.ctVolume, p.segmentation, p.gtvSegmentID, p.ctvSegmentID, p.seeds, p.doseVolume,
                                  self.settingsOf(p), p.dvhTable, p.dvhChart, p.checksTable, p.oarSegmentID, progress)

    def updateLiveDose(self):
        """Follow the seeds node after a change; returns the number of seeds recomputed (0: nothing changed)."""
        if self.liveDose is None:
            raise InputError(_("live dose is off: turn it on first"))
        return self.liveDose.update()

    def stopLiveDose(self):
        """Stop live dose (the dose volume and tables stay as they are)."""
        self.liveDose = None

    def evaluate(self, doseVolume, segmentation, gtvSegmentID, ctvSegmentID, values=None, dvhTable=None,
                 dvhChart=None, checksTable=None, oarSegmentID="", ctVolume=None):
        """DVH metrics and checks of GTV, CTV, organs at risk and skin; fills the given tables and chart.

        Returns (PlanEvaluation, list of CheckResult).
        """
        evaluation = dosimetry.evaluate(doseVolume, segmentation, gtvSegmentID, ctvSegmentID, values, dvhTable,
                                        dvhChart, ct_node=ctVolume)
        oarName = segmentations.segment_name(segmentation, oarSegmentID) if oarSegmentID else ""
        results = dosimetry.check(evaluation, values, checksTable,
                                  dosimetry.target_names(segmentation, gtvSegmentID, ctvSegmentID), oarName)
        return evaluation, results

    def evaluateUsingParameterNode(self, p):
        """evaluate with the parameter node's nodes and settings."""
        return self.evaluate(p.doseVolume, p.segmentation, p.gtvSegmentID, p.ctvSegmentID, self.settingsOf(p),
                             p.dvhTable, p.dvhChart, p.checksTable, p.oarSegmentID, p.ctVolume)

    def detectSeeds(self, postImplantCt, postImplantSeeds, planSeeds=None, overwrite=False, progress=None):
        """Seeds found in ``postImplantCt`` written into ``postImplantSeeds``; returns the DetectionResult."""
        return postimplant.detect(postImplantCt, postImplantSeeds, plan_seeds_node=planSeeds, overwrite=overwrite,
                                  progress=progress)

    def detectSeedsUsingParameterNode(self, p, overwrite=False, progress=None):
        """detectSeeds with the parameter node's nodes."""
        return self.detectSeeds(p.postImplantCt, p.postImplantSeeds, p.seeds, overwrite, progress)

    def registerPostImplant(self, ctVolume, postImplantCt, registrationTransform, postImplantSeeds=None,
                            progress=None):
        """Rigid registration; ``registrationTransform`` gets post-implant -> pre-plan (mm RAS)."""
        return postimplant.register(ctVolume, postImplantCt, registrationTransform, seeds_node=postImplantSeeds,
                                    progress=progress)

    def registerPostImplantUsingParameterNode(self, p, progress=None):
        """registerPostImplant with the parameter node's nodes."""
        return self.registerPostImplant(p.ctVolume, p.postImplantCt, p.registrationTransform, p.postImplantSeeds,
                                        progress)

    def importDicom(self, scene, folder, implantDateTime=None, progress=None):
        """New nodes {"ct", "segmentation", "seeds", "dose", "case"} in ``scene`` of the DICOM case in ``folder``."""
        return dicom.import_folder(scene, folder, implantDateTime, progress=progress)

    def importDicomUsingParameterNode(self, p, scene, folder, implantDate="", progress=None):
        """importDicom (``implantDate``: ISO 8601 text or blank); the new nodes become the module's inputs."""
        nodes = self.importDicom(scene, folder, parse_datetime(implantDate, "implant date"), progress)
        with slicer.util.NodeModify(p):
            p.ctVolume = nodes["ct"]
            for name, key in (("segmentation", "segmentation"), ("seeds", "seeds"), ("doseVolume", "dose")):
                if nodes[key] is not None:
                    setattr(p, name, nodes[key])
        return nodes

    @staticmethod
    def linkCtToDicomDatabase(ctVolume):
        """Link a CT loaded by Slicer's DICOM browser (attribute DICOM.instanceUIDs) to its series' files, so
        that an export references it instead of writing a new series; a cropped or resampled CT is not linked."""
        uids = (ctVolume.GetAttribute("DICOM.instanceUIDs") or "").split()
        database = getattr(slicer, "dicomDatabase", None)
        if not uids or dicom.linked_series(ctVolume) is not None or database is None:
            return
        files = [database.fileForInstance(uid) for uid in uids]
        if all(files):
            try:
                dicom.link_ct_to_files(ctVolume, files)
            except InputError as exc:
                logging.warning("SeedBrachy: %s", exc)

    def exportDicom(self, folder, ctVolume, seeds, prescriptionGy, segmentation=None, doseVolume=None,
                    targetSegmentID="", modelKey=None, implantDateTime=None, progress=None):
        """CT, segments, seeds and dose as DICOM RT in ``folder``; returns {role: path} of the files written."""
        self.linkCtToDicomDatabase(ctVolume)
        return dicom.export_case(folder, ctVolume, seeds, prescriptionGy, segmentation, doseVolume,
                                 targetSegmentID or None, modelKey, implantDateTime, progress=progress)

    def exportDicomUsingParameterNode(self, p, folder, implantDate="", progress=None):
        """exportDicom with the parameter node's nodes and settings (prescription to the CTV)."""
        return self.exportDicom(folder, p.ctVolume, p.seeds, p.prescriptionGy, p.segmentation, p.doseVolume,
                                p.ctvSegmentID, p.sourceModel, parse_datetime(implantDate, "implant date"), progress)

    @staticmethod
    def carriedSegmentsPresent(p):
        """Names of the target segments already present in the carried segmentation."""
        return postimplant.existing_segments(p.segmentation, [p.gtvSegmentID, p.ctvSegmentID],
                                             p.carriedSegmentation)

    def carryContours(self, segmentation, segmentIDs, registrationTransform, postImplantCt, carriedSegmentation,
                      overwrite=False):
        """Segments resampled onto the post-implant CT through the registration; returns the new segment IDs."""
        return postimplant.carry_contours(segmentation, segmentIDs, registrationTransform, postImplantCt,
                                          carriedSegmentation, overwrite=overwrite)

    def carryContoursUsingParameterNode(self, p, overwrite=False):
        """carryContours of the GTV and CTV with the parameter node's nodes."""
        ids = [sid for sid in (p.gtvSegmentID, p.ctvSegmentID) if sid]
        return self.carryContours(p.segmentation, ids, p.registrationTransform, p.postImplantCt,
                                  p.carriedSegmentation, overwrite)

    def computePostPlanDose(self, postImplantSeeds, registrationTransform, doseVolume, postDoseVolume, values=None,
                            planSeeds=None, progress=None):
        """Post-plan dose (Gy) of the implanted seeds on the pre-plan dose grid into ``postDoseVolume``."""
        return postimplant.compute_post_plan_dose(postImplantSeeds, registrationTransform, doseVolume,
                                                  postDoseVolume, values, planSeeds, progress)

    def computePostPlanDoseUsingParameterNode(self, p, progress=None):
        """computePostPlanDose with the parameter node's nodes and settings."""
        return self.computePostPlanDose(p.postImplantSeeds, p.registrationTransform, p.doseVolume,
                                        p.postDoseVolume, self.settingsOf(p), p.seeds, progress)

    def comparePlans(self, doseVolume, postDoseVolume, segmentation, gtvSegmentID, ctvSegmentID, comparisonTable,
                     planSeeds, postImplantSeeds, values=None, oarSegmentID="", ctVolume=None):
        """Pre-plan vs post-plan table, the post-plan checked with the same indication and limits."""
        return postimplant.compare(doseVolume, postDoseVolume, segmentation, gtvSegmentID, ctvSegmentID,
                                   comparisonTable, planSeeds, postImplantSeeds, values,
                                   oar_segment_id=oarSegmentID, ct_node=ctVolume)

    def comparePlansUsingParameterNode(self, p):
        """comparePlans with the parameter node's nodes and settings."""
        return self.comparePlans(p.doseVolume, p.postDoseVolume, p.segmentation, p.gtvSegmentID, p.ctvSegmentID,
                                 p.comparisonTable, p.seeds, p.postImplantSeeds, self.settingsOf(p),
                                 p.oarSegmentID, p.ctVolume)


#
# SeedBrachyTest
#


class SeedBrachyTest(ScriptedLoadableModuleTest):
    """Builds the synthetic neck case in the scene and runs dose, evaluation, planning and post-implant steps."""

    def setUp(self):
        """Start from an empty scene."""
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Run every test of the module."""
        for test in (self.test_DoseAndChecks, self.test_Planning, self.test_PostImplant):
            self.setUp()
            test()

    def caseNodes(self):
        """The synthetic neck case in the scene (SeedBrachyLib.demo.scene.add_case_nodes)."""
        from SeedBrachyLib.demo.scene import add_case_nodes

        self.delayDisplay("Building the synthetic neck case")
        return add_case_nodes(slicer.mrmlScene)

    def test_DoseAndChecks(self):
        """Dose on the policy grid; D90 in the table equals an exact TG-43 point evaluation at the GTV's
        voxel centres within the voxelisation; the published goal is read on the GTV."""
        import numpy as np

        from SeedBrachyLib import dose, dvh
        from SeedBrachyLib.mrml import tables

        c = self.caseNodes()
        logic = SeedBrachyLogic()
        values = settings.resolve(prescriptionGy=c.case.prescription_gy)
        table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", "DVH")
        checksTable = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", "Checks")
        self.delayDisplay("Computing dose")
        logic.computeDose(c.ct, c.segmentation, [c.ids["GTV"], c.ids["CTV"]], c.seedsNode, c.dose, values)
        evaluation, results = logic.evaluate(c.dose, c.segmentation, c.ids["GTV"], c.ids["CTV"], values, table,
                                             checksTable=checksTable)
        points = c.case.grid.points()[c.case.masks["GTV"]]
        exact = dvh.DVH(dose.dose_at_points(points, c.seeds, c.model), np.ones(len(points)),
                        c.case.grid.voxel_volume_cc).metric("D90")[0]
        d90, unit = tables.read_dvh_metric(table, "GTV", "D90")
        self.assertEqual(unit, "Gy")
        self.assertLess(abs(d90 - exact), 0.02 * exact, f"D90 {d90} Gy vs exact TG-43 {exact} Gy")
        self.assertEqual([r.structure for r in results[:1]], ["GTV"])
        with self.assertRaises(InputError):
            logic.computeDose(c.ct, c.segmentation, ["", ""], c.seedsNode, c.dose, values)
        with self.assertRaises(InputError):  # the CT is never the output
            logic.computeDose(c.ct, c.segmentation, [c.ids["CTV"]], c.seedsNode, c.ct, values)
        self.delayDisplay("Test passed")

    def test_Planning(self):
        """Optimised plan into a seeds node, needles clear of the carotid (no-go); a seed moved by hand is
        protected from re-planning."""
        c = self.caseNodes()
        logic = SeedBrachyLogic()
        seedsNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Planned seeds")
        values = settings.resolve(prescriptionGy=c.case.prescription_gy)
        self.delayDisplay("Planning needles and seeds")
        result = logic.planSeeds(c.ct, c.segmentation, c.ids["CTV"], seedsNode, values,
                                 nogoSegmentIDs=(c.ids["Carotid"],))
        self.assertEqual(seedsNode.GetNumberOfControlPoints(), result.n_seeds)
        self.assertEqual(result.terms["violation"], 0)
        self.assertFalse(logic.seedsEditedByHand(seedsNode))
        p = seedsNode.GetNthControlPointPositionVector(0)
        seedsNode.SetNthControlPointPosition(0, vtk.vtkVector3d(p[0], p[1], p[2] + 3.0))
        self.assertTrue(logic.seedsEditedByHand(seedsNode))
        with self.assertRaises(InputError):
            logic.planSeeds(c.ct, c.segmentation, c.ids["CTV"], seedsNode, settings.resolve(planningMethod="uniform"))
        self.delayDisplay("Test passed")

    def test_PostImplant(self):
        """Simulated implant, patient moved: detect, register (TRE at the target <= 1 mm), dose, compare."""
        import numpy as np

        from SeedBrachyLib.mrml import transforms, volumes
        from SeedBrachyLib.postimplant.registration import map_points
        from SeedBrachyLib.synthetic.implant import rescanned_implant

        scene = slicer.mrmlScene
        c = self.caseNodes()
        logic = SeedBrachyLogic()
        values = settings.resolve(prescriptionGy=c.case.prescription_gy, doseSpacingMm=2.0)
        logic.computeDose(c.ct, c.segmentation, [c.ids["GTV"], c.ids["CTV"]], c.seedsNode, c.dose, values)
        scan = rescanned_implant(c.seeds, c.case, random_seed=2, spacing_mm=(0.9, 0.9, 2.0))
        postCt = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Post-implant CT")
        volumes.update_volume_node(postCt, scan.ct, scan.grid)

        self.delayDisplay("Detecting and registering")
        postSeeds = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Implanted seeds")
        logic.detectSeeds(postCt, postSeeds, planSeeds=c.seedsNode)
        self.assertEqual(postSeeds.GetNumberOfControlPoints(), len(scan.implant.seeds))
        transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "Post-implant to pre-plan")
        logic.registerPostImplant(c.ct, postCt, transform, postImplantSeeds=postSeeds)
        points = c.case.grid.points()[c.case.masks["GTV"]]
        mapped = map_points(transforms.read_matrix_to_world(transform),
                            map_points(np.linalg.inv(scan.post_to_pre), points))
        self.assertLessEqual(float(np.linalg.norm(mapped - points, axis=1).max()), 1.0)

        self.delayDisplay("Post-plan dose and comparison")
        postDose = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Post-plan dose")
        logic.computePostPlanDose(postSeeds, transform, c.dose, postDose, values, planSeeds=c.seedsNode)
        table = scene.AddNewNodeByClass("vtkMRMLTableNode", "Pre vs post")
        comparison = logic.comparePlans(c.dose, postDose, c.segmentation, c.ids["GTV"], c.ids["CTV"], table,
                                        c.seedsNode, postSeeds, values)
        self.assertEqual(table.GetNumberOfRows(), len(comparison.rows))
        self.assertEqual(comparison.row("Implant", "Seeds").difference, -len(scan.implant.lost))
        self.delayDisplay("Test passed")
