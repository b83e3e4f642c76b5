"""The module Logic's methods: for each action an explicit-node method and a ``...UsingParameterNode`` entry.

``SeedBrachyLogic`` of ``SeedBrachy/SeedBrachy.py`` is Slicer's ``ScriptedLoadableModuleLogic`` with the
methods of :class:`ModuleLogic` (Slicer's camelCase names), so the module file keeps only the Slicer glue
(as SlicerNNUNet keeps its logic in ``SlicerNNUNetLib``). Each method is a SeedBrachyLib function itself, with
its arguments, defaults, units and docstring (nothing is re-typed): the explicit-node methods are the MRML
bridge's functions, the entry points those of :mod:`.actions`, which call them with the parameter node's nodes
and settings (so a headless script on a saved scene does what the panel does). Live dose is held here as
``liveDose`` (a :class:`.live.LiveDosimetry`, None while off).
"""

from __future__ import annotations

import slicer

from ..errors import InputError
from . import actions, beyond, dicom, dosimetry, engine, live, planning, postimplant, segmentations


class ModuleLogic:
    """The module Logic's actions (explicit nodes and ``...UsingParameterNode``), panel helpers and live dose."""

    #: The live dose (:class:`.live.LiveDosimetry`) while it is on; None while off.
    liveDose = None

    makeCtv = staticmethod(segmentations.make_ctv)
    makeCtvUsingParameterNode = staticmethod(actions.make_ctv)
    planSeeds = staticmethod(planning.plan_seeds)
    planSeedsUsingParameterNode = staticmethod(actions.plan_seeds)
    seedsEditedByHand = staticmethod(planning.edited_by_hand)
    computeDose = staticmethod(dosimetry.compute_dose)
    computeDoseUsingParameterNode = staticmethod(actions.compute_dose)
    evaluate = staticmethod(dosimetry.evaluate_and_check)
    evaluateUsingParameterNode = staticmethod(actions.evaluate)
    detectSeeds = staticmethod(postimplant.detect)
    registerPostImplant = staticmethod(postimplant.register)
    registerPostImplantUsingParameterNode = staticmethod(actions.register)
    carryContours = staticmethod(postimplant.carry_contours)
    carryContoursUsingParameterNode = staticmethod(actions.carry_contours)
    computePostPlanDose = staticmethod(postimplant.compute_post_plan_dose)
    computePostPlanDoseUsingParameterNode = staticmethod(actions.compute_post_plan_dose)
    comparePlans = staticmethod(postimplant.compare)
    comparePlansUsingParameterNode = staticmethod(actions.compare)
    importDicom = staticmethod(dicom.import_folder)
    importDicomUsingParameterNode = staticmethod(actions.import_dicom)
    exportDicom = staticmethod(dicom.export_case)
    robustness = staticmethod(beyond.robustness)
    robustnessUsingParameterNode = staticmethod(actions.robustness)
    radiobiology = staticmethod(beyond.radiobiology)
    radiobiologyUsingParameterNode = staticmethod(actions.radiobiology)
    exportTemplate = staticmethod(beyond.export_template)
    exportTemplateUsingParameterNode = staticmethod(actions.export_template)
    settingsOf = staticmethod(actions.settings_of)
    missingInputs = staticmethod(actions.missing_inputs)
    guardOutput = staticmethod(actions.guard_output)
    assign = staticmethod(actions.assign)
    ensureDoseEngine = staticmethod(engine.ensure_dose_engine)

    @staticmethod
    def detectSeedsUsingParameterNode(p, overwrite=False, progress=None):
        """:func:`.actions.detect_seeds` with Slicer's DICOM database (the slice thickness of a CT from the DICOM
        browser is read from its series' headers)."""
        return actions.detect_seeds(p, overwrite, progress, getattr(slicer, "dicomDatabase", None))

    @staticmethod
    def exportDicomUsingParameterNode(p, folder, implant_date="", progress=None):
        """:func:`.actions.export_dicom` with Slicer's DICOM database (a CT from the DICOM browser is referenced,
        not written again)."""
        return actions.export_dicom(p, folder, implant_date, getattr(slicer, "dicomDatabase", None), progress)

    def startLiveDose(self, *args, **kwargs):
        """Live dose: :class:`.live.LiveDosimetry` ``(*args, **kwargs)``, kept as ``liveDose``."""
        self.stopLiveDose()
        self.liveDose = live.LiveDosimetry(*args, **kwargs)
        return self.liveDose

    def startLiveDoseUsingParameterNode(self, p, progress=None):
        """Live dose of the parameter node's seeds (:func:`.actions.start_live_dose`), kept as ``liveDose``."""
        self.stopLiveDose()
        self.liveDose = actions.start_live_dose(p, progress)
        return self.liveDose

    def updateLiveDose(self):
        """Follow the seeds node after a change; returns the number of seeds recomputed (0: nothing changed)."""
        if self.liveDose is None:
            raise InputError("live dose is off: turn it on first")
        return self.liveDose.update()

    def liveDoseSummary(self):
        """The live evaluation's summary for the panel (:meth:`.live.LiveDosimetry.summary`); "" while live dose
        is off or follows the dose only."""
        return "" if self.liveDose is None else self.liveDose.summary()

    def stopLiveDose(self):
        """Stop live dose (the dose volume and tables stay as they are)."""
        if self.liveDose is not None:
            self.liveDose.close()
        self.liveDose = None
