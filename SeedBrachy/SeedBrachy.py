"""SeedBrachy: CT-guided I-125 seed brachytherapy planning and evaluation (3D Slicer scripted module).

Thin by design (as SlicerElastix and SlicerNNUnet): the Widget binds the .ui to the parameter node and
shows results; the Logic has, for each action, an explicit-node method (a function of the MRML bridge
``SeedBrachyLib.mrml``) and a ``...UsingParameterNode`` entry point (``SeedBrachyLib.mrml.actions``); the
self-test runs ``SeedBrachyLib.demo.selftest``. Every setting, with its default, range and help, comes
from ``SeedBrachyLib.settings``. Research use only.
"""

import logging
import os
import sys


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

from SeedBrachyLib import RESEARCH_NOTICE, settings, summaries  # noqa: E402
from SeedBrachyLib.errors import Cancelled  # noqa: E402
from SeedBrachyLib.mrml import actions, live, parameters  # noqa: E402
from SeedBrachyLib.mrml.logic import ModuleLogic  # noqa: E402
from SeedBrachyLib.progress import DialogProgress  # noqa: E402

#
# SeedBrachy
#


class SeedBrachy(ScriptedLoadableModule):
    """Module metadata (Slicer's ScriptedLoadableModule)."""

    def __init__(self, parent):
        """Title, category, contributors, help (the published goals and the dose formalism) and acknowledgement."""
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("SeedBrachy")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Radiotherapy")]
        self.parent.dependencies = []
        self.parent.contributors = ["SeedBrachy developers (SeedBrachy project)"]
        self.parent.helpText = _("""
Permanent interstitial I-125 seed brachytherapy (CT-guided seed implantation) of lymph-node metastases and other
soft-tissue tumours: seeds and needles as markups, dose with the AAPM TG-43U1 formalism (2D line source, 1D point
source as an option), DVH metrics and the published goals, each read on the structure its source names:
""") + summaries.goals_help() + _("""
The dose volume is marked as a SlicerRT dose volume (SlicerRT's Isodose and DVH modules accept it).
<b>Research use only: not for clinical decisions.</b>
""")
        self.parent.acknowledgementText = _("""
Dose formalism: Rivard MJ et al. Update of AAPM Task Group No. 43 Report (TG-43U1).
Med Phys 2004;31(3):633-674. Seed data: consensus TG-43 datasets with their citations.
""")


#
# SeedBrachyParameterNode
#


#: The typed parameter node: every setting of SeedBrachyLib.settings and the nodes the module keeps.
SeedBrachyParameterNode = parameters.wrapper_class(parameterNodeWrapper, Choice, WithinRange, __name__)


#
# SeedBrachyWidget
#


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
        self._liveTimer = None

    def setup(self) -> None:
        """Load the .ui, connect the buttons and the segment selectors, and bind the parameter node."""
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SeedBrachy.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.ui.researchNoticeLabel.text = RESEARCH_NOTICE
        for widget in uiWidget.findChildren("QWidget"):  # tooltips from the one source of help texts
            setting = settings.SETTINGS.get(widget.property("SlicerParameterName"))
            if setting is not None:
                widget.toolTip = setting.help + (f" ({setting.unit})" if setting.unit else "")
        self.logic = SeedBrachyLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.gtvSegmentSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onSegmentationChanged)
        for selector in ("gtvSegmentSelector", "ctvSegmentSelector", "oarSegmentSelector"):
            getattr(self.ui, selector).connect("currentSegmentChanged(QString)", self.onSegmentsChanged)
        self.ui.nogoSegmentSelector.connect("segmentSelectionChanged(QStringList)", self.onSegmentsChanged)
        for button in actions.PANEL_ACTIONS:  # each button runs its action (SeedBrachyLib.mrml.actions)
            getattr(self.ui, button).connect("clicked(bool)", lambda checked, button=button: self.onAction(button))
        self.ui.liveDoseCheckBox.connect("toggled(bool)", self.onLiveDoseToggled)
        import qt  # the widget only: the Logic and the self-test run without Qt

        self._liveTimer = qt.QTimer()
        self._liveTimer.setSingleShot(True)
        self._liveTimer.setInterval(live.UPDATE_DELAY_MS)
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
        self.setParameterNode(None)

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
        """Segment selectors and button states (with the missing inputs as tooltip) from the parameter node."""
        p = self._parameterNode
        if p is None:
            return
        for selector, name in self.SEGMENT_SELECTORS.items():
            widget = getattr(self.ui, selector)
            wasBlocked = widget.blockSignals(True)
            widget.setCurrentNode(p.segmentation)
            if name != "nogoSegmentIDs":
                widget.setCurrentSegmentID(getattr(p, name))
            elif p.segmentation:
                widget.setSelectedSegmentIDs(list(p.nogoSegmentIDs))
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
        if self._parameterNode is not None:
            self.logic.assign(self._parameterNode, segmentation=self.ui.gtvSegmentSelector.currentNode(),
                              gtvSegmentID="", ctvSegmentID="", oarSegmentID="", nogoSegmentIDs=[])

    def onSegmentsChanged(self, *args) -> None:
        """Segment IDs chosen in the selectors into the parameter node, as one change."""
        if self._parameterNode is not None:
            self.logic.assign(self._parameterNode, **{
                name: list(getattr(self.ui, selector).selectedSegmentIDs()) if name == "nogoSegmentIDs"
                else getattr(self.ui, selector).currentSegmentID() or ""
                for selector, name in self.SEGMENT_SELECTORS.items()})

    def _ask(self, button, action):
        """What the user chooses before ``action`` (SeedBrachyLib.mrml.actions.ASKS), as the entry's keywords;
        None: cancelled."""
        import qt  # here, not at the top: the headless tests (slicer-core) have no Qt

        if action.ask == "replace":
            answers = [self.logic.guardOutput(self._parameterNode, button, slicer.util.confirmYesNoDisplay)]
        elif action.ask == "folder":
            answers = [qt.QFileDialog.getExistingDirectory(self.parent, action.caption),
                       self.ui.implantDateLineEdit.text]
        elif action.ask == "file":  # the save dialog asks before replacing a file
            answers = [qt.QFileDialog.getSaveFileName(self.parent, action.caption, "SeedBrachyTemplate.stl",
                                                      "STL (*.stl)"), True]
        else:
            answers = []
        return None if answers and answers[0] == "" else dict(zip(actions.ASKS[action.ask], answers))

    def onAction(self, button) -> None:
        """Run ``button``'s action (SeedBrachyLib.mrml.actions.PANEL_ACTIONS): what the user chooses first, then
        the Logic's entry; its result's text in the panel and its outputs in the views."""
        action = actions.PANEL_ACTIONS[button]
        if button == "computeDoseButton":
            self.logic.ensureDoseEngine(self.resourcePath("requirements.txt"))
        keywords = self._ask(button, action)
        result = None if keywords is None else self._run(action.label, action.error,
                                                         getattr(self.logic, action.entry), **keywords)
        if result is not None:
            if action.results_label:
                getattr(self.ui, action.results_label).text = action.text(result, self._parameterNode)
            self._show(action.shown)

    def _run(self, label, errorText, entry, **kwargs):
        """``entry(parameterNode, **kwargs)`` (with ``progress=`` a dialog's when ``label``) and an error display.
        Returns the result (None: failed, the error shown and logged, or cancelled, logged)."""
        dialog = label and slicer.util.createProgressDialog(parent=self.parent, windowTitle=_("SeedBrachy"),
                                                            labelText=label, maximum=100)
        if dialog:
            kwargs["progress"] = DialogProgress(dialog, slicer.app.processEvents)
        try:
            with slicer.util.tryWithErrorDisplay(errorText, waitCursor=True):
                try:
                    return entry(self._parameterNode, **kwargs)
                except Cancelled:  # caught inside: tryWithErrorDisplay would show it as an error
                    logging.info("SeedBrachy: %s cancelled by the user", label)
        except Exception:  # shown by tryWithErrorDisplay, which raises it again
            logging.exception("SeedBrachy: %s", errorText)
        finally:
            if dialog:
                dialog.close()
        return None

    def _show(self, names) -> None:
        """The parameter node's outputs ``names``: a dose volume over the CT, a table in the table view, a chart."""
        for name in names:
            node = getattr(self._parameterNode, name)
            if node is None:
                continue
            if node.IsA("vtkMRMLScalarVolumeNode"):
                slicer.util.setSliceViewerLayers(background=self._parameterNode.ctVolume, foreground=node,
                                                 foregroundOpacity=0.5)
            elif node.IsA("vtkMRMLTableNode"):
                slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(node.GetID())
                slicer.app.applicationLogic().PropagateTableSelection()
            else:
                slicer.modules.plots.logic().ShowChartInLayout(node)

    def onLiveDoseToggled(self, on) -> None:
        """Live dose on: compute once, then follow the seeds node (throttled); off: back to the buttons."""
        if not on:
            self.stopLiveDose()
            return
        self.logic.ensureDoseEngine(self.resourcePath("requirements.txt"))
        if self._run(_("Computing dose..."), _("Live dose could not start."),
                     self.logic.startLiveDoseUsingParameterNode) is None:
            self.ui.liveDoseCheckBox.checked = False
            return
        self.logic.liveDose.observe(self._liveTimer.start)
        self._show(("doseVolume",))
        self._showLiveResults()
        self.updateGUIFromParameterNode()

    def onLiveDoseTimer(self) -> None:
        """The throttled live update (live.UPDATE_DELAY_MS after the last seed change); an error turns it off."""
        with slicer.util.tryWithErrorDisplay(_("Live dose update failed; live dose is off."), waitCursor=True):
            try:
                self.logic.updateLiveDose()
            except Exception:
                self.ui.liveDoseCheckBox.checked = False  # stops observing (onLiveDoseToggled)
                raise
            self._showLiveResults()

    def _showLiveResults(self) -> None:
        """The live evaluation's summary in the panel (none while live dose follows the dose only)."""
        text = self.logic.liveDoseSummary()
        if text:
            self.ui.resultsLabel.text = text

    def stopLiveDose(self) -> None:
        """Stop following the seeds node; the dose volume and tables stay as they are."""
        if self._liveTimer is not None:
            self._liveTimer.stop()
        if self.logic is not None:
            self.logic.stopLiveDose()
        if self._parameterNode is not None:
            self.updateGUIFromParameterNode()


#
# SeedBrachyLogic
#


class SeedBrachyLogic(ScriptedLoadableModuleLogic, ModuleLogic):
    """All computation, usable without the widget. Each action has an explicit-node method and a
    ``...UsingParameterNode`` entry point, with live dose and the panel's helpers: the methods of
    SeedBrachyLib.mrml.logic.ModuleLogic, each a SeedBrachyLib function itself (its arguments, defaults, units
    and docstring), so a headless script on a saved scene does what the panel does."""

    def __init__(self) -> None:
        """Called when the logic class is instantiated."""
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        """The module's typed parameter node (created with every default if missing)."""
        return SeedBrachyParameterNode(super().getParameterNode())


#
# SeedBrachyTest
#


class SeedBrachyTest(ScriptedLoadableModuleTest):
    """The synthetic neck case through the Logic: dose and checks, planning, post-implant
    (the steps: SeedBrachyLib.demo.selftest, also run headless by Testing/test_module_ui.py)."""

    def setUp(self):
        """Start from an empty scene."""
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Run every step of the self-test, each on an empty scene."""
        from SeedBrachyLib.demo import selftest

        for step in selftest.STEPS:
            self.setUp()
            step(self, SeedBrachyLogic(), slicer.mrmlScene)
